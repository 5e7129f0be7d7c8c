//! The shard's io_uring instance and its table of in-flight operations.
//!
//! Owned by one shard thread (the ring is built with `SINGLE_ISSUER` and `DEFER_TASKRUN`), reached
//! only through the runtime's thread-local context. This is the only code that calls
//! `io_uring_enter`.
//!
//! Invariants:
//! - `user_data` is `generation << 32 | slot index`; a completion whose generation does not match
//!   its slot is a bug and is asserted against. The two reserved tags ([`CANCEL_TAG`],
//!   [`WAKE_TAG`]) have index `u32::MAX` / `u32::MAX - 1`, which no slot ever gets.
//! - A slot is freed only by its completion (when orphaned) or when its future takes the result,
//!   never when a future is dropped while the kernel still owns the operation: the future's
//!   buffers are parked in the slot (`Orphaned`) until the completion arrives.
//! - `in_flight` counts slots waiting for a completion; shutdown drains until it is zero.
//! - A full submission queue is not an error: entries wait in `overflow` (in order) and are
//!   pushed after the next submit.
//! - A [`SlotRef`] names the ring that issued it. Slot indexes and generations repeat between
//!   rings (every ring starts at index 0, generation 1), so a future carried to another runtime
//!   (a second runtime on the thread, or another thread: `Op` is `Send` when its data is) must not
//!   be resolved against that runtime's slots: polling it there panics, dropping it there leaks
//!   its buffers (its own ring may still be reading or writing them).

use std::any::Any;
use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Waker;
use std::time::Duration;

use io_uring::{cqueue, opcode, squeue, types, IoUring};

/// Tag for ASYNC_CANCEL submissions: their own completions carry nothing we wait for.
pub(crate) const CANCEL_TAG: u64 = u64::MAX;
/// Tag for the executor's eventfd read that wakes a parked shard from another thread.
pub(crate) const WAKE_TAG: u64 = u64::MAX - 1;

/// Source of [`Ring::id`]: unique per process, never reused.
static NEXT_RING_ID: AtomicU64 = AtomicU64::new(1);

/// A handle to one slot: what a future keeps to find its completion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SlotRef {
    pub(crate) index: u32,
    pub(crate) generation: u32,
    /// The [`Ring::id`] of the ring whose slot this is.
    pub(crate) ring: u64,
}

impl SlotRef {
    fn user_data(self) -> u64 {
        (u64::from(self.generation) << 32) | u64::from(self.index)
    }
}

enum Slot {
    Free {
        next_free: Option<u32>,
    },
    Waiting {
        generation: u32,
        waker: Option<Waker>,
    },
    Done {
        generation: u32,
        result: i32,
    },
    /// The future was dropped while the kernel still owned the operation: its buffers and file
    /// descriptors live here until the completion arrives.
    Orphaned {
        generation: u32,
        parked: Box<dyn Any>,
        close_result_fd: bool,
    },
}

/// What `poll_slot` found.
pub(crate) enum SlotPoll {
    Pending,
    Ready { result: i32 },
}

pub(crate) struct Ring {
    /// Distinguishes this ring's slots from another ring's with the same index and generation.
    id: u64,
    uring: IoUring,
    slots: Vec<Slot>,
    free_head: Option<u32>,
    next_generation: u32,
    overflow: VecDeque<squeue::Entry>,
    in_flight: usize,
    /// Reused buffer for reaped completions.
    scratch: Vec<cqueue::Entry>,
    /// Set when the eventfd wake-up read completed and must be armed again before parking.
    pub(crate) wake_armed: bool,
    /// Entries queued and completions reaped, ever (metrics).
    submitted: u64,
    completed: u64,
}

impl Ring {
    pub(crate) fn new(entries: u32) -> io::Result<Ring> {
        let uring = IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .setup_coop_taskrun()
            .setup_cqsize(entries.saturating_mul(4))
            .build(entries)?;
        check_opcodes(&uring)?;
        Ok(Ring {
            id: NEXT_RING_ID.fetch_add(1, Ordering::Relaxed),
            uring,
            slots: Vec::new(),
            free_head: None,
            next_generation: 1,
            overflow: VecDeque::new(),
            in_flight: 0,
            scratch: Vec::new(),
            wake_armed: false,
            submitted: 0,
            completed: 0,
        })
    }

    /// Restricts this ring's io-wq worker threads (which run punted buffered writes and splices)
    /// to `cpus`.
    pub(crate) fn pin_workers(&self, cpus: &[usize]) -> io::Result<()> {
        if let Some(&bad) = cpus.iter().find(|&&c| c >= libc::CPU_SETSIZE as usize) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("no CPU {bad}"),
            ));
        }
        if cpus.is_empty() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "no CPUs given"));
        }
        // SAFETY: cpu_set_t is plain data; CPU_SET writes within it (every cpu checked above).
        let set = unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            for &cpu in cpus {
                libc::CPU_SET(cpu, &mut set);
            }
            set
        };
        self.uring.submitter().register_iowq_aff(&set)
    }

    /// Reserves a slot and queues `entry` tagged with it.
    ///
    /// # Safety
    /// Every pointer in `entry` must stay valid until the slot's completion arrives. Callers
    /// guarantee this by keeping the pointed-to memory in heap allocations that they either hold
    /// until [`Ring::poll_slot`] returns `Ready`, or hand to [`Ring::orphan`].
    pub(crate) unsafe fn submit(&mut self, entry: squeue::Entry) -> SlotRef {
        let slot = self.alloc_slot();
        // SAFETY: forwarded from this function's contract.
        unsafe { self.push(entry.user_data(slot.user_data())) };
        self.in_flight += 1;
        self.submitted += 1;
        slot
    }

    /// Queues an entry whose completion no future waits for (cancel, wake-up read).
    ///
    /// # Safety
    /// As [`Ring::submit`]: pointers in `entry` outlive its completion.
    pub(crate) unsafe fn submit_tagged(&mut self, entry: squeue::Entry) {
        // SAFETY: forwarded from this function's contract.
        unsafe { self.push(entry) };
        self.in_flight += 1;
        self.submitted += 1;
    }

    /// Operations queued and completions reaped since the ring was built (for metrics).
    pub(crate) fn counts(&self) -> (u64, u64) {
        (self.submitted, self.completed)
    }

    unsafe fn push(&mut self, entry: squeue::Entry) {
        if !self.overflow.is_empty() {
            self.overflow.push_back(entry);
            return;
        }
        // SAFETY: the caller guarantees the entry's pointers outlive its completion.
        if unsafe { self.uring.submission().push(&entry) }.is_err() {
            self.overflow.push_back(entry);
        }
    }

    fn alloc_slot(&mut self) -> SlotRef {
        let generation = self.next_generation;
        self.next_generation = self.next_generation.wrapping_add(1).max(1);
        let index = match self.free_head {
            Some(index) => {
                let Slot::Free { next_free } = self.slots[index as usize] else {
                    unreachable!("free list points at a busy slot {index}");
                };
                self.free_head = next_free;
                index
            }
            None => {
                let index = u32::try_from(self.slots.len()).expect("slot table below 2^32");
                assert!(
                    index < u32::MAX - 1,
                    "slot index would collide with a reserved tag"
                );
                self.slots.push(Slot::Free { next_free: None });
                index
            }
        };
        self.slots[index as usize] = Slot::Waiting {
            generation,
            waker: None,
        };
        SlotRef {
            index,
            generation,
            ring: self.id,
        }
    }

    fn free_slot(&mut self, index: u32) {
        self.slots[index as usize] = Slot::Free {
            next_free: self.free_head,
        };
        self.free_head = Some(index);
    }

    /// Takes the result if the operation completed, else records the waker.
    pub(crate) fn poll_slot(&mut self, slot: SlotRef, waker: &Waker) -> SlotPoll {
        assert_eq!(
            slot.ring, self.id,
            "an io operation was polled on a runtime other than the one that started it"
        );
        match &mut self.slots[slot.index as usize] {
            Slot::Waiting {
                generation,
                waker: stored,
            } => {
                assert_eq!(*generation, slot.generation, "stale slot polled");
                match stored {
                    Some(old) if old.will_wake(waker) => {}
                    _ => *stored = Some(waker.clone()),
                }
                SlotPoll::Pending
            }
            Slot::Done { generation, result } => {
                assert_eq!(*generation, slot.generation, "stale slot polled");
                let result = *result;
                self.free_slot(slot.index);
                SlotPoll::Ready { result }
            }
            _ => unreachable!("polled a slot that is free or orphaned"),
        }
    }

    /// Called when a future is dropped before taking its result. If the completion already
    /// arrived the slot is freed and `parked` dropped now; otherwise `parked` (the operation's
    /// buffers and fds) waits in the slot for the completion. Returns true if the operation is
    /// still in flight (and may be cancelled).
    ///
    /// A slot of another ring (the future was dropped under a runtime other than the one that
    /// started it) is not looked up here: that ring's kernel operation may still use `parked`,
    /// and this ring cannot learn when it stops, so `parked` is leaked. Returns false: there is
    /// nothing this ring can cancel.
    pub(crate) fn orphan(
        &mut self,
        slot: SlotRef,
        parked: Box<dyn Any>,
        close_result_fd: bool,
    ) -> bool {
        if slot.ring != self.id {
            std::mem::forget(parked);
            return false;
        }
        match &self.slots[slot.index as usize] {
            Slot::Done {
                generation, result, ..
            } => {
                assert_eq!(*generation, slot.generation, "stale slot orphaned");
                let result = *result;
                self.free_slot(slot.index);
                // The completion was reaped but never taken: a descriptor it returned (an
                // accepted socket) belongs to no one else, so close it as `complete` does for
                // orphans, rather than leak it.
                if close_result_fd && result >= 0 {
                    // SAFETY: the kernel returned a new fd that no one else knows of.
                    unsafe { libc::close(result) };
                }
                drop(parked);
                false
            }
            Slot::Waiting { generation, .. } => {
                assert_eq!(*generation, slot.generation, "stale slot orphaned");
                self.slots[slot.index as usize] = Slot::Orphaned {
                    generation: slot.generation,
                    parked,
                    close_result_fd,
                };
                true
            }
            _ => unreachable!("orphaned a slot that is free or already orphaned"),
        }
    }

    /// Asks the kernel to cancel the operation in `slot`; its completion still arrives (with
    /// -ECANCELED or its real result) and frees the slot.
    pub(crate) fn cancel(&mut self, slot: SlotRef) {
        let entry = opcode::AsyncCancel::new(slot.user_data())
            .build()
            .user_data(CANCEL_TAG);
        // SAFETY: ASYNC_CANCEL carries no pointers, only the target's user_data.
        unsafe { self.submit_tagged(entry) };
    }

    /// Submits what is queued and reaps completions without blocking.
    pub(crate) fn submit_and_reap(&mut self) -> io::Result<Reaped> {
        self.enter(0, None)?;
        Ok(self.reap())
    }

    /// Submits what is queued and blocks until at least one completion or `timeout`.
    pub(crate) fn park(&mut self, timeout: Option<Duration>) -> io::Result<Reaped> {
        self.enter(1, timeout)?;
        Ok(self.reap())
    }

    fn enter(&mut self, want: usize, timeout: Option<Duration>) -> io::Result<()> {
        loop {
            let result = match timeout {
                Some(duration) if want > 0 => {
                    let ts = types::Timespec::from(duration);
                    let args = types::SubmitArgs::new().timespec(&ts);
                    self.uring.submitter().submit_with_args(want, &args)
                }
                _ => self.submit_getevents(want),
            };
            let busy = match result {
                Ok(_) => false,
                Err(err) if err.raw_os_error() == Some(libc::ETIME) => false,
                Err(err) if err.raw_os_error() == Some(libc::EINTR) => false,
                // The completion queue is full or the kernel is short of memory: the caller
                // reaps (which makes room), and the next enter submits the rest.
                Err(err) if err.raw_os_error() == Some(libc::EBUSY) => true,
                Err(err) if err.raw_os_error() == Some(libc::EAGAIN) => true,
                Err(err) => return Err(err),
            };
            if self.flush_overflow() {
                return Ok(());
            }
            // Entries still wait for room in the submission queue: hand back to the caller so it
            // reaps (never spin here), unless the kernel took entries and nothing is left to reap.
            if busy || self.has_completions() {
                return Ok(());
            }
        }
    }

    /// `submit_and_wait` with GETEVENTS always set: under DEFER_TASKRUN, completions are only
    /// posted by an enter that asks for events.
    fn submit_getevents(&mut self, want: usize) -> io::Result<usize> {
        let to_submit = self.uring.submission().len() as u32;
        const IORING_ENTER_GETEVENTS: u32 = 1; // <linux/io_uring.h>
        let flags = IORING_ENTER_GETEVENTS;
        // SAFETY: no argument pointer is passed; the ring and its queues are owned by this
        // thread and the queued entries' pointers are kept alive by their slots.
        unsafe {
            self.uring
                .submitter()
                .enter::<libc::sigset_t>(to_submit, want as u32, flags, None)
        }
    }

    fn has_completions(&mut self) -> bool {
        !self.uring.completion().is_empty()
    }

    /// Moves queued entries into the submission queue; true when none are left.
    fn flush_overflow(&mut self) -> bool {
        while let Some(entry) = self.overflow.front() {
            // SAFETY: entries in `overflow` were accepted under `submit`'s contract.
            if unsafe { self.uring.submission().push(entry) }.is_err() {
                return false;
            }
            self.overflow.pop_front();
        }
        true
    }

    fn reap(&mut self) -> Reaped {
        let mut reaped = Reaped::default();
        // The kernel hands completions over in batches: keep reaping until the queue is empty.
        let mut scratch = std::mem::take(&mut self.scratch);
        loop {
            scratch.extend(self.uring.completion());
            if scratch.is_empty() {
                break;
            }
            for cqe in scratch.drain(..) {
                self.complete(cqe, &mut reaped);
            }
        }
        self.scratch = scratch;
        reaped
    }

    fn complete(&mut self, cqe: cqueue::Entry, reaped: &mut Reaped) {
        let user_data = cqe.user_data();
        if cqueue::more(cqe.flags()) {
            unreachable!("multishot operations are not used");
        }
        self.in_flight -= 1;
        self.completed += 1;
        match user_data {
            CANCEL_TAG => return,
            WAKE_TAG => {
                self.wake_armed = false;
                reaped.woken_by_eventfd = true;
                return;
            }
            _ => {}
        }
        let index = (user_data & 0xffff_ffff) as u32;
        let generation = (user_data >> 32) as u32;
        let slot = &mut self.slots[index as usize];
        match slot {
            Slot::Waiting {
                generation: expected,
                waker,
            } => {
                assert_eq!(*expected, generation, "completion for a stale slot");
                if let Some(waker) = waker.take() {
                    reaped.wakers.push(waker);
                }
                *slot = Slot::Done {
                    generation,
                    result: cqe.result(),
                };
            }
            Slot::Orphaned {
                generation: expected,
                ..
            } => {
                assert_eq!(*expected, generation, "completion for a stale slot");
                // Dropping the parked value releases buffers the kernel no longer uses, and
                // closes what it owns (an accepted socket comes back in `result` and is closed
                // here too).
                let result = cqe.result();
                let Slot::Orphaned {
                    parked,
                    close_result_fd,
                    ..
                } = std::mem::replace(slot, Slot::Free { next_free: None })
                else {
                    unreachable!()
                };
                if close_result_fd && result >= 0 {
                    // SAFETY: the kernel returned a new fd that no one else knows of.
                    unsafe { libc::close(result) };
                }
                drop(parked);
                self.free_slot(index);
            }
            _ => unreachable!("completion for a free or finished slot"),
        }
    }

    /// Arms the eventfd read that lets another thread wake this ring out of `park`.
    ///
    /// # Safety
    /// `buf` must point at 8 writable bytes that stay valid until the read completes or the ring
    /// is drained at shutdown.
    pub(crate) unsafe fn arm_wake(&mut self, eventfd: i32, buf: *mut u8) {
        if self.wake_armed {
            return;
        }
        let entry = opcode::Read::new(types::Fd(eventfd), buf, 8)
            .build()
            .user_data(WAKE_TAG);
        // SAFETY: forwarded from this function's contract.
        unsafe { self.submit_tagged(entry) };
        self.wake_armed = true;
    }

    /// Cancels every operation still in flight and waits for their completions, up to `limit`.
    /// Returns false if some never completed: their memory must then be leaked, not freed.
    pub(crate) fn drain(&mut self, limit: Duration) -> bool {
        let entry = opcode::AsyncCancel2::new(types::CancelBuilder::any())
            .build()
            .user_data(CANCEL_TAG);
        // SAFETY: a cancel-any entry carries no pointers.
        unsafe { self.submit_tagged(entry) };
        let deadline = std::time::Instant::now() + limit;
        while self.in_flight > 0 {
            let now = std::time::Instant::now();
            if now >= deadline {
                return false;
            }
            if self.park(Some(deadline - now)).is_err() {
                return false;
            }
        }
        true
    }
}

/// What one reap produced: wakers to call and whether the cross-thread eventfd fired.
#[derive(Default)]
pub(crate) struct Reaped {
    pub(crate) wakers: Vec<Waker>,
    pub(crate) woken_by_eventfd: bool,
}

fn check_opcodes(uring: &IoUring) -> io::Result<()> {
    let mut probe = io_uring::Probe::new();
    uring.submitter().register_probe(&mut probe)?;
    let needed = [
        (opcode::Writev::CODE, "WRITEV"),
        (opcode::Read::CODE, "READ"),
        (opcode::Write::CODE, "WRITE"),
        (opcode::Fsync::CODE, "FSYNC"),
        (opcode::Timeout::CODE, "TIMEOUT"),
        (opcode::AsyncCancel::CODE, "ASYNC_CANCEL"),
        (opcode::Splice::CODE, "SPLICE"),
        (opcode::Accept::CODE, "ACCEPT"),
        (opcode::Recv::CODE, "RECV"),
        (opcode::Send::CODE, "SEND"),
    ];
    for (code, name) in needed {
        if !probe.is_supported(code) {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("this kernel's io_uring lacks {name}; Ringtail needs Linux 6.1 or newer"),
            ));
        }
    }
    Ok(())
}
