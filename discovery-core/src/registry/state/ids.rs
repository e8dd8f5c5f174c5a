//! Peer identity: the display id is the best alias not taken by another peer
//! (else `source/key`), and the uid is assigned once and never reused.

use std::borrow::Cow;

use smallvec::SmallVec;

use super::sighting_text::AliasRef;
use super::{kind_index, AliasKind, ObsEntry, ObsIdx, PeerIdx, State};

/// `PeerEntry::id_rank` of a peer whose display id is not its merge's first alias.
pub(super) const NOT_FIRST: u8 = u8::MAX;

/// What an alias gives as a display id: container ids in their short form.
fn id_value<'a>(a: &AliasRef<'a>) -> &'a str {
    if a.kind == AliasKind::ContainerId {
        a.match_value()
    } else {
        a.value
    }
}

/// `PeerEntry::id_rank` for display id `id` chosen from merged `aliases`
/// (sorted by kind): the first alias's kind rank when the id is that alias
/// (then `State::id_after_join` can tell what a joining sighting does).
pub(super) fn id_rank(aliases: &[AliasRef], id: &str) -> u8 {
    match aliases.first() {
        Some(a) if id_value(a) == id => kind_index(a.kind) as u8,
        _ => NOT_FIRST,
    }
}

/// What a sighting joining a peer does to the peer's display id, told from
/// the sighting alone (`State::id_after_join`).
pub(super) enum AfterJoin<'a> {
    /// The id stays; the peer's `id_rank` becomes this.
    Keeps(u8),
    /// The id becomes this alias value, with this `id_rank`.
    Takes(&'a str, u8),
}

/// Display id to peer, by the hash of the id: no copy of the id text is
/// kept (it lives once, in the view); a collision only costs a comparison.
pub(super) type IdIndex = super::tag_table::TagTable;

impl State {
    /// The peer whose display id this is.
    pub(super) fn id_lookup(&self, id: &str) -> Option<PeerIdx> {
        self.peer_ids.find(self.id_hash(id), |p| {
            self.peers[p as usize]
                .as_ref()
                .is_some_and(|pe| pe.view.id == id)
        })
    }

    /// The hash a display id is filed under.
    pub(super) fn id_hash(&self, id: &str) -> u64 {
        self.hasher.hash_one(id)
    }

    /// Files `slot` under the display id whose hash is `h`.
    pub(super) fn id_insert(&mut self, h: u64, slot: PeerIdx) {
        self.peer_ids.insert_once(h, slot);
    }

    /// Forgets that `slot` goes by the display id whose hash is `h`.
    pub(super) fn id_remove(&mut self, h: u64, slot: PeerIdx) {
        self.peer_ids.remove(h, slot);
    }

    /// The display id after sighting `e` joins peer `own`, whose `id_rank`
    /// is `rank`, without merging the peer's aliases; `None` when only that
    /// merge can tell. The id is the merge's first alias of kind `rank`,
    /// so every alias of an earlier kind comes from `e`: in the merge they
    /// stand first, in `e`'s order sorted by kind, and the first of them not
    /// held by another peer becomes the id (`unique_id`'s rule). An alias of
    /// kind `rank` other than the id's own value, or two spellings of one
    /// value, take the merge.
    pub(super) fn id_after_join<'a>(
        &self,
        e: &'a ObsEntry,
        id: &str,
        rank: u8,
        own: PeerIdx,
    ) -> Option<AfterJoin<'a>> {
        if rank == NOT_FIRST {
            return None;
        }
        let mut earlier: SmallVec<[AliasRef<'a>; 4]> = SmallVec::new();
        for a in e.text.aliases() {
            let r = kind_index(a.kind) as u8;
            if r == rank {
                // The id's own value again (a container id in either form)
                // leaves the merge's first alias as it is; any other value
                // or spelling of its kind may come first: merge.
                if id_value(&a) != id {
                    return None;
                }
                continue;
            }
            if r < rank {
                let v = a.match_value();
                if earlier
                    .iter()
                    .any(|b| b.kind == a.kind && b.match_value() == v)
                {
                    return None;
                }
                earlier.push(a);
            }
        }
        if earlier.is_empty() {
            return Some(AfterJoin::Keeps(rank));
        }
        earlier.sort_by_key(|a| kind_index(a.kind));
        for (i, a) in earlier.iter().enumerate() {
            let v = id_value(a);
            let holder = self.id_lookup(v);
            if holder.is_none() || holder == Some(own) {
                let r = if i == 0 {
                    kind_index(a.kind) as u8
                } else {
                    NOT_FIRST
                };
                return Some(AfterJoin::Takes(v, r));
            }
        }
        // All taken: the id stays, no longer the merge's first alias.
        Some(AfterJoin::Keeps(NOT_FIRST))
    }

    /// The display id: the best alias not already taken by another peer
    /// (borrowed from it: the id is copied only when it changes).
    /// An id held by `own` counts as free (the peer keeps it).
    pub(super) fn unique_id<'a>(
        &self,
        aliases: &[AliasRef<'a>],
        members: &[ObsIdx],
        own: Option<PeerIdx>,
    ) -> Cow<'a, str> {
        let free = |s: &str| {
            let holder = self.id_lookup(s);
            holder.is_none() || holder == own
        };
        for a in aliases {
            let v = id_value(a);
            if free(v) {
                return Cow::Borrowed(v);
            }
        }
        let base = members
            .first()
            .and_then(|&m| self.entry(m))
            .map(|e| format!("{}/{}", self.sources[e.source as usize].name, e.text.key()))
            .unwrap_or_else(|| "peer".to_owned());
        if free(&base) {
            return Cow::Owned(base);
        }
        Cow::Owned(
            (2..)
                .map(|n| format!("{base}#{n}"))
                .find(|c| free(c))
                .unwrap_or(base),
        )
    }

    /// Which of the component's former entries a new group keeps (and with it
    /// the uid): the one whose display id survives, else the one of its
    /// highest-priority observation. `None`: a new peer, a new uid.
    pub(super) fn keeper(
        &self,
        members: &[ObsIdx],
        id: &str,
        old_peers: &[PeerIdx],
        claimed: &[PeerIdx],
    ) -> Option<PeerIdx> {
        let candidates = members
            .iter()
            .filter_map(|&m| self.entry(m).and_then(|e| e.peer()))
            .filter(|p| old_peers.contains(p) && !claimed.contains(p));
        let mut reuse = None;
        for p in candidates {
            let same_id = self.peers[p as usize]
                .as_ref()
                .is_some_and(|pe| pe.view.id == id);
            if same_id {
                return Some(p);
            }
            reuse.get_or_insert(p);
        }
        reuse
    }
}
