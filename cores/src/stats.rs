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
    /// Increments a counter written by one thread only.
    #[inline]
    pub(crate) fn bump(c: &AtomicU64) {
        c.store(c.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
    }
}
