//! Counting and latency: each worker thread keeps its own HDR histogram and sends deltas to one
//! reporter thread, which merges them (never averaging percentiles), prints a progress line every
//! second and returns the totals.

use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// Latencies are recorded in microseconds, up to 100 s, with 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000, 3).expect("valid histogram bounds")
}

/// What a worker did since its last report.
pub struct Delta {
    pub messages: u64,
    pub bytes: u64,
    pub errors: u64,
    /// Requests refused with a retriable error and sent again.
    pub retries: u64,
    pub latency_us: Histogram<u64>,
}

impl Delta {
    pub fn new() -> Delta {
        Delta {
            messages: 0,
            bytes: 0,
            errors: 0,
            retries: 0,
            latency_us: new_histogram(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.messages == 0 && self.errors == 0 && self.retries == 0 && self.latency_us.is_empty()
    }
}

/// A worker's handle for sending deltas about once a second.
pub struct Meter {
    tx: Sender<Delta>,
    pending: Delta,
    last_sent: Instant,
}

impl Meter {
    pub fn record(&mut self, messages: u64, bytes: u64, latency_us: Option<u64>) {
        self.pending.messages += messages;
        self.pending.bytes += bytes;
        if let Some(us) = latency_us {
            self.pending.latency_us.saturating_record(us.max(1));
        }
        self.maybe_flush();
    }

    /// Records a latency that stands for `count` messages (end-to-end, per batch).
    pub fn record_latency_n(&mut self, latency_us: u64, count: u64) {
        let _ = self
            .pending
            .latency_us
            .record_n(latency_us.clamp(1, 100_000_000), count);
        self.maybe_flush();
    }

    pub fn error(&mut self) {
        self.pending.errors += 1;
    }

    pub fn retry(&mut self) {
        self.pending.retries += 1;
        self.maybe_flush();
    }

    fn maybe_flush(&mut self) {
        if self.last_sent.elapsed() >= Duration::from_millis(200) {
            self.flush();
        }
    }

    pub fn flush(&mut self) {
        if !self.pending.is_empty() {
            let delta = std::mem::replace(&mut self.pending, Delta::new());
            let _ = self.tx.send(delta);
        }
        self.last_sent = Instant::now();
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Totals of a run.
pub struct Totals {
    pub messages: u64,
    pub bytes: u64,
    pub errors: u64,
    /// Requests refused with a retriable error (a partition moving) and sent again.
    pub retries: u64,
    pub seconds: f64,
    pub latency_us: Histogram<u64>,
}

impl Totals {
    pub fn msgs_per_sec(&self) -> f64 {
        self.messages as f64 / self.seconds.max(1e-9)
    }
    pub fn mb_per_sec(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.seconds.max(1e-9)
    }
    pub fn percentile_us(&self, q: f64) -> u64 {
        if self.latency_us.is_empty() {
            0
        } else {
            self.latency_us.value_at_quantile(q)
        }
    }
}

pub struct Reporter {
    tx: Sender<Delta>,
    handle: JoinHandle<Totals>,
}

impl Reporter {
    /// Starts the reporter; `label` prefixes progress lines (stderr).
    pub fn start(label: &'static str) -> Reporter {
        let (tx, rx) = mpsc::channel();
        let handle = std::thread::spawn(move || report(label, rx));
        Reporter { tx, handle }
    }

    pub fn meter(&self) -> Meter {
        Meter {
            tx: self.tx.clone(),
            pending: Delta::new(),
            last_sent: Instant::now(),
        }
    }

    /// Waits for every meter to be dropped, then returns the totals. `started` marks time zero
    /// (warm-up excluded by the caller).
    pub fn finish(self, started: Instant) -> Totals {
        drop(self.tx);
        let mut totals = self.handle.join().expect("reporter thread");
        totals.seconds = started.elapsed().as_secs_f64();
        totals
    }
}

static QUIET: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Stops (or resumes) the per-second progress lines (a sweep prints its own).
pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, std::sync::atomic::Ordering::Relaxed);
}

fn report(label: &str, rx: Receiver<Delta>) -> Totals {
    let started = Instant::now();
    let mut totals = Totals {
        messages: 0,
        bytes: 0,
        errors: 0,
        retries: 0,
        seconds: 0.0,
        latency_us: new_histogram(),
    };
    let mut window = (0u64, 0u64);
    let mut next_line = started + Duration::from_secs(1);
    loop {
        let timeout = next_line.saturating_duration_since(Instant::now());
        match rx.recv_timeout(timeout) {
            Ok(delta) => {
                totals.messages += delta.messages;
                totals.bytes += delta.bytes;
                totals.errors += delta.errors;
                totals.retries += delta.retries;
                totals
                    .latency_us
                    .add(&delta.latency_us)
                    .expect("same histogram bounds");
                window.0 += delta.messages;
                window.1 += delta.bytes;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return totals,
        }
        if Instant::now() >= next_line && QUIET.load(std::sync::atomic::Ordering::Relaxed) {
            next_line += Duration::from_secs(1);
            window = (0, 0);
        } else if Instant::now() >= next_line {
            let p99 = if totals.latency_us.is_empty() {
                0
            } else {
                totals.latency_us.value_at_quantile(0.99)
            };
            eprintln!(
                "{label} {:>5.0}s {:>12} msg/s {:>9.1} MB/s  p99 so far {:>9} us{}",
                started.elapsed().as_secs_f64(),
                window.0,
                window.1 as f64 / 1e6,
                p99,
                if totals.errors > 0 {
                    format!("  errors {}", totals.errors)
                } else {
                    String::new()
                }
            );
            window = (0, 0);
            next_line += Duration::from_secs(1);
        }
    }
}
