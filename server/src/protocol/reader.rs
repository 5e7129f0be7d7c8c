//! A checked reader for request bodies: every length and count is checked against the bytes
//! present before anything is allocated, and every failure says where and how much was missing.
//!
//! Used on the connection's shard. Works over a `BytesMut` frame so that record batches can be
//! split off as owned, mutable slices of the request buffer (no copy) for the storage engine.

use bytes::{Buf, BytesMut};

/// Why a request body could not be decoded (Kafka answers these by closing the connection, or
/// with an error code where the request could be attributed).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum DecodeError {
    #[error("request truncated at byte {offset}: need {need} bytes, have {have}")]
    Truncated {
        offset: usize,
        need: usize,
        have: usize,
    },
    #[error("invalid {what} at byte {offset}: {value}")]
    Invalid {
        what: &'static str,
        offset: usize,
        value: i64,
    },
    #[error("string at byte {offset} is not UTF-8")]
    Utf8 { offset: usize },
}

pub struct Reader {
    buf: BytesMut,
    /// Bytes consumed since the start of the body, for error positions.
    consumed: usize,
    /// Whether the request version uses the flexible (compact, tagged) encoding.
    pub flexible: bool,
}

impl Reader {
    pub fn new(buf: BytesMut, flexible: bool) -> Reader {
        Reader {
            buf,
            consumed: 0,
            flexible,
        }
    }

    fn need(&self, n: usize) -> Result<(), DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError::Truncated {
                offset: self.consumed,
                need: n,
                have: self.buf.len(),
            });
        }
        Ok(())
    }

    fn invalid(&self, what: &'static str, value: i64) -> DecodeError {
        DecodeError::Invalid {
            what,
            offset: self.consumed,
            value,
        }
    }

    pub fn i8(&mut self) -> Result<i8, DecodeError> {
        self.need(1)?;
        self.consumed += 1;
        Ok(self.buf.get_i8())
    }

    pub fn bool(&mut self) -> Result<bool, DecodeError> {
        Ok(self.i8()? != 0)
    }

    pub fn i16(&mut self) -> Result<i16, DecodeError> {
        self.need(2)?;
        self.consumed += 2;
        Ok(self.buf.get_i16())
    }

    pub fn i32(&mut self) -> Result<i32, DecodeError> {
        self.need(4)?;
        self.consumed += 4;
        Ok(self.buf.get_i32())
    }

    pub fn i64(&mut self) -> Result<i64, DecodeError> {
        self.need(8)?;
        self.consumed += 8;
        Ok(self.buf.get_i64())
    }

    pub fn uuid(&mut self) -> Result<[u8; 16], DecodeError> {
        self.need(16)?;
        self.consumed += 16;
        let mut out = [0u8; 16];
        self.buf.copy_to_slice(&mut out);
        Ok(out)
    }

    pub fn unsigned_varint(&mut self) -> Result<u32, DecodeError> {
        let mut value: u32 = 0;
        for i in 0..5 {
            self.need(1)?;
            let byte = self.buf.get_u8();
            self.consumed += 1;
            value |= u32::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(self.invalid("varint", -1))
    }

    /// A length that a following field of `min_item_bytes`-sized items must fit in: checked
    /// against the bytes left, so a huge count in a tiny frame fails here, before any allocation.
    fn checked_count(
        &self,
        count: i64,
        min_item_bytes: usize,
        what: &'static str,
    ) -> Result<usize, DecodeError> {
        let count = usize::try_from(count).map_err(|_| self.invalid(what, count))?;
        let need = count.saturating_mul(min_item_bytes.max(1));
        self.need(need)?;
        Ok(count)
    }

    /// A nullable length prefix: INT16/INT32 (classic) or UNSIGNED_VARINT+1 (compact).
    fn length(&mut self, classic_i16: bool) -> Result<Option<i64>, DecodeError> {
        let length = if self.flexible {
            i64::from(self.unsigned_varint()?) - 1
        } else if classic_i16 {
            i64::from(self.i16()?)
        } else {
            i64::from(self.i32()?)
        };
        Ok(if length < 0 { None } else { Some(length) })
    }

    pub fn nullable_string(&mut self) -> Result<Option<String>, DecodeError> {
        let Some(length) = self.length(true)? else {
            return Ok(None);
        };
        let length = self.checked_count(length, 1, "string length")?;
        let offset = self.consumed;
        let bytes = self.buf.split_to(length);
        self.consumed += length;
        String::from_utf8(bytes.to_vec())
            .map(Some)
            .map_err(|_| DecodeError::Utf8 { offset })
    }

    pub fn string(&mut self) -> Result<String, DecodeError> {
        let offset = self.consumed;
        self.nullable_string()?.ok_or(DecodeError::Invalid {
            what: "null string",
            offset,
            value: -1,
        })
    }

    /// Nullable bytes as an owned slice of the request buffer (no copy).
    pub fn nullable_bytes(&mut self) -> Result<Option<BytesMut>, DecodeError> {
        let Some(length) = self.length(false)? else {
            return Ok(None);
        };
        let length = self.checked_count(length, 1, "bytes length")?;
        self.consumed += length;
        Ok(Some(self.buf.split_to(length)))
    }

    /// Nullable bytes as an immutable slice of the request buffer, empty when null.
    pub fn bytes_or_empty(&mut self) -> Result<bytes::Bytes, DecodeError> {
        Ok(self
            .nullable_bytes()?
            .map(BytesMut::freeze)
            .unwrap_or_default())
    }

    /// An array's element count (None for a null array), checked so that `count` elements of
    /// at least `min_item_bytes` each fit in what is left.
    pub fn nullable_array(&mut self, min_item_bytes: usize) -> Result<Option<usize>, DecodeError> {
        let Some(count) = self.length(false)? else {
            return Ok(None);
        };
        self.checked_count(count, min_item_bytes, "array length")
            .map(Some)
    }

    pub fn array(&mut self, min_item_bytes: usize) -> Result<usize, DecodeError> {
        Ok(self.nullable_array(min_item_bytes)?.unwrap_or(0))
    }

    /// An array of structs decoded by `item`, each followed by its tagged fields (flexible
    /// versions); the count is checked against the bytes left before anything is allocated.
    pub fn structs<T>(
        &mut self,
        min_item_bytes: usize,
        mut item: impl FnMut(&mut Reader) -> Result<T, DecodeError>,
    ) -> Result<Vec<T>, DecodeError> {
        let count = self.array(min_item_bytes)?;
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            out.push(item(self)?);
            self.tagged_fields()?;
        }
        Ok(out)
    }

    /// Skips a tagged-field section (flexible versions only); unknown tags are ignored, as
    /// Kafka does.
    pub fn tagged_fields(&mut self) -> Result<(), DecodeError> {
        if !self.flexible {
            return Ok(());
        }
        let count = self.unsigned_varint()?;
        for _ in 0..count {
            let _tag = self.unsigned_varint()?;
            let size = self.unsigned_varint()? as usize;
            self.need(size)?;
            self.buf.advance(size);
            self.consumed += size;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_counts_in_tiny_frames_fail_before_allocating() {
        let mut reader = Reader::new(BytesMut::from(&[0x7f, 0xff, 0xff, 0xff, 0, 0][..]), false);
        assert!(matches!(
            reader.array(4),
            Err(DecodeError::Truncated { .. })
        ));
        let mut reader = Reader::new(BytesMut::from(&[0xff, 0xff, 0xff, 0xff, 0x0f][..]), true);
        assert!(matches!(
            reader.array(1),
            Err(DecodeError::Truncated { .. })
        ));
        let mut reader = Reader::new(BytesMut::from(&[0x7f, 0xff][..]), false);
        assert!(matches!(
            reader.string(),
            Err(DecodeError::Truncated { .. })
        ));
    }

    #[test]
    fn classic_and_compact_strings() {
        let mut reader = Reader::new(BytesMut::from(&[0, 2, b'h', b'i', 0xff, 0xff][..]), false);
        assert_eq!(reader.string().expect("string"), "hi");
        assert_eq!(reader.nullable_string().expect("null"), None);
        let mut reader = Reader::new(BytesMut::from(&[3, b'h', b'i', 0, 0][..]), true);
        assert_eq!(reader.string().expect("string"), "hi");
        assert_eq!(reader.nullable_string().expect("null"), None);
        reader.tagged_fields().expect("empty tagged fields");
    }

    /// Kafka's generated readers take any negative length of a nullable field as null; a
    /// non-nullable string given one is refused, and so is a varint that never ends.
    #[test]
    fn negative_lengths_read_as_null_where_nullable_and_are_refused_where_not() {
        let mut reader = Reader::new(BytesMut::from(&[0xff, 0xff, 0xff, 0xfe][..]), false);
        assert_eq!(reader.nullable_array(1).expect("-2 reads as null"), None);
        let mut reader = Reader::new(BytesMut::from(&[0xff, 0xfe][..]), false);
        assert_eq!(reader.nullable_string().expect("-2 reads as null"), None);
        let mut reader = Reader::new(BytesMut::from(&[0xff, 0xfe][..]), false);
        assert!(matches!(
            reader.string(),
            Err(DecodeError::Invalid {
                what: "null string",
                ..
            })
        ));
        let mut reader = Reader::new(BytesMut::from(&[0x00][..]), true);
        assert!(
            reader.string().is_err(),
            "compact length 0 is null: refused for a non-nullable string"
        );
        let mut reader = Reader::new(BytesMut::from(&[0x80][..]), true);
        assert!(matches!(
            reader.unsigned_varint(),
            Err(DecodeError::Truncated { .. })
        ));
        let mut reader = Reader::new(
            BytesMut::from(&[0xff, 0xff, 0xff, 0xff, 0xff, 0x01][..]),
            true,
        );
        assert!(
            reader.unsigned_varint().is_err(),
            "a varint longer than 5 bytes is refused"
        );
    }
}
