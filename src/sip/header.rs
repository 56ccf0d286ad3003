//! Header names (RFC 3261 §20, compact forms §7.3.3) and the typed header-value parsers the
//! proxy needs: Via, name-addr (From/To/Contact/Route/Record-Route), CSeq, Max-Forwards,
//! Expires, credentials/challenges. Zero-copy: values borrow the message buffer.
//!
//! Invariant: a parser gets one header value (one comma-separated element for list headers),
//! which may contain folded line breaks; it treats CR and LF as LWS and never panics.

use super::scan::{
    self, find_param, is_lws, is_token, parse_u64, quoted_end, skip_lws, token_end, trim_lws,
    Params,
};
use super::uri::{is_v6_text, parse_uri, validate_uri, Uri, UriError};

macro_rules! header_names {
    ($($variant:ident => $canon:literal $(, $compact:literal)?;)*) => {
        /// A header name the parser knows; everything else is [`HeaderName::Other`] and is
        /// matched by its text.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum HeaderName {
            $(#[doc = $canon] $variant,)*
            /// Any other header.
            #[default]
            Other,
        }

        impl HeaderName {
            /// Number of known names (excluding `Other`).
            pub const KNOWN: usize = [$(HeaderName::$variant),*].len();

            /// Every known name with its canonical spelling and compact form (tests compare
            /// the fast classifier against a plain comparison over this table).
            #[cfg(test)]
            pub(crate) const TABLE: &'static [(HeaderName, &'static str, Option<u8>)] =
                &[$((HeaderName::$variant, $canon, compact_of(&[$($compact)?]))),*];

            /// The canonical spelling (`Other` gives an empty string).
            pub fn as_str(self) -> &'static str {
                match self {
                    $(HeaderName::$variant => $canon,)*
                    HeaderName::Other => "",
                }
            }

            /// Classifies a header name as written (case-insensitive, compact forms mapped).
            /// A name that is not a token is `Other`.
            pub fn parse(name: &[u8]) -> HeaderName {
                if name.iter().all(|&c| is_token(c)) {
                    HeaderName::from_token(name)
                } else {
                    HeaderName::Other
                }
            }

            /// Classifies a name already known to be a token (the message parser checked
            /// it): switch on the length, then compare at most three case-folded words
            /// (see [`NameKey`]).
            #[inline]
            pub(crate) fn from_token(name: &[u8]) -> HeaderName {
                debug_assert!(name.iter().all(|&c| is_token(c)));
                if let [c] = name {
                    // `c | 0x20` equals a lowercase letter only for that letter in either case.
                    return match c | 0x20 {
                        $($($compact => HeaderName::$variant,)?)*
                        _ => HeaderName::Other,
                    };
                }
                #[allow(non_upper_case_globals)]
                mod keys {
                    use super::NameKey;
                    $(pub(super) const $variant: NameKey = NameKey::of_canonical($canon.as_bytes());)*
                }
                match NameKey::of_token(name) {
                    $(keys::$variant => HeaderName::$variant,)*
                    _ => HeaderName::Other,
                }
            }
        }
    };
}

#[cfg(test)]
const fn compact_of(c: &[u8]) -> Option<u8> {
    match c {
        [c] => Some(*c),
        _ => None,
    }
}

/// A header name reduced to its length and up to three little-endian words of its bytes with
/// 0x20 OR-ed in: `[0..w)` and `[n-w..n)` (w = 2, 4 or 8 by length, the two overlap for
/// short names) plus `[8..16)` for names longer than 16 bytes, so every byte is covered. For
/// tokens this folding is exact against the canonical names (letters and `-`): `c | 0x20` is
/// a lowercase letter only for that letter in either case, and is `-` only for `-` (the other
/// byte that folds to `-`, CR, is not a token character).
#[derive(Clone, Copy, PartialEq, Eq)]
struct NameKey(usize, u64, u64, u64);

impl NameKey {
    const NONE: NameKey = NameKey(0, 0, 0, 0);

    /// Word of `w` bytes of `s` at `at`, folded (compile time, canonical names only).
    const fn word_const(s: &[u8], at: usize, w: usize) -> u64 {
        let mut v = 0u64;
        let mut i = 0;
        while i < w {
            v |= ((s[at + i] | 0x20) as u64) << (8 * i);
            i += 1;
        }
        v
    }

    const fn of_canonical(s: &[u8]) -> NameKey {
        let n = s.len();
        let w = if n < 4 {
            2
        } else if n < 8 {
            4
        } else {
            8
        };
        assert!(n >= 2 && n <= 24, "canonical header names are 2..=24 bytes");
        let mid = if n > 16 { Self::word_const(s, 8, 8) } else { 0 };
        NameKey(
            n,
            Self::word_const(s, 0, w),
            Self::word_const(s, n - w, w),
            mid,
        )
    }

    /// The key of a token name (names of 1 or over 24 bytes get a key no name has).
    #[inline]
    fn of_token(s: &[u8]) -> NameKey {
        let n = s.len();
        match n {
            2..=3 => NameKey(n, word::<2>(s, 0), word::<2>(s, n - 2), 0),
            4..=7 => NameKey(n, word::<4>(s, 0), word::<4>(s, n - 4), 0),
            8..=16 => NameKey(n, word::<8>(s, 0), word::<8>(s, n - 8), 0),
            17..=24 => NameKey(n, word::<8>(s, 0), word::<8>(s, n - 8), word::<8>(s, 8)),
            _ => Self::NONE,
        }
    }
}

/// `W` bytes of `s` at `at` as a little-endian word with 0x20 OR-ed into every byte (0 when
/// out of range, which `NameKey::of_token` never asks for).
#[inline(always)]
fn word<const W: usize>(s: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    match (w.get_mut(..W), s.get(at..at + W)) {
        (Some(dst), Some(src)) => {
            dst.copy_from_slice(src);
            // 0x20 in the low W bytes only.
            let fold = 0x2020_2020_2020_2020u64 >> (8 * (8 - W));
            u64::from_le_bytes(w) | fold
        }
        _ => 0,
    }
}

header_names! {
    Via => "Via", b'v';
    From => "From", b'f';
    To => "To", b't';
    CallId => "Call-ID", b'i';
    CSeq => "CSeq";
    MaxForwards => "Max-Forwards";
    Contact => "Contact", b'm';
    Route => "Route";
    RecordRoute => "Record-Route";
    ContentLength => "Content-Length", b'l';
    ContentType => "Content-Type", b'c';
    ContentEncoding => "Content-Encoding", b'e';
    Expires => "Expires";
    Authorization => "Authorization";
    ProxyAuthorization => "Proxy-Authorization";
    WwwAuthenticate => "WWW-Authenticate";
    ProxyAuthenticate => "Proxy-Authenticate";
    Require => "Require";
    ProxyRequire => "Proxy-Require";
    Supported => "Supported", b'k';
    Subject => "Subject", b's';
    Event => "Event", b'o';
    ReferTo => "Refer-To", b'r';
    AllowEvents => "Allow-Events", b'u';
    SessionExpires => "Session-Expires", b'x';
    Identity => "Identity", b'y';
    UserAgent => "User-Agent";
    Date => "Date";
}

/// What is wrong with one header's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeaderErrorKind {
    /// The header is absent.
    #[error("missing")]
    Missing,
    /// The value does not match the header's grammar.
    #[error("malformed")]
    Malformed,
    /// A number exceeds the limit the RFC sets (CSeq 2^31-1, Max-Forwards 255, ...).
    #[error("value too large")]
    Overlarge,
    /// The URI inside the header does not parse.
    #[error("bad URI: {0}")]
    Uri(UriError),
}

/// A header that failed to parse: which one, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{} header: {kind}", .header.as_str())]
pub struct HeaderError {
    /// Which header.
    pub header: HeaderName,
    /// What is wrong.
    pub kind: HeaderErrorKind,
}

impl HeaderError {
    pub(crate) fn new(header: HeaderName, kind: HeaderErrorKind) -> Self {
        HeaderError { header, kind }
    }
}

/// SIP request methods (RFC 3261 and extensions); unknown ones are `Other` and keep their
/// text where they appear.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    /// INVITE
    Invite,
    /// ACK
    Ack,
    /// BYE
    Bye,
    /// CANCEL
    Cancel,
    /// REGISTER
    Register,
    /// OPTIONS
    Options,
    /// INFO
    Info,
    /// PRACK
    Prack,
    /// UPDATE
    Update,
    /// SUBSCRIBE
    Subscribe,
    /// NOTIFY
    Notify,
    /// REFER
    Refer,
    /// MESSAGE
    Message,
    /// PUBLISH
    Publish,
    /// Any other token.
    Other,
}

impl Method {
    /// Classifies a method token (case-sensitive, RFC 3261 §7.1).
    pub fn parse(s: &[u8]) -> Method {
        match s {
            b"INVITE" => Method::Invite,
            b"ACK" => Method::Ack,
            b"BYE" => Method::Bye,
            b"CANCEL" => Method::Cancel,
            b"REGISTER" => Method::Register,
            b"OPTIONS" => Method::Options,
            b"INFO" => Method::Info,
            b"PRACK" => Method::Prack,
            b"UPDATE" => Method::Update,
            b"SUBSCRIBE" => Method::Subscribe,
            b"NOTIFY" => Method::Notify,
            b"REFER" => Method::Refer,
            b"MESSAGE" => Method::Message,
            b"PUBLISH" => Method::Publish,
            _ => Method::Other,
        }
    }

    /// The method's text (`Other` gives an empty string).
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Register => "REGISTER",
            Method::Options => "OPTIONS",
            Method::Info => "INFO",
            Method::Prack => "PRACK",
            Method::Update => "UPDATE",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Refer => "REFER",
            Method::Message => "MESSAGE",
            Method::Publish => "PUBLISH",
            Method::Other => "",
        }
    }
}

/// One Via value (RFC 3261 §20.42, §18.2.1 received/rport per RFC 3581).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Via<'a> {
    /// Protocol name, normally `SIP`.
    pub protocol_name: &'a [u8],
    /// Protocol version, normally `2.0`.
    pub protocol_version: &'a [u8],
    /// Transport token (`UDP`, `TCP`, `TLS`, `SCTP`, `WS`, ...).
    pub transport: &'a [u8],
    /// sent-by host as written (IPv6 with brackets).
    pub host: &'a [u8],
    /// sent-by port, if written.
    pub port: Option<u16>,
    /// The parameter list, starting at the first `;` (empty if none).
    pub params: &'a [u8],
    /// `branch`.
    pub branch: Option<&'a [u8]>,
    /// `received`.
    pub received: Option<&'a [u8]>,
    /// `rport`: `Some(None)` when present without a value.
    pub rport: Option<Option<u16>>,
    /// `maddr`.
    pub maddr: Option<&'a [u8]>,
    /// `ttl`.
    pub ttl: Option<u8>,
}

impl<'a> Via<'a> {
    /// Any Via parameter by name.
    pub fn param(&self, name: &[u8]) -> Option<Option<&'a [u8]>> {
        find_param(self.params, name)
    }

    /// True when the branch carries the RFC 3261 magic cookie `z9hG4bK`.
    pub fn has_rfc3261_branch(&self) -> bool {
        self.branch.is_some_and(|b| b.starts_with(b"z9hG4bK"))
    }
}

fn bad(h: HeaderName) -> HeaderError {
    HeaderError::new(h, HeaderErrorKind::Malformed)
}

/// sent-protocol (`name / version / transport`, LWS allowed around the slashes) and the
/// index after it. The usual `SIP/2.0/` prefix is matched whole.
#[inline]
fn via_protocol(v: &[u8]) -> Option<([&[u8]; 3], usize)> {
    if let Some(rest) = v.strip_prefix(b"SIP/2.0/") {
        let end = token_end(rest, 0);
        if end > 0 {
            // slices of `v` (callers take spans of them), not the literals
            return Some(([v.get(..3)?, v.get(4..7)?, rest.get(..end)?], 8 + end));
        }
    }
    let mut i = skip_lws(v, 0);
    let mut proto: [&[u8]; 3] = [&[]; 3];
    for (k, slot) in proto.iter_mut().enumerate() {
        if k > 0 {
            i = skip_lws(v, i);
            if v.get(i) != Some(&b'/') {
                return None;
            }
            i = skip_lws(v, i + 1);
        }
        let end = token_end(v, i);
        if end == i {
            return None;
        }
        *slot = v.get(i..end)?;
        i = end;
    }
    Some((proto, i))
}

/// Parses one Via value (one comma-separated element).
pub fn parse_via(v: &[u8]) -> Result<Via<'_>, HeaderError> {
    let e = || bad(HeaderName::Via);
    let (proto, mut i) = via_protocol(v).ok_or_else(e)?;
    // sent-by: at least one LWS, then host [ COLON port ]
    let after_proto = i;
    i = skip_lws(v, i);
    if i == after_proto {
        return Err(e());
    }
    let host_start = i;
    let host_end = if v.get(i) == Some(&b'[') {
        let end = i + memchr::memchr(b']', v.get(i..).unwrap_or(&[])).ok_or_else(e)? + 1;
        super::uri::parse_host(v.get(host_start..end).unwrap_or(&[])).map_err(|_| e())?;
        end
    } else {
        // a hostname or IPv4 address, checked as `parse_host` does, in the same pass
        let (end, digits_dots) = super::uri::hostname_end(v, i);
        let name = v.get(host_start..end).unwrap_or(&[]);
        if name.is_empty() || (digits_dots && super::uri::parse_ipv4(name).is_none()) {
            return Err(e());
        }
        end
    };
    let host = v.get(host_start..host_end).ok_or_else(e)?;
    i = skip_lws(v, host_end);
    let mut port = None;
    if v.get(i) == Some(&b':') {
        i = skip_lws(v, i + 1);
        let mut j = i;
        while v.get(j).is_some_and(u8::is_ascii_digit) {
            j += 1;
        }
        let digits = v.get(i..j).unwrap_or(&[]);
        port = Some(
            parse_u64(digits, u64::from(u16::MAX))
                .and_then(|p| u16::try_from(p).ok())
                .ok_or_else(e)?,
        );
        i = skip_lws(v, j);
    }
    let params = v.get(i..).unwrap_or(&[]);
    let mut via = Via {
        protocol_name: proto[0],
        protocol_version: proto[1],
        transport: proto[2],
        host,
        port,
        params: trim_lws(params),
        branch: None,
        received: None,
        rport: None,
        maddr: None,
        ttl: None,
    };
    if params.is_empty() {
        return Ok(via);
    }
    if params.first() != Some(&b';') {
        return Err(e());
    }
    // One pass: the generic-param grammar (as `check_generic_params`) and the known
    // parameters. A bracketed value (`maddr=[v6]`) is rare and is where the two-pass reading
    // differs (`Params` splits at a ';' inside brackets): it takes the two-pass path.
    let mut k = 0;
    loop {
        k = skip_lws(params, k);
        if k >= params.len() {
            return Ok(via);
        }
        if params.get(k) != Some(&b';') {
            return Err(e());
        }
        k = skip_lws(params, k + 1);
        let name_end = token_end(params, k);
        if name_end == k {
            return Err(e());
        }
        let name = params.get(k..name_end).unwrap_or(&[]);
        k = skip_lws(params, name_end);
        let mut value = None;
        if params.get(k) == Some(&b'=') {
            k = skip_lws(params, k + 1);
            let start = k;
            match params.get(k) {
                Some(b'"') => k = quoted_end(params, k).ok_or_else(e)?,
                Some(b'[') => return via_params_two_pass(via, params),
                _ => {
                    k = scan::token_colon_end(params, k);
                    if k == start {
                        return Err(e());
                    }
                }
            }
            value = Some(params.get(start..k).unwrap_or(&[]));
        }
        via_param(&mut via, name, value)?;
    }
}

/// The Via parameters read in two passes: grammar check, then `;`-split.
fn via_params_two_pass<'a>(mut via: Via<'a>, params: &'a [u8]) -> Result<Via<'a>, HeaderError> {
    check_generic_params(params).map_err(|_| bad(HeaderName::Via))?;
    for (name, value) in Params::new(params) {
        via_param(&mut via, name, value)?;
    }
    Ok(via)
}

/// Records one Via parameter if it is one the proxy reads (RFC 3261 §20.42, RFC 3581).
fn via_param<'a>(
    via: &mut Via<'a>,
    name: &[u8],
    value: Option<&'a [u8]>,
) -> Result<(), HeaderError> {
    let e = || bad(HeaderName::Via);
    if name.eq_ignore_ascii_case(b"branch") {
        via.branch = Some(value.filter(|b| !b.is_empty()).ok_or_else(e)?);
    } else if name.eq_ignore_ascii_case(b"received") {
        let r = value.ok_or_else(e)?;
        let inner = match r {
            [b'[', inner @ .., b']'] => inner,
            _ => r,
        };
        let ok = is_v6_text(inner)
            || matches!(super::uri::parse_host(inner), Ok(super::uri::Host::V4(_)));
        if !ok {
            return Err(e());
        }
        via.received = Some(r);
    } else if name.eq_ignore_ascii_case(b"rport") {
        via.rport = Some(match value {
            None => None,
            Some(p) => Some(
                parse_u64(p, u64::from(u16::MAX))
                    .and_then(|p| u16::try_from(p).ok())
                    .ok_or_else(e)?,
            ),
        });
    } else if name.eq_ignore_ascii_case(b"maddr") {
        via.maddr = Some(value.ok_or_else(e)?);
    } else if name.eq_ignore_ascii_case(b"ttl") {
        let t = value.ok_or_else(e)?;
        via.ttl = Some(
            parse_u64(t, 255)
                .and_then(|t| u8::try_from(t).ok())
                .ok_or_else(e)?,
        );
    }
    Ok(())
}

/// Validates a `*( SEMI generic-param )` list: every element has a non-empty token name and,
/// after `=`, a token, a quoted string, or an IPv6 reference.
fn check_generic_params(p: &[u8]) -> Result<(), ()> {
    let mut i = skip_lws(p, 0);
    while i < p.len() {
        if p.get(i) != Some(&b';') {
            return Err(());
        }
        i = skip_lws(p, i + 1);
        let end = token_end(p, i);
        if end == i {
            return Err(());
        }
        i = skip_lws(p, end);
        if p.get(i) == Some(&b'=') {
            i = skip_lws(p, i + 1);
            match p.get(i) {
                Some(b'"') => i = quoted_end(p, i).ok_or(())?,
                Some(b'[') => {
                    let close = memchr::memchr(b']', p.get(i..).unwrap_or(&[])).ok_or(())?;
                    i += close + 1;
                }
                _ => {
                    // token, or an unbracketed IPv6 address (received=2001:db8::9:255)
                    let mut j = i;
                    while p.get(j).is_some_and(|&c| is_token(c) || c == b':') {
                        j += 1;
                    }
                    if j == i {
                        return Err(());
                    }
                    i = j;
                }
            }
            i = skip_lws(p, i);
        }
    }
    Ok(())
}

/// A name-addr or addr-spec with its parameters (From, To, Contact, Route, Record-Route,
/// Refer-To, ...; RFC 3261 §20.10, §25.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NameAddr<'a> {
    /// Display name as written (quotes included when quoted), if any.
    pub display_name: Option<&'a [u8]>,
    /// The URI text (without `<>`).
    pub uri: &'a [u8],
    /// Header parameters, starting at the first `;` (empty if none).
    pub params: &'a [u8],
}

impl<'a> NameAddr<'a> {
    /// A header parameter by name.
    pub fn param(&self, name: &[u8]) -> Option<Option<&'a [u8]>> {
        find_param(self.params, name)
    }

    /// The `tag` parameter (From/To).
    pub fn tag(&self) -> Option<&'a [u8]> {
        self.param(b"tag").flatten()
    }

    /// The URI, parsed.
    pub fn parsed_uri(&self) -> Result<Uri<'a>, UriError> {
        parse_uri(self.uri)
    }

    /// The display name without surrounding quotes (escapes left as written).
    pub fn display_name_unquoted(&self) -> Option<&'a [u8]> {
        self.display_name.map(scan::unquote)
    }
}

/// Parses a name-addr / addr-spec followed by parameters, for header `h`. The URI must
/// parse (any scheme; unknown schemes are opaque).
pub fn parse_name_addr(v: &[u8], h: HeaderName) -> Result<NameAddr<'_>, HeaderError> {
    let e = || bad(h);
    let mut i = skip_lws(v, 0);
    let mut display_name = None;
    let uri;
    let after;
    let first = *v.get(i).ok_or_else(e)?;
    let angle = if first == b'"' {
        let end = quoted_end(v, i).ok_or_else(e)?;
        display_name = Some(v.get(i..end).ok_or_else(e)?);
        i = skip_lws(v, end);
        if v.get(i) != Some(&b'<') {
            return Err(e());
        }
        true
    } else if first == b'<' {
        true
    } else {
        // Either `token *(LWS token) <` or an addr-spec.
        match scan::find_byte(b'<', v) {
            Some(lt) if lt >= i => {
                let name = trim_lws(v.get(i..lt).unwrap_or(&[]));
                if !name.iter().all(|&c| is_token(c) || is_lws(c)) {
                    return Err(e());
                }
                if !name.is_empty() {
                    display_name = Some(name);
                }
                i = lt;
                true
            }
            _ => false,
        }
    };
    if angle {
        let close = scan::find_byte(b'>', v.get(i..).unwrap_or(&[])).ok_or_else(e)? + i;
        uri = v.get(i + 1..close).ok_or_else(e)?;
        after = close + 1;
    } else {
        let end = v
            .get(i..)
            .unwrap_or(&[])
            .iter()
            .position(|&c| c == b';' || is_lws(c))
            .map_or(v.len(), |p| p + i);
        uri = v.get(i..end).ok_or_else(e)?;
        // addr-spec form cannot carry URI headers or parameters (RFC 3261 §20.10).
        if uri.contains(&b'?') || uri.contains(&b',') {
            return Err(e());
        }
        after = end;
    }
    validate_uri(uri).map_err(|u| HeaderError::new(h, HeaderErrorKind::Uri(u)))?;
    let rest = v.get(after..).unwrap_or(&[]);
    check_generic_params(rest).map_err(|_| e())?;
    Ok(NameAddr {
        display_name,
        uri,
        params: trim_lws(rest),
    })
}

/// A Contact value: `*` or a name-addr with `expires`/`q` parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Contact<'a> {
    /// `Contact: *` (REGISTER removing all bindings).
    Star,
    /// A binding.
    Addr(NameAddr<'a>),
}

impl<'a> Contact<'a> {
    /// The `expires` parameter.
    pub fn expires(&self) -> Result<Option<u32>, HeaderError> {
        match self {
            Contact::Star => Ok(None),
            Contact::Addr(a) => match a.param(b"expires") {
                None => Ok(None),
                Some(v) => parse_u64(v.unwrap_or(&[]), u64::from(u32::MAX))
                    .and_then(|x| u32::try_from(x).ok())
                    .map(Some)
                    .ok_or(HeaderError::new(
                        HeaderName::Contact,
                        HeaderErrorKind::Overlarge,
                    )),
            },
        }
    }

    /// The `q` parameter in thousandths (q=0.5 gives 500), if present and valid.
    pub fn q(&self) -> Option<u16> {
        let Contact::Addr(a) = self else { return None };
        let v = a.param(b"q").flatten()?;
        let (int, frac) = match memchr::memchr(b'.', v) {
            Some(d) => (v.get(..d)?, v.get(d + 1..)?),
            None => (v, &[][..]),
        };
        if frac.len() > 3 || !frac.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let mut q = u16::try_from(parse_u64(int, 1)?).ok()? * 1000;
        let mut scale = 100u16;
        for &d in frac {
            q += u16::from(d - b'0') * scale;
            scale /= 10;
        }
        (q <= 1000).then_some(q)
    }
}

/// Parses one Contact value.
pub fn parse_contact(v: &[u8]) -> Result<Contact<'_>, HeaderError> {
    if trim_lws(v) == b"*" {
        return Ok(Contact::Star);
    }
    parse_name_addr(v, HeaderName::Contact).map(Contact::Addr)
}

/// CSeq (RFC 3261 §20.16): sequence number (at most 2^31-1, §8.1.1.5) and method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CSeq<'a> {
    /// The sequence number.
    pub number: u32,
    /// The method, classified.
    pub method: Method,
    /// The method text as written.
    pub method_text: &'a [u8],
}

/// Parses a CSeq value.
pub fn parse_cseq(v: &[u8]) -> Result<CSeq<'_>, HeaderError> {
    let e = || bad(HeaderName::CSeq);
    const MAX: u64 = (1 << 31) - 1;
    let i = skip_lws(v, 0);
    // The digits and their value in one pass; the value is held at MAX + 1 once above MAX
    // (leading zeros do not count), so it cannot overflow.
    let mut j = i;
    let mut value = 0u64;
    while let Some(&c) = v.get(j) {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            break;
        }
        value = (value * 10 + u64::from(d)).min(MAX + 1);
        j += 1;
    }
    if j == i {
        return Err(e());
    }
    let number = u32::try_from(value)
        .ok()
        .filter(|&n| u64::from(n) <= MAX)
        .ok_or(HeaderError::new(
            HeaderName::CSeq,
            HeaderErrorKind::Overlarge,
        ))?;
    let k = skip_lws(v, j);
    if k == j {
        return Err(e());
    }
    let end = token_end(v, k);
    let method_text = v.get(k..end).ok_or_else(e)?;
    if method_text.is_empty() || skip_lws(v, end) != v.len() {
        return Err(e());
    }
    Ok(CSeq {
        number,
        method: Method::parse(method_text),
        method_text,
    })
}

/// Parses Max-Forwards (1*DIGIT, at most 255).
pub fn parse_max_forwards(v: &[u8]) -> Result<u8, HeaderError> {
    let t = trim_lws(v);
    if !scan::all_digits(t) {
        return Err(bad(HeaderName::MaxForwards));
    }
    parse_u64(t, 255)
        .and_then(|n| u8::try_from(n).ok())
        .ok_or(HeaderError::new(
            HeaderName::MaxForwards,
            HeaderErrorKind::Overlarge,
        ))
}

/// Parses an Expires delta-seconds value (at most 2^32-1).
pub fn parse_expires(v: &[u8]) -> Result<u32, HeaderError> {
    let t = trim_lws(v);
    if !scan::all_digits(t) {
        return Err(bad(HeaderName::Expires));
    }
    parse_u64(t, u64::from(u32::MAX))
        .and_then(|n| u32::try_from(n).ok())
        .ok_or(HeaderError::new(
            HeaderName::Expires,
            HeaderErrorKind::Overlarge,
        ))
}

/// Credentials or a challenge (Authorization, Proxy-Authorization, WWW-Authenticate,
/// Proxy-Authenticate; RFC 3261 §20.7, §22.4): scheme and comma-separated auth-params.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Credentials<'a> {
    /// The scheme (`Digest`, or any other token).
    pub scheme: &'a [u8],
    /// The auth-params as written.
    pub params: &'a [u8],
}

impl<'a> Credentials<'a> {
    /// An auth-param's value, with quotes removed (escapes left as written).
    pub fn param(&self, name: &[u8]) -> Option<&'a [u8]> {
        scan::CommaSplit::new(self.params).find_map(|p| {
            let eq = memchr::memchr(b'=', p)?;
            let n = trim_lws(p.get(..eq)?);
            n.eq_ignore_ascii_case(name)
                .then(|| scan::unquote(trim_lws(p.get(eq + 1..).unwrap_or(&[]))))
        })
    }
}

/// Parses credentials or a challenge for header `h`.
pub fn parse_credentials(v: &[u8], h: HeaderName) -> Result<Credentials<'_>, HeaderError> {
    let i = skip_lws(v, 0);
    let end = token_end(v, i);
    let scheme = v.get(i..end).unwrap_or(&[]);
    if scheme.is_empty() || (end < v.len() && !v.get(end).is_some_and(|&c| is_lws(c))) {
        return Err(bad(h));
    }
    Ok(Credentials {
        scheme,
        params: trim_lws(v.get(end..).unwrap_or(&[])),
    })
}

/// Checks a Date value against RFC 3261 §20.17 (rfc1123-date in GMT).
pub fn check_date(v: &[u8]) -> Result<(), HeaderError> {
    let e = || bad(HeaderName::Date);
    let t = trim_lws(v);
    let mut words = t
        .split(|&c| c == b' ' || c == b',')
        .filter(|w| !w.is_empty());
    let wkday = words.next().ok_or_else(e)?;
    let day = words.next().ok_or_else(e)?;
    let month = words.next().ok_or_else(e)?;
    let year = words.next().ok_or_else(e)?;
    let time = words.next().ok_or_else(e)?;
    let zone = words.next().ok_or_else(e)?;
    let days: [&[u8]; 7] = [b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun"];
    let months: [&[u8]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let time_ok = time.len() == 8
        && time.iter().enumerate().all(|(k, &c)| {
            if k == 2 || k == 5 {
                c == b':'
            } else {
                c.is_ascii_digit()
            }
        });
    if words.next().is_none()
        && days.contains(&wkday)
        && day.len() == 2
        && scan::all_digits(day)
        && months.contains(&month)
        && year.len() == 4
        && scan::all_digits(year)
        && time_ok
        && zone == b"GMT"
    {
        Ok(())
    } else {
        Err(e())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_forms() {
        for (c, n) in [
            ("v", HeaderName::Via),
            ("F", HeaderName::From),
            ("t", HeaderName::To),
            ("i", HeaderName::CallId),
            ("m", HeaderName::Contact),
            ("l", HeaderName::ContentLength),
            ("c", HeaderName::ContentType),
            ("k", HeaderName::Supported),
            ("s", HeaderName::Subject),
            ("e", HeaderName::ContentEncoding),
            ("o", HeaderName::Event),
            ("r", HeaderName::ReferTo),
            ("u", HeaderName::AllowEvents),
            ("x", HeaderName::SessionExpires),
            ("y", HeaderName::Identity),
            ("q", HeaderName::Other),
        ] {
            assert_eq!(HeaderName::parse(c.as_bytes()), n, "{c}");
        }
        assert_eq!(HeaderName::parse(b"MaX-fOrWaRdS"), HeaderName::MaxForwards);
    }

    /// The classifier before it was made fast: a plain case-insensitive comparison.
    fn classify_slowly(name: &[u8]) -> HeaderName {
        if !name.iter().all(|&c| is_token(c)) {
            return HeaderName::Other;
        }
        for &(h, canon, compact) in HeaderName::TABLE {
            if name.eq_ignore_ascii_case(canon.as_bytes())
                || (name.len() == 1 && compact.is_some_and(|c| name[0].eq_ignore_ascii_case(&c)))
            {
                return h;
            }
        }
        HeaderName::Other
    }

    #[test]
    fn every_name_classifies_in_any_case() {
        assert_eq!(HeaderName::TABLE.len(), HeaderName::KNOWN);
        for &(h, canon, compact) in HeaderName::TABLE {
            assert_eq!(HeaderName::parse(canon.as_bytes()), h, "{canon}");
            assert_eq!(
                HeaderName::parse(canon.to_uppercase().as_bytes()),
                h,
                "{canon}"
            );
            assert_eq!(
                HeaderName::parse(canon.to_lowercase().as_bytes()),
                h,
                "{canon}"
            );
            if let Some(c) = compact {
                assert_eq!(HeaderName::parse(&[c]), h);
                assert_eq!(HeaderName::parse(&[c.to_ascii_uppercase()]), h);
            }
            // One byte changed anywhere (including '-' to CR, which folds to '-') is another name.
            let b = canon.as_bytes();
            for i in 0..b.len() {
                for sub in [b'\r', b'_', b'x', b'0', b'.', b'-', b'~', b' '] {
                    let mut m = b.to_vec();
                    m[i] = sub;
                    assert_eq!(HeaderName::parse(&m), classify_slowly(&m), "{m:?}");
                }
                assert_eq!(HeaderName::parse(&b[..i]), classify_slowly(&b[..i]));
                assert_eq!(HeaderName::parse(&b[i..]), classify_slowly(&b[i..]));
            }
        }
        assert_eq!(HeaderName::parse(b""), HeaderName::Other);
        assert_eq!(HeaderName::parse(b"Max\rForwards"), HeaderName::Other);
        assert_eq!(
            HeaderName::parse(b"X-Proxy-Authorization-Extra"),
            HeaderName::Other
        );
    }

    proptest::proptest! {
        #[test]
        fn fast_classifier_matches_plain_comparison(
            name in "[-a-zA-Z_.!%*+`'~0-9\r :]{0,26}",
        ) {
            proptest::prop_assert_eq!(
                HeaderName::parse(name.as_bytes()),
                classify_slowly(name.as_bytes())
            );
        }

        #[test]
        fn fast_classifier_matches_on_near_names(
            idx in 0..HeaderName::KNOWN,
            upper in proptest::collection::vec(proptest::bool::ANY, 24),
            at in 0usize..24,
            sub in proptest::num::u8::ANY,
            mutate in proptest::bool::ANY,
        ) {
            let mut name = HeaderName::TABLE[idx].1.as_bytes().to_vec();
            for (c, up) in name.iter_mut().zip(&upper) {
                if *up {
                    c.make_ascii_uppercase();
                }
            }
            if mutate {
                let at = at % name.len();
                name[at] = sub;
            }
            proptest::prop_assert_eq!(HeaderName::parse(&name), classify_slowly(&name));
        }
    }

    #[test]
    fn via_with_lws_and_params() {
        let v = parse_via(b"SIP  /   2.0\r\n /UDP\r\n    192.0.2.2;branch=390skdjuw").unwrap();
        assert_eq!(v.transport, b"UDP");
        assert_eq!(v.host, b"192.0.2.2");
        assert_eq!(v.branch, Some(&b"390skdjuw"[..]));
        let v = parse_via(
            b"SIP/2.0/TLS [2001:db8::9:1]:5061 ; branch = z9hG4bKx ;received=2001:db8::9:255;rport=5070;maddr=224.2.0.1;ttl=16",
        )
        .unwrap();
        assert_eq!(v.host, b"[2001:db8::9:1]");
        assert_eq!(v.port, Some(5061));
        assert_eq!(v.branch, Some(&b"z9hG4bKx"[..]));
        assert_eq!(v.received, Some(&b"2001:db8::9:255"[..]));
        assert_eq!(v.rport, Some(Some(5070)));
        assert_eq!(v.maddr, Some(&b"224.2.0.1"[..]));
        assert_eq!(v.ttl, Some(16));
        assert!(v.has_rfc3261_branch());
        assert_eq!(parse_via(b"SIP/2.0/UDP h;rport").unwrap().rport, Some(None));
        assert!(parse_via(b"SIP/2.0/UDP 192.0.2.15;;").is_err());
        assert!(parse_via(b"SIP/2.0/UDP").is_err());
        assert!(parse_via(b"SIP/2.0/UDP h;ttl=256").is_err());
    }

    #[test]
    fn name_addr_forms() {
        let a = parse_name_addr(
            b"\"J Rosenberg \\\\\\\"\"       <sip:jdrosen@example.com>\r\n  ;\r\n  tag = 98asjd8",
            HeaderName::From,
        )
        .unwrap();
        assert_eq!(a.uri, b"sip:jdrosen@example.com");
        assert_eq!(a.tag(), Some(&b"98asjd8"[..]));
        let a = parse_name_addr(b"sip:u@h ;   tag    = 1918181833n", HeaderName::To).unwrap();
        assert_eq!(a.tag(), Some(&b"1918181833n"[..]));
        let a =
            parse_name_addr(b"caller<sip:caller@example.com>;tag=323", HeaderName::From).unwrap();
        assert_eq!(a.display_name, Some(&b"caller"[..]));
        assert!(parse_name_addr(b"\"unterminated <sip:x@y>", HeaderName::To).is_err());
        assert!(parse_name_addr(b"Bell, Alexander <sip:a@b>", HeaderName::From).is_err());
        assert!(parse_name_addr(b"sip:user@example.com?Route=x", HeaderName::Contact).is_err());
        assert!(parse_name_addr(b"sip: user@example.com", HeaderName::To).is_err());
    }

    #[test]
    fn contact_star_expires_q() {
        assert_eq!(parse_contact(b" * "), Ok(Contact::Star));
        let c = parse_contact(b"<sip:a@b>;expires=3600;q=0.7").unwrap();
        assert_eq!(c.expires(), Ok(Some(3600)));
        assert_eq!(c.q(), Some(700));
        let c = parse_contact(b"<sip:a@b>;expires=280297596632815").unwrap();
        assert!(c.expires().is_err());
    }

    #[test]
    fn cseq_limits() {
        let c = parse_cseq(b"0009\r\n  INVITE").unwrap();
        assert_eq!((c.number, c.method), (9, Method::Invite));
        assert_eq!(
            parse_cseq(b"2147483648 INVITE").unwrap_err().kind,
            HeaderErrorKind::Overlarge
        );
        assert!(parse_cseq(b"36893488147419103232 INVITE").is_err());
        assert!(parse_cseq(b"1INVITE").is_err());
        assert!(parse_cseq(b"1 INVITE x").is_err());
    }

    #[test]
    fn scalars_and_auth_and_date() {
        assert_eq!(parse_max_forwards(b"0068"), Ok(68));
        assert!(parse_max_forwards(b"300").is_err());
        assert!(parse_expires(b"10000000000000000").is_err());
        let c = parse_credentials(
            b"Digest username=\"bob\", realm=\"x.com\", nonce=\"n,1\", uri=\"sip:x\"",
            HeaderName::Authorization,
        )
        .unwrap();
        assert_eq!(c.scheme, b"Digest");
        assert_eq!(c.param(b"nonce"), Some(&b"n,1"[..]));
        assert!(check_date(b"Sat, 13 Nov 2010 23:29:00 GMT").is_ok());
        assert!(check_date(b"Fri, 01 Jan 2010 16:00:00 EST").is_err());
    }
}
