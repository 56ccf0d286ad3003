//! Blocking shims of the [`crate::stream`] traits, for unit tests of protocol drivers
//! and for command-line tools. Never used on a shard: every call here blocks the
//! calling thread.

use std::future::Future;
use std::io::{self, Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};

use crate::stream::{AsyncDatagram, AsyncStream};

struct ThreadWaker(Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs a future to completion on the current thread, parking between polls.
pub fn block_on<F: Future>(fut: F) -> F::Output {
    let waker = Waker::from(Arc::new(ThreadWaker(thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut fut = pin!(fut);
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
        thread::park();
    }
}

/// A blocking TCP stream seen through [`AsyncStream`].
pub struct BlockingTcp(pub TcpStream);

impl AsyncStream for BlockingTcp {
    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }

    async fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        Write::write_all(&mut self.0, buf)
    }
}

/// A blocking connected UDP socket seen through [`AsyncDatagram`].
pub struct BlockingUdp(pub UdpSocket);

impl AsyncDatagram for BlockingUdp {
    async fn send(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.send(buf)
    }

    async fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.recv(buf)
    }
}
