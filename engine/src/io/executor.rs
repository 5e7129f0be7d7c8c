//! The shard's single-threaded executor: tasks, the run loop, and parking on the ring.
//!
//! One [`Runtime`] per shard thread; tasks spawned on it never leave that thread (they are not
//! `Send`). Wakers are `Send` (the standard library requires it): a wake from another thread
//! queues the task id on a channel and, if the shard is parked, writes its eventfd, whose read is
//! kept armed in the ring before every park.
//!
//! Invariants:
//! - A pass of the run loop polls a bounded number of tasks before it reaps completions, so no
//!   task starves I/O.
//! - Parking blocks in `io_uring_enter` only after the ready queue was seen empty, and the
//!   `block_on` future unwoken, with `parked` already set (senders enqueue first, then check
//!   `parked`): no wake-up is lost.
//! - A task id taken off the channel is polled, or handed back to the channel when `block_on`
//!   returns: its wake-up was consumed, so nothing else would ever poll that task again.
//! - On drop, tasks are dropped first (their in-flight operations become orphans and are
//!   cancelled where allowed), then the ring is drained until nothing is in flight; if the drain
//!   times out, the ring and every parked buffer are leaked rather than freed.

use std::cell::{Cell, RefCell, UnsafeCell};
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use super::ring::Ring;

/// Tasks polled per pass before completions are reaped again.
const TASKS_PER_PASS: usize = 256;
/// Task id of the future given to `block_on`.
const MAIN_TASK: usize = usize::MAX;
/// How long shutdown waits for cancelled operations to complete.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);

thread_local! {
    static CONTEXT: RefCell<Option<Rc<Core>>> = const { RefCell::new(None) };
}

/// Runs `f` with this thread's ring. Panics outside a runtime: an I/O operation needs one.
pub(crate) fn with_ring<R>(f: impl FnOnce(&mut Ring) -> R) -> R {
    CONTEXT.with(|context| {
        let context = context.borrow();
        let core = context
            .as_ref()
            .expect("io operation outside a Ringtail runtime");
        let mut ring = core.ring.borrow_mut();
        f(&mut ring)
    })
}

/// True when this thread runs a runtime that can still take orphaned operations.
pub(crate) fn runtime_present() -> bool {
    CONTEXT
        .try_with(|context| context.borrow().is_some())
        .unwrap_or(false)
}

/// State shared with wakers, which may run on any thread.
struct Shared {
    ready_tx: mpsc::Sender<usize>,
    parked: AtomicBool,
    eventfd: OwnedFd,
}

impl Shared {
    fn schedule(&self, id: usize) {
        // The executor may be gone (a late wake after shutdown): nothing to do then.
        if self.ready_tx.send(id).is_ok() && self.parked.load(Ordering::SeqCst) {
            let one: u64 = 1;
            // SAFETY: writes 8 bytes from a live u64 to an eventfd this struct owns.
            unsafe {
                libc::write(
                    self.eventfd.as_raw_fd(),
                    (&one as *const u64).cast(),
                    std::mem::size_of::<u64>(),
                )
            };
        }
    }
}

struct TaskWaker {
    id: usize,
    scheduled: AtomicBool,
    shared: Arc<Shared>,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // SeqCst: pairs with `park`, which stores `parked` and then loads the `block_on`
        // future's `scheduled` (a store-then-load on each side needs SeqCst on all four).
        if !self.scheduled.swap(true, Ordering::SeqCst) {
            self.shared.schedule(self.id);
        }
    }
}

struct Task {
    future: Option<Pin<Box<dyn Future<Output = ()>>>>,
    waker: Arc<TaskWaker>,
}

struct Core {
    ring: RefCell<Ring>,
    tasks: RefCell<Vec<Option<Task>>>,
    free_tasks: RefCell<Vec<usize>>,
    shared: Arc<Shared>,
    ready_rx: mpsc::Receiver<usize>,
    /// Where the kernel writes the eventfd counter; never read by us.
    wake_buf: Box<UnsafeCell<[u8; 8]>>,
    /// When the runtime was built, and how long it has spent blocked in `io_uring_enter`
    /// waiting for work (the rest of its life it was busy: polling, handling, submitting).
    started: Instant,
    parked: Cell<Duration>,
    parks: Cell<u64>,
}

/// What a runtime has done since it was built: [`runtime_stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RuntimeStats {
    /// Time since the runtime was built.
    pub uptime: Duration,
    /// Of that, time blocked in `io_uring_enter` waiting for a completion or a wake-up.
    pub parked: Duration,
    /// How many times it parked.
    pub parks: u64,
    /// Operations submitted to the ring (including cancels and wake-up reads).
    pub submissions: u64,
    /// Completions reaped.
    pub completions: u64,
}

impl RuntimeStats {
    /// Time not parked: polling tasks, handling completions, submitting.
    pub fn busy(&self) -> Duration {
        self.uptime.saturating_sub(self.parked)
    }
}

/// The calling thread's runtime's counters; None outside a runtime.
pub fn runtime_stats() -> Option<RuntimeStats> {
    CONTEXT.with(|context| {
        let context = context.borrow();
        let core = context.as_ref()?;
        let (submissions, completions) = core.ring.borrow().counts();
        Some(RuntimeStats {
            uptime: core.started.elapsed(),
            parked: core.parked.get(),
            parks: core.parks.get(),
            submissions,
            completions,
        })
    })
}

/// A shard's runtime: one io_uring and one executor, for one thread.
pub struct Runtime {
    core: Rc<Core>,
}

/// Settings for [`Runtime::new`].
#[derive(Clone, Copy, Debug)]
pub struct RuntimeConfig {
    /// Submission queue entries (the completion queue gets four times as many).
    pub ring_entries: u32,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig { ring_entries: 256 }
    }
}

impl Runtime {
    /// Builds a runtime for the calling thread. Fails with a clear message on kernels whose
    /// io_uring lacks an operation Ringtail needs.
    pub fn new(config: RuntimeConfig) -> io::Result<Runtime> {
        let ring = Ring::new(config.ring_entries)?;
        // SAFETY: plain syscall; the returned fd is checked and then owned.
        let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a new fd that nothing else owns.
        let eventfd = unsafe { OwnedFd::from_raw_fd(raw) };
        let (ready_tx, ready_rx) = mpsc::channel();
        let shared = Arc::new(Shared {
            ready_tx,
            parked: AtomicBool::new(false),
            eventfd,
        });
        Ok(Runtime {
            core: Rc::new(Core {
                ring: RefCell::new(ring),
                tasks: RefCell::new(Vec::new()),
                free_tasks: RefCell::new(Vec::new()),
                shared,
                ready_rx,
                wake_buf: Box::new(UnsafeCell::new([0; 8])),
                started: Instant::now(),
                parked: Cell::new(Duration::ZERO),
                parks: Cell::new(0),
            }),
        })
    }

    /// Runs this runtime's io-wq workers (punted writes, splices) on `cpus` only: with a
    /// pinned shard and its own core, its kernel-side copies run where the bytes are cached.
    /// Without a call, the workers inherit the affinity of the thread that made the ring.
    pub fn pin_workers(&self, cpus: &[usize]) -> io::Result<()> {
        self.core.ring.borrow().pin_workers(cpus)
    }

    /// Runs `future` to completion on this thread, with every task spawned meanwhile.
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        let _guard = ContextGuard::enter(self.core.clone());
        let main_waker = Arc::new(TaskWaker {
            id: MAIN_TASK,
            scheduled: AtomicBool::new(true),
            shared: self.core.shared.clone(),
        });
        let waker = Waker::from(main_waker.clone());
        let mut future = std::pin::pin!(future);
        let mut unpolled = Unpolled {
            ids: VecDeque::new(),
            shared: &self.core.shared,
        };
        let ready = &mut unpolled.ids;
        loop {
            if main_waker.scheduled.swap(false, Ordering::AcqRel) {
                let mut cx = Context::from_waker(&waker);
                if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
                    return output;
                }
            }
            self.collect_ready(ready);
            let mut polled = 0;
            while let Some(id) = ready.pop_front() {
                if id != MAIN_TASK {
                    self.core.poll_task(id);
                }
                polled += 1;
                if polled == TASKS_PER_PASS {
                    break;
                }
            }
            let reaped = self
                .core
                .ring
                .borrow_mut()
                .submit_and_reap()
                .expect("io_uring_enter failed");
            reaped.wakers.into_iter().for_each(Waker::wake);
            self.collect_ready(ready);
            if !ready.is_empty() || main_waker.scheduled.load(Ordering::Acquire) {
                continue;
            }
            self.park(ready, &main_waker);
        }
    }

    fn collect_ready(&self, ready: &mut VecDeque<usize>) {
        while let Ok(id) = self.core.ready_rx.try_recv() {
            if id != MAIN_TASK {
                ready.push_back(id);
            }
        }
    }

    fn park(&self, ready: &mut VecDeque<usize>, main_waker: &TaskWaker) {
        let core = &self.core;
        {
            let mut ring = core.ring.borrow_mut();
            // SAFETY: `wake_buf` is a heap allocation owned by the core, which outlives the ring's
            // drain (see `Drop for Runtime`).
            unsafe { ring.arm_wake(core.shared.eventfd.as_raw_fd(), core.wake_buf.get().cast()) };
        }
        core.shared.parked.store(true, Ordering::SeqCst);
        self.collect_ready(ready);
        // The `block_on` future's wake-ups are not queued in `ready` (`collect_ready` drops its
        // id), so check its flag too: a wake that came from another thread after the last check
        // in `block_on` but before `parked` was set wrote no eventfd, and blocking now would
        // sleep through it.
        if ready.is_empty() && !main_waker.scheduled.load(Ordering::SeqCst) {
            let parked_at = Instant::now();
            let reaped = core
                .ring
                .borrow_mut()
                .park(None)
                .expect("io_uring_enter failed");
            core.parked.set(core.parked.get() + parked_at.elapsed());
            core.parks.set(core.parks.get() + 1);
            // Not parked any more: the wakes below need no eventfd write.
            core.shared.parked.store(false, Ordering::SeqCst);
            reaped.wakers.into_iter().for_each(Waker::wake);
        }
        core.shared.parked.store(false, Ordering::SeqCst);
    }
}

/// Task ids `block_on` took off the channel but has not polled yet. Their wake-ups were consumed,
/// so when `block_on` returns (or unwinds) they go back on the channel for the next `block_on`;
/// dropped, those tasks would never be polled again.
struct Unpolled<'a> {
    ids: VecDeque<usize>,
    shared: &'a Shared,
}

impl Drop for Unpolled<'_> {
    fn drop(&mut self) {
        for id in self.ids.drain(..) {
            // Cannot fail: the receiver lives in the same `Core` as `shared`.
            let _ = self.shared.ready_tx.send(id);
        }
    }
}

impl Core {
    fn poll_task(&self, id: usize) {
        let (mut future, waker) = {
            let mut tasks = self.tasks.borrow_mut();
            let Some(Some(task)) = tasks.get_mut(id) else {
                return; // finished task, stale wake-up
            };
            let Some(future) = task.future.take() else {
                return;
            };
            task.waker.scheduled.store(false, Ordering::Release);
            (future, Waker::from(task.waker.clone()))
        };
        let mut cx = Context::from_waker(&waker);
        let finished = future.as_mut().poll(&mut cx).is_ready();
        let mut tasks = self.tasks.borrow_mut();
        if finished {
            tasks[id] = None;
            drop(tasks);
            drop(future);
            self.free_tasks.borrow_mut().push(id);
        } else if let Some(Some(task)) = tasks.get_mut(id) {
            task.future = Some(future);
        }
    }

    fn spawn(&self, future: Pin<Box<dyn Future<Output = ()>>>) {
        let id = self.free_tasks.borrow_mut().pop();
        let mut tasks = self.tasks.borrow_mut();
        let id = id.unwrap_or_else(|| {
            tasks.push(None);
            tasks.len() - 1
        });
        let waker = Arc::new(TaskWaker {
            id,
            scheduled: AtomicBool::new(true),
            shared: self.shared.clone(),
        });
        tasks[id] = Some(Task {
            future: Some(future),
            waker,
        });
        drop(tasks);
        self.shared.schedule(id);
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        let _guard = ContextGuard::enter(self.core.clone());
        // Futures are dropped with the runtime in context, so their operations are orphaned
        // into the ring (and cancelled) rather than freed.
        let tasks = std::mem::take(&mut *self.core.tasks.borrow_mut());
        drop(tasks);
        let drained = self.core.ring.borrow_mut().drain(DRAIN_LIMIT);
        if !drained {
            // Some operation never completed: the kernel may still write into its buffers, or
            // into `wake_buf`. Leak them all rather than free memory the kernel may touch.
            std::mem::forget(self.core.clone());
        }
    }
}

struct ContextGuard {
    previous: Option<Rc<Core>>,
}

impl ContextGuard {
    fn enter(core: Rc<Core>) -> ContextGuard {
        let previous = CONTEXT.with(|context| context.borrow_mut().replace(core.clone()));
        assert!(
            previous.as_ref().is_none_or(|p| Rc::ptr_eq(p, &core)),
            "a second Ringtail runtime on one thread"
        );
        ContextGuard { previous }
    }
}

impl Drop for ContextGuard {
    fn drop(&mut self) {
        let previous = self.previous.take();
        CONTEXT.with(|context| *context.borrow_mut() = previous);
    }
}

/// The result of a spawned task, awaited through its handle. Dropping the handle detaches the
/// task: it keeps running. To stop a task, call [`JoinHandle::abort`].
pub struct JoinHandle<T> {
    state: Rc<RefCell<JoinState<T>>>,
}

struct JoinState<T> {
    output: Option<T>,
    /// Who awaits the handle.
    waker: Option<Waker>,
    /// The task's own waker, to wake it when aborted.
    task_waker: Option<Waker>,
    aborted: bool,
}

impl<T> JoinHandle<T> {
    /// Stops the task: its future is never polled again and is dropped on the runtime's next
    /// pass (its operations are cancelled as any dropped future's are). Its output, if it had
    /// finished, is dropped too.
    pub fn abort(self) {
        let task_waker = {
            let mut state = self.state.borrow_mut();
            state.aborted = true;
            state.output = None;
            state.task_waker.take()
        };
        if let Some(waker) = task_waker {
            waker.wake();
        }
    }
}

impl<T> Future for JoinHandle<T> {
    type Output = T;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let mut state = self.state.borrow_mut();
        match state.output.take() {
            Some(output) => Poll::Ready(output),
            None => {
                state.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// Spawns a task on this thread's runtime.
pub fn spawn<T: 'static>(future: impl Future<Output = T> + 'static) -> JoinHandle<T> {
    let state = Rc::new(RefCell::new(JoinState {
        output: None,
        waker: None,
        task_waker: None,
        aborted: false,
    }));
    let task_state = state.clone();
    let task = async move {
        let mut future = std::pin::pin!(future);
        let output = std::future::poll_fn(|cx| {
            {
                let mut state = task_state.borrow_mut();
                if state.aborted {
                    return Poll::Ready(None);
                }
                if !state
                    .task_waker
                    .as_ref()
                    .is_some_and(|w| w.will_wake(cx.waker()))
                {
                    state.task_waker = Some(cx.waker().clone());
                }
            } // not borrowed while the task runs: it may abort itself or be awaited
            future.as_mut().poll(cx).map(Some)
        })
        .await;
        let Some(output) = output else {
            return; // aborted: the future is dropped with this task
        };
        let mut state = task_state.borrow_mut();
        state.output = Some(output);
        if let Some(waker) = state.waker.take() {
            waker.wake();
        }
    };
    CONTEXT.with(|context| {
        let context = context.borrow();
        let core = context.as_ref().expect("spawn outside a Ringtail runtime");
        core.spawn(Box::pin(task));
    });
    JoinHandle { state }
}

/// Lets other tasks run once before continuing.
pub async fn yield_now() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
    .await
}
