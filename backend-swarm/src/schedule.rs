//! When to refresh: debounced events, the periodic resync, fast polls while a
//! service converges, and retries with backoff after a failure.

use std::time::Duration;

use tokio::time::Instant;

/// How long fast polling lasts after the event (or the first unsettled
/// refresh) that started it.
pub(crate) const CONVERGE_FOR: Duration = Duration::from_secs(60);
/// First retry delay after a failed refresh; doubles up to `resync`.
pub(crate) const FIRST_RETRY: Duration = Duration::from_millis(500);
/// How long refreshes follow an event at the converge pace, converged or not.
const EVENT_FOLLOW: Duration = Duration::from_secs(3);

/// A burst of events delays its refresh by at most this many debounce periods.
const MAX_WAIT_FACTOR: u32 = 10;

#[derive(Debug)]
pub(crate) struct Schedule {
    debounce: Duration,
    resync: Duration,
    converge_poll: Duration,
    burst_start: Option<Instant>,
    last_event: Option<Instant>,
    next_resync: Instant,
    converge_until: Option<Instant>,
    /// After an event, keep polling briefly even when the service looks
    /// converged: a container's `die` event arrives before Swarm marks its
    /// task failed, so the first refresh still sees it running.
    follow_until: Option<Instant>,
    next_converge_poll: Option<Instant>,
    retry_at: Option<Instant>,
    retry_delay: Duration,
    settled: bool,
}

impl Schedule {
    /// A schedule whose first refresh is due at once.
    pub(crate) fn new(
        now: Instant,
        resync: Duration,
        debounce: Duration,
        converge_poll: Duration,
    ) -> Self {
        Schedule {
            debounce,
            resync,
            converge_poll,
            burst_start: None,
            last_event: None,
            next_resync: now,
            converge_until: None,
            follow_until: None,
            next_converge_poll: None,
            retry_at: None,
            retry_delay: FIRST_RETRY.min(resync),
            settled: true,
        }
    }

    /// A relevant event arrived.
    pub(crate) fn event(&mut self, now: Instant) {
        self.burst_start.get_or_insert(now);
        self.last_event = Some(now);
        self.converge_until = Some(now + CONVERGE_FOR);
        self.follow_until = Some(now + EVENT_FOLLOW);
    }

    /// Something may have been missed (the event stream broke): refresh soon.
    pub(crate) fn poke(&mut self, now: Instant) {
        self.event(now);
    }

    /// When the next refresh is due.
    pub(crate) fn next_due(&self) -> Instant {
        let mut due = self.next_resync;
        if let (Some(start), Some(last)) = (self.burst_start, self.last_event) {
            let fire = (last + self.debounce).min(start + self.debounce * MAX_WAIT_FACTOR);
            due = due.min(fire);
        }
        if let Some(t) = self.next_converge_poll {
            due = due.min(t);
        }
        if let Some(t) = self.retry_at {
            due = due.min(t);
        }
        due
    }

    /// A refresh finished at `now`; `converged` is ignored when it failed.
    pub(crate) fn refreshed(&mut self, now: Instant, ok: bool, converged: bool) {
        self.burst_start = None;
        self.last_event = None;
        self.next_converge_poll = None;
        if !ok {
            self.retry_at = Some(now + self.retry_delay);
            self.retry_delay = (self.retry_delay * 2).min(self.resync);
            self.next_resync = now + self.resync;
            return;
        }
        self.retry_at = None;
        self.retry_delay = FIRST_RETRY.min(self.resync);
        self.next_resync = now + self.resync;
        if converged {
            self.settled = true;
            self.converge_until = None;
            if self.follow_until.is_some_and(|f| now < f) {
                self.next_converge_poll = Some(now + self.converge_poll);
            }
            return;
        }
        if self.settled {
            // Newly unsettled without an event (e.g. a crash on another node):
            // follow it for a while too.
            self.settled = false;
            let until = now + CONVERGE_FOR;
            self.converge_until = Some(self.converge_until.map_or(until, |u| u.max(until)));
        }
        if let Some(until) = self.converge_until {
            if now < until {
                self.next_converge_poll = Some(now + self.converge_poll);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn sched() -> (Instant, Schedule) {
        let t0 = Instant::now();
        (
            t0,
            Schedule::new(t0, Duration::from_secs(5), 100 * MS, 250 * MS),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn first_refresh_at_once_then_resync() {
        let (t0, mut s) = sched();
        assert_eq!(s.next_due(), t0);
        s.refreshed(t0, true, true);
        assert_eq!(s.next_due(), t0 + Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn events_are_debounced_with_a_cap() {
        let (t0, mut s) = sched();
        s.refreshed(t0, true, true);
        s.event(t0 + 10 * MS);
        assert_eq!(s.next_due(), t0 + 110 * MS);
        s.event(t0 + 60 * MS);
        assert_eq!(
            s.next_due(),
            t0 + 160 * MS,
            "a later event pushes the refresh back"
        );
        // A steady stream every 50 ms is not allowed to starve the refresh:
        for i in 2..40u32 {
            s.event(t0 + 10 * MS + 50 * MS * i);
        }
        assert_eq!(
            s.next_due(),
            t0 + 10 * MS + 1000 * MS,
            "at most 10 x debounce after the burst began"
        );
        s.refreshed(t0 + 1010 * MS, true, true);
        assert_eq!(
            s.next_due(),
            t0 + 1010 * MS + 250 * MS,
            "converged, but events are followed for EVENT_FOLLOW"
        );
        let last_event = t0 + 10 * MS + 50 * MS * 39;
        let mut t = t0 + 1010 * MS;
        while t < last_event + EVENT_FOLLOW {
            t = s.next_due();
            s.refreshed(t, true, true);
        }
        assert_eq!(s.next_due(), t + Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn polls_fast_while_converging_for_a_bounded_time() {
        let (t0, mut s) = sched();
        s.refreshed(t0, true, true);
        s.event(t0);
        let mut now = s.next_due();
        assert_eq!(now, t0 + 100 * MS);
        s.refreshed(now, true, false);
        assert_eq!(s.next_due(), now + 250 * MS);
        now += 250 * MS;
        s.refreshed(now, true, true);
        assert_eq!(
            s.next_due(),
            now + 250 * MS,
            "converged, still followed: a die event comes before Swarm marks the task"
        );
        while now < t0 + EVENT_FOLLOW {
            now = s.next_due();
            s.refreshed(now, true, true);
        }
        assert_eq!(
            s.next_due(),
            now + Duration::from_secs(5),
            "settled: back to resync"
        );

        // Unsettled without an event: followed for CONVERGE_FOR, then resync only.
        let start = now + Duration::from_secs(5);
        s.refreshed(start, true, false);
        assert_eq!(s.next_due(), start + 250 * MS);
        let mut t = start;
        while t < start + CONVERGE_FOR {
            t = s.next_due();
            s.refreshed(t, true, false);
        }
        assert_eq!(s.next_due(), t + Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn failures_retry_with_backoff_up_to_resync() {
        let (t0, mut s) = sched();
        let mut now = t0;
        let mut delays = Vec::new();
        for _ in 0..6 {
            s.refreshed(now, false, false);
            let next = s.next_due();
            delays.push(next - now);
            now = next;
        }
        assert_eq!(
            delays,
            [500, 1000, 2000, 4000, 5000, 5000]
                .map(|ms| ms * MS)
                .to_vec()
        );
        s.refreshed(now, true, true);
        s.refreshed(now, false, false);
        assert_eq!(
            s.next_due() - now,
            500 * MS,
            "backoff resets after a success"
        );
    }
}
