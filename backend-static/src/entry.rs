//! Peer entries: validation of the written form into what the runner uses.

use std::collections::HashMap;

use discovery_core::multiaddr::Protocol;
use discovery_core::{parse_addr, Alias, AliasKind, Metadata, Multiaddr};

use crate::{Error, PeerEntry, ProbeConfig};

/// A validated peer entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    /// Observation key: the id, or the first address when the probe supplies the id.
    pub(crate) key: String,
    /// The configured agent id.
    pub(crate) id: Option<String>,
    /// `agent_id` first (when configured), then the extra aliases.
    pub(crate) aliases: Vec<Alias>,
    /// Parsed addresses, DNS names not yet resolved.
    pub(crate) addrs: Vec<Multiaddr>,
    /// Descriptive fields as written.
    pub(crate) meta: Metadata,
}

/// An invalid entry: the key path below the list (`[2].addrs[0]`) and why.
#[derive(Debug)]
pub(crate) struct EntryError {
    pub(crate) key: String,
    pub(crate) error: EntryErrorKind,
}

#[derive(Debug)]
pub(crate) enum EntryErrorKind {
    Reason(String),
    Addr(discovery_core::AddrError),
}

impl EntryError {
    fn reason(key: String, reason: impl Into<String>) -> Self {
        EntryError {
            key,
            error: EntryErrorKind::Reason(reason.into()),
        }
    }

    /// The error with the list's name in front: `peers[2].addrs[0]`.
    pub(crate) fn into_error(self, list: &str) -> Error {
        let key = format!("{list}{}", self.key);
        match self.error {
            EntryErrorKind::Reason(reason) => Error::Invalid { key, reason },
            EntryErrorKind::Addr(source) => Error::Address { key, source },
        }
    }
}

/// Validates a list of entries. `others` are entries already accepted from
/// another list (the inline list, when validating the file): their ids and
/// keys must not repeat. Errors name the entry index and key.
pub(crate) fn validate(
    raw: &[PeerEntry],
    probe: Option<&ProbeConfig>,
    others: &[Entry],
) -> Result<Vec<Entry>, EntryError> {
    // key -> where it was first seen, for duplicate messages.
    let mut seen: HashMap<String, String> = others
        .iter()
        .enumerate()
        .map(|(i, e)| (e.key.clone(), format!("inline peers[{i}]")))
        .collect();
    let mut out = Vec::with_capacity(raw.len());
    for (i, p) in raw.iter().enumerate() {
        let at = |k: &str| format!("[{i}]{k}");
        let id = match &p.id {
            Some(id) if id.trim().is_empty() => {
                return Err(EntryError::reason(
                    at(".id"),
                    "empty (leave `id` out only when `probe` is set)",
                ))
            }
            Some(id) => Some(id.trim().to_owned()),
            None => None,
        };
        if id.is_none() && probe.is_none() {
            return Err(EntryError::reason(
                at(".id"),
                "missing (every entry needs an `id`, unless `probe` is set to learn it)",
            ));
        }
        let mut addrs = Vec::with_capacity(p.addrs.len());
        for (j, a) in p.addrs.iter().enumerate() {
            let m = parse_addr(a).map_err(|e| EntryError {
                key: at(&format!(".addrs[{j}]")),
                error: EntryErrorKind::Addr(e),
            })?;
            if let Some(probe) = probe {
                probeable(&m, probe)
                    .map_err(|r| EntryError::reason(at(&format!(".addrs[{j}]")), r))?;
            }
            if !addrs.contains(&m) {
                addrs.push(m);
            }
        }
        if probe.is_some() && addrs.is_empty() {
            return Err(EntryError::reason(
                at(".addrs"),
                "empty: `probe` needs an address to ask",
            ));
        }
        let mut aliases = Vec::new();
        if let Some(id) = &id {
            aliases.push(Alias::agent_id(id.clone()));
        }
        for (j, a) in p.aliases.iter().enumerate() {
            if a.value.trim().is_empty() {
                return Err(EntryError::reason(
                    at(&format!(".aliases[{j}].value")),
                    "empty",
                ));
            }
            if a.kind == AliasKind::AgentId {
                match &id {
                    Some(id) if a.value.trim() != id => {
                        return Err(EntryError::reason(
                            at(&format!(".aliases[{j}]")),
                            format!(
                                "agent_id `{}` differs from id `{id}`: an entry has one agent id",
                                a.value
                            ),
                        ))
                    }
                    Some(_) => continue,
                    None => {
                        return Err(EntryError::reason(
                            at(&format!(".aliases[{j}]")),
                            "an agent_id alias is the entry's `id`: write `id = ...` instead",
                        ))
                    }
                }
            }
            let a = Alias::new(a.kind, a.value.trim());
            if !aliases.contains(&a) {
                aliases.push(a);
            }
        }
        let (key, key_path) = match (&id, addrs.first()) {
            (Some(id), _) => (id.clone(), ".id"),
            (None, Some(first)) => (first.to_string(), ".addrs[0]"),
            // Unreachable: an id-less entry needs a probe, which needs an address.
            (None, None) => return Err(EntryError::reason(at(".id"), "missing")),
        };
        if let Some(prev) = seen.get(&key) {
            let what = if id.is_some() { "id" } else { "entry" };
            return Err(EntryError::reason(
                at(key_path),
                format!("duplicate {what} `{key}` (also {prev})"),
            ));
        }
        seen.insert(key.clone(), format!("peers[{i}]"));
        out.push(Entry {
            key,
            id,
            aliases,
            addrs,
            meta: Metadata {
                name: p.name.clone(),
                status: p.status.clone(),
                capabilities: p.capabilities.clone(),
                version: p.version.clone(),
                labels: p.labels.clone().into(),
            },
        });
    }
    Ok(out)
}

/// Whether the probe can ask this address: it must start with an IP or a DNS
/// name, and have a TCP port unless `probe.port` is set.
fn probeable(m: &Multiaddr, probe: &ProbeConfig) -> Result<(), String> {
    let mut it = m.iter();
    match it.next() {
        Some(
            Protocol::Ip4(_)
            | Protocol::Ip6(_)
            | Protocol::Dns(_)
            | Protocol::Dns4(_)
            | Protocol::Dns6(_),
        ) => {}
        _ => {
            return Err(format!(
                "`{m}` cannot be probed: only IP and DNS addresses can (or remove `probe`)"
            ))
        }
    }
    if probe.port.is_none() && !matches!(it.next(), Some(Protocol::Tcp(_))) {
        return Err(format!(
            "`{m}` has no TCP port to probe: add one or set `probe.port`"
        ));
    }
    Ok(())
}
