//! The proxy's stateless per-message work on a request, without I/O (RFC 3261 §16.6):
//! parse, read the headers a proxy reads (top Via branch, To tag, Call-ID, CSeq,
//! Max-Forwards, Route), apply a forward's edits (our Via, Record-Route, Max-Forwards - 1,
//! strip the top Route) and serialize into a send buffer. Plus the same reading done with
//! the published `rsip` crate, for comparison.
//!
//! Invariant: both functions fail (never return a made-up value) if the message does not
//! carry what the typical INVITE carries.

use bytes::Bytes;
use ringsip::sip::{Limits, Message, Transport};
use rsip::headers::untyped::{ToTypedHeader, UntypedHeader};
use rsip::message::HeadersExt;

use crate::PathError;

/// What was read from the message (kept so the compiler cannot drop the reads).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Read {
    pub branch_len: usize,
    pub cseq: u32,
    pub max_forwards: u32,
    pub call_id_len: usize,
}

/// Parses `buf` as ringsip does on receipt, reads the proxy's headers, applies a forward's
/// edits and writes the forwarded request into `out`; returns the written length.
pub fn ringsip_forward(buf: Bytes, limits: &Limits, out: &mut [u8]) -> Result<usize, PathError> {
    let mut m = Message::parse(buf, Transport::Datagram, limits)
        .map_err(|e| PathError::new("parse-invite: parse", e))?;
    let via = m
        .top_via()
        .map_err(|e| PathError::new("parse-invite: top Via", e))?;
    if via.branch.is_none() {
        return Err(PathError::new("parse-invite: Via branch", "absent"));
    }
    let to = m.to().map_err(|e| PathError::new("parse-invite: To", e))?;
    if to.tag().is_some() {
        return Err(PathError::new("parse-invite: To tag", "present"));
    }
    m.call_id()
        .map_err(|e| PathError::new("parse-invite: Call-ID", e))?;
    m.cseq()
        .map_err(|e| PathError::new("parse-invite: CSeq", e))?;
    match m.max_forwards() {
        Ok(Some(_)) => {}
        other => return Err(PathError::new("parse-invite: Max-Forwards", other)),
    }
    if m.routes().count() == 0 {
        return Err(PathError::new("parse-invite: Route", "none"));
    }
    m.prepend_via(b"SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKringsip0.1.abc")
        .map_err(|e| PathError::new("parse-invite: prepend Via", e))?;
    m.prepend_record_route(b"<sip:192.0.2.1;lr>")
        .map_err(|e| PathError::new("parse-invite: Record-Route", e))?;
    m.decrement_max_forwards()
        .map_err(|e| PathError::new("parse-invite: Max-Forwards - 1", e))?;
    m.strip_top_route()
        .map_err(|e| PathError::new("parse-invite: strip Route", e))?;
    m.write_into(out)
        .map_err(|e| PathError::new("parse-invite: write", e))
}

/// ringsip's parse of `buf` and the same reads as [`rsip_read`] (method, top Via branch,
/// Call-ID, CSeq number, Max-Forwards): the like-for-like comparison with `rsip`.
pub fn ringsip_read(buf: Bytes, limits: &Limits) -> Result<Read, PathError> {
    let m = Message::parse(buf, Transport::Datagram, limits)
        .map_err(|e| PathError::new("read-invite: parse", e))?;
    if m.method() != Some(ringsip::sip::Method::Invite) {
        return Err(PathError::new("read-invite: method", m.method()));
    }
    let branch_len = m
        .top_via()
        .map_err(|e| PathError::new("read-invite: Via", e))?
        .branch
        .map(<[u8]>::len)
        .ok_or_else(|| PathError::new("read-invite: Via branch", "absent"))?;
    let call_id_len = m
        .call_id()
        .map_err(|e| PathError::new("read-invite: Call-ID", e))?
        .len();
    let cseq = m
        .cseq()
        .map_err(|e| PathError::new("read-invite: CSeq", e))?
        .number;
    let max_forwards = match m.max_forwards() {
        Ok(Some(n)) => u32::from(n),
        other => return Err(PathError::new("read-invite: Max-Forwards", other)),
    };
    Ok(Read {
        branch_len,
        cseq,
        max_forwards,
        call_id_len,
    })
}

/// `rsip` 0.4: parses `buf` into an `rsip::Request` and reads the method, the top Via
/// branch, Call-ID, CSeq number and Max-Forwards (typed where rsip types them).
pub fn rsip_read(buf: &[u8]) -> Result<Read, PathError> {
    let req = rsip::Request::try_from(buf).map_err(|e| PathError::new("rsip: parse", e))?;
    if req.method != rsip::Method::Invite {
        return Err(PathError::new("rsip: method", req.method));
    }
    let via = req
        .via_header()
        .and_then(|v| v.typed())
        .map_err(|e| PathError::new("rsip: Via", e))?;
    let branch_len = via
        .branch()
        .map(|b| b.value().len())
        .ok_or_else(|| PathError::new("rsip: Via branch", "absent"))?;
    let call_id_len = req
        .call_id_header()
        .map(|c| c.value().len())
        .map_err(|e| PathError::new("rsip: Call-ID", e))?;
    let cseq = req
        .cseq_header()
        .and_then(|c| c.seq())
        .map_err(|e| PathError::new("rsip: CSeq", e))?;
    let max_forwards = req
        .max_forwards_header()
        .and_then(|m| m.num())
        .map_err(|e| PathError::new("rsip: Max-Forwards", e))?;
    Ok(Read {
        branch_len,
        cseq,
        max_forwards,
        call_id_len,
    })
}
