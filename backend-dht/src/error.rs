//! What can go wrong in a dht source.

/// A dht source error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A `listen` or `bootstrap` entry is not a multiaddr.
    #[error("dht: `{key}` entry {value:?} is not a multiaddr: {reason}")]
    Addr {
        /// The config key.
        key: &'static str,
        /// The entry.
        value: String,
        /// Why.
        reason: String,
    },
    /// Another config value is unusable.
    #[error("dht: `{key}`: {reason}")]
    Config {
        /// The config key.
        key: &'static str,
        /// Why.
        reason: String,
    },
    /// The identity key file cannot be used.
    #[error("dht: {0}")]
    Identity(String),
    /// The libp2p host could not be built or could not listen.
    #[error("dht: libp2p host: {0}")]
    Host(String),
}
