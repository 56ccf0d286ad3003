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
    let colon = memchr::memchr(b':', s).ok_or(UriError::BadScheme)?;
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

fn parse_sip(s: &[u8], secure: bool) -> Result<SipUri<'_>, UriError> {
    // userinfo ends at the first '@': '@' cannot occur unescaped in params or headers.
    let (user, password, hostpart) = match memchr::memchr(b'@', s) {
        Some(at) => {
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
        memchr::memchr(b']', hostpart).ok_or(UriError::BadHost)? + 1
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
            super::scan::parse_u64(digits, u64::from(u16::MAX))
                .and_then(|p| u16::try_from(p).ok())
                .ok_or(UriError::BadPort)?,
        );
        rest = after.get(end..).unwrap_or(&[]);
    }
    let q = memchr::memchr(b'?', rest);
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
