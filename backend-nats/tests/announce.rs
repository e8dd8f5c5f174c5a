//! Announce mode against a real nats-server: cold start, leave, crash,
//! server restart, a hand-written agent following PROTOCOL.md.

mod common;

use std::time::{Duration, Instant};

use common::*;
use discovery_core::{AliasKind, Health, RosterEvent, WatchUpdate};
use futures::StreamExt;

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// 100 agents announce once (heartbeat 60 s, so no second announcement
/// happens during the test); a discoverer started after them has all 100 from
/// its first query. Prints the time to the full roster (no assertion on it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_agents_are_all_found_by_a_cold_discoverer_after_one_query() {
    init_tracing();
    let Some(server) = NatsServer::start() else {
        return;
    };
    let mut cfg = config(&server.url());
    cfg.heartbeat = Duration::from_secs(60);
    let mut agent_cfg = cfg.clone();
    agent_cfg.discover = false;
    let agents: Vec<_> = (0..100)
        .map(|i| agent(agent_cfg.clone(), local(i)))
        .collect();
    for a in &agents {
        assert!(
            a.wait_first_sync(Duration::from_secs(30)).await,
            "agent did not announce"
        );
        assert_eq!(source_health(a), Health::Ok);
    }

    // Cold discoverer, quiet-gap ending.
    let started = Instant::now();
    let disc = discoverer(cfg.clone());
    assert!(
        wait_peers(&disc, Duration::from_secs(10), |n| n >= 100).await,
        "not all 100 found"
    );
    let full = started.elapsed();
    assert!(disc.wait_first_sync(Duration::from_secs(10)).await);
    let synced = started.elapsed();
    let roster = disc.snapshot();
    assert_eq!(roster.peers.len(), 100, "100 of 100 after the first query");

    // Cold discoverer that knows how many to expect.
    let mut expect_cfg = cfg.clone();
    expect_cfg.expected_peers = Some(100);
    let started = Instant::now();
    let disc2 = discoverer(expect_cfg);
    assert!(disc2.wait_first_sync(Duration::from_secs(10)).await);
    let synced_expected = started.elapsed();
    assert_eq!(
        disc2.snapshot().peers.len(),
        100,
        "100 of 100 when the query ends at the expected count"
    );

    println!(
        "MEASURE nats announce cold discoverer, 100 agents: full roster after {:.1} ms; \
         first sync (quiet gap 300ms) after {:.1} ms; first sync with expected_peers=100 after {:.1} ms",
        full.as_secs_f64() * 1e3,
        synced.as_secs_f64() * 1e3,
        synced_expected.as_secs_f64() * 1e3
    );

    // What one peer carries.
    let p = disc.peer("agent-007").expect("agent-007");
    assert_eq!(p.alias(AliasKind::PeerId), Some("12D3KooWpeer007"));
    assert_eq!(p.addrs, vec!["/ip4/10.0.0.8/tcp/9000"]);
    assert_eq!(p.status.as_deref(), Some("idle"));
    assert_eq!(p.capabilities, vec!["go_development"]);
    assert_eq!(p.labels["model"], "llama3.1:8b");
    assert_eq!(p.version.as_deref(), Some("1.0.0"));

    // Everyone leaves: the roster empties without waiting for TTLs (180 s).
    let started = Instant::now();
    futures::future::join_all(agents.iter().map(|a| a.shutdown())).await;
    assert!(
        wait_peers(&disc, Duration::from_secs(10), |n| n == 0).await,
        "leaves not applied"
    );
    println!(
        "MEASURE 100 leaves applied after {:.1} ms",
        started.elapsed().as_secs_f64() * 1e3
    );
    disc.shutdown().await;
    disc2.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leave_removes_at_once_and_a_crash_expires_after_the_ttl() {
    init_tracing();
    let Some(server) = NatsServer::start() else {
        return;
    };
    let url = server.url();
    // TTL 30 s: only the leave can remove it within the test's wait.
    let mut slow = config(&url);
    slow.heartbeat = Duration::from_secs(10);
    slow.discover = false;
    let leaving = agent(slow, local(1));
    // TTL 3 s.
    let mut fast = config(&url);
    fast.heartbeat = Duration::from_secs(1);
    fast.discover = false;
    let mut crashing = CrashableAgent::start(fast, local(2));

    let disc = discoverer(config(&url));
    assert!(wait_peers(&disc, Duration::from_secs(10), |n| n == 2).await);

    let t = Instant::now();
    leaving.shutdown().await;
    assert!(
        wait_peers(&disc, Duration::from_secs(5), |n| n == 1).await,
        "a leave must remove the peer at once, not after its 30 s TTL"
    );
    println!(
        "MEASURE leave applied after {:.1} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    assert!(disc.peer("agent-001").is_none());
    assert!(disc.peer("agent-002").is_some());

    // Heartbeats keep it past its 3 s TTL.
    tokio::time::sleep(Duration::from_millis(4500)).await;
    assert!(
        disc.peer("agent-002").is_some(),
        "heartbeats must renew the announcement"
    );

    crashing.crash();
    let t = Instant::now();
    assert!(
        disc.peer("agent-002").is_some(),
        "a crashed agent is kept until its TTL"
    );
    assert!(
        wait_peers(&disc, Duration::from_secs(15), |n| n == 0).await,
        "a crashed agent must expire after its TTL"
    );
    let took = t.elapsed();
    println!(
        "MEASURE crash (ttl 3s, heartbeat 1s) detected after {:.1} ms",
        took.as_secs_f64() * 1e3
    );
    // The last heartbeat was at most 1 s before the crash: expiry is 2 to 3 s after it.
    assert!(
        took >= Duration::from_secs(1),
        "removed before its TTL: {took:?}"
    );
    disc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_also_discover_each_other_including_themselves() {
    init_tracing();
    let Some(server) = NatsServer::start() else {
        return;
    };
    let agents: Vec<_> = (0..3)
        .map(|i| agent(config(&server.url()), local(i)))
        .collect();
    for a in &agents {
        assert!(
            wait_peers(a, Duration::from_secs(10), |n| n == 3).await,
            "{:?}",
            a.snapshot()
        );
    }
    futures::future::join_all(agents.iter().map(|a| a.shutdown())).await;
}

/// The server is killed and restarted on the same port: nothing is lost while
/// it is down (TTL 6 s), the source is degraded meanwhile, and everything is
/// renewed after it returns; a discoverer started during the outage finds all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restart_loses_no_peer_and_recovers() {
    init_tracing();
    let Some(mut server) = NatsServer::start() else {
        return;
    };
    let url = server.url();
    let mut cfg = config(&url);
    cfg.heartbeat = Duration::from_secs(2);
    let mut agent_cfg = cfg.clone();
    agent_cfg.discover = false;
    let agents: Vec<_> = (0..5).map(|i| agent(agent_cfg.clone(), local(i))).collect();
    let disc = discoverer(cfg.clone());
    assert!(wait_peers(&disc, Duration::from_secs(10), |n| n == 5).await);

    // Record every roster change from here on.
    let mut watch = disc.watch();
    let left = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let watcher = {
        let left = left.clone();
        tokio::spawn(async move {
            while let Some(u) = watch.next().await {
                if let WatchUpdate::Event(RosterEvent::Left { peer, .. }) = u {
                    left.lock().unwrap().push(peer.id.clone());
                }
            }
        })
    };

    server.kill();
    assert!(
        wait_health(&disc, Health::Degraded, Duration::from_secs(5)).await,
        "the source must be degraded while disconnected"
    );
    for a in &agents {
        assert!(wait_health(a, Health::Degraded, Duration::from_secs(5)).await);
    }
    let late = discoverer(cfg.clone());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        disc.snapshot().peers.len(),
        5,
        "peers kept while the server is down"
    );
    assert_eq!(late.snapshot().peers.len(), 0);

    let t = Instant::now();
    server.restart();
    assert!(
        wait_health(&disc, Health::Ok, Duration::from_secs(10)).await,
        "not healthy again"
    );
    println!(
        "MEASURE discoverer healthy again {:.1} ms after the server restarted",
        t.elapsed().as_secs_f64() * 1e3
    );
    assert!(
        wait_peers(&late, Duration::from_secs(10), |n| n == 5).await,
        "late discoverer after restart"
    );

    // Past one full TTL after the restart, everything must have been renewed.
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_eq!(disc.snapshot().peers.len(), 5, "renewed after reconnection");
    assert_eq!(late.snapshot().peers.len(), 5);
    watcher.abort();
    let left = left.lock().unwrap().clone();
    assert!(
        left.is_empty(),
        "no peer may leave during the outage: {left:?}"
    );
    disc.shutdown().await;
    futures::future::join_all(agents.iter().map(|a| a.shutdown())).await;
    late.shutdown().await;
}

/// An agent written from PROTOCOL.md alone, with a raw NATS client: an id that
/// needs escaping, unknown fields and alias kinds, a bad address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_written_agent_following_the_protocol_document_is_discovered() {
    init_tracing();
    let Some(server) = NatsServer::start() else {
        return;
    };
    let nc = async_nats::connect(server.url()).await.unwrap();
    let id = "py-agent.1";
    let token = "py-agent=2E1";
    let record = move |seq: u64, ttl: u64| {
        serde_json::json!({
            "version": 1, "id": id,
            "aliases": [{"kind": "container_id", "value": "abcdef0123456789"},
                        {"kind": "spiffe_id", "value": "spiffe://example/x"}],
            "addrs": ["/ip4/10.1.0.1/tcp/9000", "not an address!"],
            "metadata": {"name": "py", "status": "working", "capabilities": ["python"],
                         "labels": {"lang": "python"}, "mood": "fine"},
            "ttl": ttl, "sequence": seq, "timestamp": now_ms(),
            "extension": {"anything": [1, 2, 3]}
        })
        .to_string()
    };
    let mut queries = nc.subscribe("rollcall.query").await.unwrap();
    let responder = {
        let nc = nc.clone();
        tokio::spawn(async move {
            let mut seq = 1;
            while let Some(q) = queries.next().await {
                if let Some(reply) = q.reply {
                    seq += 1;
                    nc.publish(reply, record(seq, 15_000).into()).await.unwrap();
                }
            }
        })
    };
    nc.flush().await.unwrap();

    let disc = discoverer(config(&server.url()));
    assert!(disc.wait_first_sync(Duration::from_secs(10)).await);
    let p = disc.peer(id).expect("found through the query");
    assert_eq!(p.alias(AliasKind::ContainerId), Some("abcdef0123456789"));
    assert_eq!(p.addrs, vec!["/ip4/10.1.0.1/tcp/9000"]);
    assert_eq!(p.status.as_deref(), Some("working"));
    assert_eq!(p.labels["lang"], "python");

    responder.abort();
    let leave = serde_json::json!({"version": 1, "id": id, "ttl": 0, "sequence": 1000, "timestamp": now_ms()});
    nc.publish(format!("rollcall.leave.{token}"), leave.to_string().into())
        .await
        .unwrap();
    nc.flush().await.unwrap();
    assert!(
        wait_peers(&disc, Duration::from_secs(5), |n| n == 0).await,
        "leave not applied"
    );

    // A plain announcement (no query) is enough too.
    nc.publish(
        format!("rollcall.announce.{token}"),
        record(2000, 15_000).into(),
    )
    .await
    .unwrap();
    assert!(
        wait_peers(&disc, Duration::from_secs(5), |n| n == 1).await,
        "announcement not applied"
    );
    disc.shutdown().await;
}
