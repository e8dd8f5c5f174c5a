//! The configuration sections the core owns: `[registry]`, `[local]`, and the
//! keys every `[sources.NAME]` accepts.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::addr::{parse_addr, AddrError, AddressClass, AddressPolicy};
use crate::model::{Alias, LocalPeer, Metadata, Role};

/// `[registry]`: how observations are merged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// Address classes dropped from the roster (`loopback`, `link_local`,
    /// `private`, `dns`); `[]` keeps all. Unspecified addresses are always dropped.
    #[serde(default = "default_exclude_addresses")]
    pub exclude_addresses: Vec<AddressClass>,
    /// Networks (CIDRs) whose addresses are ranked first, in this order.
    #[serde(default)]
    pub prefer_networks: Vec<IpNet>,
    /// Roster cache: saved while running, reloaded at start as low-priority
    /// observations so a restart has a list at once.
    #[serde(default)]
    pub cache_file: Option<PathBuf>,
    /// How often the cache file is rewritten when the roster changed.
    #[serde(default = "default_cache_interval", with = "humantime_serde")]
    pub cache_interval: Duration,
    /// How long a failing source without TTLs keeps its last good set.
    #[serde(default = "default_max_staleness", with = "humantime_serde")]
    pub max_staleness: Duration,
    /// First delay before restarting a failed source; doubles per failure.
    #[serde(default = "default_restart_backoff", with = "humantime_serde")]
    pub restart_backoff: Duration,
    /// Longest delay between restarts of a failed source.
    #[serde(default = "default_restart_backoff_max", with = "humantime_serde")]
    pub restart_backoff_max: Duration,
    /// Events buffered per watcher; a watcher further behind is resynced with a snapshot.
    #[serde(default = "default_watch_buffer")]
    pub watch_buffer: usize,
    /// How long every primary must stay healthy before fallback sources that
    /// stood in stand down again (hysteresis; the first stand-down at start is immediate).
    #[serde(default = "default_fallback_hold", with = "humantime_serde")]
    pub fallback_hold: Duration,
}

fn default_exclude_addresses() -> Vec<AddressClass> {
    vec![AddressClass::Loopback, AddressClass::LinkLocal]
}
fn default_cache_interval() -> Duration {
    Duration::from_secs(5)
}
fn default_max_staleness() -> Duration {
    Duration::from_secs(300)
}
fn default_restart_backoff() -> Duration {
    Duration::from_millis(500)
}
fn default_restart_backoff_max() -> Duration {
    Duration::from_secs(30)
}
fn default_fallback_hold() -> Duration {
    Duration::from_secs(10)
}
fn default_watch_buffer() -> usize {
    1024
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            exclude_addresses: default_exclude_addresses(),
            prefer_networks: Vec::new(),
            cache_file: None,
            cache_interval: default_cache_interval(),
            max_staleness: default_max_staleness(),
            restart_backoff: default_restart_backoff(),
            restart_backoff_max: default_restart_backoff_max(),
            watch_buffer: default_watch_buffer(),
            fallback_hold: default_fallback_hold(),
        }
    }
}

impl RegistryConfig {
    /// The address policy these settings describe.
    pub fn address_policy(&self) -> AddressPolicy {
        AddressPolicy {
            exclude: self.exclude_addresses.clone(),
            prefer: self.prefer_networks.clone(),
        }
    }
}

/// `[local]`: the peer this process announces as an agent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalConfig {
    /// Agent id, unique in the cluster (e.g. `chorus-agent-7`). `${HOSTNAME}`
    /// style values are not expanded: set it through `ROLLCALL__LOCAL__ID`.
    pub id: String,
    /// Human-readable name.
    #[serde(default)]
    pub name: Option<String>,
    /// Addresses to announce (multiaddr, `ip:port`, `host:port`, `http://...`).
    #[serde(default)]
    pub addrs: Vec<String>,
    /// Capabilities (e.g. `go_development`).
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// Free-form labels (e.g. `model = "llama3.1:8b"`).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Status (`online`, `idle`, `working`).
    #[serde(default = "default_status")]
    pub status: String,
    /// Software version announced.
    #[serde(default)]
    pub version: Option<String>,
    /// Extra identity claims, e.g. `[{ kind = "peer_id", value = "12D3..." }]`.
    #[serde(default)]
    pub aliases: Vec<Alias>,
    /// Where `rollcall agent` answers `GET /health` with its identity (e.g. "0.0.0.0:8081").
    #[serde(default)]
    pub health_listen: Option<SocketAddr>,
    /// Add the container id (read from the hostname and cgroup) as an alias, so
    /// Docker sightings of this process merge with its announcements.
    #[serde(default = "default_true")]
    pub detect_container: bool,
}

fn default_status() -> String {
    "online".to_owned()
}
fn default_true() -> bool {
    true
}

impl LocalConfig {
    /// The announced peer. Addresses that cannot be parsed are an error naming them.
    pub fn to_local_peer(&self) -> Result<LocalPeer, AddrError> {
        let addrs = self
            .addrs
            .iter()
            .map(|a| parse_addr(a))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(LocalPeer {
            id: self.id.clone(),
            aliases: self.aliases.clone(),
            addrs,
            meta: Metadata {
                name: self.name.clone(),
                status: Some(self.status.clone()),
                capabilities: self.capabilities.clone(),
                version: self.version.clone(),
                labels: self.labels.clone().into(),
            },
        })
    }
}

/// Keys every `[sources.NAME]` accepts besides its backend's own.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceCommon {
    /// Merge priority: the highest-priority source that has a field wins it.
    #[serde(default)]
    pub priority: i32,
    /// `primary` (always counts) or `fallback` (counts only while every primary is degraded or empty).
    #[serde(default)]
    pub role: Role,
    /// `false` keeps the section but does not run it.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Overrides `[registry] max_staleness` for this source.
    #[serde(default, with = "humantime_serde")]
    pub max_staleness: Option<Duration>,
}

impl Default for SourceCommon {
    fn default() -> Self {
        SourceCommon {
            priority: 0,
            role: Role::Primary,
            enabled: true,
            max_staleness: None,
        }
    }
}

impl SourceCommon {
    /// The common keys' names, split off before the backend's own config is read.
    pub const KEYS: [&'static str; 4] = ["priority", "role", "enabled", "max_staleness"];
}

/// `[identity]`: the libp2p identity key shared by every part that speaks
/// libp2p or signs (mdns libp2p flavour, dht, signed records).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityConfig {
    /// The ed25519 key file (libp2p protobuf encoding), created on first start
    /// when missing. Relative paths are taken from the working directory.
    #[serde(default = "default_identity_file")]
    pub file: PathBuf,
}

fn default_identity_file() -> PathBuf {
    PathBuf::from("rollcall-identity.key")
}

impl Default for IdentityConfig {
    fn default() -> Self {
        IdentityConfig {
            file: default_identity_file(),
        }
    }
}
