//! The engine's errors. The broker maps them to Kafka error codes in one place.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use crate::format::batch::BatchError;
use crate::offset::Offset;

/// Why an append was refused. Nothing was written for it.
#[derive(Debug, thiserror::Error, Clone)]
pub enum AppendError {
    /// The bytes are not a valid v2 batch (Kafka: CORRUPT_MESSAGE).
    #[error("corrupt batch: {0}")]
    Corrupt(#[from] BatchError),
    /// The batch is larger than `max.message.bytes` (Kafka: MESSAGE_TOO_LARGE).
    #[error("batch of {size} bytes exceeds max.message.bytes {max}")]
    TooLarge { size: usize, max: usize },
    /// The partition is offline after an I/O failure (Kafka: KAFKA_STORAGE_ERROR).
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// An idempotent producer's batch breaks its sequence or epoch (Kafka:
    /// OUT_OF_ORDER_SEQUENCE_NUMBER, INVALID_PRODUCER_EPOCH, UNKNOWN_PRODUCER_ID).
    #[error(transparent)]
    Sequence(#[from] crate::producer::SequenceError),
}

/// An I/O failure that took the partition offline. Shared by every waiter that it fails.
#[derive(Debug, thiserror::Error, Clone)]
#[error("{op} failed on {path}: {source}")]
pub struct StorageError {
    pub op: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: Arc<io::Error>,
}

impl StorageError {
    pub(crate) fn new(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        StorageError {
            op,
            path: path.into(),
            source: Arc::new(source),
        }
    }

    /// The failure was reported by an fdatasync or a directory fsync: the kernel's write-back
    /// failed, so written data it had not yet flushed may be lost even though it still reads
    /// back from the page cache (the kernel reports such an error once, then marks the pages
    /// clean).
    pub fn is_sync_failure(&self) -> bool {
        matches!(self.op, "fdatasync" | "fsync directory")
    }
}

/// Why a partition could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("{op} failed on {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Damage in data that had been flushed: refusing to guess what to drop.
    #[error("corrupt log {path} at byte {position}: {reason}")]
    Corrupt {
        path: PathBuf,
        position: u64,
        reason: String,
    },
}

impl OpenError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        OpenError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

impl From<StorageError> for OpenError {
    fn from(err: StorageError) -> Self {
        OpenError::Io {
            op: err.op,
            path: err.path,
            source: io::Error::new(err.source.kind(), err.source.to_string()),
        }
    }
}

/// Why a read could not be served.
#[derive(Debug, thiserror::Error, Clone)]
pub enum ReadError {
    /// Kafka: OFFSET_OUT_OF_RANGE.
    #[error("offset {offset} is outside [{log_start_offset}, {high_watermark}]")]
    OffsetOutOfRange {
        offset: Offset,
        log_start_offset: Offset,
        high_watermark: Offset,
    },
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The log on disk does not match what the engine recorded (a bug or outside tampering).
    #[error("log inconsistent at {path} byte {position}: {reason}")]
    Inconsistent {
        path: PathBuf,
        position: u64,
        reason: String,
    },
}
