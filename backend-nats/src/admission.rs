//! Which peers one discoverer holds under `limits.max_peers`, and who gets a
//! place when the table is full.
//!
//! A flood of new ids must not push out the real agents. Real agents renew;
//! a flood's ids mostly do not. A peer that sent a record at least a second
//! after it was admitted is *established*. When a flood's backlog delays an
//! established peer's renewal past its slot and a new id takes the slot, the
//! peer is remembered (bounded, `max_peers` ids) and, when its renewal
//! arrives, it displaces a peer that never renewed: the caller removes that
//! one from the roster and counts it as a `peer_limit` drop. A flood that
//! renews too (every fake id at least twice, a second apart) is on equal
//! footing with real agents: against that, `require_signed` with
//! `trusted_keys` is the answer (forged records are rejected before
//! admission).

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

use crate::limits::Limits;

/// Why a record was not admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Over {
    Peers,
    Rate,
}

impl Over {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Over::Peers => "peer_limit",
            Over::Rate => "rate_limit",
        }
    }
}

/// A record that was admitted.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Admitted {
    /// It had a place, or there was a free one.
    Yes,
    /// An established peer came back to a full table and took the place of
    /// this peer, which never renewed: remove it from the roster.
    Displacing(String),
}

/// One held peer.
#[derive(Debug)]
struct Slot {
    /// Held until (renewed by every admitted record).
    until: Instant,
    /// When it was admitted.
    admitted_at: Instant,
    /// Admission order: the newest newcomer is displaced first, even when
    /// several were admitted at the same instant.
    order: u64,
    /// Start of its current second, and its records in it.
    second: Instant,
    records: u32,
    /// It sent a record a second or more after it was admitted.
    established: bool,
}

/// Admission state of one discoverer. Bounded: at most `max_peers` held
/// peers and `max_peers` remembered established ids.
#[derive(Debug)]
pub(crate) struct Admission {
    limits: Limits,
    peers: HashMap<String, Slot>,
    /// Established peers whose slot lapsed, oldest first.
    returning: VecDeque<String>,
    returning_set: HashSet<String>,
    /// Admissions so far, for `Slot::order`.
    admissions: u64,
}

impl Admission {
    pub(crate) fn new(limits: Limits) -> Self {
        Admission {
            limits,
            peers: HashMap::new(),
            returning: VecDeque::new(),
            returning_set: HashSet::new(),
            admissions: 0,
        }
    }

    /// Whether a record of `id` living `ttl` is admitted at `now`.
    pub(crate) fn admit(
        &mut self,
        id: &str,
        ttl: Duration,
        now: Instant,
    ) -> Result<Admitted, Over> {
        if let Some(slot) = self.peers.get_mut(id) {
            if now.duration_since(slot.second) >= Duration::from_secs(1) {
                slot.second = now;
                slot.records = 0;
            }
            if slot.records >= self.limits.max_records_per_sec {
                return Err(Over::Rate);
            }
            slot.records += 1;
            slot.until = slot.until.max(now + ttl);
            slot.established |= now.duration_since(slot.admitted_at) >= Duration::from_secs(1);
            return Ok(Admitted::Yes);
        }
        let mut admitted = Admitted::Yes;
        if self.peers.len() >= self.limits.max_peers {
            self.drop_lapsed(now);
        }
        if self.peers.len() >= self.limits.max_peers {
            if !self.returning_set.contains(id) {
                return Err(Over::Peers);
            }
            let Some(newcomer) = self.a_newcomer() else {
                return Err(Over::Peers);
            };
            self.peers.remove(&newcomer);
            admitted = Admitted::Displacing(newcomer);
        }
        let returning = self.returning_set.remove(id);
        if returning {
            self.returning.retain(|r| r != id);
        }
        self.admissions += 1;
        self.peers.insert(
            id.to_owned(),
            Slot {
                until: now + ttl,
                admitted_at: now,
                order: self.admissions,
                second: now,
                records: 1,
                // Back after a lapse: it renewed before.
                established: returning,
            },
        );
        Ok(admitted)
    }

    /// Frees the places of lapsed peers, remembering the established ones.
    fn drop_lapsed(&mut self, now: Instant) {
        let lapsed: Vec<String> = self
            .peers
            .iter()
            .filter(|(_, s)| s.until <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in lapsed {
            if let Some(slot) = self.peers.remove(&id) {
                if slot.established {
                    self.remember(id);
                }
            }
        }
    }

    fn remember(&mut self, id: String) {
        if self.returning_set.contains(&id) {
            return;
        }
        if self.returning.len() >= self.limits.max_peers {
            if let Some(old) = self.returning.pop_front() {
                self.returning_set.remove(&old);
            }
        }
        self.returning_set.insert(id.clone());
        self.returning.push_back(id);
    }

    /// The most recently admitted peer that never renewed.
    fn a_newcomer(&self) -> Option<String> {
        self.peers
            .iter()
            .filter(|(_, s)| !s.established)
            .max_by_key(|(_, s)| s.order)
            .map(|(id, _)| id.clone())
    }

    /// The peer left: its place is free, and it is not remembered.
    pub(crate) fn forget(&mut self, id: &str) {
        self.peers.remove(id);
        if self.returning_set.remove(id) {
            self.returning.retain(|r| r != id);
        }
    }

    pub(crate) fn max_addrs(&self) -> usize {
        self.limits.max_addrs
    }

    pub(crate) fn max_metadata_bytes(&self) -> usize {
        self.limits.max_metadata_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(max_peers: usize) -> Admission {
        Admission::new(Limits {
            max_peers,
            max_records_per_sec: 3,
            ..Default::default()
        })
    }

    #[tokio::test(start_paused = true)]
    async fn peers_and_rate_are_bounded() {
        let mut a = admission(2);
        let ttl = Duration::from_secs(15);
        let now = Instant::now();
        assert_eq!(a.admit("a", ttl, now), Ok(Admitted::Yes));
        assert_eq!(a.admit("b", ttl, now), Ok(Admitted::Yes));
        assert_eq!(a.admit("c", ttl, now), Err(Over::Peers));
        assert_eq!(a.admit("a", ttl, now), Ok(Admitted::Yes));
        assert_eq!(a.admit("a", ttl, now), Ok(Admitted::Yes));
        assert_eq!(a.admit("a", ttl, now), Err(Over::Rate));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(a.admit("a", ttl, Instant::now()), Ok(Admitted::Yes));
        a.forget("b");
        assert_eq!(a.admit("c", ttl, Instant::now()), Ok(Admitted::Yes));
        tokio::time::advance(Duration::from_secs(16)).await;
        assert_eq!(
            a.admit("d", ttl, Instant::now()),
            Ok(Admitted::Yes),
            "expired peers make room"
        );
    }

    /// The RESULTS.md flood case in small: real peers renew, their renewals
    /// are delayed past their slot by a backlog, fakes fill the table; the
    /// real peers still get back in, each displacing one fake.
    #[tokio::test(start_paused = true)]
    async fn established_peers_delayed_by_a_flood_displace_fakes() {
        let mut a = admission(4);
        let short = Duration::from_secs(6);
        let long = Duration::from_secs(120);
        for real in ["agent-1", "agent-2"] {
            assert_eq!(a.admit(real, short, Instant::now()), Ok(Admitted::Yes));
        }
        tokio::time::advance(Duration::from_secs(2)).await;
        for real in ["agent-1", "agent-2"] {
            assert_eq!(a.admit(real, short, Instant::now()), Ok(Admitted::Yes));
        }
        // The backlog: 20 s without a renewal, while fakes arrive.
        tokio::time::advance(Duration::from_secs(20)).await;
        let mut admitted = 0;
        for i in 0..100 {
            if a.admit(&format!("fake-{i}"), long, Instant::now()).is_ok() {
                admitted += 1;
            }
        }
        assert_eq!(admitted, 4, "the lapsed real peers' places went to fakes");
        for real in ["agent-1", "agent-2"] {
            match a.admit(real, short, Instant::now()) {
                Ok(Admitted::Displacing(fake)) => assert!(fake.starts_with("fake-")),
                other => panic!("{real}: {other:?}"),
            }
        }
        assert_eq!(a.peers.len(), 4, "still bounded");
        // A fake that never renewed does not come back the same way.
        assert_eq!(
            a.admit("fake-0", long, Instant::now()),
            Ok(Admitted::Yes),
            "fake-0 still holds its place"
        );
        assert_eq!(a.admit("fake-99", long, Instant::now()), Err(Over::Peers));
        // Once back, a real peer is established again: later fakes do not
        // displace it.
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(a.admit("agent-1", short, Instant::now()), Ok(Admitted::Yes));
        assert!(a.peers["agent-1"].established);
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_left_is_not_remembered_and_memory_is_bounded() {
        let mut a = admission(2);
        let ttl = Duration::from_secs(5);
        for i in 0..50 {
            let id = format!("p{i}");
            let _ = a.admit(&id, ttl, Instant::now());
            tokio::time::advance(Duration::from_secs(2)).await;
            let _ = a.admit(&id, ttl, Instant::now());
            tokio::time::advance(Duration::from_secs(10)).await;
        }
        assert!(a.peers.len() <= 2);
        assert!(a.returning.len() <= 2 && a.returning_set.len() == a.returning.len());
        let remembered = a.returning[0].clone();
        a.forget(&remembered);
        assert!(!a.returning_set.contains(&remembered));
    }
}
