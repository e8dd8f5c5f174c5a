//! Protocol 1.1 signatures: the canonical bytes of a record, signing the
//! local record, and checking a received one with the source's verifier.
//! PROTOCOL.md ("Signed records") is the normative description.

use discovery_core::identity::Identity;
use discovery_core::signed::{
    decode_hex, encode_hex, sign, Canonical, Claims, Reason, Signature, Verified, Verifier,
};

use crate::wire::{Record, WireSig};

/// The domain tag of NATS records.
pub(crate) const DOMAIN: &str = "rollcall/nats/v1";

/// The bytes a record's signature covers: every field a receiver acts on,
/// in a fixed order (PROTOCOL.md lists it).
pub(crate) fn canonical(r: &Record) -> Vec<u8> {
    let m = &r.metadata;
    let mut c = Canonical::new(DOMAIN)
        .u64(r.version)
        .str(&r.id)
        .u64(r.aliases.len() as u64);
    for a in &r.aliases {
        c = c.str(&a.kind).str(&a.value);
    }
    c = c
        .strs(r.addrs.iter().map(String::as_str))
        .opt(m.name.as_deref())
        .opt(m.status.as_deref())
        .strs(m.capabilities.iter().map(String::as_str))
        .opt(m.version.as_deref())
        .u64(m.labels.len() as u64);
    for (k, v) in &m.labels {
        c = c.str(k).str(v);
    }
    c.u64(r.ttl).u64(r.sequence).u64(r.timestamp).finish()
}

/// Signs the record in place with the identity.
pub(crate) fn sign_record(r: &mut Record, identity: &Identity) {
    r.signature = None;
    let s = sign(identity, &canonical(r));
    r.signature = Some(WireSig {
        key: encode_hex(&s.key),
        sig: encode_hex(&s.sig),
    });
}

/// Checks a received record. A `signature` that is not hex counts as a bad
/// signature.
pub(crate) fn verify_record(v: &Verifier, r: &Record) -> Result<Verified, Reason> {
    let sig = r.signature.as_ref().map(|w| Signature {
        key: decode_hex(&w.key).unwrap_or_default(),
        sig: decode_hex(&w.sig).unwrap_or_default(),
    });
    let canonical = canonical(r);
    let mut claimed = r.aliases.iter().filter(|a| a.kind == "peer_id");
    let verified = v.check(&Claims {
        agent_id: &r.id,
        peer_id: claimed.next().map(|a| a.value.as_str()),
        sequence: r.sequence,
        timestamp_ms: r.timestamp,
        canonical: &canonical,
        signature: sig.as_ref(),
    })?;
    // Every peer id a signed record claims must be the signer's own.
    if let Some(signer) = verified.peer_id {
        let signer = signer.to_string();
        if r.aliases
            .iter()
            .any(|a| a.kind == "peer_id" && a.value != signer)
        {
            v.reject(Reason::KeyMismatch, &r.id);
            return Err(Reason::KeyMismatch);
        }
    }
    Ok(verified)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use discovery_core::signed::SigningConfig;
    use discovery_core::LocalPeer;

    use super::*;

    fn strict() -> Verifier {
        Verifier::new(SigningConfig::strict(), Arc::from("t"))
    }

    #[test]
    fn signed_record_survives_the_wire_and_tampering_does_not() {
        let id = Identity::ephemeral();
        let local = LocalPeer {
            id: "a".into(),
            ..Default::default()
        };
        let mut r = Record::local(&local, Duration::from_secs(15), 1);
        sign_record(&mut r, &id);
        let back = Record::parse(&r.to_bytes(), Some("a")).unwrap();
        let v = strict();
        assert_eq!(
            verify_record(&v, &back).unwrap().peer_id,
            Some(id.peer_id())
        );
        let mut t = back.clone();
        t.sequence += 1;
        t.ttl = 0;
        assert_eq!(verify_record(&v, &t), Err(Reason::BadSignature));
        let mut t = back.clone();
        t.addrs.push("/ip4/6.6.6.6/tcp/1".into());
        t.sequence += 1;
        assert_eq!(verify_record(&v, &t), Err(Reason::BadSignature));
        let mut t = back.clone();
        t.signature.as_mut().unwrap().sig = "zz".into();
        assert_eq!(verify_record(&v, &t), Err(Reason::BadSignature));
        // Claiming someone else's peer id, correctly signed with one's own key.
        let mut t = back;
        t.aliases.push(crate::wire::WireAlias {
            kind: "peer_id".into(),
            value: Identity::ephemeral().peer_id().to_string(),
        });
        t.sequence += 5;
        sign_record(&mut t, &id);
        assert_eq!(verify_record(&v, &t), Err(Reason::KeyMismatch));
    }
}
