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

/// A decoder needs some prefix of the frame (it may ignore fields it does not use, such as
/// trailing tagged fields): every cut before that point is refused as truncated, and every cut
/// at or after it decodes, so a truncation is never read as a different, shorter request.
#[test]
fn truncated_frames_are_refused_up_to_the_bytes_the_decoder_reads() {
    let mut checked = 0;
    for (name, frame) in fixtures() {
        let body = &frame[4..];
        if decode_frame(body).is_none() {
            continue;
        }
        let outcomes: Vec<bool> = (0..body.len())
            .map(|len| match decode_frame(&body[..len]) {
                Some(Ok(())) => true,
                Some(Err(DecodeError::Truncated { .. })) => false,
                Some(Err(err)) => panic!("{name}: cut at {len}: not refused as truncated: {err}"),
                None => panic!("{name}: cut at {len}: the API itself was not recognised"),
            })
            .collect();
        let needed = outcomes.iter().position(|&ok| ok).unwrap_or(body.len());
        assert!(
            outcomes[needed..].iter().all(|&ok| ok),
            "{name}: a cut after byte {needed} decodes but a longer one does not"
        );
        // The request header (API key, version, correlation id, client id) is always read.
        let client_id_len = i16::from_be_bytes([body[8], body[9]]).max(0) as usize;
        assert!(
            needed >= 10 + client_id_len,
            "{name}: decodes with only {needed} bytes, inside the request header"
        );
        checked += 1;
    }
    assert!(checked >= 90, "only {checked} frames were of served APIs");
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
