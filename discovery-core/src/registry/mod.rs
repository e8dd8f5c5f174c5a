//! The registry: runs sources under supervision and serves the merged roster.

mod counters;
mod dynamic;
#[cfg(test)]
mod event_tests;
#[cfg(test)]
mod health_tests;
#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod queue_tests;
mod queues;
mod state;
#[cfg(test)]
mod tests;
mod view;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::RegistryConfig;
use crate::model::{LocalPeer, Role};
use crate::roster::{Conflict, Peer, Roster, RosterEvent};
use crate::source::{DiscoverySource, Mode, SourceContext, SourceEvent, SourceIdx};
use crate::status::SourceStatus;
use state::{SourceClass, State};
pub use view::RosterView;

/// Most queued events applied under one lock before watchers hear of them.
const MERGE_BATCH: usize = 256;
/// How long a source gets to say goodbye after shutdown before it is aborted.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);
/// A run that lasted this long resets the restart backoff.
const HEALTHY_RUN: Duration = Duration::from_secs(60);

/// How one source takes part in the merge.
#[derive(Clone, Debug, Default)]
pub struct SourceOptions {
    /// Merge priority: higher wins a field.
    pub priority: i32,
    /// Primary or fallback.
    pub role: Role,
    /// Overrides the registry's maximum staleness for this source.
    pub max_staleness: Option<Duration>,
}

/// The registry could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// Two sources with one name.
    #[error("two sources are named `{0}`: source names must be unique")]
    DuplicateSource(String),
    /// More sources than the registry indexes.
    #[error("too many sources (at most 65535)")]
    TooManySources,
    /// A source needs the libp2p identity key and it cannot be loaded or created.
    #[error("{0}")]
    Identity(String),
}

struct SourceSpec {
    name: Arc<str>,
    options: SourceOptions,
    source: Arc<dyn DiscoverySource>,
}

/// Collects sources and settings, then starts the registry.
pub struct RegistryBuilder {
    config: RegistryConfig,
    sources: Vec<SourceSpec>,
    local: Option<Arc<LocalPeer>>,
    mode: Mode,
    identity_file: Arc<std::path::Path>,
}

impl std::fmt::Debug for RegistryBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryBuilder")
            .field("config", &self.config)
            .field(
                "sources",
                &self.sources.iter().map(|s| &*s.name).collect::<Vec<_>>(),
            )
            .field("mode", &self.mode)
            .finish()
    }
}

impl RegistryBuilder {
    /// A builder with these merge settings and no sources.
    pub fn new(config: RegistryConfig) -> Self {
        RegistryBuilder {
            config,
            sources: Vec::new(),
            local: None,
            mode: Mode::Discover,
            identity_file: Arc::from(crate::config::IdentityConfig::default().file.as_path()),
        }
    }

    /// Where sources that need a libp2p identity keep its key file.
    pub fn identity_file(mut self, path: impl AsRef<std::path::Path>) -> Self {
        self.identity_file = Arc::from(path.as_ref());
        self
    }

    /// When a source uses the libp2p identity, the local peer announces its
    /// peer id through every source, so all sightings of it merge.
    fn claim_identity(&mut self) -> Result<(), RegistryError> {
        if !self.uses_identity() {
            return Ok(());
        }
        let Some(local) = self.local.as_mut() else {
            return Ok(());
        };
        #[cfg(feature = "identity")]
        {
            let id = crate::identity::load_or_create(&self.identity_file)
                .map_err(|e| RegistryError::Identity(e.to_string()))?;
            let alias = crate::model::Alias::peer_id(id.peer_id().to_string());
            if !local.aliases.contains(&alias) {
                Arc::make_mut(local).aliases.push(alias);
            }
        }
        #[cfg(not(feature = "identity"))]
        let _ = local;
        Ok(())
    }

    /// Whether any source added so far uses the libp2p identity key.
    pub fn uses_identity(&self) -> bool {
        self.sources.iter().any(|s| s.source.uses_identity())
    }

    /// Adds a source under a unique name.
    pub fn source(
        mut self,
        name: impl Into<Arc<str>>,
        options: SourceOptions,
        source: impl DiscoverySource,
    ) -> Self {
        self.sources.push(SourceSpec {
            name: name.into(),
            options,
            source: Arc::new(source),
        });
        self
    }

    /// Adds an already boxed source.
    pub fn source_arc(
        mut self,
        name: impl Into<Arc<str>>,
        options: SourceOptions,
        source: Arc<dyn DiscoverySource>,
    ) -> Self {
        self.sources.push(SourceSpec {
            name: name.into(),
            options,
            source,
        });
        self
    }

    /// Makes every source that can announce announce this peer.
    pub fn announce(mut self, local: LocalPeer) -> Self {
        self.local = Some(Arc::new(local));
        self.mode = Mode::Announce;
        self
    }

    /// Gives sources the local peer (to recognise or skip it) without announcing it.
    pub fn local(mut self, local: LocalPeer) -> Self {
        self.local = Some(Arc::new(local));
        self
    }

    /// Starts the merge loop and every source. Needs a tokio runtime.
    pub fn start(mut self) -> Result<Registry, RegistryError> {
        self.claim_identity()?;
        let mut state = State::new(self.config.address_policy());
        state.set_fallback_hold(self.config.fallback_hold);
        let mut names: Vec<&str> = Vec::new();
        for s in &self.sources {
            if names.contains(&&*s.name) {
                return Err(RegistryError::DuplicateSource(s.name.to_string()));
            }
            names.push(&s.name);
        }
        if self.sources.len() >= SourceIdx::MAX as usize {
            return Err(RegistryError::TooManySources);
        }
        let mut indices = Vec::new();
        for s in &self.sources {
            indices.push(state.add_source(
                s.name.clone(),
                s.options.priority,
                s.options.role.into(),
                s.options.max_staleness.unwrap_or(self.config.max_staleness),
            ));
        }

        let (registrar, rx) = queues::queues();
        // The cache stands in at the lowest priority until every primary has synced.
        if let Some(path) = &self.config.cache_file {
            match crate::cache::load(path) {
                Ok(cached) if !cached.is_empty() => {
                    let idx = state.add_source(
                        Arc::from("cache"),
                        i32::MIN,
                        SourceClass::Cache,
                        self.config.max_staleness,
                    );
                    tracing::info!(peers = cached.len(), file = %path.display(), "loaded roster cache");
                    let now = Instant::now();
                    for o in cached {
                        state.apply(idx, SourceEvent::Upsert(o), now, SystemTime::now());
                    }
                    state.apply(
                        idx,
                        SourceEvent::Degraded {
                            reason:
                                "cached roster, standing in until every primary source has synced"
                                    .into(),
                        },
                        now,
                        SystemTime::now(),
                    );
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "ignoring roster cache"),
            }
        }
        let _ = state.take_events().count();
        metrics::gauge!("rollcall_roster_peers").set(state.peer_count() as f64);

        let (events, _) = broadcast::channel(self.config.watch_buffer.max(1));
        let (changed, _) = watch::channel(0u64);
        let shutdown = CancellationToken::new();
        let inner = Arc::new(Inner {
            state: Mutex::new(state),
            events,
            changed,
            failure: Mutex::new(None),
        });
        let mut tasks = Vec::new();
        tasks.push(tokio::spawn(guard_merge(
            inner.clone(),
            tokio::spawn(merge_loop(inner.clone(), rx, shutdown.clone())),
            shutdown.clone(),
        )));
        if let Some(path) = self.config.cache_file.clone() {
            tasks.push(tokio::spawn(cache_loop(
                inner.clone(),
                path,
                self.config.cache_interval,
                shutdown.clone(),
            )));
        }
        let kit = dynamic::Kit {
            queues: registrar,
            local: self.local,
            mode: self.mode,
            identity_file: self.identity_file,
            backoff: self.config.restart_backoff,
            backoff_max: self.config.restart_backoff_max,
            max_staleness: self.config.max_staleness,
            running: Mutex::new(Default::default()),
        };
        for (spec, idx) in self.sources.into_iter().zip(indices) {
            kit.spawn(&inner, &shutdown, spec.name, idx, spec.source);
        }
        Ok(Registry {
            inner,
            handles: Arc::new(Handles {
                shutdown,
                tasks: Mutex::new(tasks),
                kit,
                cache_file: self.config.cache_file,
            }),
        })
    }
}

struct Inner {
    state: Mutex<State>,
    events: broadcast::Sender<RosterEvent>,
    /// Bumped on every applied batch, so waiters re-check status.
    changed: watch::Sender<u64>,
    /// Set when the merge task died: the roster is frozen and must say so.
    failure: Mutex<Option<String>>,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state half-merged in a
        // way later reads would trip over: recover the guard.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn publish(&self, state: &mut State) {
        // Once per batch, not per sighting: with a recorder installed a
        // gauge update is a registry lookup.
        metrics::gauge!("rollcall_roster_peers").set(state.peer_count() as f64);
        for ev in state.take_events() {
            counters::count_events(std::iter::once(&ev));
            let _ = self.events.send(ev);
        }
        self.changed.send_modify(|v| *v += 1);
    }
}

struct Handles {
    shutdown: CancellationToken,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// The running sources, and what it takes to start more.
    kit: dynamic::Kit,
    cache_file: Option<std::path::PathBuf>,
}

/// The running registry. Cheap to clone; every clone sees the same roster.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
    handles: Arc<Handles>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("version", &self.version())
            .finish()
    }
}

impl Registry {
    /// The roster now.
    pub fn snapshot(&self) -> Roster {
        self.inner.lock().snapshot()
    }

    /// The roster version now.
    pub fn version(&self) -> u64 {
        self.inner.lock().version()
    }

    /// One peer by its id.
    pub fn peer(&self, id: &str) -> Option<Arc<Peer>> {
        self.inner.lock().peer(id)
    }

    /// Health and counts of every source.
    pub fn sources(&self) -> Vec<SourceStatus> {
        self.inner.lock().statuses()
    }

    /// Identity conflicts currently standing.
    pub fn conflicts(&self) -> Vec<Conflict> {
        self.inner.lock().conflicts()
    }

    /// Addresses dropped by the address policy so far.
    pub fn dropped_addresses(&self) -> u64 {
        self.inner.lock().dropped_addrs()
    }

    /// Whether every enabled primary source has completed at least one
    /// successful sync (a partial or failed refresh is not one), and the merge
    /// task is alive.
    pub fn ready(&self) -> bool {
        self.failure().is_none() && self.inner.lock().primaries_synced()
    }

    /// Why the registry is not ready: one line per primary source that never
    /// synced, naming it and its last error, or the merge task's failure.
    /// Empty when ready.
    pub fn not_ready_reasons(&self) -> Vec<String> {
        let mut why = self.inner.lock().not_ready();
        if let Some(f) = self.failure() {
            why.insert(0, f);
        }
        why
    }

    /// Why the merge task died, if it did (a panic). The roster is then frozen:
    /// not ready, watchers end, and a daemon should exit non-zero.
    pub fn failure(&self) -> Option<String> {
        self.inner
            .failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// A snapshot, then every change in order.
    pub fn watch(&self) -> Watch {
        let mut state = self.inner.lock();
        // Subscribing under the lock: no event falls between snapshot and stream.
        let rx = self.inner.events.subscribe();
        let snap = state.snapshot();
        drop(state);
        metrics::gauge!("rollcall_watchers").increment(1.0);
        Watch {
            registry: self.clone(),
            rx,
            pending: Some(snap),
        }
    }

    /// Waits until every source finished its first attempt (synced or failed),
    /// or until `timeout`. Returns whether they all did.
    pub async fn wait_first_sync(&self, timeout: Duration) -> bool {
        let mut rx = self.inner.changed.subscribe();
        let deadline = Instant::now() + timeout;
        loop {
            if self.inner.lock().all_attempted() {
                return true;
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => continue,
                _ => return self.inner.lock().all_attempted(),
            }
        }
    }

    /// Waits until the roster version passes `version`, or `timeout`.
    pub async fn wait_version_after(&self, version: u64, timeout: Duration) -> u64 {
        let mut rx = self.inner.changed.subscribe();
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.version();
            if v > version {
                return v;
            }
            if !matches!(
                tokio::time::timeout_at(deadline, rx.changed()).await,
                Ok(Ok(()))
            ) {
                return self.version();
            }
        }
    }

    /// A token cancelled when the registry shuts down.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.handles.shutdown.clone()
    }

    /// Stops every source (each gets a grace period to say goodbye), stops the
    /// merge loop and writes the cache one last time.
    pub async fn shutdown(&self) {
        self.handles.shutdown.cancel();
        for t in self.handles.kit.take_tasks() {
            let _ = t.await;
        }
        let tasks: Vec<_> =
            std::mem::take(&mut *self.handles.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for t in tasks {
            let _ = t.await;
        }
        if let Some(path) = &self.handles.cache_file {
            self.save_cache(path);
        }
    }

    fn save_cache(&self, path: &std::path::Path) {
        let snap = self.snapshot();
        if let Err(e) = crate::cache::save(path, &snap) {
            tracing::warn!(file = %path.display(), error = %e, "cannot write roster cache");
        }
    }
}

/// What a watcher receives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchUpdate {
    /// The whole roster: first, and again after the watcher fell behind.
    Snapshot(Roster),
    /// One change, in order.
    Event(RosterEvent),
}

/// A versioned stream of the roster: a snapshot, then ordered events. A
/// watcher that lags past the buffer is resynced with a fresh snapshot.
#[derive(Debug)]
pub struct Watch {
    registry: Registry,
    rx: broadcast::Receiver<RosterEvent>,
    pending: Option<Roster>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        metrics::gauge!("rollcall_watchers").decrement(1.0);
    }
}

impl Watch {
    /// Why the stream ended, when it ended because the registry failed.
    pub fn error(&self) -> Option<String> {
        self.registry.failure()
    }

    /// The next update; `None` once the registry shuts down or failed (then
    /// [`Watch::error`] says why).
    pub async fn next(&mut self) -> Option<WatchUpdate> {
        if let Some(s) = self.pending.take() {
            return Some(WatchUpdate::Snapshot(s));
        }
        let shutdown = self.registry.handles.shutdown.clone();
        let received = tokio::select! {
            r = self.rx.recv() => r,
            _ = shutdown.cancelled() => return None,
        };
        match received {
            Ok(ev) => Some(WatchUpdate::Event(ev)),
            Err(broadcast::error::RecvError::Lagged(skipped)) => {
                tracing::warn!(skipped, "watcher fell behind; resyncing with a snapshot");
                metrics::counter!("rollcall_watch_resyncs_total").increment(1);
                let mut fresh = self.registry.watch();
                std::mem::swap(&mut self.rx, &mut fresh.rx);
                fresh.pending.take().map(WatchUpdate::Snapshot)
            }
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }
}

async fn merge_loop(inner: Arc<Inner>, mut rx: queues::Queues, shutdown: CancellationToken) {
    loop {
        let deadline = inner.lock().next_deadline();
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            msg = rx.recv() => {
                let Some((src, ev)) = msg else { break };
                let mut state = inner.lock();
                let (now, wall) = (Instant::now(), SystemTime::now());
                state.apply(src, ev, now, wall);
                // Drain what is already queued under one lock (bursts cost one
                // wake-up), taking from the sources in turn.
                for _ in 0..MERGE_BATCH {
                    match rx.try_recv() {
                        Some((src, ev)) => state.apply(src, ev, now, wall),
                        None => break,
                    }
                }
                state.advance(now);
                inner.publish(&mut state);
            }
            _ = sleep_until_opt(deadline) => {
                let mut state = inner.lock();
                state.advance(Instant::now());
                inner.publish(&mut state);
            }
        }
    }
}

/// Waits for the merge task; a panic there is recorded and shuts the
/// registry down, so nothing serves a silently frozen roster.
async fn guard_merge(inner: Arc<Inner>, merge: JoinHandle<()>, shutdown: CancellationToken) {
    if let Err(e) = merge.await {
        if e.is_panic() {
            let p = e.into_panic();
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            let why = format!("merge task panicked: {msg}");
            tracing::error!(reason = %why, "registry failed; shutting down");
            metrics::counter!("rollcall_registry_failures_total").increment(1);
            *inner.failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
            inner.changed.send_modify(|v| *v += 1);
            shutdown.cancel();
        }
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

async fn cache_loop(
    inner: Arc<Inner>,
    path: std::path::PathBuf,
    every: Duration,
    shutdown: CancellationToken,
) {
    let mut saved = u64::MAX;
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(100)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let (version, snap) = {
            let mut s = inner.lock();
            (
                s.version(),
                if s.version() != saved {
                    Some(s.snapshot())
                } else {
                    None
                },
            )
        };
        if let Some(snap) = snap {
            match crate::cache::save(&path, &snap) {
                Ok(()) => saved = version,
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "cannot write roster cache")
                }
            }
        }
    }
}

/// Runs one source; restarts it with exponential backoff after an error or a
/// panic. Other sources never notice.
async fn supervise(
    inner: Arc<Inner>,
    idx: SourceIdx,
    source: Arc<dyn DiscoverySource>,
    ctx: SourceContext,
    backoff: Duration,
    backoff_max: Duration,
    shutdown: CancellationToken,
) {
    let name = ctx.name.clone();
    let mut delay = backoff;
    loop {
        let started = Instant::now();
        let run_ctx = ctx.clone();
        let src = source.clone();
        let mut handle = tokio::spawn(async move { src.run(run_ctx).await });
        let result = tokio::select! {
            r = &mut handle => r,
            _ = shutdown.cancelled() => {
                match tokio::time::timeout(SHUTDOWN_GRACE, &mut handle).await {
                    Ok(r) => r,
                    Err(_) => {
                        tracing::warn!(source = %name, "source ignored shutdown; aborting it");
                        handle.abort();
                        return;
                    }
                }
            }
        };
        let reason = match result {
            Ok(Ok(())) => {
                tracing::debug!(source = %name, "source run finished");
                return;
            }
            Ok(Err(e)) => format!("failed: {e}"),
            Err(e) if e.is_panic() => {
                let p = e.into_panic();
                let msg = p
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                format!("panicked: {msg}")
            }
            Err(_) => return,
        };
        if shutdown.is_cancelled() {
            return;
        }
        if started.elapsed() >= HEALTHY_RUN {
            delay = backoff;
        }
        tracing::warn!(source = %name, %reason, retry_in = ?delay, "source stopped; restarting with backoff");
        metrics::counter!("rollcall_source_restarts_total", "source" => name.to_string())
            .increment(1);
        inner.lock().note_restart(idx);
        if ctx
            .events
            .degraded(format!(
                "{reason}; restarting in {}",
                humantime::format_duration(delay)
            ))
            .await
            .is_err()
        {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.cancelled() => return,
        }
        delay = (delay * 2).min(backoff_max);
    }
}

/// Direct access to the merge state machine, for benchmarks.
#[doc(hidden)]
pub mod bench {
    use super::*;
    use crate::addr::AddressPolicy;
    use crate::model::Observation;

    /// The merge state machine without tasks or locks.
    #[derive(Debug)]
    pub struct Merger(State);

    impl Merger {
        /// A merger with `sources` primary sources, priorities 0, 1, 2...
        pub fn new(policy: AddressPolicy, sources: usize) -> Self {
            let mut s = State::new(policy);
            for i in 0..sources {
                s.add_source(
                    Arc::from(format!("s{i}")),
                    i as i32,
                    SourceClass::Primary,
                    Duration::from_secs(300),
                );
            }
            Merger(s)
        }
        /// Applies one upsert and discards the events.
        pub fn upsert(&mut self, source: u16, obs: Observation) {
            let now = Instant::now();
            self.0
                .apply(source, SourceEvent::Upsert(obs), now, SystemTime::now());
            let _ = self.0.take_events().count();
        }
        /// Applies one upsert with given clocks (no syscalls) and discards the events.
        pub fn upsert_at(&mut self, source: u16, obs: Observation, now: Instant, wall: SystemTime) {
            self.0.apply(source, SourceEvent::Upsert(obs), now, wall);
            let _ = self.0.take_events().count();
        }
        /// Applies one upsert and keeps its events, as the merge loop does
        /// within a batch (`drain` publishes them).
        pub fn apply_at(&mut self, source: u16, obs: Observation, now: Instant, wall: SystemTime) {
            self.0.apply(source, SourceEvent::Upsert(obs), now, wall);
        }
        /// Takes the events of the batch; returns how many there were.
        pub fn drain(&mut self) -> usize {
            self.0.take_events().count()
        }
        /// Peers in the roster.
        pub fn peers(&self) -> usize {
            self.0.peer_count()
        }
    }
}
