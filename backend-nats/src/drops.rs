//! Counted drops of bad input, with a rate-limited warning.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// At most one warning per reason per this period; the rest are counted.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Counts dropped input per reason (`rollcall_nats_dropped_total{source,reason}`)
/// and warns at most once per reason every 10 s, saying how many were suppressed.
#[derive(Debug, Clone)]
pub(crate) struct Drops {
    source: Arc<str>,
    state: Arc<Mutex<HashMap<&'static str, Slot>>>,
}

#[derive(Debug)]
struct Slot {
    last_warn: Instant,
    suppressed: u64,
}

impl Drops {
    pub(crate) fn new(source: Arc<str>) -> Self {
        Drops {
            source,
            state: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Records one drop; returns whether a warning was logged.
    pub(crate) fn count(&self, reason: &'static str, channel: &str, detail: &str) -> bool {
        metrics::counter!("rollcall_nats_dropped_total", "source" => self.source.to_string(), "reason" => reason)
            .increment(1);
        let now = Instant::now();
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let slot = state.entry(reason).or_insert(Slot {
            last_warn: now.checked_sub(WARN_EVERY).unwrap_or(now),
            suppressed: 0,
        });
        if now.duration_since(slot.last_warn) >= WARN_EVERY || slot.suppressed == u64::MAX {
            let suppressed = std::mem::take(&mut slot.suppressed);
            slot.last_warn = now;
            drop(state);
            tracing::warn!(
                source = %self.source,
                reason,
                channel,
                detail,
                suppressed_since_last_warning = suppressed,
                "dropped bad NATS input"
            );
            true
        } else {
            slot.suppressed += 1;
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn warns_once_per_period_per_reason() {
        let d = Drops::new(Arc::from("t"));
        assert!(d.count("malformed", "s", "x"));
        assert!(!d.count("malformed", "s", "x"));
        assert!(!d.count("malformed", "s", "x"));
        assert!(
            d.count("oversized", "s", "x"),
            "another reason has its own budget"
        );
        tokio::time::advance(Duration::from_secs(9)).await;
        assert!(!d.count("malformed", "s", "x"));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(d.count("malformed", "s", "x"));
        assert!(!d.count("malformed", "s", "x"));
    }
}
