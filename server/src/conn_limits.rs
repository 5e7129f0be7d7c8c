//! Broker-wide limits, over every shard: Kafka's `max.connections` and `max.connections.per.ip`
//! (a mutex taken once per accepted and once per closed connection, never per request; a
//! connection over a limit is closed as soon as it is accepted, as Kafka does), and
//! `queued.max.request.bytes`, the bytes of requests being read or waiting for their answer (an
//! atomic counter; a connection whose next frame does not fit waits, reading nothing, so what a
//! flood of half-sent requests can pin stays bounded).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct ConnectionLimits {
    max: usize,
    max_per_ip: usize,
    queued_bytes_max: usize,
    queued_bytes: AtomicUsize,
    /// (all connections, connections per client address).
    counts: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// An admitted connection; dropping it gives its place back.
pub struct Permit {
    limits: Arc<ConnectionLimits>,
    ip: IpAddr,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut counts = self.limits.lock();
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
    pub fn new(max: usize, max_per_ip: usize, queued_bytes_max: usize) -> ConnectionLimits {
        ConnectionLimits {
            max,
            max_per_ip,
            queued_bytes_max,
            queued_bytes: AtomicUsize::new(0),
            counts: Mutex::new((0, HashMap::new())),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (usize, HashMap<IpAddr, usize>)> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A place for a connection from `ip`, or which limit it is over.
    pub fn admit(limits: &Arc<ConnectionLimits>, ip: IpAddr) -> Result<Permit, &'static str> {
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
            limits: limits.clone(),
            ip,
        })
    }
}

/// Bytes of one request frame, counted in `queued.max.request.bytes` until dropped.
pub struct Reservation {
    limits: Arc<ConnectionLimits>,
    bytes: usize,
}

impl Reservation {
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.limits
            .queued_bytes
            .fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// Waits (polling, without blocking the shard) until `bytes` fit under
/// `queued.max.request.bytes`; a frame is always admitted when nothing else is queued, so one
/// larger than the limit (up to `socket.request.max.bytes`) still passes.
pub async fn reserve(limits: &Arc<ConnectionLimits>, bytes: usize) -> Reservation {
    let queued = &limits.queued_bytes;
    let max = limits.queued_bytes_max;
    loop {
        let now = queued.load(Ordering::Acquire);
        if (now == 0 || now + bytes <= max)
            && queued
                .compare_exchange(now, now + bytes, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            return Reservation {
                limits: limits.clone(),
                bytes,
            };
        }
        if now != 0 && now + bytes > max {
            ringtail_engine::io::sleep(Duration::from_millis(2)).await;
        }
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
