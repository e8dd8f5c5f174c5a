//! The roster as a tower [`Discover`](tower::discover::Discover): what a load
//! balancer (`tower::balance`) or any keyed service set consumes.
//!
//! Each peer is one key, its `uid`, which does not change while the peer lives
//! (its display id may improve: that is an `Insert` again under the same key).
//! A merge of two entries removes the absorbed one's key and inserts the
//! survivor; a watcher that fell behind is resynced from a snapshot, which
//! removes every key that is gone and inserts every peer that is there. So
//! applying the changes to a map keyed by `uid` gives the roster.

use std::collections::{HashSet, VecDeque};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::stream::{BoxStream, Stream};
use tower::discover::Change;

use crate::registry::{Registry, Watch, WatchUpdate};
use crate::roster::{Peer, RosterEvent};

/// The registry failed (its merge task panicked): the changes end after this.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the registry failed: {0}")]
pub struct RegistryFailed(pub String);

/// The roster's peers as tower [`Change`]s keyed by `uid`; a
/// [`tower::discover::Discover`] with `Key = u64`, `Service = Arc<Peer>`.
/// Map the peer to a service with `TryStreamExt::map_ok`. Ends when the
/// registry shuts down, after one [`RegistryFailed`] if it failed.
pub struct PeerChanges {
    inner: BoxStream<'static, Result<Change<u64, Arc<Peer>>, RegistryFailed>>,
}

impl std::fmt::Debug for PeerChanges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerChanges").finish_non_exhaustive()
    }
}

impl Stream for PeerChanges {
    type Item = Result<Change<u64, Arc<Peer>>, RegistryFailed>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

impl Registry {
    /// Every peer, then every change, as tower [`Change`]s (see [`PeerChanges`]).
    pub fn peer_changes(&self) -> PeerChanges {
        let state = Changes {
            watch: self.watch(),
            keys: HashSet::new(),
            ready: VecDeque::new(),
            ended: false,
        };
        PeerChanges {
            inner: Box::pin(futures::stream::unfold(state, Changes::next)),
        }
    }
}

/// What the stream keeps: the keys it has inserted, and the changes of the
/// last update not yet taken (at most one snapshot's worth).
struct Changes {
    watch: Watch,
    keys: HashSet<u64>,
    ready: VecDeque<Change<u64, Arc<Peer>>>,
    ended: bool,
}

type Item = Result<Change<u64, Arc<Peer>>, RegistryFailed>;

impl Changes {
    async fn next(mut self) -> Option<(Item, Self)> {
        loop {
            if let Some(c) = self.ready.pop_front() {
                return Some((Ok(c), self));
            }
            if self.ended {
                return None;
            }
            match self.watch.next().await {
                Some(WatchUpdate::Snapshot(roster)) => {
                    let now: HashSet<u64> = roster.peers.iter().map(|p| p.uid).collect();
                    self.ready
                        .extend(self.keys.difference(&now).map(|&uid| Change::Remove(uid)));
                    self.ready
                        .extend(roster.peers.into_iter().map(|p| Change::Insert(p.uid, p)));
                    self.keys = now;
                }
                Some(WatchUpdate::Event(event)) => self.apply(event),
                None => {
                    self.ended = true;
                    if let Some(why) = self.watch.error() {
                        return Some((Err(RegistryFailed(why)), self));
                    }
                }
            }
        }
    }

    fn apply(&mut self, event: RosterEvent) {
        match event {
            RosterEvent::Joined { peer, .. } | RosterEvent::Updated { peer, .. } => {
                self.keys.insert(peer.uid);
                self.ready.push_back(Change::Insert(peer.uid, peer));
            }
            RosterEvent::Left { peer, .. } => {
                if self.keys.remove(&peer.uid) {
                    self.ready.push_back(Change::Remove(peer.uid));
                }
            }
            // A conflict changes no entry (and no version).
            RosterEvent::Conflict { .. } => {}
        }
    }
}
