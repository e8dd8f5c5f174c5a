//! The receiving side: signature, key binding, replay and trust checks, each
//! rejection counted by reason.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use super::{Signature, SigningConfig, TrustedKey};
use crate::identity::PeerId;

/// Why a record was rejected; the `reason` label of
/// `rollcall_records_rejected_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// Unsigned while `require_signed` is set.
    Unsigned,
    /// Unsigned, for an agent id already seen signed.
    Downgrade,
    /// The signature does not verify, or the key does not decode.
    BadSignature,
    /// The key's peer id is not the peer id the record claims.
    KeyMismatch,
    /// The sequence is not above the last accepted one for this key.
    Replayed,
    /// The timestamp is outside `max_clock_skew` of the local clock.
    Expired,
    /// The key is not in `trusted_keys` (or is bound to another agent id).
    Untrusted,
    /// Another key is pinned for this agent id (trust on first use).
    IdentityConflict,
    /// More than `max_keys` keys are remembered.
    Capacity,
}

impl Reason {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Unsigned => "unsigned",
            Reason::Downgrade => "downgrade",
            Reason::BadSignature => "bad_signature",
            Reason::KeyMismatch => "key_mismatch",
            Reason::Replayed => "replayed",
            Reason::Expired => "expired",
            Reason::Untrusted => "untrusted",
            Reason::IdentityConflict => "identity_conflict",
            Reason::Capacity => "capacity",
        }
    }
}

/// What a record claims, and the canonical bytes its signature covers.
#[derive(Clone, Copy, Debug)]
pub struct Claims<'a> {
    /// The agent id the record is about.
    pub agent_id: &'a str,
    /// The peer id the record claims (its `peer_id` alias), if any.
    pub peer_id: Option<&'a str>,
    /// The sender's sequence number.
    pub sequence: u64,
    /// Unix time in milliseconds when it was sent.
    pub timestamp_ms: u64,
    /// The canonical bytes (see [`super::Canonical`]).
    pub canonical: &'a [u8],
    /// The signature, if the record carries one.
    pub signature: Option<&'a Signature>,
}

/// An accepted record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// The signer's peer id (add it as a `peer_id` alias); `None` if unsigned.
    pub peer_id: Option<PeerId>,
}

#[derive(Debug, Default)]
struct State {
    /// Per key: last accepted sequence, its timestamp, and a digest of its
    /// signature (to tell a second delivery of that record from a replay).
    last: HashMap<PeerId, (u64, u64, u64)>,
    /// Agent id -> pinned key.
    pinned: HashMap<String, PeerId>,
}

/// One source's verifier. Cheap to clone (shared state).
#[derive(Clone, Debug)]
pub struct Verifier {
    cfg: Arc<SigningConfig>,
    trusted: Arc<HashMap<PeerId, Option<String>>>,
    source: Arc<str>,
    state: Arc<Mutex<State>>,
    repeats_ok: bool,
}

/// A digest of a signature, to recognise a repeat of the same record.
fn digest(sig: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    sig.hash(&mut h);
    h.finish()
}

/// Unix time in milliseconds: the clock of signed records' timestamps (and
/// the start of a signer's sequence, so it keeps rising across restarts).
pub fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Verifier {
    /// A verifier for the source `source`. Trusted keys that do not parse are
    /// ignored (validate the config first).
    pub fn new(cfg: SigningConfig, source: Arc<str>) -> Self {
        let trusted = cfg
            .trusted_keys
            .iter()
            .filter_map(|k| {
                let p = k.peer_id().parse::<PeerId>().ok()?;
                let id = match k {
                    TrustedKey::Any(_) => None,
                    TrustedKey::Bound { id, .. } => Some(id.clone()),
                };
                Some((p, id))
            })
            .collect();
        Verifier {
            cfg: Arc::new(cfg),
            trusted: Arc::new(trusted),
            source,
            state: Arc::default(),
            repeats_ok: false,
        }
    }

    /// Accepts a second delivery of the last accepted record of a key (the
    /// same sequence, the same signature) instead of rejecting it as
    /// replayed. For multicast DNS, where one answer goes out on IPv4 and
    /// IPv6 and may arrive on several sockets: the repeat says nothing the
    /// record did not, and a stale record (a lower sequence) is still refused.
    pub fn accepting_repeats(mut self) -> Self {
        self.repeats_ok = true;
        self
    }

    /// The configuration.
    pub fn config(&self) -> &SigningConfig {
        &self.cfg
    }

    /// Checks one record at the local clock; counts and logs a rejection.
    pub fn check(&self, c: &Claims<'_>) -> Result<Verified, Reason> {
        self.check_at(c, unix_millis())
    }

    /// [`Verifier::check`] at a given Unix time in milliseconds.
    pub fn check_at(&self, c: &Claims<'_>, now_ms: u64) -> Result<Verified, Reason> {
        let r = self.decide(c, now_ms);
        if let Err(reason) = r {
            self.reject(reason, c.agent_id);
        }
        r
    }

    /// Counts (and logs) a rejection the caller found itself, e.g. a second
    /// claimed peer id that is not the signer's.
    pub fn reject(&self, reason: Reason, agent_id: &str) {
        metrics::counter!("rollcall_records_rejected_total",
            "source" => self.source.to_string(), "reason" => reason.as_str())
        .increment(1);
        if reason == Reason::IdentityConflict {
            metrics::counter!("rollcall_identity_conflicts_total", "source" => self.source.to_string())
                .increment(1);
            tracing::warn!(source = %self.source, id = agent_id, "identity conflict: another key claims an agent id pinned to a different key; record rejected");
        } else {
            tracing::debug!(source = %self.source, id = agent_id, reason = reason.as_str(), "record rejected");
        }
    }

    fn decide(&self, c: &Claims<'_>, now_ms: u64) -> Result<Verified, Reason> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let Some(sig) = c.signature else {
            if self.cfg.require_signed {
                return Err(Reason::Unsigned);
            }
            if st.pinned.contains_key(c.agent_id) {
                return Err(Reason::Downgrade);
            }
            return Ok(Verified { peer_id: None });
        };
        let key = sig.public_key().ok_or(Reason::BadSignature)?;
        if !key.verify(c.canonical, &sig.sig) {
            return Err(Reason::BadSignature);
        }
        let peer = key.to_peer_id();
        if let Some(claimed) = c.peer_id {
            if claimed != peer.to_string() {
                return Err(Reason::KeyMismatch);
            }
        }
        if !self.trusted.is_empty() {
            match self.trusted.get(&peer) {
                None => return Err(Reason::Untrusted),
                Some(Some(id)) if id != c.agent_id => return Err(Reason::Untrusted),
                Some(_) => {}
            }
        }
        let skew = self.cfg.max_clock_skew.as_millis() as u64;
        if c.timestamp_ms.abs_diff(now_ms) > skew {
            return Err(Reason::Expired);
        }
        let digest = digest(&sig.sig);
        let mut repeat = false;
        if let Some(&(seq, _, last_digest)) = st.last.get(&peer) {
            repeat = self.repeats_ok && c.sequence == seq && digest == last_digest;
            if c.sequence <= seq && !repeat {
                return Err(Reason::Replayed);
            }
        }
        let pinned = st.pinned.get(c.agent_id).copied();
        if let Some(p) = pinned {
            if p != peer {
                return Err(Reason::IdentityConflict);
            }
        }
        if repeat {
            return Ok(Verified {
                peer_id: Some(peer),
            });
        }
        let new_key = !st.last.contains_key(&peer);
        let new_pin = self.cfg.tofu && pinned.is_none();
        if (new_key && st.last.len() >= self.cfg.max_keys)
            || (new_pin && st.pinned.len() >= self.cfg.max_keys)
        {
            // Keys silent for longer than the skew window can only send
            // records that are rejected as expired anyway: forget them.
            let horizon = now_ms.saturating_sub(skew);
            st.last.retain(|_, (_, ts, _)| *ts >= horizon);
            if st.last.len() >= self.cfg.max_keys || st.pinned.len() >= self.cfg.max_keys {
                return Err(Reason::Capacity);
            }
        }
        st.last.insert(peer, (c.sequence, c.timestamp_ms, digest));
        if new_pin {
            st.pinned.insert(c.agent_id.to_owned(), peer);
        }
        Ok(Verified {
            peer_id: Some(peer),
        })
    }

    /// The key pinned for an agent id, if any.
    pub fn pinned(&self, agent_id: &str) -> Option<PeerId> {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.pinned.get(agent_id).copied()
    }
}
