//! A peer's view is written when the batch moves on, not once per sighting.
//! A cold load brings each peer's sightings back to back (swarm, nats,
//! mdns): the first makes the peer, whose event carries a view with only
//! its uid and id, the others join it, and its fields are merged and
//! written once, when anything else happens (`settle`): three merges and
//! rewrites of a growing view became one.
//!
//! Only the peer whose event is the batch's newest may lag, and only in
//! its fields: a later change to it would fold into that event anyway
//! (`events`), and its ids are kept current for every id rule. Whatever
//! reads or changes another view, emits an event, or takes the batch
//! settles first.

use std::sync::Arc;

use super::events::{newest_carries, take_back};
use super::merge_view::Merged;
use super::{PeerIdx, State};

impl State {
    /// Writes the lagging view, if one lags, into the batch's newest event.
    #[inline]
    pub(super) fn settle(&mut self) {
        if let Some(p) = self.unwritten.take() {
            self.write_lagging(p);
        }
    }

    fn write_lagging(&mut self, p: PeerIdx) {
        let Some(pe) = self.peers[p as usize].as_mut() else {
            return;
        };
        let merged = Merged::of(&self.obs, &self.sources, &pe.members);
        let diff = merged.diff(&pe.view);
        let earlier = take_back(&mut self.out, &pe.view);
        if earlier.is_none() && !diff.any() {
            pe.seen_stale = true; // not rewritten: its times may be behind
            return;
        }
        // In place: the event was taken back (a copy only if a snapshot holds it).
        merged.write_into(Arc::make_mut(&mut pe.view), diff);
        pe.seen_stale = false;
        let view = pe.view.clone();
        drop(merged); // its borrows of the observations end here
        self.emit_change(view, None, earlier);
    }

    /// Whether a change to peer `p` may leave its view lagging: it lags
    /// already, or its event is the batch's newest.
    pub(super) fn may_defer(&self, p: PeerIdx) -> bool {
        if self.unwritten == Some(p) {
            return true;
        }
        let Some(pe) = self.peers[p as usize].as_ref() else {
            return false;
        };
        self.unwritten.is_none() && newest_carries(&self.out, &pe.view)
    }
}
