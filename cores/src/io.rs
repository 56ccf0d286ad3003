//! Futures over single operations of the slab, and the stream read/write built on them.
//!
//! Invariant: the caller's slice is never given to the kernel; reads land in the slot's
//! buffer and are copied out on completion, writes are copied in before submission. A
//! dropped future requests cancellation; the slot lives until its final completion.

use std::future::Future;
use std::io;
use std::marker::PhantomData;
use std::os::fd::RawFd;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::op::{OpData, OpKey, Spec};
use crate::shard;
use crate::sys::res_to_io;

/// Largest single read or write handed to the kernel.
pub(crate) const MAX_IO: usize = 64 * 1024;

/// `!Send`: the key names a slot in this shard's slab only.
pub(crate) struct Op<F> {
    key: Option<OpKey>,
    finish: Option<F>,
    _shard: PhantomData<*const ()>,
}

impl<T, F> Future for Op<F>
where
    F: FnOnce(i32, &mut OpData) -> io::Result<T> + Unpin,
{
    type Output = io::Result<T>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let Some(key) = self.key else {
            return Poll::Ready(Err(io::Error::other("operation polled after completion")));
        };
        match shard::with(|s| s.poll_op(key, cx.waker())) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(res) => {
                self.key = None;
                let Some(f) = self.finish.take() else {
                    return Poll::Ready(Err(io::Error::other("operation finished twice")));
                };
                let out = shard::with(|s| s.finish_op(key, |d| f(res, d)));
                Poll::Ready(
                    out.unwrap_or_else(|| Err(io::Error::from_raw_os_error(libc::ECANCELED))),
                )
            }
        }
    }
}

impl<F> Drop for Op<F> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            shard::try_with(|s| s.cancel_op(key));
        }
    }
}

/// Submits `spec` (memory filled by `prepare`); the future yields `finish(res, data)`.
pub(crate) fn submit<T, F>(
    spec: Spec,
    prepare: impl FnOnce(&mut OpData),
    finish: F,
) -> io::Result<Op<F>>
where
    F: FnOnce(i32, &mut OpData) -> io::Result<T> + Unpin,
{
    let key = shard::with_io(|s| s.submit_op(spec, prepare))?;
    Ok(Op {
        key: Some(key),
        finish: Some(finish),
        _shard: PhantomData,
    })
}

/// Reads at most `buf.len()` bytes from `fd` (recv on sockets, read on pipes).
pub(crate) async fn read_fd(fd: RawFd, socket: bool, buf: &mut [u8]) -> io::Result<usize> {
    if buf.is_empty() {
        return Ok(0);
    }
    let len = buf.len().min(MAX_IO);
    let spec = if socket {
        Spec::Recv { fd }
    } else {
        Spec::Read { fd }
    };
    submit(
        spec,
        |d| {
            d.buf.resize(len, 0);
            d.len = len;
        },
        move |res, d| {
            let n = res_to_io(res)?.min(len);
            match (buf.get_mut(..n), d.buf.get(..n)) {
                (Some(dst), Some(src)) => dst.copy_from_slice(src),
                _ => return Err(io::Error::other("read longer than its buffer")),
            }
            Ok(n)
        },
    )?
    .await
}

/// Writes one chunk of `buf`; returns how much the kernel took.
pub(crate) async fn write_fd(fd: RawFd, socket: bool, buf: &[u8]) -> io::Result<usize> {
    let chunk = &buf[..buf.len().min(MAX_IO)];
    let spec = if socket {
        Spec::Send { fd }
    } else {
        Spec::Write { fd }
    };
    submit(
        spec,
        |d| d.buf.extend_from_slice(chunk),
        |res, _| res_to_io(res),
    )?
    .await
}

pub(crate) async fn write_all_fd(fd: RawFd, socket: bool, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        let n = write_fd(fd, socket, buf).await?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "wrote 0 bytes"));
        }
        buf = buf.get(n..).unwrap_or(&[]);
    }
    Ok(())
}

/// Waits until `fd` is readable (e.g. a pidfd whose process exited).
pub(crate) async fn readable(fd: RawFd) -> io::Result<()> {
    submit(
        Spec::PollIn { fd },
        |_| {},
        |res, _| res_to_io(res).map(|_| ()),
    )?
    .await
}
