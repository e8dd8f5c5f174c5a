//! KV mode against a real nats-server with JetStream.

mod common;

use std::time::{Duration, Instant};

use backend_nats::NatsMode;
use common::*;

/// 100 agents keep their records in the bucket; a discoverer started after
/// them reads all 100 at once, and so does one started later still.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_agents_in_kv_are_read_at_once_by_cold_discoverers() {
    init_tracing();
    let Some(server) = NatsServer::start_js() else {
        return;
    };
    let mut cfg = config(&server.url());
    cfg.mode = NatsMode::Kv;
    cfg.heartbeat = Duration::from_secs(60);
    let mut agent_cfg = cfg.clone();
    agent_cfg.discover = false;
    let agents: Vec<_> = (0..100)
        .map(|i| agent(agent_cfg.clone(), local(i)))
        .collect();
    for a in &agents {
        assert!(
            a.wait_first_sync(Duration::from_secs(30)).await,
            "agent did not put its record"
        );
    }

    let started = Instant::now();
    let disc = discoverer(cfg.clone());
    assert!(
        wait_peers(&disc, Duration::from_secs(10), |n| n >= 100).await,
        "not all 100 read"
    );
    let full = started.elapsed();
    assert!(disc.wait_first_sync(Duration::from_secs(10)).await);
    let synced = started.elapsed();
    assert_eq!(disc.snapshot().peers.len(), 100, "100 of 100");
    println!(
        "MEASURE nats kv cold discoverer, 100 agents: full roster after {:.1} ms, first sync after {:.1} ms",
        full.as_secs_f64() * 1e3,
        synced.as_secs_f64() * 1e3
    );
    let p = disc.peer("agent-042").expect("agent-042");
    assert_eq!(p.addrs, vec!["/ip4/10.0.0.43/tcp/9000"]);

    tokio::time::sleep(Duration::from_secs(1)).await;
    let started = Instant::now();
    let later = discoverer(cfg.clone());
    assert!(later.wait_first_sync(Duration::from_secs(10)).await);
    assert_eq!(
        later.snapshot().peers.len(),
        100,
        "a later discoverer has all 100 at its first sync"
    );
    println!(
        "MEASURE nats kv later discoverer: first sync with 100 after {:.1} ms",
        started.elapsed().as_secs_f64() * 1e3
    );

    // A clean shutdown deletes the record: gone at once (TTL is 180 s).
    agents[7].shutdown().await;
    assert!(
        wait_peers(&disc, Duration::from_secs(5), |n| n == 99).await,
        "delete not seen"
    );
    assert!(disc.peer("agent-007").is_none());
    assert!(wait_peers(&later, Duration::from_secs(5), |n| n == 99).await);

    futures::future::join_all(agents.iter().map(|a| a.shutdown())).await;
    assert!(wait_peers(&disc, Duration::from_secs(10), |n| n == 0).await);
    disc.shutdown().await;
    later.shutdown().await;
}

/// nats-server 2.9 says nothing when a key ages out: the discoverer ages the
/// observation itself, from the record's TTL minus the entry's age.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_kv_agent_ages_out_without_a_server_event() {
    init_tracing();
    let Some(server) = NatsServer::start_js() else {
        return;
    };
    let mut cfg = config(&server.url());
    cfg.mode = NatsMode::Kv;
    cfg.bucket = "short".into();
    cfg.heartbeat = Duration::from_secs(1);
    let mut agent_cfg = cfg.clone();
    agent_cfg.discover = false;
    let mut crashing = CrashableAgent::start(agent_cfg, local(1));
    let disc = discoverer(cfg.clone());
    assert!(wait_peers(&disc, Duration::from_secs(10), |n| n == 1).await);
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert_eq!(
        disc.snapshot().peers.len(),
        1,
        "renewed by heartbeats past its TTL"
    );

    crashing.crash();
    let t = Instant::now();
    // Started after the crash: reads the last record, with what remains of its TTL.
    let late = discoverer(cfg.clone());
    assert!(late.wait_first_sync(Duration::from_secs(10)).await);
    assert!(
        wait_peers(&disc, Duration::from_secs(10), |n| n == 0).await,
        "not aged out"
    );
    println!(
        "MEASURE kv crash (ttl 3s) aged out after {:.1} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    assert!(
        wait_peers(&late, Duration::from_secs(10), |n| n == 0).await,
        "not aged out (late)"
    );
    println!(
        "MEASURE kv crash aged out of the late discoverer after {:.1} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    disc.shutdown().await;
    late.shutdown().await;
}

/// Without JetStream the KV source reports why instead of panicking.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_mode_without_jetstream_degrades_with_a_reason() {
    init_tracing();
    let Some(server) = NatsServer::start() else {
        return;
    };
    let mut cfg = config(&server.url());
    cfg.mode = NatsMode::Kv;
    let disc = discoverer(cfg);
    assert!(disc.wait_first_sync(Duration::from_secs(15)).await);
    let status = disc
        .sources()
        .into_iter()
        .find(|s| s.name == "nats")
        .unwrap();
    let err = status.last_error.unwrap_or_default();
    assert!(err.contains("JetStream"), "{err}");
    disc.shutdown().await;
}

/// KV mode across a server restart (JetStream store kept on disk): nothing
/// lost while down, the watch is re-established, renewals resume.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_mode_survives_a_server_restart() {
    use discovery_core::Health;
    init_tracing();
    let Some(mut server) = NatsServer::start_js() else {
        return;
    };
    let mut cfg = config(&server.url());
    cfg.mode = NatsMode::Kv;
    cfg.heartbeat = Duration::from_secs(2);
    let mut agent_cfg = cfg.clone();
    agent_cfg.discover = false;
    let agents: Vec<_> = (0..3).map(|i| agent(agent_cfg.clone(), local(i))).collect();
    let disc = discoverer(cfg.clone());
    assert!(wait_peers(&disc, Duration::from_secs(10), |n| n == 3).await);

    server.kill();
    assert!(wait_health(&disc, Health::Degraded, Duration::from_secs(5)).await);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        disc.snapshot().peers.len(),
        3,
        "kept while the server is down"
    );
    server.restart();
    assert!(
        wait_health(&disc, Health::Ok, Duration::from_secs(15)).await,
        "{:?}",
        disc.sources()
    );

    // A record put after the restart arrives through the new watch.
    let newcomer = agent(agent_cfg.clone(), local(9));
    assert!(
        wait_peers(&disc, Duration::from_secs(10), |n| n == 4).await,
        "watch not re-established"
    );
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_eq!(
        disc.snapshot().peers.len(),
        4,
        "renewals resumed after the restart"
    );
    disc.shutdown().await;
    newcomer.shutdown().await;
    futures::future::join_all(agents.iter().map(|a| a.shutdown())).await;
}
