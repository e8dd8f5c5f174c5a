//! Hosts that start together: an agent whose bootstrap seed is not listening
//! yet dials it again with a short backoff, so it joins within seconds of the
//! seed, not after a whole `bootstrap_interval` (30 s here).

mod common;

use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_started_before_its_seed_joins_soon_after_the_seed() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let seed_port = free_port();
    let seed_plain = format!("/ip4/127.0.0.1/tcp/{seed_port}");
    // Nobody listens on the seed's port yet: the first dial fails.
    let early = agent(dir.path(), 1, config(0, vec![seed_plain.clone()]));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let seed = agent(dir.path(), 0, config(seed_port, vec![]));
    // A cold discoverer 4 s later: its first lookup finds the early agent
    // only if that agent has joined (re-dialled the seed) by then; without
    // the re-dial it would wait for its 30 s bootstrap_interval.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let disc = discoverer(dir.path(), "disc", config(0, vec![seed_plain]));
    let started = std::time::Instant::now();
    assert!(
        wait_agents(&disc, Duration::from_secs(8), |s| s == ids(0..2)).await,
        "the early agent never joined: the discoverer sees {:?}",
        dht_agents(&disc)
    );
    eprintln!(
        "cold discoverer listed the early agent after {:?}",
        started.elapsed()
    );
    for r in [disc, seed, early] {
        r.shutdown().await;
    }
}
