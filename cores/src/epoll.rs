//! The epoll backend, used where io_uring is unavailable (disabled by sysctl, refused by
//! seccomp/EPERM, too old) or forced with `RINGSIP_BACKEND=epoll`. Same operations as the
//! ring, performed as non-blocking syscalls when the fd is ready.
//!
//! Owns the epoll fd and, per watched fd, the operations waiting on it. Invariant: the
//! epoll interest of an fd is exactly the union of the directions its waiting operations
//! need (level-triggered), and the fd is removed from the set when none wait. An fd's
//! entry (and its lists' capacity) is kept while the fd lives, so waiting allocates
//! nothing once warm; [`Epoll::forget_fd`] drops it before the fd closes. Nothing here
//! is kernel-owned memory: a cancelled operation is simply forgotten.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use crate::op::{OpData, OpKey, Spec};
use crate::sys::{cvt, get_socket_error, neg_errno};

#[derive(Default)]
struct Waiters {
    readers: Vec<OpKey>,
    writers: Vec<OpKey>,
    mask: u32,
}

pub(crate) struct Epoll {
    epfd: OwnedFd,
    fds: HashMap<RawFd, Waiters>,
    events: Vec<libc::epoll_event>,
}

/// A readiness event: the fd and its epoll event bits.
#[derive(Clone, Copy)]
pub(crate) struct Ready {
    pub(crate) fd: RawFd,
    pub(crate) events: u32,
}

impl Epoll {
    pub(crate) fn new() -> io::Result<Epoll> {
        // SAFETY: plain syscall returning a new fd that we own.
        let fd = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        Ok(Epoll {
            // SAFETY: fd was just created and is owned by nobody else.
            epfd: unsafe { OwnedFd::from_raw_fd(fd) },
            fds: HashMap::new(),
            events: vec![libc::epoll_event { events: 0, u64: 0 }; 256],
        })
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, mask: u32) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: mask,
            u64: fd as u64,
        };
        // SAFETY: ev is a live epoll_event; fd validity is checked by the kernel.
        cvt(unsafe { libc::epoll_ctl(self.epfd.as_raw_fd(), op, fd, &mut ev) }).map(|_| ())
    }

    /// Watches `fd` for readability permanently (the shard's eventfd).
    pub(crate) fn watch_forever(&mut self, fd: RawFd) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, libc::EPOLLIN as u32)
    }

    /// Registers `key` as waiting for its fd's readiness.
    pub(crate) fn wait_for(&mut self, key: OpKey, spec: Spec) -> io::Result<()> {
        let fd = spec.fd();
        let w = self.fds.entry(fd).or_default();
        if spec.wants_write() {
            w.writers.push(key);
        } else {
            w.readers.push(key);
        }
        self.update(fd)
    }

    fn update(&mut self, fd: RawFd) -> io::Result<()> {
        let Some(w) = self.fds.get(&fd) else {
            return Ok(());
        };
        let mut mask = 0u32;
        if !w.readers.is_empty() {
            mask |= libc::EPOLLIN as u32 | libc::EPOLLRDHUP as u32;
        }
        if !w.writers.is_empty() {
            mask |= libc::EPOLLOUT as u32;
        }
        let old = w.mask;
        if mask == old {
            return Ok(());
        }
        let r = if mask == 0 {
            self.ctl(libc::EPOLL_CTL_DEL, fd, 0)
        } else if old == 0 {
            self.ctl(libc::EPOLL_CTL_ADD, fd, mask)
        } else {
            self.ctl(libc::EPOLL_CTL_MOD, fd, mask)
        };
        if let Some(w) = self.fds.get_mut(&fd) {
            w.mask = mask;
        }
        r
    }

    /// Forgets a waiting operation (cancel, or completion).
    pub(crate) fn forget(&mut self, key: OpKey, fd: RawFd) {
        if let Some(w) = self.fds.get_mut(&fd) {
            w.readers.retain(|k| *k != key);
            w.writers.retain(|k| *k != key);
            let _ = self.update(fd);
        }
    }

    /// Forgets every waiter of an fd about to be closed, and its entry.
    pub(crate) fn forget_fd(&mut self, fd: RawFd) {
        if let Some(w) = self.fds.remove(&fd) {
            if w.mask != 0 {
                let _ = self.ctl(libc::EPOLL_CTL_DEL, fd, 0);
            }
        }
    }

    /// The operations to retry after `ev` (a copy: completing them edits the lists).
    pub(crate) fn waiting(&self, ev: Ready, out: &mut Vec<OpKey>) {
        if let Some(w) = self.fds.get(&ev.fd) {
            let err = ev.events & (libc::EPOLLERR as u32 | libc::EPOLLHUP as u32) != 0;
            if err || ev.events & (libc::EPOLLIN as u32 | libc::EPOLLRDHUP as u32) != 0 {
                out.extend_from_slice(&w.readers);
            }
            if err || ev.events & libc::EPOLLOUT as u32 != 0 {
                out.extend_from_slice(&w.writers);
            }
        }
    }

    pub(crate) fn wait(
        &mut self,
        timeout: Option<Duration>,
        out: &mut Vec<Ready>,
    ) -> io::Result<()> {
        let ms: libc::c_int = match timeout {
            None => -1,
            Some(d) => {
                // Round up so a timer due in 0.4 ms does not spin.
                let ms = d.as_micros().div_ceil(1000);
                ms.min(i32::MAX as u128) as libc::c_int
            }
        };
        // SAFETY: events is a live buffer of `len` epoll_event entries.
        let n = unsafe {
            libc::epoll_wait(
                self.epfd.as_raw_fd(),
                self.events.as_mut_ptr(),
                self.events.len() as libc::c_int,
                ms,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                return Ok(());
            }
            return Err(e);
        }
        for ev in self.events.iter().take(n as usize) {
            out.push(Ready {
                fd: ev.u64 as RawFd,
                events: ev.events,
            });
        }
        Ok(())
    }
}

/// Performs a one-shot operation now. `None`: would block, wait for readiness.
pub(crate) fn try_io(data: &mut OpData) -> Option<i32> {
    let r: isize = match data.spec {
        Spec::Recv { fd } => {
            let len = data.len.min(data.buf.len());
            // SAFETY: buf is writable for len bytes.
            unsafe { libc::recv(fd, data.buf.as_mut_ptr().cast(), len, 0) }
        }
        Spec::Read { fd } => {
            let len = data.len.min(data.buf.len());
            // SAFETY: buf is writable for len bytes.
            unsafe { libc::read(fd, data.buf.as_mut_ptr().cast(), len) }
        }
        Spec::Send { fd } => {
            // SAFETY: buf is readable for its length.
            unsafe {
                libc::send(
                    fd,
                    data.buf.as_ptr().cast(),
                    data.buf.len(),
                    libc::MSG_NOSIGNAL,
                )
            }
        }
        Spec::Write { fd } => {
            // SAFETY: buf is readable for its length.
            unsafe { libc::write(fd, data.buf.as_ptr().cast(), data.buf.len()) }
        }
        Spec::SendTo { fd } => {
            // SAFETY: buf and addr are live and sized as passed.
            unsafe {
                libc::sendto(
                    fd,
                    data.buf.as_ptr().cast(),
                    data.buf.len(),
                    libc::MSG_NOSIGNAL,
                    data.addr.as_ptr(),
                    data.addr.len,
                )
            }
        }
        Spec::Connect { fd } => {
            if data.len == 0 {
                // First attempt: start the connection.
                data.len = 1;
                // SAFETY: addr holds a valid sockaddr of addr.len bytes.
                let r = unsafe { libc::connect(fd, data.addr.as_ptr(), data.addr.len) };
                if r == 0 {
                    return Some(0);
                }
                let e = neg_errno();
                if e == -libc::EINPROGRESS || e == -libc::EAGAIN {
                    return None;
                }
                return Some(e);
            }
            // Writable: the outcome is in SO_ERROR.
            return Some(match get_socket_error(fd) {
                Ok(0) => 0,
                Ok(e) => -e,
                Err(e) => -e.raw_os_error().unwrap_or(libc::EIO),
            });
        }
        Spec::PollIn { fd } => {
            let mut p = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: p is a live pollfd; zero time-out never blocks.
            let n = unsafe { libc::poll(&mut p, 1, 0) };
            if n > 0 {
                return Some(i32::from(p.revents));
            }
            if n < 0 {
                return Some(neg_errno());
            }
            return None;
        }
        Spec::UdpRecv { .. } | Spec::Accept { .. } => return None,
    };
    if r >= 0 {
        Some(r.min(i32::MAX as isize) as i32)
    } else {
        let e = neg_errno();
        if e == -libc::EAGAIN || e == -libc::EINTR {
            None
        } else {
            Some(e)
        }
    }
}
