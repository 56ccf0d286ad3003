//! `rr`: record-routing (RFC 3261 §16.6 step 4, §16.4 / §16.12 route processing; RFC 3261
//! loose routing with `;lr`). `record_route()` inserts our address (the socket the request
//! arrived on); `loose_route()` removes Route values that name us so the next hop is the
//! next Route value, or the Request-URI.

use std::fmt::Write as _;

use crate::proxy::host::Host;
use crate::script::interp::{Arg, MsgState};
use crate::sip::{parse_uri, Uri};

use super::arg_str;

/// `record_route([params])`: `Record-Route: <sip:IP:PORT;lr[params]>`.
pub fn record_route(h: &mut Host<'_>, args: &[Arg<'_>], _st: &mut MsgState) -> i32 {
    let Some(l) = h.core.listeners.get(h.rx.listener) else {
        return -1;
    };
    let mut v = String::with_capacity(64);
    let _ = write!(v, "<sip:{};lr", l.addr);
    if let Some(p) = arg_str(args, 0) {
        if !p.starts_with(';') {
            v.push(';');
        }
        v.push_str(p);
    }
    v.push('>');
    match h.msg.prepend_record_route(v.as_bytes()) {
        Ok(()) => 1,
        Err(_) => -1,
    }
}

/// `record_route_preset(address[, params])`.
pub fn record_route_preset(h: &mut Host<'_>, args: &[Arg<'_>], _st: &mut MsgState) -> i32 {
    let Some(addr) = arg_str(args, 0) else {
        return -1;
    };
    let mut v = String::with_capacity(64);
    v.push('<');
    if !addr.starts_with("sip:") && !addr.starts_with("sips:") {
        v.push_str("sip:");
    }
    v.push_str(addr);
    v.push_str(";lr");
    if let Some(p) = arg_str(args, 1) {
        if !p.starts_with(';') {
            v.push(';');
        }
        v.push_str(p);
    }
    v.push('>');
    match h.msg.prepend_record_route(v.as_bytes()) {
        Ok(()) => 1,
        Err(_) => -1,
    }
}

/// `loose_route()`: 1 if the request carried Route headers (processed here), -1 if not.
/// Our own leading Route values are removed. A Request-URI naming us (the previous hop
/// was a strict router, §16.4) is replaced by the last Route value.
pub fn loose_route(h: &mut Host<'_>, _args: &[Arg<'_>], _st: &mut MsgState) -> i32 {
    let routes: Vec<Vec<u8>> = h
        .msg
        .routes()
        .filter_map(Result::ok)
        .map(|r| r.uri.to_vec())
        .collect();
    if routes.is_empty() {
        return -1;
    }
    // Strict-router compatibility: the Request-URI is a value we record-routed.
    let ruri_is_us = h
        .msg
        .request_uri()
        .map(|u| h.core.is_myself(u) && is_rr_uri(u))
        .unwrap_or(false);
    if ruri_is_us {
        if let Some(last) = routes.last() {
            if h.msg.set_request_uri(last).is_err() {
                return -1;
            }
        }
    }
    let mut stripped = 0;
    for r in &routes {
        if h.core.is_myself(r) {
            if h.msg.strip_top_route().is_err() {
                return -1;
            }
            stripped += 1;
        } else {
            break;
        }
    }
    h.routes_stripped = stripped;
    1
}

/// Whether a URI looks like one of our Record-Route values (`;lr`, no user part).
fn is_rr_uri(u: &[u8]) -> bool {
    matches!(parse_uri(u), Ok(Uri::Sip(s)) if s.user.is_none())
}
