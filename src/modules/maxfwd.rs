//! `maxfwd`: Max-Forwards processing (RFC 3261 §16.3 step 3, §16.6 step 3).
//! `mf_process_maxfwd_header(max)`: 2 when the header was missing and was added with
//! `max`, 1 when it was decremented, -1 when it is 0 (the script answers 483), -2 on a
//! malformed header — OpenSIPS's return codes.

use crate::proxy::host::Host;
use crate::script::interp::{Arg, MsgState};

use super::arg_int;

/// `mf_process_maxfwd_header(max_value)`.
pub fn mf_process_maxfwd_header(h: &mut Host<'_>, args: &[Arg<'_>], _st: &mut MsgState) -> i32 {
    let limit = arg_int(args, 0).unwrap_or(70).clamp(0, 255) as u8;
    match h.msg.max_forwards() {
        Ok(None) => match h
            .msg
            .append_header(b"Max-Forwards", limit.to_string().as_bytes())
        {
            Ok(()) => 2,
            Err(_) => -2,
        },
        Ok(Some(0)) => -1,
        Ok(Some(n)) => {
            // The argument only applies to a missing header; a present one is decremented
            // (OpenSIPS's `max_limit` parameter defaults to 256, above any valid value).
            match h.msg.set_max_forwards(n - 1) {
                Ok(()) => 1,
                Err(_) => -2,
            }
        }
        Err(_) => -2,
    }
}
