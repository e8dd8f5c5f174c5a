//! `/rollcall/meta/1.0.0`: a small request-response protocol that asks a
//! provider for its agent id and metadata. Replies are bounded in bytes (the
//! codec) and in fields (`validate`); anything else is counted and dropped.
//! With `[sources.NAME.signing]` a reply carries a sequence, a timestamp and
//! a signature (see `signing.rs`); fields unknown to older peers default.

use discovery_core::{LocalPeer, Metadata};
use serde::{Deserialize, Serialize};

/// The protocol name.
pub const PROTOCOL: &str = "/rollcall/meta/1.0.0";

/// Limits on one reply's fields.
const MAX_FIELD: usize = 256;
const MAX_ITEMS: usize = 64;

/// "Who are you?" (no fields; kept as a struct so it can grow).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct MetaRequest {}

/// The answer: the agent id and what the agent announces.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaReply {
    /// Agent id, if the peer announces one.
    #[serde(default)]
    pub id: Option<String>,
    /// Name, status, capabilities, version, labels.
    #[serde(default)]
    pub meta: Metadata,
    /// The addresses the agent announces (`[local] addrs`: its service, not
    /// its libp2p host), as multiaddr text. Absent from older peers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addrs: Vec<String>,
    /// The signer's sequence (signed replies only).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub sequence: u64,
    /// Unix time in milliseconds when it was signed (signed replies only).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub timestamp: u64,
    /// The signature, if the agent signs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<WireSig>,
}

/// A reply's signature: hex of the libp2p protobuf-encoded public key, and
/// hex of the ed25519 signature (the encoding of the nats protocol).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireSig {
    /// The public key.
    pub key: String,
    /// The signature of the canonical bytes.
    pub sig: String,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl MetaReply {
    /// What this process answers: its `[local]` peer when it announces.
    pub fn of_local(local: Option<&LocalPeer>) -> Self {
        match local {
            Some(l) => MetaReply {
                id: Some(l.id.clone()),
                meta: l.meta.clone(),
                addrs: l.addrs.iter().map(ToString::to_string).collect(),
                ..MetaReply::default()
            },
            None => MetaReply::default(),
        }
    }

    /// Checks field sizes; `Err` names the first violation.
    pub fn validate(&self) -> Result<(), &'static str> {
        let short = |s: &Option<String>| s.as_ref().is_none_or(|v| v.len() <= MAX_FIELD);
        if !short(&self.id) || !short(&self.meta.name) || !short(&self.meta.status) {
            return Err("field too long");
        }
        if !short(&self.meta.version) {
            return Err("field too long");
        }
        if self.meta.capabilities.len() > MAX_ITEMS
            || self.meta.labels.len() > MAX_ITEMS
            || self.addrs.len() > MAX_ITEMS
        {
            return Err("too many items");
        }
        if self
            .signature
            .as_ref()
            .is_some_and(|s| s.key.len() > MAX_FIELD || s.sig.len() > MAX_FIELD)
        {
            return Err("field too long");
        }
        if self.addrs.iter().any(|a| a.len() > MAX_FIELD) {
            return Err("field too long");
        }
        if self.meta.capabilities.iter().any(|c| c.len() > MAX_FIELD)
            || labels_too_long(&self.meta.labels)
        {
            return Err("field too long");
        }
        Ok(())
    }
}

fn labels_too_long(labels: &discovery_core::Labels) -> bool {
    labels
        .iter()
        .any(|(k, v)| k.len() > MAX_FIELD || v.len() > MAX_FIELD)
}
