//! Pre-built Kafka v2 record batches, and walking batches in fetched record sets.
//!
//! A batch is built once per connection; for each send only the timestamps (and the send time
//! in the first record's value, used for end-to-end latency) are rewritten and the CRC-32C is
//! recomputed, so the generator costs a few microseconds per batch.

/// Bytes before the records in a v2 batch.
pub const HEADER_LEN: usize = 61;
const CRC_AT: usize = 17;
const ATTRIBUTES_AT: usize = 21;
const BASE_TIMESTAMP_AT: usize = 27;
const MAX_TIMESTAMP_AT: usize = 35;
const RECORDS_COUNT_AT: usize = 57;

fn varint(out: &mut Vec<u8>, value: i64) {
    let mut v = ((value << 1) ^ (value >> 63)) as u64;
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A batch template plus where the first record's value starts (the send-time stamp).
pub struct BatchTemplate {
    pub bytes: Vec<u8>,
    stamp_at: usize,
}

impl BatchTemplate {
    /// `records` records with `value_len`-byte values (at least 8: the first 8 carry the send
    /// time in microseconds).
    pub fn new(records: i32, value_len: usize) -> BatchTemplate {
        assert!(records > 0);
        let value_len = value_len.max(8);
        let mut body_records = Vec::with_capacity(records as usize * (value_len + 8));
        let mut stamp_at = 0;
        for delta in 0..records {
            let mut record = Vec::with_capacity(value_len + 8);
            record.push(0); // attributes
            varint(&mut record, 0); // timestamp delta
            varint(&mut record, i64::from(delta));
            varint(&mut record, -1); // null key
            varint(&mut record, value_len as i64);
            let value_at = record.len();
            record.extend(std::iter::repeat_n(b'r', value_len));
            varint(&mut record, 0); // headers
            let mut length = Vec::new();
            varint(&mut length, record.len() as i64);
            if delta == 0 {
                stamp_at = HEADER_LEN + length.len() + value_at;
            }
            body_records.extend_from_slice(&length);
            body_records.extend_from_slice(&record);
        }
        let mut bytes = Vec::with_capacity(HEADER_LEN + body_records.len());
        bytes.extend_from_slice(&0i64.to_be_bytes());
        bytes.extend_from_slice(&((HEADER_LEN - 12 + body_records.len()) as i32).to_be_bytes());
        bytes.extend_from_slice(&(-1i32).to_be_bytes());
        bytes.push(2);
        bytes.extend_from_slice(&[0; 4]);
        bytes.extend_from_slice(&0i16.to_be_bytes());
        bytes.extend_from_slice(&(records - 1).to_be_bytes());
        bytes.extend_from_slice(&0i64.to_be_bytes());
        bytes.extend_from_slice(&0i64.to_be_bytes());
        bytes.extend_from_slice(&(-1i64).to_be_bytes());
        bytes.extend_from_slice(&(-1i16).to_be_bytes());
        bytes.extend_from_slice(&(-1i32).to_be_bytes());
        bytes.extend_from_slice(&records.to_be_bytes());
        bytes.extend_from_slice(&body_records);
        let mut template = BatchTemplate { bytes, stamp_at };
        template.stamp(0);
        template
    }

    /// Sets the batch timestamps (ms) and the send time (µs) in the first value; fixes the CRC.
    pub fn stamp(&mut self, now_us: u64) {
        let ms = (now_us / 1000) as i64;
        self.bytes[BASE_TIMESTAMP_AT..BASE_TIMESTAMP_AT + 8].copy_from_slice(&ms.to_be_bytes());
        self.bytes[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8].copy_from_slice(&ms.to_be_bytes());
        self.bytes[self.stamp_at..self.stamp_at + 8].copy_from_slice(&now_us.to_be_bytes());
        let crc = crc32c::crc32c(&self.bytes[ATTRIBUTES_AT..]);
        self.bytes[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    }
}

/// One batch found in a fetched record set.
pub struct FoundBatch<'a> {
    pub base_offset: i64,
    pub last_offset: i64,
    pub records: i32,
    pub bytes: &'a [u8],
}

impl FoundBatch<'_> {
    pub fn crc_ok(&self) -> bool {
        let stored =
            u32::from_be_bytes(self.bytes[CRC_AT..CRC_AT + 4].try_into().expect("4 bytes"));
        crc32c::crc32c(&self.bytes[ATTRIBUTES_AT..]) == stored
    }

    /// The send time stamped by [`BatchTemplate::stamp`], if the first record carries one.
    pub fn send_time_us(&self) -> Option<u64> {
        if self.bytes[ATTRIBUTES_AT + 1] & 0x07 != 0 {
            return None; // compressed
        }
        let mut at = HEADER_LEN;
        let read_varint = |at: &mut usize| -> Option<i64> {
            let mut value: u64 = 0;
            for shift in (0..64).step_by(7) {
                let byte = *self.bytes.get(*at)?;
                *at += 1;
                value |= u64::from(byte & 0x7f) << shift;
                if byte & 0x80 == 0 {
                    return Some(((value >> 1) as i64) ^ -((value & 1) as i64));
                }
            }
            None
        };
        read_varint(&mut at)?; // length
        at += 1; // attributes
        read_varint(&mut at)?; // timestamp delta
        read_varint(&mut at)?; // offset delta
        let key_len = read_varint(&mut at)?;
        if key_len > 0 {
            at += key_len as usize;
        }
        let value_len = read_varint(&mut at)?;
        if value_len < 8 {
            return None;
        }
        Some(u64::from_be_bytes(
            self.bytes.get(at..at + 8)?.try_into().ok()?,
        ))
    }
}

/// Walks whole batches in a record set; a partial batch at the end (which brokers may send) is
/// skipped.
pub fn batches(mut records: &[u8]) -> impl Iterator<Item = FoundBatch<'_>> {
    std::iter::from_fn(move || {
        if records.len() < HEADER_LEN {
            return None;
        }
        let length = i32::from_be_bytes(records[8..12].try_into().ok()?);
        let size = 12 + length as usize;
        if length < (HEADER_LEN - 12) as i32 || records.len() < size {
            return None;
        }
        let (bytes, rest) = records.split_at(size);
        records = rest;
        let base_offset = i64::from_be_bytes(bytes[0..8].try_into().ok()?);
        let delta = i32::from_be_bytes(bytes[23..27].try_into().ok()?);
        let count = i32::from_be_bytes(
            bytes[RECORDS_COUNT_AT..RECORDS_COUNT_AT + 4]
                .try_into()
                .ok()?,
        );
        Some(FoundBatch {
            base_offset,
            last_offset: base_offset + i64::from(delta),
            records: count,
            bytes,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_batches_are_valid_and_carry_their_send_time() {
        let mut template = BatchTemplate::new(1000, 200);
        template.stamp(1_700_000_000_123_456);
        let found: Vec<_> = batches(&template.bytes).collect();
        assert_eq!(found.len(), 1);
        assert!(found[0].crc_ok());
        assert_eq!(found[0].records, 1000);
        assert_eq!(found[0].last_offset, 999);
        assert_eq!(found[0].send_time_us(), Some(1_700_000_000_123_456));
        let mut broken = template.bytes.clone();
        let n = broken.len();
        broken[n - 5] ^= 1;
        assert!(!batches(&broken).next().expect("batch").crc_ok());
        // A partial trailing batch is skipped.
        let mut two = template.bytes.clone();
        two.extend_from_slice(&template.bytes[..100]);
        assert_eq!(batches(&two).count(), 1);
    }
}
