//! `rr`: record-routing (RFC 3261 §16.6 step 4, §16.4 / §16.12 route processing; RFC 3261
//! loose routing with `;lr`). `record_route()` inserts our address (the socket the request
//! arrived on); `loose_route()` removes Route values that name us so the next hop is the
//! next Route value, or the Request-URI.

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
    v.push_str("<sip:");
    v.push_str(&l.addr_text);
    v.push_str(";lr");
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
    // Strict-router compatibility: the Request-URI is a value we record-routed (names us,
    // no user part).
    // A SIP URI has a user part exactly when it contains '@' (none may appear in its
    // host, parameters or headers), so a Request-URI with one is not parsed here.
    let ruri_is_us = match h
        .msg
        .request_uri()
        .filter(|u| !u.contains(&b'@'))
        .map(parse_uri)
    {
        Some(Ok(Uri::Sip(s))) => s.user.is_none() && h.core.is_myself_sip(&s),
        _ => false,
    };
    // One pass over the Route values, each URI parsed once: how many leading ones name
    // us, and (only for a strict router's request) the last one.
    let mut any = false;
    let mut stripped = 0;
    let mut leading = true;
    let mut last: Option<Vec<u8>> = None;
    for r in h.msg.routes().filter_map(Result::ok) {
        any = true;
        if leading {
            if h.core.is_myself(r.uri) {
                stripped += 1;
            } else {
                leading = false;
            }
        }
        if ruri_is_us {
            last = Some(r.uri.to_vec());
        } else if !leading {
            break;
        }
    }
    if !any {
        return -1;
    }
    if let Some(last) = last {
        if h.msg.set_request_uri(&last).is_err() {
            return -1;
        }
    }
    for _ in 0..stripped {
        if h.msg.strip_top_route().is_err() {
            return -1;
        }
    }
    h.routes_stripped = stripped;
    1
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `loose_route` skips parsing a Request-URI with '@': such a URI never parses as a
    /// SIP URI without a user part.
    #[test]
    fn a_uri_with_an_at_sign_is_never_a_sip_uri_without_user() {
        for u in [
            "sip:alice@192.0.2.1",
            "sip:alice:pw@192.0.2.1:5060;lr",
            "sip:192.0.2.1;x=a@b",
            "sip:192.0.2.1?h=a@b",
            "sip:@192.0.2.1",
            "sips:a@b@c",
            "sip:[2001:db8::1]@x",
        ] {
            let u = u.as_bytes();
            assert!(u.contains(&b'@'));
            let no_user = matches!(parse_uri(u), Ok(Uri::Sip(s)) if s.user.is_none());
            assert!(!no_user, "{}", String::from_utf8_lossy(u));
        }
        match parse_uri(b"sip:192.0.2.1:5060;lr") {
            Ok(Uri::Sip(s)) => assert!(s.user.is_none()),
            other => panic!("{other:?}"),
        }
    }
}
