//! rest_client: HTTP/1.1 (+TLS) client behind OpenSIPS' `rest_get`, `rest_post`,
//! `rest_put` and `rest_append_hf`, written against `cores::AsyncStream`.
//!
//! Owns the script-facing semantics (this file): the module parameters
//! ([`RestClientParams`]), building a call from script arguments ([`rest_get`],
//! [`rest_post`], [`rest_put`], [`rest_append_hf`]), and mapping its result to what the
//! script sees ([`RestOutcome`]: `$rc`, body, content type, HTTP code) with OpenSIPS'
//! return codes ([`RCL_OK`] ...). Below it: [`url`] (URL parsing), [`http1`] (one
//! HTTP/1.1 exchange, RFC 9112), [`tls`] (rustls over any stream), [`pool`] (per-shard
//! keep-alive pool).
//!
//! Not here, by design: connecting, DNS, time-outs (`connection_timeout`,
//! `curl_timeout`) and the `max_async_transfers` bound are applied by the runtime layer
//! that owns the shard's ring; it reports them as [`RestError::ConnectRefused`],
//! [`RestError::ConnectTimeout`], [`RestError::TransferTimeout`].
//!
//! Invariant: `$rc` is [`RCL_OK`] whenever a complete HTTP response arrived, whatever its
//! status (the script tests the status through `retcode_pv`, as in OpenSIPS); the HTTP
//! code is 0 when no response arrived.

pub mod http1;
pub mod pool;
pub mod ring;
pub mod tls;
pub mod url;

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use cores::AsyncStream;
use thiserror::Error;

pub use http1::{HttpError, Limits, Method, Request, RequestError, Response};
pub use pool::{KeepAlivePool, PoolKey, PoolLimits};
pub use tls::{HttpStream, TlsClient, TlsError, TlsOptions, TlsStream};
pub use url::{Host, Scheme, Url, UrlError};

/// `$rc` of a call that received a complete response (any status).
pub const RCL_OK: i32 = 1;
/// `$rc` when the server refused the TCP connection.
pub const RCL_CONNECT_REFUSED: i32 = -1;
/// `$rc` when `connection_timeout` passed before the connection was established.
pub const RCL_CONNECT_TIMEOUT: i32 = -2;
/// `$rc` when `curl_timeout` passed before the last byte arrived.
pub const RCL_TRANSFER_TIMEOUT: i32 = -3;
/// `$rc` for every other failure (bad URL, DNS, TLS, malformed or oversized response,
/// connection reset...).
pub const RCL_INTERNAL_ERR: i32 = -10;

/// `Content-Type` of a `rest_post`/`rest_put` body when the script gives none.
pub const DEFAULT_SEND_CONTENT_TYPE: &str = "application/x-www-form-urlencoded";

/// The `User-Agent` sent unless `rest_append_hf` sets one.
pub const USER_AGENT: &str = concat!("ringsip/", env!("CARGO_PKG_VERSION"));

/// The module parameters (`modparam("rest_client", name, value)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestClientParams {
    /// `connection_timeout` (seconds in the script): TCP connect + TLS handshake.
    pub connection_timeout: Duration,
    /// `curl_timeout` (seconds): the whole transfer.
    pub curl_timeout: Duration,
    /// `max_async_transfers`: transfers in flight per shard.
    pub max_async_transfers: u32,
    /// `ssl_verifypeer` (0/1).
    pub ssl_verifypeer: bool,
    /// `ssl_verifyhost` (0/1).
    pub ssl_verifyhost: bool,
    /// `ssl_capath`: PEM file or directory of extra trusted CAs.
    pub ssl_capath: Option<PathBuf>,
    /// `max_body_size` (ours, bytes): a larger response body fails the call.
    pub max_body_size: usize,
    /// `curl_conn_lifetime` (seconds): how long an idle keep-alive connection may wait in
    /// the pool before it is closed.
    pub conn_lifetime: Duration,
    /// `max_idle_connections` (ours): idle keep-alive connections kept per server (and
    /// per shard); more in flight at once are opened as needed and closed when done.
    pub max_idle_connections: usize,
}

impl Default for RestClientParams {
    /// OpenSIPS' defaults: 20 s, 20 s, 100, verify peer and host; ours: 10 MiB, idle
    /// connections kept 30 s, at most 64 idle per server.
    fn default() -> Self {
        RestClientParams {
            connection_timeout: Duration::from_secs(20),
            curl_timeout: Duration::from_secs(20),
            max_async_transfers: 100,
            ssl_verifypeer: true,
            ssl_verifyhost: true,
            ssl_capath: None,
            max_body_size: 10 * 1024 * 1024,
            conn_lifetime: Duration::from_secs(30),
            max_idle_connections: 64,
        }
    }
}

/// A `modparam` value as the script gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModparamValue<'a> {
    Int(i64),
    Str(&'a str),
}

/// Why a `modparam` was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ModparamError {
    #[error("rest_client has no parameter {0:?}")]
    Unknown(String),
    #[error("rest_client parameter {name:?} expects {expected}")]
    WrongType {
        name: &'static str,
        expected: &'static str,
    },
    #[error("rest_client parameter {name:?}: value {value} out of range ({range})")]
    OutOfRange {
        name: &'static str,
        value: i64,
        range: &'static str,
    },
}

impl RestClientParams {
    /// Every parameter name this module declares.
    pub const NAMES: &'static [&'static str] = &[
        "connection_timeout",
        "curl_timeout",
        "max_async_transfers",
        "ssl_verifypeer",
        "ssl_verifyhost",
        "ssl_capath",
        "max_body_size",
        "curl_conn_lifetime",
        "max_idle_connections",
    ];

    /// Applies one `modparam`.
    pub fn set(&mut self, name: &str, value: ModparamValue<'_>) -> Result<(), ModparamError> {
        fn int(name: &'static str, v: ModparamValue<'_>) -> Result<i64, ModparamError> {
            match v {
                ModparamValue::Int(i) => Ok(i),
                ModparamValue::Str(_) => Err(ModparamError::WrongType {
                    name,
                    expected: "an integer",
                }),
            }
        }
        fn ranged(
            name: &'static str,
            v: ModparamValue<'_>,
            min: i64,
            max: i64,
            range: &'static str,
        ) -> Result<i64, ModparamError> {
            let i = int(name, v)?;
            if i < min || i > max {
                return Err(ModparamError::OutOfRange {
                    name,
                    value: i,
                    range,
                });
            }
            Ok(i)
        }
        const DAY: i64 = 86_400;
        match name {
            "connection_timeout" => {
                let s = ranged("connection_timeout", value, 1, DAY, "1..=86400 s")?;
                self.connection_timeout = Duration::from_secs(s.unsigned_abs());
            }
            "curl_timeout" => {
                let s = ranged("curl_timeout", value, 1, DAY, "1..=86400 s")?;
                self.curl_timeout = Duration::from_secs(s.unsigned_abs());
            }
            "max_async_transfers" => {
                let n = ranged("max_async_transfers", value, 1, 1_000_000, "1..=1000000")?;
                self.max_async_transfers = u32::try_from(n).unwrap_or(u32::MAX);
            }
            "ssl_verifypeer" => {
                self.ssl_verifypeer = ranged("ssl_verifypeer", value, 0, 1, "0 or 1")? == 1;
            }
            "ssl_verifyhost" => {
                // libcurl historically also accepts 2 for "on".
                self.ssl_verifyhost = ranged("ssl_verifyhost", value, 0, 2, "0..=2")? != 0;
            }
            "ssl_capath" => match value {
                ModparamValue::Str(s) if !s.is_empty() => self.ssl_capath = Some(PathBuf::from(s)),
                _ => {
                    return Err(ModparamError::WrongType {
                        name: "ssl_capath",
                        expected: "a non-empty path string",
                    })
                }
            },
            "max_body_size" => {
                let n = ranged("max_body_size", value, 0, 1 << 30, "0..=1073741824 bytes")?;
                self.max_body_size = usize::try_from(n).unwrap_or(usize::MAX);
            }
            "curl_conn_lifetime" => {
                let s = ranged("curl_conn_lifetime", value, 1, DAY, "1..=86400 s")?;
                self.conn_lifetime = Duration::from_secs(s.unsigned_abs());
            }
            "max_idle_connections" => {
                let n = ranged("max_idle_connections", value, 0, 65_536, "0..=65536")?;
                self.max_idle_connections = usize::try_from(n).unwrap_or(0);
            }
            other => return Err(ModparamError::Unknown(other.to_owned())),
        }
        Ok(())
    }

    /// The TLS part, for [`TlsClient::new`].
    pub fn tls_options(&self) -> TlsOptions {
        TlsOptions {
            verify_peer: self.ssl_verifypeer,
            verify_host: self.ssl_verifyhost,
            ca_path: self.ssl_capath.clone(),
        }
    }

    /// The keep-alive pool's bounds: `max_idle_connections` per server, and as many in
    /// all as 16 servers' worth (at least 256); idle ones live `curl_conn_lifetime`.
    pub fn pool_limits(&self) -> pool::PoolLimits {
        pool::PoolLimits {
            max_idle_per_key: self.max_idle_connections,
            max_idle_total: self.max_idle_connections.saturating_mul(16).max(256),
            idle_timeout: self.conn_lifetime,
        }
    }

    /// Response bounds for [`http1::exchange`].
    pub fn limits(&self) -> Limits {
        Limits {
            max_body_size: self.max_body_size,
            ..Limits::default()
        }
    }
}

/// One prepared `rest_get`/`rest_post`/`rest_put` call: owned, so it survives the
/// suspension of an `async()` statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestCall {
    pub method: Method,
    pub url: Url,
    pub body: Vec<u8>,
    pub content_type: Option<String>,
    /// Headers collected by `rest_append_hf` before the call.
    pub extra_headers: Vec<String>,
}

impl RestCall {
    /// The request to send, borrowing this call.
    pub fn request(&self) -> Request<'_> {
        Request {
            method: self.method,
            url: &self.url,
            user_agent: USER_AGENT,
            content_type: self.content_type.as_deref(),
            extra_headers: &self.extra_headers,
            body: &self.body,
        }
    }

    /// Which keep-alive pool entry serves this call.
    pub fn pool_key(&self) -> PoolKey {
        PoolKey::for_url(&self.url)
    }
}

/// `rest_get(url, body_pv[, ctype_pv[, retcode_pv]])`: the call to make.
pub fn rest_get(url: &str, append_hf: Vec<String>) -> Result<RestCall, RestError> {
    Ok(RestCall {
        method: Method::Get,
        url: Url::parse(url)?,
        body: Vec::new(),
        content_type: None,
        extra_headers: append_hf,
    })
}

/// `rest_post(url, send_body, [send_ctype], recv_body_pv[, recv_ctype_pv[, retcode_pv]])`.
/// An absent or empty `send_ctype` sends [`DEFAULT_SEND_CONTENT_TYPE`].
pub fn rest_post(
    url: &str,
    send_body: &[u8],
    send_ctype: Option<&str>,
    append_hf: Vec<String>,
) -> Result<RestCall, RestError> {
    with_body(Method::Post, url, send_body, send_ctype, append_hf)
}

/// `rest_put(url, send_body, [send_ctype], recv_body_pv[, recv_ctype_pv[, retcode_pv]])`.
pub fn rest_put(
    url: &str,
    send_body: &[u8],
    send_ctype: Option<&str>,
    append_hf: Vec<String>,
) -> Result<RestCall, RestError> {
    with_body(Method::Put, url, send_body, send_ctype, append_hf)
}

fn with_body(
    method: Method,
    url: &str,
    send_body: &[u8],
    send_ctype: Option<&str>,
    append_hf: Vec<String>,
) -> Result<RestCall, RestError> {
    let ctype = match send_ctype {
        Some(c) if !c.is_empty() => c,
        _ => DEFAULT_SEND_CONTENT_TYPE,
    };
    Ok(RestCall {
        method,
        url: Url::parse(url)?,
        body: send_body.to_vec(),
        content_type: Some(ctype.to_owned()),
        extra_headers: append_hf,
    })
}

/// `rest_append_hf(txt)`: checks `txt` as a header field and queues it for the next
/// call. Surrounding whitespace and a trailing CRLF are trimmed.
pub fn rest_append_hf(pending: &mut Vec<String>, txt: &str) -> Result<(), RequestError> {
    let line = txt.trim_matches(|c: char| c == ' ' || c == '\t' || c == '\r' || c == '\n');
    http1::check_extra_header(line)?;
    pending.push(line.to_owned());
    Ok(())
}

/// Why a rest_client call failed, from any layer.
#[derive(Debug, Error)]
pub enum RestError {
    #[error(transparent)]
    Url(#[from] UrlError),
    #[error("could not resolve {host:?}: {detail}")]
    Resolve { host: String, detail: String },
    #[error("connection refused by {addr}")]
    ConnectRefused { addr: String },
    #[error("connecting to {addr} failed: {source}")]
    Connect {
        addr: String,
        #[source]
        source: io::Error,
    },
    #[error("connection_timeout passed connecting to {addr}")]
    ConnectTimeout { addr: String },
    #[error("curl_timeout passed before the response was complete")]
    TransferTimeout,
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error("max_async_transfers reached")]
    TooManyTransfers,
}

impl RestError {
    /// The `$rc` OpenSIPS' rest_client returns for this failure.
    pub fn rc(&self) -> i32 {
        match self {
            RestError::ConnectRefused { .. } => RCL_CONNECT_REFUSED,
            RestError::ConnectTimeout { .. } => RCL_CONNECT_TIMEOUT,
            RestError::TransferTimeout => RCL_TRANSFER_TIMEOUT,
            RestError::Url(_)
            | RestError::Resolve { .. }
            | RestError::Connect { .. }
            | RestError::Tls(_)
            | RestError::Http(_)
            | RestError::TooManyTransfers => RCL_INTERNAL_ERR,
        }
    }

    /// Classifies a failed TCP connect (the runtime calls this).
    pub fn from_connect(addr: String, source: io::Error) -> RestError {
        if source.kind() == io::ErrorKind::ConnectionRefused {
            RestError::ConnectRefused { addr }
        } else {
            RestError::Connect { addr, source }
        }
    }
}

/// What the script sees after a call: `$rc` and the output pseudo-variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestOutcome {
    /// `$rc` / `$retcode`.
    pub rc: i32,
    /// `body_pv` / `recv_body_pv`; `None` (left unset) when no response arrived.
    pub body: Option<Vec<u8>>,
    /// `ctype_pv` / `recv_ctype_pv`: the response's `Content-Type`, if any.
    pub content_type: Option<String>,
    /// `retcode_pv`: the HTTP status code, 0 when no response arrived.
    pub http_code: u16,
}

/// Maps a call's result to [`RestOutcome`].
pub fn rest_outcome(result: Result<Response, RestError>) -> RestOutcome {
    match result {
        Ok(resp) => RestOutcome {
            rc: RCL_OK,
            content_type: resp.content_type().map(str::to_owned),
            http_code: resp.status,
            body: Some(resp.body),
        },
        Err(e) => RestOutcome {
            rc: e.rc(),
            body: None,
            content_type: None,
            http_code: 0,
        },
    }
}

/// Performs `call` on an open connection (plain or TLS): the part of a call between
/// connect and outcome. On success, return the connection to the pool iff
/// `response.reusable`; on error, drop it.
pub async fn perform<S: AsyncStream>(
    stream: &mut S,
    call: &RestCall,
    limits: &Limits,
) -> Result<Response, RestError> {
    Ok(http1::exchange(stream, &call.request(), limits).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_defaults_and_set() {
        let mut p = RestClientParams::default();
        assert_eq!(p.connection_timeout, Duration::from_secs(20));
        assert_eq!(p.curl_timeout, Duration::from_secs(20));
        assert_eq!(p.max_async_transfers, 100);
        assert!(p.ssl_verifypeer && p.ssl_verifyhost);
        p.set("connection_timeout", ModparamValue::Int(3)).unwrap();
        p.set("curl_timeout", ModparamValue::Int(5)).unwrap();
        p.set("max_async_transfers", ModparamValue::Int(7)).unwrap();
        p.set("ssl_verifypeer", ModparamValue::Int(0)).unwrap();
        p.set("ssl_verifyhost", ModparamValue::Int(0)).unwrap();
        p.set("ssl_capath", ModparamValue::Str("/etc/ca")).unwrap();
        p.set("max_body_size", ModparamValue::Int(1024)).unwrap();
        p.set("curl_conn_lifetime", ModparamValue::Int(9)).unwrap();
        p.set("max_idle_connections", ModparamValue::Int(500))
            .unwrap();
        assert_eq!(
            p.pool_limits(),
            pool::PoolLimits {
                max_idle_per_key: 500,
                max_idle_total: 8000,
                idle_timeout: Duration::from_secs(9),
            }
        );
        assert!(p
            .set("max_idle_connections", ModparamValue::Int(-1))
            .is_err());
        assert!(p.set("curl_conn_lifetime", ModparamValue::Int(0)).is_err());
        assert_eq!(p.connection_timeout, Duration::from_secs(3));
        assert_eq!(p.curl_timeout, Duration::from_secs(5));
        assert_eq!(p.max_async_transfers, 7);
        assert_eq!(
            p.tls_options(),
            TlsOptions {
                verify_peer: false,
                verify_host: false,
                ca_path: Some("/etc/ca".into())
            }
        );
        assert_eq!(p.limits().max_body_size, 1024);
        for name in RestClientParams::NAMES {
            assert!(!matches!(
                p.clone().set(name, ModparamValue::Int(1)),
                Err(ModparamError::Unknown(_))
            ));
        }
    }

    #[test]
    fn params_errors() {
        let mut p = RestClientParams::default();
        assert!(matches!(
            p.set("nope", ModparamValue::Int(1)),
            Err(ModparamError::Unknown(_))
        ));
        assert!(matches!(
            p.set("curl_timeout", ModparamValue::Str("5")),
            Err(ModparamError::WrongType { .. })
        ));
        assert!(matches!(
            p.set("curl_timeout", ModparamValue::Int(0)),
            Err(ModparamError::OutOfRange { .. })
        ));
        assert!(matches!(
            p.set("ssl_verifypeer", ModparamValue::Int(3)),
            Err(ModparamError::OutOfRange { .. })
        ));
        assert!(matches!(
            p.set("ssl_capath", ModparamValue::Int(3)),
            Err(ModparamError::WrongType { .. })
        ));
    }

    #[test]
    fn calls_from_script_arguments() {
        let c = rest_get("http://h/credit?acc=1", vec![]).unwrap();
        assert_eq!(c.method, Method::Get);
        assert!(c.body.is_empty() && c.content_type.is_none());
        let c = rest_post("http://h/u", b"a=1", None, vec![]).unwrap();
        assert_eq!(c.content_type.as_deref(), Some(DEFAULT_SEND_CONTENT_TYPE));
        let c = rest_put("https://h/u", b"{}", Some("application/json"), vec![]).unwrap();
        assert_eq!(c.method, Method::Put);
        assert_eq!(c.content_type.as_deref(), Some("application/json"));
        assert_eq!(
            c.pool_key(),
            PoolKey {
                host: Host::Domain("h".into()),
                port: 443,
                tls: true
            }
        );
        let e = rest_get("gopher://h/", vec![]).unwrap_err();
        assert_eq!(e.rc(), RCL_INTERNAL_ERR);
    }

    #[test]
    fn append_hf_validates_and_trims() {
        let mut hf = Vec::new();
        rest_append_hf(&mut hf, "Authorization: Bearer x\r\n").unwrap();
        assert_eq!(hf, vec!["Authorization: Bearer x".to_string()]);
        assert!(rest_append_hf(&mut hf, "X: a\r\nY: b").is_err());
        assert!(rest_append_hf(&mut hf, "no colon").is_err());
        assert!(rest_append_hf(&mut hf, "Content-Length: 3").is_err());
        assert_eq!(hf.len(), 1);
    }

    #[test]
    fn rc_mapping_follows_opensips() {
        let addr = "127.0.0.1:1".to_string();
        assert_eq!(
            RestError::from_connect(addr.clone(), io::ErrorKind::ConnectionRefused.into()).rc(),
            RCL_CONNECT_REFUSED
        );
        assert_eq!(
            RestError::from_connect(addr.clone(), io::ErrorKind::HostUnreachable.into()).rc(),
            RCL_INTERNAL_ERR
        );
        assert_eq!(RestError::ConnectTimeout { addr }.rc(), RCL_CONNECT_TIMEOUT);
        assert_eq!(RestError::TransferTimeout.rc(), RCL_TRANSFER_TIMEOUT);
        assert_eq!(
            RestError::Http(HttpError::BodyTooLarge { limit: 1 }).rc(),
            RCL_INTERNAL_ERR
        );
        let out = rest_outcome(Err(RestError::TransferTimeout));
        assert_eq!(
            out,
            RestOutcome {
                rc: -3,
                body: None,
                content_type: None,
                http_code: 0
            }
        );
    }

    #[test]
    fn outcome_of_any_response_is_ok() {
        for status in [200u16, 302, 404, 503] {
            let resp = Response {
                version: http1::Version::Http11,
                status,
                reason: String::new(),
                headers: vec![http1::HeaderField {
                    name: "Content-Type".into(),
                    value: b"text/plain".to_vec(),
                }],
                body: b"x".to_vec(),
                trailers: vec![],
                reusable: true,
            };
            let out = rest_outcome(Ok(resp));
            assert_eq!(out.rc, RCL_OK);
            assert_eq!(out.http_code, status);
            assert_eq!(out.content_type.as_deref(), Some("text/plain"));
            assert_eq!(out.body.as_deref(), Some(b"x".as_slice()));
        }
    }
}
