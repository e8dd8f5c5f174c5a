//! The namespace split into provider keys: one key holds at most k = 20
//! providers per reply, so each agent provides one of `shards` keys (chosen by
//! its peer id) and discoverers look every key up.

use libp2p::kad::RecordKey;
use libp2p::PeerId;

/// The provider key of shard `i` of `namespace`.
pub fn key(namespace: &str, i: u16) -> RecordKey {
    RecordKey::new(&format!("/rollcall/ns/{namespace}/{i}"))
}

/// Every shard key of a namespace.
pub fn all(namespace: &str, shards: u16) -> Vec<RecordKey> {
    (0..shards.max(1)).map(|i| key(namespace, i)).collect()
}

/// The shard a peer provides: a stable spread over the peer id's bytes.
pub fn of(peer: &PeerId, shards: u16) -> u16 {
    let bytes = peer.to_bytes();
    // FNV-1a: stable across versions and processes (unlike DefaultHasher).
    let mut h: u32 = 0x811c_9dc5;
    for b in bytes {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    (h % u32::from(shards.max(1))) as u16
}
