//! `[sources.NAME] type = "swarm"`: the keys of this backend, and their validation.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::docker::Endpoint;
use crate::Error;

/// How the source finds peers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Mode {
    /// The Swarm API of a manager: every task of the selected services whose
    /// desired and actual state are both `running`, with its overlay addresses,
    /// task id, container id, service, slot and node. Needs the Docker socket
    /// (or a TCP endpoint) of a **manager** node.
    #[default]
    Api,
    /// `tasks.<service>` through Docker's embedded DNS (127.0.0.11 inside a
    /// container on the service's network). Needs no Docker socket, but DNS
    /// knows only IP addresses: no task id, container id, labels or node.
    Dns,
    /// Plain containers selected by label on any daemon, swarm or not
    /// (docker compose users): one observation per running container.
    Containers,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Api => "api",
            Mode::Dns => "dns",
            Mode::Containers => "containers",
        })
    }
}

/// The keys of a `type = "swarm"` source.
///
/// ```toml
/// [sources.swarm]
/// type = "swarm"
/// service = "CHORUS_chorus"          # or ["a", "b"]; and/or label = "rollcall.discover"
/// port = 9000                        # else the service label `rollcall.port`, else its first published target port
/// network = "CHORUS_net"             # default: every attached network except `ingress`
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Services to watch, by exact name: `"chorus"` or `["chorus", "whoosh"]`.
    /// In `api` mode, combined with `label` (both must match). In `dns` mode,
    /// the names whose `tasks.<name>` are resolved (required). In `containers`
    /// mode, matched against the docker compose label
    /// `com.docker.compose.service`.
    #[serde(default = "default_list", with = "one_or_many")]
    pub service: Vec<String>,
    /// Label selector(s): `"key=value"` or `"key"` (present with any value); a
    /// list means every selector must match. In `api` mode they select
    /// services by their labels; in `containers` mode, containers by theirs.
    /// Not allowed in `dns` mode.
    #[serde(default = "default_list", with = "one_or_many")]
    pub label: Vec<String>,
    /// `api` (Swarm API on a manager), `dns` (`tasks.<service>` through
    /// Docker's embedded DNS, no socket needed) or `containers` (plain
    /// containers by label, no swarm needed).
    #[serde(default = "default_mode")]
    pub mode: Mode,
    /// TCP port put in every address. When unset: in `api` mode the service
    /// (or container) label named by `port_label`, else the service's first
    /// published TCP target port; in `containers` mode the container label,
    /// else its first exposed TCP port; in `dns` mode addresses carry no port.
    #[serde(default = "default_port")]
    pub port: Option<u16>,
    /// Networks whose addresses are reported, by name or id (string or list),
    /// in order of preference. Default: every attached network except Swarm's
    /// routing-mesh `ingress` network. Not allowed in `dns` mode (the answer
    /// depends on the network of the resolving container).
    #[serde(default = "default_list", with = "one_or_many")]
    pub network: Vec<String>,
    /// Docker endpoint: `unix:///var/run/docker.sock`, `tcp://host:2376`,
    /// `https://host:2376` or `http://host:2375`. Default: `DOCKER_HOST` (with
    /// `DOCKER_TLS_VERIFY`/`DOCKER_CERT_PATH` as the docker CLI reads them),
    /// else `unix:///var/run/docker.sock`. Not used in `dns` mode.
    #[serde(default = "default_docker_host")]
    pub docker_host: Option<String>,
    /// CA certificate (PEM) the daemon's TLS certificate must chain to. Setting
    /// any `tls_*` key turns TLS on for a `tcp://` endpoint.
    #[serde(default = "default_tls_path")]
    pub tls_ca: Option<PathBuf>,
    /// Client certificate (PEM) for a daemon started with `--tlsverify`; needs `tls_key`.
    #[serde(default = "default_tls_path")]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) of `tls_cert`.
    #[serde(default = "default_tls_path")]
    pub tls_key: Option<PathBuf>,
    /// Full refresh this often, whatever the events said (catches what events
    /// miss, e.g. crashes on other nodes: Swarm emits no task events and
    /// container events are per node). In `dns` mode, the poll interval.
    #[serde(default = "default_resync", with = "humantime_serde")]
    pub resync: Duration,
    /// Events are coalesced: a refresh runs once no event came for this long
    /// (and at the latest ten times this long after the first of a burst).
    #[serde(default = "default_debounce", with = "humantime_serde")]
    pub debounce: Duration,
    /// While a selected service is converging (tasks starting or stopping,
    /// fewer or more running than its replica count), refresh this often, for
    /// at most a minute after the last event.
    #[serde(default = "default_converge_poll", with = "humantime_serde")]
    pub converge_poll: Duration,
    /// Time limit of each Docker API call or DNS lookup.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// `dns` mode: the DNS server, `ip` or `ip:port`. Docker's embedded DNS
    /// answers on 127.0.0.11 inside every container on a user-defined network.
    #[serde(default = "default_dns_server")]
    pub dns_server: String,
    /// Service or container label holding the port (`api`, `containers` modes).
    #[serde(default = "default_port_label")]
    pub port_label: String,
    /// Service or container label holding comma-separated capabilities
    /// (e.g. `go_development,database_design`); the container's wins.
    #[serde(default = "default_capabilities_label")]
    pub capabilities_label: String,
}

fn default_list() -> Vec<String> {
    Vec::new()
}
fn default_mode() -> Mode {
    Mode::Api
}
fn default_port() -> Option<u16> {
    None
}
fn default_docker_host() -> Option<String> {
    None
}
fn default_tls_path() -> Option<PathBuf> {
    None
}
fn default_resync() -> Duration {
    Duration::from_secs(5)
}
fn default_debounce() -> Duration {
    Duration::from_millis(100)
}
fn default_converge_poll() -> Duration {
    Duration::from_millis(250)
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_dns_server() -> String {
    "127.0.0.11".to_owned()
}
fn default_port_label() -> String {
    "rollcall.port".to_owned()
}
fn default_capabilities_label() -> String {
    "rollcall.capabilities".to_owned()
}

impl Default for Config {
    fn default() -> Self {
        Config {
            service: default_list(),
            label: default_list(),
            mode: default_mode(),
            port: default_port(),
            network: default_list(),
            docker_host: default_docker_host(),
            tls_ca: default_tls_path(),
            tls_cert: default_tls_path(),
            tls_key: default_tls_path(),
            resync: default_resync(),
            debounce: default_debounce(),
            converge_poll: default_converge_poll(),
            timeout: default_timeout(),
            dns_server: default_dns_server(),
            port_label: default_port_label(),
            capabilities_label: default_capabilities_label(),
        }
    }
}

/// `"one"` or `["one", "two"]` in config, always a list in Rust.
mod one_or_many {
    use std::fmt;

    use serde::de::{self, SeqAccess, Visitor};
    use serde::{Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(v: &[String], s: S) -> Result<S::Ok, S::Error> {
        v.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Vec<String>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(vec![v.to_owned()])
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    out.push(s);
                }
                Ok(out)
            }
        }
        d.deserialize_any(V)
    }
}

/// One label selector: `key=value`, or `key` alone (present with any value).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LabelSelector {
    pub key: String,
    pub value: Option<String>,
}

impl LabelSelector {
    fn parse(s: &str) -> Result<Self, Error> {
        let s = s.trim();
        let (key, value) = match s.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v.trim().to_owned())),
            None => (s, None),
        };
        if key.is_empty() {
            return Err(Error::Config(format!(
                "label selector `{s}` has no key: write \"key=value\" or \"key\""
            )));
        }
        Ok(LabelSelector {
            key: key.to_owned(),
            value,
        })
    }

    /// Whether a set of labels satisfies this selector.
    pub fn matches(&self, labels: &HashMap<String, String>) -> bool {
        match (&self.value, labels.get(&self.key)) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(want), Some(have)) => want == have,
        }
    }

    /// The form Docker's `label` filter takes.
    pub fn as_filter(&self) -> String {
        match &self.value {
            Some(v) => format!("{}={v}", self.key),
            None => self.key.clone(),
        }
    }
}

/// A validated configuration.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub mode: Mode,
    pub services: Vec<String>,
    pub labels: Vec<LabelSelector>,
    pub port: Option<u16>,
    pub networks: Vec<String>,
    /// `None` in dns mode.
    pub endpoint: Option<Endpoint>,
    pub dns_server: SocketAddr,
    pub resync: Duration,
    pub debounce: Duration,
    pub converge_poll: Duration,
    pub timeout: Duration,
    pub port_label: String,
    pub capabilities_label: String,
}

fn err(msg: impl Into<String>) -> Error {
    Error::Config(msg.into())
}

fn parse_dns_server(s: &str) -> Result<SocketAddr, Error> {
    let s = s.trim();
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Ok(sa);
    }
    let bare = s.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)).map_err(|_| {
        err(format!(
            "`dns_server` = \"{s}\" is not an IP address or ip:port (e.g. \"127.0.0.11\" or \"10.0.0.2:53\")"
        ))
    })
}

fn clean_list(key: &str, items: &[String]) -> Result<Vec<String>, Error> {
    let mut out: Vec<String> = Vec::new();
    for i in items {
        let t = i.trim();
        if t.is_empty() {
            return Err(err(format!("`{key}` contains an empty name")));
        }
        if !out.iter().any(|o| o == t) {
            out.push(t.to_owned());
        }
    }
    Ok(out)
}

impl Config {
    /// Checks every key and resolves the Docker endpoint (reads `DOCKER_HOST`
    /// and friends from the environment, touches no file or socket).
    pub(crate) fn validate(&self) -> Result<Settings, Error> {
        let services = clean_list("service", &self.service)?;
        let networks = clean_list("network", &self.network)?;
        let labels = self
            .label
            .iter()
            .map(|l| LabelSelector::parse(l))
            .collect::<Result<Vec<_>, _>>()?;
        for (key, d) in [
            ("resync", self.resync),
            ("converge_poll", self.converge_poll),
            ("timeout", self.timeout),
        ] {
            if d.is_zero() {
                return Err(err(format!("`{key}` must be greater than zero")));
            }
        }
        if self.debounce >= self.resync {
            return Err(err(format!(
                "`debounce` ({:?}) must be shorter than `resync` ({:?})",
                self.debounce, self.resync
            )));
        }
        if self.port == Some(0) {
            return Err(err("`port` must be from 1 to 65535"));
        }
        if self.port_label.trim().is_empty() || self.capabilities_label.trim().is_empty() {
            return Err(err(
                "`port_label` and `capabilities_label` must not be empty",
            ));
        }
        let dns_server = parse_dns_server(&self.dns_server)?;
        let tls_set = self.tls_ca.is_some() || self.tls_cert.is_some() || self.tls_key.is_some();
        let endpoint = match self.mode {
            Mode::Dns => {
                if services.is_empty() {
                    return Err(err(
                        "mode = \"dns\" needs `service`: the names whose tasks.<service> are resolved",
                    ));
                }
                for (key, set) in [
                    ("label", !labels.is_empty()),
                    ("network", !networks.is_empty()),
                    ("docker_host", self.docker_host.is_some()),
                    ("tls_ca/tls_cert/tls_key", tls_set),
                ] {
                    if set {
                        return Err(err(format!(
                            "`{key}` cannot be used with mode = \"dns\": DNS knows only service names and IP addresses (use mode = \"api\" for labels, networks and identity)"
                        )));
                    }
                }
                for s in &services {
                    if !s
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
                    {
                        return Err(err(format!("service name `{s}` is not a valid DNS name")));
                    }
                }
                None
            }
            Mode::Api | Mode::Containers => {
                if services.is_empty() && labels.is_empty() {
                    return Err(err(format!(
                        "mode = \"{}\" needs `service` and/or `label` to select what to watch (e.g. service = \"chorus\" or label = \"rollcall.discover=true\")",
                        self.mode
                    )));
                }
                Some(Endpoint::resolve(
                    self.docker_host.as_deref(),
                    self.tls_ca.as_deref(),
                    self.tls_cert.as_deref(),
                    self.tls_key.as_deref(),
                )?)
            }
        };
        Ok(Settings {
            mode: self.mode,
            services,
            labels,
            port: self.port,
            networks,
            endpoint,
            dns_server,
            resync: self.resync,
            debounce: self.debounce,
            converge_poll: self.converge_poll,
            timeout: self.timeout,
            port_label: self.port_label.trim().to_owned(),
            capabilities_label: self.capabilities_label.trim().to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_src: &str) -> Result<Config, String> {
        let v: serde_json::Value = toml_to_json(toml_src);
        serde_json::from_value(v).map_err(|e| e.to_string())
    }

    // A tiny TOML subset (key = value lines) is enough for these tests and
    // keeps `toml` out of the dependencies.
    fn toml_to_json(src: &str) -> serde_json::Value {
        let mut map = serde_json::Map::new();
        for line in src.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let (k, v) = line.split_once('=').expect("key = value");
            let v: serde_json::Value = serde_json::from_str(v.trim()).expect("json value");
            map.insert(k.trim().to_owned(), v);
        }
        serde_json::Value::Object(map)
    }

    #[test]
    fn defaults_and_string_or_list() {
        let c = parse(r#"service = "chorus""#).unwrap();
        assert_eq!(c.service, vec!["chorus"]);
        assert_eq!(c.mode, Mode::Api);
        assert_eq!(c.resync, Duration::from_secs(5));
        assert_eq!(c.debounce, Duration::from_millis(100));
        assert_eq!(c.dns_server, "127.0.0.11");
        assert_eq!(c.port_label, "rollcall.port");
        assert_eq!(c.capabilities_label, "rollcall.capabilities");
        let c = parse(
            r#"service = ["a", "b"]
               label = "rollcall.discover=true"
               mode = "containers"
               resync = "2s"
               debounce = "50ms""#,
        )
        .unwrap();
        assert_eq!(c.service, vec!["a", "b"]);
        assert_eq!(c.label, vec!["rollcall.discover=true"]);
        assert_eq!(c.mode, Mode::Containers);
        assert_eq!(c.resync, Duration::from_secs(2));
        assert_eq!(Config::default(), parse("").unwrap());
    }

    #[test]
    fn refuses_unknown_keys_and_bad_values() {
        let e = parse(r#"servcie = "x""#).unwrap_err();
        assert!(e.contains("unknown field `servcie`"), "{e}");
        let e = parse(r#"mode = "vip""#).unwrap_err();
        assert!(e.contains("api") && e.contains("dns"), "{e}");
        let e = parse(r#"service = 3"#).unwrap_err();
        assert!(e.contains("a string or a list of strings"), "{e}");
        let e = parse(r#"resync = "soon""#).unwrap_err();
        assert!(!e.is_empty());
    }

    #[test]
    fn validation_names_the_key_and_the_fix() {
        let v = |s: &str| {
            parse(s)
                .unwrap()
                .validate()
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        assert!(v("")
            .unwrap_err()
            .contains("needs `service` and/or `label`"));
        assert!(v(r#"mode = "dns""#)
            .unwrap_err()
            .contains("needs `service`"));
        assert!(v("service = \"a\"\nmode = \"dns\"\nlabel = \"x\"")
            .unwrap_err()
            .contains("`label` cannot be used"));
        assert!(
            v("service = \"a\"\nmode = \"dns\"\ndocker_host = \"unix:///x\"")
                .unwrap_err()
                .contains("`docker_host`")
        );
        assert!(v("service = \"a\"\nlabel = \"=v\"")
            .unwrap_err()
            .contains("has no key"));
        assert!(v("service = \"a\"\ndebounce = \"5s\"")
            .unwrap_err()
            .contains("`debounce`"));
        assert!(v("service = \"a\"\nport = 0")
            .unwrap_err()
            .contains("`port`"));
        assert!(v("service = \"a\"\ndns_server = \"dns.local\"")
            .unwrap_err()
            .contains("`dns_server`"));
        assert!(v("service = \"a\"\ndocker_host = \"ssh://x\"")
            .unwrap_err()
            .contains("unix://"));
        assert!(
            v("service = \"a\"\ndocker_host = \"tcp://h:2376\"\ntls_cert = \"/c.pem\"")
                .unwrap_err()
                .contains("tls_key")
        );
        assert!(v("service = \"a\"\ndocker_host = \"https://h:2376\"")
            .unwrap_err()
            .contains("tls_ca"));
        assert!(
            v("service = \"a\"\ndocker_host = \"unix:///s\"\ntls_ca = \"/ca.pem\"")
                .unwrap_err()
                .contains("unix")
        );
        v("service = \"a\"\nmode = \"dns\"\ndns_server = \"10.0.0.2:5353\"").unwrap();
        v("label = \"com.docker.compose.project=x\"\nmode = \"containers\"").unwrap();
    }

    #[test]
    fn label_selectors() {
        let s = LabelSelector::parse("a=b").unwrap();
        let k = LabelSelector::parse(" a ").unwrap();
        let mut m = HashMap::new();
        assert!(!s.matches(&m) && !k.matches(&m));
        m.insert("a".to_owned(), "c".to_owned());
        assert!(!s.matches(&m) && k.matches(&m));
        m.insert("a".to_owned(), "b".to_owned());
        assert!(s.matches(&m));
        assert_eq!(s.as_filter(), "a=b");
        assert_eq!(k.as_filter(), "a");
    }
}
