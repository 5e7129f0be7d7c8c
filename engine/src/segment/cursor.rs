//! The one way batches are read out of a segment file: a cursor that reads chunks through the
//! storage and hands out batch headers and whole batches at batch boundaries.
//!
//! Used by recovery (`recovery::scan`), fetch (`log::read`), the producer-state rebuild and the
//! timestamp lookup. Runs on the partition's shard. The cursor never reads past `limit` (the
//! bytes known to be in the file: its written size, or its length at open), and checks every
//! batch's length against it before trusting the batch: a batch that runs past the limit, a
//! length prefix cut short, or a header that does not parse is reported as [`CursorError::Damaged`]
//! with its position; what that means (a torn tail, corruption, a bug) is the caller's call.

use std::rc::Rc;
use std::sync::Arc;

use crate::format::batch::{self, BatchHeader, HEADER_LEN, LENGTH_PREFIX_LEN};
use crate::offset::FilePos;
use crate::storage::{DiskFile, Storage};

/// Why the cursor could not hand out a batch.
#[derive(Debug)]
pub enum CursorError {
    /// Reading the file failed.
    Io(std::io::Error),
    /// The bytes at `position` are not a whole, well-formed batch within the limit.
    Damaged { position: FilePos, reason: String },
}

/// Reads batches of one segment file, a chunk at a time.
pub struct BatchCursor {
    storage: Rc<dyn Storage>,
    file: Arc<dyn DiskFile>,
    limit: FilePos,
    chunk_bytes: usize,
    buf: Vec<u8>,
    buf_position: FilePos,
}

impl BatchCursor {
    /// A cursor over the first `limit` bytes of `file`, reading at least `chunk_bytes` at a time
    /// (large for scans, small for the few headers of a fetch).
    pub fn new(
        storage: Rc<dyn Storage>,
        file: Arc<dyn DiskFile>,
        limit: FilePos,
        chunk_bytes: usize,
    ) -> BatchCursor {
        BatchCursor {
            storage,
            file,
            limit,
            chunk_bytes,
            buf: Vec::new(),
            buf_position: FilePos::ZERO,
        }
    }

    pub fn limit(&self) -> FilePos {
        self.limit
    }

    /// Makes `[position, position + need)` available in the buffer; `need` must fit the limit.
    async fn fill(&mut self, position: FilePos, need: usize) -> Result<&[u8], CursorError> {
        let buffered_end = self.buf_position.plus(self.buf.len() as u64);
        if position < self.buf_position || position.plus(need as u64) > buffered_end {
            let available = self.limit.get().saturating_sub(position.get());
            let len = (self.chunk_bytes.max(need) as u64).min(available) as usize;
            self.buf = self
                .storage
                .read_at(self.file.clone(), len, position.get())
                .await
                .map_err(CursorError::Io)?;
            self.buf_position = position;
            if self.buf.len() < need {
                return Err(CursorError::Damaged {
                    position,
                    reason: "the file is shorter than it was".into(),
                });
            }
        }
        let at = position.since(self.buf_position) as usize;
        Ok(&self.buf[at..at + need])
    }

    /// The header of the batch starting at `position` (a batch boundary), once its length is
    /// known to fit within the limit.
    pub async fn header_at(&mut self, position: FilePos) -> Result<BatchHeader, CursorError> {
        let remaining = self.limit.get().saturating_sub(position.get());
        let damaged = |reason: String| CursorError::Damaged { position, reason };
        if remaining < LENGTH_PREFIX_LEN as u64 {
            return Err(damaged(format!("{remaining} stray bytes at the end")));
        }
        let prefix = self.fill(position, LENGTH_PREFIX_LEN).await?;
        let size = batch::batch_size(prefix).map_err(|err| damaged(err.to_string()))?;
        if size as u64 > remaining {
            return Err(damaged(format!(
                "batch of {size} bytes runs past the end of the data ({remaining} left)"
            )));
        }
        let head = self.fill(position, HEADER_LEN.min(size)).await?;
        batch::parse_header(head).map_err(|err| damaged(err.to_string()))
    }

    /// The whole batch whose header [`BatchCursor::header_at`] returned for `position`.
    pub async fn batch_at(
        &mut self,
        position: FilePos,
        header: &BatchHeader,
    ) -> Result<&[u8], CursorError> {
        self.fill(position, header.size).await
    }
}
