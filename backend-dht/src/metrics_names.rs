//! Metric names of this backend (documented in the README).

/// Counter: input dropped, label `reason`.
pub const DROPPED: &str = "rollcall_dht_dropped_total";
/// Counter: provider lookups started (one per shard key).
pub const LOOKUPS: &str = "rollcall_dht_lookups_total";
/// Gauge: providers currently answering.
pub const LIVE: &str = "rollcall_dht_live_providers";
/// Counter: provider records published (start_providing calls).
pub const PROVIDES: &str = "rollcall_dht_provides_total";

/// Counts one dropped input.
pub fn dropped(reason: &'static str) {
    metrics::counter!(DROPPED, "reason" => reason).increment(1);
}
