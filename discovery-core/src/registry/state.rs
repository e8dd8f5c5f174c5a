//! The merge state machine: observations in, peers and ordered events out.
//! Synchronous and clock-injected so every rule is testable and benchable.

use std::collections::BTreeMap;

type HashMap<K, V> = std::collections::HashMap<K, V, ahash::RandomState>;

use smallvec::SmallVec;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use multiaddr::Multiaddr;
use tokio::time::Instant;

use crate::addr::{AddressPolicy, DropReason};
use crate::model::{Alias, AliasKind, Metadata, Observation, Role};
use crate::roster::{Conflict, Peer, PeerSource, Roster, RosterEvent};
use crate::source::{SourceEvent, SourceIdx};
use crate::status::{Health, SourceStatus};

/// Most addresses kept per observation.
const MAX_ADDRS: usize = 64;
/// Most aliases kept per observation.
const MAX_ALIASES: usize = 32;

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
    counters: super::counters::SourceCounters,
}

/// An address kept by the policy, with its text and rank computed once.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RankedAddr {
    rank: u32,
    text: Box<str>,
}

#[derive(Debug)]
struct ObsEntry {
    source: SourceIdx,
    key: Box<str>,
    aliases: Box<[Alias]>,
    addrs: Box<[RankedAddr]>,
    /// `None` when empty: most sightings carry no metadata, and this saves ~110 bytes each.
    meta: Option<Box<Metadata>>,
    expiry: Option<Instant>,
    /// Hash of the observation as the source sent it: a renewal is detected
    /// without re-filtering or re-formatting anything.
    input_hash: u64,
    last_seen: SystemTime,
    /// When the source last confirmed it (monotonic): staleness is per sighting.
    seen_at: Instant,
    peer: Option<PeerIdx>,
    active: bool,
}

#[derive(Debug)]
struct PeerEntry {
    members: Members,
    /// Shared with the events that carried it; copied on write.
    view: Arc<Peer>,
}

/// A roster change staged during a recompute, numbered once all are known.
enum Pending {
    Same(Arc<Peer>),
    Joined(Arc<Peer>),
    Updated(Arc<Peer>, Option<String>),
}

/// One group being formed during a partition.
struct Group<'a> {
    members: Members,
    /// Values of the singular kinds, indexed like `AliasKind::ALL`.
    singular: [Option<&'a str>; 5],
    merged_into: Option<usize>,
}

fn kind_index(k: AliasKind) -> usize {
    AliasKind::ALL.iter().position(|x| *x == k).unwrap_or(0)
}

#[derive(Debug)]
pub(crate) struct State {
    policy: AddressPolicy,
    sources: Vec<SourceMeta>,
    obs: Vec<Option<ObsEntry>>,
    free_obs: Vec<ObsIdx>,
    /// Strong alias (by kind, keyed by the hash of its match value) to the
    /// observations claiming it. A hash collision only widens a component;
    /// the partition compares the real values.
    alias_index: [HashMap<u64, SmallVec<[ObsIdx; 2]>>; 5],
    hasher: ahash::RandomState,
    peers: Vec<Option<PeerEntry>>,
    free_peers: Vec<PeerIdx>,
    peer_ids: HashMap<String, PeerIdx>,
    expiry: BTreeMap<(Instant, ObsIdx), ()>,
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
    dropped_addrs: u64,
    /// The last uid handed out; uids are never reused.
    last_uid: u64,
    /// Aliases of observations taken out of the index since the last
    /// recompute: their conflicts are re-decided even when no neighbour is left.
    unindexed_aliases: Vec<(AliasKind, String)>,
}

impl State {
    pub(crate) fn new(policy: AddressPolicy) -> Self {
        State {
            policy,
            sources: Vec::new(),
            obs: Vec::new(),
            free_obs: Vec::new(),
            alias_index: Default::default(),
            hasher: ahash::RandomState::new(),
            peers: Vec::new(),
            free_peers: Vec::new(),
            peer_ids: HashMap::default(),
            expiry: BTreeMap::new(),
            version: 0,
            fallback_active: true,
            fallback_hold: Duration::ZERO,
            primaries_ok_since: None,
            fallback_at_start: true,
            conflicts: BTreeMap::new(),
            visit_stamp: Vec::new(),
            visit_gen: 0,
            out: Vec::new(),
            dropped_addrs: 0,
            last_uid: 0,
            unindexed_aliases: Vec::new(),
        }
    }

    pub(crate) fn add_source(
        &mut self,
        name: Arc<str>,
        priority: i32,
        class: SourceClass,
        max_staleness: Duration,
    ) -> SourceIdx {
        self.sources.push(SourceMeta {
            name: name.clone(),
            priority,
            class,
            max_staleness,
            keys: KeyIndex::default(),
            health: Health::Starting,
            synced: false,
            attempted: false,
            last_sync: None,
            last_error: None,
            stale_deadline: None,
            restarts: 0,
            added: Instant::now(),
            counters: super::counters::SourceCounters::new(&name),
        });
        (self.sources.len() - 1) as SourceIdx
    }

    pub(crate) fn set_fallback_hold(&mut self, hold: Duration) {
        self.fallback_hold = hold;
    }

    pub(crate) fn version(&self) -> u64 {
        self.version
    }

    pub(crate) fn peer_count(&self) -> usize {
        self.peer_ids.len()
    }

    pub(crate) fn take_events(&mut self) -> std::vec::Drain<'_, RosterEvent> {
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
        let Some(meta) = self.sources.get_mut(src as usize) else {
            return;
        };
        if meta.class == SourceClass::Retired {
            return;
        }
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
                    .filter(|&i| self.entry(i).is_some_and(|e| !keep.contains(&*e.key)))
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

    /// Retires a source (see `registry/dynamic.rs`): drops every observation
    /// it made, so its peers leave unless another source still sees them.
    pub(crate) fn retire_source(&mut self, src: SourceIdx) {
        let Some(meta) = self.sources.get_mut(src as usize) else {
            return;
        };
        meta.class = SourceClass::Retired;
        meta.stale_deadline = None;
        let gone: Vec<ObsIdx> = meta.keys.values().collect();
        for idx in gone {
            self.remove_obs(idx);
        }
        self.refresh_fallback(Instant::now());
    }

    /// The live (not retired) source of this name.
    pub(crate) fn source_index(&self, name: &str) -> Option<SourceIdx> {
        self.sources
            .iter()
            .position(|s| &*s.name == name && s.class != SourceClass::Retired)
            .map(|i| i as SourceIdx)
    }

    /// Slots used so far, retired ones included (indices are never reused).
    pub(crate) fn source_slots(&self) -> usize {
        self.sources.len()
    }

    pub(crate) fn note_restart(&mut self, src: SourceIdx) {
        if let Some(m) = self.sources.get_mut(src as usize) {
            m.restarts += 1;
        }
    }

    fn mark_degraded(&mut self, src: SourceIdx, reason: String, now: Instant) {
        // Lets the tests make the merge task panic for real.
        #[cfg(test)]
        assert!(reason != "test: panic the merge task", "{reason}");
        let meta = &mut self.sources[src as usize];
        meta.counters.errors.increment(1);
        if meta.health != Health::Degraded || meta.stale_deadline.is_none() {
            meta.stale_deadline = Some(now + meta.max_staleness);
        }
        meta.health = Health::Degraded;
        meta.last_error = Some(reason);
        meta.attempted = true;
    }

    fn mark_synced(&mut self, src: SourceIdx, wall: SystemTime) {
        let m = &mut self.sources[src as usize];
        if !m.synced {
            m.counters.first_sync(m.added.elapsed());
        }
        m.synced = true;
        m.attempted = true;
        m.last_sync = Some(wall);
        m.health = Health::Ok;
        m.stale_deadline = None;
        self.drop_cache_if_primaries_synced();
    }

    fn drop_cache_if_primaries_synced(&mut self) {
        let all_synced = self
            .sources
            .iter()
            .filter(|s| s.class == SourceClass::Primary)
            .all(|s| s.synced);
        if !all_synced {
            return;
        }
        let cached: Vec<ObsIdx> = self
            .sources
            .iter()
            .filter(|s| s.class == SourceClass::Cache)
            .flat_map(|s| s.keys.values())
            .collect();
        for idx in cached {
            self.remove_obs(idx);
        }
    }

    /// The earliest moment `advance` has work to do.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let ttl = self.expiry.keys().next().map(|(t, _)| *t);
        let stale = self.sources.iter().filter_map(|s| s.stale_deadline).min();
        let hold = self
            .primaries_ok_since
            .filter(|_| self.fallback_active)
            .map(|t| t + self.fallback_hold);
        [ttl, stale, hold].into_iter().flatten().min()
    }

    /// Expires observations whose TTL passed and drops what degraded sources
    /// kept for longer than their maximum staleness.
    pub(crate) fn advance(&mut self, now: Instant) {
        while let Some((&(t, idx), _)) = self.expiry.iter().next() {
            if t > now {
                break;
            }
            self.expiry.remove(&(t, idx));
            if let Some(Some(e)) = self.obs.get_mut(idx as usize) {
                e.expiry = None;
            }
            tracing::debug!(obs = idx, "observation expired");
            metrics::counter!("rollcall_observations_expired_total").increment(1);
            self.remove_obs(idx);
        }
        for s in 0..self.sources.len() {
            let due = self.sources[s].stale_deadline.is_some_and(|d| d <= now);
            if !due {
                continue;
            }
            let class = self.sources[s].class;
            let max = self.sources[s].max_staleness;
            // Still degraded: what a partial refresh keeps confirming stays,
            // and the next sweep is due one staleness period from now.
            self.sources[s].stale_deadline = (self.sources[s].health == Health::Degraded
                && class != SourceClass::Cache)
                .then(|| now + max);
            let victims: Vec<ObsIdx> = self.sources[s]
                .keys
                .values()
                .filter(|&i| {
                    class == SourceClass::Cache
                        || self
                            .entry(i)
                            .is_some_and(|e| e.expiry.is_none() && e.seen_at + max <= now)
                })
                .collect();
            if !victims.is_empty() {
                tracing::warn!(source = %self.sources[s].name, dropped = victims.len(), "source stale for too long; dropping its last known set");
            }
            for idx in victims {
                self.remove_obs(idx);
            }
        }
        self.refresh_fallback(now);
    }

    fn lookup(&self, src: SourceIdx, key: &str) -> Option<ObsIdx> {
        let h = self.hasher.hash_one(key);
        self.sources[src as usize]
            .keys
            .candidates(h)
            .find(|&i| self.entry(i).is_some_and(|e| &*e.key == key))
    }

    fn entry(&self, idx: ObsIdx) -> Option<&ObsEntry> {
        self.obs.get(idx as usize).and_then(|o| o.as_ref())
    }

    fn filter_addrs(&mut self, addrs: Vec<Multiaddr>) -> Box<[RankedAddr]> {
        let mut kept: Vec<RankedAddr> = Vec::with_capacity(addrs.len());
        for a in addrs {
            match self.policy.check(&a) {
                None => {
                    let text: Box<str> = a.to_string().into();
                    if !kept.iter().any(|k| k.text == text) {
                        kept.push(RankedAddr {
                            rank: self.policy.rank(&a) as u32,
                            text,
                        });
                    }
                }
                Some(reason) => {
                    self.dropped_addrs += 1;
                    let why = match reason {
                        DropReason::Unspecified => "unspecified",
                        DropReason::Excluded(crate::addr::AddressClass::Loopback) => "loopback",
                        DropReason::Excluded(crate::addr::AddressClass::LinkLocal) => "link_local",
                        DropReason::Excluded(crate::addr::AddressClass::Private) => "private",
                        DropReason::Excluded(_) => "excluded",
                    };
                    metrics::counter!("rollcall_addresses_dropped_total", "reason" => why)
                        .increment(1);
                }
            }
        }
        kept.into_boxed_slice()
    }

    fn upsert(&mut self, src: SourceIdx, mut o: Observation, now: Instant, wall: SystemTime) {
        // A misbehaving source cannot make one peer arbitrarily large.
        if o.addrs.len() > MAX_ADDRS || o.aliases.len() > MAX_ALIASES {
            let dropped = o.addrs.len().saturating_sub(MAX_ADDRS)
                + o.aliases.len().saturating_sub(MAX_ALIASES);
            o.addrs.truncate(MAX_ADDRS);
            o.aliases.truncate(MAX_ALIASES);
            metrics::counter!("rollcall_observation_fields_dropped_total")
                .increment(dropped as u64);
            tracing::warn!(source = %self.sources[src as usize].name, key = %o.key, dropped, "observation over the size limit; extra addresses and aliases dropped");
        }
        let input_hash = self.hasher.hash_one((&o.aliases, &o.addrs, &o.meta));
        let existing = self.lookup(src, &o.key);
        if let Some(idx) = existing {
            if self.entry(idx).is_some_and(|e| e.input_hash == input_hash) {
                self.set_expiry(idx, o.ttl.map(|t| now + t));
                self.renew(src, idx, now, wall);
                return;
            }
        }
        let addrs = self.filter_addrs(o.addrs);
        let mut aliases: Vec<Alias> = Vec::with_capacity(o.aliases.len());
        for a in o.aliases {
            if !a.value.trim().is_empty() && !aliases.contains(&a) {
                aliases.push(a);
            }
        }
        let class = self.sources[src as usize].class;
        let active = class != SourceClass::Fallback || self.fallback_active;
        let aliases = aliases.into_boxed_slice();
        let meta = (o.meta != Metadata::default()).then(|| Box::new(o.meta));

        if let Some(idx) = existing {
            let unchanged = self
                .entry(idx)
                .is_some_and(|e| e.aliases == aliases && e.addrs == addrs && e.meta == meta);
            self.set_expiry(idx, o.ttl.map(|t| now + t));
            if unchanged {
                if let Some(e) = self.obs[idx as usize].as_mut() {
                    e.input_hash = input_hash;
                }
                self.renew(src, idx, now, wall);
                return;
            }
            // Changed: neighbours through the old aliases must be re-partitioned too.
            let mut seeds = self.alias_neighbours(idx);
            let old_peer = self.entry(idx).and_then(|e| e.peer);
            self.unindex(idx);
            if let Some(e) = self.obs[idx as usize].as_mut() {
                e.aliases = aliases;
                e.addrs = addrs;
                e.meta = meta;
                e.last_seen = wall;
                e.seen_at = now;
                e.input_hash = input_hash;
            }
            self.index(idx);
            seeds.push(idx);
            self.recompute(&seeds, old_peer.as_slice());
            return;
        }

        let entry = ObsEntry {
            source: src,
            key: o.key.into_boxed_str(),
            aliases,
            addrs,
            meta,
            expiry: None,
            input_hash,
            last_seen: wall,
            seen_at: now,
            peer: None,
            active,
        };
        let idx = match self.free_obs.pop() {
            Some(i) => {
                self.obs[i as usize] = Some(entry);
                i
            }
            None => {
                self.obs.push(Some(entry));
                (self.obs.len() - 1) as ObsIdx
            }
        };
        let h = self
            .hasher
            .hash_one(self.entry(idx).map(|e| &*e.key).unwrap_or_default());
        self.sources[src as usize].keys.insert(h, idx);
        self.set_expiry(idx, o.ttl.map(|t| now + t));
        if active {
            self.index(idx);
            self.recompute(&[idx], &[]);
        }
    }

    /// A renewal: refresh last_seen in place, no event, no re-merge.
    fn renew(&mut self, src: SourceIdx, idx: ObsIdx, now: Instant, wall: SystemTime) {
        let peer = match self.obs[idx as usize].as_mut() {
            Some(e) => {
                e.last_seen = wall;
                e.seen_at = now;
                e.peer
            }
            None => return,
        };
        let name = &self.sources[src as usize].name;
        if let Some(p) = peer.and_then(|p| self.peers[p as usize].as_mut()) {
            if let Some(s) = Arc::make_mut(&mut p.view)
                .sources
                .iter_mut()
                .find(|s| s.name == *name)
            {
                s.last_seen = s.last_seen.max(wall);
            }
        }
    }

    fn set_expiry(&mut self, idx: ObsIdx, at: Option<Instant>) {
        let Some(e) = self.obs.get_mut(idx as usize).and_then(|o| o.as_mut()) else {
            return;
        };
        if let Some(old) = e.expiry.take() {
            self.expiry.remove(&(old, idx));
        }
        if let Some(at) = at {
            e.expiry = Some(at);
            self.expiry.insert((at, idx), ());
        }
    }

    fn index(&mut self, idx: ObsIdx) {
        let Some(e) = self.obs[idx as usize].as_ref() else {
            return;
        };
        if !e.active {
            return;
        }
        for a in e.aliases.iter() {
            if a.kind.is_strong() {
                let h = self.hasher.hash_one(a.match_value());
                let list = self.alias_index[kind_index(a.kind)].entry(h).or_default();
                if !list.contains(&idx) {
                    list.push(idx);
                }
            }
        }
    }

    fn unindex(&mut self, idx: ObsIdx) {
        let Some(e) = self.obs[idx as usize].as_ref() else {
            return;
        };
        for a in e.aliases.iter() {
            if !a.kind.is_strong() {
                continue;
            }
            if !self.conflicts.is_empty() {
                self.unindexed_aliases
                    .push((a.kind, a.match_value().to_owned()));
            }
            let h = self.hasher.hash_one(a.match_value());
            let map = &mut self.alias_index[kind_index(a.kind)];
            if let Some(list) = map.get_mut(&h) {
                list.retain(|i| *i != idx);
                if list.is_empty() {
                    map.remove(&h);
                }
            }
        }
    }

    fn alias_neighbours(&self, idx: ObsIdx) -> Vec<ObsIdx> {
        let mut out = Vec::new();
        if let Some(e) = self.entry(idx) {
            for a in e.aliases.iter().filter(|a| a.kind.is_strong()) {
                if let Some(list) =
                    self.alias_index[kind_index(a.kind)].get(&self.hasher.hash_one(a.match_value()))
                {
                    out.extend(list.iter().copied().filter(|&i| i != idx));
                }
            }
        }
        out
    }

    fn remove_obs(&mut self, idx: ObsIdx) {
        let seeds = self.alias_neighbours(idx);
        self.unindex(idx);
        self.set_expiry(idx, None);
        let Some(e) = self.obs.get_mut(idx as usize).and_then(|o| o.take()) else {
            return;
        };
        let h = self.hasher.hash_one(&*e.key);
        self.sources[e.source as usize].keys.remove(h, idx);
        self.free_obs.push(idx);
        if let Some(p) = e.peer {
            if let Some(pe) = self.peers[p as usize].as_mut() {
                pe.members.retain(|m| *m != idx);
            }
            self.recompute(&seeds, &[p]);
        } else if !seeds.is_empty() {
            self.recompute(&seeds, &[]);
        }
    }

    /// Whether fallback sources count: every primary is degraded or empty.
    fn refresh_fallback(&mut self, now: Instant) {
        let want = self
            .sources
            .iter()
            .filter(|s| s.class == SourceClass::Primary)
            .all(|s| s.health == Health::Degraded || s.keys.is_empty());
        if want {
            self.primaries_ok_since = None;
        }
        if want == self.fallback_active {
            return;
        }
        if !want && !self.fallback_at_start {
            // Hysteresis: the primaries must stay healthy for the hold time.
            let since = *self.primaries_ok_since.get_or_insert(now);
            if now < since + self.fallback_hold {
                return;
            }
        }
        self.primaries_ok_since = None;
        if !want {
            self.fallback_at_start = false;
        }
        self.fallback_active = want;
        tracing::info!(
            active = want,
            "fallback sources {}",
            if want { "now count" } else { "stand down" }
        );
        metrics::counter!("rollcall_fallback_switches_total", "to" => if want { "active" } else { "standby" })
            .increment(1);
        let fallback: Vec<ObsIdx> = self
            .sources
            .iter()
            .filter(|s| s.class == SourceClass::Fallback)
            .flat_map(|s| s.keys.values())
            .collect();
        if want {
            for &i in &fallback {
                if let Some(e) = self.obs[i as usize].as_mut() {
                    e.active = true;
                }
                self.index(i);
            }
            self.recompute(&fallback, &[]);
        } else {
            let mut seeds = Vec::new();
            let mut old_peers = Vec::new();
            for &i in &fallback {
                seeds.extend(self.alias_neighbours(i));
                self.unindex(i);
                if let Some(e) = self.obs[i as usize].as_mut() {
                    e.active = false;
                    if let Some(p) = e.peer.take() {
                        old_peers.push(p);
                        if let Some(pe) = self.peers[p as usize].as_mut() {
                            pe.members.retain(|m| *m != i);
                        }
                    }
                }
            }
            self.recompute(&seeds, &old_peers);
        }
    }

    fn new_uid(&mut self) -> u64 {
        self.last_uid += 1;
        self.last_uid
    }

    fn next_visit_gen(&mut self) -> u32 {
        if self.visit_stamp.len() < self.obs.len() {
            self.visit_stamp.resize(self.obs.len(), 0);
        }
        self.visit_gen = self.visit_gen.wrapping_add(1);
        if self.visit_gen == 0 {
            self.visit_stamp.iter_mut().for_each(|s| *s = 0);
            self.visit_gen = 1;
        }
        self.visit_gen
    }

    /// Re-partitions the connected component around `seeds` and the members
    /// of `seed_peers`, then turns the difference into roster events.
    fn recompute(&mut self, seeds: &[ObsIdx], seed_peers: &[PeerIdx]) {
        let gen = self.next_visit_gen();
        // Components are small (a peer's few sightings): keep them off the heap.
        let mut old_peers: SmallVec<[PeerIdx; 8]> = SmallVec::new();
        let mut stack: SmallVec<[ObsIdx; 16]> = SmallVec::from_slice(seeds);
        for &p in seed_peers {
            if !old_peers.contains(&p) {
                old_peers.push(p);
                if let Some(pe) = self.peers[p as usize].as_ref() {
                    stack.extend(pe.members.iter().copied());
                }
            }
        }
        let mut comp: SmallVec<[ObsIdx; 8]> = SmallVec::new();
        while let Some(o) = stack.pop() {
            let Some(e) = self.obs.get(o as usize).and_then(|x| x.as_ref()) else {
                continue;
            };
            if !e.active || self.visit_stamp[o as usize] == gen {
                continue;
            }
            self.visit_stamp[o as usize] = gen;
            comp.push(o);
            if let Some(p) = e.peer {
                if !old_peers.contains(&p) {
                    old_peers.push(p);
                    if let Some(pe) = self.peers[p as usize].as_ref() {
                        stack.extend(pe.members.iter().copied());
                    }
                }
            }
            for a in e.aliases.iter().filter(|a| a.kind.is_strong()) {
                if let Some(list) =
                    self.alias_index[kind_index(a.kind)].get(&self.hasher.hash_one(a.match_value()))
                {
                    stack.extend(
                        list.iter()
                            .copied()
                            .filter(|&x| self.visit_stamp[x as usize] != gen),
                    );
                }
            }
        }

        // Highest priority first, then a stable order: the partition is deterministic.
        comp.sort_by(|&a, &b| {
            let (ea, eb) = (self.entry(a), self.entry(b));
            let ka = ea.map(|e| {
                (
                    -(self.sources[e.source as usize].priority as i64),
                    e.source,
                    &e.key,
                )
            });
            let kb = eb.map(|e| {
                (
                    -(self.sources[e.source as usize].priority as i64),
                    e.source,
                    &e.key,
                )
            });
            ka.cmp(&kb)
        });

        let (groups, found_conflicts) = self.partition(&comp);

        // Forget the old peers' ids so the new groups can take them.
        for &p in &old_peers {
            if let Some(pe) = self.peers[p as usize].as_ref() {
                if self.peer_ids.get(&pe.view.id) == Some(&p) {
                    self.peer_ids.remove(&pe.view.id);
                }
            }
        }

        // Events are staged and numbered at the end: absorbed entries leave
        // first, so a replica keyed by display id never loses the survivor.
        let mut claimed: SmallVec<[PeerIdx; 8]> = SmallVec::new();
        let mut changes: SmallVec<[Pending; 4]> = SmallVec::new();
        for members in groups {
            let mut view = self.build_view(&members);
            view.id = self.unique_id(&view, &members);
            let candidates = members
                .iter()
                .filter_map(|&m| self.entry(m).and_then(|e| e.peer))
                .filter(|p| old_peers.contains(p) && !claimed.contains(p));
            // The entry that keeps its uid: the one whose display id survives,
            // else the one of the highest-priority observation.
            let mut reuse = None;
            for p in candidates {
                let same_id = self.peers[p as usize]
                    .as_ref()
                    .is_some_and(|pe| pe.view.id == view.id);
                if same_id {
                    reuse = Some(p);
                    break;
                }
                reuse.get_or_insert(p);
            }
            let slot = match reuse {
                Some(p) => {
                    claimed.push(p);
                    match self.peers[p as usize].take() {
                        Some(old) => {
                            view.uid = old.view.uid;
                            if !old.view.same_content(&view) {
                                let renamed_from =
                                    (old.view.id != view.id).then(|| old.view.id.clone());
                                changes.push(Pending::Updated(Arc::new(view), renamed_from));
                            } else {
                                changes.push(Pending::Same(old.view));
                            }
                        }
                        None => {
                            view.uid = self.new_uid();
                            changes.push(Pending::Joined(Arc::new(view)));
                        }
                    }
                    p
                }
                None => {
                    view.uid = self.new_uid();
                    changes.push(Pending::Joined(Arc::new(view)));
                    match self.free_peers.pop() {
                        Some(p) => p,
                        None => {
                            self.peers.push(None);
                            (self.peers.len() - 1) as PeerIdx
                        }
                    }
                }
            };
            let view = match changes.last() {
                Some(Pending::Updated(v, _) | Pending::Joined(v) | Pending::Same(v)) => v.clone(),
                None => continue, // unreachable: one change is staged per group
            };
            for &m in &members {
                if let Some(e) = self.obs[m as usize].as_mut() {
                    e.peer = Some(slot);
                }
            }
            self.peer_ids.insert(view.id.clone(), slot);
            self.peers[slot as usize] = Some(PeerEntry { members, view });
        }
        for p in old_peers {
            if claimed.contains(&p) {
                continue;
            }
            if let Some(old) = self.peers[p as usize].take() {
                // Absorbed when a former member now belongs to another entry.
                let merged_into = old
                    .members
                    .iter()
                    .filter_map(|&m| self.entry(m).and_then(|e| e.peer))
                    .find(|&q| q != p)
                    .and_then(|q| self.peers[q as usize].as_ref())
                    .map(|q| q.view.uid);
                self.version += 1;
                self.out.push(RosterEvent::Left {
                    version: self.version,
                    peer: old.view,
                    merged_into,
                });
                self.free_peers.push(p);
            }
        }
        for c in changes {
            let ev = match c {
                Pending::Same(_) => continue,
                Pending::Joined(peer) => RosterEvent::Joined {
                    version: self.version + 1,
                    peer,
                },
                Pending::Updated(peer, renamed_from) => RosterEvent::Updated {
                    version: self.version + 1,
                    peer,
                    renamed_from,
                },
            };
            self.version += 1;
            self.out.push(ev);
        }
        self.update_conflicts(&comp, found_conflicts);
        metrics::gauge!("rollcall_roster_peers").set(self.peer_ids.len() as f64);
    }

    /// Greedy partition in priority order: an observation joins the groups it
    /// shares a strong alias with, unless that would give one peer two values
    /// of a singular kind; then the groups stay apart and a conflict is noted.
    fn partition(&self, comp: &[ObsIdx]) -> (SmallVec<[Members; 2]>, Vec<FoundConflict>) {
        let mut groups: SmallVec<[Group; 2]> = SmallVec::new();
        let mut by_alias = AliasGroups::new(comp.len(), &self.hasher);
        let mut conflicts = Vec::new();
        fn root(groups: &[Group], mut g: usize) -> usize {
            while let Some(n) = groups[g].merged_into {
                g = n;
            }
            g
        }
        for &o in comp {
            let Some(e) = self.entry(o) else { continue };
            let mut singular: [Option<&str>; 5] = Default::default();
            for a in e.aliases.iter() {
                let k = kind_index(a.kind);
                if a.kind.is_singular() && singular[k].is_none() {
                    singular[k] = Some(a.match_value());
                }
            }
            let mut target: Option<usize> = None;
            let mut seen: Vec<usize> = Vec::new();
            for a in e.aliases.iter().filter(|a| a.kind.is_strong()) {
                let Some(g) = by_alias.get((a.kind, a.match_value())) else {
                    continue;
                };
                let g = root(&groups, g);
                if seen.contains(&g) || Some(g) == target {
                    continue;
                }
                seen.push(g);
                match target {
                    None => match clash(&groups[g].singular, &singular) {
                        None => {
                            merge_singular(&mut groups[g].singular, &singular);
                            groups[g].members.push(o);
                            target = Some(g);
                        }
                        Some(k) => conflicts.push(FoundConflict {
                            shared: a.clone(),
                            disputed: AliasKind::ALL[k],
                            a: groups[g].members[0],
                            b: o,
                        }),
                    },
                    Some(t) => match clash(&groups[t].singular, &groups[g].singular) {
                        None => {
                            let moved = std::mem::take(&mut groups[g].members);
                            let sing = std::mem::take(&mut groups[g].singular);
                            merge_singular(&mut groups[t].singular, &sing);
                            groups[t].members.extend(moved);
                            groups[g].merged_into = Some(t);
                        }
                        Some(k) => conflicts.push(FoundConflict {
                            shared: a.clone(),
                            disputed: AliasKind::ALL[k],
                            a: groups[g].members[0],
                            b: o,
                        }),
                    },
                }
            }
            let t = match target {
                Some(t) => t,
                None => {
                    groups.push(Group {
                        members: smallvec::smallvec![o],
                        singular,
                        merged_into: None,
                    });
                    groups.len() - 1
                }
            };
            for a in e.aliases.iter().filter(|a| a.kind.is_strong()) {
                by_alias.insert_if_absent((a.kind, a.match_value()), t);
            }
        }
        let out = groups
            .into_iter()
            .filter(|g| g.merged_into.is_none() && !g.members.is_empty())
            .map(|g| g.members)
            .collect();
        (out, conflicts)
    }

    fn build_view(&self, members: &[ObsIdx]) -> Peer {
        let mut aliases: Vec<Alias> = Vec::new();
        let mut name = None;
        let mut status = None;
        let mut version = None;
        let mut capabilities: Vec<String> = Vec::new();
        let mut labels = BTreeMap::new();
        let mut addrs: Vec<&RankedAddr> = Vec::new();
        let mut sources: Vec<PeerSource> = Vec::new();
        let empty = Metadata::default();
        for e in members.iter().filter_map(|&m| self.entry(m)) {
            let meta = e.meta.as_deref().unwrap_or(&empty);
            for a in e.aliases.iter() {
                match aliases
                    .iter_mut()
                    .find(|x| x.kind == a.kind && x.match_value() == a.match_value())
                {
                    // Keep the longest spelling (the full container id over the short one).
                    Some(x) if a.value.len() > x.value.len() => x.value.clone_from(&a.value),
                    Some(_) => {}
                    None => aliases.push(a.clone()),
                }
            }
            if name.is_none() {
                name.clone_from(&meta.name);
            }
            if status.is_none() {
                status.clone_from(&meta.status);
            }
            if version.is_none() {
                version.clone_from(&meta.version);
            }
            if capabilities.is_empty() {
                capabilities.clone_from(&meta.capabilities);
            }
            for (k, v) in &meta.labels {
                labels.entry(k.clone()).or_insert_with(|| v.clone());
            }
            for a in e.addrs.iter() {
                if !addrs.iter().any(|x| x.text == a.text) {
                    addrs.push(a);
                }
            }
            let sname = &self.sources[e.source as usize].name;
            match sources.iter_mut().find(|s| s.name == *sname) {
                Some(s) => s.last_seen = s.last_seen.max(e.last_seen),
                None => sources.push(PeerSource {
                    name: sname.clone(),
                    last_seen: e.last_seen,
                }),
            }
        }
        aliases.sort_by_key(|a| kind_index(a.kind));
        addrs.sort_by_key(|a| a.rank);
        Peer {
            uid: 0,
            id: String::new(),
            aliases,
            name,
            status,
            capabilities,
            version,
            labels,
            addrs: addrs.iter().map(|a| a.text.to_string()).collect(),
            sources,
        }
    }

    /// The display id: the best alias not already taken by another peer.
    fn unique_id(&self, view: &Peer, members: &[ObsIdx]) -> String {
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

    fn obs_label(&self, idx: ObsIdx) -> String {
        self.entry(idx)
            .map(|e| format!("{}/{}", self.sources[e.source as usize].name, e.key))
            .unwrap_or_default()
    }

    fn update_conflicts(&mut self, comp: &[ObsIdx], found: Vec<FoundConflict>) {
        let mut touched = std::mem::take(&mut self.unindexed_aliases);
        if found.is_empty() && self.conflicts.is_empty() {
            return;
        }
        // Conflicts about any alias of this component are re-decided here.
        for &o in comp {
            if let Some(e) = self.entry(o) {
                for a in e.aliases.iter() {
                    touched.push((a.kind, a.match_value().to_owned()));
                }
            }
        }
        let mut fresh: BTreeMap<(AliasKind, String), Conflict> = BTreeMap::new();
        for f in found {
            let key = (f.shared.kind, f.shared.match_value().to_owned());
            let peer_of = |i: ObsIdx| {
                self.entry(i)
                    .and_then(|e| e.peer)
                    .and_then(|p| self.peers[p as usize].as_ref())
                    .map(|p| p.view.id.clone())
                    .unwrap_or_default()
            };
            let (pa, pb) = (peer_of(f.a), peer_of(f.b));
            let (la, lb) = (self.obs_label(f.a), self.obs_label(f.b));
            let c = fresh.entry(key).or_insert_with(|| Conflict {
                shared: f.shared.clone(),
                disputed: f.disputed,
                peers: Vec::new(),
                observations: Vec::new(),
            });
            for p in [pa, pb] {
                if !c.peers.contains(&p) {
                    c.peers.push(p);
                }
            }
            for l in [la, lb] {
                if !c.observations.contains(&l) {
                    c.observations.push(l);
                }
            }
        }
        for k in &touched {
            if !fresh.contains_key(k) {
                self.conflicts.remove(k);
            }
        }
        for (k, c) in fresh {
            if self.conflicts.get(&k) != Some(&c) {
                tracing::warn!(alias = %c.shared.value, kind = %c.shared.kind, disputed = %c.disputed, observations = ?c.observations, "identity conflict: not merged");
                metrics::counter!("rollcall_roster_conflicts_total").increment(1);
                self.out.push(RosterEvent::Conflict {
                    version: self.version,
                    conflict: c.clone(),
                });
                self.conflicts.insert(k, c);
            }
        }
    }

    pub(crate) fn conflicts(&self) -> Vec<Conflict> {
        self.conflicts.values().cloned().collect()
    }

    pub(crate) fn snapshot(&self) -> Roster {
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

    pub(crate) fn peer(&self, id: &str) -> Option<Arc<Peer>> {
        self.peer_ids
            .get(id)
            .and_then(|&p| self.peers[p as usize].as_ref())
            .map(|p| p.view.clone())
    }

    pub(crate) fn statuses(&self) -> Vec<SourceStatus> {
        self.sources
            .iter()
            .filter(|s| s.class != SourceClass::Cache || !s.keys.is_empty())
            .filter(|s| s.class != SourceClass::Retired)
            .map(|s| SourceStatus {
                name: s.name.to_string(),
                role: match s.class {
                    SourceClass::Primary => "primary",
                    SourceClass::Fallback => "fallback",
                    SourceClass::Cache | SourceClass::Retired => "cache",
                },
                priority: s.priority,
                health: s.health,
                synced: s.synced,
                attempted: s.attempted,
                last_sync: s.last_sync,
                last_error: s.last_error.clone(),
                observations: s.keys.len(),
                counted: s.class != SourceClass::Fallback || self.fallback_active,
                restarts: s.restarts,
            })
            .collect()
    }

    /// Every source has finished its first attempt (synced or failed).
    pub(crate) fn all_attempted(&self) -> bool {
        self.sources
            .iter()
            .filter(|s| !matches!(s.class, SourceClass::Cache | SourceClass::Retired))
            .all(|s| s.attempted)
    }

    /// Why the registry is not ready: one line per enabled primary source
    /// that never completed a successful sync, naming it. Empty when ready.
    pub(crate) fn not_ready(&self) -> Vec<String> {
        self.sources
            .iter()
            .filter(|s| s.class == SourceClass::Primary && !s.synced)
            .map(|s| match &s.last_error {
                Some(e) => format!("source `{}` never synced: {e}", s.name),
                None => format!("source `{}` has not synced yet", s.name),
            })
            .collect()
    }

    /// Every primary source has synced at least once.
    pub(crate) fn primaries_synced(&self) -> bool {
        self.sources
            .iter()
            .filter(|s| s.class == SourceClass::Primary)
            .all(|s| s.synced)
    }
}

struct FoundConflict {
    shared: Alias,
    disputed: AliasKind,
    a: ObsIdx,
    b: ObsIdx,
}

fn clash(a: &[Option<&str>; 5], b: &[Option<&str>; 5]) -> Option<usize> {
    (0..5).find(|&k| matches!((a[k], b[k]), (Some(x), Some(y)) if x != y))
}

fn merge_singular<'a>(into: &mut [Option<&'a str>; 5], from: &[Option<&'a str>; 5]) {
    for k in 0..5 {
        if into[k].is_none() {
            into[k] = from[k];
        }
    }
}

/// Alias -> group during a partition: a linear list for the usual handful of
/// sightings, a hash map for the rare large component.
#[allow(clippy::large_enum_variant)] // lives on the stack for one partition only
enum AliasGroups<'a> {
    Small(SmallVec<[((AliasKind, &'a str), usize); 16]>),
    Large(HashMap<(AliasKind, &'a str), usize>),
}

impl<'a> AliasGroups<'a> {
    fn new(observations: usize, hasher: &ahash::RandomState) -> Self {
        if observations <= 8 {
            AliasGroups::Small(SmallVec::new())
        } else {
            AliasGroups::Large(HashMap::with_capacity_and_hasher(
                observations * 3,
                hasher.clone(),
            ))
        }
    }

    fn get(&self, key: (AliasKind, &'a str)) -> Option<usize> {
        match self {
            AliasGroups::Small(v) => v.iter().find(|(k, _)| *k == key).map(|(_, g)| *g),
            AliasGroups::Large(m) => m.get(&key).copied(),
        }
    }

    fn insert_if_absent(&mut self, key: (AliasKind, &'a str), group: usize) {
        match self {
            AliasGroups::Small(v) => {
                if !v.iter().any(|(k, _)| *k == key) {
                    v.push((key, group));
                }
            }
            AliasGroups::Large(m) => {
                m.entry(key).or_insert(group);
            }
        }
    }
}

/// A source's keys, by hash (the key text lives once, in the entry).
#[derive(Debug, Default)]
struct KeyIndex {
    by_hash: HashMap<u64, SmallVec<[ObsIdx; 2]>>,
    len: usize,
}

impl KeyIndex {
    fn candidates(&self, hash: u64) -> impl Iterator<Item = ObsIdx> + '_ {
        self.by_hash.get(&hash).into_iter().flatten().copied()
    }
    fn insert(&mut self, hash: u64, idx: ObsIdx) {
        self.by_hash.entry(hash).or_default().push(idx);
        self.len += 1;
    }
    fn remove(&mut self, hash: u64, idx: ObsIdx) {
        if let Some(list) = self.by_hash.get_mut(&hash) {
            let before = list.len();
            list.retain(|i| *i != idx);
            self.len -= before - list.len();
            if list.is_empty() {
                self.by_hash.remove(&hash);
            }
        }
    }
    fn values(&self) -> impl Iterator<Item = ObsIdx> + '_ {
        self.by_hash.values().flatten().copied()
    }
    fn len(&self) -> usize {
        self.len
    }
    fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
impl State {
    /// Every peer as the sorted `source/key` list of its observations, sorted.
    pub(crate) fn groups(&self) -> Vec<Vec<String>> {
        let mut out: Vec<Vec<String>> = self
            .peers
            .iter()
            .flatten()
            .map(|p| {
                let mut m: Vec<String> = p.members.iter().map(|&i| self.obs_label(i)).collect();
                m.sort();
                m
            })
            .collect();
        out.sort();
        out
    }

    /// Internal consistency: every active observation is in exactly one peer,
    /// ids are unique and indexed, and the peer count matches.
    pub(crate) fn check_invariants(&self) {
        let mut seen = std::collections::HashSet::new();
        for (pi, p) in self.peers.iter().enumerate() {
            let Some(p) = p else { continue };
            assert!(!p.members.is_empty(), "empty peer {}", p.view.id);
            assert_eq!(
                self.peer_ids.get(&p.view.id),
                Some(&(pi as PeerIdx)),
                "id index of {}",
                p.view.id
            );
            for &m in &p.members {
                let e = self.entry(m).expect("member exists");
                assert!(e.active);
                assert_eq!(e.peer, Some(pi as PeerIdx));
                assert!(seen.insert(m), "observation in two peers");
            }
        }
        let active = self.obs.iter().flatten().filter(|e| e.active).count();
        assert_eq!(seen.len(), active, "every active observation is in a peer");
        assert_eq!(self.peer_ids.len(), self.peers.iter().flatten().count());
    }
}
