//! Message edits ("lumps"): an ordered list of span edits against the received buffer,
//! applied in one pass when the message is written into a send buffer. The received bytes
//! are never re-serialized; a header nobody touched is copied as it arrived.
//!
//! Invariants: at most [`MAX_EDITS`] edits; a replaced/deleted range never partially
//! overlaps another one (identical ranges replace each other: the last write wins); an
//! insertion point never falls strictly inside a replaced range. Inserted text lives in a
//! fixed inline arena ([`ARENA_INLINE`] bytes) and only spills to a `Vec` past that. Inserted
//! header text is checked to carry no CR/LF (no header injection from a script).

use super::header::HeaderName;
use super::message::Message;
use super::scan::{CommaSplit, Span};
use super::uri::{parse_uri, Uri, UriError};

/// The largest number of pending edits on one message.
pub const MAX_EDITS: usize = 32;
/// Inserted text kept inline before spilling to the heap.
pub const ARENA_INLINE: usize = 384;
/// Largest Request-URI a partial rewrite ($rU, $rd, $rp) works on.
pub const MAX_URI_LEN: usize = 1024;

/// Why an edit was refused or a write failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    /// More than [`MAX_EDITS`] pending edits.
    #[error("too many pending edits (limit {MAX_EDITS})")]
    TooManyEdits,
    /// The edit overlaps part of an earlier one.
    #[error("edit overlaps an earlier edit")]
    Overlap,
    /// The operation needs a request (Request-URI, Max-Forwards).
    #[error("not a request")]
    NotARequest,
    /// No such header in the message.
    #[error("no {} header to edit", .0.as_str())]
    NoSuchHeader(HeaderName),
    /// Header name or value not acceptable (CR/LF, empty name, non-token name).
    #[error("invalid header name or value")]
    BadHeader,
    /// The new URI does not parse.
    #[error("invalid URI: {0}")]
    BadUri(UriError),
    /// A user/host/port rewrite on a URI that is not sip/sips.
    #[error("Request-URI is not a SIP URI")]
    NotSipUri,
    /// Max-Forwards is already zero (answer 483).
    #[error("Max-Forwards is zero")]
    MaxForwardsExhausted,
    /// The output buffer is too small.
    #[error("output buffer too small: {needed} bytes needed")]
    BufferTooSmall {
        /// Bytes the message needs.
        needed: usize,
    },
}

/// Where an edit's text lives: `len` bytes at `start` of the inline arena, or of the spill
/// vector when `start` has [`SPILL`] set; `len == 0` is no text. Plain integers rather than
/// an enum, and `Op` has no padding, so the unused ops are all-zero bytes and the array
/// initialises as one memset.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Text {
    start: u32,
    len: u32,
}

/// [`Text::start`] flag: the text is in the spill vector.
const SPILL: u32 = 1 << 31;

#[derive(Clone, Copy, Debug, Default)]
struct Op {
    at: Span,
    seq: u32,
    text: Text,
}

/// The pending edits of one message.
#[derive(Clone, Debug)]
pub struct Edits {
    ops: [Op; MAX_EDITS],
    n: u8,
    seq: u16,
    inline: [u8; ARENA_INLINE],
    inline_used: u16,
    spill: Vec<u8>,
    /// Index of an inserted (not replaced) Content-Length / Content-Type, for set_body.
    cl_insert: Option<u8>,
    ct_insert: Option<u8>,
    /// True while the ops, in index order, are already in application order (position, then
    /// recording order): the usual case of a proxy editing top to bottom, written without a
    /// sort.
    in_order: bool,
}

impl Default for Edits {
    fn default() -> Self {
        Edits {
            ops: [Op::default(); MAX_EDITS],
            n: 0,
            seq: 0,
            inline: [0; ARENA_INLINE],
            inline_used: 0,
            spill: Vec::new(),
            cl_insert: None,
            ct_insert: None,
            in_order: true,
        }
    }
}

impl Edits {
    fn ops(&self) -> &[Op] {
        self.ops.get(..usize::from(self.n)).unwrap_or(&[])
    }

    fn text(&self, t: Text) -> &[u8] {
        let len = t.len as usize;
        if t.start & SPILL == 0 {
            let start = t.start as usize;
            self.inline.get(start..start + len).unwrap_or(&[])
        } else {
            let start = (t.start & !SPILL) as usize;
            self.spill.get(start..start + len).unwrap_or(&[])
        }
    }

    fn store(&mut self, parts: &[&[u8]]) -> Text {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if len == 0 {
            return Text::default();
        }
        let used = usize::from(self.inline_used);
        if used + len <= ARENA_INLINE {
            let mut at = used;
            for p in parts {
                if let Some(dst) = self.inline.get_mut(at..at + p.len()) {
                    super::scan::copy_bytes(dst, p);
                }
                at += p.len();
            }
            self.inline_used = u16::try_from(at).unwrap_or(u16::MAX);
            // used + len <= ARENA_INLINE: both fit
            Text {
                start: used as u32,
                len: len as u32,
            }
        } else {
            let start = self.spill.len();
            for p in parts {
                self.spill.extend_from_slice(p);
            }
            Text {
                start: (u32::try_from(start).unwrap_or(0) & !SPILL) | SPILL,
                len: u32::try_from(len).unwrap_or(0),
            }
        }
    }

    /// Records an edit: replace `at` (empty = insert at `at.start`) with the concatenation
    /// of `parts`. Returns the op index.
    fn record(&mut self, at: Span, parts: &[&[u8]]) -> Result<u8, EditError> {
        let is_range = !at.is_empty();
        let mut same = None;
        for (i, op) in self.ops().iter().enumerate() {
            let other_range = !op.at.is_empty();
            if is_range && other_range {
                if op.at == at {
                    same = Some(i);
                } else if at.start < op.at.end && op.at.start < at.end {
                    return Err(EditError::Overlap);
                }
            } else if is_range && !other_range {
                if at.start < op.at.start && op.at.start < at.end {
                    return Err(EditError::Overlap);
                }
            } else if !is_range && other_range && op.at.start < at.start && at.start < op.at.end {
                return Err(EditError::Overlap);
            }
        }
        if same.is_none() && usize::from(self.n) >= MAX_EDITS {
            return Err(EditError::TooManyEdits);
        }
        let text = self.store(parts);
        let seq = self.seq;
        self.seq = self.seq.wrapping_add(1);
        let idx = match same {
            Some(i) => {
                // a replaced op takes a new sequence number: its place may change
                self.in_order = false;
                i
            }
            None => {
                let i = usize::from(self.n);
                if let Some(last) = i.checked_sub(1).and_then(|l| self.ops.get(l)) {
                    // the new op (position at.start, newest sequence) goes last unless an
                    // earlier one starts after it
                    if last.at.start > at.start {
                        self.in_order = false;
                    }
                }
                self.n += 1;
                i
            }
        };
        if let Some(op) = self.ops.get_mut(idx) {
            *op = Op {
                at,
                text,
                seq: u32::from(seq),
            };
        }
        u8::try_from(idx).map_err(|_| EditError::TooManyEdits)
    }

    fn replace_text(&mut self, idx: u8, parts: &[&[u8]]) {
        let text = self.store(parts);
        if let Some(op) = self.ops.get_mut(usize::from(idx)) {
            op.text = text;
        }
    }

    fn find_range(&self, at: Span) -> Option<&Op> {
        self.ops().iter().find(|op| op.at == at && !at.is_empty())
    }

    /// The edits in application order (position, then recording order), as sort keys:
    /// position in bits 40.., recording sequence in bits 8..24, op index in the low byte.
    fn sorted(&self) -> ([u64; MAX_EDITS], usize) {
        let mut keys = [0u64; MAX_EDITS];
        let n = usize::from(self.n).min(MAX_EDITS);
        for (i, (k, op)) in keys.iter_mut().zip(self.ops.iter()).take(n).enumerate() {
            // seq < 2^16 (a wrapped u16), i < MAX_EDITS
            *k = (u64::from(op.at.start) << 40) | (u64::from(op.seq & 0xffff) << 8) | i as u64;
        }
        // insertion sort: n <= MAX_EDITS
        for i in 1..n {
            let Some(&k) = keys.get(i) else { break };
            let mut j = i;
            while j > 0 {
                match keys.get(j - 1) {
                    Some(&prev) if prev > k => {
                        if let Some(slot) = keys.get_mut(j) {
                            *slot = prev;
                        }
                        j -= 1;
                    }
                    _ => break,
                }
            }
            if let Some(slot) = keys.get_mut(j) {
                *slot = k;
            }
        }
        (keys, n)
    }
}

fn check_value(v: &[u8]) -> Result<(), EditError> {
    if super::scan::find_cr_lf_nul(v).is_some() {
        Err(EditError::BadHeader)
    } else {
        Ok(())
    }
}

fn check_name(n: &[u8]) -> Result<(), EditError> {
    if n.is_empty() || !n.iter().all(|&c| super::scan::is_token(c)) {
        Err(EditError::BadHeader)
    } else {
        Ok(())
    }
}

fn digits(n: u32, buf: &mut [u8; 10]) -> &[u8] {
    let mut i = buf.len();
    let mut v = n;
    loop {
        i -= 1;
        if let Some(slot) = buf.get_mut(i) {
            *slot = b'0' + (v % 10) as u8;
        }
        v /= 10;
        if v == 0 || i == 0 {
            break;
        }
    }
    buf.get(i..).unwrap_or(&[])
}

impl Message {
    fn first_line_start(&self) -> u16 {
        self.entries()
            .first()
            .map_or(self.headers_end, |e| e.line.start)
    }

    fn first_of(&self, name: HeaderName) -> Option<super::message::Entry> {
        self.first_entry(name).copied()
    }

    /// True when edits are pending.
    pub fn has_edits(&self) -> bool {
        self.edits.n > 0
    }

    /// Drops every pending edit.
    pub fn clear_edits(&mut self) {
        self.edits = super::edit::Edits::default();
    }

    /// Inserts `Via: value` above the topmost Via (RFC 3261 §16.6 step 8).
    pub fn prepend_via(&mut self, value: &[u8]) -> Result<(), EditError> {
        check_value(value)?;
        let at = self
            .first_of(HeaderName::Via)
            .map_or(self.first_line_start(), |e| e.line.start);
        self.edits
            .record(Span::empty_at(at), &[b"Via: ", value, b"\r\n"])
            .map(drop)
    }

    /// Inserts `Record-Route: value` above the topmost Record-Route, or at the top of the
    /// header section (RFC 3261 §16.6 step 4; OpenSIPS `record_route`).
    pub fn prepend_record_route(&mut self, value: &[u8]) -> Result<(), EditError> {
        check_value(value)?;
        let at = self
            .first_of(HeaderName::RecordRoute)
            .map_or(self.first_line_start(), |e| e.line.start);
        self.edits
            .record(Span::empty_at(at), &[b"Record-Route: ", value, b"\r\n"])
            .map(drop)
    }

    /// Appends `name: value` at the end of the header section (OpenSIPS `append_hf`).
    pub fn append_header(&mut self, name: &[u8], value: &[u8]) -> Result<(), EditError> {
        check_name(name)?;
        check_value(value)?;
        self.edits
            .record(
                Span::empty_at(self.headers_end),
                &[name, b": ", value, b"\r\n"],
            )
            .map(drop)
    }

    /// Inserts `name: value` at the top of the header section (OpenSIPS `insert_hf`).
    pub fn insert_header(&mut self, name: &[u8], value: &[u8]) -> Result<(), EditError> {
        check_name(name)?;
        check_value(value)?;
        let at = self.first_line_start();
        self.edits
            .record(Span::empty_at(at), &[name, b": ", value, b"\r\n"])
            .map(drop)
    }

    /// `append_hf("Name: value\r\n")` with a raw line as a script writes it: one header
    /// line, the trailing CRLF optional.
    pub fn append_header_raw(&mut self, line: &[u8]) -> Result<(), EditError> {
        let (name, value) = split_raw(line)?;
        self.append_header(name, value)
    }

    /// `insert_hf("Name: value\r\n")` with a raw line.
    pub fn insert_header_raw(&mut self, line: &[u8]) -> Result<(), EditError> {
        let (name, value) = split_raw(line)?;
        self.insert_header(name, value)
    }

    /// Removes every line of header `name` (text, case-insensitive, compact forms mapped;
    /// OpenSIPS `remove_hf`). Returns how many lines were removed.
    pub fn remove_header(&mut self, name: &[u8]) -> Result<usize, EditError> {
        let known = HeaderName::parse(name);
        let mut removed = 0;
        for i in 0..self.entries().len() {
            let Some(e) = self.entries().get(i).copied() else {
                break;
            };
            let hit = if known == HeaderName::Other {
                e.name == HeaderName::Other
                    && e.name_span().get(&self.buf).eq_ignore_ascii_case(name)
            } else {
                e.name == known
            };
            if hit {
                self.edits.record(e.line, &[])?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Replaces the value of the first line of header `name` and removes its other lines.
    pub fn replace_header(&mut self, name: &[u8], value: &[u8]) -> Result<(), EditError> {
        check_value(value)?;
        let known = HeaderName::parse(name);
        let mut first = true;
        for i in 0..self.entries().len() {
            let Some(e) = self.entries().get(i).copied() else {
                break;
            };
            let hit = if known == HeaderName::Other {
                e.name == HeaderName::Other
                    && e.name_span().get(&self.buf).eq_ignore_ascii_case(name)
            } else {
                e.name == known
            };
            if hit {
                if first {
                    let at = if e.value.is_empty() {
                        // empty value: insert right after the colon
                        Span::empty_at(e.value.start)
                    } else {
                        e.value
                    };
                    let lead: &[u8] = if e.value.is_empty() { b" " } else { b"" };
                    self.edits.record(at, &[lead, value])?;
                    first = false;
                } else {
                    self.edits.record(e.line, &[])?;
                }
            }
        }
        if first {
            Err(EditError::NoSuchHeader(known))
        } else {
            Ok(())
        }
    }

    /// Removes the topmost value of a list header: the whole line when it holds one value,
    /// else the first value and its comma.
    fn strip_top_value(&mut self, name: HeaderName) -> Result<(), EditError> {
        let e = self.first_of(name).ok_or(EditError::NoSuchHeader(name))?;
        let value = e.value.get(&self.buf);
        let mut it = CommaSplit::new(value);
        let _first = it.next();
        // Only where the second value starts matters, not its extent.
        match it.next_start() {
            None => self.edits.record(e.line, &[]).map(drop),
            Some(second) => {
                let end = u16::try_from(usize::from(e.value.start) + second)
                    .map_err(|_| EditError::Overlap)?;
                self.edits
                    .record(
                        Span {
                            start: e.value.start,
                            end,
                        },
                        &[],
                    )
                    .map(drop)
            }
        }
    }

    /// Removes the topmost Via value (a proxy forwarding a response, RFC 3261 §16.7 step 3).
    pub fn strip_top_via(&mut self) -> Result<(), EditError> {
        self.strip_top_value(HeaderName::Via)
    }

    /// Removes the topmost Route value (`loose_route`, RFC 3261 §16.4).
    pub fn strip_top_route(&mut self) -> Result<(), EditError> {
        self.strip_top_value(HeaderName::Route)
    }

    /// Sets Max-Forwards to `n`, adding the header if absent.
    pub fn set_max_forwards(&mut self, n: u8) -> Result<(), EditError> {
        let mut d = [0u8; 10];
        let txt = digits(u32::from(n), &mut d);
        match self.first_of(HeaderName::MaxForwards) {
            Some(e) if !e.value.is_empty() => self.edits.record(e.value, &[txt]).map(drop),
            _ => self
                .edits
                .record(
                    Span::empty_at(self.headers_end),
                    &[b"Max-Forwards: ", txt, b"\r\n"],
                )
                .map(drop),
        }
    }

    /// Decrements Max-Forwards (RFC 3261 §16.6 step 3; absent means 70 is added). Returns
    /// the new value; a value of zero is refused (the proxy answers 483).
    pub fn decrement_max_forwards(&mut self) -> Result<u8, EditError> {
        if !self.is_request() {
            return Err(EditError::NotARequest);
        }
        let new = match self.max_forwards() {
            Ok(Some(0)) => return Err(EditError::MaxForwardsExhausted),
            Ok(Some(n)) => n - 1,
            Ok(None) => 70,
            Err(_) => return Err(EditError::BadHeader),
        };
        self.set_max_forwards(new)?;
        Ok(new)
    }

    /// The Request-URI after pending rewrites (`$ru`).
    pub fn request_uri(&self) -> Option<&[u8]> {
        let super::message::StartLine::Request { uri, .. } = self.start else {
            return None;
        };
        Some(match self.edits.find_range(uri) {
            Some(op) => self.edits.text(op.text),
            None => uri.get(&self.buf),
        })
    }

    /// Rewrites the Request-URI (`$ru = ...`, `rewrite_uri`). The URI must parse.
    pub fn set_request_uri(&mut self, new: &[u8]) -> Result<(), EditError> {
        let super::message::StartLine::Request { uri, .. } = self.start else {
            return Err(EditError::NotARequest);
        };
        parse_uri(new).map_err(EditError::BadUri)?;
        self.edits.record(uri, &[new]).map(drop)
    }

    fn rewrite_sip_part(&mut self, part: UriPart<'_>) -> Result<(), EditError> {
        let mut copy = [0u8; MAX_URI_LEN];
        let cur = self.request_uri().ok_or(EditError::NotARequest)?;
        let cur_len = cur.len();
        copy.get_mut(..cur_len)
            .ok_or(EditError::BadUri(UriError::BadChar))?
            .copy_from_slice(cur);
        let cur = copy.get(..cur_len).unwrap_or(&[]);
        let Ok(Uri::Sip(u)) = parse_uri(cur) else {
            return Err(EditError::NotSipUri);
        };
        let scheme: &[u8] = if u.secure { b"sips:" } else { b"sip:" };
        let (user, password, host) = match part {
            UriPart::User(user) => (user, u.password, u.host_text),
            UriPart::Host(h) => (u.user, u.password, h),
            UriPart::Port(_) => (u.user, u.password, u.host_text),
        };
        let port = match part {
            UriPart::Port(p) => p,
            _ => u.port,
        };
        let mut pd = [0u8; 10];
        let port_txt = port.map(|p| digits(u32::from(p), &mut pd));
        let parts: [&[u8]; 11] = [
            scheme,
            user.unwrap_or(b""),
            if user.is_some() && password.is_some() {
                b":"
            } else {
                b""
            },
            if user.is_some() {
                password.unwrap_or(b"")
            } else {
                b""
            },
            if user.is_some() { b"@" } else { b"" },
            host,
            if port_txt.is_some() { b":" } else { b"" },
            port_txt.unwrap_or(b""),
            u.params,
            if u.headers.is_some() { b"?" } else { b"" },
            u.headers.unwrap_or(b""),
        ];
        // validate the composed URI before recording it
        let total: usize = parts.iter().map(|p| p.len()).sum();
        let mut check = [0u8; MAX_URI_LEN];
        let mut at = 0;
        for p in parts {
            let dst = check
                .get_mut(at..at + p.len())
                .ok_or(EditError::BadUri(UriError::BadChar))?;
            dst.copy_from_slice(p);
            at += p.len();
        }
        parse_uri(check.get(..total).unwrap_or(&[])).map_err(EditError::BadUri)?;
        let super::message::StartLine::Request { uri, .. } = self.start else {
            return Err(EditError::NotARequest);
        };
        self.edits.record(uri, &parts).map(drop)
    }

    /// Rewrites the user part of the Request-URI (`$rU`); `None` removes it.
    pub fn set_request_uri_user(&mut self, user: Option<&[u8]>) -> Result<(), EditError> {
        self.rewrite_sip_part(UriPart::User(user))
    }

    /// Rewrites the host of the Request-URI (`$rd`).
    pub fn set_request_uri_host(&mut self, host: &[u8]) -> Result<(), EditError> {
        self.rewrite_sip_part(UriPart::Host(host))
    }

    /// Rewrites the port of the Request-URI (`$rp`); `None` removes it.
    pub fn set_request_uri_port(&mut self, port: Option<u16>) -> Result<(), EditError> {
        self.rewrite_sip_part(UriPart::Port(port))
    }

    /// Replaces the body, updating Content-Length (and Content-Type when given).
    pub fn set_body(&mut self, body: &[u8], content_type: Option<&[u8]>) -> Result<(), EditError> {
        if let Some(ct) = content_type {
            check_value(ct)?;
        }
        let len = u32::try_from(body.len())
            .map_err(|_| EditError::BufferTooSmall { needed: body.len() })?;
        let body_at = self.body;
        if body_at.is_empty() {
            // insert at the end of the message (after the empty line)
            let end = u16::try_from(self.buf.len()).unwrap_or(u16::MAX);
            self.edits.record(Span::empty_at(end), &[body])?;
        } else {
            self.edits.record(body_at, &[body])?;
        }
        let mut d = [0u8; 10];
        let txt = digits(len, &mut d);
        match self.first_of(HeaderName::ContentLength) {
            Some(e) if !e.value.is_empty() => {
                self.edits.record(e.value, &[txt])?;
            }
            _ => match self.edits.cl_insert {
                Some(i) => self
                    .edits
                    .replace_text(i, &[b"Content-Length: ", txt, b"\r\n"]),
                None => {
                    let i = self.edits.record(
                        Span::empty_at(self.headers_end),
                        &[b"Content-Length: ", txt, b"\r\n"],
                    )?;
                    self.edits.cl_insert = Some(i);
                }
            },
        }
        if let Some(ct) = content_type {
            match self.first_of(HeaderName::ContentType) {
                Some(e) if !e.value.is_empty() => {
                    self.edits.record(e.value, &[ct])?;
                }
                _ => match self.edits.ct_insert {
                    Some(i) => self
                        .edits
                        .replace_text(i, &[b"Content-Type: ", ct, b"\r\n"]),
                    None => {
                        let i = self.edits.record(
                            Span::empty_at(self.headers_end),
                            &[b"Content-Type: ", ct, b"\r\n"],
                        )?;
                        self.edits.ct_insert = Some(i);
                    }
                },
            }
        }
        Ok(())
    }

    /// Calls `f` with each piece of the edited message, in order.
    fn for_each_piece(&self, mut f: impl FnMut(&[u8])) {
        let buf: &[u8] = &self.buf;
        let mut cursor = 0usize;
        let mut apply = |op: &Op| {
            let start = usize::from(op.at.start);
            if start > cursor {
                f(buf.get(cursor..start).unwrap_or(&[]));
                cursor = start;
            }
            f(self.edits.text(op.text));
            cursor = cursor.max(usize::from(op.at.end));
        };
        if self.edits.in_order {
            self.edits.ops().iter().for_each(&mut apply);
        } else {
            let (order, n) = self.edits.sorted();
            for &k in order.iter().take(n) {
                if let Some(op) = self.edits.ops.get((k & 0xff) as usize) {
                    apply(op);
                }
            }
        }
        f(buf.get(cursor..).unwrap_or(&[]));
    }

    /// Length of the message as [`Message::write_into`] will write it.
    pub fn written_len(&self) -> usize {
        let mut n = 0;
        self.for_each_piece(|p| n += p.len());
        n
    }

    /// Writes the message with its edits applied into `out`, returning the length. Fails
    /// if `out` is too small. Allocates nothing.
    pub fn write_into(&self, out: &mut [u8]) -> Result<usize, EditError> {
        // One pass: copy while it fits, keep counting past that to report the need.
        let mut at = 0;
        let mut fits = true;
        self.for_each_piece(|p| {
            match out.get_mut(at..at + p.len()) {
                Some(dst) if fits => super::scan::copy_bytes(dst, p),
                _ => fits = false,
            }
            at += p.len();
        });
        if fits {
            Ok(at)
        } else {
            Err(EditError::BufferTooSmall { needed: at })
        }
    }

    /// Appends the message with its edits applied to `out` (allocates only if `out` lacks
    /// capacity).
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.reserve(self.written_len());
        self.for_each_piece(|p| out.extend_from_slice(p));
    }
}

enum UriPart<'a> {
    User(Option<&'a [u8]>),
    Host(&'a [u8]),
    Port(Option<u16>),
}

fn split_raw(line: &[u8]) -> Result<(&[u8], &[u8]), EditError> {
    let line = line.strip_suffix(b"\r\n").unwrap_or(line);
    let colon = memchr::memchr(b':', line).ok_or(EditError::BadHeader)?;
    let name = super::scan::trim_lws(line.get(..colon).unwrap_or(&[]));
    let value = super::scan::trim_lws(line.get(colon + 1..).unwrap_or(&[]));
    check_name(name)?;
    check_value(value)?;
    Ok((name, value))
}
