//! Committed offsets in the internal log: each commit is a record keyed by (group, topic,
//! partition) in an ordinary v2 batch of a `__ringtail_offsets-N` partition; a record without
//! a value (a tombstone) deletes the key. Replaying a partition's log from its start, newest
//! record winning, gives every committed offset of its groups.
//!
//! Key (big-endian): version i16 = 1, group (i16 length + UTF-8), topic (same), partition i32.
//! Value: version i16 = 1, offset i64, leader epoch i32, metadata (i16 length or -1 + UTF-8),
//! commit timestamp i64.

/// Number of internal offsets partitions; a group lives in `java_hash(group) % PARTITIONS`,
/// as Kafka places groups in `__consumer_offsets`, so the mapping never depends on the shard
/// count.
pub const PARTITIONS: u32 = 16;
/// Directory prefix of the internal partitions (reserved: no user topic may start with it).
pub const INTERNAL_PREFIX: &str = "__ringtail_offsets";

/// Java's `String.hashCode`, so that groups land where a Kafka user would expect them.
pub fn java_hash(text: &str) -> i32 {
    text.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)))
}

/// The internal partition of a group.
pub fn partition_of(group: &str) -> u32 {
    java_hash(group).unsigned_abs() % PARTITIONS
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Committed {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
    pub commit_timestamp_ms: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    pub group: String,
    pub topic: String,
    pub partition: i32,
}

fn put_string(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(&(text.len() as i16).to_be_bytes());
    out.extend_from_slice(text.as_bytes());
}

pub fn encode_key(key: &Key) -> Vec<u8> {
    let mut out = Vec::with_capacity(12 + key.group.len() + key.topic.len());
    out.extend_from_slice(&1i16.to_be_bytes());
    put_string(&mut out, &key.group);
    put_string(&mut out, &key.topic);
    out.extend_from_slice(&key.partition.to_be_bytes());
    out
}

pub fn encode_value(value: &Committed) -> Vec<u8> {
    let mut out = Vec::with_capacity(32);
    out.extend_from_slice(&1i16.to_be_bytes());
    out.extend_from_slice(&value.offset.to_be_bytes());
    out.extend_from_slice(&value.leader_epoch.to_be_bytes());
    match &value.metadata {
        Some(text) => put_string(&mut out, text),
        None => out.extend_from_slice(&(-1i16).to_be_bytes()),
    }
    out.extend_from_slice(&value.commit_timestamp_ms.to_be_bytes());
    out
}

struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }
    fn i16(&mut self) -> Option<i16> {
        Some(i16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }
    fn i32(&mut self) -> Option<i32> {
        Some(i32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }
    fn string(&mut self) -> Option<Option<String>> {
        let len = self.i16()?;
        if len < 0 {
            return Some(None);
        }
        Some(Some(
            String::from_utf8(self.take(len as usize)?.to_vec()).ok()?,
        ))
    }
}

pub fn decode_key(bytes: &[u8]) -> Option<Key> {
    let mut c = Cursor(bytes);
    if c.i16()? != 1 {
        return None;
    }
    Some(Key {
        group: c.string()??,
        topic: c.string()??,
        partition: c.i32()?,
    })
}

pub fn decode_value(bytes: &[u8]) -> Option<Committed> {
    let mut c = Cursor(bytes);
    if c.i16()? != 1 {
        return None;
    }
    Some(Committed {
        offset: c.i64()?,
        leader_epoch: c.i32()?,
        metadata: c.string()?,
        commit_timestamp_ms: c.i64()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_values_round_trip() {
        let key = Key {
            group: "g".into(),
            topic: "orders".into(),
            partition: 3,
        };
        assert_eq!(decode_key(&encode_key(&key)), Some(key));
        for metadata in [None, Some("m".to_string())] {
            let value = Committed {
                offset: 42,
                leader_epoch: -1,
                metadata,
                commit_timestamp_ms: 7,
            };
            assert_eq!(decode_value(&encode_value(&value)), Some(value));
        }
        assert_eq!(decode_key(&[0, 2]), None);
    }

    #[test]
    fn groups_hash_like_java() {
        assert_eq!(java_hash(""), 0);
        assert_eq!(java_hash("a"), 97);
        assert_eq!(java_hash("hello"), 99162322);
        assert!(partition_of("any-group") < PARTITIONS);
    }
}
