//! The fleet both registry benches feed: peers seen by three sources with
//! overlapping aliases (`registry` times it, `registry_memory` weighs it).

use std::time::{Duration, SystemTime};

use discovery_core::bench::Merger;
use discovery_core::{parse_addr, AddressPolicy, Alias, AliasKind, Metadata, Observation};

/// Sources seeing every peer.
pub const SOURCES: usize = 3;
/// Roster sizes measured, with their names in the bench ids.
pub const SIZES: [(usize, &str); 3] = [(1_000, "1k"), (10_000, "10k"), (100_000, "100k")];

/// What each of three sources (think swarm, nats, mdns) reports of peer `i`.
pub fn observations(peers: usize, status: &str) -> Vec<(u16, Observation)> {
    observations_range(0, peers, status)
}

pub fn observations_range(from: usize, to: usize, status: &str) -> Vec<(u16, Observation)> {
    let mut out = Vec::with_capacity((to - from) * SOURCES);
    for i in from..to {
        let agent = format!("chorus-agent-{i}");
        let container = format!("{:012x}{:052x}", i + 1, i);
        let peer_id = format!("12D3KooW{i:044}");
        let ip = format!("10.{}.{}.{}:9000", i / 62_500, i / 250 % 250, i % 250 + 2);
        let addr = parse_addr(&ip).expect("valid");
        // swarm: task + container ids, overlay address, labels.
        out.push((
            0,
            Observation {
                key: format!("task-{i}"),
                aliases: vec![
                    Alias::new(AliasKind::TaskId, format!("task-{i}")),
                    Alias::new(AliasKind::ContainerId, container.clone()),
                ],
                addrs: vec![addr.clone()],
                meta: Metadata {
                    labels: [("service".to_string(), "CHORUS_chorus".to_string())].into(),
                    ..Default::default()
                },
                ttl: None,
            },
        ));
        // nats: agent id, container id (short), peer id, status and capabilities.
        out.push((
            1,
            Observation {
                key: agent.clone(),
                aliases: vec![
                    Alias::agent_id(agent.clone()),
                    Alias::new(AliasKind::ContainerId, container[..12].to_string()),
                    Alias::peer_id(peer_id.clone()),
                ],
                addrs: vec![addr.clone()],
                meta: Metadata {
                    status: Some(status.to_string()),
                    capabilities: vec!["go_development".into()],
                    ..Default::default()
                },
                ttl: Some(Duration::from_secs(15)),
            },
        ));
        // mdns: peer id and address.
        out.push((
            2,
            Observation {
                key: peer_id.clone(),
                aliases: vec![Alias::peer_id(peer_id)],
                addrs: vec![addr],
                meta: Metadata::default(),
                ttl: Some(Duration::from_secs(360)),
            },
        ));
    }
    out
}

/// A cold load of `obs` into a new merger.
pub fn load(obs: Vec<(u16, Observation)>) -> Merger {
    let mut m = Merger::new(AddressPolicy::default(), SOURCES);
    let now = tokio::time::Instant::now();
    let wall = SystemTime::now();
    for (s, o) in obs {
        m.upsert_at(s, o, now, wall);
    }
    m
}
