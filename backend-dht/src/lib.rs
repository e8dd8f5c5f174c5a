//! backend-dht: discovery over libp2p Kademlia, for agents that share neither
//! a broker, nor a Docker socket, nor one LAN.
//!
//! Agents provide one shard key of the namespace; discoverers look every shard
//! up, dial each provider, and report it only while it answers (ping,
//! identify, the metadata protocol): provider records say who *was* there,
//! connections say who *is*. See the README's dht section.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod behaviour;
mod bootstrap;
mod config;
mod error;
mod host;
mod liveness;
pub mod metadata;
mod metrics_names;
pub mod shards;
mod signing;

use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use discovery_core::signed::Verifier;
use discovery_core::{DiscoverySource, SourceContext, SourceError};

pub use bootstrap::BootstrapAddr;
pub use config::Config;
pub use error::Error;

/// The dht source.
#[derive(Debug, Clone)]
pub struct DhtSource {
    cfg: Config,
    bootstrap: Vec<BootstrapAddr>,
    listen: Vec<libp2p::Multiaddr>,
    /// Kept across restarts of the source: pinned keys and last sequences
    /// must outlive a restart, or a replay would pass after one.
    verifier: Arc<OnceLock<Verifier>>,
    signer: Arc<OnceLock<signing::Signer>>,
}

impl DhtSource {
    /// Checks the config and builds the source.
    pub fn new(cfg: Config) -> Result<Self, Error> {
        let bootstrap = cfg
            .bootstrap
            .iter()
            .map(|s| BootstrapAddr::parse(s))
            .collect::<Result<Vec<_>, _>>()?;
        let listen = cfg
            .listen
            .iter()
            .map(|s| {
                s.parse()
                    .map_err(|e: libp2p::multiaddr::Error| Error::Addr {
                        key: "listen",
                        value: s.clone(),
                        reason: e.to_string(),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if cfg.shards == 0 {
            return Err(Error::Config {
                key: "shards",
                reason: "must be at least 1".into(),
            });
        }
        if cfg.ping_interval.is_zero() || cfg.lookup_interval.is_zero() {
            return Err(Error::Config {
                key: "ping_interval",
                reason: "intervals must be above zero".into(),
            });
        }
        libp2p::StreamProtocol::try_from_owned(cfg.protocol.clone()).map_err(|e| {
            Error::Config {
                key: "protocol",
                reason: e.to_string(),
            }
        })?;
        cfg.signing
            .validate()
            .map_err(|(key, reason)| Error::Config { key, reason })?;
        Ok(DhtSource {
            cfg,
            bootstrap,
            listen,
            verifier: Arc::default(),
            signer: Arc::default(),
        })
    }

    /// The config it runs with.
    pub fn config(&self) -> &Config {
        &self.cfg
    }
}

#[async_trait]
impl DiscoverySource for DhtSource {
    async fn run(&self, ctx: SourceContext) -> Result<(), SourceError> {
        let identity = discovery_core::identity::load_or_create(&ctx.identity_file)
            .map_err(|e| SourceError(Box::new(Error::Identity(e.to_string()))))?;
        // discovery-core uses libp2p-identity 0.2, libp2p 0.57 uses 0.3: the
        // protobuf encoding is the same key in both.
        let bytes = identity
            .keypair()
            .to_protobuf_encoding()
            .map_err(|e| SourceError(Box::new(Error::Identity(e.to_string()))))?;
        let key = libp2p::identity::Keypair::from_protobuf_encoding(&bytes)
            .map_err(|e| SourceError(Box::new(Error::Identity(e.to_string()))))?;
        let verifier = self
            .verifier
            .get_or_init(|| Verifier::new(self.cfg.signing.clone(), ctx.name.clone()))
            .clone();
        let signer = self.cfg.signing.sign.then(|| {
            self.signer
                .get_or_init(|| signing::Signer::new(identity.clone()))
        });
        host::run(self, key, ctx, verifier, signer)
            .await
            .map_err(|e| SourceError(Box::new(e)))
    }

    fn uses_identity(&self) -> bool {
        true
    }
}
