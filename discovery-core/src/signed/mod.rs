//! Signed records: ed25519 signatures made with the process's libp2p identity
//! key (see [`crate::identity`]), and the receiving side's checks.
//!
//! A backend builds the bytes to sign with [`Canonical`] (a length-prefixed,
//! domain-separated encoding of exactly the fields a receiver acts on), signs
//! them with [`sign`], and carries the resulting [`Signature`] beside its
//! record. A receiver rebuilds the same canonical bytes from what it got and
//! hands them, with the claims (agent id, claimed peer id, sequence,
//! timestamp), to its source's [`Verifier`]:
//!
//! * a bad signature, or a key whose peer id is not the claimed peer id, is
//!   **forged**;
//! * a sequence not above the last accepted one for that key, or a timestamp
//!   outside `max_clock_skew` of now, is **replayed**;
//! * with `trusted_keys`, a key not on the list (or listed for another agent
//!   id) is **untrusted**; with `tofu`, the first key seen for an agent id is
//!   pinned and another key claiming it is an **identity conflict**;
//! * with `require_signed`, an unsigned record is rejected; without it, an
//!   unsigned record is accepted unless its agent id was already seen signed
//!   (a **downgrade**).
//!
//! Every rejection is counted in `rollcall_records_rejected_total{source,reason}`.

mod canonical;
mod config;
mod hex;
mod verifier;

pub use canonical::Canonical;
pub use config::{default_max_clock_skew, SigningConfig, TrustedKey};
pub use hex::{decode_hex, encode_hex};
pub use verifier::{unix_millis, Claims, Reason, Verified, Verifier};

use crate::identity::{Identity, PublicKey};

/// A signature and the public key that made it, as carried on the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signature {
    /// The public key, in libp2p's protobuf encoding.
    pub key: Vec<u8>,
    /// The ed25519 signature of the canonical bytes.
    pub sig: Vec<u8>,
}

impl Signature {
    /// The public key, if it decodes.
    pub fn public_key(&self) -> Option<PublicKey> {
        PublicKey::try_decode_protobuf(&self.key).ok()
    }
}

/// Signs `canonical` (built with [`Canonical`]) with the identity's key.
pub fn sign(identity: &Identity, canonical: &[u8]) -> Signature {
    let keypair = identity.keypair();
    // ed25519 signing cannot fail; other key types may, and then the record
    // goes out unsigned-looking (empty sig) and is rejected as forged.
    let sig = keypair.sign(canonical).unwrap_or_default();
    Signature {
        key: keypair.public().encode_protobuf(),
        sig,
    }
}
