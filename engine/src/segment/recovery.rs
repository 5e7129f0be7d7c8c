//! Scanning a segment file batch by batch: rebuilds its indexes and finds where valid data ends.
//!
//! Runs on the partition's shard while the partition is being opened, before any read or append.
//! Reads go through the ring in large chunks. Every batch is checked: its length fits the file,
//! its magic is 2, its base offset continues the previous batch, its CRC-32C matches. The scan
//! stops at the first batch that fails; the caller decides whether that is a torn tail (truncate)
//! or corruption of flushed data (refuse to open).

use std::sync::Arc;

use crate::format::batch::{self, BatchError, LENGTH_PREFIX_LEN};
use crate::io::read_exact_at;

use super::{Segment, SegmentFile};

/// Bytes read per ring read while scanning.
const SCAN_CHUNK_BYTES: usize = 1 << 20;

/// Where and why a scan stopped before the end of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    pub position: u64,
    /// The offset the damaged batch should have started with.
    pub expected_offset: i64,
    pub reason: String,
}

/// Scans `segment` from `start_position` (a batch boundary whose batch has offset
/// `segment.next_offset`) to `file_len`, recording every valid batch. Returns the damage that
/// stopped it, if any; `segment.size` is then the end of the valid data.
pub async fn scan(
    segment: &mut Segment,
    start_position: u64,
    file_len: u64,
    interval_bytes: u32,
) -> std::io::Result<Option<Damage>> {
    let outcome = scan_batches(segment, start_position, file_len, interval_bytes).await;
    segment.written_size = segment.size;
    outcome
}

async fn scan_batches(
    segment: &mut Segment,
    start_position: u64,
    file_len: u64,
    interval_bytes: u32,
) -> std::io::Result<Option<Damage>> {
    let file: Arc<SegmentFile> = segment.file.clone();
    let mut buf: Vec<u8> = Vec::new();
    let mut buf_position = start_position;
    let mut position = start_position;
    segment.size = start_position;
    while position < file_len {
        let expected_offset = segment.next_offset;
        let damage = |reason: String| Damage {
            position,
            expected_offset,
            reason,
        };
        let remaining = file_len - position;
        if remaining < LENGTH_PREFIX_LEN as u64 {
            return Ok(Some(damage(format!("{remaining} stray bytes at the end"))));
        }
        // Make sure the batch's length prefix is in the buffer.
        if position + LENGTH_PREFIX_LEN as u64 > buf_position + buf.len() as u64 {
            buf = read_exact_at(file.clone(), chunk_len(remaining), position).await?;
            buf_position = position;
        }
        let at = (position - buf_position) as usize;
        let size = match batch::batch_size(&buf[at..]) {
            Ok(size) => size,
            Err(err) => return Ok(Some(damage(err.to_string()))),
        };
        if size as u64 > remaining {
            return Ok(Some(damage(format!(
                "batch of {size} bytes runs past the end of the file ({remaining} left)"
            ))));
        }
        if position + size as u64 > buf_position + buf.len() as u64 {
            buf = read_exact_at(file.clone(), chunk_len(remaining).max(size), position).await?;
            buf_position = position;
            if buf.len() < size {
                return Ok(Some(damage("file shrank while it was scanned".into())));
            }
        }
        let at = (position - buf_position) as usize;
        let bytes = &buf[at..at + size];
        let header = match batch::parse_header(bytes) {
            Ok(header) => header,
            Err(err) => return Ok(Some(damage(err.to_string()))),
        };
        if header.base_offset != expected_offset {
            return Ok(Some(damage(format!(
                "batch has base offset {}, expected {expected_offset}",
                header.base_offset
            ))));
        }
        if let Err(err @ BatchError::Crc { .. }) = batch::verify_crc(bytes, &header) {
            return Ok(Some(damage(err.to_string())));
        }
        segment.record(&header, position, interval_bytes, -1);
        position += size as u64;
    }
    Ok(None)
}

fn chunk_len(remaining: u64) -> usize {
    remaining.min(SCAN_CHUNK_BYTES as u64) as usize
}
