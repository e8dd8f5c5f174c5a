//! rollcall: find every peer of a cluster and keep one deduplicated, current roster.
//!
//! This facade re-exports [`discovery_core`] and each backend behind a feature
//! named after it (`static`, `nats`, `swarm`, `mdns`, `dht`; `full` for all;
//! `tower` for `Registry::peer_changes`), and turns a
//! configuration file into a running [`Registry`]. It compiles nothing of the
//! CLI and daemon (crate `rollcall-cli`, the `rollcall` binary) or of the
//! comparison harness (crate `rollcall-compare`).
#![forbid(unsafe_code)]

pub mod agent;
mod backends;
pub mod config;

pub use backends::*;
pub use discovery_core::*;

use config::Config;

/// Why a configuration could not be turned into a running registry.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// A source's settings were refused by its backend.
    #[error("sources.{name}: {message}")]
    Source {
        /// The source name.
        name: String,
        /// The backend's reason.
        message: String,
    },
    /// `[local]` is needed (agent mode) but missing or invalid.
    #[error("{0}")]
    Local(String),
    /// The registry refused the set of sources.
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

/// Builds every enabled source of `cfg` into a registry builder (no I/O yet).
pub fn builder(cfg: &Config) -> Result<RegistryBuilder, StartError> {
    let mut b = RegistryBuilder::new(cfg.registry.clone()).identity_file(&cfg.identity.file);
    for s in cfg.enabled_sources() {
        let source = s.build().map_err(|message| StartError::Source {
            name: s.name.clone(),
            message,
        })?;
        let options = SourceOptions {
            priority: s.common.priority,
            role: s.common.role,
            max_staleness: s.common.max_staleness,
        };
        b = b.source_arc(s.name.as_str(), options, source);
    }
    Ok(b)
}

/// Starts a registry that discovers only.
pub fn discover(cfg: &Config) -> Result<Registry, StartError> {
    let mut b = builder(cfg)?;
    if let Some(local) = &cfg.local {
        if let Ok(peer) = local.to_local_peer() {
            b = b.local(peer);
        }
    }
    Ok(b.start()?)
}

/// Starts a registry that announces `[local]` through every source that can.
pub fn announce(cfg: &Config) -> Result<(Registry, LocalPeer), StartError> {
    let local = agent::local_peer(cfg)?;
    let registry = builder(cfg)?.announce(local.clone()).start()?;
    Ok((registry, local))
}
