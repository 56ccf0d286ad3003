//! RFC 3263 §4: locating the SIP server for a URI — transport, then port and address —
//! as an ordered list of next hops the transaction layer fails over along (§4.3: on a
//! 503 or a transport/time-out error, try the next).
//!
//! Owns the selection rules, as pure functions tested deterministically:
//! NAPTR filtering and ordering ([`naptr_services`], RFC 3263 §4.1 / RFC 3403),
//! SRV priority ordering with weighted random choice inside a priority
//! ([`order_srv`], RFC 2782 "Usage rules", with an injectable [`SrvRandom`]), and the
//! decision tree of §4.1/§4.2 in [`Resolver::resolve_sip`].
//!
//! Invariants: the returned list is never longer than [`MAX_NEXT_HOPS`] and holds no
//! duplicate (address, transport); SRV records whose target is `.` are never used
//! (RFC 2782: service decidedly not available); a `sips` URI only yields TLS.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::{IpAddr, SocketAddr};

use super::message::{Naptr, QueryType, Rdata, Srv};
use super::resolver::{DnsIo, ResolveError, Resolver};

/// The longest next-hop list returned.
pub const MAX_NEXT_HOPS: usize = 16;

/// A SIP transport as RFC 3263 selects it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SipTransport {
    Udp,
    Tcp,
    Tls,
}

impl SipTransport {
    /// RFC 3261 §19.1.2 default port: 5061 for TLS, 5060 otherwise.
    pub fn default_port(self) -> u16 {
        match self {
            Self::Tls => 5061,
            Self::Udp | Self::Tcp => 5060,
        }
    }

    /// The SRV service/protocol labels (RFC 3263 §4.1).
    pub fn srv_prefix(self) -> &'static str {
        match self {
            Self::Udp => "_sip._udp",
            Self::Tcp => "_sip._tcp",
            Self::Tls => "_sips._tcp",
        }
    }

    /// The NAPTR service field (RFC 3263 §4.1), lower-case.
    pub fn naptr_service(self) -> &'static str {
        match self {
            Self::Udp => "sip+d2u",
            Self::Tcp => "sip+d2t",
            Self::Tls => "sips+d2t",
        }
    }
}

/// What RFC 3263 starts from: the host part of the URI (or of its `maddr`), its port
/// and `transport` parameter if present, and whether the scheme is `sips`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SipTarget<'a> {
    /// A domain name or an IP literal (IPv6 with or without brackets).
    pub host: &'a str,
    pub port: Option<u16>,
    pub transport: Option<SipTransport>,
    pub sips: bool,
}

/// One place to send the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NextHop {
    pub addr: SocketAddr,
    pub transport: SipTransport,
}

/// Why no next hop could be found.
#[derive(Debug, thiserror::Error)]
pub enum SipResolveError {
    #[error("sips URI with transport=udp for host `{host}` (RFC 3261 §26.2: sips requires TLS)")]
    SipsOverUdp { host: String },
    #[error("host `{host}`: {source}")]
    Dns {
        host: String,
        #[source]
        source: ResolveError,
    },
    #[error("host `{host}`: no usable NAPTR, SRV or address records")]
    NoTargets { host: String },
}

/// A source of random numbers for RFC 2782 weighted selection.
pub trait SrvRandom {
    fn next_u32(&mut self) -> u32;
}

/// SplitMix64: small, fast, seedable; adequate for load spreading, not for secrets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The current state (feeding it to [`SplitMix64::new`] continues the sequence).
    pub fn state(&self) -> u64 {
        self.state
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

impl SrvRandom for SplitMix64 {
    fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }
}

/// A per-process random seed from the standard library's hash keys (no syscall
/// beyond what `RandomState` already did).
pub fn entropy_seed() -> u64 {
    RandomState::new().hash_one(0x5eed_u64)
}

/// Orders SRV records per RFC 2782: ascending priority; inside one priority, repeatedly
/// pick a record at random with probability proportional to its weight (weight-0
/// records first in the running sum, so they get a small chance), then remove it.
/// Records with target `.` (empty canonical target) are left out.
pub fn order_srv<'a>(records: &'a [Srv], rng: &mut impl SrvRandom) -> Vec<&'a Srv> {
    let mut sorted: Vec<&Srv> = records.iter().filter(|r| !r.target.is_empty()).collect();
    // Stable sort: inside a priority, weight-0 records first, then message order.
    sorted.sort_by_key(|r| (r.priority, r.weight != 0));
    let mut out = Vec::with_capacity(sorted.len());
    let mut rest = sorted.as_slice();
    while let Some(first) = rest.first() {
        let same = rest
            .iter()
            .position(|r| r.priority != first.priority)
            .unwrap_or(rest.len());
        let (group, tail) = rest.split_at(same);
        let mut pool: Vec<&Srv> = group.to_vec();
        while !pool.is_empty() {
            let total: u64 = pool.iter().map(|r| u64::from(r.weight)).sum();
            let pick = u64::from(rng.next_u32()) % (total + 1);
            let mut running = 0u64;
            let mut chosen = pool.len() - 1;
            for (i, r) in pool.iter().enumerate() {
                running += u64::from(r.weight);
                if running >= pick {
                    chosen = i;
                    break;
                }
            }
            out.push(pool.remove(chosen));
        }
        rest = tail;
    }
    out
}

/// RFC 3263 §4.1: the NAPTR records usable for SIP — flag `s`, a service this proxy
/// supports (`SIPS+D2T` only for a sips URI), a non-root replacement — in order then
/// preference, each with its transport.
pub fn naptr_services(records: &[Naptr], sips: bool) -> Vec<(SipTransport, &str)> {
    let mut usable: Vec<(&Naptr, SipTransport)> = records
        .iter()
        .filter(|r| r.flags == "s" && !r.replacement.is_empty())
        .filter_map(|r| {
            let transport = [SipTransport::Udp, SipTransport::Tcp, SipTransport::Tls]
                .into_iter()
                .find(|t| t.naptr_service() == r.services)?;
            (!sips || transport == SipTransport::Tls).then_some((r, transport))
        })
        .collect();
    usable.sort_by_key(|(r, _)| (r.order, r.preference));
    usable
        .into_iter()
        .map(|(r, t)| (t, r.replacement.as_str()))
        .collect()
}

fn push_unique(out: &mut Vec<NextHop>, hop: NextHop) {
    if out.len() < MAX_NEXT_HOPS && !out.contains(&hop) {
        out.push(hop);
    }
}

/// [`SrvRandom`] drawing from the resolver's own generator.
struct ResolverRandom<'r, I: DnsIo>(&'r Resolver<I>);

impl<I: DnsIo> SrvRandom for ResolverRandom<'_, I> {
    fn next_u32(&mut self) -> u32 {
        (self.0.next_random() >> 32) as u32
    }
}

impl<I: DnsIo> Resolver<I> {
    /// RFC 3263 §4: the ordered next hops for `target`.
    ///
    /// - IP literal: that address, the given or default port, the given transport or
    ///   UDP (TLS for sips).
    /// - Port given: A/AAAA of the host (hosts table first), that port.
    /// - Transport given, no port: SRV for that transport, else A/AAAA with the
    ///   transport's default port.
    /// - Neither: NAPTR (filtered, ordered), each usable record's SRV; without usable
    ///   NAPTR, SRV for UDP, TCP, TLS (TLS only for sips); without SRV, A/AAAA with UDP
    ///   (TLS for sips) on the default port.
    ///
    /// A host listed in the hosts table skips NAPTR/SRV. A failed NAPTR query (time-out,
    /// SERVFAIL...) or NXDOMAIN for the domain ends the procedure with that error. A
    /// failed SRV query does not stop the others; its error is returned only if no hop
    /// was found (no A/AAAA fallback then: the SRV records may exist).
    pub async fn resolve_sip(
        &self,
        target: &SipTarget<'_>,
    ) -> Result<Vec<NextHop>, SipResolveError> {
        let host = target
            .host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(target.host);
        let dns_error = |source: ResolveError| SipResolveError::Dns {
            host: host.to_owned(),
            source,
        };
        let explicit = match (target.transport, target.sips) {
            (Some(SipTransport::Udp), true) => {
                return Err(SipResolveError::SipsOverUdp {
                    host: host.to_owned(),
                })
            }
            (Some(_), true) => Some(SipTransport::Tls),
            (given, _) => given,
        };
        let fallback_transport = explicit.unwrap_or(if target.sips {
            SipTransport::Tls
        } else {
            SipTransport::Udp
        });

        // §4.1/§4.2: numeric address.
        if let Ok(ip) = host.parse::<IpAddr>() {
            let port = target.port.unwrap_or(fallback_transport.default_port());
            return Ok(vec![NextHop {
                addr: SocketAddr::new(ip, port),
                transport: fallback_transport,
            }]);
        }

        let mut out = Vec::new();
        // §4.2: explicit port, or a host the hosts table overrides: addresses only.
        let hosts_listed = !self.hosts().lookup(host).is_empty();
        if target.port.is_some() || hosts_listed {
            let port = target.port.unwrap_or(fallback_transport.default_port());
            let ips = self.lookup_ip(host).await.map_err(dns_error)?;
            for ip in ips {
                push_unique(
                    &mut out,
                    NextHop {
                        addr: SocketAddr::new(ip, port),
                        transport: fallback_transport,
                    },
                );
            }
            return non_empty(out, host);
        }

        // A failed (not negative) SRV query: later records are still tried; reported
        // only if nothing at all was found, and then no address fallback is made.
        let mut srv_error: Option<ResolveError> = None;
        if let Some(transport) = explicit {
            // §4.2: transport known, no port: SRV for it.
            let name = format!("{}.{host}", transport.srv_prefix());
            if let Err(e) = self.srv_hops(&name, transport, &mut out).await {
                srv_error.get_or_insert(e);
            }
        } else {
            // §4.1: NAPTR.
            match self.lookup(host, QueryType::Naptr).await {
                Ok(found) => {
                    let naptrs: Vec<Naptr> = found
                        .records
                        .into_iter()
                        .filter_map(|r| match r {
                            Rdata::Naptr(n) => Some(n),
                            _ => None,
                        })
                        .collect();
                    for (transport, replacement) in naptr_services(&naptrs, target.sips) {
                        if let Err(e) = self.srv_hops(replacement, transport, &mut out).await {
                            srv_error.get_or_insert(e);
                        }
                    }
                }
                Err(ResolveError::NoData { .. }) => {}
                // NXDOMAIN: the domain does not exist, so neither do its SRV or A.
                Err(e) => return Err(dns_error(e)),
            }
            if out.is_empty() {
                let transports: &[SipTransport] = if target.sips {
                    &[SipTransport::Tls]
                } else {
                    &[SipTransport::Udp, SipTransport::Tcp, SipTransport::Tls]
                };
                for &transport in transports {
                    let name = format!("{}.{host}", transport.srv_prefix());
                    if let Err(e) = self.srv_hops(&name, transport, &mut out).await {
                        srv_error.get_or_insert(e);
                    }
                }
            }
        }
        if let (true, Some(e)) = (out.is_empty(), srv_error) {
            return Err(dns_error(e));
        }
        if out.is_empty() {
            // §4.2: no SRV: the host's addresses on the default port.
            let port = fallback_transport.default_port();
            let ips = self.lookup_ip(host).await.map_err(dns_error)?;
            for ip in ips {
                push_unique(
                    &mut out,
                    NextHop {
                        addr: SocketAddr::new(ip, port),
                        transport: fallback_transport,
                    },
                );
            }
        }
        non_empty(out, host)
    }

    /// Appends the hops of the SRV RRset `name` (RFC 2782 order), resolving each
    /// target's addresses. NXDOMAIN/NODATA of the SRV name, or of one target, adds
    /// nothing; other failures of the SRV query are returned.
    async fn srv_hops(
        &self,
        name: &str,
        transport: SipTransport,
        out: &mut Vec<NextHop>,
    ) -> Result<(), ResolveError> {
        let records: Vec<Srv> = match self.lookup(name, QueryType::Srv).await {
            Ok(found) => found
                .records
                .into_iter()
                .filter_map(|r| match r {
                    Rdata::Srv(s) => Some(s),
                    _ => None,
                })
                .collect(),
            Err(e) if e.is_negative() => return Ok(()),
            Err(e) => return Err(e),
        };
        let ordered: Vec<Srv> = order_srv(&records, &mut ResolverRandom(self))
            .into_iter()
            .cloned()
            .collect();
        for srv in ordered {
            if out.len() >= MAX_NEXT_HOPS {
                break;
            }
            match self.lookup_ip(&srv.target).await {
                Ok(ips) => {
                    for ip in ips {
                        push_unique(
                            out,
                            NextHop {
                                addr: SocketAddr::new(ip, srv.port),
                                transport,
                            },
                        );
                    }
                }
                Err(e) => {
                    tracing::debug!(target = %srv.target, error = %e, "SRV target unresolved")
                }
            }
        }
        Ok(())
    }
}

fn non_empty(out: Vec<NextHop>, host: &str) -> Result<Vec<NextHop>, SipResolveError> {
    if out.is_empty() {
        Err(SipResolveError::NoTargets {
            host: host.to_owned(),
        })
    } else {
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Script(Vec<u32>);

    impl SrvRandom for Script {
        fn next_u32(&mut self) -> u32 {
            if self.0.is_empty() {
                0
            } else {
                self.0.remove(0)
            }
        }
    }

    fn srv(priority: u16, weight: u16, target: &str) -> Srv {
        Srv {
            priority,
            weight,
            port: 5060,
            target: target.to_owned(),
        }
    }

    fn targets(ordered: &[&Srv]) -> Vec<String> {
        ordered.iter().map(|s| s.target.clone()).collect()
    }

    #[test]
    fn srv_priority_first_then_weighted_choice() {
        let records = [
            srv(20, 0, "backup"),
            srv(10, 10, "b"),
            srv(10, 0, "zero"),
            srv(10, 20, "c"),
            srv(5, 0, ""),
        ];
        // Priority 10, running sums over [zero(0), b(10), c(20)] = 0, 10, 30.
        // pick 25 -> c; then [zero, b] sums 0, 10: pick 1 -> b; then zero.
        let ordered = order_srv(&records, &mut Script(vec![25, 1, 0, 0]));
        assert_eq!(
            targets(&ordered),
            ["c", "b", "zero", "backup"],
            "root target dropped"
        );
        // pick 0 selects the weight-0 record first.
        let ordered = order_srv(&records, &mut Script(vec![0, 10, 0, 0]));
        assert_eq!(targets(&ordered), ["zero", "b", "c", "backup"]);
        // Modulo (total + 1): 31 % 31 == 0 -> zero; then 11 % 31 = 11 -> c; then b.
        let ordered = order_srv(&records, &mut Script(vec![31, 11, 0, 0]));
        assert_eq!(targets(&ordered), ["zero", "c", "b", "backup"]);
    }

    #[test]
    fn srv_weights_spread_proportionally_with_seeded_rng() {
        let records = [srv(1, 1, "light"), srv(1, 3, "heavy")];
        let mut rng = SplitMix64::new(42);
        let heavy_first = (0..4000)
            .filter(|_| order_srv(&records, &mut rng)[0].target == "heavy")
            .count();
        // RFC 2782 picks in 0..=sum: running sums [1, 4], picks 0 and 1 choose light,
        // 2, 3 and 4 choose heavy, so heavy comes first 3/5 of the time (2400 of 4000).
        assert!(
            (2200..2600).contains(&heavy_first),
            "heavy first {heavy_first} times"
        );
    }

    #[test]
    fn naptr_filter_and_order() {
        let naptr = |order, preference, flags: &str, services: &str, replacement: &str| Naptr {
            order,
            preference,
            flags: flags.to_owned(),
            services: services.to_owned(),
            replacement: replacement.to_owned(),
        };
        let records = [
            naptr(20, 10, "s", "sip+d2u", "_sip._udp.example.com"),
            naptr(10, 50, "s", "sip+d2t", "_sip._tcp.example.com"),
            naptr(10, 10, "s", "sips+d2t", "_sips._tcp.example.com"),
            naptr(5, 10, "s", "sip+d2s", "_sip._sctp.example.com"),
            naptr(5, 10, "u", "sip+d2u", "bad"),
            naptr(5, 10, "s", "sip+d2u", ""),
        ];
        assert_eq!(
            naptr_services(&records, false),
            [
                (SipTransport::Tls, "_sips._tcp.example.com"),
                (SipTransport::Tcp, "_sip._tcp.example.com"),
                (SipTransport::Udp, "_sip._udp.example.com"),
            ]
        );
        assert_eq!(
            naptr_services(&records, true),
            [(SipTransport::Tls, "_sips._tcp.example.com")]
        );
    }

    #[test]
    fn splitmix_is_deterministic() {
        let mut a = SplitMix64::new(7);
        let mut b = SplitMix64::new(a.state());
        assert_eq!(a.next_u64(), b.next_u64());
        assert_ne!(a.next_u64(), SplitMix64::new(7).next_u64());
    }
}
