//! Idempotent producers at the log: retries are answered with the original offsets and never
//! appended twice, sequence and epoch errors are Kafka's, and the state survives clean
//! restarts (snapshots), crashes (rebuilt from batch headers) and torn snapshots.

mod common;

use std::path::Path;

use bytes::BytesMut;
use common::{open, run, split_batches};
use proptest::prelude::*;
use ringtail_engine::format::batch::{build_batch, parse_header, set_producer};
use ringtail_engine::producer::SequenceError;
use ringtail_engine::Offset;
use ringtail_engine::{AppendError, LogConfig, Partition};

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

/// An idempotent producer's batch, stamped with the current time (producer state expires
/// after a day without activity, counted from batch timestamps and the broker's clock).
fn batch(producer_id: i64, epoch: i16, sequence: i32, records: i32) -> BytesMut {
    let mut bytes = build_batch(records, 20, now_ms());
    set_producer(&mut bytes, producer_id, epoch, sequence);
    BytesMut::from(&bytes[..])
}

fn sequence_error(result: Result<ringtail_engine::AppendInfo, AppendError>) -> SequenceError {
    match result {
        Err(AppendError::Sequence(err)) => err,
        other => panic!("expected a sequence error, got {other:?}"),
    }
}

/// (producer id, epoch, base sequence) of every stored batch, across segments.
async fn stored_batches(log: &Partition) -> Vec<(i64, i16, i32)> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.high_watermark() {
        let bytes = log.read_bytes(offset, usize::MAX).await.expect("read");
        for (_, b) in split_batches(&bytes) {
            let h = parse_header(&b).expect("header");
            out.push((h.producer_id, h.producer_epoch, h.base_sequence));
            offset = Offset(h.next_offset());
        }
    }
    out
}

#[test]
fn retries_get_the_original_offsets_and_are_not_appended() {
    let dir = tempfile::tempdir().expect("tempdir");
    run(async {
        let log = open(dir.path(), LogConfig::default()).await;
        let first = log.append(batch(7, 0, 0, 5), now_ms()).expect("append");
        let second = log.append(batch(7, 0, 5, 5), now_ms()).expect("append");
        assert!(!first.duplicate && !second.duplicate);
        let retry = log.append(batch(7, 0, 0, 5), now_ms()).expect("retry");
        assert!(retry.duplicate);
        assert_eq!(
            (retry.base_offset, retry.last_offset),
            (first.base_offset, first.last_offset)
        );
        assert_eq!(log.log_end_offset(), 10, "nothing appended for the retry");
        log.wait_for_ack(retry.last_offset, true)
            .await
            .expect("a duplicate is acknowledged like its original");
        assert_eq!(stored_batches(&log).await, vec![(7, 0, 0), (7, 0, 5)]);
        log.close().await.expect("close");
    });
}

#[test]
fn kafka_errors_for_gaps_old_epochs_and_unknown_producers() {
    let dir = tempfile::tempdir().expect("tempdir");
    run(async {
        let log = open(dir.path(), LogConfig::default()).await;
        log.append(batch(7, 1, 0, 5), now_ms()).expect("append");
        assert!(matches!(
            sequence_error(log.append(batch(7, 1, 9, 1), now_ms())),
            SequenceError::OutOfOrderSequence { .. }
        ));
        assert!(matches!(
            sequence_error(log.append(batch(7, 0, 5, 1), now_ms())),
            SequenceError::InvalidProducerEpoch { .. }
        ));
        assert!(matches!(
            sequence_error(log.append(batch(8, 0, 4, 1), now_ms())),
            SequenceError::UnknownProducerId { .. }
        ));
        assert_eq!(log.log_end_offset(), 5, "refused batches are not appended");
        // A bumped epoch starts again at sequence 0.
        log.append(batch(7, 2, 0, 1), now_ms()).expect("new epoch");
        log.close().await.expect("close");
    });
}

fn reopen_and_check_retry(dir: &Path) {
    run(async {
        let log = open(dir, LogConfig::default()).await;
        let retry = log
            .append(batch(7, 0, 10, 5), now_ms())
            .expect("retry after restart");
        assert!(retry.duplicate, "the retry is recognised after the restart");
        assert_eq!(
            (retry.base_offset, retry.last_offset),
            (Offset(10), Offset(14))
        );
        let next = log
            .append(batch(7, 0, 15, 5), now_ms())
            .expect("next in sequence");
        assert_eq!(next.base_offset, 15);
        log.close().await.expect("close");
    });
}

fn write_three_batches(dir: &Path, close: bool) {
    run(async {
        let config = LogConfig {
            segment_bytes: 1024,
            ..LogConfig::default()
        };
        let log = open(dir, config).await;
        for sequence in [0, 5, 10] {
            log.append(batch(7, 0, sequence, 5), now_ms())
                .expect("append");
        }
        log.wait_for_ack(Offset(14), true).await.expect("durable");
        if close {
            log.close().await.expect("close");
        }
    });
}

#[test]
fn state_survives_a_clean_restart_through_its_snapshot() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_three_batches(dir.path(), true);
    assert!(dir.path().join("00000000000000000015.snapshot").exists());
    reopen_and_check_retry(dir.path());
}

#[test]
fn state_is_rebuilt_from_the_log_after_a_crash() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_three_batches(dir.path(), false);
    reopen_and_check_retry(dir.path());
}

#[test]
fn a_torn_snapshot_is_ignored_and_the_state_rebuilt() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_three_batches(dir.path(), true);
    let snapshot = dir.path().join("00000000000000000015.snapshot");
    let bytes = std::fs::read(&snapshot).expect("snapshot");
    std::fs::write(&snapshot, &bytes[..bytes.len() / 2]).expect("tear it");
    reopen_and_check_retry(dir.path());
}

/// A producer's actions: send the next batch, retry one of its last five, or restart
/// (bumping its epoch); and the broker's: restart cleanly or crash.
#[derive(Clone, Debug)]
enum Step {
    Send { producer: usize, records: i32 },
    Retry { producer: usize, back: usize },
    BumpEpoch { producer: usize },
    Reopen { clean: bool },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0..3usize, 1..5i32).prop_map(|(producer, records)| Step::Send { producer, records }),
        3 => (0..3usize, 0..5usize).prop_map(|(producer, back)| Step::Retry { producer, back }),
        1 => (0..3usize).prop_map(|producer| Step::BumpEpoch { producer }),
        1 => any::<bool>().prop_map(|clean| Step::Reopen { clean }),
    ]
}

#[derive(Default, Clone)]
struct Producer {
    epoch: i16,
    next_sequence: i32,
    /// (sequence, records, base offset) of its batches in this epoch, newest last.
    sent: Vec<(i32, i32, i64)>,
}

fn check_steps(dir: &Path, steps: &[Step]) -> Result<(), TestCaseError> {
    let mut producers = vec![Producer::default(); 3];
    let mut expected: Vec<(i64, i16, i32)> = Vec::new();
    let mut remaining = steps;
    loop {
        let stop = run(async {
            let log = open(
                dir,
                LogConfig {
                    segment_bytes: 2048,
                    ..LogConfig::default()
                },
            )
            .await;
            for (i, step) in remaining.iter().enumerate() {
                match *step {
                    Step::Send { producer, records } => {
                        let p = &mut producers[producer];
                        let info = log
                            .append(
                                batch(producer as i64 + 1, p.epoch, p.next_sequence, records),
                                0,
                            )
                            .expect("send");
                        prop_assert!(!info.duplicate);
                        expected.push((producer as i64 + 1, p.epoch, p.next_sequence));
                        p.sent
                            .push((p.next_sequence, records, info.base_offset.get()));
                        p.next_sequence += records;
                    }
                    Step::Retry { producer, back } => {
                        let p = &producers[producer];
                        if back >= p.sent.len() {
                            continue;
                        }
                        let (sequence, records, base) = p.sent[p.sent.len() - 1 - back];
                        let info = log
                            .append(
                                batch(producer as i64 + 1, p.epoch, sequence, records),
                                now_ms(),
                            )
                            .expect("retry");
                        prop_assert!(info.duplicate, "retry of seq {} not recognised", sequence);
                        prop_assert_eq!(info.base_offset, base);
                    }
                    Step::BumpEpoch { producer } => {
                        let p = &mut producers[producer];
                        *p = Producer {
                            epoch: p.epoch + 1,
                            ..Producer::default()
                        };
                    }
                    Step::Reopen { clean } => {
                        let end = log.log_end_offset();
                        if end > 0 {
                            log.wait_written(end - 1).await.expect("written");
                        }
                        if clean {
                            log.close().await.expect("close");
                        }
                        return Ok(Some(i + 1));
                    }
                }
            }
            let end = log.log_end_offset();
            if end > 0 {
                log.wait_written(end - 1).await.expect("written");
            }
            prop_assert_eq!(stored_batches(&log).await, expected.clone());
            log.close().await.expect("close");
            Ok(None)
        })?;
        match stop {
            Some(n) => remaining = &remaining[n..],
            None => return Ok(()),
        }
    }
}

#[test]
fn random_produce_retry_restart_sequences_follow_kafkas_rules() {
    common::run_property(
        "random_produce_retry_restart_sequences",
        40,
        proptest::collection::vec(step(), 1..50),
        |steps| {
            let dir = tempfile::tempdir().expect("tempdir");
            check_steps(dir.path(), &steps)
        },
    );
}

#[test]
fn retention_never_breaks_a_live_producers_deduplication() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = || LogConfig {
        segment_bytes: 1024,
        retention_bytes: Some(1024),
        ..LogConfig::default()
    };
    let last = run(async {
        let log = open(dir.path(), config()).await;
        let mut sequence = 0;
        let mut last = None;
        for _ in 0..40 {
            last = Some(
                log.append(batch(9, 0, sequence, 5), now_ms())
                    .expect("append"),
            );
            sequence += 5;
        }
        let last = last.expect("appended");
        log.wait_for_ack(last.last_offset, true)
            .await
            .expect("durable");
        let deleted = log.enforce_retention(now_ms()).expect("retention");
        assert!(deleted > 0, "retention deleted the producer's old segments");
        assert!(log.log_start_offset() > 0);
        let retry = log
            .append(batch(9, 0, sequence - 5, 5), now_ms())
            .expect("retry");
        assert!(retry.duplicate && retry.base_offset == last.base_offset);
        last
    });
    // After a crash, the state comes back from the snapshot taken at a seal and the headers
    // after it, although the segments holding the producer's first batches are gone.
    run(async {
        let log = open(dir.path(), config()).await;
        let retry = log
            .append(batch(9, 0, 195, 5), now_ms())
            .expect("retry after restart");
        assert!(retry.duplicate, "the retry is still recognised");
        assert_eq!(retry.base_offset, last.base_offset);
        let next = log.append(batch(9, 0, 200, 5), now_ms()).expect("next");
        assert!(!next.duplicate);
        log.close().await.expect("close");
    });
}
