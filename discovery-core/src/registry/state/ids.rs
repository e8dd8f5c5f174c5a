//! Peer identity: the display id is the best alias not taken by another peer
//! (else `source/key`), and the uid is assigned once and never reused.

use std::borrow::Cow;

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
/// (sorted by kind): the first alias's kind rank when the id is that alias.
pub(super) fn id_rank(aliases: &[AliasRef], id: &str) -> u8 {
    match aliases.first() {
        Some(a) if id_value(a) == id => kind_index(a.kind) as u8,
        _ => NOT_FIRST,
    }
}

/// Whether sighting `e` joining a peer whose `id_rank` is `rank` may change
/// its display id. When the id is the merge's first alias and the sighting
/// brings only aliases of later kinds, that alias stays first (the merge
/// sorts by kind, stably, and dedups within a kind) and stays the peer's
/// own: `unique_id` would give the same id, so it is not asked.
pub(super) fn may_rename(rank: u8, e: &ObsEntry) -> bool {
    rank == NOT_FIRST || e.text.aliases().any(|a| kind_index(a.kind) as u8 <= rank)
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
