//! The merge state machine: observations in, peers and ordered events out.
//! Synchronous and clock-injected so every rule is testable and benchable.
//! This file holds the data and dispatches source events; each rule has a file:

mod addrs; // address policy: drop unspecified/loopback/link-local, rank preferred
mod alias_index; // strong alias -> observations (an IP alone is not identity)
mod attach; // a new sighting joins the one peer it links to without a re-partition
mod component; // a change re-merges only its connected component
mod conflicts; // identity conflicts reported exactly while they hold
mod deferred; // a view is written once its batch moves on, not per sighting
mod events; // joined/updated/left, consecutive versions, replay == snapshot
mod expiry_queue; // when observations expire: a heap with lazy removal
mod fallback; // fallback sources count while every primary is down (hysteresis)
mod health; // degraded keeps the last good set; readiness; the cache stand-in
mod ids; // display id and the stable uid
mod ingest; // upsert/remove, size limits, the renewal fast path
#[cfg(test)]
mod invariants; // test-only checks of the internals
mod keys; // a key is unique within its source
mod merge_view; // highest priority wins a field; union of aliases, labels, addrs
mod obs_table; // the sightings by slot, in chunks (no doubling slack)
mod partition; // shared strong alias = one peer, unless singular kinds clash
mod seen; // when sources last saw a peer: renewals mark, reads bring views up to date
mod sighting_text; // a sighting's key, aliases and addresses in one allocation
mod sources; // source slots, retirement on reload, status report
mod staleness; // TTL expiry and the maximum staleness of a degraded source
mod stored_meta; // a sighting's metadata: only the fields it sets
mod tag_table; // hash -> slot numbers, 8 bytes a slot (keys, aliases, ids)
mod ticks; // monotonic times in 8 bytes

use std::collections::BTreeMap;

type HashMap<K, V> = std::collections::HashMap<K, V, ahash::RandomState>;

use smallvec::SmallVec;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use crate::addr::AddressPolicy;
use crate::model::{Alias, AliasKind, Metadata, Role};
use crate::roster::{Conflict, Peer, Roster, RosterEvent};
use crate::source::{SourceEvent, SourceIdx};
use crate::status::Health;

use keys::KeyIndex;
use ticks::{Clock, Tick};

type ObsIdx = u32;
type Members = SmallVec<[ObsIdx; 4]>;
type PeerIdx = u32;

/// What a source is to the merge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SourceClass {
    Primary,
    Fallback,
    /// Observations reloaded from the cache file: they stand in until every
    /// primary source has synced once.
    Cache,
    /// Removed by a reload: its observations are gone and late events are ignored.
    Retired,
}

impl From<Role> for SourceClass {
    fn from(r: Role) -> Self {
        match r {
            Role::Primary => SourceClass::Primary,
            Role::Fallback => SourceClass::Fallback,
        }
    }
}

#[derive(Debug)]
struct SourceMeta {
    name: Arc<str>,
    priority: i32,
    class: SourceClass,
    max_staleness: Duration,
    keys: KeyIndex,
    health: Health,
    synced: bool,
    attempted: bool,
    last_sync: Option<SystemTime>,
    last_error: Option<String>,
    stale_deadline: Option<Instant>,
    restarts: u32,
    /// When it was added, for the time to its first sync.
    added: Instant,
    counters: crate::registry::counters::SourceCounters,
}

#[derive(Debug)]
struct ObsEntry {
    source: SourceIdx,
    /// Its key, aliases and addresses.
    text: sighting_text::SightingText,
    /// The key's second hash: a lookup compares it instead of the text.
    key_check: u64,
    /// Only the fields it sets (no allocation when none).
    meta: stored_meta::StoredMeta,
    expiry: Option<Tick>,
    /// Where it is filed in the expiry queue (at most once, never after
    /// `expiry`): a renewal moves `expiry` on without touching the queue.
    queued: Option<Tick>,
    /// Hash of the aliases and addresses as the source sent them, and of
    /// the metadata: a renewal (both equal) or a metadata change (the first
    /// equal) is detected without re-filtering or re-formatting anything.
    ident_hash: u64,
    meta_hash: u64,
    /// Wall time of the last sighting, as nanoseconds since the epoch (8
    /// bytes instead of `SystemTime`'s 16: one per sighting adds up).
    last_seen_ns: u64,
    /// When the source last confirmed it (monotonic): staleness is per sighting.
    seen_at: Tick,
    /// The peer slot + 1, so that "none" costs no extra word (4 bytes, not 8).
    peer_slot: Option<NonZeroU32>,
    active: bool,
}

impl ObsEntry {
    fn peer(&self) -> Option<PeerIdx> {
        self.peer_slot.map(|p| p.get() - 1)
    }
    fn set_peer(&mut self, p: Option<PeerIdx>) {
        self.peer_slot = p.and_then(|p| NonZeroU32::new(p.wrapping_add(1)));
    }
    fn take_peer(&mut self) -> Option<PeerIdx> {
        let p = self.peer();
        self.peer_slot = None;
        p
    }
    fn set_last_seen(&mut self, wall: SystemTime) {
        self.last_seen_ns = wall_ns(wall);
    }
}

/// Nanoseconds since the epoch (0 before it; saturates in 2554).
fn wall_ns(wall: SystemTime) -> u64 {
    wall.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[derive(Debug)]
struct PeerEntry {
    /// Its observations, highest priority first (`State::merge_order`).
    members: Members,
    /// Shared with the events that carried it; copied on write.
    view: Arc<Peer>,
    /// Its component is itself (no strong alias links it to another
    /// observation) and holds no conflict: a new sighting may join it
    /// without a re-partition (`attach`).
    isolated: bool,
    /// A renewal since the view's times were written (`seen`).
    seen_stale: bool,
    /// The kind rank of its merge's first alias when that alias is its
    /// display id, else `ids::NOT_FIRST` (`State::id_after_join`).
    id_rank: u8,
    /// The singular kinds its sightings hold (`partition::singular_kinds`):
    /// a joining sighting can clash only on one of these (`attach`).
    singular_kinds: u8,
}

fn kind_index(k: AliasKind) -> usize {
    AliasKind::ALL.iter().position(|x| *x == k).unwrap_or(0)
}

#[derive(Debug)]
pub(crate) struct State {
    policy: AddressPolicy,
    sources: Vec<SourceMeta>,
    obs: obs_table::ObsTable,
    /// Strong alias (by kind, keyed by the hash of its match value) to the
    /// observations claiming it. A hash collision only widens a component;
    /// the partition compares the real values.
    alias_index: [tag_table::TagTable; 5],
    hasher: ahash::RandomState,
    /// A second, independent hash of each key (see `keys`).
    key_check: ahash::RandomState,
    peers: Vec<Option<PeerEntry>>,
    free_peers: Vec<PeerIdx>,
    peer_ids: ids::IdIndex,
    /// One live entry per observation with a TTL, at or before its expiry.
    expiry: expiry_queue::ExpiryQueue,
    /// Instants to ticks and back.
    clock: Clock,
    version: u64,
    fallback_active: bool,
    /// Hysteresis: how long primaries stay healthy before the fallback stands down.
    fallback_hold: Duration,
    /// Since when every primary has been healthy while the fallback still counts.
    primaries_ok_since: Option<Instant>,
    /// The fallback has not yet stood down since start (that first time is immediate).
    fallback_at_start: bool,
    conflicts: BTreeMap<(AliasKind, String), Conflict>,
    visit_stamp: Vec<u32>,
    visit_gen: u32,
    out: Vec<RosterEvent>,
    /// The peer whose view lags its sightings (`deferred`): its event is
    /// the newest of `out`.
    unwritten: Option<PeerIdx>,
    dropped_addrs: u64,
    /// Reused buffer for the addresses of an observation being stored.
    kept_addrs: sighting_text::KeptAddrs,
    /// The last uid handed out; uids are never reused.
    last_uid: u64,
    /// Aliases of observations taken out of the index since the last
    /// recompute: their conflicts are re-decided even when no neighbour is left.
    unindexed_aliases: Vec<(AliasKind, String)>,
    /// Tests only: every change takes the full re-partition (the reference
    /// a merge from scratch is built with).
    #[cfg(test)]
    pub(crate) reference_only: bool,
    /// Tests only: new sightings placed without a re-partition.
    #[cfg(test)]
    pub(crate) placed_without_partition: u64,
    /// Tests only: changes folded into the batch's newest event.
    #[cfg(test)]
    pub(crate) folded_events: u64,
}

impl State {
    pub(crate) fn new(policy: AddressPolicy) -> Self {
        State {
            policy,
            sources: Vec::new(),
            obs: Default::default(),
            alias_index: Default::default(),
            hasher: ahash::RandomState::new(),
            key_check: ahash::RandomState::new(),
            peers: Vec::new(),
            free_peers: Vec::new(),
            peer_ids: Default::default(),
            expiry: Default::default(),
            clock: Clock::new(Instant::now()),
            version: 0,
            fallback_active: true,
            fallback_hold: Duration::ZERO,
            primaries_ok_since: None,
            fallback_at_start: true,
            conflicts: BTreeMap::new(),
            visit_stamp: Vec::new(),
            visit_gen: 0,
            out: Vec::new(),
            unwritten: None,
            dropped_addrs: 0,
            kept_addrs: Default::default(),
            last_uid: 0,
            unindexed_aliases: Vec::new(),
            #[cfg(test)]
            reference_only: false,
            #[cfg(test)]
            placed_without_partition: 0,
            #[cfg(test)]
            folded_events: 0,
        }
    }

    pub(crate) fn version(&self) -> u64 {
        self.version
    }

    pub(crate) fn peer_count(&self) -> usize {
        // Every empty slot is on the free list.
        self.peers.len() - self.free_peers.len()
    }

    pub(crate) fn take_events(&mut self) -> std::vec::Drain<'_, RosterEvent> {
        self.settle();
        self.out.drain(..)
    }

    pub(crate) fn dropped_addrs(&self) -> u64 {
        self.dropped_addrs
    }

    /// Applies one source event at monotonic time `now`, wall time `wall`.
    pub(crate) fn apply(
        &mut self,
        src: SourceIdx,
        event: SourceEvent,
        now: Instant,
        wall: SystemTime,
    ) {
        if self
            .sources
            .get(src as usize)
            .is_none_or(|m| m.class == SourceClass::Retired)
        {
            return;
        }
        // Only a run of upserts may leave a view lagging (`deferred`).
        if !matches!(event, SourceEvent::Upsert(_)) {
            self.settle();
        }
        let meta = &mut self.sources[src as usize];
        if matches!(
            event,
            SourceEvent::Upsert(_) | SourceEvent::Remove { .. } | SourceEvent::Replace(_)
        ) {
            meta.counters.updates.increment(1);
        }
        match event {
            SourceEvent::Upsert(o) => self.upsert(src, o, now, wall),
            SourceEvent::Remove { key } => {
                if let Some(idx) = self.lookup(src, &key) {
                    self.remove_obs(idx);
                }
            }
            SourceEvent::Replace(all) => {
                let keep: std::collections::HashSet<&str, ahash::RandomState> =
                    all.iter().map(|o| o.key.as_str()).collect();
                let gone: Vec<ObsIdx> = self.sources[src as usize]
                    .keys
                    .values()
                    .filter(|&i| self.entry(i).is_some_and(|e| !keep.contains(e.text.key())))
                    .collect();
                for idx in gone {
                    self.remove_obs(idx);
                }
                for o in all {
                    self.upsert(src, o, now, wall);
                }
                self.mark_synced(src, wall);
            }
            SourceEvent::Synced => self.mark_synced(src, wall),
            SourceEvent::Healthy => {
                meta.health = Health::Ok;
                meta.stale_deadline = None;
                meta.attempted = true;
            }
            SourceEvent::Degraded { reason } => self.mark_degraded(src, reason, now),
            SourceEvent::Partial {
                observations,
                reason,
            } => {
                // Health first: the confirmed sightings must not flip it to ok.
                self.mark_degraded(src, reason, now);
                for o in observations {
                    self.upsert(src, o, now, wall);
                }
            }
        }
        self.refresh_fallback(now);
    }

    fn entry(&self, idx: ObsIdx) -> Option<&ObsEntry> {
        self.obs.get(idx)
    }

    pub(crate) fn snapshot(&mut self) -> Roster {
        self.settle();
        for p in 0..self.peers.len() {
            self.bring_seen_up_to_date(p as PeerIdx);
        }
        let mut peers: Vec<Arc<Peer>> = self
            .peers
            .iter()
            .flatten()
            .map(|p| p.view.clone())
            .collect();
        peers.sort_by(|a, b| a.id.cmp(&b.id));
        Roster {
            version: self.version,
            peers,
        }
    }

    pub(crate) fn peer(&mut self, id: &str) -> Option<Arc<Peer>> {
        self.settle();
        let p = self.id_lookup(id)?;
        self.bring_seen_up_to_date(p);
        self.peers[p as usize].as_ref().map(|p| p.view.clone())
    }
}
