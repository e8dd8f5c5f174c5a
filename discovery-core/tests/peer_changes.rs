//! `Registry::peer_changes` read through tower's own `Discover` trait: the
//! changes applied to a map keyed by `uid` give the roster, through a merge of
//! two entries (issue 8, finding 1) and through a resync after the reader fell
//! behind the watch buffer.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use discovery_core::{
    Alias, AliasKind, DiscoverySource, EventSender, Observation, Peer, PeerChanges, Registry,
    RegistryBuilder, RegistryConfig, SourceContext, SourceError, SourceOptions,
};
use tokio::sync::Notify;
use tower::discover::{Change, Discover};

/// Hands its event sender to the test, then idles until shutdown.
struct Relay {
    events: Arc<Mutex<Option<EventSender>>>,
    ready: Arc<Notify>,
}

#[async_trait]
impl DiscoverySource for Relay {
    async fn run(&self, ctx: SourceContext) -> Result<(), SourceError> {
        *self.events.lock().unwrap() = Some(ctx.events.clone());
        self.ready.notify_one();
        ctx.shutdown.cancelled().await;
        Ok(())
    }
}

/// A registry with one relayed source per `(name, priority)`, and their senders.
async fn start(config: RegistryConfig, sources: &[(&str, i32)]) -> (Registry, Vec<EventSender>) {
    let mut b = RegistryBuilder::new(config);
    let mut slots = Vec::new();
    for &(name, priority) in sources {
        let events = Arc::new(Mutex::new(None));
        let ready = Arc::new(Notify::new());
        b = b.source(
            name,
            SourceOptions {
                priority,
                ..Default::default()
            },
            Relay {
                events: events.clone(),
                ready: ready.clone(),
            },
        );
        slots.push((events, ready));
    }
    let reg = b.start().expect("registry starts");
    let mut senders = Vec::new();
    for (events, ready) in slots {
        let sender = loop {
            if let Some(s) = events.lock().unwrap().clone() {
                break s;
            }
            ready.notified().await;
        };
        let _ = sender.synced().await;
        senders.push(sender);
    }
    (reg, senders)
}

/// The next change, through `Discover::poll_discover` (not the Stream).
async fn next_change(d: &mut PeerChanges) -> Option<Change<u64, Arc<Peer>>> {
    std::future::poll_fn(|cx| Pin::new(&mut *d).poll_discover(cx))
        .await
        .map(|r| r.expect("the registry did not fail"))
}

/// Reads changes into `map` until it is the roster (by uid, whole peers);
/// the keys removed are added to `removed`. Returns how many inserts it read.
async fn until_map_is_roster(
    d: &mut PeerChanges,
    map: &mut BTreeMap<u64, Arc<Peer>>,
    reg: &Registry,
    removed: &mut Vec<u64>,
) -> usize {
    let mut inserts = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let roster: BTreeMap<u64, Arc<Peer>> = reg
            .snapshot()
            .peers
            .into_iter()
            .map(|p| (p.uid, p))
            .collect();
        if *map == roster {
            return inserts;
        }
        let change = tokio::time::timeout_at(deadline, next_change(d))
            .await
            .unwrap_or_else(|_| {
                panic!("the changes never gave the roster:\nmap {map:#?}\nroster {roster:#?}")
            })
            .expect("the changes go on while the registry runs");
        match change {
            Change::Insert(uid, peer) => {
                assert_eq!(uid, peer.uid, "keyed by uid");
                map.insert(uid, peer);
                inserts += 1;
            }
            Change::Remove(uid) => {
                assert!(
                    map.remove(&uid).is_some(),
                    "removed a key never inserted: {uid}"
                );
                removed.push(uid);
            }
        }
    }
}

/// Waits until the roster reached `version` (every change so far applied).
async fn until_version(reg: &Registry, version: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while reg.version() < version {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the roster stayed at version {} (waiting for {version})",
            reg.version()
        );
        reg.wait_version_after(reg.version(), Duration::from_secs(1))
            .await;
    }
}

fn obs(key: &str, aliases: &[(AliasKind, &str)]) -> Observation {
    let mut o = Observation::new(key);
    for &(kind, value) in aliases {
        o = o.with_alias(Alias::new(kind, value));
    }
    o
}

#[tokio::test]
async fn a_merge_is_an_insert_of_the_survivor_and_a_remove_of_the_absorbed_key() {
    let (reg, src) = start(RegistryConfig::default(), &[("hi", 100), ("lo", 10)]).await;
    let mut changes = reg.peer_changes();
    let (mut map, mut removed) = (BTreeMap::new(), Vec::new());

    src[0]
        .upsert(obs("h", &[(AliasKind::ContainerId, "c12c12c12c12aaaa")]))
        .await
        .unwrap();
    src[1]
        .upsert(obs("l", &[(AliasKind::AgentId, "agent-7")]))
        .await
        .unwrap();
    until_version(&reg, 2).await;
    until_map_is_roster(&mut changes, &mut map, &reg, &mut removed).await;
    assert_eq!(map.len(), 2);

    // `lo` now also names the container: one agent, two entries merge.
    src[1]
        .upsert(obs(
            "l",
            &[
                (AliasKind::AgentId, "agent-7"),
                (AliasKind::ContainerId, "c12c12c12c12"),
            ],
        ))
        .await
        .unwrap();
    until_version(&reg, 3).await;
    until_map_is_roster(&mut changes, &mut map, &reg, &mut removed).await;
    let ids: Vec<&str> = map.values().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, ["agent-7"], "one peer, named by its agent id");
    assert_eq!(removed.len(), 1, "the absorbed entry's key is removed once");
    assert!(!map.contains_key(&removed[0]));
    reg.shutdown().await;
}

#[tokio::test]
async fn a_reader_behind_the_buffer_is_resynced_without_stale_keys() {
    let config = RegistryConfig {
        watch_buffer: 4,
        ..Default::default()
    };
    let (reg, src) = start(config, &[("only", 0)]).await;
    let mut changes = reg.peer_changes();
    let (mut map, mut removed) = (BTreeMap::new(), Vec::new());
    for id in ["a", "b", "c"] {
        src[0]
            .upsert(obs(id, &[(AliasKind::AgentId, id)]))
            .await
            .unwrap();
    }
    until_version(&reg, 3).await;
    until_map_is_roster(&mut changes, &mut map, &reg, &mut removed).await;
    let a = map.values().find(|p| p.id == "a").map(|p| p.uid).unwrap();

    // While the reader is away: `a` leaves and 20 peers join, far more events
    // than the buffer holds; the reader resyncs from a snapshot.
    let before = reg.version();
    src[0].remove("a").await.unwrap();
    for i in 0..20 {
        let id = format!("n{i}");
        src[0]
            .upsert(obs(&id, &[(AliasKind::AgentId, &id)]))
            .await
            .unwrap();
    }
    until_version(&reg, before + 21).await;
    let inserts = until_map_is_roster(&mut changes, &mut map, &reg, &mut removed).await;
    assert!(
        inserts >= 22,
        "resynced from a snapshot (every peer inserted again), not replayed: {inserts} inserts"
    );
    assert_eq!(removed, [a], "the peer that left while the reader was away");
    assert_eq!(map.len(), 22);
    reg.shutdown().await;
}
