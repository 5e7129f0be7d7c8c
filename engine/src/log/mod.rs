//! A partition log: segments of Kafka v2 batches, appended without copying, written in one
//! io_uring write per tick, synced per the fsync policy, recovered after crashes.
//!
//! A [`Partition`] lives on the shard that owns it (`Rc`, not `Send`); its tasks (writer,
//! syncer) run on that shard's runtime, so nothing here takes a lock. State sits in a `RefCell`
//! that is never borrowed across an `.await`: an I/O job is taken out of the state, awaited, and
//! its result applied in a new borrow.
//!
//! Offsets, in the order they must always keep (asserted in `State::check` after every change,
//! in all builds: a violation is a bug, and the shard stops rather than serve or acknowledge
//! on a broken invariant):
//! `log_start <= recovery point <= durable <= written (high watermark) <= next (log end)`.
//! - `next_offset`: assigned to appended batches, some still queued.
//! - `written_offset`: every batch below it is in its segment file (readable; the high
//!   watermark of this single-replica log).
//! - `durable_offset`: every batch below it was covered by a completed fdatasync.
//! - recovery point: the stored recovery checkpoint (`checkpoint_offset`, below which recovery
//!   trusts the data), or the log start when retention deleted past it, as recovery reads it.
//!
//! A failed write or fdatasync poisons the partition: queued batches are dropped unacknowledged,
//! waiters and later appends get the storage error, and no offset moves again. Reads below the
//! durable offset are still served. [`Partition::reopen`] recovers from what is on disk once the
//! fault has cleared.

mod checkpoint;
mod open;
mod read;
mod rounds;
mod tasks;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use crate::config::LogConfig;
use crate::error::{AppendError, StorageError};
use crate::format::batch;
use crate::io::{JoinHandle, Notify, IOV_MAX};
use crate::offset::{FilePos, LeaderEpoch, Offset};
use crate::producer::{Check, ProducerState};
use crate::segment::{Segment, SegmentFile};
use crate::storage::{remove_all, OsStorage, Storage};
use checkpoint::Checkpoint;

pub use read::{FileRange, ReadResult};

/// What an append was given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: Offset,
    pub last_offset: Offset,
    pub log_start_offset: Offset,
    /// The batch was a retry of one already appended by the same idempotent producer: nothing
    /// was appended, and the offsets are the original's.
    pub duplicate: bool,
}

/// One unit of work for the writer task, in log order.
enum Job {
    /// Batches contiguous in one segment file: one WRITEV.
    Write {
        file: Arc<SegmentFile>,
        segment_base: Offset,
        position: FilePos,
        bufs: Vec<Bytes>,
        bytes: u64,
        end_offset: Offset,
        /// When its first batch was appended, if stage timing is on.
        first_append: Option<Instant>,
    },
    /// The segment was rolled: flush it and write its index files, then mark it sealed.
    Seal { segment_base: Offset },
}

struct State {
    segments: BTreeMap<Offset, Segment>,
    /// Segments whose seal completed: fully written, flushed, indexes on disk.
    sealed: std::collections::BTreeSet<Offset>,
    next_offset: Offset,
    written_offset: Offset,
    durable_offset: Offset,
    /// The recovery checkpoint last stored: every batch below it is flushed.
    checkpoint_offset: Offset,
    /// The file holding the newest written bytes: the one an fdatasync must cover.
    written_file: Option<Arc<SegmentFile>>,
    /// Where `durable_offset` ends: (segment base, byte position in that segment). What a
    /// poisoned partition still serves.
    durable_end: (Offset, FilePos),
    /// The highest offset (exclusive) a durability waiter asked for.
    sync_wanted: Offset,
    /// When the oldest durability request not yet served by a started fdatasync was made, if
    /// stage timing is on.
    sync_asked_at: Option<Instant>,
    pending: VecDeque<Job>,
    poisoned: Option<StorageError>,
    /// An fdatasync failed: what was written after the durable end was discarded.
    unsynced_discarded: bool,
    closing: bool,
    checkpoint_due: bool,
    leader_epoch: LeaderEpoch,
    /// Idempotent producers' sequences, as of every appended batch.
    producers: ProducerState,
}

impl State {
    /// Bytes of segment `base` up to `position` that no fdatasync covered yet (as far as the
    /// durable end knows: all of them when the durable end is in an earlier segment).
    fn unsynced_bytes(&self, base: Offset, position: FilePos) -> u64 {
        let (durable_base, durable_position) = self.durable_end;
        if durable_base == base {
            position.get().saturating_sub(durable_position.get())
        } else {
            position.get()
        }
    }

    fn active(&self) -> &Segment {
        self.segments
            .values()
            .next_back()
            .expect("a log has a segment")
    }

    fn active_mut(&mut self) -> &mut Segment {
        self.segments
            .values_mut()
            .next_back()
            .expect("a log has a segment")
    }

    fn log_start_offset(&self) -> Offset {
        *self.segments.keys().next().expect("a log has a segment")
    }

    /// The offset below which recovery trusts the data.
    fn recovery_point(&self) -> Offset {
        self.checkpoint_offset.max(self.log_start_offset())
    }

    /// Asserts the offset order (see the module documentation). Cheap: five loads.
    fn check(&self) {
        let (start, recovery) = (self.log_start_offset(), self.recovery_point());
        let (durable, written, next) = (self.durable_offset, self.written_offset, self.next_offset);
        assert!(
            start <= recovery && recovery <= durable && durable <= written && written <= next,
            "offset order broken: log start {start}, recovery point {recovery}, durable \
             {durable}, written {written}, log end {next}"
        );
    }
}

pub struct Partition {
    dir: PathBuf,
    /// Set at open; the topic-level settings may change later (`reconfigure`).
    config: Cell<LogConfig>,
    /// Where the files are: the kernel's file system, or a simulated disk in tests.
    storage: Rc<dyn Storage>,
    state: RefCell<State>,
    checkpoint: RefCell<Option<Checkpoint>>,
    last_checkpoint: Cell<Instant>,
    /// Wakes the writer: a job was queued, a checkpoint is due, or the log is closing.
    work: Notify,
    /// Wakes the syncer: data was written, a waiter wants durability, or the log is closing.
    sync_work: Notify,
    /// Wakes waiters: the written or durable offset moved, or the partition failed.
    progress: Notify,
    /// Fired once, by `close`: wakes tasks that sleep on timers (the interval ticker).
    closed: Notify,
    tasks: RefCell<Vec<JoinHandle<()>>>,
    /// Records in and out, for metrics.
    traffic: crate::stats::Traffic,
}

impl Partition {
    /// Opens (recovering if needed) or creates the partition log in `dir`, and starts its tasks
    /// on the current runtime.
    pub async fn open(dir: &Path, config: LogConfig) -> Result<Rc<Partition>, crate::OpenError> {
        open::open(Rc::new(OsStorage), dir, config).await
    }

    /// Like [`Partition::open`], on the given storage (a simulated disk, in tests).
    pub async fn open_on(
        storage: Rc<dyn Storage>,
        dir: &Path,
        config: LogConfig,
    ) -> Result<Rc<Partition>, crate::OpenError> {
        open::open(storage, dir, config).await
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The settings in force now.
    pub fn config(&self) -> LogConfig {
        self.config.get()
    }

    /// Applies a topic's changed settings while the log runs (Kafka's dynamic topic configs):
    /// `segment.bytes`, `segment.ms`, `retention.ms`, `retention.bytes` and
    /// `max.message.bytes` take effect on the next append, roll or retention check. The rest
    /// of `new` (fsync policy, index interval, checkpoint interval, producer expiry) is the
    /// broker's and stays as opened: the partition's tasks were started with it.
    pub fn reconfigure(&self, new: &LogConfig) -> Result<(), crate::config::InvalidConfig> {
        new.check()?;
        let mut config = self.config.get();
        config.segment_bytes = new.segment_bytes;
        config.segment_ms = new.segment_ms;
        config.retention_ms = new.retention_ms;
        config.retention_bytes = new.retention_bytes;
        config.max_message_bytes = new.max_message_bytes;
        self.config.set(config);
        Ok(())
    }

    /// Appends one producer batch (a slice of the request buffer). Validates it, assigns its
    /// offsets, stamps `baseOffset` and `partitionLeaderEpoch` in place and queues it for the
    /// writer; the bytes are not copied. `now_ms` is the broker's clock, for `segment.ms`.
    pub fn append(&self, mut batch: BytesMut, now_ms: i64) -> Result<AppendInfo, AppendError> {
        if batch.len() > self.config.get().max_message_bytes {
            return Err(AppendError::TooLarge {
                size: batch.len(),
                max: self.config.get().max_message_bytes,
            });
        }
        let mut header = batch::validate(&batch)?;
        let mut state = self.state.borrow_mut();
        if let Some(err) = &state.poisoned {
            return Err(err.clone().into());
        }
        if let Check::Duplicate(original) = state.producers.check(&header)? {
            return Ok(AppendInfo {
                base_offset: Offset(original.first_offset),
                last_offset: Offset(original.last_offset),
                log_start_offset: state.log_start_offset(),
                duplicate: true,
            });
        }
        self.maybe_roll(&mut state, header.size as u64, now_ms)?;
        let base_offset = state.next_offset;
        batch::stamp(&mut batch, base_offset.get(), state.leader_epoch.0);
        header.base_offset = base_offset.get();
        let interval = self.config.get().index_interval_bytes;
        let active = state.active_mut();
        let position = active.size;
        active.record(&header, position, interval, now_ms);
        let (file, segment_base) = (active.file.clone(), active.base_offset);
        let bytes = batch.freeze();
        let len = bytes.len() as u64;
        let end_offset = Offset(header.next_offset());
        state.next_offset = end_offset;
        state.check();
        state.producers.record(&header, now_ms);
        let merged = match state.pending.back_mut() {
            Some(Job::Write {
                segment_base: job_base,
                bufs,
                bytes: job_bytes,
                end_offset: job_end,
                ..
            }) if *job_base == segment_base && bufs.len() < IOV_MAX => {
                bufs.push(bytes.clone());
                *job_bytes += len;
                *job_end = end_offset;
                true
            }
            _ => false,
        };
        if !merged {
            state.pending.push_back(Job::Write {
                file,
                segment_base,
                position,
                bufs: vec![bytes],
                bytes: len,
                end_offset,
                first_append: crate::timing::start(),
            });
        }
        let log_start_offset = state.log_start_offset();
        drop(state);
        self.traffic
            .appended((end_offset.get() - base_offset.get()) as u64, len);
        self.work.notify_all();
        Ok(AppendInfo {
            base_offset,
            last_offset: end_offset.plus(-1),
            log_start_offset,
            duplicate: false,
        })
    }

    fn maybe_roll(
        &self,
        state: &mut State,
        incoming: u64,
        now_ms: i64,
    ) -> Result<(), StorageError> {
        let active = state.active();
        if active.is_empty() {
            return Ok(());
        }
        let too_big = active.size.get() + incoming > self.config.get().segment_bytes;
        let too_old = active
            .rolling_base_ms
            .is_some_and(|base| now_ms - base >= self.config.get().segment_ms);
        if !(too_big || too_old) {
            return Ok(());
        }
        let old_base = active.base_offset;
        let segment = match Segment::create(&*self.storage, &self.dir, state.next_offset) {
            Ok(segment) => segment,
            Err(err) => {
                let transient = matches!(
                    err.raw_os_error(),
                    Some(libc::EMFILE | libc::ENFILE | libc::ENOSPC | libc::EDQUOT)
                );
                let path = Segment::log_path(&self.dir, state.next_offset);
                let err = StorageError::new("create segment", path, err);
                if transient {
                    // Nothing was written: the batch is refused (retriable) and the partition
                    // keeps serving; the roll is tried again with the next batch.
                    tracing::warn!(partition = %self.dir.display(), "cannot roll: {err}");
                } else {
                    self.poison_locked(state, err.clone());
                }
                return Err(err);
            }
        };
        state.segments.insert(segment.base_offset, segment);
        state.pending.push_back(Job::Seal {
            segment_base: old_base,
        });
        Ok(())
    }

    /// Records and bytes appended and served since the partition was opened.
    pub fn traffic(&self) -> crate::stats::TrafficCounts {
        self.traffic.counts()
    }

    /// The high watermark: every offset below it can be read.
    pub fn high_watermark(&self) -> Offset {
        self.state.borrow().written_offset
    }

    /// The log end offset, counting batches still queued for writing.
    pub fn log_end_offset(&self) -> Offset {
        self.state.borrow().next_offset
    }

    pub fn durable_offset(&self) -> Offset {
        self.state.borrow().durable_offset
    }

    pub fn log_start_offset(&self) -> Offset {
        self.state.borrow().log_start_offset()
    }

    /// Number of segments, including the active one.
    pub fn segment_count(&self) -> usize {
        self.state.borrow().segments.len()
    }

    /// Bytes of log on disk or queued, over all segments.
    pub fn size_bytes(&self) -> u64 {
        self.state
            .borrow()
            .segments
            .values()
            .map(|s| s.size.get())
            .sum()
    }

    /// The error that took the partition offline, if one did.
    pub fn poisoned(&self) -> Option<StorageError> {
        self.state.borrow().poisoned.clone()
    }

    /// Whether an fdatasync failed, so that what was written after the durable end was
    /// discarded (acknowledged writes that no fdatasync covered are gone; see `reopen`).
    pub fn unsynced_discarded(&self) -> bool {
        self.state.borrow().unsynced_discarded
    }

    /// Waits until the batch holding `offset` is in its segment file (readable, survives kill -9).
    pub async fn wait_written(&self, offset: Offset) -> Result<(), StorageError> {
        loop {
            let notified = self.progress.notified();
            {
                let state = self.state.borrow();
                if let Some(err) = &state.poisoned {
                    return Err(err.clone());
                }
                if state.written_offset > offset {
                    return Ok(());
                }
            }
            notified.await;
        }
    }

    /// Waits until the high watermark passes `offset` (new data to fetch) or the partition
    /// fails. For long-poll fetches; callers bound it with a timeout.
    pub async fn wait_high_watermark_above(&self, offset: Offset) -> Result<(), StorageError> {
        self.wait_written(offset).await
    }

    /// The newest batch timestamp in the log (-1 when empty).
    pub fn max_timestamp(&self) -> i64 {
        let state = self.state.borrow();
        state
            .segments
            .values()
            .map(|s| s.max_timestamp)
            .max()
            .unwrap_or(-1)
    }

    /// Waits until an fdatasync covered the batch holding `offset` (survives power loss). Every
    /// waiter of a tick shares one fdatasync.
    pub async fn wait_durable(&self, offset: Offset) -> Result<(), StorageError> {
        {
            let mut state = self.state.borrow_mut();
            state.sync_wanted = state.sync_wanted.max(offset.next());
            if state.sync_asked_at.is_none() {
                state.sync_asked_at = crate::timing::start();
            }
        }
        self.sync_work.notify_all();
        loop {
            let notified = self.progress.notified();
            {
                let state = self.state.borrow();
                if let Some(err) = &state.poisoned {
                    return Err(err.clone());
                }
                if state.durable_offset > offset {
                    return Ok(());
                }
            }
            notified.await;
        }
    }

    /// Waits for what the fsync policy requires before a produce with this acks setting may be
    /// acknowledged.
    pub async fn wait_for_ack(
        &self,
        last_offset: Offset,
        acks_all: bool,
    ) -> Result<(), StorageError> {
        if self.config.get().fsync.ack_waits_for_sync(acks_all) {
            self.wait_durable(last_offset).await
        } else {
            self.wait_written(last_offset).await
        }
    }

    /// Deletes whole sealed segments past `retention.ms` (by their newest timestamp) or beyond
    /// `retention.bytes`, oldest first, and advances the log start offset. Returns how many were
    /// deleted. The active segment is never deleted; files still read by a fetch stay open until
    /// the fetch drops them.
    pub fn enforce_retention(&self, now_ms: i64) -> Result<usize, StorageError> {
        let mut total: u64 = self.size_bytes();
        let config = self.config.get();
        self.delete_oldest_segments_while(|oldest| {
            let oldest_size = oldest.size.get();
            let expired = config.retention_ms.is_some_and(|limit| {
                oldest.max_timestamp >= 0 && now_ms - oldest.max_timestamp > limit
            });
            let oversized = config
                .retention_bytes
                .is_some_and(|limit| total - oldest_size >= limit);
            if expired || oversized {
                total -= oldest_size;
                return true;
            }
            false
        })
    }

    /// Deletes the sealed segments that hold only offsets below `offset` (every later batch
    /// stays), advancing the log start offset. For logs whose newer records supersede older
    /// ones (the group coordinator's offsets log, after it wrote a snapshot of its state).
    pub fn delete_segments_before(&self, offset: Offset) -> Result<usize, StorageError> {
        self.delete_oldest_segments_while(|oldest| oldest.next_offset <= offset)
    }

    /// Deletes sealed segments, oldest first, while `doomed` says so; never the active one.
    fn delete_oldest_segments_while(
        &self,
        mut doomed: impl FnMut(&Segment) -> bool,
    ) -> Result<usize, StorageError> {
        let mut state = self.state.borrow_mut();
        let mut deleted = 0;
        while state.segments.len() > 1 {
            let (&base, oldest) = state.segments.iter().next().expect("len > 1");
            if !state.sealed.contains(&base) || !doomed(oldest) {
                break;
            }
            state.segments.remove(&base);
            state.sealed.remove(&base);
            let paths = Segment::paths(&self.dir, base);
            remove_all(&*self.storage, paths.iter().map(PathBuf::as_path))
                .map_err(|(path, err)| StorageError::new("delete segment", path, err))?;
            state.check();
            tracing::info!(
                partition = %self.dir.display(),
                segment = %base,
                log_start = %state.log_start_offset(),
                "segment deleted (retention or compaction of superseded offsets)"
            );
            deleted += 1;
        }
        Ok(deleted)
    }

    /// Stops the tasks after every queued batch is written, flushes the active segment and its
    /// indexes, records the checkpoint and writes the clean-shutdown marker.
    pub async fn close(&self) -> Result<(), StorageError> {
        self.stop_tasks().await;
        if let Some(err) = self.poisoned() {
            return Err(err);
        }
        if let Err(err) = self.flush_at_close().await {
            // As in the tasks: a failed write-back must not be trusted by the next open.
            self.poison(err.clone());
            return Err(err);
        }
        checkpoint::write_clean_marker(&*self.storage, &self.dir)
            .await
            .map_err(|err| StorageError::new("write clean-shutdown marker", &self.dir, err))
    }

    /// Close's flush: the producer snapshot, the active segment and its indexes, the checkpoint.
    async fn flush_at_close(&self) -> Result<(), StorageError> {
        self.write_producer_snapshot().await?;
        let active_base = self.state.borrow().active().base_offset;
        self.flush_segment(active_base).await?;
        let next = {
            // Every batch is written (the writer finished) and now flushed.
            let mut state = self.state.borrow_mut();
            let size = state.active().written_size;
            state.durable_offset = state.written_offset;
            state.durable_end = (active_base, size);
            state.check();
            state.next_offset
        };
        self.store_checkpoint(next).await
    }

    /// Opens the log again after the fault that took it offline has cleared (space freed on a
    /// full disk, descriptors released, a device back): stops this partition's tasks and opens
    /// the directory anew, recovering as after a crash, so every batch on disk is checked and a
    /// torn tail is cut. Returns the new partition; this one stays offline and is dropped by
    /// the caller (reads still in flight on it finish).
    ///
    /// A failed write keeps every whole batch written before it; after a failed fdatasync the
    /// log was already cut at its durable end (see `poison_locked`).
    ///
    /// Fails (and leaves the directory to a later attempt) while the fault persists. On a
    /// partition that is not offline it is a clean close and open.
    pub async fn reopen(&self) -> Result<Rc<Partition>, crate::OpenError> {
        let Some(poison) = self.poisoned() else {
            self.close().await?;
            return open::open(self.storage.clone(), &self.dir, self.config.get()).await;
        };
        self.stop_tasks().await;
        let partition = open::open(self.storage.clone(), &self.dir, self.config.get()).await?;
        tracing::warn!(
            partition = %self.dir.display(),
            log_end = %partition.log_end_offset(),
            "partition back online after: {poison}"
        );
        Ok(partition)
    }

    /// Asks the tasks to stop and waits for them (queued batches are written first, unless the
    /// partition is offline).
    async fn stop_tasks(&self) {
        self.state.borrow_mut().closing = true;
        self.work.notify_all();
        self.sync_work.notify_all();
        self.closed.notify_all();
        let tasks = std::mem::take(&mut *self.tasks.borrow_mut());
        for task in tasks {
            task.await;
        }
    }

    /// The idempotent-producer state of a producer id (for tests and tools).
    pub fn producer_entry(&self, producer_id: i64) -> Option<crate::producer::ProducerEntry> {
        self.state.borrow().producers.get(producer_id).cloned()
    }

    /// Takes the partition offline: drops queued batches and wakes every waiter with `err`.
    fn poison_locked(&self, state: &mut State, err: StorageError) {
        if state.poisoned.is_none() {
            tracing::error!(
                partition = %self.dir.display(),
                written = %state.written_offset,
                durable = %state.durable_offset,
                "partition offline: {err}"
            );
            state.poisoned = Some(err.clone());
        }
        if err.is_sync_failure() {
            // Even when already offline for another reason: a sync in flight may fail after.
            self.discard_unsynced(state);
            state.unsynced_discarded = true;
        }
        state.pending.clear();
        self.progress.notify_all();
        self.work.notify_all();
        self.sync_work.notify_all();
    }

    /// After a failed fdatasync, cuts the files at the durable end. The kernel reports a
    /// write-back failure once and marks the pages clean, so what was written after the last
    /// successful fdatasync may read back from the page cache while the disk lacks it: a later
    /// open (a reopen, or a restart of the broker) would take it for data, its own fdatasync
    /// would succeed over it, and a power failure would then leave a hole under batches
    /// acknowledged after it. Everything acknowledged as durable lies below the cut.
    fn discard_unsynced(&self, state: &State) {
        let (durable, written) = (state.durable_offset, state.written_offset);
        match open::discard_after(&*self.storage, &self.dir, state.durable_end) {
            Ok(()) if written > durable => tracing::warn!(
                partition = %self.dir.display(),
                "discarded offsets {durable}..{written}: written, but their fdatasync failed"
            ),
            Ok(()) => {}
            Err(err) => tracing::error!(
                partition = %self.dir.display(),
                "cannot discard offsets {durable}..{written} after a failed fdatasync: {err}; \
                 a restart may serve them though the disk may not hold them"
            ),
        }
    }

    fn poison(&self, err: StorageError) {
        let mut state = self.state.borrow_mut();
        self.poison_locked(&mut state, err);
    }
}
