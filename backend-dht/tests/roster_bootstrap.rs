//! Nodes with no `bootstrap` list form the DHT from peers a static source of
//! the same registry found (a `peer_id` alias plus addresses): each node's
//! static list names only the next node of a ring, yet every node finds all.

mod common;

use std::time::Duration;

use backend_dht::DhtSource;
use backend_static::StaticSource;
use common::*;
use discovery_core::{RegistryBuilder, SourceOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dht_forms_from_peers_a_static_source_found() {
    init_tracing();
    const N: usize = 8;
    let dir = tempfile::tempdir().unwrap();
    let ports: Vec<u16> = (0..N).map(|_| free_port()).collect();
    let peer_ids: Vec<String> = (0..N)
        .map(|i| peer_id_of(&dir.path().join(format!("agent-{i}.key"))))
        .collect();
    let mut regs = Vec::new();
    for i in 0..N {
        let next = (i + 1) % N;
        let toml = format!(
            "[[peers]]\nid = \"{}\"\naddrs = [\"/ip4/127.0.0.1/tcp/{}\"]\naliases = [{{ kind = \"peer_id\", value = \"{}\" }}]\n",
            local(next).id,
            ports[next],
            peer_ids[next]
        );
        let st: backend_static::Config = toml::from_str(&toml).unwrap();
        let reg = RegistryBuilder::new(registry_config())
            .identity_file(dir.path().join(format!("agent-{i}.key")))
            .source(
                "static",
                SourceOptions::default(),
                StaticSource::new(st).unwrap(),
            )
            .source(
                "dht",
                SourceOptions::default(),
                DhtSource::new(config(ports[i], vec![])).unwrap(),
            )
            .announce(local(i))
            .start()
            .unwrap();
        regs.push(reg);
    }
    for (i, r) in regs.iter().enumerate() {
        let others: Vec<String> = ids(0..N)
            .into_iter()
            .filter(|x| *x != local(i).id)
            .collect();
        assert!(
            wait_agents(r, Duration::from_secs(40), |s| s == others).await,
            "node {i} sees over dht {:?}",
            dht_agents(r)
        );
        // The static and the dht sighting of a peer are one peer.
        assert_eq!(
            r.snapshot().peers.len(),
            N - 1,
            "node {i}: one entry per peer"
        );
    }
    for r in regs {
        r.shutdown().await;
    }
}
