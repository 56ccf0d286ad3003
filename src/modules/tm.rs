//! `tm`: stateful forwarding (OpenSIPS tm). `t_relay` creates the transaction if needed
//! and adds one branch per target (the Request-URI or `$du`, plus `append_branch()` URIs);
//! the transaction machines themselves are `crate::txn` (RFC 3261 §16-§17).
//!
//! A next hop that is a host name is resolved by RFC 3263 on the shard's resolver
//! without blocking (`proxy::nexthop`): `t_relay` returns 1 at once (the relay is in
//! progress, as OpenSIPS reports it) and the branch is added when the resolution
//! completes; an unresolvable one then fails like a transport error (the failure route
//! sees 503; without one, upstream gets 500), and a 503 or time-out fails over to the
//! next resolved target.
//!
//! Return codes follow OpenSIPS: 1 success (or relay in progress), -1 generic error, -2
//! bad destination (a URI that cannot be routed), and -1 when the transaction was already
//! cancelled.

use crate::proxy::host::Host;
use crate::script::interp::{Arg, MsgState};
use crate::txn::TxnId;

use super::{arg_int, arg_route, arg_str};

/// The transaction of the message, created if absent.
pub(crate) fn ensure_txn(h: &mut Host<'_>) -> Result<TxnId, i32> {
    if let Some(id) = h.txn {
        return Ok(id);
    }
    let id = h.core.new_txn(h.msg, h.rx, h.armed)?;
    h.txn = Some(id);
    if h.force_rport {
        // RFC 3581: replies go to the source port even without `rport` in the Via.
        if let Some(ctx) = h.core.ctx_mut(id) {
            ctx.upstream = h.rx.src;
        }
    }
    Ok(id)
}

/// `t_relay([flags])`.
pub fn t_relay(h: &mut Host<'_>, _args: &[Arg<'_>], st: &mut MsgState) -> i32 {
    // An ACK that matched no transaction (the ACK of a 2xx) is forwarded statelessly.
    if h.txn.is_none() && h.msg.method() == Some(crate::sip::Method::Ack) {
        h.acted = true;
        let dest = crate::proxy::shard::next_hop(h.msg, h.du.as_deref(), h.routes_stripped);
        return h.core.forward_stateless(h.msg, h.rx, dest);
    }
    let id = match ensure_txn(h) {
        Ok(id) => id,
        Err(rc) => return rc,
    };
    h.acted = true;
    let mut last = -1;
    let mut ok = 0;
    let du = h.du.clone();
    match h.core.add_branch(
        id,
        h.msg,
        None,
        du.as_deref(),
        h.routes_stripped,
        h.armed.on_branch.map(|r| (r, &mut *st)),
    ) {
        Ok(()) => ok += 1,
        Err(rc) => last = rc,
    }
    let extra = std::mem::take(&mut h.branches);
    for uri in &extra {
        let on_branch = h.armed.on_branch.map(|r| (r, &mut *st));
        match h.core.add_branch(id, h.msg, Some(uri), None, 0, on_branch) {
            Ok(()) => ok += 1,
            Err(rc) => last = rc,
        }
    }
    if ok > 0 {
        1
    } else {
        last
    }
}

/// `t_reply(code, reason)`: a reply on the transaction (created if absent).
pub fn t_reply(h: &mut Host<'_>, args: &[Arg<'_>], _st: &mut MsgState) -> i32 {
    let code = arg_int(args, 0).and_then(|c| u16::try_from(c).ok());
    let Some(code) = code.filter(|c| (100..700).contains(c)) else {
        return -1;
    };
    let reason = arg_str(args, 1).unwrap_or("");
    let id = match ensure_txn(h) {
        Ok(id) => id,
        Err(rc) => return rc,
    };
    let Some(pkt) = h.core.txn_reply_pkt(id, code, reason) else {
        return -1;
    };
    h.acted = true;
    let now = cores::now();
    let core = &mut *h.core;
    match core.table.get_mut(id) {
        Some(t) => {
            let mut out = Vec::new();
            match t.reply(
                crate::txn::Response::Relayed {
                    status: code,
                    msg: pkt,
                },
                now,
                &mut out,
            ) {
                Ok(()) => {
                    core.queue_actions(out);
                    core.run_actions(id);
                    1
                }
                Err(_) => -1,
            }
        }
        None => -1,
    }
}

/// `t_newtran()`.
pub fn t_newtran(h: &mut Host<'_>, _args: &[Arg<'_>], _st: &mut MsgState) -> i32 {
    match ensure_txn(h) {
        Ok(_) => 1,
        Err(rc) => rc,
    }
}

/// `t_on_reply(route)`.
pub fn t_on_reply(h: &mut Host<'_>, args: &[Arg<'_>], _st: &mut MsgState) -> i32 {
    h.armed.on_reply = arg_route(args, 0);
    1
}

/// `t_on_branch(route)`: the branch route runs on each branch created afterwards.
pub fn t_on_branch(h: &mut Host<'_>, args: &[Arg<'_>], _st: &mut MsgState) -> i32 {
    h.armed.on_branch = arg_route(args, 0);
    1
}

/// `t_on_failure(route)`.
pub fn t_on_failure(h: &mut Host<'_>, args: &[Arg<'_>], _st: &mut MsgState) -> i32 {
    h.armed.on_failure = arg_route(args, 0);
    if let Some(id) = h.txn {
        if let Some(t) = h.core.table.get_mut(id) {
            t.set_on_failure(h.armed.on_failure.is_some());
        }
    }
    1
}

/// `t_check_status(regex)`: the reply status (failure/reply routes) matches.
pub fn t_check_status(h: &mut Host<'_>, args: &[Arg<'_>], _st: &mut MsgState) -> i32 {
    let status = h.status();
    if status == 0 {
        return -1;
    }
    let Some(re) = arg_str(args, 0) else {
        return -1;
    };
    let text = status.to_string();
    match super::sipmsgops::regex_matches(re, &text) {
        Some(true) => 1,
        _ => -1,
    }
}

/// `t_was_cancelled()`.
pub fn t_was_cancelled(h: &mut Host<'_>, _args: &[Arg<'_>], _st: &mut MsgState) -> i32 {
    match h.txn.and_then(|id| h.core.table.get(id)) {
        Some(t) if t.was_cancelled() => 1,
        _ => -1,
    }
}

/// `t_check_trans()`: true in routes of a transaction; in the request route a request
/// that matched a transaction never reaches the script (it was absorbed or passed to the
/// transaction), so there it is false.
pub fn t_check_trans(h: &mut Host<'_>, _args: &[Arg<'_>], _st: &mut MsgState) -> i32 {
    if h.txn.is_some() {
        1
    } else {
        -1
    }
}
