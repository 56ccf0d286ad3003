//! SIP message framing on a byte stream (RFC 3261 §18.3): a message ends after its
//! header section (up to the first empty line) plus `Content-Length` bytes of body.
//! On a stream `Content-Length` is mandatory; a message without it, or with a value that
//! is not a decimal number (or that differs between two `Content-Length` lines), or a
//! message larger than the limit, is a framing error after which the connection cannot
//! be resynchronised and must be closed. CRLFs before a start line (keep-alives,
//! RFC 5626 §3.5.1; RFC 3261 §7.5) are skipped.
//!
//! [`Framer`] owns one connection's receive buffer. Sans-io: the caller reads into
//! [`Framer::spare`], reports the count with [`Framer::filled`], then takes complete
//! messages with [`Framer::next_message`]; a partial message stays buffered for the next
//! read, several messages in one read come out one by one. The buffer grows to at most
//! the message limit plus one read and is then reused: no allocation per message.

use memchr::memmem;

use crate::msg;

/// Largest message accepted on a stream (header section + body).
pub const MAX_MESSAGE: usize = 64 * 1024;

/// Why a stream cannot be framed any further.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("message without Content-Length on a stream")]
    MissingContentLength,
    #[error("bad Content-Length")]
    BadContentLength,
    #[error("message larger than {MAX_MESSAGE} bytes")]
    TooLarge,
}

/// One connection's receive buffer and framing state; see the module doc.
#[derive(Debug)]
pub struct Framer {
    buf: Vec<u8>,
    /// Start of the first unconsumed byte.
    start: usize,
    /// End of the bytes read so far.
    end: usize,
    /// How far from `start` the search for the empty line has already looked.
    scanned: usize,
    /// Length of the message at `start` once its header section was read, else 0.
    total: usize,
    max_message: usize,
}

impl Default for Framer {
    fn default() -> Self {
        Framer::new(MAX_MESSAGE)
    }
}

impl Framer {
    /// A framer accepting messages of at most `max_message` bytes.
    pub fn new(max_message: usize) -> Framer {
        Framer {
            buf: Vec::new(),
            start: 0,
            end: 0,
            scanned: 0,
            total: 0,
            max_message,
        }
    }

    /// Bytes received and not yet returned as a message.
    pub fn buffered(&self) -> usize {
        self.end - self.start
    }

    /// Free space for the next read, at least `min` bytes (moves the unconsumed bytes to
    /// the front of the buffer, grows it only when that is not enough).
    pub fn spare(&mut self, min: usize) -> &mut [u8] {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        if self.buf.len() - self.end < min && self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.buf.len() - self.end < min {
            self.buf.resize(self.end + min, 0);
        }
        &mut self.buf[self.end..]
    }

    /// Records that the last read put `n` bytes at the start of [`Framer::spare`].
    pub fn filled(&mut self, n: usize) {
        self.end = (self.end + n).min(self.buf.len());
    }

    /// The next complete message, `Ok(None)` if more bytes are needed, or the error that
    /// makes the rest of the stream unreadable.
    pub fn next_message(&mut self) -> Result<Option<&[u8]>, FrameError> {
        if self.total == 0 {
            // Between messages: skip keep-alive CRLFs before a start line.
            while self.start < self.end && matches!(self.buf[self.start], b'\r' | b'\n') {
                self.start += 1;
                self.scanned = 0;
            }
            let pending = &self.buf[self.start..self.end];
            let from = self.scanned.saturating_sub(3);
            let Some(at) = memmem::find(&pending[from..], b"\r\n\r\n") else {
                self.scanned = pending.len();
                if pending.len() > self.max_message {
                    return Err(FrameError::TooLarge);
                }
                return Ok(None);
            };
            let head_len = from + at + 4;
            let body_len = content_length(&pending[..head_len])?;
            self.total = head_len
                .checked_add(body_len)
                .filter(|t| *t <= self.max_message)
                .ok_or(FrameError::TooLarge)?;
        }
        if self.end - self.start < self.total {
            // Only (part of) the body is missing.
            return Ok(None);
        }
        let start = self.start;
        let total = self.total;
        self.start += total;
        self.scanned = 0;
        self.total = 0;
        Ok(Some(&self.buf[start..start + total]))
    }
}

/// The Content-Length of a header section (start line to the empty line included).
fn content_length(head: &[u8]) -> Result<usize, FrameError> {
    let mut found: Option<usize> = None;
    for h in msg::headers(head) {
        if !(h.name.eq_ignore_ascii_case(b"content-length") || h.name.eq_ignore_ascii_case(b"l")) {
            continue;
        }
        let v = h.value;
        if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
            return Err(FrameError::BadContentLength);
        }
        // Saturates: any value past the message limit is refused as too large later.
        let n = v.iter().fold(0usize, |n, d| {
            n.saturating_mul(10).saturating_add(usize::from(d - b'0'))
        });
        match found {
            Some(m) if m != n => return Err(FrameError::BadContentLength),
            _ => found = Some(n),
        }
    }
    found.ok_or(FrameError::MissingContentLength)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &[u8] = b"SIP/2.0 200 OK\r\nCall-ID: a\r\nContent-Length: 0\r\n\r\n";
    const B: &[u8] = b"INVITE sip:x SIP/2.0\r\nl: 5\r\nCall-ID: b\r\n\r\nhello";

    /// Feeds `chunks` one read each; returns the messages and the first error.
    fn feed(f: &mut Framer, chunks: &[&[u8]]) -> (Vec<Vec<u8>>, Option<FrameError>) {
        let mut got = Vec::new();
        for c in chunks {
            let spare = f.spare(c.len().max(1));
            spare[..c.len()].copy_from_slice(c);
            f.filled(c.len());
            loop {
                match f.next_message() {
                    Ok(Some(m)) => got.push(m.to_vec()),
                    Ok(None) => break,
                    Err(e) => return (got, Some(e)),
                }
            }
        }
        (got, None)
    }

    #[test]
    fn coalesced_messages_come_out_one_by_one() {
        let mut all = A.to_vec();
        all.extend_from_slice(B);
        all.extend_from_slice(A);
        let mut f = Framer::default();
        let (got, err) = feed(&mut f, &[&all]);
        assert_eq!(err, None);
        assert_eq!(got, [A.to_vec(), B.to_vec(), A.to_vec()]);
        assert_eq!(f.buffered(), 0);
    }

    #[test]
    fn split_reads_at_every_offset_give_the_same_messages() {
        let mut all = B.to_vec();
        all.extend_from_slice(A);
        for cut in 1..all.len() {
            let mut f = Framer::default();
            let (got, err) = feed(&mut f, &[&all[..cut], &all[cut..]]);
            assert_eq!(err, None, "cut {cut}");
            assert_eq!(got, [B.to_vec(), A.to_vec()], "cut {cut}");
        }
        // One byte per read.
        let mut f = Framer::default();
        let bytes: Vec<&[u8]> = all.chunks(1).collect();
        let (got, err) = feed(&mut f, &bytes);
        assert_eq!((got.len(), err), (2, None));
    }

    #[test]
    fn body_split_from_its_header_waits_for_the_body() {
        let mut f = Framer::default();
        let head = &B[..B.len() - 5];
        let (got, err) = feed(&mut f, &[head, b"hel"]);
        assert_eq!((got.len(), err), (0, None));
        assert_eq!(f.buffered(), head.len() + 3);
        let (got, err) = feed(&mut f, &[b"lo"]);
        assert_eq!((got, err), (vec![B.to_vec()], None));
    }

    #[test]
    fn an_empty_line_inside_a_body_does_not_end_the_header_section() {
        let m = b"MESSAGE sip:x SIP/2.0\r\nContent-Length: 8\r\n\r\nab\r\n\r\ncd";
        let mut all = m.to_vec();
        all.extend_from_slice(A);
        for cut in 1..all.len() {
            let (got, err) = feed(&mut Framer::default(), &[&all[..cut], &all[cut..]]);
            assert_eq!(
                (got, err),
                (vec![m.to_vec(), A.to_vec()], None),
                "cut {cut}"
            );
        }
    }

    #[test]
    fn keepalive_crlfs_are_skipped() {
        let mut input = b"\r\n\r\n".to_vec();
        input.extend_from_slice(A);
        input.extend_from_slice(b"\r\n");
        input.extend_from_slice(A);
        let mut f = Framer::default();
        let (got, err) = feed(&mut f, &[&input, b"\r\n\r\n"]);
        assert_eq!((got, err), (vec![A.to_vec(), A.to_vec()], None));
        assert_eq!(f.buffered(), 0);
    }

    #[test]
    fn missing_content_length_is_an_error() {
        let m = b"SIP/2.0 200 OK\r\nCall-ID: a\r\n\r\n";
        let mut input = A.to_vec();
        input.extend_from_slice(m);
        let (got, err) = feed(&mut Framer::default(), &[&input]);
        assert_eq!(got, [A.to_vec()]);
        assert_eq!(err, Some(FrameError::MissingContentLength));
    }

    #[test]
    fn bad_content_length_is_an_error() {
        for value in ["x", "-1", "1 2", "", "0x10", "+5"] {
            let m = format!("SIP/2.0 200 OK\r\nContent-Length: {value}\r\n\r\n");
            let (got, err) = feed(&mut Framer::default(), &[m.as_bytes()]);
            assert!(got.is_empty(), "{value:?}");
            assert_eq!(err, Some(FrameError::BadContentLength), "{value:?}");
        }
        // Two different values: which one frames the stream is unknowable.
        let m = b"SIP/2.0 200 OK\r\nContent-Length: 0\r\nl: 3\r\n\r\nabc";
        let (_, err) = feed(&mut Framer::default(), &[m]);
        assert_eq!(err, Some(FrameError::BadContentLength));
        // The same value twice is fine.
        let m = b"SIP/2.0 200 OK\r\nContent-Length: 3\r\nl: 3\r\n\r\nabc";
        let (got, err) = feed(&mut Framer::default(), &[m]);
        assert_eq!((got.len(), err), (1, None));
    }

    #[test]
    fn oversized_messages_are_errors() {
        // A body larger than the limit, announced.
        for value in [
            MAX_MESSAGE.to_string(),
            "99999999999999999999999999".to_string(),
        ] {
            let m = format!("SIP/2.0 200 OK\r\nContent-Length: {value}\r\n\r\n");
            let (_, err) = feed(&mut Framer::default(), &[m.as_bytes()]);
            assert_eq!(err, Some(FrameError::TooLarge), "{value}");
        }
        // A header section that never ends.
        let mut f = Framer::new(1000);
        let junk = vec![b'a'; 600];
        let (_, err) = feed(&mut f, &[b"SIP/2.0 200 OK\r\n", &junk, &junk]);
        assert_eq!(err, Some(FrameError::TooLarge));
    }

    #[test]
    fn buffer_stays_bounded_over_many_messages() {
        let mut f = Framer::default();
        let mut all = Vec::new();
        for _ in 0..10 {
            all.extend_from_slice(B);
            all.extend_from_slice(A);
        }
        // Reads of an odd size, so messages straddle reads.
        let mut total = 0;
        for _ in 0..200 {
            let chunks: Vec<&[u8]> = all.chunks(37).collect();
            let (got, err) = feed(&mut f, &chunks);
            assert_eq!(err, None);
            total += got.len();
        }
        assert_eq!(total, 200 * 20);
        assert!(f.buf.len() <= MAX_MESSAGE, "buffer grew to {}", f.buf.len());
    }
}
