//! `cores`: ringsip's per-core runtime.
//!
//! One thread per shard, pinned to its CPU, each owning one io_uring ring (or, where
//! io_uring is unavailable or `RINGSIP_BACKEND=epoll`, an epoll backend with the same
//! API). The runtime knows nothing of SIP: it offers UDP/TCP/pipe I/O, child processes,
//! a timer wheel, a local `!Send` task executor, and a cross-shard mailbox.
//!
//! # The whole API
//!
//! Start and stop ([`runtime`]):
//! - [`start`]`(Config, setup: Fn(shard_id) -> io::Result<()> + Send + Sync + 'static)
//!   -> Result<Runtime, StartError>`: one pinned thread per CPU of `Config::cpus`
//!   (default: the process's affinity mask), each with its own ring; `setup` runs on
//!   every shard (bind sockets, spawn tasks), then the shard's loop. Returns once every
//!   setup succeeded.
//! - [`Runtime::shards`], [`Runtime::shutdown`], [`Runtime::join`], [`Runtime::backend`].
//!   Dropping the `Runtime` shuts down too.
//! - [`ShardHandle`] (`Send + Sync + Clone`): [`ShardHandle::post`] a closure to a shard
//!   (bounded queue + MSG_RING/eventfd wake-up; [`PostError::Full`] counted),
//!   [`ShardHandle::stats`], [`ShardHandle::id`].
//!
//! On a shard thread (the infallible ones panic off a shard, a programming error; the
//! I/O entry points return `ErrorKind::Unsupported` instead):
//! - [`shard_id`], [`try_shard_id`], [`shard_count`], [`shard_handle`], [`stats()`],
//!   [`backend_name`], [`request_stop`].
//! - Tasks: [`spawn_local`] -> [`JoinHandle`] (`!Send` futures).
//! - Time: [`now`] (cached per loop turn), [`sleep`], [`sleep_until`], [`timeout`];
//!   callback timers [`arm_timer`], allocation-free token timers [`arm_timer_token`] +
//!   [`set_timer_handler`], [`cancel_timer`]. A [`TimerId`] is valid on its own shard.
//! - UDP: [`UdpSocket::bind`], [`UdpSocket::recv_with`] (a handler per datagram, bytes
//!   borrowed from the ring's provided buffer, nothing allocated),
//!   [`UdpSocket::send_to`] (copied, submitted with the loop turn's batch),
//!   [`UdpSocket::stop_recv`]; [`ConnectedUdp`] implements [`AsyncDatagram`].
//! - TCP: [`TcpStream::connect`] / [`TcpStream::connect_from`] (asynchronous, with
//!   time-out; `_from` binds a source address first) implements [`AsyncStream`];
//!   [`TcpStream::try_clone`] for a reader and a writer task; [`TcpStream::shutdown`]
//!   (shutting the read half ends a pending read with `Ok(0)`);
//!   [`TcpListener::bind`] + [`TcpListener::accept_with`] (multishot accept).
//! - Processes: [`Child::spawn_shell`] / [`Child::spawn`], [`Child::wait`],
//!   [`Child::try_wait`], [`Child::terminate`], [`Child::kill`]; its [`Pipe`]s implement
//!   [`AsyncStream`].
//!
//! I/O types, futures and handles are `!Send`: they belong to the shard that made them.
//! The backend is io_uring (SINGLE_ISSUER + DEFER_TASKRUN when the kernel allows) or,
//! when io_uring is unavailable or `RINGSIP_BACKEND=epoll`, epoll; one `info` log line
//! at start says which. [`start`] also sets SIGPIPE to ignored (writes to closed pipes
//! and sockets fail with EPIPE instead).
//!
//! Completion ownership: every buffer the kernel touches lives in the shard's operation
//! slab until the operation's final completion; futures copy from/to it, and dropping a
//! future only requests cancellation.
//!
//! The protocol drivers that run on a shard (SQL, HTTP, DNS) are written against the
//! small traits in [`stream`], so they can be tested with the blocking shims in
//! [`testing`] and run for real on the ring.

mod epoll;
mod io;
pub mod net;
mod op;
pub mod process;
pub mod runtime;
mod shard;
pub mod stats;
pub mod stream;
mod sys;
mod task;
pub mod testing;
pub mod time;
mod timer;
mod uring;

use std::future::Future;

pub use net::{ConnectedUdp, TcpListener, TcpStream, UdpSocket};
pub use process::{Child, ExitStatus, Pipe};
pub use runtime::{start, Backend, Config, PostError, Runtime, ShardHandle, StartError};
pub use stats::ShardStats;
pub use stream::{AsyncDatagram, AsyncStream};
pub use task::JoinHandle;
pub use time::{
    arm_timer, arm_timer_token, cancel_timer, now, set_timer_handler, sleep, sleep_until, timeout,
    Elapsed, Sleep,
};
pub use timer::TimerId;

pub(crate) fn uring_more(flags: u32) -> bool {
    io_uring::cqueue::more(flags)
}

/// Runs `fut` on the current shard. Panics off a shard thread.
pub fn spawn_local<F>(fut: F) -> JoinHandle<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    let (task, handle) = task::wrap(fut);
    shard::with(|s| s.spawn(task));
    handle
}

/// This shard's id (0-based). Panics off a shard thread.
pub fn shard_id() -> usize {
    shard::with(|s| s.id)
}

/// This shard's id, or `None` off a shard thread.
pub fn try_shard_id() -> Option<usize> {
    shard::try_with(|s| s.id)
}

/// How many shards the runtime runs. Panics off a shard thread.
pub fn shard_count() -> usize {
    shard::with(|s| s.peers.len())
}

/// The handle of shard `id` (to post to it). Panics off a shard thread.
pub fn shard_handle(id: usize) -> Option<ShardHandle> {
    shard::with(|s| s.peers.get(id).cloned())
}

/// This shard's counters. Panics off a shard thread.
pub fn stats() -> ShardStats {
    shard::with(|s| s.remote.stats.snapshot())
}

/// The backend this shard runs: `"io_uring"` or `"epoll"`. Panics off a shard thread.
pub fn backend_name() -> &'static str {
    shard::with(|s| match &*s.driver.borrow() {
        shard::Driver::Uring(_) => "io_uring",
        shard::Driver::Epoll(_) => "epoll",
    })
}

/// Stops every shard of this runtime after the current loop turn (for a task that
/// decides the process is done, e.g. on SIGTERM drain completion).
pub fn request_stop() {
    shard::with(|s| {
        s.request_stop();
        for p in s.peers.iter() {
            p.remote
                .stopping
                .store(true, std::sync::atomic::Ordering::Release);
            p.remote
                .notified
                .store(false, std::sync::atomic::Ordering::Release);
            p.remote.wake();
        }
    })
}
