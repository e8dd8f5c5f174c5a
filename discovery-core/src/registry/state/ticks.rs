//! Monotonic times in 8 bytes: an observation keeps three (when it expires,
//! where it is filed in the expiry queue, when its source last confirmed
//! it), and `Option<Instant>` takes 16 bytes to a `Tick`'s 8, with `None`
//! free. A tick counts nanoseconds from the state's epoch, offset by 2^62
//! so that times up to 146 years either side of it fit.

use std::num::NonZeroU64;
use std::time::Duration;

use tokio::time::Instant;

const OFFSET: u64 = 1 << 62;

/// A monotonic time, nanoseconds from the epoch + 2^62 (never 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct Tick(NonZeroU64);

impl Tick {
    fn of(n: u64) -> Tick {
        Tick(NonZeroU64::new(n).unwrap_or(NonZeroU64::MIN))
    }

    /// `d` later (saturating).
    pub(super) fn after(self, d: Duration) -> Tick {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        Tick::of(self.0.get().saturating_add(ns))
    }
}

/// Turns instants into ticks and back.
#[derive(Debug, Clone, Copy)]
pub(super) struct Clock {
    epoch: Instant,
    /// The last instant turned into a tick: the merge loop applies a whole
    /// batch at one instant, and the conversion was 3% of a renewal.
    last: (Instant, Tick),
}

impl Clock {
    pub(super) fn new(epoch: Instant) -> Self {
        Clock {
            epoch,
            last: (epoch, Tick::of(OFFSET)),
        }
    }

    pub(super) fn tick(&mut self, t: Instant) -> Tick {
        if t != self.last.0 {
            self.last = (t, self.convert(t));
        }
        self.last.1
    }

    fn convert(&self, t: Instant) -> Tick {
        let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        match t.checked_duration_since(self.epoch) {
            Some(d) => Tick::of(OFFSET.saturating_add(nanos(d))),
            None => Tick::of(OFFSET.saturating_sub(nanos(self.epoch - t))),
        }
    }

    pub(super) fn instant(&self, t: Tick) -> Instant {
        let n = t.0.get();
        if n >= OFFSET {
            self.epoch + Duration::from_nanos(n - OFFSET)
        } else {
            self.epoch - Duration::from_nanos(OFFSET - n)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::time::Instant;

    use super::Clock;

    /// Instants before, at and after the epoch come back exactly and keep
    /// their order; `after` adds.
    #[test]
    fn ticks_round_trip_and_order() {
        let epoch = Instant::now() + Duration::from_secs(3600);
        let mut clock = Clock::new(epoch);
        let times = [
            epoch - Duration::from_secs(3599),
            epoch - Duration::from_nanos(1),
            epoch,
            epoch + Duration::from_nanos(1),
            epoch + Duration::from_secs(86_400 * 365),
        ];
        for w in times.windows(2) {
            assert!(clock.tick(w[0]) < clock.tick(w[1]));
        }
        for t in times {
            let tick = clock.tick(t);
            assert_eq!(clock.instant(tick), t);
            assert_eq!(
                clock.tick(t).after(Duration::from_millis(1500)),
                clock.tick(t + Duration::from_millis(1500))
            );
        }
        assert_eq!(std::mem::size_of::<Option<super::Tick>>(), 8);
    }
}
