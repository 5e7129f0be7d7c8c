//! Sparse indexes of one segment, kept in memory and written as Kafka's `.index` and
//! `.timeindex` files when the segment is sealed and at clean shutdown.
//!
//! Owned by the partition's shard. File formats (big-endian, as Kafka's):
//! - `.index`: 8-byte entries `(relative offset u32, position u32)`.
//! - `.timeindex`: 12-byte entries `(timestamp i64, relative offset u32)`.
//!
//! Invariants: offsets and positions strictly increase in `.index`; timestamps strictly
//! increase and offsets never decrease in `.timeindex`. An index entry names the base offset
//! and position of a batch.

/// One offset-index entry: a batch starting at `position` has base offset `base + relative`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OffsetEntry {
    pub relative_offset: u32,
    pub position: u32,
}

/// One time-index entry: every batch before the one at `base + relative` has a max timestamp of
/// at most `timestamp`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeEntry {
    pub timestamp: i64,
    pub relative_offset: u32,
}

pub const OFFSET_ENTRY_LEN: usize = 8;
pub const TIME_ENTRY_LEN: usize = 12;

#[derive(Clone, Debug, Default)]
pub struct OffsetIndex {
    entries: Vec<OffsetEntry>,
}

impl OffsetIndex {
    pub fn push(&mut self, entry: OffsetEntry) {
        if let Some(last) = self.entries.last() {
            assert!(
                entry.relative_offset > last.relative_offset && entry.position > last.position,
                "offset index must strictly increase: {last:?} then {entry:?}"
            );
        }
        self.entries.push(entry);
    }

    pub fn last(&self) -> Option<OffsetEntry> {
        self.entries.last().copied()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The last entry whose offset is at most `relative_offset`.
    pub fn floor_offset(&self, relative_offset: u32) -> Option<OffsetEntry> {
        let at = self
            .entries
            .partition_point(|e| e.relative_offset <= relative_offset);
        at.checked_sub(1).map(|i| self.entries[i])
    }

    /// The last entry whose position is at most `position`.
    pub fn floor_position(&self, position: u32) -> Option<OffsetEntry> {
        let at = self.entries.partition_point(|e| e.position <= position);
        at.checked_sub(1).map(|i| self.entries[i])
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * OFFSET_ENTRY_LEN);
        for entry in &self.entries {
            out.extend_from_slice(&entry.relative_offset.to_be_bytes());
            out.extend_from_slice(&entry.position.to_be_bytes());
        }
        out
    }

    /// Parses an index file, checking its shape against the log it indexes: entries strictly
    /// increase and every position lies inside the log. `None` means "rebuild it".
    pub fn from_bytes(bytes: &[u8], log_len: u64) -> Option<OffsetIndex> {
        if !bytes.len().is_multiple_of(OFFSET_ENTRY_LEN) {
            return None;
        }
        let mut index = OffsetIndex::default();
        for chunk in bytes.chunks_exact(OFFSET_ENTRY_LEN) {
            let entry = OffsetEntry {
                relative_offset: u32::from_be_bytes(chunk[0..4].try_into().ok()?),
                position: u32::from_be_bytes(chunk[4..8].try_into().ok()?),
            };
            if u64::from(entry.position) >= log_len {
                return None;
            }
            if let Some(last) = index.entries.last() {
                if entry.relative_offset <= last.relative_offset || entry.position <= last.position
                {
                    return None;
                }
            }
            index.entries.push(entry);
        }
        Some(index)
    }
}

#[derive(Clone, Debug, Default)]
pub struct TimeIndex {
    entries: Vec<TimeEntry>,
}

impl TimeIndex {
    /// Adds an entry if `timestamp` is newer than the last one.
    pub fn maybe_push(&mut self, entry: TimeEntry) {
        match self.entries.last() {
            Some(last) if entry.timestamp <= last.timestamp => {}
            Some(last) => {
                assert!(entry.relative_offset >= last.relative_offset);
                self.entries.push(entry);
            }
            None => self.entries.push(entry),
        }
    }

    pub fn last(&self) -> Option<TimeEntry> {
        self.entries.last().copied()
    }

    /// The last entry whose timestamp is strictly below `timestamp`: every batch before the
    /// entry's offset is older than `timestamp`, so a search may start there.
    pub fn floor_below(&self, timestamp: i64) -> Option<TimeEntry> {
        let at = self.entries.partition_point(|e| e.timestamp < timestamp);
        at.checked_sub(1).map(|i| self.entries[i])
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * TIME_ENTRY_LEN);
        for entry in &self.entries {
            out.extend_from_slice(&entry.timestamp.to_be_bytes());
            out.extend_from_slice(&entry.relative_offset.to_be_bytes());
        }
        out
    }

    /// Parses a time-index file; `None` means "rebuild it". `max_relative_offset` bounds the
    /// offsets it may name.
    pub fn from_bytes(bytes: &[u8], max_relative_offset: u32) -> Option<TimeIndex> {
        if !bytes.len().is_multiple_of(TIME_ENTRY_LEN) {
            return None;
        }
        let mut index = TimeIndex::default();
        for chunk in bytes.chunks_exact(TIME_ENTRY_LEN) {
            let entry = TimeEntry {
                timestamp: i64::from_be_bytes(chunk[0..8].try_into().ok()?),
                relative_offset: u32::from_be_bytes(chunk[8..12].try_into().ok()?),
            };
            if entry.relative_offset > max_relative_offset {
                return None;
            }
            if let Some(last) = index.entries.last() {
                if entry.timestamp <= last.timestamp || entry.relative_offset < last.relative_offset
                {
                    return None;
                }
            }
            index.entries.push(entry);
        }
        Some(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offset_index(pairs: &[(u32, u32)]) -> OffsetIndex {
        let mut index = OffsetIndex::default();
        for &(relative_offset, position) in pairs {
            index.push(OffsetEntry {
                relative_offset,
                position,
            });
        }
        index
    }

    #[test]
    fn floor_lookups() {
        let index = offset_index(&[(0, 0), (10, 4100), (25, 8300)]);
        assert_eq!(index.floor_offset(0).map(|e| e.position), Some(0));
        assert_eq!(index.floor_offset(9).map(|e| e.position), Some(0));
        assert_eq!(index.floor_offset(10).map(|e| e.position), Some(4100));
        assert_eq!(index.floor_offset(1000).map(|e| e.position), Some(8300));
        assert_eq!(
            index.floor_position(8299).map(|e| e.relative_offset),
            Some(10)
        );
        assert!(OffsetIndex::default().floor_offset(5).is_none());
    }

    #[test]
    fn offset_index_round_trips_and_rejects_damage() {
        let index = offset_index(&[(0, 0), (10, 4100), (25, 8300)]);
        let bytes = index.to_bytes();
        let back = OffsetIndex::from_bytes(&bytes, 9000).expect("valid");
        assert_eq!(back.entries, index.entries);
        assert!(OffsetIndex::from_bytes(&bytes[..bytes.len() - 1], 9000).is_none());
        assert!(
            OffsetIndex::from_bytes(&bytes, 8300).is_none(),
            "position past the log"
        );
        let mut zeroed = bytes.clone();
        zeroed[16..24].fill(0);
        assert!(OffsetIndex::from_bytes(&zeroed, 9000).is_none());
    }

    #[test]
    fn time_index_keeps_only_newer_timestamps() {
        let mut index = TimeIndex::default();
        for (timestamp, relative_offset) in [(100, 0), (90, 3), (150, 5), (150, 9), (200, 12)] {
            index.maybe_push(TimeEntry {
                timestamp,
                relative_offset,
            });
        }
        assert_eq!(index.entries.len(), 3);
        assert_eq!(index.floor_below(150).map(|e| e.relative_offset), Some(0));
        assert_eq!(index.floor_below(151).map(|e| e.relative_offset), Some(5));
        assert!(index.floor_below(100).is_none());
        let back = TimeIndex::from_bytes(&index.to_bytes(), 12).expect("valid");
        assert_eq!(back.entries, index.entries);
        assert!(TimeIndex::from_bytes(&index.to_bytes(), 11).is_none());
    }
}
