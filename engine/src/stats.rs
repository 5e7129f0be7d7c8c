//! Always-on counters of the storage path, for the broker's metrics: per-partition traffic
//! ([`Traffic`], kept in each partition) and, per shard thread, fdatasync latency and size.
//!
//! Everything here is written by the owning shard thread only and read by that thread's
//! metrics job (no atomics, no locks): a record is a few additions into thread-local memory.
//! Latency and size are HDR histograms, so a scrape can cut them into any buckets.

use std::cell::{Cell, RefCell};
use std::time::Duration;

use hdrhistogram::Histogram;

/// Records in and out of one partition since it was opened.
#[derive(Default)]
pub struct Traffic {
    messages_in: Cell<u64>,
    bytes_in: Cell<u64>,
    messages_out: Cell<u64>,
    bytes_out: Cell<u64>,
}

/// A copy of a partition's [`Traffic`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrafficCounts {
    /// Records appended (duplicates of an idempotent producer's retries are not counted).
    pub messages_in: u64,
    /// Batch bytes appended.
    pub bytes_in: u64,
    /// Offsets spanned by the batches served to fetches (records, in a log with no gaps).
    pub messages_out: u64,
    /// Batch bytes served to fetches.
    pub bytes_out: u64,
}

impl Traffic {
    pub(crate) fn appended(&self, messages: u64, bytes: u64) {
        self.messages_in.set(self.messages_in.get() + messages);
        self.bytes_in.set(self.bytes_in.get() + bytes);
    }

    pub(crate) fn served(&self, messages: u64, bytes: u64) {
        self.messages_out.set(self.messages_out.get() + messages);
        self.bytes_out.set(self.bytes_out.get() + bytes);
    }

    pub fn counts(&self) -> TrafficCounts {
        TrafficCounts {
            messages_in: self.messages_in.get(),
            bytes_in: self.bytes_in.get(),
            messages_out: self.messages_out.get(),
            bytes_out: self.bytes_out.get(),
        }
    }
}

/// fdatasyncs of segment files on one shard thread: latency in microseconds and the bytes each
/// made durable.
#[derive(Clone, Debug)]
pub struct FsyncStats {
    pub latency_us: Histogram<u64>,
    pub bytes: Histogram<u64>,
    /// Exact sums (the histograms' values are rounded to their precision).
    pub latency_us_sum: u64,
    pub bytes_sum: u64,
}

impl FsyncStats {
    fn new() -> FsyncStats {
        FsyncStats {
            // 1 us to 1 hour, and 1 byte to 1 TiB, at 2 significant digits (1%); larger
            // values are clamped to the top.
            latency_us: Histogram::new_with_bounds(1, 3_600_000_000, 2).expect("valid bounds"),
            bytes: Histogram::new_with_bounds(1, 1 << 40, 2).expect("valid bounds"),
            latency_us_sum: 0,
            bytes_sum: 0,
        }
    }
}

thread_local! {
    static FSYNCS: RefCell<FsyncStats> = RefCell::new(FsyncStats::new());
}

/// Counts one fdatasync of a segment file that took `took` and covered `bytes` new bytes.
pub(crate) fn record_fsync(took: Duration, bytes: u64) {
    let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
    FSYNCS.with(|stats| {
        let mut stats = stats.borrow_mut();
        stats.latency_us.saturating_record(us.max(1));
        stats.bytes.saturating_record(bytes.max(1));
        stats.latency_us_sum = stats.latency_us_sum.saturating_add(us);
        stats.bytes_sum = stats.bytes_sum.saturating_add(bytes);
    });
}

/// The calling thread's fdatasync statistics so far.
pub fn fsync_stats() -> FsyncStats {
    FSYNCS.with(|stats| stats.borrow().clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fsyncs_are_counted_per_thread() {
        record_fsync(Duration::from_micros(300), 20_000);
        record_fsync(Duration::from_millis(2), 0);
        let stats = fsync_stats();
        assert_eq!(stats.latency_us.len(), 2);
        assert_eq!(stats.latency_us_sum, 2_300);
        assert_eq!(stats.bytes_sum, 20_000);
        assert_eq!(stats.latency_us.count_between(0, 1_000), 1);
        let other = std::thread::spawn(|| fsync_stats().latency_us.len())
            .join()
            .expect("the other thread");
        assert_eq!(other, 0, "another thread has its own");
    }

    #[test]
    fn traffic_adds_up() {
        let traffic = Traffic::default();
        traffic.appended(100, 20_000);
        traffic.appended(1, 300);
        traffic.served(101, 20_300);
        assert_eq!(
            traffic.counts(),
            TrafficCounts {
                messages_in: 101,
                bytes_in: 20_300,
                messages_out: 101,
                bytes_out: 20_300
            }
        );
    }
}
