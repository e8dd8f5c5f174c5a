//! The sightings, by slot number, in chunks of fixed size: a table that
//! grows by doubling leaves up to half of itself unused (75 % of a 128-byte
//! slot per sighting at 300k sightings); chunks leave at most one chunk's
//! tail, and growing never moves what is stored beyond the first chunk.

use super::{ObsEntry, ObsIdx};

/// Slots a chunk holds (128 KiB of entries).
const CHUNK: usize = 1024;

#[derive(Debug, Default)]
pub(super) struct ObsTable {
    /// Every chunk but the last holds `CHUNK` slots; the last grows to it.
    chunks: Vec<Vec<Option<ObsEntry>>>,
    len: usize,
    /// Vacated slots, taken again before a new one.
    free: Vec<ObsIdx>,
}

fn split(idx: ObsIdx) -> (usize, usize) {
    let i = idx as usize;
    (i / CHUNK, i % CHUNK)
}

impl ObsTable {
    /// Slots in use or vacated (the next new slot's number).
    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn get(&self, idx: ObsIdx) -> Option<&ObsEntry> {
        let (c, i) = split(idx);
        self.chunks.get(c)?.get(i)?.as_ref()
    }

    pub(super) fn get_mut(&mut self, idx: ObsIdx) -> Option<&mut ObsEntry> {
        self.slot(idx)?.as_mut()
    }

    fn slot(&mut self, idx: ObsIdx) -> Option<&mut Option<ObsEntry>> {
        let (c, i) = split(idx);
        self.chunks.get_mut(c)?.get_mut(i)
    }

    /// Stores `e` in a vacated slot, or else a new one.
    pub(super) fn insert(&mut self, e: ObsEntry) -> ObsIdx {
        while let Some(idx) = self.free.pop() {
            if let Some(slot @ None) = self.slot(idx) {
                *slot = Some(e);
                return idx;
            }
        }
        self.push(e)
    }

    /// Vacates slot `idx`, for a later `insert`.
    pub(super) fn take(&mut self, idx: ObsIdx) -> Option<ObsEntry> {
        let e = self.slot(idx)?.take()?;
        self.free.push(idx);
        Some(e)
    }

    fn push(&mut self, e: ObsEntry) -> ObsIdx {
        let idx = self.len as ObsIdx;
        if self.chunks.last().is_none_or(|c| c.len() == CHUNK) {
            // The first chunk grows as a small table would; the next ones
            // come when a thousand sightings are in, whole: growing them
            // copied each twice over.
            let room = if self.chunks.is_empty() { 0 } else { CHUNK };
            self.chunks.push(Vec::with_capacity(room));
        }
        let last = self.chunks.last_mut().expect("a chunk was just ensured");
        if last.len() == last.capacity() {
            // Doubling, but never past a chunk.
            let more = last.capacity().max(4).min(CHUNK - last.capacity());
            last.reserve_exact(more);
        }
        last.push(Some(e));
        self.len += 1;
        idx
    }

    /// Every stored sighting with its slot number.
    pub(super) fn iter(&self) -> impl Iterator<Item = (ObsIdx, &ObsEntry)> {
        self.chunks
            .iter()
            .flatten()
            .enumerate()
            .filter_map(|(i, e)| Some((i as ObsIdx, e.as_ref()?)))
    }
}

#[cfg(test)]
mod tests {
    use super::{ObsIdx, CHUNK};
    use crate::model::{Alias, Observation};
    use crate::source::SourceEvent;

    fn sighting(key: &str) -> SourceEvent {
        let mut o = Observation::new(key);
        o.aliases.push(Alias::agent_id(format!("agent-{key}")));
        SourceEvent::Upsert(o)
    }

    #[test]
    fn chunks_fill_whole_and_vacated_slots_are_reused() {
        let (mut s, t0, wall) = crate::registry::tests::primaries(&[("s", 0)]);
        let n = 2 * CHUNK + 10;
        for i in 0..n {
            s.apply(0, sighting(&format!("k{i}")), t0, wall);
        }
        let t = &s.obs;
        assert_eq!((t.len(), t.iter().count(), t.chunks.len()), (n, n, 3));
        assert!(
            t.chunks.iter().all(|c| c.capacity() == CHUNK),
            "no chunk past its size"
        );
        assert!(t.get(n as ObsIdx).is_none() && t.get(5).is_some());
        s.apply(0, SourceEvent::Remove { key: "k5".into() }, t0, wall);
        assert!(s.obs.get(5).is_none());
        assert_eq!(s.obs.iter().count(), n - 1);
        s.apply(0, sighting("new"), t0, wall);
        assert_eq!(s.obs.len(), n, "the vacated slot is taken, not a new one");
        assert!(s.obs.get(5).is_some());
        s.check_invariants();
    }
}
