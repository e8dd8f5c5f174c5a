//! The sources taking part: added in a slot never reused, retired by a reload
//! (their observations go, late events are ignored), and their status report.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::{KeyIndex, ObsIdx, SourceClass, SourceMeta, State};
use crate::source::SourceIdx;
use crate::status::{Health, SourceStatus};

impl State {
    pub(crate) fn add_source(
        &mut self,
        name: Arc<str>,
        priority: i32,
        class: SourceClass,
        max_staleness: Duration,
    ) -> SourceIdx {
        self.sources.push(SourceMeta {
            name: name.clone(),
            priority,
            class,
            max_staleness,
            keys: KeyIndex::default(),
            health: Health::Starting,
            synced: false,
            attempted: false,
            last_sync: None,
            last_error: None,
            stale_deadline: None,
            restarts: 0,
            added: Instant::now(),
            counters: crate::registry::counters::SourceCounters::new(&name),
        });
        (self.sources.len() - 1) as SourceIdx
    }

    /// Retires a source (see `registry/dynamic.rs`): drops every observation
    /// it made, so its peers leave unless another source still sees them.
    pub(crate) fn retire_source(&mut self, src: SourceIdx) {
        let Some(meta) = self.sources.get_mut(src as usize) else {
            return;
        };
        meta.class = SourceClass::Retired;
        meta.stale_deadline = None;
        let gone: Vec<ObsIdx> = meta.keys.values().collect();
        for idx in gone {
            self.remove_obs(idx);
        }
        self.refresh_fallback(Instant::now());
    }

    /// The live (not retired) source of this name.
    pub(crate) fn source_index(&self, name: &str) -> Option<SourceIdx> {
        self.sources
            .iter()
            .position(|s| &*s.name == name && s.class != SourceClass::Retired)
            .map(|i| i as SourceIdx)
    }

    /// Slots used so far, retired ones included (indices are never reused).
    pub(crate) fn source_slots(&self) -> usize {
        self.sources.len()
    }

    pub(crate) fn note_restart(&mut self, src: SourceIdx) {
        if let Some(m) = self.sources.get_mut(src as usize) {
            m.restarts += 1;
        }
    }

    pub(crate) fn statuses(&self) -> Vec<SourceStatus> {
        self.sources
            .iter()
            .filter(|s| s.class != SourceClass::Cache || !s.keys.is_empty())
            .filter(|s| s.class != SourceClass::Retired)
            .map(|s| SourceStatus {
                name: s.name.to_string(),
                role: match s.class {
                    SourceClass::Primary => "primary",
                    SourceClass::Fallback => "fallback",
                    SourceClass::Cache | SourceClass::Retired => "cache",
                },
                priority: s.priority,
                health: s.health,
                synced: s.synced,
                attempted: s.attempted,
                last_sync: s.last_sync,
                last_error: s.last_error.clone(),
                observations: s.keys.len(),
                counted: s.class != SourceClass::Fallback || self.fallback_active,
                restarts: s.restarts,
            })
            .collect()
    }
}
