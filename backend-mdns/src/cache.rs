//! The peers one source currently knows: bounded, with the instance names that
//! point at each (a goodbye names an instance, the roster key is the peer).

use std::collections::HashMap;
use std::time::Duration;

use discovery_core::Multiaddr;
use tokio::time::Instant;

/// What one interface last heard of a peer's addresses, and until when.
type HeardOn = Vec<(String, Vec<Multiaddr>, Instant)>;

/// Known peers by observation key, and instance label to key.
#[derive(Debug)]
pub struct Peers {
    max: usize,
    expiry: HashMap<String, Instant>,
    instances: HashMap<String, String>,
    /// Per key, the addresses heard on each interface (a host on two links
    /// answers on each with that link's addresses: the peer has both).
    addrs: HashMap<String, HeardOn>,
}

impl Peers {
    /// At most `max` peers.
    pub fn new(max: usize) -> Self {
        Peers {
            max,
            expiry: HashMap::new(),
            instances: HashMap::new(),
            addrs: HashMap::new(),
        }
    }

    /// Records a sighting; `false` when the cache is full and `key` is new.
    pub fn admit(&mut self, key: &str, instance: &str, ttl: Duration, now: Instant) -> bool {
        if !self.expiry.contains_key(key) && self.expiry.len() >= self.max {
            self.prune(now);
            if self.expiry.len() >= self.max {
                return false;
            }
        }
        self.expiry.insert(key.to_owned(), now + ttl);
        if self.instances.len() < self.max * 4 || self.instances.contains_key(instance) {
            self.instances.insert(instance.to_owned(), key.to_owned());
        }
        true
    }

    /// A goodbye for `instance`: the key it belonged to, now forgotten.
    pub fn goodbye(&mut self, instance: &str) -> Option<String> {
        let key = self.instances.remove(instance)?;
        self.instances.retain(|_, k| *k != key);
        self.expiry.remove(&key);
        self.addrs.remove(&key);
        Some(key)
    }

    /// Records `addrs` of admitted `key` as heard on interface `via`; returns
    /// the union over every interface whose sighting is still live (at most
    /// `max`, this interface's first).
    pub fn merge_addrs(
        &mut self,
        key: &str,
        via: &str,
        addrs: Vec<Multiaddr>,
        until: Instant,
        now: Instant,
        max: usize,
    ) -> Vec<Multiaddr> {
        if !self.expiry.contains_key(key) {
            return addrs;
        }
        let heard = self.addrs.entry(key.to_owned()).or_default();
        heard.retain(|(i, _, t)| i != via && *t > now);
        heard.insert(0, (via.to_owned(), addrs, until));
        let mut out: Vec<Multiaddr> = Vec::new();
        for a in heard.iter().flat_map(|(_, a, _)| a) {
            if out.len() >= max {
                break;
            }
            if !out.contains(a) {
                out.push(a.clone());
            }
        }
        out
    }

    /// Whether `key` is known.
    #[cfg(test)]
    pub fn contains(&self, key: &str) -> bool {
        self.expiry.contains_key(key)
    }

    /// The smallest remaining lifetime of any known peer.
    pub fn next_expiry(&self, now: Instant) -> Option<Duration> {
        self.expiry
            .values()
            .map(|e| e.saturating_duration_since(now))
            .min()
    }

    /// Forgets peers whose TTL ran out (the registry expires them itself).
    pub fn prune(&mut self, now: Instant) {
        self.expiry.retain(|_, e| *e > now);
        let expiry = &self.expiry;
        self.instances.retain(|_, k| expiry.contains_key(k));
        self.addrs.retain(|k, _| expiry.contains_key(k));
    }

    /// How many peers are known.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.expiry.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn bounded_and_goodbye_removes() {
        let mut p = Peers::new(2);
        let now = Instant::now();
        let ttl = Duration::from_secs(10);
        assert!(p.admit("a", "ia", ttl, now));
        assert!(p.admit("b", "ib", ttl, now));
        assert!(!p.admit("c", "ic", ttl, now), "full");
        assert!(p.admit("a", "ia2", ttl, now), "known keys renew");
        assert_eq!(p.goodbye("ia2").as_deref(), Some("a"));
        assert!(!p.contains("a"));
        assert_eq!(p.goodbye("ia"), None, "both instances of a are gone");
        assert!(p.admit("d", "id", ttl, now));
        assert!(!p.admit("c", "ic", ttl, now), "full again");
        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(
            p.admit("c", "ic", ttl, Instant::now()),
            "expired peers made room"
        );
        assert_eq!(p.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn addresses_heard_on_two_interfaces_are_both_kept() {
        let mut p = Peers::new(4);
        let now = Instant::now();
        let ttl = Duration::from_secs(10);
        let a: Multiaddr = "/ip4/10.0.0.5/tcp/1".parse().unwrap();
        let b: Multiaddr = "/ip4/172.17.0.5/tcp/1".parse().unwrap();
        assert!(p.admit("k", "i", ttl, now));
        let m = |p: &mut Peers, via, x: &Multiaddr, now| {
            p.merge_addrs("k", via, vec![x.clone()], now + ttl, now, 8)
        };
        assert_eq!(m(&mut p, "eth0", &a, now), std::slice::from_ref(&a));
        assert_eq!(m(&mut p, "eth1", &b, now), [b.clone(), a.clone()]);
        // eth0 again: replaced, not appended.
        assert_eq!(m(&mut p, "eth0", &a, now), [a.clone(), b.clone()]);
        tokio::time::advance(Duration::from_secs(11)).await;
        let later = Instant::now();
        assert!(p.admit("k", "i", ttl, later));
        assert_eq!(
            m(&mut p, "eth1", &b, later),
            std::slice::from_ref(&b),
            "eth0's sighting expired"
        );
        p.goodbye("i");
        assert!(p.addrs.is_empty());
    }
}
