//! Metrics: what each shard counts, and the Prometheus endpoint that reports it.
//!
//! Counting happens on the shard threads, into thread-local memory that only that thread
//! writes (no atomics or locks on the request path): requests, errors by code and latency per
//! API key here; fdatasyncs and partition traffic in the engine (`ringtail_engine::stats`); the
//! runtime's busy time in `ringtail_engine::io`. The HTTP server (`http`) runs on a thread of its
//! own; for each scrape it posts a job to every shard's inbox that copies that shard's figures
//! (`snapshot`), waits for the copies, and renders them (`render`). Names and meanings:
//! `docs/metrics.md`.

mod http;
mod render;
mod snapshot;

use std::cell::RefCell;
use std::time::Duration;

use hdrhistogram::Histogram;

pub use http::start;

/// One API key's requests on one shard.
#[derive(Clone)]
pub struct ApiStats {
    pub requests: u64,
    /// Frame parsed -> response sent (or dropped, for acks=0), microseconds.
    pub latency_us: Histogram<u64>,
    pub latency_us_sum: u64,
}

impl ApiStats {
    fn new() -> ApiStats {
        ApiStats {
            requests: 0,
            // 1 us to 1 hour at 2 significant digits; longer requests count as the top value.
            latency_us: Histogram::new_with_bounds(1, 3_600_000_000, 2).expect("valid bounds"),
            latency_us_sum: 0,
        }
    }
}

/// What a shard thread counts besides the engine's figures.
#[derive(Clone, Default)]
pub struct ShardCounters {
    /// By API key (index), allocated on first use.
    pub apis: Vec<Option<ApiStats>>,
    /// Non-zero error codes in responses: (API key, code) -> count.
    pub errors: std::collections::BTreeMap<(i16, i16), u64>,
    /// Jobs this shard sent to other shards' inboxes, and jobs it ran from its own.
    pub cross_shard_sent: u64,
    pub cross_shard_received: u64,
}

thread_local! {
    static COUNTERS: RefCell<ShardCounters> = RefCell::new(ShardCounters::default());
}

/// Largest API key counted (Kafka's keys are below 100).
const API_KEY_MAX: i16 = 127;

/// Counts one request of `api_key` answered after `took`.
pub fn request_done(api_key: i16, took: Duration) {
    if !(0..=API_KEY_MAX).contains(&api_key) {
        return;
    }
    let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
    COUNTERS.with(|counters| {
        let mut counters = counters.borrow_mut();
        let index = api_key as usize;
        if counters.apis.len() <= index {
            counters.apis.resize(index + 1, None);
        }
        let stats = counters.apis[index].get_or_insert_with(ApiStats::new);
        stats.requests += 1;
        stats.latency_us.saturating_record(us.max(1));
        stats.latency_us_sum = stats.latency_us_sum.saturating_add(us);
    });
}

/// Counts an error code written into a response of `api_key` (NONE is not counted).
pub fn api_error(api_key: i16, code: i16) {
    if code == 0 {
        return;
    }
    COUNTERS.with(|counters| {
        *counters
            .borrow_mut()
            .errors
            .entry((api_key, code))
            .or_default() += 1;
    });
}

/// Counts a job sent to another shard.
pub fn cross_shard_sent() {
    COUNTERS.with(|counters| counters.borrow_mut().cross_shard_sent += 1);
}

/// Counts a job taken from this shard's inbox.
pub fn cross_shard_received() {
    COUNTERS.with(|counters| counters.borrow_mut().cross_shard_received += 1);
}

/// A copy of the calling thread's counters.
fn counters() -> ShardCounters {
    COUNTERS.with(|counters| counters.borrow().clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_errors_are_counted_by_key() {
        request_done(0, Duration::from_micros(250));
        request_done(0, Duration::from_millis(3));
        request_done(12, Duration::from_micros(40));
        request_done(-1, Duration::from_micros(40)); // not a key: ignored
        api_error(0, 6);
        api_error(0, 0);
        api_error(0, 6);
        let counters = counters();
        let produce = counters.apis[0].as_ref().unwrap();
        assert_eq!(produce.requests, 2);
        assert_eq!(produce.latency_us_sum, 3_250);
        assert_eq!(counters.apis[12].as_ref().unwrap().requests, 1);
        assert_eq!(counters.errors.get(&(0, 6)), Some(&2));
        assert_eq!(counters.errors.len(), 1);
    }
}
