//! rest_client on a real shard (`RestClient`), under both backends, against HTTP/1.1
//! servers on 127.0.0.1 (std threads, httparse; rustls + rcgen for TLS): JSON GET,
//! POST, chunked bodies, keep-alive reuse, a stale pooled connection retried once,
//! `curl_timeout` against a slow server while the shard keeps ticking, connection
//! refused, `max_async_transfers`, and HTTPS to a host name resolved by the shard's
//! resolver from an injected hosts table, verified against a test CA.

use std::cell::Cell;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use ringsip::modules::rest_client::ring::RestClient;
use ringsip::modules::rest_client::{
    rest_get, rest_post, rest_put, PoolLimits, RestClientParams, RestError, RestOutcome, TlsClient,
    TlsOptions, RCL_CONNECT_REFUSED, RCL_CONNECT_TIMEOUT, RCL_INTERNAL_ERR, RCL_OK,
    RCL_TRANSFER_TIMEOUT,
};
use ringsip::transport::dns::ring::{ring_resolver, SystemDnsConfig};
use ringsip::transport::dns::{Hosts, ResolverConfig};

mod shard_runner;

use shard_runner::{on_shard, BACKENDS};

/// DNS for these tests: `localhost` and `api.test` from the hosts table; the
/// nameserver is a closed port (any DNS query would fail, so none may be needed).
fn dns_with_hosts() -> SystemDnsConfig {
    let mut hosts = Hosts::new();
    hosts.insert("localhost", "127.0.0.1".parse().unwrap());
    hosts.insert("api.test", "127.0.0.1".parse().unwrap());
    let mut config = ResolverConfig::with_nameserver(SocketAddr::from(([127, 0, 0, 1], 9)));
    config.timeout = Duration::from_millis(200);
    config.attempts = 1;
    SystemDnsConfig { config, hosts }
}

fn params() -> RestClientParams {
    RestClientParams {
        connection_timeout: Duration::from_secs(5),
        curl_timeout: Duration::from_secs(10),
        ..RestClientParams::default()
    }
}

/// This shard's client.
fn client(params: RestClientParams, tls: TlsClient) -> Rc<RestClient> {
    RestClient::new(
        params,
        tls,
        ring_resolver(&dns_with_hosts(), 64),
        PoolLimits::default(),
    )
}

fn plain_tls() -> TlsClient {
    TlsClient::new(&TlsOptions::default()).unwrap()
}

/// A request as the test server saw it.
#[derive(Debug, Default, Clone, PartialEq)]
struct Seen {
    method: String,
    path: String,
    host: String,
    content_type: Option<String>,
    body: Vec<u8>,
}

/// Reads one request (head + Content-Length body); `None` on EOF or error.
fn read_request<S: Read>(s: &mut S, pending: &mut Vec<u8>) -> Option<Seen> {
    let mut tmp = [0u8; 4096];
    for _ in 0..10_000 {
        let mut hdrs = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut hdrs);
        if let Ok(httparse::Status::Complete(n)) = req.parse(pending) {
            let header = |name: &str| {
                req.headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case(name))
                    .map(|h| String::from_utf8_lossy(h.value).into_owned())
            };
            let len: usize = header("content-length")
                .map(|v| v.parse().unwrap())
                .unwrap_or(0);
            let mut seen = Seen {
                method: req.method?.to_owned(),
                path: req.path?.to_owned(),
                host: header("host").unwrap_or_default(),
                content_type: header("content-type"),
                body: Vec::new(),
            };
            pending.drain(..n);
            while pending.len() < len {
                let k = s.read(&mut tmp).ok()?;
                if k == 0 {
                    return None;
                }
                pending.extend_from_slice(&tmp[..k]);
            }
            seen.body = pending.drain(..len).collect();
            return Some(seen);
        }
        let k = s.read(&mut tmp).ok()?;
        if k == 0 {
            return None;
        }
        pending.extend_from_slice(&tmp[..k]);
    }
    None
}

/// A server that accepts `conns` connections in turn and on each serves requests with
/// `respond(request index overall)` until the client closes or `respond` says to
/// close. Returns its address, the number of connections accepted, and a handle
/// yielding the requests seen.
#[allow(clippy::type_complexity)]
fn serve(
    conns: usize,
    respond: impl Fn(usize, &Seen) -> (Vec<u8>, bool) + Send + 'static,
) -> (SocketAddr, Arc<AtomicUsize>, JoinHandle<Vec<Seen>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    let h = thread::spawn(move || {
        let mut seen = Vec::new();
        for _ in 0..conns {
            let Ok((mut s, _)) = l.accept() else { break };
            count.fetch_add(1, Ordering::SeqCst);
            let mut pending = Vec::new();
            while let Some(req) = read_request(&mut s, &mut pending) {
                let (bytes, close) = respond(seen.len(), &req);
                seen.push(req);
                if s.write_all(&bytes).is_err() || close {
                    break;
                }
            }
        }
        seen
    });
    (addr, accepted, h)
}

fn response(ctype: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[test]
fn json_get_post_put_and_chunked() {
    for backend in BACKENDS {
        let (addr, accepted, server) = serve(1, |i, req| {
            let bytes = match i {
                0 => response("application/json", r#"{"credit":42}"#),
                1 | 2 => response("text/plain", &format!("got {} bytes", req.body.len())),
                _ => b"HTTP/1.1 201 Created\r\nContent-Type: text/plain\r\n\
                       Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
                    .to_vec(),
            };
            (bytes, false)
        });
        let tls = plain_tls();
        let outs = on_shard(
            backend,
            Box::new(move || {
                let tls = tls.clone();
                Box::pin(async move {
                    let c = client(params(), tls);
                    let base = format!("http://api.test:{}", addr.port());
                    let get = rest_get(&format!("{base}/credit?acc=1"), vec![]).unwrap();
                    let a = c.rest_get(get).await;
                    let post = rest_post(&format!("{base}/cdr"), b"a=1&b=2", None, vec![]).unwrap();
                    let b = c.rest_post(post).await;
                    let put = rest_put(
                        &format!("{base}/u/1"),
                        b"{}",
                        Some("application/json"),
                        vec![],
                    )
                    .unwrap();
                    let p = c.rest_put(put).await;
                    let get = rest_get(&format!("{base}/stream"), vec![]).unwrap();
                    let d = c.rest_get(get).await;
                    (vec![a, b, p, d], c.stats().connects, c.in_flight())
                })
            }),
        );
        let (outs, connects, in_flight) = outs;
        let seen = server.join().unwrap();
        let ok = |body: &str, ctype: &str, code: u16| RestOutcome {
            rc: RCL_OK,
            body: Some(body.as_bytes().to_vec()),
            content_type: Some(ctype.to_owned()),
            http_code: code,
        };
        assert_eq!(
            outs[0],
            ok(r#"{"credit":42}"#, "application/json", 200),
            "{backend:?}"
        );
        assert_eq!(outs[1], ok("got 7 bytes", "text/plain", 200));
        assert_eq!(outs[2], ok("got 2 bytes", "text/plain", 200));
        assert_eq!(outs[3], ok("hello world", "text/plain", 201));
        // One connection served all four (keep-alive).
        assert_eq!(
            (accepted.load(Ordering::SeqCst), connects, in_flight),
            (1, 1, 0)
        );
        let port = addr.port();
        assert_eq!(
            seen,
            vec![
                Seen {
                    method: "GET".into(),
                    path: "/credit?acc=1".into(),
                    host: format!("api.test:{port}"),
                    content_type: None,
                    body: vec![]
                },
                Seen {
                    method: "POST".into(),
                    path: "/cdr".into(),
                    host: format!("api.test:{port}"),
                    content_type: Some("application/x-www-form-urlencoded".into()),
                    body: b"a=1&b=2".to_vec()
                },
                Seen {
                    method: "PUT".into(),
                    path: "/u/1".into(),
                    host: format!("api.test:{port}"),
                    content_type: Some("application/json".into()),
                    body: b"{}".to_vec()
                },
                Seen {
                    method: "GET".into(),
                    path: "/stream".into(),
                    host: format!("api.test:{port}"),
                    content_type: None,
                    body: vec![]
                },
            ]
        );
    }
}

#[test]
fn keep_alive_one_accept_for_two_requests_and_stale_retry() {
    for backend in BACKENDS {
        // Connection 1 serves request 0 and 1, then the server closes it while the
        // client keeps it pooled; request 2 meets the stale connection and is retried
        // once on connection 2.
        let (addr, accepted, server) =
            serve(2, |i, _| (response("text/plain", &format!("r{i}")), i == 1));
        let tls = plain_tls();
        let got = on_shard(
            backend,
            Box::new(move || {
                let tls = tls.clone();
                Box::pin(async move {
                    let c = client(params(), tls);
                    let url = format!("http://127.0.0.1:{}/", addr.port());
                    let mut bodies = Vec::new();
                    for _ in 0..2 {
                        let o = c.rest_get(rest_get(&url, vec![]).unwrap()).await;
                        bodies.push(o.body);
                    }
                    let (pool_after_two, pooled) = c.pool_stats();
                    // Let the server's close reach us before the next request.
                    cores::sleep(Duration::from_millis(100)).await;
                    let o = c.rest_get(rest_get(&url, vec![]).unwrap()).await;
                    bodies.push(o.body);
                    (bodies, pool_after_two.hits, pooled, c.stats())
                })
            }),
        );
        let (bodies, hits, pooled, stats) = got;
        let seen = server.join().unwrap();
        assert_eq!(
            bodies,
            vec![
                Some(b"r0".to_vec()),
                Some(b"r1".to_vec()),
                Some(b"r2".to_vec())
            ],
            "{backend:?}"
        );
        assert_eq!(
            (hits, pooled),
            (1, 1),
            "second request reused the first connection"
        );
        assert_eq!(stats.stale_retries, 1);
        assert_eq!(stats.connects, 2);
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        assert_eq!(seen.len(), 3);
    }
}

#[test]
fn slow_server_times_out_while_the_shard_ticks() {
    for backend in BACKENDS {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let server = thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let _ = read_request(&mut s, &mut Vec::new());
            thread::sleep(Duration::from_millis(1500));
            let _ = s.write_all(&response("text/plain", "late"));
        });
        let tls = plain_tls();
        let got = on_shard(
            backend,
            Box::new(move || {
                let tls = tls.clone();
                Box::pin(async move {
                    let p = RestClientParams {
                        curl_timeout: Duration::from_millis(300),
                        max_async_transfers: 1,
                        ..params()
                    };
                    let c = client(p, tls);
                    let ticks = Rc::new(Cell::new(0u32));
                    let done = Rc::new(Cell::new(false));
                    let ticker = {
                        let (ticks, done) = (ticks.clone(), done.clone());
                        cores::spawn_local(async move {
                            for _ in 0..10_000 {
                                if done.get() {
                                    break;
                                }
                                cores::sleep(Duration::from_millis(10)).await;
                                ticks.set(ticks.get() + 1);
                            }
                        })
                    };
                    let url = format!("http://127.0.0.1:{}/slow", addr.port());
                    let slow = c.rest_get(rest_get(&url, vec![]).unwrap());
                    // The slot is taken when the call starts: a second one is refused.
                    let refused = c.call(rest_get(&url, vec![]).unwrap()).await;
                    let refused = matches!(refused, Err(RestError::TooManyTransfers));
                    let started = cores::now();
                    let out = slow.await;
                    let waited = cores::now().saturating_duration_since(started);
                    let during = ticks.get();
                    done.set(true);
                    let _ = ticker.await;
                    (out, during, refused, waited, c.stats(), c.in_flight())
                })
            }),
        );
        let (out, during, refused, waited, stats, in_flight) = got;
        assert_eq!(out.rc, RCL_TRANSFER_TIMEOUT, "{backend:?}");
        assert_eq!((out.body, out.http_code), (None, 0));
        assert!(
            during > 0,
            "{backend:?}: the shard did not tick during the call"
        );
        assert!(refused, "{backend:?}: max_async_transfers not enforced");
        // Ended by curl_timeout, not by the server (which answers after 1.5 s).
        assert!(waited < Duration::from_millis(1500), "{waited:?}");
        assert_eq!(
            (stats.transfer_timeouts, stats.refused_too_many, in_flight),
            (1, 1, 0)
        );
        server.join().unwrap();
    }
}

#[test]
fn refused_and_unresolvable() {
    for backend in BACKENDS {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let tls = plain_tls();
        let got = on_shard(
            backend,
            Box::new(move || {
                let tls = tls.clone();
                Box::pin(async move {
                    let c = client(params(), tls);
                    let refused = c
                        .rest_get(rest_get(&format!("http://127.0.0.1:{port}/"), vec![]).unwrap())
                        .await;
                    // Not in the hosts table; the nameserver port is closed.
                    let unknown = c
                        .rest_get(rest_get("http://nowhere.test/", vec![]).unwrap())
                        .await;
                    (refused.rc, unknown.rc, c.in_flight())
                })
            }),
        );
        assert_eq!(
            got,
            (RCL_CONNECT_REFUSED, RCL_INTERNAL_ERR, 0),
            "{backend:?}"
        );
    }
}

// ---------------------------------------------------------------- TLS

struct TestPki {
    ca_pem: String,
    server_chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    server_key_der: Vec<u8>,
}

/// A CA and a server certificate for `localhost`, signed by it.
fn test_pki() -> TestPki {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "ringsip ring test CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let server_key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_cert = params.signed_by(&server_key, &issuer).unwrap();
    TestPki {
        ca_pem: ca_cert.pem(),
        server_chain: vec![server_cert.der().clone()],
        server_key_der: server_key.serialize_der(),
    }
}

/// The CA written to a unique temporary file (removed on drop).
struct TempCa(PathBuf);

impl Drop for TempCa {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn https_by_host_name_with_test_ca() {
    let pki = test_pki();
    let ca = TempCa(
        std::env::temp_dir().join(format!("ringsip-ring-rest-ca-{}.pem", std::process::id())),
    );
    std::fs::write(&ca.0, &pki.ca_pem).unwrap();
    let tls = TlsClient::new(&TlsOptions {
        verify_peer: true,
        verify_host: true,
        ca_path: Some(ca.0.clone()),
    })
    .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server_config = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                pki.server_chain.clone(),
                rustls::pki_types::PrivateKeyDer::Pkcs8(pki.server_key_der.clone().into()),
            )
            .unwrap(),
    );
    for backend in BACKENDS {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let config = server_config.clone();
        let server = thread::spawn(move || {
            let mut seen = Vec::new();
            // Connection 1: two requests on one TLS session (keep-alive over TLS).
            // Connection 2: the client rejects the certificate during the handshake.
            for max_requests in [2, 1] {
                let (s, _): (TcpStream, _) = l.accept().unwrap();
                let conn = rustls::ServerConnection::new(config.clone()).unwrap();
                let mut tls = rustls::StreamOwned::new(conn, s);
                let mut pending = Vec::new();
                let mut served = 0;
                while let Some(req) = read_request(&mut tls, &mut pending) {
                    served += 1;
                    let body = format!("secure {}", seen.len());
                    seen.push(req);
                    if tls.write_all(&response("text/plain", &body)).is_err() {
                        break;
                    }
                    let _ = tls.flush();
                    if served == max_requests {
                        break;
                    }
                }
            }
            seen
        });
        let tls = tls.clone();
        let got = on_shard(
            backend,
            Box::new(move || {
                let tls = tls.clone();
                Box::pin(async move {
                    let c = client(params(), tls);
                    let url = format!("https://localhost:{}/sec", addr.port());
                    let a = c.rest_get(rest_get(&url, vec![]).unwrap()).await;
                    let b = c.rest_get(rest_get(&url, vec![]).unwrap()).await;
                    // Same server by IP: the certificate names only `localhost`.
                    let ip = format!("https://127.0.0.1:{}/sec", addr.port());
                    let wrong = c.rest_get(rest_get(&ip, vec![]).unwrap()).await;
                    (a, b, wrong.rc, c.stats().connects)
                })
            }),
        );
        let (a, b, wrong_rc, connects) = got;
        assert_eq!(a.rc, RCL_OK, "{backend:?}");
        assert_eq!(a.body.as_deref(), Some(b"secure 0".as_slice()));
        assert_eq!(b.body.as_deref(), Some(b"secure 1".as_slice()));
        assert_eq!(wrong_rc, RCL_INTERNAL_ERR);
        // One for both localhost requests (reuse), one for the rejected IP attempt.
        assert_eq!(connects, 2);
        let seen = server.join().unwrap();
        assert_eq!(seen.len(), 2);
        assert!(seen
            .iter()
            .all(|s| s.path == "/sec" && s.host.starts_with("localhost:")));
    }
}

/// `connection_timeout` covers the TLS handshake: a server that accepts TCP (the
/// kernel's backlog) but never answers the ClientHello gives `$rc` -2, in time.
#[test]
fn tls_handshake_bounded_by_connection_timeout() {
    for backend in BACKENDS {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let tls = plain_tls();
        let got = on_shard(
            backend,
            Box::new(move || {
                let tls = tls.clone();
                Box::pin(async move {
                    let p = RestClientParams {
                        connection_timeout: Duration::from_millis(300),
                        curl_timeout: Duration::from_secs(20),
                        ..params()
                    };
                    let c = client(p, tls);
                    let url = format!("https://localhost:{port}/");
                    let out = c.rest_get(rest_get(&url, vec![]).unwrap()).await;
                    (out.rc, c.stats().transfer_timeouts, c.in_flight())
                })
            }),
        );
        assert_eq!(got, (RCL_CONNECT_TIMEOUT, 0, 0), "{backend:?}");
        drop(l);
    }
}
