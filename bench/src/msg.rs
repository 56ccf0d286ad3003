//! Just enough SIP scanning for the load generator: the start line, header lines by name
//! (full and compact forms, RFC 3261 §7.3.3), the CSeq number and method, and a `tag`
//! parameter. No allocation, no copy: everything returned borrows the datagram.
//!
//! This is deliberately not a SIP parser (`ringsip::sip` is the proxy's): it trusts the
//! peer to be a well-behaved UAS or proxy, and answers `None` for anything it does not
//! recognise, so the engine counts the message as unparsable instead of guessing.
//! Header folding (obsolete line continuation) is not supported.

use memchr::{memchr, memmem};

/// The first line of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartLine<'a> {
    Request { method: &'a [u8] },
    Response { code: u16 },
}

/// One header line: the name as written, the value with surrounding whitespace trimmed,
/// and the whole line (without its CRLF).
#[derive(Debug, Clone, Copy)]
pub struct HeaderLine<'a> {
    pub name: &'a [u8],
    pub value: &'a [u8],
    pub line: &'a [u8],
}

/// Well-known headers the generator looks at, recognised in full or compact form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderName {
    Via,
    From,
    To,
    CallId,
    CSeq,
    Contact,
    RecordRoute,
    Other,
}

impl HeaderName {
    /// Classifies a header name (case-insensitive, compact forms per RFC 3261 §7.3.3).
    pub fn of(name: &[u8]) -> HeaderName {
        let eq = |s: &[u8]| name.eq_ignore_ascii_case(s);
        if eq(b"via") || eq(b"v") {
            HeaderName::Via
        } else if eq(b"from") || eq(b"f") {
            HeaderName::From
        } else if eq(b"to") || eq(b"t") {
            HeaderName::To
        } else if eq(b"call-id") || eq(b"i") {
            HeaderName::CallId
        } else if eq(b"cseq") {
            HeaderName::CSeq
        } else if eq(b"contact") || eq(b"m") {
            HeaderName::Contact
        } else if eq(b"record-route") {
            HeaderName::RecordRoute
        } else {
            HeaderName::Other
        }
    }
}

/// Parses the start line: `METHOD uri SIP/2.0` or `SIP/2.0 NNN reason`.
pub fn start_line(msg: &[u8]) -> Option<StartLine<'_>> {
    let end = memchr(b'\n', msg)?;
    let line = msg.get(..end)?;
    if let Some(rest) = line.strip_prefix(b"SIP/2.0 ") {
        let digits = rest.get(..3)?;
        let mut code: u16 = 0;
        for d in digits {
            if !d.is_ascii_digit() {
                return None;
            }
            code = code * 10 + u16::from(d - b'0');
        }
        if !(100..=699).contains(&code) {
            return None;
        }
        return Some(StartLine::Response { code });
    }
    let sp = memchr(b' ', line)?;
    let method = line.get(..sp)?;
    if method.is_empty() || !method.iter().all(|c| c.is_ascii_alphabetic()) {
        return None;
    }
    memmem::find(line, b"SIP/2.0")?;
    Some(StartLine::Request { method })
}

/// The header lines of `msg` (stops at the empty line ending the header section).
pub fn headers(msg: &[u8]) -> Headers<'_> {
    let pos = memchr(b'\n', msg).map_or(msg.len(), |i| i + 1);
    Headers { msg, pos }
}

/// Iterator over header lines; see [`headers`].
pub struct Headers<'a> {
    msg: &'a [u8],
    pos: usize,
}

impl<'a> Iterator for Headers<'a> {
    type Item = HeaderLine<'a>;

    fn next(&mut self) -> Option<HeaderLine<'a>> {
        loop {
            let rest = self.msg.get(self.pos..)?;
            if rest.is_empty() {
                return None;
            }
            let (line, advance) = match memchr(b'\n', rest) {
                Some(i) => (rest.get(..i)?, i + 1),
                None => (rest, rest.len()),
            };
            self.pos += advance;
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() {
                // End of the header section.
                self.pos = self.msg.len();
                return None;
            }
            let Some(colon) = memchr(b':', line) else {
                continue;
            };
            let name = trim(line.get(..colon)?);
            let value = trim(line.get(colon + 1..)?);
            return Some(HeaderLine { name, value, line });
        }
    }
}

/// The body: what follows the first empty line (empty if none).
pub fn body(msg: &[u8]) -> &[u8] {
    match memmem::find(msg, b"\r\n\r\n") {
        Some(i) => msg.get(i + 4..).unwrap_or(&[]),
        None => &[],
    }
}

/// The fields of one message the UAC matches responses on.
#[derive(Debug, Default, Clone, Copy)]
pub struct Summary<'a> {
    pub call_id: Option<&'a [u8]>,
    pub cseq_num: Option<u32>,
    pub cseq_method: Option<&'a [u8]>,
    pub to_tag: Option<&'a [u8]>,
}

/// Scans the header section once for Call-ID, CSeq and the To tag.
pub fn summarize(msg: &[u8]) -> Summary<'_> {
    let mut s = Summary::default();
    for h in headers(msg) {
        match HeaderName::of(h.name) {
            HeaderName::CallId => s.call_id = Some(h.value),
            HeaderName::CSeq => {
                if let Some((n, m)) = cseq(h.value) {
                    s.cseq_num = Some(n);
                    s.cseq_method = Some(m);
                }
            }
            HeaderName::To => s.to_tag = tag_param(h.value),
            _ => {}
        }
        if s.call_id.is_some() && s.cseq_num.is_some() && s.to_tag.is_some() {
            break;
        }
    }
    s
}

/// Splits a CSeq value `1 INVITE` into number and method.
pub fn cseq(value: &[u8]) -> Option<(u32, &[u8])> {
    let sp = memchr(b' ', value)?;
    let num = value.get(..sp)?;
    if num.is_empty() || num.len() > 10 {
        return None;
    }
    let mut n: u32 = 0;
    for d in num {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u32::from(d - b'0'))?;
    }
    let method = trim(value.get(sp + 1..)?);
    if method.is_empty() {
        return None;
    }
    Some((n, method))
}

/// The value of the `tag` parameter of a From/To value, if present. Parameters are looked
/// for after the closing `>` of a name-addr, or anywhere in an addr-spec.
pub fn tag_param(value: &[u8]) -> Option<&[u8]> {
    let params = match memchr(b'>', value) {
        Some(i) => value.get(i + 1..)?,
        None => value,
    };
    let mut rest = params;
    while let Some(i) = memchr(b';', rest) {
        rest = rest.get(i + 1..)?;
        let p = trim(rest);
        if p.len() >= 4 && p.get(..4)?.eq_ignore_ascii_case(b"tag=") {
            let v = p.get(4..)?;
            let end = v
                .iter()
                .position(|c| *c == b';' || *c == b' ' || *c == b'\t' || *c == b'>')
                .unwrap_or(v.len());
            let tag = v.get(..end)?;
            return if tag.is_empty() { None } else { Some(tag) };
        }
    }
    None
}

/// The entries of a comma-separated header value (e.g. Record-Route), trimmed; commas
/// inside `<...>` or quotes do not split.
pub fn comma_list(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = value;
    std::iter::from_fn(move || {
        while !rest.is_empty() {
            let mut in_angle = false;
            let mut in_quote = false;
            let mut end = rest.len();
            for (i, c) in rest.iter().enumerate() {
                match c {
                    b'"' if !in_angle => in_quote = !in_quote,
                    b'<' if !in_quote => in_angle = true,
                    b'>' if !in_quote => in_angle = false,
                    b',' if !in_angle && !in_quote => {
                        end = i;
                        break;
                    }
                    _ => {}
                }
            }
            let entry = trim(rest.get(..end).unwrap_or(&[]));
            rest = rest.get(end + 1..).unwrap_or(&[]);
            if !entry.is_empty() {
                return Some(entry);
            }
        }
        None
    })
}

fn trim(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|c| *c != b' ' && *c != b'\t')
        .unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|c| *c != b' ' && *c != b'\t')
        .map_or(start, |i| i + 1);
    s.get(start..end).unwrap_or(&[])
}

#[cfg(test)]
mod tests {
    use super::*;

    const RESPONSE: &[u8] = b"SIP/2.0 200 OK\r\n\
        v: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKabc\r\n\
        To: <sip:uas@10.0.0.2>;tag=9fe2\r\n\
        f: <sip:load@10.0.0.1>;tag=aa\r\n\
        i: abc-123\r\n\
        CSeq: 2 BYE\r\n\
        Content-Length: 0\r\n\r\n";

    #[test]
    fn response_summary_reads_compact_forms() {
        assert_eq!(
            start_line(RESPONSE),
            Some(StartLine::Response { code: 200 })
        );
        let s = summarize(RESPONSE);
        assert_eq!(s.call_id, Some(&b"abc-123"[..]));
        assert_eq!(s.cseq_num, Some(2));
        assert_eq!(s.cseq_method, Some(&b"BYE"[..]));
        assert_eq!(s.to_tag, Some(&b"9fe2"[..]));
    }

    #[test]
    fn request_start_line_and_body() {
        let m = b"INVITE sip:a@b SIP/2.0\r\nCall-ID: x\r\n\r\nv=0\r\n";
        assert_eq!(
            start_line(m),
            Some(StartLine::Request { method: b"INVITE" })
        );
        assert_eq!(body(m), b"v=0\r\n");
        assert_eq!(headers(m).count(), 1);
    }

    #[test]
    fn comma_list_respects_brackets_and_quotes() {
        let v = b"<sip:a;lr>, \"x, y\" <sip:b,c;lr> ,<sip:d>,,";
        let got: Vec<_> = comma_list(v).collect();
        assert_eq!(
            got,
            [&b"<sip:a;lr>"[..], b"\"x, y\" <sip:b,c;lr>", b"<sip:d>"]
        );
        assert_eq!(comma_list(b"").count(), 0);
    }

    #[test]
    fn garbage_is_rejected_without_panic() {
        for m in [
            &b""[..],
            b"SIP/2.0 2",
            b"SIP/2.0 abc OK\r\n",
            b"SIP/2.0 099 x\r\n",
            b"\r\n",
            b"INV ITE\r\n",
            b"1NVITE x SIP/2.0\r\n",
        ] {
            assert_eq!(start_line(m), None, "{:?}", String::from_utf8_lossy(m));
            let _ = summarize(m);
        }
        assert_eq!(cseq(b"99999999999 INVITE"), None);
        assert_eq!(cseq(b"1"), None);
        assert_eq!(tag_param(b"<sip:a@b;tag=no>"), None);
        assert_eq!(tag_param(b"sip:a@b;tag=yes"), Some(&b"yes"[..]));
        assert_eq!(tag_param(b"<sip:a@b>;tag="), None);
    }
}
