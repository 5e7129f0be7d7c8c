//! Producer-state snapshots: `<20-digit offset>.snapshot` files in the partition directory, as
//! Kafka keeps them, so that recovery reads batch headers only from the newest snapshot on.
//!
//! A snapshot at offset O holds the state of every batch below O. It is written (temporary file,
//! fdatasync, rename) when a segment is sealed and at clean shutdown; a torn or corrupt one fails
//! its checksum and is ignored (an older one, or the log from its start, is used instead); one
//! past the recovered log end is deleted. Format (big-endian):
//!
//! | field | size |
//! |---|---|
//! | magic `RTPS` | 4 |
//! | version (1) | 2 |
//! | reserved (0) | 2 |
//! | offset | 8 |
//! | producer count | 4 |
//! | per producer: id (8), epoch (2), last timestamp (8), batch count (1), per batch: first sequence (4), last sequence (4), first offset (8), last offset (8) | … |
//! | CRC-32 (IEEE) of everything above | 4 |

use crate::offset::Offset;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use super::{BatchMeta, ProducerEntry, ProducerState, BATCHES_REMEMBERED};

const MAGIC: &[u8; 4] = b"RTPS";
const VERSION: u16 = 1;

pub fn file_name(offset: Offset) -> String {
    crate::segment::file_name(offset, "snapshot")
}

pub fn encode(state: &ProducerState, offset: Offset) -> Vec<u8> {
    let mut out = Vec::with_capacity(24 + state.len() * 64);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&offset.get().to_be_bytes());
    out.extend_from_slice(&(state.len() as u32).to_be_bytes());
    let mut producers: Vec<_> = state.entries().collect();
    producers.sort_by_key(|(id, _)| **id);
    for (id, entry) in producers {
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&entry.epoch.to_be_bytes());
        out.extend_from_slice(&entry.last_timestamp_ms.to_be_bytes());
        out.push(entry.batches.len() as u8);
        for batch in &entry.batches {
            out.extend_from_slice(&batch.first_sequence.to_be_bytes());
            out.extend_from_slice(&batch.last_sequence.to_be_bytes());
            out.extend_from_slice(&batch.first_offset.to_be_bytes());
            out.extend_from_slice(&batch.last_offset.to_be_bytes());
        }
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_at_checked(N)?;
        self.0 = rest;
        head.try_into().ok()
    }
}

/// Decodes a snapshot; None if it is torn, corrupt or of another version.
pub fn decode(bytes: &[u8]) -> Option<(Offset, ProducerState)> {
    let (body, crc) = bytes.split_at_checked(bytes.len().checked_sub(4)?)?;
    if crc32fast::hash(body) != u32::from_be_bytes(crc.try_into().ok()?) {
        return None;
    }
    let mut cursor = Cursor(body);
    if &cursor.take::<4>()? != MAGIC || u16::from_be_bytes(cursor.take::<2>()?) != VERSION {
        return None;
    }
    cursor.take::<2>()?;
    let offset = Offset(i64::from_be_bytes(cursor.take::<8>()?));
    let count = u32::from_be_bytes(cursor.take::<4>()?);
    let mut state = ProducerState::default();
    for _ in 0..count {
        let id = i64::from_be_bytes(cursor.take::<8>()?);
        let epoch = i16::from_be_bytes(cursor.take::<2>()?);
        let last_timestamp_ms = i64::from_be_bytes(cursor.take::<8>()?);
        let batch_count = cursor.take::<1>()?[0] as usize;
        if batch_count > BATCHES_REMEMBERED {
            return None;
        }
        let mut batches = VecDeque::with_capacity(batch_count);
        for _ in 0..batch_count {
            batches.push_back(BatchMeta {
                first_sequence: i32::from_be_bytes(cursor.take::<4>()?),
                last_sequence: i32::from_be_bytes(cursor.take::<4>()?),
                first_offset: i64::from_be_bytes(cursor.take::<8>()?),
                last_offset: i64::from_be_bytes(cursor.take::<8>()?),
            });
        }
        state.insert(
            id,
            ProducerEntry {
                epoch,
                batches,
                last_timestamp_ms,
            },
        );
    }
    if !cursor.0.is_empty() {
        return None;
    }
    Some((offset, state))
}

/// Snapshot files in `dir`, newest offset first.
pub fn list(storage: &dyn crate::storage::Storage, dir: &Path) -> Vec<(Offset, PathBuf)> {
    let mut found: Vec<(Offset, PathBuf)> = storage
        .list(dir)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|name| {
            let offset = crate::segment::parse_file_name(&name, "snapshot")?;
            Some((offset, dir.join(name)))
        })
        .collect();
    found.sort_by_key(|entry| std::cmp::Reverse(entry.0));
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::batch::BatchHeader;

    fn state() -> ProducerState {
        let mut state = ProducerState::default();
        for (id, n) in [(1i64, 3), (99, 7)] {
            for i in 0..n {
                state.record(
                    &BatchHeader {
                        base_offset: i64::from(i) * 10,
                        size: 100,
                        partition_leader_epoch: 0,
                        attributes: 0,
                        last_offset_delta: 9,
                        base_timestamp: 5,
                        max_timestamp: 5 + i64::from(i),
                        producer_id: id,
                        producer_epoch: 2,
                        base_sequence: i * 10,
                        records_count: 10,
                        crc: 0,
                    },
                    0,
                );
            }
        }
        state
    }

    #[test]
    fn snapshots_round_trip() {
        let state = state();
        let bytes = encode(&state, Offset(1234));
        assert_eq!(decode(&bytes), Some((Offset(1234), state)));
    }

    #[test]
    fn torn_or_damaged_snapshots_are_rejected() {
        let bytes = encode(&state(), Offset(1234));
        for len in 0..bytes.len() {
            assert_eq!(decode(&bytes[..len]), None, "cut at {len}");
        }
        for at in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x20;
            assert_eq!(decode(&damaged), None, "flip at {at}");
        }
    }
}
