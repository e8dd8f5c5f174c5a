//! rollcall source for Docker: Swarm tasks through the API of a manager,
//! `tasks.<service>` through Docker's embedded DNS, or plain containers
//! selected by label.
//!
//! ```toml
//! [sources.swarm]
//! type = "swarm"
//! service = "CHORUS_chorus"   # every running task of it, with overlay IPs and identity
//! port = 9000
//! ```
//!
//! * **`mode = "api"`** (default): for each task of the selected services whose
//!   desired *and* actual state are `running`, one observation keyed by the
//!   task id, with the aliases task id and container id (full; the registry
//!   matches container ids on their 12-character short form, which is the
//!   container's hostname), labels `swarm.service`, `swarm.service_id`,
//!   `swarm.slot`, `swarm.node` (host name) and `swarm.node_id`, the service's
//!   and container's labels, capabilities from `capabilities_label`, and one
//!   address per attached network (filtered by `network`; the routing-mesh
//!   `ingress` network is left out unless named). Needs a **manager**.
//!   Refreshes on Docker events (service create/update/remove, container
//!   start/die, node changes; debounced), every `converge_poll` while a service
//!   converges, and every `resync`. Container events are per node and Swarm has
//!   no task events, so a crash on *another* node is seen at the next
//!   `resync` (5 s by default) unless a service event comes first.
//! * **`mode = "dns"`**: `tasks.<service>` through Docker's embedded DNS
//!   (127.0.0.11, or `dns_server`), polled every `resync` with the resolver
//!   cache cleared (Docker answers with a 600 s TTL), over TCP when the UDP
//!   answer is truncated. No socket needed, but a DNS answer is only a list of
//!   IPs: each observation is keyed by its IP, carries the label
//!   `swarm.service`, and claims **no alias** — an IP is no identity (it is
//!   reused when a task is replaced), and no task or container id can honestly
//!   be derived from it. So these observations never merge with another
//!   source's sighting of the same agent; pair DNS mode with a source that
//!   carries identity (e.g. NATS) when merged peers matter.
//! * **`mode = "containers"`**: running containers selected by `label` (and/or
//!   compose service name via `service`) on any daemon, swarm or not; keyed by
//!   container id with the container id alias and one address per network.
//!
//! Task addresses come from the raw `GET /tasks` answer of the manager
//! (bollard's `Task` model has no `NetworksAttachments`), not from a verbose
//! network inspect: `/tasks` is the manager's Raft store and lists every task
//! on every node with its state, container id and addresses in one consistent
//! answer, while a verbose network inspect answers from the asking node's
//! gossip table, which is empty on a manager that runs none of the tasks
//! (checked on Docker 20.10 with `scripts/swarm2.sh`) and has no container ids.
//!
//! Connection: unix socket by default, `DOCKER_HOST`, or `docker_host` with
//! TLS (`tls_ca`, `tls_cert`, `tls_key`). A missing socket, a permission
//! error, a worker node or a daemon outside a swarm each give an [`Error`]
//! whose text (also the source's degraded reason) says how to fix it.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod config;
mod containers;
mod dns;
mod docker;
mod error;
mod observe;
mod schedule;
mod source;
mod swarm;

pub use config::{Config, Mode};
pub use error::Error;
pub use source::SwarmSource;
