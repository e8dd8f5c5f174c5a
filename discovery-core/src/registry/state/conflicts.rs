//! Identity conflicts: reported (event, metric, log) when they appear, listed
//! exactly while they hold, dropped once the clash is gone.

use std::collections::BTreeMap;

use super::partition::FoundConflict;
use super::{AliasKind, Conflict, ObsIdx, RosterEvent, State};

impl State {
    pub(crate) fn conflicts(&self) -> Vec<Conflict> {
        self.conflicts.values().cloned().collect()
    }

    pub(super) fn obs_label(&self, idx: ObsIdx) -> String {
        self.entry(idx)
            .map(|e| format!("{}/{}", self.sources[e.source as usize].name, e.text.key()))
            .unwrap_or_default()
    }

    pub(super) fn update_conflicts(&mut self, comp: &[ObsIdx], found: Vec<FoundConflict>) {
        let mut touched = std::mem::take(&mut self.unindexed_aliases);
        if found.is_empty() && self.conflicts.is_empty() {
            return;
        }
        // Conflicts about any alias of this component are re-decided here.
        for &o in comp {
            if let Some(e) = self.entry(o) {
                for a in e.text.aliases() {
                    touched.push((a.kind, a.match_value().to_owned()));
                }
            }
        }
        let mut fresh: BTreeMap<(AliasKind, String), Conflict> = BTreeMap::new();
        for f in found {
            let key = (f.shared.kind, f.shared.match_value().to_owned());
            let peer_of = |i: ObsIdx| {
                self.entry(i)
                    .and_then(|e| e.peer())
                    .and_then(|p| self.peers[p as usize].as_ref())
                    .map(|p| p.view.id.clone())
                    .unwrap_or_default()
            };
            let (pa, pb) = (peer_of(f.a), peer_of(f.b));
            let (la, lb) = (self.obs_label(f.a), self.obs_label(f.b));
            let c = fresh.entry(key).or_insert_with(|| Conflict {
                shared: f.shared.clone(),
                disputed: f.disputed,
                peers: Vec::new(),
                observations: Vec::new(),
            });
            for p in [pa, pb] {
                if !c.peers.contains(&p) {
                    c.peers.push(p);
                }
            }
            for l in [la, lb] {
                if !c.observations.contains(&l) {
                    c.observations.push(l);
                }
            }
        }
        for k in &touched {
            if !fresh.contains_key(k) {
                self.conflicts.remove(k);
            }
        }
        for (k, c) in fresh {
            if self.conflicts.get(&k) != Some(&c) {
                tracing::warn!(alias = %c.shared.value, kind = %c.shared.kind, disputed = %c.disputed, observations = ?c.observations, "identity conflict: not merged");
                metrics::counter!("rollcall_roster_conflicts_total").increment(1);
                self.settle();
                self.out.push(RosterEvent::Conflict {
                    version: self.version,
                    conflict: c.clone(),
                });
                self.conflicts.insert(k, c);
            }
        }
    }
}
