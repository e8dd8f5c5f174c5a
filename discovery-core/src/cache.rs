//! The roster cache file: the roster JSON, written atomically, reloaded as
//! low-priority observations at start.

use std::path::Path;

use crate::addr::parse_addr;
use crate::model::{Metadata, Observation};
use crate::roster::Roster;

/// Writes the roster to `path` (temp file + rename, so a crash never leaves half a file).
pub(crate) fn save(path: &Path, roster: &Roster) -> std::io::Result<()> {
    let json = serde_json::to_vec_pretty(roster).map_err(std::io::Error::other)?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, json)?;
    std::fs::rename(&tmp, path)
}

/// Reads a cache file into observations. A missing file is an empty cache; a
/// broken one is an error (the caller logs it and starts empty).
pub(crate) fn load(path: &Path) -> Result<Vec<Observation>, String> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("cannot read cache {}: {e}", path.display())),
    };
    let roster: Roster = serde_json::from_slice(&bytes)
        .map_err(|e| format!("cache {} is not a roster: {e}", path.display()))?;
    Ok(roster
        .peers
        .into_iter()
        .map(std::sync::Arc::unwrap_or_clone)
        .map(|p| Observation {
            key: p.id,
            aliases: p.aliases,
            addrs: p.addrs.iter().filter_map(|a| parse_addr(a).ok()).collect(),
            meta: Metadata {
                name: p.name,
                status: p.status,
                capabilities: p.capabilities,
                version: p.version,
                labels: p.labels,
            },
            ttl: None,
        })
        .collect())
}
