//! The Prometheus text format (version 0.0.4) of the shards' snapshots.
//!
//! Every family is written whole (HELP, TYPE, samples) in a fixed order; histograms come from
//! HDR histograms cut at fixed bucket bounds (cumulative, as Prometheus wants them), so their
//! bucket counts are exact to the HDR precision (1%) around each bound.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use hdrhistogram::Histogram;

use super::snapshot::ShardSnapshot;

/// Latency bucket bounds, seconds.
const LATENCY_BOUNDS_S: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];
/// fdatasync size bucket bounds, bytes.
const SIZE_BOUNDS_BYTES: [f64; 9] = [
    512.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0, 16777216.0, 67108864.0,
];

/// Labels of one sample, in order.
type Labels<'a> = &'a [(&'a str, &'a str)];

struct Out {
    text: String,
}

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: Labels, value: f64) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (key, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{key}=\"{}\"", escape(value));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {}", number(value));
    }

    /// A histogram's buckets, sum and count; `scale` turns HDR units into the metric's.
    fn histogram(
        &mut self,
        name: &str,
        labels: Labels,
        histogram: &Histogram<u64>,
        sum: f64,
        bounds: &[f64],
        scale: f64,
    ) {
        let bucket = format!("{name}_bucket");
        for bound in bounds {
            let le = number(*bound);
            let mut with_le: Vec<(&str, &str)> = labels.to_vec();
            with_le.push(("le", &le));
            let count = histogram.count_between(0, (bound / scale).round() as u64);
            self.sample(&bucket, &with_le, count as f64);
        }
        let mut with_le: Vec<(&str, &str)> = labels.to_vec();
        with_le.push(("le", "+Inf"));
        self.sample(&bucket, &with_le, histogram.len() as f64);
        self.sample(&format!("{name}_sum"), labels, sum);
        self.sample(&format!("{name}_count"), labels, histogram.len() as f64);
    }
}

/// Label value escaping of the text format: backslash, double quote, line feed.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

fn api_name(key: i16) -> String {
    kafka_protocol::messages::ApiKey::try_from(key)
        .map_or_else(|()| format!("api_{key}"), |api| format!("{api:?}"))
}

/// The whole exposition: `shards` is how many the broker runs (those missing from
/// `snapshots` did not answer in time).
pub fn render(shards: usize, snapshots: &[ShardSnapshot], iowq: &HashMap<usize, usize>) -> String {
    let mut out = Out {
        text: String::with_capacity(16 * 1024),
    };
    broker(&mut out, shards, snapshots);
    per_shard(&mut out, snapshots, iowq);
    fsyncs(&mut out, snapshots);
    apis(&mut out, snapshots);
    partitions(&mut out, snapshots);
    groups(&mut out, snapshots);
    out.text
}

fn broker(out: &mut Out, shards: usize, snapshots: &[ShardSnapshot]) {
    out.family(
        "ringtail_build_info",
        "gauge",
        "Always 1; the version is a label.",
    );
    out.sample(
        "ringtail_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1.0,
    );
    out.family(
        "ringtail_shards",
        "gauge",
        "Shards (threads with their own io_uring) the broker runs.",
    );
    out.sample("ringtail_shards", &[], shards as f64);
    out.family(
        "ringtail_scrape_shards_missing",
        "gauge",
        "Shards that did not answer this scrape in time (their figures are absent).",
    );
    out.sample(
        "ringtail_scrape_shards_missing",
        &[],
        shards.saturating_sub(snapshots.len()) as f64,
    );
}

fn per_shard(out: &mut Out, snapshots: &[ShardSnapshot], iowq: &HashMap<usize, usize>) {
    type Figure = fn(&ShardSnapshot) -> f64;
    let families: [(&str, &str, &str, Figure); 8] = [
        (
            "ringtail_shard_busy_seconds_total",
            "counter",
            "Time the shard was not parked in io_uring_enter waiting for work (polling tasks, handling completions, submitting); its rate is the shard's busy fraction.",
            |s| s.runtime.busy().as_secs_f64(),
        ),
        (
            "ringtail_shard_parks_total",
            "counter",
            "Times the shard parked in io_uring_enter with nothing to do.",
            |s| s.runtime.parks as f64,
        ),
        (
            "ringtail_shard_io_submissions_total",
            "counter",
            "io_uring operations the shard submitted.",
            |s| s.runtime.submissions as f64,
        ),
        (
            "ringtail_shard_io_completions_total",
            "counter",
            "io_uring completions the shard reaped.",
            |s| s.runtime.completions as f64,
        ),
        (
            "ringtail_shard_cross_shard_sent_total",
            "counter",
            "Jobs the shard sent to other shards' inboxes.",
            |s| s.counters.cross_shard_sent as f64,
        ),
        (
            "ringtail_shard_cross_shard_received_total",
            "counter",
            "Jobs the shard ran from its inbox (sent by other shards or the controller).",
            |s| s.counters.cross_shard_received as f64,
        ),
        (
            "ringtail_shard_connections",
            "gauge",
            "Client connections the shard serves.",
            |s| s.connections as f64,
        ),
        (
            "ringtail_shard_partitions",
            "gauge",
            "Partition logs the shard owns (internal offsets partitions included).",
            |s| s.partitions.len() as f64,
        ),
    ];
    for (name, kind, help, figure) in families {
        out.family(name, kind, help);
        for snapshot in snapshots {
            let shard = snapshot.shard.to_string();
            out.sample(name, &[("shard", &shard)], figure(snapshot));
        }
    }
    out.family(
        "ringtail_shard_iowq_workers",
        "gauge",
        "io-wq worker threads of the shard's ring (punted buffered writes, fdatasyncs, splices).",
    );
    let mut shards: Vec<_> = iowq.iter().collect();
    shards.sort();
    for (shard, workers) in shards {
        out.sample(
            "ringtail_shard_iowq_workers",
            &[("shard", &shard.to_string())],
            *workers as f64,
        );
    }
}

fn fsyncs(out: &mut Out, snapshots: &[ShardSnapshot]) {
    out.family(
        "ringtail_fsync_duration_seconds",
        "histogram",
        "fdatasync latency of segment files (acknowledging writes, and sealing segments).",
    );
    for s in snapshots {
        let shard = s.shard.to_string();
        out.histogram(
            "ringtail_fsync_duration_seconds",
            &[("shard", &shard)],
            &s.fsyncs.latency_us,
            s.fsyncs.latency_us_sum as f64 / 1e6,
            &LATENCY_BOUNDS_S,
            1e-6,
        );
    }
    out.family(
        "ringtail_fsync_size_bytes",
        "histogram",
        "Bytes written since the file's previous fdatasync, per fdatasync.",
    );
    for s in snapshots {
        let shard = s.shard.to_string();
        out.histogram(
            "ringtail_fsync_size_bytes",
            &[("shard", &shard)],
            &s.fsyncs.bytes,
            s.fsyncs.bytes_sum as f64,
            &SIZE_BOUNDS_BYTES,
            1.0,
        );
    }
}

fn apis(out: &mut Out, snapshots: &[ShardSnapshot]) {
    // Summed over shards: a request is counted on the shard whose connection took it.
    let mut merged: BTreeMap<i16, (u64, Histogram<u64>, u64)> = BTreeMap::new();
    let mut errors: BTreeMap<(i16, i16), u64> = BTreeMap::new();
    for s in snapshots {
        for (key, stats) in s.counters.apis.iter().enumerate() {
            let Some(stats) = stats else { continue };
            match merged.entry(key as i16) {
                std::collections::btree_map::Entry::Vacant(slot) => {
                    slot.insert((
                        stats.requests,
                        stats.latency_us.clone(),
                        stats.latency_us_sum,
                    ));
                }
                std::collections::btree_map::Entry::Occupied(mut slot) => {
                    let entry = slot.get_mut();
                    // Same bounds everywhere (`ApiStats::new`): adding cannot fail.
                    let _ = entry.1.add(&stats.latency_us);
                    entry.0 += stats.requests;
                    entry.2 += stats.latency_us_sum;
                }
            }
        }
        for (key, count) in &s.counters.errors {
            *errors.entry(*key).or_default() += count;
        }
    }
    out.family(
        "ringtail_api_requests_total",
        "counter",
        "Requests answered, by Kafka API.",
    );
    for (key, (requests, _, _)) in &merged {
        out.sample(
            "ringtail_api_requests_total",
            &[("api", &api_name(*key))],
            *requests as f64,
        );
    }
    out.family(
        "ringtail_api_errors_total",
        "counter",
        "Error codes other than NONE written into responses (one per partition, topic or group that failed), by Kafka API and error code.",
    );
    for ((key, code), count) in &errors {
        out.sample(
            "ringtail_api_errors_total",
            &[("api", &api_name(*key)), ("code", &code.to_string())],
            *count as f64,
        );
    }
    out.family(
        "ringtail_api_request_duration_seconds",
        "histogram",
        "Time from a request's frame being read to its response being sent, by Kafka API.",
    );
    for (key, (_, histogram, sum_us)) in &merged {
        out.histogram(
            "ringtail_api_request_duration_seconds",
            &[("api", &api_name(*key))],
            histogram,
            *sum_us as f64 / 1e6,
            &LATENCY_BOUNDS_S,
            1e-6,
        );
    }
}

fn partitions(out: &mut Out, snapshots: &[ShardSnapshot]) {
    type Figure = fn(&super::snapshot::PartitionFigures) -> f64;
    let families: [(&str, &str, &str, Figure); 10] = [
        (
            "ringtail_partition_messages_in_total",
            "counter",
            "Records appended (an idempotent producer's duplicates excluded).",
            |p| p.traffic.messages_in as f64,
        ),
        (
            "ringtail_partition_bytes_in_total",
            "counter",
            "Record batch bytes appended.",
            |p| p.traffic.bytes_in as f64,
        ),
        (
            "ringtail_partition_messages_out_total",
            "counter",
            "Offsets spanned by the batches served to fetches.",
            |p| p.traffic.messages_out as f64,
        ),
        (
            "ringtail_partition_bytes_out_total",
            "counter",
            "Record batch bytes served to fetches.",
            |p| p.traffic.bytes_out as f64,
        ),
        (
            "ringtail_partition_log_end_offset",
            "gauge",
            "The offset the next appended record gets.",
            |p| p.log_end_offset as f64,
        ),
        (
            "ringtail_partition_high_watermark",
            "gauge",
            "Records below this offset are visible to consumers.",
            |p| p.high_watermark as f64,
        ),
        (
            "ringtail_partition_log_start_offset",
            "gauge",
            "The first offset still kept.",
            |p| p.log_start_offset as f64,
        ),
        (
            "ringtail_partition_size_bytes",
            "gauge",
            "Size of the partition's segment files.",
            |p| p.size_bytes as f64,
        ),
        (
            "ringtail_partition_segments",
            "gauge",
            "Segment files of the partition.",
            |p| p.segments as f64,
        ),
        (
            "ringtail_partition_offline",
            "gauge",
            "1 while a storage failure keeps the partition offline.",
            |p| f64::from(u8::from(p.offline)),
        ),
    ];
    let mut all: Vec<(String, &super::snapshot::PartitionFigures)> = snapshots
        .iter()
        .flat_map(|s| s.partitions.iter().map(|p| (s.shard.to_string(), p)))
        .collect();
    all.sort_by(|a, b| (&a.1.topic, a.1.partition).cmp(&(&b.1.topic, b.1.partition)));
    for (name, kind, help, figure) in families {
        out.family(name, kind, help);
        for (shard, p) in &all {
            let partition = p.partition.to_string();
            out.sample(
                name,
                &[
                    ("topic", &p.topic),
                    ("partition", &partition),
                    ("shard", shard),
                ],
                figure(p),
            );
        }
    }
}

fn groups(out: &mut Out, snapshots: &[ShardSnapshot]) {
    let high_watermarks: HashMap<(&str, i32), i64> = snapshots
        .iter()
        .flat_map(|s| &s.partitions)
        .map(|p| ((p.topic.as_str(), p.partition), p.high_watermark))
        .collect();
    let mut groups: Vec<_> = snapshots.iter().flat_map(|s| &s.groups).collect();
    groups.sort_by(|a, b| a.id.cmp(&b.id));
    out.family(
        "ringtail_group_members",
        "gauge",
        "Members of the consumer group.",
    );
    for g in &groups {
        out.sample(
            "ringtail_group_members",
            &[("group", &g.id)],
            g.members as f64,
        );
    }
    out.family(
        "ringtail_group_state",
        "gauge",
        "1 for the group's current state (Empty, PreparingRebalance, CompletingRebalance, Stable).",
    );
    for g in &groups {
        out.sample(
            "ringtail_group_state",
            &[("group", &g.id), ("state", g.state)],
            1.0,
        );
    }
    out.family(
        "ringtail_group_committed_offset",
        "gauge",
        "The group's committed offset of the partition.",
    );
    for g in &groups {
        for (topic, partition, offset) in &g.offsets {
            let partition = partition.to_string();
            out.sample(
                "ringtail_group_committed_offset",
                &[
                    ("group", &g.id),
                    ("topic", topic),
                    ("partition", &partition),
                ],
                *offset as f64,
            );
        }
    }
    out.family(
        "ringtail_group_lag",
        "gauge",
        "Records between the group's committed offset and the partition's high watermark (partitions of this broker only).",
    );
    for g in &groups {
        for (topic, partition, offset) in &g.offsets {
            let Some(&high_watermark) = high_watermarks.get(&(topic.as_str(), *partition)) else {
                continue;
            };
            let partition = partition.to_string();
            out.sample(
                "ringtail_group_lag",
                &[
                    ("group", &g.id),
                    ("topic", topic),
                    ("partition", &partition),
                ],
                (high_watermark - offset).max(0) as f64,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape("x\ny"), "x\\ny");
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let mut h = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 2).unwrap();
        for us in [50, 300, 300, 2_000, 20_000_000] {
            h.record(us).unwrap();
        }
        let mut out = Out {
            text: String::new(),
        };
        out.histogram(
            "x_seconds",
            &[("api", "Produce")],
            &h,
            20.00265,
            &LATENCY_BOUNDS_S,
            1e-6,
        );
        let line = |le: &str| {
            out.text
                .lines()
                .find(|l| {
                    l.starts_with(&format!("x_seconds_bucket{{api=\"Produce\",le=\"{le}\"}}"))
                })
                .unwrap_or_else(|| panic!("no bucket {le} in\n{}", out.text))
                .rsplit(' ')
                .next()
                .unwrap()
                .to_string()
        };
        assert_eq!(line("0.0001"), "1");
        assert_eq!(line("0.0005"), "3");
        assert_eq!(line("0.0025"), "4");
        assert_eq!(line("10"), "4");
        assert_eq!(line("+Inf"), "5");
        assert!(out.text.contains("x_seconds_count{api=\"Produce\"} 5\n"));
        assert!(out
            .text
            .contains("x_seconds_sum{api=\"Produce\"} 20.00265\n"));
    }

    #[test]
    fn api_keys_are_named() {
        assert_eq!(api_name(0), "Produce");
        assert_eq!(api_name(12), "Heartbeat");
        assert_eq!(api_name(9999), "api_9999");
    }
}
