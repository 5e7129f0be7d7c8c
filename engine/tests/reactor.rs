//! Tests for the io_uring runtime (`ringtail_engine::io`), aimed at the five bug classes listed in
//! `shared/REACTOR.md`:
//!
//! 1. buffers freed before their completion (drop in flight, under load);
//! 2. shutdown hanging on operations that never complete;
//! 3. cancel races that leak slots, buffers or fds (a cancel storm);
//! 4. lost wake-ups between threads (ping-pong that counts every message);
//! 5. a full submission queue (a ring of 8 entries flooded with work).
//!
//! Plus: `write_all_at`/`writev_at` beyond `IOV_MAX` buffers, tasks left queued when `block_on`
//! returns, an operation dropped under a runtime other than its own, and an accept dropped after
//! its completion arrived.
//!
//! Every test runs its runtime on a thread of its own and waits for it with a deadline, so a hang
//! fails the test instead of blocking CI.

use std::cell::{Cell, RefCell};
use std::fs::File;
use std::future::{poll_fn, Future};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::os::unix::net::UnixStream;
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ringtail_engine::io::{
    accept, fdatasync, read_at, read_exact_at, sleep, spawn, write_all_at, writev_at, yield_now,
    JoinHandle, Runtime, RuntimeConfig, IOV_MAX,
};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Runs `f` on a thread of its own and waits at most `limit` for its result. A hang fails the
/// test (the stuck thread is abandoned); a panic on that thread is re-raised here.
fn with_deadline<T: Send + 'static>(
    name: &str,
    limit: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    let handle = std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            let _ = tx.send(f());
        })
        .expect("spawn test thread");
    match rx.recv_timeout(limit) {
        Ok(value) => {
            handle.join().expect("test thread");
            value
        }
        Err(RecvTimeoutError::Timeout) => panic!("{name}: no result within {limit:?}: hung"),
        Err(RecvTimeoutError::Disconnected) => match handle.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => unreachable!("the thread ended without sending"),
        },
    }
}

fn runtime(ring_entries: u32) -> Runtime {
    Runtime::new(RuntimeConfig { ring_entries }).expect("io_uring runtime")
}

enum Either<A, B> {
    Left(A),
    Right(B),
}

/// Polls both futures until one completes; the other is dropped (mid-flight) on return.
async fn race<A: Future, B: Future>(a: A, b: B) -> Either<A::Output, B::Output> {
    let mut a = pin!(a);
    let mut b = pin!(b);
    poll_fn(|cx| {
        if let Poll::Ready(out) = a.as_mut().poll(cx) {
            return Poll::Ready(Either::Left(out));
        }
        if let Poll::Ready(out) = b.as_mut().poll(cx) {
            return Poll::Ready(Either::Right(out));
        }
        Poll::Pending
    })
    .await
}

/// `fut`'s output, or None if `limit` passes first.
async fn timeout<F: Future>(limit: Duration, fut: F) -> Option<F::Output> {
    match race(fut, sleep(limit)).await {
        Either::Left(out) => Some(out),
        Either::Right(()) => None,
    }
}

/// Polls `fut` exactly once (an operation is submitted on its first poll).
async fn poll_once<F: Future + ?Sized>(mut fut: Pin<&mut F>) -> Poll<F::Output> {
    poll_fn(move |cx| Poll::Ready(fut.as_mut().poll(cx))).await
}

/// Waits (on the ring's timers) until `cond` holds; false if `limit` passes first.
async fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if cond() {
            return true;
        }
        if start.elapsed() > limit {
            return false;
        }
        sleep(Duration::from_millis(2)).await;
    }
}

/// Deterministic pseudo-random bytes: every (seed, index) gives its own pattern.
fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A one-value mailbox between a std thread and a runtime task: the thread `put`s and wakes the
/// waker the task left; the task's `take` future resolves to the value.
#[derive(Default)]
struct Mailbox {
    state: Mutex<MailState>,
}

#[derive(Default)]
struct MailState {
    value: Option<u64>,
    waker: Option<Waker>,
}

impl Mailbox {
    fn put(&self, value: u64) {
        let waker = {
            let mut state = self.state.lock().unwrap();
            assert!(
                state.value.is_none(),
                "mailbox overwritten: a message was lost"
            );
            state.value = Some(value);
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    async fn take(&self) -> u64 {
        poll_fn(|cx| {
            let mut state = self.state.lock().unwrap();
            match state.value.take() {
                Some(value) => Poll::Ready(value),
                None => {
                    state.waker = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
        .await
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Drop in flight, under load
// ---------------------------------------------------------------------------------------------

const VICTIMS: u64 = 32;
const VICTIM_ROUNDS: u64 = 40;
const CHECKERS: u64 = 8;
const CHECKER_ROUNDS: u64 = 120;
const BUF: usize = 4096;

#[derive(Default, Clone, Copy, Debug)]
struct VictimTally {
    rounds: u64,
    /// The data written after the drop reached the next read (the cancel won).
    data_survived: u64,
    /// The dropped read took the data into its parked buffer (the data arrived first).
    data_taken_by_orphan: u64,
}

/// Races reads on a socket that has no data against short sleeps, so the reads are dropped while
/// the kernel owns their buffers; then sends data at once, racing the cancel, so some dropped reads
/// complete into their parked buffers. Every byte a later read sees must be this round's byte.
async fn victim(task: u64, sockets: Rc<RefCell<Vec<Rc<UnixStream>>>>) -> VictimTally {
    let mut tally = VictimTally::default();
    for round in 0..VICTIM_ROUNDS {
        let (mine, mut peer) = UnixStream::pair().unwrap();
        let mine = Rc::new(mine);
        sockets.borrow_mut().push(mine.clone());
        let fill = (1 + (task * VICTIM_ROUNDS + round) % 251) as u8;
        let nap = Duration::from_micros(100 + (task * 37 + round * 11) % 1500);

        match race(
            read_at(mine.clone(), Vec::with_capacity(BUF), 0),
            sleep(nap),
        )
        .await
        {
            Either::Left((result, _, _)) => {
                panic!("a read on a socket without data completed: {result:?}")
            }
            Either::Right(()) => {} // the read was dropped in flight
        }
        // The cancel is queued, not yet submitted: this data races it.
        peer.write_all(&vec![fill; BUF]).unwrap();
        // A long sleep dropped in flight too (its timespec is parked until the cancel lands).
        match race(sleep(Duration::from_secs(3600)), yield_now()).await {
            Either::Left(()) => panic!("an hour-long sleep completed"),
            Either::Right(()) => {}
        }

        let mut got = 0usize;
        loop {
            let read = timeout(
                Duration::from_millis(30),
                read_at(mine.clone(), Vec::with_capacity(BUF), 0),
            )
            .await;
            match read {
                Some((result, _, buf)) => {
                    let n = result.expect("read after a dropped read");
                    assert!(n > 0, "EOF on a socket whose peer is open");
                    assert_eq!(buf.len(), n);
                    assert!(
                        buf.iter().all(|&b| b == fill),
                        "victim {task} round {round}: a read saw bytes of another buffer"
                    );
                    got += n;
                    if got == BUF {
                        break;
                    }
                }
                None => break,
            }
        }
        tally.rounds += 1;
        if got == BUF {
            tally.data_survived += 1;
        } else {
            tally.data_taken_by_orphan += 1;
        }
    }
    tally
}

/// Writes and reads back distinct patterns through the ring, in buffers of the same size as the
/// victims' parked ones: a parked buffer freed too early would be reused here and overwritten by
/// the kernel with a victim's bytes.
async fn checker(task: u64, file: Rc<File>) -> u64 {
    let mut verified = 0;
    for round in 0..CHECKER_ROUNDS {
        let pos = (task * 16 + round % 16) * BUF as u64;
        let data = pattern(task << 32 | round, BUF);
        let (result, _, _) = write_all_at(file.clone(), vec![Bytes::from(data.clone())], pos).await;
        result.map_err(|(e, _)| e).expect("checker write");
        let back = read_exact_at(file.clone(), BUF, pos).await.unwrap();
        assert!(
            back == data,
            "checker {task} round {round}: file read mismatch"
        );

        let (mine, mut peer) = UnixStream::pair().unwrap();
        let mine = Rc::new(mine);
        peer.write_all(&data).unwrap();
        let mut got = Vec::new();
        while got.len() < BUF {
            let (result, _, buf) = read_at(mine.clone(), Vec::with_capacity(BUF), 0).await;
            let n = result.unwrap();
            assert!(n > 0);
            got.extend_from_slice(&buf);
        }
        assert!(
            got == data,
            "checker {task} round {round}: socket read mismatch"
        );
        verified += 1;
    }
    verified
}

#[test]
fn reads_and_sleeps_dropped_in_flight_under_load_keep_their_buffers() {
    let (tally, verified, leftover) =
        with_deadline("drop-in-flight", Duration::from_secs(60), || {
            let rt = runtime(64);
            let file = Rc::new(tempfile::tempfile().unwrap());
            let sockets = Rc::new(RefCell::new(Vec::new()));
            rt.block_on(async {
                let victims: Vec<JoinHandle<VictimTally>> = (0..VICTIMS)
                    .map(|task| spawn(victim(task, sockets.clone())))
                    .collect();
                let checkers: Vec<JoinHandle<u64>> = (0..CHECKERS)
                    .map(|task| spawn(checker(task, file.clone())))
                    .collect();
                let mut tally = VictimTally::default();
                for handle in victims {
                    let t = handle.await;
                    tally.rounds += t.rounds;
                    tally.data_survived += t.data_survived;
                    tally.data_taken_by_orphan += t.data_taken_by_orphan;
                }
                let mut verified = 0;
                for handle in checkers {
                    verified += handle.await;
                }
                // Every dropped read's completion arrives and releases its parked socket handle.
                let sockets = std::mem::take(&mut *sockets.borrow_mut());
                assert_eq!(sockets.len() as u64, VICTIMS * VICTIM_ROUNDS);
                let settled = wait_until(Duration::from_secs(5), || {
                    sockets.iter().all(|s| Rc::strong_count(s) == 1)
                })
                .await;
                let leftover = if settled {
                    0
                } else {
                    sockets.iter().filter(|s| Rc::strong_count(s) != 1).count()
                };
                (tally, verified, leftover)
            })
        });
    eprintln!("drop-in-flight: {tally:?}");
    assert_eq!(tally.rounds, VICTIMS * VICTIM_ROUNDS);
    assert_eq!(
        tally.data_survived + tally.data_taken_by_orphan,
        tally.rounds
    );
    assert_eq!(verified, CHECKERS * CHECKER_ROUNDS);
    assert_eq!(
        leftover, 0,
        "dropped reads whose parked buffers were never released"
    );
}

// ---------------------------------------------------------------------------------------------
// 2. Shutdown with operations pending
// ---------------------------------------------------------------------------------------------

#[test]
fn dropping_a_runtime_with_ops_pending_cancels_them_promptly_and_closes_their_fds() {
    for ring_entries in [8, 256] {
        let (elapsed, peers, submitted, completed) =
            with_deadline("shutdown-pending", Duration::from_secs(60), move || {
                let rt = runtime(ring_entries);
                let pairs: Vec<(UnixStream, UnixStream)> =
                    (0..200).map(|_| UnixStream::pair().unwrap()).collect();
                let mut peers = Vec::new();
                let mut silent = Vec::new();
                let started = Rc::new(Cell::new(0usize));
                let completed = Rc::new(Cell::new(0usize));
                rt.block_on(async {
                    for (mine, peer) in pairs {
                        peers.push(peer);
                        let mine = Rc::new(mine);
                        let started = started.clone();
                        let completed = completed.clone();
                        // Detached: the JoinHandle is dropped, the task lives in the runtime.
                        drop(spawn(async move {
                            started.set(started.get() + 1);
                            let _ = read_at(mine, Vec::with_capacity(512), 0).await;
                            completed.set(completed.get() + 1);
                        }));
                    }
                    for _ in 0..50 {
                        drop(spawn(sleep(Duration::from_secs(3600))));
                    }
                    // Writes stuck on sockets whose peers never read. Writes are not cancelled
                    // when dropped, so only the shutdown's cancel-everything can end them.
                    for _ in 0..4 {
                        let (mine, peer) = UnixStream::pair().unwrap();
                        silent.push(peer);
                        // Fill the socket's buffer so the next write has to wait.
                        mine.set_nonblocking(true).unwrap();
                        while (&mine).write(&[7u8; 65536]).is_ok() {}
                        let mine = Rc::new(mine);
                        let completed = completed.clone();
                        drop(spawn(async move {
                            let bufs = vec![Bytes::from_static(b"stuck")];
                            let _ = writev_at(mine, bufs, 0, 0).await;
                            completed.set(completed.get() + 1);
                        }));
                    }
                    // Let every task run and submit its operation.
                    sleep(Duration::from_millis(20)).await;
                });
                // Some reads get their data now: their completions are pending in the kernel
                // (not reaped) when the shutdown cancels everything.
                for peer in peers.iter_mut().take(20) {
                    peer.write_all(b"late").unwrap();
                }
                let start = Instant::now();
                drop(rt);
                let elapsed = start.elapsed();
                drop(silent);
                (elapsed, peers, started.get(), completed.get())
            });
        assert_eq!(submitted, 200);
        assert_eq!(completed, 0, "an operation that cannot complete completed");
        assert!(
            elapsed < Duration::from_secs(3),
            "ring of {ring_entries}: dropping the runtime took {elapsed:?}"
        );
        // Every socket the tasks owned was closed once its read's completion arrived: the peer
        // sees EOF (or a reset, where the socket was closed with the "late" bytes unread); a
        // leaked socket would make this read time out.
        for (i, mut peer) in peers.into_iter().enumerate() {
            peer.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let mut buf = [0u8; 16];
            match peer.read(&mut buf) {
                Ok(0) => {}
                Err(e) if i < 20 && e.kind() == std::io::ErrorKind::ConnectionReset => {}
                other => panic!("peer {i}: expected EOF, got {other:?}: socket leaked?"),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 3. A cancel storm
// ---------------------------------------------------------------------------------------------

const STORM: usize = 12_000;
const STORM_WRITE_BASE: u64 = 1 << 20;
const RECORD: usize = 16;

fn storm_record(i: usize) -> Vec<u8> {
    let mut record = [0u8; RECORD];
    record[..8].copy_from_slice(&(i as u64).to_le_bytes());
    record[8..].copy_from_slice(&(!(i as u64)).to_le_bytes());
    record.to_vec()
}

#[test]
fn a_cancel_storm_leaves_the_runtime_consistent() {
    let (writes, drop_time) = with_deadline("cancel-storm", Duration::from_secs(60), || {
        // A small ring, so the storm's submissions and cancels overflow the SQ.
        let rt = runtime(32);
        let file = Rc::new(tempfile::tempfile().unwrap());
        let prefill = pattern(7, STORM_WRITE_BASE as usize);
        file.write_all_at(&prefill, 0).unwrap();
        let writes = rt.block_on(async {
            let (sock, mut peer) = UnixStream::pair().unwrap();
            let sock = Rc::new(sock);
            let mut writes = 0usize;
            for i in 0..STORM {
                match i % 5 {
                    // A socket read that never completes on its own.
                    0 => {
                        let mut op = pin!(read_at(sock.clone(), Vec::with_capacity(64), 0));
                        assert!(poll_once(op.as_mut()).await.is_pending());
                    }
                    // A long kernel timeout.
                    1 => {
                        let mut op = pin!(sleep(Duration::from_secs(3600)));
                        assert!(poll_once(op.as_mut()).await.is_pending());
                    }
                    // A file read that completes at once: it is often done (or done in the
                    // kernel, not yet reaped) when it is dropped and cancelled.
                    2 => {
                        let pos = (i * 97 % (STORM_WRITE_BASE as usize - 256)) as u64;
                        let mut op = pin!(read_at(file.clone(), Vec::with_capacity(256), pos));
                        assert!(poll_once(op.as_mut()).await.is_pending());
                    }
                    // A write dropped in flight: never cancelled, so it must still land.
                    3 => {
                        let pos = STORM_WRITE_BASE + (i * RECORD) as u64;
                        let bufs = vec![Bytes::from(storm_record(i))];
                        let mut op = pin!(write_all_at(file.clone(), bufs, pos));
                        assert!(poll_once(op.as_mut()).await.is_pending());
                        writes += 1;
                    }
                    // An operation dropped before its first poll: never submitted at all.
                    _ => drop(read_at(sock.clone(), Vec::with_capacity(64), 0)),
                }
                if i % 50 == 0 {
                    yield_now().await;
                }
                if i % 1000 == 0 {
                    // Some drops land on completed-but-not-taken slots.
                    let mut op = pin!(read_at(file.clone(), Vec::with_capacity(64), 0));
                    assert!(poll_once(op.as_mut()).await.is_pending());
                    sleep(Duration::from_millis(1)).await;
                }
            }
            // Every dropped operation's completion arrives and frees what it parked.
            let settled = wait_until(Duration::from_secs(5), || {
                Rc::strong_count(&sock) == 1 && Rc::strong_count(&file) == 1
            })
            .await;
            assert!(
                settled,
                "parked handles never released: socket {} file {}",
                Rc::strong_count(&sock),
                Rc::strong_count(&file)
            );

            // The runtime still serves correct reads and writes.
            peer.write_all(b"after the storm").unwrap();
            let (result, _, buf) = read_at(sock.clone(), Vec::with_capacity(64), 0).await;
            assert_eq!(&buf[..result.unwrap()], b"after the storm");
            for i in (3..STORM).step_by(5) {
                let pos = STORM_WRITE_BASE + (i * RECORD) as u64;
                let back = read_exact_at(file.clone(), RECORD, pos).await.unwrap();
                assert_eq!(
                    back,
                    storm_record(i),
                    "write {i} dropped in flight was lost"
                );
            }
            let head = read_exact_at(file.clone(), 4096, 0).await.unwrap();
            assert!(head == prefill[..4096], "prefix of the file changed");
            let fresh = Bytes::from(pattern(99, 10_000));
            let (result, _, _) = write_all_at(file.clone(), vec![fresh.clone()], 12_345).await;
            result.map_err(|(e, _)| e).unwrap();
            let back = read_exact_at(file.clone(), fresh.len(), 12_345)
                .await
                .unwrap();
            assert!(back == fresh[..]);
            writes
        });
        let start = Instant::now();
        drop(rt);
        (writes, start.elapsed())
    });
    assert_eq!(writes, STORM / 5);
    assert!(
        drop_time < Duration::from_secs(3),
        "shutdown took {drop_time:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// 4. Cross-thread wake-ups
// ---------------------------------------------------------------------------------------------

const PINGS: u64 = 10_000;

/// How the thread on the other side answers.
#[derive(Clone, Copy, Debug)]
enum Ponger {
    /// Blocks on a std channel: the runtime is usually parked in the kernel when woken.
    Blocking,
    /// Spins, then waits a varying few microseconds before answering, so its wake-ups land all
    /// over the runtime's path from "nothing to do" to "parked in io_uring_enter".
    Spinning,
}

/// A std thread that answers each ping `i` with `i + 1` in `mailbox`. Returns how many it sent.
fn start_ponger(
    mode: Ponger,
    mailbox: Arc<Mailbox>,
) -> (impl Fn(u64), std::thread::JoinHandle<u64>) {
    let (tx, rx) = mpsc::channel::<u64>();
    let flag = Arc::new(AtomicU64::new(0));
    let thread_flag = flag.clone();
    let thread = std::thread::spawn(move || {
        let mut answered = 0;
        match mode {
            Ponger::Blocking => {
                while let Ok(ping) = rx.recv() {
                    mailbox.put(ping + 1);
                    answered += 1;
                }
            }
            Ponger::Spinning => {
                let mut expect = 1u64;
                let mut spins = 0u64;
                let mut last_progress = Instant::now();
                loop {
                    let seen = thread_flag.load(Ordering::Acquire);
                    if seen == u64::MAX {
                        break;
                    }
                    if seen != expect {
                        spins += 1;
                        if spins.is_multiple_of(1024) {
                            // Do not spin forever behind a failed or hung test.
                            if Arc::strong_count(&thread_flag) == 1
                                || last_progress.elapsed() > Duration::from_secs(60)
                            {
                                break;
                            }
                            std::thread::yield_now();
                        }
                        std::hint::spin_loop();
                        continue;
                    }
                    last_progress = Instant::now();
                    // Wait 0 to ~4000 spin hints (a few microseconds) before answering.
                    let delay = (expect.wrapping_mul(0x9E37_79B9) >> 7) % 4096;
                    for _ in 0..delay {
                        std::hint::spin_loop();
                    }
                    mailbox.put(expect); // ping `expect - 1` gets `expect`
                    answered += 1;
                    expect += 1;
                }
            }
        }
        answered
    });
    let ping = move |i: u64| match mode {
        Ponger::Blocking => {
            if i == u64::MAX {
                return; // closing: dropping `tx` ends the thread
            }
            tx.send(i).unwrap()
        }
        // The spinning thread sees ping `i` as flag value `i + 1` (0 means none yet) and the
        // closing ping `u64::MAX` as itself.
        Ponger::Spinning => flag.store(i.saturating_add(1), Ordering::Release),
    };
    (ping, thread)
}

/// Sends `PINGS` pings and awaits every answer; returns how many answers came back in order.
async fn ping_pong(ping: &dyn Fn(u64), mailbox: &Mailbox) -> u64 {
    let mut received = 0;
    for i in 0..PINGS {
        ping(i);
        let answer = mailbox.take().await;
        assert_eq!(answer, i + 1, "answer out of order");
        received += 1;
    }
    received
}

fn ping_pong_in_block_on(mode: Ponger) {
    let (received, answered) =
        with_deadline("ping-pong-main", Duration::from_secs(30), move || {
            let rt = runtime(256);
            let mailbox = Arc::new(Mailbox::default());
            let (ping, thread) = start_ponger(mode, mailbox.clone());
            let received = rt.block_on(ping_pong(&ping, &mailbox));
            ping(u64::MAX);
            drop(ping);
            (received, thread.join().unwrap())
        });
    assert_eq!(received, PINGS);
    assert_eq!(answered, PINGS);
}

#[test]
fn cross_thread_ping_pong_with_the_block_on_future_blocking() {
    ping_pong_in_block_on(Ponger::Blocking);
}

#[test]
fn cross_thread_ping_pong_with_the_block_on_future_spinning() {
    ping_pong_in_block_on(Ponger::Spinning);
}

#[test]
fn cross_thread_ping_pong_with_spawned_tasks_and_io_in_between() {
    const PAIRS: usize = 3;
    let (received, answered, ticks) =
        with_deadline("ping-pong-tasks", Duration::from_secs(60), || {
            let rt = runtime(16);
            let mut threads = Vec::new();
            let received = rt.block_on(async {
                let mut handles = Vec::new();
                for pair in 0..PAIRS {
                    let mailbox = Arc::new(Mailbox::default());
                    let mode = if pair == 0 {
                        Ponger::Spinning
                    } else {
                        Ponger::Blocking
                    };
                    let (ping, thread) = start_ponger(mode, mailbox.clone());
                    threads.push(thread);
                    handles.push(spawn(async move {
                        let received = ping_pong(&ping, &mailbox).await;
                        ping(u64::MAX);
                        received
                    }));
                }
                // Timers and file I/O keep the ring busy while the wake-ups come in.
                let done = Rc::new(Cell::new(false));
                let ticker = {
                    let done = done.clone();
                    spawn(async move {
                        let file = Rc::new(tempfile::tempfile().unwrap());
                        let mut ticks = 0u64;
                        while !done.get() {
                            sleep(Duration::from_micros(300)).await;
                            let data = Bytes::from(pattern(ticks, 64));
                            let (r, _, _) =
                                write_all_at(file.clone(), vec![data.clone()], ticks * 64).await;
                            r.map_err(|(e, _)| e).unwrap();
                            let back = read_exact_at(file.clone(), 64, ticks * 64).await.unwrap();
                            assert!(back == data[..]);
                            ticks += 1;
                        }
                        ticks
                    })
                };
                let mut received = 0;
                for handle in handles {
                    received += handle.await;
                }
                done.set(true);
                (received, ticker.await)
            });
            let answered: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
            (received.0, answered, received.1)
        });
    eprintln!("ping-pong-tasks: {received} answers, {ticks} I/O ticks meanwhile");
    assert_eq!(received, PINGS * PAIRS as u64);
    assert_eq!(answered, PINGS * PAIRS as u64);
}

/// Tasks that were ready but not yet polled when `block_on` returned must still run in the next
/// `block_on` (their wake-up was consumed; nothing will wake them again).
#[test]
fn tasks_still_queued_when_block_on_returns_run_in_the_next_block_on() {
    let ran = with_deadline("ready-across-block-on", Duration::from_secs(30), || {
        let rt = runtime(256);
        let ran = Rc::new(Cell::new(0usize));
        let handles: Vec<JoinHandle<()>> = rt.block_on(async {
            let handles = (0..1000)
                .map(|_| {
                    let ran = ran.clone();
                    spawn(async move { ran.set(ran.get() + 1) })
                })
                .collect();
            // Return as soon as some (not all) of them have run.
            poll_fn(|cx| {
                if ran.get() > 0 {
                    Poll::Ready(())
                } else {
                    cx.waker().wake_by_ref();
                    Poll::Pending
                }
            })
            .await;
            handles
        });
        rt.block_on(async {
            for handle in handles {
                handle.await;
            }
        });
        ran.get()
    });
    assert_eq!(ran, 1000);
}

// ---------------------------------------------------------------------------------------------
// 5. A tiny ring flooded with submissions
// ---------------------------------------------------------------------------------------------

const FLOOD_TASKS: usize = 2000;
const FLOOD_RECORD: usize = 512;

fn flood_record(i: usize) -> Vec<u8> {
    pattern(1_000_000 + i as u64, FLOOD_RECORD)
}

#[test]
fn a_tiny_ring_flooded_with_writes_and_sleeps_completes_them_all() {
    let (completed, contents) = with_deadline("tiny-ring-flood", Duration::from_secs(60), || {
        let rt = runtime(8);
        let file = tempfile::tempfile().unwrap();
        let copy = file.try_clone().unwrap();
        let completed = rt.block_on(async move {
            let file = Rc::new(file);
            let handles: Vec<JoinHandle<usize>> = (0..FLOOD_TASKS)
                .map(|i| {
                    let file = file.clone();
                    spawn(async move {
                        if i % 2 == 0 {
                            sleep(Duration::from_millis((i % 5) as u64)).await;
                        }
                        let data = Bytes::from(flood_record(i));
                        // Three iovecs per write.
                        let bufs = vec![data.slice(..100), data.slice(100..101), data.slice(101..)];
                        let pos = (i * FLOOD_RECORD) as u64;
                        let (result, file, _) = write_all_at(file, bufs, pos).await;
                        result.map_err(|(e, _)| e).expect("flood write");
                        let file = if i % 200 == 0 {
                            let (result, file) = fdatasync(file).await;
                            result.expect("fdatasync");
                            file
                        } else {
                            file
                        };
                        sleep(Duration::from_micros((i % 7) as u64 * 100)).await;
                        let back = read_exact_at(file, FLOOD_RECORD, pos).await.unwrap();
                        assert!(back == data[..], "record {i} read back wrong");
                        1
                    })
                })
                .collect();
            let mut completed = 0;
            for handle in handles {
                completed += handle.await;
            }
            completed
        });
        drop(rt);
        let mut contents = Vec::new();
        (&copy).read_to_end(&mut contents).unwrap();
        (completed, contents)
    });
    assert_eq!(completed, FLOOD_TASKS);
    assert_eq!(contents.len(), FLOOD_TASKS * FLOOD_RECORD);
    for (i, record) in contents.chunks(FLOOD_RECORD).enumerate() {
        assert!(record == flood_record(i), "record {i} on disk is wrong");
    }
}

/// With 8 SQ entries and far more long operations queued, a short timer and a cross-thread
/// wake-up must still get through, and shutdown must still cancel everything.
#[test]
fn on_a_tiny_ring_short_timers_and_wake_ups_get_past_long_operations() {
    let (sleep_took, wake_took, drop_took) =
        with_deadline("tiny-ring-long-ops", Duration::from_secs(60), || {
            let rt = runtime(8);
            let mailbox = Arc::new(Mailbox::default());
            let pairs: Vec<_> = (0..100).map(|_| UnixStream::pair().unwrap()).collect();
            let (sleep_took, wake_took) = rt.block_on(async {
                for _ in 0..100 {
                    drop(spawn(sleep(Duration::from_secs(3600))));
                }
                for (mine, _) in &pairs {
                    let mine = Rc::new(mine.try_clone().unwrap());
                    drop(spawn(read_at(mine, Vec::with_capacity(64), 0)));
                }
                // Let them all submit first.
                yield_now().await;
                yield_now().await;
                let start = Instant::now();
                sleep(Duration::from_millis(10)).await;
                let sleep_took = start.elapsed();

                let remote = mailbox.clone();
                let thread = std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(20));
                    remote.put(42);
                });
                let start = Instant::now();
                assert_eq!(mailbox.take().await, 42);
                let wake_took = start.elapsed();
                thread.join().unwrap();
                (sleep_took, wake_took)
            });
            let start = Instant::now();
            drop(rt);
            (sleep_took, wake_took, start.elapsed())
        });
    assert!(
        sleep_took < Duration::from_secs(2),
        "10 ms sleep took {sleep_took:?}"
    );
    assert!(
        wake_took < Duration::from_secs(2),
        "20 ms wake-up took {wake_took:?}"
    );
    assert!(
        drop_took < Duration::from_secs(3),
        "shutdown took {drop_took:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Vectored writes beyond IOV_MAX
// ---------------------------------------------------------------------------------------------

/// `count` buffers of varying lengths (some empty), some slices of one shared allocation.
fn many_buffers(count: usize) -> Vec<Bytes> {
    let shared = Bytes::from(pattern(5, 64 * 1024));
    (0..count)
        .map(|i| {
            let len = (i * 7919) % 98; // 0..=97, zero now and then
            if i % 3 == 0 {
                let start = (i * 31) % (shared.len() - len);
                shared.slice(start..start + len)
            } else {
                Bytes::from(pattern(10_000 + i as u64, len))
            }
        })
        .collect()
}

#[test]
fn write_all_at_writes_more_buffers_than_iov_max_in_order() {
    assert_eq!(IOV_MAX, 1024);
    const BASE: u64 = 4096 + 3;
    let bufs = many_buffers(3 * IOV_MAX + 17);
    assert!(bufs.iter().any(|b| b.is_empty()));
    let expected: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
    let file = tempfile::tempfile().unwrap();
    let copy = file.try_clone().unwrap();
    let sent = bufs.clone();
    let (returned, via_ring) = with_deadline("iov-max", Duration::from_secs(30), move || {
        let rt = runtime(256);
        rt.block_on(async move {
            let total: usize = sent.iter().map(Bytes::len).sum();
            let (result, file, returned) = write_all_at(Rc::new(file), sent, BASE).await;
            result.map_err(|(e, _)| e).expect("write_all_at");
            let via_ring = read_exact_at(file, total, BASE).await.unwrap();
            (returned, via_ring)
        })
    });
    assert_eq!(
        returned, bufs,
        "write_all_at must hand its buffers back unchanged"
    );
    assert!(via_ring == expected, "read back through the ring differs");
    let mut contents = Vec::new();
    (&copy).read_to_end(&mut contents).unwrap();
    assert_eq!(contents.len(), BASE as usize + expected.len());
    assert!(contents[..BASE as usize].iter().all(|&b| b == 0));
    assert!(
        contents[BASE as usize..] == expected[..],
        "file content differs"
    );
}

#[test]
fn writev_at_takes_at_most_iov_max_buffers_and_honours_skip() {
    let bufs = many_buffers(2 * IOV_MAX);
    let all: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
    // Skip into the middle of a buffer.
    let skip = bufs.iter().take(10).map(Bytes::len).sum::<usize>() + 1;
    // After the skip, the first IOV_MAX non-empty pieces bound what one WRITEV may write.
    let mut left = skip;
    let mut pieces = 0;
    let mut bound = 0;
    for buf in &bufs {
        if left >= buf.len() {
            left -= buf.len();
            continue;
        }
        bound += buf.len() - left;
        left = 0;
        pieces += 1;
        if pieces == IOV_MAX {
            break;
        }
    }
    assert!(
        bound < all.len() - skip,
        "the test needs more than IOV_MAX pieces"
    );
    let file = tempfile::tempfile().unwrap();
    let copy = file.try_clone().unwrap();
    let sent = bufs.clone();
    let written = with_deadline("writev-iov-max", Duration::from_secs(30), move || {
        runtime(256).block_on(async move {
            let (result, _, _) = writev_at(Rc::new(file), sent, skip, 0).await;
            result.expect("writev_at")
        })
    });
    assert!(
        written > 0 && written <= bound,
        "wrote {written}, bound {bound}"
    );
    let mut contents = Vec::new();
    (&copy).read_to_end(&mut contents).unwrap();
    assert_eq!(contents.len(), written);
    assert!(contents[..] == all[skip..skip + written]);
}

// ---------------------------------------------------------------------------------------------
// An operation must only ever touch the ring that runs it
// ---------------------------------------------------------------------------------------------

/// Two runtimes on one thread (allowed: only nesting their `block_on`s is not) hand out the same
/// slot index and generation to their first operations. A read started on runtime A and dropped
/// while B runs must not orphan (or cancel) B's operation in that slot, nor hand A's buffer to B
/// to free while A's kernel read may still write into it.
#[test]
fn an_operation_dropped_under_another_runtime_leaves_that_runtime_alone() {
    let (b_read, a_read) = with_deadline("cross-runtime", Duration::from_secs(30), || {
        let a = runtime(256);
        let b = runtime(256);
        let (sock_a, mut peer_a) = UnixStream::pair().unwrap();
        let (sock_b, mut peer_b) = UnixStream::pair().unwrap();
        let (sock_a, sock_b) = (Rc::new(sock_a), Rc::new(sock_b));

        let mut read_a = Box::pin(read_at(sock_a.clone(), Vec::with_capacity(64), 0));
        a.block_on(async { assert!(poll_once(read_a.as_mut()).await.is_pending()) });

        let b_read = b.block_on(async {
            let mut read_b = pin!(read_at(sock_b.clone(), Vec::with_capacity(64), 0));
            assert!(poll_once(read_b.as_mut()).await.is_pending());
            drop(read_a); // A's read, still in flight on A's ring
            peer_b.write_all(b"for b").unwrap();
            let (result, _, buf) = read_b.await;
            buf[..result.unwrap()].to_vec()
        });

        // A keeps working, and its dropped read never comes back to life.
        let a_read = a.block_on(async {
            peer_a.write_all(b"for a").unwrap();
            let mut got = Vec::new();
            // The abandoned read may take these bytes; all we ask is that A does not break.
            if let Some((result, _, buf)) = timeout(
                Duration::from_millis(200),
                read_at(sock_a.clone(), Vec::with_capacity(64), 0),
            )
            .await
            {
                got = buf[..result.unwrap()].to_vec();
            }
            got
        });
        drop(b);
        drop(a);
        (b_read, a_read)
    });
    assert_eq!(b_read, b"for b");
    assert!(a_read.is_empty() || a_read == b"for a", "{a_read:?}");
}

/// An accept whose completion was reaped but never taken (its future is dropped before the next
/// poll) owns the new connection: dropping it must close that socket, not leak it.
#[test]
fn an_accept_dropped_after_its_completion_arrived_closes_the_new_socket() {
    let outcome = with_deadline("accept-done-drop", Duration::from_secs(30), || {
        let rt = runtime(256);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let listener = Rc::new(listener);
        rt.block_on(async {
            let mut pending = Box::pin(accept(listener.clone()));
            assert!(poll_once(pending.as_mut()).await.is_pending());
            let mut client = std::net::TcpStream::connect(addr).unwrap();
            // The ring reaps the accept's completion meanwhile; the accept is not polled again.
            sleep(Duration::from_millis(50)).await;
            drop(pending);
            client
                .set_read_timeout(Some(Duration::from_secs(2)))
                .unwrap();
            let mut buf = [0u8; 8];
            // EOF if the accepted socket was closed; a leaked one makes this read time out.
            client.read(&mut buf).map_err(|e| e.kind())
        })
    });
    assert_eq!(outcome, Ok(0), "the accepted socket was leaked");
}

/// An aborted task stops at once: a sleeping ticker never ticks again and its sleep is dropped
/// (cancelled), and a task aborted before its first poll never runs. A detached one (its handle dropped) keeps running: the control that shows the count can
/// move.
#[test]
fn an_aborted_task_never_runs_again() {
    with_deadline("abort", Duration::from_secs(30), || {
        let rt = runtime(64);
        rt.block_on(async {
            let ticks = Rc::new(std::cell::Cell::new(0u32));
            let ticker = |ticks: Rc<std::cell::Cell<u32>>| async move {
                loop {
                    sleep(Duration::from_millis(1)).await;
                    ticks.set(ticks.get() + 1);
                }
            };
            let aborted = spawn(ticker(ticks.clone()));
            sleep(Duration::from_millis(20)).await;
            let seen = ticks.get();
            assert!(seen > 0, "the ticker ran before the abort");
            aborted.abort();
            sleep(Duration::from_millis(30)).await;
            assert_eq!(ticks.get(), seen, "no tick after the abort");

            let never = Rc::new(std::cell::Cell::new(false));
            let flag = never.clone();
            spawn(async move { flag.set(true) }).abort();
            sleep(Duration::from_millis(5)).await;
            assert!(!never.get(), "aborted before its first poll: never ran");

            let detached_ticks = Rc::new(std::cell::Cell::new(0u32));
            drop(spawn(ticker(detached_ticks.clone())));
            sleep(Duration::from_millis(20)).await;
            let first = detached_ticks.get();
            sleep(Duration::from_millis(20)).await;
            assert!(
                detached_ticks.get() > first,
                "a detached task keeps running"
            );
        });
    });
}
