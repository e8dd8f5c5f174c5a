//! The difference of a re-merge as roster events, numbered consecutively:
//! absorbed peers leave first, a surviving peer keeps its entry and uid (an
//! `Updated`, never a `Left`), so replaying events over a snapshot is exact.

use std::sync::Arc;

use smallvec::SmallVec;

use super::merge_view::Merged;
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
        self.refresh(p, true);
    }

    /// `refresh_view` after a change of metadata alone: aliases and
    /// addresses are neither merged nor compared.
    pub(super) fn refresh_meta(&mut self, p: PeerIdx) {
        self.refresh(p, false);
    }

    fn refresh(&mut self, p: PeerIdx, identity: bool) {
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
        // In place when no event or snapshot holds the view, else a copy.
        merged.write_into(Arc::make_mut(&mut pe.view), diff);
        let view = pe.view.clone();
        self.version += 1;
        self.out.push(RosterEvent::Updated {
            version: self.version,
            peer: view,
            renamed_from: None,
        });
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
        for members in groups {
            let merged = Merged::of(&self.obs, &self.sources, &members);
            let id = self.unique_id(&merged.aliases, &members);
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
                        let v = Arc::make_mut(&mut view);
                        merged.write_into(v, diff);
                        let was = renamed.then(|| std::mem::replace(&mut v.id, id.into_owned()));
                        Pending::Updated(view, was)
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
                None => match self.free_peers.pop() {
                    Some(p) => p,
                    None => {
                        self.peers.push(None);
                        (self.peers.len() - 1) as PeerIdx
                    }
                },
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
            self.id_insert(self.id_hash(&view.id), slot);
            self.peers[slot as usize] = Some(PeerEntry {
                members,
                view,
                isolated,
            });
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
