//! `sl` and `signaling`: stateless replies (`sl_send_reply`, `sl_reply_error`) and
//! `send_reply`, which replies statefully when a transaction exists (OpenSIPS signaling).
//! The reply copies Via/From/To/Call-ID/CSeq and adds a To-tag that is stable across
//! retransmissions of the request (RFC 3261 §8.2.6, §16.11).

use crate::proxy::host::Host;
use crate::script::interp::{Arg, MsgState};

use super::{arg_int, arg_str};

fn code_reason<'a>(args: &[Arg<'a>]) -> Option<(u16, &'a str)> {
    let code = arg_int(args, 0).and_then(|c| u16::try_from(c).ok())?;
    (100..700)
        .contains(&code)
        .then(|| (code, arg_str(args, 1).unwrap_or("")))
}

/// `sl_send_reply(code, reason)`.
pub fn sl_send_reply(h: &mut Host<'_>, args: &[Arg<'_>], _st: &mut MsgState) -> i32 {
    let Some((code, reason)) = code_reason(args) else {
        return -1;
    };
    if !h.msg.is_request() {
        return -1;
    }
    h.core.reply_stateless(h.msg, h.rx, code, reason);
    h.acted = true;
    1
}

/// `sl_reply_error()`: a 500 for an internal error met while processing.
pub fn sl_reply_error(h: &mut Host<'_>, _args: &[Arg<'_>], _st: &mut MsgState) -> i32 {
    h.core
        .reply_stateless(h.msg, h.rx, 500, "Server Internal Error");
    h.acted = true;
    1
}

/// `send_reply(code, reason)`: `t_reply` if the request has a transaction, else
/// `sl_send_reply`.
pub fn send_reply(h: &mut Host<'_>, args: &[Arg<'_>], st: &mut MsgState) -> i32 {
    if h.txn.is_some() {
        super::tm::t_reply(h, args, st)
    } else {
        sl_send_reply(h, args, st)
    }
}
