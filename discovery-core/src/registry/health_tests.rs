//! Regression tests for source health (findings 3 and 4 of issue 8): a
//! partial refresh is degraded once, the fallback switches with hysteresis,
//! and readiness needs a successful sync of every primary.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::state::{SourceClass, State};
use crate::addr::AddressPolicy;
use crate::model::{Alias, Observation};
use crate::roster::RosterEvent;
use crate::source::SourceEvent;
use crate::status::Health;

fn agent(key: &str, id: &str) -> Observation {
    Observation::new(key).with_alias(Alias::agent_id(id))
}

fn rig(hold: Duration) -> State {
    let mut s = State::new(AddressPolicy::default());
    s.add_source(
        Arc::from("static"),
        10,
        SourceClass::Primary,
        Duration::from_secs(300),
    );
    s.add_source(
        Arc::from("seeds"),
        0,
        SourceClass::Fallback,
        Duration::from_secs(300),
    );
    s.set_fallback_hold(hold);
    s
}

fn counts(events: &[RosterEvent]) -> (usize, usize) {
    let joins = events
        .iter()
        .filter(|e| matches!(e, RosterEvent::Joined { .. }))
        .count();
    let leaves = events
        .iter()
        .filter(|e| matches!(e, RosterEvent::Left { .. }))
        .count();
    (joins, leaves)
}

/// Finding 3: a primary whose refresh partly fails every second, plus a
/// fallback. The fallback peer joins once and stays; the primary stays degraded.
#[test]
fn finding3_partial_refresh_every_tick_does_not_flap_the_fallback() {
    let mut s = rig(Duration::from_secs(10));
    let mut now = Instant::now();
    let wall = SystemTime::UNIX_EPOCH;
    s.apply(
        1,
        SourceEvent::Replace(vec![agent("w", "walnut")]),
        now,
        wall,
    );
    let mut events: Vec<RosterEvent> = s.take_events().collect();
    for _ in 0..6 {
        now += Duration::from_secs(1);
        s.apply(
            0,
            SourceEvent::Partial {
                observations: vec![agent("a", "agent-1")],
                reason: "`nosuch.invalid` does not resolve".into(),
            },
            now,
            wall,
        );
        s.advance(now);
        events.extend(s.take_events());
        let st = s.statuses();
        assert_eq!(
            st[0].health,
            Health::Degraded,
            "one meaning of health: degraded"
        );
        assert!(
            st[1].counted,
            "the fallback keeps counting while the primary is degraded"
        );
    }
    assert_eq!(
        counts(&events),
        (2, 0),
        "walnut and agent-1 join once: {events:#?}"
    );
}

/// Hysteresis: the fallback stands down only after the primary stayed
/// healthy for the hold time; a relapse inside the hold is no switch at all.
#[test]
fn fallback_stands_down_after_the_hold_time_only() {
    let hold = Duration::from_secs(10);
    let mut s = rig(hold);
    let mut now = Instant::now();
    let wall = SystemTime::UNIX_EPOCH;
    s.apply(
        1,
        SourceEvent::Replace(vec![agent("w", "walnut")]),
        now,
        wall,
    );
    // At start the first healthy primary replaces the fallback at once.
    s.apply(
        0,
        SourceEvent::Replace(vec![agent("a", "agent-1")]),
        now,
        wall,
    );
    assert!(!s.statuses()[1].counted);
    // It fails: the fallback stands in immediately.
    s.apply(
        0,
        SourceEvent::Degraded {
            reason: "down".into(),
        },
        now,
        wall,
    );
    assert!(s.statuses()[1].counted);
    let _ = s.take_events().count();
    // It recovers, then flaps inside the hold: the fallback never stands down.
    for _ in 0..3 {
        now += Duration::from_secs(3);
        s.apply(
            0,
            SourceEvent::Replace(vec![agent("a", "agent-1")]),
            now,
            wall,
        );
        s.advance(now);
        assert!(s.statuses()[1].counted);
        now += Duration::from_secs(3);
        s.apply(
            0,
            SourceEvent::Degraded {
                reason: "down".into(),
            },
            now,
            wall,
        );
        s.advance(now);
    }
    let flapping: Vec<RosterEvent> = s.take_events().collect();
    assert_eq!(counts(&flapping), (0, 0), "{flapping:#?}");
    // Healthy for the whole hold: one stand-down, walnut leaves once.
    s.apply(
        0,
        SourceEvent::Replace(vec![agent("a", "agent-1")]),
        now,
        wall,
    );
    now += hold - Duration::from_millis(1);
    s.advance(now);
    assert!(s.statuses()[1].counted);
    assert_eq!(s.next_deadline(), Some(now + Duration::from_millis(1)));
    now += Duration::from_millis(1);
    s.advance(now);
    assert!(!s.statuses()[1].counted);
    let ev: Vec<RosterEvent> = s.take_events().collect();
    assert_eq!(counts(&ev), (0, 1), "{ev:#?}");
}

/// Finding 4: a primary whose only file was refused is degraded with 0 peers
/// and never synced: not ready, and the reason names it.
#[test]
fn finding4_never_synced_primary_is_not_ready_and_named() {
    let mut s = rig(Duration::ZERO);
    let now = Instant::now();
    let wall = SystemTime::UNIX_EPOCH;
    s.apply(
        0,
        SourceEvent::Partial {
            observations: vec![],
            reason: "peers file /etc/peers.toml is over the 8 MiB limit".into(),
        },
        now,
        wall,
    );
    assert!(!s.primaries_synced());
    let why = s.not_ready();
    assert_eq!(why.len(), 1);
    assert!(
        why[0].contains("`static`") && why[0].contains("8 MiB"),
        "{why:?}"
    );
    s.apply(0, SourceEvent::Replace(vec![]), now, wall);
    assert!(s.primaries_synced(), "an empty but complete sync is a sync");
    assert!(s.not_ready().is_empty());
}

/// A panic in the merge task is visible: not ready with the reason, the
/// watcher ends and says why.
#[tokio::test(start_paused = true)]
async fn a_merge_task_panic_is_not_ready_and_ends_watchers() {
    use super::{RegistryBuilder, SourceOptions, WatchUpdate};
    use crate::config::RegistryConfig;
    use crate::source::{DiscoverySource, SourceContext, SourceError};

    struct Boom;
    #[async_trait::async_trait]
    impl DiscoverySource for Boom {
        async fn run(&self, ctx: SourceContext) -> Result<(), SourceError> {
            let _ = ctx.events.replace(vec![]).await;
            tokio::time::sleep(Duration::from_secs(1)).await;
            let _ = ctx.events.degraded("test: panic the merge task").await;
            ctx.shutdown.cancelled().await;
            Ok(())
        }
    }
    let reg = RegistryBuilder::new(RegistryConfig::default())
        .source("boom", SourceOptions::default(), Boom)
        .start()
        .unwrap();
    let mut w = reg.watch();
    assert!(matches!(w.next().await, Some(WatchUpdate::Snapshot(_))));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(reg.ready());
    let end = tokio::time::timeout(Duration::from_secs(5), w.next()).await;
    assert!(matches!(end, Ok(None)), "the watcher ends: {end:?}");
    assert!(w.error().is_some_and(|e| e.contains("merge task panicked")));
    assert!(!reg.ready());
    assert!(reg.not_ready_reasons()[0].contains("merge task panicked"));
    reg.shutdown().await;
}

/// A fallback sighting makes a new peer whose view is written later
/// (`deferred`); the same apply ends with the fallback standing down
/// (the primaries healthy for the hold time). The peer leaves as it was
/// merged, never as a view with nothing in it (found by the model test).
#[test]
fn a_fallback_standing_down_after_its_own_sighting_publishes_no_blank_view() {
    let mut s = rig(Duration::from_secs(1));
    let start = Instant::now();
    let wall = SystemTime::UNIX_EPOCH;
    s.apply(0, SourceEvent::Upsert(agent("a", "agent-1")), start, wall);
    s.apply(1, SourceEvent::Upsert(agent("w", "walnut")), start, wall);
    let _ = s.take_events().count();
    // The fallback stood down with the first primary sighting (the first
    // time is immediate); make it count again, then come back.
    s.apply(
        0,
        SourceEvent::Degraded {
            reason: "down".into(),
        },
        start,
        wall,
    );
    s.apply(0, SourceEvent::Healthy, start, wall);
    let _ = s.take_events().count();
    let later = start + Duration::from_secs(2);
    s.apply(1, SourceEvent::Upsert(agent("v", "vetch")), later, wall);
    let events: Vec<RosterEvent> = s.take_events().collect();
    for e in &events {
        if let RosterEvent::Joined { peer, .. }
        | RosterEvent::Updated { peer, .. }
        | RosterEvent::Left { peer, .. } = e
        {
            assert!(!peer.sources.is_empty(), "a blank view published: {e:?}");
        }
    }
    assert!(
        s.snapshot().peers.iter().all(|p| p.id == "agent-1"),
        "the fallback stood down: {events:#?}"
    );
}
