//! What a source saw of one peer: identity claims, addresses, metadata.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use multiaddr::Multiaddr;
use serde::{Deserialize, Serialize};

use crate::labels::Labels;

/// The kind of an identity claim.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AliasKind {
    /// Application-level agent id (e.g. `chorus-agent-7`).
    AgentId,
    /// libp2p peer id (base58 or CID form).
    PeerId,
    /// Docker container id; matched on its 12-character short form.
    ContainerId,
    /// Docker Swarm task id.
    TaskId,
    /// Host name. Weak: recorded, never used to merge (many hosts are "localhost").
    Hostname,
}

impl AliasKind {
    /// All kinds, in the order a peer's display id is chosen from.
    pub const ALL: [AliasKind; 5] = [
        AliasKind::AgentId,
        AliasKind::PeerId,
        AliasKind::ContainerId,
        AliasKind::TaskId,
        AliasKind::Hostname,
    ];

    /// Strong aliases merge observations that share them.
    pub fn is_strong(self) -> bool {
        !matches!(self, AliasKind::Hostname)
    }

    /// A peer has at most one value of a singular kind: two different values
    /// reached through a shared alias are an identity conflict, not a merge.
    pub fn is_singular(self) -> bool {
        self.is_strong()
    }

    /// The key name used in JSON and config.
    pub fn as_str(self) -> &'static str {
        match self {
            AliasKind::AgentId => "agent_id",
            AliasKind::PeerId => "peer_id",
            AliasKind::ContainerId => "container_id",
            AliasKind::TaskId => "task_id",
            AliasKind::Hostname => "hostname",
        }
    }
}

impl fmt::Display for AliasKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One identity claim: a kind and a value.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Alias {
    /// What the value identifies.
    pub kind: AliasKind,
    /// The value as the source reported it.
    pub value: String,
}

impl Alias {
    /// A new alias.
    pub fn new(kind: AliasKind, value: impl Into<String>) -> Self {
        Alias {
            kind,
            value: value.into(),
        }
    }
    /// Shorthand for an agent id.
    pub fn agent_id(value: impl Into<String>) -> Self {
        Alias::new(AliasKind::AgentId, value)
    }
    /// Shorthand for a libp2p peer id.
    pub fn peer_id(value: impl Into<String>) -> Self {
        Alias::new(AliasKind::PeerId, value)
    }
    /// Shorthand for a container id.
    pub fn container_id(value: impl Into<String>) -> Self {
        Alias::new(AliasKind::ContainerId, value)
    }

    /// The value compared when matching: container ids by their short form
    /// (Docker uses it as the hostname), everything trimmed.
    pub fn match_value(&self) -> &str {
        match_value(self.kind, &self.value)
    }
}

/// `Alias::match_value` of a kind and value.
#[inline]
pub(crate) fn match_value(kind: AliasKind, value: &str) -> &str {
    let v = trim(value);
    match kind {
        AliasKind::ContainerId if v.len() > 12 && v.is_char_boundary(12) => &v[..12],
        _ => v,
    }
}

/// `s.trim()`, without decoding when both ends are printable ASCII (the
/// usual case: every alias is matched on each merge).
pub(crate) fn trim(s: &str) -> &str {
    let plain = |b: &u8| *b > b' ' && *b < 0x80;
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(first), Some(last)) if plain(first) && plain(last) => s,
        _ => s.trim(),
    }
}

/// Descriptive fields; the highest-priority source that has a field wins it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    /// Human-readable name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Status such as `online`, `idle`, `working`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Capabilities such as `go_development`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<String>,
    /// Software version the peer runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Free-form labels; merged per key.
    #[serde(default, skip_serializing_if = "Labels::is_empty")]
    pub labels: Labels,
}

/// What one source saw of one peer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observation {
    /// Unique within the source (task id, announcement id, list entry...).
    pub key: String,
    /// Identity claims.
    pub aliases: Vec<Alias>,
    /// Addresses, in the source's order of preference.
    pub addrs: Vec<Multiaddr>,
    /// Descriptive fields.
    pub meta: Metadata,
    /// How long this sighting stays true without being renewed.
    pub ttl: Option<Duration>,
}

impl Observation {
    /// A new observation with a key and nothing else.
    pub fn new(key: impl Into<String>) -> Self {
        Observation {
            key: key.into(),
            ..Default::default()
        }
    }
    /// Adds an alias.
    pub fn with_alias(mut self, alias: Alias) -> Self {
        self.aliases.push(alias);
        self
    }
    /// Adds an address.
    pub fn with_addr(mut self, addr: Multiaddr) -> Self {
        self.addrs.push(addr);
        self
    }
    /// Sets the TTL.
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }
    /// Sets the metadata.
    pub fn with_meta(mut self, meta: Metadata) -> Self {
        self.meta = meta;
        self
    }
    /// The first alias of a kind.
    pub fn alias(&self, kind: AliasKind) -> Option<&str> {
        self.aliases
            .iter()
            .find(|a| a.kind == kind)
            .map(|a| a.value.as_str())
    }
}

/// Whether a source is the truth or a stand-in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", try_from = "String")]
pub enum Role {
    /// Counts always.
    #[default]
    Primary,
    /// Counts only while every primary source is degraded or empty.
    Fallback,
}

impl TryFrom<String> for Role {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "primary" => Ok(Role::Primary),
            "fallback" => Ok(Role::Fallback),
            other => Err(format!(
                "unknown role `{other}`: use \"primary\" or \"fallback\""
            )),
        }
    }
}

/// The peer this process announces when it runs as an agent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalPeer {
    /// Agent id; also the `agent_id` alias.
    pub id: String,
    /// Extra identity claims (peer id, container id found at start...).
    #[serde(default)]
    pub aliases: Vec<Alias>,
    /// Addresses to announce.
    #[serde(default)]
    pub addrs: Vec<Multiaddr>,
    /// Descriptive fields to announce.
    #[serde(default)]
    pub meta: Metadata,
}

impl LocalPeer {
    /// Every alias of the local peer, the agent id first.
    pub fn all_aliases(&self) -> Vec<Alias> {
        let mut out = vec![Alias::agent_id(self.id.clone())];
        for a in &self.aliases {
            if !out.contains(a) {
                out.push(a.clone());
            }
        }
        out
    }

    /// The local peer as an observation keyed by its id.
    pub fn observation(&self, ttl: Option<Duration>) -> Observation {
        Observation {
            key: self.id.clone(),
            aliases: self.all_aliases(),
            addrs: self.addrs.clone(),
            meta: self.meta.clone(),
            ttl,
        }
    }
}

#[cfg(test)]
mod trim_tests {
    #[test]
    fn trim_equals_str_trim() {
        for s in [
            "",
            " ",
            "a",
            "ab",
            " a",
            "a ",
            "\ta\n",
            "\u{0B}a",
            "a\u{0B}",
            "\u{A0}a",
            "a\u{3000}",
            "é",
            "aé",
            "éa",
            "a b",
            "\u{7F}",
            "x\u{85}",
        ] {
            assert_eq!(super::trim(s), s.trim(), "{s:?}");
        }
    }
}
