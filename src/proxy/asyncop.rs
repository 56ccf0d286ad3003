//! The async engine: `async(f(...), resume)` and `launch(f(...)[, report])`.
//!
//! A module's async implementation builds a `'static` future (its I/O on this shard's
//! ring) that yields `(rc, outputs)`. [`suspend`] creates the transaction if absent, runs
//! the future as a local task under a deadline, and when it ends — completed or timed out
//! — hands the result back to the same shard, which sets `$rc` and the output variables
//! and runs the resume route on the transaction's saved message and AVPs, or, for an
//! `async()` in an onreply route, on the reply it holds until then
//! ([`super::shard::Shard::resume`]).
//!
//! Invariants: every started operation is delivered exactly once (`async_started` ==
//! `async_completed` once idle); a transaction that ended while suspended (CANCEL + ACK)
//! keeps its context until its resume route ran, and relaying from it then fails with a
//! negative code; nothing here blocks: the future's I/O is on the ring.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Weak;
use std::time::Duration;

use crate::modules::Outputs;
use crate::script::{interp::AsyncStart, RouteId};
use crate::txn::TxnId;

use super::host::Host;
use super::shard::Shard;

/// What an async operation yields: its `$rc` and the variables to set.
pub type OpResult = (i32, Outputs);

/// An async operation's future.
pub type OpFuture = Pin<Box<dyn Future<Output = OpResult>>>;

/// `$rc` of an operation that did not finish before the engine's deadline (its module's
/// own time-out plus a margin): distinct from every module's own codes.
pub const RC_TIMEOUT: i32 = -9;

/// Starts `fut` for the message's transaction (created if absent); the resume route runs
/// when it completes, or with `$rc` = [`RC_TIMEOUT`] after `timeout`.
pub fn suspend(h: &mut Host<'_>, fut: OpFuture, timeout: Duration) -> AsyncStart {
    let id = match crate::modules::tm::ensure_txn(h) {
        Ok(id) => id,
        Err(rc) => return AsyncStart::Done(rc),
    };
    h.core.op_seq = h.core.op_seq.wrapping_add(1);
    let op = h.core.op_seq;
    h.suspended_op = Some(op);
    h.core.stats.async_started += 1;
    let me = h.core.me.clone();
    cores::spawn_local(async move {
        let (rc, outputs) = match cores::timeout(timeout, fut).await {
            Ok(r) => r,
            Err(_) => {
                bump_timeouts(&me);
                (RC_TIMEOUT, Outputs::default())
            }
        };
        deliver(
            me,
            Delivery::Resume {
                id,
                op,
                rc,
                outputs,
            },
        );
    });
    AsyncStart::Pending
}

/// Starts `fut` detached from any transaction; `report` (if any) runs with its `$rc`.
pub fn launch(h: &mut Host<'_>, fut: OpFuture, timeout: Duration, report: Option<RouteId>) -> i32 {
    h.core.stats.async_started += 1;
    let me = h.core.me.clone();
    cores::spawn_local(async move {
        let (rc, outputs) = match cores::timeout(timeout, fut).await {
            Ok(r) => r,
            Err(_) => {
                bump_timeouts(&me);
                (RC_TIMEOUT, Outputs::default())
            }
        };
        deliver(
            me,
            Delivery::Report {
                report,
                rc,
                outputs,
            },
        );
    });
    1
}

fn bump_timeouts(me: &Weak<RefCell<Shard>>) {
    if let Some(s) = me.upgrade() {
        if let Ok(mut s) = s.try_borrow_mut() {
            s.core.stats.async_timeouts += 1;
        }
    }
}

enum Delivery {
    Resume {
        id: TxnId,
        op: u64,
        rc: i32,
        outputs: Outputs,
    },
    Report {
        report: Option<RouteId>,
        rc: i32,
        outputs: Outputs,
    },
}

/// Hands a result to the shard. Tasks run from the shard's loop, never inside one of its
/// callbacks, so the shard is free; if it ever is not, the delivery is retried on the next
/// loop turn rather than lost.
fn deliver(me: Weak<RefCell<Shard>>, d: Delivery) {
    let Some(shard) = me.upgrade() else {
        return;
    };
    let Ok(mut s) = shard.try_borrow_mut() else {
        drop(shard);
        cores::spawn_local(async move { deliver(me, d) });
        return;
    };
    match d {
        Delivery::Resume {
            id,
            op,
            rc,
            outputs,
        } => s.resume(id, op, rc, outputs),
        Delivery::Report {
            report,
            rc,
            outputs,
        } => s.report(report, rc, outputs),
    }
}
