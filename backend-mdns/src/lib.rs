//! rollcall source for multicast DNS on the LAN, in two flavours:
//!
//! * **libp2p** (default, `service_name = "_p2p._udp.local"` or any name such
//!   as a go-libp2p tag plus `.local`): what go-libp2p and rust-libp2p speak.
//!   The agent answers with the PTR in Answers and SRV, TXT
//!   (`dnsaddr=<multiaddr>/p2p/<peer id>`, one string per address) and A in
//!   Additional, multicast, TTLs 3200 s / 120 s, a random `[a-z0-9]{32,63}`
//!   instance name; its peer id comes from the process's libp2p identity key.
//!   rollcall's own metadata rides in a TXT record under the host name
//!   (`rollcall.id=...`), which libp2p implementations ignore.
//! * **dns-sd** (`flavour = "dns-sd"`, `_name._tcp.local`): plain DNS-SD as
//!   avahi and Bonjour browse it: the agent id as instance name, SRV, A, and
//!   TXT `id=`, `capabilities=`, `status=`, `version=`, `label.K=V`.
//!
//! Both: sockets on 0.0.0.0:5353 and [::]:5353 (address and port reuse,
//! beside avahi), joined to 224.0.0.251 and ff02::fb on each interface; each
//! interface's answer carries that interface's A and AAAA records only,
//! an unsolicited announcement at start, a query at once and then at growing
//! intervals, answers multicast on the interface the query came from (unicast
//! for the QU bit; queries with authority records are probes and get none),
//! goodbyes (TTL 0) at stop; a received goodbye removes the peer at once and
//! every observation carries the record's TTL.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod cache;
mod config;
mod drops;
mod engine;
pub mod interfaces;
mod meta;
pub mod names;
pub mod observe;
pub mod packet;
mod signing;
mod socket;

use std::sync::Arc;

use std::sync::OnceLock;

use async_trait::async_trait;
use discovery_core::signed::Verifier;
use discovery_core::{DiscoverySource, SourceContext, SourceError};

pub use config::{Config, Flavour};

/// What can go wrong in this backend.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration key has a bad value.
    #[error("invalid `{key}`: {reason}")]
    Config {
        /// The key, as written in the `[sources.NAME]` section.
        key: &'static str,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// The mDNS port could not be bound.
    #[error("cannot bind UDP {addr} for mDNS: {reason} (another responder without SO_REUSEPORT holds it, or binding below 1024 needs root / CAP_NET_BIND_SERVICE)")]
    Bind {
        /// The address and port (`0.0.0.0:5353` or `[::]:5353`).
        addr: String,
        /// The OS error.
        reason: String,
    },
    /// No interface can carry multicast.
    #[error("no usable multicast interface: {0} (check `interfaces`, or `allow_loopback = true` for one host)")]
    NoInterface(String),
    /// The libp2p identity key could not be loaded.
    #[error("{0}")]
    Identity(String),
    /// The local peer's records do not fit in a packet.
    #[error("cannot build the announcement: {0}")]
    Packet(String),
}

/// The mDNS discovery source. See the crate documentation.
#[derive(Debug)]
pub struct MdnsSource {
    config: Arc<Config>,
    /// Kept across restarts of the source: pinned keys and last sequences
    /// must outlive a restart, or a replay would pass after one.
    verifier: OnceLock<Verifier>,
    signer: OnceLock<Arc<signing::Signer>>,
}

impl MdnsSource {
    /// Checks the configuration (no I/O).
    pub fn new(config: Config) -> Result<MdnsSource, Error> {
        config.validate()?;
        Ok(MdnsSource {
            config: Arc::new(config),
            verifier: OnceLock::new(),
            signer: OnceLock::new(),
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &Config {
        &self.config
    }
}

#[async_trait]
impl DiscoverySource for MdnsSource {
    async fn run(&self, ctx: SourceContext) -> Result<(), SourceError> {
        // One answer arrives once per family and socket: repeats are not replays.
        let verifier = self.verifier.get_or_init(|| {
            Verifier::new(self.config.signing.clone(), ctx.name.clone()).accepting_repeats()
        });
        let keep = engine::Keep {
            verifier,
            signer: &self.signer,
        };
        match engine::run(self.config.clone(), &ctx, keep).await {
            Ok(()) => Ok(()),
            Err(e) => {
                tracing::warn!(source = %ctx.name, error = %e, "mdns source failed");
                let _ = ctx.events.degraded(e.to_string()).await;
                Err(SourceError(Box::new(e)))
            }
        }
    }

    fn uses_identity(&self) -> bool {
        self.config.flavour == Flavour::Libp2p || self.config.signing.sign
    }
}
