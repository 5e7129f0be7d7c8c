//! One segment of a partition log: a `.log` file of record batches named by its base offset,
//! with its sparse offset and time indexes.
//!
//! Owned by the partition's shard. The file itself is shared (`Arc<SegmentFile>`) with reads in
//! flight, including ones handed to other shards for splicing: a segment deleted by retention is
//! unlinked at once, and its descriptor closes when the last reader drops it.
//!
//! Invariants: `written_size <= size`; batches are appended at `size` and never rewritten; a
//! segment's first batch has the segment's base offset; offsets in a segment are contiguous.

pub mod cursor;
pub mod index;
pub mod recovery;

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::format::batch::BatchHeader;
use crate::offset::{FilePos, Offset};
use crate::storage::{DiskFile, OpenMode, Storage};
use index::{OffsetEntry, OffsetIndex, TimeEntry, TimeIndex};

/// `<20-digit base offset>.<extension>`, as Kafka names segment files.
pub fn file_name(base_offset: Offset, extension: &str) -> String {
    format!("{:020}.{extension}", base_offset.get())
}

/// The base offset a segment file name encodes, if it is one of ours with this extension.
pub fn parse_file_name(name: &str, extension: &str) -> Option<Offset> {
    let stem = name.strip_suffix(extension)?.strip_suffix('.')?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok().map(Offset)
}

/// An open `.log` file. Holds the file open for as long as any reader holds it.
#[derive(Debug)]
pub struct SegmentFile {
    file: Arc<dyn DiskFile>,
    base_offset: Offset,
}

impl SegmentFile {
    pub fn path(&self) -> &Path {
        self.file.path()
    }

    pub fn base_offset(&self) -> Offset {
        self.base_offset
    }

    /// The storage's handle, for reads, writes and fdatasyncs through it.
    pub fn disk_file(&self) -> &Arc<dyn DiskFile> {
        &self.file
    }
}

/// For splicing a range of the file to a socket. Only the broker splices, and its partitions
/// are always on `OsStorage`, whose files all have a descriptor.
impl AsRawFd for SegmentFile {
    fn as_raw_fd(&self) -> RawFd {
        self.file
            .raw_fd()
            .expect("spliced segment files are on the kernel's file system")
    }
}

pub struct Segment {
    pub base_offset: Offset,
    pub file: Arc<SegmentFile>,
    /// Bytes appended, including those still queued for writing.
    pub size: FilePos,
    /// Bytes known to be in the file (their write completed).
    pub written_size: FilePos,
    /// The offset after the last appended batch.
    pub next_offset: Offset,
    pub index: OffsetIndex,
    pub time_index: TimeIndex,
    /// Newest batch timestamp seen in the segment (-1 when empty).
    pub max_timestamp: i64,
    /// When the segment started, for `segment.ms`: its first batch's timestamp, or the wall
    /// clock when that was not set.
    pub rolling_base_ms: Option<i64>,
    last_indexed_position: Option<FilePos>,
}

impl Segment {
    pub fn log_path(dir: &Path, base_offset: Offset) -> PathBuf {
        dir.join(file_name(base_offset, "log"))
    }

    pub fn index_path(dir: &Path, base_offset: Offset) -> PathBuf {
        dir.join(file_name(base_offset, "index"))
    }

    pub fn time_index_path(dir: &Path, base_offset: Offset) -> PathBuf {
        dir.join(file_name(base_offset, "timeindex"))
    }

    /// The three files of the segment at `base_offset`: log, offset index, time index.
    pub fn paths(dir: &Path, base_offset: Offset) -> [PathBuf; 3] {
        [
            Segment::log_path(dir, base_offset),
            Segment::index_path(dir, base_offset),
            Segment::time_index_path(dir, base_offset),
        ]
    }

    /// Creates an empty segment file; fails if one exists.
    pub fn create(storage: &dyn Storage, dir: &Path, base_offset: Offset) -> io::Result<Segment> {
        let path = Segment::log_path(dir, base_offset);
        let file = storage.open(&path, OpenMode::CreateNew)?;
        Ok(Segment::with_file(file, base_offset, FilePos::ZERO))
    }

    /// Opens an existing segment file; its indexes start empty (load or rebuild them next).
    pub fn open(storage: &dyn Storage, dir: &Path, base_offset: Offset) -> io::Result<Segment> {
        let path = Segment::log_path(dir, base_offset);
        let file = storage.open(&path, OpenMode::Existing)?;
        let len = storage.len(&*file)?;
        Ok(Segment::with_file(file, base_offset, FilePos(len)))
    }

    fn with_file(file: Arc<dyn DiskFile>, base_offset: Offset, len: FilePos) -> Segment {
        Segment {
            base_offset,
            file: Arc::new(SegmentFile { file, base_offset }),
            size: len,
            written_size: len,
            next_offset: base_offset,
            index: OffsetIndex::default(),
            time_index: TimeIndex::default(),
            max_timestamp: -1,
            rolling_base_ms: None,
            last_indexed_position: None,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.size == FilePos::ZERO
    }

    /// Offset relative to the segment's base, as the index files store it.
    pub fn relative(&self, offset: Offset) -> u32 {
        let relative = offset.since(self.base_offset);
        assert!(
            (0..=i64::from(u32::MAX)).contains(&relative),
            "offset {offset} outside segment {}",
            self.base_offset
        );
        relative as u32
    }

    /// Records a batch placed at `position`: advances offsets and timestamps and adds sparse
    /// index entries every `interval_bytes`.
    pub fn record(
        &mut self,
        header: &BatchHeader,
        position: FilePos,
        interval_bytes: u32,
        now_ms: i64,
    ) {
        assert_eq!(
            Offset(header.base_offset),
            self.next_offset,
            "offsets must be contiguous"
        );
        let due = match self.last_indexed_position {
            None => true,
            Some(last) => position.since(last) >= u64::from(interval_bytes),
        };
        self.max_timestamp = self.max_timestamp.max(header.max_timestamp);
        if due {
            let relative_offset = self.relative(Offset(header.base_offset));
            let position32 = u32::try_from(position.get()).expect("segments stay below 4 GiB");
            self.index.push(OffsetEntry {
                relative_offset,
                position: position32,
            });
            self.time_index.maybe_push(TimeEntry {
                timestamp: self.max_timestamp,
                relative_offset,
            });
            self.last_indexed_position = Some(position);
        }
        if self.rolling_base_ms.is_none() {
            self.rolling_base_ms = Some(if header.max_timestamp >= 0 {
                header.max_timestamp
            } else {
                now_ms
            });
        }
        self.next_offset = Offset(header.next_offset());
        self.size = position.plus(header.size as u64);
    }

    /// Adopts loaded index files, after which `record` continues from the log's end.
    pub fn adopt_indexes(&mut self, index: OffsetIndex, time_index: TimeIndex) {
        self.last_indexed_position = index.last().map(|e| FilePos(u64::from(e.position)));
        if let Some(last) = time_index.last() {
            self.max_timestamp = self.max_timestamp.max(last.timestamp);
        }
        self.index = index;
        self.time_index = time_index;
    }

    /// Forgets everything recorded, before a rebuild by scanning.
    pub fn reset_indexes(&mut self) {
        self.index = OffsetIndex::default();
        self.time_index = TimeIndex::default();
        self.last_indexed_position = None;
        self.next_offset = self.base_offset;
        self.max_timestamp = -1;
        self.rolling_base_ms = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_round_trip() {
        assert_eq!(file_name(Offset(42), "log"), "00000000000000000042.log");
        assert_eq!(
            parse_file_name("00000000000000000042.log", "log"),
            Some(Offset(42))
        );
        assert_eq!(parse_file_name("00000000000000000042.index", "log"), None);
        assert_eq!(parse_file_name("0000000000000000042.log", "log"), None);
        assert_eq!(parse_file_name("0000000000000000004x.log", "log"), None);
    }
}
