//! The URLs `rest_get`/`rest_post`/`rest_put` accept: `http://` and `https://` only.
//!
//! Owns the split of a script-supplied URL into scheme, host, port and request target
//! (RFC 3986 §3; RFC 9110 §4.2.1/§4.2.2 for the http/https schemes and default ports;
//! RFC 9112 §3.2.1 origin-form). Invariants of a parsed [`Url`]: the host is non-empty and
//! lower-case (domain) or a literal address; `target` starts with `/` and holds only
//! visible ASCII; the fragment is dropped (never sent, RFC 9110 §4.2.4).
//! Userinfo (`user:pass@`) is rejected with a typed error rather than silently ignored.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use thiserror::Error;

/// Scheme of a rest_client URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    /// The port used when the URL names none (RFC 9110 §4.2.1, §4.2.2).
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// The authority's host: a registered name or an IP literal.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// Lower-cased registered name (`example.org`).
    Domain(String),
    Ipv4(Ipv4Addr),
    /// Written `[...]` in the URL; without zone identifier.
    Ipv6(Ipv6Addr),
}

impl fmt::Display for Host {
    /// Writes the host as it appears in a URL authority or `Host` header (IPv6 bracketed).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Domain(d) => f.write_str(d),
            Host::Ipv4(a) => write!(f, "{a}"),
            Host::Ipv6(a) => write!(f, "[{a}]"),
        }
    }
}

/// A parsed `http`/`https` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub scheme: Scheme,
    pub host: Host,
    /// Explicit port, or the scheme's default.
    pub port: u16,
    /// Path and query in origin-form (`/a/b?x=1`); `/` when the URL has no path.
    pub target: String,
}

/// Why a URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum UrlError {
    #[error("URL {0:?} has no scheme (expected http:// or https://)")]
    MissingScheme(String),
    #[error("URL scheme {0:?} is not supported (only http and https)")]
    UnsupportedScheme(String),
    #[error("URL {0:?} has an empty host")]
    EmptyHost(String),
    #[error("URL {0:?} carries userinfo, which rest_client does not support")]
    UserinfoNotSupported(String),
    #[error("URL host {0:?} is not a valid host name or IP literal")]
    InvalidHost(String),
    #[error("URL port {0:?} is not a number in 1..=65535")]
    InvalidPort(String),
    #[error("URL {0:?} contains a character not allowed in a request target")]
    InvalidCharacter(String),
}

impl Url {
    /// Parses `input` (surrounding ASCII whitespace ignored).
    pub fn parse(input: &str) -> Result<Url, UrlError> {
        let s = input.trim_matches(|c: char| c.is_ascii_whitespace());
        let (scheme_str, rest) = s
            .split_once("://")
            .ok_or_else(|| UrlError::MissingScheme(input.to_owned()))?;
        let scheme = if scheme_str.eq_ignore_ascii_case("http") {
            Scheme::Http
        } else if scheme_str.eq_ignore_ascii_case("https") {
            Scheme::Https
        } else {
            return Err(UrlError::UnsupportedScheme(scheme_str.to_owned()));
        };

        // The authority ends at the first '/', '?' or '#' (RFC 3986 §3.2).
        let auth_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, after) = rest.split_at(auth_end);
        if authority.contains('@') {
            return Err(UrlError::UserinfoNotSupported(input.to_owned()));
        }
        if authority.is_empty() {
            return Err(UrlError::EmptyHost(input.to_owned()));
        }

        let (host_str, port_str) = split_host_port(authority, input)?;
        let host = parse_host(host_str, input)?;
        let port = match port_str {
            None => scheme.default_port(),
            Some("") => scheme.default_port(),
            Some(p) => {
                if !p.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(UrlError::InvalidPort(p.to_owned()));
                }
                match p.parse::<u16>() {
                    Ok(n) if n != 0 => n,
                    _ => return Err(UrlError::InvalidPort(p.to_owned())),
                }
            }
        };

        // Drop the fragment; what remains is path [? query].
        let without_fragment = after.split_once('#').map_or(after, |(a, _)| a);
        if !without_fragment.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
            return Err(UrlError::InvalidCharacter(input.to_owned()));
        }
        let target = if without_fragment.starts_with('/') {
            without_fragment.to_owned()
        } else {
            // Empty path, possibly followed by a query: origin-form needs the "/".
            format!("/{without_fragment}")
        };

        Ok(Url {
            scheme,
            host,
            port,
            target,
        })
    }

    /// True for `https`.
    pub fn is_tls(&self) -> bool {
        self.scheme == Scheme::Https
    }

    /// The `Host` header value (RFC 9110 §7.2): the port is omitted when it is the
    /// scheme's default.
    pub fn host_header(&self) -> String {
        if self.port == self.scheme.default_port() {
            self.host.to_string()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}://{}:{}{}",
            self.scheme.as_str(),
            self.host,
            self.port,
            self.target
        )
    }
}

/// Splits `authority` into host and optional port text, handling `[v6]:port`.
fn split_host_port<'a>(
    authority: &'a str,
    input: &str,
) -> Result<(&'a str, Option<&'a str>), UrlError> {
    if authority.starts_with('[') {
        let close = authority
            .find(']')
            .ok_or_else(|| UrlError::InvalidHost(authority.to_owned()))?;
        // ']' is one byte, so both split points are char boundaries.
        let host = authority.get(..=close).unwrap_or(authority);
        let tail = authority.get(close + 1..).unwrap_or("");
        if tail.is_empty() {
            Ok((host, None))
        } else if let Some(port) = tail.strip_prefix(':') {
            Ok((host, Some(port)))
        } else {
            Err(UrlError::InvalidHost(authority.to_owned()))
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => {
                if h.contains(':') {
                    // An unbracketed IPv6 literal is not a valid authority.
                    return Err(UrlError::InvalidHost(authority.to_owned()));
                }
                if h.is_empty() {
                    return Err(UrlError::EmptyHost(input.to_owned()));
                }
                Ok((h, Some(p)))
            }
            None => Ok((authority, None)),
        }
    }
}

fn parse_host(h: &str, input: &str) -> Result<Host, UrlError> {
    if h.is_empty() {
        return Err(UrlError::EmptyHost(input.to_owned()));
    }
    if let Some(inner) = h.strip_prefix('[').and_then(|x| x.strip_suffix(']')) {
        return inner
            .parse::<Ipv6Addr>()
            .map(Host::Ipv6)
            .map_err(|_| UrlError::InvalidHost(h.to_owned()));
    }
    if let Ok(v4) = h.parse::<Ipv4Addr>() {
        return Ok(Host::Ipv4(v4));
    }
    // Registered name: letters, digits, '-', '.', '_' (the last is seen in the wild
    // in service names). Percent-encoded names are not supported.
    let valid = h.len() <= 253
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
        && !h.starts_with('.')
        && !h.contains("..");
    if !valid {
        return Err(UrlError::InvalidHost(h.to_owned()));
    }
    Ok(Host::Domain(h.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_with_path_and_query() {
        let u = Url::parse("http://Example.ORG/credit?account=alice&x=1").unwrap();
        assert_eq!(u.scheme, Scheme::Http);
        assert_eq!(u.host, Host::Domain("example.org".into()));
        assert_eq!(u.port, 80);
        assert_eq!(u.target, "/credit?account=alice&x=1");
        assert_eq!(u.host_header(), "example.org");
    }

    #[test]
    fn https_default_port_and_empty_path() {
        let u = Url::parse("https://api.example.com").unwrap();
        assert_eq!(u.port, 443);
        assert_eq!(u.target, "/");
        assert!(u.is_tls());
    }

    #[test]
    fn query_without_path_gets_slash() {
        let u = Url::parse("http://h?x=1#frag").unwrap();
        assert_eq!(u.target, "/?x=1");
    }

    #[test]
    fn explicit_port_appears_in_host_header() {
        let u = Url::parse("http://127.0.0.1:8080/a#frag").unwrap();
        assert_eq!(u.host, Host::Ipv4(Ipv4Addr::new(127, 0, 0, 1)));
        assert_eq!(u.port, 8080);
        assert_eq!(u.target, "/a");
        assert_eq!(u.host_header(), "127.0.0.1:8080");
    }

    #[test]
    fn ipv6_literal_with_and_without_port() {
        let u = Url::parse("http://[::1]:8443/x").unwrap();
        assert_eq!(u.host, Host::Ipv6(Ipv6Addr::LOCALHOST));
        assert_eq!(u.port, 8443);
        assert_eq!(u.host_header(), "[::1]:8443");
        let u = Url::parse("https://[2001:db8::1]/").unwrap();
        assert_eq!(u.port, 443);
        assert_eq!(u.host_header(), "[2001:db8::1]");
    }

    #[test]
    fn errors_are_typed() {
        assert!(matches!(
            Url::parse("example.org/x"),
            Err(UrlError::MissingScheme(_))
        ));
        assert!(matches!(
            Url::parse("ftp://example.org/"),
            Err(UrlError::UnsupportedScheme(_))
        ));
        assert!(matches!(
            Url::parse("http:///path"),
            Err(UrlError::EmptyHost(_))
        ));
        assert!(matches!(
            Url::parse("http://u:p@h/"),
            Err(UrlError::UserinfoNotSupported(_))
        ));
        assert!(matches!(
            Url::parse("http://h:0/"),
            Err(UrlError::InvalidPort(_))
        ));
        assert!(matches!(
            Url::parse("http://h:70000/"),
            Err(UrlError::InvalidPort(_))
        ));
        assert!(matches!(
            Url::parse("http://h:+80/"),
            Err(UrlError::InvalidPort(_))
        ));
        assert!(matches!(
            Url::parse("http://[::1/"),
            Err(UrlError::InvalidHost(_))
        ));
        assert!(matches!(
            Url::parse("http://[::1]x/"),
            Err(UrlError::InvalidHost(_))
        ));
        assert!(matches!(
            Url::parse("http://::1/"),
            Err(UrlError::InvalidHost(_))
        ));
        assert!(matches!(
            Url::parse("http://bad host/"),
            Err(UrlError::InvalidHost(_))
        ));
        assert!(matches!(
            Url::parse("http://h/a b"),
            Err(UrlError::InvalidCharacter(_))
        ));
        assert!(matches!(
            Url::parse("http://h/a\r\nX: y"),
            Err(UrlError::InvalidCharacter(_))
        ));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,60}") {
            let _ = Url::parse(&s);
        }

        #[test]
        fn parsed_target_is_safe(s in "http://[a-z0-9.:\\[\\]]{1,20}[/?#][ -~]{0,30}") {
            if let Ok(u) = Url::parse(&s) {
                proptest::prop_assert!(u.target.starts_with('/'));
                proptest::prop_assert!(u.target.bytes().all(|b| (0x21..=0x7e).contains(&b)));
            }
        }
    }
}
