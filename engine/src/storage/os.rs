//! The production storage: the kernel's file system, data through the shard's io_uring.
//!
//! Runs on the shard thread that owns the partition (the ring is the calling thread's).

use std::any::Any;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use super::{DiskFile, IoFuture, OpenMode, Storage};
use crate::io::{fdatasync, fsync, read_exact_at, write_all_at};

/// The kernel's file system.
#[derive(Clone, Copy, Debug, Default)]
pub struct OsStorage;

/// A file opened by [`OsStorage`].
#[derive(Debug)]
pub struct OsFile {
    file: File,
    path: PathBuf,
}

impl DiskFile for OsFile {
    fn path(&self) -> &Path {
        &self.path
    }

    fn raw_fd(&self) -> Option<RawFd> {
        Some(self.file.as_raw_fd())
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Keeps a file open for the ring operation that uses its descriptor.
struct Held(Arc<dyn DiskFile>);

impl AsRawFd for Held {
    fn as_raw_fd(&self) -> RawFd {
        self.0
            .raw_fd()
            .expect("OsStorage is given only files it opened, which all have a descriptor")
    }
}

fn os_file(file: &dyn DiskFile) -> io::Result<&File> {
    file.as_any()
        .downcast_ref::<OsFile>()
        .map(|f| &f.file)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file of OsStorage"))
}

impl Storage for OsStorage {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            if let Ok(name) = entry?.file_name().into_string() {
                names.push(name);
            }
        }
        Ok(names)
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn DiskFile>> {
        let mut options = OpenOptions::new();
        options.read(true).write(true);
        match mode {
            OpenMode::Existing => {}
            OpenMode::CreateNew => {
                options.create_new(true);
            }
            OpenMode::CreateOrKeep => {
                options.create(true).truncate(false);
            }
            OpenMode::Truncate => {
                options.create(true).truncate(true);
            }
        }
        let file = options.open(path)?;
        Ok(Arc::new(OsFile {
            file,
            path: path.to_path_buf(),
        }))
    }

    fn len(&self, file: &dyn DiskFile) -> io::Result<u64> {
        Ok(os_file(file)?.metadata()?.len())
    }

    fn set_len(&self, file: &dyn DiskFile, len: u64) -> io::Result<()> {
        os_file(file)?.set_len(len)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn read_file(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }

    fn sync_dir_blocking(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn write_at(&self, file: Arc<dyn DiskFile>, bufs: Vec<Bytes>, pos: u64) -> IoFuture<()> {
        Box::pin(async move {
            let (result, _, _) = write_all_at(Held(file), bufs, pos).await;
            result.map_err(|(err, _written)| err)
        })
    }

    fn read_at(&self, file: Arc<dyn DiskFile>, len: usize, pos: u64) -> IoFuture<Vec<u8>> {
        Box::pin(read_exact_at(Held(file), len, pos))
    }

    fn fdatasync(&self, file: Arc<dyn DiskFile>) -> IoFuture<()> {
        Box::pin(async move { fdatasync(Held(file)).await.0 })
    }

    fn sync_dir(&self, dir: &Path) -> IoFuture<()> {
        let dir = dir.to_path_buf();
        Box::pin(async move {
            // Opening a directory is a blocking call, but a cheap one (no I/O once cached).
            let handle = File::open(&dir)?;
            fsync(Arc::new(handle)).await.0
        })
    }
}
