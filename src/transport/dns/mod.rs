//! DNS resolver for next-hop resolution (RFC 1035 stub resolution, RFC 2308 negative
//! caching, RFC 2782 SRV, RFC 3263 locating SIP servers), written against the `cores`
//! I/O traits so it runs on a shard's ring and, in tests, on blocking sockets.
//!
//! Layout, one concern per file:
//! - [`conf`]: resolv.conf(5) and hosts(5) parsing, [`ResolverConfig`], [`Hosts`].
//! - [`message`]: query building and answer checking/decoding (`hickory-proto`).
//! - [`cache`]: the per-shard TTL cache (sans-io, takes `now`).
//! - [`resolver`]: [`Resolver`] — retries, UDP→TCP fallback, CNAME chains, search list.
//! - [`sip`]: RFC 3263 §4 next-hop selection ([`Resolver::resolve_sip`]).
//!
//! Nothing here calls getaddrinfo or blocks a shard; the only blocking calls are
//! [`conf::read_resolv_conf`] / [`conf::read_hosts`], for start-up.

pub mod cache;
pub mod conf;
pub mod message;
pub mod resolver;
pub mod ring;
pub mod sip;

pub use cache::{Cache, CacheStats, Cached};
pub use conf::{
    parse_hosts, parse_resolv_conf, read_hosts, read_resolv_conf, Hosts, HostsError,
    ResolvConfError, ResolverConfig, SystemConfigError,
};
pub use message::{Naptr, QueryType, Rdata, Srv};
pub use resolver::{search_candidates, DnsIo, Lookup, ResolveError, Resolver};
pub use sip::{
    entropy_seed, naptr_services, order_srv, NextHop, SipResolveError, SipTarget, SipTransport,
    SplitMix64, SrvRandom,
};
