//! Locally generated replies (RFC 3261 §8.2.6): 100 Trying, `sl_send_reply`, and the 4xx/5xx
//! a proxy answers to a bad request. The reply copies the request's Via lines, From, To,
//! Call-ID and CSeq verbatim, adds a To tag when the request had none (except for 100), and
//! ends with `Content-Length: 0` unless a body is given. It writes into the caller's buffer
//! and allocates nothing.

use super::header::HeaderName;
use super::message::Message;

/// Why a reply could not be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// The message is a response; only requests are answered.
    #[error("cannot reply to a response")]
    NotARequest,
    /// Status code outside 100..=699.
    #[error("status code {0} out of range")]
    BadStatus(u16),
    /// Reason, tag or extra header text contains CR or LF.
    #[error("reply text contains CR or LF")]
    BadText,
    /// The output buffer is too small.
    #[error("output buffer too small")]
    BufferTooSmall,
}

/// What to put in a reply beyond the copied headers.
#[derive(Clone, Copy, Debug, Default)]
pub struct ReplySpec<'a> {
    /// Status code (100..=699).
    pub code: u16,
    /// Reason phrase.
    pub reason: &'a [u8],
    /// To tag to add when the request's To has none (ignored for 100).
    pub to_tag: Option<&'a [u8]>,
    /// Extra header lines, each `Name: value` with its CRLF (e.g. `Server: ringsip\r\n`).
    pub extra_headers: &'a [u8],
    /// Body (with `extra_headers` carrying its Content-Type).
    pub body: &'a [u8],
}

struct Out<'a> {
    buf: &'a mut [u8],
    at: usize,
}

impl Out<'_> {
    fn put(&mut self, s: &[u8]) -> Result<(), ReplyError> {
        let end = self
            .at
            .checked_add(s.len())
            .ok_or(ReplyError::BufferTooSmall)?;
        self.buf
            .get_mut(self.at..end)
            .ok_or(ReplyError::BufferTooSmall)?
            .copy_from_slice(s);
        self.at = end;
        Ok(())
    }

    fn put_u32(&mut self, mut v: u32) -> Result<(), ReplyError> {
        let mut d = [0u8; 10];
        let mut i = d.len();
        loop {
            i -= 1;
            if let Some(slot) = d.get_mut(i) {
                *slot = b'0' + (v % 10) as u8;
            }
            v /= 10;
            if v == 0 || i == 0 {
                break;
            }
        }
        self.put(d.get(i..).unwrap_or(&[]))
    }
}

fn has_crlf(s: &[u8]) -> bool {
    s.iter().any(|&c| c == b'\r' || c == b'\n')
}

/// Writes a reply to `req` into `out`, returning its length.
pub fn write_reply(
    req: &Message,
    spec: &ReplySpec<'_>,
    out: &mut [u8],
) -> Result<usize, ReplyError> {
    if !req.is_request() {
        return Err(ReplyError::NotARequest);
    }
    if !(100..=699).contains(&spec.code) {
        return Err(ReplyError::BadStatus(spec.code));
    }
    if has_crlf(spec.reason) || spec.to_tag.is_some_and(has_crlf) {
        return Err(ReplyError::BadText);
    }
    let mut o = Out { buf: out, at: 0 };
    o.put(b"SIP/2.0 ")?;
    o.put_u32(u32::from(spec.code))?;
    o.put(b" ")?;
    o.put(spec.reason)?;
    o.put(b"\r\n")?;
    let buf: &[u8] = req.as_bytes();
    for e in req.entries() {
        match e.name {
            HeaderName::Via | HeaderName::From | HeaderName::CallId | HeaderName::CSeq => {
                o.put(e.line.get(buf))?;
            }
            HeaderName::To => {
                let line = e.line.get(buf);
                let needs_tag = spec.code > 100
                    && spec.to_tag.is_some()
                    && !req.to().is_ok_and(|t| t.tag().is_some());
                match (needs_tag, spec.to_tag) {
                    (true, Some(tag)) => {
                        // the line ends with CRLF; its value ends where the trimmed value ends
                        let value_end = usize::from(e.value.end);
                        let line_start = usize::from(e.line.start);
                        let head = buf.get(line_start..value_end).unwrap_or(line);
                        o.put(head)?;
                        o.put(b";tag=")?;
                        o.put(tag)?;
                        o.put(b"\r\n")?;
                    }
                    _ => o.put(line)?,
                }
            }
            _ => {}
        }
    }
    o.put(spec.extra_headers)?;
    o.put(b"Content-Length: ")?;
    o.put_u32(u32::try_from(spec.body.len()).map_err(|_| ReplyError::BufferTooSmall)?)?;
    o.put(b"\r\n\r\n")?;
    o.put(spec.body)?;
    Ok(o.at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_copies_and_tags() {
        let req = Message::parse_datagram(
            &b"INVITE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP a.example.com;branch=z9hG4bK1\r\n\
v: SIP/2.0/UDP b.example.com;branch=z9hG4bK2\r\n\
To: <sip:bob@example.com>\r\n\
From: <sip:alice@example.com>;tag=1\r\n\
Call-ID: abc\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nSubject: x\r\nContent-Length: 0\r\n\r\n"[..],
        )
        .unwrap();
        let mut out = [0u8; 1024];
        let n = write_reply(
            &req,
            &ReplySpec {
                code: 404,
                reason: b"Not Found",
                to_tag: Some(b"xyz"),
                extra_headers: b"Server: ringsip\r\n",
                body: b"",
            },
            &mut out,
        )
        .unwrap();
        let r = Message::parse_datagram(out[..n].to_vec()).unwrap();
        assert_eq!(r.status_code(), Some(404));
        assert_eq!(r.to().unwrap().tag(), Some(&b"xyz"[..]));
        assert_eq!(r.vias().count(), 2);
        assert_eq!(r.call_id().unwrap(), b"abc");
        assert_eq!(r.header(HeaderName::Subject), None);
        assert!(r.validate().is_ok());
        let n = write_reply(
            &req,
            &ReplySpec {
                code: 100,
                reason: b"Trying",
                to_tag: Some(b"xyz"),
                ..Default::default()
            },
            &mut out,
        )
        .unwrap();
        let r = Message::parse_datagram(out[..n].to_vec()).unwrap();
        assert_eq!(r.to().unwrap().tag(), None);
        assert_eq!(
            write_reply(
                &req,
                &ReplySpec {
                    code: 200,
                    reason: b"OK",
                    ..Default::default()
                },
                &mut out[..10]
            ),
            Err(ReplyError::BufferTooSmall)
        );
    }
}
