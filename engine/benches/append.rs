//! Storage-engine throughput: appends of 1,000-record batches of 200-byte values, with
//! fsync=never and with acks-all group commit, and sequential reads.
//!
//! Each append copies the batch into a fresh buffer first (what receiving it from a socket
//! costs the broker), then hands that buffer to the log, which writes it without copying.
//! Appends are issued in ticks of `TICK_BATCHES`; every tick's last offset gets a waiter, as
//! concurrent producers would, and at most `WAITERS_MAX` ticks are outstanding (backpressure).
//! Run `scripts/bench-engine.sh` to compare with `dd` on the same disk in the same run.

use std::collections::VecDeque;
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ringtail_engine::format::batch::build_batch;
use ringtail_engine::io::{spawn, yield_now, JoinHandle, Runtime, RuntimeConfig};
use ringtail_engine::{FsyncPolicy, LogConfig, Offset, Partition};

const RECORDS_PER_BATCH: i32 = 1000;
const VALUE_BYTES: usize = 200;
const TICK_BATCHES: usize = 4;
const WAITERS_MAX: usize = 64;
/// One benchmark iteration appends this many batches (about 13.5 MB).
const BATCHES_PER_ITER: usize = 64;

fn bench_dir() -> tempfile::TempDir {
    // RINGTAIL_BENCH_DIR picks the file system under test (default: the system temp dir).
    match std::env::var_os("RINGTAIL_BENCH_DIR") {
        Some(dir) => tempfile::tempdir_in(dir).expect("bench dir"),
        None => tempfile::tempdir().expect("tempdir"),
    }
}

/// Appends `batches` copies of `template`, as producers would, and waits for the last ack.
async fn append_run(log: Rc<Partition>, template: &[u8], batches: usize, acks_all: bool) {
    let mut waiters: VecDeque<JoinHandle<()>> = VecDeque::new();
    let mut last = Offset(0);
    for i in 0..batches {
        let info = log.append(BytesMut::from(template), 0).expect("append");
        last = info.last_offset;
        if (i + 1) % TICK_BATCHES == 0 {
            let log = log.clone();
            waiters.push_back(spawn(async move {
                log.wait_for_ack(last, acks_all).await.expect("ack");
            }));
            if waiters.len() > WAITERS_MAX {
                waiters.pop_front().expect("non-empty").await;
            }
            yield_now().await;
        }
    }
    log.wait_for_ack(last, acks_all).await.expect("ack");
    for waiter in waiters {
        waiter.await;
    }
}

fn timed_appends(policy: FsyncPolicy, iters: u64) -> Duration {
    let template = build_batch(RECORDS_PER_BATCH, VALUE_BYTES, 1_700_000_000_000);
    let dir = bench_dir();
    let runtime = Runtime::new(RuntimeConfig::default()).expect("runtime");
    runtime.block_on(async {
        let config = LogConfig {
            fsync: policy,
            ..LogConfig::default()
        };
        let log = Partition::open(dir.path(), config).await.expect("open");
        let started = Instant::now();
        let acks_all = policy == FsyncPolicy::AcksAll;
        append_run(
            log.clone(),
            &template,
            BATCHES_PER_ITER * iters as usize,
            acks_all,
        )
        .await;
        let elapsed = started.elapsed();
        log.close().await.expect("close");
        elapsed
    })
}

fn appends(c: &mut Criterion) {
    let batch_bytes = build_batch(RECORDS_PER_BATCH, VALUE_BYTES, 0).len();
    let mut group = c.benchmark_group("append");
    group.throughput(Throughput::Bytes((batch_bytes * BATCHES_PER_ITER) as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    for policy in [FsyncPolicy::Never, FsyncPolicy::AcksAll] {
        group.bench_function(BenchmarkId::new("fsync", policy.to_string()), |b| {
            b.iter_custom(|iters| timed_appends(policy, iters))
        });
    }
    group.finish();
}

/// Fills a log with `bytes` of batches and closes it.
fn fill(dir: &Path, bytes: usize) -> Offset {
    let template = build_batch(RECORDS_PER_BATCH, VALUE_BYTES, 1_700_000_000_000);
    let runtime = Runtime::new(RuntimeConfig::default()).expect("runtime");
    runtime.block_on(async {
        let config = LogConfig {
            fsync: FsyncPolicy::Never,
            ..LogConfig::default()
        };
        let log = Partition::open(dir, config).await.expect("open");
        append_run(log.clone(), &template, bytes / template.len(), false).await;
        let end = log.log_end_offset();
        log.close().await.expect("close");
        end
    })
}

fn reads(c: &mut Criterion) {
    const LOG_BYTES: usize = 256 << 20;
    const FETCH_BYTES: usize = 1 << 20;
    let dir = bench_dir();
    let end = fill(dir.path(), LOG_BYTES);
    let runtime = Runtime::new(RuntimeConfig::default()).expect("runtime");
    let log = runtime.block_on(async {
        Partition::open(dir.path(), LogConfig::default())
            .await
            .expect("open")
    });
    let batch_len = build_batch(RECORDS_PER_BATCH, VALUE_BYTES, 0).len() as u64;
    let records_in = |bytes: u64| (bytes / batch_len) as i64 * i64::from(RECORDS_PER_BATCH);
    let mut group = c.benchmark_group("read");
    group.throughput(Throughput::Bytes(LOG_BYTES as u64));
    group.sample_size(10);
    // Locating the file ranges of every 1 MiB fetch, as the broker does before splicing.
    group.bench_function("ranges", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let mut offset = Offset(0);
                while offset < end {
                    let result = log.read(offset, FETCH_BYTES).await.expect("read");
                    offset = offset + records_in(result.bytes());
                }
            })
        })
    });
    // The same, copying the bytes through user space (what the broker avoids).
    group.bench_function("copy", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let mut offset = Offset(0);
                while offset < end {
                    let bytes = log.read_bytes(offset, FETCH_BYTES).await.expect("read");
                    offset = offset + records_in(bytes.len() as u64);
                }
            })
        })
    });
    group.finish();
    runtime.block_on(async { log.close().await.expect("close") });
}

criterion_group!(benches, appends, reads);
criterion_main!(benches);
