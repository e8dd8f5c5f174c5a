//! `[sources.NAME] type = "dht"`: the keys of this backend.

use std::time::Duration;

use discovery_core::signed::SigningConfig;
use serde::{Deserialize, Serialize};

/// Settings of one dht source.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Multiaddrs the libp2p host listens on (TCP).
    #[serde(default = "default_listen")]
    pub listen: Vec<String>,
    /// Peers to join the DHT through: multiaddrs with or without `/p2p/<id>`
    /// (without, the host dials and learns the id). May be empty when other
    /// sources of the registry find peers with a `peer_id` alias.
    #[serde(default)]
    pub bootstrap: Vec<String>,
    /// The namespace agents provide and discoverers look up.
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// The Kademlia protocol name (kept apart from the public IPFS DHT).
    #[serde(default = "default_protocol")]
    pub protocol: String,
    /// Provider keys the namespace is split into (each key holds <= 20
    /// providers per reply, so a cluster needs about size/10 shards).
    #[serde(default = "default_shards")]
    pub shards: u16,
    /// Providers one node stores per key (libp2p's default of 20 drops the rest).
    #[serde(default = "default_max_providers_per_key")]
    pub max_providers_per_key: usize,
    /// How often discoverers look all shards up again.
    #[serde(default = "default_lookup_interval", with = "humantime_serde")]
    pub lookup_interval: Duration,
    /// Ping interval; an observation lives 3 of these without an answer.
    #[serde(default = "default_ping_interval", with = "humantime_serde")]
    pub ping_interval: Duration,
    /// Lifetime of a provider record in the DHT.
    #[serde(default = "default_provider_ttl", with = "humantime_serde")]
    pub provider_ttl: Duration,
    /// How often agents publish their provider record again.
    #[serde(default = "default_republish_interval", with = "humantime_serde")]
    pub republish_interval: Duration,
    /// How often the host bootstraps again (bootstrap list, roster peers, kad refresh).
    #[serde(default = "default_bootstrap_interval", with = "humantime_serde")]
    pub bootstrap_interval: Duration,
    /// Largest metadata reply accepted, in bytes.
    #[serde(default = "default_metadata_max_bytes")]
    pub metadata_max_bytes: u64,
    /// An agent also discovers the others (false: it only provides and
    /// answers; it looks nothing up and dials no provider).
    #[serde(default = "default_discover")]
    pub discover: bool,
    /// `[sources.NAME.signing]`: sign the metadata this agent answers with, and
    /// what a discoverer accepts (`require_signed`, `trusted_keys`, `tofu`).
    #[serde(default)]
    pub signing: SigningConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: default_listen(),
            bootstrap: Vec::new(),
            namespace: default_namespace(),
            protocol: default_protocol(),
            shards: default_shards(),
            max_providers_per_key: default_max_providers_per_key(),
            lookup_interval: default_lookup_interval(),
            ping_interval: default_ping_interval(),
            provider_ttl: default_provider_ttl(),
            republish_interval: default_republish_interval(),
            bootstrap_interval: default_bootstrap_interval(),
            metadata_max_bytes: default_metadata_max_bytes(),
            discover: default_discover(),
            signing: SigningConfig::default(),
        }
    }
}

impl Config {
    /// How long an observation lives without an answer: 3 ping intervals.
    pub fn observation_ttl(&self) -> Duration {
        self.ping_interval * 3
    }
}

fn default_listen() -> Vec<String> {
    vec!["/ip4/0.0.0.0/tcp/0".into()]
}
fn default_namespace() -> String {
    "rollcall".into()
}
fn default_protocol() -> String {
    "/rollcall/kad/1.0.0".into()
}
fn default_shards() -> u16 {
    16
}
fn default_max_providers_per_key() -> usize {
    1024
}
fn default_lookup_interval() -> Duration {
    Duration::from_secs(10)
}
fn default_ping_interval() -> Duration {
    Duration::from_secs(2)
}
fn default_provider_ttl() -> Duration {
    Duration::from_secs(120)
}
fn default_republish_interval() -> Duration {
    Duration::from_secs(30)
}
fn default_bootstrap_interval() -> Duration {
    Duration::from_secs(30)
}
fn default_metadata_max_bytes() -> u64 {
    16 * 1024
}
fn default_discover() -> bool {
    true
}
