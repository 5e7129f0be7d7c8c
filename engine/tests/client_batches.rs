//! Batches exactly as real Kafka clients sent them (captured Produce frames in `fixtures/`):
//! they validate, are stored verbatim apart from the broker-stamped fields, and read back.

mod common;

use bytes::BytesMut;
use common::{open, run, split_batches};
use ringtail_engine::format::batch;
use ringtail_engine::LogConfig;
use ringtail_engine::Offset;

/// Finds the record batch in a Produce request frame: the one place where a batch with a valid
/// CRC-32C starts and ends inside the frame.
fn batch_in_frame(frame: &[u8]) -> &[u8] {
    for start in 0..frame.len() {
        let Ok(size) = batch::batch_size(&frame[start..]) else {
            continue;
        };
        if start + size > frame.len() {
            continue;
        }
        if batch::validate(&frame[start..start + size]).is_ok() {
            return &frame[start..start + size];
        }
    }
    panic!("no valid batch in the frame");
}

const FIXTURES: [(&str, i32, u8); 4] = [
    ("kafkajs2.2.4-Produce-v7-001.bin", 10, 0),
    ("kafka-python3.0.12-Produce-v9-002.bin", 10, 0),
    ("confluent-kafka2.16.1-Produce-v10-002.bin", 10, 0),
    ("librdkafka2.16-Produce-v10-007.bin", 10, 4), // zstd
];

#[test]
fn client_batches_are_stored_verbatim_and_read_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/");
    run(async {
        let log = open(dir.path(), LogConfig::default()).await;
        let mut sent = Vec::new();
        for (name, records, codec) in FIXTURES {
            let frame = std::fs::read(format!("{fixtures}{name}")).expect("fixture");
            let client_batch = batch_in_frame(&frame).to_vec();
            let header = batch::validate(&client_batch).expect("a client's batch validates");
            assert_eq!(header.records_count, records, "{name}");
            assert_eq!(header.compression(), codec, "{name}");
            let info = log
                .append(BytesMut::from(&client_batch[..]), 0)
                .expect("append");
            sent.push((info.base_offset.get(), client_batch));
        }
        let last = log.log_end_offset() - 1;
        log.wait_for_ack(last, true).await.expect("durable");
        let stored = split_batches(&log.read_bytes(Offset(0), 1 << 20).await.expect("read"));
        assert_eq!(stored.len(), sent.len());
        for ((base, original), (stored_base, stored_bytes)) in sent.iter().zip(&stored) {
            assert_eq!(base, stored_base);
            // Only baseOffset (0..8) and partitionLeaderEpoch (12..16) may differ.
            assert_eq!(original.len(), stored_bytes.len());
            assert_eq!(&original[8..12], &stored_bytes[8..12]);
            assert_eq!(&original[16..], &stored_bytes[16..]);
            assert_eq!(&stored_bytes[0..8], &base.to_be_bytes());
        }
        // RINGTAIL_KEEP_SEGMENTS=DIR keeps this log's segment as a fuzzing seed.
        if let Some(keep) = std::env::var_os("RINGTAIL_KEEP_SEGMENTS") {
            let segment = dir.path().join("00000000000000000000.log");
            let _ = std::fs::copy(
                segment,
                std::path::Path::new(&keep).join("client-batches.log"),
            );
        }
        // The idempotent producers' fields survive untouched.
        let python = batch::parse_header(&stored[1].1).expect("header");
        assert!(
            python.producer_id >= 0,
            "kafka-python 3 produces idempotently"
        );
        log.close().await.expect("close");
    });
}
