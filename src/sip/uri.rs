//! URIs as SIP carries them (RFC 3261 §19.1, §25.1; RFC 3966 for `tel`; RFC 5118 for IPv6
//! references). Zero-copy: a parsed [`Uri`] borrows the input.
//!
//! `sip`/`sips` URIs are parsed into user, password, host (hostname, IPv4, IPv6 reference),
//! port, parameters and headers; `%`-escapes are validated but left escaped (use
//! [`unescape`] to decode into a caller's buffer). `tel` keeps number and parameters. Any
//! other scheme is kept opaque: answering 416 is a proxy decision (RFC 3261 §8.2.2.1), not a
//! parse error.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::scan::find_param;

/// Why a URI did not parse.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UriError {
    /// No `scheme:` prefix, or the scheme has characters outside RFC 3986's set.
    #[error("URI has no valid scheme")]
    BadScheme,
    /// Nothing after `scheme:`.
    #[error("URI is empty after the scheme")]
    Empty,
    /// A character not allowed in the user or password part.
    #[error("invalid character in the URI user part")]
    BadUser,
    /// Host missing or malformed (including an unterminated IPv6 reference).
    #[error("invalid URI host")]
    BadHost,
    /// Port not 1-5 digits or above 65535.
    #[error("invalid URI port")]
    BadPort,
    /// A parameter with an empty name or invalid characters.
    #[error("invalid URI parameter")]
    BadParam,
    /// A header (`?name=value`) with invalid characters.
    #[error("invalid URI header")]
    BadHeader,
    /// `%` not followed by two hex digits.
    #[error("invalid %-escape in URI")]
    BadEscape,
    /// A character not allowed anywhere in a URI (space, control, `<`, `>`, `"`).
    #[error("invalid character in URI")]
    BadChar,
}

/// The host of a SIP URI or Via sent-by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Host<'a> {
    /// A hostname (not validated against DNS rules beyond its character set).
    Name(&'a [u8]),
    /// A dotted IPv4 address.
    V4(Ipv4Addr),
    /// An IPv6 reference `[...]`; the slice is the text between the brackets. It passed a
    /// lenient character check; [`Host::ip`] tells whether it is a valid address.
    V6(&'a [u8]),
}

impl<'a> Host<'a> {
    /// The address, if the host is an IP literal that is a valid address.
    pub fn ip(&self) -> Option<std::net::IpAddr> {
        match *self {
            Host::Name(_) => None,
            Host::V4(a) => Some(a.into()),
            Host::V6(t) => std::str::from_utf8(t)
                .ok()?
                .parse::<Ipv6Addr>()
                .ok()
                .map(Into::into),
        }
    }
}

/// Parses a host as written in a URI or Via (`[v6]`, IPv4, or hostname).
pub fn parse_host(s: &[u8]) -> Result<Host<'_>, UriError> {
    match s {
        [] => Err(UriError::BadHost),
        [b'[', inner @ .., b']'] => {
            if is_v6_text(inner) {
                Ok(Host::V6(inner))
            } else {
                Err(UriError::BadHost)
            }
        }
        _ => {
            // One pass: every byte a hostname character, and whether all are digits or dots.
            let mut all = HOST | DIGIT_DOT;
            for &c in s {
                all &= class(c);
            }
            if all & HOST == 0 {
                return Err(UriError::BadHost);
            }
            if all & DIGIT_DOT != 0 {
                return parse_ipv4(s).map(Host::V4).ok_or(UriError::BadHost);
            }
            Ok(Host::Name(s))
        }
    }
}

/// End of the hostname characters (alphanumerics, `-`, `.`, `_`) of `s` starting at `i`, and
/// whether they are all digits and dots (an IPv4 address, or nothing valid).
pub(crate) fn hostname_end(s: &[u8], i: usize) -> (usize, bool) {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    {
        // One pass: per block, the hostname mask ends the scan and the digit-or-dot mask of
        // the bytes before that end says whether they are all digits and dots.
        use super::scan::block;
        let len = s.len();
        let mut at = i;
        let mut dd = true;
        while let Some(v) = block::load(s, at) {
            let host = sse::host_mask(v) & 0xffff;
            let digit_dot = sse::digit_dot_mask(v) & 0xffff;
            if host != 0xffff {
                let k = (!host).trailing_zeros();
                let before = (1u32 << k) - 1;
                return (at + k as usize, dd && digit_dot & before == before);
            }
            dd &= digit_dot == 0xffff;
            at += 16;
        }
        if at >= len {
            return (len, dd);
        }
        if len >= 16 {
            // the last 1..=15 bytes, read as the overlapping last block of `s`
            let left = len - at;
            if let Some(v) = block::load(s, len - 16) {
                let shift = 16 - left;
                let host = (sse::host_mask(v) & 0xffff) >> shift;
                let digit_dot = (sse::digit_dot_mask(v) & 0xffff) >> shift;
                // bits of `host` at and above `left` are zero: the scan ends by `len`
                let k = (!host).trailing_zeros().min(left as u32);
                let before = (1u32 << k) - 1;
                return (at + k as usize, dd && digit_dot & before == before);
            }
        }
        let (end, tail_dd) = hostname_end_scalar(s, at);
        (end, dd && tail_dd)
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    {
        hostname_end_scalar(s, i)
    }
}

/// [`hostname_end`] one byte at a time.
fn hostname_end_scalar(s: &[u8], i: usize) -> (usize, bool) {
    let mut end = i;
    let mut all = DIGIT_DOT;
    while let Some(&c) = s.get(end) {
        let k = class(c);
        if k & HOST == 0 {
            break;
        }
        all &= k;
        end += 1;
    }
    (end, all != 0)
}

/// The hostname and digit-or-dot classes sixteen bytes at a time (SSE2, x86_64 baseline).
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
mod sse {
    use super::super::scan::block::{__m128i, eq, in_range};
    use std::arch::x86_64::{_mm_andnot_si128, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8};

    /// Bit k set when byte k is a hostname character (alphanumeric, `-`, `.`, `_`).
    #[inline(always)]
    pub(super) fn host_mask(v: __m128i) -> u32 {
        // SAFETY: SSE2 is enabled for this build (the module's cfg); these intrinsics only
        // compute on registers.
        unsafe {
            let letter = in_range(_mm_or_si128(v, _mm_set1_epi8(0x20)), b'a', b'z');
            // '-' '.' '/' and the digits are 0x2d..=0x39; '/' is not a hostname character
            let dash_dot_digit = _mm_andnot_si128(eq(v, b'/'), in_range(v, b'-', b'9'));
            let m = _mm_or_si128(_mm_or_si128(letter, dash_dot_digit), eq(v, b'_'));
            _mm_movemask_epi8(m) as u32
        }
    }

    /// Bit k set when byte k is a digit or `.`.
    #[inline(always)]
    pub(super) fn digit_dot_mask(v: __m128i) -> u32 {
        // SAFETY: SSE2 is enabled for this build (the module's cfg); these intrinsics only
        // compute on registers.
        unsafe {
            let m = _mm_or_si128(in_range(v, b'0', b'9'), eq(v, b'.'));
            _mm_movemask_epi8(m) as u32
        }
    }
}

/// A dotted-quad IPv4 address as `std` parses one (`Ipv4Addr::from_str`): four decimal
/// octets of one to three digits, at most 255, no leading zero.
pub(crate) fn parse_ipv4(s: &[u8]) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut i = 0;
    for (k, slot) in octets.iter_mut().enumerate() {
        if k > 0 {
            if s.get(i) != Some(&b'.') {
                return None;
            }
            i += 1;
        }
        let start = i;
        let mut v: u16 = 0;
        while let Some(&c) = s.get(i) {
            if !c.is_ascii_digit() || i - start == 3 {
                break;
            }
            v = v * 10 + u16::from(c - b'0');
            i += 1;
        }
        let len = i - start;
        if len == 0 || (len > 1 && s.get(start) == Some(&b'0')) {
            return None;
        }
        *slot = u8::try_from(v).ok()?;
    }
    (i == s.len()).then_some(Ipv4Addr::from(octets))
}

/// Lenient IPv6 reference text check: hex digits, `:` and `.` only, at least two colons.
pub(crate) fn is_v6_text(s: &[u8]) -> bool {
    s.len() >= 2
        && s.iter().filter(|&&c| c == b':').count() >= 2
        && s.iter()
            .all(|&c| c.is_ascii_hexdigit() || c == b':' || c == b'.')
}

/// A parsed URI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Uri<'a> {
    /// `sip:` or `sips:`.
    Sip(SipUri<'a>),
    /// `tel:` (RFC 3966).
    Tel(TelUri<'a>),
    /// Any other scheme, kept opaque.
    Other {
        /// The scheme, without `:`.
        scheme: &'a [u8],
        /// Everything after `scheme:`.
        rest: &'a [u8],
    },
}

/// A `sip`/`sips` URI. All parts borrow the input and are still %-escaped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SipUri<'a> {
    /// `sips:` rather than `sip:`.
    pub secure: bool,
    /// User part (before `@`), if any.
    pub user: Option<&'a [u8]>,
    /// Password (after `user:`), if any.
    pub password: Option<&'a [u8]>,
    /// Host as written (IPv6 with brackets).
    pub host_text: &'a [u8],
    /// Host, classified.
    pub host: Host<'a>,
    /// Port, if written.
    pub port: Option<u16>,
    /// Parameters after the host, including the leading `;` (empty if none).
    pub params: &'a [u8],
    /// Headers after `?`, without the `?` (None if absent).
    pub headers: Option<&'a [u8]>,
}

impl<'a> SipUri<'a> {
    /// A URI parameter: `None` absent, `Some(None)` flag (`;lr`), `Some(Some(v))` valued.
    pub fn param(&self, name: &[u8]) -> Option<Option<&'a [u8]>> {
        find_param(self.params, name)
    }

    /// The `transport` parameter, if any.
    pub fn transport(&self) -> Option<&'a [u8]> {
        self.param(b"transport").flatten()
    }

    /// True when the URI carries `;lr` (loose routing, RFC 3261 §16.4).
    pub fn is_loose_route(&self) -> bool {
        self.param(b"lr").is_some()
    }
}

/// A `tel` URI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TelUri<'a> {
    /// The number (global `+...` or local).
    pub number: &'a [u8],
    /// Parameters including the leading `;` (empty if none).
    pub params: &'a [u8],
}

impl<'a> Uri<'a> {
    /// The scheme as written (`sip`, `sips`, `tel`, or other).
    pub fn scheme(&self) -> &'a [u8] {
        match self {
            Uri::Sip(u) if u.secure => b"sips",
            Uri::Sip(_) => b"sip",
            Uri::Tel(_) => b"tel",
            Uri::Other { scheme, .. } => scheme,
        }
    }

    /// The SIP URI, if this is one.
    pub fn as_sip(&self) -> Option<&SipUri<'a>> {
        match self {
            Uri::Sip(u) => Some(u),
            _ => None,
        }
    }
}

// Byte classes of RFC 3261 §25.1, one bit per set, looked up in one table.
/// `unreserved` and the user part's extra characters `&=+$,;?/`.
const USER: u8 = 1;
/// `unreserved` and the password's extra characters `&=+$,`.
const PASSWORD: u8 = 2;
/// `unreserved` and the URI parameter's extra characters `[]/:&+$` (and `=`).
const PARAM: u8 = 4;
/// `unreserved` and the URI header's extra characters `[]/?:+$` (and `=`, `&`).
const HEADER: u8 = 8;
/// Hostname characters: alphanumerics, `-`, `.`, `_`.
const HOST: u8 = 16;
/// Scheme characters after the first: alphanumerics, `+`, `-`, `.`.
const SCHEME: u8 = 32;
/// Digits and `.` (a host made only of these is read as IPv4).
const DIGIT_DOT: u8 = 64;
/// Never allowed in a URI as SIP carries it: controls, space, DEL, non-ASCII, `<>"`.
const FORBIDDEN: u8 = 128;

const fn uri_classes() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        let alnum = c.is_ascii_alphanumeric();
        let unreserved = alnum
            || matches!(
                c,
                b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')'
            );
        let mut v = 0;
        if unreserved || matches!(c, b'&' | b'=' | b'+' | b'$' | b',' | b';' | b'?' | b'/') {
            v |= USER;
        }
        if unreserved || matches!(c, b'&' | b'=' | b'+' | b'$' | b',') {
            v |= PASSWORD;
        }
        if unreserved || matches!(c, b'[' | b']' | b'/' | b':' | b'&' | b'+' | b'$' | b'=') {
            v |= PARAM;
        }
        if unreserved
            || matches!(
                c,
                b'[' | b']' | b'/' | b'?' | b':' | b'+' | b'$' | b'=' | b'&'
            )
        {
            v |= HEADER;
        }
        if alnum || matches!(c, b'-' | b'.' | b'_') {
            v |= HOST;
        }
        if alnum || matches!(c, b'+' | b'-' | b'.') {
            v |= SCHEME;
        }
        if c.is_ascii_digit() || c == b'.' {
            v |= DIGIT_DOT;
        }
        if c <= b' ' || c >= 0x7f || matches!(c, b'<' | b'>' | b'"') {
            v |= FORBIDDEN;
        }
        t[i] = v;
        i += 1;
    }
    t
}

static URI_CLASS: [u8; 256] = uri_classes();

#[inline(always)]
fn class(c: u8) -> u8 {
    URI_CLASS[usize::from(c)]
}

/// Checks every byte of `s` is in class `set` or is a valid `%HH` escape: `BadEscape` for a
/// bad escape, `bad` for any other character.
fn check_escaped(s: &[u8], set: u8, bad: UriError) -> Result<(), UriError> {
    let mut i = 0;
    while let Some(&c) = s.get(i) {
        if class(c) & set != 0 {
            i += 1;
        } else if c == b'%' {
            match (s.get(i + 1), s.get(i + 2)) {
                (Some(a), Some(b)) if a.is_ascii_hexdigit() && b.is_ascii_hexdigit() => i += 3,
                _ => return Err(UriError::BadEscape),
            }
        } else {
            return Err(bad);
        }
    }
    Ok(())
}

/// Parses a URI (the whole input must be the URI, no surrounding whitespace).
///
/// A character outside every URI set (space, control, DEL, non-ASCII, `<>"`) anywhere after
/// the scheme is `BadChar`, whatever else is wrong. For `sip`/`sips` that check is folded
/// into the structured parse, whose character sets all exclude those bytes: it only runs
/// when the structured parse fails, to tell `BadChar` from the structured error.
pub fn parse_uri(s: &[u8]) -> Result<Uri<'_>, UriError> {
    parse_uri_inline(s)
}

/// Checks that `s` parses as [`parse_uri`] would, with the same error, without handing the
/// parts back (the message parser and the name-addr parser only validate). The parse is
/// inlined here so the unused parts are never assembled.
pub(crate) fn validate_uri(s: &[u8]) -> Result<(), UriError> {
    parse_uri_inline(s).map(drop)
}

#[inline(always)]
fn parse_uri_inline(s: &[u8]) -> Result<Uri<'_>, UriError> {
    let mut colon = 0;
    while s.get(colon).is_some_and(|&c| class(c) & SCHEME != 0) {
        colon += 1;
    }
    if s.get(colon) != Some(&b':') || !s.first().is_some_and(u8::is_ascii_alphabetic) {
        return Err(UriError::BadScheme);
    }
    let scheme = s.get(..colon).ok_or(UriError::BadScheme)?;
    let rest = s.get(colon + 1..).ok_or(UriError::Empty)?;
    if rest.is_empty() {
        return Err(UriError::Empty);
    }
    let has_forbidden = |r: &[u8]| r.iter().any(|&c| class(c) & FORBIDDEN != 0);
    let secure = match scheme {
        [s1, i, p] if s1 | 0x20 == b's' && i | 0x20 == b'i' && p | 0x20 == b'p' => Some(false),
        [s1, i, p, s2]
            if s1 | 0x20 == b's' && i | 0x20 == b'i' && p | 0x20 == b'p' && s2 | 0x20 == b's' =>
        {
            Some(true)
        }
        _ => None,
    };
    if let Some(secure) = secure {
        return parse_sip(rest, secure).map(Uri::Sip).map_err(|e| {
            if has_forbidden(rest) {
                UriError::BadChar
            } else {
                e
            }
        });
    }
    if has_forbidden(rest) {
        return Err(UriError::BadChar);
    }
    if scheme.eq_ignore_ascii_case(b"tel") {
        let semi = memchr::memchr(b';', rest).unwrap_or(rest.len());
        let number = rest.get(..semi).unwrap_or(&[]);
        if number.is_empty() {
            return Err(UriError::Empty);
        }
        Ok(Uri::Tel(TelUri {
            number,
            params: rest.get(semi..).unwrap_or(&[]),
        }))
    } else {
        Ok(Uri::Other { scheme, rest })
    }
}

/// The part of a `sip`/`sips` URI after the scheme. Every byte it accepts is checked against
/// a set that excludes the forbidden characters (see [`parse_uri`]).
///
/// userinfo ends at the first `@` (`@` cannot occur unescaped in a host, parameters or
/// headers). Most URIs start with a hostname or a user made of hostname characters, so the
/// first scan reads a hostname: stopping at `@` it was the user; stopping at `:`, `;`, `?`
/// or the end with no `@` further on it was the host. Anything else takes the general path.
#[inline(always)]
fn parse_sip(s: &[u8], secure: bool) -> Result<SipUri<'_>, UriError> {
    let (end, digits_dots) = hostname_end(s, 0);
    match s.get(end) {
        Some(b'@') if end > 0 => {
            // hostname characters are user characters, and none is an escape
            let user = s.get(..end).unwrap_or(&[]);
            let hostpart = s.get(end + 1..).unwrap_or(&[]);
            parse_hostport(hostpart, secure, Some(user), None)
        }
        None | Some(b':' | b';' | b'?') if !s.get(end..).unwrap_or(&[]).contains(&b'@') => {
            if end == 0 {
                return Err(UriError::BadHost);
            }
            let text = s.get(..end).unwrap_or(&[]);
            let host = if digits_dots {
                Host::V4(parse_ipv4(text).ok_or(UriError::BadHost)?)
            } else {
                Host::Name(text)
            };
            parse_port_params(s.get(end..).unwrap_or(&[]), secure, None, None, text, host)
        }
        _ => parse_sip_general(s, secure),
    }
}

/// [`parse_sip`] for any input: userinfo up to the first `@`, then host, port, parameters
/// and headers.
#[cold]
fn parse_sip_general(s: &[u8], secure: bool) -> Result<SipUri<'_>, UriError> {
    let Some(at) = memchr::memchr(b'@', s) else {
        return parse_hostport(s, secure, None, None);
    };
    let userinfo = s.get(..at).unwrap_or(&[]);
    let hostpart = s.get(at + 1..).unwrap_or(&[]);
    let (user, password) = match memchr::memchr(b':', userinfo) {
        Some(c) => (
            userinfo.get(..c).unwrap_or(&[]),
            Some(userinfo.get(c + 1..).unwrap_or(&[])),
        ),
        None => (userinfo, None),
    };
    if user.is_empty() {
        return Err(UriError::BadUser);
    }
    check_escaped(user, USER, UriError::BadUser)?;
    if let Some(p) = password {
        check_escaped(p, PASSWORD, UriError::BadUser)?;
    }
    parse_hostport(hostpart, secure, Some(user), password)
}

/// Host (hostname, IPv4 or `[IPv6]`), then port, parameters and headers.
#[inline(always)]
fn parse_hostport<'a>(
    hostpart: &'a [u8],
    secure: bool,
    user: Option<&'a [u8]>,
    password: Option<&'a [u8]>,
) -> Result<SipUri<'a>, UriError> {
    // hostport ends at ';' or '?' (an IPv6 reference is bracketed, so ':' inside is safe).
    let (host_text, host) = if hostpart.first() == Some(&b'[') {
        let end = memchr::memchr(b']', hostpart).ok_or(UriError::BadHost)? + 1;
        let text = hostpart.get(..end).ok_or(UriError::BadHost)?;
        (text, parse_host(text)?)
    } else {
        // One pass over the hostname: it must end at ':', ';', '?' or the end.
        let (end, digits_dots) = hostname_end(hostpart, 0);
        if !matches!(hostpart.get(end), None | Some(b':' | b';' | b'?')) || end == 0 {
            return Err(UriError::BadHost);
        }
        let text = hostpart.get(..end).ok_or(UriError::BadHost)?;
        let host = if digits_dots {
            Host::V4(parse_ipv4(text).ok_or(UriError::BadHost)?)
        } else {
            Host::Name(text)
        };
        (text, host)
    };
    let rest = hostpart.get(host_text.len()..).unwrap_or(&[]);
    parse_port_params(rest, secure, user, password, host_text, host)
}

/// What follows the host: `[":" port]`, then `;`-parameters up to the first `?`, then
/// headers. Text before the first `;` can only follow a bracketed host (`[::1]x`): accepted
/// unchecked, except for the forbidden characters.
#[inline(always)]
fn parse_port_params<'a>(
    mut rest: &'a [u8],
    secure: bool,
    user: Option<&'a [u8]>,
    password: Option<&'a [u8]>,
    host_text: &'a [u8],
    host: Host<'a>,
) -> Result<SipUri<'a>, UriError> {
    let mut port = None;
    if let Some(after) = rest.strip_prefix(b":") {
        let end = after
            .iter()
            .position(|&c| matches!(c, b';' | b'?'))
            .unwrap_or(after.len());
        let digits = after.get(..end).unwrap_or(&[]);
        if digits.len() > 5 {
            return Err(UriError::BadPort);
        }
        port = Some(
            super::scan::parse_u64(digits, u64::from(u16::MAX))
                .and_then(|p| u16::try_from(p).ok())
                .ok_or(UriError::BadPort)?,
        );
        rest = after.get(end..).unwrap_or(&[]);
    }
    // One pass: segments of `rest` up to the first '?', each (after the first) a parameter.
    let mut i = 0;
    let mut first_segment = true;
    let mut headers = None;
    loop {
        if first_segment {
            // unchecked text up to ';' or '?'
            while let Some(&c) = rest.get(i) {
                if c == b';' || c == b'?' {
                    break;
                }
                if class(c) & FORBIDDEN != 0 {
                    return Err(UriError::BadChar);
                }
                i += 1;
            }
        } else {
            if matches!(rest.get(i), None | Some(b'=' | b';' | b'?')) {
                return Err(UriError::BadParam);
            }
            // PARAM characters and %-escapes up to ';', '?' or the end
            while let Some(&c) = rest.get(i) {
                if class(c) & PARAM != 0 {
                    i += 1;
                } else if c == b'%' {
                    match (rest.get(i + 1), rest.get(i + 2)) {
                        (Some(a), Some(b)) if a.is_ascii_hexdigit() && b.is_ascii_hexdigit() => {
                            i += 3
                        }
                        _ => return Err(UriError::BadEscape),
                    }
                } else if c == b';' || c == b'?' {
                    break;
                } else {
                    return Err(UriError::BadParam);
                }
            }
        }
        first_segment = false;
        match rest.get(i) {
            Some(b';') => i += 1,
            Some(_) => {
                // '?': the headers
                let h = rest.get(i + 1..).unwrap_or(&[]);
                check_escaped(h, HEADER, UriError::BadHeader)?;
                headers = Some(h);
                break;
            }
            None => break,
        }
    }
    let params = rest.get(..i).unwrap_or(&[]);
    Ok(SipUri {
        secure,
        user,
        password,
        host_text,
        host,
        port,
        params,
        headers,
    })
}

/// Decodes `%HH` escapes of `src` into `dst`, returning the decoded length. Fails if an
/// escape is malformed or `dst` is too small. Allocates nothing.
pub fn unescape(src: &[u8], dst: &mut [u8]) -> Result<usize, UriError> {
    let mut i = 0;
    let mut n = 0;
    while let Some(&c) = src.get(i) {
        let byte = if c == b'%' {
            let hi = src.get(i + 1).and_then(|&h| (h as char).to_digit(16));
            let lo = src.get(i + 2).and_then(|&l| (l as char).to_digit(16));
            match (hi, lo) {
                (Some(h), Some(l)) => {
                    i += 3;
                    u8::try_from(h * 16 + l).map_err(|_| UriError::BadEscape)?
                }
                _ => return Err(UriError::BadEscape),
            }
        } else {
            i += 1;
            c
        };
        *dst.get_mut(n).ok_or(UriError::BadChar)? = byte;
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sip(s: &str) -> SipUri<'_> {
        match parse_uri(s.as_bytes()) {
            Ok(Uri::Sip(u)) => u,
            other => panic!("{s}: {other:?}"),
        }
    }

    #[test]
    fn hostname_end_matches_scalar_for_every_byte() {
        // every byte value at every position of blocks around the 16-byte width
        for c in 0..=255u8 {
            for n in [1usize, 5, 15, 16, 17, 20, 31, 33] {
                for at in 0..n {
                    let mut s = vec![b'a'; n];
                    s[at] = c;
                    for from in [0, at.min(3), at] {
                        assert_eq!(
                            hostname_end(&s, from),
                            hostname_end_scalar(&s, from),
                            "byte {c:#x} at {at} of {n} from {from}"
                        );
                    }
                    let mut d = vec![b'7'; n];
                    d[at] = c;
                    assert_eq!(hostname_end(&d, 0), hostname_end_scalar(&d, 0), "{c:#x}");
                }
            }
        }
    }

    #[test]
    fn full_sip_uri() {
        let u = sip("sips:alice:secret@example.com:5061;transport=tcp;lr?Subject=hi&x=y");
        assert!(u.secure);
        assert_eq!(u.user, Some(&b"alice"[..]));
        assert_eq!(u.password, Some(&b"secret"[..]));
        assert_eq!(u.host, Host::Name(b"example.com"));
        assert_eq!(u.port, Some(5061));
        assert_eq!(u.transport(), Some(&b"tcp"[..]));
        assert!(u.is_loose_route());
        assert_eq!(u.headers, Some(&b"Subject=hi&x=y"[..]));
    }

    #[test]
    fn ipv4_and_ipv6_hosts() {
        assert_eq!(
            sip("sip:1.2.3.4:5060").host,
            Host::V4(Ipv4Addr::new(1, 2, 3, 4))
        );
        let u = sip("sip:user@[2001:db8::10]:5070");
        assert_eq!(u.host, Host::V6(b"2001:db8::10"));
        assert_eq!(u.port, Some(5070));
        assert!(u.host.ip().is_some());
        let amb = sip("sip:[2001:db8::10:5070]");
        assert_eq!(amb.port, None);
        // RFC 5118 §4.2: an unbracketed IPv6 host is not a valid SIP URI.
        assert!(parse_uri(b"sip:2001:db8::10").is_err());
    }

    #[test]
    fn user_with_semicolon_and_escapes() {
        let u = sip("sip:user;par=u%40example.net@example.com");
        assert_eq!(u.user, Some(&b"user;par=u%40example.net"[..]));
        let mut buf = [0u8; 32];
        let n = unescape(u.user.unwrap_or(&[]), &mut buf).unwrap_or(0);
        assert_eq!(&buf[..n], b"user;par=u@example.net");
        assert_eq!(
            sip("sip:null-%00-null@example.com").user,
            Some(&b"null-%00-null"[..])
        );
        assert_eq!(parse_uri(b"sip:a%4@x"), Err(UriError::BadEscape));
    }

    proptest::proptest! {
        #[test]
        fn ipv4_parse_matches_std(s in "[0-9.]{0,18}|([0-9]{1,4}\\.){3}[0-9]{1,4}") {
            proptest::prop_assert_eq!(parse_ipv4(s.as_bytes()), s.parse::<Ipv4Addr>().ok());
        }
    }

    #[test]
    fn ipv4_edge_cases() {
        for s in [
            "0.0.0.0",
            "255.255.255.255",
            "256.1.1.1",
            "01.2.3.4",
            "1.2.3",
            "1.2.3.4.",
            "1..2.3",
            "1.2.3.4.5",
            "1.2.3.0004",
            "",
            ".",
        ] {
            assert_eq!(parse_ipv4(s.as_bytes()), s.parse::<Ipv4Addr>().ok(), "{s}");
        }
        assert_eq!(
            parse_host(b"1.2.3.4"),
            Ok(Host::V4(Ipv4Addr::new(1, 2, 3, 4)))
        );
        assert_eq!(parse_host(b"1.2.3.04"), Err(UriError::BadHost));
        assert_eq!(parse_host(b"1.2.3.4a"), Ok(Host::Name(b"1.2.3.4a")));
    }

    #[test]
    fn forbidden_characters_win_over_structure_errors() {
        assert_eq!(parse_uri(b"sip:a b@x"), Err(UriError::BadChar));
        assert_eq!(parse_uri(b"sip:@x y"), Err(UriError::BadChar));
        assert_eq!(parse_uri(b"sip:[::1]x y"), Err(UriError::BadChar));
        assert!(parse_uri(b"sip:[::1]junk").is_ok());
        assert_eq!(parse_uri(b"sip:@x"), Err(UriError::BadUser));
        assert_eq!(parse_uri(b"SIPS:x;=1"), Err(UriError::BadParam));
        assert_eq!(parse_uri(b"sip:x:123456"), Err(UriError::BadPort));
        assert_eq!(parse_uri(b"sip:x?a b"), Err(UriError::BadChar));
        assert_eq!(parse_uri(b"sip:x?a|b"), Err(UriError::BadHeader));
        assert_eq!(parse_uri(b"sip:x/y"), Err(UriError::BadHost));
        assert_eq!(parse_uri(b"tel:a b"), Err(UriError::BadChar));
        assert_eq!(parse_uri(b"1sip:x"), Err(UriError::BadScheme));
        assert_eq!(parse_uri(b"sip:"), Err(UriError::Empty));
    }

    #[test]
    fn other_schemes_are_opaque() {
        assert_eq!(
            parse_uri(b"nobodyKnowsThisScheme:totallyopaque"),
            Ok(Uri::Other {
                scheme: b"nobodyKnowsThisScheme",
                rest: b"totallyopaque"
            })
        );
        match parse_uri(b"tel:+1-201-555-0123;phone-context=x") {
            Ok(Uri::Tel(t)) => assert_eq!(t.number, b"+1-201-555-0123"),
            other => panic!("{other:?}"),
        }
        assert_eq!(parse_uri(b"<sip:x>"), Err(UriError::BadScheme));
        assert_eq!(parse_uri(b"sip:a b"), Err(UriError::BadChar));
        assert_eq!(parse_uri(b"sip:x;;lr"), Err(UriError::BadParam));
    }
}
