//! One peer from its observations: the highest-priority observation that has
//! a field wins it; aliases, labels and addresses are the union, addresses ranked.

use std::collections::BTreeMap;

use super::addrs::RankedAddr;
use super::{kind_index, Alias, Metadata, ObsIdx, Peer, State};
use crate::roster::PeerSource;

impl State {
    pub(super) fn build_view(&self, members: &[ObsIdx]) -> Peer {
        let entries = || members.iter().filter_map(|&m| self.entry(m));
        let mut aliases: Vec<Alias> = Vec::with_capacity(entries().map(|e| e.aliases.len()).sum());
        let mut name = None;
        let mut status = None;
        let mut version = None;
        let mut capabilities: Vec<String> = Vec::new();
        let mut labels = BTreeMap::new();
        let mut addrs: Vec<&RankedAddr> = Vec::new();
        let mut sources: Vec<PeerSource> = Vec::with_capacity(members.len());
        let empty = Metadata::default();
        for e in entries() {
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
                Some(s) => s.last_seen = s.last_seen.max(e.last_seen()),
                None => sources.push(PeerSource {
                    name: sname.clone(),
                    last_seen: e.last_seen(),
                }),
            }
        }
        aliases.sort_by_key(|a| kind_index(a.kind));
        addrs.sort_by_key(|a| a.rank);
        // A view lives as long as its peer: no spare capacity (the aliases'
        // capacity counted every sighting's before duplicates were merged).
        aliases.shrink_to_fit();
        sources.shrink_to_fit();
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
}
