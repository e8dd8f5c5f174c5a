//! Test-only views of the internals: the grouping, and invariants every step keeps.

use super::{PeerIdx, State};

#[cfg(test)]
impl State {
    /// Every peer as the sorted `source/key` list of its observations, sorted.
    pub(crate) fn groups(&self) -> Vec<Vec<String>> {
        let mut out: Vec<Vec<String>> = self
            .peers
            .iter()
            .flatten()
            .map(|p| {
                let mut m: Vec<String> = p.members.iter().map(|&i| self.obs_label(i)).collect();
                m.sort();
                m
            })
            .collect();
        out.sort();
        out
    }

    /// Every peer's merged fields (not its ids or times), by its group, sorted.
    pub(crate) fn merged_fields(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .peers
            .iter()
            .flatten()
            .map(|p| {
                let mut m: Vec<String> = p.members.iter().map(|&i| self.obs_label(i)).collect();
                m.sort();
                let v = &p.view;
                let sources: Vec<&str> = v.sources.iter().map(|s| &*s.name).collect();
                format!(
                    "{m:?} aliases={:?} name={:?} status={:?} version={:?} capabilities={:?} labels={:?} addrs={:?} sources={sources:?}",
                    v.aliases, v.name, v.status, v.version, v.capabilities, v.labels, v.addrs
                )
            })
            .collect();
        out.sort();
        out
    }

    /// Internal consistency: every active observation is in exactly one peer,
    /// ids are unique and indexed, and the peer count matches.
    pub(crate) fn check_invariants(&self) {
        if let Some(p) = self.unwritten {
            assert!(
                self.may_defer(p),
                "a lagging view's event is the batch's newest"
            );
        }
        let mut seen = std::collections::HashSet::new();
        for (pi, p) in self.peers.iter().enumerate() {
            let Some(p) = p else { continue };
            assert!(!p.members.is_empty(), "empty peer {}", p.view.id);
            assert_eq!(
                self.id_lookup(&p.view.id),
                Some(pi as PeerIdx),
                "id index of {}",
                p.view.id
            );
            assert_eq!(
                p.singular_kinds,
                self.singular_kinds_of(&p.members),
                "singular kinds of {}",
                p.view.id
            );
            if p.id_rank != super::ids::NOT_FIRST {
                // The shortcut `State::id_after_join` relies on: the id is the
                // merge's first alias, of that rank, and a recompute keeps it.
                let aliases = super::merge_view::merged_aliases(&self.obs, &p.members);
                assert_eq!(
                    super::ids::id_rank(&aliases, &p.view.id),
                    p.id_rank,
                    "id rank of {}",
                    p.view.id
                );
                assert_eq!(
                    self.unique_id(&aliases, &p.members, Some(pi as PeerIdx)),
                    p.view.id,
                    "a recompute keeps the id"
                );
            }
            for &m in &p.members {
                let e = self.entry(m).expect("member exists");
                assert!(e.active);
                assert_eq!(e.peer(), Some(pi as PeerIdx));
                assert!(seen.insert(m), "observation in two peers");
            }
        }
        // Each observation with a TTL is queued, no later than it expires.
        let entries: std::collections::HashSet<_> = self.expiry.entries().collect();
        for (i, e) in self.obs.iter() {
            assert_eq!(
                e.expiry.is_some(),
                e.queued.is_some(),
                "queued iff it expires"
            );
            if let (Some(x), Some(q)) = (e.expiry, e.queued) {
                assert!(q <= x, "queued after its expiry");
                assert!(entries.contains(&(q, i)), "in the queue");
            }
        }
        let queued = self.obs.iter().filter(|(_, e)| e.queued.is_some()).count();
        assert_eq!(self.expiry.live(), queued, "live entries counted");
        assert!(
            self.expiry.len() <= 2 * queued + 64,
            "stale entries bounded: {} for {queued} live",
            self.expiry.len()
        );
        let active = self.obs.iter().filter(|(_, e)| e.active).count();
        assert_eq!(seen.len(), active, "every active observation is in a peer");
        assert_eq!(self.peer_count(), self.peers.iter().flatten().count());
    }
}
