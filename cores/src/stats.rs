//! Per-shard counters. Written by the shard only (relaxed atomics so any thread may read
//! a snapshot), summed by readers when they want totals.

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! stats {
    ($($(#[$m:meta])* $name:ident),* $(,)?) => {
        /// A snapshot of one shard's counters.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct ShardStats {
            $($(#[$m])* pub $name: u64,)*
        }

        #[derive(Default)]
        pub(crate) struct StatCells {
            $(pub(crate) $name: AtomicU64,)*
        }

        impl StatCells {
            pub(crate) fn snapshot(&self) -> ShardStats {
                ShardStats { $($name: self.$name.load(Ordering::Relaxed),)* }
            }
        }
    };
}

stats! {
    /// Loop turns.
    loop_turns,
    /// Microseconds the loop spent working (not waiting for I/O or a timer), summed over
    /// turns: dividing by wall time gives the shard's load.
    busy_us,
    /// Turns that worked longer than 1 ms without waiting: every message arriving during
    /// such a turn waited that long before it was read.
    turns_over_1ms,
    /// Turns that worked longer than 10 ms without waiting.
    turns_over_10ms,
    /// The longest turn so far, in microseconds (a gauge, not a counter).
    longest_turn_us,
    /// Datagrams handed to UDP handlers.
    udp_received,
    /// Datagrams dropped because they did not fit a provided buffer.
    udp_truncated,
    /// Receive completions that were errors (other than buffer exhaustion).
    udp_recv_errors,
    /// Multishot receives re-armed after the kernel ended them.
    udp_rearms,
    /// Multishot receives ended for lack of provided buffers (ENOBUFS).
    udp_enobufs,
    /// Datagrams given to `send_to` (including those that then failed).
    udp_sent,
    /// Datagram sends that failed (completion error, or no operation slot).
    udp_send_errors,
    /// Connections accepted.
    tcp_accepted,
    /// Accept completions that were errors.
    tcp_accept_errors,
    /// Operations refused because `max_ops` were in flight.
    ops_full,
    /// Cancellations requested for dropped futures.
    ops_cancelled,
    /// Tasks polled.
    tasks_polled,
    /// Timers fired.
    timers_fired,
    /// Mailbox messages accepted.
    mailbox_posted,
    /// Mailbox messages refused because the mailbox was full.
    mailbox_full,
    /// Mailbox messages run.
    mailbox_run,
    /// MSG_RING wake-ups this shard sent that the kernel failed.
    msg_ring_errors,
}

impl StatCells {
    /// Adds one turn that worked `busy` without waiting.
    pub(crate) fn turn(&self, busy: std::time::Duration) {
        let us = u64::try_from(busy.as_micros()).unwrap_or(u64::MAX);
        Self::add(&self.busy_us, us);
        if us > 1_000 {
            Self::bump(&self.turns_over_1ms);
        }
        if us > 10_000 {
            Self::bump(&self.turns_over_10ms);
        }
        if us > self.longest_turn_us.load(Ordering::Relaxed) {
            self.longest_turn_us.store(us, Ordering::Relaxed);
        }
    }

    /// Adds `n` to a counter written by one thread only.
    #[inline]
    pub(crate) fn add(c: &AtomicU64, n: u64) {
        c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
    }

    /// Increments a counter written by one thread only.
    #[inline]
    pub(crate) fn bump(c: &AtomicU64) {
        c.store(c.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
    }
}
