//! The sightings, by slot number, in chunks of fixed size: a table that
//! grows by doubling leaves up to half of itself unused (75 % of a 128-byte
//! slot per sighting at 300k sightings); chunks leave at most one chunk's
//! tail, and growing never moves what is stored.

use super::{ObsEntry, ObsIdx};

/// Slots a chunk holds (128 KiB of entries).
const CHUNK: usize = 1024;

#[derive(Debug, Default)]
pub(super) struct ObsTable {
    /// Every chunk but the last holds `CHUNK` slots; the last grows to it.
    chunks: Vec<Vec<Option<ObsEntry>>>,
    len: usize,
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

    /// The slot itself: to vacate it (`take`) or fill it again.
    pub(super) fn slot(&mut self, idx: ObsIdx) -> Option<&mut Option<ObsEntry>> {
        let (c, i) = split(idx);
        self.chunks.get_mut(c)?.get_mut(i)
    }

    /// Stores `e` in a new slot.
    pub(super) fn push(&mut self, e: ObsEntry) -> ObsIdx {
        let idx = self.len as ObsIdx;
        if self.chunks.last().is_none_or(|c| c.len() == CHUNK) {
            self.chunks.push(Vec::new());
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
