//! Deterministic simulation of one partition log on the simulated disk (`storage::sim`).
//!
//! One seed drives everything: the log's settings (segment size, fsync policy, checkpoint
//! cadence, retention), the appends (sizes, acks), the interleaving of the disk's operations,
//! injected faults (EIO on write or fdatasync, ENOSPC on write and on segment creation), and how
//! each life ends: a power failure (`SimDisk::crash`: only fdatasynced bytes are sure to
//! survive, a random prefix of the rest does, the last write possibly torn), a kill -9 (the page
//! cache survives), or a clean close. After every reopen the checker verifies against a model:
//! - every batch acknowledged as durable (an fdatasync covered it) reads back byte for byte, and
//!   after a kill or a clean close every batch acknowledged as written does too, unless an
//!   fdatasync failed after it (the disk does not hold it; the log discards it);
//! - everything the log serves is a batch that was appended at that offset, whole and CRC-valid,
//!   at contiguous offsets (nothing torn or invented is served);
//! - an offset is never handed out twice while the batch that had it survives;
//! - once the partition is poisoned, nothing more is acknowledged and appends are refused;
//! - a poisoned partition reopened in place (`Partition::reopen`, after the fault cleared) keeps
//!   the same promises as one restarted after a kill -9.
//!
//! `cargo test -p ringtail-engine --test simulation` runs 200 seeds; `SIM_SEEDS=N` runs N, and
//! `SIM_SEED=S` replays one. A failure prints its seed and the run's event trace.

mod common;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::Path;
use std::rc::Rc;
use std::time::Duration;

use bytes::BytesMut;
use ringtail_engine::format::batch;
use ringtail_engine::io::{spawn, timeout, yield_now, JoinHandle};
use ringtail_engine::storage::sim::{FaultOp, SimDisk};
use ringtail_engine::{AppendError, FsyncPolicy, LogConfig, Offset, Partition};

const DEFAULT_SEEDS: u64 = 200;
const LIVES_MAX: u64 = 6;
const STEPS_PER_LIFE_MAX: u64 = 40;
/// A settle or a check that takes longer than this (wall clock) is a hang.
const HANG: Duration = Duration::from_secs(20);

/// splitmix64, seeded per run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// What must survive the end of a life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Promise {
    /// Appended, not acknowledged: may be lost.
    None,
    /// Acknowledged as written (in the page cache): survives kill -9 and clean close.
    Written,
    /// Acknowledged as durable (an fdatasync covered it): survives a power failure too.
    Durable,
}

struct Entry {
    /// The batch as the log stores it (base offset and leader epoch stamped).
    bytes: Vec<u8>,
    next_offset: i64,
    promise: Promise,
}

#[derive(Default)]
struct Model {
    /// Batches by base offset: everything that may be in the log.
    batches: BTreeMap<i64, Entry>,
    trace: Vec<String>,
    /// Set when the log reported a storage failure in this life.
    poisoned: bool,
}

impl Model {
    fn note(&mut self, event: String) {
        self.trace.push(event);
    }

    /// The disk reported a write-back failure: what no fdatasync covered is not on it, and the
    /// log discards it (a later open must not take page-cache bytes for data on disk).
    fn void_unsynced(&mut self) {
        for entry in self.batches.values_mut() {
            if entry.promise == Promise::Written {
                entry.promise = Promise::None;
            }
        }
    }

    fn promise(&mut self, last_offset: i64, promise: Promise) {
        // An acknowledgement covers every batch before it too (the log is written and synced
        // in order).
        for entry in self.batches.values_mut() {
            if entry.next_offset <= last_offset + 1 && entry.promise < promise {
                entry.promise = promise;
            }
        }
    }
}

type Shared = Rc<RefCell<Model>>;

#[derive(Clone, Copy, Debug)]
enum End {
    PowerFailure,
    Kill,
    CleanClose,
}

fn config_for(rng: &mut Rng) -> LogConfig {
    let fsync = match rng.below(3) {
        0 => FsyncPolicy::Never,
        1 => FsyncPolicy::AcksAll,
        _ => FsyncPolicy::Always,
    };
    LogConfig {
        segment_bytes: [1024, 2048, 8192, 1 << 20][rng.below(4) as usize],
        index_interval_bytes: [64, 512, 4096][rng.below(3) as usize],
        fsync,
        // Checkpoints either after every fdatasync or never between seals: both deterministic.
        checkpoint_interval_ms: if rng.chance(50) { 0 } else { u64::MAX / 2 },
        retention_ms: None,
        retention_bytes: if rng.chance(30) {
            Some(4096 + rng.below(8192))
        } else {
            None
        },
        ..LogConfig::default()
    }
}

/// Reads the whole log and checks it against the model; returns the log end it found. At a
/// reopen (`reopened`), the model then forgets what was lost.
async fn check_log(log: &Partition, model: &Shared, life: u64, after: End, reopened: bool) -> i64 {
    let log_start = log.log_start_offset().get();
    let high_watermark = log.high_watermark().get();
    let mut served = Vec::new();
    let mut offset = log_start;
    while offset < high_watermark {
        let bytes = log
            .read_bytes(Offset(offset), 1 << 16)
            .await
            .unwrap_or_else(|err| panic!("life {life}: read at {offset} failed: {err}"));
        assert!(!bytes.is_empty(), "life {life}: empty read at {offset}");
        for (base, batch_bytes) in common::split_batches(&bytes) {
            assert_eq!(base, offset, "life {life}: offsets are contiguous");
            let header = batch::parse_header(&batch_bytes).expect("split checked it");
            offset = header.next_offset();
            served.push((base, batch_bytes));
        }
    }
    let mut model = model.borrow_mut();
    model.note(format!(
        "life {life}: opened after {after:?}: log [{log_start}, {high_watermark}), {} batches",
        served.len()
    ));
    for (base, bytes) in &served {
        let entry = model
            .batches
            .get(base)
            .unwrap_or_else(|| panic!("life {life}: served a batch at {base} never appended"));
        assert!(
            entry.bytes == *bytes,
            "life {life}: the batch at {base} is not the one appended there"
        );
    }
    let must = match after {
        End::PowerFailure => Promise::Durable,
        End::Kill | End::CleanClose => Promise::Written,
    };
    for (base, entry) in &model.batches {
        if entry.promise >= must && *base >= log_start {
            assert!(
                served.iter().any(|(b, _)| b == base),
                "life {life}: batch at {base} was acknowledged ({:?}) and is lost after {after:?} \
                 (log [{log_start}, {high_watermark}))",
                entry.promise
            );
        }
    }
    if !reopened {
        return high_watermark;
    }
    // What is past the log end was lost (and was not promised, as checked above); those
    // offsets will be handed out again.
    model.batches.retain(|base, _| *base < high_watermark);
    // A lost batch's promise is void, but below the log end everything kept stays promised at
    // least as written: it is in the files now.
    for entry in model.batches.values_mut() {
        if entry.promise < Promise::Written {
            entry.promise = Promise::Written;
        }
    }
    high_watermark
}

/// Waits for a waiter task, or fails the run if the log hangs.
async fn settle(waiters: &mut Vec<JoinHandle<()>>, life: u64) {
    for waiter in waiters.drain(..) {
        if timeout(HANG, waiter).await.is_none() {
            panic!("life {life}: an acknowledgement never came (hang)");
        }
    }
}

fn spawn_waiter(
    log: &Rc<Partition>,
    model: &Shared,
    last_offset: i64,
    acks_all: bool,
    explicit_sync: bool,
) -> JoinHandle<()> {
    let (log, model) = (log.clone(), model.clone());
    spawn(async move {
        let (result, promise) = if explicit_sync {
            (
                log.wait_durable(Offset(last_offset)).await,
                Promise::Durable,
            )
        } else {
            let waits_for_sync = log.config().fsync.ack_waits_for_sync(acks_all);
            let promise = if waits_for_sync {
                Promise::Durable
            } else {
                Promise::Written
            };
            (
                log.wait_for_ack(Offset(last_offset), acks_all).await,
                promise,
            )
        };
        let mut model = model.borrow_mut();
        match result {
            Ok(()) => {
                assert!(
                    log.poisoned().is_none(),
                    "an acknowledgement ({promise:?} of {last_offset}) from a poisoned partition"
                );
                model.note(format!("ack {promise:?} {last_offset}"));
                model.promise(last_offset, promise);
            }
            Err(err) => {
                assert!(
                    log.poisoned().is_some(),
                    "a failed acknowledgement without a poisoned partition: {err}"
                );
                model.note(format!("ack failed {last_offset}: {err}"));
                model.poisoned = true;
            }
        }
    })
}

/// One seed's world: the disk, the log's place and settings, the model, the generator.
struct World {
    disk: SimDisk,
    dir: &'static Path,
    config: LogConfig,
    model: Shared,
    rng: Rng,
    /// The last batch timestamp handed out: unique per batch, so batches differ.
    stamp: i64,
}

/// One life: open, check, run random steps, end. Returns how it ended.
async fn life(world: &mut World, life: u64, after: End) -> End {
    let World {
        disk,
        dir,
        config,
        model,
        rng,
        stamp,
    } = world;
    let (disk, dir, model) = (&*disk, *dir, &*model);
    disk.heal();
    let mut log = Partition::open_on(disk.storage(), dir, config.clone())
        .await
        .unwrap_or_else(|err| panic!("life {life}: reopen after {after:?} failed: {err}"));
    let log_end = check_log(&log, model, life, after, true).await;
    assert_eq!(
        log.log_end_offset(),
        log_end,
        "life {life}: nothing queued at open"
    );
    model.borrow_mut().poisoned = false;
    let mut waiters = Vec::new();
    let steps = 1 + rng.below(STEPS_PER_LIFE_MAX);
    for _ in 0..steps {
        match rng.below(100) {
            0..=54 => append_some(&log, model, rng, &mut waiters, stamp),
            55..=69 => {
                for _ in 0..rng.below(8) {
                    yield_now().await;
                }
            }
            70..=79 => settle(&mut waiters, life).await,
            80..=85 => inject_fault(disk, model, rng),
            86..=91 => {
                let deleted = log.enforce_retention(0);
                model.borrow_mut().note(format!(
                    "retention: {deleted:?}, log start {}",
                    log.log_start_offset()
                ));
            }
            _ => {
                settle(&mut waiters, life).await;
                if log.poisoned().is_none() {
                    check_log(&log, model, life, End::Kill, false).await;
                }
            }
        }
        if log.poisoned().is_some() {
            check_poisoned(&log, model, rng, &mut waiters, stamp);
            if rng.chance(30) {
                // The fault clears and the partition is reopened in place, without a restart.
                settle(&mut waiters, life).await;
                if log.unsynced_discarded() {
                    model.borrow_mut().void_unsynced();
                }
                disk.heal();
                log = timeout(HANG, log.reopen())
                    .await
                    .unwrap_or_else(|| panic!("life {life}: reopen hung"))
                    .unwrap_or_else(|err| panic!("life {life}: reopen in place failed: {err}"));
                model.borrow_mut().note(format!(
                    "reopened in place: log [{}, {})",
                    log.log_start_offset(),
                    log.log_end_offset()
                ));
                check_log(&log, model, life, End::Kill, true).await;
                model.borrow_mut().poisoned = false;
            }
        }
    }
    if log.unsynced_discarded() {
        model.borrow_mut().void_unsynced();
    }
    let end = match rng.below(3) {
        0 => End::PowerFailure,
        1 => End::Kill,
        _ => End::CleanClose,
    };
    if let End::CleanClose = end {
        settle(&mut waiters, life).await;
        let result = timeout(HANG, log.close())
            .await
            .unwrap_or_else(|| panic!("life {life}: close hung"));
        let poisoned = log.poisoned().is_some();
        model
            .borrow_mut()
            .note(format!("close: {result:?} (poisoned: {poisoned})"));
        if log.unsynced_discarded() {
            model.borrow_mut().void_unsynced();
        }
        if result.is_ok() {
            assert!(!poisoned, "life {life}: a poisoned log closed cleanly");
            // A clean close wrote every appended batch.
            let next = log.log_end_offset().get();
            model.borrow_mut().promise(next - 1, Promise::Written);
        }
        return End::CleanClose;
    }
    model
        .borrow_mut()
        .note(format!("life {life} ends: {end:?}"));
    end
}

fn append_some(
    log: &Rc<Partition>,
    model: &Shared,
    rng: &mut Rng,
    waiters: &mut Vec<JoinHandle<()>>,
    stamp: &mut i64,
) {
    for _ in 0..1 + rng.below(4) {
        *stamp += 1;
        let count = 1 + rng.below(5) as i32;
        let value_len = rng.below(300) as usize;
        let built = batch::build_batch_with(count, value_len, *stamp, (*stamp % 251) as u8);
        match log.append(BytesMut::from(&built[..]), *stamp) {
            Ok(info) => {
                let (base_offset, last_offset) = (info.base_offset.get(), info.last_offset.get());
                let mut stored = built;
                batch::stamp(&mut stored, base_offset, 0);
                let mut m = model.borrow_mut();
                if let Some((&last_base, last)) = m.batches.iter().next_back() {
                    assert!(
                        last_base < base_offset && last.next_offset == base_offset,
                        "offsets are handed out once, in order: {} after batch {last_base}..{}",
                        base_offset,
                        last.next_offset
                    );
                }
                m.note(format!("append {base_offset}..={last_offset}"));
                m.batches.insert(
                    base_offset,
                    Entry {
                        bytes: stored,
                        next_offset: last_offset + 1,
                        promise: Promise::None,
                    },
                );
                drop(m);
                let acks_all = rng.chance(70);
                let explicit_sync = rng.chance(10);
                waiters.push(spawn_waiter(
                    log,
                    model,
                    last_offset,
                    acks_all,
                    explicit_sync,
                ));
            }
            Err(AppendError::Storage(err)) => {
                let transient = err.op == "create segment";
                assert!(
                    transient || log.poisoned().is_some(),
                    "a storage refusal without a poisoned partition: {err}"
                );
                model.borrow_mut().note(format!("append refused: {err}"));
            }
            Err(err) => panic!("a valid batch was refused: {err}"),
        }
    }
}

fn inject_fault(disk: &SimDisk, model: &Shared, rng: &mut Rng) {
    let (op, errno) = match rng.below(4) {
        0 => (FaultOp::Write, libc::EIO),
        1 => (FaultOp::Write, libc::ENOSPC),
        2 => (FaultOp::Fsync, libc::EIO),
        _ => (FaultOp::Create, libc::ENOSPC),
    };
    disk.fail_next(op, errno);
    model
        .borrow_mut()
        .note(format!("fault: next {op:?} fails with errno {errno}"));
}

/// A poisoned partition refuses appends and acknowledges nothing more.
fn check_poisoned(
    log: &Rc<Partition>,
    model: &Shared,
    rng: &mut Rng,
    waiters: &mut Vec<JoinHandle<()>>,
    stamp: &mut i64,
) {
    if log.unsynced_discarded() {
        model.borrow_mut().void_unsynced();
    }
    *stamp += 1;
    let built = batch::build_batch_with(1, 10, *stamp, 0);
    let refused = log.append(BytesMut::from(&built[..]), *stamp);
    assert!(
        matches!(refused, Err(AppendError::Storage(_))),
        "a poisoned partition took an append: {refused:?}"
    );
    // A waiter for something already durable must fail too: nothing is acknowledged now.
    let durable = log.durable_offset().get();
    if durable > 0 {
        let offset = rng.below(durable as u64) as i64;
        let log = log.clone();
        let model = model.clone();
        waiters.push(spawn(async move {
            let result = log.wait_for_ack(Offset(offset), true).await;
            assert!(
                result.is_err(),
                "a poisoned partition acknowledged {offset}"
            );
            model
                .borrow_mut()
                .note(format!("poisoned: ack of {offset} refused"));
        }));
    }
}

fn run_seed(seed: u64) {
    let mut rng = Rng(seed ^ 0x005E_ED0F_5111);
    let disk = SimDisk::new(seed);
    disk.set_max_yields(rng.below(4) as u32);
    let config = config_for(&mut rng);
    let model: Shared = Rc::new(RefCell::new(Model::default()));
    model.borrow_mut().note(format!("seed {seed}: {config:?}"));
    let lives = 1 + rng.below(LIVES_MAX);
    let mut world = World {
        disk: disk.clone(),
        dir: Path::new("/data/topic-0"),
        config: config.clone(),
        model: model.clone(),
        rng,
        stamp: 0,
    };
    let dir = world.dir;
    let mut after = End::CleanClose;
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        for n in 0..lives {
            let end = common::run(life(&mut world, n, after));
            // The runtime is gone with every task of the log: the process has stopped.
            if let End::PowerFailure = end {
                let report = disk.crash();
                model
                    .borrow_mut()
                    .note(format!("power failure: {report:?}"));
            }
            after = end;
        }
        // A last open checks what the last life left.
        common::run(async {
            disk.heal();
            let log = Partition::open_on(disk.storage(), dir, config.clone())
                .await
                .unwrap_or_else(|err| panic!("final reopen after {after:?} failed: {err}"));
            check_log(&log, &model, lives, after, true).await;
        });
    }));
    if let Err(panic) = outcome {
        eprintln!("simulation failed: SIM_SEED={seed}; trace:");
        for line in &model.borrow().trace {
            eprintln!("  {line}");
        }
        std::panic::resume_unwind(panic);
    }
}

#[test]
fn partition_log_survives_crashes_faults_and_reopens() {
    if let Some(seed) = std::env::var("SIM_SEED").ok().and_then(|s| s.parse().ok()) {
        eprintln!("simulation: SIM_SEED={seed}");
        run_seed(seed);
        return;
    }
    let seeds = std::env::var("SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SEEDS);
    let first = common::seed("simulation");
    for n in 0..seeds {
        run_seed(first.wrapping_add(n));
    }
    eprintln!("simulation: {seeds} seeds from {first} passed");
}
