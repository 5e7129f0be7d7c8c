//! Ringtail's storage engine: partition logs of Kafka v2 record batches, written and synced
//! through a per-shard io_uring runtime.
//!
//! The engine knows nothing of Kafka's protocol except the record-batch header it stores and
//! validates (`format::batch`). A [`Partition`] is owned by one shard thread and driven by that
//! thread's [`io::Runtime`]; all `unsafe` code lives in [`io`].

#![deny(clippy::unwrap_used)]

pub mod config;
pub mod error;
pub mod format;
pub mod io;
pub mod log;
pub mod offset;
pub mod producer;
pub mod segment;
pub mod stats;
pub mod storage;
pub mod timing;

pub use config::{FsyncPolicy, InvalidConfig, LogConfig};
pub use error::{AppendError, OpenError, ReadError, StorageError};
pub use log::{AppendInfo, FileRange, Partition, ReadResult};
pub use offset::{FilePos, LeaderEpoch, Offset};
