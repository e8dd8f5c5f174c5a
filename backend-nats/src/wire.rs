//! Protocol v1 on the wire: the JSON record, subject tokens, and validation.
//! PROTOCOL.md is the normative description; this module implements it.

use std::collections::BTreeMap;
use std::time::Duration;

use discovery_core::{parse_addr, Alias, AliasKind, LocalPeer, Metadata, Observation};
use serde::{Deserialize, Serialize};

/// The protocol's major version. Receivers reject records with a higher one.
pub(crate) const VERSION: u64 = 1;
/// Largest record accepted or sent, in bytes.
pub(crate) const MAX_PAYLOAD: usize = 64 * 1024;
/// Longest id accepted, in bytes.
const MAX_ID_LEN: usize = 256;
/// Longest TTL honoured; longer ones are cut to this.
const MAX_TTL: Duration = Duration::from_secs(24 * 3600);

/// One identity claim on the wire. The kind is a string so that kinds added
/// later are ignored, not fatal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct WireAlias {
    pub kind: String,
    pub value: String,
}

/// Descriptive fields on the wire. Unknown fields are ignored.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct WireMeta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// The v1 record: an announcement, a query reply, a leave, a KV value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Record {
    pub version: u64,
    pub id: String,
    #[serde(default)]
    pub aliases: Vec<WireAlias>,
    #[serde(default)]
    pub addrs: Vec<String>,
    #[serde(default)]
    pub metadata: WireMeta,
    /// Milliseconds the record stays true without renewal; 0 in a leave.
    pub ttl: u64,
    /// Increases by one with every record one agent process sends.
    pub sequence: u64,
    /// Unix time in milliseconds when the record was sent.
    pub timestamp: u64,
    /// Protocol 1.1: the ed25519 signature of the record (see `sign.rs`).
    /// Receivers of 1.0 ignore it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<WireSig>,
}

/// The `signature` object of a signed record: hex of the libp2p
/// protobuf-encoded public key, and hex of the ed25519 signature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct WireSig {
    pub key: String,
    pub sig: String,
}

/// Why a payload was dropped; also the `reason` label of the drop counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Drop {
    /// Not JSON, or a required field missing or of the wrong type.
    Malformed,
    /// More than [`MAX_PAYLOAD`] bytes.
    Oversized,
    /// A major version other than [`VERSION`].
    Version,
    /// The id does not match the subject (or KV key) it came on.
    IdMismatch,
}

impl Drop {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Drop::Malformed => "malformed",
            Drop::Oversized => "oversized",
            Drop::Version => "version",
            Drop::IdMismatch => "id_mismatch",
        }
    }
}

/// A dropped payload: the reason and a detail for the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Rejected {
    pub reason: Drop,
    pub detail: String,
}

fn reject(reason: Drop, detail: impl Into<String>) -> Rejected {
    Rejected {
        reason,
        detail: detail.into(),
    }
}

/// Encodes an id as one subject token (also a valid KV key): ASCII letters,
/// digits, `-` and `_` stay; every other byte of its UTF-8 form becomes `=XX`
/// (two uppercase hex digits).
pub(crate) fn encode_token(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            out.push(b as char);
        } else {
            out.push('=');
            out.push(char::from(HEX[(b >> 4) as usize]));
            out.push(char::from(HEX[(b & 0xf) as usize]));
        }
    }
    out
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Decodes a token made by [`encode_token`]; `None` if it is not one.
pub(crate) fn decode_token(token: &str) -> Option<String> {
    let bytes = token.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'=' {
            let hex = token.get(i + 1..i + 3)?;
            if !hex
                .bytes()
                .all(|c| c.is_ascii_digit() || (b'A'..=b'F').contains(&c))
            {
                return None;
            }
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            out.push(b);
            i += 1;
        } else {
            return None;
        }
    }
    let s = String::from_utf8(out).ok()?;
    // Canonical form only: one id, one token.
    (encode_token(&s) == token).then_some(s)
}

pub(crate) use discovery_core::signed::unix_millis as now_millis;

impl Record {
    /// The record of the local peer.
    pub(crate) fn local(local: &LocalPeer, ttl: Duration, sequence: u64) -> Record {
        let aliases = local
            .aliases
            .iter()
            .filter(|a| !(a.kind == AliasKind::AgentId && a.value == local.id))
            .map(|a| WireAlias {
                kind: a.kind.as_str().to_owned(),
                value: a.value.clone(),
            })
            .collect();
        Record {
            version: VERSION,
            id: local.id.clone(),
            aliases,
            addrs: local.addrs.iter().map(|a| a.to_string()).collect(),
            metadata: WireMeta {
                name: local.meta.name.clone(),
                status: local.meta.status.clone(),
                capabilities: local.meta.capabilities.clone(),
                version: local.meta.version.clone(),
                labels: local.meta.labels.clone().into(),
            },
            ttl: ttl.as_millis().min(u64::MAX as u128) as u64,
            sequence,
            timestamp: now_millis(),
            signature: None,
        }
    }

    /// JSON bytes of the record.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        // Serialising plain strings, numbers and maps cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses and checks a payload. `expect_token` is the subject token (or KV
    /// key) it came on, when the channel names the id.
    pub(crate) fn parse(payload: &[u8], expect_token: Option<&str>) -> Result<Record, Rejected> {
        if payload.len() > MAX_PAYLOAD {
            return Err(reject(
                Drop::Oversized,
                format!("{} bytes, limit {MAX_PAYLOAD}", payload.len()),
            ));
        }
        // The version is checked first, so that a newer major version is
        // reported as such even if its shape changed.
        #[derive(Deserialize)]
        struct Probe {
            version: serde_json::Value,
        }
        let probe: Probe =
            serde_json::from_slice(payload).map_err(|e| reject(Drop::Malformed, e.to_string()))?;
        match probe.version.as_u64() {
            Some(VERSION) => {}
            Some(v) => {
                return Err(reject(
                    Drop::Version,
                    format!("version {v}, this receiver speaks {VERSION}"),
                ))
            }
            None => {
                return Err(reject(
                    Drop::Malformed,
                    format!("version {} is not a positive integer", probe.version),
                ))
            }
        }
        let rec: Record =
            serde_json::from_slice(payload).map_err(|e| reject(Drop::Malformed, e.to_string()))?;
        if rec.id.is_empty() || rec.id.len() > MAX_ID_LEN || rec.id.chars().any(char::is_control) {
            return Err(reject(
                Drop::Malformed,
                format!("id must be 1 to {MAX_ID_LEN} bytes without control characters"),
            ));
        }
        if let Some(token) = expect_token {
            if encode_token(&rec.id) != token {
                return Err(reject(
                    Drop::IdMismatch,
                    format!(
                        "id `{}` sent on token `{token}` (expected `{}`)",
                        rec.id,
                        encode_token(&rec.id)
                    ),
                ));
            }
        }
        Ok(rec)
    }

    /// The TTL the record asks for, capped; `None` if it is 0.
    pub(crate) fn ttl(&self) -> Option<Duration> {
        (self.ttl > 0).then(|| Duration::from_millis(self.ttl).min(MAX_TTL))
    }

    /// The observation this record describes, keyed by id, with `ttl`.
    /// Addresses that cannot be parsed are left out and returned for counting.
    pub(crate) fn observation(
        &self,
        key: String,
        ttl: Option<Duration>,
    ) -> (Observation, Vec<String>) {
        let mut aliases = vec![Alias::agent_id(self.id.clone())];
        for a in &self.aliases {
            let Some(kind) = alias_kind(&a.kind) else {
                continue;
            };
            // The id is the agent id; a second, different agent id is ignored.
            if kind == AliasKind::AgentId || a.value.trim().is_empty() {
                continue;
            }
            let alias = Alias::new(kind, a.value.clone());
            if !aliases.contains(&alias) {
                aliases.push(alias);
            }
        }
        let mut addrs = Vec::with_capacity(self.addrs.len());
        let mut bad = Vec::new();
        for a in &self.addrs {
            match parse_addr(a) {
                Ok(m) => addrs.push(m),
                Err(_) => bad.push(a.clone()),
            }
        }
        let m = &self.metadata;
        let obs = Observation {
            key,
            aliases,
            addrs,
            meta: Metadata {
                name: m.name.clone(),
                status: m.status.clone(),
                capabilities: m.capabilities.clone(),
                version: m.version.clone(),
                labels: m.labels.clone().into(),
            },
            ttl,
        };
        (obs, bad)
    }
}

/// The alias kind named on the wire; unknown kinds are `None` (ignored).
pub(crate) fn alias_kind(s: &str) -> Option<AliasKind> {
    AliasKind::ALL.into_iter().find(|k| k.as_str() == s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> LocalPeer {
        LocalPeer {
            id: "chorus-agent-7".into(),
            aliases: vec![
                Alias::peer_id("12D3KooWabc"),
                Alias::container_id("0123456789abcdef"),
            ],
            addrs: vec![parse_addr("/ip4/10.0.1.7/tcp/9000").unwrap()],
            meta: Metadata {
                name: Some("seven".into()),
                status: Some("idle".into()),
                capabilities: vec!["go_development".into()],
                version: Some("1.2.3".into()),
                labels: [("model".to_owned(), "llama3.1:8b".to_owned())].into(),
            },
        }
    }

    #[test]
    fn tokens_round_trip_and_stay_valid_subject_tokens() {
        for id in [
            "chorus-agent-7",
            "a.b",
            "host name",
            "x*>y",
            "é",
            "a=b",
            "%41",
            "_-",
        ] {
            let t = encode_token(id);
            assert!(
                t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'='),
                "{t}"
            );
            assert_eq!(decode_token(&t).as_deref(), Some(id), "{id}");
        }
        assert_eq!(encode_token("a.b"), "a=2Eb");
        assert_eq!(decode_token("a=2e"), None, "lowercase hex is not canonical");
        assert_eq!(decode_token("a=2"), None);
        assert_eq!(decode_token("a.b"), None);
        assert_eq!(decode_token("=FF"), None, "not UTF-8");
    }

    #[test]
    fn local_record_round_trips_to_an_observation() {
        let local = sample();
        let rec = Record::local(&local, Duration::from_secs(15), 3);
        assert_eq!(rec.ttl, 15_000);
        let bytes = rec.to_bytes();
        let back = Record::parse(&bytes, Some("chorus-agent-7")).unwrap();
        assert_eq!(back, rec);
        let (obs, bad) = back.observation(back.id.clone(), back.ttl());
        assert!(bad.is_empty());
        let want = local.observation(Some(Duration::from_secs(15)));
        assert_eq!(obs, want);
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let json = br#"{"version":1,"id":"a","ttl":1000,"sequence":1,"timestamp":5,
            "future_field":{"x":[1,2]},"metadata":{"status":"idle","mood":"happy"},
            "aliases":[{"kind":"spiffe_id","value":"spiffe://x"},{"kind":"peer_id","value":"P"}]}"#;
        let rec = Record::parse(json, Some("a")).unwrap();
        let (obs, _) = rec.observation("a".into(), rec.ttl());
        assert_eq!(obs.aliases, vec![Alias::agent_id("a"), Alias::peer_id("P")]);
        assert_eq!(obs.meta.status.as_deref(), Some("idle"));
    }

    #[test]
    fn bad_payloads_are_rejected_with_a_reason() {
        let ok = br#"{"version":1,"id":"a","ttl":1000,"sequence":1,"timestamp":5}"#;
        assert!(Record::parse(ok, Some("a")).is_ok());
        let cases: Vec<(Vec<u8>, Drop)> = vec![
            (b"not json".to_vec(), Drop::Malformed),
            (b"".to_vec(), Drop::Malformed),
            (b"[1,2]".to_vec(), Drop::Malformed),
            (br#"{"id":"a"}"#.to_vec(), Drop::Malformed),
            (
                br#"{"version":"1","id":"a","ttl":1,"sequence":1,"timestamp":1}"#.to_vec(),
                Drop::Malformed,
            ),
            (br#"{"version":1,"id":"a"}"#.to_vec(), Drop::Malformed),
            (
                br#"{"version":1,"id":"","ttl":1,"sequence":1,"timestamp":1}"#.to_vec(),
                Drop::Malformed,
            ),
            (
                br#"{"version":1,"id":7,"ttl":1,"sequence":1,"timestamp":1}"#.to_vec(),
                Drop::Malformed,
            ),
            (
                br#"{"version":2,"id":"a","ttl":1,"sequence":1,"timestamp":1}"#.to_vec(),
                Drop::Version,
            ),
            (br#"{"version":2,"whatever":true}"#.to_vec(), Drop::Version),
            (
                br#"{"version":0,"id":"a","ttl":1,"sequence":1,"timestamp":1}"#.to_vec(),
                Drop::Version,
            ),
            (
                br#"{"version":1,"id":"b","ttl":1,"sequence":1,"timestamp":1}"#.to_vec(),
                Drop::IdMismatch,
            ),
            (vec![b' '; MAX_PAYLOAD + 1], Drop::Oversized),
        ];
        for (payload, want) in cases {
            let got = Record::parse(&payload, Some("a")).unwrap_err();
            assert_eq!(
                got.reason,
                want,
                "{}",
                String::from_utf8_lossy(&payload[..payload.len().min(80)])
            );
        }
    }

    #[test]
    fn bad_addresses_are_skipped_not_fatal() {
        let json = br#"{"version":1,"id":"a","ttl":1000,"sequence":1,"timestamp":5,
            "addrs":["/ip4/10.0.0.1/tcp/1","/ip4/999.0.0.1/tcp/1","10.0.0.2:2"]}"#;
        let rec = Record::parse(json, None).unwrap();
        let (obs, bad) = rec.observation("a".into(), rec.ttl());
        assert_eq!(obs.addrs.len(), 2);
        assert_eq!(bad, vec!["/ip4/999.0.0.1/tcp/1".to_owned()]);
    }

    #[test]
    fn ttl_zero_is_none_and_huge_is_capped() {
        let mut rec = Record::local(&sample(), Duration::ZERO, 1);
        assert_eq!(rec.ttl(), None);
        rec.ttl = u64::MAX;
        assert_eq!(rec.ttl(), Some(MAX_TTL));
    }
}
