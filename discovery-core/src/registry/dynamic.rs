//! Sources added and removed while the registry runs: what a daemon's config
//! reload needs. A removed source is stopped (with its goodbye grace), its
//! observations are dropped (its peers leave unless another source sees
//! them), and any event it still had queued is ignored. Source slots are
//! never reused, so a late event can never land on a newer source.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{supervise, Inner, Registry, RegistryError, RosterView, SourceOptions};
use crate::model::LocalPeer;
use crate::source::{DiscoverySource, Mode, SourceContext, SourceIdx};

/// What it takes to start one more source, kept from the builder.
pub(super) struct Kit {
    /// Gives each started source its own bounded queue.
    pub(super) queues: super::queues::Registrar,
    pub(super) local: Option<Arc<LocalPeer>>,
    pub(super) mode: Mode,
    pub(super) identity_file: Arc<Path>,
    pub(super) backoff: Duration,
    pub(super) backoff_max: Duration,
    pub(super) max_staleness: Duration,
    /// Running sources by name.
    pub(super) running: Mutex<HashMap<Arc<str>, Running>>,
}

/// One supervised source.
pub(super) struct Running {
    idx: SourceIdx,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Kit {
    /// Starts the supervisor of the source in slot `idx`.
    pub(super) fn spawn(
        &self,
        inner: &Arc<Inner>,
        global: &CancellationToken,
        name: Arc<str>,
        idx: SourceIdx,
        source: Arc<dyn DiscoverySource>,
    ) {
        let stop = global.child_token();
        let ctx = SourceContext {
            name: name.clone(),
            events: self.queues.register(idx),
            shutdown: stop.child_token(),
            local: self.local.clone(),
            mode: self.mode,
            identity_file: self.identity_file.clone(),
            roster: RosterView::new(inner),
        };
        let task = tokio::spawn(supervise(
            inner.clone(),
            idx,
            source,
            ctx,
            self.backoff,
            self.backoff_max,
            stop.clone(),
        ));
        self.lock().insert(name, Running { idx, stop, task });
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Running>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every supervisor task, for shutdown.
    pub(super) fn take_tasks(&self) -> Vec<JoinHandle<()>> {
        self.lock().drain().map(|(_, r)| r.task).collect()
    }
}

impl Registry {
    /// Names of the sources running now.
    pub fn source_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .handles
            .kit
            .lock()
            .keys()
            .map(|k| k.to_string())
            .collect();
        v.sort();
        v
    }

    /// Starts one more source while the registry runs.
    pub fn add_source(
        &self,
        name: impl Into<Arc<str>>,
        options: SourceOptions,
        source: Arc<dyn DiscoverySource>,
    ) -> Result<(), RegistryError> {
        let name: Arc<str> = name.into();
        let kit = &self.handles.kit;
        if kit.lock().contains_key(&name) {
            return Err(RegistryError::DuplicateSource(name.to_string()));
        }
        let idx = {
            let mut state = self.inner.lock();
            if state.source_slots() >= SourceIdx::MAX as usize {
                return Err(RegistryError::TooManySources);
            }
            state.add_source(
                name.clone(),
                options.priority,
                options.role.into(),
                options.max_staleness.unwrap_or(kit.max_staleness),
            )
        };
        kit.spawn(&self.inner, &self.handles.shutdown, name, idx, source);
        Ok(())
    }

    /// Stops one source (it gets its grace period to say goodbye) and drops
    /// every observation it made. Returns whether a source of that name ran.
    pub async fn remove_source(&self, name: &str) -> bool {
        let Some(running) = self.handles.kit.lock().remove(name) else {
            return false;
        };
        running.stop.cancel();
        let _ = running.task.await;
        let mut state = self.inner.lock();
        debug_assert_eq!(state.source_index(name), Some(running.idx));
        state.retire_source(running.idx);
        self.inner.publish(&mut state);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Alias, AliasKind, Observation};
    use crate::roster::RosterEvent;
    use crate::source::SourceError;
    use crate::RegistryBuilder;
    use crate::WatchUpdate;

    /// Reports one peer, then waits for shutdown.
    struct One(&'static str);

    #[async_trait::async_trait]
    impl DiscoverySource for One {
        async fn run(&self, ctx: SourceContext) -> Result<(), SourceError> {
            let o = Observation {
                key: self.0.into(),
                aliases: vec![Alias::new(AliasKind::AgentId, self.0)],
                ..Default::default()
            };
            let _ = ctx.events.replace(vec![o]).await;
            ctx.shutdown.cancelled().await;
            Ok(())
        }
    }

    async fn settle() {
        for _ in 0..20 {
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn added_sources_run_and_removed_ones_take_only_their_peers_along() {
        let reg = RegistryBuilder::new(Default::default())
            .source("a", SourceOptions::default(), One("walnut"))
            .start()
            .unwrap();
        settle().await;
        let mut watch = reg.watch();
        assert!(matches!(watch.next().await, Some(WatchUpdate::Snapshot(_))));
        reg.add_source("b", SourceOptions::default(), Arc::new(One("hazel")))
            .unwrap();
        assert!(matches!(
            reg.add_source("b", SourceOptions::default(), Arc::new(One("x"))),
            Err(RegistryError::DuplicateSource(_))
        ));
        settle().await;
        assert_eq!(reg.source_names(), ["a", "b"]);
        let ids = |r: &Registry| -> Vec<String> {
            r.snapshot().peers.iter().map(|p| p.id.clone()).collect()
        };
        assert_eq!(ids(&reg), ["hazel", "walnut"]);
        assert!(reg.remove_source("a").await);
        assert!(!reg.remove_source("a").await);
        assert_eq!(ids(&reg), ["hazel"]);
        assert_eq!(reg.source_names(), ["b"]);
        let names: Vec<String> = reg.sources().into_iter().map(|s| s.name).collect();
        assert_eq!(names, ["b"]);
        // The watcher saw hazel join and walnut leave, nothing else.
        let mut seen = Vec::new();
        for _ in 0..2 {
            match watch.next().await {
                Some(WatchUpdate::Event(RosterEvent::Joined { peer, .. })) => {
                    seen.push(format!("+{}", peer.id))
                }
                Some(WatchUpdate::Event(RosterEvent::Left { peer, .. })) => {
                    seen.push(format!("-{}", peer.id))
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(seen, ["+hazel", "-walnut"]);
        // A source of the removed name can come back, in a fresh slot.
        reg.add_source("a", SourceOptions::default(), Arc::new(One("walnut")))
            .unwrap();
        settle().await;
        assert_eq!(ids(&reg), ["hazel", "walnut"]);
        reg.shutdown().await;
    }
}
