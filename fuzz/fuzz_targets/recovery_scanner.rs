//! Any bytes as a partition's only segment, after a crash (no clean-shutdown marker, no
//! checkpoint): opening recovers without panicking, and whatever it then serves is whole,
//! CRC-valid batches with contiguous offsets.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringtail_engine::format::batch;
use ringtail_engine::io::{Runtime, RuntimeConfig};
use ringtail_engine::{LogConfig, Offset, Partition};

fuzz_target!(|segment: &[u8]| {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("00000000000000000000.log"), segment).expect("write segment");
    let runtime = Runtime::new(RuntimeConfig::default()).expect("runtime");
    runtime.block_on(async {
        let Ok(log) = Partition::open(dir.path(), LogConfig::default()).await else {
            return;
        };
        let mut offset = log.log_start_offset();
        while offset < log.high_watermark() {
            let bytes = log
                .read_bytes(offset, 1 << 20)
                .await
                .expect("a recovered log reads back");
            let mut rest = &bytes[..];
            assert!(
                !rest.is_empty(),
                "a read below the high watermark returns data"
            );
            while !rest.is_empty() {
                let size = batch::batch_size(rest).expect("whole batches");
                let header = batch::parse_header(rest).expect("a valid header");
                batch::verify_crc(&rest[..size], &header).expect("a valid CRC");
                assert_eq!(offset, header.base_offset, "contiguous offsets");
                offset = Offset(header.next_offset());
                rest = &rest[size..];
            }
        }
        let _ = log.close().await;
    });
});
