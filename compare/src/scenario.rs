//! Scenario files (`examples/scenarios/*.toml`): the environment, the agents,
//! the backends to measure with their source config, the churn schedule.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Where the agents run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum EnvKind {
    /// `rollcall agent` processes on this machine, one loopback address each.
    Local,
    /// One network namespace per agent on a Linux bridge (needs root).
    Netns,
    /// Replicas of a Docker Swarm service (needs a swarm manager and the agent image).
    Swarm,
}

impl EnvKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            EnvKind::Local => "local",
            EnvKind::Netns => "netns",
            EnvKind::Swarm => "swarm",
        }
    }
}

/// A scenario file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Scenario {
    /// Name, copied into the result.
    pub name: String,
    /// Free text, copied into the result.
    #[serde(default)]
    pub description: Option<String>,
    /// `local`, `netns` or `swarm`.
    pub environment: EnvKind,
    /// Agents running when the discoverers start.
    pub agents: usize,
    /// How long the discoverers are measured, from their cold start.
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
    /// Wait between "every agent is up" and the discoverers' cold start.
    #[serde(default = "default_settle", with = "humantime_serde")]
    pub settle: Duration,
    /// Time between two discoverers' cold starts (and restarts); 0: all at
    /// once. A cold start is a burst (1000 agents answering one query, a
    /// stream read back), so apart, one row's burst does not slow another's.
    #[serde(default, with = "humantime_serde")]
    pub stagger: Duration,
    /// Start a nats-server for the run (its URL is `{nats_url}`).
    #[serde(default)]
    pub nats: Option<NatsSpec>,
    /// What every agent runs.
    #[serde(default)]
    pub agent: AgentSpec,
    /// `netns` settings.
    #[serde(default)]
    pub netns: NetnsSpec,
    /// `swarm` settings.
    #[serde(default)]
    pub swarm: SwarmSpec,
    /// The backends measured, side by side.
    pub backends: Vec<BackendSpec>,
    /// What happens to the agents and discoverers during the run.
    #[serde(default)]
    pub churn: Vec<ChurnSpec>,
    /// Ask every reported address who answers `/health` at the end.
    #[serde(default = "default_true")]
    pub check_addresses: bool,
}

fn default_settle() -> Duration {
    Duration::from_secs(1)
}
fn default_true() -> bool {
    true
}

/// `[nats]`: a nats-server the harness starts (and stops).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NatsSpec {
    /// Start it with JetStream (`-js`), for `mode = "kv"`.
    #[serde(default)]
    pub jetstream: bool,
}

/// `[agent]`: the `rollcall agent` every agent runs.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AgentSpec {
    /// Port of the agents' `GET /health`.
    #[serde(default = "default_health_port")]
    pub health_port: u16,
    /// Addresses each agent announces. Placeholders: `{ip}` (local, netns),
    /// `{id}`, `{health_port}`. Default: `["{ip}:{health_port}"]`, and in
    /// swarm `["/dns/{id}/tcp/{health_port}"]` (a replica cannot know its
    /// overlay IP before it starts; its task name resolves in Docker's DNS).
    #[serde(default)]
    pub addrs: Option<Vec<String>>,
    /// Extra `[local]` keys (capabilities, labels, status...).
    #[serde(default)]
    pub local: toml::Table,
    /// `[registry]` of the agents.
    #[serde(default)]
    pub registry: Option<toml::Table>,
    /// `[sources.NAME]` the agents announce through.
    #[serde(default)]
    pub sources: toml::Table,
    /// `RUST_LOG` of the agents.
    #[serde(default = "default_agent_log")]
    pub log: String,
}

fn default_health_port() -> u16 {
    8081
}
fn default_agent_log() -> String {
    "warn".to_owned()
}

impl Default for AgentSpec {
    fn default() -> Self {
        AgentSpec {
            health_port: default_health_port(),
            addrs: None,
            local: toml::Table::new(),
            registry: None,
            sources: toml::Table::new(),
            log: default_agent_log(),
        }
    }
}

/// `[netns]` settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NetnsSpec {
    /// The bridge's /16, written `A.B.0.0/16`: agents get `A.B.x.y`.
    #[serde(default = "default_subnet")]
    pub subnet: String,
}

fn default_subnet() -> String {
    "10.213.0.0/16".to_owned()
}

impl Default for NetnsSpec {
    fn default() -> Self {
        NetnsSpec {
            subnet: default_subnet(),
        }
    }
}

impl NetnsSpec {
    /// The first two octets of the /16.
    pub(crate) fn prefix(&self) -> Result<(u8, u8), String> {
        let bad = || {
            format!(
                "netns.subnet: `{}` must be a /16 written A.B.0.0/16 (e.g. \"10.213.0.0/16\")",
                self.subnet
            )
        };
        let (net, len) = self.subnet.split_once('/').ok_or_else(bad)?;
        if len != "16" {
            return Err(bad());
        }
        let ip: std::net::Ipv4Addr = net.parse().map_err(|_| bad())?;
        let o = ip.octets();
        if o[2] != 0 || o[3] != 0 {
            return Err(bad());
        }
        Ok((o[0], o[1]))
    }
}

/// `[swarm]` settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SwarmSpec {
    /// Ready swarm nodes the run needs (the agents spread over them).
    #[serde(default = "default_nodes")]
    pub nodes: usize,
    /// The image of the agents and of the discoverers: the static `rollcall`
    /// binary of this tree (`scripts/docker-rig.sh image agent`).
    #[serde(default = "default_image")]
    pub image: String,
    /// The manager's Docker endpoint (`docker -H`), e.g. the two-node swarm's
    /// `unix:///tmp/rollcall-swarm2/node1/docker.sock`; default `DOCKER_HOST`,
    /// else the local socket.
    #[serde(default)]
    pub docker_host: Option<String>,
    /// Run before the run (argv, must be idempotent), e.g.
    /// `["bash", "scripts/swarm2.sh", "up"]`.
    #[serde(default)]
    pub setup: Vec<String>,
    /// Run after the run (argv) if the nodes were not all ready before `setup`.
    #[serde(default)]
    pub teardown: Vec<String>,
    /// Longest wait for the replicas to run.
    #[serde(default = "default_up_timeout", with = "humantime_serde")]
    pub up_timeout: Duration,
    /// Port of the load balancer standing in for the service VIP.
    #[serde(default = "default_vip_port")]
    pub vip_port: u16,
}

fn default_nodes() -> usize {
    1
}
fn default_image() -> String {
    "rollcall-agent:test".to_owned()
}
fn default_up_timeout() -> Duration {
    Duration::from_secs(180)
}
fn default_vip_port() -> u16 {
    18081
}

impl Default for SwarmSpec {
    fn default() -> Self {
        SwarmSpec {
            nodes: default_nodes(),
            image: default_image(),
            docker_host: None,
            setup: Vec::new(),
            teardown: Vec::new(),
            up_timeout: default_up_timeout(),
            vip_port: default_vip_port(),
        }
    }
}

/// One `[[backends]]` entry: a discoverer measured on its own.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BackendSpec {
    /// Row name (letters, digits, `-`, `_`).
    pub name: String,
    /// Marks the row as the baseline.
    #[serde(default)]
    pub baseline: bool,
    /// `[registry]` of the discoverer; default `exclude_addresses = []`
    /// (the harness judges every address the backend reports).
    #[serde(default)]
    pub registry: Option<toml::Table>,
    /// A rollcall source, exactly as `[sources.NAME]` in rollcall.toml
    /// (any `type` this build has). Placeholders are filled in.
    #[serde(default)]
    pub source: Option<toml::Table>,
    /// Instead of `source`: the naive baseline, polling the service's
    /// health endpoint through a load balancer.
    #[serde(default)]
    pub http_vip: Option<HttpVipSpec>,
    /// Instead of `source`: an anchor, the discovery operators already run
    /// (Debian's `prometheus` with one service-discovery config).
    #[serde(default)]
    pub anchor: Option<AnchorSpec>,
    /// Free text, copied into the result.
    #[serde(default)]
    pub note: Option<String>,
}

/// Which Prometheus service discovery an anchor runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum AnchorSd {
    /// `dockerswarm_sd_configs`, role `tasks`, kept to the service's running tasks.
    Dockerswarm,
    /// `dns_sd_configs` on `tasks.<service>` (A records), through Docker's DNS.
    Dns,
}

impl AnchorSd {
    pub(crate) fn kind(self) -> &'static str {
        match self {
            AnchorSd::Dockerswarm => "prometheus-dockerswarm-sd",
            AnchorSd::Dns => "prometheus-dns-sd",
        }
    }
}

/// An anchor row: Prometheus's own service discovery, read from its
/// `/api/v1/targets`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AnchorSpec {
    /// `dockerswarm` or `dns`.
    pub sd: AnchorSd,
    /// The SD config's `refresh_interval`; unset: Prometheus's default
    /// (60 s for dockerswarm, 30 s for dns).
    #[serde(default, with = "humantime_serde")]
    pub refresh: Option<Duration>,
    /// How often the harness reads `/api/v1/targets`.
    #[serde(default = "default_anchor_poll", with = "humantime_serde")]
    pub poll: Duration,
    /// The Prometheus binary.
    #[serde(default = "default_prometheus")]
    pub binary: String,
}

fn default_anchor_poll() -> Duration {
    Duration::from_millis(100)
}
fn default_prometheus() -> String {
    "prometheus".to_owned()
}

/// The baseline of the context doc: poll `http://<vip>/health` and count
/// distinct agents.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HttpVipSpec {
    /// Requests per round.
    #[serde(default = "default_polls")]
    pub polls: usize,
    /// Reuse one HTTP connection (as Go's and reqwest's default clients do);
    /// `false` opens a new connection per request.
    #[serde(default = "default_true")]
    pub keepalive: bool,
    /// Time limit of one request.
    #[serde(default = "default_vip_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Poll a new round this often (each round is the whole answer); unset:
    /// one round at start.
    #[serde(default, with = "humantime_serde")]
    pub interval: Option<Duration>,
    /// Path polled.
    #[serde(default = "default_path")]
    pub path: String,
}

fn default_polls() -> usize {
    15
}
fn default_vip_timeout() -> Duration {
    Duration::from_secs(2)
}
fn default_path() -> String {
    "/health".to_owned()
}

/// What a churn event does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ChurnAction {
    /// SIGKILL `count` agents: no goodbye.
    Kill,
    /// SIGTERM `count` agents: they say goodbye.
    Stop,
    /// Start `count` new agents.
    Add,
    /// Restart the discoverer(s) from cold.
    Restart,
}

impl ChurnAction {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ChurnAction::Kill => "kill",
            ChurnAction::Stop => "stop",
            ChurnAction::Add => "add",
            ChurnAction::Restart => "restart",
        }
    }
}

/// One `[[churn]]` entry.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChurnSpec {
    /// When, from the discoverers' cold start.
    #[serde(with = "humantime_serde")]
    pub at: Duration,
    /// `kill`, `stop`, `add` or `restart`.
    pub action: ChurnAction,
    /// Agents killed, stopped or added.
    #[serde(default = "default_count")]
    pub count: usize,
    /// `restart` only: the backend whose discoverer restarts; unset: all.
    #[serde(default)]
    pub backend: Option<String>,
}

fn default_count() -> usize {
    1
}

/// Names usable in file, namespace and container names.
pub(crate) fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Scenario {
    /// Parses and checks a scenario; `origin` names it in errors.
    pub(crate) fn parse(origin: &str, text: &str) -> Result<Scenario, String> {
        let de = toml::Deserializer::parse(text)
            .map_err(|e| format!("{origin}: not valid TOML: {e}"))?;
        let sc: Scenario = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            format!("{origin}: {path}: {}", e.into_inner())
        })?;
        sc.check().map_err(|e| format!("{origin}: {e}"))?;
        Ok(sc)
    }

    fn check(&self) -> Result<(), String> {
        if self.agents == 0 {
            return Err("agents: must be at least 1".into());
        }
        if self.duration.is_zero() {
            return Err("duration: must be more than 0 (e.g. \"20s\")".into());
        }
        if self.backends.is_empty() {
            return Err("backends: name at least one [[backends]] to measure".into());
        }
        let mut names = BTreeSet::new();
        for (i, b) in self.backends.iter().enumerate() {
            if !is_name(&b.name) {
                return Err(format!(
                    "backends[{i}].name: `{}`: use 1 to 32 letters, digits, `-` or `_`",
                    b.name
                ));
            }
            if !names.insert(b.name.as_str()) {
                return Err(format!("backends[{i}].name: `{}` is used twice", b.name));
            }
            if b.anchor.is_some() {
                if b.source.is_some() || b.http_vip.is_some() {
                    return Err(format!(
                        "backends[{i}] ({}): an `anchor` has no `source` or `http_vip`",
                        b.name
                    ));
                }
                if self.environment != EnvKind::Swarm {
                    return Err(format!(
                        "backends[{i}].anchor ({}): the Prometheus anchors discover a Swarm service: use environment = \"swarm\"",
                        b.name
                    ));
                }
                continue;
            }
            match (&b.source, &b.http_vip) {
                (Some(_), Some(_)) => {
                    return Err(format!(
                        "backends[{i}] ({}): give either `source` or `http_vip`, not both",
                        b.name
                    ))
                }
                (None, None) => {
                    return Err(format!(
                        "backends[{i}] ({}): missing `source` (a rollcall source, as [sources.NAME]) or `http_vip` (the baseline)",
                        b.name
                    ))
                }
                (Some(s), None) => {
                    if !s.contains_key("type") {
                        return Err(format!(
                            "backends[{i}].source.type: missing: say which backend this is, one of {}",
                            rollcall::ALL_TYPES.join(", ")
                        ));
                    }
                }
                (None, Some(v)) => {
                    if v.polls == 0 {
                        return Err(format!("backends[{i}].http_vip.polls: must be at least 1"));
                    }
                    if !v.path.starts_with('/') {
                        return Err(format!("backends[{i}].http_vip.path: must start with `/`"));
                    }
                }
            }
        }
        for (i, c) in self.churn.iter().enumerate() {
            if c.at >= self.duration {
                return Err(format!(
                    "churn[{i}].at: {} is not within the run's duration ({})",
                    humantime::format_duration(c.at),
                    humantime::format_duration(self.duration)
                ));
            }
            if c.action != ChurnAction::Restart && c.count == 0 {
                return Err(format!("churn[{i}].count: must be at least 1"));
            }
            match (&c.backend, c.action) {
                (Some(b), ChurnAction::Restart) => {
                    if !names.contains(b.as_str()) {
                        return Err(format!("churn[{i}].backend: no backend is named `{b}`"));
                    }
                }
                (Some(_), _) => {
                    return Err(format!(
                        "churn[{i}].backend: only a `restart` names a backend"
                    ))
                }
                (None, _) => {}
            }
        }
        if self.environment == EnvKind::Netns {
            self.netns.prefix()?;
        }
        if self.nats.is_none() && self.uses("nats_url") {
            return Err("{nats_url} is used but there is no [nats] section: add `[nats]` so the harness starts a nats-server".into());
        }
        if self.environment == EnvKind::Swarm && self.swarm.nodes == 0 {
            return Err("swarm.nodes: must be at least 1".into());
        }
        Ok(())
    }

    /// Whether a placeholder is used anywhere in the configs.
    pub(crate) fn uses(&self, placeholder: &str) -> bool {
        let needle = format!("{{{placeholder}}}");
        let mut tables: Vec<&toml::Table> = vec![&self.agent.sources];
        tables.extend(self.backends.iter().filter_map(|b| b.source.as_ref()));
        tables.iter().any(|t| table_contains(t, &needle))
    }
}

fn table_contains(t: &toml::Table, needle: &str) -> bool {
    t.values().any(|v| value_contains(v, needle))
}

fn value_contains(v: &toml::Value, needle: &str) -> bool {
    match v {
        toml::Value::String(s) => s.contains(needle),
        toml::Value::Array(a) => a.iter().any(|v| value_contains(v, needle)),
        toml::Value::Table(t) => table_contains(t, needle),
        _ => false,
    }
}

/// Replaces `{key}` in every string of a table.
pub(crate) fn render(t: &toml::Table, vars: &BTreeMap<&str, String>) -> toml::Table {
    t.iter()
        .map(|(k, v)| (k.clone(), render_value(v, vars)))
        .collect()
}

fn render_value(v: &toml::Value, vars: &BTreeMap<&str, String>) -> toml::Value {
    match v {
        toml::Value::String(s) => toml::Value::String(render_str(s, vars)),
        toml::Value::Array(a) => {
            toml::Value::Array(a.iter().map(|v| render_value(v, vars)).collect())
        }
        toml::Value::Table(t) => toml::Value::Table(render(t, vars)),
        other => other.clone(),
    }
}

pub(crate) fn render_str(s: &str, vars: &BTreeMap<&str, String>) -> String {
    let mut out = s.to_owned();
    for (k, v) in vars {
        out = out.replace(&format!("{{{k}}}"), v);
    }
    out
}

/// What a discoverer child runs (written by the harness, never by hand).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DiscovererFile {
    /// The spec.
    pub discoverer: DiscovererSpec,
}

/// A discoverer child's job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DiscovererSpec {
    /// The backend row.
    pub name: String,
    /// A rollcall configuration (TOML) with exactly the measured source.
    #[serde(default)]
    pub config: Option<String>,
    /// Or: the baseline, polling this URL.
    #[serde(default)]
    pub url: Option<String>,
    /// The baseline's settings.
    #[serde(default)]
    pub http_vip: Option<HttpVipSpec>,
    /// Or: an anchor, running Prometheus with this configuration.
    #[serde(default)]
    pub prometheus: Option<PrometheusRun>,
}

/// What an anchor's discoverer runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PrometheusRun {
    /// The binary.
    pub binary: String,
    /// `prometheus.yml` (JSON, which YAML reads).
    pub config: String,
    /// Reading `/api/v1/targets` this often.
    #[serde(with = "humantime_serde")]
    pub poll: Duration,
    /// Where Prometheus keeps its data and its pid file.
    pub dir: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "t"
environment = "local"
agents = 3
duration = "10s"
[nats]
[agent.sources.nats]
type = "nats"
url = "{nats_url}"
[[backends]]
name = "nats"
source = { type = "nats", url = "{nats_url}" }
[[backends]]
name = "http-vip"
baseline = true
http_vip = { polls = 15 }
[[churn]]
at = "5s"
action = "kill"
count = 1
[[churn]]
at = "6s"
action = "restart"
backend = "nats"
"#;

    #[test]
    fn parses_and_renders() {
        let sc = Scenario::parse("t.toml", GOOD).unwrap();
        assert_eq!(sc.environment, EnvKind::Local);
        assert_eq!(sc.agent.health_port, 8081);
        assert!(sc.uses("nats_url"));
        assert!(!sc.uses("peers_file"));
        let vars = BTreeMap::from([("nats_url", "nats://1.2.3.4:5".to_owned())]);
        let src = render(sc.backends[0].source.as_ref().unwrap(), &vars);
        assert_eq!(src["url"].as_str(), Some("nats://1.2.3.4:5"));
        assert_eq!(sc.backends[1].http_vip.as_ref().unwrap().polls, 15);
        assert!(sc.backends[1].http_vip.as_ref().unwrap().keepalive);
    }

    #[test]
    fn every_example_scenario_parses() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/scenarios");
        let mut n = 0;
        for e in std::fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            if path.extension().is_some_and(|x| x == "toml") {
                let text = std::fs::read_to_string(&path).unwrap();
                let sc = Scenario::parse(&path.display().to_string(), &text)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                if sc.name == "local-1000-nats" {
                    assert_eq!(sc.stagger, Duration::from_secs(2));
                } else {
                    assert!(sc.stagger.is_zero(), "{}: at once by default", sc.name);
                }
                n += 1;
            }
        }
        assert!(n >= 10, "{n} scenarios in {}", dir.display());
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            (GOOD.replace("agents = 3", "agents = 0"), "agents"),
            (
                GOOD.replace("duration = \"10s\"", "duration = \"10s\"\nbogus = 1"),
                "bogus",
            ),
            (
                GOOD.replace("name = \"http-vip\"", "name = \"nats\""),
                "used twice",
            ),
            (GOOD.replace("at = \"5s\"", "at = \"50s\""), "churn[0].at"),
            (
                GOOD.replace("backend = \"nats\"", "backend = \"nope\""),
                "churn[1].backend",
            ),
            (GOOD.replace("http_vip = { polls = 15 }", ""), "backends[1]"),
            (
                GOOD.replace("action = \"kill\"", "action = \"explode\""),
                "churn[0].action",
            ),
            (GOOD.replace("[nats]\n", ""), "[nats]"),
        ];
        for (text, want) in cases {
            let e = Scenario::parse("t.toml", &text).unwrap_err();
            assert!(e.contains(want), "{want}: {e}");
        }
    }

    #[test]
    fn anchors_parse_and_need_the_swarm() {
        let swarm = GOOD
            .replace("environment = \"local\"", "environment = \"swarm\"")
            + "[[backends]]\nname = \"prom\"\nanchor = { sd = \"dockerswarm\", refresh = \"1s\" }\n";
        let sc = Scenario::parse("t.toml", &swarm).unwrap();
        let a = sc.backends[2].anchor.as_ref().unwrap();
        assert_eq!(a.sd, AnchorSd::Dockerswarm);
        assert_eq!(a.refresh, Some(Duration::from_secs(1)));
        assert_eq!(a.poll, Duration::from_millis(100));
        let local = GOOD.to_owned() + "[[backends]]\nname = \"prom\"\nanchor = { sd = \"dns\" }\n";
        assert!(Scenario::parse("t.toml", &local)
            .unwrap_err()
            .contains("backends[2].anchor"));
        let both = swarm.replace(
            "refresh = \"1s\" }",
            "refresh = \"1s\" }\nhttp_vip = { polls = 1 }",
        );
        assert!(Scenario::parse("t.toml", &both)
            .unwrap_err()
            .contains("backends[2]"));
        let bad = swarm.replace("dockerswarm", "consul");
        assert!(Scenario::parse("t.toml", &bad).unwrap_err().contains("sd"));
    }

    #[test]
    fn netns_prefix() {
        let n = NetnsSpec::default();
        assert_eq!(n.prefix().unwrap(), (10, 213));
        let bad = NetnsSpec {
            subnet: "10.1.2.0/24".into(),
        };
        assert!(bad.prefix().is_err());
    }

    #[test]
    fn discoverer_file_round_trips() {
        let f = DiscovererFile {
            discoverer: DiscovererSpec {
                name: "nats".into(),
                config: Some("[sources.nats]\ntype = \"nats\"\n".into()),
                url: None,
                http_vip: None,
                prometheus: None,
            },
        };
        let s = toml::to_string(&f).unwrap();
        assert_eq!(toml::from_str::<DiscovererFile>(&s).unwrap(), f);
    }
}
