//! Test harness: rollcall registries each running one dht source (a real
//! libp2p host on loopback), with short intervals.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

use backend_dht::{Config, DhtSource};
use discovery_core::{
    AliasKind, LocalPeer, Metadata, Registry, RegistryBuilder, RegistryConfig, SourceOptions,
};

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Short intervals so a test runs in seconds; loopback only.
pub fn config(port: u16, bootstrap: Vec<String>) -> Config {
    Config {
        listen: vec![format!("/ip4/127.0.0.1/tcp/{port}")],
        bootstrap,
        namespace: "test".into(),
        lookup_interval: Duration::from_secs(10),
        shards: 4,
        ping_interval: Duration::from_secs(1),
        republish_interval: Duration::from_secs(10),
        bootstrap_interval: Duration::from_secs(30),
        provider_ttl: Duration::from_secs(30),
        ..Config::default()
    }
}

/// Registry settings that keep loopback addresses (everything runs on 127.0.0.1).
pub fn registry_config() -> RegistryConfig {
    RegistryConfig {
        exclude_addresses: vec![],
        ..RegistryConfig::default()
    }
}

pub fn local(i: usize) -> LocalPeer {
    LocalPeer {
        id: format!("agent-{i:03}"),
        aliases: vec![],
        addrs: vec![],
        meta: Metadata {
            name: Some(format!("agent {i}")),
            status: Some("idle".into()),
            capabilities: vec!["test".into()],
            ..Metadata::default()
        },
    }
}

/// The peer id the key file at `path` holds (created now if missing).
pub fn peer_id_of(path: &Path) -> String {
    discovery_core::identity::load_or_create(path)
        .expect("identity")
        .peer_id()
        .to_string()
}

/// An announcing node (it also discovers).
pub fn agent(dir: &Path, i: usize, cfg: Config) -> Registry {
    RegistryBuilder::new(registry_config())
        .identity_file(dir.join(format!("agent-{i}.key")))
        .source(
            "dht",
            SourceOptions::default(),
            DhtSource::new(cfg).unwrap(),
        )
        .announce(local(i))
        .start()
        .unwrap()
}

/// A discover-only node.
pub fn discoverer(dir: &Path, name: &str, cfg: Config) -> Registry {
    RegistryBuilder::new(registry_config())
        .identity_file(dir.join(format!("{name}.key")))
        .source(
            "dht",
            SourceOptions::default(),
            DhtSource::new(cfg).unwrap(),
        )
        .start()
        .unwrap()
}

/// Agent ids the dht source of `reg` sees.
pub fn dht_agents(reg: &Registry) -> Vec<String> {
    let mut out: Vec<String> = reg
        .snapshot()
        .peers
        .iter()
        .filter(|p| p.sources.iter().any(|s| &*s.name == "dht"))
        .filter(|p| p.alias(AliasKind::PeerId).is_some())
        .filter_map(|p| p.alias(AliasKind::AgentId).map(str::to_owned))
        .collect();
    out.sort();
    out
}

/// Polls until `pred` holds for the agent ids `reg` sees, or the deadline.
pub async fn wait_agents(
    reg: &Registry,
    within: Duration,
    pred: impl Fn(&[String]) -> bool,
) -> bool {
    let end = tokio::time::Instant::now() + within;
    loop {
        if pred(&dht_agents(reg)) {
            return true;
        }
        if tokio::time::Instant::now() >= end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn ids(range: impl IntoIterator<Item = usize>) -> Vec<String> {
    range.into_iter().map(|i| local(i).id).collect()
}

/// A counter of the debugging recorder: `name` summed over the series whose
/// `reason` label is `reason`.
pub fn counter(snap: &metrics_util::debugging::Snapshotter, name: &str, reason: &str) -> u64 {
    use metrics_util::debugging::DebugValue;
    snap.snapshot()
        .into_vec()
        .into_iter()
        .filter(|(k, _, _, _)| {
            k.key().name() == name
                && k.key()
                    .labels()
                    .any(|l| l.key() == "reason" && l.value() == reason)
        })
        .map(|(_, _, _, v)| match v {
            DebugValue::Counter(c) => c,
            _ => 0,
        })
        .sum()
}

/// Installs a debugging metrics recorder for this test process.
pub fn install_recorder() -> metrics_util::debugging::Snapshotter {
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let snap = recorder.snapshotter();
    recorder.install().expect("install the metrics recorder");
    snap
}

/// A seed's port, peer id and `/p2p/` multiaddr, its key file `agent-0.key` in `dir`.
pub fn seed(dir: &Path) -> (u16, String, String) {
    let port = free_port();
    let id = peer_id_of(&dir.join("agent-0.key"));
    let addr = format!("/ip4/127.0.0.1/tcp/{port}/p2p/{id}");
    (port, id, addr)
}
