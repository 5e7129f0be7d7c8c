//! Scanning a segment file batch by batch: rebuilds its indexes and finds where valid data ends.
//!
//! Runs on the partition's shard while the partition is being opened, before any read or append.
//! Reads go through the storage in large chunks (`BatchCursor`). Every batch is checked: its
//! length fits the file, its magic is 2, its base offset continues the previous batch, its
//! CRC-32C matches. The scan stops at the first batch that fails; the caller decides whether that
//! is a torn tail (truncate) or corruption of flushed data (refuse to open).

use std::rc::Rc;

use crate::format::batch::{self, BatchError};
use crate::offset::{FilePos, Offset};
use crate::storage::Storage;

use super::cursor::{BatchCursor, CursorError};
use super::Segment;

/// Bytes read per storage read while scanning.
const SCAN_CHUNK_BYTES: usize = 1 << 20;

/// Where and why a scan stopped before the end of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    pub position: FilePos,
    /// The offset the damaged batch should have started with.
    pub expected_offset: Offset,
    pub reason: String,
}

/// Scans `segment` from `start_position` (a batch boundary whose batch has offset
/// `segment.next_offset`) to `file_len`, recording every valid batch. Returns the damage that
/// stopped it, if any; `segment.size` is then the end of the valid data.
pub async fn scan(
    storage: &Rc<dyn Storage>,
    segment: &mut Segment,
    start_position: FilePos,
    file_len: FilePos,
    interval_bytes: u32,
) -> std::io::Result<Option<Damage>> {
    let outcome = scan_batches(storage, segment, start_position, file_len, interval_bytes).await;
    segment.written_size = segment.size;
    outcome
}

async fn scan_batches(
    storage: &Rc<dyn Storage>,
    segment: &mut Segment,
    start_position: FilePos,
    file_len: FilePos,
    interval_bytes: u32,
) -> std::io::Result<Option<Damage>> {
    let mut cursor = BatchCursor::new(
        storage.clone(),
        segment.file.disk_file().clone(),
        file_len,
        SCAN_CHUNK_BYTES,
    );
    let mut position = start_position;
    segment.size = start_position;
    while position < file_len {
        let expected_offset = segment.next_offset;
        let damage = |position: FilePos, reason: String| {
            Ok(Some(Damage {
                position,
                expected_offset,
                reason,
            }))
        };
        let header = match cursor.header_at(position).await {
            Ok(header) => header,
            Err(CursorError::Io(err)) => return Err(err),
            Err(CursorError::Damaged { position, reason }) => return damage(position, reason),
        };
        if Offset(header.base_offset) != expected_offset {
            return damage(
                position,
                format!(
                    "batch has base offset {}, expected {expected_offset}",
                    header.base_offset
                ),
            );
        }
        let bytes = match cursor.batch_at(position, &header).await {
            Ok(bytes) => bytes,
            Err(CursorError::Io(err)) => return Err(err),
            Err(CursorError::Damaged { position, reason }) => return damage(position, reason),
        };
        if let Err(err @ BatchError::Crc { .. }) = batch::verify_crc(bytes, &header) {
            return damage(position, err.to_string());
        }
        segment.record(&header, position, interval_bytes, -1);
        position = position.plus(header.size as u64);
    }
    Ok(None)
}
