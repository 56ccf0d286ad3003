//! The parsed SIP message (RFC 3261 §7): it owns its immutable wire buffer, a start line, a
//! header index built in one pass, the body span, lazily parsed and cached typed headers, and
//! the pending edits applied when it is written out (see `edit.rs`).
//!
//! Invariants: every span points inside `buf` (messages are at most 65 535 bytes, the
//! largest UDP datagram, so spans are `u16`); the header index holds at most
//! [`MAX_HEADERS`] lines in wire order, and `first` names the index of each known header's
//! first line; nothing on the parse path allocates. Framing follows
//! RFC 3261 §18.3: on a stream Content-Length is mandatory; on a datagram its absence means
//! "the rest of the datagram" and octets past the declared length are ignored.

use std::cell::OnceCell;
use std::mem::MaybeUninit;

use bytes::Bytes;

use super::edit::Edits;
use super::header::{
    self, CSeq, Contact, Credentials, HeaderError, HeaderErrorKind, HeaderName, Method, NameAddr,
    Via,
};
use super::scan::{self, span_of, CommaSplit, Span};
use super::uri::{parse_uri, validate_uri, Uri, UriError};

/// The largest message the parser accepts (spans are `u16`).
pub const MAX_MESSAGE_LEN: usize = u16::MAX as usize;
/// The largest number of header lines a message may have.
pub const MAX_HEADERS: usize = 64;
/// `Message::first` value for a name with no line.
const NO_ENTRY: u8 = u8::MAX;

/// Parser limits, configurable per listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest whole message in bytes (capped at [`MAX_MESSAGE_LEN`]).
    pub max_message_len: usize,
    /// Largest number of header lines (capped at [`MAX_HEADERS`]).
    pub max_headers: usize,
    /// Largest single header line, folded continuation lines included.
    pub max_header_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_len: MAX_MESSAGE_LEN,
            max_headers: MAX_HEADERS,
            max_header_len: 8192,
        }
    }
}

/// How the message arrived, which decides body framing (RFC 3261 §18.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// UDP (or SCTP per-message): the datagram is the message.
    Datagram,
    /// TCP/TLS/WS: Content-Length frames the message; the buffer may hold more.
    Stream,
}

/// What is wrong with the start line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StartLineFault {
    /// The method is not a token.
    #[error("method is not a token")]
    Method,
    /// The Request-URI is missing or does not parse.
    #[error("bad Request-URI: {0}")]
    RequestUri(UriError),
    /// The version is not `SIP/<digits>.<digits>`, or elements are not separated by one SP.
    #[error("bad SIP-Version or element spacing")]
    Version,
    /// The status code is not three digits in 100..=699.
    #[error("bad status code")]
    StatusCode,
    /// The reason phrase contains a control character.
    #[error("bad reason phrase")]
    Reason,
}

/// Why a message could not be parsed (syntax and framing). Each maps to a reply in
/// [`ParseError::status_code`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The input is empty (or only CRLF keep-alives).
    #[error("empty message")]
    Empty,
    /// Stream transport: more bytes are needed.
    #[error("incomplete message, more bytes needed")]
    Incomplete,
    /// The message is larger than the configured limit.
    #[error("message larger than the limit of {limit} bytes")]
    TooLarge {
        /// The limit in force.
        limit: usize,
    },
    /// The start line is malformed.
    #[error("bad start line: {0}")]
    BadStartLine(StartLineFault),
    /// A line does not end in CRLF (bare LF or CR).
    #[error("line at offset {offset} does not end with CRLF")]
    BadLineEnd {
        /// Offset of the line.
        offset: usize,
    },
    /// A header line has no colon or its name is not a token.
    #[error("malformed header line at offset {offset}")]
    BadHeaderLine {
        /// Offset of the line.
        offset: usize,
    },
    /// A header line is longer than the limit.
    #[error("header line at offset {offset} exceeds {limit} bytes")]
    HeaderTooLong {
        /// Offset of the line.
        offset: usize,
        /// The limit in force.
        limit: usize,
    },
    /// More header lines than the limit.
    #[error("more than {limit} header lines")]
    TooManyHeaders {
        /// The limit in force.
        limit: usize,
    },
    /// Datagram: no empty line ends the header section (truncated message).
    #[error("header section is not terminated by an empty line")]
    UnterminatedHeaders,
    /// Content-Length is not a number.
    #[error("Content-Length is not a decimal number")]
    BadContentLength,
    /// Content-Length is negative.
    #[error("Content-Length is negative")]
    NegativeContentLength,
    /// Content-Length appears more than once.
    #[error("Content-Length appears more than once")]
    RepeatedContentLength,
    /// Datagram: Content-Length larger than the bytes that follow the header section.
    #[error("Content-Length {declared} exceeds the {available} body bytes of the datagram")]
    ContentLengthExceedsDatagram {
        /// Declared length.
        declared: usize,
        /// Bytes available.
        available: usize,
    },
    /// Stream: Content-Length is mandatory (RFC 3261 §18.3).
    #[error("Content-Length missing on a stream transport")]
    MissingContentLength,
}

impl ParseError {
    /// The status a server answers with, when it can answer at all (400, or 513 for size).
    pub fn status_code(&self) -> u16 {
        match self {
            ParseError::TooLarge { .. } | ParseError::HeaderTooLong { .. } => 513,
            _ => 400,
        }
    }
}

/// A message that parsed but is not acceptable (RFC 3261 §8.2, §16.3; RFC 4475 §3.1.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    /// SIP version other than 2.0 (answer 505).
    #[error("unsupported SIP version {major}.{minor}")]
    UnsupportedVersion {
        /// Major version.
        major: u16,
        /// Minor version.
        minor: u16,
    },
    /// A header's value is malformed or overlarge.
    #[error("{0}")]
    Header(HeaderError),
    /// A single-valued header occurs more than once.
    #[error("{} appears more than once", .0.as_str())]
    RepeatedHeader(HeaderName),
    /// The CSeq method differs from the request method.
    #[error("CSeq method does not match the request method")]
    CSeqMethodMismatch,
    /// The Request-URI carries `?headers` (RFC 3261 §19.1.5: not allowed there).
    #[error("Request-URI carries URI headers")]
    RequestUriHeaders,
}

impl Invalid {
    /// The status a server answers with.
    pub fn status_code(&self) -> u16 {
        match self {
            Invalid::UnsupportedVersion { .. } => 505,
            _ => 400,
        }
    }
}

/// A mandatory header is missing (RFC 3261 §8.1.1; reported apart from syntax errors).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("mandatory header {} is missing", .0.as_str())]
pub struct MissingHeader(pub HeaderName);

/// The first line of a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartLine {
    /// A request line.
    Request {
        /// The method, classified.
        method: Method,
        /// The method text.
        method_span: Span,
        /// The Request-URI text.
        uri: Span,
    },
    /// A status line.
    Response {
        /// The status code (100..=699).
        code: u16,
        /// The reason phrase (may be empty).
        reason: Span,
    },
}

/// One header line of the index: 12 bytes (the name starts where the line does, so only
/// its end is kept).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Entry {
    pub(crate) name: HeaderName,
    /// One past the name's last byte (the name starts at `line.start`).
    name_end: u16,
    pub(crate) value: Span,
    /// The whole line: name to the CRLF that ends it (continuation lines included).
    pub(crate) line: Span,
}

impl Entry {
    /// The name as written.
    pub(crate) fn name_span(&self) -> Span {
        Span {
            start: self.line.start,
            end: self.name_end,
        }
    }
}

const _: () = assert!(std::mem::size_of::<Entry>() == 12);

#[derive(Clone, Copy, Debug)]
struct ViaSpans {
    protocol_name: Span,
    protocol_version: Span,
    transport: Span,
    host: Span,
    port: Option<u16>,
    params: Span,
    branch: Option<Span>,
    received: Option<Span>,
    rport: Option<Option<u16>>,
    maddr: Option<Span>,
    ttl: Option<u8>,
}

#[derive(Clone, Copy, Debug)]
struct NameAddrSpans {
    display_name: Option<Span>,
    uri: Span,
    params: Span,
}

#[derive(Clone, Copy, Debug)]
struct CSeqSpans {
    number: u32,
    method: Method,
    method_text: Span,
}

#[derive(Clone, Debug, Default)]
struct Cache {
    top_via: OnceCell<Result<ViaSpans, HeaderError>>,
    from: OnceCell<Result<NameAddrSpans, HeaderError>>,
    to: OnceCell<Result<NameAddrSpans, HeaderError>>,
    cseq: OnceCell<Result<CSeqSpans, HeaderError>>,
}

/// One header line as seen through [`Message::headers`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeaderField<'a> {
    /// Classified name.
    pub name: HeaderName,
    /// Name as written.
    pub name_text: &'a [u8],
    /// Value, LWS-trimmed (may contain folded line breaks).
    pub value: &'a [u8],
}

/// Every comma-separated value of one header across its lines, in wire order (see
/// [`Message::header_values`]).
#[derive(Clone, Debug)]
pub struct HeaderValues<'a> {
    buf: &'a [u8],
    /// The entries not yet visited, from the first line of `name` on.
    entries: &'a [Entry],
    name: HeaderName,
    /// The values left in the line being read.
    split: CommaSplit<'a>,
}

impl<'a> Iterator for HeaderValues<'a> {
    type Item = &'a [u8];

    /// Counts the values line by line with [`CommaSplit`]'s count (no value is trimmed or
    /// returned).
    fn count(self) -> usize {
        let mut n = self.split.count();
        for e in self.entries {
            if e.name == self.name {
                n += CommaSplit::new(e.value.get(self.buf)).count();
            }
        }
        n
    }

    fn next(&mut self) -> Option<&'a [u8]> {
        loop {
            if !self.split.is_done() {
                if let Some(v) = self.split.next() {
                    return Some(v);
                }
            }
            // the next line of this header
            loop {
                let (e, rest) = self.entries.split_first()?;
                self.entries = rest;
                if e.name == self.name {
                    self.split = CommaSplit::new(e.value.get(self.buf));
                    break;
                }
            }
        }
    }
}

/// The values of a name-addr list header (Route, Record-Route), each parsed as it is
/// reached. [`Iterator::count`] counts the values without parsing them (a count does not
/// depend on whether they parse).
#[derive(Clone, Debug)]
pub struct NameAddrs<'a> {
    values: HeaderValues<'a>,
}

impl<'a> Iterator for NameAddrs<'a> {
    type Item = Result<NameAddr<'a>, HeaderError>;

    fn next(&mut self) -> Option<Self::Item> {
        let name = self.values.name;
        self.values.next().map(|v| header::parse_name_addr(v, name))
    }

    fn count(self) -> usize {
        self.values.count()
    }
}

/// A parsed SIP message. Owns its buffer; cheap to move into a transaction.
#[derive(Clone, Debug)]
pub struct Message {
    pub(crate) buf: Bytes,
    consumed: usize,
    pub(crate) start: StartLine,
    version: (u16, u16),
    /// The header index: `entries[..n_entries]` are initialised (by `parse`, which alone
    /// writes either field); the rest is never read, so it is not zeroed either.
    entries: [MaybeUninit<Entry>; MAX_HEADERS],
    n_entries: u8,
    /// Index in `entries` of the first line of each header name (`NO_ENTRY` if none),
    /// indexed by `HeaderName as usize` (`Other` included).
    first: [u8; HeaderName::KNOWN + 1],
    /// Offset of the empty line that ends the header section.
    pub(crate) headers_end: u16,
    pub(crate) body: Span,
    content_length: Option<u32>,
    cache: Cache,
    pub(crate) edits: Edits,
}

fn start_fault(f: StartLineFault) -> ParseError {
    ParseError::BadStartLine(f)
}

fn parse_version(v: &[u8]) -> Option<(u16, u16)> {
    if v == b"SIP/2.0" {
        return Some((2, 0));
    }
    let rest = v.get(..4).filter(|p| p.eq_ignore_ascii_case(b"SIP/"))?;
    let _ = rest;
    let nums = v.get(4..)?;
    let dot = memchr::memchr(b'.', nums)?;
    let major = nums.get(..dot)?;
    let minor = nums.get(dot + 1..)?;
    if !scan::all_digits(major) || !scan::all_digits(minor) {
        return None;
    }
    Some((
        u16::try_from(scan::parse_u64(major, 9999)?).ok()?,
        u16::try_from(scan::parse_u64(minor, 9999)?).ok()?,
    ))
}

fn parse_start_line(line: &[u8], base: usize) -> Result<(StartLine, (u16, u16)), ParseError> {
    let sp1 = scan::find_byte(b' ', line).ok_or(start_fault(StartLineFault::Version))?;
    let first = line.get(..sp1).unwrap_or(&[]);
    let rest = line.get(sp1 + 1..).unwrap_or(&[]);
    if first.len() > 4
        && first
            .get(..4)
            .is_some_and(|p| p.eq_ignore_ascii_case(b"SIP/"))
    {
        let version = parse_version(first).ok_or(start_fault(StartLineFault::Version))?;
        let code_txt = rest
            .get(..3)
            .ok_or(start_fault(StartLineFault::StatusCode))?;
        let after = rest.get(3..).unwrap_or(&[]);
        if !scan::all_digits(code_txt) || !(after.is_empty() || after.first() == Some(&b' ')) {
            return Err(start_fault(StartLineFault::StatusCode));
        }
        let code = scan::parse_u64(code_txt, 999)
            .and_then(|c| u16::try_from(c).ok())
            .filter(|c| (100..=699).contains(c))
            .ok_or(start_fault(StartLineFault::StatusCode))?;
        let reason = after.get(1..).unwrap_or(&[]);
        if reason.iter().any(|&c| c < b' ' && c != b'\t') {
            return Err(start_fault(StartLineFault::Reason));
        }
        let rstart = base + sp1 + 1 + 3 + usize::from(!after.is_empty());
        let reason =
            Span::new(rstart, rstart + reason.len()).ok_or(start_fault(StartLineFault::Reason))?;
        return Ok((StartLine::Response { code, reason }, version));
    }
    if first.is_empty() || !first.iter().all(|&c| scan::is_token(c)) {
        return Err(start_fault(StartLineFault::Method));
    }
    let sp2 = scan::find_byte(b' ', rest).ok_or(start_fault(StartLineFault::Version))?;
    let uri = rest.get(..sp2).unwrap_or(&[]);
    let version_txt = rest.get(sp2 + 1..).unwrap_or(&[]);
    if uri.is_empty() {
        return Err(start_fault(StartLineFault::RequestUri(UriError::Empty)));
    }
    validate_uri(uri).map_err(|e| start_fault(StartLineFault::RequestUri(e)))?;
    let version = parse_version(version_txt).ok_or(start_fault(StartLineFault::Version))?;
    let method_span = Span::new(base, base + sp1).ok_or(start_fault(StartLineFault::Method))?;
    let ustart = base + sp1 + 1;
    let uri_span =
        Span::new(ustart, ustart + uri.len()).ok_or(start_fault(StartLineFault::Version))?;
    Ok((
        StartLine::Request {
            method: header::Method::parse(first),
            method_span,
            uri: uri_span,
        },
        version,
    ))
}

impl Message {
    /// Parses one message from `buf`. On a stream transport `buf` may hold more than one
    /// message; [`Message::consumed`] tells how many bytes this one used (leading CRLF
    /// keep-alives included) and the message keeps only its own bytes. Allocates nothing.
    ///
    /// Always inlined: the `Message` (about 2 KB: the 64-line index and the edit arena) is
    /// then built where the caller keeps it, instead of being returned through the
    /// `Result` and copied out of it (about 220 instructions a message).
    #[inline(always)]
    pub fn parse(buf: Bytes, transport: Transport, limits: &Limits) -> Result<Message, ParseError> {
        let stream = transport == Transport::Stream;
        let limit = limits.max_message_len.min(MAX_MESSAGE_LEN);
        let max_headers = limits.max_headers.min(MAX_HEADERS);
        let all: &[u8] = &buf;
        // RFC 3261 §7.5: ignore CRLFs before the start line.
        let mut skip = 0;
        while all.get(skip..skip + 2) == Some(b"\r\n") {
            skip += 2;
        }
        let input = all.get(skip..).unwrap_or(&[]);
        if input.is_empty() {
            return Err(if stream {
                ParseError::Incomplete
            } else {
                ParseError::Empty
            });
        }
        if !stream && input.len() > limit {
            return Err(ParseError::TooLarge { limit });
        }
        let b = input.get(..input.len().min(limit)).unwrap_or(&[]);
        let more = |e: ParseError| {
            if stream && input.len() > b.len() {
                ParseError::TooLarge { limit }
            } else if stream {
                ParseError::Incomplete
            } else {
                e
            }
        };

        let lf = scan::find_byte(b'\n', b).ok_or_else(|| more(ParseError::UnterminatedHeaders))?;
        if lf == 0 || b.get(lf - 1) != Some(&b'\r') {
            return Err(ParseError::BadLineEnd { offset: 0 });
        }
        let (start, version) = parse_start_line(b.get(..lf - 1).unwrap_or(&[]), 0)?;

        let mut entries = [MaybeUninit::<Entry>::uninit(); MAX_HEADERS];
        let mut first = [NO_ENTRY; HeaderName::KNOWN + 1];
        let mut n = 0usize;
        let mut content_length: Option<u32> = None;
        let mut pos = lf + 1;
        let body_start;
        // `b` is at most MAX_MESSAGE_LEN (u16::MAX) bytes, so every offset below fits a u16.
        debug_assert!(b.len() <= MAX_MESSAGE_LEN);
        let span = |start: usize, end: usize| Span {
            start: start as u16,
            end: end as u16,
        };
        loop {
            let line = b.get(pos..).unwrap_or(&[]);
            match line {
                [b'\r', b'\n', ..] => {
                    body_start = pos + 2;
                    break;
                }
                [] | [b'\r'] => return Err(more(ParseError::UnterminatedHeaders)),
                [b' ' | b'\t', ..] => return Err(ParseError::BadHeaderLine { offset: pos }),
                _ => {}
            }
            // Offsets below are relative to the line. Name: a token, optional SP/HT, then the
            // colon. Checked here, reported after the line's framing (so a line that is both
            // unframed and nameless reports the framing error first).
            let name_len = scan::name_end(line);
            let mut colon = name_len;
            while matches!(line.get(colon), Some(b' ' | b'\t')) {
                colon += 1;
            }
            let name_ok = name_len > 0 && line.get(colon) == Some(&b':');
            // Neither the name nor the blanks after it hold an LF: search from `colon`.
            let mut lf = colon
                + scan::find_byte(b'\n', line.get(colon..).unwrap_or(&[]))
                    .ok_or_else(|| more(ParseError::UnterminatedHeaders))?;
            // folded continuation lines
            while matches!(line.get(lf + 1), Some(b' ' | b'\t')) {
                if line.get(lf.wrapping_sub(1)) != Some(&b'\r') {
                    return Err(ParseError::BadLineEnd { offset: pos });
                }
                lf = lf
                    + 1
                    + scan::find_byte(b'\n', line.get(lf + 1..).unwrap_or(&[]))
                        .ok_or_else(|| more(ParseError::UnterminatedHeaders))?;
            }
            // `content` is the line without its CRLF.
            let content = match line.get(..lf) {
                Some([content @ .., b'\r']) => content,
                _ => return Err(ParseError::BadLineEnd { offset: pos }),
            };
            if lf + 1 > limits.max_header_len {
                return Err(ParseError::HeaderTooLong {
                    offset: pos,
                    limit: limits.max_header_len,
                });
            }
            if !name_ok {
                return Err(ParseError::BadHeaderLine { offset: pos });
            }
            // Value: LWS-trimmed, between the colon and the CR that ends the line.
            let mut value_start = colon + 1;
            while content.get(value_start).is_some_and(|&c| scan::is_lws(c)) {
                value_start += 1;
            }
            let mut value_end = content.len().max(value_start);
            while value_end > value_start
                && content.get(value_end - 1).is_some_and(|&c| scan::is_lws(c))
            {
                value_end -= 1;
            }
            let name = HeaderName::from_token(content.get(..name_len).unwrap_or(&[]));
            if name == HeaderName::ContentLength {
                let value = content.get(value_start..value_end).unwrap_or(&[]);
                if content_length.is_some() {
                    return Err(ParseError::RepeatedContentLength);
                }
                if value.first() == Some(&b'-') {
                    return Err(ParseError::NegativeContentLength);
                }
                if !scan::all_digits(value) {
                    return Err(ParseError::BadContentLength);
                }
                let cl = scan::parse_u64(value, MAX_MESSAGE_LEN as u64)
                    .and_then(|v| u32::try_from(v).ok())
                    .ok_or(ParseError::TooLarge { limit })?;
                content_length = Some(cl);
            }
            let Some(entry) = entries.get_mut(n).filter(|_| n < max_headers) else {
                return Err(ParseError::TooManyHeaders { limit: max_headers });
            };
            if let Some(f) = first.get_mut(name as usize).filter(|f| **f == NO_ENTRY) {
                // n < MAX_HEADERS = 64
                *f = n as u8;
            }
            *entry = MaybeUninit::new(Entry {
                name,
                name_end: (pos + name_len) as u16,
                value: span(pos + value_start, pos + value_end),
                line: span(pos, pos + lf + 1),
            });
            n += 1;
            pos += lf + 1;
        }

        let available = input.len() - body_start.min(input.len());
        let (body_len, wire_len) = match (content_length, stream) {
            (Some(cl), _) => {
                let cl = cl as usize;
                let end = body_start + cl;
                if end > limit {
                    return Err(ParseError::TooLarge { limit });
                }
                if cl > available {
                    return Err(if stream {
                        ParseError::Incomplete
                    } else {
                        ParseError::ContentLengthExceedsDatagram {
                            declared: cl,
                            available,
                        }
                    });
                }
                (cl, end)
            }
            (None, true) => return Err(ParseError::MissingContentLength),
            (None, false) => (available, input.len()),
        };
        let body =
            Span::new(body_start, body_start + body_len).ok_or(ParseError::TooLarge { limit })?;
        let headers_end =
            u16::try_from(body_start - 2).map_err(|_| ParseError::TooLarge { limit })?;
        Ok(Message {
            buf: buf.slice(skip..skip + wire_len),
            consumed: skip + wire_len,
            start,
            version,
            entries,
            n_entries: u8::try_from(n).unwrap_or(u8::MAX),
            first,
            headers_end,
            body,
            content_length,
            cache: Cache::default(),
            edits: Edits::default(),
        })
    }

    /// Parses a datagram with default limits (convenience for tests and tools).
    pub fn parse_datagram(buf: impl Into<Bytes>) -> Result<Message, ParseError> {
        Message::parse(buf.into(), Transport::Datagram, &Limits::default())
    }

    /// The message's own bytes as received (without pending edits).
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    /// The owned buffer (shares storage with what was passed to `parse`).
    pub fn buffer(&self) -> &Bytes {
        &self.buf
    }

    /// Bytes of the input this message used (stream transports advance by this much).
    pub fn consumed(&self) -> usize {
        self.consumed
    }

    /// The start line.
    pub fn start_line(&self) -> StartLine {
        self.start
    }

    /// SIP version `(major, minor)`.
    pub fn version(&self) -> (u16, u16) {
        self.version
    }

    /// True for a request.
    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }

    /// Request method (`None` for a response).
    pub fn method(&self) -> Option<Method> {
        match self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    /// `$rm`: the request method text, or for a response the CSeq method text.
    pub fn method_text(&self) -> &[u8] {
        match self.start {
            StartLine::Request { method_span, .. } => method_span.get(&self.buf),
            StartLine::Response { .. } => self.cseq().map(|c| c.method_text).unwrap_or(&[]),
        }
    }

    /// The Request-URI as received (`None` for a response). See also
    /// [`Message::request_uri`] for the value after edits.
    pub fn original_request_uri(&self) -> Option<&[u8]> {
        match self.start {
            StartLine::Request { uri, .. } => Some(uri.get(&self.buf)),
            StartLine::Response { .. } => None,
        }
    }

    /// Status code (`None` for a request).
    pub fn status_code(&self) -> Option<u16> {
        match self.start {
            StartLine::Response { code, .. } => Some(code),
            StartLine::Request { .. } => None,
        }
    }

    /// Reason phrase (`None` for a request).
    pub fn reason(&self) -> Option<&[u8]> {
        match self.start {
            StartLine::Response { reason, .. } => Some(reason.get(&self.buf)),
            StartLine::Request { .. } => None,
        }
    }

    pub(crate) fn entries(&self) -> &[Entry] {
        let n = usize::from(self.n_entries).min(MAX_HEADERS);
        // SAFETY: `parse` initialises `entries[..n_entries]` (each slot is written before
        // `n` counts it) and nothing else writes `entries` or `n_entries`; `n` is at most the
        // array length; `MaybeUninit<Entry>` has the layout of `Entry`.
        unsafe { std::slice::from_raw_parts(self.entries.as_ptr().cast::<Entry>(), n) }
    }

    /// All header lines in wire order.
    pub fn headers(&self) -> impl Iterator<Item = HeaderField<'_>> + '_ {
        self.entries().iter().map(move |e| HeaderField {
            name: e.name,
            name_text: e.name_span().get(&self.buf),
            value: e.value.get(&self.buf),
        })
    }

    /// The entries from the first line of header `name` on (empty if it has none).
    fn entries_from_first(&self, name: HeaderName) -> &[Entry] {
        let at = self.first.get(name as usize).copied().unwrap_or(NO_ENTRY);
        self.entries().get(usize::from(at)..).unwrap_or(&[])
    }

    /// The first line of header `name`.
    pub(crate) fn first_entry(&self, name: HeaderName) -> Option<&Entry> {
        self.entries_from_first(name).first()
    }

    /// Values (whole lines' values, not comma-split) of every header called `name`.
    pub fn header_lines(&self, name: HeaderName) -> impl Iterator<Item = &[u8]> + '_ {
        self.entries_from_first(name)
            .iter()
            .filter(move |e| e.name == name)
            .map(move |e| e.value.get(&self.buf))
    }

    /// The first line's value of header `name`.
    pub fn header(&self, name: HeaderName) -> Option<&[u8]> {
        self.first_entry(name).map(|e| e.value.get(&self.buf))
    }

    /// Values of every header whose name, as text, is `name` (case-insensitive, compact
    /// forms mapped): `$hdr(name)[n]` is `.nth(n)`.
    pub fn header_lines_named<'a>(&'a self, name: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
        let known = HeaderName::parse(name);
        self.entries()
            .iter()
            .filter(move |e| {
                if known == HeaderName::Other {
                    e.name == HeaderName::Other
                        && e.name_span().get(&self.buf).eq_ignore_ascii_case(name)
                } else {
                    e.name == known
                }
            })
            .map(move |e| e.value.get(&self.buf))
    }

    /// Every comma-separated value of header `name`, across all its lines, in order
    /// (for Via, Route, Record-Route, Contact, Require, Supported, ...).
    pub fn header_values(&self, name: HeaderName) -> HeaderValues<'_> {
        HeaderValues {
            buf: &self.buf,
            entries: self.entries_from_first(name),
            name,
            split: CommaSplit::new(&[]),
        }
    }

    /// Number of header lines called `name`.
    pub fn count(&self, name: HeaderName) -> usize {
        self.entries_from_first(name)
            .iter()
            .filter(|e| e.name == name)
            .count()
    }

    /// The body (exactly Content-Length bytes, or the rest of the datagram).
    pub fn body(&self) -> &[u8] {
        self.body.get(&self.buf)
    }

    /// Content-Length as received.
    pub fn content_length(&self) -> Option<u32> {
        self.content_length
    }

    /// Content-Type value (`$ct`).
    pub fn content_type(&self) -> Option<&[u8]> {
        self.header(HeaderName::ContentType)
    }

    /// User-Agent value (`$ua`).
    pub fn user_agent(&self) -> Option<&[u8]> {
        self.header(HeaderName::UserAgent)
    }

    /// Call-ID (`$ci`).
    pub fn call_id(&self) -> Result<&[u8], HeaderError> {
        match self.header(HeaderName::CallId) {
            Some(v) if !v.is_empty() && !scan::has_lws(v) => Ok(v),
            Some(_) => Err(HeaderError::new(
                HeaderName::CallId,
                HeaderErrorKind::Malformed,
            )),
            None => Err(HeaderError::new(
                HeaderName::CallId,
                HeaderErrorKind::Missing,
            )),
        }
    }

    /// The first comma-separated value of header `name` across its lines. A line with no
    /// comma is one element (the split only ends an element at a comma), which is the
    /// line trimmed of LWS: that case skips the split's walk over quotes and brackets.
    fn first_value(&self, name: HeaderName) -> Result<&[u8], HeaderError> {
        self.header_lines(name)
            .find_map(|v| {
                if scan::find_byte(b',', v).is_none() {
                    Some(scan::trim_lws(v)).filter(|e| !e.is_empty())
                } else {
                    CommaSplit::new(v).next()
                }
            })
            .ok_or(HeaderError::new(name, HeaderErrorKind::Missing))
    }

    /// The top Via value, parsed once and cached.
    pub fn top_via(&self) -> Result<Via<'_>, HeaderError> {
        let buf: &[u8] = &self.buf;
        let cached = self.cache.top_via.get_or_init(|| {
            let v = header::parse_via(self.first_value(HeaderName::Via)?)?;
            via_spans(buf, &v).ok_or(HeaderError::new(
                HeaderName::Via,
                HeaderErrorKind::Malformed,
            ))
        });
        cached.map(|s| via_view(buf, &s))
    }

    /// Every Via value, top first.
    pub fn vias(&self) -> impl Iterator<Item = Result<Via<'_>, HeaderError>> + '_ {
        self.header_values(HeaderName::Via).map(header::parse_via)
    }

    fn name_addr_cached<'a>(
        &'a self,
        cell: &'a OnceCell<Result<NameAddrSpans, HeaderError>>,
        name: HeaderName,
    ) -> Result<NameAddr<'a>, HeaderError> {
        let buf: &[u8] = &self.buf;
        let cached = cell.get_or_init(|| {
            let v = self
                .header(name)
                .ok_or(HeaderError::new(name, HeaderErrorKind::Missing))?;
            let a = header::parse_name_addr(v, name)?;
            name_addr_spans(buf, &a).ok_or(HeaderError::new(name, HeaderErrorKind::Malformed))
        });
        cached.map(|s| NameAddr {
            display_name: s.display_name.map(|d| d.get(buf)),
            uri: s.uri.get(buf),
            params: s.params.get(buf),
        })
    }

    /// From, parsed once and cached (`$fu`, `$fn`, `$ft`).
    pub fn from(&self) -> Result<NameAddr<'_>, HeaderError> {
        self.name_addr_cached(&self.cache.from, HeaderName::From)
    }

    /// To, parsed once and cached (`$tu`, `$tt`).
    pub fn to(&self) -> Result<NameAddr<'_>, HeaderError> {
        self.name_addr_cached(&self.cache.to, HeaderName::To)
    }

    /// CSeq, parsed once and cached (`$cs`).
    pub fn cseq(&self) -> Result<CSeq<'_>, HeaderError> {
        let buf: &[u8] = &self.buf;
        let cached = self.cache.cseq.get_or_init(|| {
            let v = self
                .header(HeaderName::CSeq)
                .ok_or(HeaderError::new(HeaderName::CSeq, HeaderErrorKind::Missing))?;
            let c = header::parse_cseq(v)?;
            Ok(CSeqSpans {
                number: c.number,
                method: c.method,
                method_text: span_of(buf, c.method_text).ok_or(HeaderError::new(
                    HeaderName::CSeq,
                    HeaderErrorKind::Malformed,
                ))?,
            })
        });
        cached.map(|c| CSeq {
            number: c.number,
            method: c.method,
            method_text: c.method_text.get(buf),
        })
    }

    /// Max-Forwards (`None` when absent).
    pub fn max_forwards(&self) -> Result<Option<u8>, HeaderError> {
        self.header(HeaderName::MaxForwards)
            .map(header::parse_max_forwards)
            .transpose()
    }

    /// Expires (`None` when absent).
    pub fn expires(&self) -> Result<Option<u32>, HeaderError> {
        self.header(HeaderName::Expires)
            .map(header::parse_expires)
            .transpose()
    }

    /// Every Contact value.
    pub fn contacts(&self) -> impl Iterator<Item = Result<Contact<'_>, HeaderError>> + '_ {
        self.header_values(HeaderName::Contact)
            .map(header::parse_contact)
    }

    /// Every Route value, top first.
    pub fn routes(&self) -> NameAddrs<'_> {
        NameAddrs {
            values: self.header_values(HeaderName::Route),
        }
    }

    /// Every Record-Route value, top first.
    pub fn record_routes(&self) -> NameAddrs<'_> {
        NameAddrs {
            values: self.header_values(HeaderName::RecordRoute),
        }
    }

    /// Credentials or challenges of header `name` (Authorization, Proxy-Authorization,
    /// WWW-Authenticate, Proxy-Authenticate), one per header line.
    pub fn credentials(
        &self,
        name: HeaderName,
    ) -> impl Iterator<Item = Result<Credentials<'_>, HeaderError>> + '_ {
        self.header_lines(name)
            .map(move |v| header::parse_credentials(v, name))
    }

    /// Option tags of Require / Proxy-Require / Supported / Unsupported.
    pub fn option_tags(&self, name: HeaderName) -> impl Iterator<Item = &[u8]> + '_ {
        self.header_values(name)
    }

    /// The Request-URI parsed (of the original message).
    pub fn parsed_request_uri(&self) -> Option<Result<Uri<'_>, UriError>> {
        self.original_request_uri().map(parse_uri)
    }

    /// Checks the mandatory headers (RFC 3261 §8.1.1): To, From, Call-ID, CSeq, Via, and
    /// Max-Forwards for requests. A proxy-level check, separate from [`Message::validate`].
    pub fn check_mandatory(&self) -> Result<(), MissingHeader> {
        let mut required = [
            HeaderName::To,
            HeaderName::From,
            HeaderName::CallId,
            HeaderName::CSeq,
            HeaderName::Via,
            HeaderName::MaxForwards,
        ]
        .as_slice();
        if !self.is_request() {
            required = required.get(..5).unwrap_or(required);
        }
        for &h in required {
            if self.header(h).is_none() {
                return Err(MissingHeader(h));
            }
        }
        Ok(())
    }

    /// Semantic checks before acting on a message (RFC 3261 §8.2; RFC 4475 §3.1.2):
    /// version, typed parse of every header listed below, single-valued headers not
    /// repeated, CSeq method equal to the request method, no headers in the Request-URI.
    /// Missing headers are not reported here (see [`Message::check_mandatory`]). Same as
    /// [`Message::validate_in`] with [`Scope::Whole`].
    pub fn validate(&self) -> Result<(), Invalid> {
        self.validate_in(Scope::Whole)
    }

    /// The checks of [`Message::validate`] over `scope`: with [`Scope::Whole`], every
    /// Via value, Contact and Record-Route are parsed too; with [`Scope::Proxy`] only what
    /// a proxy interprets (RFC 3261 §16.3), see [`Scope`]. Both report the same
    /// [`Invalid`] for everything they check. The typed parses made here (the top Via,
    /// From, To, CSeq) are cached in the message for the rest of its processing.
    pub fn validate_in(&self, scope: Scope) -> Result<(), Invalid> {
        if self.version != (2, 0) {
            return Err(Invalid::UnsupportedVersion {
                major: self.version.0,
                minor: self.version.1,
            });
        }
        for h in [
            HeaderName::From,
            HeaderName::To,
            HeaderName::CallId,
            HeaderName::CSeq,
            HeaderName::MaxForwards,
            HeaderName::Expires,
        ] {
            if self.count(h) > 1 {
                return Err(Invalid::RepeatedHeader(h));
            }
        }
        match scope {
            Scope::Whole => {
                for v in self.vias() {
                    v.map_err(Invalid::Header)?;
                }
            }
            // The top Via (the first comma-separated value of the Via lines), parsed
            // once through the message's cache.
            Scope::Proxy => {
                if self.header_values(HeaderName::Via).next().is_some() {
                    self.top_via().map_err(Invalid::Header)?;
                }
            }
        }
        if self.header(HeaderName::From).is_some() {
            self.from().map_err(Invalid::Header)?;
        }
        if self.header(HeaderName::To).is_some() {
            self.to().map_err(Invalid::Header)?;
        }
        if self.header(HeaderName::CallId).is_some() {
            self.call_id().map_err(Invalid::Header)?;
        }
        if self.header(HeaderName::CSeq).is_some() {
            let cseq = self.cseq().map_err(Invalid::Header)?;
            if self.is_request() && cseq.method_text != self.method_text() {
                return Err(Invalid::CSeqMethodMismatch);
            }
        }
        self.max_forwards().map_err(Invalid::Header)?;
        self.expires().map_err(Invalid::Header)?;
        if scope == Scope::Whole {
            for c in self.contacts() {
                c.map_err(Invalid::Header)?
                    .expires()
                    .map_err(Invalid::Header)?;
            }
            for r in self.record_routes() {
                r.map_err(Invalid::Header)?;
            }
        }
        for r in self.routes() {
            r.map_err(Invalid::Header)?;
        }
        if let Some(d) = self.header(HeaderName::Date) {
            header::check_date(d).map_err(Invalid::Header)?;
        }
        // URI headers need a '?' (RFC 3261 §19.1.1): without one the Request-URI is not
        // parsed again (`Message::parse` checked its syntax already).
        if let Some(u) = self.original_request_uri().filter(|u| u.contains(&b'?')) {
            if let Ok(Uri::Sip(s)) = parse_uri(u) {
                if s.headers.is_some() {
                    return Err(Invalid::RequestUriHeaders);
                }
            }
        }
        Ok(())
    }
}

/// How much of a message [`Message::validate_in`] checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every header the checks know (what an endpoint or a test wants).
    Whole,
    /// What a proxy interprets (RFC 3261 §16.3): the top Via (transaction matching and
    /// the response path), From, To, Call-ID, CSeq, Max-Forwards, Expires, Route, Date
    /// and the Request-URI. Lower Via values, Contact and Record-Route are forwarded
    /// unchanged and not parsed; a script that reads them sees their parse errors through
    /// their accessors.
    Proxy,
}

fn via_spans(buf: &[u8], v: &Via<'_>) -> Option<ViaSpans> {
    let opt = |s: Option<&[u8]>| match s {
        Some(s) => span_of(buf, s).map(Some),
        None => Some(None),
    };
    Some(ViaSpans {
        protocol_name: span_of(buf, v.protocol_name)?,
        protocol_version: span_of(buf, v.protocol_version)?,
        transport: span_of(buf, v.transport)?,
        host: span_of(buf, v.host)?,
        port: v.port,
        params: span_of(buf, v.params).unwrap_or_default(),
        branch: opt(v.branch)?,
        received: opt(v.received)?,
        rport: v.rport,
        maddr: opt(v.maddr)?,
        ttl: v.ttl,
    })
}

fn via_view<'a>(buf: &'a [u8], s: &ViaSpans) -> Via<'a> {
    Via {
        protocol_name: s.protocol_name.get(buf),
        protocol_version: s.protocol_version.get(buf),
        transport: s.transport.get(buf),
        host: s.host.get(buf),
        port: s.port,
        params: s.params.get(buf),
        branch: s.branch.map(|x| x.get(buf)),
        received: s.received.map(|x| x.get(buf)),
        rport: s.rport,
        maddr: s.maddr.map(|x| x.get(buf)),
        ttl: s.ttl,
    }
}

fn name_addr_spans(buf: &[u8], a: &NameAddr<'_>) -> Option<NameAddrSpans> {
    Some(NameAddrSpans {
        display_name: match a.display_name {
            Some(d) => Some(span_of(buf, d)?),
            None => None,
        },
        uri: span_of(buf, a.uri)?,
        params: span_of(buf, a.params).unwrap_or_default(),
    })
}
