//! The stub resolver of one shard: asks the configured recursive servers (RFC 1035
//! §7, RFC 1123 §6.1.3), follows CNAME chains (RFC 1034 §3.6.2, bounded), falls back
//! to TCP when an answer is truncated (RFC 7766 §5, RFC 1035 §4.2.2 framing), and
//! keeps answers in the shard's [`Cache`] (RFC 2308 for negative answers).
//!
//! Owns: the shard's cache and hosts table, the retry policy (`attempts` rounds over
//! the nameserver list, each query bounded by [`DnsIo::timeout`]), the search list
//! (resolv.conf `search`/`ndots`). The I/O itself belongs to the [`DnsIo`]
//! implementation: the shard's ring in production, blocking sockets in tests.
//!
//! Invariants: a resolver is used by one shard's tasks only (`!Sync`); the cache and
//! the RNG are behind `RefCell`/`Cell` and never borrowed across an `.await`, so
//! lookups from several tasks of the shard may interleave. Answers are accepted only
//! if id, QR and question match (RFC 5452 §9.1); a non-matching UDP datagram is
//! ignored and the wait continues until the attempt's time-out.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use cores::{AsyncDatagram, AsyncStream};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::Name;

use super::cache::{Cache, Cached};
use super::conf::{normalize_name, Hosts, ResolverConfig};
use super::message::{
    build_query, parse_name, parse_response, random_id, AnswerError, AnswerRecord, QueryError,
    QueryType, Rdata, Response, WireQuery,
};

/// The I/O and clock a resolver runs on. On a shard this is the ring; in tests, blocking
/// sockets and a fake clock.
pub trait DnsIo {
    /// A UDP socket connected to one nameserver.
    type Udp: AsyncDatagram;
    /// A TCP connection to one nameserver.
    type Tcp: AsyncStream;

    /// Opens a UDP socket connected to `server` (bound to an ephemeral port).
    fn connect_udp(&self, server: SocketAddr) -> impl Future<Output = io::Result<Self::Udp>>;

    /// Connects TCP to `server`.
    fn connect_tcp(&self, server: SocketAddr) -> impl Future<Output = io::Result<Self::Tcp>>;

    /// Runs `fut` for at most `limit`; `None` if the limit passed first (the future is
    /// then dropped, which cancels its I/O). An implementation whose sockets enforce
    /// the limit themselves may return `Some(fut.await)`: an I/O error of kind
    /// `TimedOut` or `WouldBlock` is also taken as the attempt timing out.
    fn timeout<F: Future>(
        &self,
        limit: Duration,
        fut: F,
    ) -> impl Future<Output = Option<F::Output>>;

    /// The current time, for the cache.
    fn now(&self) -> Instant;
}

/// Why a lookup failed.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("`{name}` is not a valid DNS name: {reason}")]
    InvalidName { name: String, reason: String },
    #[error("{name}: no such domain (NXDOMAIN)")]
    NxDomain { name: String },
    #[error("{name}: no {qtype:?} records")]
    NoData { name: String, qtype: QueryType },
    #[error("{name} {qtype:?}: no answer within {timeout:?} from any of {servers} server(s) in {attempts} round(s)")]
    Timeout {
        name: String,
        qtype: QueryType,
        timeout: Duration,
        servers: usize,
        attempts: u8,
    },
    #[error("{name} {qtype:?}: server {server} answered {rcode}")]
    ServerFailure {
        name: String,
        qtype: QueryType,
        server: SocketAddr,
        rcode: ResponseCode,
    },
    #[error("{name} {qtype:?}: I/O with {server}: {source}")]
    Io {
        name: String,
        qtype: QueryType,
        server: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("{name} {qtype:?}: unusable answer from {server}: {reason}")]
    BadAnswer {
        name: String,
        qtype: QueryType,
        server: SocketAddr,
        reason: String,
    },
    #[error("{name}: CNAME chain longer than {limit}")]
    CnameChain { name: String, limit: u8 },
    #[error("no nameserver configured")]
    NoNameservers,
}

impl ResolveError {
    /// `true` for an authoritative "does not exist" (NXDOMAIN or NODATA), as opposed to
    /// a failure to get an answer.
    pub fn is_negative(&self) -> bool {
        matches!(self, Self::NxDomain { .. } | Self::NoData { .. })
    }
}

impl From<QueryError> for ResolveError {
    fn from(e: QueryError) -> Self {
        match e {
            QueryError::InvalidName { name, reason } | QueryError::Encode { name, reason } => {
                Self::InvalidName { name, reason }
            }
        }
    }
}

/// A successful lookup: the records and the (canonical) name that owns them, which
/// differs from the name asked when a CNAME chain was followed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lookup {
    pub name: String,
    pub records: Vec<Rdata>,
}

/// Why one exchange with one server failed.
enum AttemptError {
    Timeout,
    Io(io::Error),
    Bad(String),
}

impl From<io::Error> for AttemptError {
    fn from(e: io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => Self::Timeout,
            _ => Self::Io(e),
        }
    }
}

/// What one response says about the name asked, after it has been cached.
enum Outcome {
    Records(Lookup),
    /// The answer ended in a CNAME whose target's records it did not carry.
    Alias(String),
    NxDomain(String),
    NoData(String),
}

/// What the cache says before the network is asked.
enum CacheWord {
    Answer(Result<Lookup, ResolveError>),
    Follow(String),
    Ask,
}

/// One shard's DNS resolver. See the module documentation.
pub struct Resolver<I: DnsIo> {
    io: I,
    config: ResolverConfig,
    hosts: Hosts,
    cache: RefCell<Cache>,
    /// SplitMix64 state for RFC 2782 weighted selection (not for query ids).
    rng_state: Cell<u64>,
}

impl<I: DnsIo> Resolver<I> {
    /// A resolver over `io` using `config`, with `hosts` consulted before DNS, the
    /// given (empty or warm) `cache`, and `seed` for SRV weighted selection
    /// ([`super::sip::entropy_seed`] in production, a constant in tests).
    pub fn new(io: I, config: ResolverConfig, hosts: Hosts, cache: Cache, seed: u64) -> Self {
        Self {
            io,
            config,
            hosts,
            cache: RefCell::new(cache),
            rng_state: Cell::new(seed),
        }
    }

    /// The I/O the resolver runs on (tests use it to move their fake clock).
    pub fn io(&self) -> &I {
        &self.io
    }

    /// The configuration in use.
    pub fn config(&self) -> &ResolverConfig {
        &self.config
    }

    /// The hosts table in use.
    pub fn hosts(&self) -> &Hosts {
        &self.hosts
    }

    /// Runs `f` on the cache (e.g. to read its counters or purge it). Must not be
    /// called re-entrantly from inside `f`.
    pub fn with_cache<R>(&self, f: impl FnOnce(&mut Cache) -> R) -> R {
        f(&mut self.cache.borrow_mut())
    }

    /// Next value of the resolver's SplitMix64 generator.
    pub(crate) fn next_random(&self) -> u64 {
        let mut rng = super::sip::SplitMix64::new(self.rng_state.get());
        let value = rng.next_u64();
        self.rng_state.set(rng.state());
        value
    }

    /// Looks up `qtype` records of `name`: the hosts table first (A/AAAA), then the
    /// cache, then the nameservers, applying the search list to relative names.
    pub async fn lookup(&self, name: &str, qtype: QueryType) -> Result<Lookup, ResolveError> {
        let canonical = normalize_name(name).ok_or_else(|| ResolveError::InvalidName {
            name: name.to_owned(),
            reason: "not a host name".to_owned(),
        })?;
        if let Some(answer) = self.lookup_hosts(&canonical, qtype) {
            return answer;
        }
        let absolute = name.ends_with('.');
        let query_name = if absolute {
            format!("{canonical}.")
        } else {
            canonical
        };
        let mut first_negative: Option<ResolveError> = None;
        for candidate in search_candidates(&query_name, &self.config) {
            match self.resolve_name(&candidate, qtype).await {
                Ok(found) => return Ok(found),
                Err(e) if e.is_negative() => {
                    if first_negative.is_none() {
                        first_negative = Some(e);
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Err(first_negative.unwrap_or(ResolveError::NoNameservers))
    }

    /// A and AAAA of `name`, IPv4 first. An IP literal (IPv6 with or without
    /// brackets) is returned as is. If the A query fails for want of an answer
    /// (time-out, server failure), AAAA is not asked and that error is returned; if
    /// neither gives an address, the more telling error is returned (a failure over
    /// NXDOMAIN/NODATA, else the A side's).
    pub async fn lookup_ip(&self, name: &str) -> Result<Vec<IpAddr>, ResolveError> {
        let literal = name
            .strip_prefix('[')
            .and_then(|n| n.strip_suffix(']'))
            .unwrap_or(name);
        if let Ok(ip) = literal.parse::<IpAddr>() {
            return Ok(vec![ip]);
        }
        let v4 = match self.lookup(name, QueryType::A).await {
            Err(e) if !e.is_negative() => return Err(e),
            other => other,
        };
        let v6 = self.lookup(name, QueryType::Aaaa).await;
        let mut out = Vec::new();
        for found in [&v4, &v6].into_iter().flatten() {
            out.extend(found.records.iter().filter_map(|r| match r {
                Rdata::A(a) => Some(IpAddr::V4(*a)),
                Rdata::Aaaa(a) => Some(IpAddr::V6(*a)),
                _ => None,
            }));
        }
        if !out.is_empty() {
            return Ok(out);
        }
        match (v4, v6) {
            (_, Err(e6)) if !e6.is_negative() => Err(e6),
            (Err(e4), _) => Err(e4),
            (Ok(_), Err(e6)) => Err(e6),
            // Both "succeeded" without an address: cannot happen (a Lookup always has
            // records of its type), reported as NODATA rather than trusted.
            (Ok(_), Ok(_)) => Err(ResolveError::NoData {
                name: name.to_owned(),
                qtype: QueryType::A,
            }),
        }
    }

    /// The hosts table's answer: a name it lists is answered from it alone (as the C
    /// library's `files` source does), NODATA for a family it has no address of.
    fn lookup_hosts(&self, name: &str, qtype: QueryType) -> Option<Result<Lookup, ResolveError>> {
        let listed = self.hosts.lookup(name);
        if listed.is_empty() || !matches!(qtype, QueryType::A | QueryType::Aaaa) {
            return None;
        }
        let records: Vec<Rdata> = listed
            .iter()
            .filter_map(|addr| match (addr, qtype) {
                (IpAddr::V4(a), QueryType::A) => Some(Rdata::A(*a)),
                (IpAddr::V6(a), QueryType::Aaaa) => Some(Rdata::Aaaa(*a)),
                _ => None,
            })
            .collect();
        Some(if records.is_empty() {
            Err(ResolveError::NoData {
                name: name.to_owned(),
                qtype,
            })
        } else {
            Ok(Lookup {
                name: name.to_owned(),
                records,
            })
        })
    }

    /// Resolves one fully-formed name, following CNAMEs through cache and network.
    async fn resolve_name(&self, name: &str, qtype: QueryType) -> Result<Lookup, ResolveError> {
        let mut current = name.trim_end_matches('.').to_owned();
        let limit = self.config.max_cname_chain;
        for _ in 0..=limit {
            match self.cached(&current, qtype) {
                CacheWord::Answer(answer) => return answer,
                CacheWord::Follow(target) => {
                    current = target;
                    continue;
                }
                CacheWord::Ask => {}
            }
            let response = self.query(&current, qtype).await?;
            match self.absorb(&current, qtype, &response) {
                Outcome::Records(found) => return Ok(found),
                Outcome::Alias(target) => current = target,
                Outcome::NxDomain(owner) => return Err(ResolveError::NxDomain { name: owner }),
                Outcome::NoData(owner) => return Err(ResolveError::NoData { name: owner, qtype }),
            }
        }
        Err(ResolveError::CnameChain {
            name: name.to_owned(),
            limit,
        })
    }

    /// The cache's word on `name`/`qtype`, including a cached CNAME to follow.
    fn cached(&self, name: &str, qtype: QueryType) -> CacheWord {
        let now = self.io.now();
        let mut cache = self.cache.borrow_mut();
        match cache.get(name, qtype, now) {
            Some(Cached::Records(records)) => {
                return CacheWord::Answer(Ok(Lookup {
                    name: name.to_owned(),
                    records: records.to_vec(),
                }))
            }
            Some(Cached::NxDomain) => {
                return CacheWord::Answer(Err(ResolveError::NxDomain {
                    name: name.to_owned(),
                }))
            }
            Some(Cached::NoData) => {
                return CacheWord::Answer(Err(ResolveError::NoData {
                    name: name.to_owned(),
                    qtype,
                }))
            }
            None => {}
        }
        if qtype == QueryType::Cname {
            return CacheWord::Ask;
        }
        match cache.get(name, QueryType::Cname, now) {
            Some(Cached::Records([Rdata::Cname(target)])) => CacheWord::Follow(target.clone()),
            _ => CacheWord::Ask,
        }
    }

    /// Asks the nameservers, `attempts` rounds over the list, until one gives a
    /// NOERROR or NXDOMAIN answer.
    async fn query(&self, name: &str, qtype: QueryType) -> Result<Response, ResolveError> {
        let qname = parse_name(name)?;
        let mut last: Option<ResolveError> = None;
        for _round in 0..self.config.attempts.max(1) {
            for &server in &self.config.nameservers {
                let query = build_query(random_id(), &qname, qtype, self.config.edns_payload)?;
                let error = match self.exchange(server, &query, &qname, qtype).await {
                    Ok(response) => match response.rcode {
                        ResponseCode::NoError | ResponseCode::NXDomain => return Ok(response),
                        rcode => ResolveError::ServerFailure {
                            name: name.to_owned(),
                            qtype,
                            server,
                            rcode,
                        },
                    },
                    Err(AttemptError::Timeout) => {
                        if last.is_some() {
                            // A more telling failure from another server wins.
                            continue;
                        }
                        ResolveError::Timeout {
                            name: name.to_owned(),
                            qtype,
                            timeout: self.config.timeout,
                            servers: self.config.nameservers.len(),
                            attempts: self.config.attempts,
                        }
                    }
                    Err(AttemptError::Io(source)) => ResolveError::Io {
                        name: name.to_owned(),
                        qtype,
                        server,
                        source,
                    },
                    Err(AttemptError::Bad(reason)) => ResolveError::BadAnswer {
                        name: name.to_owned(),
                        qtype,
                        server,
                        reason,
                    },
                };
                tracing::debug!(%error, "DNS attempt failed");
                last = Some(error);
            }
        }
        Err(last.unwrap_or(ResolveError::NoNameservers))
    }

    /// One query to one server: UDP, then TCP if the UDP answer is truncated. Each leg
    /// is bounded by the configured time-out.
    async fn exchange(
        &self,
        server: SocketAddr,
        query: &WireQuery,
        qname: &Name,
        qtype: QueryType,
    ) -> Result<Response, AttemptError> {
        let limit = self.config.timeout;
        let udp = self
            .io
            .timeout(limit, self.exchange_udp(server, query, qname, qtype))
            .await
            .ok_or(AttemptError::Timeout)??;
        if !udp.truncated {
            return Ok(udp);
        }
        tracing::debug!(%server, "truncated UDP answer, retrying over TCP");
        let query = build_query(random_id(), qname, qtype, self.config.edns_payload)
            .map_err(|e| AttemptError::Bad(e.to_string()))?;
        self.io
            .timeout(limit, self.exchange_tcp(server, &query, qname, qtype))
            .await
            .ok_or(AttemptError::Timeout)?
    }

    async fn exchange_udp(
        &self,
        server: SocketAddr,
        query: &WireQuery,
        qname: &Name,
        qtype: QueryType,
    ) -> Result<Response, AttemptError> {
        let mut socket = self.io.connect_udp(server).await?;
        socket.send(&query.bytes).await?;
        // Lenient: room for a server that overshoots our advertised payload size.
        let mut buf = vec![0u8; usize::from(self.config.edns_payload.max(4096))];
        loop {
            let len = socket.recv(&mut buf).await?;
            let Some(datagram) = buf.get(..len) else {
                return Err(AttemptError::Bad(format!(
                    "datagram length {len} over buffer"
                )));
            };
            match parse_response(datagram, query.id, qname, qtype) {
                Ok(response) => return Ok(response),
                // RFC 5452 §9.1: not ours (late, stray or forged); keep waiting.
                Err(AnswerError::Mismatch(why)) => {
                    tracing::debug!(%server, why, "ignoring non-matching DNS datagram");
                }
                Err(AnswerError::Malformed(why)) => {
                    tracing::debug!(%server, %why, "ignoring undecodable DNS datagram");
                }
            }
        }
    }

    async fn exchange_tcp(
        &self,
        server: SocketAddr,
        query: &WireQuery,
        qname: &Name,
        qtype: QueryType,
    ) -> Result<Response, AttemptError> {
        let mut stream = self.io.connect_tcp(server).await?;
        let len = u16::try_from(query.bytes.len())
            .map_err(|_| AttemptError::Bad("query over 65535 bytes".to_owned()))?;
        let mut framed = Vec::with_capacity(query.bytes.len() + 2);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(&query.bytes);
        stream.write_all(&framed).await?;
        let mut prefix = [0u8; 2];
        read_exact(&mut stream, &mut prefix).await?;
        let mut body = vec![0u8; usize::from(u16::from_be_bytes(prefix))];
        read_exact(&mut stream, &mut body).await?;
        // On TCP a non-matching answer is a broken server, not a stray datagram.
        parse_response(&body, query.id, qname, qtype).map_err(|e| AttemptError::Bad(e.to_string()))
    }

    /// Caches what `response` says about `qname`/`qtype` (and about the glue it
    /// carries for SRV/NAPTR targets) and says what it means for the lookup.
    fn absorb(&self, qname: &str, qtype: QueryType, response: &Response) -> Outcome {
        let now = self.io.now();
        let mut cache = self.cache.borrow_mut();
        let mut owner = qname.to_owned();
        let mut hops: u8 = 0;
        loop {
            let (records, ttl) = rrset(&response.answers, &owner, qtype);
            if !records.is_empty() {
                cache_glue(&mut cache, &records, &response.additionals, now);
                cache.insert_records(&owner, qtype, records.clone(), ttl, now);
                return Outcome::Records(Lookup {
                    name: owner,
                    records,
                });
            }
            if qtype == QueryType::Cname || hops >= self.config.max_cname_chain {
                break;
            }
            let alias = response.answers.iter().find_map(|r| match &r.data {
                Rdata::Cname(target) if r.owner == owner => Some((target.clone(), r.ttl)),
                _ => None,
            });
            let Some((target, ttl)) = alias else {
                break;
            };
            cache.insert_records(
                &owner,
                QueryType::Cname,
                vec![Rdata::Cname(target.clone())],
                ttl,
                now,
            );
            owner = target;
            hops += 1;
        }
        if response.rcode == ResponseCode::NXDomain {
            if let Some(ttl) = response.negative_ttl {
                cache.insert_nxdomain(&owner, ttl, now);
            }
            return Outcome::NxDomain(owner);
        }
        if owner != qname {
            return Outcome::Alias(owner);
        }
        // RFC 2308 §5: without an SOA a negative answer is not cached.
        if let Some(ttl) = response.negative_ttl {
            cache.insert_nodata(&owner, qtype, ttl, now);
        }
        Outcome::NoData(owner)
    }
}

/// The names to try for `name`, in order, per resolv.conf(5): an absolute name (trailing
/// dot) only as given; a name with at least `ndots` dots as given first, then with
/// each search domain; otherwise with each search domain first, as given last.
/// Returned names have no trailing dot; candidates over 253 octets are skipped.
pub fn search_candidates(name: &str, config: &ResolverConfig) -> Vec<String> {
    if name.ends_with('.') || config.search.is_empty() {
        return vec![name.trim_end_matches('.').to_owned()];
    }
    let dots = name.bytes().filter(|&b| b == b'.').count();
    let as_is_first = dots >= usize::from(config.ndots);
    let mut out = Vec::with_capacity(config.search.len() + 1);
    if as_is_first {
        out.push(name.to_owned());
    }
    for domain in &config.search {
        let joined = format!("{name}.{domain}");
        if joined.len() <= 253 {
            out.push(joined);
        }
    }
    if !as_is_first {
        out.push(name.to_owned());
    }
    out
}

/// The RRset of `owner`/`qtype` among `records`, and its TTL (the smallest, RFC 2181
/// §5.2).
fn rrset(records: &[AnswerRecord], owner: &str, qtype: QueryType) -> (Vec<Rdata>, u32) {
    let mut ttl = u32::MAX;
    let mut out = Vec::new();
    for record in records {
        if record.owner == owner && record.data.query_type() == qtype && !out.contains(&record.data)
        {
            ttl = ttl.min(record.ttl);
            out.push(record.data.clone());
        }
    }
    (out, ttl)
}

/// Caches the additional-section records that serve `answers`: SRV of NAPTR
/// replacements, A/AAAA of SRV targets (including SRV found as glue). Other additional
/// data is not trusted (RFC 2181 §5.4.1).
fn cache_glue(cache: &mut Cache, answers: &[Rdata], additionals: &[AnswerRecord], now: Instant) {
    let mut srv_glue = Vec::new();
    for answer in answers {
        match answer {
            Rdata::Naptr(naptr) if !naptr.replacement.is_empty() => {
                let (records, ttl) = rrset(additionals, &naptr.replacement, QueryType::Srv);
                srv_glue.extend(records.iter().cloned());
                cache.insert_records(&naptr.replacement, QueryType::Srv, records, ttl, now);
            }
            _ => {}
        }
    }
    for answer in answers.iter().chain(&srv_glue) {
        let Rdata::Srv(srv) = answer else {
            continue;
        };
        if srv.target.is_empty() {
            continue;
        }
        for qtype in [QueryType::A, QueryType::Aaaa] {
            let (records, ttl) = rrset(additionals, &srv.target, qtype);
            cache.insert_records(&srv.target, qtype, records, ttl, now);
        }
    }
}

async fn read_exact<S: AsyncStream>(
    stream: &mut S,
    mut buf: &mut [u8],
) -> Result<(), AttemptError> {
    while !buf.is_empty() {
        let n = stream.read(buf).await?;
        if n == 0 {
            return Err(AttemptError::Bad(
                "TCP connection closed mid-answer".to_owned(),
            ));
        }
        buf = buf
            .get_mut(n..)
            .ok_or_else(|| AttemptError::Bad("read past buffer".to_owned()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_list_order_follows_ndots() {
        let mut config = ResolverConfig::default();
        assert_eq!(search_candidates("pbx", &config), ["pbx"]);
        config.search = vec!["corp.example".into(), "example".into()];
        config.ndots = 1;
        assert_eq!(
            search_candidates("pbx", &config),
            ["pbx.corp.example", "pbx.example", "pbx"]
        );
        assert_eq!(
            search_candidates("pbx.site", &config),
            ["pbx.site", "pbx.site.corp.example", "pbx.site.example"]
        );
        assert_eq!(search_candidates("pbx.site.", &config), ["pbx.site"]);
        config.ndots = 2;
        assert_eq!(
            search_candidates("pbx.site", &config),
            ["pbx.site.corp.example", "pbx.site.example", "pbx.site"]
        );
    }

    #[test]
    fn glue_is_cached_only_for_answer_targets() {
        let now = Instant::now();
        let mut cache = Cache::new(16);
        let glue = |owner: &str, data: Rdata| AnswerRecord {
            owner: owner.into(),
            ttl: 60,
            data,
        };
        let naptr = Rdata::Naptr(super::super::message::Naptr {
            order: 10,
            preference: 10,
            flags: "s".into(),
            services: "sip+d2u".into(),
            replacement: "_sip._udp.example".into(),
        });
        let srv = super::super::message::Srv {
            priority: 0,
            weight: 0,
            port: 5060,
            target: "pbx.example".into(),
        };
        let additionals = [
            glue("_sip._udp.example", Rdata::Srv(srv.clone())),
            glue("pbx.example", Rdata::A("192.0.2.1".parse().unwrap())),
            glue("victim.example", Rdata::A("203.0.113.1".parse().unwrap())),
        ];
        cache_glue(&mut cache, &[naptr], &additionals, now);
        assert_eq!(
            cache.get("_sip._udp.example", QueryType::Srv, now),
            Some(Cached::Records(&[Rdata::Srv(srv)]))
        );
        assert!(cache.get("pbx.example", QueryType::A, now).is_some());
        assert_eq!(cache.get("victim.example", QueryType::A, now), None);
    }
}
