//! Reads: file ranges on batch boundaries for zero-copy fetch, a buffered read for tests and
//! tools, and the offset lookups (earliest, latest, by timestamp).
//!
//! Runs on the partition's shard. The sparse index narrows a lookup to one index interval; the
//! exact batch boundary is found by reading batch headers from that point through the ring (one
//! small read, normally from the page cache). Only written bytes are ever returned: a range ends
//! at or before the segment's `written_size`.

use std::rc::Rc;
use std::sync::Arc;

use super::Partition;
use crate::error::ReadError;
use crate::format::batch::{self, BatchHeader};
use crate::offset::{FilePos, Offset};
use crate::segment::cursor::{BatchCursor, CursorError};
use crate::segment::index::OffsetEntry;
use crate::segment::SegmentFile;
use crate::storage::Storage;

/// Bytes read at a time while walking batch headers.
const WALK_CHUNK_BYTES: usize = 16 * 1024;

/// A run of whole batches in a segment file, to be spliced to a socket. Holding it keeps the
/// file open even if retention deletes the segment meanwhile.
#[derive(Clone, Debug)]
pub struct FileRange {
    pub file: Arc<SegmentFile>,
    pub position: FilePos,
    pub len: u64,
}

/// The answer to a fetch: ranges (empty when there is nothing new) and the partition's offsets.
#[derive(Clone, Debug)]
pub struct ReadResult {
    pub ranges: Vec<FileRange>,
    pub high_watermark: Offset,
    pub log_start_offset: Offset,
}

impl ReadResult {
    pub fn bytes(&self) -> u64 {
        self.ranges.iter().map(|r| r.len).sum()
    }
}

/// Reads batch headers of a segment file through the storage, for one read or lookup.
struct HeaderWalker {
    cursor: BatchCursor,
    /// For error messages only (its path is copied only when something fails).
    file: Arc<SegmentFile>,
}

impl HeaderWalker {
    fn new(storage: &Rc<dyn Storage>, file: &Arc<SegmentFile>, limit: FilePos) -> HeaderWalker {
        HeaderWalker {
            cursor: BatchCursor::new(
                storage.clone(),
                file.disk_file().clone(),
                limit,
                WALK_CHUNK_BYTES,
            ),
            file: file.clone(),
        }
    }

    fn error(&self, err: CursorError) -> ReadError {
        match err {
            CursorError::Io(err) => {
                crate::error::StorageError::new("read", self.file.path(), err).into()
            }
            CursorError::Damaged { position, reason } => ReadError::Inconsistent {
                path: self.file.path().to_path_buf(),
                position: position.get(),
                reason,
            },
        }
    }

    /// The header of the batch at `position`, which must be a batch boundary below the limit.
    async fn header_at(&mut self, position: FilePos) -> Result<BatchHeader, ReadError> {
        match self.cursor.header_at(position).await {
            Ok(header) => Ok(header),
            Err(err) => Err(self.error(err)),
        }
    }

    /// The whole batch at `position`, whose header was just read.
    async fn batch_at(
        &mut self,
        position: FilePos,
        header: &BatchHeader,
    ) -> Result<Vec<u8>, ReadError> {
        match self.cursor.batch_at(position, header).await {
            Ok(bytes) => Ok(bytes.to_vec()),
            Err(err) => Err(self.error(err)),
        }
    }
}

/// Where a read starts: the segment and the index entry at or below the wanted offset.
struct Start {
    segment_base: Offset,
    file: Arc<SegmentFile>,
    written_size: FilePos,
    position: FilePos,
    /// The offset after the last batch that ends at `written_size`.
    end_offset: Offset,
}

impl Partition {
    fn out_of_range(&self, offset: Offset) -> ReadError {
        let state = self.state.borrow();
        ReadError::OffsetOutOfRange {
            offset,
            log_start_offset: state.log_start_offset(),
            high_watermark: state.written_offset,
        }
    }

    /// Locates `offset`: Ok(None) when it is the high watermark (nothing to read yet).
    fn start_for(&self, offset: Offset) -> Result<Option<Start>, ReadError> {
        let state = self.state.borrow();
        if let Some(err) = &state.poisoned {
            // Offline after a failed write or fdatasync: what an fdatasync covered is known to
            // be intact and still served; everything after it is not.
            if offset >= state.durable_offset || offset < state.log_start_offset() {
                return Err(err.clone().into());
            }
            let (_, segment) = state
                .segments
                .range(..=offset)
                .next_back()
                .expect("offset at or above the log start");
            let (durable_base, durable_position) = state.durable_end;
            let limit = if segment.base_offset == durable_base {
                durable_position
            } else {
                segment.written_size
            };
            let end_offset = if segment.base_offset == durable_base {
                state.durable_offset
            } else {
                segment.next_offset.min(state.written_offset)
            };
            let entry = segment.index.floor_offset(segment.relative(offset));
            return Ok(Some(Start {
                segment_base: segment.base_offset,
                file: segment.file.clone(),
                written_size: limit,
                position: index_position(entry).min(limit),
                end_offset,
            }));
        }
        if offset == state.written_offset {
            return Ok(None);
        }
        if offset < state.log_start_offset() || offset > state.written_offset {
            drop(state);
            return Err(self.out_of_range(offset));
        }
        let (_, segment) = state
            .segments
            .range(..=offset)
            .next_back()
            .expect("offset at or above the log start");
        let entry = segment.index.floor_offset(segment.relative(offset));
        Ok(Some(Start {
            segment_base: segment.base_offset,
            file: segment.file.clone(),
            written_size: segment.written_size,
            position: index_position(entry),
            // Writes complete in log order: a segment short of its end is the one being
            // written, and ends at the written offset.
            end_offset: segment.next_offset.min(state.written_offset),
        }))
    }

    /// Whole batches from the one holding `offset`, at most `max_bytes` of them (but always at
    /// least one batch, as Kafka does, so a consumer can make progress past a large batch), as
    /// file ranges of one segment.
    pub async fn read(&self, offset: Offset, max_bytes: usize) -> Result<ReadResult, ReadError> {
        let (high_watermark, log_start_offset) = {
            let state = self.state.borrow();
            let end = match state.poisoned {
                Some(_) => state.durable_offset,
                None => state.written_offset,
            };
            (end, state.log_start_offset())
        };
        let mut result = ReadResult {
            ranges: Vec::new(),
            high_watermark,
            log_start_offset,
        };
        let Some(start) = self.start_for(offset)? else {
            return Ok(result);
        };
        let mut walker = HeaderWalker::new(&self.storage, &start.file, start.written_size);
        // Walk from the index entry to the batch that holds `offset`.
        let mut position = start.position;
        let first = loop {
            let header = walker.header_at(position).await?;
            if Offset(header.next_offset()) > offset {
                break header;
            }
            position = position.plus(header.size as u64);
        };
        let begin = position;
        let budget_end = FilePos(begin.get().saturating_add(max_bytes as u64));
        let (end, end_offset) = if start.written_size <= budget_end {
            (start.written_size, start.end_offset)
        } else {
            let hint = {
                let state = self.state.borrow();
                state
                    .segments
                    .get(&start.segment_base)
                    .and_then(|s| {
                        s.index
                            .floor_position(budget_end.get().min(u32::MAX as u64) as u32)
                    })
                    .map_or(begin, |e| FilePos(u64::from(e.position)).max(begin))
            };
            let mut at = hint;
            loop {
                let header = walker.header_at(at).await?;
                if at.plus(header.size as u64) > budget_end {
                    break (at, Offset(header.base_offset));
                }
                at = at.plus(header.size as u64);
            }
        };
        let first_end = begin.plus(first.size as u64);
        let (end, end_offset) = if end < first_end {
            (first_end, Offset(first.next_offset()))
        } else {
            (end, end_offset)
        };
        let len = end.since(begin);
        self.traffic.served(
            end_offset.get().saturating_sub(first.base_offset).max(0) as u64,
            len,
        );
        result.ranges.push(FileRange {
            file: start.file,
            position: begin,
            len,
        });
        Ok(result)
    }

    /// Like [`Partition::read`], but returns the bytes (a copy through user space, for tests
    /// and tools; the broker splices the ranges instead).
    pub async fn read_bytes(&self, offset: Offset, max_bytes: usize) -> Result<Vec<u8>, ReadError> {
        let result = self.read(offset, max_bytes).await?;
        let mut out = Vec::with_capacity(result.bytes() as usize);
        for range in result.ranges {
            let path = range.file.path().to_path_buf();
            let bytes = self
                .storage
                .read_at(
                    range.file.disk_file().clone(),
                    range.len as usize,
                    range.position.get(),
                )
                .await
                .map_err(|err| crate::error::StorageError::new("read", path, err))?;
            out.extend_from_slice(&bytes);
        }
        Ok(out)
    }

    /// Rebuilds the idempotent-producer state at open: the newest valid snapshot at or below the
    /// log end, then the headers of every batch after it. Snapshots past the log end (their
    /// batches were lost in a crash) are deleted.
    pub(super) async fn rebuild_producer_state(&self) -> Result<(), crate::OpenError> {
        use crate::producer::snapshot;
        let (log_start, log_end) = {
            let state = self.state.borrow();
            (state.log_start_offset(), state.next_offset)
        };
        let mut loaded = None;
        for (offset, path) in snapshot::list(&*self.storage, &self.dir) {
            if offset > log_end {
                let _ = self.storage.remove(&path);
                continue;
            }
            if let Some((offset, producers)) = self
                .storage
                .read_file(&path)
                .ok()
                .and_then(|b| snapshot::decode(&b))
            {
                loaded = Some((offset, producers));
                break;
            }
        }
        let (from, producers) = loaded.unwrap_or((log_start, Default::default()));
        self.state.borrow_mut().producers = producers;
        let from = from.max(log_start);
        let bases: Vec<Offset> = self.state.borrow().segments.keys().copied().collect();
        for base in bases {
            let (file, size, start) = {
                let state = self.state.borrow();
                let segment = &state.segments[&base];
                if segment.next_offset <= from {
                    continue;
                }
                let start = if base < from {
                    segment
                        .index
                        .floor_offset(segment.relative(from))
                        .map_or(FilePos::ZERO, |e| FilePos(u64::from(e.position)))
                } else {
                    FilePos::ZERO
                };
                (segment.file.clone(), segment.written_size, start)
            };
            let mut walker = HeaderWalker::new(&self.storage, &file, size);
            let mut position = start;
            while position < size {
                let header =
                    walker
                        .header_at(position)
                        .await
                        .map_err(|err| crate::OpenError::Corrupt {
                            path: self.dir.clone(),
                            position: position.get(),
                            reason: format!("reading batch headers for producer state: {err}"),
                        })?;
                if Offset(header.base_offset) >= from {
                    self.state
                        .borrow_mut()
                        .producers
                        .record(&header, header.max_timestamp);
                }
                position = position.plus(header.size as u64);
            }
        }
        Ok(())
    }

    /// The first record with a timestamp at or after `timestamp_ms`: (its offset, its
    /// timestamp), or None when no written record has one. Exact for uncompressed batches; in a
    /// compressed batch, the batch's base offset and max timestamp (the records would have to be
    /// decompressed).
    pub async fn offset_for_timestamp(
        &self,
        timestamp_ms: i64,
    ) -> Result<Option<(Offset, i64)>, ReadError> {
        let start = {
            let state = self.state.borrow();
            if let Some(err) = &state.poisoned {
                return Err(err.clone().into());
            }
            let Some(segment) = state
                .segments
                .values()
                .find(|s| s.max_timestamp >= timestamp_ms)
            else {
                return Ok(None);
            };
            let entry = segment
                .time_index
                .floor_below(timestamp_ms)
                .and_then(|t| segment.index.floor_offset(t.relative_offset));
            Start {
                segment_base: segment.base_offset,
                file: segment.file.clone(),
                written_size: segment.written_size,
                position: index_position(entry),
                end_offset: segment.next_offset.min(state.written_offset),
            }
        };
        let mut walker = HeaderWalker::new(&self.storage, &start.file, start.written_size);
        let mut position = start.position;
        while position < start.written_size {
            let header = walker.header_at(position).await?;
            if header.max_timestamp >= timestamp_ms {
                if header.compression() != 0 {
                    return Ok(Some((Offset(header.base_offset), header.max_timestamp)));
                }
                let bytes = walker.batch_at(position, &header).await?;
                let found = batch::records(&bytes)
                    .and_then(|records| records.into_iter().find(|r| r.timestamp >= timestamp_ms))
                    .map(|r| {
                        let offset = Offset(header.base_offset).plus(i64::from(r.offset_delta));
                        (offset, r.timestamp)
                    });
                return Ok(Some(
                    found.unwrap_or((Offset(header.base_offset), header.max_timestamp)),
                ));
            }
            position = position.plus(header.size as u64);
        }
        Ok(None)
    }
}

/// The byte position an index entry points at (the segment's start without one).
fn index_position(entry: Option<OffsetEntry>) -> FilePos {
    entry.map_or(FilePos::ZERO, |e| FilePos(u64::from(e.position)))
}
