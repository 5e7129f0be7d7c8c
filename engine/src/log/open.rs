//! Opening a partition: find its segments, load or rebuild their indexes, and recover from an
//! unclean stop.
//!
//! Runs on the owning shard before the partition serves anything. Metadata calls (listing,
//! opening, truncating files) are blocking here; data reads go through the ring.
//!
//! The crash model: after a clean close (marker present) the index files are trusted once
//! validated. Otherwise every segment from the one holding the recovery checkpoint onwards is
//! scanned batch by batch. A bad batch below the checkpoint is corruption of flushed data: the
//! open fails with the file and position. A bad batch at or above it is a torn tail: the file is
//! truncated there and later segments are deleted (their bytes were never acknowledged as
//! durable, and without the missing batch they could not be served in order anyway).

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Instant;

use super::checkpoint::{self, Checkpoint};
use super::{Partition, State};
use crate::config::LogConfig;
use crate::error::OpenError;
use crate::io::Notify;
use crate::offset::{FilePos, LeaderEpoch, Offset};
use crate::segment::index::{OffsetIndex, TimeIndex};
use crate::segment::recovery::{scan, Damage};
use crate::segment::{parse_file_name, Segment};
use crate::storage::{remove_all, Storage};

pub(super) async fn open(
    storage: Rc<dyn Storage>,
    dir: &Path,
    config: LogConfig,
) -> Result<Rc<Partition>, OpenError> {
    if let Err(invalid) = config.check() {
        return Err(OpenError::io(
            "check the log config",
            dir,
            std::io::Error::new(std::io::ErrorKind::InvalidInput, invalid.to_string()),
        ));
    }
    storage
        .create_dir_all(dir)
        .map_err(|err| OpenError::io("create directory", dir, err))?;
    let names = storage
        .list(dir)
        .map_err(|err| OpenError::io("list directory", dir, err))?;
    remove_leftover_temporaries(&*storage, dir, &names)?;
    let bases = list_segments(&names);
    let checkpoint = Checkpoint::open(storage.clone(), dir)
        .map_err(|err| OpenError::io("open checkpoint", dir, err))?;
    let clean = storage.exists(&dir.join(checkpoint::CLEAN_SHUTDOWN_FILE));

    let mut segments = BTreeMap::new();
    for &base in &bases {
        let segment = Segment::open(&*storage, dir, base)
            .map_err(|err| OpenError::io("open segment", Segment::log_path(dir, base), err))?;
        segments.insert(base, segment);
    }
    if segments.is_empty() {
        let base = checkpoint
            .recovery_offset()
            .unwrap_or(Offset::ZERO)
            .max(Offset::ZERO);
        let segment = Segment::create(&*storage, dir, base)
            .map_err(|err| OpenError::io("create segment", Segment::log_path(dir, base), err))?;
        storage
            .sync_dir_blocking(dir)
            .map_err(|err| OpenError::io("fsync directory", dir, err))?;
        segments.insert(base, segment);
    }
    let first_base = *segments.keys().next().expect("not empty");
    // Below the checkpoint, data was flushed; with no checkpoint nothing is known to be.
    let recovery_offset = checkpoint
        .recovery_offset()
        .unwrap_or(first_base)
        .max(first_base);
    let interval = config.index_interval_bytes;

    // Segments whose index files must be (re)written: rebuilt by a scan.
    let mut rebuilt = Vec::new();
    if clean {
        load_all(&storage, &mut segments, interval, &mut rebuilt).await?;
    } else {
        if !bases.is_empty() {
            // (A new log has nothing to recover: no warning for it.)
            tracing::warn!(
                partition = %dir.display(),
                recovery_offset = %recovery_offset,
                "not closed cleanly: recovering (every batch from the checkpoint is checked)"
            );
        }
        recover(
            &storage,
            dir,
            &mut segments,
            recovery_offset,
            interval,
            &mut rebuilt,
        )
        .await?;
    }
    check_contiguous(&segments)?;
    let active = segments.values_mut().next_back().expect("not empty");
    set_rolling_base(&storage, active).await;
    let next_offset = active.next_offset;
    let active_base = active.base_offset;
    let active_size = active.written_size;
    let sealed: BTreeSet<Offset> = segments
        .keys()
        .copied()
        .filter(|&b| b != active_base)
        .collect();
    let state = State {
        segments,
        sealed,
        next_offset,
        written_offset: next_offset,
        durable_offset: next_offset,
        checkpoint_offset: recovery_offset,
        written_file: None,
        durable_end: (active_base, active_size),
        sync_wanted: Offset::ZERO,
        sync_asked_at: None,
        pending: VecDeque::new(),
        poisoned: None,
        unsynced_discarded: false,
        closing: false,
        checkpoint_due: false,
        leader_epoch: LeaderEpoch(0),
        producers: Default::default(),
    };
    let partition = Rc::new(Partition {
        dir: dir.to_path_buf(),
        config: Cell::new(config),
        storage: storage.clone(),
        state: RefCell::new(state),
        checkpoint: RefCell::new(Some(checkpoint)),
        last_checkpoint: Cell::new(Instant::now()),
        work: Notify::new(),
        sync_work: Notify::new(),
        progress: Notify::new(),
        closed: Notify::new(),
        tasks: RefCell::new(Vec::new()),
        traffic: crate::stats::Traffic::default(),
    });
    if !clean || !rebuilt.is_empty() {
        // Make everything that survived durable (index files of rebuilt sealed segments too), so
        // the checkpoint can move to the log end.
        for &base in rebuilt.iter().filter(|&&b| b != active_base) {
            partition.flush_segment(base).await?;
        }
        let files: Vec<_> = partition
            .state
            .borrow()
            .segments
            .values()
            .map(|s| s.file.disk_file().clone())
            .collect();
        for file in files {
            let path = file.path().to_path_buf();
            storage
                .fdatasync(file)
                .await
                .map_err(|err| OpenError::io("fdatasync", path, err))?;
        }
        partition.store_checkpoint(next_offset).await?;
    }
    partition.rebuild_producer_state().await?;
    checkpoint::take_clean_marker(&*storage, dir)
        .map_err(|err| OpenError::io("remove clean-shutdown marker", dir, err))?;
    partition.start_tasks();
    Ok(partition)
}

/// Cuts the log at `end` (a segment's base and a byte position in it): the segment holding it
/// is truncated there and every later one is deleted; durably (directory synced). For a reopen
/// after a failed fdatasync, whose unsynced bytes cannot be trusted.
pub(super) fn discard_after(
    storage: &dyn Storage,
    dir: &Path,
    end: (Offset, FilePos),
) -> Result<(), OpenError> {
    let (end_base, end_position) = end;
    let names = storage
        .list(dir)
        .map_err(|err| OpenError::io("list directory", dir, err))?;
    for base in list_segments(&names) {
        if base > end_base {
            let paths = Segment::paths(dir, base);
            remove_all(storage, paths.iter().map(PathBuf::as_path))
                .map_err(|(path, err)| OpenError::io("delete segment", path, err))?;
        } else if base == end_base {
            let path = Segment::log_path(dir, base);
            let file = storage
                .open(&path, crate::storage::OpenMode::Existing)
                .map_err(|err| OpenError::io("open segment", &path, err))?;
            let len = storage
                .len(&*file)
                .map_err(|err| OpenError::io("stat segment", &path, err))?;
            if len > end_position.get() {
                storage
                    .set_len(&*file, end_position.get())
                    .map_err(|err| OpenError::io("truncate unsynced tail", &path, err))?;
            }
        }
    }
    storage
        .sync_dir_blocking(dir)
        .map_err(|err| OpenError::io("fsync directory", dir, err))
}

fn list_segments(names: &[String]) -> Vec<Offset> {
    let mut bases: Vec<Offset> = names
        .iter()
        .filter_map(|name| parse_file_name(name, "log"))
        .collect();
    bases.sort_unstable();
    bases
}

/// A snapshot write that failed (or a crash) before its rename leaves a `*.snapshot.tmp`: never
/// read, so removed at open.
fn remove_leftover_temporaries(
    storage: &dyn Storage,
    dir: &Path,
    names: &[String],
) -> Result<(), OpenError> {
    for name in names.iter().filter(|n| n.ends_with(".snapshot.tmp")) {
        let path = dir.join(name);
        storage
            .remove(&path)
            .map_err(|err| OpenError::io("remove temporary snapshot", &path, err))?;
    }
    Ok(())
}

/// Clean start: load every segment's index files (rebuilding any that fail validation) and scan
/// only each segment's tail past its last index entry. Returns whether anything was rebuilt.
async fn load_all(
    storage: &Rc<dyn Storage>,
    segments: &mut BTreeMap<Offset, Segment>,
    interval: u32,
    rebuilt: &mut Vec<Offset>,
) -> Result<(), OpenError> {
    for segment in segments.values_mut() {
        if load_segment(storage, segment, interval).await? {
            rebuilt.push(segment.base_offset);
        }
    }
    Ok(())
}

/// Loads one flushed segment: its index files if they validate against the log, otherwise a
/// full rebuild. Any damage is corruption (this data was flushed). Returns true if rebuilt.
async fn load_segment(
    storage: &Rc<dyn Storage>,
    segment: &mut Segment,
    interval: u32,
) -> Result<bool, OpenError> {
    let file_len = segment.size;
    if let Some((index, time_index)) = read_index_files(&**storage, segment, file_len) {
        if let Some(last) = index.last() {
            segment.adopt_indexes(index, time_index);
            segment.next_offset = segment.base_offset.plus(i64::from(last.relative_offset));
            let damage = scan(
                storage,
                segment,
                FilePos(u64::from(last.position)),
                file_len,
                interval,
            )
            .await
            .map_err(|err| OpenError::io("read segment", segment.file.path(), err))?;
            if damage.is_none() {
                return Ok(false);
            }
            // The index disagrees with the log: rebuild it from the log below.
        }
    }
    segment.reset_indexes();
    let damage = scan(storage, segment, FilePos::ZERO, file_len, interval)
        .await
        .map_err(|err| OpenError::io("read segment", segment.file.path(), err))?;
    if let Some(damage) = damage {
        return Err(corrupt(segment, damage));
    }
    Ok(true)
}

fn read_index_files(
    storage: &dyn Storage,
    segment: &Segment,
    file_len: FilePos,
) -> Option<(OffsetIndex, TimeIndex)> {
    let dir = segment.file.path().parent()?;
    let index_bytes = storage
        .read_file(&Segment::index_path(dir, segment.base_offset))
        .ok()?;
    let time_bytes = storage
        .read_file(&Segment::time_index_path(dir, segment.base_offset))
        .ok()?;
    let index = OffsetIndex::from_bytes(&index_bytes, file_len.get())?;
    let max_relative = index.last().map_or(0, |e| e.relative_offset);
    let time_index = TimeIndex::from_bytes(&time_bytes, max_relative)?;
    Some((index, time_index))
}

/// Unclean start. Segments wholly below the checkpoint are loaded as flushed; from the one
/// holding the checkpoint onwards, each is scanned and the first torn batch ends the log.
async fn recover(
    storage: &Rc<dyn Storage>,
    dir: &Path,
    segments: &mut BTreeMap<Offset, Segment>,
    recovery_offset: Offset,
    interval: u32,
    rebuilt: &mut Vec<Offset>,
) -> Result<(), OpenError> {
    let bases: Vec<Offset> = segments.keys().copied().collect();
    // The segment holding the checkpoint: the last whose base is at or below it.
    let first_scanned = bases
        .iter()
        .rev()
        .find(|&&base| base <= recovery_offset)
        .copied()
        .unwrap_or(bases[0]);
    for (i, &base) in bases.iter().enumerate() {
        let segment = segments.get_mut(&base).expect("listed");
        if base < first_scanned {
            if load_segment(storage, segment, interval).await? {
                rebuilt.push(base);
            }
            continue;
        }
        rebuilt.push(base);
        segment.reset_indexes();
        let file_len = segment.size;
        let damage = scan(storage, segment, FilePos::ZERO, file_len, interval)
            .await
            .map_err(|err| OpenError::io("read segment", segment.file.path(), err))?;
        // A segment that ends cleanly but short of the next one's base lost its tail: the next
        // segment was created (at the roll) and its creation made durable by a later sync,
        // while this one's last writes were not. The later segments hold nothing acknowledged
        // as durable (a segment is flushed before the next is written), so they go too.
        let gap = bases
            .get(i + 1)
            .filter(|&&next| next != segment.next_offset);
        let damage = match (damage, gap) {
            (Some(damage), _) => damage,
            (None, Some(&next)) => Damage {
                position: segment.size,
                expected_offset: segment.next_offset,
                reason: format!(
                    "the segment ends at offset {} but the next one starts at {next}",
                    segment.next_offset
                ),
            },
            (None, None) => continue,
        };
        if damage.expected_offset < recovery_offset {
            return Err(corrupt(segment, damage));
        }
        tracing::warn!(
            file = %segment.file.path().display(),
            position = %damage.position,
            offset = %damage.expected_offset,
            "torn tail truncated at recovery: {}",
            damage.reason
        );
        truncate(&**storage, segment, damage.position)?;
        for &later in &bases[i + 1..] {
            segments.remove(&later);
            let paths = Segment::paths(dir, later);
            remove_all(&**storage, paths.iter().map(PathBuf::as_path))
                .map_err(|(path, err)| OpenError::io("delete segment", path, err))?;
        }
        storage
            .sync_dir_blocking(dir)
            .map_err(|err| OpenError::io("fsync directory", dir, err))?;
        break;
    }
    let last = segments.values().next_back().expect("not empty");
    if last.next_offset < recovery_offset {
        return Err(OpenError::Corrupt {
            path: last.file.path().to_path_buf(),
            position: last.size.get(),
            reason: format!(
                "the log ends at offset {} but offsets below {recovery_offset} were flushed: \
                 flushed data is missing",
                last.next_offset
            ),
        });
    }
    Ok(())
}

fn truncate(
    storage: &dyn Storage,
    segment: &mut Segment,
    position: FilePos,
) -> Result<(), OpenError> {
    storage
        .set_len(&**segment.file.disk_file(), position.get())
        .map_err(|err| OpenError::io("truncate torn tail", segment.file.path(), err))?;
    segment.size = position;
    segment.written_size = position;
    Ok(())
}

fn corrupt(segment: &Segment, damage: Damage) -> OpenError {
    OpenError::Corrupt {
        path: segment.file.path().to_path_buf(),
        position: damage.position.get(),
        reason: format!(
            "{} (offset {} lies below the recovery checkpoint: this data was flushed, so it is \
             not a torn write)",
            damage.reason, damage.expected_offset
        ),
    }
}

fn check_contiguous(segments: &BTreeMap<Offset, Segment>) -> Result<(), OpenError> {
    let mut previous: Option<&Segment> = None;
    for segment in segments.values() {
        if let Some(prev) = previous {
            if prev.next_offset != segment.base_offset {
                return Err(OpenError::Corrupt {
                    path: segment.file.path().to_path_buf(),
                    position: 0,
                    reason: format!(
                        "segment starts at offset {} but the previous one ends at {}",
                        segment.base_offset, prev.next_offset
                    ),
                });
            }
        }
        previous = Some(segment);
    }
    Ok(())
}

/// `segment.ms` counts from the active segment's first batch: read its timestamp.
async fn set_rolling_base(storage: &Rc<dyn Storage>, active: &mut Segment) {
    if active.rolling_base_ms.is_some() || active.is_empty() {
        return;
    }
    let file = active.file.disk_file().clone();
    if let Ok(bytes) = storage
        .read_at(file, crate::format::batch::HEADER_LEN, 0)
        .await
    {
        if let Ok(header) = crate::format::batch::parse_header(&bytes) {
            active.rolling_base_ms = Some(header.max_timestamp);
        }
    }
}
