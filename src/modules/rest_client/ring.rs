//! rest_client on a shard's ring: the per-shard [`RestClient`] that runs a prepared
//! [`RestCall`] end to end — resolve, connect, TLS, exchange, keep-alive — and reports a
//! [`RestOutcome`] for the script's resume route.
//!
//! Owns: the shard's keep-alive pool of HTTP connections, the `max_async_transfers`
//! counter, and the time-outs of OpenSIPS' rest_client (libcurl's meaning):
//! `connection_timeout` bounds the connection phase (DNS, TCP connect, TLS handshake)
//! and `curl_timeout` the whole transfer. Host names go through the shard's
//! [`RingResolver`] (hosts table, then DNS; never getaddrinfo). HTTP/1.1 itself is
//! [`super::http1`] (RFC 9112), TLS is [`super::tls`].
//!
//! Invariants: at most `max_async_transfers` transfers are in flight on a shard; one
//! more fails at once with [`RestError::TooManyTransfers`]. A connection goes back to
//! the pool only after a complete response marked `reusable`; on any error or time-out
//! it is dropped (closed). A pooled connection that turns out stale
//! ([`super::HttpError::is_stale_connection`]) is retried once on a fresh connection, never
//! more. The futures returned are `'static` (they hold an `Rc` to the client), so the
//! proxy can `cores::spawn_local` them and resume the transaction when they complete.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;

use cores::TcpStream;

use super::http1::{Method, Response};
use super::pool::{KeepAlivePool, PoolLimits, PoolStats};
use super::tls::{HttpStream, TlsClient};
use super::url::Host;
use super::{perform, rest_outcome, RestCall, RestClientParams, RestError, RestOutcome};
use crate::transport::dns::ring::RingResolver;

/// A connection this client keeps: plain TCP or TLS over TCP, on the shard's ring.
pub type RingHttpStream = HttpStream<TcpStream>;

/// Use counters of one shard's client.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RestClientStats {
    /// Transfers started (admitted under `max_async_transfers`).
    pub transfers: u64,
    /// Transfers refused because `max_async_transfers` were in flight.
    pub refused_too_many: u64,
    /// New TCP connections established.
    pub connects: u64,
    /// Exchanges retried on a fresh connection after a stale pooled one.
    pub stale_retries: u64,
    /// Transfers that ended by `curl_timeout`.
    pub transfer_timeouts: u64,
}

/// rest_client of one shard. Build it in the shard's set-up with [`RestClient::new`]
/// and keep the `Rc`; every transfer borrows it.
pub struct RestClient {
    params: RestClientParams,
    tls: TlsClient,
    resolver: Rc<RingResolver>,
    pool: RefCell<KeepAlivePool<RingHttpStream>>,
    in_flight: Cell<u32>,
    stats: Cell<RestClientStats>,
}

/// Holds one `max_async_transfers` slot; gives it back when dropped (also when the
/// transfer's future is dropped half-way).
struct TransferSlot {
    client: Rc<RestClient>,
}

impl Drop for TransferSlot {
    fn drop(&mut self) {
        let n = self.client.in_flight.get();
        debug_assert!(n > 0, "transfer slot released twice");
        self.client.in_flight.set(n.saturating_sub(1));
    }
}

impl RestClient {
    /// The client of this shard. `tls` is built once per process from
    /// [`RestClientParams::tls_options`]; `resolver` is the shard's
    /// ([`crate::transport::dns::ring::ring_resolver`]).
    pub fn new(
        params: RestClientParams,
        tls: TlsClient,
        resolver: Rc<RingResolver>,
        pool_limits: PoolLimits,
    ) -> Rc<RestClient> {
        Rc::new(RestClient {
            params,
            tls,
            resolver,
            pool: RefCell::new(KeepAlivePool::new(pool_limits)),
            in_flight: Cell::new(0),
            stats: Cell::new(RestClientStats::default()),
        })
    }

    /// The module parameters in force.
    pub fn params(&self) -> &RestClientParams {
        &self.params
    }

    /// Transfers in flight now.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.get()
    }

    /// This client's counters.
    pub fn stats(&self) -> RestClientStats {
        self.stats.get()
    }

    /// The keep-alive pool's counters and size.
    pub fn pool_stats(&self) -> (PoolStats, usize) {
        let pool = self.pool.borrow();
        (pool.stats(), pool.len())
    }

    /// Closes every pooled connection idle past the pool's `idle_timeout`; returns how
    /// many. Also done at the start of every transfer.
    pub fn evict_idle(&self) -> usize {
        let evicted = self.pool.borrow_mut().evict_idle(cores::now());
        evicted.len()
    }

    /// When the next pooled connection passes `idle_timeout`, for a shard timer that
    /// calls [`Self::evict_idle`].
    pub fn next_idle_expiry(&self) -> Option<std::time::Instant> {
        self.pool.borrow().next_expiry()
    }

    fn bump(&self, f: impl FnOnce(&mut RestClientStats)) {
        let mut s = self.stats.get();
        f(&mut s);
        self.stats.set(s);
    }

    /// `rest_get(...)`: runs a call built by [`super::rest_get`].
    pub fn rest_get(
        self: &Rc<Self>,
        call: RestCall,
    ) -> impl Future<Output = RestOutcome> + 'static {
        debug_assert_eq!(call.method, Method::Get);
        self.transfer(call)
    }

    /// `rest_post(...)`: runs a call built by [`super::rest_post`].
    pub fn rest_post(
        self: &Rc<Self>,
        call: RestCall,
    ) -> impl Future<Output = RestOutcome> + 'static {
        debug_assert_eq!(call.method, Method::Post);
        self.transfer(call)
    }

    /// `rest_put(...)`: runs a call built by [`super::rest_put`].
    pub fn rest_put(
        self: &Rc<Self>,
        call: RestCall,
    ) -> impl Future<Output = RestOutcome> + 'static {
        debug_assert_eq!(call.method, Method::Put);
        self.transfer(call)
    }

    /// Runs any prepared call and maps its result to what the script sees.
    pub fn transfer(
        self: &Rc<Self>,
        call: RestCall,
    ) -> impl Future<Output = RestOutcome> + 'static {
        let result = self.call(call);
        async move { rest_outcome(result.await) }
    }

    /// Runs any prepared call, returning the response or the typed failure.
    pub fn call(
        self: &Rc<Self>,
        call: RestCall,
    ) -> impl Future<Output = Result<Response, RestError>> + 'static {
        // Admission is decided now, when the script starts the call, not at first poll.
        let slot = if self.in_flight.get() >= self.params.max_async_transfers {
            self.bump(|s| s.refused_too_many += 1);
            None
        } else {
            self.in_flight.set(self.in_flight.get() + 1);
            self.bump(|s| s.transfers += 1);
            Some(TransferSlot {
                client: self.clone(),
            })
        };
        async move {
            let Some(slot) = slot else {
                return Err(RestError::TooManyTransfers);
            };
            let client = slot.client.clone();
            let limit = client.params.curl_timeout;
            let result = match cores::timeout(limit, client.run(&call)).await {
                Ok(r) => r,
                Err(_) => {
                    client.bump(|s| s.transfer_timeouts += 1);
                    Err(RestError::TransferTimeout)
                }
            };
            drop(slot);
            result
        }
    }

    /// The transfer proper, without the overall time-out.
    async fn run(&self, call: &RestCall) -> Result<Response, RestError> {
        let key = call.pool_key();
        let limits = self.params.limits();
        let now = cores::now();
        let pooled = {
            let mut pool = self.pool.borrow_mut();
            // Dropping the evicted connections closes them.
            drop(pool.evict_idle(now));
            pool.take(&key, now)
        };
        if let Some(mut stream) = pooled {
            match perform(&mut stream, call, &limits).await {
                Ok(resp) => {
                    self.keep(call, stream, &resp);
                    return Ok(resp);
                }
                Err(RestError::Http(e)) if e.is_stale_connection() => {
                    tracing::debug!(error = %e, url = %call.url.host, "rest_client: stale pooled connection, retrying on a new one");
                    self.bump(|s| s.stale_retries += 1);
                }
                Err(e) => return Err(e),
            }
        }
        let mut stream = self.open(call).await?;
        let resp = perform(&mut stream, call, &limits).await?;
        self.keep(call, stream, &resp);
        Ok(resp)
    }

    /// Puts `stream` back in the pool if `resp` allows it.
    fn keep(&self, call: &RestCall, stream: RingHttpStream, resp: &Response) {
        if resp.reusable {
            let pushed_out = self
                .pool
                .borrow_mut()
                .put_back(call.pool_key(), stream, cores::now());
            drop(pushed_out);
        }
    }

    /// Resolves, connects and (for https) handshakes, all under `connection_timeout`.
    async fn open(&self, call: &RestCall) -> Result<RingHttpStream, RestError> {
        let limit = self.params.connection_timeout;
        let phase = async {
            let tcp = self.connect(call).await?;
            Ok::<_, RestError>(HttpStream::open(tcp, &call.url, &self.tls).await?)
        };
        match cores::timeout(limit, phase).await {
            Ok(r) => r,
            Err(_) => Err(RestError::ConnectTimeout {
                addr: format!("{}:{}", call.url.host, call.url.port),
            }),
        }
    }

    /// Connects to the first address of the URL host that accepts, in resolver order.
    async fn connect(&self, call: &RestCall) -> Result<TcpStream, RestError> {
        let port = call.url.port;
        let addrs: Vec<IpAddr> = match &call.url.host {
            Host::Ipv4(a) => vec![IpAddr::V4(*a)],
            Host::Ipv6(a) => vec![IpAddr::V6(*a)],
            Host::Domain(name) => {
                self.resolver
                    .lookup_ip(name)
                    .await
                    .map_err(|e| RestError::Resolve {
                        host: name.clone(),
                        detail: e.to_string(),
                    })?
            }
        };
        let mut last = None;
        for ip in addrs {
            let addr = SocketAddr::new(ip, port);
            match TcpStream::connect(addr, self.params.connection_timeout).await {
                Ok(s) => {
                    self.bump(|s| s.connects += 1);
                    // Requests are written whole; do not wait for ACKs of small ones.
                    if let Err(e) = s.set_nodelay(true) {
                        tracing::debug!(%addr, error = %e, "rest_client: TCP_NODELAY not set");
                    }
                    return Ok(s);
                }
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                    last = Some(RestError::ConnectTimeout {
                        addr: addr.to_string(),
                    });
                }
                Err(e) => last = Some(RestError::from_connect(addr.to_string(), e)),
            }
        }
        Err(last.unwrap_or_else(|| RestError::Resolve {
            host: call.url.host.to_string(),
            detail: "no address".to_owned(),
        }))
    }
}
