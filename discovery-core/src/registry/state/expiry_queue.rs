//! When observations expire: a min-heap of (expiry, observation) with lazy
//! removal. An entry whose observation is gone or filed at another time is
//! stale and skipped when it comes up; stale entries are dropped in one pass
//! once they outnumber the live ones, so the heap stays within twice the
//! observations with a TTL (plus a little). A push is O(1) for the usual
//! ever-later expiries, where a tree map paid a node walk and allocations.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::ticks::Tick;
use super::ObsIdx;

/// Stale entries tolerated before a compaction, whatever the live count.
const SLACK: usize = 64;

#[derive(Debug, Default)]
pub(super) struct ExpiryQueue {
    /// Earliest first; ties by observation index, as a sorted map ordered them.
    heap: BinaryHeap<Reverse<(Tick, ObsIdx)>>,
    /// Observations filed (their `queued` is set): the heap's live entries.
    live: usize,
}

impl ExpiryQueue {
    /// Files observation `idx` at `at` (it was not filed).
    pub(super) fn file(&mut self, at: Tick, idx: ObsIdx) {
        self.live += 1;
        self.heap.push(Reverse((at, idx)));
    }

    /// Observation `idx` is no longer filed where it was: its entry is now
    /// stale. `filed` lists every live entry, for a compaction.
    pub(super) fn unfile(&mut self, filed: impl FnOnce() -> Vec<(Tick, ObsIdx)>) {
        self.live = self.live.saturating_sub(1);
        if self.heap.len() > 2 * self.live + SLACK {
            self.heap = filed().into_iter().map(Reverse).collect();
        }
    }

    /// The earliest entry's time (it may be stale: the caller then pops it).
    pub(super) fn next_time(&self) -> Option<Tick> {
        self.heap.peek().map(|Reverse((t, _))| *t)
    }

    /// Takes the earliest entry if it is due at `now`; the caller decides
    /// whether it is live, and calls `popped_live` if so.
    pub(super) fn pop_due(&mut self, now: Tick) -> Option<(Tick, ObsIdx)> {
        match self.heap.peek() {
            Some(Reverse((t, _))) if *t <= now => self.heap.pop().map(|Reverse(e)| e),
            _ => None,
        }
    }

    /// The entry just popped was live (its observation is no longer filed).
    pub(super) fn popped_live(&mut self) {
        self.live = self.live.saturating_sub(1);
    }

    #[cfg(test)]
    pub(super) fn entries(&self) -> impl Iterator<Item = (Tick, ObsIdx)> + '_ {
        self.heap.iter().map(|Reverse(e)| *e)
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.heap.len()
    }

    #[cfg(test)]
    pub(super) fn live(&self) -> usize {
        self.live
    }
}
