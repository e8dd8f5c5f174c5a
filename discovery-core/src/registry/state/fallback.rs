//! Fallback sources count only while every primary is degraded or empty; they
//! stand down only after the primaries stayed healthy for the hold time.

use std::time::Duration;

use tokio::time::Instant;

use super::{Health, ObsIdx, SourceClass, State};

impl State {
    pub(crate) fn set_fallback_hold(&mut self, hold: Duration) {
        self.fallback_hold = hold;
    }

    /// Whether fallback sources count: every primary is degraded or empty.
    pub(super) fn refresh_fallback(&mut self, now: Instant) {
        let want = self
            .sources
            .iter()
            .filter(|s| s.class == SourceClass::Primary)
            .all(|s| s.health == Health::Degraded || s.keys.is_empty());
        if want {
            self.primaries_ok_since = None;
        }
        if want == self.fallback_active {
            return;
        }
        if !want && !self.fallback_at_start {
            // Hysteresis: the primaries must stay healthy for the hold time.
            let since = *self.primaries_ok_since.get_or_insert(now);
            if now < since + self.fallback_hold {
                return;
            }
        }
        self.primaries_ok_since = None;
        if !want {
            self.fallback_at_start = false;
        }
        self.settle(); // members change below
        self.fallback_active = want;
        tracing::info!(
            active = want,
            "fallback sources {}",
            if want { "now count" } else { "stand down" }
        );
        metrics::counter!("rollcall_fallback_switches_total", "to" => if want { "active" } else { "standby" })
            .increment(1);
        let fallback: Vec<ObsIdx> = self
            .sources
            .iter()
            .filter(|s| s.class == SourceClass::Fallback)
            .flat_map(|s| s.keys.values())
            .collect();
        if want {
            for &i in &fallback {
                if let Some(e) = self.obs.get_mut(i) {
                    e.active = true;
                }
                self.index(i);
            }
            self.recompute(&fallback, &[]);
        } else {
            let mut seeds = Vec::new();
            let mut old_peers = Vec::new();
            for &i in &fallback {
                seeds.extend(self.alias_neighbours(i));
                self.unindex(i);
                if let Some(e) = self.obs.get_mut(i) {
                    e.active = false;
                    if let Some(p) = e.take_peer() {
                        old_peers.push(p);
                        if let Some(pe) = self.peers[p as usize].as_mut() {
                            pe.members.retain(|m| *m != i);
                        }
                    }
                }
            }
            self.recompute(&seeds, &old_peers);
        }
    }
}
