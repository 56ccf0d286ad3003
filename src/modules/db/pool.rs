//! The per-shard SQL connection pool: one [`DbPool`] per shard per `db_url`, behind an
//! `Rc`, never shared across threads.
//!
//! Owns: the shard's connections to one database server, the bounded queue of queries
//! waiting for a connection, the reconnect back-off state and the pool's counters.
//!
//! Invariants:
//! - At most `pool_size` connections exist (open, lent out or being opened): `slots`
//!   counts them and is decremented exactly once per connection, by whichever guard
//!   ([`Lease`], [`SlotGuard`], a dropped waiter holding a grant) owns it last.
//! - At most `max_queued_queries` calls wait for a connection; past that a call fails at
//!   once with [`PoolError::QueueFull`].
//! - A connection goes back to the pool only while [`DbConn::is_usable`]; a query whose
//!   future is dropped (time-out) leaves its connection unusable, so it is discarded.
//! - A freed connection or slot is handed directly to the oldest waiter (FIFO), so a
//!   newcomer never overtakes a queued call.
//! - After a failed connect (including a host name that did not resolve) the pool is
//!   "down" for a back-off delay (doubling from `reconnect_interval_min` up to
//!   `reconnect_interval_max`): calls that would need a new connection fail at once with
//!   [`PoolError::Down`]; the first call after the delay tries again, and a successful
//!   connect resets the delay.
//! - Failed queries are never retried: the drivers cannot tell whether a statement reached
//!   the server before the connection broke, and a statement may not be idempotent.
//!   Instead, a connection idle for longer than `ping_interval` is pinged before reuse,
//!   and discarded (the call moves on to another one) if the ping fails.
//! - Nothing here blocks the shard: a host name is resolved by the shard's own resolver
//!   ([`RingResolver`]: hosts file, cache, DNS on the ring), never by getaddrinfo.
//!
//! The query time-out bounds the whole call (queue wait, connect, query). Connecting runs
//! in a task of its own, bounded by the connect time-out only: a caller that gives up
//! does not abort it, so a black-holed server still leads to back-off, and a connection
//! that completes late serves the next call.
//!
//! The `db_url` host ([`DbHost`]): an IP literal or `localhost` (127.0.0.1) is fixed at
//! creation and connected to without a lookup. A host name is resolved at every connect
//! (never at creation, so a name that does not resolve yet is no start-up failure, and a
//! changed record is picked up by the next connect once the resolver's cached answer
//! expires): IPv4 addresses first, then IPv6 ([`RingResolver::lookup_ip`]: A, then
//! AAAA; a name in the hosts file is answered from it alone), at most
//! [`MAX_CONNECT_ADDRESSES`] of them. Resolution counts against the connect time-out.
//! The addresses are tried in that order until a TCP connect succeeds, each within an
//! equal share of the time left (the last one gets all of it), so a black-holed first
//! address still leaves time for the next; a failed database handshake ends the attempt.
//! A name that does not resolve (NXDOMAIN, no address records, DNS time-out) is a failed
//! connect: [`PoolError::Resolve`] / [`PoolError::ResolveTimeout`], logged with the host,
//! and the back-off starts.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use cores::TcpStream;

use super::{DbConn, DbError, DbLimits, DbUrl, QueryResult};
use crate::transport::dns::conf::normalize_name;
use crate::transport::dns::ring::RingResolver;
use crate::transport::dns::ResolveError;

/// The most addresses of a host name one connect attempt tries, in resolver order.
pub const MAX_CONNECT_ADDRESSES: usize = 4;

/// Pool parameters (module parameters; defaults as documented per field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DbPoolConfig {
    /// Connections per shard (default 4).
    pub pool_size: usize,
    /// Bound on TCP connect plus handshake/authentication (default 2 s).
    pub connect_timeout: Duration,
    /// Default bound on a whole query call: queue wait, connect and the query itself
    /// (default 2 s); [`DbPool::query`] may override it per call.
    pub query_timeout: Duration,
    /// Calls that may wait for a busy connection (default 64); 0 means none may wait.
    pub max_queued_queries: usize,
    /// First reconnect back-off after a failed connect (default 100 ms).
    pub reconnect_interval_min: Duration,
    /// Back-off cap (default 5 s).
    pub reconnect_interval_max: Duration,
    /// An idle connection unused for longer than this is pinged before it is lent out
    /// (default 300 s, as OpenSIPS db_mysql `ping_interval`); if the ping fails it is
    /// discarded and the call takes another connection. Nothing of the query has been
    /// sent then, so this is the one case where a broken connection costs no failure.
    pub ping_interval: Duration,
    /// Result bounds for every connection.
    pub limits: DbLimits,
}

impl Default for DbPoolConfig {
    fn default() -> Self {
        DbPoolConfig {
            pool_size: 4,
            connect_timeout: Duration::from_secs(2),
            query_timeout: Duration::from_secs(2),
            max_queued_queries: 64,
            reconnect_interval_min: Duration::from_millis(100),
            reconnect_interval_max: Duration::from_secs(5),
            ping_interval: Duration::from_secs(300),
            limits: DbLimits::default(),
        }
    }
}

/// Why a pool call failed.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// The configuration is unusable (checked by [`DbPool::new`]).
    #[error("invalid db pool configuration: {0}")]
    Config(&'static str),
    /// The `db_url` host is neither an IP address nor a valid host name.
    #[error("db_url host {0:?} is neither an IP address nor a valid host name")]
    InvalidHost(String),
    /// The `db_url` host is a name and the pool was created without a resolver
    /// ([`DbPool::new`] instead of [`DbPool::with_resolver`]).
    #[error("db_url host {0:?} is a name, and this pool has no resolver")]
    NoResolver(String),
    /// Every connection is busy and `limit` calls already wait.
    #[error("db pool queue full ({limit} queries already waiting for a connection)")]
    QueueFull {
        /// The `max_queued_queries` bound.
        limit: usize,
    },
    /// A recent connect failed and the back-off delay has not passed.
    #[error("database {server} is down (next connect attempt in {retry_in:?}): {last_error}")]
    Down {
        /// The server, `host:port` as the `db_url` gives it.
        server: String,
        /// Time until the pool tries to connect again.
        retry_in: Duration,
        /// The error of the last failed connect.
        last_error: String,
    },
    /// The host name did not resolve: NXDOMAIN, no A/AAAA records, or the resolver's
    /// own failure (time-out, SERVFAIL, no nameserver...).
    #[error("database host {host:?} did not resolve: {source}")]
    Resolve {
        /// The `db_url` host.
        host: String,
        /// The resolver's error.
        source: ResolveError,
    },
    /// Resolving the host name used up the whole connect time-out.
    #[error("database host {host:?} did not resolve within the connect time-out ({timeout:?})")]
    ResolveTimeout {
        /// The `db_url` host.
        host: String,
        /// The connect time-out.
        timeout: Duration,
    },
    /// TCP connect plus handshake did not finish within the connect time-out (or the
    /// TCP connect to one of several addresses within its share of it).
    #[error("connecting to database {addr} timed out after {timeout:?}")]
    ConnectTimeout {
        /// The server address.
        addr: SocketAddr,
        /// The time allowed.
        timeout: Duration,
    },
    /// The TCP connect failed (e.g. refused).
    #[error("connecting to database {addr}: {source}")]
    Connect {
        /// The server address.
        addr: SocketAddr,
        /// The kernel's error.
        source: io::Error,
    },
    /// The start-up handshake or authentication failed.
    #[error("database handshake with {addr} failed: {source}")]
    Handshake {
        /// The server address.
        addr: SocketAddr,
        /// The driver's error.
        source: DbError,
    },
    /// The call did not complete within its query time-out.
    #[error("database query timed out after {0:?}")]
    Timeout(Duration),
    /// The query itself failed (server error, broken connection, result too large...).
    #[error(transparent)]
    Query(DbError),
}

/// A snapshot of a pool's counters ([`DbPool::stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Calls of [`DbPool::query`] in progress (queued, connecting or querying).
    pub in_flight: usize,
    /// Calls waiting for a connection.
    pub queued: usize,
    /// Connections open (idle or running a query).
    pub open: usize,
    /// Of which idle.
    pub idle: usize,
    /// Connections being opened.
    pub connecting: usize,
    /// Successful connects (since creation).
    pub connects: u64,
    /// Failed connects (refused, timed out, handshake failed, host name unresolved).
    pub connect_failures: u64,
    /// Of which the host name did not resolve.
    pub resolve_failures: u64,
    /// Calls that hit their query time-out.
    pub timeouts: u64,
    /// Calls refused because the queue was full.
    pub queue_full: u64,
    /// Calls refused at once during reconnect back-off.
    pub down_rejections: u64,
    /// Connections discarded as unusable (broken, timed out mid-query).
    pub discarded: u64,
    /// Queries sent to a server (successful or not).
    pub queries: u64,
    /// Pings of long-idle connections before reuse.
    pub pings: u64,
    /// Of which failed (the connection was discarded).
    pub ping_failures: u64,
}

/// What a freed connection or slot becomes for the oldest waiter.
// A Grant lives only from a release to the waiter's next poll; boxing the connection
// would add an allocation per connect for nothing.
#[allow(clippy::large_enum_variant)]
enum Grant {
    /// An idle, usable connection.
    Conn(DbConn<TcpStream>),
    /// Permission to open a connection (the slot is already counted).
    Slot,
}

#[derive(Default)]
struct Waiter {
    grant: Option<Grant>,
    waker: Option<Waker>,
}

struct DownState {
    until: Instant,
    last_error: String,
}

/// A connection waiting in the pool, and since when.
struct IdleConn {
    conn: DbConn<TcpStream>,
    since: Instant,
}

struct State {
    idle: Vec<IdleConn>,
    /// Connections open, lent out or being opened; `<= pool_size`.
    slots: usize,
    connecting: usize,
    waiters: VecDeque<Rc<RefCell<Waiter>>>,
    down: Option<DownState>,
    next_backoff: Duration,
    stats: PoolStats,
}

/// A `db_url` host, classified once when the pool is created (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbHost {
    /// An IP literal, or `localhost` (127.0.0.1): connected to without a lookup.
    Addr(IpAddr),
    /// A host name, as written (a trailing dot makes it absolute: no search list),
    /// resolved at every connect.
    Name(String),
}

impl DbHost {
    /// Classifies `host` (IPv6 without brackets, as [`DbUrl`] keeps it); a host that is
    /// neither an address nor a syntactically valid name is [`PoolError::InvalidHost`].
    pub fn parse(host: &str) -> Result<DbHost, PoolError> {
        if host.eq_ignore_ascii_case("localhost") {
            return Ok(DbHost::Addr(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        }
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(DbHost::Addr(ip));
        }
        match normalize_name(host) {
            Some(_) => Ok(DbHost::Name(host.to_owned())),
            None => Err(PoolError::InvalidHost(host.to_owned())),
        }
    }
}

/// Where a pool's connections go.
enum Target {
    /// Fixed at creation.
    Addr(SocketAddr),
    /// Resolved at every connect by the shard's resolver.
    Name {
        host: String,
        resolver: Rc<RingResolver>,
    },
}

/// How far one connect attempt got (to say what an expired connect time-out cut short).
#[derive(Clone, Copy)]
enum Phase {
    Resolving,
    Connecting(SocketAddr),
}

/// A per-shard pool of connections to one database (see the module docs).
pub struct DbPool {
    url: DbUrl,
    target: Target,
    /// `host:port` for errors and logs.
    server: String,
    config: DbPoolConfig,
    state: RefCell<State>,
}

impl DbPool {
    /// Checks `config` and returns an empty pool for a URL whose host is an IP address
    /// or `localhost` (connections are opened lazily by [`DbPool::query`]). A host name
    /// needs [`DbPool::with_resolver`]; here it is [`PoolError::NoResolver`].
    pub fn new(url: DbUrl, config: DbPoolConfig) -> Result<Rc<DbPool>, PoolError> {
        match DbHost::parse(&url.host)? {
            DbHost::Addr(ip) => {
                let addr = SocketAddr::new(ip, url.port);
                Self::build(url, Target::Addr(addr), config)
            }
            DbHost::Name(host) => Err(PoolError::NoResolver(host)),
        }
    }

    /// As [`DbPool::new`], and a host name is resolved by `resolver` (the shard's, see
    /// [`crate::proxy::nexthop::shard_resolver`]) each time a connection is opened. The
    /// name is not looked up here: a name that does not resolve yet is no error until a
    /// query needs a connection.
    pub fn with_resolver(
        url: DbUrl,
        config: DbPoolConfig,
        resolver: Rc<RingResolver>,
    ) -> Result<Rc<DbPool>, PoolError> {
        let target = match DbHost::parse(&url.host)? {
            DbHost::Addr(ip) => Target::Addr(SocketAddr::new(ip, url.port)),
            DbHost::Name(host) => Target::Name { host, resolver },
        };
        Self::build(url, target, config)
    }

    fn build(url: DbUrl, target: Target, config: DbPoolConfig) -> Result<Rc<DbPool>, PoolError> {
        if config.pool_size == 0 {
            return Err(PoolError::Config("pool_size must be at least 1"));
        }
        if config.connect_timeout.is_zero() || config.query_timeout.is_zero() {
            return Err(PoolError::Config("time-outs must be greater than zero"));
        }
        if config.reconnect_interval_min.is_zero()
            || config.reconnect_interval_min > config.reconnect_interval_max
        {
            return Err(PoolError::Config(
                "reconnect_interval_min must be > 0 and <= reconnect_interval_max",
            ));
        }
        let server = match &target {
            Target::Addr(addr) => addr.to_string(),
            Target::Name { host, .. } => format!("{host}:{}", url.port),
        };
        Ok(Rc::new(DbPool {
            url,
            target,
            server,
            config,
            state: RefCell::new(State {
                idle: Vec::with_capacity(config.pool_size),
                slots: 0,
                connecting: 0,
                waiters: VecDeque::new(),
                down: None,
                next_backoff: config.reconnect_interval_min,
                stats: PoolStats::default(),
            }),
        }))
    }

    /// The database URL this pool connects to.
    pub fn url(&self) -> &DbUrl {
        &self.url
    }

    /// The server connections go to, `host:port` (the address for an IP literal, the
    /// name as the `db_url` writes it otherwise).
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The pool's parameters.
    pub fn config(&self) -> &DbPoolConfig {
        &self.config
    }

    /// The current counters.
    pub fn stats(&self) -> PoolStats {
        let st = self.state.borrow();
        let mut s = st.stats;
        s.queued = st.waiters.len();
        s.idle = st.idle.len();
        s.connecting = st.connecting;
        s.open = st.slots.saturating_sub(st.connecting);
        s
    }

    /// Runs one statement on a pooled connection. With `params` empty the SQL goes as a
    /// plain text query; otherwise as a parameterized statement (`?` for MySQL, `$n` for
    /// PostgreSQL; `None` is NULL). `timeout` overrides the configured query time-out and
    /// bounds the whole call.
    ///
    /// The future owns its arguments and a handle to the pool, so it is `'static` and may
    /// be given to `cores::spawn_local`. Dropping it releases everything it holds.
    pub fn query(
        self: &Rc<Self>,
        sql: impl Into<Rc<str>>,
        params: Vec<Option<Vec<u8>>>,
        timeout: Option<Duration>,
    ) -> impl Future<Output = Result<QueryResult, PoolError>> + 'static {
        let pool = Rc::clone(self);
        let sql: Rc<str> = sql.into();
        async move {
            let _in_flight = InFlight::enter(&pool);
            let limit = timeout.unwrap_or(pool.config.query_timeout);
            match cores::timeout(limit, pool.run(&sql, &params)).await {
                Ok(r) => r,
                Err(_elapsed) => {
                    pool.state.borrow_mut().stats.timeouts += 1;
                    Err(PoolError::Timeout(limit))
                }
            }
        }
    }

    async fn run(
        self: &Rc<Self>,
        sql: &str,
        params: &[Option<Vec<u8>>],
    ) -> Result<QueryResult, PoolError> {
        let mut lease = self.acquire().await?;
        let Some(conn) = lease.conn.as_mut() else {
            debug_assert!(false, "a lease always holds a connection until dropped");
            return Err(PoolError::Query(DbError::Unusable));
        };
        self.state.borrow_mut().stats.queries += 1;
        let r = if params.is_empty() {
            conn.query(sql).await
        } else {
            let refs: Vec<Option<&[u8]>> = params.iter().map(|p| p.as_deref()).collect();
            conn.query_params(sql, &refs).await
        };
        // The lease returns or discards the connection by its usability.
        drop(lease);
        r.map_err(PoolError::Query)
    }

    /// The error for a call that needs a new connection during back-off, if any.
    fn down_error(&self, st: &mut State) -> Option<PoolError> {
        let down = st.down.as_ref()?;
        let now = cores::now();
        if now >= down.until {
            return None;
        }
        let err = PoolError::Down {
            server: self.server.clone(),
            retry_in: down.until.saturating_duration_since(now),
            last_error: down.last_error.clone(),
        };
        st.stats.down_rejections += 1;
        Some(err)
    }

    async fn acquire(self: &Rc<Self>) -> Result<Lease, PoolError> {
        #[allow(clippy::large_enum_variant)] // short-lived, moved once
        enum Step {
            Idle(IdleConn),
            Connect,
            Wait(Rc<RefCell<Waiter>>),
        }
        loop {
            let step = {
                let mut st = self.state.borrow_mut();
                if let Some(c) = st.idle.pop() {
                    Step::Idle(c)
                } else if st.slots < self.config.pool_size {
                    if let Some(e) = self.down_error(&mut st) {
                        return Err(e);
                    }
                    st.slots += 1;
                    Step::Connect
                } else if st.waiters.len() < self.config.max_queued_queries {
                    let w = Rc::new(RefCell::new(Waiter::default()));
                    st.waiters.push_back(Rc::clone(&w));
                    Step::Wait(w)
                } else {
                    st.stats.queue_full += 1;
                    return Err(PoolError::QueueFull {
                        limit: self.config.max_queued_queries,
                    });
                }
            };
            return match step {
                Step::Idle(idle) => {
                    let mut lease = Lease::new(self, idle.conn);
                    let idle_for = cores::now().saturating_duration_since(idle.since);
                    if idle_for <= self.config.ping_interval {
                        return Ok(lease);
                    }
                    self.state.borrow_mut().stats.pings += 1;
                    let alive = match lease.conn.as_mut() {
                        Some(c) => c.ping().await.is_ok(),
                        None => false,
                    };
                    if alive {
                        return Ok(lease);
                    }
                    self.state.borrow_mut().stats.ping_failures += 1;
                    lease.discard();
                    continue;
                }
                Step::Connect => self.open_detached(SlotGuard::new(self)).await,
                Step::Wait(w) => {
                    let turn = Turn {
                        pool: Rc::clone(self),
                        waiter: w,
                    };
                    match turn.await {
                        Grant::Conn(c) => Ok(Lease::new(self, c)),
                        Grant::Slot => {
                            let slot = SlotGuard::new(self);
                            let down = self.down_error(&mut self.state.borrow_mut());
                            if let Some(e) = down {
                                // Dropping the slot passes it on: the next waiter fails the same way.
                                drop(slot);
                                return Err(e);
                            }
                            self.open_detached(slot).await
                        }
                    }
                }
            };
        }
    }

    /// Opens a connection into `slot` in a task of its own, so that a caller giving up
    /// (query time-out) does not abort it: the connect still ends by its own time-out,
    /// a failure still starts the back-off, and a success goes to the pool (to a waiter
    /// or the idle list) when the caller is gone.
    async fn open_detached(self: &Rc<Self>, slot: SlotGuard) -> Result<Lease, PoolError> {
        let pool = Rc::clone(self);
        let connecting = Connecting::enter(self);
        cores::spawn_local(async move { pool.open(slot, connecting).await }).await
    }

    /// Opens a connection into the reserved `slot`.
    /// `_connecting` counts the attempt until it ends.
    async fn open(
        self: &Rc<Self>,
        slot: SlotGuard,
        _connecting: Connecting,
    ) -> Result<Lease, PoolError> {
        let limit = self.config.connect_timeout;
        let phase = Cell::new(Phase::Resolving);
        let r = match cores::timeout(limit, self.connect(&phase)).await {
            Ok(r) => r,
            Err(_) => Err(match (phase.get(), &self.target) {
                (Phase::Resolving, Target::Name { host, .. }) => PoolError::ResolveTimeout {
                    host: host.clone(),
                    timeout: limit,
                },
                (Phase::Connecting(addr), _) | (Phase::Resolving, &Target::Addr(addr)) => {
                    PoolError::ConnectTimeout {
                        addr,
                        timeout: limit,
                    }
                }
            }),
        };
        match r {
            Ok(conn) => {
                {
                    let mut st = self.state.borrow_mut();
                    st.stats.connects += 1;
                    st.down = None;
                    st.next_backoff = self.config.reconnect_interval_min;
                }
                Ok(slot.into_lease(conn))
            }
            Err(e) => {
                {
                    let mut st = self.state.borrow_mut();
                    st.stats.connect_failures += 1;
                    if matches!(
                        e,
                        PoolError::Resolve { .. } | PoolError::ResolveTimeout { .. }
                    ) {
                        st.stats.resolve_failures += 1;
                    }
                    let delay = st.next_backoff;
                    st.next_backoff = delay
                        .saturating_mul(2)
                        .min(self.config.reconnect_interval_max);
                    let now = cores::now();
                    st.down = Some(DownState {
                        until: now.checked_add(delay).unwrap_or(now),
                        last_error: e.to_string(),
                    });
                }
                tracing::warn!(server = %self.server, error = %e, "db connect failed");
                // Dropping `slot` hands it to the next waiter, which then sees `down`.
                drop(slot);
                Err(e)
            }
        }
    }

    /// One connect attempt, unbounded here (the caller bounds it by the connect
    /// time-out): resolve the host if it is a name, TCP connect to the first address
    /// that accepts, then the database handshake. `phase` says how far it got.
    async fn connect(&self, phase: &Cell<Phase>) -> Result<DbConn<TcpStream>, PoolError> {
        // Resolution counts against the connect time-out, as the caller's bound does.
        let deadline = cores::now().checked_add(self.config.connect_timeout);
        let port = self.url.port;
        let addrs: Vec<SocketAddr> = match &self.target {
            Target::Addr(addr) => vec![*addr],
            Target::Name { host, resolver } => {
                let ips = resolver
                    .lookup_ip(host)
                    .await
                    .map_err(|source| PoolError::Resolve {
                        host: host.clone(),
                        source,
                    })?;
                ips.into_iter()
                    .take(MAX_CONNECT_ADDRESSES)
                    .map(|ip| SocketAddr::new(ip, port))
                    .collect()
            }
        };
        let mut last: Option<PoolError> = None;
        for (i, &addr) in addrs.iter().enumerate() {
            phase.set(Phase::Connecting(addr));
            // An equal share of the time left for each address still to try; the
            // caller's bound cuts the last one (and the handshake) short anyway.
            let left = deadline.map_or(self.config.connect_timeout, |d| {
                d.saturating_duration_since(cores::now())
            });
            let still = u32::try_from(addrs.len() - i).unwrap_or(u32::MAX).max(1);
            let share = left / still;
            match TcpStream::connect(addr, share).await {
                Ok(stream) => {
                    // Queries are small request/response exchanges: do not delay them.
                    let _ = stream.set_nodelay(true);
                    return DbConn::connect_with(stream, &self.url, self.config.limits)
                        .await
                        .map_err(|source| PoolError::Handshake { addr, source });
                }
                Err(e) => {
                    let e = if e.kind() == io::ErrorKind::TimedOut {
                        PoolError::ConnectTimeout {
                            addr,
                            timeout: share,
                        }
                    } else {
                        PoolError::Connect { addr, source: e }
                    };
                    if i + 1 < addrs.len() {
                        tracing::info!(server = %self.server, error = %e, "db connect failed, trying the next address");
                    }
                    last = Some(e);
                }
            }
        }
        // `lookup_ip` never returns an empty list; should it, that is a failed lookup.
        Err(last.unwrap_or_else(|| PoolError::Resolve {
            host: self.url.host.clone(),
            source: ResolveError::NoData {
                name: self.url.host.clone(),
                qtype: crate::transport::dns::QueryType::A,
            },
        }))
    }

    /// Takes back a connection: to the oldest waiter, to the idle list, or discarded.
    fn put_back(&self, conn: DbConn<TcpStream>) {
        if !conn.is_usable() {
            self.state.borrow_mut().stats.discarded += 1;
            drop(conn);
            self.free_slot();
            return;
        }
        let waker = {
            let mut st = self.state.borrow_mut();
            match st.waiters.pop_front() {
                Some(w) => {
                    let mut w = w.borrow_mut();
                    w.grant = Some(Grant::Conn(conn));
                    w.waker.take()
                }
                None => {
                    st.idle.push(IdleConn {
                        conn,
                        since: cores::now(),
                    });
                    None
                }
            }
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// A connection slot ended: give it to the oldest waiter (to connect) or release it.
    fn free_slot(&self) {
        let waker = {
            let mut st = self.state.borrow_mut();
            match st.waiters.pop_front() {
                Some(w) => {
                    let mut w = w.borrow_mut();
                    w.grant = Some(Grant::Slot);
                    w.waker.take()
                }
                None => {
                    debug_assert!(st.slots > 0, "slot freed twice");
                    st.slots = st.slots.saturating_sub(1);
                    None
                }
            }
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// Counts a call as in flight for its lifetime.
struct InFlight(Rc<DbPool>);

impl InFlight {
    fn enter(pool: &Rc<DbPool>) -> InFlight {
        pool.state.borrow_mut().stats.in_flight += 1;
        InFlight(Rc::clone(pool))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut st = self.0.state.borrow_mut();
        st.stats.in_flight = st.stats.in_flight.saturating_sub(1);
    }
}

/// Counts a connect attempt for its lifetime.
struct Connecting(Rc<DbPool>);

impl Connecting {
    fn enter(pool: &Rc<DbPool>) -> Connecting {
        pool.state.borrow_mut().connecting += 1;
        Connecting(Rc::clone(pool))
    }
}

impl Drop for Connecting {
    fn drop(&mut self) {
        let mut st = self.0.state.borrow_mut();
        st.connecting = st.connecting.saturating_sub(1);
    }
}

/// A reserved connection slot without a connection yet; freed on drop unless it became
/// a [`Lease`].
struct SlotGuard {
    pool: Rc<DbPool>,
    armed: bool,
}

impl SlotGuard {
    fn new(pool: &Rc<DbPool>) -> SlotGuard {
        SlotGuard {
            pool: Rc::clone(pool),
            armed: true,
        }
    }

    fn into_lease(mut self, conn: DbConn<TcpStream>) -> Lease {
        self.armed = false;
        Lease::new(&self.pool, conn)
    }
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        if self.armed {
            self.pool.free_slot();
        }
    }
}

/// A connection lent to one call; returned (or discarded) on drop.
struct Lease {
    pool: Rc<DbPool>,
    conn: Option<DbConn<TcpStream>>,
}

impl Lease {
    fn new(pool: &Rc<DbPool>, conn: DbConn<TcpStream>) -> Lease {
        Lease {
            pool: Rc::clone(pool),
            conn: Some(conn),
        }
    }

    /// Drops the connection whatever its state, freeing its slot.
    fn discard(&mut self) {
        if let Some(c) = self.conn.take() {
            self.pool.state.borrow_mut().stats.discarded += 1;
            drop(c);
            self.pool.free_slot();
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(c) = self.conn.take() {
            self.pool.put_back(c);
        }
    }
}

/// Waiting in the queue for a connection or a slot. Dropping it leaves the queue and
/// passes on anything granted meanwhile.
struct Turn {
    pool: Rc<DbPool>,
    waiter: Rc<RefCell<Waiter>>,
}

impl Future for Turn {
    type Output = Grant;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Grant> {
        let mut w = self.waiter.borrow_mut();
        match w.grant.take() {
            Some(g) => Poll::Ready(g),
            None => {
                w.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        let grant = self.waiter.borrow_mut().grant.take();
        match grant {
            Some(Grant::Conn(c)) => self.pool.put_back(c),
            Some(Grant::Slot) => self.pool.free_slot(),
            // Still queued (the queue holds the other reference): leave the queue.
            None if Rc::strong_count(&self.waiter) > 1 => {
                let me = &self.waiter;
                self.pool
                    .state
                    .borrow_mut()
                    .waiters
                    .retain(|w| !Rc::ptr_eq(w, me));
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_classified() {
        assert_eq!(
            DbHost::parse("localhost").ok(),
            Some(DbHost::Addr(IpAddr::V4(Ipv4Addr::LOCALHOST)))
        );
        assert_eq!(
            DbHost::parse("LocalHost").ok(),
            Some(DbHost::Addr(IpAddr::V4(Ipv4Addr::LOCALHOST)))
        );
        assert_eq!(
            DbHost::parse("::1").ok(),
            Some(DbHost::Addr("::1".parse().unwrap()))
        );
        assert_eq!(
            DbHost::parse("192.0.2.7").ok(),
            Some(DbHost::Addr("192.0.2.7".parse().unwrap()))
        );
        assert_eq!(
            DbHost::parse("db1.example.net").ok(),
            Some(DbHost::Name("db1.example.net".into()))
        );
        assert_eq!(
            DbHost::parse("db1.example.net.").ok(),
            Some(DbHost::Name("db1.example.net.".into()))
        );
        for bad in ["db 1", "db..example", "db!", "", "a.-b.c\\x"] {
            assert!(
                matches!(DbHost::parse(bad), Err(PoolError::InvalidHost(h)) if h == bad),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn bad_configs_are_rejected() {
        let url = DbUrl::parse("mysql://root@127.0.0.1/test").unwrap();
        for cfg in [
            DbPoolConfig {
                pool_size: 0,
                ..DbPoolConfig::default()
            },
            DbPoolConfig {
                query_timeout: Duration::ZERO,
                ..DbPoolConfig::default()
            },
            DbPoolConfig {
                reconnect_interval_min: Duration::from_secs(10),
                ..DbPoolConfig::default()
            },
        ] {
            assert!(matches!(
                DbPool::new(url.clone(), cfg),
                Err(PoolError::Config(_))
            ));
        }
        let named = DbUrl::parse("mysql://root@db.example.com/test").unwrap();
        assert!(matches!(
            DbPool::new(named, DbPoolConfig::default()),
            Err(PoolError::NoResolver(h)) if h == "db.example.com"
        ));
    }
}
