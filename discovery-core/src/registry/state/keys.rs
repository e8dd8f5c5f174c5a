//! Each source's observations by key (the key is unique within its source):
//! an upsert of a known key replaces that observation, a remove finds it.
//!
//! A key is matched by its keyed 64-bit hash's upper half (kept in the slot)
//! and a second, independent 64-bit hash (kept in the entry), not by its
//! text: the text lives in its own allocation, and reading it was a cache
//! miss on every upsert. Two keys of one source agree on both with odds of
//! about 2^-96 per pair (the renewal check already trusts 64 bits).

use super::{ObsIdx, State};
use crate::source::SourceIdx;

/// A source's keys: a table of (observation, upper half of the key's hash)
/// slots, 8 bytes a key. The slot alone places itself when the table grows,
/// so growing reads no entry and hashes no key text.
#[derive(Debug, Default)]
pub(super) struct KeyIndex {
    table: hashbrown::HashTable<(ObsIdx, u32)>,
}

/// The part of a key's hash a slot keeps.
fn tag(hash: u64) -> u32 {
    (hash >> 32) as u32
}

/// Where a slot with `tag` is placed: the table needs 64 well-mixed bits
/// (low ones for the bucket, high ones for its control byte).
fn placement(tag: u32) -> u64 {
    (u64::from(tag) | (u64::from(tag) << 32)).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

impl KeyIndex {
    /// The slot filed under `hash` for which `is_it` holds.
    pub(super) fn find(&self, hash: u64, mut is_it: impl FnMut(ObsIdx) -> bool) -> Option<ObsIdx> {
        let t = tag(hash);
        self.table
            .find(placement(t), |&(i, ti)| ti == t && is_it(i))
            .map(|&(i, _)| i)
    }
    /// Files `idx` under `hash`.
    pub(super) fn insert(&mut self, hash: u64, idx: ObsIdx) {
        let t = tag(hash);
        self.table
            .insert_unique(placement(t), (idx, t), |&(_, t)| placement(t));
    }
    pub(super) fn remove(&mut self, hash: u64, idx: ObsIdx) {
        let t = tag(hash);
        if let Ok(e) = self.table.find_entry(placement(t), |&(i, _)| i == idx) {
            e.remove();
        }
    }
    pub(super) fn values(&self) -> impl Iterator<Item = ObsIdx> + '_ {
        self.table.iter().map(|&(i, _)| i)
    }
    pub(super) fn len(&self) -> usize {
        self.table.len()
    }
    pub(super) fn is_empty(&self) -> bool {
        self.table.is_empty()
    }
}

impl State {
    pub(super) fn lookup(&self, src: SourceIdx, key: &str) -> Option<ObsIdx> {
        self.lookup_hashed(src, self.key_hashes(key))
    }

    /// A key's two hashes: where it is filed, and what its entry keeps.
    pub(super) fn key_hashes(&self, key: &str) -> (u64, u64) {
        (self.hasher.hash_one(key), self.key_check.hash_one(key))
    }

    pub(super) fn lookup_hashed(&self, src: SourceIdx, (h, check): (u64, u64)) -> Option<ObsIdx> {
        self.sources[src as usize]
            .keys
            .find(h, |i| self.entry(i).is_some_and(|e| e.key_check == check))
    }
}
