//! When each source last saw a peer. A renewal (the steady state:
//! heartbeats, resyncs) only marks the peer; its view's times are brought
//! up to date when the view is read (snapshot, lookup), and any change
//! rewrites them anyway. So a renewal never copies a view that an event or
//! a snapshot still holds (it did, once per renewal, while the merge loop
//! held the batch's events), and touches no view at all.

use std::sync::Arc;
use std::time::SystemTime;

use smallvec::SmallVec;

use super::merge_view::{seen_by_source, wall_time};
use super::{PeerIdx, State};

impl State {
    /// A member of peer `p` was seen again.
    pub(super) fn mark_seen(&mut self, p: PeerIdx) {
        if let Some(pe) = self.peers.get_mut(p as usize).and_then(|x| x.as_mut()) {
            pe.seen_stale = true;
        }
    }

    /// Writes the latest sighting of each source into peer `p`'s view, if
    /// a renewal left them behind (copying the view only if it is shared).
    pub(super) fn bring_seen_up_to_date(&mut self, p: PeerIdx) {
        let State {
            peers,
            obs,
            sources,
            ..
        } = self;
        let Some(pe) = peers.get_mut(p as usize).and_then(|x| x.as_mut()) else {
            return;
        };
        if !std::mem::take(&mut pe.seen_stale) {
            return;
        }
        let latest: SmallVec<[(&Arc<str>, SystemTime); 4]> =
            seen_by_source(obs, sources, &pe.members)
                .into_iter()
                .map(|(name, ns)| (name, wall_time(ns)))
                .collect();
        let behind = |view: &crate::roster::Peer| {
            view.sources.iter().any(|s| {
                latest
                    .iter()
                    .any(|(n, t)| **n == s.name && *t != s.last_seen)
            })
        };
        if !behind(&pe.view) {
            return;
        }
        for s in Arc::make_mut(&mut pe.view).sources.iter_mut() {
            if let Some((_, t)) = latest.iter().find(|(n, _)| **n == s.name) {
                s.last_seen = *t;
            }
        }
    }
}
