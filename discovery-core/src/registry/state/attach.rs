//! A new sighting that links to nothing becomes a peer of its own, and one
//! that links to a single isolated peer (its component is itself, no
//! conflict) without a singular clash joins it: exactly what a re-partition
//! of the component would give, without the component walk and partition.
//! This is a cold load's common case (each of a peer's sightings arrives
//! on its own); everything else takes `recompute`. While the peer's event
//! is the batch's newest, its view is written later, once (`deferred`).

use std::sync::Arc;

use smallvec::smallvec;

use super::alias_index::AliasHashes;
use super::events::take_back;
use super::ids::AfterJoin;
use super::merge_view::{blank_peer, merged_aliases, Merged};
use super::partition::{clash, merge_singular, singular_kinds, singular_values, REPEATS_A_KIND};
use super::sighting_text::AliasRef;
use super::{ids, kind_index, Members, ObsIdx, PeerEntry, PeerIdx, State};
use crate::roster::RosterEvent;

/// Where a new sighting goes without a re-partition.
enum Placement {
    /// It links to no other observation.
    Alone,
    /// It joins this peer, bringing these singular kinds
    /// (`partition::singular_kinds`).
    Joins(PeerIdx, u8),
}

impl State {
    /// Files new observation `idx` (active, in no peer), indexed where
    /// `hashes` say.
    pub(super) fn place_new(&mut self, idx: ObsIdx, hashes: &AliasHashes) {
        #[cfg(test)]
        if self.reference_only {
            return self.recompute(&[idx], &[]);
        }
        let placement = self.placement(idx, hashes);
        let members: Members = match placement {
            None => return self.recompute(&[idx], &[]),
            Some(Placement::Alone) => smallvec![idx],
            Some(Placement::Joins(p, _)) => {
                let Some(pe) = self.peers[p as usize].as_ref() else {
                    return self.recompute(&[idx], &[]);
                };
                let at = pe
                    .members
                    .partition_point(|&m| self.merge_cmp(m, idx).is_lt());
                let mut members = pe.members.clone();
                members.insert(at, idx);
                members
            }
        };
        #[cfg(test)]
        {
            self.placed_without_partition += 1;
        }
        // No conflict is found here; those about its aliases are dropped.
        self.update_conflicts(&members, Vec::new());
        match placement {
            Some(Placement::Joins(p, kinds)) => self.join(p, idx, members, kinds),
            _ => self.appear(members),
        }
    }

    /// A sighting linked to nothing is a new peer: its ids and its
    /// `Joined` now, its fields when the batch moves on (`deferred`).
    fn appear(&mut self, members: Members) {
        self.settle();
        let singular_kinds = self.singular_kinds_of(&members);
        let (id, id_rank) = {
            let aliases = merged_aliases(&self.obs, &members);
            let id = self.unique_id(&aliases, &members, None);
            let rank = ids::id_rank(&aliases, &id);
            (id.into_owned(), rank)
        };
        self.last_uid += 1;
        let view = Arc::new(blank_peer(self.last_uid, id));
        let slot = self.new_slot();
        self.seat(
            slot,
            PeerEntry {
                members,
                view: view.clone(),
                isolated: true,
                seen_stale: false,
                id_rank,
                singular_kinds,
            },
        );
        self.version += 1;
        self.out.push(RosterEvent::Joined {
            version: self.version,
            peer: view,
        });
        self.unwritten = Some(slot);
    }

    /// Peer `p` gains sighting `idx` (`members`: its sightings with it, in
    /// merge order). What `publish_groups` does for one group kept by one
    /// peer, without staging: the entry and uid stay, the display id stays
    /// unless a better alias is free, one `Updated` if the view changed.
    fn join(&mut self, p: PeerIdx, idx: ObsIdx, members: Members, joined_kinds: u8) {
        if self.unwritten != Some(p) {
            self.settle();
        }
        if self.may_defer(p) {
            return self.join_deferred(p, idx, members, joined_kinds);
        }
        let merged = Merged::of(&self.obs, &self.sources, &members);
        let (new_id, rank) = self.id_on_join(p, idx, &members, Some(&merged.aliases));
        let Some(pe) = self.peers[p as usize].as_mut() else {
            return;
        };
        pe.id_rank = rank;
        let diff = merged.diff(&pe.view);
        pe.members = members;
        pe.singular_kinds |= joined_kinds;
        pe.isolated = true;
        let change = if new_id.is_some() || diff.any() {
            let earlier = take_back(&mut self.out, &pe.view);
            // In place unless an event or snapshot still holds the view.
            let v = Arc::make_mut(&mut pe.view);
            merged.write_into(v, diff);
            let was = new_id.map(|id| std::mem::replace(&mut v.id, id));
            Some((pe.view.clone(), was, earlier))
        } else {
            pe.seen_stale = true; // not rewritten: its times may be behind
            None
        };
        drop(merged); // its borrows of the observations end here
        if let Some(e) = self.obs.get_mut(idx) {
            e.set_peer(Some(p));
        }
        let Some((view, was, earlier)) = change else {
            return;
        };
        if let Some(was) = &was {
            self.id_remove(self.id_hash(was), p);
            self.id_insert(self.id_hash(&view.id), p);
        }
        self.emit_change(view, was, earlier);
    }

    /// `join` while peer `p`'s event is the batch's newest: its members
    /// and display id now (a rename folds into that event), its fields
    /// when the batch moves on (`deferred`).
    fn join_deferred(&mut self, p: PeerIdx, idx: ObsIdx, members: Members, joined_kinds: u8) {
        let (id, rank) = self.id_on_join(p, idx, &members, None);
        if let Some(e) = self.obs.get_mut(idx) {
            e.set_peer(Some(p));
        }
        let Some(pe) = self.peers[p as usize].as_mut() else {
            return;
        };
        pe.id_rank = rank;
        pe.members = members;
        pe.singular_kinds |= joined_kinds;
        pe.isolated = true;
        self.unwritten = Some(p);
        let Some(id) = id else {
            return;
        };
        let earlier = take_back(&mut self.out, &pe.view);
        let was = std::mem::replace(&mut Arc::make_mut(&mut pe.view).id, id);
        let view = pe.view.clone();
        self.id_remove(self.id_hash(&was), p);
        self.id_insert(self.id_hash(&view.id), p);
        self.emit_change(view, Some(was), earlier);
    }

    /// Peer `p`'s display id once sighting `idx` joins it (`members`: with
    /// it), if it changes, and its new `id_rank`: told from the sighting
    /// when it can be (`id_after_join`), else from the merged aliases
    /// (`merged`, or merged here).
    fn id_on_join(
        &self,
        p: PeerIdx,
        idx: ObsIdx,
        members: &[ObsIdx],
        merged: Option<&[AliasRef]>,
    ) -> (Option<String>, u8) {
        let pe = self.peers[p as usize].as_ref();
        let (current, rank) = (
            pe.map(|pe| &*pe.view.id),
            pe.map_or(ids::NOT_FIRST, |pe| pe.id_rank),
        );
        let renamed = |id: &str| (current != Some(id)).then(|| id.to_owned());
        let from_merge = || {
            let own;
            let aliases = match merged {
                Some(a) => a,
                None => {
                    own = merged_aliases(&self.obs, members);
                    &own[..]
                }
            };
            let id = self.unique_id(aliases, members, Some(p));
            (renamed(&id), ids::id_rank(aliases, &id))
        };
        let quick = match self
            .entry(idx)
            .zip(current)
            .and_then(|(e, id)| self.id_after_join(e, id, rank, p))
        {
            Some(AfterJoin::Keeps(rank)) => (None, rank),
            Some(AfterJoin::Takes(id, rank)) => (renamed(id), rank),
            None => return from_merge(),
        };
        // Tests only: the shortcut answers exactly as the merge would.
        #[cfg(test)]
        assert_eq!(quick, from_merge(), "display id after a join");
        quick
    }

    /// `None` when only a re-partition can tell: it links to two peers, to
    /// a peer that is not isolated, through a hash collision, or it clashes.
    fn placement(&self, idx: ObsIdx, hashes: &AliasHashes) -> Option<Placement> {
        let e = self.entry(idx)?;
        let mut target: Option<PeerIdx> = None;
        // `hashes` follow the aliases' order.
        let mut aliases = e.text.aliases().enumerate();
        // Kinds on which it shares its value with the peer it links to.
        let mut linked = 0u8;
        for &(at, h) in hashes {
            let (_, a) = aliases.find(|&(i, _)| i == at as usize)?;
            let value = a.match_value();
            for other in self.alias_index[kind_index(a.kind)]
                .get(h)
                .filter(|&o| o != idx)
            {
                let o = self.entry(other)?;
                let p = o.peer()?;
                if target.is_some_and(|t| t != p) {
                    return None;
                }
                // Linked by the hash alone: the partition compares values.
                if !o
                    .text
                    .aliases()
                    .any(|b| b.kind == a.kind && b.match_value() == value)
                {
                    return None;
                }
                target = Some(p);
                linked |= 1 << kind_index(a.kind);
            }
        }
        let Some(p) = target else {
            return Some(Placement::Alone);
        };
        let pe = self.peers[p as usize].as_ref()?;
        if !pe.isolated {
            return None;
        }
        // A peer holds one value of each singular kind it has, and a kind
        // it shares with the peer is that value: a clash needs a kind both
        // hold that did not link. Without one, no value need be compared.
        let kinds = singular_kinds(e.text.aliases());
        let unlinked = kinds & pe.singular_kinds & !linked;
        if (kinds | pe.singular_kinds) & REPEATS_A_KIND == 0 && unlinked == 0 {
            return Some(Placement::Joins(p, kinds));
        }
        let mut peer_values: [Option<&str>; 5] = Default::default();
        for &m in &pe.members {
            merge_singular(
                &mut peer_values,
                &singular_values(self.entry(m)?.text.aliases()),
            );
        }
        match clash(&peer_values, &singular_values(e.text.aliases())) {
            None => Some(Placement::Joins(p, kinds)),
            Some(_) => None,
        }
    }
}
