//! The verifier's decisions, one per rejection reason, with real ed25519 keys.

use std::sync::Arc;
use std::time::Duration;

use discovery_core::identity::Identity;
use discovery_core::signed::{
    sign, Canonical, Claims, Reason, Signature, SigningConfig, TrustedKey, Verifier,
};

const NOW: u64 = 1_800_000_000_000;

fn canon(id: &str, seq: u64) -> Vec<u8> {
    Canonical::new("test").str(id).u64(seq).finish()
}

fn check(v: &Verifier, id: &str, seq: u64, ts: u64, sig: Option<&Signature>) -> Result<(), Reason> {
    let c = canon(id, seq);
    v.check_at(
        &Claims {
            agent_id: id,
            peer_id: None,
            sequence: seq,
            timestamp_ms: ts,
            canonical: &c,
            signature: sig,
        },
        NOW,
    )
    .map(|_| ())
}

fn verifier(cfg: SigningConfig) -> Verifier {
    cfg.validate().unwrap();
    Verifier::new(cfg, Arc::from("t"))
}

#[test]
fn unsigned_is_accepted_by_default_and_rejected_when_required() {
    let v = verifier(SigningConfig::default());
    assert_eq!(check(&v, "a", 1, NOW, None), Ok(()));
    let v = verifier(SigningConfig {
        require_signed: true,
        ..Default::default()
    });
    assert_eq!(check(&v, "a", 1, NOW, None), Err(Reason::Unsigned));
}

#[test]
fn good_signature_verifies_and_names_the_peer() {
    let id = Identity::ephemeral();
    let v = verifier(SigningConfig {
        require_signed: true,
        ..Default::default()
    });
    let s = sign(&id, &canon("a", 1));
    let c = canon("a", 1);
    let got = v
        .check_at(
            &Claims {
                agent_id: "a",
                peer_id: Some(&id.peer_id().to_string()),
                sequence: 1,
                timestamp_ms: NOW,
                canonical: &c,
                signature: Some(&s),
            },
            NOW,
        )
        .unwrap();
    assert_eq!(got.peer_id, Some(id.peer_id()));
}

#[test]
fn forged_records_are_rejected() {
    let id = Identity::ephemeral();
    let other = Identity::ephemeral();
    let v = verifier(SigningConfig::default());
    // Signed over other bytes (a tampered field).
    let s = sign(&id, &canon("a", 2));
    assert_eq!(check(&v, "a", 1, NOW, Some(&s)), Err(Reason::BadSignature));
    // Garbage key.
    let junk = Signature {
        key: vec![1, 2, 3],
        sig: vec![0; 64],
    };
    assert_eq!(
        check(&v, "a", 1, NOW, Some(&junk)),
        Err(Reason::BadSignature)
    );
    // Valid signature, but the record claims another peer id.
    let s = sign(&id, &canon("a", 1));
    let c = canon("a", 1);
    let claimed = other.peer_id().to_string();
    let r = v.check_at(
        &Claims {
            agent_id: "a",
            peer_id: Some(&claimed),
            sequence: 1,
            timestamp_ms: NOW,
            canonical: &c,
            signature: Some(&s),
        },
        NOW,
    );
    assert_eq!(r, Err(Reason::KeyMismatch));
}

#[test]
fn replays_are_rejected() {
    let id = Identity::ephemeral();
    let v = verifier(SigningConfig::default());
    let s5 = sign(&id, &canon("a", 5));
    assert_eq!(check(&v, "a", 5, NOW, Some(&s5)), Ok(()));
    assert_eq!(check(&v, "a", 5, NOW, Some(&s5)), Err(Reason::Replayed));
    let s4 = sign(&id, &canon("a", 4));
    assert_eq!(check(&v, "a", 4, NOW, Some(&s4)), Err(Reason::Replayed));
    let s6 = sign(&id, &canon("a", 6));
    let skew = Duration::from_secs(300).as_millis() as u64;
    assert_eq!(
        check(&v, "a", 6, NOW - skew - 1, Some(&s6)),
        Err(Reason::Expired)
    );
    assert_eq!(
        check(&v, "a", 6, NOW + skew + 1, Some(&s6)),
        Err(Reason::Expired)
    );
    assert_eq!(check(&v, "a", 6, NOW - skew, Some(&s6)), Ok(()));
}

#[test]
fn a_verifier_accepting_repeats_takes_the_same_record_twice_but_no_older_one() {
    let id = Identity::ephemeral();
    let v = verifier(SigningConfig::default()).accepting_repeats();
    let s5 = sign(&id, &canon("a", 5));
    assert_eq!(check(&v, "a", 5, NOW, Some(&s5)), Ok(()));
    assert_eq!(
        check(&v, "a", 5, NOW, Some(&s5)),
        Ok(()),
        "a second delivery"
    );
    let s4 = sign(&id, &canon("a", 4));
    assert_eq!(check(&v, "a", 4, NOW, Some(&s4)), Err(Reason::Replayed));
    let s6 = sign(&id, &canon("a", 6));
    assert_eq!(check(&v, "a", 6, NOW, Some(&s6)), Ok(()));
    assert_eq!(
        check(&v, "a", 5, NOW, Some(&s5)),
        Err(Reason::Replayed),
        "the record before the last one is a replay"
    );
}

#[test]
fn tofu_pins_the_first_key_and_refuses_downgrades() {
    let id = Identity::ephemeral();
    let rogue = Identity::ephemeral();
    let v = verifier(SigningConfig::default());
    assert_eq!(
        check(&v, "a", 1, NOW, Some(&sign(&id, &canon("a", 1)))),
        Ok(())
    );
    assert_eq!(v.pinned("a"), Some(id.peer_id()));
    assert_eq!(
        check(&v, "a", 1, NOW, Some(&sign(&rogue, &canon("a", 1)))),
        Err(Reason::IdentityConflict)
    );
    assert_eq!(check(&v, "a", 9, NOW, None), Err(Reason::Downgrade));
    // Without TOFU the rogue key is just another key.
    let v = verifier(SigningConfig {
        tofu: false,
        ..Default::default()
    });
    assert_eq!(
        check(&v, "a", 1, NOW, Some(&sign(&id, &canon("a", 1)))),
        Ok(())
    );
    assert_eq!(
        check(&v, "a", 1, NOW, Some(&sign(&rogue, &canon("a", 1)))),
        Ok(())
    );
}

#[test]
fn trusted_keys_bind_keys_and_ids() {
    let id = Identity::ephemeral();
    let any = Identity::ephemeral();
    let rogue = Identity::ephemeral();
    let v = verifier(SigningConfig {
        trusted_keys: vec![
            TrustedKey::Bound {
                peer_id: id.peer_id().to_string(),
                id: "a".into(),
            },
            TrustedKey::Any(any.peer_id().to_string()),
        ],
        tofu: false,
        ..Default::default()
    });
    assert_eq!(
        check(&v, "a", 1, NOW, Some(&sign(&id, &canon("a", 1)))),
        Ok(())
    );
    assert_eq!(
        check(&v, "b", 2, NOW, Some(&sign(&id, &canon("b", 2)))),
        Err(Reason::Untrusted)
    );
    assert_eq!(
        check(&v, "b", 1, NOW, Some(&sign(&any, &canon("b", 1)))),
        Ok(())
    );
    assert_eq!(
        check(&v, "c", 1, NOW, Some(&sign(&rogue, &canon("c", 1)))),
        Err(Reason::Untrusted)
    );
}

#[test]
fn key_memory_is_bounded() {
    let v = verifier(SigningConfig {
        max_keys: 2,
        tofu: false,
        ..Default::default()
    });
    for (i, want) in [(1, Ok(())), (2, Ok(())), (3, Err(Reason::Capacity))] {
        let id = Identity::ephemeral();
        let s = sign(&id, &canon("x", i));
        assert_eq!(check(&v, "x", i, NOW, Some(&s)), want);
    }
}

#[test]
fn bad_trusted_key_is_a_config_error() {
    let cfg = SigningConfig {
        trusted_keys: vec![TrustedKey::Any("nope".into())],
        ..Default::default()
    };
    assert_eq!(cfg.validate().unwrap_err().0, "signing.trusted_keys");
}
