//! A read-only view of the merged roster for sources: a backend that
//! bootstraps from what the others found (the dht dialling peers that NATS or
//! mDNS saw) reads it here, without depending on those backends.

use std::sync::{Arc, Weak};

use tokio::sync::watch;

use super::Inner;
use crate::roster::Roster;

/// What a source may read of the registry it runs in. Cheap to clone.
#[derive(Clone)]
pub struct RosterView {
    inner: Weak<Inner>,
    changed: watch::Receiver<u64>,
}

impl std::fmt::Debug for RosterView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RosterView").finish_non_exhaustive()
    }
}

impl RosterView {
    pub(super) fn new(inner: &Arc<Inner>) -> Self {
        RosterView {
            inner: Arc::downgrade(inner),
            changed: inner.changed.subscribe(),
        }
    }

    /// A view of nothing, for sources run outside a registry (tests, tools).
    pub fn detached() -> Self {
        let (tx, changed) = watch::channel(0);
        drop(tx);
        RosterView {
            inner: Weak::new(),
            changed,
        }
    }

    /// The roster now (empty once the registry is gone).
    pub fn snapshot(&self) -> Roster {
        match self.inner.upgrade() {
            Some(inner) => inner.lock().snapshot(),
            None => Roster::default(),
        }
    }

    /// Waits until the registry applied another batch of source events (the
    /// roster may or may not have changed). `false` once the registry is gone.
    pub async fn changed(&mut self) -> bool {
        self.changed.changed().await.is_ok()
    }
}
