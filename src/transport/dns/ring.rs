//! The resolver on a shard's ring: [`RingDnsIo`] implements [`DnsIo`] with `cores`
//! sockets, timer wheel and cached clock, and [`ring_resolver`] builds one shard's
//! [`Resolver`] from the system configuration read once at start-up
//! ([`SystemDnsConfig`]: resolv.conf(5) and hosts(5)).
//!
//! Owns nothing but the glue: the protocol (RFC 1035 stub resolution, RFC 7766 TCP
//! fallback, RFC 2308 negative caching, RFC 3263 next hops) lives in [`super::resolver`]
//! and [`super::sip`].
//!
//! Invariants: no getaddrinfo and no blocking call once a shard runs — the only blocking
//! reads are in [`SystemDnsConfig::read`], which runs before the shards start and whose
//! result (`Send + Clone`) is handed to each shard's set-up. A [`RingResolver`] belongs
//! to one shard (`Rc`, `!Send`); its tasks may run lookups concurrently.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

use cores::{ConnectedUdp, TcpStream};

use super::cache::Cache;
use super::conf::{read_hosts, read_resolv_conf, Hosts, ResolverConfig, SystemConfigError};
use super::resolver::{DnsIo, Resolver};
use super::sip::entropy_seed;

/// Where the system configuration lives.
pub const RESOLV_CONF_PATH: &str = "/etc/resolv.conf";
/// Where the static host table lives.
pub const HOSTS_PATH: &str = "/etc/hosts";

/// Environment variable naming another resolv.conf(5) file.
pub const RESOLV_CONF_ENV: &str = "RINGSIP_RESOLV_CONF";
/// Environment variable naming another hosts(5) file.
pub const HOSTS_ENV: &str = "RINGSIP_HOSTS";
/// Environment variable giving the nameservers' port (default 53).
pub const DNS_PORT_ENV: &str = "RINGSIP_DNS_PORT";

/// Entries of a shard's DNS cache unless the caller says otherwise.
pub const DEFAULT_CACHE_CAPACITY: usize = 4096;

/// DNS I/O on the current shard: connected UDP and TCP sockets on the ring, time-outs
/// on the shard's timer wheel, the shard's cached clock. Must be used on a shard thread.
#[derive(Clone, Copy, Debug)]
pub struct RingDnsIo {
    /// Bound on a TCP connect to a nameserver (the resolver also bounds the whole leg
    /// with its per-query time-out).
    pub tcp_connect_timeout: Duration,
}

impl DnsIo for RingDnsIo {
    type Udp = ConnectedUdp;
    type Tcp = TcpStream;

    fn connect_udp(&self, server: SocketAddr) -> impl Future<Output = io::Result<ConnectedUdp>> {
        // Binding and connecting a UDP socket does no network I/O and never blocks.
        std::future::ready(ConnectedUdp::connect(server))
    }

    fn connect_tcp(&self, server: SocketAddr) -> impl Future<Output = io::Result<TcpStream>> {
        TcpStream::connect(server, self.tcp_connect_timeout)
    }

    async fn timeout<F: Future>(&self, limit: Duration, fut: F) -> Option<F::Output> {
        cores::timeout(limit, fut).await.ok()
    }

    fn now(&self) -> Instant {
        cores::now()
    }
}

/// One shard's resolver.
pub type RingResolver = Resolver<RingDnsIo>;

/// The system resolver configuration, read once before the shards start and cloned
/// into each shard.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SystemDnsConfig {
    pub config: ResolverConfig,
    pub hosts: Hosts,
}

impl SystemDnsConfig {
    /// Reads `/etc/resolv.conf` and `/etc/hosts` (blocking: start-up only). A missing
    /// file gives the C library's defaults (nameserver 127.0.0.1, no hosts).
    ///
    /// The environment may point elsewhere (tests, or a local resolver on another
    /// port): [`RESOLV_CONF_ENV`] and [`HOSTS_ENV`] name other files, and
    /// [`DNS_PORT_ENV`] replaces port 53 of every nameserver (resolv.conf(5) has no
    /// port syntax).
    pub fn read() -> Result<SystemDnsConfig, SystemConfigError> {
        let resolv = std::env::var_os(RESOLV_CONF_ENV);
        let hosts = std::env::var_os(HOSTS_ENV);
        let mut system = Self::read_from(
            resolv
                .as_deref()
                .map_or(Path::new(RESOLV_CONF_PATH), Path::new),
            hosts.as_deref().map_or(Path::new(HOSTS_PATH), Path::new),
        )?;
        if let Some(port) = std::env::var_os(DNS_PORT_ENV) {
            let port = port.to_str().and_then(|p| p.parse::<u16>().ok()).ok_or(
                SystemConfigError::Read {
                    path: DNS_PORT_ENV.to_owned(),
                    source: io::Error::new(io::ErrorKind::InvalidInput, "not a port number"),
                },
            )?;
            for server in &mut system.config.nameservers {
                server.set_port(port);
            }
        }
        Ok(system)
    }

    /// Reads the given files (blocking: start-up only).
    pub fn read_from(
        resolv_conf: &Path,
        hosts: &Path,
    ) -> Result<SystemDnsConfig, SystemConfigError> {
        Ok(SystemDnsConfig {
            config: read_resolv_conf(resolv_conf)?,
            hosts: read_hosts(hosts)?,
        })
    }
}

/// Builds this shard's resolver from `system` with a cache of `cache_capacity`
/// entries and a fresh SRV-selection seed. Call on the shard (in its set-up or a task).
pub fn ring_resolver(system: &SystemDnsConfig, cache_capacity: usize) -> Rc<RingResolver> {
    let io = RingDnsIo {
        tcp_connect_timeout: system.config.timeout,
    };
    Rc::new(Resolver::new(
        io,
        system.config.clone(),
        system.hosts.clone(),
        Cache::new(cache_capacity),
        entropy_seed(),
    ))
}
