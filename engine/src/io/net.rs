//! Sockets, pipes and splice through the ring, plus the two thread/socket set-up calls the
//! broker needs (SO_REUSEPORT listeners, pinning a thread to a core).
//!
//! Runs on the shard thread that owns the sockets. The same ownership rules as `op` hold: every
//! operation owns its buffer and an `Rc` of its socket until its completion; a dropped accept's
//! new descriptor is closed by the reaper.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use io_uring::{opcode, types};

use super::op::{FdHolder, Op};

/// A TCP listener with SO_REUSEPORT, so that every shard can listen on the same port and the
/// kernel spreads new connections across them.
pub fn listen_reuseport(addr: SocketAddr, backlog: i32) -> io::Result<TcpListener> {
    let domain = match addr {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    };
    // SAFETY: plain syscall; the result is checked and then owned.
    let raw = unsafe { libc::socket(domain, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a new descriptor nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    for option in [libc::SO_REUSEADDR, libc::SO_REUSEPORT] {
        set_int_option(fd.as_raw_fd(), libc::SOL_SOCKET, option, 1)?;
    }
    let (storage, len) = sockaddr(addr);
    // SAFETY: `storage` is a valid sockaddr of `len` bytes for this call's duration.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&storage as *const libc::sockaddr_storage).cast(),
            len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: plain syscall on a descriptor we own.
    if unsafe { libc::listen(fd.as_raw_fd(), backlog) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(TcpListener::from(fd))
}

fn set_int_option(fd: RawFd, level: i32, option: i32, value: i32) -> io::Result<()> {
    // SAFETY: passes a pointer to a live i32 and its size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            option,
            (&value as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Disables Nagle's algorithm: responses leave as soon as they are written.
pub fn set_nodelay(stream: &TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)
}

fn sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain data; all-zero is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(v4) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(v4.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_in fits in sockaddr_storage, which is aligned for it.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(v6) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: v6.port().to_be(),
                sin6_flowinfo: v6.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: v6.ip().octets(),
                },
                sin6_scope_id: v6.scope_id(),
            };
            // SAFETY: sockaddr_in6 fits in sockaddr_storage, which is aligned for it.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

/// Accepts one connection through the ring.
pub async fn accept(listener: Rc<TcpListener>) -> io::Result<TcpStream> {
    let entry = opcode::Accept::new(
        types::Fd(listener.as_raw_fd()),
        std::ptr::null_mut(),
        std::ptr::null_mut(),
    )
    .flags(libc::SOCK_CLOEXEC)
    .build();
    // SAFETY: ACCEPT with null address pointers carries no pointers; the listener is kept open
    // by the `Rc` the op owns. A dropped accept's new fd is closed by the reaper.
    let op = unsafe { Op::submit(entry, listener, true) }.closing_result_fd();
    let (result, _) = op.await.into_io_result();
    let fd = result? as RawFd;
    // SAFETY: the kernel returned a new connected socket that nothing else owns.
    Ok(unsafe { TcpStream::from_raw_fd(fd) })
}

/// Receives into `buf`'s spare capacity (at most `max` bytes), appending to it. Ok(0) is EOF.
pub async fn recv<F: FdHolder>(
    socket: F,
    mut buf: BytesMut,
    max: usize,
) -> (io::Result<usize>, F, BytesMut) {
    let spare = (buf.capacity() - buf.len()).min(max);
    assert!(spare > 0, "recv into a full buffer");
    // SAFETY: points past the initialised part of `buf`'s heap allocation, within capacity;
    // `buf` is owned by the op until the completion.
    let ptr = unsafe { buf.as_mut_ptr().add(buf.len()) };
    let entry = opcode::Recv::new(types::Fd(socket.as_raw_fd()), ptr, spare as u32).build();
    // SAFETY: `ptr` points into `buf`'s heap allocation, owned by the op's data (moving a
    // `BytesMut` does not move its storage).
    let op = unsafe { Op::submit(entry, (socket, buf), true) };
    let (result, (socket, mut buf)) = op.await.into_io_result();
    let result = result.map(|n| {
        let n = n as usize;
        assert!(n <= spare, "kernel received more than asked");
        // SAFETY: the kernel initialised `n` bytes after the old length, within capacity.
        unsafe { buf.set_len(buf.len() + n) };
        n
    });
    (result, socket, buf)
}

/// Sends all of `buf`, resuming after short sends.
pub async fn send_all<F: FdHolder>(mut socket: F, buf: Bytes) -> (io::Result<()>, F) {
    let mut sent = 0;
    while sent < buf.len() {
        let rest = buf.slice(sent..);
        let entry = opcode::Send::new(
            types::Fd(socket.as_raw_fd()),
            rest.as_ptr(),
            rest.len() as u32,
        )
        .flags(libc::MSG_NOSIGNAL)
        .build();
        // SAFETY: `rest` shares `buf`'s heap storage and is owned by the op until completion.
        let op = unsafe { Op::submit(entry, (socket, rest), true) };
        let (result, (back, _)) = op.await.into_io_result();
        socket = back;
        match result {
            Ok(0) => return (Err(io::ErrorKind::WriteZero.into()), socket),
            Ok(n) => sent += n as usize,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return (Err(err), socket),
        }
    }
    (Ok(()), socket)
}

/// A pipe used as the kernel-side buffer of a splice: file -> pipe -> socket.
pub struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    capacity: usize,
}

impl Pipe {
    /// A pipe resized to `capacity` bytes (capped by /proc/sys/fs/pipe-max-size).
    pub fn new(capacity: usize) -> io::Result<Pipe> {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: `fds` is a live array of two ints for the kernel to fill.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both are new descriptors nothing else owns.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: plain fcntl on a descriptor we own; failure leaves the default size.
        let size = unsafe {
            libc::fcntl(
                write.as_raw_fd(),
                libc::F_SETPIPE_SZ,
                capacity as libc::c_int,
            )
        };
        let capacity = if size > 0 { size as usize } else { 65536 };
        Ok(Pipe {
            read,
            write,
            capacity,
        })
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

/// Moves `len` bytes of `file` at `position` to `socket` through `pipe`, never through user
/// space: file -> pipe, then pipe -> socket, each resumed after short splices. The pipe must be
/// empty on entry and is empty on success; after an error it may hold bytes and must be
/// dropped, not reused.
pub async fn splice_to_socket<F: FdHolder, S: FdHolder>(
    pipe: Rc<Pipe>,
    file: Rc<F>,
    mut position: u64,
    mut len: u64,
    socket: Rc<S>,
) -> io::Result<()> {
    while len > 0 {
        let chunk = len.min(pipe.capacity as u64) as u32;
        let filled = splice(
            pipe.clone(),
            file.as_raw_fd(),
            position as i64,
            pipe.write.as_raw_fd(),
            file.clone(),
            chunk,
        )
        .await?;
        if filled == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file ended before the range did",
            ));
        }
        let mut drained = 0;
        while drained < filled {
            let moved = splice(
                pipe.clone(),
                pipe.read.as_raw_fd(),
                -1,
                socket.as_raw_fd(),
                socket.clone(),
                filled - drained,
            )
            .await?;
            if moved == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            drained += moved;
        }
        position += u64::from(filled);
        len -= u64::from(filled);
    }
    Ok(())
}

async fn splice<K: 'static>(
    pipe: Rc<Pipe>,
    fd_in: RawFd,
    off_in: i64,
    fd_out: RawFd,
    keep: Rc<K>,
    len: u32,
) -> io::Result<u32> {
    let entry = opcode::Splice::new(types::Fd(fd_in), off_in, types::Fd(fd_out), -1, len).build();
    // SAFETY: SPLICE carries no user-space pointers; the pipe and the file or socket stay open
    // through the `Rc`s the op owns.
    let op = unsafe { Op::submit(entry, (pipe, keep), true) };
    let (result, _) = op.await.into_io_result();
    result
}

/// Pins the calling thread to one CPU.
pub fn pin_current_thread(core: usize) -> io::Result<()> {
    if core >= libc::CPU_SETSIZE as usize {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("no CPU {core}"),
        ));
    }
    // SAFETY: cpu_set_t is plain data; CPU_ZERO/CPU_SET write within it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `core` was checked against CPU_SETSIZE above.
    unsafe { libc::CPU_SET(core, &mut set) };
    // SAFETY: passes a live cpu_set_t and its size for the calling thread (pid 0).
    if unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The process's descriptor limit (`RLIMIT_NOFILE`): (soft, hard).
pub fn descriptor_limit() -> io::Result<(u64, u64)> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: passes a live rlimit for the kernel to fill.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((limit.rlim_cur, limit.rlim_max))
}

/// Raises the soft descriptor limit to the hard one (what an unprivileged process may do);
/// returns the soft limit now in force.
pub fn raise_descriptor_limit() -> io::Result<u64> {
    let (soft, hard) = descriptor_limit()?;
    if soft >= hard {
        return Ok(soft);
    }
    let limit = libc::rlimit {
        rlim_cur: hard,
        rlim_max: hard,
    };
    // SAFETY: passes a live, initialised rlimit; the kernel only reads it.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(hard)
}

/// The CPUs the calling thread may run on.
pub fn current_affinity() -> io::Result<Vec<usize>> {
    // SAFETY: cpu_set_t is plain data.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: passes a live cpu_set_t for the kernel to fill.
    if unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: reads bits of a set the kernel filled.
    Ok((0..libc::CPU_SETSIZE as usize)
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect())
}
