//! One scatter-gather round: when is a query's set of replies complete?
//!
//! NATS has no end-of-replies marker. A round ends at the first of: the
//! expected number of distinct responders answered; no reply arrived for the
//! quiet gap (counted from the query itself while nothing came yet); the hard
//! timeout; or the server said nobody listens (status 503).

use std::collections::HashSet;
use std::time::Duration;

use tokio::time::Instant;

/// Bound on the ids remembered per round (beyond it, counting stops growing).
const MAX_TRACKED: usize = 1 << 20;

/// Why a round ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum End {
    /// `expected_peers` distinct responders answered.
    Expected,
    /// The quiet gap passed without a reply.
    Quiet,
    /// The hard timeout passed.
    Timeout,
    /// The server reported no responders.
    NoResponders,
}

#[derive(Debug)]
pub(crate) struct Gather {
    /// Started at; for the log.
    pub started: Instant,
    last: Instant,
    quiet: Duration,
    hard: Instant,
    expected: Option<usize>,
    seen: HashSet<String>,
    ended: Option<End>,
}

impl Gather {
    pub(crate) fn new(
        now: Instant,
        quiet: Duration,
        timeout: Duration,
        expected: Option<usize>,
    ) -> Self {
        Gather {
            started: now,
            last: now,
            quiet,
            hard: now + timeout,
            expected,
            seen: HashSet::new(),
            ended: None,
        }
    }

    /// A reply from `id` arrived.
    pub(crate) fn reply(&mut self, id: &str, now: Instant) {
        if self.ended.is_some() {
            return;
        }
        self.last = now;
        if self.seen.len() < MAX_TRACKED && !self.seen.contains(id) {
            self.seen.insert(id.to_owned());
        }
        if self.expected.is_some_and(|n| self.seen.len() >= n) {
            self.ended = Some(End::Expected);
        }
    }

    /// The server said no one is subscribed to the query subject.
    pub(crate) fn no_responders(&mut self) {
        if self.ended.is_none() && self.seen.is_empty() {
            self.ended = Some(End::NoResponders);
        }
    }

    /// When the round ends unless a reply comes first.
    pub(crate) fn deadline(&self) -> Instant {
        (self.last + self.quiet).min(self.hard)
    }

    /// Checks the clock; returns how the round ended, if it did.
    pub(crate) fn poll(&mut self, now: Instant) -> Option<End> {
        if self.ended.is_none() {
            if now >= self.hard {
                self.ended = Some(End::Timeout);
            } else if now >= self.last + self.quiet {
                self.ended = Some(End::Quiet);
            }
        }
        self.ended
    }

    /// Distinct responders so far.
    pub(crate) fn count(&self) -> usize {
        self.seen.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const Q: Duration = Duration::from_millis(300);
    const T: Duration = Duration::from_secs(3);

    #[tokio::test(start_paused = true)]
    async fn ends_after_a_quiet_gap() {
        let mut g = Gather::new(Instant::now(), Q, T, None);
        assert_eq!(g.deadline(), g.started + Q);
        tokio::time::advance(Duration::from_millis(200)).await;
        g.reply("a", Instant::now());
        assert_eq!(g.poll(Instant::now()), None);
        tokio::time::advance(Duration::from_millis(299)).await;
        assert_eq!(
            g.poll(Instant::now()),
            None,
            "the gap restarts at each reply"
        );
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(g.poll(Instant::now()), Some(End::Quiet));
        assert_eq!(g.count(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn ends_at_the_expected_count_without_waiting() {
        let mut g = Gather::new(Instant::now(), Q, T, Some(3));
        for id in ["a", "b", "a", "c"] {
            assert_eq!(g.poll(Instant::now()), None);
            g.reply(id, Instant::now());
        }
        assert_eq!(g.poll(Instant::now()), Some(End::Expected));
        assert_eq!(g.count(), 3, "duplicates count once");
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickle_is_cut_by_the_timeout() {
        let mut g = Gather::new(Instant::now(), Q, T, None);
        for i in 0..20 {
            tokio::time::advance(Duration::from_millis(250)).await;
            g.reply(&i.to_string(), Instant::now());
            if g.poll(Instant::now()).is_some() {
                break;
            }
        }
        assert_eq!(g.poll(Instant::now()), Some(End::Timeout));
        assert!(g.deadline() <= g.started + T);
    }

    #[tokio::test(start_paused = true)]
    async fn no_responders_ends_an_empty_round_only() {
        let mut g = Gather::new(Instant::now(), Q, T, None);
        g.no_responders();
        assert_eq!(g.poll(Instant::now()), Some(End::NoResponders));
        let mut g = Gather::new(Instant::now(), Q, T, None);
        g.reply("a", Instant::now());
        g.no_responders();
        assert_eq!(g.poll(Instant::now()), None);
    }
}
