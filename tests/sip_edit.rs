//! Edits and serialization: unit tests per edit, and a parse -> edit -> serialize -> parse
//! round-trip property test.

use proptest::prelude::*;
use ringsip::sip::{EditError, HeaderName, Message, Uri};

fn msg(s: &str) -> Message {
    Message::parse_datagram(s.as_bytes().to_vec()).expect("parse")
}

fn written(m: &Message) -> Message {
    let mut out = Vec::new();
    m.write_to(&mut out);
    assert_eq!(out.len(), m.written_len());
    Message::parse_datagram(out).expect("reparse")
}

const REQ: &str = "INVITE sip:bob@example.com:5060;transport=udp SIP/2.0\r\n\
Via: SIP/2.0/UDP a.example.com;branch=z9hG4bK1, SIP/2.0/UDP b.example.com;branch=z9hG4bK2\r\n\
Route: <sip:p1.example.net;lr>\r\n\
Route: <sip:p2.example.net;lr>\r\n\
Max-Forwards: 10\r\n\
To: <sip:bob@example.com>\r\n\
From: <sip:alice@example.com>;tag=1\r\n\
Call-ID: c1\r\n\
CSeq: 1 INVITE\r\n\
X-Custom: one\r\n\
x-custom: two\r\n\
Content-Length: 4\r\n\r\nbody";

#[test]
fn no_edits_is_byte_identical() {
    let m = msg(REQ);
    let mut out = Vec::new();
    m.write_to(&mut out);
    assert_eq!(out, REQ.as_bytes());
}

#[test]
fn strip_top_via_in_a_multi_value_line() {
    let mut m = msg(REQ);
    m.strip_top_via().unwrap();
    let w = written(&m);
    assert_eq!(w.vias().count(), 1);
    assert_eq!(w.top_via().unwrap().branch, Some(&b"z9hG4bK2"[..]));
}

#[test]
fn strip_top_route_removes_the_line() {
    let mut m = msg(REQ);
    m.strip_top_route().unwrap();
    let w = written(&m);
    let routes: Vec<_> = w.routes().map(|r| r.unwrap().uri).collect();
    assert_eq!(routes, vec![&b"sip:p2.example.net;lr"[..]]);
    // stripping the same line twice is the same edit, not a new one
    m.strip_top_route().unwrap();
    assert_eq!(written(&m).routes().count(), 1);
}

#[test]
fn header_add_remove_replace() {
    let mut m = msg(REQ);
    assert_eq!(m.remove_header(b"X-CUSTOM").unwrap(), 2);
    m.append_header(b"X-New", b"appended").unwrap();
    m.insert_header_raw(b"X-Top: inserted\r\n").unwrap();
    m.replace_header(b"Call-ID", b"c2").unwrap();
    assert_eq!(
        m.append_header(b"X-Bad", b"a\r\nInjected: 1"),
        Err(EditError::BadHeader)
    );
    assert_eq!(
        m.append_header(b"Bad Name", b"x"),
        Err(EditError::BadHeader)
    );
    let w = written(&m);
    assert_eq!(w.header_lines_named(b"x-custom").count(), 0);
    assert_eq!(
        w.header_lines_named(b"X-New").next(),
        Some(&b"appended"[..])
    );
    assert_eq!(w.headers().next().unwrap().name_text, b"X-Top");
    assert_eq!(w.call_id().unwrap(), b"c2");
    assert_eq!(w.body(), b"body");
}

#[test]
fn max_forwards_and_record_route() {
    let mut m = msg(REQ);
    assert_eq!(m.decrement_max_forwards(), Ok(9));
    m.prepend_record_route(b"<sip:192.0.2.1;lr>").unwrap();
    m.prepend_via(b"SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKx")
        .unwrap();
    let w = written(&m);
    assert_eq!(w.max_forwards(), Ok(Some(9)));
    assert_eq!(
        w.record_routes().next().unwrap().unwrap().uri,
        b"sip:192.0.2.1;lr"
    );
    assert_eq!(w.top_via().unwrap().branch, Some(&b"z9hG4bKx"[..]));
    assert_eq!(w.vias().count(), 3);
    // absent Max-Forwards: 70 is added
    let mut m = msg("OPTIONS sip:x@y SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(m.decrement_max_forwards(), Ok(70));
    assert_eq!(written(&m).max_forwards(), Ok(Some(70)));
}

#[test]
fn request_uri_rewrites_compose() {
    let mut m = msg(REQ);
    m.set_request_uri_user(Some(b"carol")).unwrap();
    assert_eq!(
        m.request_uri(),
        Some(&b"sip:carol@example.com:5060;transport=udp"[..])
    );
    m.set_request_uri_host(b"[2001:db8::1]").unwrap();
    m.set_request_uri_port(None).unwrap();
    assert_eq!(
        m.request_uri(),
        Some(&b"sip:carol@[2001:db8::1];transport=udp"[..])
    );
    let w = written(&m);
    match w.parsed_request_uri() {
        Some(Ok(Uri::Sip(u))) => {
            assert_eq!(u.user, Some(&b"carol"[..]));
            assert_eq!(u.port, None);
        }
        other => panic!("{other:?}"),
    }
    m.set_request_uri(b"sip:dave@example.org").unwrap();
    m.set_request_uri_port(Some(5080)).unwrap();
    assert_eq!(
        written(&m).original_request_uri(),
        Some(&b"sip:dave@example.org:5080"[..])
    );
    assert!(m.set_request_uri(b"not a uri").is_err());
    m.set_request_uri(b"tel:+15551234").unwrap();
    assert_eq!(
        m.set_request_uri_user(Some(b"x")),
        Err(EditError::NotSipUri)
    );
}

#[test]
fn body_replacement_updates_content_length() {
    let mut m = msg(REQ);
    m.set_body(b"v=0\r\n", Some(b"application/sdp")).unwrap();
    m.set_body(b"v=0\r\ns=x\r\n", Some(b"application/sdp"))
        .unwrap();
    let w = written(&m);
    assert_eq!(w.body(), b"v=0\r\ns=x\r\n");
    assert_eq!(w.content_length(), Some(10));
    assert_eq!(w.content_type(), Some(&b"application/sdp"[..]));
    // a message without a body or Content-Length (datagram)
    let mut m = msg("MESSAGE sip:x@y SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\r\n");
    m.set_body(b"hello", Some(b"text/plain")).unwrap();
    let w = written(&m);
    assert_eq!(w.body(), b"hello");
    assert_eq!(w.content_length(), Some(5));
}

#[test]
fn overlapping_edits_are_refused() {
    let mut m = msg(REQ);
    m.remove_header(b"Via").unwrap();
    assert_eq!(m.strip_top_via(), Err(EditError::Overlap));
}

#[test]
fn write_into_a_small_buffer_fails_cleanly() {
    let mut m = msg(REQ);
    m.prepend_via(b"SIP/2.0/UDP h;branch=z9hG4bK9").unwrap();
    let mut small = [0u8; 16];
    assert!(matches!(
        m.write_into(&mut small),
        Err(EditError::BufferTooSmall { .. })
    ));
}

fn token() -> impl Strategy<Value = String> {
    "[a-zA-Z][a-zA-Z0-9]{0,8}"
}

prop_compose! {
    fn request()(
        method in prop::sample::select(vec!["INVITE", "OPTIONS", "BYE", "REGISTER", "FOOBAR"]),
        user in token(),
        host in "[a-z]{1,8}\\.example\\.(com|net)",
        vias in prop::collection::vec(("[a-z]{1,6}", "[a-zA-Z0-9]{1,10}"), 1..4),
        routes in prop::collection::vec("[a-z]{1,6}", 0..3),
        extra in prop::collection::vec((token(), "[ -~]{0,20}"), 0..5),
        mf in 0u8..=255,
        body in "[ -~]{0,40}",
        cseq in 0u32..=0x7fff_ffff,
    ) -> (String, usize, usize) {
        let mut s = format!("{method} sip:{user}@{host} SIP/2.0\r\n");
        for (h, b) in &vias {
            s += &format!("Via: SIP/2.0/UDP {h}.example.com;branch=z9hG4bK{b}\r\n");
        }
        for r in &routes {
            s += &format!("Route: <sip:{r}.example.net;lr>\r\n");
        }
        s += &format!("Max-Forwards: {mf}\r\nTo: <sip:{user}@{host}>\r\nFrom: <sip:a@b.com>;tag=t1\r\nCall-ID: cid-{cseq}\r\nCSeq: {cseq} {method}\r\n");
        for (n, v) in &extra {
            s += &format!("X-{n}: {}\r\n", v.trim());
        }
        s += &format!("Content-Length: {}\r\n\r\n{body}", body.len());
        (s, vias.len(), routes.len())
    }
}

proptest! {
    #[test]
    fn parse_edit_serialize_parse(
        (text, n_via, n_route) in request(),
        add_via in any::<bool>(),
        add_rr in any::<bool>(),
        strip_route in any::<bool>(),
        new_user in prop::option::of(token()),
        new_body in prop::option::of("[ -~]{0,60}"),
        append in prop::option::of((token(), "[a-z0-9]{1,12}")),
    ) {
        let mut m = msg(&text);
        prop_assert!(m.validate().is_ok());
        let orig_mf = m.max_forwards().unwrap().unwrap();
        let orig_body = m.body().to_vec();
        if add_via { m.prepend_via(b"SIP/2.0/TCP 192.0.2.9;branch=z9hG4bKnew").unwrap(); }
        if add_rr { m.prepend_record_route(b"<sip:192.0.2.9;lr>").unwrap(); }
        let dec = m.decrement_max_forwards();
        let stripped = strip_route && n_route > 0;
        if stripped { m.strip_top_route().unwrap(); }
        if let Some(u) = &new_user { m.set_request_uri_user(Some(u.as_bytes())).unwrap(); }
        if let Some(b) = &new_body { m.set_body(b.as_bytes(), None).unwrap(); }
        if let Some((n, v)) = &append { m.append_header(format!("Y-{n}").as_bytes(), v.as_bytes()).unwrap(); }

        let w = written(&m);
        prop_assert!(w.validate().is_ok());
        prop_assert_eq!(w.vias().count(), n_via + usize::from(add_via));
        if add_via {
            prop_assert_eq!(w.top_via().unwrap().branch, Some(&b"z9hG4bKnew"[..]));
        }
        prop_assert_eq!(w.record_routes().count(), usize::from(add_rr));
        prop_assert_eq!(w.routes().count(), n_route - usize::from(stripped));
        match dec {
            Ok(n) => prop_assert_eq!(w.max_forwards().unwrap(), Some(n)),
            Err(_) => prop_assert_eq!(orig_mf, 0),
        }
        if let Some(u) = &new_user {
            match w.parsed_request_uri() {
                Some(Ok(Uri::Sip(s))) => prop_assert_eq!(s.user, Some(u.as_bytes())),
                other => prop_assert!(false, "{:?}", other),
            }
        }
        match &new_body {
            Some(b) => prop_assert_eq!(w.body(), b.as_bytes()),
            None => prop_assert_eq!(w.body(), &orig_body[..]),
        }
        if let Some((n, v)) = &append {
            let name = format!("Y-{n}");
            prop_assert_eq!(w.header_lines_named(name.as_bytes()).last(), Some(v.as_bytes()));
        }
        prop_assert_eq!(w.call_id().unwrap(), m.call_id().unwrap());
        prop_assert_eq!(w.header(HeaderName::From), m.header(HeaderName::From));
        prop_assert_eq!(w.cseq().unwrap().number, m.cseq().unwrap().number);
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..600)) {
        if let Ok(mut m) = Message::parse_datagram(data) {
            let _ = m.validate();
            let _ = m.top_via();
            let _ = m.from();
            let _ = m.contacts().count();
            let _ = m.prepend_via(b"SIP/2.0/UDP h;branch=z9hG4bK1");
            let _ = m.strip_top_route();
            let _ = m.decrement_max_forwards();
            let _ = m.set_request_uri_user(Some(b"u"));
            let mut out = Vec::new();
            m.write_to(&mut out);
        }
    }
}

#[test]
fn write_into_reports_the_exact_length_needed() {
    let mut m = msg(REQ);
    m.prepend_via(b"SIP/2.0/UDP h;branch=z9hG4bK9").unwrap();
    let mut small = [0u8; 16];
    assert_eq!(
        m.write_into(&mut small),
        Err(EditError::BufferTooSmall {
            needed: m.written_len()
        })
    );
    let mut exact = vec![0u8; m.written_len()];
    assert_eq!(m.write_into(&mut exact), Ok(m.written_len()));
    let mut out = Vec::new();
    m.write_to(&mut out);
    assert_eq!(exact, out);
}

#[test]
fn inserted_text_past_the_inline_arena_spills_and_stays_in_order() {
    let mut m = msg(REQ);
    // 12 headers of ~60 bytes: well past the 384-byte inline arena.
    let values: Vec<String> = (0..12)
        .map(|i| format!("{i:02}-{}", "v".repeat(56)))
        .collect();
    for v in &values {
        m.append_header(b"X-Long", v.as_bytes()).unwrap();
    }
    m.prepend_via(b"SIP/2.0/UDP spill.example.com;branch=z9hG4bKs")
        .unwrap();
    let w = written(&m);
    let got: Vec<&[u8]> = w.header_lines_named(b"X-Long").collect();
    assert_eq!(got.len(), values.len());
    for (g, v) in got.iter().zip(&values) {
        assert_eq!(*g, v.as_bytes());
    }
    assert_eq!(w.top_via().unwrap().host, b"spill.example.com");
    assert_eq!(w.body(), b"body");
}
