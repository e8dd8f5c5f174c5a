//! Each source's observations by key (the key is unique within its source):
//! an upsert of a known key replaces that observation, a remove finds it.
//!
//! A key is matched by two independent keyed 64-bit hashes, not by its
//! text: the text lives in its own allocation, and reading it was a cache
//! miss on every upsert. Two keys of one source agree on both hashes with
//! odds of about 2^-128 per pair (the renewal check already trusts 64 bits).

use super::{ObsIdx, State};
use crate::source::SourceIdx;

/// A source's keys: a table of observation slots placed by the key's hash
/// (4 bytes a key; the key text lives once, in the entry, and is read again
/// only when the table grows).
#[derive(Debug, Default)]
pub(super) struct KeyIndex {
    table: hashbrown::HashTable<ObsIdx>,
}

impl KeyIndex {
    /// The slot filed under `hash` for which `is_it` holds.
    pub(super) fn find(&self, hash: u64, mut is_it: impl FnMut(ObsIdx) -> bool) -> Option<ObsIdx> {
        self.table.find(hash, |&i| is_it(i)).copied()
    }
    /// Files `idx` under `hash`; `rehash` gives any filed slot's hash when the table grows.
    pub(super) fn insert(&mut self, hash: u64, idx: ObsIdx, rehash: impl Fn(ObsIdx) -> u64) {
        self.table.insert_unique(hash, idx, |&i| rehash(i));
    }
    pub(super) fn remove(&mut self, hash: u64, idx: ObsIdx) {
        if let Ok(e) = self.table.find_entry(hash, |&i| i == idx) {
            e.remove();
        }
    }
    pub(super) fn values(&self) -> impl Iterator<Item = ObsIdx> + '_ {
        self.table.iter().copied()
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
        let h = self.hasher.hash_one(key);
        let check = self.key_check.hash_one(key);
        self.sources[src as usize]
            .keys
            .find(h, |i| self.entry(i).is_some_and(|e| e.key_check == check))
    }
}
