//! Source health and readiness: degraded keeps the last good set, a sync is
//! only a complete refresh, the cache stands in until every primary synced,
//! and the registry is ready only once every primary source has synced.

use std::time::SystemTime;

use tokio::time::Instant;

use super::{ObsIdx, SourceClass, State};
use crate::source::SourceIdx;
use crate::status::Health;

impl State {
    pub(super) fn mark_degraded(&mut self, src: SourceIdx, reason: String, now: Instant) {
        // Lets the tests make the merge task panic for real.
        #[cfg(test)]
        assert!(reason != "test: panic the merge task", "{reason}");
        let meta = &mut self.sources[src as usize];
        meta.counters.errors.increment(1);
        if meta.health != Health::Degraded || meta.stale_deadline.is_none() {
            meta.stale_deadline = Some(now + meta.max_staleness);
        }
        meta.health = Health::Degraded;
        meta.last_error = Some(reason);
        meta.attempted = true;
    }

    pub(super) fn mark_synced(&mut self, src: SourceIdx, wall: SystemTime) {
        let m = &mut self.sources[src as usize];
        if !m.synced {
            m.counters.first_sync(m.added.elapsed());
        }
        m.synced = true;
        m.attempted = true;
        m.last_sync = Some(wall);
        m.health = Health::Ok;
        m.stale_deadline = None;
        self.drop_cache_if_primaries_synced();
    }

    pub(super) fn drop_cache_if_primaries_synced(&mut self) {
        let all_synced = self
            .sources
            .iter()
            .filter(|s| s.class == SourceClass::Primary)
            .all(|s| s.synced);
        if !all_synced {
            return;
        }
        let cached: Vec<ObsIdx> = self
            .sources
            .iter()
            .filter(|s| s.class == SourceClass::Cache)
            .flat_map(|s| s.keys.values())
            .collect();
        for idx in cached {
            self.remove_obs(idx);
        }
    }

    /// Every source has finished its first attempt (synced or failed).
    pub(crate) fn all_attempted(&self) -> bool {
        self.sources
            .iter()
            .filter(|s| !matches!(s.class, SourceClass::Cache | SourceClass::Retired))
            .all(|s| s.attempted)
    }

    /// Why the registry is not ready: one line per enabled primary source
    /// that never completed a successful sync, naming it. Empty when ready.
    pub(crate) fn not_ready(&self) -> Vec<String> {
        self.sources
            .iter()
            .filter(|s| s.class == SourceClass::Primary && !s.synced)
            .map(|s| match &s.last_error {
                Some(e) => format!("source `{}` never synced: {e}", s.name),
                None => format!("source `{}` has not synced yet", s.name),
            })
            .collect()
    }

    /// Every primary source has synced at least once.
    pub(crate) fn primaries_synced(&self) -> bool {
        self.sources
            .iter()
            .filter(|s| s.class == SourceClass::Primary)
            .all(|s| s.synced)
    }
}
