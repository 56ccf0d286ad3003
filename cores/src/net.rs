//! Sockets on a shard: UDP with multishot receive into the provided-buffer ring and
//! batched sendmsg; connected UDP ([`AsyncDatagram`]); TCP connect (asynchronous, with a
//! time-out), streams ([`AsyncStream`]) and listeners with multishot accept.
//!
//! Owns the socket fds. Invariants: sockets are non-blocking and close-on-exec; an fd
//! is removed from the epoll set before it is closed; a socket is used only on the shard
//! that created it (the types are `!Send`).

use std::cell::Cell;
use std::io;
use std::marker::PhantomData;
use std::net::{Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::time::Duration;

use crate::io::{read_fd, submit, write_all_fd, MAX_IO};
use crate::op::Spec;
use crate::shard;
use crate::stats::StatCells;
use crate::stream::{AsyncDatagram, AsyncStream};
use crate::sys::{self, res_to_io, RawAddr};

struct UdpInner {
    fd: OwnedFd,
    local: SocketAddr,
    reg: Cell<Option<u32>>,
}

impl Drop for UdpInner {
    fn drop(&mut self) {
        shard::try_with(|s| s.forget_fd(self.fd.as_raw_fd()));
    }
}

/// A UDP socket of this shard. Cloning is cheap (shared handle).
#[derive(Clone)]
pub struct UdpSocket {
    inner: Rc<UdpInner>,
}

impl UdpSocket {
    /// Binds `addr`; with `reuseport` every shard may bind the same address (SO_REUSEPORT),
    /// and the kernel spreads peers over them by 4-tuple hash.
    pub fn bind(addr: SocketAddr, reuseport: bool) -> io::Result<UdpSocket> {
        let fd = sys::socket_for(&addr, libc::SOCK_DGRAM)?;
        if reuseport {
            sys::set_int_opt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)?;
        }
        if addr.is_ipv6() {
            sys::set_int_opt(fd.as_raw_fd(), libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 1)?;
        }
        sys::bind(fd.as_raw_fd(), &addr)?;
        let local = sys::local_addr(fd.as_raw_fd())?;
        Ok(UdpSocket {
            inner: Rc::new(UdpInner {
                fd,
                local,
                reg: Cell::new(None),
            }),
        })
    }

    /// The bound address (with the real port if 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local
    }

    /// Sets the kernel receive and send buffer sizes (bytes; 0 leaves one alone). With
    /// CAP_NET_ADMIN the `*FORCE` options pass `net.core.{r,w}mem_max`; without, the kernel
    /// caps the value at that maximum (see `tuning/socket-buffers.md`).
    pub fn set_buffer_sizes(&self, recv: usize, send: usize) -> io::Result<()> {
        let fd = self.raw_fd();
        for (size, force, plain) in [
            (recv, libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
            (send, libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
        ] {
            if size == 0 {
                continue;
            }
            let v = libc::c_int::try_from(size).unwrap_or(libc::c_int::MAX);
            if sys::set_int_opt(fd, libc::SOL_SOCKET, force, v).is_err() {
                sys::set_int_opt(fd, libc::SOL_SOCKET, plain, v)?;
            }
        }
        Ok(())
    }

    pub(crate) fn raw_fd(&self) -> RawFd {
        self.inner.fd.as_raw_fd()
    }

    /// Starts receiving: `handler(socket, datagram, peer)` runs on this shard for every
    /// datagram, with the bytes borrowed from the ring's buffer (returned to the kernel
    /// when the handler returns). Fails if this socket already receives.
    pub fn recv_with(
        &self,
        handler: impl FnMut(&UdpSocket, &[u8], SocketAddr) + 'static,
    ) -> io::Result<()> {
        if self.inner.reg.get().is_some() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "socket already has a receive handler",
            ));
        }
        let reg = shard::with_io(|s| s.register_udp(self.clone(), Box::new(handler)))?;
        self.inner.reg.set(Some(reg));
        Ok(())
    }

    /// Stops receiving (the handler is dropped). The fd closes with the last handle.
    pub fn stop_recv(&self) {
        if let Some(reg) = self.inner.reg.take() {
            shard::try_with(|s| s.unregister(reg));
        }
    }

    /// Queues one datagram to `peer`: copied into an operation buffer and submitted with
    /// the loop turn's batch. Fails only if no operation slot is free or `buf` exceeds
    /// 65507 bytes; send failures reported later by the kernel are counted
    /// (`udp_send_errors`).
    pub fn send_to(&self, buf: &[u8], peer: SocketAddr) -> io::Result<()> {
        if buf.len() > 65507 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "datagram longer than 65507 bytes",
            ));
        }
        let fd = self.raw_fd();
        shard::with_io(|s| {
            StatCells::bump(&s.remote.stats.udp_sent);
            let key = match s.submit_op(Spec::SendTo { fd }, |d| {
                d.buf.extend_from_slice(buf);
                d.addr = RawAddr::from_std(&peer);
            }) {
                Ok(k) => k,
                Err(e) => {
                    StatCells::bump(&s.remote.stats.udp_send_errors);
                    return Err(e);
                }
            };
            s.detach_op(key);
            Ok(())
        })
    }
}

/// A UDP socket connected to one peer (e.g. a DNS server), for [`AsyncDatagram`].
pub struct ConnectedUdp {
    fd: OwnedFd,
    _shard: PhantomData<Rc<()>>,
}

impl ConnectedUdp {
    /// Binds an ephemeral port of `peer`'s family and connects to `peer` (no I/O happens).
    pub fn connect(peer: SocketAddr) -> io::Result<ConnectedUdp> {
        let fd = sys::socket_for(&peer, libc::SOCK_DGRAM)?;
        let any: SocketAddr = match peer {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        sys::bind(fd.as_raw_fd(), &any)?;
        let raw = RawAddr::from_std(&peer);
        // SAFETY: raw holds a valid sockaddr of raw.len bytes; UDP connect does not block.
        sys::cvt(unsafe { libc::connect(fd.as_raw_fd(), raw.as_ptr(), raw.len) })?;
        Ok(ConnectedUdp {
            fd,
            _shard: PhantomData,
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        sys::local_addr(self.fd.as_raw_fd())
    }
}

impl Drop for ConnectedUdp {
    fn drop(&mut self) {
        shard::try_with(|s| s.forget_fd(self.fd.as_raw_fd()));
    }
}

impl AsyncDatagram for ConnectedUdp {
    async fn send(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.len() > MAX_IO {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "datagram too long",
            ));
        }
        let fd = self.fd.as_raw_fd();
        submit(
            Spec::Send { fd },
            |d| d.buf.extend_from_slice(buf),
            |res, _| res_to_io(res),
        )?
        .await
    }

    async fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        read_fd(self.fd.as_raw_fd(), true, buf).await
    }
}

/// An fd shared by clones of one stream; leaves the epoll set before it closes.
struct SharedFd(OwnedFd);

impl Drop for SharedFd {
    fn drop(&mut self) {
        shard::try_with(|s| s.forget_fd(self.0.as_raw_fd()));
    }
}

/// A TCP connection owned by this shard.
pub struct TcpStream {
    fd: Rc<SharedFd>,
}

impl TcpStream {
    pub(crate) fn from_fd(fd: OwnedFd) -> TcpStream {
        TcpStream {
            fd: Rc::new(SharedFd(fd)),
        }
    }

    fn raw(&self) -> RawFd {
        self.fd.0.as_raw_fd()
    }

    /// Another handle to the same connection (no `dup`): one task may read through one
    /// handle while another writes through the other. Two concurrent readers (or
    /// writers) would interleave bytes; don't. The socket closes with the last handle.
    pub fn try_clone(&self) -> TcpStream {
        TcpStream {
            fd: self.fd.clone(),
        }
    }

    /// Connects to `addr` without blocking the shard; fails with `TimedOut` after
    /// `timeout` (the connect is then cancelled), or with the kernel's error (e.g.
    /// `ConnectionRefused`) as soon as it is known.
    pub async fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
        TcpStream::connect_from(None, addr, timeout).await
    }

    /// Like [`TcpStream::connect`], from a chosen source: with `Some(local)` the socket is
    /// bound to `local` first (port 0: an ephemeral port of that address), so the
    /// connection leaves from that IP. A bind error is returned at once.
    pub async fn connect_from(
        local: Option<SocketAddr>,
        addr: SocketAddr,
        timeout: Duration,
    ) -> io::Result<TcpStream> {
        let stream = TcpStream::from_fd(sys::socket_for(&addr, libc::SOCK_STREAM)?);
        if let Some(local) = local {
            if local.is_ipv4() != addr.is_ipv4() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "source and destination addresses of different families",
                ));
            }
            sys::bind(stream.raw(), &local)?;
        }
        let op = submit(
            Spec::Connect { fd: stream.raw() },
            |d| d.addr = RawAddr::from_std(&addr),
            |res, _| res_to_io(res).map(|_| ()),
        )?;
        match crate::time::timeout(timeout, op).await {
            Ok(Ok(())) => Ok(stream),
            Ok(Err(e)) => Err(e),
            Err(elapsed) => Err(elapsed.into()),
        }
    }

    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        sys::peer_addr(self.raw())
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        sys::local_addr(self.raw())
    }

    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        sys::set_int_opt(
            self.raw(),
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            i32::from(on),
        )
    }

    /// Shuts down the write half (the peer reads end-of-stream).
    pub fn shutdown_write(&self) -> io::Result<()> {
        self.shutdown(Shutdown::Write)
    }

    /// Shuts down one or both halves (shutdown(2)); the fd stays open until the last
    /// handle drops. Shutting down the read half makes a read pending on any handle of
    /// this stream complete with `Ok(0)`, which is how one task stops another's reader.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        let how = match how {
            Shutdown::Read => libc::SHUT_RD,
            Shutdown::Write => libc::SHUT_WR,
            Shutdown::Both => libc::SHUT_RDWR,
        };
        // SAFETY: plain syscall on an fd we own.
        sys::cvt(unsafe { libc::shutdown(self.raw(), how) }).map(|_| ())
    }
}

impl AsyncStream for TcpStream {
    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        read_fd(self.raw(), true, buf).await
    }

    async fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        write_all_fd(self.raw(), true, buf).await
    }
}

/// A listening TCP socket of this shard.
pub struct TcpListener {
    fd: Rc<OwnedFd>,
    local: SocketAddr,
    reg: Cell<Option<u32>>,
}

impl TcpListener {
    /// Binds and listens. With `reuseport` every shard may listen on the same address.
    pub fn bind(addr: SocketAddr, reuseport: bool, backlog: i32) -> io::Result<TcpListener> {
        let fd = sys::socket_for(&addr, libc::SOCK_STREAM)?;
        sys::set_int_opt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
        if reuseport {
            sys::set_int_opt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)?;
        }
        sys::bind(fd.as_raw_fd(), &addr)?;
        // SAFETY: plain syscall on an fd we own.
        sys::cvt(unsafe { libc::listen(fd.as_raw_fd(), backlog) })?;
        let local = sys::local_addr(fd.as_raw_fd())?;
        Ok(TcpListener {
            fd: Rc::new(fd),
            local,
            reg: Cell::new(None),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Starts accepting (multishot): `handler` gets each new connection and its peer.
    /// Accept errors are counted (`tcp_accept_errors`), not passed on, except when the
    /// peer's address cannot be read.
    pub fn accept_with(
        &self,
        handler: impl FnMut(io::Result<(TcpStream, SocketAddr)>) + 'static,
    ) -> io::Result<()> {
        if self.reg.get().is_some() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "listener already accepting",
            ));
        }
        let reg = shard::with_io(|s| s.register_accept(self.fd.as_raw_fd(), Box::new(handler)))?;
        self.reg.set(Some(reg));
        Ok(())
    }

    /// Stops accepting.
    pub fn stop_accept(&self) {
        if let Some(reg) = self.reg.take() {
            shard::try_with(|s| s.unregister(reg));
        }
    }
}

impl Drop for TcpListener {
    fn drop(&mut self) {
        self.stop_accept();
        shard::try_with(|s| s.forget_fd(self.fd.as_raw_fd()));
    }
}
