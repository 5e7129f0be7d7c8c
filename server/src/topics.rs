//! The topic registry: names, ids, partition-to-shard assignment and per-topic configs, persisted
//! in `<data-dir>/topics.meta`.
//!
//! Changed only by the controller (shard 0), one change at a time; every shard reads it through
//! a cached `Arc<Registry>` snapshot that it refreshes when the published version moves (one
//! atomic load per request, no lock on the produce or fetch path).
//!
//! File format (text, one topic per line, then a checksum line; replaced atomically by write to
//! a temporary file, fsync, rename, fsync of the directory):
//! ```text
//! ringtail-topics 1
//! <name> <id: 32 hex digits> <shard of partition 0>,<shard of partition 1>,... <k=v;k=v or ->
//! crc32 <8 hex digits of the CRC-32 of every byte above>
//! ```

use crate::ids::ShardId;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use ringtail_engine::LogConfig;

/// How a topic's old records go: deleted by age and size, or (the internal offsets topic)
/// compacted to the newest record per key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CleanupPolicy {
    Delete,
    Compact,
}

impl CleanupPolicy {
    pub fn name(self) -> &'static str {
        match self {
            CleanupPolicy::Delete => "delete",
            CleanupPolicy::Compact => "compact",
        }
    }
}

/// The topic configs a topic may set, under Kafka's names.
pub const TOPIC_CONFIG_NAMES: [&str; 6] = [
    "cleanup.policy",
    "max.message.bytes",
    "retention.bytes",
    "retention.ms",
    "segment.bytes",
    "segment.ms",
];

/// A topic's config overrides, parsed and validated; None: the broker's default.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TopicConfig {
    pub cleanup_policy: Option<CleanupPolicy>,
    pub max_message_bytes: Option<usize>,
    /// -1: no limit.
    pub retention_bytes: Option<i64>,
    /// -1: no limit.
    pub retention_ms: Option<i64>,
    pub segment_bytes: Option<u64>,
    pub segment_ms: Option<i64>,
}

/// Why a topic config was refused (Kafka: INVALID_CONFIG, with this message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicConfigError {
    #[error("unknown or unsupported topic config {key:?}")]
    Unknown { key: String },
    #[error("invalid value {value:?} for {key}")]
    Invalid { key: &'static str, value: String },
}

impl TopicConfig {
    /// Parses configs as a client sends them (CreateTopics) or the registry stores them.
    /// `cleanup.policy` may only be `delete` (compaction of user topics is not built yet).
    pub fn parse(configs: &BTreeMap<String, String>) -> Result<TopicConfig, TopicConfigError> {
        let mut config = TopicConfig::default();
        for (key, value) in configs {
            let Some(&name) = TOPIC_CONFIG_NAMES.iter().find(|n| **n == key.as_str()) else {
                return Err(TopicConfigError::Unknown { key: key.clone() });
            };
            let invalid = || TopicConfigError::Invalid {
                key: name,
                value: value.clone(),
            };
            match name {
                "cleanup.policy" if value == "delete" => {
                    config.cleanup_policy = Some(CleanupPolicy::Delete)
                }
                "segment.bytes" => {
                    let v = value.parse::<u64>().map_err(|_| invalid())?;
                    if !(1024..=i32::MAX as u64).contains(&v) {
                        return Err(invalid());
                    }
                    config.segment_bytes = Some(v);
                }
                "max.message.bytes" => {
                    let v = value.parse::<usize>().map_err(|_| invalid())?;
                    if v < 64 {
                        return Err(invalid());
                    }
                    config.max_message_bytes = Some(v);
                }
                "segment.ms" => {
                    let v = value.parse::<i64>().map_err(|_| invalid())?;
                    if v <= 0 {
                        return Err(invalid());
                    }
                    config.segment_ms = Some(v);
                }
                "retention.ms" | "retention.bytes" => {
                    let v = value.parse::<i64>().map_err(|_| invalid())?;
                    if v < -1 {
                        return Err(invalid());
                    }
                    if name == "retention.ms" {
                        config.retention_ms = Some(v);
                    } else {
                        config.retention_bytes = Some(v);
                    }
                }
                _ => return Err(invalid()),
            }
        }
        Ok(config)
    }

    /// Whether the topic sets `key` itself (DescribeConfigs' source).
    pub fn is_set(&self, key: &str) -> bool {
        match key {
            "cleanup.policy" => self.cleanup_policy.is_some(),
            "max.message.bytes" => self.max_message_bytes.is_some(),
            "retention.bytes" => self.retention_bytes.is_some(),
            "retention.ms" => self.retention_ms.is_some(),
            "segment.bytes" => self.segment_bytes.is_some(),
            "segment.ms" => self.segment_ms.is_some(),
            _ => false,
        }
    }

    /// The overrides under Kafka's names, as the registry stores them.
    pub fn to_map(&self) -> BTreeMap<String, String> {
        let entries = [
            (
                "cleanup.policy",
                self.cleanup_policy.map(|p| p.name().to_string()),
            ),
            (
                "max.message.bytes",
                self.max_message_bytes.map(|v| v.to_string()),
            ),
            (
                "retention.bytes",
                self.retention_bytes.map(|v| v.to_string()),
            ),
            ("retention.ms", self.retention_ms.map(|v| v.to_string())),
            ("segment.bytes", self.segment_bytes.map(|v| v.to_string())),
            ("segment.ms", self.segment_ms.map(|v| v.to_string())),
        ];
        entries
            .into_iter()
            .filter_map(|(key, value)| value.map(|v| (key.to_string(), v)))
            .collect()
    }

    /// The log settings of the topic: `defaults` with these overrides.
    pub fn apply(&self, defaults: &LogConfig) -> LogConfig {
        let mut log = defaults.clone();
        if let Some(ms) = self.retention_ms {
            log.retention_ms = (ms >= 0).then_some(ms);
        }
        if let Some(bytes) = self.retention_bytes {
            log.retention_bytes = u64::try_from(bytes).ok();
        }
        if let Some(bytes) = self.segment_bytes {
            log.segment_bytes = bytes;
        }
        if let Some(ms) = self.segment_ms {
            log.segment_ms = ms;
        }
        if let Some(bytes) = self.max_message_bytes {
            log.max_message_bytes = bytes;
        }
        log
    }
}

pub type TopicId = [u8; 16];

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topic {
    pub name: String,
    pub id: TopicId,
    /// Owner shard of each partition.
    pub shards: Vec<ShardId>,
    /// Per-topic config overrides (Kafka's names), parsed and validated.
    pub configs: TopicConfig,
    /// In a cluster, each partition's place (from the metadata image); None when the broker
    /// runs alone and leads every partition.
    pub roles: Option<Arc<[Role]>>,
}

/// A partition's place in the cluster, as this broker sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Role {
    /// The leader's node id, -1 while the partition has none.
    pub leader: i32,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    /// A replica lives on this broker: its log is open here.
    pub local: bool,
    /// This broker leads it: it takes produce and fetch.
    pub led_here: bool,
}

impl Topic {
    /// Whether this broker serves produce, fetch and list-offsets for partition `index`; else
    /// the Kafka error that sends the client to the leader (NOT_LEADER_OR_FOLLOWER), or tells it
    /// there is none (LEADER_NOT_AVAILABLE).
    pub fn serves(&self, index: usize) -> Result<(), i16> {
        let Some(roles) = &self.roles else {
            return Ok(());
        };
        match roles.get(index) {
            Some(role) if role.led_here => Ok(()),
            Some(role) if role.leader < 0 => Err(crate::protocol::error_code::LEADER_NOT_AVAILABLE),
            Some(_) => Err(crate::protocol::error_code::NOT_LEADER_OR_FOLLOWER),
            None => Err(crate::protocol::error_code::UNKNOWN_TOPIC_OR_PARTITION),
        }
    }
}

impl Topic {
    /// Kafka's internal `__consumer_offsets`: served read-only from the group coordinators'
    /// offsets logs, never stored in the registry.
    pub fn is_internal(&self) -> bool {
        self.name == crate::group::offsets::CONSUMER_OFFSETS
    }

    /// The internal topic as a topic: partition `p` is offsets log `p`, owned by the shard that
    /// coordinates its groups.
    pub fn consumer_offsets(shards: usize) -> Topic {
        Topic {
            name: crate::group::offsets::CONSUMER_OFFSETS.to_string(),
            id: crate::group::offsets::CONSUMER_OFFSETS_ID,
            shards: (0..crate::group::offsets::PARTITIONS as usize)
                .map(|p| ShardId(p % shards))
                .collect(),
            // What the offsets logs are (group::Coordinator::open), for DescribeConfigs.
            configs: TopicConfig {
                cleanup_policy: Some(CleanupPolicy::Compact),
                retention_ms: Some(-1),
                segment_bytes: Some(64 << 20),
                ..TopicConfig::default()
            },
            roles: None,
        }
    }
}

/// Names Kafka reserves for its own internal topics, other than `__consumer_offsets` (which
/// exists here): no user topic may take them.
const RESERVED_NAMES: &[&str] = &[
    "__transaction_state",
    "__cluster_metadata",
    "__share_group_state",
    "__remote_log_metadata",
];

#[derive(Clone, Debug, Default)]
pub struct Registry {
    pub topics: BTreeMap<String, Arc<Topic>>,
}

impl Registry {
    pub fn get(&self, name: &str) -> Option<&Arc<Topic>> {
        self.topics.get(name)
    }

    pub fn by_id(&self, id: &TopicId) -> Option<&Arc<Topic>> {
        self.topics.values().find(|t| &t.id == id)
    }

    /// Partitions per shard over all topics.
    fn load(&self, shards: usize) -> Vec<usize> {
        let mut load = vec![0; shards];
        for topic in self.topics.values() {
            for &ShardId(shard) in &topic.shards {
                if shard < shards {
                    load[shard] += 1;
                }
            }
        }
        load
    }

    /// Assigns `count` new partitions to the least loaded shards.
    pub fn assign(&self, count: usize, shards: usize) -> Vec<ShardId> {
        let mut load = self.load(shards);
        (0..count)
            .map(|_| {
                let (shard, _) = load
                    .iter()
                    .enumerate()
                    .min_by_key(|&(i, n)| (*n, i))
                    .expect("at least one shard");
                load[shard] += 1;
                ShardId(shard)
            })
            .collect()
    }
}

/// Kafka's rules for topic names: 1-249 characters of `[a-zA-Z0-9._-]`, not `.` or `..`.
/// Why a topic name was refused (Kafka: INVALID_TOPIC_EXCEPTION, with this message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidTopicName {
    #[error("topic name must be 1 to 249 characters, got {len}")]
    Length { len: usize },
    #[error("topic names starting with {prefix:?} are reserved")]
    ReservedPrefix { prefix: &'static str },
    #[error("topic name {name:?} is reserved for an internal topic")]
    Reserved { name: String },
    #[error("topic name cannot be \".\" or \"..\"")]
    Dots,
    #[error("topic name {name:?} contains {bad:?}: only ASCII letters, digits, '.', '_' and '-' are allowed")]
    Character { name: String, bad: char },
}

pub fn validate_name(name: &str) -> Result<(), InvalidTopicName> {
    if name.is_empty() || name.len() > 249 {
        return Err(InvalidTopicName::Length { len: name.len() });
    }
    let prefix = crate::group::offsets::INTERNAL_PREFIX;
    if name.starts_with(prefix) {
        return Err(InvalidTopicName::ReservedPrefix { prefix });
    }
    if RESERVED_NAMES.contains(&name) {
        return Err(InvalidTopicName::Reserved { name: name.into() });
    }
    if name == "." || name == ".." {
        return Err(InvalidTopicName::Dots);
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(InvalidTopicName::Character {
            name: name.into(),
            bad,
        });
    }
    Ok(())
}

/// A new random topic id (a v4 UUID from the kernel).
pub fn new_topic_id() -> TopicId {
    crate::ids::random_id()
}

pub use crate::ids::{hex, parse_hex};

const HEADER: &str = "ringtail-topics 1";

pub fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    out.push_str(HEADER);
    out.push('\n');
    for topic in registry.topics.values() {
        let shards: Vec<String> = topic.shards.iter().map(ShardId::to_string).collect();
        let stored = topic.configs.to_map();
        let configs = if stored.is_empty() {
            "-".to_string()
        } else {
            stored
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(";")
        };
        out.push_str(&format!(
            "{} {} {} {}\n",
            topic.name,
            hex(&topic.id),
            shards.join(","),
            configs
        ));
    }
    let crc = crc32fast::hash(out.as_bytes());
    out.push_str(&format!("crc32 {crc:08x}\n"));
    out
}

/// Why the registry could not be loaded at start.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is damaged: {source}")]
    Damaged {
        path: PathBuf,
        source: RegistryError,
    },
}

/// Why `topics.meta` does not decode (the broker refuses to start rather than lose topics).
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("no checksum line")]
    NoChecksum,
    #[error("bad checksum line")]
    BadChecksumLine,
    #[error("checksum mismatch")]
    ChecksumMismatch,
    #[error("unknown header")]
    UnknownHeader,
    #[error("bad line {line:?}")]
    Line { line: String },
    #[error("bad {what} in {line:?}")]
    Field { what: &'static str, line: String },
    #[error("bad config in {line:?}: {source}")]
    Config {
        line: String,
        source: TopicConfigError,
    },
}

pub fn decode(text: &str) -> Result<Registry, RegistryError> {
    let body_end = text.rfind("crc32 ").ok_or(RegistryError::NoChecksum)?;
    let (body, crc_line) = text.split_at(body_end);
    let stored = u32::from_str_radix(crc_line.trim().trim_start_matches("crc32 "), 16)
        .map_err(|_| RegistryError::BadChecksumLine)?;
    if crc32fast::hash(body.as_bytes()) != stored {
        return Err(RegistryError::ChecksumMismatch);
    }
    let mut lines = body.lines();
    if lines.next() != Some(HEADER) {
        return Err(RegistryError::UnknownHeader);
    }
    let mut registry = Registry::default();
    for line in lines {
        let fields: Vec<&str> = line.split(' ').collect();
        let [name, id, shards, configs] = fields[..] else {
            return Err(RegistryError::Line { line: line.into() });
        };
        let bad = |what: &'static str| RegistryError::Field {
            what,
            line: line.into(),
        };
        let id = parse_hex(id).ok_or_else(|| bad("topic id"))?;
        let shards = shards
            .split(',')
            .map(|s| {
                s.parse::<usize>()
                    .map(ShardId)
                    .map_err(|_| bad("shard list"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut config_map = BTreeMap::new();
        if configs != "-" {
            for pair in configs.split(';') {
                let (k, v) = pair.split_once('=').ok_or_else(|| bad("config"))?;
                config_map.insert(k.to_string(), v.to_string());
            }
        }
        registry.topics.insert(
            name.to_string(),
            Arc::new(Topic {
                name: name.to_string(),
                id,
                shards,
                configs: TopicConfig::parse(&config_map).map_err(|source| {
                    RegistryError::Config {
                        line: line.into(),
                        source,
                    }
                })?,
                roles: None,
            }),
        );
    }
    Ok(registry)
}

/// The published registry, shared by all shards.
pub struct RegistryCell {
    path: PathBuf,
    current: Mutex<Arc<Registry>>,
    version: AtomicU64,
}

impl RegistryCell {
    /// Loads `<data_dir>/topics.meta` (an empty registry if there is none).
    pub fn load(data_dir: &Path) -> Result<RegistryCell, LoadError> {
        let path = data_dir.join("topics.meta");
        let mut registry = match std::fs::read_to_string(&path) {
            Ok(text) => decode(&text).map_err(|source| LoadError::Damaged {
                path: path.clone(),
                source,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Registry::default(),
            Err(source) => return Err(LoadError::Read { path, source }),
        };
        // Older brokers let Metadata auto-create an ordinary `__consumer_offsets`; the name is
        // the internal topic's now. Its directories, no longer owned, are set aside at start.
        if registry
            .topics
            .remove(crate::group::offsets::CONSUMER_OFFSETS)
            .is_some()
        {
            tracing::warn!(
                "topics.meta holds an ordinary topic named __consumer_offsets (auto-created by an \
                 older version): it is dropped, its directories set aside; the name now serves \
                 the groups' committed offsets"
            );
        }
        Ok(RegistryCell {
            path,
            current: Mutex::new(Arc::new(registry)),
            version: AtomicU64::new(1),
        })
    }

    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    pub fn snapshot(&self) -> Arc<Registry> {
        self.current.lock().expect("registry lock").clone()
    }

    /// Publishes `registry` without storing it: in a cluster the metadata log is the record,
    /// and this registry is derived from it. Called by the controller shard only.
    pub fn publish(&self, registry: Registry) {
        *self.current.lock().expect("registry lock") = Arc::new(registry);
        self.version.fetch_add(1, Ordering::AcqRel);
    }

    /// An empty registry that is never stored (a cluster member's: see `publish`).
    pub fn unstored(data_dir: &Path) -> RegistryCell {
        RegistryCell {
            path: data_dir.join("topics.meta"),
            current: Mutex::new(Arc::new(Registry::default())),
            version: AtomicU64::new(1),
        }
    }

    /// Persists `registry` durably, then publishes it. Called by the controller only.
    pub fn store(&self, registry: Registry) -> std::io::Result<()> {
        let text = encode(&registry);
        let tmp = self.path.with_extension("meta.tmp");
        {
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
        }
        std::fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        self.publish(registry);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_round_trips_and_detects_damage() {
        let mut registry = Registry::default();
        let configs = TopicConfig {
            retention_ms: Some(1000),
            ..TopicConfig::default()
        };
        for (name, shards) in [
            ("a", vec![ShardId(0), ShardId(1)]),
            ("b.c-d_e", vec![ShardId(1)]),
        ] {
            registry.topics.insert(
                name.into(),
                Arc::new(Topic {
                    name: name.into(),
                    id: new_topic_id(),
                    shards,
                    configs: configs.clone(),
                    roles: None,
                }),
            );
        }
        let text = encode(&registry);
        let back = decode(&text).expect("decode");
        assert_eq!(back.topics, registry.topics);
        let damaged = text.replacen("a ", "x ", 1);
        assert!(decode(&damaged).is_err());
        assert!(decode(&text[..text.len() - 3]).is_err());
    }

    #[test]
    fn names_follow_kafka_rules() {
        for good in ["a", "my-topic.v1_x", &"x".repeat(249)] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
        for bad in ["", ".", "..", "a b", "a/b", "ü", &"x".repeat(250)] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn assignment_balances_shards() {
        let registry = Registry::default();
        assert_eq!(registry.assign(5, 2), [0, 1, 0, 1, 0].map(ShardId).to_vec());
        assert_ne!(new_topic_id(), new_topic_id());
    }

    #[test]
    fn topic_configs_parse_validate_round_trip_and_apply() {
        let map = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let given = map(&[
            ("cleanup.policy", "delete"),
            ("retention.ms", "-1"),
            ("retention.bytes", "4096"),
            ("segment.bytes", "1048576"),
            ("segment.ms", "60000"),
            ("max.message.bytes", "2000"),
        ]);
        let config = TopicConfig::parse(&given).expect("valid");
        assert_eq!(config.to_map(), given, "stored as given");
        assert!(config.is_set("segment.ms") && !TopicConfig::default().is_set("segment.ms"));
        for key in TOPIC_CONFIG_NAMES {
            assert_eq!(
                config.is_set(key),
                config.to_map().contains_key(key),
                "{key}"
            );
            assert!(!TopicConfig::default().is_set(key), "{key}");
        }
        let log = config.apply(&LogConfig::default());
        assert_eq!(log.retention_ms, None, "-1: no limit");
        assert_eq!(log.retention_bytes, Some(4096));
        assert_eq!((log.segment_bytes, log.segment_ms), (1 << 20, 60_000));
        assert_eq!(log.max_message_bytes, 2000);
        let untouched = TopicConfig::default().apply(&LogConfig::default());
        assert_eq!(untouched.segment_bytes, LogConfig::default().segment_bytes);
        for (key, value) in [
            ("cleanup.policy", "compact"),
            ("segment.bytes", "100"),
            ("segment.bytes", "x"),
            ("segment.ms", "0"),
            ("retention.ms", "-2"),
            ("max.message.bytes", "10"),
        ] {
            assert_eq!(
                TopicConfig::parse(&map(&[(key, value)])),
                Err(TopicConfigError::Invalid {
                    key: TOPIC_CONFIG_NAMES
                        .iter()
                        .find(|n| **n == key)
                        .expect("known"),
                    value: value.into()
                }),
                "{key}={value}"
            );
        }
        assert!(matches!(
            TopicConfig::parse(&map(&[("compression.type", "lz4")])),
            Err(TopicConfigError::Unknown { .. })
        ));
    }
}
