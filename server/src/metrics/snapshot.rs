//! A shard's figures, copied on the shard's own thread by a job from the metrics thread.

use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use ringtail_engine::io as rio;
use ringtail_engine::stats::{FsyncStats, TrafficCounts};

use super::ShardCounters;
use crate::group::GroupFigures;
use crate::shard::Shard;

/// One partition's figures.
pub struct PartitionFigures {
    pub topic: String,
    pub partition: i32,
    pub traffic: TrafficCounts,
    pub log_end_offset: i64,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    pub size_bytes: u64,
    pub segments: usize,
    pub offline: bool,
}

/// Everything one shard reports to a scrape.
pub struct ShardSnapshot {
    pub shard: usize,
    pub runtime: rio::RuntimeStats,
    pub fsyncs: FsyncStats,
    pub counters: ShardCounters,
    pub connections: usize,
    pub partitions: Vec<PartitionFigures>,
    pub groups: Vec<GroupFigures>,
}

/// Copies the figures of the shard this runs on (called from its inbox).
pub fn take(shard: &Rc<Shard>) -> ShardSnapshot {
    let partitions = shard
        .partition_logs()
        .into_iter()
        .map(|(topic, partition, log)| PartitionFigures {
            topic: topic.to_string(),
            partition,
            traffic: log.traffic(),
            log_end_offset: log.log_end_offset().get(),
            high_watermark: log.high_watermark().get(),
            log_start_offset: log.log_start_offset().get(),
            size_bytes: log.size_bytes(),
            segments: log.segment_count(),
            offline: log.poisoned().is_some(),
        })
        .collect();
    ShardSnapshot {
        shard: shard.id.0,
        runtime: rio::runtime_stats().unwrap_or_default(),
        fsyncs: ringtail_engine::stats::fsync_stats(),
        counters: super::counters(),
        connections: shard.connections.get(),
        partitions,
        groups: shard
            .coordinator_if_open()
            .map_or_else(Vec::new, |c| c.metrics()),
    }
}

/// io-wq worker threads per shard thread id (workers are named `iou-wrk-<ring owner's tid>`),
/// and each shard thread's id (threads are named `shard-<n>`).
pub fn iowq_workers() -> HashMap<usize, usize> {
    let mut shard_tids: HashMap<String, usize> = HashMap::new();
    let mut workers_by_owner: HashMap<String, usize> = HashMap::new();
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for task in tasks.flatten() {
            let tid = task.file_name().to_string_lossy().into_owned();
            let Ok(comm) = std::fs::read_to_string(task.path().join("comm")) else {
                continue;
            };
            let comm = comm.trim_end();
            if let Some(shard) = comm.strip_prefix("shard-").and_then(|n| n.parse().ok()) {
                shard_tids.insert(tid, shard);
            } else if let Some(owner) = comm.strip_prefix("iou-wrk-") {
                *workers_by_owner.entry(owner.to_string()).or_default() += 1;
            }
        }
    }
    shard_tids
        .into_iter()
        .map(|(tid, shard)| (shard, workers_by_owner.get(&tid).copied().unwrap_or(0)))
        .collect()
}

/// How long a scrape waits for the shards' copies.
pub const COLLECT_LIMIT: Duration = Duration::from_secs(5);
