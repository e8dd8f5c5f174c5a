//! The difference of a re-merge as roster events, numbered consecutively:
//! absorbed peers leave first, a surviving peer keeps its entry and uid (an
//! `Updated`, never a `Left`), so replaying events over a snapshot is exact.

use std::sync::Arc;

use smallvec::SmallVec;

use super::{Members, PeerEntry, PeerIdx, State};
use crate::roster::{Peer, RosterEvent};

/// A roster change staged during a recompute, numbered once all are known.
enum Pending {
    Same(Arc<Peer>),
    Joined(Arc<Peer>),
    Updated(Arc<Peer>, Option<String>),
}

impl State {
    /// Rebuilds the view of peer `p` after a change that cannot regroup it
    /// (its aliases are the same): one `Updated` if its content changed.
    pub(super) fn refresh_view(&mut self, p: PeerIdx) {
        let Some(pe) = self.peers[p as usize].as_ref() else {
            return;
        };
        let mut view = self.build_view(&pe.members);
        view.id.clone_from(&pe.view.id);
        view.uid = pe.view.uid;
        if pe.view.same_content(&view) {
            return;
        }
        let view = Arc::new(view);
        self.version += 1;
        self.out.push(RosterEvent::Updated {
            version: self.version,
            peer: view.clone(),
            renamed_from: None,
        });
        if let Some(pe) = self.peers[p as usize].as_mut() {
            pe.view = view;
        }
    }

    /// Stores the new groups of a component that `old_peers` held before and
    /// stages the events that turn the old roster into the new one.
    pub(super) fn publish_groups(
        &mut self,
        groups: SmallVec<[Members; 2]>,
        old_peers: SmallVec<[PeerIdx; 8]>,
    ) {
        // Forget the old peers' ids so the new groups can take them.
        for &p in &old_peers {
            if let Some(view) = self.peers[p as usize].as_ref().map(|pe| pe.view.clone()) {
                self.id_remove(&view.id, p);
            }
        }

        // Events are staged and numbered at the end: absorbed entries leave
        // first, so a replica keyed by display id never loses the survivor.
        let mut claimed: SmallVec<[PeerIdx; 8]> = SmallVec::new();
        let mut changes: SmallVec<[Pending; 4]> = SmallVec::new();
        for members in groups {
            let mut view = self.build_view(&members);
            view.id = self.unique_id(&view, &members);
            let reuse = self.keeper(&members, &view.id, &old_peers, &claimed);
            let slot = match reuse {
                Some(p) => {
                    claimed.push(p);
                    match self.peers[p as usize].take() {
                        Some(old) => {
                            view.uid = old.view.uid;
                            if !old.view.same_content(&view) {
                                let renamed_from =
                                    (old.view.id != view.id).then(|| old.view.id.clone());
                                changes.push(Pending::Updated(Arc::new(view), renamed_from));
                            } else {
                                changes.push(Pending::Same(old.view));
                            }
                        }
                        None => {
                            view.uid = self.new_uid();
                            changes.push(Pending::Joined(Arc::new(view)));
                        }
                    }
                    p
                }
                None => {
                    view.uid = self.new_uid();
                    changes.push(Pending::Joined(Arc::new(view)));
                    match self.free_peers.pop() {
                        Some(p) => p,
                        None => {
                            self.peers.push(None);
                            (self.peers.len() - 1) as PeerIdx
                        }
                    }
                }
            };
            let view = match changes.last() {
                Some(Pending::Updated(v, _) | Pending::Joined(v) | Pending::Same(v)) => v.clone(),
                None => continue, // unreachable: one change is staged per group
            };
            for &m in &members {
                if let Some(e) = self.obs[m as usize].as_mut() {
                    e.set_peer(Some(slot));
                }
            }
            self.peers[slot as usize] = Some(PeerEntry { members, view });
            if let Some(pe) = self.peers[slot as usize].as_ref().map(|pe| pe.view.clone()) {
                self.id_insert(&pe.id, slot);
            }
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
        for c in changes {
            let ev = match c {
                Pending::Same(_) => continue,
                Pending::Joined(peer) => RosterEvent::Joined {
                    version: self.version + 1,
                    peer,
                },
                Pending::Updated(peer, renamed_from) => RosterEvent::Updated {
                    version: self.version + 1,
                    peer,
                    renamed_from,
                },
            };
            self.version += 1;
            self.out.push(ev);
        }
    }
}
