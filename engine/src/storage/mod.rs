//! The storage seam: every file operation of a partition log (its segments, indexes, checkpoint,
//! producer snapshots, clean-shutdown marker) goes through a [`Storage`].
//!
//! Two implementations:
//! - [`OsStorage`], the production one: data reads, writes and fdatasyncs through the shard's
//!   io_uring (`crate::io`), metadata calls (create, list, rename, remove, truncate) as blocking
//!   system calls, as before the seam existed.
//! - [`sim::SimDisk`] (feature `simulation`, and the engine's own unit tests): an in-memory disk
//!   that keeps a written and a durable image of every file, loses unsynced writes on a
//!   simulated power failure, tears writes, and injects EIO and ENOSPC.
//!
//! Methods are called from the partition's shard thread only. The futures they return are
//! `'static` (they own the file handle and buffers they need), boxed so the trait can be used as
//! `Rc<dyn Storage>`: one allocation per write job or read, small beside the system call.
//!
//! What a caller may rely on (the crash model both implementations follow, see
//! `docs/architecture.md`): a completed `fdatasync` makes the file's written bytes durable and,
//! as on ext4 and XFS whose metadata journal is one ordered stream, every namespace change made
//! before it (creations, renames, removals, truncations) as well. `sync_dir` does the same for
//! namespace changes alone. Anything not covered may be lost on a power failure, and writes may
//! survive only in part: a prefix of a file's unsynced writes, the last of them possibly torn.

#[cfg(any(test, feature = "simulation"))]
pub mod sim;

mod os;

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::io;
use std::os::fd::RawFd;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;

pub use os::OsStorage;

/// A storage operation in flight. Owns what it needs; resolves on the shard that started it.
pub type IoFuture<T> = Pin<Box<dyn Future<Output = io::Result<T>>>>;

/// An open file of some [`Storage`]. Shared (`Arc`) with reads in flight, which may be handed
/// to other shards for splicing; it stays usable after its name is removed, as an open
/// descriptor does.
pub trait DiskFile: Send + Sync + fmt::Debug + 'static {
    fn path(&self) -> &Path;
    /// The descriptor, for splicing to a socket; `None` for files that are not the kernel's.
    fn raw_fd(&self) -> Option<RawFd>;
    /// For a storage to recognise its own files.
    fn as_any(&self) -> &dyn Any;
}

/// How [`Storage::open`] treats an existing or missing file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenMode {
    /// The file must exist.
    Existing,
    /// The file must not exist; it is created empty.
    CreateNew,
    /// Created if missing; kept as it is otherwise.
    CreateOrKeep,
    /// Created if missing; emptied otherwise.
    Truncate,
}

/// The file operations of a partition log. Blocking methods are for open and close time and
/// for rare metadata changes (a segment roll, a deletion); the data path uses the futures.
pub trait Storage: 'static {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Names of the entries of `dir` (not paths), in no particular order.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    fn exists(&self, path: &Path) -> bool;
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn DiskFile>>;
    /// The file's current length, unsynced writes included.
    fn len(&self, file: &dyn DiskFile) -> io::Result<u64>;
    /// Truncates or extends the file (a namespace-like change: durable with the next sync).
    fn set_len(&self, file: &dyn DiskFile, len: u64) -> io::Result<()>;
    /// Removes a name; open handles keep working.
    fn remove(&self, path: &Path) -> io::Result<()>;
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// A whole small file (index files, snapshots), read at open time.
    fn read_file(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Makes the namespace changes made so far durable, blocking (open and close time only).
    fn sync_dir_blocking(&self, dir: &Path) -> io::Result<()>;

    /// Writes every byte of `bufs` at `pos` (resuming after short writes).
    fn write_at(&self, file: Arc<dyn DiskFile>, bufs: Vec<Bytes>, pos: u64) -> IoFuture<()>;
    /// Reads `len` bytes at `pos`, fewer only at the end of the file.
    fn read_at(&self, file: Arc<dyn DiskFile>, len: usize, pos: u64) -> IoFuture<Vec<u8>>;
    /// Makes every completed write to `file` durable. Issue it only after the writes it must
    /// cover have completed.
    fn fdatasync(&self, file: Arc<dyn DiskFile>) -> IoFuture<()>;
    /// Makes the namespace changes in `dir` durable, without blocking the shard.
    fn sync_dir(&self, dir: &Path) -> IoFuture<()>;
}

/// Removes the files at `paths`; a missing one is not an error. The one way segment files
/// (and their indexes) are deleted.
pub fn remove_all<'a>(
    storage: &dyn Storage,
    paths: impl IntoIterator<Item = &'a Path>,
) -> Result<(), (std::path::PathBuf, io::Error)> {
    for path in paths {
        match storage.remove(path) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err((path.to_path_buf(), err)),
        }
    }
    Ok(())
}
