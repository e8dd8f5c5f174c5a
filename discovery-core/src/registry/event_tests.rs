//! Regression tests for the event stream (findings 1 and 2 of issue 8): the
//! events replayed over a snapshot give the next snapshot, by uid.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::state::{SourceClass, State};
use crate::addr::AddressPolicy;
use crate::model::{Alias, AliasKind, Observation};
use crate::roster::{Peer, RosterEvent};
use crate::source::SourceEvent;

/// A replica of the roster built only from events, the way a watcher would.
#[derive(Default, Debug)]
pub(crate) struct Replica {
    pub(crate) version: u64,
    pub(crate) by_uid: BTreeMap<u64, Arc<Peer>>,
    /// A replica keyed by display id, kept as `RosterEvent` says (an id is
    /// removed only while it names the event's uid): it must end equal too.
    pub(crate) by_id: BTreeMap<String, u64>,
    /// Keep copies, not the events' views: the registry's views stay its
    /// own, so it rewrites them in place (else it copies them first).
    pub(crate) copies: bool,
}

impl Replica {
    /// Applies one event; panics when its version is not the next one.
    pub(crate) fn apply(&mut self, ev: &RosterEvent) {
        match ev {
            RosterEvent::Joined { version, peer } | RosterEvent::Updated { version, peer, .. } => {
                assert_eq!(
                    *version,
                    self.version + 1,
                    "versions are consecutive: {ev:?}"
                );
                self.version = *version;
                assert!(
                    !peer.sources.is_empty(),
                    "an event carries a merged view, never a blank one: {ev:?}"
                );
                let peer = if self.copies {
                    Arc::new(Peer::clone(peer))
                } else {
                    peer.clone()
                };
                if let RosterEvent::Updated {
                    renamed_from: Some(was),
                    ..
                } = ev
                {
                    if self.by_id.get(was) == Some(&peer.uid) {
                        self.by_id.remove(was);
                    }
                }
                self.by_id.insert(peer.id.clone(), peer.uid);
                self.by_uid.insert(peer.uid, peer);
            }
            RosterEvent::Left { version, peer, .. } => {
                assert_eq!(
                    *version,
                    self.version + 1,
                    "versions are consecutive: {ev:?}"
                );
                self.version = *version;
                assert!(
                    !peer.sources.is_empty(),
                    "a peer leaves as it was, not blank: {ev:?}"
                );
                assert!(
                    self.by_uid.remove(&peer.uid).is_some(),
                    "left a peer the replica never had: {ev:?}"
                );
                if self.by_id.get(&peer.id) == Some(&peer.uid) {
                    self.by_id.remove(&peer.id);
                }
            }
            RosterEvent::Conflict { version, .. } => {
                assert_eq!(*version, self.version, "a conflict keeps the version");
            }
            #[allow(unreachable_patterns)]
            _ => {}
        }
    }

    /// The replica's peers as `(uid, id)` sorted by id, like a snapshot.
    pub(crate) fn ids(&self) -> Vec<(u64, String)> {
        let mut v: Vec<(u64, String)> = self
            .by_uid
            .values()
            .map(|p| (p.uid, p.id.clone()))
            .collect();
        v.sort_by(|a, b| a.1.cmp(&b.1));
        v
    }
}

pub(crate) fn snapshot_ids(state: &mut State) -> Vec<(u64, String)> {
    state
        .snapshot()
        .peers
        .iter()
        .map(|p| (p.uid, p.id.clone()))
        .collect()
}

fn obs(key: &str, aliases: &[(AliasKind, &str)]) -> Observation {
    Observation {
        key: key.into(),
        aliases: aliases.iter().map(|(k, v)| Alias::new(*k, *v)).collect(),
        ..Default::default()
    }
}

struct Rig {
    state: State,
    replica: Replica,
    now: Instant,
    events: Vec<RosterEvent>,
}

impl Rig {
    fn new(priorities: &[i32]) -> Self {
        let mut state = State::new(AddressPolicy::default());
        for (i, p) in priorities.iter().enumerate() {
            state.add_source(
                Arc::from(format!("s{i}")),
                *p,
                SourceClass::Primary,
                Duration::from_secs(300),
            );
        }
        Rig {
            state,
            replica: Replica::default(),
            now: Instant::now(),
            events: Vec::new(),
        }
    }

    fn apply(&mut self, src: u16, ev: SourceEvent) {
        self.state.apply(src, ev, self.now, SystemTime::UNIX_EPOCH);
        let evs: Vec<RosterEvent> = self.state.take_events().collect();
        for e in &evs {
            self.replica.apply(e);
        }
        assert_eq!(self.replica.version, self.state.version());
        assert_eq!(
            self.replica.ids(),
            snapshot_ids(&mut self.state),
            "replayed events == snapshot after {evs:#?}"
        );
        self.events.extend(evs);
    }
}

use AliasKind::{AgentId, ContainerId};

/// Finding 1: `hi` sees a container, `lo` sees the agent, then `lo` learns
/// the container id too. The roster is one peer and the events must say so.
#[tokio::test(start_paused = true)]
async fn finding1_merge_events_replay_to_the_roster() {
    let mut rig = Rig::new(&[100, 10]);
    rig.apply(
        0,
        SourceEvent::Upsert(obs("c", &[(ContainerId, "c12c12c12c12aaaa")])),
    );
    rig.apply(1, SourceEvent::Upsert(obs("a", &[(AgentId, "agent-7")])));
    rig.apply(
        1,
        SourceEvent::Upsert(obs(
            "a",
            &[(AgentId, "agent-7"), (ContainerId, "c12c12c12c12")],
        )),
    );
    let snap = rig.state.snapshot();
    assert_eq!(snap.peers.len(), 1);
    assert_eq!(snap.peers[0].id, "agent-7");
    // The survivor was never Left; the absorbed entry says where it went.
    let survivor = snap.peers[0].uid;
    let mut left_merged = 0;
    for e in &rig.events {
        if let RosterEvent::Left {
            peer, merged_into, ..
        } = e
        {
            assert_ne!(peer.uid, survivor, "the survivor never leaves: {e:?}");
            assert_eq!(*merged_into, Some(survivor));
            left_merged += 1;
        }
    }
    assert_eq!(left_merged, 1, "{:#?}", rig.events);

    // A watcher that keys by display id also ends with the roster.
    let mut by_id: BTreeMap<String, u64> = BTreeMap::new();
    for e in &rig.events {
        match e {
            RosterEvent::Joined { peer, .. } => {
                by_id.insert(peer.id.clone(), peer.uid);
            }
            RosterEvent::Updated {
                peer, renamed_from, ..
            } => {
                if let Some(old) = renamed_from {
                    by_id.remove(old);
                }
                by_id.insert(peer.id.clone(), peer.uid);
            }
            RosterEvent::Left { peer, .. } => {
                by_id.remove(&peer.id);
            }
            #[allow(unreachable_patterns)]
            _ => {}
        }
    }
    assert_eq!(
        by_id.into_iter().collect::<Vec<_>>(),
        vec![("agent-7".to_string(), survivor)]
    );
}

/// Finding 2: a better alias renames the peer; watchers see one Updated
/// with `renamed_from`, and the uid stays.
#[tokio::test(start_paused = true)]
async fn finding2_rename_is_one_update_with_a_stable_uid() {
    let mut rig = Rig::new(&[0]);
    rig.apply(
        0,
        SourceEvent::Upsert(obs("k", &[(ContainerId, "abcdefabcdef")])),
    );
    let uid = rig.state.snapshot().peers[0].uid;
    let before = rig.events.len();
    rig.apply(
        0,
        SourceEvent::Upsert(obs(
            "k",
            &[(ContainerId, "abcdefabcdef"), (AgentId, "agent-1")],
        )),
    );
    let new: Vec<_> = rig.events[before..].to_vec();
    assert_eq!(new.len(), 1, "{new:#?}");
    match &new[0] {
        RosterEvent::Updated {
            peer, renamed_from, ..
        } => {
            assert_eq!(peer.uid, uid);
            assert_eq!(peer.id, "agent-1");
            assert_eq!(renamed_from.as_deref(), Some("abcdefabcdef"));
        }
        other => panic!("expected Updated, got {other:?}"),
    }
    // The uid is in the roster JSON.
    let json = serde_json::to_value(&*rig.state.snapshot().peers[0]).unwrap();
    assert_eq!(json["uid"], uid);
}

/// A split (the bridging observation goes away) keeps one uid and joins the other.
#[tokio::test(start_paused = true)]
async fn split_keeps_one_uid_and_joins_the_rest() {
    let mut rig = Rig::new(&[5, 3, 1]);
    rig.apply(0, SourceEvent::Upsert(obs("x", &[(AgentId, "a")])));
    rig.apply(
        1,
        SourceEvent::Upsert(obs("y", &[(ContainerId, "cccccccccccc")])),
    );
    rig.apply(
        2,
        SourceEvent::Upsert(obs("b", &[(AgentId, "a"), (ContainerId, "cccccccccccc")])),
    );
    assert_eq!(rig.state.snapshot().peers.len(), 1);
    rig.apply(2, SourceEvent::Remove { key: "b".into() });
    assert_eq!(rig.state.snapshot().peers.len(), 2);
}

/// A state with these primary sources (name, priority), in this order.
fn primaries(sources: &[(&str, i32)]) -> State {
    let mut s = State::new(AddressPolicy::default());
    for &(name, prio) in sources {
        s.add_source(
            Arc::from(name),
            prio,
            SourceClass::Primary,
            Duration::from_secs(300),
        );
    }
    s
}

/// A lower-priority sighting that bridges two groups formed before it must
/// not win fields over the middle one: members stay in priority order.
#[test]
fn a_bridge_keeps_the_members_in_priority_order() {
    let mut s = primaries(&[("hi", 100), ("mid", 50), ("lo", 10)]);
    let now = Instant::now();
    let mut put = |src: u16, key: &str, aliases: &[(AliasKind, &str)], status: Option<&str>| {
        let mut o = Observation::new(key);
        o.aliases = aliases.iter().map(|(k, v)| Alias::new(*k, *v)).collect();
        o.meta.status = status.map(str::to_owned);
        s.apply(src, SourceEvent::Upsert(o), now, SystemTime::UNIX_EPOCH);
    };
    put(0, "a", &[(AliasKind::AgentId, "agent-1")], None);
    put(
        1,
        "b",
        &[(AliasKind::PeerId, "12D3KooWp")],
        Some("from-mid"),
    );
    put(
        2,
        "c",
        &[
            (AliasKind::AgentId, "agent-1"),
            (AliasKind::PeerId, "12D3KooWp"),
        ],
        Some("from-lo"),
    );
    let snap = s.snapshot();
    assert_eq!(snap.peers.len(), 1, "{snap:?}");
    assert_eq!(
        snap.peers[0].status.as_deref(),
        Some("from-mid"),
        "{snap:?}"
    );
}

/// A renewal makes no event and copies no view, yet a snapshot or lookup
/// taken after it shows each source's latest sighting; a snapshot taken
/// before keeps what it had.
#[test]
fn renewals_show_in_later_reads_without_touching_earlier_ones() {
    let mut s = primaries(&[("hi", 100), ("lo", 10)]);
    let now = Instant::now();
    let t = |secs: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
    let a = obs("a", &[(AliasKind::AgentId, "agent-1")]);
    let b = obs("b", &[(AliasKind::AgentId, "agent-1")]);
    s.apply(0, SourceEvent::Upsert(a.clone()), now, t(10));
    s.apply(1, SourceEvent::Upsert(b.clone()), now, t(10));
    let _ = s.take_events().count();
    let before = s.snapshot();
    let seen = |p: &Peer| -> Vec<(String, SystemTime)> {
        p.sources
            .iter()
            .map(|x| (x.name.to_string(), x.last_seen))
            .collect()
    };
    assert_eq!(
        seen(&before.peers[0]),
        [("hi".into(), t(10)), ("lo".into(), t(10))]
    );

    s.apply(1, SourceEvent::Upsert(b.clone()), now, t(20));
    s.apply(0, SourceEvent::Upsert(a.clone()), now, t(15));
    assert_eq!(s.take_events().count(), 0, "a renewal is not a change");
    let after = s.snapshot();
    assert_eq!(
        seen(&after.peers[0]),
        [("hi".into(), t(15)), ("lo".into(), t(20))]
    );
    assert_eq!(
        seen(&before.peers[0]),
        [("hi".into(), t(10)), ("lo".into(), t(10))],
        "the earlier snapshot is untouched"
    );
    s.apply(1, SourceEvent::Upsert(b), now, t(30));
    let looked_up = s.peer("agent-1").expect("listed");
    assert_eq!(
        seen(&looked_up),
        [("hi".into(), t(15)), ("lo".into(), t(30))]
    );
    assert!(
        Arc::ptr_eq(&looked_up, &s.snapshot().peers[0]),
        "one view, brought up to date once"
    );
}

/// A cold load brings a peer's sightings back to back: one batch gives
/// one `Joined` per peer carrying the whole merge (not one event per
/// sighting, never a view still empty), numbered consecutively.
#[tokio::test(start_paused = true)]
async fn a_run_of_sightings_is_one_fully_merged_joined() {
    let mut state = State::new(AddressPolicy::default());
    for (name, prio) in [("swarm", 30), ("nats", 20), ("mdns", 10)] {
        state.add_source(
            Arc::from(name),
            prio,
            SourceClass::Primary,
            Duration::from_secs(300),
        );
    }
    let (now, wall) = (Instant::now(), SystemTime::UNIX_EPOCH);
    let mut nats = obs(
        "agent-1",
        &[
            (AgentId, "agent-1"),
            (ContainerId, "c1c1c1c1c1c1"),
            (AliasKind::PeerId, "12D3KooW1"),
        ],
    );
    nats.meta.status = Some("idle".into());
    for (src, o) in [
        (
            0,
            obs(
                "task-1",
                &[
                    (AliasKind::TaskId, "task-1"),
                    (ContainerId, "c1c1c1c1c1c1ffff"),
                ],
            ),
        ),
        (1, nats),
        (2, obs("12D3KooW1", &[(AliasKind::PeerId, "12D3KooW1")])),
        (0, obs("task-2", &[(AliasKind::TaskId, "task-2")])),
    ] {
        state.apply(src, SourceEvent::Upsert(o), now, wall);
    }
    let events: Vec<RosterEvent> = state.take_events().collect();
    let joined: Vec<(u64, &Peer)> = events
        .iter()
        .map(|e| match e {
            RosterEvent::Joined { version, peer } => (*version, &**peer),
            other => panic!("only joins expected: {other:?}"),
        })
        .collect();
    assert_eq!(joined.len(), 2, "{events:#?}");
    let (v1, first) = joined[0];
    assert_eq!((v1, first.id.as_str()), (1, "agent-1"));
    assert_eq!(
        first.aliases.len(),
        4,
        "task, full container id, agent, peer id"
    );
    assert_eq!(first.status.as_deref(), Some("idle"));
    let seen: Vec<&str> = first.sources.iter().map(|s| &*s.name).collect();
    assert_eq!(seen, ["swarm", "nats", "mdns"]);
    assert_eq!((joined[1].0, joined[1].1.id.as_str()), (2, "task-2"));
    assert_eq!(state.snapshot().peers.len(), 2);
}
