//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod dns_server;

use std::time::Duration;

use backend_static::{Config, StaticSource};
use discovery_core::{
    Health, Peer, Registry, RegistryBuilder, RegistryConfig, SourceOptions, SourceStatus,
};

/// Parses a `[sources.NAME]` body (without the common keys).
pub fn config(toml_text: &str) -> Config {
    toml::from_str(toml_text)
        .unwrap_or_else(|e| panic!("test config does not parse: {e}\n{toml_text}"))
}

/// A registry running one static source named `seeds`, keeping every address
/// (the tests use loopback addresses).
pub fn start(config: Config) -> Registry {
    let source = StaticSource::new(config).expect("valid config");
    RegistryBuilder::new(RegistryConfig {
        exclude_addresses: vec![],
        ..Default::default()
    })
    .source("seeds", SourceOptions::default(), source)
    .start()
    .expect("registry starts")
}

/// The status of the `seeds` source.
pub fn status(reg: &Registry) -> SourceStatus {
    reg.sources()
        .into_iter()
        .find(|s| s.name == "seeds")
        .expect("source `seeds` is listed")
}

/// The sorted ids of the roster.
pub fn ids(reg: &Registry) -> Vec<String> {
    let mut v: Vec<String> = reg
        .snapshot()
        .peers
        .into_iter()
        .map(|p| p.id.clone())
        .collect();
    v.sort();
    v
}

/// One peer by id, or a panic that shows the roster.
pub fn peer(reg: &Registry, id: &str) -> std::sync::Arc<Peer> {
    reg.peer(id)
        .unwrap_or_else(|| panic!("no peer `{id}` in {:#?}", reg.snapshot()))
}

/// Polls `cond` every 20 ms (tokio time: instant on a paused clock) until it
/// holds or `timeout` passes; panics with `what` and the state on timeout.
pub async fn wait_for(
    reg: &Registry,
    what: &str,
    timeout: Duration,
    mut cond: impl FnMut(&Registry) -> bool,
) {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if cond(reg) {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!(
                "timed out waiting for: {what}\nroster: {:#?}\nsource: {:#?}",
                reg.snapshot(),
                status(reg)
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn is_degraded(reg: &Registry) -> bool {
    status(reg).health == Health::Degraded
}

pub fn is_ok(reg: &Registry) -> bool {
    let s = status(reg);
    s.health == Health::Ok && s.synced
}

pub fn last_error(reg: &Registry) -> String {
    status(reg).last_error.unwrap_or_default()
}
