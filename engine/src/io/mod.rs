//! The shard's I/O runtime: one io_uring per thread, a single-threaded executor, and typed
//! operations that own their buffers until the kernel is done with them.
//!
//! This module holds all of the engine's `unsafe` code (in `ring`, `op` and `executor`); the rest
//! of the engine, the broker and the load generator use only its safe API. See
//! `shared/REACTOR.md` for the rules it follows and the bugs it is built to avoid.

mod combine;
mod executor;
mod net;
mod notify;
mod op;
mod ring;
mod signal;

pub use combine::{any, join_all, select, timeout, Either};
pub use executor::{
    runtime_stats, spawn, yield_now, JoinHandle, Runtime, RuntimeConfig, RuntimeStats,
};
pub use net::{
    accept, current_affinity, descriptor_limit, listen_reuseport, pin_current_thread,
    raise_descriptor_limit, recv, send_all, set_nodelay, splice_to_socket, Pipe,
};
pub use notify::Notify;
pub use op::{
    fdatasync, fsync, read_at, read_exact_at, sleep, write_all_at, writev_at, FdHolder, IOV_MAX,
};
pub use signal::{block_termination_signals, wait_termination_signal};
