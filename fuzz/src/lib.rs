//! The checks the fuzz targets run, shared with the `replay` binary so they can be run over a
//! corpus on a stable toolchain without libFuzzer. Each function must never panic for any
//! input; a panic is a bug in `ringsip::sip`.

use bytes::Bytes;
use ringsip::sip::{header, parse_uri, uri, HeaderName, Limits, Message, ParseError, Transport};

pub mod reference;

/// Parse as datagram and as stream, then touch every typed accessor.
pub fn parse_message(data: &[u8]) {
    for t in [Transport::Datagram, Transport::Stream] {
        let Ok(m) = Message::parse(Bytes::copy_from_slice(data), t, &Limits::default()) else {
            continue;
        };
        let _ = m.validate();
        let _ = m.check_mandatory();
        let _ = m.top_via();
        let _ = m.vias().count();
        let _ = m.from().map(|f| f.tag());
        let _ = m.to().map(|f| f.parsed_uri());
        let _ = m.call_id();
        let _ = m.cseq();
        let _ = m.max_forwards();
        let _ = m.expires();
        for c in m.contacts().flatten() {
            let _ = c.expires();
            let _ = c.q();
        }
        let _ = m.routes().count();
        let _ = m.record_routes().count();
        for c in m.credentials(HeaderName::Authorization).flatten() {
            let _ = c.param(b"nonce");
        }
        if let Some(r) = m.original_request_uri() {
            assert_eq!(parse_uri(r), reference::parse_uri(r));
        }
        for v in m.header_values(HeaderName::Via) {
            assert_eq!(header::parse_via(v), reference::parse_via(v));
        }
        for v in m.header_values(HeaderName::Route) {
            assert_eq!(
                header::parse_name_addr(v, HeaderName::Route),
                reference::parse_name_addr(v, HeaderName::Route)
            );
        }
        let _ = m.parsed_request_uri();
        let _ = m.method_text();
        assert!(m.body().len() <= m.as_bytes().len());
    }
}

/// URI parse and the header-value parsers on the same bytes; the fast parsers must give
/// exactly what the reference (pre-optimisation) parsers give.
pub fn parse_uri_and_values(data: &[u8]) {
    assert_eq!(
        parse_uri(data),
        reference::parse_uri(data),
        "parse_uri {data:?}"
    );
    assert_eq!(
        uri::parse_host(data),
        reference::parse_host(data),
        "parse_host {data:?}"
    );
    assert_eq!(
        header::parse_via(data),
        reference::parse_via(data),
        "parse_via {data:?}"
    );
    assert_eq!(
        header::parse_name_addr(data, HeaderName::Route),
        reference::parse_name_addr(data, HeaderName::Route),
        "parse_name_addr {data:?}"
    );
    if let Ok(u) = parse_uri(data) {
        if let uri::Uri::Sip(s) = u {
            let _ = s.host.ip();
            let _ = s.param(b"transport");
            let mut out = [0u8; 256];
            if let Some(user) = s.user {
                let _ = uri::unescape(user, &mut out);
            }
        }
    }
    let _ = header::parse_via(data);
    let _ = header::parse_name_addr(data, HeaderName::From).map(|a| a.tag());
    let _ = header::parse_contact(data);
    let _ = header::parse_cseq(data);
    let _ = header::parse_credentials(data, HeaderName::Authorization).map(|c| c.param(b"realm"));
    let _ = header::check_date(data);
}

/// Parse, apply edits chosen by the first input byte, serialize, and require that the
/// result parses again (edits of a parsable message must keep it parsable).
pub fn parse_edit_serialize(data: &[u8]) {
    let Some((&ops, rest)) = data.split_first() else {
        return;
    };
    let Ok(mut m) = Message::parse(
        Bytes::copy_from_slice(rest),
        Transport::Datagram,
        &Limits::default(),
    ) else {
        return;
    };
    if ops & 1 != 0 {
        let _ = m.prepend_via(b"SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKfuzz");
    }
    if ops & 2 != 0 {
        let _ = m.prepend_record_route(b"<sip:192.0.2.1;lr>");
    }
    if ops & 4 != 0 {
        let _ = m.decrement_max_forwards();
    }
    if ops & 8 != 0 {
        let _ = m.strip_top_route();
    }
    if ops & 16 != 0 {
        let _ = m.strip_top_via();
    }
    if ops & 32 != 0 {
        let _ = m.set_request_uri_user(Some(b"fuzz"));
        let _ = m.set_request_uri_port(Some(5099));
    }
    if ops & 64 != 0 {
        let _ = m.set_body(b"v=0\r\n", Some(b"application/sdp"));
    }
    if ops & 128 != 0 {
        let _ = m.append_header(b"X-Fuzz", b"1");
        let _ = m.remove_header(b"Subject");
    }
    let mut out = Vec::new();
    m.write_to(&mut out);
    assert_eq!(out.len(), m.written_len());
    // Edits add lines and bytes, so the result may exceed the header-count or size limits;
    // any other parse error means an edit broke the message.
    match Message::parse_datagram(out.clone()) {
        Ok(_)
        | Err(
            ParseError::TooManyHeaders { .. }
            | ParseError::TooLarge { .. }
            | ParseError::HeaderTooLong { .. },
        ) => {}
        Err(e) => panic!(
            "edited message no longer parses: {e:?}\n{}",
            String::from_utf8_lossy(&out)
        ),
    }
}
