//! Broker-wide connection limits, Kafka's `max.connections` and `max.connections.per.ip`:
//! counted over every shard (a mutex taken once per accepted and once per closed connection,
//! never on the request path). A connection over a limit is closed as soon as it is accepted,
//! as Kafka does, and each refusal is logged at most once per interval.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::shard::Shared;

pub struct ConnectionLimits {
    max: usize,
    max_per_ip: usize,
    /// (all connections, connections per client address).
    counts: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// An admitted connection; dropping it gives its place back.
pub struct Permit {
    shared: Arc<Shared>,
    ip: IpAddr,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut counts = self.shared.limits.lock();
        counts.0 -= 1;
        if let Some(n) = counts.1.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.1.remove(&self.ip);
            }
        }
    }
}

impl ConnectionLimits {
    pub fn new(max: usize, max_per_ip: usize) -> ConnectionLimits {
        ConnectionLimits {
            max,
            max_per_ip,
            counts: Mutex::new((0, HashMap::new())),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (usize, HashMap<IpAddr, usize>)> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A place for a connection from `ip`, or which limit it is over.
    pub fn admit(shared: &Arc<Shared>, ip: IpAddr) -> Result<Permit, &'static str> {
        let limits = &shared.limits;
        let mut counts = limits.lock();
        if counts.0 >= limits.max {
            return Err("max.connections");
        }
        let from_ip = counts.1.get(&ip).copied().unwrap_or(0);
        if from_ip >= limits.max_per_ip {
            return Err("max.connections.per.ip");
        }
        counts.0 += 1;
        *counts.1.entry(ip).or_insert(0) += 1;
        drop(counts);
        Ok(Permit {
            shared: shared.clone(),
            ip,
        })
    }
}

/// Logs at most once per `every`, counting what it held back (accept failures under a flood
/// would otherwise log hundreds of lines a second).
pub struct RateLimitedLog {
    every: Duration,
    last: Mutex<Option<Instant>>,
    suppressed: AtomicU64,
}

impl RateLimitedLog {
    pub const fn new(every: Duration) -> RateLimitedLog {
        RateLimitedLog {
            every,
            last: Mutex::new(None),
            suppressed: AtomicU64::new(0),
        }
    }

    /// Some(count of messages held back since the last one) when this one should be logged.
    pub fn admit(&self) -> Option<u64> {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if last.is_some_and(|at| now.duration_since(at) < self.every) {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        *last = Some(now);
        Some(self.suppressed.swap(0, Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_limited_log_counts_what_it_held_back() {
        let log = RateLimitedLog::new(Duration::from_secs(3600));
        assert_eq!(log.admit(), Some(0));
        assert_eq!(log.admit(), None);
        assert_eq!(log.admit(), None);
        *log.last.lock().expect("lock") = Some(Instant::now() - Duration::from_secs(7200));
        assert_eq!(log.admit(), Some(2));
    }
}
