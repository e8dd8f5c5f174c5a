//! rollcall's metadata as DNS-SD TXT `key=value` strings, and back.
//!
//! Keys: `id`, `name`, `status`, `version`, `capabilities` (comma-separated),
//! `peer_id`, and `label.<key>` per label. In the libp2p flavour the same
//! strings carry the prefix `rollcall.` and sit in a TXT record under the host
//! name, so the instance TXT holds nothing but `dnsaddr=` strings.

use discovery_core::{Alias, AliasKind, LocalPeer, Metadata};

/// The longest string a TXT record can carry.
const MAX_STRING: usize = 255;

/// TXT strings describing `local` (strings over 255 bytes are left out).
pub fn encode(local: &LocalPeer, peer_id: Option<&str>, prefix: &str) -> Vec<String> {
    let mut out = vec![format!("{prefix}id={}", local.id)];
    let m = &local.meta;
    let mut push = |k: &str, v: &str| out.push(format!("{prefix}{k}={v}"));
    if let Some(v) = &m.name {
        push("name", v);
    }
    if let Some(v) = &m.status {
        push("status", v);
    }
    if let Some(v) = &m.version {
        push("version", v);
    }
    if !m.capabilities.is_empty() {
        push("capabilities", &m.capabilities.join(","));
    }
    if let Some(p) = peer_id {
        push("peer_id", p);
    }
    for (k, v) in &m.labels {
        push(&format!("label.{k}"), v);
    }
    out.retain(|s| s.len() <= MAX_STRING);
    out
}

/// Metadata and identity claims read back from TXT strings with `prefix`;
/// unknown keys are ignored (other DNS-SD services carry their own).
pub fn decode<'a>(
    strings: impl IntoIterator<Item = &'a String>,
    prefix: &str,
) -> (Metadata, Vec<Alias>) {
    let mut meta = Metadata::default();
    let mut aliases = Vec::new();
    for s in strings {
        let Some(kv) = s.strip_prefix(prefix) else {
            continue;
        };
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        match k {
            "id" if !v.is_empty() => aliases.push(Alias::agent_id(v)),
            "peer_id" if !v.is_empty() => aliases.push(Alias::new(AliasKind::PeerId, v)),
            "name" => meta.name = Some(v.to_owned()),
            "status" => meta.status = Some(v.to_owned()),
            "version" => meta.version = Some(v.to_owned()),
            "capabilities" => {
                meta.capabilities = v
                    .split(',')
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .map(str::to_owned)
                    .collect()
            }
            _ => {
                if let Some(label) = k.strip_prefix("label.") {
                    meta.labels.insert(label.to_owned(), v.to_owned());
                }
            }
        }
    }
    (meta, aliases)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut local = LocalPeer {
            id: "chorus-agent-7".into(),
            ..Default::default()
        };
        local.meta.status = Some("idle".into());
        local.meta.capabilities = vec!["go_development".into(), "database_design".into()];
        local
            .meta
            .labels
            .insert("model".into(), "llama3.1:8b".into());
        local.meta.version = Some("0.1.0".into());
        let s = encode(&local, Some("12D3KooWabc"), "rollcall.");
        let (meta, aliases) = decode(&s, "rollcall.");
        assert_eq!(meta, local.meta);
        assert_eq!(
            aliases,
            vec![
                Alias::agent_id("chorus-agent-7"),
                Alias::peer_id("12D3KooWabc")
            ]
        );
        let (none, _) = decode(&s, "");
        assert_eq!(none, Metadata::default(), "prefix is required");
    }
}
