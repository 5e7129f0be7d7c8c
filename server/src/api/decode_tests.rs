//! Decoder tests from real request frames captured from six clients
//! (`server/tests/fixtures/kafka-requests/`): every frame of an API and version this broker
//! serves decodes completely; every truncation of it and thousands of random corruptions are
//! rejected or decoded without a panic or an allocation beyond the frame.

use std::path::PathBuf;

use crate::protocol::reader::DecodeError;

fn fixtures() -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kafka-requests");
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .expect("fixtures directory")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "bin"))
        .map(|p| {
            (
                p.file_name().expect("name").to_string_lossy().into_owned(),
                std::fs::read(&p).expect("read"),
            )
        })
        .collect();
    out.sort();
    assert!(out.len() > 150, "fixtures present");
    out
}

/// Decodes a frame body with the API's own decoder. None: not an API served here.
fn decode_frame(body: &[u8]) -> Option<Result<(), DecodeError>> {
    match super::decode_only(body) {
        Ok(true) => Some(Ok(())),
        Ok(false) => None,
        Err(err) => Some(Err(err)),
    }
}

#[test]
fn every_captured_frame_of_a_served_api_decodes() {
    let mut decoded = 0;
    for (name, frame) in fixtures() {
        let size = i32::from_be_bytes(frame[0..4].try_into().expect("size")) as usize;
        assert_eq!(size + 4, frame.len(), "{name}: size prefix");
        if let Some(result) = decode_frame(&frame[4..]) {
            result.unwrap_or_else(|e| panic!("{name}: {e}"));
            decoded += 1;
        }
    }
    // Produce, Fetch, Metadata, ListOffsets, admin APIs of all six clients.
    assert!(decoded >= 90, "only {decoded} frames were of served APIs");
}

#[test]
fn truncated_frames_are_rejected_without_panicking() {
    // A prefix may still decode where the cut fields are ones Ringtail does not read; what
    // matters is that no prefix panics or allocates past what it holds.
    for (_, frame) in fixtures() {
        let body = &frame[4..];
        for len in 0..body.len() {
            let _ = decode_frame(&body[..len]);
        }
    }
}

#[test]
fn corrupted_frames_never_panic() {
    let seed: u64 = std::env::var("RINGTAIL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed);
    eprintln!("corrupted_frames_never_panic: RINGTAIL_SEED={seed}");
    let mut state = seed;
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as usize
    };
    for (_, frame) in fixtures() {
        let body = &frame[4..];
        for _ in 0..200 {
            let mut corrupted = body.to_vec();
            for _ in 0..1 + next() % 4 {
                let at = next() % corrupted.len();
                corrupted[at] = match next() % 3 {
                    0 => 0xff,
                    1 => 0x7f,
                    _ => next() as u8,
                };
            }
            let _ = decode_frame(&corrupted);
        }
    }
}
