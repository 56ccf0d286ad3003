//! Parse a typical INVITE (930 bytes, 12 headers), read what a proxy reads (method, top Via
//! branch, To tag, Call-ID, CSeq, Route, Max-Forwards), apply a forward's edits (new Via,
//! Record-Route, Max-Forwards decrement, top Route removal) and serialize; the same work
//! with `rsip` in the same run. `parse_and_read` is the subset the callgrind comparison uses
//! (method, top branch, Call-ID, CSeq, Max-Forwards).
//!
//! Run: `cargo bench -p ringsip-bench --bench sip_parse`.
//! Callgrind: `SIP_CALLGRIND=ringsip SIP_ITERS=1000 valgrind --tool=callgrind <bench binary>`
//! minus the same with `SIP_ITERS=0`, divided by 1000.
//!
//! Figures: see the "Parser" section of `docs/PERFORMANCE.md` (2026-11-23, load 4-5:
//! parse_and_read ringsip 0.85 us, rsip 6.1 us; forward ringsip 1.27 us, rsip 15.9 us).

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, Criterion};
use ringsip::sip::{Limits, Message, Transport};
use rsip::headers::UntypedHeader;
use rsip::prelude::*;

static INVITE: &[u8] = include_bytes!("../../tests/fixtures/typical_invite.sip");

fn ringsip_parse_and_read(buf: &Bytes, limits: &Limits) -> usize {
    let Ok(m) = Message::parse(buf.clone(), Transport::Datagram, limits) else {
        return 0;
    };
    let method = m.method_text().len();
    let branch = m
        .top_via()
        .ok()
        .and_then(|v| v.branch)
        .map_or(0, <[u8]>::len);
    let call_id = m.call_id().map_or(0, <[u8]>::len);
    let cseq = m.cseq().map_or(0, |c| c.number as usize);
    let mf = m.max_forwards().ok().flatten().map_or(0, usize::from);
    method + branch + call_id + cseq + mf
}

fn ringsip_forward(buf: &Bytes, limits: &Limits, out: &mut [u8]) -> usize {
    let Ok(mut m) = Message::parse(buf.clone(), Transport::Datagram, limits) else {
        return 0;
    };
    let branch = m
        .top_via()
        .ok()
        .and_then(|v| v.branch)
        .map_or(0, <[u8]>::len);
    let to_tag = m.to().ok().and_then(|t| t.tag()).map_or(0, <[u8]>::len);
    let call_id = m.call_id().map_or(0, <[u8]>::len);
    let cseq = m.cseq().map_or(0, |c| c.number as usize);
    let routes = m.routes().count();
    if m.prepend_via(b"SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKringsip.0.1")
        .is_err()
        || m.prepend_record_route(b"<sip:192.0.2.1;lr>").is_err()
        || m.decrement_max_forwards().is_err()
        || m.strip_top_route().is_err()
    {
        return 0;
    }
    m.write_into(out).unwrap_or(0) + branch + to_tag + call_id + cseq + routes
}

fn rsip_parse_and_read(buf: &[u8]) -> usize {
    let Ok(req) = rsip::Request::try_from(buf) else {
        return 0;
    };
    let method = req.method.to_string().len();
    let branch = req
        .via_header()
        .ok()
        .and_then(|v| v.typed().ok())
        .and_then(|v| v.branch().map(|b| b.to_string().len()))
        .unwrap_or(0);
    let call_id = req.call_id_header().map_or(0, |c| c.value().len());
    let cseq = req
        .cseq_header()
        .ok()
        .and_then(|c| c.seq().ok())
        .unwrap_or(0) as usize;
    let mf = req
        .max_forwards_header()
        .ok()
        .and_then(|m| m.num().ok())
        .unwrap_or(0) as usize;
    method + branch + call_id + cseq + mf
}

fn rsip_forward(buf: &[u8]) -> usize {
    let Ok(mut req) = rsip::Request::try_from(buf) else {
        return 0;
    };
    let branch = req
        .via_header()
        .ok()
        .and_then(|v| v.typed().ok())
        .and_then(|v| v.branch().map(|b| b.to_string().len()))
        .unwrap_or(0);
    let to_tag = req
        .to_header()
        .ok()
        .and_then(|t| t.tag().ok().flatten())
        .map_or(0, |t| t.to_string().len());
    let call_id = req.call_id_header().map_or(0, |c| c.value().len());
    let cseq = req
        .cseq_header()
        .ok()
        .and_then(|c| c.seq().ok())
        .unwrap_or(0) as usize;
    let routes = req
        .headers
        .iter()
        .filter(|h| matches!(h, rsip::Header::Route(_)))
        .count();
    let mf = req
        .max_forwards_header()
        .ok()
        .and_then(|m| m.num().ok())
        .unwrap_or(70);
    if let Ok(h) = req.max_forwards_header_mut() {
        *h = rsip::headers::MaxForwards::from(mf.saturating_sub(1));
    }
    // remove the top Route value: the first Route header holds two values here
    let mut done = false;
    for h in req.headers.iter_mut() {
        if let rsip::Header::Route(r) = h {
            if !done {
                let v = r.value().to_string();
                let rest = v
                    .split_once(',')
                    .map(|x| x.1.trim().to_string())
                    .unwrap_or_default();
                *r = rsip::headers::Route::new(rest);
                done = true;
            }
        }
    }
    let mut headers = rsip::Headers::default();
    headers.push(rsip::Header::Via(rsip::headers::Via::new(
        "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKringsip.0.1",
    )));
    headers.push(rsip::Header::RecordRoute(rsip::headers::RecordRoute::new(
        "<sip:192.0.2.1;lr>",
    )));
    headers.extend(req.headers.iter().cloned().collect());
    req.headers = headers;
    let out: Vec<u8> = req.into();
    out.len() + branch + to_tag + call_id + cseq + routes
}

fn bench(c: &mut Criterion) {
    let buf = Bytes::from_static(INVITE);
    let limits = Limits::default();
    let mut out = vec![0u8; 2048];
    // sanity: both do the work (a zero would mean a parse failure)
    assert!(ringsip_forward(&buf, &limits, &mut out) > INVITE.len());
    assert!(rsip_forward(INVITE) > INVITE.len());
    assert!(ringsip_parse_and_read(&buf, &limits) > 0);
    assert!(rsip_parse_and_read(INVITE) > 0);

    let mut g = c.benchmark_group("invite");
    g.bench_function("ringsip/parse_and_read", |b| {
        b.iter(|| ringsip_parse_and_read(black_box(&buf), &limits))
    });
    g.bench_function("rsip/parse_and_read", |b| {
        b.iter(|| rsip_parse_and_read(black_box(INVITE)))
    });
    g.bench_function("ringsip/forward", |b| {
        b.iter(|| ringsip_forward(black_box(&buf), &limits, &mut out))
    });
    g.bench_function("rsip/forward", |b| {
        b.iter(|| rsip_forward(black_box(INVITE)))
    });
    g.finish();
}

criterion_group!(benches, bench);

/// `SIP_CALLGRIND=ringsip|rsip|none SIP_ITERS=n` runs `parse_and_read` n times and exits,
/// for `valgrind --tool=callgrind` (instructions per message = (total(n) - total(0)) / n).
fn main() {
    if let Ok(mode) = std::env::var("SIP_CALLGRIND") {
        let n: usize = std::env::var("SIP_ITERS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1000);
        let buf = Bytes::from_static(INVITE);
        let limits = Limits::default();
        let mut acc = 0usize;
        for _ in 0..n {
            acc = acc.wrapping_add(match mode.as_str() {
                "ringsip" => ringsip_parse_and_read(black_box(&buf), &limits),
                "rsip" => rsip_parse_and_read(black_box(INVITE)),
                _ => black_box(0),
            });
        }
        println!("{mode} x{n}: {acc}");
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
