//! The partition's small metadata files: the recovery checkpoint and the clean-shutdown marker.
//!
//! Runs on the partition's shard.
//!
//! `recovery-checkpoint` says "every batch below this offset was flushed (fdatasync) to its
//! segment file". Recovery trusts data below it (damage there is corruption, reported) and treats
//! data above it as a possibly torn tail (truncated at the first bad byte). The file holds two
//! 32-byte slots, at bytes 0 and 512 so that they never share a disk sector; each write goes to
//! the slot not holding the newest record, so a torn write leaves the other slot intact:
//!
//! | offset | size | field                                   |
//! |-------:|-----:|-----------------------------------------|
//! |      0 |    4 | magic `RTCK`                            |
//! |      4 |    2 | version (1)                             |
//! |      6 |    2 | reserved (0)                            |
//! |      8 |    8 | sequence (newest wins)                  |
//! |     16 |    8 | recovery offset                         |
//! |     24 |    4 | CRC-32 (IEEE) of bytes 0..24            |
//! |     28 |    4 | reserved (0)                            |
//!
//! `clean-shutdown` exists only between a clean close and the next open: its presence means the
//! index files and the checkpoint were written and flushed at close, so the scan can be skipped.

use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;

use crate::offset::Offset;
use crate::storage::{DiskFile, OpenMode, Storage};

pub const CHECKPOINT_FILE: &str = "recovery-checkpoint";
pub const CLEAN_SHUTDOWN_FILE: &str = "clean-shutdown";

const MAGIC: &[u8; 4] = b"RTCK";
const VERSION: u16 = 1;
const SLOT_LEN: usize = 32;
const SLOT_STRIDE: u64 = 512;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckpointRecord {
    pub sequence: u64,
    pub recovery_offset: Offset,
}

impl CheckpointRecord {
    fn encode(&self) -> [u8; SLOT_LEN] {
        let mut out = [0u8; SLOT_LEN];
        out[0..4].copy_from_slice(MAGIC);
        out[4..6].copy_from_slice(&VERSION.to_be_bytes());
        out[8..16].copy_from_slice(&self.sequence.to_be_bytes());
        out[16..24].copy_from_slice(&self.recovery_offset.get().to_be_bytes());
        let crc = crc32fast::hash(&out[0..24]);
        out[24..28].copy_from_slice(&crc.to_be_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Option<CheckpointRecord> {
        if bytes.len() < SLOT_LEN || &bytes[0..4] != MAGIC {
            return None;
        }
        if u16::from_be_bytes([bytes[4], bytes[5]]) != VERSION {
            return None;
        }
        let crc = u32::from_be_bytes(bytes[24..28].try_into().ok()?);
        if crc32fast::hash(&bytes[0..24]) != crc {
            return None;
        }
        Some(CheckpointRecord {
            sequence: u64::from_be_bytes(bytes[8..16].try_into().ok()?),
            recovery_offset: Offset(i64::from_be_bytes(bytes[16..24].try_into().ok()?)),
        })
    }
}

/// The checkpoint file of one partition, open for the partition's life.
pub struct Checkpoint {
    storage: Rc<dyn Storage>,
    file: Arc<dyn DiskFile>,
    path: PathBuf,
    newest: Option<CheckpointRecord>,
}

impl Checkpoint {
    /// Opens (or creates) the file and reads the newest valid slot. Blocking: open time only.
    pub fn open(storage: Rc<dyn Storage>, dir: &Path) -> io::Result<Checkpoint> {
        let path = dir.join(CHECKPOINT_FILE);
        let file = storage.open(&path, OpenMode::CreateOrKeep)?;
        let bytes = storage.read_file(&path)?;
        let mut newest: Option<CheckpointRecord> = None;
        for slot in 0..2 {
            let start = (slot * SLOT_STRIDE) as usize;
            let slot_bytes = bytes.get(start..).unwrap_or_default();
            let slot_bytes = &slot_bytes[..slot_bytes.len().min(SLOT_LEN)];
            if let Some(record) = CheckpointRecord::decode(slot_bytes) {
                if newest.is_none_or(|n| record.sequence > n.sequence) {
                    newest = Some(record);
                }
            }
        }
        Ok(Checkpoint {
            storage,
            file,
            path,
            newest,
        })
    }

    pub fn recovery_offset(&self) -> Option<Offset> {
        self.newest.map(|r| r.recovery_offset)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Durably records `recovery_offset` (write, then fdatasync). Callers must have flushed
    /// every batch below it first.
    pub async fn store(&mut self, recovery_offset: Offset) -> io::Result<()> {
        if self.recovery_offset() == Some(recovery_offset) {
            return Ok(());
        }
        let sequence = self.newest.map_or(1, |n| n.sequence + 1);
        let record = CheckpointRecord {
            sequence,
            recovery_offset,
        };
        let slot = sequence % 2;
        let bytes = Bytes::copy_from_slice(&record.encode());
        self.storage
            .write_at(self.file.clone(), vec![bytes], slot * SLOT_STRIDE)
            .await?;
        self.storage.fdatasync(self.file.clone()).await?;
        self.newest = Some(record);
        Ok(())
    }
}

/// Writes the clean-shutdown marker and flushes it and its directory. Close time only.
pub async fn write_clean_marker(storage: &dyn Storage, dir: &Path) -> io::Result<()> {
    let path = dir.join(CLEAN_SHUTDOWN_FILE);
    let file = storage.open(&path, OpenMode::Truncate)?;
    storage.fdatasync(file).await?;
    storage.sync_dir(dir).await
}

/// Removes the marker (if present) durably, so a crash from now on triggers a scan. Returns
/// whether it was present. Blocking: open time only.
pub fn take_clean_marker(storage: &dyn Storage, dir: &Path) -> io::Result<bool> {
    let path = dir.join(CLEAN_SHUTDOWN_FILE);
    match storage.remove(&path) {
        Ok(()) => {
            storage.sync_dir_blocking(dir)?;
            Ok(true)
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(err) => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_damage_is_detected() {
        let record = CheckpointRecord {
            sequence: 7,
            recovery_offset: Offset(123_456),
        };
        let bytes = record.encode();
        assert_eq!(CheckpointRecord::decode(&bytes), Some(record));
        for at in 0..28 {
            let mut damaged = bytes;
            damaged[at] ^= 0x01;
            assert_eq!(CheckpointRecord::decode(&damaged), None, "flip at {at}");
        }
        assert_eq!(CheckpointRecord::decode(&bytes[..20]), None);
        assert_eq!(CheckpointRecord::decode(&[0u8; 32]), None);
    }
}
