//! Per-stage timing of the produce path, off unless switched on (`ringtail --stage-timing`).
//!
//! Each shard thread records into its own thread-local histograms (no locks, no sharing on the
//! hot path); [`flush`] merges a thread's histograms into the process-wide set, which
//! [`report`] prints. When timing is off every `record` is one relaxed atomic load.
//!
//! Stages are named by what a request waits for, in the order it meets them; each is an HDR
//! histogram of microseconds, merged across shards (percentiles are never averaged).

use std::cell::RefCell;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// The stages, in the order an acks=all produce request passes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Frame parsed -> the partition work handed to its owner (decode, topic lookup).
    Dispatch,
    /// Sent to another shard's inbox -> the owner started the job.
    HopToOwner,
    /// Batch appended -> its write job started (waiting behind the write in flight).
    QueuedForWrite,
    /// One WRITEV of a job.
    Write,
    /// A waiter asked for durability -> the fdatasync covering it started (waiting for the
    /// write, or for an fdatasync already in flight).
    WaitForSync,
    /// One fdatasync.
    Fsync,
    /// The owner finished (appended and acknowledged) -> the requesting shard saw the reply.
    HopBack,
    /// Response ready -> the earlier responses of the connection were sent (in-order wait).
    ResponseOrder,
    /// Writing the response to the socket.
    ResponseSend,
    /// Frame parsed -> response sent: the whole request as the broker sees it.
    Total,
}

const STAGES: [Stage; 10] = [
    Stage::Dispatch,
    Stage::HopToOwner,
    Stage::QueuedForWrite,
    Stage::Write,
    Stage::WaitForSync,
    Stage::Fsync,
    Stage::HopBack,
    Stage::ResponseOrder,
    Stage::ResponseSend,
    Stage::Total,
];

impl Stage {
    fn name(self) -> &'static str {
        match self {
            Stage::Dispatch => "dispatch",
            Stage::HopToOwner => "hop to owner",
            Stage::QueuedForWrite => "queued for write",
            Stage::Write => "write",
            Stage::WaitForSync => "wait for fsync start",
            Stage::Fsync => "fsync",
            Stage::HopBack => "hop back",
            Stage::ResponseOrder => "response order wait",
            Stage::ResponseSend => "response send",
            Stage::Total => "total (parsed -> sent)",
        }
    }

    /// Its place in `STAGES`, which lists the variants in declaration order.
    fn index(self) -> usize {
        self as usize
    }
}

static ENABLED: AtomicBool = AtomicBool::new(false);
static MERGED: Mutex<Option<Vec<Histogram<u64>>>> = Mutex::new(None);

thread_local! {
    static LOCAL: RefCell<Option<Vec<Histogram<u64>>>> = const { RefCell::new(None) };
}

fn new_set() -> Vec<Histogram<u64>> {
    STAGES
        .iter()
        .map(|_| Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds"))
        .collect()
}

/// Switches timing on for the whole process (before the shards start).
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// `Some(now)` when timing is on: the start of a stage to record later.
pub fn start() -> Option<Instant> {
    enabled().then(Instant::now)
}

/// Records the time since `since` (if timing was on when it was taken) under `stage`.
pub fn record_since(stage: Stage, since: Option<Instant>) {
    if let Some(since) = since {
        record(stage, since.elapsed());
    }
}

/// Records one duration under `stage` on this thread.
pub fn record(stage: Stage, duration: Duration) {
    if !enabled() {
        return;
    }
    let us = (duration.as_micros() as u64).clamp(1, 60_000_000);
    LOCAL.with(|local| {
        let mut local = local.borrow_mut();
        let set = local.get_or_insert_with(new_set);
        set[stage.index()].saturating_record(us);
    });
}

/// Merges this thread's histograms into the process-wide set (a shard calls it as it stops).
pub fn flush() {
    let Some(local) = LOCAL.with(|local| local.borrow_mut().take()) else {
        return;
    };
    let mut merged = MERGED.lock().unwrap_or_else(|e| e.into_inner());
    let merged = merged.get_or_insert_with(new_set);
    for (into, from) in merged.iter_mut().zip(&local) {
        // Same bounds on both sides: adding cannot fail.
        let _ = into.add(from);
    }
}

/// The merged breakdown as a table (count, p50, p99, p99.9, max in microseconds), or `None`
/// when nothing was recorded.
pub fn report() -> Option<String> {
    let merged = MERGED.lock().unwrap_or_else(|e| e.into_inner());
    let set = merged.as_ref()?;
    let mut out = String::from(
        "stage                        count      p50      p99    p99.9      max (us)\n",
    );
    for (stage, h) in STAGES.iter().zip(set) {
        if h.is_empty() {
            continue;
        }
        let _ = writeln!(
            out,
            "{:<24} {:>9} {:>8} {:>8} {:>8} {:>8}",
            stage.name(),
            h.len(),
            h.value_at_quantile(0.5),
            h.value_at_quantile(0.99),
            h.value_at_quantile(0.999),
            h.max()
        );
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_are_listed_in_declaration_order() {
        for (i, stage) in STAGES.iter().enumerate() {
            assert_eq!(stage.index(), i, "{stage:?}");
        }
    }

    #[test]
    fn records_merge_and_report_per_stage() {
        enable();
        record(Stage::Fsync, Duration::from_micros(200));
        record(Stage::Fsync, Duration::from_micros(400));
        record(Stage::Write, Duration::from_micros(30));
        std::thread::spawn(|| {
            record(Stage::Fsync, Duration::from_micros(800));
            flush();
        })
        .join()
        .expect("thread");
        flush();
        let table = report().expect("something was recorded");
        let fsync = table
            .lines()
            .find(|l| l.starts_with("fsync"))
            .expect("an fsync row");
        let columns: Vec<&str> = fsync.split_whitespace().collect();
        assert_eq!(columns[1], "3", "three fsyncs from two threads: {fsync}");
        assert!(table.lines().any(|l| l.starts_with("write ")), "{table}");
        assert!(
            !table.contains("hop back"),
            "unrecorded stages are left out"
        );
    }
}
