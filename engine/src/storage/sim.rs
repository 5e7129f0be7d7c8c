//! A simulated disk for tests: deterministic (one seed drives every choice), in memory, with
//! power failures that lose what was not synced, torn writes, and injected errors.
//!
//! Single-threaded: a `SimDisk` lives on the test's shard thread (its futures hold an `Rc`).
//!
//! The model (what [`SimDisk::crash`] keeps), matching the contract in `storage`:
//! - Each file has a written image (what reads see: the page cache) and a durable image. Writes
//!   change the written image and are queued as unsynced changes of that file.
//! - An `fdatasync` makes durable the changes queued when it started (writes that complete
//!   while it runs are not covered), and commits the namespace journal as it was then.
//! - Namespace changes (create, remove, rename) go to one ordered journal, committed by any
//!   fdatasync or `sync_dir` (ext4's and XFS's metadata journal is one ordered stream).
//! - `set_len` is durable at once (the engine truncates only at recovery, then syncs the
//!   directory).
//! - On a crash, each file keeps its durable image plus a random prefix of its unsynced writes,
//!   the last of which may be torn at any byte; the namespace keeps its committed state plus a
//!   random prefix of the uncommitted journal. Files no name reaches are gone.
//! - Operations yield to the executor a random number of times before they take effect, so
//!   appends, writes and fdatasyncs interleave differently from seed to seed.
//!
//! Faults: [`SimDisk::fail_next`] makes the next operation of a kind fail with an errno;
//! [`SimDisk::set_fault_rates`] makes them fail at random. A failed write may have written a
//! prefix of its bytes (unsynced, like any write); a failed fdatasync makes nothing durable, and
//! the writes it covered are lost for good (they read back, as from Linux's page cache after a
//! write-back error, but a crash drops them whatever is synced later).

use std::any::Any;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::io;
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;

use super::{DiskFile, IoFuture, OpenMode, Storage};
use crate::io::yield_now;

/// Which operation an injected fault hits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultOp {
    Write,
    Fsync,
    /// Creating a file (`open` with a create mode that makes a new file).
    Create,
}

/// Random faults, in parts per million of operations of each kind.
#[derive(Clone, Copy, Debug, Default)]
pub struct FaultRates {
    pub write_eio_ppm: u32,
    pub write_enospc_ppm: u32,
    pub fsync_eio_ppm: u32,
    pub create_enospc_ppm: u32,
}

/// What a crash did, for tests to report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CrashReport {
    pub writes_kept: usize,
    pub writes_lost: usize,
    pub writes_torn: usize,
    pub names_kept: usize,
    pub names_lost: usize,
}

#[derive(Debug)]
struct SimFile {
    path: PathBuf,
    ino: u64,
}

impl DiskFile for SimFile {
    fn path(&self) -> &Path {
        &self.path
    }

    fn raw_fd(&self) -> Option<RawFd> {
        None
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[derive(Default)]
struct Inode {
    written: Vec<u8>,
    durable: Vec<u8>,
    /// Writes since the last fdatasync that covered them: (position, bytes).
    unsynced: Vec<(u64, Vec<u8>)>,
}

#[derive(Clone, Debug)]
enum NameOp {
    Link(PathBuf, u64),
    Unlink(PathBuf),
    Rename(PathBuf, PathBuf),
}

fn apply_name_op(names: &mut BTreeMap<PathBuf, u64>, op: &NameOp) {
    match op {
        NameOp::Link(path, ino) => {
            names.insert(path.clone(), *ino);
        }
        NameOp::Unlink(path) => {
            names.remove(path);
        }
        NameOp::Rename(from, to) => {
            if let Some(ino) = names.remove(from) {
                names.insert(to.clone(), ino);
            }
        }
    }
}

fn write_into(image: &mut Vec<u8>, pos: u64, bytes: &[u8]) {
    let pos = pos as usize;
    if image.len() < pos + bytes.len() {
        image.resize(pos + bytes.len(), 0);
    }
    image[pos..pos + bytes.len()].copy_from_slice(bytes);
}

struct Sim {
    rng: u64,
    next_ino: u64,
    inodes: HashMap<u64, Inode>,
    names: BTreeMap<PathBuf, u64>,
    durable_names: BTreeMap<PathBuf, u64>,
    /// Namespace changes not yet committed, oldest first.
    journal: Vec<NameOp>,
    dirs: BTreeSet<PathBuf>,
    faults: VecDeque<(FaultOp, i32)>,
    rates: FaultRates,
    max_yields: u32,
}

impl Sim {
    /// splitmix64: small, fast, and good enough to pick interleavings and crash points.
    fn next(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..=max`.
    fn upto(&mut self, max: u64) -> u64 {
        if max == 0 {
            0
        } else {
            self.next() % (max + 1)
        }
    }

    fn chance_ppm(&mut self, ppm: u32) -> bool {
        ppm > 0 && self.next() % 1_000_000 < u64::from(ppm)
    }

    /// The errno an operation of this kind must fail with now, if any.
    fn fault(&mut self, op: FaultOp) -> Option<i32> {
        if let Some(at) = self.faults.iter().position(|(kind, _)| *kind == op) {
            return self.faults.remove(at).map(|(_, errno)| errno);
        }
        let rates = self.rates;
        match op {
            FaultOp::Write if self.chance_ppm(rates.write_eio_ppm) => Some(libc::EIO),
            FaultOp::Write if self.chance_ppm(rates.write_enospc_ppm) => Some(libc::ENOSPC),
            FaultOp::Fsync if self.chance_ppm(rates.fsync_eio_ppm) => Some(libc::EIO),
            FaultOp::Create if self.chance_ppm(rates.create_enospc_ppm) => Some(libc::ENOSPC),
            _ => None,
        }
    }

    fn name_op(&mut self, op: NameOp) {
        apply_name_op(&mut self.names, &op);
        self.journal.push(op);
    }

    fn commit_names(&mut self, upto: usize) {
        let upto = upto.min(self.journal.len());
        for op in self.journal.drain(..upto) {
            apply_name_op(&mut self.durable_names, &op);
        }
    }

    fn parent_exists(&self, path: &Path) -> bool {
        path.parent().is_some_and(|p| self.dirs.contains(p))
    }
}

fn ino_of(file: &dyn DiskFile) -> io::Result<u64> {
    file.as_any()
        .downcast_ref::<SimFile>()
        .map(|f| f.ino)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file of this SimDisk"))
}

fn errno(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}

/// The simulated disk. Cheap to clone: clones share one disk.
#[derive(Clone)]
pub struct SimDisk(Rc<RefCell<Sim>>);

impl SimDisk {
    /// An empty disk whose every random choice follows `seed`.
    pub fn new(seed: u64) -> SimDisk {
        SimDisk(Rc::new(RefCell::new(Sim {
            rng: seed,
            next_ino: 1,
            inodes: HashMap::new(),
            names: BTreeMap::new(),
            durable_names: BTreeMap::new(),
            journal: Vec::new(),
            dirs: BTreeSet::from([PathBuf::from("/")]),
            faults: VecDeque::new(),
            rates: FaultRates::default(),
            max_yields: 2,
        })))
    }

    /// As an `Rc<dyn Storage>`, for `Partition::open_on`.
    pub fn storage(&self) -> Rc<dyn Storage> {
        Rc::new(self.clone())
    }

    /// The next operation of kind `op` fails with `errno`.
    pub fn fail_next(&self, op: FaultOp, errno: i32) {
        self.0.borrow_mut().faults.push_back((op, errno));
    }

    pub fn set_fault_rates(&self, rates: FaultRates) {
        self.0.borrow_mut().rates = rates;
    }

    /// At most how many times an operation yields before it takes effect (0: at once).
    pub fn set_max_yields(&self, max_yields: u32) {
        self.0.borrow_mut().max_yields = max_yields;
    }

    /// Clears pending one-shot faults and random fault rates.
    pub fn heal(&self) {
        let mut sim = self.0.borrow_mut();
        sim.faults.clear();
        sim.rates = FaultRates::default();
    }

    /// A random number from the disk's own generator (for tests that want one seed for all).
    pub fn random(&self) -> u64 {
        self.0.borrow_mut().next()
    }

    /// A power failure: every file falls back to its durable image plus a random prefix of its
    /// unsynced writes (the last kept one possibly torn), the namespace to its committed state
    /// plus a random prefix of the journal. Run it with no runtime using the disk (the process
    /// that used it is gone).
    pub fn crash(&self) -> CrashReport {
        let mut report = CrashReport::default();
        let mut sim = self.0.borrow_mut();
        let sim = &mut *sim;
        let kept_names = sim.upto(sim.journal.len() as u64) as usize;
        report.names_kept = kept_names;
        report.names_lost = sim.journal.len() - kept_names;
        sim.commit_names(kept_names);
        sim.journal.clear();
        sim.names = sim.durable_names.clone();
        let mut inos: Vec<u64> = sim.inodes.keys().copied().collect();
        inos.sort_unstable(); // HashMap order is not deterministic
        for ino in inos {
            let mut inode = sim.inodes.remove(&ino).expect("listed");
            let keep = sim.upto(inode.unsynced.len() as u64) as usize;
            let mut image = std::mem::take(&mut inode.durable);
            for (pos, bytes) in &inode.unsynced[..keep] {
                write_into(&mut image, *pos, bytes);
            }
            if let Some((pos, bytes)) = inode.unsynced.get(keep) {
                if sim.next().is_multiple_of(2) {
                    let torn = sim.upto(bytes.len() as u64) as usize;
                    write_into(&mut image, *pos, &bytes[..torn]);
                    report.writes_torn += 1;
                }
            }
            report.writes_kept += keep;
            report.writes_lost += inode.unsynced.len() - keep;
            sim.inodes.insert(
                ino,
                Inode {
                    written: image.clone(),
                    durable: image,
                    unsynced: Vec::new(),
                },
            );
        }
        let live: BTreeSet<u64> = sim.names.values().copied().collect();
        sim.inodes.retain(|ino, _| live.contains(ino));
        report
    }

    /// The written image of the file at `path` (what a read sees), if it exists.
    pub fn contents(&self, path: &Path) -> Option<Vec<u8>> {
        let sim = self.0.borrow();
        let ino = sim.names.get(path)?;
        Some(sim.inodes[ino].written.clone())
    }

    /// Replaces the written and durable image of an existing file (tests that damage data).
    pub fn set_contents(&self, path: &Path, bytes: Vec<u8>) -> io::Result<()> {
        let mut sim = self.0.borrow_mut();
        let ino = *sim.names.get(path).ok_or_else(|| errno(libc::ENOENT))?;
        let inode = sim.inodes.get_mut(&ino).expect("named inodes exist");
        inode.written = bytes.clone();
        inode.durable = bytes;
        inode.unsynced.clear();
        Ok(())
    }

    /// Yields a random number of times (at most `max_yields`), so operations interleave.
    fn pause(&self) -> impl std::future::Future<Output = ()> + 'static {
        let yields = {
            let mut sim = self.0.borrow_mut();
            let max = u64::from(sim.max_yields);
            sim.upto(max)
        };
        async move {
            for _ in 0..yields {
                yield_now().await;
            }
        }
    }
}

impl Storage for SimDisk {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut sim = self.0.borrow_mut();
        for ancestor in dir.ancestors() {
            if !ancestor.as_os_str().is_empty() {
                sim.dirs.insert(ancestor.to_path_buf());
            }
        }
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let sim = self.0.borrow();
        if !sim.dirs.contains(dir) {
            return Err(errno(libc::ENOENT));
        }
        Ok(sim
            .names
            .keys()
            .filter(|path| path.parent() == Some(dir))
            .filter_map(|path| path.file_name()?.to_str().map(str::to_owned))
            .collect())
    }

    fn exists(&self, path: &Path) -> bool {
        let sim = self.0.borrow();
        sim.names.contains_key(path) || sim.dirs.contains(path)
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn DiskFile>> {
        let mut sim = self.0.borrow_mut();
        if !sim.parent_exists(path) {
            return Err(errno(libc::ENOENT));
        }
        let existing = sim.names.get(path).copied();
        let ino = match (existing, mode) {
            (None, OpenMode::Existing) => return Err(errno(libc::ENOENT)),
            (Some(_), OpenMode::CreateNew) => return Err(errno(libc::EEXIST)),
            (Some(ino), OpenMode::Existing | OpenMode::CreateOrKeep) => ino,
            (Some(ino), OpenMode::Truncate) => {
                let inode = sim.inodes.get_mut(&ino).expect("named inodes exist");
                *inode = Inode::default();
                ino
            }
            (None, _) => {
                if let Some(code) = sim.fault(FaultOp::Create) {
                    return Err(errno(code));
                }
                let ino = sim.next_ino;
                sim.next_ino += 1;
                sim.inodes.insert(ino, Inode::default());
                sim.name_op(NameOp::Link(path.to_path_buf(), ino));
                ino
            }
        };
        Ok(Arc::new(SimFile {
            path: path.to_path_buf(),
            ino,
        }))
    }

    fn len(&self, file: &dyn DiskFile) -> io::Result<u64> {
        let ino = ino_of(file)?;
        let sim = self.0.borrow();
        Ok(sim.inodes.get(&ino).map_or(0, |i| i.written.len() as u64))
    }

    fn set_len(&self, file: &dyn DiskFile, len: u64) -> io::Result<()> {
        let ino = ino_of(file)?;
        let mut sim = self.0.borrow_mut();
        let inode = sim.inodes.get_mut(&ino).ok_or_else(|| errno(libc::EBADF))?;
        inode.written.resize(len as usize, 0);
        inode.durable.clone_from(&inode.written);
        inode.unsynced.clear();
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut sim = self.0.borrow_mut();
        if !sim.names.contains_key(path) {
            return Err(errno(libc::ENOENT));
        }
        sim.name_op(NameOp::Unlink(path.to_path_buf()));
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut sim = self.0.borrow_mut();
        if !sim.names.contains_key(from) {
            return Err(errno(libc::ENOENT));
        }
        if !sim.parent_exists(to) {
            return Err(errno(libc::ENOENT));
        }
        sim.name_op(NameOp::Rename(from.to_path_buf(), to.to_path_buf()));
        Ok(())
    }

    fn read_file(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.contents(path).ok_or_else(|| errno(libc::ENOENT))
    }

    fn sync_dir_blocking(&self, dir: &Path) -> io::Result<()> {
        let mut sim = self.0.borrow_mut();
        if !sim.dirs.contains(dir) {
            return Err(errno(libc::ENOENT));
        }
        let all = sim.journal.len();
        sim.commit_names(all);
        Ok(())
    }

    fn write_at(&self, file: Arc<dyn DiskFile>, bufs: Vec<Bytes>, pos: u64) -> IoFuture<()> {
        let disk = self.clone();
        let pause = self.pause();
        Box::pin(async move {
            pause.await;
            let ino = ino_of(&*file)?;
            let mut sim = disk.0.borrow_mut();
            let mut bytes: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
            let failed = sim.fault(FaultOp::Write);
            if failed.is_some() {
                let written = sim.upto(bytes.len() as u64) as usize;
                bytes.truncate(written);
            }
            let inode = sim.inodes.get_mut(&ino).ok_or_else(|| errno(libc::EBADF))?;
            if !bytes.is_empty() {
                write_into(&mut inode.written, pos, &bytes);
                inode.unsynced.push((pos, bytes));
            }
            match failed {
                Some(code) => Err(errno(code)),
                None => Ok(()),
            }
        })
    }

    fn read_at(&self, file: Arc<dyn DiskFile>, len: usize, pos: u64) -> IoFuture<Vec<u8>> {
        let disk = self.clone();
        let pause = self.pause();
        Box::pin(async move {
            pause.await;
            let ino = ino_of(&*file)?;
            let sim = disk.0.borrow();
            let inode = sim.inodes.get(&ino).ok_or_else(|| errno(libc::EBADF))?;
            let start = (pos as usize).min(inode.written.len());
            let end = (start + len).min(inode.written.len());
            Ok(inode.written[start..end].to_vec())
        })
    }

    fn fdatasync(&self, file: Arc<dyn DiskFile>) -> IoFuture<()> {
        let disk = self.clone();
        // What it covers is fixed when it starts.
        let started = ino_of(&*file).map(|ino| {
            let sim = self.0.borrow();
            let changes = sim.inodes.get(&ino).map_or(0, |i| i.unsynced.len());
            (ino, changes, sim.journal.len())
        });
        let pause = self.pause();
        Box::pin(async move {
            let (ino, changes, names) = started?;
            pause.await;
            let mut sim = disk.0.borrow_mut();
            if let Some(code) = sim.fault(FaultOp::Fsync) {
                // Linux reports a write-back failure once and marks the pages clean: the writes
                // this fdatasync covered still read back, but no later one makes them durable.
                if let Some(inode) = sim.inodes.get_mut(&ino) {
                    let changes = changes.min(inode.unsynced.len());
                    inode.unsynced.drain(..changes);
                }
                return Err(errno(code));
            }
            sim.commit_names(names);
            let inode = sim.inodes.get_mut(&ino).ok_or_else(|| errno(libc::EBADF))?;
            let changes = changes.min(inode.unsynced.len());
            for (pos, bytes) in inode.unsynced.drain(..changes) {
                write_into(&mut inode.durable, pos, &bytes);
            }
            Ok(())
        })
    }

    fn sync_dir(&self, dir: &Path) -> IoFuture<()> {
        let disk = self.clone();
        let dir = dir.to_path_buf();
        let names = self.0.borrow().journal.len();
        let pause = self.pause();
        Box::pin(async move {
            pause.await;
            let mut sim = disk.0.borrow_mut();
            if !sim.dirs.contains(&dir) {
                return Err(errno(libc::ENOENT));
            }
            sim.commit_names(names);
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::{Runtime, RuntimeConfig};

    fn run<F: std::future::Future>(future: F) -> F::Output {
        Runtime::new(RuntimeConfig::default())
            .expect("runtime")
            .block_on(future)
    }

    fn write(disk: &SimDisk, file: &Arc<dyn DiskFile>, pos: u64, bytes: &'static [u8]) {
        run(disk.write_at(file.clone(), vec![Bytes::from_static(bytes)], pos)).expect("write");
    }

    #[test]
    fn synced_bytes_survive_a_crash_and_unsynced_ones_keep_a_prefix() {
        for seed in 0..200 {
            let disk = SimDisk::new(seed);
            let dir = Path::new("/d");
            disk.create_dir_all(dir).expect("mkdir");
            let file = disk
                .open(&dir.join("f"), OpenMode::CreateNew)
                .expect("create");
            write(&disk, &file, 0, b"durable.");
            run(disk.fdatasync(file.clone())).expect("sync");
            write(&disk, &file, 8, b"first.");
            write(&disk, &file, 14, b"second.");
            disk.crash();
            let after = disk
                .contents(&dir.join("f"))
                .expect("the synced file exists");
            assert!(after.starts_with(b"durable."), "seed {seed}");
            let whole = b"durable.first.second.";
            assert!(
                whole.starts_with(&after),
                "seed {seed}: a prefix, got {after:?}"
            );
        }
    }

    #[test]
    fn an_uncommitted_creation_may_vanish_and_a_committed_one_stays() {
        let mut vanished = 0;
        for seed in 0..100 {
            let disk = SimDisk::new(seed);
            let dir = Path::new("/d");
            disk.create_dir_all(dir).expect("mkdir");
            let kept = disk
                .open(&dir.join("kept"), OpenMode::CreateNew)
                .expect("create");
            run(disk.fdatasync(kept)).expect("sync");
            disk.open(&dir.join("maybe"), OpenMode::CreateNew)
                .expect("create");
            disk.crash();
            assert!(disk.exists(&dir.join("kept")), "seed {seed}");
            if !disk.exists(&dir.join("maybe")) {
                vanished += 1;
            }
        }
        assert!(
            vanished > 0 && vanished < 100,
            "both outcomes occur: {vanished}"
        );
    }

    #[test]
    fn an_fdatasync_covers_only_writes_queued_when_it_started() {
        let disk = SimDisk::new(7);
        disk.set_max_yields(0);
        disk.create_dir_all(Path::new("/d")).expect("mkdir");
        let file = disk
            .open(Path::new("/d/f"), OpenMode::CreateNew)
            .expect("create");
        write(&disk, &file, 0, b"one");
        let sync = disk.fdatasync(file.clone());
        write(&disk, &file, 3, b"two");
        run(sync).expect("sync");
        let sim = disk.0.borrow();
        let inode = &sim.inodes[&ino_of(&*file).expect("sim file")];
        assert_eq!(inode.durable, b"one");
        assert_eq!(inode.unsynced.len(), 1);
    }

    #[test]
    fn injected_faults_fail_the_named_operation_once() {
        let disk = SimDisk::new(1);
        disk.create_dir_all(Path::new("/d")).expect("mkdir");
        disk.fail_next(FaultOp::Create, libc::ENOSPC);
        let err = disk
            .open(Path::new("/d/f"), OpenMode::CreateNew)
            .expect_err("create fails");
        assert_eq!(err.raw_os_error(), Some(libc::ENOSPC));
        let file = disk
            .open(Path::new("/d/f"), OpenMode::CreateNew)
            .expect("then works");
        disk.fail_next(FaultOp::Fsync, libc::EIO);
        let err = run(disk.fdatasync(file.clone())).expect_err("sync fails");
        assert_eq!(err.raw_os_error(), Some(libc::EIO));
        run(disk.fdatasync(file.clone())).expect("then works");
        disk.fail_next(FaultOp::Write, libc::EIO);
        let err = run(disk.write_at(file, vec![Bytes::from_static(b"x")], 0)).expect_err("write");
        assert_eq!(err.raw_os_error(), Some(libc::EIO));
    }
}
