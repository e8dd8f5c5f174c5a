//! Signed records through a real nats-server: with `require_signed`, forged
//! leaves and announcements (unsigned, wrong key, tampered, replayed, another
//! key claiming a pinned id) change nothing and are counted by reason; a
//! genuine leave still removes the agent. Without it, an unsigned foreign
//! publisher following PROTOCOL.md by hand is listed. (Own test binary: it
//! installs a global metrics recorder.)

mod common;

use std::time::Duration;

use backend_nats::{Config, NatsSource, SigningConfig};
use common::*;
use discovery_core::identity::Identity;
use discovery_core::{Alias, LocalPeer, Registry, RegistryBuilder, SourceOptions};
use futures::StreamExt;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn signed_agent(url: &str, local: LocalPeer, key: &std::path::Path) -> Registry {
    let mut cfg = config(url);
    cfg.discover = false;
    cfg.signing.sign = true;
    RegistryBuilder::new(registry_config())
        .identity_file(key)
        .source(
            "nats",
            SourceOptions::default(),
            NatsSource::new(cfg).unwrap(),
        )
        .announce(local)
        .start()
        .expect("registry")
}

fn strict(url: &str) -> Config {
    let mut cfg = config(url);
    cfg.signing = SigningConfig {
        require_signed: true,
        ..Default::default()
    };
    cfg
}

/// Running totals of `rollcall_records_rejected_total` by reason (a
/// snapshot of the debugging recorder hands out counts since the last one).
#[derive(Default)]
struct Totals(std::collections::HashMap<String, u64>);

impl Totals {
    fn update(&mut self, snap: &Snapshotter) {
        for (k, _, _, v) in snap.snapshot().into_vec() {
            if k.key().name() != "rollcall_records_rejected_total" {
                continue;
            }
            let Some(reason) = k.key().labels().find(|l| l.key() == "reason") else {
                continue;
            };
            if let DebugValue::Counter(c) = v {
                *self.0.entry(reason.value().to_owned()).or_default() += c;
            }
        }
    }
}

fn plain(id: &str) -> LocalPeer {
    LocalPeer {
        id: id.into(),
        addrs: vec![discovery_core::parse_addr("/ip4/10.1.0.1/tcp/9000").unwrap()],
        ..Default::default()
    }
}

/// Waits until the counter for `reason` reaches `want`; returns it.
async fn wait_rejected(t: &mut Totals, snap: &Snapshotter, reason: &str, want: u64) -> u64 {
    for _ in 0..100 {
        t.update(snap);
        let n = t.0.get(reason).copied().unwrap_or(0);
        if n >= want {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    t.0.get(reason).copied().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_leaves_and_replays_do_not_touch_a_signed_agent() {
    init_tracing();
    let recorder = DebuggingRecorder::new();
    let snap = recorder.snapshotter();
    recorder.install().expect("install the metrics recorder");
    let Some(server) = NatsServer::start() else {
        return;
    };
    let url = server.url();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("agent.key");
    let victim_id = discovery_core::identity::load_or_create(&key).unwrap();

    // Capture the agent's real records to replay and tamper with them.
    let nc = async_nats::connect(url.clone()).await.unwrap();
    let mut spy = nc.subscribe("rollcall.announce.victim").await.unwrap();
    nc.flush().await.unwrap();

    let agent = signed_agent(&url, plain("victim"), &key);
    let disc = discoverer(strict(&url));
    assert!(wait_peers(&disc, Duration::from_secs(10), |n| n == 1).await);
    let peer = disc.snapshot().peers[0].clone();
    assert_eq!(peer.id, "victim");
    assert!(
        peer.aliases
            .contains(&Alias::peer_id(victim_id.peer_id().to_string())),
        "the signer's peer id is an alias: {:?}",
        peer.aliases
    );
    let real = spy.next().await.unwrap().payload.to_vec();
    let real: serde_json::Value = serde_json::from_slice(&real).unwrap();
    assert!(real["signature"]["sig"].is_string(), "{real}");

    // 1. An unsigned leave (what anyone on the server could send before).
    let mut leave = real.clone();
    leave.as_object_mut().unwrap().remove("signature");
    leave["ttl"] = 0.into();
    leave["sequence"] = (now_ms() * 2).into();
    leave["timestamp"] = now_ms().into();
    nc.publish("rollcall.leave.victim", leave.to_string().into())
        .await
        .unwrap();
    // 2. The real signature on a record turned into a leave.
    let mut tampered = real.clone();
    tampered["ttl"] = 0.into();
    nc.publish("rollcall.leave.victim", tampered.to_string().into())
        .await
        .unwrap();
    // 3. The captured announcement again (replay).
    nc.publish("rollcall.announce.victim", real.to_string().into())
        .await
        .unwrap();
    // 4. A leave signed correctly by a rogue key: another key for a pinned id.
    let rogue = Identity::ephemeral();
    let mut r = rogue_record("victim", 0, &rogue);
    nc.publish("rollcall.leave.victim", r.to_string().into())
        .await
        .unwrap();
    // 5. The rogue signs a leave claiming the victim's peer id.
    r = rogue_record_claiming("victim", &rogue, &victim_id.peer_id().to_string());
    nc.publish("rollcall.leave.victim", r.to_string().into())
        .await
        .unwrap();
    nc.flush().await.unwrap();

    let mut t = Totals::default();
    // ">=": the other test of this binary also rejects an unsigned record.
    assert!(wait_rejected(&mut t, &snap, "unsigned", 1).await >= 1);
    assert!(wait_rejected(&mut t, &snap, "bad_signature", 1).await >= 1);
    assert!(wait_rejected(&mut t, &snap, "replayed", 1).await >= 1);
    assert_eq!(
        wait_rejected(&mut t, &snap, "identity_conflict", 1).await,
        1
    );
    assert_eq!(wait_rejected(&mut t, &snap, "key_mismatch", 1).await, 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(disc.snapshot().peers.len(), 1, "the victim is still listed");

    // The genuine, signed leave does remove it: the test can fail.
    agent.shutdown().await;
    assert!(
        wait_peers(&disc, Duration::from_secs(5), |n| n == 0).await,
        "a signed leave removes the agent"
    );
    drop(server);
}

/// A record for `id` signed by `key`, built by hand from PROTOCOL.md.
fn rogue_record(id: &str, ttl: u64, key: &Identity) -> serde_json::Value {
    build_signed(id, ttl, key, vec![])
}

fn rogue_record_claiming(id: &str, key: &Identity, peer_id: &str) -> serde_json::Value {
    build_signed(id, 0, key, vec![("peer_id", peer_id)])
}

/// Signs per PROTOCOL.md "Signed records", independently of the crate's code.
fn build_signed(
    id: &str,
    ttl: u64,
    key: &Identity,
    aliases: Vec<(&str, &str)>,
) -> serde_json::Value {
    use discovery_core::signed::{encode_hex, sign, Canonical};
    let (seq, ts) = (now_ms() * 3, now_ms());
    let mut c = Canonical::new("rollcall/nats/v1")
        .u64(1)
        .str(id)
        .u64(aliases.len() as u64);
    for (k, v) in &aliases {
        c = c.str(k).str(v);
    }
    // addrs, name, status, capabilities, version, labels, ttl, sequence, timestamp
    let c = c
        .u64(0)
        .opt(None)
        .opt(None)
        .u64(0)
        .opt(None)
        .u64(0)
        .u64(ttl)
        .u64(seq)
        .u64(ts)
        .finish();
    let s = sign(key, &c);
    serde_json::json!({
        "version": 1, "id": id, "ttl": ttl, "sequence": seq, "timestamp": ts,
        "aliases": aliases.iter().map(|(k, v)| serde_json::json!({"kind": k, "value": v})).collect::<Vec<_>>(),
        "signature": {"key": encode_hex(&s.key), "sig": encode_hex(&s.sig)},
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsigned_foreign_publisher_is_listed_unless_signatures_are_required() {
    init_tracing();
    let Some(server) = NatsServer::start() else {
        return;
    };
    let url = server.url();
    let open = discoverer(config(&url));
    let closed = discoverer(strict(&url));
    assert!(open.wait_first_sync(Duration::from_secs(10)).await);
    assert!(closed.wait_first_sync(Duration::from_secs(10)).await);
    // A hand-built v1 record, as a non-rollcall publisher writes it from PROTOCOL.md.
    let nc = async_nats::connect(url.clone()).await.unwrap();
    let rec = serde_json::json!({"version": 1, "id": "foreign-1", "ttl": 30000,
        "sequence": 1, "timestamp": now_ms(), "addrs": ["/ip4/10.2.0.1/tcp/7000"],
        "metadata": {"name": "foreign"}});
    nc.publish("rollcall.announce.foreign-1", rec.to_string().into())
        .await
        .unwrap();
    nc.flush().await.unwrap();
    assert!(wait_peers(&open, Duration::from_secs(5), |n| n == 1).await);
    assert_eq!(open.snapshot().peers[0].name.as_deref(), Some("foreign"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(closed.snapshot().peers.len(), 0, "unsigned is rejected");
    // A signed agent is listed by both.
    let dir = tempfile::tempdir().unwrap();
    let _agent = signed_agent(&url, plain("signed-1"), &dir.path().join("k"));
    assert!(wait_peers(&open, Duration::from_secs(10), |n| n == 2).await);
    assert!(wait_peers(&closed, Duration::from_secs(10), |n| n == 1).await);
    drop(server);
}
