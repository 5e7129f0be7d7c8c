//! Typed io_uring operations that own their buffers and file descriptors until the kernel is done.
//!
//! Runs on the shard thread that submitted the operation.
//!
//! Invariants:
//! - Every pointer placed in a submission entry points into a heap allocation owned by the
//!   operation's `data` (a `Vec`, a `Box` or a `Bytes`), never into the `Op` value itself, so the
//!   future may move freely.
//! - `data` is released only after the final completion: returned to the caller by `poll`, or
//!   parked in the ring's slot by `Drop` (which also asks the kernel to cancel, for operations
//!   that may be cancelled). Log writes and fdatasync are never cancelled: a write that was
//!   started must finish so the log's file size stays known.

use std::future::Future;
use std::io;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use io_uring::{opcode, squeue, types};

use super::executor::{runtime_present, with_ring};
use super::ring::{SlotPoll, SlotRef};

/// The most iovecs one WRITEV takes (Linux's `UIO_MAXIOV`).
pub const IOV_MAX: usize = 1024;

/// An in-flight operation: resolves to the kernel's result and gives `data` back.
pub(crate) struct Op<T: 'static> {
    slot: SlotRef,
    data: Option<T>,
    cancel_on_drop: bool,
    close_result_fd: bool,
}

impl<T: 'static> Op<T> {
    /// # Safety
    /// Every pointer in `entry` must point into heap memory owned by `data` (or be static), so
    /// that it stays valid while `data` is held by this `Op` or parked in its slot.
    pub(super) unsafe fn submit(entry: squeue::Entry, data: T, cancel_on_drop: bool) -> Op<T> {
        // SAFETY: forwarded from this function's contract.
        let slot = with_ring(|ring| unsafe { ring.submit(entry) });
        Op {
            slot,
            data: Some(data),
            cancel_on_drop,
            close_result_fd: false,
        }
    }
}

impl<T: 'static> Op<T> {
    /// Marks an operation whose successful result is a new file descriptor (accept): if the
    /// future is dropped before taking it, the reaper closes that descriptor.
    pub(super) fn closing_result_fd(mut self) -> Op<T> {
        self.close_result_fd = true;
        self
    }
}

/// A completed operation: the kernel's result (negative errno on failure) and the data the
/// operation owned.
pub(crate) struct Completion<T> {
    pub(crate) result: i32,
    pub(crate) data: T,
}

impl<T> Completion<T> {
    pub(crate) fn into_io_result(self) -> (io::Result<u32>, T) {
        let result = if self.result < 0 {
            Err(io::Error::from_raw_os_error(-self.result))
        } else {
            Ok(self.result as u32)
        };
        (result, self.data)
    }
}

impl<T: 'static> Future for Op<T> {
    type Output = Completion<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Completion<T>> {
        let this = self.get_mut();
        assert!(this.data.is_some(), "Op polled after completion");
        match with_ring(|ring| ring.poll_slot(this.slot, cx.waker())) {
            SlotPoll::Pending => Poll::Pending,
            SlotPoll::Ready { result } => {
                let data = this.data.take().expect("checked above");
                Poll::Ready(Completion { result, data })
            }
        }
    }
}

impl<T: 'static> Unpin for Op<T> {}

impl<T: 'static> Drop for Op<T> {
    fn drop(&mut self) {
        let Some(data) = self.data.take() else {
            return; // completed and taken: the slot is already free
        };
        if !runtime_present() {
            // The runtime is gone (its shutdown drain gave up on this operation): the kernel may
            // still write into these buffers, so they are leaked rather than freed.
            std::mem::forget(data);
            return;
        }
        let (slot, cancel, close) = (self.slot, self.cancel_on_drop, self.close_result_fd);
        with_ring(|ring| {
            if ring.orphan(slot, Box::new(data), close) && cancel {
                ring.cancel(slot);
            }
        });
    }
}

/// Something that holds a file descriptor open for as long as an operation needs it.
pub trait FdHolder: AsRawFd + 'static {}
impl<T: AsRawFd + 'static> FdHolder for T {}

struct WritevData<F> {
    _file: F,
    bufs: Vec<Bytes>,
    /// Read by the kernel (WRITEV may be punted to a worker that reads it late).
    _iovecs: Vec<libc::iovec>,
}

/// One WRITEV of `bufs` (at most [`IOV_MAX`]) at `pos`; may write fewer bytes than asked.
pub async fn writev_at<F: FdHolder>(
    file: F,
    bufs: Vec<Bytes>,
    skip: usize,
    pos: u64,
) -> (io::Result<usize>, F, Vec<Bytes>) {
    let iovecs = iovecs_after(&bufs, skip);
    let fd = types::Fd(file.as_raw_fd());
    let entry = opcode::Writev::new(fd, iovecs.as_ptr(), iovecs.len() as u32)
        .offset(pos)
        .build();
    let data = WritevData {
        _file: file,
        bufs,
        _iovecs: iovecs,
    };
    // SAFETY: the iovec array and every buffer it points at are heap allocations owned by `data`
    // (`Vec` contents and `Bytes` storage do not move when `data` moves).
    let op = unsafe { Op::submit(entry, data, false) };
    let (result, data) = op.await.into_io_result();
    let WritevData { _file, bufs, .. } = data;
    (result.map(|n| n as usize), _file, bufs)
}

/// iovecs for `bufs` after skipping the first `skip` bytes, capped at [`IOV_MAX`] entries.
fn iovecs_after(bufs: &[Bytes], mut skip: usize) -> Vec<libc::iovec> {
    let mut iovecs = Vec::with_capacity(bufs.len().min(IOV_MAX));
    for buf in bufs {
        if skip >= buf.len() {
            skip -= buf.len();
            continue;
        }
        let rest = &buf[skip..];
        skip = 0;
        iovecs.push(libc::iovec {
            iov_base: rest.as_ptr() as *mut libc::c_void,
            iov_len: rest.len(),
        });
        if iovecs.len() == IOV_MAX {
            break;
        }
    }
    iovecs
}

/// Writes every byte of `bufs` at `pos`, resuming after short writes. On error, returns how many
/// bytes had been written before it.
pub async fn write_all_at<F: FdHolder>(
    mut file: F,
    mut bufs: Vec<Bytes>,
    pos: u64,
) -> (Result<(), (io::Error, usize)>, F, Vec<Bytes>) {
    let total: usize = bufs.iter().map(Bytes::len).sum();
    let mut done = 0usize;
    while done < total {
        let (result, back_file, back_bufs) = writev_at(file, bufs, done, pos + done as u64).await;
        file = back_file;
        bufs = back_bufs;
        match result {
            Ok(0) => {
                let err = io::Error::new(io::ErrorKind::WriteZero, "write returned 0");
                return (Err((err, done)), file, bufs);
            }
            Ok(written) => done += written,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return (Err((err, done)), file, bufs),
        }
    }
    (Ok(()), file, bufs)
}

/// fdatasync through the ring. Issue it only after the writes it must cover have completed:
/// io_uring does not order it after writes still in flight.
pub async fn fdatasync<F: FdHolder>(file: F) -> (io::Result<()>, F) {
    let entry = opcode::Fsync::new(types::Fd(file.as_raw_fd()))
        .flags(types::FsyncFlags::DATASYNC)
        .build();
    // SAFETY: FSYNC carries no pointers; `file` keeps the fd open until the completion.
    let op = unsafe { Op::submit(entry, file, false) };
    let (result, file) = op.await.into_io_result();
    (result.map(|_| ()), file)
}

/// fsync (data and metadata) through the ring: for directories, whose entries fdatasync may
/// not cover.
pub async fn fsync<F: FdHolder>(file: F) -> (io::Result<()>, F) {
    let entry = opcode::Fsync::new(types::Fd(file.as_raw_fd())).build();
    // SAFETY: FSYNC carries no pointers; `file` keeps the fd open until the completion.
    let op = unsafe { Op::submit(entry, file, false) };
    let (result, file) = op.await.into_io_result();
    (result.map(|_| ()), file)
}

/// Reads up to `buf.capacity() - buf.len()` bytes at `pos`, appending them to `buf`.
pub async fn read_at<F: FdHolder>(
    file: F,
    mut buf: Vec<u8>,
    pos: u64,
) -> (io::Result<usize>, F, Vec<u8>) {
    let spare = buf.capacity() - buf.len();
    // SAFETY: the pointer is to `buf`'s heap allocation, past its initialised part; `buf` moves
    // into the operation and comes back only after the completion.
    let ptr = unsafe { buf.as_mut_ptr().add(buf.len()) };
    let entry = opcode::Read::new(types::Fd(file.as_raw_fd()), ptr, spare as u32)
        .offset(pos)
        .build();
    // SAFETY: `ptr` points into `buf`'s heap allocation, owned by the op's data.
    let op = unsafe { Op::submit(entry, (file, buf), true) };
    let (result, (file, mut buf)) = op.await.into_io_result();
    let result = result.map(|n| {
        let n = n as usize;
        assert!(n <= spare, "kernel read more than asked");
        // SAFETY: the kernel initialised `n` bytes after the old length, within capacity.
        unsafe { buf.set_len(buf.len() + n) };
        n
    });
    (result, file, buf)
}

/// Reads exactly `len` bytes at `pos` (fewer only at end of file).
pub async fn read_exact_at<F: FdHolder>(mut file: F, len: usize, pos: u64) -> io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(len);
    while buf.len() < len {
        let at = pos + buf.len() as u64;
        let (result, back_file, back_buf) = read_at(file, buf, at).await;
        file = back_file;
        buf = back_buf;
        match result {
            Ok(0) => break,
            Ok(_) => {}
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(buf)
}

/// Sleeps for `duration` using a kernel timeout; the timespec lives in the operation's box.
pub async fn sleep(duration: Duration) {
    let timespec = Box::new(types::Timespec::from(duration));
    let entry = opcode::Timeout::new(&*timespec as *const types::Timespec).build();
    // SAFETY: the timespec is boxed and owned by the op until its completion (the kernel reads
    // it after submission).
    let op = unsafe { Op::submit(entry, timespec, true) };
    // -ETIME is the normal result of an expired timeout; -ECANCELED comes only after a drop.
    let _ = op.await;
}
