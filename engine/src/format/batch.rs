//! Kafka's v2 record-batch header: the one Kafka structure the engine knows.
//!
//! Pure functions, no I/O, usable from any thread. The layout (all big-endian) is documented in
//! `docs/format.md`:
//!
//! | offset | size | field                 | covered by CRC |
//! |-------:|-----:|-----------------------|:--------------:|
//! |      0 |    8 | baseOffset            | no             |
//! |      8 |    4 | batchLength           | no             |
//! |     12 |    4 | partitionLeaderEpoch  | no             |
//! |     16 |    1 | magic (= 2)           | no             |
//! |     17 |    4 | crc (CRC-32C)         | no             |
//! |     21 |    2 | attributes            | yes            |
//! |     23 |    4 | lastOffsetDelta       | yes            |
//! |     27 |    8 | baseTimestamp         | yes            |
//! |     35 |    8 | maxTimestamp          | yes            |
//! |     43 |    8 | producerId            | yes            |
//! |     51 |    2 | producerEpoch         | yes            |
//! |     53 |    4 | baseSequence          | yes            |
//! |     57 |    4 | recordsCount          | yes            |
//! |     61 |    … | records               | yes            |
//!
//! `batchLength` counts the bytes after itself, so a batch occupies `12 + batchLength` bytes.
//! Because the CRC does not cover `baseOffset` or `partitionLeaderEpoch`, the broker stamps both
//! in place without recomputing it.

use thiserror::Error;

/// Bytes before the records.
pub const HEADER_LEN: usize = 61;
/// Bytes of the prefix that says how long a batch is (`baseOffset`, `batchLength`).
pub const LENGTH_PREFIX_LEN: usize = 12;
pub const MAGIC_V2: i8 = 2;

const BASE_OFFSET: usize = 0;
const BATCH_LENGTH: usize = 8;
const LEADER_EPOCH: usize = 12;
const MAGIC: usize = 16;
const CRC: usize = 17;
const ATTRIBUTES: usize = 21;
const LAST_OFFSET_DELTA: usize = 23;
const BASE_TIMESTAMP: usize = 27;
const MAX_TIMESTAMP: usize = 35;
const PRODUCER_ID: usize = 43;
const PRODUCER_EPOCH: usize = 51;
const BASE_SEQUENCE: usize = 53;
const RECORDS_COUNT: usize = 57;

/// Why bytes are not a valid v2 batch. `Truncated` alone can mean "more bytes are coming".
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum BatchError {
    #[error("batch truncated: need {need} bytes, have {have}")]
    Truncated { need: usize, have: usize },
    #[error("batch length {length} is below the {HEADER_LEN}-byte header")]
    LengthTooSmall { length: i64 },
    #[error("unsupported magic {magic}: only v2 record batches are stored")]
    Magic { magic: i8 },
    #[error("CRC-32C mismatch: header says {stored:#010x}, bytes give {computed:#010x}")]
    Crc { stored: u32, computed: u32 },
    #[error("invalid header: {reason}")]
    Invalid { reason: &'static str },
}

/// The fields of a v2 batch header that the engine uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    /// Total size of the batch in bytes (`12 + batchLength`).
    pub size: usize,
    pub partition_leader_epoch: i32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
    pub crc: u32,
}

impl BatchHeader {
    /// The offset of the batch's last record.
    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }

    /// The offset after the batch.
    pub fn next_offset(&self) -> i64 {
        self.last_offset() + 1
    }

    /// The compression codec (attributes bits 0-2): 0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd.
    pub fn compression(&self) -> u8 {
        (self.attributes & 0x7) as u8
    }

    pub fn is_control(&self) -> bool {
        self.attributes & 0x20 != 0
    }
}

fn be_i16(bytes: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([bytes[at], bytes[at + 1]])
}

fn be_i32(bytes: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

fn be_i64(bytes: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

/// How many bytes the batch starting at `bytes` occupies, from its 12-byte prefix alone.
pub fn batch_size(bytes: &[u8]) -> Result<usize, BatchError> {
    if bytes.len() < LENGTH_PREFIX_LEN {
        return Err(BatchError::Truncated {
            need: LENGTH_PREFIX_LEN,
            have: bytes.len(),
        });
    }
    let length = be_i32(bytes, BATCH_LENGTH);
    let size = LENGTH_PREFIX_LEN as i64 + i64::from(length);
    if size < HEADER_LEN as i64 {
        return Err(BatchError::LengthTooSmall { length: size });
    }
    Ok(size as usize)
}

/// Parses the header of the batch at the start of `bytes`, checking length, magic and the
/// header's own consistency, but not the CRC (see [`verify_crc`]). `bytes` may extend past the
/// batch; it need hold only the header.
pub fn parse_header(bytes: &[u8]) -> Result<BatchHeader, BatchError> {
    let size = batch_size(bytes)?;
    if bytes.len() < HEADER_LEN {
        return Err(BatchError::Truncated {
            need: HEADER_LEN,
            have: bytes.len(),
        });
    }
    let magic = bytes[MAGIC] as i8;
    if magic != MAGIC_V2 {
        return Err(BatchError::Magic { magic });
    }
    let header = BatchHeader {
        base_offset: be_i64(bytes, BASE_OFFSET),
        size,
        partition_leader_epoch: be_i32(bytes, LEADER_EPOCH),
        attributes: be_i16(bytes, ATTRIBUTES),
        last_offset_delta: be_i32(bytes, LAST_OFFSET_DELTA),
        base_timestamp: be_i64(bytes, BASE_TIMESTAMP),
        max_timestamp: be_i64(bytes, MAX_TIMESTAMP),
        producer_id: be_i64(bytes, PRODUCER_ID),
        producer_epoch: be_i16(bytes, PRODUCER_EPOCH),
        base_sequence: be_i32(bytes, BASE_SEQUENCE),
        records_count: be_i32(bytes, RECORDS_COUNT),
        crc: u32::from_be_bytes(bytes[CRC..CRC + 4].try_into().expect("4 bytes")),
    };
    if header.last_offset_delta < 0 {
        return Err(BatchError::Invalid {
            reason: "negative lastOffsetDelta",
        });
    }
    if header.records_count <= 0 {
        return Err(BatchError::Invalid {
            reason: "a batch must hold at least one record",
        });
    }
    if header.base_offset < 0
        || header
            .base_offset
            .checked_add(i64::from(header.last_offset_delta))
            .is_none()
    {
        return Err(BatchError::Invalid {
            reason: "baseOffset out of range",
        });
    }
    Ok(header)
}

/// Checks the CRC-32C of a whole batch (`batch` must be exactly one batch).
pub fn verify_crc(batch: &[u8], header: &BatchHeader) -> Result<(), BatchError> {
    debug_assert_eq!(batch.len(), header.size);
    let computed = crc32c::crc32c(&batch[ATTRIBUTES..]);
    if computed != header.crc {
        return Err(BatchError::Crc {
            stored: header.crc,
            computed,
        });
    }
    Ok(())
}

/// Validates one complete batch as a producer sent it: `batch` must be exactly one v2 batch with
/// a correct CRC. Returns its header.
pub fn validate(batch: &[u8]) -> Result<BatchHeader, BatchError> {
    let mut header = parse_header_any_offset(batch)?;
    if batch.len() != header.size {
        return Err(if batch.len() < header.size {
            BatchError::Truncated {
                need: header.size,
                have: batch.len(),
            }
        } else {
            BatchError::Invalid {
                reason: "bytes after the batch's stated length",
            }
        });
    }
    verify_crc(batch, &header)?;
    header.base_offset = be_i64(batch, BASE_OFFSET);
    Ok(header)
}

/// Like [`parse_header`] but accepts any `baseOffset` a producer may send (producers send 0, but
/// the field is the broker's to assign, so its value is ignored).
fn parse_header_any_offset(bytes: &[u8]) -> Result<BatchHeader, BatchError> {
    if bytes.len() >= 8 {
        let mut prefix = [0u8; HEADER_LEN];
        let n = bytes.len().min(HEADER_LEN);
        prefix[..n].copy_from_slice(&bytes[..n]);
        prefix[..8].fill(0);
        parse_header(&prefix[..n])
    } else {
        parse_header(bytes)
    }
}

/// Writes the broker-assigned `baseOffset` and `partitionLeaderEpoch` into a batch in place.
/// Neither is covered by the CRC, so the batch stays valid.
pub fn stamp(batch: &mut [u8], base_offset: i64, partition_leader_epoch: i32) {
    batch[BASE_OFFSET..BASE_OFFSET + 8].copy_from_slice(&base_offset.to_be_bytes());
    batch[LEADER_EPOCH..LEADER_EPOCH + 4].copy_from_slice(&partition_leader_epoch.to_be_bytes());
}

/// A v2 batch around encoded `records` (`count` of them): header fields for a non-idempotent
/// producer, base offset 0, the CRC-32C computed.
fn assemble(records: &[u8], count: i32, base_timestamp: i64, max_timestamp: i64) -> Vec<u8> {
    let mut batch = Vec::with_capacity(HEADER_LEN + records.len());
    batch.extend_from_slice(&0i64.to_be_bytes());
    batch.extend_from_slice(
        &((HEADER_LEN - LENGTH_PREFIX_LEN + records.len()) as i32).to_be_bytes(),
    );
    batch.extend_from_slice(&0i32.to_be_bytes()); // partitionLeaderEpoch
    batch.push(MAGIC_V2 as u8);
    batch.extend_from_slice(&[0; 4]); // crc, filled below
    batch.extend_from_slice(&0i16.to_be_bytes()); // attributes
    batch.extend_from_slice(&(count - 1).to_be_bytes());
    batch.extend_from_slice(&base_timestamp.to_be_bytes());
    batch.extend_from_slice(&max_timestamp.to_be_bytes());
    batch.extend_from_slice(&(-1i64).to_be_bytes()); // producerId
    batch.extend_from_slice(&(-1i16).to_be_bytes()); // producerEpoch
    batch.extend_from_slice(&(-1i32).to_be_bytes()); // baseSequence
    batch.extend_from_slice(&count.to_be_bytes());
    batch.extend_from_slice(records);
    let crc = crc32c::crc32c(&batch[ATTRIBUTES..]);
    batch[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
    batch
}

/// Builds a valid uncompressed v2 batch of `count` records with `value_len`-byte values; for
/// tests, benchmarks and tools. Records have no key and no headers.
pub fn build_batch(count: i32, value_len: usize, timestamp_ms: i64) -> Vec<u8> {
    build_batch_with(count, value_len, timestamp_ms, b'x')
}

/// [`build_batch`] with every value byte set to `fill`.
pub fn build_batch_with(count: i32, value_len: usize, timestamp_ms: i64, fill: u8) -> Vec<u8> {
    assert!(count > 0, "a batch holds at least one record");
    let mut records = Vec::with_capacity(count as usize * (value_len + 8));
    let value = vec![fill; value_len];
    for delta in 0..count {
        let mut body = Vec::with_capacity(value_len + 8);
        body.push(0); // attributes
        put_varint(&mut body, 0); // timestampDelta
        put_varint(&mut body, i64::from(delta)); // offsetDelta
        put_varint(&mut body, -1); // key: null
        put_varint(&mut body, value_len as i64);
        body.extend_from_slice(&value);
        put_varint(&mut body, 0); // headers
        put_varint(&mut records, body.len() as i64);
        records.extend_from_slice(&body);
    }
    assemble(&records, count, timestamp_ms, timestamp_ms)
}

/// Builds an uncompressed v2 batch of keyed records (a `None` value is a tombstone), all with
/// `timestamp_ms`. For the broker's internal logs, tests and tools.
pub fn build_keyed_batch(records: &[(&[u8], Option<&[u8]>)], timestamp_ms: i64) -> Vec<u8> {
    assert!(!records.is_empty(), "a batch holds at least one record");
    let mut body = Vec::new();
    for (delta, (key, value)) in records.iter().enumerate() {
        let mut record = Vec::with_capacity(key.len() + value.map_or(0, <[u8]>::len) + 16);
        record.push(0); // attributes
        put_varint(&mut record, 0); // timestampDelta
        put_varint(&mut record, delta as i64); // offsetDelta
        put_varint(&mut record, key.len() as i64);
        record.extend_from_slice(key);
        match value {
            Some(value) => {
                put_varint(&mut record, value.len() as i64);
                record.extend_from_slice(value);
            }
            None => put_varint(&mut record, -1),
        }
        put_varint(&mut record, 0); // headers
        put_varint(&mut body, record.len() as i64);
        body.extend_from_slice(&record);
    }
    let count = records.len() as i32;
    assemble(&body, count, timestamp_ms, timestamp_ms)
}

/// One record of an uncompressed batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub offset_delta: i32,
    /// The batch's base timestamp plus the record's delta (for LogAppendTime batches, the
    /// batch's max timestamp, as Kafka reads them).
    pub timestamp: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
}

/// A batch with one small record per timestamp (the first is the base timestamp); for tests
/// of timestamp lookups.
pub fn build_batch_at(timestamps: &[i64]) -> Vec<u8> {
    assert!(!timestamps.is_empty(), "a batch holds at least one record");
    let base = timestamps[0];
    let mut body = Vec::new();
    for (delta, timestamp) in timestamps.iter().enumerate() {
        let mut record = vec![0]; // attributes
        put_varint(&mut record, timestamp - base);
        put_varint(&mut record, delta as i64);
        put_varint(&mut record, -1); // null key
        put_varint(&mut record, 1);
        record.push(b'v');
        put_varint(&mut record, 0); // headers
        put_varint(&mut body, record.len() as i64);
        body.extend_from_slice(&record);
    }
    let count = timestamps.len() as i32;
    let max = *timestamps.iter().max().expect("non-empty");
    assemble(&body, count, base, max)
}

/// The records of an uncompressed batch; None if the batch is compressed or its records are
/// malformed. Every length is checked against the bytes present.
pub fn records(batch: &[u8]) -> Option<Vec<Record>> {
    let header = parse_header(batch).ok()?;
    if header.compression() != 0 {
        return None;
    }
    let log_append_time = header.attributes & 0x08 != 0;
    let mut at = HEADER_LEN;
    let end = header.size.min(batch.len());
    let mut out = Vec::with_capacity((header.records_count.max(0) as usize).min(end / 7));
    for _ in 0..header.records_count {
        let length = usize::try_from(get_varint(batch, &mut at)?).ok()?;
        let record_end = at.checked_add(length)?;
        if record_end > end {
            return None;
        }
        at += 1; // attributes
        let timestamp_delta = get_varint(batch, &mut at)?;
        let offset_delta = i32::try_from(get_varint(batch, &mut at)?).ok()?;
        let key = get_bytes(batch, &mut at, record_end)?;
        let value = get_bytes(batch, &mut at, record_end)?;
        out.push(Record {
            offset_delta,
            timestamp: if log_append_time {
                header.max_timestamp
            } else {
                header.base_timestamp.saturating_add(timestamp_delta)
            },
            key,
            value,
        });
        at = record_end;
    }
    Some(out)
}

/// The (key, value) of each record of an uncompressed batch (a null key reads as empty).
pub fn keyed_records(batch: &[u8]) -> Option<Vec<(Vec<u8>, Option<Vec<u8>>)>> {
    Some(
        records(batch)?
            .into_iter()
            .map(|r| (r.key.unwrap_or_default(), r.value))
            .collect(),
    )
}

/// A varint-length-prefixed byte string (-1: null) ending at or before `end`.
fn get_bytes(bytes: &[u8], at: &mut usize, end: usize) -> Option<Option<Vec<u8>>> {
    let len = get_varint(bytes, at)?;
    if len < 0 {
        return Some(None);
    }
    let stop = at.checked_add(usize::try_from(len).ok()?)?;
    if stop > end {
        return None;
    }
    let out = bytes.get(*at..stop)?.to_vec();
    *at = stop;
    Some(Some(out))
}

fn get_varint(bytes: &[u8], at: &mut usize) -> Option<i64> {
    let mut value: u64 = 0;
    for shift in (0..64).step_by(7) {
        let byte = *bytes.get(*at)?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(((value >> 1) as i64) ^ -((value & 1) as i64));
        }
    }
    None
}

/// Makes a built batch an idempotent producer's: sets producer id, epoch and base sequence and
/// recomputes the CRC (these fields are covered by it). For tests and tools.
pub fn set_producer(batch: &mut [u8], producer_id: i64, producer_epoch: i16, base_sequence: i32) {
    batch[PRODUCER_ID..PRODUCER_ID + 8].copy_from_slice(&producer_id.to_be_bytes());
    batch[PRODUCER_EPOCH..PRODUCER_EPOCH + 2].copy_from_slice(&producer_epoch.to_be_bytes());
    batch[BASE_SEQUENCE..BASE_SEQUENCE + 4].copy_from_slice(&base_sequence.to_be_bytes());
    let crc = crc32c::crc32c(&batch[ATTRIBUTES..]);
    batch[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
}

fn put_varint(out: &mut Vec<u8>, value: i64) {
    let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
    while zigzag >= 0x80 {
        out.push((zigzag as u8) | 0x80);
        zigzag >>= 7;
    }
    out.push(zigzag as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_batch_validates() {
        let batch = build_batch(1000, 200, 1_700_000_000_000);
        let header = validate(&batch).expect("valid");
        assert_eq!(header.records_count, 1000);
        assert_eq!(header.last_offset_delta, 999);
        assert_eq!(header.size, batch.len());
        assert_eq!(header.max_timestamp, 1_700_000_000_000);
    }

    #[test]
    fn stamping_keeps_the_crc_valid() {
        let mut batch = build_batch(3, 10, 5);
        stamp(&mut batch, 1234, 7);
        let header = validate(&batch).expect("still valid");
        assert_eq!(header.base_offset, 1234);
        assert_eq!(header.partition_leader_epoch, 7);
        assert_eq!(header.next_offset(), 1237);
    }

    #[test]
    fn a_flipped_bit_in_the_records_fails_the_crc() {
        let mut batch = build_batch(2, 10, 5);
        let last = batch.len() - 1;
        batch[last] ^= 0x10;
        assert!(matches!(validate(&batch), Err(BatchError::Crc { .. })));
    }

    #[test]
    fn wrong_magic_short_and_long_inputs_are_refused() {
        let mut batch = build_batch(1, 10, 5);
        batch[MAGIC] = 1;
        assert_eq!(validate(&batch), Err(BatchError::Magic { magic: 1 }));
        let batch = build_batch(1, 10, 5);
        assert!(matches!(
            validate(&batch[..30]),
            Err(BatchError::Truncated { .. })
        ));
        assert!(matches!(
            validate(&batch[..batch.len() - 1]),
            Err(BatchError::Truncated { .. })
        ));
        let mut longer = batch.clone();
        longer.push(0);
        assert!(matches!(validate(&longer), Err(BatchError::Invalid { .. })));
        let mut tiny = batch.clone();
        tiny[BATCH_LENGTH..BATCH_LENGTH + 4].copy_from_slice(&10i32.to_be_bytes());
        assert!(matches!(
            validate(&tiny),
            Err(BatchError::LengthTooSmall { .. })
        ));
        let mut negative = batch;
        negative[BATCH_LENGTH..BATCH_LENGTH + 4].copy_from_slice(&(-5i32).to_be_bytes());
        assert!(matches!(
            validate(&negative),
            Err(BatchError::LengthTooSmall { .. })
        ));
    }

    #[test]
    fn keyed_records_round_trip() {
        let records: Vec<(&[u8], Option<&[u8]>)> =
            vec![(b"a", Some(b"one")), (b"bb", None), (b"", Some(b""))];
        let batch = build_keyed_batch(&records, 42);
        let header = validate(&batch).expect("valid");
        assert_eq!(header.records_count, 3);
        let back = keyed_records(&batch).expect("records");
        assert_eq!(
            back,
            vec![
                (b"a".to_vec(), Some(b"one".to_vec())),
                (b"bb".to_vec(), None),
                (Vec::new(), Some(Vec::new()))
            ]
        );
        for len in 0..batch.len() {
            let _ = keyed_records(&batch[..len]);
        }
    }

    #[test]
    fn record_timestamps_come_from_base_plus_delta() {
        let batch = build_batch(3, 5, 1_000);
        let found = records(&batch).expect("records");
        assert_eq!(
            found
                .iter()
                .map(|r| (r.offset_delta, r.timestamp))
                .collect::<Vec<_>>(),
            vec![(0, 1000), (1, 1000), (2, 1000)]
        );
        assert_eq!(found[0].key, None);
        assert_eq!(found[0].value.as_deref(), Some(&b"xxxxx"[..]));
    }

    #[test]
    fn no_input_prefix_panics() {
        let batch = build_batch(4, 33, 9);
        for len in 0..=batch.len() {
            let _ = validate(&batch[..len]);
            let _ = parse_header(&batch[..len]);
            let _ = batch_size(&batch[..len]);
        }
    }
}
