//! Where a relayed request goes: the next-hop URI (RFC 3261 §16.6 step 6-7) turned into
//! UDP destinations. An IP literal (or `localhost`) is used as is; a host name is resolved
//! by RFC 3263 §4 (NAPTR → SRV → A/AAAA) on the shard's own non-blocking resolver — never
//! getaddrinfo — into an ordered list the proxy fails over along (§4.3).
//!
//! Owns: the shard's one resolver ([`shard_resolver`], shared by `t_relay` and
//! `rest_client`, so both fill and read one cache), the classification of a next-hop URI
//! ([`classify`]) and the resolution to UDP targets ([`resolve_udp`]).
//!
//! Invariants: a resolved list is never empty and never longer than
//! [`MAX_FAILOVER_TARGETS`]; it holds UDP destinations only (the proxy's only transport
//! so far), in RFC 3263 order; nothing here blocks.

use std::cell::RefCell;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;

use crate::sip::{parse_uri, SipUri, Uri};
use crate::transport::dns::ring::DEFAULT_CACHE_CAPACITY;
use crate::transport::dns::ring::{ring_resolver, RingResolver, SystemDnsConfig};
use crate::transport::dns::{SipResolveError, SipTarget, SipTransport};

/// The most destinations one branch tries (the first plus its failovers, RFC 3263 §4.3).
pub const MAX_FAILOVER_TARGETS: usize = 4;

thread_local! {
    static RESOLVER: RefCell<Option<Rc<RingResolver>>> = const { RefCell::new(None) };
}

/// This shard's resolver, built on first use from the start-up configuration. Call on a
/// shard thread.
pub fn shard_resolver(dns: &SystemDnsConfig) -> Rc<RingResolver> {
    RESOLVER.with(|slot| {
        let mut slot = slot.borrow_mut();
        match &*slot {
            Some(r) => Rc::clone(r),
            None => {
                let r = ring_resolver(dns, DEFAULT_CACHE_CAPACITY);
                *slot = Some(Rc::clone(&r));
                r
            }
        }
    })
}

/// A host name to resolve by RFC 3263, owned (it outlives the message it came from).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostTarget {
    pub host: String,
    pub port: Option<u16>,
    /// `;transport=udp` was given (then NAPTR is skipped, RFC 3263 §4.1); else any
    /// transport may be selected and the UDP targets are kept.
    pub udp_given: bool,
}

impl HostTarget {
    fn as_sip_target(&self) -> SipTarget<'_> {
        SipTarget {
            host: &self.host,
            port: self.port,
            transport: self.udp_given.then_some(SipTransport::Udp),
            sips: false,
        }
    }
}

/// What a next-hop URI needs before a request can go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NextHopTarget {
    /// An IP literal or `localhost`: no DNS.
    Static(SocketAddr),
    /// A host name: RFC 3263 resolution first.
    Resolve(HostTarget),
}

/// Why a request cannot be relayed to a next hop.
#[derive(Debug, thiserror::Error)]
pub enum NextHopError {
    #[error("`{uri}` is not a SIP URI or host[:port]")]
    BadUri { uri: String },
    #[error("`{uri}` asks for {what}; only UDP is supported so far")]
    Unsupported { uri: String, what: &'static str },
    #[error(transparent)]
    Dns(#[from] SipResolveError),
    #[error("host `{host}`: no UDP target among the RFC 3263 results")]
    NoUdpTarget { host: String },
    #[error("host `{host}`: resolution did not finish in time")]
    TimedOut { host: String },
}

/// Classifies a next-hop URI (or `host[:port]`, as `$du` may be given): the host of its
/// `maddr` if present, else its host (RFC 3261 §16.6 / RFC 3263 §4). Allocates only for a
/// host name to resolve and for errors.
pub fn classify(uri: &[u8]) -> Result<NextHopTarget, NextHopError> {
    match parse_uri(uri) {
        Ok(Uri::Sip(s)) => classify_sip(&s, uri),
        // `host:port` reads as a URI of scheme `host`: taken as host and port when what
        // follows the colon is a port number.
        Ok(Uri::Other { .. }) if !host_port(uri) => Err(bad_uri(uri)),
        Ok(_) | Err(_) => {
            let t = std::str::from_utf8(uri).map_err(|_| bad_uri(uri))?;
            match t.rsplit_once(':') {
                Some((h, p)) if !h.contains(':') || h.ends_with(']') => {
                    let port = p.parse().map_err(|_| bad_uri(uri))?;
                    classify_host(h.as_bytes(), None, Some(port), false, uri)
                }
                _ => classify_host(t.as_bytes(), None, None, false, uri),
            }
        }
    }
}

/// [`classify`] for a URI already parsed as `s` (`uri` is its text, for errors).
pub fn classify_sip(s: &SipUri<'_>, uri: &[u8]) -> Result<NextHopTarget, NextHopError> {
    if s.secure {
        return Err(NextHopError::Unsupported {
            uri: text(uri),
            what: "sips (TLS)",
        });
    }
    let transport = s.transport();
    if let Some(t) = transport {
        if !t.eq_ignore_ascii_case(b"udp") {
            return Err(NextHopError::Unsupported {
                uri: text(uri),
                what: "a transport other than UDP",
            });
        }
    }
    match s.param(b"maddr").flatten() {
        Some(maddr) => classify_host(maddr, None, s.port, transport.is_some(), uri),
        // The URI parser has read the host already: its address is reused.
        None => classify_host(s.host_text, Some(s.host), s.port, transport.is_some(), uri),
    }
}

fn text(uri: &[u8]) -> String {
    String::from_utf8_lossy(uri).into_owned()
}

fn bad_uri(uri: &[u8]) -> NextHopError {
    NextHopError::BadUri { uri: text(uri) }
}

/// The target for `host` (as written; `parsed` if the URI parser read it) and `port`.
fn classify_host(
    host: &[u8],
    parsed: Option<crate::sip::Host<'_>>,
    port: Option<u16>,
    udp_given: bool,
    uri: &[u8],
) -> Result<NextHopTarget, NextHopError> {
    let host = std::str::from_utf8(host).map_err(|_| bad_uri(uri))?;
    if host.is_empty() {
        return Err(bad_uri(uri));
    }
    if host.eq_ignore_ascii_case("localhost") {
        return Ok(NextHopTarget::Static(SocketAddr::new(
            IpAddr::from([127, 0, 0, 1]),
            port.unwrap_or(5060),
        )));
    }
    let ip = match parsed {
        // A host name with a letter, `-` or `_` never reads as an address (no `:`).
        Some(crate::sip::Host::Name(n))
            if !n.iter().all(|&c| c.is_ascii_digit() || c == b'.') && !n.contains(&b':') =>
        {
            None
        }
        Some(h @ crate::sip::Host::V4(_)) => h.ip(),
        _ => host
            .trim_matches(|c| c == '[' || c == ']')
            .parse::<IpAddr>()
            .ok(),
    };
    if let Some(ip) = ip {
        return Ok(NextHopTarget::Static(SocketAddr::new(
            ip,
            port.unwrap_or(5060),
        )));
    }
    Ok(NextHopTarget::Resolve(HostTarget {
        host: host.to_owned(),
        port,
        udp_given,
    }))
}

/// `host:port` with a numeric port.
fn host_port(text: &[u8]) -> bool {
    match text.iter().rposition(|&c| c == b':') {
        Some(at) => text
            .get(at + 1..)
            .is_some_and(|p| !p.is_empty() && p.iter().all(u8::is_ascii_digit)),
        None => false,
    }
}

/// RFC 3263 §4 for `target` over UDP: the first [`MAX_FAILOVER_TARGETS`] UDP
/// destinations, in order.
pub async fn resolve_udp(
    resolver: &RingResolver,
    target: &HostTarget,
) -> Result<Vec<SocketAddr>, NextHopError> {
    let hops = resolver.resolve_sip(&target.as_sip_target()).await?;
    let out: Vec<SocketAddr> = hops
        .iter()
        .filter(|h| h.transport == SipTransport::Udp)
        .map(|h| h.addr)
        .take(MAX_FAILOVER_TARGETS)
        .collect();
    if out.is_empty() {
        return Err(NextHopError::NoUdpTarget {
            host: target.host.clone(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(host: &str, port: Option<u16>, udp_given: bool) -> NextHopTarget {
        NextHopTarget::Resolve(HostTarget {
            host: host.into(),
            port,
            udp_given,
        })
    }

    #[test]
    fn literals_and_localhost_need_no_dns() {
        let st = |s: &str| NextHopTarget::Static(s.parse().unwrap());
        assert_eq!(classify(b"sip:bob@10.0.0.1").unwrap(), st("10.0.0.1:5060"));
        assert_eq!(
            classify(b"sip:10.0.0.1:5070;lr").unwrap(),
            st("10.0.0.1:5070")
        );
        assert_eq!(classify(b"sip:[::1]:5071").unwrap(), st("[::1]:5071"));
        assert_eq!(
            classify(b"sip:bob@localhost").unwrap(),
            st("127.0.0.1:5060")
        );
        assert_eq!(classify(b"10.0.0.2:5080").unwrap(), st("10.0.0.2:5080"));
        assert_eq!(
            classify(b"sip:bob@example.com;maddr=10.0.0.3").unwrap(),
            st("10.0.0.3:5060")
        );
        assert_eq!(
            classify(b"sip:bob@example.com:5070;maddr=[::2]").unwrap(),
            st("[::2]:5070")
        );
        assert_eq!(classify(b"[::3]:5072").unwrap(), st("[::3]:5072"));
        assert_eq!(classify(b"10.0.0.4").unwrap(), st("10.0.0.4:5060"));
    }

    #[test]
    fn host_names_are_resolved() {
        assert_eq!(
            classify(b"sip:bob@Example.COM").unwrap(),
            resolve("Example.COM", None, false)
        );
        assert_eq!(
            classify(b"sip:proxy.example.com:5062;lr").unwrap(),
            resolve("proxy.example.com", Some(5062), false)
        );
        assert_eq!(
            classify(b"sip:bob@example.com;transport=UDP").unwrap(),
            resolve("example.com", None, true)
        );
        assert_eq!(
            classify(b"example.net:5070").unwrap(),
            resolve("example.net", Some(5070), false)
        );
    }

    #[test]
    fn other_transports_and_bad_uris_are_refused() {
        assert!(matches!(
            classify(b"sips:bob@example.com"),
            Err(NextHopError::Unsupported { .. })
        ));
        assert!(matches!(
            classify(b"sip:bob@example.com;transport=tcp"),
            Err(NextHopError::Unsupported { .. })
        ));
        assert!(matches!(
            classify(b"tel:+15551234"),
            Err(NextHopError::BadUri { .. })
        ));
        assert!(matches!(
            classify(b"example.net:port"),
            Err(NextHopError::BadUri { .. })
        ));
        assert!(matches!(classify(b""), Err(NextHopError::BadUri { .. })));
    }
}
