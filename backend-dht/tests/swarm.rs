//! N real libp2p hosts on loopback (ROLLCALL_DHT_NODES, default 30; 50 also
//! passes), each in its own registry, all in this one process: every node
//! finds every provider (more than one key's 20), a stopped node leaves within
//! its TTL, a late one is found by the next lookup.

mod common;

use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_find_each_other_stop_and_join() {
    init_tracing();
    let n: usize = std::env::var("ROLLCALL_DHT_NODES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    #[allow(non_snake_case)]
    let N = n;
    let dir = tempfile::tempdir().unwrap();
    let seed_port = free_port();
    let seed_id = peer_id_of(&dir.path().join("agent-0.key"));
    let seed_plain = format!("/ip4/127.0.0.1/tcp/{seed_port}");
    let seed_full = format!("{seed_plain}/p2p/{seed_id}");
    let mut agents = vec![agent(dir.path(), 0, config(seed_port, vec![]))];
    for i in 1..N {
        // Half bootstrap without /p2p (the id is learnt on dial), half with it.
        let b = if i % 2 == 0 { &seed_plain } else { &seed_full };
        agents.push(agent(dir.path(), i, config(0, vec![b.clone()])));
    }
    let disc = discoverer(dir.path(), "disc", config(0, vec![seed_full.clone()]));

    let all = ids(0..N);
    let started = std::time::Instant::now();
    assert!(
        wait_agents(&disc, Duration::from_secs(60), |s| s == all).await,
        "discoverer sees {:?}",
        dht_agents(&disc)
    );
    eprintln!(
        "{N} agents: the discoverer listed all after {:?} (all hosts started together)",
        started.elapsed()
    );
    for (i, a) in agents.iter().enumerate() {
        let others: Vec<String> = all.iter().filter(|x| **x != local(i).id).cloned().collect();
        assert!(
            wait_agents(a, Duration::from_secs(30), |s| s == others).await,
            "agent {i} sees {} of {}: {:?}",
            dht_agents(a).len(),
            others.len(),
            dht_agents(a)
        );
    }
    // Each peer is one roster entry with the peer_id alias and metadata.
    let snap = disc.snapshot();
    assert_eq!(snap.peers.len(), N, "no duplicates, no phantoms");
    for p in &snap.peers {
        assert!(p.alias(discovery_core::AliasKind::PeerId).is_some());
        assert_eq!(p.status.as_deref(), Some("idle"));
        assert!(!p.addrs.is_empty(), "{} has addresses", p.id);
    }

    // A stopped agent is gone within its TTL (3 ping intervals; generous deadline).
    let stop = N / 2;
    agents.remove(stop).shutdown().await;
    let without7: Vec<String> = all
        .iter()
        .filter(|x| **x != local(stop).id)
        .cloned()
        .collect();
    assert!(
        wait_agents(&disc, Duration::from_secs(10), |s| s == without7).await,
        "stopped agent still seen: {:?}",
        dht_agents(&disc)
    );

    // A late agent is found by the next lookup.
    let late = agent(dir.path(), N, config(0, vec![seed_full.clone()]));
    let mut with_late = without7.clone();
    with_late.push(local(N).id);
    with_late.sort();
    assert!(
        wait_agents(&disc, Duration::from_secs(20), |s| s == with_late).await,
        "late agent not found: {:?}",
        dht_agents(&disc)
    );

    late.shutdown().await;
    disc.shutdown().await;
    for a in agents {
        a.shutdown().await;
    }
}
