//! Property test: random sequences of append / read / roll / retention / timestamp lookup /
//! fdatasync / clean reopen / power failure, checked against a simple in-memory model of the log.
//!
//! The log lives on the simulated disk (`storage::sim`), so a power failure loses what no
//! fdatasync covered: the model then requires the log to keep at least every batch an explicit
//! sync covered, to keep a prefix of the rest, and to agree with it byte for byte on that prefix.
//!
//! Replay a failure with `PROPTEST_SEED`-free determinism: proptest prints the minimal failing
//! sequence, and `RINGTAIL_SEED=<n>` fixes the generator seed (printed at the start). The
//! simulated disk is seeded from the sequence, so a replayed sequence crashes the same way.

mod common;

use std::path::Path;

use common::{batch, read_all, run, split_batches};
use proptest::prelude::*;
use ringtail_engine::format::batch::parse_header;
use ringtail_engine::storage::sim::SimDisk;
use ringtail_engine::{LogConfig, Offset, Partition};

const SEGMENT_BYTES: u64 = 2048;
const RETENTION_BYTES: u64 = 6000;
const RETENTION_MS: i64 = 5_000;

#[derive(Clone, Debug)]
enum Op {
    Append {
        count: i32,
        value_len: usize,
    },
    Read {
        pick: u64,
        max_bytes: usize,
    },
    LookupTimestamp {
        pick: u64,
    },
    AdvanceClock {
        ms: i64,
    },
    Retention,
    /// Waits for an fdatasync covering every appended batch.
    Sync,
    /// A clean close and reopen, or (`clean: false`) a power failure and reopen.
    Reopen {
        clean: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1..12i32, 0..300usize).prop_map(|(count, value_len)| Op::Append { count, value_len }),
        3 => (any::<u64>(), 1..4000usize).prop_map(|(pick, max_bytes)| Op::Read { pick, max_bytes }),
        1 => any::<u64>().prop_map(|pick| Op::LookupTimestamp { pick }),
        1 => (1..3000i64).prop_map(|ms| Op::AdvanceClock { ms }),
        1 => Just(Op::Retention),
        1 => Just(Op::Sync),
        1 => any::<bool>().prop_map(|clean| Op::Reopen { clean }),
    ]
}

/// The model: the batches the log should hold, grouped by segment as the engine rolls them.
#[derive(Default)]
struct Model {
    /// Segments, oldest first: each a list of (base offset, stored bytes, max timestamp).
    segments: Vec<Vec<(i64, Vec<u8>, i64)>>,
    /// Segments retention deleted, oldest first: a power failure may bring the newest back
    /// (their removal was not yet made durable).
    retired: Vec<Vec<(i64, Vec<u8>, i64)>>,
    next_offset: i64,
    /// Every batch below it was covered by a completed fdatasync: survives a power failure.
    durable_next: i64,
    clock_ms: i64,
}

impl Model {
    fn batches(&self) -> impl Iterator<Item = &(i64, Vec<u8>, i64)> {
        self.segments.iter().flatten()
    }

    fn segment_size(segment: &[(i64, Vec<u8>, i64)]) -> u64 {
        segment.iter().map(|(_, b, _)| b.len() as u64).sum()
    }

    fn append(&mut self, mut bytes: Vec<u8>, max_timestamp: i64) {
        let active_size = self.segments.last().map_or(0, |s| Self::segment_size(s));
        let active_empty = self.segments.last().is_none_or(|s| s.is_empty());
        if self.segments.is_empty()
            || (!active_empty && active_size + bytes.len() as u64 > SEGMENT_BYTES)
        {
            self.segments.push(Vec::new());
        }
        ringtail_engine::format::batch::stamp(&mut bytes, self.next_offset, 0);
        let header = parse_header(&bytes).expect("valid");
        self.segments
            .last_mut()
            .expect("segment")
            .push((self.next_offset, bytes, max_timestamp));
        self.next_offset = header.next_offset();
    }

    fn retention(&mut self) {
        let mut total: u64 = self.segments.iter().map(|s| Self::segment_size(s)).sum();
        while self.segments.len() > 1 {
            let oldest = &self.segments[0];
            let size = Self::segment_size(oldest);
            let max_ts = oldest.iter().map(|(_, _, t)| *t).max().unwrap_or(-1);
            let expired = max_ts >= 0 && self.clock_ms - max_ts > RETENTION_MS;
            if !(expired || total - size >= RETENTION_BYTES) {
                break;
            }
            total -= size;
            let retired = self.segments.remove(0);
            self.retired.push(retired);
        }
    }

    /// After a power failure: the log reopened as `[log_start, log_end)` with `segment_count`
    /// segments. Checks what must hold and makes the model match what may legitimately differ
    /// (the unsynced tail lost, the newest deletions undone, an empty segment kept).
    fn after_power_failure(
        &mut self,
        log_start: i64,
        log_end: i64,
        segment_count: usize,
    ) -> Result<(), TestCaseError> {
        prop_assert!(
            log_end >= self.durable_next,
            "fdatasynced batches lost: the log ends at {} but {} were synced",
            log_end,
            self.durable_next
        );
        prop_assert!(log_end <= self.next_offset, "the log grew in a crash");
        for segment in &mut self.segments {
            segment.retain(|(base, _, _)| *base < log_end);
        }
        self.segments.retain(|segment| !segment.is_empty());
        self.next_offset = log_end;
        while self.log_start() > log_start {
            let retired = self.retired.pop();
            prop_assert!(
                retired.is_some(),
                "the log starts at {} before anything the model deleted",
                log_start
            );
            self.segments.insert(0, retired.expect("checked"));
        }
        self.durable_next = log_end;
        if segment_count == self.segments.len() + 1 {
            // The segment the lost batches began survived, empty: the active one now.
            self.segments.push(Vec::new());
        }
        Ok(())
    }

    fn log_start(&self) -> i64 {
        self.batches()
            .next()
            .map_or(self.next_offset, |(b, _, _)| *b)
    }

    fn stored(&self) -> Vec<(i64, Vec<u8>)> {
        self.batches()
            .map(|(b, bytes, _)| (*b, bytes.clone()))
            .collect()
    }
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: SEGMENT_BYTES,
        retention_bytes: Some(RETENTION_BYTES),
        retention_ms: Some(RETENTION_MS),
        index_interval_bytes: 300,
        // Deterministic: a checkpoint after every fdatasync, not on a wall-clock interval.
        checkpoint_interval_ms: 0,
        ..LogConfig::default()
    }
}

/// Runs one sequence; the log lives in `dir` on `disk` across the runtimes that reopens create.
fn check(disk: &SimDisk, dir: &Path, ops: &[Op]) -> Result<(), TestCaseError> {
    let mut model = Model::default();
    let mut remaining = ops;
    let mut after_crash = false;
    // Each runtime runs ops until a reopen; a power failure drops it without closing, and the
    // disk then loses what was not synced.
    loop {
        let (stop, clean) = run(async {
            let log = Partition::open_on(disk.storage(), dir, config())
                .await
                .expect("open");
            if after_crash {
                model.after_power_failure(
                    log.log_start_offset().get(),
                    log.log_end_offset().get(),
                    log.segment_count(),
                )?;
            }
            prop_assert_eq!(log.log_end_offset(), model.next_offset);
            prop_assert_eq!(log.log_start_offset(), model.log_start());
            prop_assert_eq!(log.segment_count(), model.segments.len().max(1));
            prop_assert!(
                read_all(&log).await == model.stored(),
                "the reopened log differs from the model"
            );
            for (i, op) in remaining.iter().enumerate() {
                if !matches!(op, Op::Append { .. }) && model.next_offset > 0 {
                    log.wait_written(Offset(model.next_offset - 1))
                        .await
                        .expect("written");
                }
                match *op {
                    Op::Append { count, value_len } => {
                        let tag = (model.next_offset % 251) as u8;
                        let bytes = batch(count, value_len, model.clock_ms, tag);
                        model.append(bytes.to_vec(), model.clock_ms);
                        let info = log.append(bytes, model.clock_ms).expect("append");
                        prop_assert_eq!(info.last_offset + 1, model.next_offset);
                    }
                    Op::Read { pick, max_bytes } => {
                        let start = model.log_start();
                        let span = (model.next_offset - start + 1) as u64;
                        let offset = start + (pick % span) as i64;
                        let result = log
                            .read_bytes(Offset(offset), max_bytes)
                            .await
                            .expect("read");
                        let got = split_batches(&result);
                        // From the batch holding `offset` onwards.
                        let expected: Vec<_> = model
                            .batches()
                            .filter(|(_, bytes, _)| {
                                parse_header(bytes).expect("header").next_offset() > offset
                            })
                            .collect();
                        if offset == model.next_offset {
                            prop_assert!(got.is_empty());
                            continue;
                        }
                        prop_assert!(!got.is_empty(), "read at {} returned nothing", offset);
                        prop_assert!(got.len() == 1 || result.len() <= max_bytes);
                        for (g, e) in got.iter().zip(expected.iter()) {
                            prop_assert_eq!(g.0, e.0);
                            prop_assert!(g.1 == e.1, "bytes of batch {} differ", g.0);
                        }
                        prop_assert!(got.len() <= expected.len());
                    }
                    Op::LookupTimestamp { pick } => {
                        let target = (pick % (model.clock_ms as u64 + 2)) as i64;
                        let expected = model
                            .batches()
                            .find(|(_, _, t)| *t >= target)
                            .map(|(b, _, _)| *b);
                        let got = log
                            .offset_for_timestamp(target)
                            .await
                            .expect("lookup")
                            .map(|(offset, _)| offset.get());
                        prop_assert_eq!(got, expected, "timestamp {}", target);
                    }
                    Op::AdvanceClock { ms } => model.clock_ms += ms,
                    Op::Retention => {
                        model.retention();
                        log.enforce_retention(model.clock_ms).expect("retention");
                        prop_assert_eq!(log.log_start_offset(), model.log_start());
                        prop_assert_eq!(log.segment_count(), model.segments.len().max(1));
                    }
                    Op::Sync => {
                        if model.next_offset > 0 {
                            log.wait_durable(Offset(model.next_offset - 1))
                                .await
                                .expect("fdatasync");
                        }
                        model.durable_next = model.next_offset;
                    }
                    Op::Reopen { clean } => {
                        if clean {
                            log.close().await.expect("close");
                            model.durable_next = model.next_offset;
                        }
                        return Ok((i + 1, Some(clean)));
                    }
                }
            }
            if model.next_offset > 0 {
                log.wait_written(Offset(model.next_offset - 1))
                    .await
                    .expect("written");
            }
            let all = read_all(&log).await;
            prop_assert!(all == model.stored(), "full read differs from the model");
            log.close().await.expect("close");
            Ok((remaining.len(), None))
        })?;
        remaining = &remaining[stop..];
        match clean {
            None => return Ok(()),
            Some(true) => after_crash = false,
            Some(false) => {
                disk.crash();
                after_crash = true;
            }
        }
    }
}

#[test]
fn random_sequences_match_the_model() {
    common::run_property(
        "random_sequences_match_the_model",
        48,
        proptest::collection::vec(op(), 1..60),
        |ops| {
            let disk = SimDisk::new(disk_seed(&ops));
            check(&disk, Path::new("/log"), &ops)
        },
    );
}

/// The simulated disk's seed, from the sequence itself: a replayed sequence (same
/// `RINGTAIL_SEED`, or proptest's shrunk case) crashes the same way.
fn disk_seed(ops: &[Op]) -> u64 {
    // FNV-1a over the sequence's debug text.
    format!("{ops:?}")
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        })
}
