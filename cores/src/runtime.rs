//! Starting and stopping shards: [`Config`], [`start`], [`Runtime`], and the
//! cross-shard mailbox ([`ShardHandle::post`]).
//!
//! Owns the shard threads and each shard's `Remote` (the only state other threads may
//! touch: the bounded mailbox queue, the wake-up eventfd, the ring fd for MSG_RING, the
//! counters). Invariant: a message accepted by `post` runs exactly once on its shard,
//! unless the shard stops first (then it is dropped unrun).

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle as ThreadJoin;

use crate::shard::{self, BackendKind};
use crate::stats::{ShardStats, StatCells};

/// Which I/O backend shards use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// io_uring when available, else epoll; `RINGSIP_BACKEND=epoll|io_uring` overrides.
    Auto,
    IoUring,
    Epoll,
}

/// Start-up parameters. Every bound here is a hard limit with a counter when reached.
#[derive(Clone, Debug)]
pub struct Config {
    /// CPUs to run one shard on each; `None`: every CPU this process may run on.
    pub cpus: Option<Vec<usize>>,
    /// Pin each shard thread to its CPU.
    pub pin: bool,
    pub backend: Backend,
    /// Submission queue entries per ring.
    pub ring_entries: u32,
    /// Provided buffers per shard for UDP receive (power of two).
    pub udp_buffers: u16,
    /// Size of each provided buffer. A datagram longer than this minus 44 bytes (the
    /// kernel's receive header and the peer address) is dropped and counted
    /// (`udp_truncated`): 4096 admits 4052-byte datagrams.
    pub udp_buffer_size: usize,
    /// Maximum operations in flight per shard (reads, writes, sends, connects...).
    pub max_ops: usize,
    /// Mailbox capacity per shard.
    pub mailbox_capacity: usize,
    /// Thread name prefix (threads are named `prefix-<shard id>`).
    pub thread_name: String,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            cpus: None,
            pin: true,
            backend: Backend::Auto,
            ring_entries: 1024,
            udp_buffers: 512,
            udp_buffer_size: 4096,
            max_ops: 65536,
            mailbox_capacity: 4096,
            thread_name: "shard".to_string(),
        }
    }
}

/// Why [`start`] failed.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("no CPUs to run shards on")]
    NoCpus,
    #[error("reading the CPU affinity: {0}")]
    Affinity(io::Error),
    #[error("creating the mailbox eventfd: {0}")]
    Eventfd(io::Error),
    #[error("spawning the thread of shard {shard}: {source}")]
    Spawn { shard: usize, source: io::Error },
    #[error("shard {shard} (cpu {cpu}): {source}")]
    Shard {
        shard: usize,
        cpu: usize,
        source: io::Error,
    },
    #[error("shard {shard}: setup failed: {source}")]
    Setup { shard: usize, source: io::Error },
    #[error("shard {shard} exited during start-up")]
    Exited { shard: usize },
}

/// Why [`ShardHandle::post`] refused a message.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PostError {
    #[error("mailbox of shard {0} is full")]
    Full(usize),
    #[error("shard {0} has stopped")]
    Stopped(usize),
}

pub(crate) enum Mail {
    Run(Box<dyn FnOnce() + Send>),
    Wake(crate::task::TaskKey),
}

/// The part of a shard other threads may touch.
pub(crate) struct Remote {
    pub(crate) shard: usize,
    pub(crate) queue: Mutex<VecDeque<Mail>>,
    capacity: usize,
    pub(crate) notified: AtomicBool,
    pub(crate) eventfd: OwnedFd,
    /// The shard's ring fd while it runs the io_uring backend, else -1.
    pub(crate) ring_fd: AtomicI32,
    pub(crate) stopping: AtomicBool,
    pub(crate) alive: AtomicBool,
    pub(crate) stats: StatCells,
    pub(crate) token: usize,
}

static NEXT_TOKEN: AtomicUsize = AtomicUsize::new(1);

impl Remote {
    fn new(shard: usize, capacity: usize) -> io::Result<Remote> {
        let eventfd = rustix::event::eventfd(
            0,
            rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK,
        )?;
        Ok(Remote {
            shard,
            queue: Mutex::new(VecDeque::with_capacity(capacity.min(1024))),
            capacity,
            notified: AtomicBool::new(false),
            eventfd,
            ring_fd: AtomicI32::new(-1),
            stopping: AtomicBool::new(false),
            alive: AtomicBool::new(true),
            stats: StatCells::default(),
            token: NEXT_TOKEN.fetch_add(1, Ordering::Relaxed),
        })
    }

    pub(crate) fn post_mail(&self, mail: Mail, bounded: bool) -> Result<(), PostError> {
        if !self.alive.load(Ordering::Acquire) {
            return Err(PostError::Stopped(self.shard));
        }
        {
            let mut q = match self.queue.lock() {
                Ok(q) => q,
                Err(p) => p.into_inner(),
            };
            if bounded && q.len() >= self.capacity {
                drop(q);
                self.stats.mailbox_full.fetch_add(1, Ordering::Relaxed);
                return Err(PostError::Full(self.shard));
            }
            q.push_back(mail);
        }
        self.stats.mailbox_posted.fetch_add(1, Ordering::Relaxed);
        self.wake();
        Ok(())
    }

    /// Wakes the shard if it has not been woken since it last drained its mailbox.
    pub(crate) fn wake(&self) {
        if self.notified.swap(true, Ordering::AcqRel) {
            return;
        }
        let ring = self.ring_fd.load(Ordering::Acquire);
        if ring >= 0 && shard::msg_ring_from_current(ring) {
            return;
        }
        self.wake_by_eventfd();
    }

    /// Asks the shard to stop after its current turn. Wakes it through the eventfd,
    /// which (unlike a MSG_RING queued on the caller's ring) does not depend on the
    /// caller's loop running another turn.
    pub(crate) fn request_stop(&self) {
        self.stopping.store(true, Ordering::Release);
        self.notified.store(true, Ordering::Release);
        self.wake_by_eventfd();
    }

    fn wake_by_eventfd(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to our own eventfd.
        unsafe { libc::write(self.eventfd.as_raw_fd(), std::ptr::addr_of!(one).cast(), 8) };
    }
}

/// A handle to a shard, usable from any thread: post work to it, read its counters.
#[derive(Clone)]
pub struct ShardHandle {
    pub(crate) remote: Arc<Remote>,
}

impl std::fmt::Debug for ShardHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ShardHandle({})", self.remote.shard)
    }
}

impl ShardHandle {
    /// The shard's id (0-based, dense).
    pub fn id(&self) -> usize {
        self.remote.shard
    }

    /// Runs `f` on the shard, in its loop, soon. Fails (and counts) when the mailbox is
    /// full or the shard has stopped; the closure is then dropped unrun.
    pub fn post(&self, f: Box<dyn FnOnce() + Send>) -> Result<(), PostError> {
        self.remote.post_mail(Mail::Run(f), true)
    }

    /// A snapshot of the shard's counters.
    pub fn stats(&self) -> ShardStats {
        self.remote.stats.snapshot()
    }
}

/// The running shards. Dropping it stops and joins them.
pub struct Runtime {
    handles: Vec<ShardHandle>,
    threads: Vec<ThreadJoin<()>>,
    backend: BackendKind,
}

impl Runtime {
    /// Handles of every shard, indexed by shard id.
    pub fn shards(&self) -> &[ShardHandle] {
        &self.handles
    }

    /// The backend the shards run ("io_uring" or "epoll").
    pub fn backend(&self) -> &'static str {
        self.backend.name()
    }

    /// Asks every shard to stop after its current loop turn (tasks still pending are
    /// dropped, which cancels their I/O), then joins the threads.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    /// Waits until every shard has stopped on its own (see [`crate::request_stop`]).
    pub fn join(mut self) {
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }

    fn stop_and_join(&mut self) {
        for h in &self.handles {
            h.remote.request_stop();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

fn resolve_backend(config: &Config) -> BackendKind {
    let forced = match std::env::var("RINGSIP_BACKEND").ok().as_deref() {
        Some("epoll") => Some(Backend::Epoll),
        Some("io_uring") | Some("uring") => Some(Backend::IoUring),
        _ => None,
    };
    let want = match config.backend {
        Backend::Auto => forced.unwrap_or(Backend::Auto),
        b => b,
    };
    match want {
        Backend::Epoll => {
            tracing::info!(
                backend = "epoll",
                "cores: shards run the epoll backend (forced)"
            );
            BackendKind::Epoll
        }
        // Probe on a short-lived thread: a ring created (even just dropped) by the
        // caller's thread can leave io_uring task work that interrupts its later
        // blocking syscalls with EINTR.
        Backend::IoUring | Backend::Auto => match std::thread::spawn(crate::uring::probe)
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("io_uring probe panicked")))
        {
            Ok(()) => {
                tracing::info!(
                    backend = "io_uring",
                    "cores: shards run the io_uring backend"
                );
                BackendKind::IoUring
            }
            Err(e) => {
                tracing::info!(
                    backend = "epoll",
                    reason = %e,
                    "cores: io_uring unavailable, shards run the epoll backend"
                );
                BackendKind::Epoll
            }
        },
    }
}

fn online_cpus() -> Result<Vec<usize>, StartError> {
    let set =
        rustix::thread::sched_getaffinity(None).map_err(|e| StartError::Affinity(e.into()))?;
    Ok((0..rustix::thread::CpuSet::MAX_CPU)
        .filter(|&c| set.is_set(c))
        .collect())
}

/// Starts one shard per CPU. Each shard thread pins itself, sets up its ring (or epoll),
/// then runs `setup(shard_id)` on the shard (register sockets, spawn tasks) and its loop
/// until [`Runtime::shutdown`]. Returns once every shard's setup succeeded; if one fails,
/// all are stopped and the first error is returned.
pub fn start<F>(config: Config, setup: F) -> Result<Runtime, StartError>
where
    F: Fn(usize) -> io::Result<()> + Send + Sync + 'static,
{
    let cpus = match &config.cpus {
        Some(c) => c.clone(),
        None => online_cpus()?,
    };
    if cpus.is_empty() {
        return Err(StartError::NoCpus);
    }
    // SAFETY: setting SIGPIPE to ignored is process-wide and idempotent; writes to a
    // closed pipe or socket then fail with EPIPE instead of killing the process.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    let backend = resolve_backend(&config);
    let mut handles = Vec::with_capacity(cpus.len());
    for id in 0..cpus.len() {
        let remote = Remote::new(id, config.mailbox_capacity).map_err(StartError::Eventfd)?;
        handles.push(ShardHandle {
            remote: Arc::new(remote),
        });
    }
    let peers: Arc<[ShardHandle]> = handles.clone().into();
    let setup = Arc::new(setup);
    let (tx, rx) = mpsc::channel::<(usize, Result<(), StartError>)>();
    let mut rt = Runtime {
        handles,
        threads: Vec::new(),
        backend,
    };
    for (id, &cpu) in cpus.iter().enumerate() {
        let peers = peers.clone();
        let setup = setup.clone();
        let tx = tx.clone();
        let config = config.clone();
        let t = std::thread::Builder::new()
            .name(format!("{}-{id}", config.thread_name))
            .spawn(move || {
                shard::run_shard(id, cpu, backend, &config, peers, &*setup, tx);
            })
            .map_err(|source| StartError::Spawn { shard: id, source })?;
        rt.threads.push(t);
    }
    drop(tx);
    let mut first_err = None;
    for _ in 0..cpus.len() {
        match rx.recv() {
            Ok((_, Ok(()))) => {}
            Ok((_, Err(e))) => {
                first_err.get_or_insert(e);
            }
            Err(_) => {
                first_err.get_or_insert(StartError::Exited { shard: 0 });
                break;
            }
        }
    }
    if let Some(e) = first_err {
        rt.stop_and_join();
        return Err(e);
    }
    Ok(rt)
}
