//! The contract between a backend and the registry.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::model::{LocalPeer, Observation};
use crate::registry::RosterView;

/// A discovery backend. `run` is called again (with backoff) after it returns
/// an error or panics, so it takes `&self` and keeps no state between runs
/// that it cannot rebuild.
#[async_trait]
pub trait DiscoverySource: Send + Sync + 'static {
    /// Runs until `ctx.shutdown` is cancelled, sending what it sees through
    /// `ctx.events`. Returning `Ok(())` early means "nothing more to watch":
    /// the last set stays and the source is not restarted.
    async fn run(&self, ctx: SourceContext) -> Result<(), SourceError>;

    /// Whether this source uses the process's libp2p identity key
    /// (`ctx.identity_file`). When one does, an announcing process loads the
    /// key before its sources start and announces its peer id everywhere, so
    /// every sighting of it carries the `peer_id` alias.
    fn uses_identity(&self) -> bool {
        false
    }
}

/// Why a source run ended badly. Backends wrap their own `Error` in it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SourceError(#[source] pub Box<dyn std::error::Error + Send + Sync + 'static>);

impl SourceError {
    /// An error from a message.
    pub fn msg(msg: impl Into<String>) -> Self {
        SourceError(msg.into().into())
    }
}

/// What a source tells the registry.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum SourceEvent {
    /// Add or renew one observation (renewal restarts its TTL).
    Upsert(Observation),
    /// One observation is gone (leave, goodbye, task stopped).
    Remove {
        /// The observation's key within the source.
        key: String,
    },
    /// A complete refresh: these are all the source sees; absent keys are gone.
    /// Implies a successful sync.
    Replace(Vec<Observation>),
    /// The source finished its first complete sync (for event-driven sources).
    Synced,
    /// The source works again.
    Healthy,
    /// The source cannot currently see the truth; its last set is kept.
    Degraded {
        /// Why, for operators.
        reason: String,
    },
    /// A refresh that partly failed: these observations are confirmed (upserted),
    /// the source is degraded with `reason`, and what is absent keeps its last
    /// good sighting until the maximum staleness. Not a successful sync.
    Partial {
        /// What the refresh did see.
        observations: Vec<Observation>,
        /// What failed, for operators.
        reason: String,
    },
}

/// Index of a source inside one registry.
pub(crate) type SourceIdx = u16;

/// Sends events for one source. Cloneable; bounded (backpressure, not loss):
/// each source has a queue of its own, so a flood waits only for itself.
#[derive(Debug, Clone)]
pub struct EventSender {
    pub(crate) tx: mpsc::Sender<SourceEvent>,
}

/// The registry is gone (shutting down): stop sending.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the registry is closed")]
pub struct Closed;

impl EventSender {
    /// Sends one event.
    pub async fn send(&self, event: SourceEvent) -> Result<(), Closed> {
        self.tx.send(event).await.map_err(|_| Closed)
    }
    /// Adds or renews one observation.
    pub async fn upsert(&self, obs: Observation) -> Result<(), Closed> {
        self.send(SourceEvent::Upsert(obs)).await
    }
    /// Removes one observation.
    pub async fn remove(&self, key: impl Into<String>) -> Result<(), Closed> {
        self.send(SourceEvent::Remove { key: key.into() }).await
    }
    /// Replaces the whole set of this source.
    pub async fn replace(&self, all: Vec<Observation>) -> Result<(), Closed> {
        self.send(SourceEvent::Replace(all)).await
    }
    /// Marks the first sync done.
    pub async fn synced(&self) -> Result<(), Closed> {
        self.send(SourceEvent::Synced).await
    }
    /// Marks the source healthy.
    pub async fn healthy(&self) -> Result<(), Closed> {
        self.send(SourceEvent::Healthy).await
    }
    /// Publishes a refresh that partly failed (see [`SourceEvent::Partial`]).
    pub async fn partial(
        &self,
        observations: Vec<Observation>,
        reason: impl Into<String>,
    ) -> Result<(), Closed> {
        self.send(SourceEvent::Partial {
            observations,
            reason: reason.into(),
        })
        .await
    }
    /// Marks the source degraded; its last observations are kept.
    pub async fn degraded(&self, reason: impl Into<String>) -> Result<(), Closed> {
        self.send(SourceEvent::Degraded {
            reason: reason.into(),
        })
        .await
    }
}

/// Whether this process only discovers or also announces itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Discover peers only.
    Discover,
    /// Announce the local peer (and discover, where the backend does both).
    Announce,
}

/// Everything a source run gets.
#[derive(Debug, Clone)]
pub struct SourceContext {
    /// The source's configured name (the `[sources.NAME]` key).
    pub name: Arc<str>,
    /// Where to send what it sees.
    pub events: EventSender,
    /// Cancelled when the process stops; a source then says goodbye and returns.
    pub shutdown: CancellationToken,
    /// The peer to announce, when the process announces.
    pub local: Option<Arc<LocalPeer>>,
    /// Discover only, or also announce `local`.
    pub mode: Mode,
    /// The libp2p identity key file (`[identity] file`), for sources that
    /// need a key: load it with `discovery_core::identity::load_or_create`
    /// (feature `identity`), which returns one key per path per process.
    pub identity_file: Arc<Path>,
    /// A read-only view of the merged roster (what every source found).
    pub roster: RosterView,
}

impl SourceContext {
    /// The local peer, if this run announces.
    pub fn announce(&self) -> Option<&LocalPeer> {
        match self.mode {
            Mode::Announce => self.local.as_deref(),
            Mode::Discover => None,
        }
    }
}
