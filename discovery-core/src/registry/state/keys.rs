//! Each source's observations by key (the key is unique within its source):
//! an upsert of a known key replaces that observation, a remove finds it.
//!
//! A key is matched by its keyed 64-bit hash's upper half (kept in the slot,
//! `tag_table`) and a second, independent 64-bit hash (kept in the entry), not by its
//! text: the text lives in its own allocation, and reading it was a cache
//! miss on every upsert. Two keys of one source agree on both with odds of
//! about 2^-96 per pair (the renewal check already trusts 64 bits).

use super::{ObsIdx, State};
use crate::source::SourceIdx;

/// A source's keys: each observation filed under its key's hash.
pub(super) type KeyIndex = super::tag_table::TagTable;

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
