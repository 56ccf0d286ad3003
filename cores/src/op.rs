//! The slab of operations in flight, keyed by `user_data` (index + generation).
//!
//! Owns every piece of memory the kernel may read or write during an operation: the data
//! buffer, the socket address, the `msghdr`/`iovec`. Each slot's [`OpData`] is boxed so
//! its address is stable while the slab's vector grows, and the box is reused across
//! operations (no allocation per datagram once warm).
//!
//! Invariants ("completion ownership is sacred"):
//! - A slot whose operation was submitted is freed only by its final completion, never by
//!   the future that waits for it. A dropped future turns the slot into `Orphan` and asks
//!   for cancellation; the final completion frees it.
//! - `user_data` = `TAG_OP << 56 | gen << 32 | index`; a completion whose generation does
//!   not match the slot is ignored (and counted).

use std::io;
use std::os::fd::RawFd;
use std::task::Waker;

use crate::sys::RawAddr;

/// What a completion for a slot means, and (for epoll) how to perform it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Spec {
    /// recv(2) into `buf[..len]` on a socket.
    Recv { fd: RawFd },
    /// read(2) into `buf[..len]` (pipes).
    Read { fd: RawFd },
    /// send(2) of `buf` with MSG_NOSIGNAL.
    Send { fd: RawFd },
    /// write(2) of `buf` (pipes).
    Write { fd: RawFd },
    /// sendmsg(2) of `buf` to `addr` (UDP); the completion is only counted.
    SendTo { fd: RawFd },
    /// connect(2) to `addr`.
    Connect { fd: RawFd },
    /// Wait until `fd` is readable (pidfd).
    PollIn { fd: RawFd },
    /// Multishot datagram receive feeding registration `reg`.
    UdpRecv { fd: RawFd, reg: u32 },
    /// Multishot accept feeding registration `reg`.
    Accept { fd: RawFd, reg: u32 },
}

impl Spec {
    pub(crate) fn fd(&self) -> RawFd {
        match *self {
            Spec::Recv { fd }
            | Spec::Read { fd }
            | Spec::Send { fd }
            | Spec::Write { fd }
            | Spec::SendTo { fd }
            | Spec::Connect { fd }
            | Spec::PollIn { fd }
            | Spec::UdpRecv { fd, .. }
            | Spec::Accept { fd, .. } => fd,
        }
    }

    /// Whether the operation waits for writability (epoll).
    pub(crate) fn wants_write(&self) -> bool {
        matches!(
            self,
            Spec::Send { .. } | Spec::Write { .. } | Spec::SendTo { .. } | Spec::Connect { .. }
        )
    }

    pub(crate) fn is_multishot(&self) -> bool {
        matches!(self, Spec::UdpRecv { .. } | Spec::Accept { .. })
    }
}

/// Kernel-visible memory of one operation. Boxed; never moves while in flight.
pub(crate) struct OpData {
    pub(crate) spec: Spec,
    pub(crate) buf: Vec<u8>,
    /// For reads: how many bytes of `buf` the kernel may fill.
    pub(crate) len: usize,
    pub(crate) addr: RawAddr,
    pub(crate) msg: libc::msghdr,
    pub(crate) iov: libc::iovec,
}

impl OpData {
    fn new() -> OpData {
        OpData {
            spec: Spec::PollIn { fd: -1 },
            buf: Vec::new(),
            len: 0,
            addr: RawAddr::empty(),
            // SAFETY: msghdr is plain old data; all-zero is a valid empty header.
            msg: unsafe { std::mem::zeroed() },
            iov: libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            },
        }
    }

    /// Points `msg`/`iov` at `buf` and `addr` (for sendmsg).
    pub(crate) fn prepare_sendmsg(&mut self) {
        self.iov.iov_base = self.buf.as_mut_ptr().cast();
        self.iov.iov_len = self.buf.len();
        self.msg.msg_name = self.addr.as_mut_ptr().cast();
        self.msg.msg_namelen = self.addr.len;
        self.msg.msg_iov = &mut self.iov;
        self.msg.msg_iovlen = 1;
        self.msg.msg_control = std::ptr::null_mut();
        self.msg.msg_controllen = 0;
        self.msg.msg_flags = 0;
    }
}

pub(crate) enum OpState {
    Free,
    /// Submitted (or waiting for readiness); the waker of the waiting future.
    Pending(Option<Waker>),
    /// Completed with this result; waiting for its future to collect it.
    Done(i32),
    /// The future was dropped; the final completion frees the slot.
    Orphan,
}

pub(crate) struct OpSlot {
    pub(crate) gen: u32,
    pub(crate) state: OpState,
    pub(crate) data: Box<OpData>,
}

/// A key into the slab: index and generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct OpKey {
    pub(crate) index: u32,
    pub(crate) gen: u32,
}

pub(crate) const TAG_OP: u64 = 1;
pub(crate) const TAG_CANCEL: u64 = 2;
pub(crate) const TAG_WAKE: u64 = 3;
pub(crate) const TAG_EVENTFD: u64 = 4;
pub(crate) const TAG_MSG_SENT: u64 = 5;

impl OpKey {
    pub(crate) fn user_data(self) -> u64 {
        (TAG_OP << 56) | (u64::from(self.gen & 0x00ff_ffff) << 32) | u64::from(self.index)
    }

    pub(crate) fn from_user_data(ud: u64) -> Option<OpKey> {
        if ud >> 56 != TAG_OP {
            return None;
        }
        Some(OpKey {
            index: ud as u32,
            gen: ((ud >> 32) & 0x00ff_ffff) as u32,
        })
    }
}

/// The bounded slab of operation slots.
pub(crate) struct OpSlab {
    slots: Vec<OpSlot>,
    free: Vec<u32>,
    limit: usize,
    pub(crate) in_flight: usize,
}

impl OpSlab {
    pub(crate) fn new(limit: usize) -> OpSlab {
        OpSlab {
            slots: Vec::new(),
            free: Vec::new(),
            limit: limit.min(u32::MAX as usize),
            in_flight: 0,
        }
    }

    /// Takes a free slot, prepared for `spec`. Fails when `limit` slots are in use.
    pub(crate) fn alloc(&mut self, spec: Spec) -> io::Result<OpKey> {
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                if self.slots.len() >= self.limit {
                    return Err(io::Error::new(
                        io::ErrorKind::WouldBlock,
                        "operation slab full (Config::max_ops)",
                    ));
                }
                self.slots.push(OpSlot {
                    gen: 0,
                    state: OpState::Free,
                    data: Box::new(OpData::new()),
                });
                (self.slots.len() - 1) as u32
            }
        };
        let slot = &mut self.slots[index as usize];
        slot.gen = (slot.gen + 1) & 0x00ff_ffff;
        slot.state = OpState::Pending(None);
        slot.data.spec = spec;
        slot.data.buf.clear();
        slot.data.len = 0;
        self.in_flight += 1;
        Ok(OpKey {
            index,
            gen: slot.gen,
        })
    }

    pub(crate) fn get_mut(&mut self, key: OpKey) -> Option<&mut OpSlot> {
        let slot = self.slots.get_mut(key.index as usize)?;
        if slot.gen != key.gen || matches!(slot.state, OpState::Free) {
            return None;
        }
        Some(slot)
    }

    pub(crate) fn release(&mut self, key: OpKey) {
        if let Some(slot) = self.get_mut(key) {
            slot.state = OpState::Free;
            // Keep the buffer's capacity for reuse, but bound what an idle slot holds.
            if slot.data.buf.capacity() > 256 * 1024 {
                slot.data.buf = Vec::new();
            }
            self.free.push(key.index);
            self.in_flight -= 1;
        }
    }

    /// Records a completion. Returns the waker to wake, if any. Frees orphans.
    /// `final_cqe` is false for the intermediate completions of a multishot op.
    pub(crate) fn complete(&mut self, key: OpKey, res: i32) -> Option<Waker> {
        let slot = self.get_mut(key)?;
        match std::mem::replace(&mut slot.state, OpState::Done(res)) {
            OpState::Pending(w) => w,
            OpState::Orphan => {
                self.release(key);
                None
            }
            other => {
                slot.state = other;
                None
            }
        }
    }
}
