//! Time on a shard: the cached clock, `sleep`, `timeout`, and callback/token timers for
//! sans-io users (SIP timers A-K), all on the shard's timer wheel (`timer.rs`).
//!
//! Invariant: a timer fires on the shard that armed it, at or after its deadline (1 ms
//! resolution), never before; timers with equal ticks fire in arming order.

use std::future::{poll_fn, Future};
use std::marker::PhantomData;
use std::pin::{pin, Pin};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::shard;
use crate::timer::{TimerAction, TimerId};

/// The shard's clock, read once per loop turn (`Instant::now()` off a shard).
pub fn now() -> Instant {
    shard::try_with(|s| s.now()).unwrap_or_else(Instant::now)
}

/// A future that completes at or after its deadline. Dropping it cancels the timer.
/// `!Send`: its timer lives in this shard's wheel.
pub struct Sleep {
    deadline: Instant,
    id: Option<TimerId>,
    done: bool,
    _shard: PhantomData<*const ()>,
}

/// Completes at least `d` after this call (measured from the real clock, not the
/// cached `now()`).
pub fn sleep(d: Duration) -> Sleep {
    let now = Instant::now();
    // A duration past the clock's range means "practically never".
    let far = Duration::from_secs(100 * 365 * 24 * 3600);
    sleep_until(now.checked_add(d.min(far)).unwrap_or(now))
}

/// Completes at or after `deadline`.
pub fn sleep_until(deadline: Instant) -> Sleep {
    Sleep {
        deadline,
        id: None,
        done: false,
        _shard: PhantomData,
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.done {
            return Poll::Ready(());
        }
        let deadline = self.deadline;
        match self.id {
            None => {
                let id = shard::with(|s| {
                    s.arm_timer(
                        deadline,
                        TimerAction::Waker {
                            waker: Some(cx.waker().clone()),
                            fired: false,
                        },
                    )
                });
                self.id = Some(id);
                Poll::Pending
            }
            Some(id) => {
                if shard::with(|s| s.timer_fired(id, cx)) {
                    shard::with(|s| s.cancel_timer(id));
                    self.id = None;
                    self.done = true;
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            }
        }
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            shard::try_with(|s| s.cancel_timer(id));
        }
    }
}

/// The error of [`timeout`]: the deadline passed first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("operation timed out")]
pub struct Elapsed;

impl From<Elapsed> for std::io::Error {
    fn from(_: Elapsed) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::TimedOut, "operation timed out")
    }
}

/// Runs `fut` for at most `d`; on time-out `fut` is dropped (cancelling its I/O).
pub async fn timeout<F: Future>(d: Duration, fut: F) -> Result<F::Output, Elapsed> {
    let mut fut = pin!(fut);
    let mut timer = pin!(sleep(d));
    poll_fn(|cx| {
        if let Poll::Ready(v) = fut.as_mut().poll(cx) {
            return Poll::Ready(Ok(v));
        }
        if timer.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(Elapsed));
        }
        Poll::Pending
    })
    .await
}

/// Calls `f` on this shard at or after `deadline`. Returns an id for [`cancel_timer`].
pub fn arm_timer(deadline: Instant, f: impl FnOnce() + 'static) -> TimerId {
    shard::with(|s| s.arm_timer(deadline, TimerAction::Callback(Box::new(f))))
}

/// Delivers `token` to the shard's timer handler (see [`set_timer_handler`]) at or after
/// `deadline`. Allocation-free: meant for thousands of protocol timers.
pub fn arm_timer_token(deadline: Instant, token: u64) -> TimerId {
    shard::with(|s| s.arm_timer(deadline, TimerAction::Token(token)))
}

/// Sets the handler of this shard's token timers (replaces any previous one).
pub fn set_timer_handler(f: impl FnMut(TimerId, u64) + 'static) {
    shard::with(|s| s.set_token_handler(Box::new(f)));
}

/// Cancels a timer. Returns whether it was still armed (false if it fired or was
/// cancelled already, or the id is stale).
pub fn cancel_timer(id: TimerId) -> bool {
    shard::try_with(|s| s.cancel_timer(id)).unwrap_or(false)
}

/// The local time formatted by strftime(3) with `fmt` (at most 255 bytes of output);
/// `None` if `fmt` holds a NUL or the result does not fit.
pub fn strftime_local(fmt: &str) -> Option<String> {
    let cfmt = std::ffi::CString::new(fmt).ok()?;
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let now = libc::time_t::try_from(secs).ok()?;
    // SAFETY: libc::tm is a plain C struct of integers and a pointer, for which all-zero
    // bytes are a valid value (a null tm_zone).
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let mut buf = [0u8; 256];
    // SAFETY: `now` and `tm` are valid for the calls; localtime_r writes only into `tm`;
    // strftime writes at most `buf.len()` bytes into `buf` and returns how many (0 when
    // the result does not fit).
    let n = unsafe {
        if libc::localtime_r(&now, &mut tm).is_null() {
            return None;
        }
        libc::strftime(buf.as_mut_ptr().cast(), buf.len(), cfmt.as_ptr(), &tm)
    };
    if n == 0 && !fmt.is_empty() {
        return None;
    }
    Some(String::from_utf8_lossy(buf.get(..n)?).into_owned())
}
