//! Every merge rule of the design, on a paused tokio clock.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;

use super::*;
use crate::addr::{parse_addr, AddressClass};
use crate::model::{Alias, AliasKind, Metadata, Observation, Role};
use crate::source::{SourceContext, SourceError};
use crate::status::Health;

/// A source driven by the test: forwards whatever the test sends.
struct Scripted(Mutex<Option<mpsc::Receiver<SourceEvent>>>);

#[async_trait]
impl DiscoverySource for Scripted {
    async fn run(&self, ctx: SourceContext) -> Result<(), SourceError> {
        let rx = self.0.lock().unwrap().take();
        let Some(mut rx) = rx else {
            ctx.shutdown.cancelled().await;
            return Ok(());
        };
        loop {
            tokio::select! {
                _ = ctx.shutdown.cancelled() => return Ok(()),
                ev = rx.recv() => match ev {
                    Some(ev) => { let _ = ctx.events.send(ev).await; }
                    None => { ctx.shutdown.cancelled().await; return Ok(()); }
                }
            }
        }
    }
}

fn scripted() -> (mpsc::Sender<SourceEvent>, Scripted) {
    let (tx, rx) = mpsc::channel(64);
    (tx, Scripted(Mutex::new(Some(rx))))
}

fn opts(priority: i32) -> SourceOptions {
    SourceOptions {
        priority,
        ..Default::default()
    }
}

fn obs(key: &str, aliases: &[(AliasKind, &str)], addrs: &[&str]) -> Observation {
    Observation {
        key: key.into(),
        aliases: aliases.iter().map(|(k, v)| Alias::new(*k, *v)).collect(),
        addrs: addrs.iter().map(|a| parse_addr(a).unwrap()).collect(),
        ..Default::default()
    }
}

/// Lets the merge loop run (the paused clock auto-advances only when idle).
async fn settle() {
    tokio::time::sleep(Duration::from_millis(1)).await;
}

use AliasKind::{AgentId, ContainerId, PeerId, TaskId};

#[tokio::test(start_paused = true)]
async fn same_agent_id_merges_fields_follow_priority_addresses_union() {
    let (hi_tx, hi) = scripted();
    let (lo_tx, lo) = scripted();
    let reg = RegistryBuilder::new(RegistryConfig::default())
        .source("hi", opts(100), hi)
        .source("lo", opts(10), lo)
        .start()
        .unwrap();
    let mut a = obs(
        "a",
        &[(AgentId, "walnut")],
        &["10.0.0.1:9000", "127.0.0.1:9000"],
    );
    a.meta = Metadata {
        name: Some("from-hi".into()),
        capabilities: vec!["go".into()],
        labels: [("zone".to_string(), "hi".to_string())].into(),
        ..Default::default()
    };
    let mut b = obs(
        "b",
        &[(AgentId, "walnut"), (PeerId, "12D3KooWx")],
        &["192.168.1.27:9000", "10.0.0.1:9000"],
    );
    b.meta = Metadata {
        name: Some("from-lo".into()),
        status: Some("idle".into()),
        labels: [
            ("zone".to_string(), "lo".to_string()),
            ("model".to_string(), "llama".to_string()),
        ]
        .into(),
        ..Default::default()
    };
    lo_tx.send(SourceEvent::Replace(vec![b])).await.unwrap();
    hi_tx.send(SourceEvent::Replace(vec![a])).await.unwrap();
    settle().await;
    let snap = reg.snapshot();
    assert_eq!(snap.peers.len(), 1, "{snap:#?}");
    let p = &snap.peers[0];
    assert_eq!(p.id, "walnut");
    assert_eq!(
        p.name.as_deref(),
        Some("from-hi"),
        "highest priority wins a field"
    );
    assert_eq!(
        p.status.as_deref(),
        Some("idle"),
        "a field only the lower source has is still used"
    );
    assert_eq!(p.capabilities, vec!["go".to_string()]);
    assert_eq!(p.labels["zone"], "hi");
    assert_eq!(p.labels["model"], "llama");
    assert_eq!(
        p.addrs,
        vec![
            "/ip4/10.0.0.1/tcp/9000".to_string(),
            "/ip4/192.168.1.27/tcp/9000".to_string()
        ]
    );
    assert_eq!(p.alias(PeerId), Some("12D3KooWx"));
    assert_eq!(
        p.sources.iter().map(|s| &*s.name).collect::<Vec<_>>(),
        ["hi", "lo"]
    );
    assert!(
        reg.dropped_addresses() >= 1,
        "loopback was dropped and counted"
    );
    reg.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn an_ip_address_alone_is_not_identity() {
    let (tx, s) = scripted();
    let reg = RegistryBuilder::new(RegistryConfig::default())
        .source("s", opts(0), s)
        .start()
        .unwrap();
    tx.send(SourceEvent::Replace(vec![
        obs("a", &[(AgentId, "a")], &["10.0.0.1:9000"]),
        obs("b", &[(AgentId, "b")], &["10.0.0.1:9000"]),
        obs("c", &[], &["10.0.0.1:9000"]),
    ]))
    .await
    .unwrap();
    settle().await;
    assert_eq!(reg.snapshot().peers.len(), 3);
    reg.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn agent_id_with_two_peer_ids_is_a_reported_conflict_not_a_merge() {
    let (tx, s) = scripted();
    let reg = RegistryBuilder::new(RegistryConfig::default())
        .source("s", opts(0), s)
        .start()
        .unwrap();
    let mut w = reg.watch();
    assert!(matches!(w.next().await, Some(WatchUpdate::Snapshot(_))));
    tx.send(SourceEvent::Replace(vec![
        obs(
            "one",
            &[(AgentId, "agent-7"), (PeerId, "P1")],
            &["10.0.0.1:9000"],
        ),
        obs(
            "two",
            &[(AgentId, "agent-7"), (PeerId, "P2")],
            &["10.0.0.2:9000"],
        ),
    ]))
    .await
    .unwrap();
    settle().await;
    let snap = reg.snapshot();
    assert_eq!(snap.peers.len(), 2, "{snap:#?}");
    let ids: Vec<_> = snap.peers.iter().map(|p| p.id.as_str()).collect();
    assert!(ids.contains(&"agent-7"));
    let conflicts = reg.conflicts();
    assert_eq!(conflicts.len(), 1);
    assert_eq!(conflicts[0].shared, Alias::agent_id("agent-7"));
    assert_eq!(conflicts[0].disputed, PeerId);
    assert_eq!(conflicts[0].peers.len(), 2);
    let mut saw_conflict = false;
    while let Ok(Some(u)) = tokio::time::timeout(Duration::from_millis(10), w.next()).await {
        if let WatchUpdate::Event(RosterEvent::Conflict { .. }) = u {
            saw_conflict = true;
        }
    }
    assert!(saw_conflict, "a conflict is an event, not only a state");
    // The impostor leaves: the conflict is resolved.
    tx.send(SourceEvent::Remove { key: "two".into() })
        .await
        .unwrap();
    settle().await;
    assert_eq!(reg.snapshot().peers.len(), 1);
    assert!(reg.conflicts().is_empty());
    reg.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn container_ids_match_on_their_short_form_and_chains_merge_and_split() {
    let (swarm_tx, swarm) = scripted();
    let (nats_tx, nats) = scripted();
    let (mdns_tx, mdns) = scripted();
    let reg = RegistryBuilder::new(RegistryConfig::default())
        .source("swarm", opts(50), swarm)
        .source("nats", opts(40), nats)
        .source("mdns", opts(30), mdns)
        .start()
        .unwrap();
    let full = "3f4e5d6c7b8a9f0e1d2c3b4a59687766554433221100ffeeddccbbaa99887766";
    swarm_tx
        .send(SourceEvent::Replace(vec![obs(
            "task1",
            &[(TaskId, "task1"), (ContainerId, full)],
            &["10.0.1.7:9000"],
        )]))
        .await
        .unwrap();
    nats_tx
        .send(SourceEvent::Upsert(obs(
            "agent-7",
            &[
                (AgentId, "agent-7"),
                (ContainerId, &full[..12]),
                (PeerId, "12D3K"),
            ],
            &["10.0.1.7:9000"],
        )))
        .await
        .unwrap();
    mdns_tx
        .send(SourceEvent::Upsert(obs(
            "12D3K",
            &[(PeerId, "12D3K")],
            &["10.0.1.7:9000"],
        )))
        .await
        .unwrap();
    settle().await;
    let snap = reg.snapshot();
    assert_eq!(snap.peers.len(), 1, "{snap:#?}");
    assert_eq!(snap.peers[0].id, "agent-7");
    assert_eq!(
        snap.peers[0].alias(ContainerId),
        Some(full),
        "the full spelling is kept"
    );
    assert_eq!(snap.peers[0].sources.len(), 3);
    // Remove the bridge (nats): the swarm and mdns sightings share nothing else.
    nats_tx
        .send(SourceEvent::Remove {
            key: "agent-7".into(),
        })
        .await
        .unwrap();
    settle().await;
    assert_eq!(reg.snapshot().peers.len(), 2);
    reg.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn loopback_dropped_by_default_kept_when_configured_unspecified_always_dropped() {
    for (exclude, want) in [
        (None, vec!["/ip4/10.0.0.1/tcp/1"]),
        (
            Some(vec![]),
            vec![
                "/ip4/127.0.0.1/tcp/1",
                "/ip4/10.0.0.1/tcp/1",
                "/ip4/169.254.0.9/tcp/1",
            ],
        ),
    ] {
        let mut cfg = RegistryConfig::default();
        if let Some(e) = exclude {
            cfg.exclude_addresses = e;
        }
        let (tx, s) = scripted();
        let reg = RegistryBuilder::new(cfg)
            .source("s", opts(0), s)
            .start()
            .unwrap();
        tx.send(SourceEvent::Replace(vec![obs(
            "a",
            &[(AgentId, "a")],
            &["127.0.0.1:1", "0.0.0.0:1", "10.0.0.1:1", "169.254.0.9:1"],
        )]))
        .await
        .unwrap();
        settle().await;
        assert_eq!(reg.snapshot().peers[0].addrs, want);
        reg.shutdown().await;
    }
}

#[tokio::test(start_paused = true)]
async fn preferred_networks_rank_first() {
    let cfg = RegistryConfig {
        prefer_networks: vec!["10.0.0.0/8".parse().unwrap()],
        exclude_addresses: vec![AddressClass::Loopback],
        ..Default::default()
    };
    let (tx, s) = scripted();
    let reg = RegistryBuilder::new(cfg)
        .source("s", opts(0), s)
        .start()
        .unwrap();
    tx.send(SourceEvent::Replace(vec![obs(
        "a",
        &[(AgentId, "a")],
        &["192.168.0.5:1", "walnut:1", "10.1.2.3:1"],
    )]))
    .await
    .unwrap();
    settle().await;
    assert_eq!(
        reg.snapshot().peers[0].addrs,
        [
            "/ip4/10.1.2.3/tcp/1",
            "/ip4/192.168.0.5/tcp/1",
            "/dns/walnut/tcp/1"
        ]
    );
    reg.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn ttl_expires_and_renewal_extends_without_an_event() {
    let (tx, s) = scripted();
    let reg = RegistryBuilder::new(RegistryConfig::default())
        .source("s", opts(0), s)
        .start()
        .unwrap();
    let a = obs("a", &[(AgentId, "a")], &["10.0.0.1:1"]).with_ttl(Duration::from_secs(15));
    tx.send(SourceEvent::Upsert(a.clone())).await.unwrap();
    settle().await;
    let v1 = reg.version();
    tokio::time::sleep(Duration::from_secs(10)).await;
    tx.send(SourceEvent::Upsert(a)).await.unwrap();
    settle().await;
    assert_eq!(reg.version(), v1, "a renewal is not a change");
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(
        reg.snapshot().peers.len(),
        1,
        "renewed at t=10 s, so alive at t=20 s"
    );
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(reg.snapshot().peers.is_empty(), "expired at t=25 s");
    reg.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn replace_removes_what_is_absent() {
    let (tx, s) = scripted();
    let reg = RegistryBuilder::new(RegistryConfig::default())
        .source("s", opts(0), s)
        .start()
        .unwrap();
    tx.send(SourceEvent::Replace(vec![
        obs("a", &[(AgentId, "a")], &[]),
        obs("b", &[(AgentId, "b")], &[]),
    ]))
    .await
    .unwrap();
    settle().await;
    tx.send(SourceEvent::Replace(vec![
        obs("b", &[(AgentId, "b")], &[]),
        obs("c", &[(AgentId, "c")], &[]),
    ]))
    .await
    .unwrap();
    settle().await;
    let ids: Vec<String> = reg.snapshot().peers.iter().map(|p| p.id.clone()).collect();
    assert_eq!(ids, ["b", "c"]);
    reg.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_failed_source_keeps_its_last_good_set_until_max_staleness() {
    let cfg = RegistryConfig {
        max_staleness: Duration::from_secs(60),
        ..Default::default()
    };
    let (tx, s) = scripted();
    let reg = RegistryBuilder::new(cfg)
        .source("s", opts(0), s)
        .start()
        .unwrap();
    tx.send(SourceEvent::Replace(vec![obs("a", &[(AgentId, "a")], &[])]))
        .await
        .unwrap();
    settle().await;
    tx.send(SourceEvent::Degraded {
        reason: "socket gone".into(),
    })
    .await
    .unwrap();
    settle().await;
    let st = &reg.sources()[0];
    assert_eq!(st.health, Health::Degraded);
    assert_eq!(st.last_error.as_deref(), Some("socket gone"));
    tokio::time::sleep(Duration::from_secs(59)).await;
    assert_eq!(reg.snapshot().peers.len(), 1, "stale beats partial");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(reg.snapshot().peers.is_empty(), "too stale: dropped");
    // Recovery brings the set back.
    tx.send(SourceEvent::Replace(vec![obs("a", &[(AgentId, "a")], &[])]))
        .await
        .unwrap();
    settle().await;
    assert_eq!(reg.snapshot().peers.len(), 1);
    assert_eq!(reg.sources()[0].health, Health::Ok);
    reg.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn fallback_counts_only_while_every_primary_is_degraded_or_empty() {
    let (p_tx, primary) = scripted();
    let (f_tx, fallback) = scripted();
    let reg = RegistryBuilder::new(RegistryConfig::default())
        .source("swarm", opts(100), primary)
        .source(
            "seeds",
            SourceOptions {
                priority: 10,
                role: Role::Fallback,
                ..Default::default()
            },
            fallback,
        )
        .start()
        .unwrap();
    f_tx.send(SourceEvent::Replace(vec![obs(
        "seed",
        &[(AgentId, "seed")],
        &["10.9.9.9:1"],
    )]))
    .await
    .unwrap();
    settle().await;
    assert_eq!(
        reg.snapshot().peers.len(),
        1,
        "primary empty: the fallback counts"
    );
    p_tx.send(SourceEvent::Replace(vec![obs(
        "t1",
        &[(TaskId, "t1")],
        &["10.0.1.2:1"],
    )]))
    .await
    .unwrap();
    settle().await;
    let ids: Vec<String> = reg.snapshot().peers.iter().map(|p| p.id.clone()).collect();
    assert_eq!(ids, ["t1"], "the primary works: the fallback stands down");
    assert!(!reg.sources()[1].counted);
    p_tx.send(SourceEvent::Degraded {
        reason: "down".into(),
    })
    .await
    .unwrap();
    settle().await;
    assert_eq!(
        reg.snapshot().peers.len(),
        2,
        "primary degraded: last good set plus the fallback"
    );
    reg.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn watch_gets_a_snapshot_then_ordered_events_and_is_resynced_when_it_lags() {
    let cfg = RegistryConfig {
        watch_buffer: 4,
        ..Default::default()
    };
    let (tx, s) = scripted();
    let reg = RegistryBuilder::new(cfg)
        .source("s", opts(0), s)
        .start()
        .unwrap();
    tx.send(SourceEvent::Upsert(obs("a", &[(AgentId, "a")], &[])))
        .await
        .unwrap();
    settle().await;
    let mut w = reg.watch();
    let Some(WatchUpdate::Snapshot(snap)) = w.next().await else {
        panic!("snapshot first")
    };
    assert_eq!(snap.peers.len(), 1);
    tx.send(SourceEvent::Upsert(obs("b", &[(AgentId, "b")], &[])))
        .await
        .unwrap();
    tx.send(SourceEvent::Remove { key: "a".into() })
        .await
        .unwrap();
    settle().await;
    let mut versions = vec![snap.version];
    for want in ["joined b", "left a"] {
        match w.next().await {
            Some(WatchUpdate::Event(RosterEvent::Joined { version, peer }))
                if want == "joined b" =>
            {
                assert_eq!(peer.id, "b");
                versions.push(version);
            }
            Some(WatchUpdate::Event(RosterEvent::Left { version, peer, .. }))
                if want == "left a" =>
            {
                assert_eq!(peer.id, "a");
                versions.push(version);
            }
            other => panic!("wanted {want}, got {other:?}"),
        }
    }
    assert!(
        versions.windows(2).all(|v| v[1] == v[0] + 1),
        "consecutive versions: {versions:?}"
    );
    // Overflow the 4-event buffer: the watcher gets a fresh snapshot, not a gap.
    for i in 0..20 {
        tx.send(SourceEvent::Upsert(obs(
            &format!("p{i}"),
            &[(AgentId, &format!("p{i}"))],
            &[],
        )))
        .await
        .unwrap();
    }
    settle().await;
    match w.next().await {
        Some(WatchUpdate::Snapshot(s)) => assert_eq!(s.peers.len(), 21),
        other => panic!("wanted a resync snapshot, got {other:?}"),
    }
    reg.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_watch_ends_when_the_registry_shuts_down() {
    let (_tx, s) = scripted();
    let reg = RegistryBuilder::new(RegistryConfig::default())
        .source("s", opts(0), s)
        .start()
        .unwrap();
    let mut w = reg.watch();
    assert!(matches!(w.next().await, Some(WatchUpdate::Snapshot(_))));
    let waiter = tokio::spawn(async move { w.next().await });
    settle().await;
    reg.shutdown().await;
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap(),
        None
    );
}

#[tokio::test(start_paused = true)]
async fn an_identity_change_is_an_update_that_keeps_the_uid() {
    let (tx, s) = scripted();
    let reg = RegistryBuilder::new(RegistryConfig::default())
        .source("s", opts(0), s)
        .start()
        .unwrap();
    tx.send(SourceEvent::Upsert(obs(
        "k",
        &[(ContainerId, "abcdefabcdef")],
        &[],
    )))
    .await
    .unwrap();
    settle().await;
    let mut w = reg.watch();
    let _ = w.next().await;
    tx.send(SourceEvent::Upsert(obs(
        "k",
        &[(ContainerId, "abcdefabcdef"), (AgentId, "agent-1")],
        &[],
    )))
    .await
    .unwrap();
    settle().await;
    let uid = reg.snapshot().peers[0].uid;
    match w.next().await {
        Some(WatchUpdate::Event(RosterEvent::Updated {
            peer, renamed_from, ..
        })) => {
            assert_eq!(peer.id, "agent-1");
            assert_eq!(peer.uid, uid);
            assert_eq!(renamed_from.as_deref(), Some("abcdefabcdef"));
        }
        other => panic!("a rename is one Updated, got {other:?}"),
    }
    reg.shutdown().await;
}

struct Flaky {
    runs: Arc<AtomicU32>,
    panic: bool,
}

#[async_trait]
impl DiscoverySource for Flaky {
    async fn run(&self, ctx: SourceContext) -> Result<(), SourceError> {
        let n = self.runs.fetch_add(1, Ordering::SeqCst);
        if n < 3 {
            if self.panic {
                panic!("boom {n}");
            }
            return Err(SourceError::msg(format!("refused {n}")));
        }
        ctx.events
            .replace(vec![obs("x", &[(AgentId, "x")], &[])])
            .await
            .ok();
        ctx.shutdown.cancelled().await;
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn failing_and_panicking_sources_restart_with_backoff_and_never_stop_the_others() {
    let errors = Arc::new(AtomicU32::new(0));
    let panics = Arc::new(AtomicU32::new(0));
    let (tx, steady) = scripted();
    let cfg = RegistryConfig {
        restart_backoff: Duration::from_secs(1),
        restart_backoff_max: Duration::from_secs(30),
        ..Default::default()
    };
    let start = Instant::now();
    let reg = RegistryBuilder::new(cfg)
        .source(
            "errors",
            opts(0),
            Flaky {
                runs: errors.clone(),
                panic: false,
            },
        )
        .source(
            "panics",
            opts(0),
            Flaky {
                runs: panics.clone(),
                panic: true,
            },
        )
        .source("steady", opts(0), steady)
        .start()
        .unwrap();
    tx.send(SourceEvent::Replace(vec![obs(
        "s",
        &[(AgentId, "steady-peer")],
        &[],
    )]))
    .await
    .unwrap();
    settle().await;
    assert_eq!(errors.load(Ordering::SeqCst), 1);
    let st = reg.sources();
    assert_eq!(st[0].health, Health::Degraded);
    assert!(
        st[0].last_error.as_deref().unwrap().contains("refused 0"),
        "{:?}",
        st[0].last_error
    );
    assert!(
        st[1]
            .last_error
            .as_deref()
            .unwrap()
            .contains("panicked: boom 0"),
        "{:?}",
        st[1].last_error
    );
    assert_eq!(
        reg.snapshot().peers.len(),
        1,
        "the steady source is unaffected"
    );
    // Backoff 1 s, 2 s, 4 s: the fourth run starts at t = 7 s.
    tokio::time::sleep(Duration::from_millis(6900) - start.elapsed()).await;
    assert_eq!(errors.load(Ordering::SeqCst), 3);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(errors.load(Ordering::SeqCst), 4);
    assert_eq!(panics.load(Ordering::SeqCst), 4);
    settle().await;
    let st = reg.sources();
    assert_eq!(st[0].health, Health::Ok);
    assert_eq!(st[0].restarts, 3);
    assert_eq!(
        reg.snapshot().peers.len(),
        2,
        "steady-peer and x (both flaky sources report the same x)"
    );
    reg.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn the_cache_gives_a_restart_a_list_at_once_until_primaries_sync() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("roster.json");
    let cfg = RegistryConfig {
        cache_file: Some(cache.clone()),
        ..Default::default()
    };
    let (tx, s) = scripted();
    let reg = RegistryBuilder::new(cfg.clone())
        .source("s", opts(0), s)
        .start()
        .unwrap();
    tx.send(SourceEvent::Replace(vec![
        obs("a", &[(AgentId, "a")], &["10.0.0.1:1"]),
        obs("b", &[(AgentId, "b")], &["10.0.0.2:1"]),
    ]))
    .await
    .unwrap();
    settle().await;
    reg.shutdown().await;
    assert!(cache.exists());

    let (tx, s) = scripted();
    let reg = RegistryBuilder::new(cfg)
        .source("s", opts(0), s)
        .start()
        .unwrap();
    let snap = reg.snapshot();
    assert_eq!(snap.peers.len(), 2, "cached roster at once");
    assert_eq!(&*snap.peers[0].sources[0].name, "cache");
    assert_eq!(snap.peers[0].addrs, ["/ip4/10.0.0.1/tcp/1"]);
    tx.send(SourceEvent::Replace(vec![obs(
        "b",
        &[(AgentId, "b")],
        &["10.0.0.2:1"],
    )]))
    .await
    .unwrap();
    settle().await;
    let ids: Vec<String> = reg.snapshot().peers.iter().map(|p| p.id.clone()).collect();
    assert_eq!(ids, ["b"], "after the first sync the cache steps aside");
    reg.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_broken_cache_file_is_ignored_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("roster.json");
    std::fs::write(&cache, b"{not json").unwrap();
    let cfg = RegistryConfig {
        cache_file: Some(cache),
        ..Default::default()
    };
    let (_tx, s) = scripted();
    let reg = RegistryBuilder::new(cfg)
        .source("s", opts(0), s)
        .start()
        .unwrap();
    assert!(reg.snapshot().peers.is_empty());
    reg.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn wait_first_sync_returns_when_every_source_synced_or_failed() {
    let (tx, s) = scripted();
    let runs = Arc::new(AtomicU32::new(0));
    let reg = RegistryBuilder::new(RegistryConfig::default())
        .source("s", opts(0), s)
        .source("bad", opts(0), Flaky { runs, panic: false })
        .start()
        .unwrap();
    assert!(
        !reg.wait_first_sync(Duration::from_millis(100)).await,
        "s has not synced"
    );
    tx.send(SourceEvent::Synced).await.unwrap();
    assert!(reg.wait_first_sync(Duration::from_secs(1)).await);
    assert!(
        !reg.ready(),
        "ready means every primary synced; `bad` has not"
    );
    reg.shutdown().await;
}

#[test]
fn duplicate_source_names_are_refused() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (_a, s1) = scripted();
        let (_b, s2) = scripted();
        let err = RegistryBuilder::new(RegistryConfig::default())
            .source("x", opts(0), s1)
            .source("x", opts(0), s2)
            .start()
            .unwrap_err();
        assert!(err.to_string().contains("`x`"));
    });
}

/// Random upserts, removals and replaces: the incrementally maintained roster
/// always equals the roster merged from scratch out of the same observations.
#[test]
fn incremental_merge_equals_merge_from_scratch() {
    use super::state::{SourceClass, State};
    use crate::addr::AddressPolicy;
    use std::time::SystemTime;

    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let kinds = [AgentId, PeerId, ContainerId, TaskId, AliasKind::Hostname];
    let now = tokio::time::Instant::now();
    let wall = SystemTime::now();
    let new_state = || {
        let mut s = State::new(AddressPolicy::default());
        for i in 0..3 {
            s.add_source(
                Arc::from(format!("s{i}")),
                [30, 20, 10][i],
                SourceClass::Primary,
                Duration::from_secs(60),
            );
        }
        s
    };
    for round in 0..40 {
        let mut live: std::collections::BTreeMap<(u16, String), Observation> = Default::default();
        let mut s = new_state();
        for _ in 0..200 {
            let src = next(3) as u16;
            let key = format!("k{}", next(12));
            match next(10) {
                0 => {
                    live.remove(&(src, key.clone()));
                    s.apply(src, SourceEvent::Remove { key }, now, wall);
                }
                1 => {
                    let mut all = Vec::new();
                    live.retain(|(ls, _), _| *ls != src);
                    for _ in 0..next(4) {
                        let k = format!("k{}", next(12));
                        let o = obs(
                            &k,
                            &[(kinds[next(5) as usize], &format!("v{}", next(6)))],
                            &[],
                        );
                        if !all.iter().any(|x: &Observation| x.key == k) {
                            live.insert((src, k), o.clone());
                            all.push(o);
                        }
                    }
                    s.apply(src, SourceEvent::Replace(all), now, wall);
                }
                _ => {
                    let n_alias = 1 + next(3);
                    let mut aliases = Vec::new();
                    for _ in 0..n_alias {
                        aliases.push(Alias::new(kinds[next(5) as usize], format!("v{}", next(6))));
                    }
                    let o = Observation {
                        key: key.clone(),
                        aliases,
                        ..Default::default()
                    };
                    live.insert((src, key), o.clone());
                    s.apply(src, SourceEvent::Upsert(o), now, wall);
                }
            }
            s.check_invariants();
            let _ = s.take_events().count();
        }
        let mut fresh = new_state();
        fresh.reference_only = true;
        for ((src, _), o) in &live {
            fresh.apply(*src, SourceEvent::Upsert(o.clone()), now, wall);
        }
        fresh.check_invariants();
        assert_eq!(s.groups(), fresh.groups(), "round {round}");
        assert_eq!(
            s.conflicts().len(),
            fresh.conflicts().len(),
            "round {round}"
        );
    }
}

/// A merge state with primary sources of these names and priorities, and
/// the instant and wall time its tests apply events at.
pub(super) fn primaries(
    sources: &[(&str, i32)],
) -> (
    super::state::State,
    tokio::time::Instant,
    std::time::SystemTime,
) {
    use super::state::{SourceClass, State};
    let mut s = State::new(crate::addr::AddressPolicy::default());
    for (name, priority) in sources {
        s.add_source(
            Arc::from(*name),
            *priority,
            SourceClass::Primary,
            Duration::from_secs(1 << 20),
        );
    }
    (
        s,
        tokio::time::Instant::now(),
        std::time::SystemTime::UNIX_EPOCH,
    )
}

/// The expiry queue drops entries lazily: removals and earlier expiries
/// leave stale entries behind, which stay bounded and never expire anything.
#[test]
fn expiry_queue_stays_bounded_under_removals_and_expires_exactly_the_live() {
    use super::state::State;

    let (mut s, t0, wall) = primaries(&[("s", 0)]);
    let upsert = |s: &mut State, i: usize, ttl: u64| {
        let mut o = obs(&format!("k{i}"), &[(AgentId, &format!("agent-{i}"))], &[]);
        o.ttl = Some(Duration::from_secs(ttl));
        s.apply(0, SourceEvent::Upsert(o), t0, wall);
    };
    for i in 0..1000 {
        upsert(&mut s, i, 60);
    }
    // 900 removed, and 50 of the rest re-sent with an earlier expiry.
    for i in 0..900 {
        s.apply(
            0,
            SourceEvent::Remove {
                key: format!("k{i}"),
            },
            t0,
            wall,
        );
        s.check_invariants();
    }
    for i in 900..950 {
        upsert(&mut s, i, 30);
    }
    s.check_invariants();
    let _ = s.take_events().count();
    assert_eq!(s.peer_count(), 100);
    // Nothing is due before the earliest live expiry.
    s.advance(t0 + Duration::from_secs(29));
    assert_eq!(s.peer_count(), 100);
    s.advance(t0 + Duration::from_secs(30));
    assert_eq!(s.peer_count(), 50, "the 50 re-sent with 30 s expired");
    s.advance(t0 + Duration::from_secs(60));
    assert_eq!(s.peer_count(), 0);
    s.check_invariants();
    assert_eq!(s.next_deadline(), None, "no entry left, stale or live");
}

/// Bad input at the sighting store's limits: an overlong key drops the
/// observation, overlong alias values and address texts are left out, and
/// each is counted; the rest of the observation and the roster stay.
#[test]
fn overlong_keys_aliases_and_addresses_are_dropped_and_counted() {
    let (mut s, t0, wall) = primaries(&[("s", 0)]);
    s.apply(
        0,
        SourceEvent::Upsert(obs("k1", &[(AgentId, "agent-1")], &["/ip4/10.0.0.1/tcp/1"])),
        t0,
        wall,
    );
    // A 17 KiB key: dropped whole, the roster untouched.
    let long_key = "k".repeat(17 * 1024);
    s.apply(
        0,
        SourceEvent::Upsert(obs(&long_key, &[(AgentId, "agent-2")], &[])),
        t0,
        wall,
    );
    // A 2 KiB alias value and a 2 KiB DNS name: left out; the rest is kept.
    let long_value = "v".repeat(2048);
    let long_name = format!("/dns/{}/tcp/1", "a".repeat(2048));
    s.apply(
        0,
        SourceEvent::Upsert(obs(
            "k3",
            &[(AgentId, "agent-3"), (PeerId, &long_value)],
            &["/ip4/10.0.0.3/tcp/1", &long_name],
        )),
        t0,
        wall,
    );
    s.check_invariants();
    let roster = s.snapshot();
    let ids: Vec<&str> = roster.peers.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, ["agent-1", "agent-3"]);
    let p3 = &roster.peers[1];
    assert_eq!(p3.aliases, vec![Alias::agent_id("agent-3")]);
    assert_eq!(p3.addrs, ["/ip4/10.0.0.3/tcp/1"]);
    assert_eq!(s.dropped_addrs(), 1, "the overlong address counted");
}

/// The display id after a sighting joins a peer is told from the sighting
/// alone when the peer's id is its merge's first alias (`id_after_join`);
/// in tests every such answer is checked against the full merge. These are
/// the cases where the two could part: an earlier alias taken by another
/// peer, all of them taken, and an alias of the id's own kind arriving
/// from a higher priority.
#[test]
fn display_ids_after_joins_match_the_full_merge() {
    use super::state::State;

    let (mut s, t0, wall) = primaries(&[("lo", 10), ("hi", 100)]);
    let up = |s: &mut State, src: u16, key: &str, aliases: &[(AliasKind, &str)]| {
        s.apply(src, SourceEvent::Upsert(obs(key, aliases, &[])), t0, wall);
        s.check_invariants();
    };
    let id_of = |s: &mut State, alias: &str| {
        let r = s.snapshot();
        r.peers
            .iter()
            .find(|p| p.aliases.iter().any(|a| a.value == alias))
            .map(|p| p.id.clone())
    };
    up(&mut s, 0, "a", &[(PeerId, "x")]);
    // An earlier alias is another peer's id: the next one is taken.
    up(&mut s, 0, "b", &[(TaskId, "t-2")]);
    up(
        &mut s,
        0,
        "c",
        &[(TaskId, "t-2"), (AgentId, "x"), (PeerId, "p-2")],
    );
    assert_eq!(id_of(&mut s, "t-2").as_deref(), Some("p-2"));
    // All earlier aliases taken: the id stays, and the next join merges.
    up(&mut s, 0, "d", &[(TaskId, "t-4")]);
    up(&mut s, 0, "e", &[(TaskId, "t-4"), (AgentId, "x")]);
    assert_eq!(id_of(&mut s, "t-4").as_deref(), Some("t-4"));
    up(&mut s, 0, "f", &[(TaskId, "t-4"), (PeerId, "p-4")]);
    assert_eq!(id_of(&mut s, "t-4").as_deref(), Some("p-4"));
    // The id's own kind from a higher priority: that spelling comes first.
    up(&mut s, 0, "g", &[(TaskId, "t-6")]);
    up(&mut s, 1, "h", &[(TaskId, "t-6 ")]);
    assert_eq!(id_of(&mut s, "t-6 ").as_deref(), Some("t-6 "));
    assert_eq!(s.peer_count(), 4);
}
