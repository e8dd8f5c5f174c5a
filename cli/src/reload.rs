//! Config reload of `rollcall run`: on SIGHUP and when the config file
//! changes. The new file is validated completely first; then sources whose
//! section is unchanged keep running untouched, changed ones restart,
//! removed ones stop (their peers leave) and new ones start. A file that
//! does not validate is rejected with one log line and a metric, and the
//! running config stays.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rollcall::config::{Config, SourceConfig};
use rollcall::{Registry, SourceOptions};
use tokio_util::sync::CancellationToken;

/// How often the config file is checked for a change (a stat, and a read
/// only when size or mtime moved).
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// What a reload did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Sources started that did not run before.
    pub added: Vec<String>,
    /// Sources stopped, their peers gone.
    pub removed: Vec<String>,
    /// Sources restarted with new settings.
    pub restarted: Vec<String>,
    /// Sections that changed but only take effect after a restart.
    pub needs_restart: Vec<String>,
}

/// The config a daemon runs, as sections of raw TOML for comparison.
struct Running {
    /// `sources.NAME` tables of the enabled sources.
    sources: BTreeMap<String, toml::Value>,
    /// Every other top-level section.
    others: BTreeMap<String, toml::Value>,
}

impl Running {
    fn of(text: &str, cfg: &Config) -> Running {
        let table: toml::Table = text.parse().unwrap_or_default();
        let mut others: BTreeMap<String, toml::Value> = table
            .iter()
            .filter(|(k, _)| k.as_str() != "sources")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let raw_sources = table
            .get("sources")
            .and_then(|s| s.as_table())
            .cloned()
            .unwrap_or_default();
        let sources = cfg
            .enabled_sources()
            .map(|s| {
                (
                    s.name.clone(),
                    raw_sources
                        .get(&s.name)
                        .cloned()
                        .unwrap_or(toml::Value::Boolean(true)),
                )
            })
            .collect();
        others.retain(|_, v| !v.as_table().is_some_and(|t| t.is_empty()));
        Running { sources, others }
    }
}

/// Applies config reloads to a running registry.
pub struct Reloader {
    path: PathBuf,
    registry: Registry,
    running: Running,
    stamp: Option<(SystemTime, u64)>,
}

/// Why a reload was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file does not load or a source's settings are refused.
    #[error("{0}")]
    Invalid(String),
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

fn options(s: &SourceConfig) -> SourceOptions {
    SourceOptions {
        priority: s.common.priority,
        role: s.common.role,
        max_staleness: s.common.max_staleness,
    }
}

impl Reloader {
    /// Starts tracking `path`, whose current content `registry` runs.
    pub fn new(path: &Path, registry: Registry) -> std::io::Result<Reloader> {
        let text = std::fs::read_to_string(path)?;
        let cfg = Config::from_toml_str(&path.display().to_string(), &text, None)
            .map_err(std::io::Error::other)?;
        Ok(Reloader {
            path: path.to_owned(),
            registry,
            running: Running::of(&text, &cfg),
            stamp: stamp(path),
        })
    }

    /// Reads, validates and applies the file.
    pub async fn reload(&mut self) -> Result<Outcome, ReloadError> {
        self.stamp = stamp(&self.path);
        let shown = self.path.display().to_string();
        let text = std::fs::read_to_string(&self.path)
            .map_err(|e| ReloadError::Invalid(format!("{shown}: cannot read: {e}")))?;
        let cfg = Config::from_toml_str(&shown, &text, None)
            .map_err(|e| ReloadError::Invalid(e.to_string()))?;
        // Validate every source before touching anything.
        let mut built = BTreeMap::new();
        for s in cfg.enabled_sources() {
            let source = s
                .build()
                .map_err(|m| ReloadError::Invalid(format!("sources.{}: {m}", s.name)))?;
            built.insert(s.name.clone(), (options(s), source));
        }
        let next = Running::of(&text, &cfg);
        let mut out = Outcome::default();
        for name in self.running.sources.keys() {
            if !next.sources.contains_key(name) {
                out.removed.push(name.clone());
            }
        }
        for (name, section) in &next.sources {
            match self.running.sources.get(name) {
                None => out.added.push(name.clone()),
                Some(old) if old != section => out.restarted.push(name.clone()),
                Some(_) => {}
            }
        }
        let keys: std::collections::BTreeSet<&String> = self
            .running
            .others
            .keys()
            .chain(next.others.keys())
            .collect();
        for k in keys {
            if self.running.others.get(k) != next.others.get(k) {
                out.needs_restart.push(k.clone());
            }
        }
        for name in out.removed.iter().chain(&out.restarted) {
            self.registry.remove_source(name).await;
        }
        for name in out.added.iter().chain(&out.restarted) {
            if let Some((opts, source)) = built.remove(name) {
                self.registry
                    .add_source(name.as_str(), opts, source)
                    .map_err(|e| ReloadError::Invalid(e.to_string()))?;
            }
        }
        self.running = next;
        Ok(out)
    }

    /// Whether the file changed since the last look (size or mtime).
    fn changed_on_disk(&self) -> bool {
        let now = stamp(&self.path);
        now.is_some() && now != self.stamp
    }

    /// Reloads, logging and counting the result.
    async fn reload_logged(&mut self, trigger: &'static str) {
        match self.reload().await {
            Ok(o) => {
                metrics::counter!("rollcall_config_reloads_total", "result" => "ok").increment(1);
                metrics::gauge!("rollcall_config_last_reload_timestamp_seconds").set(
                    SystemTime::now()
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .map(|d| d.as_secs_f64())
                        .unwrap_or(0.0),
                );
                tracing::info!(trigger, added = ?o.added, removed = ?o.removed, restarted = ?o.restarted, "config reloaded");
                if !o.needs_restart.is_empty() {
                    tracing::warn!(sections = ?o.needs_restart, "these sections changed and take effect only after a restart");
                }
            }
            Err(e) => {
                metrics::counter!("rollcall_config_reloads_total", "result" => "invalid")
                    .increment(1);
                tracing::error!(trigger, error = %e, "config reload rejected; the running config stays");
            }
        }
    }

    /// Reloads on SIGHUP and on file change until `stop`.
    pub async fn run(mut self, stop: CancellationToken) {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hup = match signal(SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP; reloading on file change only");
                None
            }
        };
        let mut tick = tokio::time::interval(POLL_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                    self.reload_logged("SIGHUP").await;
                }
                _ = tick.tick() => {
                    if self.changed_on_disk() {
                        self.reload_logged("file change").await;
                    }
                }
            }
        }
    }
}
