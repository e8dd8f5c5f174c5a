//! Strong aliases to the observations claiming them: what links sightings
//! into one peer. Weak aliases (host names) and addresses are never indexed.

use smallvec::SmallVec;

use super::{kind_index, ObsIdx, State};

/// (position among the observation's aliases, hash of its match value) of
/// each strong alias.
pub(super) type AliasHashes = SmallVec<[(u32, u64); 4]>;

impl State {
    pub(super) fn index(&mut self, idx: ObsIdx) {
        self.index_hashed(idx);
    }

    /// `index`, returning where each strong alias was filed (by position in
    /// the observation's aliases: its kind's table and its hash), so the
    /// caller need not hash them again.
    pub(super) fn index_hashed(&mut self, idx: ObsIdx) -> AliasHashes {
        let mut filed = AliasHashes::new();
        let Some(e) = self.obs.get(idx) else {
            return filed;
        };
        if !e.active {
            return filed;
        }
        for (i, a) in e.text.aliases().enumerate() {
            if a.kind.is_strong() {
                let h = self.hasher.hash_one(a.match_value());
                filed.push((i as u32, h));
                self.alias_index[kind_index(a.kind)].insert_once(h, idx);
            }
        }
        filed
    }

    pub(super) fn unindex(&mut self, idx: ObsIdx) {
        let Some(e) = self.obs.get(idx) else {
            return;
        };
        for a in e.text.aliases() {
            if !a.kind.is_strong() {
                continue;
            }
            if !self.conflicts.is_empty() {
                self.unindexed_aliases
                    .push((a.kind, a.match_value().to_owned()));
            }
            let h = self.hasher.hash_one(a.match_value());
            self.alias_index[kind_index(a.kind)].remove(h, idx);
        }
    }

    pub(super) fn alias_neighbours(&self, idx: ObsIdx) -> Vec<ObsIdx> {
        let mut out = Vec::new();
        if let Some(e) = self.entry(idx) {
            for a in e.text.aliases().filter(|a| a.kind.is_strong()) {
                let h = self.hasher.hash_one(a.match_value());
                out.extend(
                    self.alias_index[kind_index(a.kind)]
                        .get(h)
                        .filter(|&i| i != idx),
                );
            }
        }
        out
    }
}
