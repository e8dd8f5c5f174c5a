//! What can go wrong, each with the fix in its message.

use std::path::PathBuf;

/// Errors of the swarm source. The `Display` text is also the reason the
/// source reports when it is degraded, so each one says what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A key is missing, malformed or does not fit the mode.
    #[error("swarm source config: {0}")]
    Config(String),
    /// The unix socket does not exist.
    #[error(
        "no Docker socket at {path}: is dockerd running on this host? (mount it with `-v /var/run/docker.sock:/var/run/docker.sock`, set `docker_host`/DOCKER_HOST, or use mode = \"dns\")"
    )]
    SocketMissing {
        /// The socket path.
        path: PathBuf,
    },
    /// The unix socket exists but this process may not open it.
    #[error(
        "permission denied on the Docker socket {path}: run as root or as a member of the socket's group (usually `docker`), or mount the socket into the container"
    )]
    PermissionDenied {
        /// The socket path.
        path: PathBuf,
    },
    /// The daemon could not be reached or did not answer (refused, reset, timed out).
    #[error("cannot reach the Docker daemon at {endpoint}: {reason}")]
    Connect {
        /// The endpoint, as `unix://...` or `tcp://...`.
        endpoint: String,
        /// What failed, with its causes.
        reason: String,
    },
    /// Certificates could not be read or the TLS handshake failed.
    #[error("TLS to the Docker daemon at {endpoint}: {reason}")]
    Tls {
        /// The endpoint.
        endpoint: String,
        /// What failed.
        reason: String,
    },
    /// `mode = "api"` on a daemon that is not part of a swarm.
    #[error(
        "the Docker daemon at {endpoint} is not part of a swarm (state: {state}): run `docker swarm init`, point `docker_host` at a swarm manager, or use mode = \"containers\""
    )]
    NotInSwarm {
        /// The endpoint.
        endpoint: String,
        /// The node's swarm state as Docker reports it.
        state: String,
    },
    /// `mode = "api"` on a worker node: the Swarm API answers only on managers.
    #[error(
        "the Docker daemon at {endpoint} is a swarm worker: the Swarm API answers only on managers. Point `docker_host` at a manager (e.g. tcp://MANAGER:2376 with TLS), run the discoverer on a manager (placement constraint node.role == manager), or use mode = \"dns\""
    )]
    NotManager {
        /// The endpoint.
        endpoint: String,
    },
    /// Docker answered with an error status.
    #[error("Docker API {what} failed with status {status}: {message}")]
    Api {
        /// The request, e.g. `GET /tasks`.
        what: String,
        /// HTTP status.
        status: u16,
        /// Docker's message.
        message: String,
    },
    /// Docker's answer could not be understood.
    #[error("unexpected answer to Docker API {what}: {reason}")]
    Protocol {
        /// The request.
        what: String,
        /// What was wrong with it.
        reason: String,
    },
    /// A `tasks.<service>` lookup failed (not a plain "no such name").
    #[error("DNS lookup of {name} via {server} failed: {reason}")]
    Dns {
        /// The name looked up.
        name: String,
        /// The server asked.
        server: String,
        /// What failed.
        reason: String,
    },
}

/// An error and its causes, `outer: inner: innermost`, without repeats.
pub(crate) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let t = s.to_string();
        if !parts.iter().any(|p| p.contains(&t)) {
            parts.push(t);
        }
        cur = s.source();
    }
    parts.join(": ")
}
