//! The partition's background tasks, on its shard's runtime: the writer (one WRITEV per queued
//! job, in log order; seals rolled segments), the syncer (fdatasync shared by every waiter that
//! asked since the last one), and for `interval:MS` a ticker that asks the syncer periodically.
//!
//! The syncers of a shard's partitions start their fdatasyncs in rounds (`rounds`).
//!
//! Ordering: the writer runs jobs strictly in order, so a segment's seal (its fdatasync and index
//! files) completes before any byte of the next segment is written; the syncer issues fdatasync
//! only for bytes whose write already completed (io_uring does not order them otherwise).

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{Job, Partition};
use crate::config::FsyncPolicy;
use crate::error::StorageError;
use crate::io::{spawn, timeout};
use crate::offset::Offset;
use crate::segment::{Segment, SegmentFile};
use crate::storage::{OpenMode, Storage};
use crate::timing::{self, Stage};

impl Partition {
    pub(super) fn start_tasks(self: &Rc<Self>) {
        let mut tasks = self.tasks.borrow_mut();
        tasks.push(spawn(run_writer(self.clone())));
        tasks.push(spawn(run_syncer(self.clone())));
        if let FsyncPolicy::Interval(every) = self.config.get().fsync {
            tasks.push(spawn(run_ticker(self.clone(), every)));
        }
    }

    /// Writes the segment's index files and flushes them, the log file and the directory.
    pub(super) async fn flush_segment(&self, segment_base: Offset) -> Result<(), StorageError> {
        let (file, index, time_index, unsynced) = {
            let state = self.state.borrow();
            let segment = &state.segments[&segment_base];
            (
                segment.file.clone(),
                Bytes::from(segment.index.to_bytes()),
                Bytes::from(segment.time_index.to_bytes()),
                state.unsynced_bytes(segment_base, segment.written_size),
            )
        };
        let index_path = Segment::index_path(&self.dir, segment_base);
        let time_index_path = Segment::time_index_path(&self.dir, segment_base);
        // Index files are an accelerator: one that cannot be created now is rebuilt from the
        // log at the next open. The log file's own flush is what must not be skipped.
        for (path, bytes) in [(&index_path, index), (&time_index_path, time_index)] {
            skip_if_uncreatable(write_file(&*self.storage, path, bytes).await)?;
        }
        self.sync_file(file, unsynced).await?;
        // The directory entry of a new segment must be durable too, without blocking the shard.
        self.storage
            .sync_dir(&self.dir)
            .await
            .map_err(|err| StorageError::new("fsync directory", &self.dir, err))
    }

    /// fdatasync of a segment file that has `unsynced` bytes written since its last one
    /// (counted with its latency in `stats`).
    async fn sync_file(&self, file: Arc<SegmentFile>, unsynced: u64) -> Result<(), StorageError> {
        let disk_file = file.disk_file().clone();
        let started = Instant::now();
        let result = self
            .storage
            .fdatasync(disk_file)
            .await
            .map_err(|err| StorageError::new("fdatasync", file.path(), err));
        crate::stats::record_fsync(started.elapsed(), unsynced);
        result
    }

    /// Writes the idempotent-producer state as of every appended batch to
    /// `<next offset>.snapshot` (temporary file, write and fdatasync through the ring, rename),
    /// and keeps only the newest two snapshots. Idle producers are expired first.
    pub(super) async fn write_producer_snapshot(&self) -> Result<(), StorageError> {
        let (bytes, offset) = {
            let mut state = self.state.borrow_mut();
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            state
                .producers
                .expire(now, self.config.get().producer_id_expiration_ms);
            let offset = state.next_offset;
            (
                crate::producer::snapshot::encode(&state.producers, offset),
                offset,
            )
        };
        let path = self.dir.join(crate::producer::snapshot::file_name(offset));
        let tmp = path.with_extension("snapshot.tmp");
        // Like the index files: without it, the producer state is rebuilt from the log.
        if !skip_if_uncreatable(write_file(&*self.storage, &tmp, Bytes::from(bytes)).await)? {
            return Ok(());
        }
        self.storage
            .rename(&tmp, &path)
            .map_err(|err| StorageError::new("rename snapshot", &path, err))?;
        for (_, old_path) in crate::producer::snapshot::list(&*self.storage, &self.dir)
            .into_iter()
            .skip(2)
        {
            let _ = self.storage.remove(&old_path);
        }
        Ok(())
    }

    pub(super) async fn store_checkpoint(
        &self,
        recovery_offset: Offset,
    ) -> Result<(), StorageError> {
        let Some(mut checkpoint) = self.checkpoint.borrow_mut().take() else {
            return Ok(()); // another store is in progress; it covers an earlier offset
        };
        let result = checkpoint.store(recovery_offset).await;
        let path = checkpoint.path().to_path_buf();
        *self.checkpoint.borrow_mut() = Some(checkpoint);
        self.last_checkpoint.set(Instant::now());
        result.map_err(|err| StorageError::new("write recovery checkpoint", path, err))?;
        let mut state = self.state.borrow_mut();
        state.checkpoint_offset = state.checkpoint_offset.max(recovery_offset);
        state.check();
        Ok(())
    }

    async fn run_write_job(&self, job: Job) -> Result<(), StorageError> {
        match job {
            Job::Write {
                file,
                segment_base,
                position,
                bufs,
                bytes,
                end_offset,
                first_append,
            } => {
                timing::record_since(Stage::QueuedForWrite, first_append);
                let started = timing::start();
                let result = self
                    .storage
                    .write_at(file.disk_file().clone(), bufs, position.get())
                    .await;
                timing::record_since(Stage::Write, started);
                if let Err(err) = result {
                    return Err(StorageError::new("write", file.path(), err));
                }
                let mut state = self.state.borrow_mut();
                if state.poisoned.is_some() {
                    // It failed while this write was in flight: no offset moves again (the
                    // files may already be cut at the durable end).
                    return Ok(());
                }
                if let Some(segment) = state.segments.get_mut(&segment_base) {
                    segment.written_size = position.plus(bytes);
                }
                state.written_offset = end_offset;
                state.written_file = Some(file);
                state.check();
                drop(state);
                self.progress.notify_all();
                self.sync_work.notify_all();
                Ok(())
            }
            Job::Seal { segment_base } => {
                self.write_producer_snapshot().await?;
                self.flush_segment(segment_base).await?;
                let recovery_offset = {
                    let mut state = self.state.borrow_mut();
                    if state.poisoned.is_some() {
                        return Ok(());
                    }
                    let end = state.segments[&segment_base].next_offset;
                    if end > state.durable_offset {
                        state.durable_offset = end;
                        let size = state.segments[&segment_base].written_size;
                        state.durable_end = (segment_base, size);
                    }
                    state.sealed.insert(segment_base);
                    state.check();
                    state.durable_offset
                };
                self.progress.notify_all();
                self.store_checkpoint(recovery_offset).await
            }
        }
    }
}

async fn run_writer(partition: Rc<Partition>) {
    loop {
        let notified = partition.work.notified();
        let (job, closing, checkpoint_due) = {
            let mut state = partition.state.borrow_mut();
            let job = if state.poisoned.is_some() {
                None
            } else {
                state.pending.pop_front()
            };
            let due = std::mem::take(&mut state.checkpoint_due);
            (job, state.closing || state.poisoned.is_some(), due)
        };
        match job {
            Some(job) => {
                if let Err(err) = partition.run_write_job(job).await {
                    partition.poison(err);
                }
            }
            None if closing => return,
            None => {
                if checkpoint_due {
                    let durable = partition.durable_offset();
                    if let Err(err) = partition.store_checkpoint(durable).await {
                        partition.poison(err);
                    }
                    continue;
                }
                notified.await;
            }
        }
    }
}

async fn run_syncer(partition: Rc<Partition>) {
    let always = partition.config.get().fsync == FsyncPolicy::Always;
    loop {
        let notified = partition.sync_work.notified();
        let target = {
            let mut state = partition.state.borrow_mut();
            if state.poisoned.is_some() {
                return;
            }
            let unsynced = state.written_offset > state.durable_offset;
            let asked = state.sync_wanted > state.durable_offset;
            match &state.written_file {
                Some(_) if unsynced && (always || asked) => Some(state.sync_asked_at.take()),
                _ if state.closing && state.pending.is_empty() && !asked => return,
                _ => None,
            }
        };
        let Some(asked_at) = target else {
            notified.await;
            continue;
        };
        let _place = super::rounds::join().await;
        // What to cover, taken after the round began: everything written by then, and where it
        // ends in its file (for the durable end a poisoned partition still serves).
        let (offset, file, position, unsynced) = {
            let state = partition.state.borrow();
            let Some(file) = state.written_file.clone() else {
                return; // unreachable: it was set above and is never cleared
            };
            if state.poisoned.is_some() {
                return;
            }
            let position = state
                .segments
                .get(&file.base_offset())
                .map_or(crate::offset::FilePos::ZERO, |s| s.written_size);
            let unsynced = state.unsynced_bytes(file.base_offset(), position);
            (state.written_offset, file, position, unsynced)
        };
        timing::record_since(Stage::WaitForSync, asked_at);
        let started = timing::start();
        let file_base = file.base_offset();
        if let Err(err) = partition.sync_file(file, unsynced).await {
            partition.poison(err);
            return;
        }
        timing::record_since(Stage::Fsync, started);
        {
            let mut state = partition.state.borrow_mut();
            if state.poisoned.is_some() {
                return; // another task failed meanwhile: nothing is acknowledged now
            }
            if offset > state.durable_offset {
                state.durable_offset = offset;
                state.durable_end = (file_base, position);
            }
            state.check();
            let interval = Duration::from_millis(partition.config.get().checkpoint_interval_ms);
            if partition.last_checkpoint.get().elapsed() >= interval {
                state.checkpoint_due = true;
            }
        }
        partition.progress.notify_all();
        partition.work.notify_all();
    }
}

async fn run_ticker(partition: Rc<Partition>, every: Duration) {
    let mut next = Instant::now() + every;
    loop {
        // Wake at the next tick, or at close: a long interval must not hold up shutdown.
        let notified = partition.closed.notified();
        if partition.state.borrow().closing {
            return;
        }
        let remaining = next.saturating_duration_since(Instant::now());
        if timeout(remaining, notified).await.is_some() {
            continue;
        }
        next += every;
        {
            let mut state = partition.state.borrow_mut();
            if state.closing || state.poisoned.is_some() {
                return;
            }
            state.sync_wanted = state.sync_wanted.max(state.written_offset);
        }
        partition.sync_work.notify_all();
    }
}

/// A small file that could not even be created for want of a descriptor or of space (EMFILE,
/// ENFILE, ENOSPC, EDQUOT at creation: nothing was written) is skipped with a warning rather
/// than taking the partition offline: returns Ok(false). Ok(true) when it was written.
fn skip_if_uncreatable(result: Result<(), StorageError>) -> Result<bool, StorageError> {
    match result {
        Ok(()) => Ok(true),
        Err(err)
            if err.op == "create"
                && matches!(
                    err.source.raw_os_error(),
                    Some(libc::EMFILE | libc::ENFILE | libc::ENOSPC | libc::EDQUOT)
                ) =>
        {
            tracing::warn!("skipped (rebuilt from the log at the next open): {err}");
            Ok(false)
        }
        Err(err) => Err(err),
    }
}

/// Replaces a small file's contents (index files, snapshots): create, write, fdatasync.
async fn write_file(
    storage: &dyn Storage,
    path: &std::path::Path,
    bytes: Bytes,
) -> Result<(), StorageError> {
    let file = storage
        .open(path, OpenMode::Truncate)
        .map_err(|err| StorageError::new("create", path, err))?;
    storage
        .write_at(file.clone(), vec![bytes], 0)
        .await
        .map_err(|err| StorageError::new("write", path, err))?;
    storage
        .fdatasync(file)
        .await
        .map_err(|err| StorageError::new("fdatasync", path, err))
}
