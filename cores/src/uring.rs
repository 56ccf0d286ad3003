//! The io_uring backend: one ring per shard, set up with SINGLE_ISSUER + DEFER_TASKRUN
//! (falling back to COOP_TASKRUN, then plain), and one provided-buffer ring (buffer
//! group 0) that every multishot datagram receive of the shard draws from.
//!
//! Owns the ring, the mmapped buffer-ring memory and the `msghdr` template of multishot
//! receives. Invariants: SQEs only point into [`crate::op::OpData`] boxes that stay
//! alive until their final CQE (or into this struct, which outlives the ring); a buffer
//! id taken by a completion is handed back exactly once, after its handler returned.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use io_uring::{opcode, squeue, types, IoUring, Probe};

use crate::op::{OpData, OpKey, Spec, TAG_CANCEL, TAG_EVENTFD, TAG_MSG_SENT, TAG_WAKE};

/// Checks that this kernel offers what the backend needs (used once, to pick a backend).
pub(crate) fn probe() -> io::Result<()> {
    if let Ok(s) = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled") {
        if s.trim() != "0" {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("/proc/sys/kernel/io_uring_disabled = {}", s.trim()),
            ));
        }
    }
    let ring: IoUring = IoUring::new(8)?;
    if !ring.params().is_feature_ext_arg() || !ring.params().is_feature_nodrop() {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "io_uring lacks EXT_ARG or NODROP",
        ));
    }
    let mut probe = Probe::new();
    ring.submitter().register_probe(&mut probe)?;
    for op in [
        opcode::RecvMsgMulti::CODE,
        opcode::MsgRingData::CODE,
        opcode::AcceptMulti::CODE,
        opcode::Connect::CODE,
        opcode::SendMsg::CODE,
        opcode::PollAdd::CODE,
        opcode::AsyncCancel::CODE,
    ] {
        if !probe.is_supported(op) {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("io_uring opcode {op} unsupported"),
            ));
        }
    }
    Ok(())
}

/// The provided-buffer ring: `entries` buffers of `size` bytes, group id 0.
struct BufRing {
    ring: *mut types::BufRingEntry,
    ring_len: usize,
    bufs: *mut u8,
    bufs_len: usize,
    entries: u16,
    size: usize,
    tail: u16,
}

impl BufRing {
    fn new(ring: &IoUring, entries: u16, size: usize) -> io::Result<BufRing> {
        if !entries.is_power_of_two() || entries == 0 || entries > 32768 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("udp_buffers = {entries}: must be a power of two <= 32768"),
            ));
        }
        let ring_len = usize::from(entries) * std::mem::size_of::<types::BufRingEntry>();
        let bufs_len = usize::from(entries)
            .checked_mul(size)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "buffer ring too large"))?;
        let map = |len: usize| -> io::Result<*mut libc::c_void> {
            // SAFETY: anonymous private mapping; no existing memory is touched.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            if p == libc::MAP_FAILED {
                Err(io::Error::last_os_error())
            } else {
                Ok(p)
            }
        };
        let ring_mem = map(ring_len)?;
        let bufs = match map(bufs_len) {
            Ok(p) => p,
            Err(e) => {
                // SAFETY: ring_mem was mapped above with ring_len and is unused.
                unsafe { libc::munmap(ring_mem, ring_len) };
                return Err(e);
            }
        };
        let mut br = BufRing {
            ring: ring_mem.cast(),
            ring_len,
            bufs: bufs.cast(),
            bufs_len,
            entries,
            size,
            tail: 0,
        };
        for bid in 0..entries {
            br.push(bid);
        }
        br.publish();
        // SAFETY: the ring memory is page aligned (mmap), `entries` long, and lives until
        // Drop, which runs after the ring is dropped (field order in `Uring`).
        unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(ring_mem as u64, entries, 0, 0)?;
        }
        Ok(br)
    }

    fn push(&mut self, bid: u16) {
        let idx = usize::from(self.tail & (self.entries - 1));
        // SAFETY: idx < entries, inside the mapped ring; bid < entries so the buffer
        // address is inside the mapped buffer area.
        unsafe {
            let e = &mut *self.ring.add(idx);
            e.set_addr(self.bufs.add(usize::from(bid) * self.size) as u64);
            e.set_len(self.size as u32);
            e.set_bid(bid);
        }
        self.tail = self.tail.wrapping_add(1);
    }

    fn publish(&mut self) {
        // SAFETY: the tail field of entry 0 is a u16 shared with the kernel; it is only
        // written here (by this thread) and read by the kernel, so an atomic release
        // store is the correct access.
        unsafe {
            let tail = types::BufRingEntry::tail(self.ring) as *const AtomicU16;
            (*tail).store(self.tail, Ordering::Release);
        }
    }

    /// The buffer with id `bid`, up to `len` bytes.
    fn buffer(&self, bid: u16, len: usize) -> Option<*const u8> {
        if bid >= self.entries || len > self.size {
            return None;
        }
        // SAFETY: bid < entries, so the offset is inside the mapped buffer area.
        Some(unsafe { self.bufs.add(usize::from(bid) * self.size) })
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: both regions were mapped in `new` with these lengths; the ring that
        // referenced them has been dropped (see field order of `Uring`).
        unsafe {
            libc::munmap(self.ring.cast(), self.ring_len);
            libc::munmap(self.bufs.cast(), self.bufs_len);
        }
    }
}

/// One completion, copied out of the CQ so handlers may submit while we dispatch.
#[derive(Clone, Copy)]
pub(crate) struct Cqe {
    pub(crate) user_data: u64,
    pub(crate) res: i32,
    pub(crate) flags: u32,
}

pub(crate) struct Uring {
    // Field order matters: the ring is dropped (and so the kernel's references to the
    // buffer ring) before the buffer ring memory is unmapped.
    ring: IoUring,
    bufring: BufRing,
    recv_msg: Box<libc::msghdr>,
    pub(crate) setup: &'static str,
}

impl Uring {
    pub(crate) fn new(entries: u32, udp_buffers: u16, udp_buffer_size: usize) -> io::Result<Uring> {
        let cq = entries.saturating_mul(4);
        let (ring, setup) = match IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .setup_cqsize(cq)
            .build(entries)
        {
            Ok(r) => (r, "single_issuer+defer_taskrun"),
            Err(_) => match IoUring::builder()
                .setup_coop_taskrun()
                .setup_cqsize(cq)
                .build(entries)
            {
                Ok(r) => (r, "coop_taskrun"),
                Err(_) => (IoUring::builder().setup_cqsize(cq).build(entries)?, "plain"),
            },
        };
        let bufring = BufRing::new(&ring, udp_buffers, udp_buffer_size)?;
        // SAFETY: msghdr is plain old data; zero is an empty header.
        let mut recv_msg: Box<libc::msghdr> = Box::new(unsafe { std::mem::zeroed() });
        recv_msg.msg_namelen = std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
        recv_msg.msg_controllen = 0;
        Ok(Uring {
            ring,
            bufring,
            recv_msg,
            setup,
        })
    }

    pub(crate) fn ring_fd(&self) -> RawFd {
        self.ring.as_raw_fd()
    }

    fn push(&mut self, sqe: squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: every SQE built by this module points into memory that outlives the
            // operation (see the module invariants).
            if unsafe { self.ring.submission().push(&sqe) }.is_ok() {
                return Ok(());
            }
            self.ring.submit()?;
        }
    }

    /// Submits the operation described by `data.spec` with `key` as user data.
    pub(crate) fn submit(&mut self, key: OpKey, data: &mut OpData) -> io::Result<()> {
        let ud = key.user_data();
        let sqe = match data.spec {
            Spec::Recv { fd } => opcode::Recv::new(
                types::Fd(fd),
                data.buf.as_mut_ptr(),
                data.len.min(data.buf.len()) as u32,
            )
            .build(),
            Spec::Read { fd } => opcode::Read::new(
                types::Fd(fd),
                data.buf.as_mut_ptr(),
                data.len.min(data.buf.len()) as u32,
            )
            .offset(u64::MAX)
            .build(),
            Spec::Send { fd } => {
                opcode::Send::new(types::Fd(fd), data.buf.as_ptr(), data.buf.len() as u32)
                    .flags(libc::MSG_NOSIGNAL)
                    .build()
            }
            Spec::Write { fd } => {
                opcode::Write::new(types::Fd(fd), data.buf.as_ptr(), data.buf.len() as u32)
                    .offset(u64::MAX)
                    .build()
            }
            Spec::SendTo { fd } => {
                data.prepare_sendmsg();
                opcode::SendMsg::new(types::Fd(fd), &data.msg).build()
            }
            Spec::Connect { fd } => {
                opcode::Connect::new(types::Fd(fd), data.addr.as_ptr(), data.addr.len).build()
            }
            Spec::PollIn { fd } => opcode::PollAdd::new(types::Fd(fd), libc::POLLIN as u32).build(),
            Spec::UdpRecv { fd, .. } => {
                opcode::RecvMsgMulti::new(types::Fd(fd), &*self.recv_msg, 0).build()
            }
            Spec::Accept { fd, .. } => opcode::AcceptMulti::new(types::Fd(fd))
                .flags(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)
                .build(),
        };
        self.push(sqe.user_data(ud))
    }

    /// Submits queued SQEs without waiting.
    pub(crate) fn flush(&mut self) -> io::Result<()> {
        self.ring.submit().map(|_| ())
    }

    pub(crate) fn cancel(&mut self, key: OpKey) -> io::Result<()> {
        let sqe = opcode::AsyncCancel::new(key.user_data())
            .build()
            .user_data(TAG_CANCEL << 56);
        self.push(sqe)
    }

    /// Arms a multishot poll on the shard's eventfd (mailbox wake-ups from non-ring threads).
    pub(crate) fn arm_eventfd(&mut self, fd: RawFd) -> io::Result<()> {
        let sqe = opcode::PollAdd::new(types::Fd(fd), libc::POLLIN as u32)
            .multi(true)
            .build()
            .user_data(TAG_EVENTFD << 56);
        self.push(sqe)
    }

    /// Posts a wake-up CQE into another shard's ring.
    pub(crate) fn msg_ring(&mut self, target_ring: RawFd) -> io::Result<()> {
        let sqe = opcode::MsgRingData::new(types::Fd(target_ring), 0, TAG_WAKE << 56, None)
            .build()
            .user_data(TAG_MSG_SENT << 56);
        self.push(sqe)
    }

    /// Submits what is queued and waits up to `timeout` (None: until a completion) for
    /// completions, which are appended to `out`.
    pub(crate) fn wait(&mut self, timeout: Option<Duration>, out: &mut Vec<Cqe>) -> io::Result<()> {
        let already = !self.ring.completion().is_empty();
        let r = match timeout {
            _ if already => self.ring.submit(),
            None => self.ring.submit_and_wait(1),
            Some(d) => {
                let ts = types::Timespec::new()
                    .sec(d.as_secs())
                    .nsec(d.subsec_nanos());
                let args = types::SubmitArgs::new().timespec(&ts);
                self.ring.submitter().submit_with_args(1, &args)
            }
        };
        if let Err(e) = r {
            match e.raw_os_error() {
                Some(libc::ETIME) | Some(libc::EINTR) | Some(libc::EBUSY) | Some(libc::EAGAIN) => {}
                _ => return Err(e),
            }
        }
        for cqe in self.ring.completion() {
            out.push(Cqe {
                user_data: cqe.user_data(),
                res: cqe.result(),
                flags: cqe.flags(),
            });
        }
        Ok(())
    }

    /// The provided buffer `bid` filled with `res` bytes by a RecvMsgMulti completion,
    /// without copying. `None` if the id or length is out of range.
    pub(crate) fn recvmsg_buffer(&self, bid: u16, res: i32) -> Option<(*const u8, usize)> {
        let len = usize::try_from(res).ok()?;
        let ptr = self.bufring.buffer(bid, len)?;
        Some((ptr, len))
    }

    pub(crate) fn recv_msghdr(&self) -> &libc::msghdr {
        &self.recv_msg
    }

    /// Hands a provided buffer back to the kernel.
    pub(crate) fn return_buffer(&mut self, bid: u16) {
        self.bufring.push(bid);
        self.bufring.publish();
    }
}
