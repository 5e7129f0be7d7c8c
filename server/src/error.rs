//! Why the broker could not start, or could not stop cleanly. Request-level failures are Kafka
//! error codes instead (`api/errors.rs`); configuration errors are `config::ConfigError`.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot create data directory {path}: {source}")]
    DataDir { path: PathBuf, source: io::Error },
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    /// A metadata file exists but does not decode: refuse rather than start from nothing.
    #[error("{path} is damaged: {reason}")]
    Damaged { path: PathBuf, reason: String },
    #[error(transparent)]
    Registry(#[from] crate::topics::LoadError),
    #[error("cannot block termination signals: {0}")]
    Signals(io::Error),
    #[error(transparent)]
    Cluster(#[from] crate::cluster::node::ClusterStartError),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: io::Error },
    #[error("cannot serve metrics on {addr}: {source} (set --metrics-listen to another address, or off)")]
    MetricsListen { addr: SocketAddr, source: io::Error },
    #[error("cannot start thread {name}: {source}")]
    Thread { name: String, source: io::Error },
    #[error("shard {shard}: cannot pin to core {core}: {source}")]
    Pin {
        shard: usize,
        core: usize,
        source: io::Error,
    },
    #[error("shard {shard}: io_uring: {source}")]
    Runtime { shard: usize, source: io::Error },
    #[error("cannot open partition {topic}-{partition}: {source}")]
    Partition {
        topic: String,
        partition: i32,
        source: ringtail_engine::OpenError,
    },
    #[error(transparent)]
    Coordinator(#[from] crate::group::OpenError),
    #[error("partition directory {path}: {source}")]
    PartitionDir { path: PathBuf, source: io::Error },
    #[error("shard {shard} panicked")]
    Panicked { shard: usize },
    #[error("shard {shard}: {failed} partitions failed to close cleanly")]
    Close { shard: usize, failed: usize },
}
