//! Committed offsets in the internal log: each commit is a record keyed by (group, topic,
//! partition) in an ordinary v2 batch of a `__ringtail_offsets-N` partition; a record without
//! a value (a tombstone) deletes the key. Replaying a partition's log from its start, newest
//! record winning, gives every committed offset of its groups.
//!
//! The records are Kafka's own, as in `__consumer_offsets` (which serves these partitions
//! read-only, for lag monitors): key version 1 (OffsetCommitKey: group, topic, partition i32),
//! value version 3 (OffsetCommitValue: offset i64, leader epoch i32, metadata, commit timestamp
//! i64); key version 2 (GroupMetadataKey: group) with value version 3 (GroupMetadataValue), which
//! replay skips. Strings are i16 length + UTF-8 (-1: null), bytes i32 length. Data directories
//! written before these were Kafka's hold value version 1 with the same layout as 3; both read.

/// Number of internal offsets partitions; a group lives in `java_hash(group) % PARTITIONS`,
/// as Kafka places groups in `__consumer_offsets`, so the mapping never depends on the shard
/// count.
pub const PARTITIONS: u32 = 16;
/// Directory prefix of the internal partitions (reserved: no user topic may start with it).
pub const INTERNAL_PREFIX: &str = "__ringtail_offsets";
/// The topic under which these partitions are served, read-only, as Kafka's internal one.
pub const CONSUMER_OFFSETS: &str = "__consumer_offsets";
/// Its topic id (fixed: it names the same data on every start).
pub const CONSUMER_OFFSETS_ID: [u8; 16] = *b"ringtail-offsets";

/// Key versions (record types) of Kafka's `__consumer_offsets`.
const OFFSET_COMMIT_KEY: i16 = 1;
const GROUP_METADATA_KEY: i16 = 2;
/// Value versions written: the highest non-flexible ones, as Kafka writes them.
const OFFSET_COMMIT_VALUE: i16 = 3;
const GROUP_METADATA_VALUE: i16 = 3;
/// The value version of data directories from before the records were Kafka's (same layout).
const LEGACY_OFFSET_COMMIT_VALUE: i16 = 1;

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
    out.extend_from_slice(&OFFSET_COMMIT_KEY.to_be_bytes());
    put_string(&mut out, &key.group);
    put_string(&mut out, &key.topic);
    out.extend_from_slice(&key.partition.to_be_bytes());
    out
}

pub fn encode_value(value: &Committed) -> Vec<u8> {
    let mut out = Vec::with_capacity(32);
    out.extend_from_slice(&OFFSET_COMMIT_VALUE.to_be_bytes());
    out.extend_from_slice(&value.offset.to_be_bytes());
    out.extend_from_slice(&value.leader_epoch.to_be_bytes());
    // Non-nullable in Kafka's schema: no metadata is written as "", as Kafka writes it (a
    // null from older directories is still read).
    put_string(&mut out, value.metadata.as_deref().unwrap_or(""));
    out.extend_from_slice(&value.commit_timestamp_ms.to_be_bytes());
    out
}

/// One member in a group-metadata record.
pub struct MemberRecord<'a> {
    pub member_id: &'a str,
    pub instance_id: Option<&'a str>,
    pub client_id: &'a str,
    pub client_host: &'a str,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub subscription: &'a [u8],
    pub assignment: &'a [u8],
}

/// A group's state as Kafka records it (GroupMetadataValue v3).
pub struct GroupRecord<'a> {
    pub protocol_type: &'a str,
    pub generation: i32,
    pub protocol: Option<&'a str>,
    pub leader: Option<&'a str>,
    pub state_timestamp_ms: i64,
    pub members: Vec<MemberRecord<'a>>,
}

pub fn encode_group_key(group: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + group.len());
    out.extend_from_slice(&GROUP_METADATA_KEY.to_be_bytes());
    put_string(&mut out, group);
    out
}

fn put_nullable(out: &mut Vec<u8>, text: Option<&str>) {
    match text {
        Some(text) => put_string(out, text),
        None => out.extend_from_slice(&(-1i16).to_be_bytes()),
    }
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
    out.extend_from_slice(bytes);
}

pub fn encode_group_value(group: &GroupRecord) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&GROUP_METADATA_VALUE.to_be_bytes());
    put_string(&mut out, group.protocol_type);
    out.extend_from_slice(&group.generation.to_be_bytes());
    put_nullable(&mut out, group.protocol);
    put_nullable(&mut out, group.leader);
    out.extend_from_slice(&group.state_timestamp_ms.to_be_bytes());
    out.extend_from_slice(&(group.members.len() as i32).to_be_bytes());
    for m in &group.members {
        put_string(&mut out, m.member_id);
        put_nullable(&mut out, m.instance_id);
        put_string(&mut out, m.client_id);
        put_string(&mut out, m.client_host);
        out.extend_from_slice(&m.rebalance_timeout_ms.to_be_bytes());
        out.extend_from_slice(&m.session_timeout_ms.to_be_bytes());
        put_bytes(&mut out, m.subscription);
        put_bytes(&mut out, m.assignment);
    }
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

/// An offset-commit key; None for other record types (group metadata) or malformed keys.
pub fn decode_key(bytes: &[u8]) -> Option<Key> {
    let mut c = Cursor(bytes);
    if c.i16()? != OFFSET_COMMIT_KEY {
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
    if !matches!(c.i16()?, OFFSET_COMMIT_VALUE | LEGACY_OFFSET_COMMIT_VALUE) {
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
        for metadata in [Some(String::new()), Some("m".to_string())] {
            let value = Committed {
                offset: 42,
                leader_epoch: -1,
                metadata,
                commit_timestamp_ms: 7,
            };
            assert_eq!(decode_value(&encode_value(&value)), Some(value));
        }
        assert_eq!(decode_key(&[0, 2]), None);
        assert_eq!(
            decode_key(&encode_group_key("g")),
            None,
            "group metadata is skipped"
        );
    }

    #[test]
    fn records_use_kafkas_versions_and_layouts() {
        let key = encode_key(&Key {
            group: "g".into(),
            topic: "t".into(),
            partition: 7,
        });
        assert_eq!(key, [0, 1, 0, 1, b'g', 0, 1, b't', 0, 0, 0, 7]);
        let value = encode_value(&Committed {
            offset: 5,
            leader_epoch: 2,
            metadata: None,
            commit_timestamp_ms: 9,
        });
        // OffsetCommitValue v3: offset, leader epoch, metadata, commit timestamp.
        let mut expected = vec![0, 3];
        expected.extend_from_slice(&5i64.to_be_bytes());
        expected.extend_from_slice(&2i32.to_be_bytes());
        expected.extend_from_slice(&0i16.to_be_bytes()); // metadata "": never null
        expected.extend_from_slice(&9i64.to_be_bytes());
        assert_eq!(value, expected);
        // Directories written before: version 1, same layout, still read.
        let mut legacy = value.clone();
        legacy[1] = 1;
        assert_eq!(decode_value(&legacy), decode_value(&value));
        let mut null_metadata = value[..14].to_vec();
        null_metadata.extend_from_slice(&(-1i16).to_be_bytes());
        null_metadata.extend_from_slice(&9i64.to_be_bytes());
        assert_eq!(decode_value(&null_metadata).map(|c| c.metadata), Some(None));
        assert_eq!(encode_group_key("grp"), [0, 2, 0, 3, b'g', b'r', b'p']);
        let group = encode_group_value(&GroupRecord {
            protocol_type: "consumer",
            generation: 3,
            protocol: Some("range"),
            leader: Some("m1"),
            state_timestamp_ms: 11,
            members: vec![MemberRecord {
                member_id: "m1",
                instance_id: None,
                client_id: "c",
                client_host: "/127.0.0.1",
                rebalance_timeout_ms: 300,
                session_timeout_ms: 100,
                subscription: b"s",
                assignment: b"a",
            }],
        });
        assert_eq!(&group[..2], &[0, 3]);
        assert_eq!(&group[group.len() - 5..], &[0, 0, 0, 1, b'a']);
    }

    #[test]
    fn groups_hash_like_java() {
        assert_eq!(java_hash(""), 0);
        assert_eq!(java_hash("a"), 97);
        assert_eq!(java_hash("hello"), 99162322);
        assert!(partition_of("any-group") < PARTITIONS);
    }
}
