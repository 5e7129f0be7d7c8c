//! Per-partition settings, with Kafka's names and defaults.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// When the log calls fdatasync, and so what an acknowledgement promises.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum FsyncPolicy {
    /// Never on the write path (only when a segment is sealed and at shutdown). An acknowledged
    /// write is in the page cache: it survives kill -9 of the broker, not power loss.
    Never,
    /// The default. A produce with acks=all waits for an fdatasync covering its batch; one
    /// fdatasync serves every waiter of a tick (group commit). acks=1 waits for the page cache.
    #[default]
    AcksAll,
    /// fdatasync after every write, and every acknowledgement waits for it.
    Always,
    /// fdatasync every interval; acknowledgements wait for the page cache only.
    Interval(Duration),
}

impl FsyncPolicy {
    /// Whether an acknowledgement for a produce with this acks setting must wait for fdatasync.
    pub fn ack_waits_for_sync(self, acks_all: bool) -> bool {
        match self {
            FsyncPolicy::Never | FsyncPolicy::Interval(_) => false,
            FsyncPolicy::AcksAll => acks_all,
            FsyncPolicy::Always => true,
        }
    }
}

impl fmt::Display for FsyncPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FsyncPolicy::Never => f.write_str("never"),
            FsyncPolicy::AcksAll => f.write_str("acks-all"),
            FsyncPolicy::Always => f.write_str("always"),
            FsyncPolicy::Interval(every) => write!(f, "interval:{}", every.as_millis()),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid fsync policy {given:?}: expected never, acks-all, always or interval:MS (MS > 0)")]
pub struct ParsePolicyError {
    pub given: String,
}

impl FromStr for FsyncPolicy {
    type Err = ParsePolicyError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = || ParsePolicyError {
            given: text.to_string(),
        };
        match text {
            "never" => Ok(FsyncPolicy::Never),
            "acks-all" => Ok(FsyncPolicy::AcksAll),
            "always" => Ok(FsyncPolicy::Always),
            _ => {
                let ms = text.strip_prefix("interval:").ok_or_else(error)?;
                let ms: u64 = ms.parse().map_err(|_| error())?;
                if ms == 0 {
                    return Err(error());
                }
                Ok(FsyncPolicy::Interval(Duration::from_millis(ms)))
            }
        }
    }
}

/// Settings of one partition log. Defaults are Kafka's.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LogConfig {
    /// `segment.bytes`: roll the active segment before it would grow past this.
    pub segment_bytes: u64,
    /// `segment.ms`: roll the active segment once its first batch is this old.
    pub segment_ms: i64,
    /// `retention.ms`: delete sealed segments whose newest timestamp is older; None keeps all.
    pub retention_ms: Option<i64>,
    /// `retention.bytes`: delete the oldest sealed segments while the log is larger; None: no limit.
    pub retention_bytes: Option<u64>,
    /// `max.message.bytes`: the largest batch accepted.
    pub max_message_bytes: usize,
    /// `index.interval.bytes`: bytes of log between two sparse index entries.
    pub index_interval_bytes: u32,
    /// `--fsync`.
    pub fsync: FsyncPolicy,
    /// How often the recovery checkpoint is rewritten when fdatasync has moved it forward.
    pub checkpoint_interval_ms: u64,
    /// `producer.id.expiration.ms`: forget idempotent producers idle this long.
    pub producer_id_expiration_ms: i64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 3600 * 1000,
            retention_ms: Some(7 * 24 * 3600 * 1000),
            retention_bytes: None,
            max_message_bytes: 1_048_588,
            index_interval_bytes: 4096,
            fsync: FsyncPolicy::AcksAll,
            checkpoint_interval_ms: 1000,
            producer_id_expiration_ms: 86_400_000,
        }
    }
}

/// A log setting out of its range.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidConfig {
    #[error("segment.bytes must be between 1 KiB and 2 GiB, got {0}")]
    SegmentBytes(u64),
}

impl LogConfig {
    /// Checks the settings the log's format depends on (a segment's positions are 32-bit).
    pub fn check(&self) -> Result<(), InvalidConfig> {
        if !(1024..=i32::MAX as u64).contains(&self.segment_bytes) {
            return Err(InvalidConfig::SegmentBytes(self.segment_bytes));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_parse_and_print() {
        for text in ["never", "acks-all", "always", "interval:250"] {
            let policy: FsyncPolicy = text.parse().expect("valid");
            assert_eq!(policy.to_string(), text);
        }
        for bad in [
            "",
            "sometimes",
            "interval:",
            "interval:0",
            "interval:-5",
            "interval:x",
        ] {
            assert!(bad.parse::<FsyncPolicy>().is_err(), "{bad} accepted");
        }
    }
}
