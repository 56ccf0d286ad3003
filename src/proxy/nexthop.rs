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

use crate::sip::{parse_uri, Uri};
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
/// `maddr` if present, else its host (RFC 3261 §16.6 / RFC 3263 §4).
pub fn classify(uri: &[u8]) -> Result<NextHopTarget, NextHopError> {
    let text = || String::from_utf8_lossy(uri).into_owned();
    let (host, port, udp_given) = match parse_uri(uri) {
        Ok(Uri::Sip(s)) => {
            if s.secure {
                return Err(NextHopError::Unsupported {
                    uri: text(),
                    what: "sips (TLS)",
                });
            }
            let transport = s.transport();
            if let Some(t) = transport {
                if !t.eq_ignore_ascii_case(b"udp") {
                    return Err(NextHopError::Unsupported {
                        uri: text(),
                        what: "a transport other than UDP",
                    });
                }
            }
            let host = s.param(b"maddr").flatten().unwrap_or(s.host_text);
            (host.to_vec(), s.port, transport.is_some())
        }
        // `host:port` reads as a URI of scheme `host`: taken as host and port when what
        // follows the colon is a port number.
        Ok(Uri::Other { .. }) if !host_port(uri) => {
            return Err(NextHopError::BadUri { uri: text() })
        }
        Ok(_) | Err(_) => {
            let t = std::str::from_utf8(uri).map_err(|_| NextHopError::BadUri { uri: text() })?;
            match t.rsplit_once(':') {
                Some((h, p)) if !h.contains(':') || h.ends_with(']') => (
                    h.as_bytes().to_vec(),
                    Some(
                        p.parse()
                            .map_err(|_| NextHopError::BadUri { uri: text() })?,
                    ),
                    false,
                ),
                _ => (t.as_bytes().to_vec(), None, false),
            }
        }
    };
    let host = String::from_utf8(host).map_err(|_| NextHopError::BadUri { uri: text() })?;
    if host.is_empty() {
        return Err(NextHopError::BadUri { uri: text() });
    }
    if host.eq_ignore_ascii_case("localhost") {
        return Ok(NextHopTarget::Static(SocketAddr::new(
            IpAddr::from([127, 0, 0, 1]),
            port.unwrap_or(5060),
        )));
    }
    if let Ok(ip) = host
        .trim_matches(|c| c == '[' || c == ']')
        .parse::<IpAddr>()
    {
        return Ok(NextHopTarget::Static(SocketAddr::new(
            ip,
            port.unwrap_or(5060),
        )));
    }
    Ok(NextHopTarget::Resolve(HostTarget {
        host,
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
