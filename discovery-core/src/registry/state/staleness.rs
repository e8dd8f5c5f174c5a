//! Ageing out: an observation's TTL expires it, and a degraded source's
//! sightings without TTL go once they are older than its maximum staleness.

use tokio::time::Instant;

use super::obs_table::ObsTable;
use super::{Health, ObsIdx, SourceClass, State, Tick};

impl State {
    /// The earliest moment `advance` has work to do.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let ttl = self.expiry.next_time().map(|t| self.clock.instant(t));
        let stale = self.sources.iter().filter_map(|s| s.stale_deadline).min();
        let hold = self
            .primaries_ok_since
            .filter(|_| self.fallback_active)
            .map(|t| t + self.fallback_hold);
        [ttl, stale, hold].into_iter().flatten().min()
    }

    /// Expires observations whose TTL passed and drops what degraded sources
    /// kept for longer than their maximum staleness.
    pub(crate) fn advance(&mut self, now: Instant) {
        self.settle();
        let now_tick = self.clock.tick(now);
        while let Some((t, idx)) = self.expiry.pop_due(now_tick) {
            let Some(e) = self.obs.get_mut(idx) else {
                continue;
            };
            if e.queued != Some(t) {
                continue; // stale: re-filed or replaced since
            }
            self.expiry.popped_live();
            e.queued = None;
            match e.expiry {
                // Renewed since it was filed: file it again at its expiry.
                Some(at) if at > now_tick => {
                    e.queued = Some(at);
                    self.expiry.file(at, idx);
                    continue;
                }
                _ => e.expiry = None,
            }
            tracing::debug!(obs = idx, "observation expired");
            metrics::counter!("rollcall_observations_expired_total").increment(1);
            self.remove_obs(idx);
        }
        for s in 0..self.sources.len() {
            let due = self.sources[s].stale_deadline.is_some_and(|d| d <= now);
            if !due {
                continue;
            }
            let class = self.sources[s].class;
            let max = self.sources[s].max_staleness;
            // Still degraded: what a partial refresh keeps confirming stays,
            // and the next sweep is due one staleness period from now.
            self.sources[s].stale_deadline = (self.sources[s].health == Health::Degraded
                && class != SourceClass::Cache)
                .then(|| now + max);
            let victims: Vec<ObsIdx> = self.sources[s]
                .keys
                .values()
                .filter(|&i| {
                    class == SourceClass::Cache
                        || self
                            .entry(i)
                            .is_some_and(|e| e.expiry.is_none() && e.seen_at.after(max) <= now_tick)
                })
                .collect();
            if !victims.is_empty() {
                tracing::warn!(source = %self.sources[s].name, dropped = victims.len(), "source stale for too long; dropping its last known set");
            }
            for idx in victims {
                self.remove_obs(idx);
            }
        }
        self.refresh_fallback(now);
    }

    pub(super) fn set_expiry(&mut self, idx: ObsIdx, at: Option<Tick>) {
        let Some(e) = self.obs.get_mut(idx) else {
            return;
        };
        e.expiry = at;
        // A later expiry (a renewal) keeps the queue entry, re-filed when due.
        if at.is_some_and(|at| e.queued.is_some_and(|q| q <= at)) {
            return;
        }
        if e.queued.take().is_some() {
            let obs = &self.obs;
            self.expiry.unfile(|| filed(obs));
        }
        if let Some(at) = at {
            if let Some(e) = self.obs.get_mut(idx) {
                e.queued = Some(at);
            }
            self.expiry.file(at, idx);
        }
    }
}

/// Every observation's place in the expiry queue.
fn filed(obs: &ObsTable) -> Vec<(Tick, ObsIdx)> {
    obs.iter()
        .filter_map(|(i, e)| Some((e.queued?, i)))
        .collect()
}
