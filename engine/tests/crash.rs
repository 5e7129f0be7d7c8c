//! Crash tests: torn tails at every batch boundary and at random bytes, bit flips, damaged index
//! files, corruption of flushed data, failed writes and fsyncs, and a real kill -9 of a writer
//! process. After each, the log reopens with every batch before the damage intact, byte for
//! byte, and nothing after it served; damage to flushed data is reported, never hidden.

mod common;

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

use common::{batch, open, read_all, run, seed};
use rand_core_shim::Rng;
use ringtail_engine::storage::sim::{FaultOp, SimDisk};
use ringtail_engine::storage::Storage;
use ringtail_engine::Offset;
use ringtail_engine::{FsyncPolicy, LogConfig, OpenError, Partition};

/// A tiny deterministic generator, so the tests need no extra crate.
mod rand_core_shim {
    pub struct Rng(u64);
    impl Rng {
        pub fn new(seed: u64) -> Rng {
            Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
        }
        pub fn next(&mut self) -> u64 {
            // splitmix64
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
        pub fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }
}

async fn open_on(disk: &SimDisk, dir: &Path, config: LogConfig) -> std::rc::Rc<Partition> {
    Partition::open_on(disk.storage(), dir, config)
        .await
        .expect("open partition on the simulated disk")
}

fn unsynced() -> LogConfig {
    // With fsync=never the recovery checkpoint stays where the last open put it (offset 0 for a
    // new log), so everything written after is "unflushed": damage there is a torn tail.
    LogConfig {
        fsync: FsyncPolicy::Never,
        index_interval_bytes: 512,
        ..LogConfig::default()
    }
}

/// Writes `count` batches of varying size, then "crashes" (drops the runtime without close).
/// Returns the batches as stored.
fn write_and_crash(dir: &Path, config: LogConfig, count: u8) -> Vec<(i64, Vec<u8>)> {
    run(async {
        let log = open(dir, config).await;
        let mut last = Offset(0);
        for i in 0..count {
            let info = log
                .append(
                    batch(
                        1 + i32::from(i % 7),
                        40 + usize::from(i) * 3,
                        1000 + i64::from(i),
                        i,
                    ),
                    0,
                )
                .expect("append");
            last = info.last_offset;
        }
        log.wait_written(last).await.expect("written");
        read_all(&log).await
    })
}

fn log_file(dir: &Path) -> PathBuf {
    let mut logs: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    logs.pop().expect("a segment")
}

/// Reopens after damage and checks that exactly `expected` reads back.
fn reopen_and_expect(dir: &Path, config: LogConfig, expected: &[(i64, Vec<u8>)]) {
    run(async {
        let log = open(dir, config).await;
        let got = read_all(&log).await;
        assert_eq!(got.len(), expected.len(), "batches after recovery");
        assert!(got == expected, "recovered bytes differ");
        let next = expected.last().map_or(0, |(_, b)| {
            ringtail_engine::format::batch::parse_header(b)
                .expect("header")
                .next_offset()
        });
        assert_eq!(log.log_end_offset(), next);
        // The log takes new appends right after the surviving data.
        let info = log
            .append(batch(1, 10, 5, 0xee), 0)
            .expect("append after recovery");
        assert_eq!(info.base_offset, next);
        log.close().await.expect("close");
    });
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("list") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
    }
}

#[test]
fn torn_tail_at_every_batch_boundary() {
    let original = tempfile::tempdir().expect("tempdir");
    let stored = write_and_crash(original.path(), unsynced(), 30);
    let mut boundary = 0u64;
    for keep in 0..=stored.len() {
        let work = tempfile::tempdir().expect("tempdir");
        copy_dir(original.path(), work.path());
        let file = OpenOptions::new()
            .write(true)
            .open(log_file(work.path()))
            .expect("open");
        file.set_len(boundary).expect("truncate");
        reopen_and_expect(work.path(), unsynced(), &stored[..keep]);
        if keep < stored.len() {
            boundary += stored[keep].1.len() as u64;
        }
    }
}

#[test]
fn torn_tail_at_random_bytes() {
    let seed = seed("torn_tail_at_random_bytes");
    let mut rng = Rng::new(seed);
    let original = tempfile::tempdir().expect("tempdir");
    let stored = write_and_crash(original.path(), unsynced(), 30);
    let total: u64 = stored.iter().map(|(_, b)| b.len() as u64).sum();
    for _ in 0..25 {
        let cut = rng.below(total);
        let work = tempfile::tempdir().expect("tempdir");
        copy_dir(original.path(), work.path());
        let file = OpenOptions::new()
            .write(true)
            .open(log_file(work.path()))
            .expect("open");
        file.set_len(cut).expect("truncate");
        let mut end = 0u64;
        let keep = stored
            .iter()
            .take_while(|(_, b)| {
                end += b.len() as u64;
                end <= cut
            })
            .count();
        reopen_and_expect(work.path(), unsynced(), &stored[..keep]);
    }
}

/// Found by the simulation: a roll creates the next segment, a later fdatasync (of an index
/// file) makes that creation durable, and a power failure then takes the unsynced end of the
/// previous segment. The log must open, ending where the shorter segment ends.
#[test]
fn a_lost_segment_tail_before_a_newer_segment_is_a_torn_tail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let written = write_and_crash(dir.path(), unsynced(), 6);
    // The first segment kept four batches; a newer, empty segment starts after all six.
    let kept: usize = written[..4].iter().map(|(_, b)| b.len()).sum();
    let first = log_file(dir.path());
    OpenOptions::new()
        .write(true)
        .open(&first)
        .expect("open segment")
        .set_len(kept as u64)
        .expect("truncate");
    let later = dir.path().join(format!("{:020}.log", written.len() * 10));
    std::fs::write(&later, b"").expect("newer segment");
    reopen_and_expect(dir.path(), unsynced(), &written[..4]);
    assert!(!later.exists(), "the segment past the lost tail is deleted");
}

#[test]
fn bit_flips_in_the_unflushed_tail_truncate_at_the_damaged_batch() {
    let seed = seed("bit_flips_in_the_unflushed_tail");
    let mut rng = Rng::new(seed);
    let original = tempfile::tempdir().expect("tempdir");
    let stored = write_and_crash(original.path(), unsynced(), 30);
    for _ in 0..25 {
        let victim = rng.below(stored.len() as u64) as usize;
        let start: usize = stored[..victim].iter().map(|(_, b)| b.len()).sum();
        // Any byte but the leader epoch (bytes 12..16), which neither the CRC nor recovery checks.
        let within = loop {
            let at = rng.below(stored[victim].1.len() as u64) as usize;
            if !(12..16).contains(&at) {
                break at;
            }
        };
        let work = tempfile::tempdir().expect("tempdir");
        copy_dir(original.path(), work.path());
        flip_bit(
            &log_file(work.path()),
            (start + within) as u64,
            rng.below(8) as u8,
        );
        reopen_and_expect(work.path(), unsynced(), &stored[..victim]);
    }
}

fn flip_bit(path: &Path, position: u64, bit: u8) {
    use std::os::unix::fs::FileExt;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .expect("open");
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, position).expect("read");
    byte[0] ^= 1 << bit;
    file.write_all_at(&byte, position).expect("write");
}

/// Writes batches across several segments and closes cleanly: everything is flushed and the
/// checkpoint sits at the log end.
fn write_and_close(dir: &Path, config: LogConfig) -> Vec<(i64, Vec<u8>)> {
    run(async {
        let log = open(dir, config).await;
        for i in 0..60u8 {
            log.append(batch(3, 100, 1000 + i64::from(i), i), 0)
                .expect("append");
        }
        log.wait_written(Offset(179)).await.expect("written");
        let all = read_all(&log).await;
        log.close().await.expect("close");
        all
    })
}

fn segmented() -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        index_interval_bytes: 512,
        ..LogConfig::default()
    }
}

#[test]
fn corruption_of_flushed_data_is_reported_with_file_and_position() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_and_close(dir.path(), segmented());
    // An unclean start (no marker) with the checkpoint at the log end: the flipped bit lies in
    // data that was flushed.
    std::fs::remove_file(dir.path().join("clean-shutdown")).expect("marker present");
    let active = log_file(dir.path());
    let mut segments: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .expect("list")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    segments.sort();
    assert!(segments.len() > 2);
    flip_bit(&active, 70, 3);
    let err = run(async { Partition::open(dir.path(), segmented()).await.err() });
    match err {
        Some(OpenError::Corrupt { path, position, .. }) => {
            assert_eq!(path, active);
            assert_eq!(position, 0, "the first batch of the segment holds byte 70");
        }
        other => panic!("expected a corruption error, got {other:?}"),
    }
}

#[test]
fn flushed_data_cut_short_is_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_and_close(dir.path(), segmented());
    std::fs::remove_file(dir.path().join("clean-shutdown")).expect("marker present");
    let active = log_file(dir.path());
    let len = std::fs::metadata(&active).expect("stat").len();
    OpenOptions::new()
        .write(true)
        .open(&active)
        .expect("open")
        .set_len(len - 1)
        .expect("truncate");
    let err = run(async { Partition::open(dir.path(), segmented()).await.err() });
    assert!(
        matches!(err, Some(OpenError::Corrupt { .. })),
        "got {err:?}"
    );
}

#[test]
fn deleted_or_damaged_index_files_are_rebuilt() {
    let damages: [(&str, fn(&Path)); 5] = [
        ("delete index", |p| {
            std::fs::remove_file(p.with_extension("index")).expect("rm")
        }),
        ("delete timeindex", |p| {
            std::fs::remove_file(p.with_extension("timeindex")).expect("rm")
        }),
        ("truncate index mid-entry", |p| {
            let f = OpenOptions::new()
                .write(true)
                .open(p.with_extension("index"))
                .expect("open");
            let len = f.metadata().expect("stat").len();
            f.set_len(len.saturating_sub(3)).expect("truncate");
        }),
        ("zero the index", |p| {
            let len = std::fs::metadata(p.with_extension("index"))
                .expect("stat")
                .len();
            std::fs::write(p.with_extension("index"), vec![0u8; len as usize]).expect("write");
        }),
        ("index pointing past the log", |p| {
            let mut bytes = std::fs::read(p.with_extension("index")).expect("read");
            let n = bytes.len();
            bytes[n - 4..].copy_from_slice(&u32::MAX.to_be_bytes());
            std::fs::write(p.with_extension("index"), bytes).expect("write");
        }),
    ];
    for (name, damage) in damages {
        let dir = tempfile::tempdir().expect("tempdir");
        let stored = write_and_close(dir.path(), segmented());
        let mut segments: Vec<PathBuf> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .collect();
        segments.sort();
        // A sealed segment and the active one.
        damage(&segments[1]);
        damage(segments.last().expect("active"));
        run(async {
            let log = open(dir.path(), segmented()).await;
            assert!(
                read_all(&log).await == stored,
                "{name}: data differs after rebuild"
            );
            // Lookups that use the indexes still work.
            for (timestamp, expected) in [(1030, Some(90)), (0, Some(0)), (99_999, None)] {
                let found = log.offset_for_timestamp(timestamp).await.expect("lookup");
                assert_eq!(
                    found.map(|f| f.0.get()),
                    expected,
                    "{name}: timestamp {timestamp}"
                );
            }
            log.close().await.expect("close");
        });
        // The rebuilt files were written back: a second clean open finds them valid.
        let index = std::fs::read(segments[1].with_extension("index")).expect("index rewritten");
        assert!(!index.is_empty() && index.len().is_multiple_of(8), "{name}");
    }
}

#[test]
fn a_failed_fsync_poisons_the_partition() {
    let disk = SimDisk::new(seed("a_failed_fsync_poisons_the_partition"));
    let dir = Path::new("/p");
    run(async {
        let log = open_on(&disk, dir, LogConfig::default()).await;
        let info = log.append(batch(2, 10, 1, 1), 0).expect("append");
        log.wait_durable(info.last_offset)
            .await
            .expect("first sync works");
        disk.fail_next(FaultOp::Fsync, libc::EIO);
        let info = log.append(batch(2, 10, 1, 2), 0).expect("append");
        let err = log
            .wait_durable(info.last_offset)
            .await
            .expect_err("sync fails");
        assert_eq!(err.op, "fdatasync");
        assert!(log.poisoned().is_some());
        // Nothing is acknowledged after the failure, and later appends fail too.
        assert!(log.wait_written(info.last_offset + 10).await.is_err());
        assert!(matches!(
            log.append(batch(1, 10, 1, 3), 0),
            Err(ringtail_engine::AppendError::Storage(_))
        ));
        assert_eq!(log.durable_offset(), 2);
        assert!(
            log.close().await.is_err(),
            "no clean shutdown after a failure"
        );
    });
    assert!(!disk.exists(&dir.join("clean-shutdown")));
    // Reopening recovers from what is on disk.
    run(async {
        let log = open_on(&disk, dir, LogConfig::default()).await;
        assert!(log.log_end_offset() >= 2);
        log.close().await.expect("close");
    });
}

#[test]
fn a_failed_write_poisons_the_partition_and_drops_queued_batches() {
    let disk = SimDisk::new(seed("a_failed_write_poisons_the_partition"));
    run(async {
        let log = open_on(&disk, Path::new("/p"), LogConfig::default()).await;
        log.append(batch(2, 10, 1, 1), 0).expect("append");
        log.wait_written(Offset(1)).await.expect("written");
        disk.fail_next(FaultOp::Write, libc::EIO);
        let a = log.append(batch(2, 10, 1, 2), 0).expect("queued");
        let b = log.append(batch(2, 10, 1, 3), 0).expect("queued");
        let err = log
            .wait_written(a.last_offset)
            .await
            .expect_err("write fails");
        assert_eq!(err.op, "write");
        assert!(log.wait_for_ack(b.last_offset, false).await.is_err());
        assert_eq!(
            log.high_watermark(),
            2,
            "nothing after the failure became readable"
        );
    });
}

#[test]
fn a_poisoned_partition_still_serves_what_an_fdatasync_covered() {
    let disk = SimDisk::new(seed("a_poisoned_partition_still_serves"));
    run(async {
        let log = open_on(&disk, Path::new("/p"), LogConfig::default()).await;
        let first = log.append(batch(2, 10, 1, 1), 0).expect("append");
        log.wait_for_ack(first.last_offset, true)
            .await
            .expect("durable");
        let second = log.append(batch(3, 10, 1, 2), 0).expect("append");
        log.wait_written(second.last_offset)
            .await
            .expect("written, not synced");
        disk.fail_next(FaultOp::Fsync, libc::EIO);
        assert!(log.wait_for_ack(second.last_offset, true).await.is_err());
        assert!(log.poisoned().is_some());
        let served = log
            .read(Offset(0), 1 << 20)
            .await
            .expect("durable data is still served");
        assert_eq!(
            served.high_watermark, 2,
            "the high watermark falls back to the durable end"
        );
        let bytes = log.read_bytes(Offset(0), 1 << 20).await.expect("read");
        let batches = common::split_batches(&bytes);
        assert_eq!(batches.len(), 1, "only the fdatasynced batch");
        assert_eq!(batches[0].0, 0);
        assert!(
            log.read(Offset(1), 1 << 20).await.is_ok(),
            "inside the durable batch"
        );
        assert!(
            log.read(Offset(2), 1 << 20).await.is_err(),
            "past the durable end: refused"
        );
    });
}

#[test]
fn a_partition_offline_after_a_full_disk_serves_again_once_space_is_freed() {
    let disk = SimDisk::new(seed("offline_after_a_full_disk_serves_again"));
    let dir = Path::new("/p");
    // No checkpoint falls due during the test: a checkpoint write racing the reopen (a slow,
    // loaded run can take over a second) would take the fault injected for the reopen.
    let config = LogConfig {
        checkpoint_interval_ms: 3_600_000,
        ..LogConfig::default()
    };
    run(async {
        let log = open_on(&disk, dir, config).await;
        let first = log.append(batch(2, 10, 1, 1), 0).expect("append");
        log.wait_for_ack(first.last_offset, true)
            .await
            .expect("durable");
        let second = log.append(batch(3, 10, 1, 2), 0).expect("append");
        log.wait_written(second.last_offset).await.expect("written");
        disk.fail_next(FaultOp::Write, libc::ENOSPC);
        let third = log.append(batch(2, 10, 1, 3), 0).expect("queued");
        assert!(log.wait_for_ack(third.last_offset, true).await.is_err());
        assert!(
            log.poisoned().is_some(),
            "the failed write takes it offline"
        );
        // While the disk is still full, the reopen fails and can be tried again.
        disk.fail_next(FaultOp::Write, libc::ENOSPC);
        assert!(log.reopen().await.is_err(), "the disk is still full");
        let log = log.reopen().await.expect("space freed: back online");
        assert!(log.poisoned().is_none());
        let kept: Vec<i64> = read_all(&log).await.iter().map(|b| b.0).collect();
        assert_eq!(
            kept,
            vec![0, 2],
            "every whole batch written before the failure is kept; the failed one is cut"
        );
        let fourth = log
            .append(batch(1, 10, 1, 4), 0)
            .expect("appends work again");
        assert_eq!(fourth.base_offset, 5);
        log.wait_for_ack(fourth.last_offset, true)
            .await
            .expect("durable again");
    });
    disk.crash();
    run(async {
        let log = open_on(&disk, dir, LogConfig::default()).await;
        let kept: Vec<i64> = read_all(&log).await.iter().map(|b| b.0).collect();
        assert_eq!(kept, vec![0, 2, 5], "all of it survives a power failure");
        log.close().await.expect("close");
    });
}

#[test]
fn a_reopen_after_a_failed_fdatasync_discards_only_what_no_fdatasync_covered() {
    let disk = SimDisk::new(seed("reopen_after_a_failed_fdatasync"));
    let dir = Path::new("/p");
    run(async {
        let log = open_on(&disk, dir, LogConfig::default()).await;
        let first = log.append(batch(2, 10, 1, 1), 0).expect("append");
        log.wait_for_ack(first.last_offset, true)
            .await
            .expect("durable");
        let second = log.append(batch(3, 10, 1, 2), 0).expect("append");
        log.wait_written(second.last_offset).await.expect("written");
        disk.fail_next(FaultOp::Fsync, libc::EIO);
        assert!(log.wait_for_ack(second.last_offset, true).await.is_err());
        // The failed write-back lost the second batch on disk, though it still reads back: a
        // reopen that trusted it would call it durable, and a power failure would then leave
        // a hole under everything acknowledged after it.
        let log = log.reopen().await.expect("back online");
        let kept: Vec<i64> = read_all(&log).await.iter().map(|b| b.0).collect();
        assert_eq!(kept, vec![0], "only the batch an fdatasync covered");
        let third = log.append(batch(2, 10, 1, 3), 0).expect("append");
        assert_eq!(
            third.base_offset, 2,
            "offsets continue from the durable end"
        );
        log.wait_for_ack(third.last_offset, true)
            .await
            .expect("durable");
    });
    disk.crash();
    run(async {
        let log = open_on(&disk, dir, LogConfig::default()).await;
        let kept: Vec<i64> = read_all(&log).await.iter().map(|b| b.0).collect();
        assert_eq!(
            kept,
            vec![0, 2],
            "every acknowledged batch survives, in order"
        );
        log.close().await.expect("close");
    });
}

#[test]
fn no_descriptor_for_an_index_or_snapshot_file_at_a_seal_leaves_the_partition_serving() {
    let disk = SimDisk::new(seed("no_descriptor_at_a_seal"));
    let dir = Path::new("/p");
    let config = LogConfig {
        segment_bytes: 1024,
        ..LogConfig::default()
    };
    let mut offsets = Vec::new();
    run(async {
        let log = open_on(&disk, dir, config.clone()).await;
        let first = log.append(batch(1, 900, 1, 0), 0).expect("append");
        offsets.push(first.base_offset.get());
        for (tag, errno) in [(1, libc::EMFILE), (2, libc::ENOSPC), (3, libc::ENFILE)] {
            // Each append rolls (the active segment is full): the seal of the previous segment
            // creates its snapshot and index files, and the first of those creations fails.
            let info = log.append(batch(1, 900, 1, tag), 0).expect("append");
            offsets.push(info.base_offset.get());
            disk.fail_next(FaultOp::Create, errno);
            log.wait_for_ack(info.last_offset, true)
                .await
                .expect("still serving after a skipped file");
        }
        assert!(log.poisoned().is_none());
        assert!(log.segment_count() >= 3, "the segments rolled");
        log.close().await.expect("close");
    });
    run(async {
        let log = open_on(&disk, dir, config).await;
        let kept: Vec<i64> = read_all(&log).await.iter().map(|b| b.0).collect();
        assert_eq!(kept, offsets, "the missing files were rebuilt from the log");
        log.close().await.expect("close");
    });
}

#[test]
fn a_reopen_of_a_healthy_partition_is_a_clean_close_and_open() {
    let disk = SimDisk::new(seed("reopen_of_a_healthy_partition"));
    run(async {
        let log = open_on(&disk, Path::new("/p"), LogConfig::default()).await;
        let first = log.append(batch(2, 10, 1, 1), 0).expect("append");
        let log = log.reopen().await.expect("reopen");
        assert_eq!(
            log.log_end_offset(),
            first.last_offset + 1,
            "queued batches were written"
        );
        log.close().await.expect("close");
    });
}

/// Runs only as the child of `kill_9_during_writes_loses_no_acknowledged_batch` (ignored
/// otherwise, so it never counts as a passing test): appends forever, printing each
/// acknowledged last offset.
#[test]
#[ignore = "the child process of kill_9_during_writes_loses_no_acknowledged_batch"]
fn child_writer() {
    let dir = std::env::var("RINGTAIL_CHILD_DIR").expect(
        "run by kill_9_during_writes_loses_no_acknowledged_batch, which sets RINGTAIL_CHILD_DIR",
    );
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    run(async {
        let log = open(Path::new(&dir), LogConfig::default()).await;
        for i in 0u64.. {
            let info = log
                .append(batch(5, 100, i as i64, (i % 250) as u8), 0)
                .expect("append");
            log.wait_for_ack(info.last_offset, true).await.expect("ack");
            writeln!(stdout, "acked {}", info.last_offset).expect("stdout");
            stdout.flush().expect("flush");
        }
    });
}

#[test]
fn kill_9_during_writes_loses_no_acknowledged_batch() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().expect("tempdir");
    for round in 0..3 {
        let mut child = std::process::Command::new(std::env::current_exe().expect("exe"))
            .args([
                "--exact",
                "child_writer",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("RINGTAIL_CHILD_DIR", dir.path())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("spawn child");
        let reader = BufReader::new(child.stdout.take().expect("stdout"));
        let mut acked = -1i64;
        let started = std::time::Instant::now();
        for line in reader.lines() {
            let line = line.expect("line");
            if let Some(offset) = line.strip_prefix("acked ") {
                acked = offset.parse().expect("offset");
            }
            if acked >= 500 * (round + 1) || started.elapsed().as_secs() > 20 {
                break;
            }
        }
        child.kill().expect("kill -9");
        child.wait().expect("reap");
        assert!(acked >= 0, "the child acknowledged something");
        run(async {
            let log = open(dir.path(), LogConfig::default()).await;
            assert!(
                log.log_end_offset() > acked,
                "round {round}: acked {acked} but the log ends at {}",
                log.log_end_offset()
            );
            let batches = read_all(&log).await;
            let mut expected = 0;
            for (base, _) in &batches {
                assert_eq!(*base, expected, "contiguous offsets");
                expected += 5;
            }
            log.close().await.expect("close");
        });
    }
}
