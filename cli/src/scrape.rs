//! `/metrics` of `rollcall run`: the Prometheus exporter's text, with the
//! per-source gauges refreshed from the registry at every scrape (so they are
//! never older than the scrape itself). Sources removed by a reload drop to
//! zero rather than freezing at their last value.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use metrics_exporter_prometheus::PrometheusHandle;
use rollcall::{Health, Registry};

use crate::serve::Render;

/// The renderer for `/metrics`.
pub fn render(handle: PrometheusHandle, registry: Registry) -> Render {
    let seen: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
    Arc::new(move || {
        let sources = registry.sources();
        let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
        let now: BTreeSet<String> = sources.iter().map(|s| s.name.clone()).collect();
        for gone in seen.difference(&now) {
            let l = [("source", gone.clone())];
            metrics::gauge!("rollcall_source_observations", &l).set(0.0);
            metrics::gauge!("rollcall_source_healthy", &l).set(0.0);
            metrics::gauge!("rollcall_source_synced", &l).set(0.0);
        }
        *seen = now;
        for s in &sources {
            let l = [("source", s.name.clone())];
            metrics::gauge!("rollcall_source_observations", &l).set(s.observations as f64);
            metrics::gauge!("rollcall_source_healthy", &l).set(if s.health == Health::Ok {
                1.0
            } else {
                0.0
            });
            metrics::gauge!("rollcall_source_synced", &l).set(if s.synced { 1.0 } else { 0.0 });
            if let Some(t) = s
                .last_sync
                .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            {
                metrics::gauge!("rollcall_source_last_sync_timestamp_seconds", &l)
                    .set(t.as_secs_f64());
            }
        }
        metrics::gauge!("rollcall_roster_conflicts").set(registry.conflicts().len() as f64);
        handle.render()
    })
}
