//! One shard: its thread-local state and its loop.
//!
//! Owns the driver (ring or epoll), the operation slab, the timer wheel, the tasks, the
//! multishot registrations (UDP receive, TCP accept). The loop turn is: read the clock,
//! fire due timers, run mailbox messages, poll ready tasks, then submit everything queued
//! and wait (time-out = next timer) for completions, and dispatch them.
//!
//! Invariant: no `RefCell` of the shard is borrowed while user code runs (handlers,
//! timer callbacks, task polls, mailbox closures), so user code may call any API.

use std::cell::{Cell, RefCell};
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::epoll::{self, Epoll, Ready};
use crate::net::{TcpStream, UdpSocket};
use crate::op::{OpData, OpKey, OpSlab, OpState, Spec, TAG_EVENTFD, TAG_MSG_SENT, TAG_OP};
use crate::runtime::{Config, Mail, Remote, ShardHandle, StartError};
use crate::stats::StatCells;
use crate::task::{poll_task, TaskKey, Tasks};
use crate::timer::{Fired, TimerAction, TimerId, Wheel};
use crate::uring::{Cqe, Uring};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BackendKind {
    IoUring,
    Epoll,
}

impl BackendKind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            BackendKind::IoUring => "io_uring",
            BackendKind::Epoll => "epoll",
        }
    }
}

// One driver per shard, chosen once: the size difference does not matter.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Driver {
    Uring(Uring),
    Epoll(Epoll),
}

type UdpHandler = Box<dyn FnMut(&UdpSocket, &[u8], SocketAddr)>;
type TokenHandler = Box<dyn FnMut(TimerId, u64)>;
type AcceptHandler = Box<dyn FnMut(io::Result<(TcpStream, SocketAddr)>)>;

pub(crate) enum RegKind {
    Udp {
        socket: UdpSocket,
        handler: Option<UdpHandler>,
    },
    Accept {
        fd: RawFd,
        handler: Option<AcceptHandler>,
    },
}

pub(crate) struct Registration {
    kind: RegKind,
    op: Option<OpKey>,
}

pub(crate) struct Shard {
    pub(crate) id: usize,
    pub(crate) remote: Arc<Remote>,
    pub(crate) peers: Arc<[ShardHandle]>,
    // Field order: the driver (ring) drops before the op slab whose memory it may touch.
    pub(crate) driver: RefCell<Driver>,
    pub(crate) ops: RefCell<OpSlab>,
    wheel: RefCell<Wheel>,
    pub(crate) tasks: RefCell<Tasks>,
    regs: RefCell<Vec<Option<Registration>>>,
    scratch: RefCell<Vec<u8>>,
    token_handler: RefCell<Option<TokenHandler>>,
    start: Instant,
    now: Cell<Instant>,
    stop: Cell<bool>,
}

/// Pause before re-arming a multishot operation that ended with an error.
const MULTISHOT_BACKOFF: Duration = Duration::from_millis(10);

thread_local! {
    static CURRENT: RefCell<Option<Rc<Shard>>> = const { RefCell::new(None) };
    static TOKEN: Cell<usize> = const { Cell::new(0) };
}

/// Runs `f` with the current shard, or returns `None` off a shard thread.
pub(crate) fn try_with<R>(f: impl FnOnce(&Rc<Shard>) -> R) -> Option<R> {
    let s = CURRENT.with(|c| c.borrow().clone())?;
    Some(f(&s))
}

/// Runs `f` with the current shard. Panics off a shard thread (a programming error:
/// the runtime's APIs are per-shard by design).
pub(crate) fn with<R>(f: impl FnOnce(&Rc<Shard>) -> R) -> R {
    match try_with(f) {
        Some(r) => r,
        None => panic!("cores: this API must be called on a shard thread"),
    }
}

/// Runs `f` with the current shard, or fails with `Unsupported` off a shard thread
/// (for fallible I/O entry points, which return the error instead of panicking).
pub(crate) fn with_io<R>(f: impl FnOnce(&Rc<Shard>) -> io::Result<R>) -> io::Result<R> {
    try_with(f).unwrap_or_else(|| {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "cores: I/O must run on a shard thread",
        ))
    })
}

pub(crate) fn current_token() -> Option<usize> {
    let t = TOKEN.with(|t| t.get());
    (t != 0).then_some(t)
}

pub(crate) fn wake_local(key: TaskKey) {
    try_with(|s| s.tasks.borrow_mut().wake(key));
}

/// Sends a MSG_RING wake-up from the current shard's ring, if it runs io_uring.
pub(crate) fn msg_ring_from_current(target: RawFd) -> bool {
    try_with(|s| match s.driver.try_borrow_mut() {
        Ok(mut d) => match &mut *d {
            Driver::Uring(u) => u.msg_ring(target).is_ok(),
            Driver::Epoll(_) => false,
        },
        Err(_) => false,
    })
    .unwrap_or(false)
}

pub(crate) fn run_shard(
    id: usize,
    cpu: usize,
    backend: BackendKind,
    config: &Config,
    peers: Arc<[ShardHandle]>,
    setup: &(dyn Fn(usize) -> io::Result<()> + Send + Sync),
    tx: mpsc::Sender<(usize, Result<(), StartError>)>,
) {
    let Some(remote) = peers.get(id).map(|h| h.remote.clone()) else {
        let _ = tx.send((id, Err(StartError::Exited { shard: id })));
        return;
    };
    let fail = |source: io::Error| {
        remote.alive.store(false, Ordering::Release);
        let _ = tx.send((
            id,
            Err(StartError::Shard {
                shard: id,
                cpu,
                source,
            }),
        ));
    };
    if config.pin {
        let mut set = rustix::thread::CpuSet::new();
        set.set(cpu);
        if let Err(e) = rustix::thread::sched_setaffinity(None, &set) {
            return fail(e.into());
        }
    }
    let driver = match backend {
        BackendKind::IoUring => {
            match Uring::new(
                config.ring_entries,
                config.udp_buffers,
                config.udp_buffer_size,
            ) {
                Ok(mut u) => {
                    if let Err(e) = u.arm_eventfd(remote.eventfd.as_raw_fd()) {
                        return fail(e);
                    }
                    remote.ring_fd.store(u.ring_fd(), Ordering::Release);
                    tracing::debug!(shard = id, setup = u.setup, "cores: ring ready");
                    Driver::Uring(u)
                }
                Err(e) => return fail(e),
            }
        }
        BackendKind::Epoll => match Epoll::new() {
            Ok(mut e) => {
                if let Err(err) = e.watch_forever(remote.eventfd.as_raw_fd()) {
                    return fail(err);
                }
                Driver::Epoll(e)
            }
            Err(e) => return fail(e),
        },
    };
    let now = Instant::now();
    let shard = Rc::new(Shard {
        id,
        remote: remote.clone(),
        peers,
        driver: RefCell::new(driver),
        ops: RefCell::new(OpSlab::new(config.max_ops)),
        wheel: RefCell::new(Wheel::new()),
        tasks: RefCell::new(Tasks::default()),
        regs: RefCell::new(Vec::new()),
        scratch: RefCell::new(vec![0u8; 65536]),
        token_handler: RefCell::new(None),
        start: now,
        now: Cell::new(now),
        stop: Cell::new(false),
    });
    CURRENT.with(|c| *c.borrow_mut() = Some(shard.clone()));
    TOKEN.with(|t| t.set(remote.token));
    match setup(id) {
        Ok(()) => {
            let _ = tx.send((id, Ok(())));
            drop(tx);
            shard.run();
        }
        Err(source) => {
            let _ = tx.send((id, Err(StartError::Setup { shard: id, source })));
        }
    }
    shard.teardown();
    TOKEN.with(|t| t.set(0));
    CURRENT.with(|c| c.borrow_mut().take());
}

impl Shard {
    fn stats(&self) -> &StatCells {
        &self.remote.stats
    }

    pub(crate) fn now(&self) -> Instant {
        self.now.get()
    }

    fn tick_now(&self) -> u64 {
        self.now
            .get()
            .saturating_duration_since(self.start)
            .as_millis() as u64
    }

    fn tick_of(&self, deadline: Instant) -> u64 {
        let d = deadline.saturating_duration_since(self.start);
        // Round up: a timer never fires before its deadline.
        u64::try_from(d.as_micros().div_ceil(1000)).unwrap_or(u64::MAX / 2)
    }

    pub(crate) fn request_stop(&self) {
        self.stop.set(true);
    }

    fn run(self: &Rc<Self>) {
        let mut fired = Vec::new();
        let mut cqes = Vec::with_capacity(256);
        let mut readies = Vec::with_capacity(256);
        let mut keys = Vec::with_capacity(64);
        // When the current turn's work began: the end of the last wait.
        let mut woke = Instant::now();
        loop {
            StatCells::bump(&self.stats().loop_turns);
            self.now.set(Instant::now());
            self.fire_timers(&mut fired);
            self.drain_mailbox();
            self.run_ready();
            if self.stop.get() || self.remote.stopping.load(Ordering::Acquire) {
                break;
            }
            let end = Instant::now();
            let timeout = if !self.tasks.borrow().ready.is_empty() {
                Some(Duration::ZERO)
            } else {
                self.wheel.borrow().next_expiry().map(|t| {
                    let at = self.start + Duration::from_millis(t);
                    at.saturating_duration_since(end)
                })
            };
            self.stats().turn(end.saturating_duration_since(woke));
            let r = match &mut *self.driver.borrow_mut() {
                Driver::Uring(u) => u.wait(timeout, &mut cqes),
                Driver::Epoll(e) => e.wait(timeout, &mut readies),
            };
            woke = Instant::now();
            // Completion handlers see the time they run at, not the time before the wait.
            self.now.set(woke);
            if let Err(e) = r {
                tracing::error!(shard = self.id, error = %e, "cores: waiting for I/O failed");
                std::thread::sleep(Duration::from_millis(1));
            }
            for cqe in cqes.drain(..) {
                self.dispatch_cqe(cqe);
            }
            for ev in readies.drain(..) {
                self.dispatch_ready(ev, &mut keys);
            }
        }
    }

    fn teardown(self: &Rc<Self>) {
        self.remote.alive.store(false, Ordering::Release);
        self.remote.ring_fd.store(-1, Ordering::Release);
        // Submit what the last turn queued (sends, MSG_RING wake-ups of peers).
        if let Driver::Uring(u) = &mut *self.driver.borrow_mut() {
            if let Err(e) = u.flush() {
                tracing::warn!(shard = self.id, error = %e, "cores: final submit failed");
            }
        }
        // Drop tasks outside the borrow: their drops cancel their operations.
        let futures = self.tasks.borrow_mut().drain();
        drop(futures);
        if let Ok(mut q) = self.remote.queue.lock() {
            q.clear();
        }
        let regs: Vec<_> = self.regs.borrow_mut().drain(..).collect();
        for r in regs.into_iter().flatten() {
            if let Some(op) = r.op {
                self.cancel_op(op);
            }
        }
        self.token_handler.borrow_mut().take();
        // Wait (bounded) for the kernel to finish with every operation's memory.
        if matches!(&*self.driver.borrow(), Driver::Uring(_)) {
            let mut cqes = Vec::new();
            for _ in 0..200 {
                if self.ops.borrow().in_flight == 0 {
                    break;
                }
                if let Driver::Uring(u) = &mut *self.driver.borrow_mut() {
                    let _ = u.wait(Some(Duration::from_millis(5)), &mut cqes);
                }
                for cqe in cqes.drain(..) {
                    if let Some(key) = crate::op::OpKey::from_user_data(cqe.user_data) {
                        if !crate::uring_more(cqe.flags) {
                            let mut ops = self.ops.borrow_mut();
                            if let Some(s) = ops.get_mut(key) {
                                s.state = OpState::Orphan;
                            }
                            ops.complete(key, cqe.res);
                        }
                    }
                }
            }
            if self.ops.borrow().in_flight != 0 {
                tracing::warn!(
                    shard = self.id,
                    "cores: operations still in flight at exit; leaking their buffers"
                );
                let slab = std::mem::replace(&mut *self.ops.borrow_mut(), OpSlab::new(0));
                std::mem::forget(slab);
            }
        }
    }

    fn fire_timers(&self, fired: &mut Vec<Fired>) {
        let tick = self.tick_now();
        self.wheel.borrow_mut().advance(tick, fired);
        for f in fired.drain(..) {
            StatCells::bump(&self.stats().timers_fired);
            match f {
                Fired::Wake(w) => w.wake(),
                Fired::Callback(cb) => cb(),
                Fired::Token(id, tok) => {
                    let h = self.token_handler.borrow_mut().take();
                    if let Some(mut h) = h {
                        h(id, tok);
                        let mut slot = self.token_handler.borrow_mut();
                        if slot.is_none() {
                            *slot = Some(h);
                        }
                    } else {
                        tracing::warn!(
                            shard = self.id,
                            token = tok,
                            "cores: timer token fired with no handler set"
                        );
                    }
                }
            }
        }
    }

    fn drain_mailbox(&self) {
        if !self.remote.notified.swap(false, Ordering::AcqRel) {
            return;
        }
        loop {
            let batch: Vec<Mail> = {
                let mut q = match self.remote.queue.lock() {
                    Ok(q) => q,
                    Err(p) => p.into_inner(),
                };
                if q.is_empty() {
                    break;
                }
                q.drain(..).collect()
            };
            for m in batch {
                match m {
                    Mail::Run(f) => {
                        StatCells::bump(&self.stats().mailbox_run);
                        f();
                    }
                    Mail::Wake(k) => self.tasks.borrow_mut().wake(k),
                }
            }
        }
    }

    fn run_ready(&self) {
        for _ in 0..4096 {
            let next = self.tasks.borrow_mut().take_ready();
            match next {
                None => return,
                Some(None) => continue,
                Some(Some((key, fut, waker))) => {
                    StatCells::bump(&self.stats().tasks_polled);
                    let rest = poll_task(fut, &waker);
                    self.tasks.borrow_mut().put_back(key, rest);
                }
            }
        }
    }

    // ---- operations ----

    /// Allocates a slot, lets `prepare` fill its memory, and submits it.
    pub(crate) fn submit_op(
        &self,
        spec: Spec,
        prepare: impl FnOnce(&mut OpData),
    ) -> io::Result<OpKey> {
        let mut ops = self.ops.borrow_mut();
        let key = match ops.alloc(spec) {
            Ok(k) => k,
            Err(e) => {
                StatCells::bump(&self.stats().ops_full);
                return Err(e);
            }
        };
        let Some(slot) = ops.get_mut(key) else {
            return Err(io::Error::other("op slot vanished"));
        };
        prepare(&mut slot.data);
        let r = match &mut *self.driver.borrow_mut() {
            Driver::Uring(u) => u.submit(key, &mut slot.data),
            Driver::Epoll(e) => {
                if spec.is_multishot() {
                    e.wait_for(key, spec)
                } else {
                    match epoll::try_io(&mut slot.data) {
                        Some(res) => {
                            slot.state = OpState::Done(res);
                            Ok(())
                        }
                        None => e.wait_for(key, spec),
                    }
                }
            }
        };
        if let Err(e) = r {
            ops.release(key);
            return Err(e);
        }
        Ok(key)
    }

    /// Polls an operation: `Ready(res)` once complete (the slot is then still held; call
    /// [`Shard::finish_op`]).
    pub(crate) fn poll_op(&self, key: OpKey, waker: &Waker) -> Poll<i32> {
        let mut ops = self.ops.borrow_mut();
        let Some(slot) = ops.get_mut(key) else {
            return Poll::Ready(-libc::ECANCELED);
        };
        match &mut slot.state {
            OpState::Done(res) => Poll::Ready(*res),
            OpState::Pending(w) => {
                if !w.as_ref().is_some_and(|w| w.will_wake(waker)) {
                    *w = Some(waker.clone());
                }
                Poll::Pending
            }
            _ => Poll::Ready(-libc::ECANCELED),
        }
    }

    /// Reads a completed operation's memory and frees its slot.
    pub(crate) fn finish_op<R>(&self, key: OpKey, f: impl FnOnce(&mut OpData) -> R) -> Option<R> {
        let mut ops = self.ops.borrow_mut();
        let r = ops.get_mut(key).map(|s| f(&mut s.data));
        ops.release(key);
        r
    }

    /// Gives up on an operation: frees it if complete, else requests cancellation and
    /// leaves the slot to its final completion.
    pub(crate) fn cancel_op(&self, key: OpKey) {
        let mut ops = self.ops.borrow_mut();
        let Some(slot) = ops.get_mut(key) else {
            return;
        };
        match slot.state {
            OpState::Done(_) => ops.release(key),
            OpState::Pending(_) => {
                StatCells::bump(&self.stats().ops_cancelled);
                let fd = slot.data.spec.fd();
                match &mut *self.driver.borrow_mut() {
                    Driver::Uring(u) => {
                        slot.state = OpState::Orphan;
                        if let Err(e) = u.cancel(key) {
                            tracing::warn!(shard = self.id, error = %e, "cores: cancel request failed");
                        }
                    }
                    Driver::Epoll(e) => {
                        e.forget(key, fd);
                        ops.release(key);
                    }
                }
            }
            OpState::Orphan | OpState::Free => {}
        }
    }

    /// Detaches an operation nobody awaits (UDP sends): freed by its completion.
    pub(crate) fn detach_op(&self, key: OpKey) {
        let mut ops = self.ops.borrow_mut();
        let Some(slot) = ops.get_mut(key) else {
            return;
        };
        match slot.state {
            OpState::Done(res) => {
                if res < 0 {
                    StatCells::bump(&self.stats().udp_send_errors);
                }
                ops.release(key);
            }
            _ => slot.state = OpState::Orphan,
        }
    }

    /// Removes an fd from the epoll set before it is closed.
    pub(crate) fn forget_fd(&self, fd: RawFd) {
        if let Ok(mut d) = self.driver.try_borrow_mut() {
            if let Driver::Epoll(e) = &mut *d {
                e.forget_fd(fd);
            }
        }
    }

    // ---- multishot registrations ----

    pub(crate) fn register_udp(&self, socket: UdpSocket, handler: UdpHandler) -> io::Result<u32> {
        self.register(RegKind::Udp {
            socket,
            handler: Some(handler),
        })
    }

    pub(crate) fn register_accept(&self, fd: RawFd, handler: AcceptHandler) -> io::Result<u32> {
        self.register(RegKind::Accept {
            fd,
            handler: Some(handler),
        })
    }

    fn register(&self, kind: RegKind) -> io::Result<u32> {
        let reg = {
            let mut regs = self.regs.borrow_mut();
            let idx = match regs.iter().position(|r| r.is_none()) {
                Some(i) => i,
                None => {
                    regs.push(None);
                    regs.len() - 1
                }
            };
            regs[idx] = Some(Registration { kind, op: None });
            idx as u32
        };
        if let Err(e) = self.arm_reg(reg) {
            self.regs.borrow_mut()[reg as usize] = None;
            return Err(e);
        }
        Ok(reg)
    }

    fn arm_reg(&self, reg: u32) -> io::Result<()> {
        let spec = {
            let regs = self.regs.borrow();
            match regs.get(reg as usize) {
                Some(Some(r)) => match &r.kind {
                    RegKind::Udp { socket, .. } => Spec::UdpRecv {
                        fd: socket.raw_fd(),
                        reg,
                    },
                    RegKind::Accept { fd, .. } => Spec::Accept { fd: *fd, reg },
                },
                _ => return Ok(()),
            }
        };
        let key = self.submit_op(spec, |_| {})?;
        if let Some(Some(r)) = self.regs.borrow_mut().get_mut(reg as usize) {
            r.op = Some(key);
        }
        Ok(())
    }

    pub(crate) fn unregister(&self, reg: u32) {
        let r = self
            .regs
            .borrow_mut()
            .get_mut(reg as usize)
            .and_then(|r| r.take());
        if let Some(r) = r {
            if let Some(op) = r.op {
                self.cancel_op(op);
            }
        }
    }

    /// Arms registration `reg` again unless it is gone or already armed.
    fn rearm(&self, reg: u32) {
        let idle = matches!(
            self.regs.borrow().get(reg as usize),
            Some(Some(Registration { op: None, .. }))
        );
        if !idle {
            return;
        }
        if let Err(e) = self.arm_reg(reg) {
            tracing::error!(shard = self.id, error = %e, "cores: re-arming a multishot operation failed");
        }
    }

    fn call_udp(&self, reg: u32, data: &[u8], peer: SocketAddr) {
        let taken = {
            let mut regs = self.regs.borrow_mut();
            match regs.get_mut(reg as usize) {
                Some(Some(Registration {
                    kind: RegKind::Udp { socket, handler },
                    ..
                })) => handler.take().map(|h| (socket.clone(), h)),
                _ => None,
            }
        };
        let Some((socket, mut h)) = taken else {
            return;
        };
        StatCells::bump(&self.stats().udp_received);
        h(&socket, data, peer);
        if let Some(Some(Registration {
            kind: RegKind::Udp { handler, .. },
            ..
        })) = self.regs.borrow_mut().get_mut(reg as usize)
        {
            if handler.is_none() {
                *handler = Some(h);
            }
        }
    }

    fn call_accept(&self, reg: u32, r: io::Result<(TcpStream, SocketAddr)>) {
        let taken = {
            let mut regs = self.regs.borrow_mut();
            match regs.get_mut(reg as usize) {
                Some(Some(Registration {
                    kind: RegKind::Accept { handler, .. },
                    ..
                })) => handler.take(),
                _ => None,
            }
        };
        let Some(mut h) = taken else {
            return;
        };
        h(r);
        if let Some(Some(Registration {
            kind: RegKind::Accept { handler, .. },
            ..
        })) = self.regs.borrow_mut().get_mut(reg as usize)
        {
            if handler.is_none() {
                *handler = Some(h);
            }
        }
    }

    fn accepted(&self, reg: u32, fd: RawFd) {
        // SAFETY: the kernel just handed us this new fd; nobody else owns it.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        StatCells::bump(&self.stats().tcp_accepted);
        let r = crate::sys::peer_addr(fd).map(|peer| (TcpStream::from_fd(owned), peer));
        self.call_accept(reg, r);
    }

    // ---- dispatch ----

    fn dispatch_cqe(&self, cqe: Cqe) {
        let tag = cqe.user_data >> 56;
        if tag == TAG_EVENTFD {
            drain_eventfd(self.remote.eventfd.as_raw_fd());
            if !crate::uring_more(cqe.flags) {
                if let Driver::Uring(u) = &mut *self.driver.borrow_mut() {
                    let _ = u.arm_eventfd(self.remote.eventfd.as_raw_fd());
                }
            }
            return;
        }
        if tag == TAG_MSG_SENT && cqe.res < 0 {
            StatCells::bump(&self.stats().msg_ring_errors);
        }
        if tag != TAG_OP {
            return; // wake-ups (MSG_RING), cancel and msg-sent acknowledgements
        }
        let Some(key) = OpKey::from_user_data(cqe.user_data) else {
            return;
        };
        let spec = match self.ops.borrow_mut().get_mut(key) {
            Some(s) => s.data.spec,
            None => return,
        };
        let more = crate::uring_more(cqe.flags);
        match spec {
            Spec::UdpRecv { reg, .. } => {
                self.udp_cqe(reg, &cqe);
                if !more {
                    if !self.ops_is_orphan(key) {
                        StatCells::bump(&self.stats().udp_rearms);
                    }
                    self.multishot_ended(key, reg, cqe.res);
                }
            }
            Spec::Accept { reg, .. } => {
                if cqe.res >= 0 {
                    self.accepted(reg, cqe.res);
                } else if cqe.res != -libc::ECANCELED {
                    StatCells::bump(&self.stats().tcp_accept_errors);
                }
                if !more {
                    self.multishot_ended(key, reg, cqe.res);
                }
            }
            Spec::SendTo { .. } => {
                if cqe.res < 0 {
                    StatCells::bump(&self.stats().udp_send_errors);
                }
                let w = self.ops.borrow_mut().complete(key, cqe.res);
                if let Some(w) = w {
                    w.wake();
                }
            }
            _ => {
                let w = self.ops.borrow_mut().complete(key, cqe.res);
                if let Some(w) = w {
                    w.wake();
                }
            }
        }
    }

    /// The kernel ended multishot `key` of registration `reg` with `res`: re-arm at once
    /// (success, or buffers ran out), or after a pause on other errors (e.g. EMFILE on
    /// accept), so a persistent error cannot spin the loop.
    fn multishot_ended(&self, key: OpKey, reg: u32, res: i32) {
        let orphan = self.ops_is_orphan(key);
        self.ops.borrow_mut().release(key);
        if orphan {
            return;
        }
        if let Some(Some(r)) = self.regs.borrow_mut().get_mut(reg as usize) {
            if r.op == Some(key) {
                r.op = None;
            }
        }
        if res >= 0 || res == -libc::ENOBUFS {
            self.rearm(reg);
        } else {
            tracing::warn!(
                shard = self.id,
                errno = -res,
                "cores: multishot operation failed; re-arming in 10 ms"
            );
            self.rearm_later(reg);
        }
    }

    fn rearm_later(&self, reg: u32) {
        self.arm_timer(
            Instant::now() + MULTISHOT_BACKOFF,
            TimerAction::Callback(Box::new(move || {
                try_with(|s| s.rearm(reg));
            })),
        );
    }

    fn ops_is_orphan(&self, key: OpKey) -> bool {
        matches!(
            self.ops.borrow_mut().get_mut(key).map(|s| &s.state),
            Some(OpState::Orphan)
        )
    }

    fn udp_cqe(&self, reg: u32, cqe: &Cqe) {
        if cqe.res < 0 {
            if cqe.res == -libc::ENOBUFS {
                StatCells::bump(&self.stats().udp_enobufs);
            } else if cqe.res != -libc::ECANCELED {
                StatCells::bump(&self.stats().udp_recv_errors);
            }
            return;
        }
        let Some(bid) = io_uring::cqueue::buffer_select(cqe.flags) else {
            StatCells::bump(&self.stats().udp_recv_errors);
            return;
        };
        let found = match &*self.driver.borrow() {
            Driver::Uring(u) => u
                .recvmsg_buffer(bid, cqe.res)
                .map(|(ptr, len)| (ptr, len, *u.recv_msghdr())),
            Driver::Epoll(_) => None,
        };
        if let Some((ptr, len, msghdr)) = found {
            // SAFETY: the kernel filled `len` bytes of provided buffer `bid`, which stays
            // ours (not in the ring) until `return_buffer` below; the slice does not
            // outlive this block.
            let buf = unsafe { std::slice::from_raw_parts(ptr, len) };
            match io_uring::types::RecvMsgOut::parse(buf, &msghdr) {
                Ok(out) => {
                    if out.is_payload_truncated() {
                        StatCells::bump(&self.stats().udp_truncated);
                    } else if let Some(peer) = crate::sys::sockaddr_bytes_to_std(out.name_data()) {
                        self.call_udp(reg, out.payload_data(), peer);
                    } else {
                        StatCells::bump(&self.stats().udp_recv_errors);
                    }
                }
                Err(()) => StatCells::bump(&self.stats().udp_recv_errors),
            }
        } else {
            StatCells::bump(&self.stats().udp_recv_errors);
        }
        // Every buffer a completion names goes back to the kernel, exactly once.
        if let Driver::Uring(u) = &mut *self.driver.borrow_mut() {
            u.return_buffer(bid);
        }
    }

    fn dispatch_ready(&self, ev: Ready, keys: &mut Vec<OpKey>) {
        if ev.fd == self.remote.eventfd.as_raw_fd() {
            drain_eventfd(ev.fd);
            return;
        }
        keys.clear();
        if let Driver::Epoll(e) = &*self.driver.borrow() {
            e.waiting(ev, keys);
        }
        // Drained, not taken: the list keeps its capacity for the next event.
        for key in keys.drain(..) {
            let spec = match self.ops.borrow_mut().get_mut(key) {
                Some(s) => s.data.spec,
                None => continue,
            };
            match spec {
                Spec::UdpRecv { fd, reg } => self.epoll_udp(fd, reg),
                Spec::Accept { fd, reg } => self.epoll_accept(fd, reg),
                _ => {
                    let res = {
                        let mut ops = self.ops.borrow_mut();
                        match ops.get_mut(key) {
                            Some(s) => epoll::try_io(&mut s.data),
                            None => None,
                        }
                    };
                    if let Some(res) = res {
                        if let Driver::Epoll(e) = &mut *self.driver.borrow_mut() {
                            e.forget(key, spec.fd());
                        }
                        if matches!(spec, Spec::SendTo { .. }) && res < 0 {
                            StatCells::bump(&self.stats().udp_send_errors);
                        }
                        let w = self.ops.borrow_mut().complete(key, res);
                        if let Some(w) = w {
                            w.wake();
                        }
                    }
                }
            }
        }
    }

    fn epoll_udp(&self, fd: RawFd, reg: u32) {
        let mut buf = std::mem::take(&mut *self.scratch.borrow_mut());
        if buf.len() < 65536 {
            buf.resize(65536, 0);
        }
        for _ in 0..64 {
            let mut addr = crate::sys::RawAddr::empty();
            // SAFETY: buf and addr are live and writable for the lengths passed.
            let n = unsafe {
                libc::recvfrom(
                    fd,
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    0,
                    addr.as_mut_ptr(),
                    &mut addr.len,
                )
            };
            if n < 0 {
                let e = crate::sys::neg_errno();
                if e != -libc::EAGAIN && e != -libc::EINTR {
                    StatCells::bump(&self.stats().udp_recv_errors);
                }
                break;
            }
            let Some(peer) = addr.decode() else {
                StatCells::bump(&self.stats().udp_recv_errors);
                continue;
            };
            self.call_udp(reg, buf.get(..n as usize).unwrap_or(&[]), peer);
            if !matches!(self.regs.borrow().get(reg as usize), Some(Some(_))) {
                break;
            }
        }
        *self.scratch.borrow_mut() = buf;
    }

    fn epoll_accept(&self, fd: RawFd, reg: u32) {
        for _ in 0..64 {
            // SAFETY: accept4 with null address pointers is allowed.
            let nfd = unsafe {
                libc::accept4(
                    fd,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                )
            };
            if nfd < 0 {
                let e = crate::sys::neg_errno();
                if e != -libc::EAGAIN && e != -libc::EINTR {
                    StatCells::bump(&self.stats().tcp_accept_errors);
                }
                if [libc::EMFILE, libc::ENFILE, libc::ENOBUFS, libc::ENOMEM].contains(&-e) {
                    // Level-triggered readiness would report the pending connection
                    // again at once: stop watching for a while instead of spinning.
                    let op = match self.regs.borrow_mut().get_mut(reg as usize) {
                        Some(Some(r)) => r.op.take(),
                        _ => None,
                    };
                    if let Some(op) = op {
                        self.cancel_op(op);
                    }
                    tracing::warn!(
                        shard = self.id,
                        errno = -e,
                        "cores: accept failed; retrying in 10 ms"
                    );
                    self.rearm_later(reg);
                }
                break;
            }
            self.accepted(reg, nfd);
            if !matches!(self.regs.borrow().get(reg as usize), Some(Some(_))) {
                break;
            }
        }
    }

    // ---- timers ----

    pub(crate) fn arm_timer(&self, deadline: Instant, action: TimerAction) -> TimerId {
        let tick = self.tick_of(deadline);
        self.wheel.borrow_mut().arm(tick, action)
    }

    pub(crate) fn cancel_timer(&self, id: TimerId) -> bool {
        let a = self.wheel.borrow_mut().cancel(id);
        let armed = matches!(
            a,
            Some(TimerAction::Callback(_))
                | Some(TimerAction::Token(_))
                | Some(TimerAction::Waker { fired: false, .. })
        );
        drop(a);
        armed
    }

    pub(crate) fn timer_fired(&self, id: TimerId, cx: &Context<'_>) -> bool {
        self.wheel.borrow_mut().poll_fired(id, cx.waker())
    }

    pub(crate) fn set_token_handler(&self, h: TokenHandler) {
        *self.token_handler.borrow_mut() = Some(h);
    }

    pub(crate) fn spawn(&self, fut: std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>) {
        self.tasks.borrow_mut().insert(fut, &self.remote);
    }
}

fn drain_eventfd(fd: RawFd) {
    let mut v: u64 = 0;
    // SAFETY: reads 8 bytes into a live u64 from a non-blocking eventfd.
    unsafe { libc::read(fd, std::ptr::addr_of_mut!(v).cast(), 8) };
}
