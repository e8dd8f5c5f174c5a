//! Signed metadata between real libp2p hosts on loopback: a discoverer with
//! `require_signed` lists the agents that sign, not the one that does not, and
//! refuses a second key claiming an agent id it has pinned (trust on first
//! use) or one outside `trusted_keys`; each refusal is counted by reason.

mod common;

use std::time::Duration;

use backend_dht::{Config, DhtSource};
use common::*;
use discovery_core::signed::{SigningConfig, TrustedKey};
use discovery_core::{AliasKind, LocalPeer, Registry, RegistryBuilder};
use metrics_util::debugging::Snapshotter;

fn rejected(snap: &Snapshotter, reason: &str) -> u64 {
    counter(snap, "rollcall_records_rejected_total", reason)
}

fn signing(cfg: Config, signing: SigningConfig) -> Config {
    Config { signing, ..cfg }
}

/// Agents only announce here (`discover = false`), so every refusal counted
/// is the discoverers'.
fn announcing(cfg: Config) -> Config {
    Config {
        discover: false,
        ..cfg
    }
}

fn signs() -> SigningConfig {
    SigningConfig {
        sign: true,
        ..SigningConfig::default()
    }
}

fn strict(trusted_keys: Vec<TrustedKey>) -> SigningConfig {
    SigningConfig {
        require_signed: true,
        trusted_keys,
        ..SigningConfig::default()
    }
}

/// An agent announcing `local` with the key file `key`.
fn agent_as(dir: &std::path::Path, key: &str, local: LocalPeer, cfg: Config) -> Registry {
    RegistryBuilder::new(registry_config())
        .identity_file(dir.join(key))
        .source("dht", Default::default(), DhtSource::new(cfg).unwrap())
        .announce(local)
        .start()
        .unwrap()
}

/// The peer id the discoverer lists for an agent id.
fn peer_of(reg: &Registry, agent: &str) -> Option<String> {
    reg.snapshot()
        .peers
        .iter()
        .find(|p| p.alias(AliasKind::AgentId) == Some(agent))
        .and_then(|p| p.alias(AliasKind::PeerId).map(str::to_owned))
}

async fn wait_count(snap: &Snapshotter, reason: &str, at_least: u64) -> u64 {
    let end = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let n = rejected(snap, reason);
        if n >= at_least || tokio::time::Instant::now() >= end {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_signed_lists_signing_agents_only_and_pins_their_keys() {
    init_tracing();
    let snap = install_recorder();

    let dir = tempfile::tempdir().unwrap();
    let (seed_port, a0_peer, seed) = seed(dir.path());
    let a0 = agent(
        dir.path(),
        0,
        signing(announcing(config(seed_port, vec![])), signs()),
    );
    let a1 = agent(
        dir.path(),
        1,
        signing(announcing(config(0, vec![seed.clone()])), signs()),
    );
    // Cannot sign (or an older rollcall): found, never listed.
    let unsigned = agent(dir.path(), 2, announcing(config(0, vec![seed.clone()])));

    let disc = discoverer(
        dir.path(),
        "disc",
        signing(config(0, vec![seed.clone()]), strict(vec![])),
    );
    assert!(
        wait_agents(&disc, Duration::from_secs(15), |s| s == ids(0..2)).await,
        "the discoverer sees {:?}, not the two signing agents",
        dht_agents(&disc)
    );
    assert!(
        wait_count(&snap, "unsigned", 1).await >= 1,
        "the unsigned agent's metadata was not refused as unsigned"
    );
    let a1_peer = peer_id_of(&dir.path().join("agent-1.key"));
    assert_eq!(
        peer_of(&disc, "agent-001").as_deref(),
        Some(a1_peer.as_str())
    );

    // A second key claims agent-001, signing correctly with its own key: the
    // first key seen for agent-001 is pinned, so this is an identity conflict.
    let rogue = agent_as(
        dir.path(),
        "rogue.key",
        local(1),
        signing(announcing(config(0, vec![seed.clone()])), signs()),
    );
    // The discoverer looks up again every 10 s (common::config).
    assert!(
        wait_count(&snap, "identity_conflict", 1).await >= 1 || {
            tokio::time::sleep(Duration::from_secs(10)).await;
            rejected(&snap, "identity_conflict") >= 1
        },
        "the rogue's claim on agent-001 was not refused"
    );
    assert_eq!(
        dht_agents(&disc),
        ids(0..2),
        "the rogue or the unsigned agent is listed"
    );
    assert_eq!(
        peer_of(&disc, "agent-001").as_deref(),
        Some(a1_peer.as_str()),
        "agent-001 is still the first key's"
    );

    // trusted_keys: a discoverer that trusts agent-000's key only (bound to
    // its id) lists agent-000 alone.
    let picky = discoverer(
        dir.path(),
        "picky",
        signing(
            config(0, vec![seed.clone()]),
            strict(vec![TrustedKey::Bound {
                peer_id: a0_peer,
                id: "agent-000".into(),
            }]),
        ),
    );
    let before = rejected(&snap, "untrusted");
    assert!(
        wait_agents(&picky, Duration::from_secs(15), |s| s == ids(0..1)).await,
        "the trusted-keys discoverer sees {:?}",
        dht_agents(&picky)
    );
    assert!(
        wait_count(&snap, "untrusted", before + 2).await >= before + 2,
        "agent-001 and the rogue were not refused as untrusted"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(dht_agents(&picky), ids(0..1));

    for r in [picky, disc, rogue, unsigned, a1, a0] {
        r.shutdown().await;
    }
}
