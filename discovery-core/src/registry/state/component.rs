//! A change re-merges only its connected component: the observations linked to
//! the changed ones by a strong alias or a former peer, in priority order.

use smallvec::SmallVec;

use super::{kind_index, ObsEntry, ObsIdx, PeerIdx, State};

impl State {
    /// Re-partitions the connected component around `seeds` and the members
    /// of `seed_peers`, then turns the difference into roster events.
    pub(super) fn recompute(&mut self, seeds: &[ObsIdx], seed_peers: &[PeerIdx]) {
        let (comp, old_peers) = self.component(seeds, seed_peers);
        let (groups, found_conflicts) = self.partition(&comp);
        // One group and no clash: the peer is its whole component.
        let isolated = groups.len() == 1 && found_conflicts.is_empty();
        self.publish_groups(groups, old_peers, isolated);
        self.update_conflicts(&comp, found_conflicts);
    }

    /// The component around the seeds, sorted by priority, and the peers its
    /// observations belonged to.
    fn component(
        &mut self,
        seeds: &[ObsIdx],
        seed_peers: &[PeerIdx],
    ) -> (SmallVec<[ObsIdx; 8]>, SmallVec<[PeerIdx; 8]>) {
        let gen = self.next_visit_gen();
        // Components are small (a peer's few sightings): keep them off the heap.
        let mut old_peers: SmallVec<[PeerIdx; 8]> = SmallVec::new();
        let mut stack: SmallVec<[ObsIdx; 16]> = SmallVec::from_slice(seeds);
        for &p in seed_peers {
            if !old_peers.contains(&p) {
                old_peers.push(p);
                if let Some(pe) = self.peers[p as usize].as_ref() {
                    stack.extend(pe.members.iter().copied());
                }
            }
        }
        let mut comp: SmallVec<[ObsIdx; 8]> = SmallVec::new();
        while let Some(o) = stack.pop() {
            let Some(e) = self.obs.get(o) else {
                continue;
            };
            if !e.active || self.visit_stamp[o as usize] == gen {
                continue;
            }
            self.visit_stamp[o as usize] = gen;
            comp.push(o);
            if let Some(p) = e.peer() {
                if !old_peers.contains(&p) {
                    old_peers.push(p);
                    if let Some(pe) = self.peers[p as usize].as_ref() {
                        stack.extend(pe.members.iter().copied());
                    }
                }
            }
            for a in e.text.aliases().filter(|a| a.kind.is_strong()) {
                let h = self.hasher.hash_one(a.match_value());
                stack.extend(
                    self.alias_index[kind_index(a.kind)]
                        .get(h)
                        .filter(|&x| self.visit_stamp[x as usize] != gen),
                );
            }
        }

        // Highest priority first, then a stable order: the partition is deterministic.
        comp.sort_by(|&a, &b| self.merge_cmp(a, b));
        (comp, old_peers)
    }

    /// Where observation `a` stands against `b` in a merge: highest
    /// priority first, then by source and key (a vacant slot first). The
    /// key is read only on a tie (two sightings of one source).
    pub(super) fn merge_cmp(&self, a: ObsIdx, b: ObsIdx) -> std::cmp::Ordering {
        let rank = |e: &ObsEntry| {
            (
                -i64::from(self.sources[e.source as usize].priority),
                e.source,
            )
        };
        match (self.entry(a), self.entry(b)) {
            (Some(x), Some(y)) => rank(x)
                .cmp(&rank(y))
                .then_with(|| x.text.key().cmp(y.text.key())),
            (x, y) => x.is_some().cmp(&y.is_some()),
        }
    }

    fn next_visit_gen(&mut self) -> u32 {
        if self.visit_stamp.len() < self.obs.len() {
            self.visit_stamp.resize(self.obs.len(), 0);
        }
        self.visit_gen = self.visit_gen.wrapping_add(1);
        if self.visit_gen == 0 {
            self.visit_stamp.iter_mut().for_each(|s| *s = 0);
            self.visit_gen = 1;
        }
        self.visit_gen
    }
}
