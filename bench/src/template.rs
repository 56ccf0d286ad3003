//! Pre-rendered request templates with fixed-width fields patched in place.
//!
//! A template is the whole datagram rendered once at start-up, with three kinds of hole:
//! the 20-hex-digit call key (in Call-ID, From tag and Via branch), the one-character
//! transaction kind at the end of the branch, and the point at the end of the To header
//! where the remote tag is inserted (`;tag=...`, empty for an INVITE). Rendering a message
//! is two `memcpy`s and a few byte writes into the caller's buffer: no allocation, no
//! formatting. Invariant: the To header is the last one before `Content-Length`, so every
//! fixed-width hole lies before the insertion point and keeps its offset.

use std::net::SocketAddr;

/// The transport requests are sent over; it names the Via protocol and, for TCP, the
/// Contact URI's `transport` parameter (RFC 3261 §18, §19.1.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Transport {
    #[default]
    Udp,
    Tcp,
}

impl Transport {
    /// Lower case, as in a `transport=` URI parameter and in the report.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        }
    }

    /// Reliable transports get no request retransmissions (RFC 3261 §17.1.1.2, §17.1.2.2:
    /// Timers A and E are not started).
    pub fn is_reliable(self) -> bool {
        self == Transport::Tcp
    }

    /// The protocol token of a Via header: `UDP` or `TCP`.
    fn via(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
        }
    }

    /// The URI parameter naming this transport (`;transport=tcp`), empty for UDP.
    pub fn uri_param(self) -> &'static str {
        match self {
            Transport::Udp => "",
            Transport::Tcp => ";transport=tcp",
        }
    }
}

/// Marks the call key (20 hex digits) in template text.
const KEY: &str = "\u{1}KEY\u{1}";
/// Marks the transaction kind character of the branch.
const KIND: &str = "\u{1}K\u{1}";
/// Marks where `;tag=<remote tag>` goes.
const TO_TAG: &str = "\u{1}TAG\u{1}";

/// Width of the call key in hex digits: shard (4) + slot (8) + generation (8).
pub const KEY_LEN: usize = 20;

/// One request template; see the module doc.
#[derive(Debug, Clone)]
pub struct Template {
    bytes: Vec<u8>,
    key_at: Vec<usize>,
    kind_at: Option<usize>,
    to_tag_at: usize,
    /// Length of `METHOD ` at the start.
    method_len: usize,
    /// Offset just past the request line's CRLF.
    line_end: usize,
}

impl Template {
    /// Compiles template text with the markers above. Panics on a template without a To
    /// tag marker or with a marker after it: templates are ours, not external input.
    fn compile(text: &str) -> Template {
        let mut bytes = Vec::with_capacity(text.len());
        let mut key_at = Vec::new();
        let mut kind_at = None;
        let mut to_tag_at = None;
        let mut rest = text;
        while let Some(i) = rest.find('\u{1}') {
            bytes.extend_from_slice(&rest.as_bytes()[..i]);
            let tail = &rest[i..];
            if let Some(t) = tail.strip_prefix(KEY) {
                assert!(to_tag_at.is_none(), "key after the To tag point");
                key_at.push(bytes.len());
                bytes.extend_from_slice(&[b'0'; KEY_LEN]);
                rest = t;
            } else if let Some(t) = tail.strip_prefix(KIND) {
                assert!(to_tag_at.is_none(), "kind after the To tag point");
                kind_at = Some(bytes.len());
                bytes.push(b'x');
                rest = t;
            } else if let Some(t) = tail.strip_prefix(TO_TAG) {
                to_tag_at = Some(bytes.len());
                rest = t;
            } else {
                panic!("unknown template marker");
            }
        }
        bytes.extend_from_slice(rest.as_bytes());
        let method_len = bytes.iter().position(|b| *b == b' ').expect("request line") + 1;
        let line_end = bytes
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("request line")
            + 2;
        let to_tag_at = to_tag_at.expect("template without a To tag point");
        assert!(key_at.iter().chain(&kind_at).all(|at| *at >= line_end));
        Template {
            bytes,
            key_at,
            kind_at,
            to_tag_at,
            method_len,
            line_end,
        }
    }

    /// Like [`Template::render`], for a request inside a dialog (RFC 3261 §12.2.1.1):
    /// the Request-URI is the remote target `ruri` and `route` (complete `Route:` header
    /// lines, or empty) follows the request line.
    pub fn render_in_dialog(
        &self,
        out: &mut Vec<u8>,
        key: &[u8; KEY_LEN],
        kind: u8,
        to_tag: &[u8],
        ruri: &[u8],
        route: &[u8],
    ) {
        out.extend_from_slice(&self.bytes[..self.method_len]);
        out.extend_from_slice(ruri);
        out.extend_from_slice(b" SIP/2.0\r\n");
        out.extend_from_slice(route);
        // `base` is where template offset `line_end` lands.
        let base = out.len();
        out.extend_from_slice(&self.bytes[self.line_end..self.to_tag_at]);
        for at in &self.key_at {
            let at = base + at - self.line_end;
            out[at..at + KEY_LEN].copy_from_slice(key);
        }
        if let Some(at) = self.kind_at {
            out[base + at - self.line_end] = kind;
        }
        if !to_tag.is_empty() {
            out.extend_from_slice(b";tag=");
            out.extend_from_slice(to_tag);
        }
        out.extend_from_slice(&self.bytes[self.to_tag_at..]);
    }

    /// Appends the message for call `key`, transaction kind `kind` and remote tag
    /// `to_tag` (empty: no tag) to `out`.
    pub fn render(&self, out: &mut Vec<u8>, key: &[u8; KEY_LEN], kind: u8, to_tag: &[u8]) {
        let base = out.len();
        let (head, tail) = self.bytes.split_at(self.to_tag_at);
        out.extend_from_slice(head);
        for at in &self.key_at {
            out[base + at..base + at + KEY_LEN].copy_from_slice(key);
        }
        if let Some(at) = self.kind_at {
            out[base + at] = kind;
        }
        if !to_tag.is_empty() {
            out.extend_from_slice(b";tag=");
            out.extend_from_slice(to_tag);
        }
        out.extend_from_slice(tail);
    }
}

/// The templates of one source socket or connection (its address is in Via, From and
/// Contact).
#[derive(Debug, Clone)]
pub struct Templates {
    pub invite: Template,
    pub ack: Template,
    pub bye: Template,
    pub options: Template,
    pub register: Template,
}

impl Templates {
    /// Renders every request for source socket (or connection) `local`, requests to
    /// `ruri`, Call-IDs ending in `-<nonce>`, sent over `transport`.
    pub fn new(local: SocketAddr, ruri: &str, nonce: u32, transport: Transport) -> Templates {
        let proto = transport.via();
        let tparam = transport.uri_param();
        let ip = local.ip();
        let host = match local {
            SocketAddr::V4(_) => format!("{ip}"),
            SocketAddr::V6(_) => format!("[{ip}]"),
        };
        let port = local.port();
        let sdp = format!(
            "v=0\r\no=load 1 1 IN IP{v} {ip}\r\ns=-\r\nc=IN IP{v} {ip}\r\nt=0 0\r\n\
             m=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n",
            v = if local.is_ipv4() { 4 } else { 6 },
        );
        let common = |method: &str, cseq: u32, ruri: &str, to: &str| {
            format!(
                "{method} {ruri} SIP/2.0\r\n\
                 Via: SIP/2.0/{proto} {host}:{port};rport;branch=z9hG4bK{nonce:08x}{KEY}{KIND}\r\n\
                 Max-Forwards: 70\r\n\
                 From: <sip:load@{host}>;tag={KEY}\r\n\
                 Call-ID: {KEY}-{nonce:08x}\r\n\
                 CSeq: {cseq} {method}\r\n\
                 Contact: <sip:load@{host}:{port}{tparam}>\r\n\
                 User-Agent: ringsip-load\r\n\
                 To: <{to}>{TO_TAG}\r\n"
            )
        };
        let invite = format!(
            "{}Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            common("INVITE", 1, ruri, ruri),
            sdp.len()
        );
        let no_body = |head: String| format!("{head}Content-Length: 0\r\n\r\n");
        let aor = format!("sip:load@{host}");
        let register_uri = match ruri.rfind('@') {
            Some(i) => format!("sip:{}", &ruri[i + 1..]),
            None => ruri.to_string(),
        };
        Templates {
            invite: Template::compile(&invite),
            ack: Template::compile(&no_body(common("ACK", 1, ruri, ruri))),
            bye: Template::compile(&no_body(common("BYE", 2, ruri, ruri))),
            options: Template::compile(&no_body(common("OPTIONS", 1, ruri, ruri))),
            register: Template::compile(&format!(
                "{}Expires: 3600\r\nContent-Length: 0\r\n\r\n",
                common("REGISTER", 1, &register_uri, &aor)
            )),
        }
    }
}

/// The call key of `slot` (generation `gen`) on `shard`, as 20 lowercase hex digits.
pub fn call_key(shard: u16, slot: u32, gen: u32) -> [u8; KEY_LEN] {
    let mut k = [0u8; KEY_LEN];
    let v: u128 = (u128::from(shard) << 64) | (u128::from(slot) << 32) | u128::from(gen);
    for (i, b) in k.iter_mut().enumerate() {
        let shift = 4 * (KEY_LEN - 1 - i);
        let nib = ((v >> shift) & 0xf) as u8;
        *b = if nib < 10 {
            b'0' + nib
        } else {
            b'a' + nib - 10
        };
    }
    k
}

/// Reads `(shard, slot, gen)` back from a Call-ID `<key>-<nonce>`; `None` if it is not
/// one of this run's (other length, other nonce, not hex).
pub fn parse_call_id(call_id: &[u8], nonce: u32) -> Option<(u16, u32, u32)> {
    if call_id.len() != KEY_LEN + 9 || call_id.get(KEY_LEN) != Some(&b'-') {
        return None;
    }
    let n = hex(call_id.get(KEY_LEN + 1..)?)?;
    if n != u128::from(nonce) {
        return None;
    }
    let v = hex(call_id.get(..KEY_LEN)?)?;
    Some(((v >> 64) as u16, (v >> 32) as u32, v as u32))
}

fn hex(s: &[u8]) -> Option<u128> {
    let mut v: u128 = 0;
    for c in s {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => return None,
        };
        v = (v << 4) | u128::from(d);
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg;

    #[test]
    fn key_round_trips_through_call_id() {
        let key = call_key(3, 0xdead_beef, 7);
        assert_eq!(&key, b"0003deadbeef00000007");
        let mut cid = key.to_vec();
        cid.extend_from_slice(b"-0000abcd");
        assert_eq!(parse_call_id(&cid, 0xabcd), Some((3, 0xdead_beef, 7)));
        assert_eq!(parse_call_id(&cid, 0xabce), None);
        assert_eq!(
            parse_call_id(b"0003deadbeef0000000G-0000abcd", 0xabcd),
            None
        );
        assert_eq!(parse_call_id(b"short", 0xabcd), None);
    }

    #[test]
    fn rendered_bye_carries_key_kind_and_tag() {
        let t = Templates::new(
            "127.0.0.1:5070".parse().unwrap(),
            "sip:uas@127.0.0.1:5080",
            0x1234,
            Transport::Udp,
        );
        let key = call_key(0, 5, 9);
        let mut out = b"junk".to_vec();
        t.bye.render(&mut out, &key, b'b', b"remote");
        let m = &out[4..];
        let s = msg::summarize(m);
        assert_eq!(s.call_id, Some(&b"00000000000500000009-00001234"[..]));
        assert_eq!(s.cseq_num, Some(2));
        assert_eq!(s.cseq_method, Some(&b"BYE"[..]));
        assert_eq!(s.to_tag, Some(&b"remote"[..]));
        let text = String::from_utf8(m.to_vec()).unwrap();
        assert!(text.starts_with("BYE sip:uas@127.0.0.1:5080 SIP/2.0\r\n"));
        assert!(text.contains("branch=z9hG4bK0000123400000000000500000009b\r\n"));
        assert!(text.contains(";tag=00000000000500000009\r\n"));
        assert!(text.ends_with("Content-Length: 0\r\n\r\n"));
    }

    #[test]
    fn in_dialog_bye_takes_the_remote_target_and_route() {
        let t = Templates::new(
            "127.0.0.1:5070".parse().unwrap(),
            "sip:uas@127.0.0.1:5080",
            0x1234,
            Transport::Udp,
        );
        let key = call_key(0, 5, 9);
        let mut plain = Vec::new();
        t.bye.render(&mut plain, &key, b'b', b"remote");
        let mut out = Vec::new();
        let route = b"Route: <sip:10.0.0.9;lr>\r\n";
        t.bye.render_in_dialog(
            &mut out,
            &key,
            b'b',
            b"remote",
            b"sip:uas@10.0.0.2:5080",
            route,
        );
        let expected = String::from_utf8(plain).unwrap().replacen(
            "BYE sip:uas@127.0.0.1:5080 SIP/2.0\r\n",
            "BYE sip:uas@10.0.0.2:5080 SIP/2.0\r\nRoute: <sip:10.0.0.9;lr>\r\n",
            1,
        );
        assert_eq!(String::from_utf8(out).unwrap(), expected);
    }

    #[test]
    fn invite_content_length_matches_body() {
        let t = Templates::new(
            "[::1]:5070".parse().unwrap(),
            "sip:uas@[::1]:5080",
            1,
            Transport::Udp,
        );
        let mut out = Vec::new();
        t.invite.render(&mut out, &call_key(0, 0, 0), b'i', b"");
        let body = msg::body(&out);
        let cl = msg::headers(&out)
            .find(|h| h.name == b"Content-Length")
            .map(|h| {
                std::str::from_utf8(h.value)
                    .unwrap()
                    .parse::<usize>()
                    .unwrap()
            });
        assert_eq!(cl, Some(body.len()));
        assert!(msg::summarize(&out).to_tag.is_none());
    }

    #[test]
    fn register_targets_the_domain() {
        let t = Templates::new(
            "127.0.0.1:1".parse().unwrap(),
            "sip:uas@10.1.1.1:5060",
            1,
            Transport::Udp,
        );
        let mut out = Vec::new();
        t.register.render(&mut out, &call_key(0, 0, 0), b'r', b"");
        assert!(out.starts_with(b"REGISTER sip:10.1.1.1:5060 SIP/2.0\r\n"));
    }

    #[test]
    fn tcp_templates_name_tcp_in_via_and_contact() {
        let t = Templates::new(
            "127.0.0.1:40000".parse().unwrap(),
            "sip:uas@127.0.0.1:5080;transport=tcp",
            1,
            Transport::Tcp,
        );
        let key = call_key(0, 1, 2);
        for (tpl, kind) in [(&t.invite, b'i'), (&t.bye, b'b'), (&t.options, b'o')] {
            let mut out = Vec::new();
            tpl.render(&mut out, &key, kind, b"");
            let text = String::from_utf8(out).unwrap();
            assert!(
                text.contains("\r\nVia: SIP/2.0/TCP 127.0.0.1:40000;rport;branch=z9hG4bK"),
                "{text}"
            );
            assert!(
                text.contains("\r\nContact: <sip:load@127.0.0.1:40000;transport=tcp>\r\n"),
                "{text}"
            );
        }
        let u = Templates::new(
            "127.0.0.1:40000".parse().unwrap(),
            "sip:uas@127.0.0.1:5080",
            1,
            Transport::Udp,
        );
        let mut out = Vec::new();
        u.options.render(&mut out, &key, b'o', b"");
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("Via: SIP/2.0/UDP 127.0.0.1:40000;rport;"));
        assert!(text.contains("Contact: <sip:load@127.0.0.1:40000>\r\n"));
    }
}
