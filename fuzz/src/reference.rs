//! The parsers of `ringsip::sip` as they were before they were made fast (URI, Via,
//! name-addr, header-name classification), kept as the oracle of a differential check: the
//! fuzz targets require the fast parsers to give exactly what these give. Copied verbatim
//! apart from paths; not used by the proxy.

#![allow(clippy::all)]

use ringsip::sip::header::{HeaderErrorKind, NameAddr, Via};
use ringsip::sip::uri::{Host, SipUri, TelUri, Uri, UriError};
use ringsip::sip::{HeaderError, HeaderName};

const fn token_table() -> [bool; 256] {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
            );
        c += 1;
    }
    t
}

static TOKEN: [bool; 256] = token_table();

/// RFC 3261 `token` characters: alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" /
/// "'" / "~".
#[inline]
pub fn is_token(c: u8) -> bool {
    TOKEN.get(usize::from(c)).copied().unwrap_or(false)
}

/// Linear white space inside a header value: SP, HTAB, and the CR LF of a folded line.
pub fn is_lws(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

/// Index of the first non-LWS byte at or after `i`.
pub fn skip_lws(s: &[u8], mut i: usize) -> usize {
    while let Some(&c) = s.get(i) {
        if !is_lws(c) {
            break;
        }
        i += 1;
    }
    i
}

/// `s` without leading and trailing LWS.
pub fn trim_lws(s: &[u8]) -> &[u8] {
    let start = skip_lws(s, 0);
    let mut end = s.len();
    while end > start {
        match s.get(end - 1) {
            Some(&c) if is_lws(c) => end -= 1,
            _ => break,
        }
    }
    s.get(start..end).unwrap_or(&[])
}

/// Index one past the end of a token starting at `i` (== `i` if there is none).
pub fn token_end(s: &[u8], mut i: usize) -> usize {
    while let Some(&c) = s.get(i) {
        if !is_token(c) {
            break;
        }
        i += 1;
    }
    i
}

/// Given `s[i] == b'"'`, the index one past the closing quote, honouring `\` escapes.
pub fn quoted_end(s: &[u8], i: usize) -> Option<usize> {
    let mut j = i.checked_add(1)?;
    loop {
        match s.get(j)? {
            b'"' => return Some(j + 1),
            b'\\' => j = j.checked_add(2)?,
            _ => j += 1,
        }
    }
}

/// Parses an unsigned decimal with at most `max` as value; `None` for empty, non-digit or
/// overlarge input.
pub fn parse_u64(s: &[u8], max: u64) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let mut v: u64 = 0;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
        if v > max {
            return None;
        }
    }
    Some(v)
}

/// Iterator over `;`-separated generic parameters (`name [= value]`) of a parameter list as
/// it follows a header value or URI, yielding `(name, value)` with LWS trimmed and a quoted
/// value returned with its quotes.
#[derive(Clone, Debug)]
pub struct Params<'a> {
    s: &'a [u8],
    pos: usize,
}

impl<'a> Params<'a> {
    /// Iterates over `s`, which may start with `;` or directly with the first name.
    pub fn new(s: &'a [u8]) -> Self {
        Params { s, pos: 0 }
    }
}

impl<'a> Iterator for Params<'a> {
    type Item = (&'a [u8], Option<&'a [u8]>);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.pos >= self.s.len() {
                return None;
            }
            let start = self.pos;
            let mut i = start;
            while let Some(&c) = self.s.get(i) {
                match c {
                    b'"' => {
                        i = quoted_end(self.s, i).unwrap_or(self.s.len());
                        continue;
                    }
                    b';' => break,
                    _ => i += 1,
                }
            }
            self.pos = i.saturating_add(1);
            let item = trim_lws(self.s.get(start..i.min(self.s.len())).unwrap_or(&[]));
            if item.is_empty() {
                continue;
            }
            return Some(match memchr(b'=', item) {
                Some(eq) => (
                    trim_lws(item.get(..eq).unwrap_or(&[])),
                    Some(trim_lws(item.get(eq + 1..).unwrap_or(&[]))),
                ),
                None => (item, None),
            });
        }
    }
}

/// The value of parameter `name` (case-insensitive) in `params`: `None` if absent,
/// `Some(None)` for a flag parameter, `Some(Some(v))` otherwise.
pub fn find_param<'a>(params: &'a [u8], name: &[u8]) -> Option<Option<&'a [u8]>> {
    Params::new(params)
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
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
            if !s
                .iter()
                .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_'))
            {
                return Err(UriError::BadHost);
            }
            if s.iter().all(|&c| c.is_ascii_digit() || c == b'.') {
                let text = std::str::from_utf8(s).map_err(|_| UriError::BadHost)?;
                return text.parse().map(Host::V4).map_err(|_| UriError::BadHost);
            }
            Ok(Host::Name(s))
        }
    }
}

/// Lenient IPv6 reference text check: hex digits, `:` and `.` only, at least two colons.
pub fn is_v6_text(s: &[u8]) -> bool {
    s.len() >= 2
        && s.iter().filter(|&&c| c == b':').count() >= 2
        && s.iter()
            .all(|&c| c.is_ascii_hexdigit() || c == b':' || c == b'.')
}

fn is_unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')'
        )
}

/// Checks every byte of `s` is allowed by `ok` or is a valid `%HH` escape.
fn check_escaped(s: &[u8], ok: impl Fn(u8) -> bool) -> Result<(), UriError> {
    let mut i = 0;
    while let Some(&c) = s.get(i) {
        if c == b'%' {
            match (s.get(i + 1), s.get(i + 2)) {
                (Some(a), Some(b)) if a.is_ascii_hexdigit() && b.is_ascii_hexdigit() => i += 3,
                _ => return Err(UriError::BadEscape),
            }
        } else if ok(c) {
            i += 1;
        } else {
            return Err(UriError::BadChar);
        }
    }
    Ok(())
}

/// Parses a URI (the whole input must be the URI, no surrounding whitespace).
pub fn parse_uri(s: &[u8]) -> Result<Uri<'_>, UriError> {
    let colon = memchr(b':', s).ok_or(UriError::BadScheme)?;
    let scheme = s.get(..colon).ok_or(UriError::BadScheme)?;
    let rest = s.get(colon + 1..).ok_or(UriError::Empty)?;
    let valid_scheme = matches!(scheme.first(), Some(c) if c.is_ascii_alphabetic())
        && scheme
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'));
    if !valid_scheme {
        return Err(UriError::BadScheme);
    }
    if rest.is_empty() {
        return Err(UriError::Empty);
    }
    if rest
        .iter()
        .any(|&c| c <= b' ' || c >= 0x7f || matches!(c, b'<' | b'>' | b'"'))
    {
        return Err(UriError::BadChar);
    }
    if scheme.eq_ignore_ascii_case(b"sip") {
        parse_sip(rest, false).map(Uri::Sip)
    } else if scheme.eq_ignore_ascii_case(b"sips") {
        parse_sip(rest, true).map(Uri::Sip)
    } else if scheme.eq_ignore_ascii_case(b"tel") {
        let semi = memchr(b';', rest).unwrap_or(rest.len());
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

fn parse_sip(s: &[u8], secure: bool) -> Result<SipUri<'_>, UriError> {
    // userinfo ends at the first '@': '@' cannot occur unescaped in params or headers.
    let (user, password, hostpart) = match memchr(b'@', s) {
        Some(at) => {
            let userinfo = s.get(..at).unwrap_or(&[]);
            let hostpart = s.get(at + 1..).unwrap_or(&[]);
            let (user, password) = match memchr(b':', userinfo) {
                Some(c) => (
                    userinfo.get(..c).unwrap_or(&[]),
                    Some(userinfo.get(c + 1..).unwrap_or(&[])),
                ),
                None => (userinfo, None),
            };
            if user.is_empty() {
                return Err(UriError::BadUser);
            }
            check_escaped(user, |c| {
                is_unreserved(c)
                    || matches!(c, b'&' | b'=' | b'+' | b'$' | b',' | b';' | b'?' | b'/')
            })
            .map_err(|e| {
                if e == UriError::BadEscape {
                    e
                } else {
                    UriError::BadUser
                }
            })?;
            if let Some(p) = password {
                check_escaped(p, |c| {
                    is_unreserved(c) || matches!(c, b'&' | b'=' | b'+' | b'$' | b',')
                })
                .map_err(|e| {
                    if e == UriError::BadEscape {
                        e
                    } else {
                        UriError::BadUser
                    }
                })?;
            }
            (Some(user), password, hostpart)
        }
        None => (None, None, s),
    };
    // hostport ends at ';' or '?' (an IPv6 reference is bracketed, so ':' inside is safe).
    let host_end = if hostpart.first() == Some(&b'[') {
        memchr(b']', hostpart).ok_or(UriError::BadHost)? + 1
    } else {
        hostpart
            .iter()
            .position(|&c| matches!(c, b':' | b';' | b'?'))
            .unwrap_or(hostpart.len())
    };
    let host_text = hostpart.get(..host_end).ok_or(UriError::BadHost)?;
    let host = parse_host(host_text)?;
    let mut rest = hostpart.get(host_end..).unwrap_or(&[]);
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
            parse_u64(digits, u64::from(u16::MAX))
                .and_then(|p| u16::try_from(p).ok())
                .ok_or(UriError::BadPort)?,
        );
        rest = after.get(end..).unwrap_or(&[]);
    }
    let q = memchr(b'?', rest);
    let params = rest.get(..q.unwrap_or(rest.len())).unwrap_or(&[]);
    let headers = q.map(|q| rest.get(q + 1..).unwrap_or(&[]));
    if !params.is_empty() {
        for p in params.split(|&c| c == b';').skip(1) {
            let name = p.split(|&c| c == b'=').next().unwrap_or(&[]);
            if name.is_empty() {
                return Err(UriError::BadParam);
            }
            check_escaped(p, |c| {
                is_unreserved(c)
                    || matches!(c, b'[' | b']' | b'/' | b':' | b'&' | b'+' | b'$' | b'=')
            })
            .map_err(|e| {
                if e == UriError::BadEscape {
                    e
                } else {
                    UriError::BadParam
                }
            })?;
        }
    }
    if let Some(h) = headers {
        check_escaped(h, |c| {
            is_unreserved(c)
                || matches!(
                    c,
                    b'[' | b']' | b'/' | b'?' | b':' | b'+' | b'$' | b'=' | b'&'
                )
        })
        .map_err(|e| {
            if e == UriError::BadEscape {
                e
            } else {
                UriError::BadHeader
            }
        })?;
    }
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

fn bad(h: HeaderName) -> HeaderError {
    HeaderError {
        header: h,
        kind: HeaderErrorKind::Malformed,
    }
}

/// Parses one Via value (one comma-separated element).
pub fn parse_via(v: &[u8]) -> Result<Via<'_>, HeaderError> {
    let e = || bad(HeaderName::Via);
    let mut i = skip_lws(v, 0);
    let mut proto: [&[u8]; 3] = [&[]; 3];
    for (k, slot) in proto.iter_mut().enumerate() {
        if k > 0 {
            i = skip_lws(v, i);
            if v.get(i) != Some(&b'/') {
                return Err(e());
            }
            i = skip_lws(v, i + 1);
        }
        let end = token_end(v, i);
        if end == i {
            return Err(e());
        }
        *slot = v.get(i..end).ok_or_else(e)?;
        i = end;
    }
    // sent-by: at least one LWS, then host [ COLON port ]
    let after_proto = i;
    i = skip_lws(v, i);
    if i == after_proto {
        return Err(e());
    }
    let host_start = i;
    let host_end = if v.get(i) == Some(&b'[') {
        i + memchr(b']', v.get(i..).unwrap_or(&[])).ok_or_else(e)? + 1
    } else {
        let mut j = i;
        while let Some(&c) = v.get(j) {
            if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_') {
                j += 1;
            } else {
                break;
            }
        }
        j
    };
    let host = v.get(host_start..host_end).ok_or_else(e)?;
    parse_host(host).map_err(|_| e())?;
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
    check_generic_params(params).map_err(|_| e())?;
    for (name, value) in Params::new(params) {
        if name.eq_ignore_ascii_case(b"branch") {
            via.branch = Some(value.filter(|b| !b.is_empty()).ok_or_else(e)?);
        } else if name.eq_ignore_ascii_case(b"received") {
            let r = value.ok_or_else(e)?;
            let inner = match r {
                [b'[', inner @ .., b']'] => inner,
                _ => r,
            };
            let ok = is_v6_text(inner) || matches!(parse_host(inner), Ok(Host::V4(_)));
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
    }
    Ok(via)
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
                    let close = memchr(b']', p.get(i..).unwrap_or(&[])).ok_or(())?;
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
        match memchr(b'<', v) {
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
        let close = memchr(b'>', v.get(i..).unwrap_or(&[])).ok_or_else(e)? + i;
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
    parse_uri(uri).map_err(|u| HeaderError {
        header: h,
        kind: HeaderErrorKind::Uri(u),
    })?;
    let rest = v.get(after..).unwrap_or(&[]);
    check_generic_params(rest).map_err(|_| e())?;
    Ok(NameAddr {
        display_name,
        uri,
        params: trim_lws(rest),
    })
}

fn memchr(needle: u8, s: &[u8]) -> Option<usize> {
    s.iter().position(|&c| c == needle)
}
