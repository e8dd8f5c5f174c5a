//! The difference of a re-merge as roster events, numbered consecutively:
//! absorbed peers leave first, a surviving peer keeps its entry and uid (an
//! `Updated`, never a `Left`), so replaying events over a snapshot is exact.
//!
//! A change to the peer whose event is the newest of the batch (not yet
//! published) is folded into that event: nothing came between them, so
//! replaying one event ends where replaying both would, and the view is
//! written in place instead of copied away from the event holding it.

use std::sync::Arc;

use smallvec::SmallVec;

use super::merge_view::Merged;
use super::{ids, Members, PeerEntry, PeerIdx, State};
use crate::roster::{Peer, RosterEvent};

/// A roster change staged during a recompute, numbered once all are known.
enum Pending {
    Same(Arc<Peer>),
    Joined(Arc<Peer>),
    Updated(Arc<Peer>, Option<String>, Option<Earlier>),
}

/// The batch's newest event, taken back to be folded into the next one.
pub(super) struct Earlier {
    version: u64,
    joined: bool,
    renamed_from: Option<String>,
}

/// Whether the batch's newest event is a `Joined` or `Updated` carrying `view`.
pub(super) fn newest_carries(out: &[RosterEvent], view: &Arc<Peer>) -> bool {
    matches!(
        out.last(),
        Some(RosterEvent::Joined { peer, .. } | RosterEvent::Updated { peer, .. })
            if Arc::ptr_eq(peer, view)
    )
}

/// Takes back the newest event of the batch if it carries `view` (the
/// caller folds its change into it); `None` otherwise.
pub(super) fn take_back(out: &mut Vec<RosterEvent>, view: &Arc<Peer>) -> Option<Earlier> {
    if !newest_carries(out, view) {
        return None;
    }
    match out.pop()? {
        RosterEvent::Joined { version, .. } => Some(Earlier {
            version,
            joined: true,
            renamed_from: None,
        }),
        RosterEvent::Updated {
            version,
            renamed_from,
            ..
        } => Some(Earlier {
            version,
            joined: false,
            renamed_from,
        }),
        _ => None, // unreachable: matched above
    }
}

/// The staged changes in an order where a peer gives up a display id
/// before another takes it (a split can hand one group's old id to
/// another), so a replica keyed by display id never drops the new holder.
/// A cycle (two peers swapping ids) keeps the order it has.
fn release_order(changes: &mut SmallVec<[Pending; 4]>) {
    fn new_id(c: &Pending) -> &str {
        match c {
            Pending::Same(p) | Pending::Joined(p) | Pending::Updated(p, _, _) => &p.id,
        }
    }
    fn old_id(c: &Pending) -> Option<&str> {
        match c {
            Pending::Updated(_, Some(was), _) => Some(was),
            _ => None,
        }
    }
    if changes.len() < 2 {
        return;
    }
    let mut ordered = SmallVec::with_capacity(changes.len());
    while !changes.is_empty() {
        let waits = |i: usize| {
            changes
                .iter()
                .enumerate()
                .any(|(j, d)| j != i && old_id(d) == Some(new_id(&changes[i])))
        };
        let next = (0..changes.len()).find(|&i| !waits(i)).unwrap_or(0);
        ordered.push(changes.remove(next));
    }
    *changes = ordered;
}

impl State {
    /// Stages `peer`'s change as the next event, or folds it into the
    /// `earlier` event it was taken back from (keeping that event's version
    /// and kind, and the id a watcher knew it by).
    pub(super) fn emit_change(
        &mut self,
        peer: Arc<Peer>,
        renamed_from: Option<String>,
        earlier: Option<Earlier>,
    ) {
        #[cfg(test)]
        {
            self.folded_events += u64::from(earlier.is_some());
        }
        let ev = match earlier {
            None => {
                self.version += 1;
                RosterEvent::Updated {
                    version: self.version,
                    peer,
                    renamed_from,
                }
            }
            Some(e) if e.joined => RosterEvent::Joined {
                version: e.version,
                peer,
            },
            Some(e) => {
                let renamed_from = e
                    .renamed_from
                    .or(renamed_from)
                    .filter(|was| *was != peer.id);
                RosterEvent::Updated {
                    version: e.version,
                    peer,
                    renamed_from,
                }
            }
        };
        self.out.push(ev);
    }
}

impl State {
    /// Rebuilds the view of peer `p` after a change that cannot regroup it
    /// (its aliases are the same): one `Updated` if its content changed.
    pub(super) fn refresh_view(&mut self, p: PeerIdx) {
        self.refresh(p, true);
    }

    /// `refresh_view` after a change of metadata alone: aliases and
    /// addresses are neither merged nor compared.
    pub(super) fn refresh_meta(&mut self, p: PeerIdx) {
        self.refresh(p, false);
    }

    fn refresh(&mut self, p: PeerIdx, identity: bool) {
        if self.unwritten == Some(p) {
            return; // its view is merged from its sightings when written
        }
        self.settle();
        let Some(pe) = self.peers[p as usize].as_mut() else {
            return;
        };
        let merged = if identity {
            Merged::of(&self.obs, &self.sources, &pe.members)
        } else {
            Merged::of_meta(&self.obs, &self.sources, &pe.members)
        };
        let diff = merged.diff(&pe.view);
        if !diff.any() {
            return;
        }
        let earlier = take_back(&mut self.out, &pe.view);
        // In place when no event or snapshot holds the view, else a copy.
        merged.write_into(Arc::make_mut(&mut pe.view), diff);
        let view = pe.view.clone();
        drop(merged); // its borrows of the observations end here
        self.emit_change(view, None, earlier);
    }

    /// Stores the new groups of a component that `old_peers` held before and
    /// stages the events that turn the old roster into the new one.
    /// `isolated`: the one group is its whole component, with no conflict.
    pub(super) fn publish_groups(
        &mut self,
        groups: SmallVec<[Members; 2]>,
        old_peers: SmallVec<[PeerIdx; 8]>,
        isolated: bool,
    ) {
        self.settle();
        // Forget the old peers' ids so the new groups can take them.
        for &p in &old_peers {
            if let Some(h) = self.peers[p as usize]
                .as_ref()
                .map(|pe| self.id_hash(&pe.view.id))
            {
                self.id_remove(h, p);
            }
        }

        // Events are staged and numbered at the end: absorbed entries leave
        // first, so a replica keyed by display id never loses the survivor.
        let mut claimed: SmallVec<[PeerIdx; 8]> = SmallVec::new();
        let mut changes: SmallVec<[Pending; 4]> = SmallVec::new();
        // One group from at most one peer: no other event comes between.
        let may_fold = groups.len() == 1 && old_peers.len() <= 1;
        for members in groups {
            let merged = Merged::of(&self.obs, &self.sources, &members);
            let id = self.unique_id(&merged.aliases, &members, None);
            let id_rank = ids::id_rank(&merged.aliases, &id);
            let singular_kinds = self.singular_kinds_of(&members);
            let reuse = self.keeper(&members, &id, &old_peers, &claimed);
            let old = reuse.and_then(|p| self.peers[p as usize].take());
            let change = match old {
                Some(old) => {
                    let renamed = old.view.id != id;
                    let diff = merged.diff(&old.view);
                    if renamed || diff.any() {
                        // The survivor keeps its entry and uid; its view is
                        // written in place unless an event still holds it.
                        let mut view = old.view;
                        let earlier = if may_fold {
                            take_back(&mut self.out, &view)
                        } else {
                            None
                        };
                        let v = Arc::make_mut(&mut view);
                        merged.write_into(v, diff);
                        let was = renamed.then(|| std::mem::replace(&mut v.id, id.into_owned()));
                        Pending::Updated(view, was, earlier)
                    } else {
                        Pending::Same(old.view)
                    }
                }
                None => {
                    let mut view = merged.to_peer();
                    view.id = id.into_owned();
                    self.last_uid += 1;
                    view.uid = self.last_uid;
                    Pending::Joined(Arc::new(view))
                }
            };
            drop(merged); // its borrows of the observations end here
            changes.push(change);
            let slot = match reuse {
                Some(p) => {
                    claimed.push(p);
                    p
                }
                None => self.new_slot(),
            };
            // An unchanged view was not rewritten: its times may be behind.
            let (view, seen_stale) = match changes.last() {
                Some(Pending::Updated(v, _, _) | Pending::Joined(v)) => (v.clone(), false),
                Some(Pending::Same(v)) => (v.clone(), true),
                None => continue, // unreachable: one change is staged per group
            };
            self.seat(
                slot,
                PeerEntry {
                    members,
                    view,
                    isolated,
                    seen_stale,
                    id_rank,
                    singular_kinds,
                },
            );
        }
        for p in old_peers {
            if claimed.contains(&p) {
                continue;
            }
            if let Some(old) = self.peers[p as usize].take() {
                // Absorbed when a former member now belongs to another entry.
                let merged_into = old
                    .members
                    .iter()
                    .filter_map(|&m| self.entry(m).and_then(|e| e.peer()))
                    .find(|&q| q != p)
                    .and_then(|q| self.peers[q as usize].as_ref())
                    .map(|q| q.view.uid);
                self.version += 1;
                self.out.push(RosterEvent::Left {
                    version: self.version,
                    peer: old.view,
                    merged_into,
                });
                self.free_peers.push(p);
            }
        }
        release_order(&mut changes);
        for c in changes {
            match c {
                Pending::Same(_) => {}
                Pending::Joined(peer) => {
                    self.version += 1;
                    self.out.push(RosterEvent::Joined {
                        version: self.version,
                        peer,
                    });
                }
                Pending::Updated(peer, renamed_from, earlier) => {
                    self.emit_change(peer, renamed_from, earlier)
                }
            }
        }
    }
}

impl State {
    /// Files `entry` in peer slot `slot`: its sightings point at it and
    /// its display id finds it.
    pub(super) fn seat(&mut self, slot: PeerIdx, entry: PeerEntry) {
        for &m in &entry.members {
            if let Some(e) = self.obs.get_mut(m) {
                e.set_peer(Some(slot));
            }
        }
        self.id_insert(self.id_hash(&entry.view.id), slot);
        self.peers[slot as usize] = Some(entry);
    }

    /// A free peer slot.
    pub(super) fn new_slot(&mut self) -> PeerIdx {
        match self.free_peers.pop() {
            Some(p) => p,
            None => {
                self.peers.push(None);
                (self.peers.len() - 1) as PeerIdx
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use smallvec::smallvec;

    use super::{release_order, Pending};
    use crate::roster::Peer;

    fn peer(uid: u64, id: &str) -> Arc<Peer> {
        Arc::new(Peer {
            uid,
            id: id.into(),
            aliases: vec![],
            name: None,
            status: None,
            capabilities: vec![],
            version: None,
            labels: Default::default(),
            addrs: vec![],
            sources: vec![],
        })
    }

    fn order(mut changes: smallvec::SmallVec<[Pending; 4]>) -> Vec<u64> {
        release_order(&mut changes);
        changes
            .iter()
            .map(|c| match c {
                Pending::Same(p) | Pending::Joined(p) | Pending::Updated(p, _, _) => p.uid,
            })
            .collect()
    }

    /// A split hands a group's old id to a new peer: the rename away from
    /// it goes first; a swap keeps the staged order.
    #[test]
    fn an_id_is_given_up_before_it_is_taken() {
        let handed = smallvec![
            Pending::Joined(peer(12, "12D3KooW0")),
            Pending::Updated(peer(4, "c1c1c1c1c1c1"), Some("12D3KooW0".into()), None),
        ];
        assert_eq!(order(handed), [4, 12]);
        let chain = smallvec![
            Pending::Joined(peer(3, "c")),
            Pending::Updated(peer(2, "b"), Some("c".into()), None),
            Pending::Updated(peer(1, "a"), Some("b".into()), None),
        ];
        assert_eq!(order(chain), [1, 2, 3]);
        let swap = smallvec![
            Pending::Updated(peer(2, "agent-1"), Some("12D3KooW1".into()), None),
            Pending::Updated(peer(3, "12D3KooW1"), Some("agent-1".into()), None),
        ];
        assert_eq!(order(swap), [2, 3]);
    }
}
