//! One HTTP/1.1 request/response exchange on a connected stream (RFC 9112).
//!
//! Owns: the request serializer ([`encode_request`]), the sans-io response decoder
//! ([`ResponseDecoder`]: bytes in, a finished [`Response`] out) and the thin async shell
//! ([`exchange`]) that drives both over any [`AsyncStream`] (plain TCP or [`super::tls`]).
//!
//! Framing follows RFC 9112 §6.3: no body for HEAD, 1xx, 204 and 304; otherwise
//! `Transfer-Encoding: chunked` (§7.1, chunk extensions ignored, trailers kept),
//! else `Content-Length` (§6.2), else read until the server closes. Interim 1xx
//! responses are skipped (RFC 9110 §15.2); an unsolicited 101 is an error. Redirects are
//! returned as they are, never followed (OpenSIPS' default).
//!
//! Invariants: the decoded body never exceeds [`Limits::max_body_size`]; buffered
//! head/chunk-line/trailer bytes never exceed [`Limits::max_head_size`]; a response is
//! marked `reusable` only if its framing was self-delimiting, both sides agree to keep the
//! connection (§9.3: HTTP/1.1 unless `Connection: close`, HTTP/1.0 only with
//! `Connection: keep-alive`) and no byte followed the response.

use std::io;

use cores::AsyncStream;
use thiserror::Error;

use super::url::Url;

/// Upper bound on header fields in one response head or trailer section.
pub const MAX_HEADERS: usize = 100;

/// Request methods rest_client issues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Put,
    /// Not a script function; kept so the no-body rule for HEAD is exercised.
    Head,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Head => "HEAD",
        }
    }
}

/// What to send. Borrowed so a script call builds it without copying its arguments.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: Method,
    pub url: &'a Url,
    pub user_agent: &'a str,
    /// `Content-Type` of `body`; sent only when `Some`.
    pub content_type: Option<&'a str>,
    /// Raw `Name: value` lines from `rest_append_hf`, in call order.
    pub extra_headers: &'a [String],
    pub body: &'a [u8],
}

/// Bounds on what a response may make us buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest response head (status line + headers), chunk-size line or trailer section.
    pub max_head_size: usize,
    /// Largest decoded body.
    pub max_body_size: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head_size: 64 * 1024,
            max_body_size: 10 * 1024 * 1024,
        }
    }
}

/// HTTP version of a response's status line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

/// One header or trailer field as received (name as sent, value as raw bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderField {
    pub name: String,
    pub value: Vec<u8>,
}

/// A complete final response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub version: Version,
    pub status: u16,
    pub reason: String,
    pub headers: Vec<HeaderField>,
    /// Decoded body (chunked coding removed).
    pub body: Vec<u8>,
    /// Trailer fields of a chunked body (empty otherwise).
    pub trailers: Vec<HeaderField>,
    /// The connection may carry another request (see the module invariants).
    pub reusable: bool,
}

impl Response {
    /// Value of the first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_slice())
    }

    /// The `Content-Type` header, if present and valid UTF-8.
    pub fn content_type(&self) -> Option<&str> {
        self.header("content-type")
            .and_then(|v| std::str::from_utf8(v).ok())
    }
}

/// A request that cannot be serialized safely.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RequestError {
    #[error("appended header {0:?} is not of the form `Name: value`")]
    MalformedHeader(String),
    #[error("{what} {value:?} contains CR, LF or NUL")]
    Injection { what: &'static str, value: String },
    #[error("appended header {0:?} sets a field the client controls (framing/connection)")]
    ReservedHeader(String),
}

/// What went wrong during an exchange.
#[derive(Debug, Error)]
pub enum HttpError {
    #[error("invalid request: {0}")]
    Request(#[from] RequestError),
    #[error("sending the request failed: {0}")]
    Write(#[source] io::Error),
    #[error("reading the response failed: {source}")]
    Read {
        #[source]
        source: io::Error,
        /// Some response byte had arrived before the failure.
        response_started: bool,
    },
    #[error("the server closed the connection before sending a response")]
    ClosedBeforeResponse,
    #[error("the server closed the connection in the middle of the response {0}")]
    Truncated(&'static str),
    #[error("malformed response head: {0}")]
    MalformedHead(httparse::Error),
    #[error("response head larger than {limit} bytes")]
    HeadTooLarge { limit: usize },
    #[error("more than {MAX_HEADERS} header fields in the response")]
    TooManyHeaders,
    #[error("unsolicited 101 Switching Protocols")]
    UnexpectedSwitchingProtocols,
    #[error("invalid Content-Length {0:?}")]
    InvalidContentLength(String),
    #[error("unsupported Transfer-Encoding {0:?} (only chunked)")]
    UnsupportedTransferCoding(String),
    #[error("malformed chunked body: {0}")]
    MalformedChunk(&'static str),
    #[error("response body larger than {limit} bytes")]
    BodyTooLarge { limit: usize },
}

impl HttpError {
    /// True when the server can have seen nothing of the request being processed and
    /// sent nothing back: the usual signature of a pooled keep-alive connection the
    /// server had already closed. A caller may then retry once on a fresh connection.
    pub fn is_stale_connection(&self) -> bool {
        match self {
            HttpError::Write(_) | HttpError::ClosedBeforeResponse => true,
            HttpError::Read {
                response_started,
                source,
            } => {
                !response_started
                    && matches!(
                        source.kind(),
                        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
                    )
            }
            _ => false,
        }
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn has_ctl_break(s: &str) -> bool {
    s.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0)
}

/// Checks one `rest_append_hf` line: `Name: value` with a token name, no CR/LF/NUL, and
/// not a field the client owns (`Content-Length`, `Transfer-Encoding`, `Connection`).
/// Returns the field name.
pub fn check_extra_header(line: &str) -> Result<&str, RequestError> {
    if has_ctl_break(line) {
        return Err(RequestError::Injection {
            what: "appended header",
            value: line.to_owned(),
        });
    }
    let (name, _) = line
        .split_once(':')
        .ok_or_else(|| RequestError::MalformedHeader(line.to_owned()))?;
    if name.is_empty() || !name.bytes().all(is_tchar) {
        return Err(RequestError::MalformedHeader(line.to_owned()));
    }
    if ["content-length", "transfer-encoding", "connection"]
        .iter()
        .any(|r| name.eq_ignore_ascii_case(r))
    {
        return Err(RequestError::ReservedHeader(line.to_owned()));
    }
    Ok(name)
}

/// Serializes `req` into `out` (appending). Appended headers named `Host`,
/// `User-Agent` or `Content-Type` replace the generated ones (as libcurl does for
/// custom headers); `Content-Length`, `Transfer-Encoding` and `Connection` are refused
/// because the client owns framing and persistence.
pub fn encode_request(req: &Request<'_>, out: &mut Vec<u8>) -> Result<(), RequestError> {
    let mut override_host = false;
    let mut override_ua = false;
    let mut override_ctype = false;
    for line in req.extra_headers {
        let name = check_extra_header(line)?;
        override_host |= name.eq_ignore_ascii_case("host");
        override_ua |= name.eq_ignore_ascii_case("user-agent");
        override_ctype |= name.eq_ignore_ascii_case("content-type");
    }
    if has_ctl_break(req.user_agent) {
        return Err(RequestError::Injection {
            what: "User-Agent",
            value: req.user_agent.to_owned(),
        });
    }
    if let Some(ct) = req.content_type {
        if has_ctl_break(ct) {
            return Err(RequestError::Injection {
                what: "Content-Type",
                value: ct.to_owned(),
            });
        }
    }
    // `Url` guarantees a target of visible ASCII only.
    debug_assert!(req.url.target.bytes().all(|b| (0x21..=0x7e).contains(&b)));

    out.reserve(256 + req.body.len());
    out.extend_from_slice(req.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(req.url.target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    if !override_host {
        out.extend_from_slice(b"Host: ");
        out.extend_from_slice(req.url.host_header().as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !override_ua && !req.user_agent.is_empty() {
        out.extend_from_slice(b"User-Agent: ");
        out.extend_from_slice(req.user_agent.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"Accept: */*\r\n");
    if let (false, Some(ct)) = (override_ctype, req.content_type) {
        out.extend_from_slice(b"Content-Type: ");
        out.extend_from_slice(ct.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    // A request with a body always says how long it is; POST/PUT say so even when
    // empty (RFC 9110 §8.6).
    if !req.body.is_empty() || matches!(req.method, Method::Post | Method::Put) {
        out.extend_from_slice(b"Content-Length: ");
        out.extend_from_slice(req.body.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    for line in req.extra_headers {
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"Connection: keep-alive\r\n\r\n");
    out.extend_from_slice(req.body);
    Ok(())
}

/// How the decoder stands after taking input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// More bytes (or the end of stream) are needed.
    NeedMore,
    /// The final response is complete; take it with [`ResponseDecoder::into_response`].
    Complete,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    Size,
    Data { remaining: u64 },
    DataEnd,
    Trailers,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Head,
    Length { remaining: u64 },
    Chunked(Chunk),
    ToClose,
    Done,
}

/// Sans-io decoder of one response to one request.
#[derive(Debug)]
pub struct ResponseDecoder {
    method: Method,
    limits: Limits,
    /// Received bytes not yet consumed (partial head, chunk line, trailers).
    buf: Vec<u8>,
    state: State,
    response: Response,
    /// Framing forces the connection closed (read-to-close, TE+CL conflict, ...).
    force_close: bool,
    received_any: bool,
    /// Bytes arrived after the response was complete.
    extra_bytes: bool,
}

impl ResponseDecoder {
    pub fn new(method: Method, limits: Limits) -> Self {
        ResponseDecoder {
            method,
            limits,
            buf: Vec::new(),
            state: State::Head,
            response: Response {
                version: Version::Http11,
                status: 0,
                reason: String::new(),
                headers: Vec::new(),
                body: Vec::new(),
                trailers: Vec::new(),
                reusable: false,
            },
            force_close: false,
            received_any: false,
            extra_bytes: false,
        }
    }

    /// Whether any response byte has been received.
    pub fn response_started(&self) -> bool {
        self.received_any
    }

    /// Feeds bytes read from the connection.
    pub fn receive(&mut self, data: &[u8]) -> Result<Progress, HttpError> {
        if data.is_empty() {
            return Ok(self.progress());
        }
        self.received_any = true;
        if self.state == State::Done {
            self.extra_bytes = true;
            return Ok(Progress::Complete);
        }
        // Fast path: body bytes go straight to the body without passing through `buf`.
        if self.buf.is_empty() {
            let used = self.consume_body_direct(data)?;
            let rest = data.get(used..).unwrap_or(&[]);
            if rest.is_empty() {
                return Ok(self.progress());
            }
            self.buf.extend_from_slice(rest);
        } else {
            self.buf.extend_from_slice(data);
        }
        let pos = self.advance()?;
        if pos >= self.buf.len() {
            self.buf.clear();
        } else {
            self.buf.drain(..pos);
        }
        if self.state == State::Done && !self.buf.is_empty() {
            self.extra_bytes = true;
        }
        Ok(self.progress())
    }

    /// Signals that the server closed its side.
    pub fn receive_eof(&mut self) -> Result<Progress, HttpError> {
        match self.state {
            State::Done => Ok(Progress::Complete),
            State::ToClose => {
                self.state = State::Done;
                self.force_close = true;
                Ok(Progress::Complete)
            }
            State::Head if !self.received_any => Err(HttpError::ClosedBeforeResponse),
            State::Head => Err(HttpError::Truncated("head")),
            State::Length { .. } => Err(HttpError::Truncated("body (Content-Length)")),
            State::Chunked(_) => Err(HttpError::Truncated("body (chunked)")),
        }
    }

    /// The finished response; `None` unless [`Progress::Complete`] was reported.
    pub fn into_response(self) -> Option<Response> {
        if self.state != State::Done {
            return None;
        }
        let mut r = self.response;
        let keep = match r.version {
            Version::Http11 => !connection_has(&r.headers, "close"),
            Version::Http10 => connection_has(&r.headers, "keep-alive"),
        };
        r.reusable = keep && !self.force_close && !self.extra_bytes;
        Some(r)
    }

    fn progress(&self) -> Progress {
        if self.state == State::Done {
            Progress::Complete
        } else {
            Progress::NeedMore
        }
    }

    fn push_body(&mut self, data: &[u8]) -> Result<(), HttpError> {
        let new_len =
            self.response
                .body
                .len()
                .checked_add(data.len())
                .ok_or(HttpError::BodyTooLarge {
                    limit: self.limits.max_body_size,
                })?;
        if new_len > self.limits.max_body_size {
            return Err(HttpError::BodyTooLarge {
                limit: self.limits.max_body_size,
            });
        }
        self.response.body.extend_from_slice(data);
        Ok(())
    }

    /// Consumes body bytes from `data` while the state is a plain body state; returns
    /// how many were used.
    fn consume_body_direct(&mut self, data: &[u8]) -> Result<usize, HttpError> {
        match self.state {
            State::Length { remaining } => {
                let take = usize::try_from(remaining)
                    .unwrap_or(usize::MAX)
                    .min(data.len());
                self.push_body(data.get(..take).unwrap_or(&[]))?;
                let left = remaining - take as u64;
                self.state = if left == 0 {
                    State::Done
                } else {
                    State::Length { remaining: left }
                };
                Ok(take)
            }
            State::Chunked(Chunk::Data { remaining }) => {
                let take = usize::try_from(remaining)
                    .unwrap_or(usize::MAX)
                    .min(data.len());
                self.push_body(data.get(..take).unwrap_or(&[]))?;
                let left = remaining - take as u64;
                self.state = State::Chunked(if left == 0 {
                    Chunk::DataEnd
                } else {
                    Chunk::Data { remaining: left }
                });
                Ok(take)
            }
            State::ToClose => {
                self.push_body(data)?;
                Ok(data.len())
            }
            _ => Ok(0),
        }
    }

    /// Runs the state machine over `buf`; returns how many bytes of it were consumed.
    fn advance(&mut self) -> Result<usize, HttpError> {
        let mut pos = 0usize;
        loop {
            let avail_len = self.buf.len().saturating_sub(pos);
            match self.state {
                State::Done => return Ok(pos),
                State::Head => {
                    if avail_len == 0 {
                        return Ok(pos);
                    }
                    match self.parse_head(pos)? {
                        Some(n) => pos += n,
                        None => {
                            if avail_len > self.limits.max_head_size {
                                return Err(HttpError::HeadTooLarge {
                                    limit: self.limits.max_head_size,
                                });
                            }
                            return Ok(pos);
                        }
                    }
                }
                State::Length { .. } | State::ToClose | State::Chunked(Chunk::Data { .. }) => {
                    if avail_len == 0 {
                        return Ok(pos);
                    }
                    let data = std::mem::take(&mut self.buf);
                    let res = self.consume_body_direct(data.get(pos..).unwrap_or(&[]));
                    self.buf = data;
                    pos += res?;
                }
                State::Chunked(Chunk::Size) => {
                    let avail = self.buf.get(pos..).unwrap_or(&[]);
                    match httparse::parse_chunk_size(avail) {
                        Ok(httparse::Status::Complete((n, size))) => {
                            pos += n;
                            if size == 0 {
                                self.state = State::Chunked(Chunk::Trailers);
                            } else {
                                let total = (self.response.body.len() as u64).checked_add(size);
                                if total.is_none_or(|t| t > self.limits.max_body_size as u64) {
                                    return Err(HttpError::BodyTooLarge {
                                        limit: self.limits.max_body_size,
                                    });
                                }
                                self.state = State::Chunked(Chunk::Data { remaining: size });
                            }
                        }
                        Ok(httparse::Status::Partial) => {
                            if avail_len > self.limits.max_head_size {
                                return Err(HttpError::MalformedChunk("chunk-size line too long"));
                            }
                            return Ok(pos);
                        }
                        Err(_) => return Err(HttpError::MalformedChunk("invalid chunk size")),
                    }
                }
                State::Chunked(Chunk::DataEnd) => {
                    if avail_len < 2 {
                        if avail_len == 1 && self.buf.get(pos) != Some(&b'\r') {
                            return Err(HttpError::MalformedChunk(
                                "chunk data not followed by CRLF",
                            ));
                        }
                        return Ok(pos);
                    }
                    if self.buf.get(pos..pos + 2) != Some(b"\r\n".as_slice()) {
                        return Err(HttpError::MalformedChunk("chunk data not followed by CRLF"));
                    }
                    pos += 2;
                    self.state = State::Chunked(Chunk::Size);
                }
                State::Chunked(Chunk::Trailers) => {
                    let avail = self.buf.get(pos..).unwrap_or(&[]);
                    let mut hdrs = [httparse::EMPTY_HEADER; MAX_HEADERS];
                    match httparse::parse_headers(avail, &mut hdrs) {
                        Ok(httparse::Status::Complete((n, fields))) => {
                            self.response.trailers = fields.iter().map(to_field).collect();
                            pos += n;
                            self.state = State::Done;
                        }
                        Ok(httparse::Status::Partial) => {
                            if avail_len > self.limits.max_head_size {
                                return Err(HttpError::HeadTooLarge {
                                    limit: self.limits.max_head_size,
                                });
                            }
                            return Ok(pos);
                        }
                        Err(httparse::Error::TooManyHeaders) => {
                            return Err(HttpError::TooManyHeaders)
                        }
                        Err(_) => {
                            return Err(HttpError::MalformedChunk("malformed trailer section"))
                        }
                    }
                }
            }
        }
    }

    /// Parses a head starting at `pos`; returns the bytes consumed, or `None` if the
    /// head is incomplete. Sets the next state (another head after a 1xx).
    fn parse_head(&mut self, pos: usize) -> Result<Option<usize>, HttpError> {
        let avail = self.buf.get(pos..).unwrap_or(&[]);
        let mut hdrs = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Response::new(&mut hdrs);
        let n = match parsed.parse(avail) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => return Err(HttpError::TooManyHeaders),
            Err(e) => return Err(HttpError::MalformedHead(e)),
        };
        if n > self.limits.max_head_size {
            return Err(HttpError::HeadTooLarge {
                limit: self.limits.max_head_size,
            });
        }
        let status = parsed.code.unwrap_or(0);
        if status == 101 {
            return Err(HttpError::UnexpectedSwitchingProtocols);
        }
        if (100..200).contains(&status) {
            // Interim response: skip it and wait for the final one.
            return Ok(Some(n));
        }
        self.response.version = if parsed.version == Some(0) {
            Version::Http10
        } else {
            Version::Http11
        };
        self.response.status = status;
        self.response.reason = parsed.reason.unwrap_or("").to_owned();
        self.response.headers = parsed.headers.iter().map(to_field).collect();
        self.state = self.framing()?;
        Ok(Some(n))
    }

    /// Chooses the body framing for the head just parsed (RFC 9112 §6.3).
    fn framing(&mut self) -> Result<State, HttpError> {
        let status = self.response.status;
        if self.method == Method::Head || status == 204 || status == 304 {
            return Ok(State::Done);
        }
        let headers = &self.response.headers;
        let mut codings: Vec<String> = Vec::new();
        for h in headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("transfer-encoding"))
        {
            let v = String::from_utf8_lossy(&h.value);
            codings.extend(
                v.split(',')
                    .map(|c| c.trim().to_ascii_lowercase())
                    .filter(|c| !c.is_empty()),
            );
        }
        let has_te = headers
            .iter()
            .any(|h| h.name.eq_ignore_ascii_case("transfer-encoding"));
        let content_length = parse_content_length(headers)?;
        if has_te {
            if codings.len() != 1 || codings.first().map(String::as_str) != Some("chunked") {
                return Err(HttpError::UnsupportedTransferCoding(codings.join(", ")));
            }
            if content_length.is_some() || self.response.version == Version::Http10 {
                // §6.1: TE overrides CL, and the connection must not be reused.
                self.force_close = true;
            }
            return Ok(State::Chunked(Chunk::Size));
        }
        match content_length {
            Some(len) => {
                if len > self.limits.max_body_size as u64 {
                    return Err(HttpError::BodyTooLarge {
                        limit: self.limits.max_body_size,
                    });
                }
                Ok(if len == 0 {
                    State::Done
                } else {
                    State::Length { remaining: len }
                })
            }
            None => {
                self.force_close = true;
                Ok(State::ToClose)
            }
        }
    }
}

fn to_field(h: &httparse::Header<'_>) -> HeaderField {
    HeaderField {
        name: h.name.to_owned(),
        value: h.value.to_vec(),
    }
}

/// `Content-Length` from all such fields; a list of identical values is accepted
/// (RFC 9110 §8.6), anything else is an error.
fn parse_content_length(headers: &[HeaderField]) -> Result<Option<u64>, HttpError> {
    let mut found: Option<u64> = None;
    for h in headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("content-length"))
    {
        let text = String::from_utf8_lossy(&h.value);
        for part in text.split(',') {
            let p = part.trim();
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(HttpError::InvalidContentLength(text.into_owned()));
            }
            let v: u64 = p
                .parse()
                .map_err(|_| HttpError::InvalidContentLength(text.to_string()))?;
            match found {
                Some(prev) if prev != v => {
                    return Err(HttpError::InvalidContentLength(text.into_owned()))
                }
                _ => found = Some(v),
            }
        }
    }
    Ok(found)
}

/// Whether any `Connection` field lists `token` (case-insensitive).
fn connection_has(headers: &[HeaderField], token: &str) -> bool {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
        .any(|h| {
            h.value
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
        })
}

/// Size of the read buffer [`exchange`] uses per read.
const READ_CHUNK: usize = 8 * 1024;

/// Sends `req` on `stream` and reads the final response.
///
/// On success the caller returns the stream to its keep-alive pool iff
/// `response.reusable`; on any error the stream is in an unknown state and must be
/// dropped. Timeouts are the caller's: it wraps this future.
pub async fn exchange<S: AsyncStream>(
    stream: &mut S,
    req: &Request<'_>,
    limits: &Limits,
) -> Result<Response, HttpError> {
    let mut out = Vec::new();
    encode_request(req, &mut out)?;
    stream.write_all(&out).await.map_err(HttpError::Write)?;
    drop(out);

    let mut decoder = ResponseDecoder::new(req.method, *limits);
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(n) => n,
            Err(source) => {
                return Err(HttpError::Read {
                    source,
                    response_started: decoder.response_started(),
                })
            }
        };
        let progress = if n == 0 {
            decoder.receive_eof()?
        } else {
            decoder.receive(buf.get(..n).unwrap_or(&[]))?
        };
        if progress == Progress::Complete {
            // The decoder reported completion, so `into_response` is `Some`.
            return decoder
                .into_response()
                .ok_or(HttpError::Truncated("response"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    fn decode_in_pieces(method: Method, wire: &[u8], piece: usize) -> Result<Response, HttpError> {
        let mut d = ResponseDecoder::new(method, Limits::default());
        for c in wire.chunks(piece.max(1)) {
            if d.receive(c)? == Progress::Complete {
                break;
            }
        }
        if d.progress() != Progress::Complete {
            d.receive_eof()?;
        }
        Ok(d.into_response().unwrap())
    }

    #[test]
    fn request_get_has_host_ua_and_keepalive() {
        let u = url("http://example.org:8080/p?q=1");
        let extra = vec!["Authorization: Bearer x".to_string()];
        let req = Request {
            method: Method::Get,
            url: &u,
            user_agent: "ringsip",
            content_type: None,
            extra_headers: &extra,
            body: b"",
        };
        let mut out = Vec::new();
        encode_request(&req, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "GET /p?q=1 HTTP/1.1\r\nHost: example.org:8080\r\nUser-Agent: ringsip\r\n\
             Accept: */*\r\nAuthorization: Bearer x\r\nConnection: keep-alive\r\n\r\n"
        );
    }

    #[test]
    fn request_post_has_length_and_type_and_override() {
        let u = url("http://h/p");
        let extra = vec!["Content-Type: application/json".to_string()];
        let req = Request {
            method: Method::Post,
            url: &u,
            user_agent: "ua",
            content_type: Some("text/plain"),
            extra_headers: &extra,
            body: b"{}",
        };
        let mut out = Vec::new();
        encode_request(&req, &mut out).unwrap();
        let s = String::from_utf8(out).unwrap();
        assert!(s.starts_with("POST /p HTTP/1.1\r\nHost: h\r\n"));
        assert!(s.contains("Content-Length: 2\r\n"));
        assert!(!s.contains("text/plain"));
        assert!(s.contains("Content-Type: application/json\r\n"));
        assert!(s.ends_with("\r\n\r\n{}"));
    }

    #[test]
    fn request_rejects_injection_and_reserved() {
        let u = url("http://h/");
        for (extra, want) in [
            ("X-A: b\r\nX-Evil: 1", "inj"),
            ("NoColon", "mal"),
            ("Bad Name: x", "mal"),
            ("Content-Length: 5", "res"),
            ("connection: close", "res"),
        ] {
            let extra = vec![extra.to_string()];
            let req = Request {
                method: Method::Get,
                url: &u,
                user_agent: "ua",
                content_type: None,
                extra_headers: &extra,
                body: b"",
            };
            let err = encode_request(&req, &mut Vec::new()).unwrap_err();
            let ok = matches!(
                (&err, want),
                (RequestError::Injection { .. }, "inj")
                    | (RequestError::MalformedHeader(_), "mal")
                    | (RequestError::ReservedHeader(_), "res")
            );
            assert!(ok, "{extra:?} gave {err:?}");
        }
    }

    #[test]
    fn content_length_body_any_split() {
        let wire = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"a\":12345}";
        for piece in 1..wire.len() {
            let r = decode_in_pieces(Method::Get, wire, piece).unwrap();
            assert_eq!(r.status, 200);
            assert_eq!(r.body, b"{\"a\":12345}");
            assert_eq!(r.content_type(), Some("application/json"));
            assert!(r.reusable);
        }
    }

    #[test]
    fn chunked_with_extensions_and_trailers_any_split() {
        let wire = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
            5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nX-Checksum: abc\r\n\r\n";
        for piece in 1..wire.len() {
            let r = decode_in_pieces(Method::Get, wire, piece).unwrap();
            assert_eq!(r.body, b"hello, world");
            assert_eq!(r.trailers.len(), 1);
            assert_eq!(r.trailers[0].name, "X-Checksum");
            assert!(r.reusable);
        }
    }

    #[test]
    fn interim_1xx_skipped() {
        let wire =
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n";
        let r = decode_in_pieces(Method::Post, wire, 7).unwrap();
        assert_eq!(r.status, 201);
        assert!(r.body.is_empty());
    }

    #[test]
    fn no_body_for_head_204_304() {
        let r = decode_in_pieces(
            Method::Head,
            b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n",
            100,
        )
        .unwrap();
        assert!(r.body.is_empty() && r.reusable);
        for code in [204, 304] {
            let wire = format!("HTTP/1.1 {code} X\r\n\r\n");
            let r = decode_in_pieces(Method::Get, wire.as_bytes(), 100).unwrap();
            assert_eq!(r.status, code);
            assert!(r.reusable);
        }
    }

    #[test]
    fn read_to_close_and_version_rules() {
        let r = decode_in_pieces(Method::Get, b"HTTP/1.1 200 OK\r\n\r\nuntil close", 4).unwrap();
        assert_eq!(r.body, b"until close");
        assert!(!r.reusable);
        let r = decode_in_pieces(
            Method::Get,
            b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx",
            100,
        )
        .unwrap();
        assert!(!r.reusable);
        let r = decode_in_pieces(
            Method::Get,
            b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 1\r\n\r\nx",
            100,
        )
        .unwrap();
        assert!(r.reusable);
        let r = decode_in_pieces(
            Method::Get,
            b"HTTP/1.1 200 OK\r\nConnection: foo, close\r\nContent-Length: 1\r\n\r\nx",
            100,
        )
        .unwrap();
        assert!(!r.reusable);
        // Extra bytes after a complete response: do not reuse.
        let r = decode_in_pieces(
            Method::Get,
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxJUNK",
            100,
        )
        .unwrap();
        assert!(!r.reusable);
    }

    #[test]
    fn redirect_is_returned_not_followed() {
        let r = decode_in_pieces(
            Method::Get,
            b"HTTP/1.1 302 Found\r\nLocation: http://elsewhere/\r\nContent-Length: 0\r\n\r\n",
            100,
        )
        .unwrap();
        assert_eq!(r.status, 302);
        assert_eq!(r.header("location"), Some(b"http://elsewhere/".as_slice()));
    }

    #[test]
    fn errors() {
        let lim = Limits {
            max_head_size: 64,
            max_body_size: 8,
        };
        type Check = fn(&HttpError) -> bool;
        let cases: &[(&[u8], Check)] = &[
            (b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", |e| {
                matches!(e, HttpError::BodyTooLarge { limit: 8 })
            }),
            (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n9\r\n", |e| {
                matches!(e, HttpError::BodyTooLarge { .. })
            }),
            (b"HTTP/1.1 200 OK\r\n\r\n123456789", |e| {
                matches!(e, HttpError::BodyTooLarge { .. })
            }),
            (b"HTTP/1.1 200 OK\r\nX-Long: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", |e| {
                matches!(e, HttpError::HeadTooLarge { .. })
            }),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n", |e| {
                matches!(e, HttpError::InvalidContentLength(_))
            }),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", |e| {
                matches!(e, HttpError::InvalidContentLength(_))
            }),
            (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", |e| {
                matches!(e, HttpError::UnsupportedTransferCoding(_))
            }),
            (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", |e| {
                matches!(e, HttpError::MalformedChunk(_))
            }),
            (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\naXX", |e| {
                matches!(e, HttpError::MalformedChunk(_))
            }),
            (b"HTTP/1.1 101 Switching Protocols\r\n\r\n", |e| {
                matches!(e, HttpError::UnexpectedSwitchingProtocols)
            }),
            (b"SIP/2.0 200 OK\r\n\r\n", |e| matches!(e, HttpError::MalformedHead(_))),
            (b"HTTP/1.1 2000 OK\r\n\r\n", |e| matches!(e, HttpError::MalformedHead(_))),
        ];
        for (wire, check) in cases {
            let mut d = ResponseDecoder::new(Method::Get, lim);
            let err = d.receive(wire).unwrap_err();
            assert!(check(&err), "{:?}: {err:?}", String::from_utf8_lossy(wire));
        }
    }

    #[test]
    fn eof_errors() {
        let mut d = ResponseDecoder::new(Method::Get, Limits::default());
        let e = d.receive_eof().unwrap_err();
        assert!(matches!(e, HttpError::ClosedBeforeResponse));
        assert!(e.is_stale_connection());
        let mut d = ResponseDecoder::new(Method::Get, Limits::default());
        d.receive(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab")
            .unwrap();
        assert!(matches!(
            d.receive_eof().unwrap_err(),
            HttpError::Truncated(_)
        ));
        let mut d = ResponseDecoder::new(Method::Get, Limits::default());
        d.receive(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab")
            .unwrap();
        assert!(matches!(
            d.receive_eof().unwrap_err(),
            HttpError::Truncated(_)
        ));
    }

    proptest::proptest! {
        #[test]
        fn decoder_never_panics(wire in proptest::collection::vec(proptest::num::u8::ANY, 0..300),
                                piece in 1usize..40) {
            let mut d = ResponseDecoder::new(Method::Get, Limits { max_head_size: 128, max_body_size: 64 });
            for c in wire.chunks(piece) {
                match d.receive(c) {
                    Ok(Progress::Complete) | Err(_) => break,
                    Ok(Progress::NeedMore) => {}
                }
            }
            let _ = d.receive_eof();
        }

        #[test]
        fn chunked_round_trip(body in proptest::collection::vec(proptest::num::u8::ANY, 0..200),
                              split in 1usize..17, piece in 1usize..50) {
            let mut wire = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            for c in body.chunks(split) {
                wire.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
                wire.extend_from_slice(c);
                wire.extend_from_slice(b"\r\n");
            }
            wire.extend_from_slice(b"0\r\n\r\n");
            let r = decode_in_pieces(Method::Get, &wire, piece).unwrap();
            proptest::prop_assert_eq!(r.body, body);
            proptest::prop_assert!(r.reusable);
        }
    }
}
