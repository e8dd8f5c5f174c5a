//! Source health as the registry sees it.

use std::time::SystemTime;

use serde::Serialize;

/// Whether a source currently sees the truth.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// Not yet synced or failed.
    Starting,
    /// Working.
    Ok,
    /// Failing; its last good set is kept until it goes stale.
    Degraded,
}

/// What the registry knows of one source.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SourceStatus {
    /// Source name.
    pub name: String,
    /// `primary`, `fallback` or `cache`.
    pub role: &'static str,
    /// Merge priority.
    pub priority: i32,
    /// Current health.
    pub health: Health,
    /// Finished a complete sync at least once.
    pub synced: bool,
    /// Finished its first attempt, well or badly.
    #[serde(skip)]
    pub attempted: bool,
    /// When it last completed a sync.
    #[serde(with = "opt_rfc3339")]
    pub last_sync: Option<SystemTime>,
    /// The last failure reason (kept after recovery, for operators).
    pub last_error: Option<String>,
    /// How many observations it holds.
    pub observations: usize,
    /// Whether its observations count now (a fallback counts only while every primary is degraded or empty).
    pub counted: bool,
    /// How many times it was restarted after an error or panic.
    pub restarts: u32,
}

mod opt_rfc3339 {
    use std::time::SystemTime;

    use serde::Serializer;

    pub fn serialize<S: Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_str(&crate::roster::rfc3339::format(*t)),
            None => s.serialize_none(),
        }
    }
}
