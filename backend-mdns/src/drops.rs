//! Counted drops of bad or excess input (`rollcall_mdns_dropped_total{source,reason}`).

use std::sync::Arc;

/// Counts drops for one source.
#[derive(Debug, Clone)]
pub(crate) struct Drops {
    source: Arc<str>,
}

impl Drops {
    pub(crate) fn new(source: Arc<str>) -> Self {
        Drops { source }
    }

    /// One input dropped for `reason` (`malformed`, `no_peer_id`, `peer_limit`,
    /// `addr_limit`, `probe`, `rate_limited`, `oversize`).
    pub(crate) fn count(&self, reason: &'static str) {
        metrics::counter!("rollcall_mdns_dropped_total", "source" => self.source.to_string(), "reason" => reason)
            .increment(1);
        tracing::debug!(source = %self.source, reason, "mdns input dropped");
    }
}
