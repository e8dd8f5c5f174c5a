//! Signed metadata replies (`[sources.NAME.signing]`): the agent signs its
//! `MetaReply` with the identity key that is also its libp2p host key; a
//! discoverer checks the signature, that the signer is the peer it is
//! connected to (noise authenticated that peer id), the key's binding to the
//! agent id (`trusted_keys`, trust on first use) and the sequence.
//!
//! On a direct, noise-authenticated connection only the holder of the key can
//! answer as that peer id at all; the signature adds what noise does not: the
//! same `require_signed`, `trusted_keys` and first-key pinning of agent ids as
//! the nats and mdns sources, and a record that stays verifiable when it is
//! passed on.

use std::sync::atomic::{AtomicU64, Ordering};

use discovery_core::identity::Identity;
use discovery_core::signed::{
    decode_hex, encode_hex, sign, unix_millis, Canonical, Claims, Reason, Signature, Verified,
    Verifier,
};
use libp2p::PeerId;

use crate::metadata::{MetaReply, WireSig};

/// The domain tag of dht metadata signatures.
pub(crate) const DOMAIN: &str = "rollcall/dht/v1";

/// The bytes a reply's signature covers: every field a discoverer acts on.
pub(crate) fn canonical(r: &MetaReply) -> Vec<u8> {
    Canonical::new(DOMAIN)
        .opt(r.id.as_deref())
        .metadata(&r.meta)
        .strs(r.addrs.iter().map(String::as_str))
        .u64(r.sequence)
        .u64(r.timestamp)
        .finish()
}

/// The signing side: the identity and a sequence that keeps rising across
/// restarts (it starts at the Unix time in milliseconds).
#[derive(Debug)]
pub(crate) struct Signer {
    identity: std::sync::Arc<Identity>,
    sequence: AtomicU64,
}

impl Signer {
    pub(crate) fn new(identity: std::sync::Arc<Identity>) -> Self {
        Signer {
            identity,
            sequence: AtomicU64::new(unix_millis()),
        }
    }

    /// Stamps and signs `r` in place.
    pub(crate) fn sign(&self, r: &mut MetaReply) {
        r.sequence = self.sequence.fetch_add(1, Ordering::Relaxed) + 1;
        r.timestamp = unix_millis();
        r.signature = None;
        let s = sign(&self.identity, &canonical(r));
        r.signature = Some(WireSig {
            key: encode_hex(&s.key),
            sig: encode_hex(&s.sig),
        });
    }
}

/// Checks a reply received from `from` (the noise-authenticated peer id).
/// The agent id checked is the reply's `id`, or the peer id when it has none.
pub(crate) fn verify(v: &Verifier, r: &MetaReply, from: &PeerId) -> Result<Verified, Reason> {
    let sig = r.signature.as_ref().map(|w| Signature {
        key: decode_hex(&w.key).unwrap_or_default(),
        sig: decode_hex(&w.sig).unwrap_or_default(),
    });
    let from = from.to_string();
    let canonical = canonical(r);
    v.check(&Claims {
        agent_id: r.id.as_deref().unwrap_or(&from),
        peer_id: Some(&from),
        sequence: r.sequence,
        timestamp_ms: r.timestamp,
        canonical: &canonical,
        signature: sig.as_ref(),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use discovery_core::signed::SigningConfig;

    use super::*;

    fn strict() -> Verifier {
        Verifier::new(SigningConfig::strict(), Arc::from("t"))
    }

    fn peer_of(id: &Identity) -> PeerId {
        id.peer_id().to_string().parse().unwrap()
    }

    fn reply(id: &str) -> MetaReply {
        let mut r = MetaReply {
            id: Some(id.into()),
            addrs: vec!["/ip4/10.0.0.7/tcp/8081".into()],
            ..MetaReply::default()
        };
        r.meta.status = Some("idle".into());
        r
    }

    #[test]
    fn a_signed_reply_survives_json_and_tampering_does_not() {
        let id = Arc::new(Identity::ephemeral());
        let signer = Signer::new(id.clone());
        let mut r = reply("agent-7");
        signer.sign(&mut r);
        let back: MetaReply = serde_json::from_slice(&serde_json::to_vec(&r).unwrap()).unwrap();
        let v = strict();
        assert_eq!(
            verify(&v, &back, &peer_of(&id)).unwrap().peer_id,
            Some(id.peer_id())
        );
        // Altered after signing.
        let mut t = back.clone();
        t.addrs.push("/ip4/6.6.6.6/tcp/1".into());
        t.sequence += 1;
        assert_eq!(verify(&v, &t, &peer_of(&id)), Err(Reason::BadSignature));
        // A reply signed by one agent, relayed by another peer.
        let relay = Identity::ephemeral();
        let mut t = back.clone();
        signer.sign(&mut t);
        assert_eq!(verify(&v, &t, &peer_of(&relay)), Err(Reason::KeyMismatch));
        // The same reply again.
        assert_eq!(verify(&v, &back, &peer_of(&id)), Err(Reason::Replayed));
        // Unsigned, while signatures are required.
        assert_eq!(
            verify(&v, &reply("agent-8"), &peer_of(&relay)),
            Err(Reason::Unsigned)
        );
    }

    #[test]
    fn another_key_claiming_a_pinned_agent_id_is_an_identity_conflict() {
        let v = strict();
        let first = Arc::new(Identity::ephemeral());
        let mut r = reply("agent-7");
        Signer::new(first.clone()).sign(&mut r);
        assert!(verify(&v, &r, &peer_of(&first)).is_ok());
        let rogue = Arc::new(Identity::ephemeral());
        let mut r = reply("agent-7");
        Signer::new(rogue.clone()).sign(&mut r);
        assert_eq!(
            verify(&v, &r, &peer_of(&rogue)),
            Err(Reason::IdentityConflict)
        );
        assert_eq!(v.pinned("agent-7"), Some(first.peer_id()));
    }

    #[test]
    fn unsigned_replies_interoperate_by_default() {
        let v = Verifier::new(SigningConfig::default(), Arc::from("t"));
        let peer = peer_of(&Identity::ephemeral());
        assert_eq!(verify(&v, &reply("agent-9"), &peer).unwrap().peer_id, None);
    }
}
