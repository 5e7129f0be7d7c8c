//! The controller quorum's durable storage for openraft: the Raft log, the vote, and the state
//! machine's snapshots, in `<data-dir>/__cluster_metadata-0/`.
//!
//! Files (all written by the controller thread; blocking file calls are fine there, it is the
//! control plane):
//! - `raft.log`: frames of `[u32 length][u32 CRC-32 of the payload][payload]`, big-endian; the
//!   payload is a JSON [`Frame`]: an entry, or a purge mark. An append writes its frames and
//!   fdatasyncs before openraft is told the entries are flushed. A truncation (a new leader
//!   overwrote an uncommitted suffix) cuts the file at the first dropped entry and fdatasyncs.
//!   Once purged entries make up most of the file it is rewritten without them (temporary
//!   file, fdatasync, rename, directory fsync).
//! - `raft.vote`: the last vote, as one CRC-checked frame (temporary file, fdatasync, rename,
//!   directory fsync: a vote must be durable before it is answered).
//! - `raft.snapshot`: the last snapshot, one CRC-checked frame of [`SnapshotFile`]: its meta
//!   and the image as records (`MetadataImage::to_records`).
//!
//! Recovery: frames are read in order; the first short or CRC-failing frame ends the log and
//! the file is cut there. Only an append whose fdatasync did not complete can leave one (its
//! entries were never reported flushed, so no vote or acknowledgement depended on them).
//! The state machine is not persisted between snapshots: at start it is the last snapshot, and
//! openraft applies the committed entries after it again.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Cursor, Read, Write};
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use openraft::storage::{LogFlushed, RaftLogStorage, RaftStateMachine};
use openraft::{
    BasicNode, Entry, EntryPayload, LogId, LogState, RaftLogReader, RaftSnapshotBuilder, Snapshot,
    SnapshotMeta, StorageError, StorageIOError, StoredMembership, Vote,
};
use serde::{Deserialize, Serialize};

use super::metadata::{MetadataImage, MetadataRecord, NodeId};

openraft::declare_raft_types!(
    /// The metadata quorum's types: entries carry [`MetadataRecord`]s; applying one answers
    /// whether it changed the image (`Err` names why it did not).
    pub TypeConfig:
        D = MetadataRecord,
        R = Result<(), String>,
        NodeId = NodeId,
        Node = BasicNode,
);

pub type RaftEntry = Entry<TypeConfig>;
type StoreResult<T> = Result<T, StorageError<NodeId>>;

pub const DIR: &str = "__cluster_metadata-0";
const LOG_FILE: &str = "raft.log";
const VOTE_FILE: &str = "raft.vote";
const SNAPSHOT_FILE: &str = "raft.snapshot";
/// Frames larger than this are damage, not data (metadata records are small).
const FRAME_MAX: u32 = 64 << 20;

#[derive(Serialize, Deserialize)]
enum Frame {
    Entry(RaftEntry),
    /// Entries up to and including this one are purged (in a snapshot).
    Purged(LogId<NodeId>),
}

#[derive(Serialize, Deserialize)]
struct SnapshotFile {
    meta: SnapshotMeta<NodeId, BasicNode>,
    records: Vec<MetadataRecord>,
}

fn encode_frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// The payload of the frame at the start of `bytes`, and the frame's length; None if the
/// frame is short or damaged.
fn decode_frame(bytes: &[u8]) -> Option<(&[u8], usize)> {
    let len = u32::from_be_bytes(bytes.get(0..4)?.try_into().ok()?);
    let crc = u32::from_be_bytes(bytes.get(4..8)?.try_into().ok()?);
    if len > FRAME_MAX {
        return None;
    }
    let payload = bytes.get(8..8 + len as usize)?;
    (crc32fast::hash(payload) == crc).then_some((payload, 8 + len as usize))
}

fn json<T: Serialize>(value: &T) -> io::Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(io::Error::other)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Replaces `path` with one frame of `payload`, durably.
fn write_frame_file(path: &Path, payload: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut file = File::create(&tmp)?;
        file.write_all(&encode_frame(payload))?;
        file.sync_data()?;
    }
    fs::rename(&tmp, path)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// The payload of a one-frame file, None if it does not exist; damage is an error.
fn read_frame_file(path: &Path) -> io::Result<Option<Vec<u8>>> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    match decode_frame(&bytes) {
        Some((payload, _)) => Ok(Some(payload.to_vec())),
        None => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is damaged", path.display()),
        )),
    }
}

struct LogInner {
    dir: PathBuf,
    file: File,
    /// Bytes of `raft.log` holding whole frames.
    len: u64,
    entries: BTreeMap<u64, RaftEntry>,
    /// Where each entry's frame starts, for truncation.
    positions: BTreeMap<u64, u64>,
    last_purged: Option<LogId<NodeId>>,
    /// Bytes of frames of purged entries still in the file.
    purged_bytes: u64,
    vote: Option<Vote<NodeId>>,
}

/// The Raft log and vote. Cloning shares it (the clone is openraft's log reader).
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Mutex<LogInner>>,
}

fn io_err(e: io::Error) -> StorageError<NodeId> {
    StorageIOError::write_logs(&e).into()
}

impl LogStore {
    /// Opens (or creates) the log in `dir`, recovering as described in the module comment.
    pub fn open(dir: &Path) -> io::Result<LogStore> {
        fs::create_dir_all(dir)?;
        let path = dir.join(LOG_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let mut at = 0usize;
        let mut entries = BTreeMap::new();
        let mut positions = BTreeMap::new();
        let mut last_purged = None;
        while at < bytes.len() {
            let Some((payload, frame_len)) = decode_frame(&bytes[at..]) else {
                break;
            };
            let frame: Frame = match serde_json::from_slice(payload) {
                Ok(frame) => frame,
                Err(_) => break,
            };
            match frame {
                Frame::Entry(entry) => {
                    let index = entry.log_id.index;
                    // A frame for an index already present follows a truncation that a crash
                    // kept from being cut: the later frame wins, and what followed goes.
                    entries.split_off(&index);
                    positions.split_off(&index);
                    positions.insert(index, at as u64);
                    entries.insert(index, entry);
                }
                Frame::Purged(log_id) => {
                    entries = entries.split_off(&(log_id.index + 1));
                    last_purged = Some(log_id);
                }
            }
            at += frame_len;
        }
        if at < bytes.len() {
            tracing::warn!(
                file = %path.display(),
                position = at,
                dropped = bytes.len() - at,
                "metadata log: torn tail cut (an append whose fdatasync did not complete)"
            );
            file.set_len(at as u64)?;
            file.sync_data()?;
        }
        positions = positions.split_off(entries.keys().next().unwrap_or(&u64::MAX));
        let first_kept = positions.values().next().copied().unwrap_or(at as u64);
        let vote = match read_frame_file(&dir.join(VOTE_FILE))? {
            Some(payload) => Some(serde_json::from_slice(&payload).map_err(io::Error::other)?),
            None => None,
        };
        Ok(LogStore {
            inner: Arc::new(Mutex::new(LogInner {
                dir: dir.to_path_buf(),
                file,
                len: at as u64,
                entries,
                positions,
                last_purged,
                purged_bytes: first_kept,
                vote,
            })),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LogInner> {
        self.inner.lock().expect("metadata log lock")
    }

    /// Writes the entries' frames and fdatasyncs them; they are readable once it returns Ok.
    pub fn append_durably(&self, entries: impl IntoIterator<Item = RaftEntry>) -> io::Result<()> {
        let mut inner = self.lock();
        let mut frames = Vec::new();
        let mut at = inner.len;
        let mut added = Vec::new();
        for entry in entries {
            let frame = encode_frame(&json(&Frame::Entry(entry.clone()))?);
            added.push((entry, at));
            at += frame.len() as u64;
            frames.push(frame);
        }
        inner.write_frames(&frames)?;
        for (entry, position) in added {
            inner.positions.insert(entry.log_id.index, position);
            inner.entries.insert(entry.log_id.index, entry);
        }
        Ok(())
    }
}

impl LogInner {
    fn write_frames(&mut self, frames: &[Vec<u8>]) -> io::Result<()> {
        let bytes: Vec<u8> = frames.concat();
        self.file.write_all(&bytes)?;
        self.file.sync_data()?;
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// Rewrites the file with only the live entries (after a purge left most of it dead).
    fn compact(&mut self) -> io::Result<()> {
        let path = self.dir.join(LOG_FILE);
        let tmp = self.dir.join("raft.log.tmp");
        let mut frames = Vec::new();
        if let Some(purged) = self.last_purged {
            frames.push(encode_frame(&json(&Frame::Purged(purged))?));
        }
        let mut positions = BTreeMap::new();
        let mut at: u64 = frames.iter().map(|f| f.len() as u64).sum();
        for (index, entry) in &self.entries {
            let frame = encode_frame(&json(&Frame::Entry(entry.clone()))?);
            positions.insert(*index, at);
            at += frame.len() as u64;
            frames.push(frame);
        }
        {
            let mut file = File::create(&tmp)?;
            file.write_all(&frames.concat())?;
            file.sync_data()?;
        }
        fs::rename(&tmp, &path)?;
        sync_dir(&self.dir)?;
        self.file = OpenOptions::new().read(true).append(true).open(&path)?;
        self.len = at;
        self.positions = positions;
        self.purged_bytes = 0;
        Ok(())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> StoreResult<Vec<RaftEntry>> {
        let inner = self.lock();
        let start = match range.start_bound() {
            Bound::Included(&s) => Bound::Included(s),
            Bound::Excluded(&s) => Bound::Excluded(s),
            Bound::Unbounded => Bound::Unbounded,
        };
        let end = match range.end_bound() {
            Bound::Included(&e) => Bound::Included(e),
            Bound::Excluded(&e) => Bound::Excluded(e),
            Bound::Unbounded => Bound::Unbounded,
        };
        Ok(inner
            .entries
            .range((start, end))
            .map(|(_, e)| e.clone())
            .collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> StoreResult<LogState<TypeConfig>> {
        let inner = self.lock();
        let last = inner
            .entries
            .values()
            .next_back()
            .map(|e| e.log_id)
            .or(inner.last_purged);
        Ok(LogState {
            last_purged_log_id: inner.last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> StoreResult<()> {
        let mut inner = self.lock();
        let payload = json(vote).map_err(|e| StorageIOError::write_vote(&e))?;
        write_frame_file(&inner.dir.join(VOTE_FILE), &payload)
            .map_err(|e| StorageIOError::write_vote(&e))?;
        inner.vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> StoreResult<Option<Vote<NodeId>>> {
        Ok(self.lock().vote)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> StoreResult<()>
    where
        I: IntoIterator<Item = RaftEntry> + Send,
        I::IntoIter: Send,
    {
        let result = self.append_durably(entries);
        let report = result
            .as_ref()
            .map(|_| ())
            .map_err(|e| io::Error::new(e.kind(), e.to_string()));
        callback.log_io_completed(report);
        result.map_err(io_err)
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> StoreResult<()> {
        let mut inner = self.lock();
        let Some(&position) = inner.positions.get(&log_id.index) else {
            return Ok(()); // nothing at or after it
        };
        inner.file.set_len(position).map_err(io_err)?;
        inner.file.sync_data().map_err(io_err)?;
        inner.len = position;
        inner.entries.split_off(&log_id.index);
        inner.positions.split_off(&log_id.index);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> StoreResult<()> {
        let mut inner = self.lock();
        let frame = encode_frame(&json(&Frame::Purged(log_id)).map_err(io_err)?);
        inner.write_frames(&[frame]).map_err(io_err)?;
        let kept = inner.entries.split_off(&(log_id.index + 1));
        inner.entries = kept;
        let kept = inner.positions.split_off(&(log_id.index + 1));
        inner.positions = kept;
        inner.last_purged = Some(log_id);
        inner.purged_bytes = inner
            .positions
            .values()
            .next()
            .copied()
            .unwrap_or(inner.len);
        if inner.purged_bytes > 1 << 20 && inner.purged_bytes * 2 > inner.len {
            inner.compact().map_err(io_err)?;
        }
        Ok(())
    }
}

/// The state machine: the metadata image, as of the last applied entry.
#[derive(Clone)]
pub struct StateMachine {
    inner: Arc<Mutex<SmInner>>,
    /// Called with each image after entries were applied (the broker publishes it to its
    /// shards).
    on_apply: Arc<dyn Fn(&MetadataImage) + Send + Sync>,
}

struct SmInner {
    dir: PathBuf,
    image: MetadataImage,
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, BasicNode>,
    snapshot: Option<(SnapshotMeta<NodeId, BasicNode>, Vec<u8>)>,
    snapshots_built: u64,
}

impl StateMachine {
    /// Loads the last snapshot in `dir`, if any: the image as of it.
    pub fn open(
        dir: &Path,
        on_apply: Arc<dyn Fn(&MetadataImage) + Send + Sync>,
    ) -> io::Result<StateMachine> {
        fs::create_dir_all(dir)?;
        let mut inner = SmInner {
            dir: dir.to_path_buf(),
            image: MetadataImage::default(),
            last_applied: None,
            membership: StoredMembership::default(),
            snapshot: None,
            snapshots_built: 0,
        };
        if let Some(payload) = read_frame_file(&dir.join(SNAPSHOT_FILE))? {
            let file: SnapshotFile = serde_json::from_slice(&payload).map_err(io::Error::other)?;
            inner.install(&file)?;
            inner.snapshot = Some((file.meta, payload));
        }
        Ok(StateMachine {
            inner: Arc::new(Mutex::new(inner)),
            on_apply,
        })
    }

    /// The image as of the last applied entry.
    pub fn image(&self) -> MetadataImage {
        self.lock().image.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SmInner> {
        self.inner.lock().expect("state machine lock")
    }
}

impl SmInner {
    fn install(&mut self, file: &SnapshotFile) -> io::Result<()> {
        let mut image = MetadataImage::default();
        for record in &file.records {
            image.apply(record).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("metadata snapshot does not apply: {e}"),
                )
            })?;
        }
        self.image = image;
        self.last_applied = file.meta.last_log_id;
        self.membership = file.meta.last_membership.clone();
        Ok(())
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> StoreResult<Snapshot<TypeConfig>> {
        let mut inner = self.lock();
        inner.snapshots_built += 1;
        let id = match inner.last_applied {
            Some(l) => format!("{}-{}-{}", l.leader_id, l.index, inner.snapshots_built),
            None => format!("none-{}", inner.snapshots_built),
        };
        let meta = SnapshotMeta {
            last_log_id: inner.last_applied,
            last_membership: inner.membership.clone(),
            snapshot_id: id,
        };
        let file = SnapshotFile {
            meta: meta.clone(),
            records: inner.image.to_records(),
        };
        let payload = json(&file).map_err(|e| StorageIOError::write_snapshot(None, &e))?;
        write_frame_file(&inner.dir.join(SNAPSHOT_FILE), &payload)
            .map_err(|e| StorageIOError::write_snapshot(None, &e))?;
        inner.snapshot = Some((meta.clone(), payload.clone()));
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(payload)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(
        &mut self,
    ) -> StoreResult<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>)> {
        let inner = self.lock();
        Ok((inner.last_applied, inner.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> StoreResult<Vec<Result<(), String>>>
    where
        I: IntoIterator<Item = RaftEntry> + Send,
        I::IntoIter: Send,
    {
        let mut inner = self.lock();
        let mut answers = Vec::new();
        for entry in entries {
            inner.last_applied = Some(entry.log_id);
            answers.push(match entry.payload {
                EntryPayload::Blank => Ok(()),
                EntryPayload::Normal(record) => inner.image.apply(&record).map_err(|e| {
                    tracing::warn!(index = entry.log_id.index, "metadata record ignored: {e}");
                    e.to_string()
                }),
                EntryPayload::Membership(membership) => {
                    inner.membership = StoredMembership::new(Some(entry.log_id), membership);
                    Ok(())
                }
            });
        }
        (self.on_apply)(&inner.image);
        Ok(answers)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> StoreResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> StoreResult<()> {
        let payload = snapshot.into_inner();
        let read_err = |e: io::Error| StorageIOError::read_snapshot(None, &e);
        let mut file: SnapshotFile =
            serde_json::from_slice(&payload).map_err(|e| read_err(io::Error::other(e)))?;
        file.meta = meta.clone();
        let payload = json(&file).map_err(read_err)?;
        let mut inner = self.lock();
        inner.install(&file).map_err(read_err)?;
        write_frame_file(&inner.dir.join(SNAPSHOT_FILE), &payload)
            .map_err(|e| StorageIOError::write_snapshot(None, &e))?;
        inner.snapshot = Some((meta.clone(), payload));
        (self.on_apply)(&inner.image);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> StoreResult<Option<Snapshot<TypeConfig>>> {
        let inner = self.lock();
        Ok(inner.snapshot.as_ref().map(|(meta, payload)| Snapshot {
            meta: meta.clone(),
            snapshot: Box::new(Cursor::new(payload.clone())),
        }))
    }
}

#[cfg(test)]
mod tests;
