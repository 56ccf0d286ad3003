//! Message-level unit tests: framing on both transports, limits, header index and lookups,
//! per-header accessors.

use bytes::Bytes;
use ringsip::sip::{
    Contact, HeaderErrorKind, HeaderName, Limits, Message, Method, ParseError, Transport,
};

const OPTIONS: &[u8] = b"OPTIONS sip:carol@chicago.example.com SIP/2.0\r\n\
v: SIP/2.0/TCP pc33.atlanta.example.com;branch=z9hG4bKhjhs8ass877\r\n\
Max-Forwards: 70\r\n\
t: <sip:carol@chicago.example.com>\r\n\
f: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
i: a84b4c76e66710\r\n\
CSeq: 63104 OPTIONS\r\n\
m: <sip:alice@pc33.atlanta.example.com>;expires=60, *\r\n\
k: replaces, timer\r\n\
Require: 100rel\r\n\
Proxy-Authorization: Digest username=\"alice\", realm=\"atlanta.example.com\", nonce=\"x\"\r\n\
Expires: 3600\r\n\
User-Agent: test/1\r\n\
l: 0\r\n\r\n";

#[test]
fn stream_framing_splits_and_waits() {
    let mut two = OPTIONS.to_vec();
    two.extend_from_slice(OPTIONS);
    let buf = Bytes::from(two);
    let m = Message::parse(buf.clone(), Transport::Stream, &Limits::default()).unwrap();
    assert_eq!(m.consumed(), OPTIONS.len());
    assert_eq!(m.as_bytes(), OPTIONS);
    let rest = buf.slice(m.consumed()..);
    assert!(Message::parse(rest, Transport::Stream, &Limits::default()).is_ok());
    for cut in [1, 40, OPTIONS.len() - 1] {
        let part = Bytes::copy_from_slice(&OPTIONS[..cut]);
        assert_eq!(
            Message::parse(part, Transport::Stream, &Limits::default()).unwrap_err(),
            ParseError::Incomplete
        );
    }
    // CRLF keep-alives before a message are skipped and counted
    let mut ka = b"\r\n\r\n".to_vec();
    ka.extend_from_slice(OPTIONS);
    let m = Message::parse(Bytes::from(ka), Transport::Stream, &Limits::default()).unwrap();
    assert_eq!(m.consumed(), OPTIONS.len() + 4);
    // a stream message without Content-Length cannot be framed
    let no_cl = b"OPTIONS sip:x@y SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\n\r\n";
    assert_eq!(
        Message::parse(
            Bytes::from_static(no_cl),
            Transport::Stream,
            &Limits::default()
        )
        .unwrap_err(),
        ParseError::MissingContentLength
    );
}

#[test]
fn limits_are_enforced() {
    let tight = Limits {
        max_headers: 5,
        ..Limits::default()
    };
    assert_eq!(
        Message::parse(Bytes::from_static(OPTIONS), Transport::Datagram, &tight).unwrap_err(),
        ParseError::TooManyHeaders { limit: 5 }
    );
    let short = Limits {
        max_header_len: 40,
        ..Limits::default()
    };
    assert!(matches!(
        Message::parse(Bytes::from_static(OPTIONS), Transport::Datagram, &short),
        Err(ParseError::HeaderTooLong { .. })
    ));
    let small = Limits {
        max_message_len: 100,
        ..Limits::default()
    };
    assert!(matches!(
        Message::parse(Bytes::from_static(OPTIONS), Transport::Datagram, &small),
        Err(ParseError::TooLarge { .. })
    ));
    // bare LF line ends are rejected
    assert!(Message::parse_datagram(&b"OPTIONS sip:x@y SIP/2.0\nVia: x\n\n"[..]).is_err());
}

#[test]
fn compact_forms_and_accessors() {
    let m = Message::parse_datagram(OPTIONS).unwrap();
    assert!(m.validate().is_ok());
    assert!(m.check_mandatory().is_ok());
    assert_eq!(m.method(), Some(Method::Options));
    assert_eq!(m.method_text(), b"OPTIONS");
    assert_eq!(m.top_via().unwrap().transport, b"TCP");
    assert_eq!(m.from().unwrap().display_name, Some(&b"Alice"[..]));
    assert_eq!(m.to().unwrap().tag(), None);
    assert_eq!(m.call_id().unwrap(), b"a84b4c76e66710");
    let c = m.cseq().unwrap();
    assert_eq!(
        (c.number, c.method, c.method_text),
        (63104, Method::Options, &b"OPTIONS"[..])
    );
    assert_eq!(m.expires(), Ok(Some(3600)));
    let contacts: Vec<Contact<'_>> = m.contacts().map(Result::unwrap).collect();
    assert_eq!(contacts.len(), 2);
    assert_eq!(contacts[0].expires(), Ok(Some(60)));
    assert_eq!(contacts[1], Contact::Star);
    let tags: Vec<&[u8]> = m.option_tags(HeaderName::Supported).collect();
    assert_eq!(tags, vec![&b"replaces"[..], b"timer"]);
    assert_eq!(m.option_tags(HeaderName::Require).count(), 1);
    let cred = m
        .credentials(HeaderName::ProxyAuthorization)
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(cred.param(b"realm"), Some(&b"atlanta.example.com"[..]));
    assert_eq!(
        m.header_lines_named(b"i").next(),
        Some(&b"a84b4c76e66710"[..])
    );
    assert_eq!(m.header_lines_named(b"CALL-ID").count(), 1);
    assert_eq!(m.user_agent(), Some(&b"test/1"[..]));
    assert_eq!(m.content_length(), Some(0));
    assert_eq!(m.headers().count(), 13);
}

#[test]
fn response_start_line() {
    let m = Message::parse_datagram(
        &b"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nTo: <sip:a@b>;tag=2\r\nFrom: <sip:c@d>;tag=1\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"[..],
    )
    .unwrap();
    assert_eq!(m.status_code(), Some(180));
    assert_eq!(m.reason(), Some(&b"Ringing"[..]));
    assert_eq!(m.method_text(), b"INVITE");
    assert!(m.validate().is_ok());
    assert!(Message::parse_datagram(&b"SIP/2.0 099 Low\r\n\r\n"[..]).is_err());
    assert!(Message::parse_datagram(&b"SIP/2.0 1000 High\r\n\r\n"[..]).is_err());
}

#[test]
fn typed_errors_name_the_header() {
    let m = Message::parse_datagram(
        &b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nMax-Forwards: 256\r\nCSeq: 2147483648 INVITE\r\nContent-Length: 0\r\n\r\n"[..],
    )
    .unwrap();
    let e = m.max_forwards().unwrap_err();
    assert_eq!(
        (e.header, e.kind),
        (HeaderName::MaxForwards, HeaderErrorKind::Overlarge)
    );
    let e = m.cseq().unwrap_err();
    assert_eq!(
        (e.header, e.kind),
        (HeaderName::CSeq, HeaderErrorKind::Overlarge)
    );
    assert_eq!(m.from().unwrap_err().kind, HeaderErrorKind::Missing);
}
