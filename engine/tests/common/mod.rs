//! Helpers shared by the engine's integration tests.
#![allow(dead_code)]

use std::future::Future;
use std::path::Path;
use std::rc::Rc;

use bytes::BytesMut;
use proptest::strategy::Strategy;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use ringtail_engine::format::batch;
use ringtail_engine::io::{Runtime, RuntimeConfig};
use ringtail_engine::{LogConfig, Offset, Partition};

/// Runs `future` on a fresh runtime, as a shard thread would. Dropping the runtime afterwards
/// without closing partitions is how tests simulate kill -9.
pub fn run<F: Future>(future: F) -> F::Output {
    let runtime = Runtime::new(RuntimeConfig::default()).expect("io_uring runtime");
    runtime.block_on(future)
}

/// A batch of `count` records whose values carry `tag`, so each batch is distinguishable.
pub fn batch(count: i32, value_len: usize, timestamp_ms: i64, tag: u8) -> BytesMut {
    let mut bytes = batch::build_batch_with(count, value_len, timestamp_ms, tag);
    let _ = &mut bytes;
    BytesMut::from(&bytes[..])
}

pub async fn open(dir: &Path, config: LogConfig) -> Rc<Partition> {
    Partition::open(dir, config).await.expect("open partition")
}

/// Splits a run of stored batches into (base offset, bytes) pairs, checking each header.
pub fn split_batches(mut bytes: &[u8]) -> Vec<(i64, Vec<u8>)> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let size = batch::batch_size(bytes).expect("batch size");
        let header = batch::parse_header(bytes).expect("header");
        batch::verify_crc(&bytes[..size], &header).expect("crc");
        out.push((header.base_offset, bytes[..size].to_vec()));
        bytes = &bytes[size..];
    }
    out
}

/// The seed for a randomised test: `RINGTAIL_SEED` if set, else the clock. Printed so a
/// failure can be replayed.
pub fn seed(test: &str) -> u64 {
    let seed = std::env::var("RINGTAIL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock after 1970")
                .as_nanos() as u64
        });
    eprintln!("{test}: RINGTAIL_SEED={seed}");
    seed
}

/// Every batch of the log from its start to the high watermark, across segments.
pub async fn read_all(log: &Partition) -> Vec<(i64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.high_watermark() {
        let bytes = log.read_bytes(offset, 1 << 20).await.expect("read");
        let batches = split_batches(&bytes);
        let (_, last) = batches
            .last()
            .expect("a read below the high watermark returns a batch");
        offset = Offset(batch::parse_header(last).expect("header").next_offset());
        out.extend(batches);
    }
    out
}

/// Runs a property test with a generator seeded from [`seed`], so a failure names the seed that
/// replays it.
pub fn run_property<S: Strategy>(
    name: &str,
    cases: u32,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) {
    let seed = seed(name);
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = TestRunner::new_with_rng(
        config,
        TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes),
    );
    runner
        .run(&strategy, test)
        .unwrap_or_else(|err| panic!("{err} (RINGTAIL_SEED={seed})"));
}
