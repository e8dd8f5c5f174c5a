//! rollcall source `static`: a bootstrap list of peers.
//!
//! Peers come from an inline list (`peers`) and/or a file (`file`, TOML or
//! JSON) that is polled and reloaded when it changes. Addresses may be DNS
//! names (`host:port`, `/dns/...`), resolved with hickory-resolver and
//! re-resolved periodically: every A/AAAA answer becomes an address. An
//! optional HTTP `probe` asks each address for the peer's identity and
//! liveness (rollcall's agent `/health` JSON or the CHORUS-style one).
//!
//! The source always publishes complete sets (`replace`). A broken file, a
//! name that does not resolve or failing probes mark it degraded with the
//! reason; the last good data is kept.
//!
//! ```toml
//! [sources.seeds]
//! type = "static"
//! peers = [{ id = "walnut", addrs = ["/ip4/192.168.1.27/tcp/9000", "walnut.lan:9000"] }]
//! file = "peers.toml"
//! watch_interval = "1s"
//! dns_refresh = "30s"
//! probe = { path = "/health", port = 8081, interval = "10s", timeout = "2s", retries = 3 }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod dns;
mod entry;
mod file;
mod probe;
mod runner;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use discovery_core::{AddrError, Alias, DiscoverySource, SourceContext, SourceError};
use serde::{Deserialize, Serialize};

use crate::entry::Entry;

/// The `[sources.NAME]` settings of a `type = "static"` source (the common
/// keys `type`, `priority`, `role`, `enabled`, `max_staleness` are not here).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Inline peers, e.g. `[{ id = "walnut", addrs = ["/ip4/192.168.1.27/tcp/9000"] }]`.
    #[serde(default)]
    pub peers: Vec<PeerEntry>,
    /// A file of more peers, watched and reloaded when it changes: TOML
    /// (`peers = [...]` / `[[peers]]`) or JSON (`{"peers": [...]}` or a bare
    /// array), chosen by the `.toml` / `.json` extension, else by trying both.
    /// A relative path is relative to the working directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    /// Largest peers file read, in bytes; a larger file is refused (the last
    /// good list is kept). The default, 64 MiB, holds about 200,000 short entries.
    #[serde(default = "default_max_file_bytes")]
    pub max_file_bytes: u64,
    /// How often the file is checked for changes (content hash; works on every file system).
    #[serde(default = "default_watch_interval", with = "humantime_serde")]
    pub watch_interval: Duration,
    /// How often DNS names are resolved again.
    #[serde(default = "default_dns_refresh", with = "humantime_serde")]
    pub dns_refresh: Duration,
    /// DNS servers as `"ip:port"` (or a bare IP for port 53); empty: the
    /// system resolver (`/etc/resolv.conf`, `/etc/hosts`).
    #[serde(default)]
    pub dns_servers: Vec<String>,
    /// Ask every address of every entry for the peer's identity over HTTP;
    /// entries that do not answer are left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<ProbeConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            peers: Vec::new(),
            file: None,
            max_file_bytes: default_max_file_bytes(),
            watch_interval: default_watch_interval(),
            dns_refresh: default_dns_refresh(),
            dns_servers: Vec::new(),
            probe: None,
        }
    }
}

/// One peer of the list.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerEntry {
    /// Agent id (also its `agent_id` alias). Required unless `probe` is set,
    /// in which case the probe supplies it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Addresses: multiaddr, `ip:port`, `[v6]:port`, `host:port` or
    /// `http://host:port`. DNS names are resolved; each answer is an address.
    #[serde(default)]
    pub addrs: Vec<String>,
    /// Extra identity claims, e.g. `[{ kind = "peer_id", value = "12D3..." }]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<Alias>,
    /// Human-readable name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Status (`online`, `idle`, `working`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Capabilities (e.g. `go_development`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<String>,
    /// Software version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Free-form labels (e.g. `model = "llama3.1:8b"`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// The HTTP identity probe: `GET http://<ip>:<port><path>` for every IP of every entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeConfig {
    /// Path of the health endpoint.
    #[serde(default = "default_probe_path")]
    pub path: String,
    /// Port of the health endpoint; unset: the TCP port of each address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// How often every entry is probed again.
    #[serde(default = "default_probe_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// Time limit of one request (connect + answer).
    #[serde(default = "default_probe_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Further tries after a failed one before the address counts as dead.
    #[serde(default = "default_probe_retries")]
    pub retries: u32,
    /// Wait before the first retry; doubles for every further retry.
    #[serde(default = "default_probe_backoff", with = "humantime_serde")]
    pub backoff: Duration,
    /// Probes in flight at once.
    #[serde(default = "default_probe_concurrency")]
    pub concurrency: usize,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        ProbeConfig {
            path: default_probe_path(),
            port: None,
            interval: default_probe_interval(),
            timeout: default_probe_timeout(),
            retries: default_probe_retries(),
            backoff: default_probe_backoff(),
            concurrency: default_probe_concurrency(),
        }
    }
}

fn default_max_file_bytes() -> u64 {
    file::DEFAULT_MAX_FILE_BYTES
}
fn default_watch_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_dns_refresh() -> Duration {
    Duration::from_secs(30)
}
fn default_probe_path() -> String {
    "/health".to_owned()
}
fn default_probe_interval() -> Duration {
    Duration::from_secs(10)
}
fn default_probe_timeout() -> Duration {
    Duration::from_secs(2)
}
fn default_probe_retries() -> u32 {
    3
}
fn default_probe_backoff() -> Duration {
    Duration::from_millis(250)
}
fn default_probe_concurrency() -> usize {
    16
}

/// A static source's configuration is invalid.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A value is wrong; `key` is its path, e.g. `peers[2].id`.
    #[error("{key}: {reason}")]
    Invalid {
        /// Path of the offending key, e.g. `peers[2].id`.
        key: String,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// An address cannot be parsed; `key` is its path, e.g. `peers[2].addrs[0]`.
    #[error("{key}: {source}")]
    Address {
        /// Path of the offending key.
        key: String,
        /// The parse error.
        #[source]
        source: AddrError,
    },
}

impl Error {
    pub(crate) fn invalid(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Invalid {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

/// Validated settings shared by every run.
#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) inline: Vec<Entry>,
    pub(crate) file: Option<PathBuf>,
    pub(crate) max_file_bytes: u64,
    pub(crate) watch_interval: Duration,
    pub(crate) dns_refresh: Duration,
    pub(crate) dns_servers: Vec<SocketAddr>,
    pub(crate) probe: Option<ProbeConfig>,
}

/// The static source. Build with [`StaticSource::new`], run through a
/// `discovery_core::Registry`.
#[derive(Debug, Clone)]
pub struct StaticSource {
    settings: Arc<Settings>,
}

impl StaticSource {
    /// Validates the configuration (no I/O: the file is read and names are
    /// resolved when the source runs). Errors name the key, e.g.
    /// `peers[2].addrs[0]: invalid address `x`: ...`.
    pub fn new(config: Config) -> Result<StaticSource, Error> {
        nonzero("watch_interval", config.watch_interval)?;
        nonzero("dns_refresh", config.dns_refresh)?;
        if let Some(p) = &config.probe {
            if !p.path.starts_with('/') {
                return Err(Error::invalid(
                    "probe.path",
                    format!("`{}` must start with `/` (e.g. \"/health\")", p.path),
                ));
            }
            if p.port == Some(0) {
                return Err(Error::invalid(
                    "probe.port",
                    "0 is not a port (1 to 65535, or leave it out to use each address's port)",
                ));
            }
            nonzero("probe.interval", p.interval)?;
            nonzero("probe.timeout", p.timeout)?;
            if p.concurrency == 0 {
                return Err(Error::invalid("probe.concurrency", "must be at least 1"));
            }
        }
        if config.max_file_bytes == 0 {
            return Err(Error::invalid(
                "max_file_bytes",
                "must be at least 1 (the default is 67108864, 64 MiB)",
            ));
        }
        if let Some(f) = &config.file {
            if f.as_os_str().is_empty() {
                return Err(Error::invalid(
                    "file",
                    "empty path (leave `file` out for no file)",
                ));
            }
        }
        let dns_servers = config
            .dns_servers
            .iter()
            .enumerate()
            .map(|(i, s)| {
                parse_dns_server(s).map_err(|r| Error::invalid(format!("dns_servers[{i}]"), r))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let inline = entry::validate(&config.peers, config.probe.as_ref(), &[])
            .map_err(|e| e.into_error("peers"))?;
        Ok(StaticSource {
            settings: Arc::new(Settings {
                inline,
                file: config.file,
                max_file_bytes: config.max_file_bytes,
                watch_interval: config.watch_interval,
                dns_refresh: config.dns_refresh,
                dns_servers,
                probe: config.probe,
            }),
        })
    }
}

fn nonzero(key: &str, d: Duration) -> Result<(), Error> {
    if d.is_zero() {
        return Err(Error::invalid(
            key,
            "must be longer than zero (e.g. \"1s\")",
        ));
    }
    Ok(())
}

fn parse_dns_server(s: &str) -> Result<SocketAddr, String> {
    let t = s.trim();
    if let Ok(sa) = t.parse::<SocketAddr>() {
        return Ok(sa);
    }
    if let Ok(ip) = t
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        return Ok(SocketAddr::new(ip, 53));
    }
    Err(format!(
        "`{s}` is not \"ip:port\", \"[v6]:port\" or an IP address"
    ))
}

#[async_trait]
impl DiscoverySource for StaticSource {
    async fn run(&self, ctx: SourceContext) -> Result<(), SourceError> {
        runner::Runner::new(self.settings.clone(), ctx).run().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(toml_text: &str) -> Config {
        toml::from_str(toml_text).expect("config parses")
    }

    #[test]
    fn defaults() {
        let c = cfg("");
        assert_eq!(c, Config::default());
        StaticSource::new(Config::default()).expect("the default config is valid");
        assert_eq!(c.watch_interval, Duration::from_secs(1));
        assert_eq!(c.dns_refresh, Duration::from_secs(30));
        assert_eq!(c.max_file_bytes, 64 * 1024 * 1024);
        let p = cfg("probe = {}").probe.expect("probe");
        assert_eq!(p, ProbeConfig::default());
        assert_eq!(p.path, "/health");
        assert_eq!(p.retries, 3);
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            (
                r#"peers = [{ id = "a", addrs = ["1.2.3.4:1"] }, { id = "b", addrs = ["x y"] }]"#,
                "peers[1].addrs[0]: invalid address `x y`",
            ),
            (
                r#"peers = [{ addrs = ["1.2.3.4:1"] }]"#,
                "peers[0].id: missing",
            ),
            (
                r#"peers = [{ id = "a" }, { id = "a" }]"#,
                "peers[1].id: duplicate id `a` (also peers[0])",
            ),
            (r#"peers = [{ id = " " }]"#, "peers[0].id: empty"),
            (r#"dns_servers = ["nope"]"#, "dns_servers[0]:"),
            (
                r#"watch_interval = "0s""#,
                "watch_interval: must be longer than zero",
            ),
            (r#"probe = { path = "health" }"#, "probe.path:"),
            ("max_file_bytes = 0", "max_file_bytes: must be at least 1"),
            (
                r#"probe = { port = 8081 }
peers = [{ addrs = [] }]"#,
                "peers[0].addrs: empty",
            ),
            (
                r#"probe = {}
peers = [{ id = "a", addrs = ["/ip4/1.2.3.4"] }]"#,
                "peers[0].addrs[0]: `/ip4/1.2.3.4` has no TCP port",
            ),
            (
                r#"probe = {}
peers = [{ addrs = ["1.2.3.4:1"] }, { addrs = ["1.2.3.4:1"] }]"#,
                "peers[1].addrs[0]: duplicate entry",
            ),
        ];
        for (text, want) in cases {
            let err = StaticSource::new(cfg(text)).expect_err(text).to_string();
            assert!(
                err.starts_with(want),
                "{text}\n  got:  {err}\n  want: {want}..."
            );
        }
    }

    #[test]
    fn valid_configs_pass() {
        StaticSource::new(cfg(
            r#"
            dns_servers = ["127.0.0.1:5353", "::1", "10.0.0.1"]
            peers = [
              { id = "walnut", addrs = ["/ip4/192.168.1.27/tcp/9000", "10.0.0.2:9000", "walnut.lan:9000"], capabilities = ["x"], labels = { model = "m" }, name = "Walnut", status = "online" },
              { id = "bare" },
            ]"#,
        ))
        .expect("valid");
        StaticSource::new(cfg(r#"
            probe = { port = 8081 }
            peers = [{ addrs = ["tasks.chorus:9000"] }, { id = "x", addrs = ["/ip4/10.0.0.1"] }]"#))
        .expect("valid with probe");
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(toml::from_str::<Config>("peer = []").is_err());
        assert!(toml::from_str::<Config>(r#"peers = [{ id = "a", adrs = [] }]"#).is_err());
        assert!(toml::from_str::<Config>("probe = { intervall = \"1s\" }").is_err());
    }

    #[test]
    fn config_round_trips() {
        let c = cfg(r#"
            file = "p.toml"
            max_file_bytes = 200_000_000
            probe = { port = 8081 }
            peers = [{ id = "a", addrs = ["1.2.3.4:1"], labels = { k = "v" } }]"#);
        let text = toml::to_string(&c).expect("serializes");
        assert_eq!(toml::from_str::<Config>(&text).expect("parses back"), c);
    }
}
