//! Core functions of the OpenSIPS language that touch the message or the transport:
//! `is_myself`, `forward` (stateless, RFC 3261 §16.11), `rewriteuri`/`seturi`,
//! `append_branch` (parallel forking with the next `t_relay`), `force_rport` (RFC 3581).

use crate::proxy::host::Host;
use crate::script::interp::{Arg, MsgState};

use super::{arg_int, arg_str};

/// `is_myself(uri_or_host[, port])`.
pub fn is_myself(h: &mut Host<'_>, args: &[Arg<'_>], _st: &mut MsgState) -> i32 {
    let Some(target) = arg_str(args, 0) else {
        return -1;
    };
    let mine = match arg_int(args, 1) {
        Some(port) => h.core.is_myself(format!("{target}:{port}").as_bytes()),
        None => h.core.is_myself(target.as_bytes()),
    };
    if mine {
        1
    } else {
        -1
    }
}

/// `forward([destination])`: stateless forwarding to the destination, else `$du`, else the
/// Request-URI.
pub fn forward(h: &mut Host<'_>, args: &[Arg<'_>], _st: &mut MsgState) -> i32 {
    h.acted = true;
    if !h.msg.is_request() {
        return -1;
    }
    let dest: &[u8] = match arg_str(args, 0) {
        Some(d) => d.as_bytes(),
        None => crate::proxy::shard::next_hop(h.msg, h.du.as_deref(), h.routes_stripped),
    };
    h.core.forward_stateless(h.msg, h.rx, dest)
}

/// `rewriteuri(uri)` / `seturi(uri)`.
pub fn rewriteuri(h: &mut Host<'_>, args: &[Arg<'_>], _st: &mut MsgState) -> i32 {
    match arg_str(args, 0) {
        Some(u) if h.msg.set_request_uri(u.as_bytes()).is_ok() => 1,
        _ => -1,
    }
}

/// `append_branch([uri[, q]])`: a new branch to fork to with the next `t_relay()`; with no
/// URI, the current Request-URI.
pub fn append_branch(h: &mut Host<'_>, args: &[Arg<'_>], _st: &mut MsgState) -> i32 {
    let uri = match arg_str(args, 0) {
        Some(u) => u.to_string(),
        None => String::from_utf8_lossy(h.msg.request_uri().unwrap_or(b"")).into_owned(),
    };
    if uri.is_empty() {
        return -1;
    }
    h.branches.push(uri);
    1
}

/// `force_rport()`: replies of this request's transaction go to its source port (RFC
/// 3581), as if its Via had `rport` (requests with `rport` get that anyway).
pub fn force_rport(h: &mut Host<'_>, _args: &[Arg<'_>], _st: &mut MsgState) -> i32 {
    h.force_rport = true;
    1
}
