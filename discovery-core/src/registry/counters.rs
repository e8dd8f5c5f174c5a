//! Per-source metric handles, registered once when the source is added so the
//! merge's hot path only bumps an atomic (no label allocation per event).

use std::time::Duration;

/// The counters of one source.
#[derive(Clone)]
pub(crate) struct SourceCounters {
    /// Events applied: upserts, removals, refreshes.
    pub(crate) updates: metrics::Counter,
    /// Times it reported itself degraded.
    pub(crate) errors: metrics::Counter,
    /// Time from start to first sync.
    first_sync: metrics::Gauge,
}

impl std::fmt::Debug for SourceCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SourceCounters")
    }
}

impl SourceCounters {
    pub(crate) fn new(name: &str) -> Self {
        let label = || ("source", name.to_owned());
        SourceCounters {
            updates: metrics::counter!("rollcall_source_updates_total", &[label()]),
            errors: metrics::counter!("rollcall_source_errors_total", &[label()]),
            first_sync: metrics::gauge!("rollcall_source_first_sync_seconds", &[label()]),
        }
    }

    pub(crate) fn first_sync(&self, took: Duration) {
        self.first_sync.set(took.as_secs_f64());
    }
}

/// Counts the roster events of one published batch.
pub(crate) fn count_events<'a>(events: impl Iterator<Item = &'a crate::roster::RosterEvent>) {
    use crate::roster::RosterEvent;
    let (mut joins, mut leaves, mut updates) = (0u64, 0u64, 0u64);
    for ev in events {
        match ev {
            RosterEvent::Joined { .. } => joins += 1,
            RosterEvent::Left { .. } => leaves += 1,
            RosterEvent::Updated { .. } => updates += 1,
            _ => {}
        }
    }
    if joins > 0 {
        metrics::counter!("rollcall_roster_joins_total").increment(joins);
    }
    if leaves > 0 {
        metrics::counter!("rollcall_roster_leaves_total").increment(leaves);
    }
    if updates > 0 {
        metrics::counter!("rollcall_roster_updates_total").increment(updates);
    }
}
