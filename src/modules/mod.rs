//! The functions a script calls, grouped as OpenSIPS groups them (sl, tm, rr, maxfwd,
//! sipmsgops, avpops/sqlops, rest_client, exec, cfgutils, ...). The declarations (names,
//! parameters, route types, async capability) are in `script::decls`; this module binds
//! each declared function to its implementation ([`sync_fn`], [`async_fn`]) once at start.
//!
//! A declared function with no implementation here makes the proxy refuse to start with
//! a message naming it (`proxy::prepare`), never fail at call time.

pub mod cfgutils;
pub mod db;
pub mod exec;
pub mod rest_client;

pub mod async_fns;
pub mod avpops;
pub mod core_fns;
pub mod maxfwd;
pub mod rr;
pub mod sipmsgops;
pub mod sl;
pub mod tm;

use crate::proxy::host::{AsyncFn, Host, HostFn};
use crate::script::{
    interp::{set_pv, Arg, MsgState},
    pv::Pv,
    RouteId, Script, Value,
};

/// The synchronous implementation of `module:name`, if ringsip has one.
pub fn sync_fn(module: &str, name: &str) -> Option<HostFn> {
    let f: HostFn = match (module, name) {
        ("core", "is_myself") => core_fns::is_myself,
        ("core", "forward") => core_fns::forward,
        ("core", "rewriteuri") | ("core", "seturi") => core_fns::rewriteuri,
        ("core", "append_branch") => core_fns::append_branch,
        ("core", "force_rport") => core_fns::force_rport,
        ("tm", "t_relay") => tm::t_relay,
        ("tm", "t_reply") => tm::t_reply,
        ("tm", "t_newtran") => tm::t_newtran,
        ("tm", "t_on_reply") => tm::t_on_reply,
        ("tm", "t_on_failure") => tm::t_on_failure,
        ("tm", "t_on_branch") => tm::t_on_branch,
        ("tm", "t_check_status") => tm::t_check_status,
        ("tm", "t_was_cancelled") => tm::t_was_cancelled,
        ("tm", "t_check_trans") => tm::t_check_trans,
        ("sl", "sl_send_reply") => sl::sl_send_reply,
        ("sl", "sl_reply_error") => sl::sl_reply_error,
        ("signaling", "send_reply") => sl::send_reply,
        ("rr", "record_route") => rr::record_route,
        ("rr", "record_route_preset") => rr::record_route_preset,
        ("rr", "loose_route") => rr::loose_route,
        ("maxfwd", "mf_process_maxfwd_header") => maxfwd::mf_process_maxfwd_header,
        ("sipmsgops", "append_hf") => sipmsgops::append_hf,
        ("sipmsgops", "insert_hf") => sipmsgops::insert_hf,
        ("sipmsgops", "remove_hf") => sipmsgops::remove_hf,
        ("sipmsgops", "is_present_hf") => sipmsgops::is_present_hf,
        ("textops", "search") => sipmsgops::search,
        ("textops", "subst_uri") => sipmsgops::subst_uri,
        ("rest_client", "rest_append_hf") => async_fns::rest_append_hf,
        _ => return None,
    };
    Some(f)
}

/// The asynchronous implementation of `module:name`, if ringsip has one.
pub fn async_fn(module: &str, name: &str) -> Option<AsyncFn> {
    let f: AsyncFn = match (module, name) {
        ("avpops", "avp_db_query") | ("sqlops", "sql_query") => avpops::avp_db_query,
        ("sqlops", "sql_query_params") => avpops::sql_query_params,
        ("rest_client", "rest_get") => async_fns::rest_get,
        ("rest_client", "rest_post") => async_fns::rest_post,
        ("rest_client", "rest_put") => async_fns::rest_put,
        ("exec", "exec") => async_fns::exec_fn,
        ("cfgutils", "sleep") => async_fns::sleep,
        ("cfgutils", "usleep") => async_fns::usleep,
        _ => return None,
    };
    Some(f)
}

/// Output variables an async operation sets before its resume route runs.
#[derive(Debug, Default)]
pub struct Outputs {
    pub sets: Vec<(Pv, Value)>,
}

impl Outputs {
    /// Assigns every output in order (an `$avp` assignment pushes a value, as in OpenSIPS).
    pub fn apply(self, script: &Script, st: &mut MsgState, host: &mut Host<'_>) {
        for (pv, v) in self.sets {
            set_pv(script, st, host, &pv, v.as_ref());
        }
    }
}

/// The string of argument `i`, if given (`Arg::Str`), else `None`.
pub(crate) fn arg_str<'a>(args: &[Arg<'a>], i: usize) -> Option<&'a str> {
    match args.get(i) {
        Some(Arg::Str(s)) => Some(s),
        _ => None,
    }
}

/// The integer of argument `i` (an `Int`, or a `Str` holding one).
pub(crate) fn arg_int(args: &[Arg<'_>], i: usize) -> Option<i64> {
    match args.get(i) {
        Some(Arg::Int(n)) => Some(*n),
        Some(Arg::Str(s)) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The route of argument `i`.
pub(crate) fn arg_route(args: &[Arg<'_>], i: usize) -> Option<RouteId> {
    match args.get(i) {
        Some(Arg::Route(r)) => Some(*r),
        _ => None,
    }
}
