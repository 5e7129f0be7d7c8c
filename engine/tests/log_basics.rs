//! Append, read back, roll, reopen: the partition log's everyday paths.

mod common;

use common::{batch, open, read_all, run, split_batches};
use ringtail_engine::Offset;
use ringtail_engine::{AppendError, FsyncPolicy, LogConfig, ReadError};

fn small_segments() -> LogConfig {
    LogConfig {
        segment_bytes: 16 * 1024,
        index_interval_bytes: 1024,
        ..LogConfig::default()
    }
}

#[test]
fn appended_batches_read_back_with_their_offsets() {
    let dir = tempfile::tempdir().expect("tempdir");
    run(async {
        let log = open(dir.path(), LogConfig::default()).await;
        let mut expected = Vec::new();
        for i in 0..20u8 {
            let info = log
                .append(batch(5, 50, 1000 + i64::from(i), i), 1000)
                .expect("append");
            assert_eq!(info.base_offset, i64::from(i) * 5);
            assert_eq!(info.last_offset, i64::from(i) * 5 + 4);
            expected.push(info.base_offset.get());
        }
        log.wait_for_ack(Offset(99), true).await.expect("durable");
        assert_eq!(log.high_watermark(), 100);
        assert_eq!(log.durable_offset(), 100);
        let bytes = log.read_bytes(Offset(0), usize::MAX).await.expect("read");
        let batches = split_batches(&bytes);
        let bases: Vec<i64> = batches.iter().map(|(b, _)| *b).collect();
        assert_eq!(bases, expected);
        // A read from the middle of a batch starts at that batch.
        let bytes = log.read_bytes(Offset(12), usize::MAX).await.expect("read");
        assert_eq!(split_batches(&bytes)[0].0, 10);
        // Reading at the high watermark returns nothing; past it is out of range.
        assert!(log
            .read(Offset(100), 1 << 20)
            .await
            .expect("read")
            .ranges
            .is_empty());
        assert!(matches!(
            log.read(Offset(101), 1 << 20).await,
            Err(ReadError::OffsetOutOfRange { .. })
        ));
        log.close().await.expect("close");
    });
}

#[test]
fn max_bytes_cuts_on_batch_boundaries_but_returns_at_least_one_batch() {
    let dir = tempfile::tempdir().expect("tempdir");
    run(async {
        let log = open(dir.path(), LogConfig::default()).await;
        let size = batch(10, 100, 1, 0).len();
        for i in 0..50u8 {
            log.append(batch(10, 100, 1, i), 0).expect("append");
        }
        log.wait_written(Offset(499)).await.expect("written");
        let result = log.read(Offset(0), size * 3 + 10).await.expect("read");
        assert_eq!(result.bytes() as usize, size * 3);
        let result = log.read(Offset(0), 10).await.expect("read");
        assert_eq!(
            result.bytes() as usize,
            size,
            "one whole batch even over budget"
        );
        let result = log.read(Offset(105), size * 2).await.expect("read");
        assert_eq!(result.bytes() as usize, size * 2);
        log.close().await.expect("close");
    });
}

#[test]
fn bad_batches_are_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    run(async {
        let config = LogConfig {
            max_message_bytes: 2000,
            ..LogConfig::default()
        };
        let log = open(dir.path(), config).await;
        let mut corrupt = batch(3, 10, 1, 0);
        let last = corrupt.len() - 1;
        corrupt[last] ^= 1;
        assert!(matches!(
            log.append(corrupt, 0),
            Err(AppendError::Corrupt(_))
        ));
        assert!(matches!(
            log.append(batch(30, 100, 1, 0), 0),
            Err(AppendError::TooLarge { .. })
        ));
        assert!(matches!(
            log.append(bytes::BytesMut::from(&b"short"[..]), 0),
            Err(AppendError::Corrupt(_))
        ));
        assert_eq!(log.log_end_offset(), 0);
        let info = log
            .append(batch(3, 10, 1, 0), 0)
            .expect("a good batch still works");
        assert_eq!(info.base_offset, 0);
        log.close().await.expect("close");
    });
}

#[test]
fn segments_roll_by_size_and_age_and_survive_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let total = run(async {
        let log = open(dir.path(), small_segments()).await;
        for i in 0..100u8 {
            log.append(batch(4, 200, 5_000, i), 5_000).expect("append");
        }
        log.wait_written(Offset(399)).await.expect("written");
        assert!(
            log.segment_count() > 5,
            "rolled by size: {}",
            log.segment_count()
        );
        let before = log.segment_count();
        // Age: a batch appended after segment.ms has passed starts a new segment.
        let config_ms = log.config().segment_ms;
        log.append(batch(1, 10, 5_000, 0), 5_000 + config_ms)
            .expect("append");
        assert_eq!(log.segment_count(), before + 1);
        log.wait_written(Offset(400)).await.expect("written");
        let all = read_all(&log).await;
        log.close().await.expect("close");
        all
    });
    assert_eq!(total.len(), 101);
    for clean in [true, false] {
        run(async {
            let log = open(dir.path(), small_segments()).await;
            assert_eq!(log.log_end_offset(), 401);
            assert_eq!(read_all(&log).await, total);
            if clean {
                log.close().await.expect("close");
            }
            // else: dropped without close, like a kill -9 after everything was written
        });
    }
}

#[test]
fn topic_settings_change_while_the_log_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    run(async {
        let log = open(dir.path(), LogConfig::default()).await;
        for i in 0..10u8 {
            log.append(batch(4, 200, 5_000, i), 5_000).expect("append");
        }
        log.wait_written(Offset(39)).await.expect("written");
        assert_eq!(log.segment_count(), 1);
        // Smaller segments and batches: the next appends roll, a large batch is refused.
        let smaller = LogConfig {
            segment_bytes: 2048,
            max_message_bytes: 1000,
            retention_ms: Some(60_000),
            fsync: FsyncPolicy::Never,
            ..LogConfig::default()
        };
        log.reconfigure(&smaller).expect("valid");
        assert_eq!(log.config().segment_bytes, 2048);
        assert_eq!(log.config().retention_ms, Some(60_000));
        assert_eq!(
            log.config().fsync,
            FsyncPolicy::AcksAll,
            "the broker's policy stays as opened"
        );
        assert!(matches!(
            log.append(batch(4, 400, 5_000, 0), 5_000),
            Err(AppendError::TooLarge { max: 1000, .. })
        ));
        for i in 0..30u8 {
            log.append(batch(1, 300, 5_000, i), 5_000).expect("append");
        }
        log.wait_written(Offset(69)).await.expect("written");
        assert!(log.segment_count() > 2, "rolled: {}", log.segment_count());
        // Retention of a minute: sealed segments (stamped at 5 s) go at 70 s, not at 60 s.
        assert_eq!(log.enforce_retention(60_000).expect("retention"), 0);
        let before = log.segment_count();
        let deleted = log.enforce_retention(70_000).expect("retention");
        assert!(deleted > 0);
        assert_eq!(log.segment_count(), before - deleted);
        assert!(log.log_start_offset() > 0);
        // Out of range: refused, and nothing changes.
        let huge = LogConfig {
            segment_bytes: 1 << 40,
            ..smaller
        };
        assert!(log.reconfigure(&huge).is_err());
        assert_eq!(log.config().segment_bytes, 2048);
        log.close().await.expect("close");
    });
}

#[test]
fn every_fsync_policy_acknowledges() {
    for policy in ["never", "acks-all", "always", "interval:5"] {
        let dir = tempfile::tempdir().expect("tempdir");
        run(async {
            let config = LogConfig {
                fsync: policy.parse::<FsyncPolicy>().expect("policy"),
                ..LogConfig::default()
            };
            let log = open(dir.path(), config).await;
            for i in 0..10u8 {
                let info = log.append(batch(2, 10, 1, i), 0).expect("append");
                log.wait_for_ack(info.last_offset, true).await.expect("ack");
                log.wait_for_ack(info.last_offset, false)
                    .await
                    .expect("ack");
            }
            if policy != "never" {
                // Under interval and always, the syncer gets there on its own.
                log.wait_durable(Offset(19)).await.expect("durable");
            }
            log.close().await.expect("close");
        });
    }
}

#[test]
fn retention_deletes_old_segments_but_open_reads_keep_their_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    run(async {
        let config = LogConfig {
            retention_ms: Some(60_000),
            ..small_segments()
        };
        let log = open(dir.path(), config).await;
        // Old batches (timestamp 1,000) then new ones (timestamp 100,000).
        for i in 0..40u8 {
            log.append(batch(4, 200, 1_000, i), 0).expect("append");
        }
        for i in 0..40u8 {
            log.append(batch(4, 200, 100_000, i), 0).expect("append");
        }
        log.wait_written(Offset(319)).await.expect("written");
        let segments = log.segment_count();
        let held = log.read(Offset(0), 1 << 20).await.expect("read");
        let held_bytes = log.read_bytes(Offset(0), 1 << 20).await.expect("read");
        assert!(!held.ranges.is_empty());

        // Nothing is old enough yet.
        assert_eq!(log.enforce_retention(50_000).expect("retention"), 0);
        // Now the segments holding only timestamp-1,000 batches are.
        let deleted = log.enforce_retention(100_000).expect("retention");
        assert!(
            deleted > 0 && deleted < segments,
            "deleted {deleted} of {segments}"
        );
        let start = log.log_start_offset();
        assert!(start > 0 && start <= 160, "log start {start}");
        assert!(matches!(
            log.read(Offset(0), 100).await,
            Err(ReadError::OffsetOutOfRange { .. })
        ));
        assert!(!dir.path().join("00000000000000000000.log").exists());
        // The range taken before the deletion still reads the old bytes.
        let range = &held.ranges[0];
        let bytes = ringtail_engine::io::read_exact_at(
            range.file.clone(),
            range.len as usize,
            range.position.get(),
        )
        .await
        .expect("read a deleted file through its open descriptor");
        assert_eq!(bytes, held_bytes);

        // Size: keep at most retention.bytes plus the active segment.
        let config_bytes = 16 * 1024;
        let sized = open_sized(dir.path(), config_bytes, log).await;
        assert!(sized.size_bytes() <= config_bytes + 16 * 1024);
        sized.close().await.expect("close");
    });
}

async fn open_sized(
    dir: &std::path::Path,
    retention_bytes: u64,
    previous: std::rc::Rc<ringtail_engine::Partition>,
) -> std::rc::Rc<ringtail_engine::Partition> {
    previous.close().await.expect("close");
    drop(previous);
    let config = LogConfig {
        retention_bytes: Some(retention_bytes),
        ..small_segments()
    };
    let log = open(dir, config).await;
    let before = log.log_start_offset();
    let deleted = log.enforce_retention(0).expect("retention");
    assert!(deleted > 0);
    assert!(log.log_start_offset() > before);
    log
}

#[test]
fn timestamp_lookups_find_the_first_record_not_just_its_batch() {
    let dir = tempfile::tempdir().expect("tempdir");
    run(async {
        let log = open(dir.path(), LogConfig::default()).await;
        use ringtail_engine::format::batch::build_batch_at;
        // Offsets 0-3 at 100, 200, 300, 400; offsets 4-5 at 500, 450 (out of order within a
        // batch, as clients may send).
        log.append(
            bytes::BytesMut::from(&build_batch_at(&[100, 200, 300, 400])[..]),
            0,
        )
        .expect("append");
        log.append(bytes::BytesMut::from(&build_batch_at(&[500, 450])[..]), 0)
            .expect("append");
        log.wait_written(Offset(5)).await.expect("written");
        let log = &log;
        let lookup = |t| async move {
            log.offset_for_timestamp(t)
                .await
                .map(|found| found.map(|(offset, ts)| (offset.get(), ts)))
        };
        assert_eq!(lookup(50).await.expect("lookup"), Some((0, 100)));
        assert_eq!(
            lookup(250).await.expect("lookup"),
            Some((2, 300)),
            "inside the first batch"
        );
        assert_eq!(lookup(400).await.expect("lookup"), Some((3, 400)));
        assert_eq!(lookup(460).await.expect("lookup"), Some((4, 500)));
        assert_eq!(lookup(501).await.expect("lookup"), None);
        log.close().await.expect("close");
    });
}
