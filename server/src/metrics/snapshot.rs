//! A shard's figures, copied on the shard's own thread by a job from the metrics thread.

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

/// How long a scrape waits for the shards' copies.
pub const COLLECT_LIMIT: Duration = Duration::from_secs(5);
