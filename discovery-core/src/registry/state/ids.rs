//! Peer identity: the display id is the best alias not taken by another peer
//! (else `source/key`), and the uid is assigned once and never reused.

use super::{AliasKind, ObsIdx, Peer, PeerIdx, State};

impl State {
    pub(super) fn new_uid(&mut self) -> u64 {
        self.last_uid += 1;
        self.last_uid
    }

    /// The display id: the best alias not already taken by another peer.
    pub(super) fn unique_id(&self, view: &Peer, members: &[ObsIdx]) -> String {
        let free = |s: &str| !self.peer_ids.contains_key(s);
        for a in &view.aliases {
            let v = if a.kind == AliasKind::ContainerId {
                a.match_value()
            } else {
                a.value.as_str()
            };
            if free(v) {
                return v.to_owned();
            }
        }
        let base = members
            .first()
            .and_then(|&m| self.entry(m))
            .map(|e| format!("{}/{}", self.sources[e.source as usize].name, e.key))
            .unwrap_or_else(|| "peer".to_owned());
        if free(&base) {
            return base;
        }
        (2..)
            .map(|n| format!("{base}#{n}"))
            .find(|c| free(c))
            .unwrap_or(base)
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
            .filter_map(|&m| self.entry(m).and_then(|e| e.peer))
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
