//! Which providers are alive: a provider found in the DHT becomes an
//! observation only once it answers, and each answer (ping, identify,
//! metadata) renews its TTL. Provider records never renew anything.

use std::collections::HashMap;
use std::time::Duration;

use discovery_core::{Alias, Observation};
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};

use crate::metadata::MetaReply;

/// What we know of one provider.
#[derive(Debug, Default)]
pub struct Provider {
    /// Listen addresses from identify.
    pub addrs: Vec<Multiaddr>,
    /// The metadata reply, once received.
    pub meta: Option<MetaReply>,
    /// Whether it answered since it was found (an observation exists).
    pub reported: bool,
    /// Its metadata was refused by the signature checks: it is not listed,
    /// and the first sync does not wait for it.
    pub rejected: bool,
}

/// Providers found by lookups, bounded.
#[derive(Debug)]
pub struct Providers {
    map: HashMap<PeerId, Provider>,
    cap: usize,
    ttl: Duration,
}

impl Providers {
    /// An empty table holding at most `cap` providers.
    pub fn new(cap: usize, ttl: Duration) -> Self {
        Providers {
            map: HashMap::new(),
            cap,
            ttl,
        }
    }

    /// Records a provider a lookup returned; `true` when it is new.
    pub fn found(&mut self, peer: PeerId) -> bool {
        if self.map.contains_key(&peer) {
            return false;
        }
        if self.map.len() >= self.cap {
            crate::metrics_names::dropped("provider_table_full");
            return false;
        }
        self.map.insert(peer, Provider::default());
        true
    }

    /// Whether a peer is a known provider.
    pub fn contains(&self, peer: &PeerId) -> bool {
        self.map.contains_key(peer)
    }

    /// Mutable access for identify/metadata updates.
    pub fn get_mut(&mut self, peer: &PeerId) -> Option<&mut Provider> {
        self.map.get_mut(peer)
    }

    /// Forgets a provider; `true` if it had been reported (the caller removes
    /// its observation).
    pub fn forget(&mut self, peer: &PeerId) -> bool {
        self.map.remove(peer).is_some_and(|p| p.reported)
    }

    /// Providers found but not reported yet.
    pub fn unreported(&self) -> usize {
        self.map
            .values()
            .filter(|p| !p.reported && !p.rejected)
            .count()
    }

    /// Reported providers.
    pub fn live(&self) -> usize {
        self.map.values().filter(|p| p.reported).count()
    }

    /// The observation for a provider that just answered, marking it reported.
    pub fn answered(&mut self, peer: &PeerId) -> Option<Observation> {
        let ttl = self.ttl;
        let p = self.map.get_mut(peer)?;
        p.reported = true;
        Some(observation(peer, p, ttl))
    }
}

/// The observation key of a peer: its peer id.
pub fn key(peer: &PeerId) -> String {
    peer.to_string()
}

fn observation(peer: &PeerId, p: &Provider, ttl: Duration) -> Observation {
    let mut obs = Observation::new(key(peer))
        .with_alias(Alias::peer_id(peer.to_string()))
        .with_ttl(ttl);
    if let Some(m) = &p.meta {
        if let Some(id) = &m.id {
            obs = obs.with_alias(Alias::agent_id(id.clone()));
        }
        obs = obs.with_meta(m.meta.clone());
        // Its announced service addresses first; unparsable ones are skipped
        // (the registry's address policy judges the rest).
        for a in &m.addrs {
            match a.parse() {
                Ok(addr) if !obs.addrs.contains(&addr) => obs.addrs.push(addr),
                Ok(_) => {}
                Err(_) => crate::metrics_names::dropped("metadata_addr"),
            }
        }
    }
    for a in &p.addrs {
        let mut a = a.clone();
        if matches!(a.iter().last(), Some(Protocol::P2p(_))) {
            a.pop();
        }
        // Same multiaddr crate line as discovery-core: round-trip through text.
        if let Ok(m) = a.to_string().parse() {
            if !obs.addrs.contains(&m) {
                obs.addrs.push(m);
            }
        }
    }
    obs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announced_addresses_come_first_and_bad_ones_are_skipped() {
        let peer = libp2p::identity::Keypair::generate_ed25519()
            .public()
            .to_peer_id();
        let mut table = Providers::new(4, Duration::from_secs(3));
        assert!(table.found(peer));
        let p = table.get_mut(&peer).unwrap();
        p.addrs = vec!["/ip4/10.0.0.7/tcp/4001".parse().unwrap()];
        p.meta = Some(MetaReply {
            id: Some("agent-7".into()),
            addrs: vec!["/ip4/10.0.0.7/tcp/8081".into(), "not an address".into()],
            ..MetaReply::default()
        });
        let obs = table.answered(&peer).unwrap();
        let addrs: Vec<String> = obs.addrs.iter().map(ToString::to_string).collect();
        assert_eq!(addrs, ["/ip4/10.0.0.7/tcp/8081", "/ip4/10.0.0.7/tcp/4001"]);
        assert_eq!(obs.ttl, Some(Duration::from_secs(3)));
    }
}
