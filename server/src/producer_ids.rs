//! Producer ids for idempotent producers: unique for the life of the data directory, never
//! reused after a restart. Owned by the controller (shard 0).
//!
//! Ids are handed out from blocks: before the first id of a block is given, the block's end is
//! stored durably in `<data-dir>/producer-ids` (temporary file, fsync, rename, directory fsync),
//! so after any crash the next id starts past everything that may have been handed out.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::StartError;

const BLOCK: i64 = 1000;

pub struct ProducerIds {
    path: PathBuf,
    next: i64,
    reserved_until: i64,
}

impl ProducerIds {
    pub fn load(data_dir: &Path) -> Result<ProducerIds, StartError> {
        let path = data_dir.join("producer-ids");
        let damaged = |reason: &str| StartError::Damaged {
            path: path.clone(),
            reason: reason.to_string(),
        };
        let reserved = match std::fs::read_to_string(&path) {
            Ok(text) => {
                let (value, crc) = text
                    .trim()
                    .split_once(' ')
                    .ok_or_else(|| damaged("malformed"))?;
                let stored =
                    u32::from_str_radix(crc, 16).map_err(|_| damaged("malformed checksum"))?;
                if crc32fast::hash(value.as_bytes()) != stored {
                    return Err(damaged("checksum mismatch"));
                }
                value.parse::<i64>().map_err(|_| damaged("malformed"))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(source) => return Err(StartError::Read { path, source }),
        };
        Ok(ProducerIds {
            path,
            next: reserved,
            reserved_until: reserved,
        })
    }

    /// The next unused producer id.
    pub fn allocate(&mut self) -> std::io::Result<i64> {
        if self.next == self.reserved_until {
            let until = self.reserved_until + BLOCK;
            let value = until.to_string();
            let tmp = self.path.with_extension("tmp");
            {
                let mut file = std::fs::File::create(&tmp)?;
                writeln!(file, "{value} {:08x}", crc32fast::hash(value.as_bytes()))?;
                file.sync_all()?;
            }
            std::fs::rename(&tmp, &self.path)?;
            if let Some(dir) = self.path.parent() {
                std::fs::File::open(dir)?.sync_all()?;
            }
            self.reserved_until = until;
        }
        let id = self.next;
        self.next += 1;
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_never_reused_across_restarts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut ids = ProducerIds::load(dir.path()).expect("load");
        let first: Vec<i64> = (0..3).map(|_| ids.allocate().expect("id")).collect();
        assert_eq!(first, vec![0, 1, 2]);
        drop(ids);
        let mut ids = ProducerIds::load(dir.path()).expect("reload");
        assert!(
            ids.allocate().expect("id") >= BLOCK,
            "a restart starts past the reserved block"
        );
        std::fs::write(dir.path().join("producer-ids"), "5000 00000000\n").expect("damage");
        assert!(
            ProducerIds::load(dir.path()).is_err(),
            "a damaged file is refused, never reset"
        );
    }
}

/// Why no producer id could be handed out (the client gets COORDINATOR_NOT_AVAILABLE).
#[derive(Debug, thiserror::Error)]
pub enum AllocateError {
    #[error("producer ids live on the controller shard")]
    NotController,
    #[error("cannot reserve producer ids: {0}")]
    Reserve(#[from] std::io::Error),
}
