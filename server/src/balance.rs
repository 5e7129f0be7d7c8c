//! `--balance-cores`: every `core.balance.interval.ms` the controller shard measures how busy
//! each shard was (time not parked in `io_uring_enter`) and how much traffic each partition
//! carried, and moves one partition from the busiest shard to the least busy one when the gap
//! matters (a move through `moves`, online).
//!
//! Runs as a task on the controller shard of a broker running alone with two or more shards.
//! Hysteresis, so it never flaps: nothing moves unless the busiest shard was busy at least
//! `BUSY_MIN` of the interval and the gap to the least busy is at least `GAP_MIN`; only a
//! partition whose traffic is below the two shards' traffic gap moves (so the move narrows the
//! gap rather than flipping it), the one closest to half the gap; at most one move per
//! interval; and a moved partition stays put for `COOLDOWN_ROUNDS` intervals.

use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use ringtail_engine::io as rio;
use tracing::{debug, info, warn};

use crate::shard::{LocalFuture, Shard, ShardId};

/// The busiest shard must have been busy at least this share of the interval...
const BUSY_MIN: f64 = 0.3;
/// ...and at least this much more than the least busy one.
const GAP_MIN: f64 = 0.15;
/// Intervals a moved partition is left where it went.
const COOLDOWN_ROUNDS: u32 = 3;

/// One shard's counters at one moment.
struct Sample {
    busy: Duration,
    /// (topic, partition) -> bytes appended and served so far.
    traffic: HashMap<(String, i32), u64>,
}

async fn sample(controller: &Rc<Shard>, target: ShardId) -> Option<Sample> {
    controller
        .on_shard(target, |shard: Rc<Shard>| -> LocalFuture<Sample> {
            let busy = rio::runtime_stats().unwrap_or_default().busy();
            let traffic = shard
                .partition_logs()
                .into_iter()
                .filter(|(topic, _, _)| !topic.starts_with("__"))
                .map(|(topic, partition, log)| {
                    let t = log.traffic();
                    ((topic.to_string(), partition), t.bytes_in + t.bytes_out)
                })
                .collect();
            Box::pin(async move { Sample { busy, traffic } })
        })
        .await
}

/// What one interval showed: per shard, its busy share and its partitions' traffic.
#[derive(Debug, Default)]
pub struct Interval {
    pub busy: Vec<f64>,
    /// Per shard: (topic, partition, bytes in the interval).
    pub partitions: Vec<Vec<(String, i32, u64)>>,
}

impl Interval {
    /// What happened between two samples of every shard, `wall` apart.
    fn between(before: &[Sample], after: &[Sample], wall: Duration) -> Interval {
        let wall = wall.as_secs_f64().max(1e-9);
        let pairs = || after.iter().zip(before);
        Interval {
            busy: pairs()
                .map(|(a, b)| a.busy.saturating_sub(b.busy).as_secs_f64() / wall)
                .collect(),
            partitions: pairs()
                .map(|(a, b)| {
                    a.traffic
                        .iter()
                        .filter_map(|(key, bytes)| {
                            // A partition that arrived during the interval is measured next time.
                            let earlier = b.traffic.get(key)?;
                            Some((key.0.clone(), key.1, bytes.saturating_sub(*earlier)))
                        })
                        .collect()
                })
                .collect(),
        }
    }
}

/// The move one interval calls for, if any: (topic, partition, from, to).
pub fn choose(
    interval: &Interval,
    cooling: &HashMap<(String, i32), u32>,
) -> Option<(String, i32, usize, usize)> {
    let shards = interval.busy.len();
    if shards < 2 {
        return None;
    }
    let by_busy = |a: &usize, b: &usize| interval.busy[*a].total_cmp(&interval.busy[*b]);
    let hot = (0..shards).max_by(by_busy)?;
    let cold = (0..shards).min_by(by_busy)?;
    let (hot_busy, cold_busy) = (interval.busy[hot], interval.busy[cold]);
    if hot == cold || hot_busy < BUSY_MIN || hot_busy - cold_busy < GAP_MIN {
        return None;
    }
    let load = |s: usize| interval.partitions[s].iter().map(|p| p.2).sum::<u64>();
    let gap = load(hot).saturating_sub(load(cold));
    interval.partitions[hot]
        .iter()
        .filter(|(topic, partition, bytes)| {
            *bytes > 0 && *bytes < gap && !cooling.contains_key(&(topic.clone(), *partition))
        })
        .min_by_key(|(_, _, bytes)| bytes.abs_diff(gap / 2))
        .map(|(topic, partition, _)| (topic.clone(), *partition, hot, cold))
}

/// The balancer task (on the controller shard).
pub async fn run(controller: Rc<Shard>) {
    let every = Duration::from_millis(controller.shared.config.core_balance_interval_ms);
    let shards: Vec<ShardId> = controller.shared.shard_ids().collect();
    let mut previous: Option<(Instant, Vec<Sample>)> = None;
    let mut cooling: HashMap<(String, i32), u32> = HashMap::new();
    loop {
        rio::sleep(every).await;
        let now = Instant::now();
        let mut samples = Vec::with_capacity(shards.len());
        for &target in &shards {
            match sample(&controller, target).await {
                Some(s) => samples.push(s),
                None => return, // a shard stopped: the broker is stopping
            }
        }
        cooling.retain(|_, rounds| {
            *rounds -= 1;
            *rounds > 0
        });
        let Some((then, before)) = previous.take() else {
            previous = Some((now, samples));
            continue;
        };
        let interval = Interval::between(&before, &samples, now.duration_since(then));
        previous = Some((now, samples));
        debug!(busy = ?interval.busy, "core balance");
        let Some((topic, partition, from, to)) = choose(&interval, &cooling) else {
            continue;
        };
        let (hot, cold) = (interval.busy[from], interval.busy[to]);
        match crate::moves::move_partition(&controller, topic.clone(), partition, to).await {
            Ok(_) => {
                info!(
                    "core balance: moved {topic}/{partition} from shard {from} (busy {hot:.2}) to shard {to} (busy {cold:.2})"
                );
                cooling.insert((topic, partition), COOLDOWN_ROUNDS);
                // The move changed what the next interval measures: start afresh.
                previous = None;
            }
            Err(err) => {
                warn!("core balance: moving {topic}/{partition} to shard {to} failed: {err}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interval(busy: &[f64], partitions: &[&[(&str, i32, u64)]]) -> Interval {
        Interval {
            busy: busy.to_vec(),
            partitions: partitions
                .iter()
                .map(|ps| ps.iter().map(|(t, p, b)| (t.to_string(), *p, *b)).collect())
                .collect(),
        }
    }

    #[test]
    fn two_hot_partitions_on_one_shard_are_split() {
        let i = interval(
            &[0.9, 0.2],
            &[&[("hot", 0, 1000), ("hot", 1, 900)], &[("cold", 0, 10)]],
        );
        assert_eq!(choose(&i, &HashMap::new()), Some(("hot".into(), 1, 0, 1)));
    }

    #[test]
    fn small_gaps_idle_shards_and_cooling_partitions_stay() {
        let parts: &[&[(&str, i32, u64)]] = &[&[("a", 0, 1000), ("a", 1, 900)], &[]];
        assert_eq!(
            choose(&interval(&[0.9, 0.8], parts), &HashMap::new()),
            None,
            "gap under GAP_MIN"
        );
        assert_eq!(
            choose(&interval(&[0.25, 0.0], parts), &HashMap::new()),
            None,
            "not busy enough"
        );
        let mut cooling = HashMap::new();
        cooling.insert(("a".to_string(), 1), 2);
        assert_eq!(
            choose(&interval(&[0.9, 0.1], parts), &cooling),
            Some(("a".into(), 0, 0, 1))
        );
        cooling.insert(("a".to_string(), 0), 2);
        assert_eq!(choose(&interval(&[0.9, 0.1], parts), &cooling), None);
    }

    #[test]
    fn a_move_that_would_flip_the_imbalance_is_not_made() {
        // One partition carries everything: moving it just moves the hot spot.
        let i = interval(&[0.9, 0.1], &[&[("solo", 0, 1000)], &[]]);
        assert_eq!(choose(&i, &HashMap::new()), None);
        // After the split, the two shards carry about the same: nothing moves back.
        let i = interval(&[0.55, 0.45], &[&[("hot", 0, 1000)], &[("hot", 1, 900)]]);
        assert_eq!(choose(&i, &HashMap::new()), None);
    }
}
