//! A multimap from 64-bit hashes to slot numbers in 8 bytes a slot: each
//! slot keeps the number and its hash's upper half (the tag), and places
//! itself from the tag alone, so growing reads nothing else and hashes
//! nothing again. The source keys, the strong aliases and the display ids
//! are filed in one each (a map of hash to list took 25-33 bytes a slot).
//!
//! Two values whose hashes share a tag (about one pair in 2^32) file
//! together: every reader confirms with the value itself or a second hash.

/// Numbers filed under 64-bit hashes; one number may be filed under
/// several hashes and one hash hold several numbers.
#[derive(Debug, Default)]
pub(super) struct TagTable {
    table: hashbrown::HashTable<(u32, u32)>,
}

/// The part of a hash a slot keeps.
fn tag(hash: u64) -> u32 {
    (hash >> 32) as u32
}

/// Where a slot with `tag` is placed: the table needs 64 well-mixed bits
/// (low ones for the bucket, high ones for its control byte).
fn placement(tag: u32) -> u64 {
    (u64::from(tag) | (u64::from(tag) << 32)).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

impl TagTable {
    /// The number filed under `hash` for which `is_it` holds.
    pub(super) fn find(&self, hash: u64, mut is_it: impl FnMut(u32) -> bool) -> Option<u32> {
        let t = tag(hash);
        self.table
            .find(placement(t), |&(n, tn)| tn == t && is_it(n))
            .map(|&(n, _)| n)
    }

    /// Every number filed under `hash` (and any hash sharing its tag).
    pub(super) fn get(&self, hash: u64) -> impl Iterator<Item = u32> + '_ {
        let t = tag(hash);
        self.table
            .iter_hash(placement(t))
            .filter(move |&&(_, tn)| tn == t)
            .map(|&(n, _)| n)
    }

    /// Files `n` under `hash` (the caller knows it is not filed there yet).
    pub(super) fn insert(&mut self, hash: u64, n: u32) {
        let t = tag(hash);
        self.table
            .insert_unique(placement(t), (n, t), |&(_, t)| placement(t));
    }

    /// Files `n` under `hash` unless it is filed there already.
    pub(super) fn insert_once(&mut self, hash: u64, n: u32) {
        if self.find(hash, |m| m == n).is_none() {
            self.insert(hash, n);
        }
    }

    /// Takes `n` from under `hash`, if it is filed there.
    pub(super) fn remove(&mut self, hash: u64, n: u32) {
        let t = tag(hash);
        if let Ok(e) = self
            .table
            .find_entry(placement(t), |&(m, tm)| m == n && tm == t)
        {
            e.remove();
        }
    }

    /// Every number filed, once per hash it is filed under.
    pub(super) fn values(&self) -> impl Iterator<Item = u32> + '_ {
        self.table.iter().map(|&(n, _)| n)
    }

    pub(super) fn len(&self) -> usize {
        self.table.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.table.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::TagTable;

    /// Several numbers under one hash, one number under several hashes,
    /// two hashes sharing a tag: each reader sees exactly what was filed.
    #[test]
    fn files_and_finds_like_a_multimap() {
        let mut t = TagTable::default();
        let (a, b) = (0x1234_5678_0000_0001_u64, 0x9abc_def0_0000_0002_u64);
        let same_tag_as_a = 0x1234_5678_ffff_ffff_u64;
        t.insert(a, 1);
        t.insert_once(a, 2);
        t.insert_once(a, 2);
        t.insert(b, 1);
        t.insert(same_tag_as_a, 3);
        let mut under_a: Vec<u32> = t.get(a).collect();
        under_a.sort();
        assert_eq!(
            under_a,
            [1, 2, 3],
            "a tag shared with another hash files together"
        );
        assert_eq!(t.get(b).collect::<Vec<_>>(), [1]);
        assert_eq!(t.find(a, |n| n > 1 && n != 3), Some(2));
        assert_eq!(t.len(), 4);
        t.remove(a, 1);
        t.remove(a, 7); // not filed: nothing happens
        assert_eq!(
            t.get(b).collect::<Vec<_>>(),
            [1],
            "removed from under a only"
        );
        let mut left: Vec<u32> = t.values().collect();
        left.sort();
        assert_eq!(left, [1, 2, 3]);
        for n in 0..10_000u32 {
            t.insert(u64::from(n).wrapping_mul(0x9E37_79B9_7F4A_7C15), n + 10);
        }
        assert_eq!(t.len(), 10_003, "grows without losing a slot");
        assert_eq!(
            t.get(7u64.wrapping_mul(0x9E37_79B9_7F4A_7C15))
                .collect::<Vec<_>>(),
            [17]
        );
    }
}
