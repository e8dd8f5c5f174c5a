//! A new sighting that links to nothing becomes a peer of its own, and one
//! that links to a single isolated peer (its component is itself, no
//! conflict) without a singular clash joins it: exactly what a re-partition
//! of the component would give, without the component walk and partition.
//! This is a cold load's common case (each of a peer's sightings arrives
//! on its own); everything else takes `recompute`.

use smallvec::{smallvec, SmallVec};

use super::alias_index::AliasHashes;
use super::partition::{clash, merge_singular, singular_values};
use super::{kind_index, Members, ObsIdx, PeerIdx, State};

/// Where a new sighting goes without a re-partition.
enum Placement {
    /// It links to no other observation.
    Alone,
    /// It joins this peer.
    Joins(PeerIdx),
}

impl State {
    /// Files new observation `idx` (active, in no peer), indexed where
    /// `hashes` say.
    pub(super) fn place_new(&mut self, idx: ObsIdx, hashes: &AliasHashes) {
        #[cfg(test)]
        if self.reference_only {
            return self.recompute(&[idx], &[]);
        }
        let (members, old_peers): (Members, SmallVec<[PeerIdx; 8]>) =
            match self.placement(idx, hashes) {
                None => return self.recompute(&[idx], &[]),
                Some(Placement::Alone) => (smallvec![idx], SmallVec::new()),
                Some(Placement::Joins(p)) => {
                    let Some(pe) = self.peers[p as usize].as_ref() else {
                        return self.recompute(&[idx], &[]);
                    };
                    let key = self.merge_order(idx);
                    let at = pe.members.partition_point(|&m| self.merge_order(m) < key);
                    let mut members = pe.members.clone();
                    members.insert(at, idx);
                    (members, smallvec![p])
                }
            };
        #[cfg(test)]
        {
            self.placed_without_partition += 1;
        }
        // No conflict is found here; those about its aliases are dropped.
        self.update_conflicts(&members, Vec::new());
        self.publish_groups(smallvec![members], old_peers, true);
        metrics::gauge!("rollcall_roster_peers").set(self.peer_count() as f64);
    }

    /// `None` when only a re-partition can tell: it links to two peers, to
    /// a peer that is not isolated, through a hash collision, or it clashes.
    fn placement(&self, idx: ObsIdx, hashes: &AliasHashes) -> Option<Placement> {
        let e = self.entry(idx)?;
        let mut target: Option<PeerIdx> = None;
        for &(at, h) in hashes {
            let a = e.aliases.get(at as usize)?;
            let value = a.match_value();
            let Some(list) = self.alias_index[kind_index(a.kind)].get(&h) else {
                continue;
            };
            for &other in list.iter().filter(|&&o| o != idx) {
                let o = self.entry(other)?;
                let p = o.peer()?;
                if target.is_some_and(|t| t != p) {
                    return None;
                }
                // Linked by the hash alone: the partition compares values.
                if !o
                    .aliases
                    .iter()
                    .any(|b| b.kind == a.kind && b.match_value() == value)
                {
                    return None;
                }
                target = Some(p);
            }
        }
        let Some(p) = target else {
            return Some(Placement::Alone);
        };
        let pe = self.peers[p as usize].as_ref()?;
        if !pe.isolated {
            return None;
        }
        let mut peer_values: [Option<&str>; 5] = Default::default();
        for &m in &pe.members {
            merge_singular(&mut peer_values, &singular_values(&self.entry(m)?.aliases));
        }
        match clash(&peer_values, &singular_values(&e.aliases)) {
            None => Some(Placement::Joins(p)),
            Some(_) => None,
        }
    }
}
