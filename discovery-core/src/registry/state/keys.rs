//! Each source's observations by key (the key is unique within its source):
//! an upsert of a known key replaces that observation, a remove finds it.
//!
//! A key is matched by two independent keyed 64-bit hashes, not by its
//! text: the text lives in its own allocation, and reading it was a cache
//! miss on every upsert. Two keys of one source agree on both hashes with
//! odds of about 2^-128 per pair (the renewal check already trusts 64 bits).

use smallvec::SmallVec;

use super::{HashMap, ObsIdx, State};
use crate::source::SourceIdx;

/// A source's keys, by hash (the key text lives once, in the entry).
#[derive(Debug, Default)]
pub(super) struct KeyIndex {
    by_hash: HashMap<u64, SmallVec<[ObsIdx; 2]>>,
    len: usize,
}

impl KeyIndex {
    pub(super) fn candidates(&self, hash: u64) -> impl Iterator<Item = ObsIdx> + '_ {
        self.by_hash.get(&hash).into_iter().flatten().copied()
    }
    pub(super) fn insert(&mut self, hash: u64, idx: ObsIdx) {
        self.by_hash.entry(hash).or_default().push(idx);
        self.len += 1;
    }
    pub(super) fn remove(&mut self, hash: u64, idx: ObsIdx) {
        if let Some(list) = self.by_hash.get_mut(&hash) {
            let before = list.len();
            list.retain(|i| *i != idx);
            self.len -= before - list.len();
            if list.is_empty() {
                self.by_hash.remove(&hash);
            }
        }
    }
    pub(super) fn values(&self) -> impl Iterator<Item = ObsIdx> + '_ {
        self.by_hash.values().flatten().copied()
    }
    pub(super) fn len(&self) -> usize {
        self.len
    }
    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl State {
    pub(super) fn lookup(&self, src: SourceIdx, key: &str) -> Option<ObsIdx> {
        let h = self.hasher.hash_one(key);
        let check = self.key_check.hash_one(key);
        self.sources[src as usize]
            .keys
            .candidates(h)
            .find(|&i| self.entry(i).is_some_and(|e| e.key_check == check))
    }
}
