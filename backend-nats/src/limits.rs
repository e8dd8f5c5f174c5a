//! `[sources.NAME.limits]`: how much one discoverer takes from the wire, so
//! that a flood of fake peers or records cannot exhaust its memory or bury
//! the real peers. The excess is dropped and counted
//! (`rollcall_nats_dropped_total{reason="peer_limit"|"rate_limit"|"addr_limit"|"metadata_limit"}`).

use serde::{Deserialize, Serialize};

use discovery_core::signed::Verified;
use discovery_core::{Alias, Observation};

use crate::drops::Drops;
use crate::wire::Record;

/// The limits of one source.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Distinct peers this source keeps at once; records of further new peers
    /// are dropped until known ones leave or expire.
    #[serde(default = "default_max_peers")]
    pub max_peers: usize,
    /// Addresses kept per peer; the rest of a record's addresses are dropped.
    #[serde(default = "default_max_addrs")]
    pub max_addrs: usize,
    /// Bytes of metadata (name, status, version, capabilities, labels) per
    /// record; a record with more is dropped.
    #[serde(default = "default_max_metadata_bytes")]
    pub max_metadata_bytes: usize,
    /// Records accepted per agent id per second; the rest are dropped.
    #[serde(default = "default_max_records_per_sec")]
    pub max_records_per_sec: u32,
}

fn default_max_peers() -> usize {
    10_000
}
fn default_max_addrs() -> usize {
    16
}
fn default_max_metadata_bytes() -> usize {
    8 * 1024
}
fn default_max_records_per_sec() -> u32 {
    20
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_peers: default_max_peers(),
            max_addrs: default_max_addrs(),
            max_metadata_bytes: default_max_metadata_bytes(),
            max_records_per_sec: default_max_records_per_sec(),
        }
    }
}

impl Limits {
    pub(crate) fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.max_peers == 0 {
            return Err(("limits.max_peers", "must be at least 1".into()));
        }
        if self.max_records_per_sec == 0 {
            return Err(("limits.max_records_per_sec", "must be at least 1".into()));
        }
        Ok(())
    }
}

/// The bytes of a record's metadata, as counted against `max_metadata_bytes`.
pub(crate) fn metadata_bytes(r: &Record) -> usize {
    let m = &r.metadata;
    let opt = |s: &Option<String>| s.as_ref().map_or(0, String::len);
    opt(&m.name)
        + opt(&m.status)
        + opt(&m.version)
        + m.capabilities.iter().map(String::len).sum::<usize>()
        + m.labels
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>()
}

/// Adds the verified signer's peer id as an alias and cuts the addresses to
/// `max_addrs` (counting the cut).
pub(crate) fn finish(
    obs: &mut Observation,
    verified: &Verified,
    max_addrs: usize,
    drops: &Drops,
    channel: &str,
) {
    if let Some(p) = verified.peer_id {
        let alias = Alias::peer_id(p.to_string());
        if !obs.aliases.contains(&alias) {
            obs.aliases.push(alias);
        }
    }
    if obs.addrs.len() > max_addrs {
        drops.count(
            "addr_limit",
            channel,
            &format!(
                "id `{}`: {} addresses, kept {max_addrs}",
                obs.key,
                obs.addrs.len()
            ),
        );
        obs.addrs.truncate(max_addrs);
    }
}
