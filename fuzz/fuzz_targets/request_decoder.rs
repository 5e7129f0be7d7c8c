//! Any bytes as a request frame (size prefix first, as the captured frames in
//! `server/tests/fixtures/kafka-requests/` are: use them as the seed corpus): decoding never
//! panics, never hangs and never allocates beyond the frame (libFuzzer's -rss_limit_mb and
//! -malloc_limit_mb enforce the last).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|frame: &[u8]| {
    let body = frame.get(4..).unwrap_or(frame);
    let _ = ringtail_server::decode_request(body);
});
