//! Upserts and removals: size limits, the renewal fast path (same input:
//! TTL and last_seen only, no re-merge, no event), and what a change re-merges.

use std::time::SystemTime;

use tokio::time::Instant;

use super::sighting_text::{SightingText, MAX_ADDRS, MAX_ALIASES, MAX_ALIAS_LEN, MAX_KEY_LEN};
use super::stored_meta::StoredMeta;
use super::{Metadata, ObsEntry, ObsIdx, SourceClass, State, Tick};
use crate::model::Observation;
use crate::source::SourceIdx;

impl State {
    pub(super) fn upsert(
        &mut self,
        src: SourceIdx,
        mut o: Observation,
        now: Instant,
        wall: SystemTime,
    ) {
        // A misbehaving source cannot make one peer arbitrarily large.
        if o.key.len() > MAX_KEY_LEN {
            metrics::counter!("rollcall_observation_fields_dropped_total").increment(1);
            tracing::warn!(source = %self.sources[src as usize].name, key_len = o.key.len(), "observation key over {MAX_KEY_LEN} bytes; observation dropped");
            return;
        }
        let overlong = o
            .aliases
            .iter()
            .filter(|a| a.value.len() > MAX_ALIAS_LEN)
            .count();
        if o.addrs.len() > MAX_ADDRS || o.aliases.len() > MAX_ALIASES || overlong > 0 {
            let dropped = o.addrs.len().saturating_sub(MAX_ADDRS)
                + o.aliases.len().saturating_sub(MAX_ALIASES)
                + overlong;
            o.addrs.truncate(MAX_ADDRS);
            // Overlong values are left out when stored (`SightingText`).
            o.aliases.truncate(MAX_ALIASES);
            metrics::counter!("rollcall_observation_fields_dropped_total")
                .increment(dropped as u64);
            tracing::warn!(source = %self.sources[src as usize].name, key = %o.key, dropped, "observation over the size limit; extra addresses and aliases dropped");
        }
        // One conversion: every time below is a tick.
        let now = self.clock.tick(now);
        // Two hashes of the observation as sent: what links it (aliases and
        // addresses) and what describes it, so a renewal or a status change
        // is told apart without re-filtering or comparing anything.
        let ident_hash = self.hasher.hash_one((&o.aliases, &o.addrs));
        let meta_hash = self.hasher.hash_one(&o.meta);
        let key_hashes = self.key_hashes(&o.key);
        let existing = self.lookup_hashed(src, key_hashes);
        if let Some(idx) = existing {
            let same = self
                .entry(idx)
                .map(|e| (e.ident_hash == ident_hash, e.meta_hash == meta_hash));
            match same {
                Some((true, true)) => {
                    self.set_expiry(idx, o.ttl.map(|t| now.after(t)));
                    self.renew(idx, now, wall);
                    return;
                }
                // Metadata alone: the aliases and addresses as sent are those stored.
                Some((true, false)) => {
                    self.set_expiry(idx, o.ttl.map(|t| now.after(t)));
                    self.store_meta(idx, o.meta, meta_hash, false, now, wall);
                    return;
                }
                _ => {}
            }
        }
        // `None`: the same addresses as the stored observation's.
        let addrs = self.filter_addrs(o.addrs, existing);
        if let Some(idx) = existing {
            // Same aliases: grouping, ids and conflicts depend on aliases
            // alone, so at most the view is rebuilt (and nothing is copied).
            let same_aliases = self
                .entry(idx)
                .is_some_and(|e| e.text.same_aliases_as(&o.aliases));
            if same_aliases {
                self.set_expiry(idx, o.ttl.map(|t| now.after(t)));
                let Some(e) = self.obs.get_mut(idx) else {
                    return;
                };
                e.ident_hash = ident_hash;
                let addrs_changed = addrs.is_some();
                if let Some(addrs) = &addrs {
                    e.text = e.text.with_addrs(addrs);
                }
                self.reuse(addrs);
                self.store_meta(idx, o.meta, meta_hash, addrs_changed, now, wall);
                return;
            }
        }
        let class = self.sources[src as usize].class;
        let active = class != SourceClass::Fallback || self.fallback_active;
        let meta = StoredMeta::new(o.meta);

        if let Some(idx) = existing {
            self.settle(); // before a sighting it may hold changes
            self.set_expiry(idx, o.ttl.map(|t| now.after(t)));
            // Changed: neighbours through the old aliases must be re-partitioned too.
            let mut seeds = self.alias_neighbours(idx);
            let old_peer = self.entry(idx).and_then(|e| e.peer());
            self.unindex(idx);
            if let Some(e) = self.obs.get_mut(idx) {
                e.text = match &addrs {
                    Some(addrs) => SightingText::new(e.text.key(), &o.aliases, addrs),
                    None => e.text.with_aliases(&o.aliases),
                };
                e.meta = meta;
                e.set_last_seen(wall);
                e.seen_at = now;
                e.ident_hash = ident_hash;
                e.meta_hash = meta_hash;
            }
            self.reuse(addrs);
            self.index(idx);
            seeds.push(idx);
            self.recompute(&seeds, old_peer.as_slice());
            return;
        }

        let entry = ObsEntry {
            source: src,
            key_check: key_hashes.1,
            // A new sighting: `filter_addrs` had nothing to compare with.
            text: SightingText::new(
                &o.key,
                &o.aliases,
                addrs.as_ref().unwrap_or(&self.kept_addrs),
            ),
            meta,
            expiry: None,
            queued: None,
            ident_hash,
            meta_hash,
            last_seen_ns: super::wall_ns(wall),
            seen_at: now,
            peer_slot: None,
            active,
        };
        self.reuse(addrs);
        let idx = self.obs.insert(entry);
        self.sources[src as usize].keys.insert(key_hashes.0, idx);
        self.set_expiry(idx, o.ttl.map(|t| now.after(t)));
        if active {
            let hashes = self.index_hashed(idx);
            self.place_new(idx, &hashes);
        }
    }

    /// Stores observation `idx`'s metadata (its aliases unchanged, its
    /// addresses already stored) and refreshes its peer's view; a renewal
    /// when nothing differs after all.
    fn store_meta(
        &mut self,
        idx: ObsIdx,
        meta: Metadata,
        meta_hash: u64,
        addrs_changed: bool,
        now: Tick,
        wall: SystemTime,
    ) {
        let Some(e) = self.obs.get_mut(idx) else {
            return;
        };
        e.meta_hash = meta_hash;
        if !addrs_changed && e.meta.same_as(&meta) {
            self.renew(idx, now, wall);
            return;
        }
        e.meta.set(meta);
        e.set_last_seen(wall);
        e.seen_at = now;
        if let Some(p) = e.peer() {
            if addrs_changed {
                self.refresh_view(p);
            } else {
                self.refresh_meta(p);
            }
        }
    }

    /// A renewal: last_seen refreshed, the peer marked (its view is
    /// brought up to date when read), no event, no re-merge.
    pub(super) fn renew(&mut self, idx: ObsIdx, now: Tick, wall: SystemTime) {
        let peer = match self.obs.get_mut(idx) {
            Some(e) => {
                e.set_last_seen(wall);
                e.seen_at = now;
                e.peer()
            }
            None => return,
        };
        if let Some(p) = peer {
            self.mark_seen(p);
        }
    }

    pub(super) fn remove_obs(&mut self, idx: ObsIdx) {
        self.settle();
        let seeds = self.alias_neighbours(idx);
        self.unindex(idx);
        self.set_expiry(idx, None);
        let Some(e) = self.obs.take(idx) else {
            return;
        };
        let h = self.hasher.hash_one(e.text.key());
        self.sources[e.source as usize].keys.remove(h, idx);
        if let Some(p) = e.peer() {
            if let Some(pe) = self.peers[p as usize].as_mut() {
                pe.members.retain(|m| *m != idx);
            }
            self.recompute(&seeds, &[p]);
        } else if !seeds.is_empty() {
            self.recompute(&seeds, &[]);
        }
    }
}
