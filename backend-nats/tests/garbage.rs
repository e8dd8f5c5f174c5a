//! Bad input on every subject: dropped and counted, the discoverer keeps
//! running, the roster does not change. (Own test binary: it installs a
//! global metrics recorder.)

mod common;

use std::time::Duration;

use common::*;
use discovery_core::Health;
use futures::StreamExt;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn rec(id: &str, version: u64, ttl: u64) -> String {
    serde_json::json!({"version": version, "id": id, "ttl": ttl, "sequence": now_ms(), "timestamp": now_ms(),
                       "addrs": ["/ip4/10.9.9.9/tcp/1"]})
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_leaves_the_discoverer_running_and_the_roster_unchanged() {
    init_tracing();
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().expect("install the metrics recorder");

    let Some(server) = NatsServer::start() else {
        return;
    };
    let url = server.url();
    let mut agent_cfg = config(&url);
    agent_cfg.discover = false;
    let agents: Vec<_> = (1..=3)
        .map(|i| agent(agent_cfg.clone(), local(i)))
        .collect();
    let disc = discoverer(config(&url));
    assert!(wait_peers(&disc, Duration::from_secs(10), |n| n == 3).await);
    assert!(disc.wait_first_sync(Duration::from_secs(10)).await);
    let before = disc.snapshot();

    let nc = async_nats::connect(url.clone()).await.unwrap();
    let deep = "[".repeat(10_000);
    let mut oversized = rec("agent-009", 1, 15_000);
    oversized.insert_str(1, &format!("\"pad\":\"{}\",", "x".repeat(70 * 1024)));
    let garbage: Vec<(&str, Vec<u8>)> = vec![
        ("rollcall.announce.agent-009", b"not json".to_vec()),
        ("rollcall.announce.agent-009", Vec::new()),
        ("rollcall.announce.agent-009", vec![0xff, 0x00, 0xfe, 0x7b]),
        ("rollcall.announce.agent-009", deep.into_bytes()),
        ("rollcall.announce.agent-009", b"{\"version\":1}".to_vec()),
        (
            "rollcall.announce.agent-009",
            b"{\"version\":1,\"id\":[1],\"ttl\":1,\"sequence\":1,\"timestamp\":1}".to_vec(),
        ),
        (
            "rollcall.announce.agent-009",
            rec("agent-009", 1, 0).into_bytes(),
        ),
        ("rollcall.announce.agent-009", oversized.into_bytes()),
        (
            "rollcall.announce.agent-009",
            rec("agent-009", 2, 15_000).into_bytes(),
        ),
        (
            "rollcall.announce.agent-009",
            rec("agent-010", 1, 15_000).into_bytes(),
        ),
        (
            "rollcall.announce.agent=2",
            rec("agent", 1, 15_000).into_bytes(),
        ),
        // Leaves that must not remove anyone.
        (
            "rollcall.leave.agent-001",
            rec("agent-001", 2, 0).into_bytes(),
        ),
        (
            "rollcall.leave.agent-001",
            rec("agent-002", 1, 0).into_bytes(),
        ),
        ("rollcall.leave.agent-002", b"{{{{".to_vec()),
        (
            "rollcall.leave.agent-003",
            b"{\"version\":\"one\",\"id\":\"agent-003\"}".to_vec(),
        ),
        // Garbage queries: agents answer (or ignore) them, nothing breaks.
        ("rollcall.query", b"\x00\x01garbage".to_vec()),
    ];
    for (subject, payload) in &garbage {
        nc.publish(subject.to_string(), payload.clone().into())
            .await
            .unwrap();
    }
    // A garbage query with a reply inbox is still answered by every agent.
    let inbox = nc.new_inbox();
    let mut replies = nc.subscribe(inbox.clone()).await.unwrap();
    nc.publish_with_reply("rollcall.query", inbox, "\u{1F4A9}".into())
        .await
        .unwrap();
    let mut answered = 0;
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_secs(2), replies.next()).await {
        answered += 1;
        if answered == 3 {
            break;
        }
    }
    assert_eq!(answered, 3, "agents answer a query whatever its payload");

    // A valid announcement after the garbage: once it is in, all the garbage
    // (sent earlier on the same connection) has been processed.
    nc.publish(
        "rollcall.announce.sentinel",
        rec("sentinel", 1, 15_000).into(),
    )
    .await
    .unwrap();
    assert!(
        wait_peers(&disc, Duration::from_secs(5), |n| n == 4).await,
        "the discoverer stopped working"
    );
    let leave = serde_json::json!({"version": 1, "id": "sentinel", "ttl": 0, "sequence": now_ms() + 1, "timestamp": now_ms() + 1});
    nc.publish("rollcall.leave.sentinel", leave.to_string().into())
        .await
        .unwrap();
    nc.flush().await.unwrap();
    assert!(wait_peers(&disc, Duration::from_secs(5), |n| n == 3).await);

    let after = disc.snapshot();
    assert_eq!(after.peers.len(), before.peers.len());
    for (a, b) in after.peers.iter().zip(&before.peers) {
        assert!(a.same_content(b), "roster changed: {a:?} vs {b:?}");
    }
    assert_eq!(source_health(&disc), Health::Ok);
    let status = disc
        .sources()
        .into_iter()
        .find(|s| s.name == "nats")
        .unwrap();
    assert_eq!(status.restarts, 0, "the source never failed");

    // Every drop was counted under its reason.
    let mut counts = std::collections::BTreeMap::<String, u64>::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        if key.key().name() != "rollcall_nats_dropped_total" {
            continue;
        }
        let reason = key
            .key()
            .labels()
            .find(|l| l.key() == "reason")
            .map(|l| l.value().to_owned())
            .unwrap_or_default();
        if let DebugValue::Counter(n) = value {
            *counts.entry(reason).or_default() += n;
        }
    }
    println!("drops by reason: {counts:?}");
    assert_eq!(
        counts.get("malformed").copied().unwrap_or(0),
        9,
        "{counts:?}"
    );
    assert_eq!(
        counts.get("oversized").copied().unwrap_or(0),
        1,
        "{counts:?}"
    );
    assert_eq!(counts.get("version").copied().unwrap_or(0), 2, "{counts:?}");
    assert_eq!(
        counts.get("id_mismatch").copied().unwrap_or(0),
        3,
        "{counts:?}"
    );

    disc.shutdown().await;
    futures::future::join_all(agents.iter().map(|a| a.shutdown())).await;
}
