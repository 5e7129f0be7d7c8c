//! The broker's sense of time, injectable: the group coordinator's deadlines (session and
//! rebalance timeouts, the initial rebalance delay), the timestamps it writes (commits, group
//! metadata), offsets expiry, and the shard's retention and `segment.ms` all read a [`Clock`].
//!
//! Production uses [`SystemClock`]. Tests use [`ManualClock`], which moves only when told to, so
//! a session timeout of 10 s is tested by advancing 10 s, not by sleeping. A clock lives on one
//! shard thread (`Rc`); nothing here is shared across threads.

use std::cell::Cell;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub trait Clock {
    /// Monotonic time, for deadlines.
    fn now(&self) -> Instant;
    /// Wall-clock milliseconds since the Unix epoch, for timestamps written to logs and for
    /// retention by age.
    fn now_ms(&self) -> i64;
}

/// The operating system's clocks.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn now_ms(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
    }
}

/// Virtual time for tests: starts at a given wall-clock millisecond and moves by `advance`.
#[derive(Debug)]
pub struct ManualClock {
    start: Instant,
    start_ms: i64,
    elapsed: Cell<Duration>,
}

impl ManualClock {
    pub fn new(start_ms: i64) -> ManualClock {
        ManualClock {
            start: Instant::now(),
            start_ms,
            elapsed: Cell::new(Duration::ZERO),
        }
    }

    pub fn advance(&self, by: Duration) {
        self.elapsed.set(self.elapsed.get() + by);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.start + self.elapsed.get()
    }

    fn now_ms(&self) -> i64 {
        self.start_ms + self.elapsed.get().as_millis() as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_advanced() {
        let clock = ManualClock::new(1_000);
        let (t0, ms0) = (clock.now(), clock.now_ms());
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!((clock.now(), clock.now_ms()), (t0, ms0));
        clock.advance(Duration::from_millis(1_500));
        assert_eq!(clock.now() - t0, Duration::from_millis(1_500));
        assert_eq!(clock.now_ms(), 2_500);
    }
}
