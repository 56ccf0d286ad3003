//! `DbPool` on a real shard against the real local servers: MariaDB 127.0.0.1:3306 (root,
//! no password, database `test`) and PostgreSQL 127.0.0.1:5432 (postgres, trust,
//! database `test`). Each test body runs as a task on a one-shard `cores` runtime whose
//! backend follows `RINGSIP_BACKEND` (run the suite once more with `RINGSIP_BACKEND=epoll`).
//! Tables are uniquely named and dropped. No assertion is about wall-clock speed: "at
//! once" means "ready on the first poll", ordering is checked by completion order.

#[path = "common/dns.rs"]
mod fake_dns;

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::sync::mpsc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use cores::{Backend, Config, TcpListener, TcpStream};
use fake_dns::FakeDns;
use hickory_proto::rr::RecordType;
use ringsip::modules::db::pool::{DbPool, DbPoolConfig, PoolError};
use ringsip::modules::db::{DbError, DbUrl, QueryResult};
use ringsip::transport::dns::ring::{ring_resolver, RingResolver, SystemDnsConfig};
use ringsip::transport::dns::{Hosts, ResolveError, ResolverConfig};

/// How long a test waits for its shard task before declaring it hung.
const HANG: Duration = Duration::from_secs(60);

/// Runs `body` as a task on a fresh one-shard runtime and returns its output.
fn on_shard<T, F>(body: F) -> T
where
    T: Send + 'static,
    F: FnOnce() -> Pin<Box<dyn Future<Output = T>>> + Send + 'static,
{
    let config = Config {
        cpus: Some(vec![0]),
        pin: false,
        backend: Backend::Auto,
        ..Config::default()
    };
    let rt = cores::start(config, |_| Ok(())).expect("start runtime");
    if let Ok(forced) = std::env::var("RINGSIP_BACKEND") {
        assert_eq!(rt.backend(), forced, "RINGSIP_BACKEND is honoured");
    }
    let (tx, rx) = mpsc::channel::<T>();
    let posted = rt.shards()[0].post(Box::new(move || {
        cores::spawn_local(async move {
            let v = body().await;
            let _ = tx.send(v);
        });
    }));
    assert!(posted.is_ok(), "posting the test body to the shard");
    let out = rx
        .recv_timeout(HANG)
        .expect("the shard task finished (see its panic above)");
    rt.shutdown();
    out
}

/// Polls `fut` once: `Some(output)` if it completed without waiting.
fn poll_once<F: Future>(fut: F) -> Option<F::Output> {
    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    match fut.as_mut().poll(&mut cx) {
        Poll::Ready(v) => Some(v),
        Poll::Pending => None,
    }
}

/// One backend under test, with its SQL dialect.
#[derive(Clone, Copy)]
struct Db {
    name: &'static str,
    url: &'static str,
    /// A statement with one text parameter that returns it.
    echo: &'static str,
    /// A statement returning this connection's server-side id.
    conn_id: &'static str,
    sleep: fn(f64) -> String,
    kill: fn(u64) -> String,
    /// Counts server sessions with a given id (0 once a killed one is gone).
    sessions: fn(u64) -> String,
    insert: &'static str,
}

const MYSQL: Db = Db {
    name: "mariadb",
    url: "mysql://root@127.0.0.1:3306/test",
    echo: "SELECT ?",
    conn_id: "SELECT CONNECTION_ID()",
    sleep: |s| format!("SELECT SLEEP({s})"),
    kill: |id| format!("KILL {id}"),
    sessions: |id| format!("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = {id}"),
    insert: "INSERT INTO {t} (id, name) VALUES (?, ?)",
};

const POSTGRES: Db = Db {
    name: "postgres",
    url: "postgres://postgres@127.0.0.1:5432/test",
    echo: "SELECT $1::text",
    conn_id: "SELECT pg_backend_pid()",
    sleep: |s| format!("SELECT pg_sleep({s})"),
    kill: |id| format!("SELECT pg_terminate_backend({id})"),
    sessions: |id| format!("SELECT count(*) FROM pg_stat_activity WHERE pid = {id}"),
    insert: "INSERT INTO {t} (id, name) VALUES ($1::int, $2)",
};

const DBS: [Db; 2] = [MYSQL, POSTGRES];

fn pool(db: Db, config: DbPoolConfig) -> Rc<DbPool> {
    let url = DbUrl::parse(db.url).expect("test url");
    DbPool::new(url, config).expect("pool")
}

fn pool_at(db: Db, addr: SocketAddr, config: DbPoolConfig) -> Rc<DbPool> {
    let mut url = DbUrl::parse(db.url).expect("test url");
    url.host = addr.ip().to_string();
    url.port = addr.port();
    DbPool::new(url, config).expect("pool")
}

fn cell(r: &QueryResult, row: usize, col: usize) -> Option<String> {
    r.rows
        .get(row)
        .and_then(|r| r.get(col))
        .cloned()
        .flatten()
        .map(|v| String::from_utf8_lossy(&v).into_owned())
}

fn suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{}_{}", std::process::id(), nanos)
}

/// A port on 127.0.0.1 that nothing listens on (bound, read, closed).
fn closed_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("reserve a port")
}

async fn q(pool: &Rc<DbPool>, sql: &str, params: &[&str]) -> Result<QueryResult, PoolError> {
    let params = params.iter().map(|p| Some(p.as_bytes().to_vec())).collect();
    pool.query(sql, params, None).await
}

#[test]
fn a_query_on_each_backend() {
    for db in DBS {
        on_shard(move || {
            Box::pin(async move {
                let p = pool(db, DbPoolConfig::default());
                let t = format!("pool_a_{}", suffix());
                q(
                    &p,
                    &format!("CREATE TABLE {t} (id INT PRIMARY KEY, name VARCHAR(32))"),
                    &[],
                )
                .await
                .unwrap_or_else(|e| panic!("{}: create: {e}", db.name));
                let ins = db.insert.replace("{t}", &t);
                for (id, name) in [("1", "alice"), ("2", "bob")] {
                    let r = q(&p, &ins, &[id, name]).await;
                    assert_eq!(r.map(|r| r.affected_rows).ok(), Some(1), "{}", db.name);
                }
                let r = q(&p, &format!("SELECT name FROM {t} ORDER BY id"), &[]).await;
                q(&p, &format!("DROP TABLE {t}"), &[])
                    .await
                    .unwrap_or_else(|e| panic!("{}: drop: {e}", db.name));
                let r = r.unwrap_or_else(|e| panic!("{}: select: {e}", db.name));
                assert_eq!(
                    (cell(&r, 0, 0), cell(&r, 1, 0), r.rows.len()),
                    (Some("alice".into()), Some("bob".into()), 2),
                    "{}",
                    db.name
                );
                let s = p.stats();
                assert_eq!(
                    (s.in_flight, s.connects, s.open, s.idle),
                    (0, 1, 1, 1),
                    "{}",
                    db.name
                );
                assert_eq!(s.queries, 5, "{}", db.name);
            })
        });
    }
}

#[test]
fn b_fifty_concurrent_queries_share_four_connections() {
    for db in DBS {
        on_shard(move || {
            Box::pin(async move {
                let p = pool(db, DbPoolConfig::default());
                let handles: Vec<_> = (0..50)
                    .map(|i| {
                        let f = p.query(db.echo, vec![Some(format!("v{i}").into_bytes())], None);
                        cores::spawn_local(f)
                    })
                    .collect();
                // One loop turn: every task has asked for a connection once; 4 are
                // connecting (several round trips away), the others must be queued.
                cores::sleep(Duration::ZERO).await;
                let peak = p.stats();
                for (i, h) in handles.into_iter().enumerate() {
                    let r = h
                        .await
                        .unwrap_or_else(|e| panic!("{}: query {i}: {e}", db.name));
                    assert_eq!(cell(&r, 0, 0), Some(format!("v{i}")), "{}", db.name);
                }
                let s = p.stats();
                assert!(
                    peak.queued > 0,
                    "{}: nothing ever queued: {peak:?}",
                    db.name
                );
                assert_eq!((s.in_flight, s.queued), (0, 0), "{}", db.name);
                assert_eq!(
                    (s.connects, s.open, s.idle),
                    (4, 4, 4),
                    "{}: {s:?}",
                    db.name
                );
                assert_eq!(s.queries, 50, "{}", db.name);
            })
        });
    }
}

#[test]
fn c_past_the_queue_bound_a_query_fails_at_once() {
    for db in DBS {
        on_shard(move || {
            Box::pin(async move {
                let config = DbPoolConfig {
                    pool_size: 1,
                    max_queued_queries: 2,
                    ..DbPoolConfig::default()
                };
                let p = pool(db, config);
                let sleep = (db.sleep)(0.1);
                let handles: Vec<_> = (0..3)
                    .map(|_| cores::spawn_local(p.query(sleep.as_str(), vec![], None)))
                    .collect();
                cores::sleep(Duration::from_millis(1)).await;
                let s = p.stats();
                assert_eq!((s.in_flight, s.queued), (3, 2), "{}: {s:?}", db.name);
                let fourth = poll_once(p.query("SELECT 1", vec![], None));
                assert!(
                    matches!(fourth, Some(Err(PoolError::QueueFull { limit: 2 }))),
                    "{}: {fourth:?}",
                    db.name
                );
                for h in handles {
                    if let Err(e) = h.await {
                        panic!("{}: queued query: {e}", db.name);
                    }
                }
                let s = p.stats();
                assert_eq!(
                    (s.in_flight, s.queued, s.connects, s.queue_full),
                    (0, 0, 1, 1),
                    "{}: {s:?}",
                    db.name
                );
            })
        });
    }
}

#[test]
fn d_a_query_time_out_discards_the_connection() {
    for db in DBS {
        on_shard(move || {
            Box::pin(async move {
                let p = pool(db, DbPoolConfig::default());
                // Warm up, so the 50 ms only covers the query.
                q(&p, "SELECT 1", &[])
                    .await
                    .unwrap_or_else(|e| panic!("{}: {e}", db.name));
                let slow = (db.sleep)(0.2);
                let r = p
                    .query(slow.as_str(), vec![], Some(Duration::from_millis(50)))
                    .await;
                assert!(
                    matches!(r, Err(PoolError::Timeout(d)) if d == Duration::from_millis(50)),
                    "{}: {r:?}",
                    db.name
                );
                let s = p.stats();
                assert_eq!(
                    (s.in_flight, s.timeouts, s.discarded, s.open),
                    (0, 1, 1, 0),
                    "{}: {s:?}",
                    db.name
                );
                let r = q(&p, "SELECT 1", &[]).await;
                assert_eq!(
                    r.ok().and_then(|r| cell(&r, 0, 0)),
                    Some("1".into()),
                    "{}",
                    db.name
                );
                let s = p.stats();
                assert_eq!((s.in_flight, s.connects, s.open), (0, 2, 1), "{}", db.name);
            })
        });
    }
}

#[test]
fn e_a_dead_server_fails_then_down_at_once() {
    let refused = closed_port();
    on_shard(move || {
        Box::pin(async move {
            let config = DbPoolConfig {
                reconnect_interval_min: Duration::from_secs(30),
                reconnect_interval_max: Duration::from_secs(60),
                ..DbPoolConfig::default()
            };
            let p = pool_at(MYSQL, refused, config);
            let r = q(&p, "SELECT 1", &[]).await;
            assert!(
                matches!(&r, Err(PoolError::Connect { source, .. })
                    if source.kind() == io::ErrorKind::ConnectionRefused),
                "{r:?}"
            );
            let again = poll_once(p.query("SELECT 1", vec![], None));
            assert!(
                matches!(&again, Some(Err(PoolError::Down { server, .. })) if *server == refused.to_string()),
                "{again:?}"
            );
            let s = p.stats();
            assert_eq!(
                (
                    s.in_flight,
                    s.open,
                    s.connect_failures,
                    s.down_rejections,
                    s.connects
                ),
                (0, 0, 1, 1, 0),
                "{s:?}"
            );
        })
    });
}

#[test]
fn e_a_black_holed_server_times_out_then_down_at_once() {
    on_shard(|| {
        Box::pin(async {
            // A listener with backlog 0 that never accepts: once its accept queue is full
            // the kernel drops further SYNs, so connects hang.
            let listener =
                TcpListener::bind("127.0.0.1:0".parse().expect("addr"), false, 0).expect("bind");
            let addr = listener.local_addr();
            let mut held = Vec::new();
            for _ in 0..16 {
                match TcpStream::connect(addr, Duration::from_millis(200)).await {
                    Ok(s) => held.push(s),
                    Err(e) if e.kind() == io::ErrorKind::TimedOut => break,
                    Err(e) => panic!("filling the accept queue: {e}"),
                }
            }
            assert!(held.len() < 16, "the accept queue never filled");
            let config = DbPoolConfig {
                connect_timeout: Duration::from_millis(200),
                reconnect_interval_min: Duration::from_secs(30),
                reconnect_interval_max: Duration::from_secs(60),
                ..DbPoolConfig::default()
            };
            let p = pool_at(MYSQL, addr, config);
            let r = q(&p, "SELECT 1", &[]).await;
            assert!(
                matches!(r, Err(PoolError::ConnectTimeout { timeout, .. })
                    if timeout == Duration::from_millis(200)),
                "{r:?}"
            );
            let again = poll_once(p.query("SELECT 1", vec![], None));
            assert!(
                matches!(again, Some(Err(PoolError::Down { .. }))),
                "{again:?}"
            );
            let s = p.stats();
            assert_eq!(
                (s.in_flight, s.connecting, s.open, s.connect_failures),
                (0, 0, 0, 1)
            );
            drop(held);
        })
    });
}

#[test]
fn e_queued_calls_fail_with_down_when_the_connect_fails() {
    on_shard(|| {
        Box::pin(async {
            let listener =
                TcpListener::bind("127.0.0.1:0".parse().expect("addr"), false, 0).expect("bind");
            let addr = listener.local_addr();
            let mut held = Vec::new();
            for _ in 0..16 {
                match TcpStream::connect(addr, Duration::from_millis(200)).await {
                    Ok(s) => held.push(s),
                    Err(_) => break,
                }
            }
            let config = DbPoolConfig {
                pool_size: 1,
                connect_timeout: Duration::from_millis(200),
                reconnect_interval_min: Duration::from_secs(30),
                reconnect_interval_max: Duration::from_secs(60),
                ..DbPoolConfig::default()
            };
            let p = pool_at(MYSQL, addr, config);
            let first = cores::spawn_local(p.query("SELECT 1", vec![], None));
            let second = cores::spawn_local(p.query("SELECT 1", vec![], None));
            let third = cores::spawn_local(p.query("SELECT 1", vec![], None));
            let (a, b, c) = (first.await, second.await, third.await);
            assert!(matches!(a, Err(PoolError::ConnectTimeout { .. })), "{a:?}");
            assert!(matches!(b, Err(PoolError::Down { .. })), "{b:?}");
            assert!(matches!(c, Err(PoolError::Down { .. })), "{c:?}");
            let s = p.stats();
            assert_eq!(
                (
                    s.in_flight,
                    s.queued,
                    s.connecting,
                    s.open,
                    s.down_rejections
                ),
                (0, 0, 0, 0, 2),
                "{s:?}"
            );
            drop(held);
        })
    });
}

#[test]
fn e_a_connect_outlives_the_caller_time_out_and_starts_the_back_off() {
    on_shard(|| {
        Box::pin(async {
            let listener =
                TcpListener::bind("127.0.0.1:0".parse().expect("addr"), false, 0).expect("bind");
            let addr = listener.local_addr();
            let mut held = Vec::new();
            for _ in 0..16 {
                match TcpStream::connect(addr, Duration::from_millis(200)).await {
                    Ok(s) => held.push(s),
                    Err(_) => break,
                }
            }
            let config = DbPoolConfig {
                connect_timeout: Duration::from_millis(200),
                query_timeout: Duration::from_millis(20),
                reconnect_interval_min: Duration::from_secs(30),
                reconnect_interval_max: Duration::from_secs(60),
                ..DbPoolConfig::default()
            };
            let p = pool_at(MYSQL, addr, config);
            let r = q(&p, "SELECT 1", &[]).await;
            assert!(matches!(r, Err(PoolError::Timeout(_))), "{r:?}");
            let s = p.stats();
            assert_eq!((s.in_flight, s.connecting), (0, 1), "{s:?}");
            for _ in 0..200 {
                if p.stats().connecting == 0 {
                    break;
                }
                cores::sleep(Duration::from_millis(10)).await;
            }
            let s = p.stats();
            assert_eq!(
                (s.connecting, s.connect_failures, s.open),
                (0, 1, 0),
                "{s:?}"
            );
            let again = poll_once(p.query("SELECT 1", vec![], None));
            assert!(
                matches!(again, Some(Err(PoolError::Down { .. }))),
                "{again:?}"
            );
            drop(held);
        })
    });
}

fn upstream(db: Db) -> SocketAddr {
    let u = DbUrl::parse(db.url).expect("url");
    SocketAddr::new(u.host.parse().expect("ip"), u.port)
}

#[test]
fn e_a_connect_finishing_after_its_caller_left_serves_the_next_call() {
    for db in DBS {
        // A server that answers 150 ms late: the 20 ms caller gives up mid-handshake.
        let slow = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = slow.local_addr().expect("addr");
        forward(slow, upstream(db), 1, Duration::from_millis(150));
        on_shard(move || {
            Box::pin(async move {
                let p = pool_at(db, addr, DbPoolConfig::default());
                let r = p
                    .query("SELECT 1", vec![], Some(Duration::from_millis(20)))
                    .await;
                assert!(
                    matches!(r, Err(PoolError::Timeout(_))),
                    "{}: {r:?}",
                    db.name
                );
                assert_eq!(p.stats().connecting, 1, "{}", db.name);
                for _ in 0..500 {
                    if p.stats().connecting == 0 {
                        break;
                    }
                    cores::sleep(Duration::from_millis(10)).await;
                }
                let s = p.stats();
                assert_eq!(
                    (s.connects, s.open, s.idle, s.in_flight),
                    (1, 1, 1, 0),
                    "{}: {s:?}",
                    db.name
                );
                assert!(q(&p, "SELECT 1", &[]).await.is_ok(), "{}", db.name);
                assert_eq!(p.stats().connects, 1, "{}", db.name);
            })
        });
    }
}

/// Forwards the next `n` connections on `listener` to `upstream`, on plain threads,
/// each after `delay` (a slow server).
fn forward(listener: std::net::TcpListener, upstream: SocketAddr, n: usize, delay: Duration) {
    std::thread::spawn(move || {
        for _ in 0..n {
            let Ok((down, _)) = listener.accept() else {
                return;
            };
            std::thread::sleep(delay);
            let Ok(up) = std::net::TcpStream::connect(upstream) else {
                return;
            };
            for (mut from, mut to) in [
                (down.try_clone(), up.try_clone()),
                (up.try_clone(), down.try_clone()),
            ]
            .into_iter()
            .filter_map(|(a, b)| Some((a.ok()?, b.ok()?)))
            {
                std::thread::spawn(move || {
                    let _ = io::copy(&mut from, &mut to);
                    let _ = to.shutdown(std::net::Shutdown::Write);
                });
            }
        }
    });
}

#[test]
fn e_the_pool_recovers_when_the_server_comes_back() {
    for db in DBS {
        let addr = closed_port();
        let upstream = upstream(db);
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let (ready_tx, ready_rx) = mpsc::channel::<()>();
        // The "server coming back": a forwarder to the real server on the dead port.
        std::thread::spawn(move || {
            if go_rx.recv().is_ok() {
                if let Ok(l) = std::net::TcpListener::bind(addr) {
                    forward(l, upstream, 1, Duration::ZERO);
                }
                let _ = ready_tx.send(());
            }
        });
        let ready_rx = std::sync::Mutex::new(ready_rx);
        on_shard(move || {
            Box::pin(async move {
                let config = DbPoolConfig {
                    reconnect_interval_min: Duration::from_millis(50),
                    reconnect_interval_max: Duration::from_millis(50),
                    ..DbPoolConfig::default()
                };
                let p = pool_at(db, addr, config);
                let r = q(&p, "SELECT 1", &[]).await;
                assert!(
                    matches!(r, Err(PoolError::Connect { .. })),
                    "{}: {r:?}",
                    db.name
                );
                let _ = go_tx.send(());
                // Wait (without blocking the shard) for the forwarder to listen.
                loop {
                    let got = ready_rx.lock().map(|rx| rx.try_recv());
                    if matches!(got, Ok(Ok(()))) {
                        break;
                    }
                    cores::sleep(Duration::from_millis(5)).await;
                }
                // Past the back-off the next call connects again.
                cores::sleep(Duration::from_millis(60)).await;
                let r = q(&p, "SELECT 1", &[]).await;
                assert_eq!(
                    r.ok().and_then(|r| cell(&r, 0, 0)),
                    Some("1".into()),
                    "{}",
                    db.name
                );
                let s = p.stats();
                assert_eq!(
                    (s.in_flight, s.connects, s.connect_failures, s.open),
                    (0, 1, 1, 1),
                    "{}: {s:?}",
                    db.name
                );
            })
        });
    }
}

#[test]
fn d_a_call_timing_out_in_the_queue_leaves_it() {
    for db in DBS {
        on_shard(move || {
            Box::pin(async move {
                let config = DbPoolConfig {
                    pool_size: 1,
                    ..DbPoolConfig::default()
                };
                let p = pool(db, config);
                let slow = cores::spawn_local(p.query((db.sleep)(0.3), vec![], None));
                cores::sleep(Duration::from_millis(1)).await;
                let r = p
                    .query("SELECT 1", vec![], Some(Duration::from_millis(50)))
                    .await;
                assert!(
                    matches!(r, Err(PoolError::Timeout(_))),
                    "{}: {r:?}",
                    db.name
                );
                let s = p.stats();
                assert_eq!((s.in_flight, s.queued), (1, 0), "{}: {s:?}", db.name);
                assert!(slow.await.is_ok(), "{}", db.name);
                let r = q(&p, "SELECT 1", &[]).await;
                assert!(r.is_ok(), "{}: {r:?}", db.name);
                let s = p.stats();
                assert_eq!(
                    (s.in_flight, s.connects, s.discarded, s.timeouts),
                    (0, 1, 0, 1),
                    "{}: {s:?}",
                    db.name
                );
            })
        });
    }
}

#[test]
fn d_a_server_error_keeps_the_connection() {
    for db in DBS {
        on_shard(move || {
            Box::pin(async move {
                let p = pool(db, DbPoolConfig::default());
                let r = q(&p, "SELECT * FROM no_such_table_ringsip_pool", &[]).await;
                assert!(
                    matches!(r, Err(PoolError::Query(DbError::Server { .. }))),
                    "{}: {r:?}",
                    db.name
                );
                assert!(q(&p, "SELECT 1", &[]).await.is_ok(), "{}", db.name);
                let s = p.stats();
                assert_eq!(
                    (s.connects, s.discarded, s.open),
                    (1, 0, 1),
                    "{}: {s:?}",
                    db.name
                );
            })
        });
    }
}

#[test]
fn f_a_connection_killed_mid_query_fails_then_recovers() {
    for db in DBS {
        on_shard(move || {
            Box::pin(async move {
                let victim = pool(
                    db,
                    DbPoolConfig {
                        pool_size: 1,
                        query_timeout: Duration::from_secs(10),
                        ..DbPoolConfig::default()
                    },
                );
                let admin = pool(db, DbPoolConfig::default());
                let r = q(&victim, db.conn_id, &[]).await;
                let id: u64 = r
                    .ok()
                    .and_then(|r| cell(&r, 0, 0))
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_else(|| panic!("{}: connection id", db.name));
                let slow = cores::spawn_local(victim.query((db.sleep)(2.0), vec![], None));
                cores::sleep(Duration::from_millis(200)).await;
                q(&admin, &(db.kill)(id), &[])
                    .await
                    .unwrap_or_else(|e| panic!("{}: kill: {e}", db.name));
                let r = slow.await;
                assert!(
                    matches!(
                        r,
                        Err(PoolError::Query(DbError::Closed(_) | DbError::Io(_)))
                    ),
                    "{}: {r:?}",
                    db.name
                );
                let s = victim.stats();
                assert_eq!((s.in_flight, s.open, s.discarded), (0, 0, 1), "{}", db.name);
                let r = q(&victim, db.conn_id, &[]).await;
                let new_id = r.ok().and_then(|r| cell(&r, 0, 0));
                assert!(
                    new_id.is_some() && new_id != Some(id.to_string()),
                    "{}: {new_id:?}",
                    db.name
                );
                assert_eq!(victim.stats().connects, 2, "{}", db.name);
            })
        });
    }
}

/// Kills the connection of `victim` (pool size 1) while it is idle; returns its id.
async fn kill_idle(db: Db, victim: &Rc<DbPool>, admin: &Rc<DbPool>) -> u64 {
    let r = q(victim, db.conn_id, &[]).await;
    let id: u64 = r
        .ok()
        .and_then(|r| cell(&r, 0, 0))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{}: connection id", db.name));
    q(admin, &(db.kill)(id), &[])
        .await
        .unwrap_or_else(|e| panic!("{}: kill: {e}", db.name));
    // Wait until the server has really ended the session.
    for _ in 0..500 {
        let r = q(admin, &(db.sessions)(id), &[]).await;
        if r.ok().and_then(|r| cell(&r, 0, 0)).as_deref() == Some("0") {
            return id;
        }
        cores::sleep(Duration::from_millis(10)).await;
    }
    panic!("{}: session {id} survived its kill", db.name)
}

#[test]
fn f_a_long_idle_connection_is_pinged_and_replaced() {
    for db in DBS {
        on_shard(move || {
            Box::pin(async move {
                let config = DbPoolConfig {
                    pool_size: 1,
                    ping_interval: Duration::from_millis(10),
                    ..DbPoolConfig::default()
                };
                let victim = pool(db, config);
                let admin = pool(db, DbPoolConfig::default());
                kill_idle(db, &victim, &admin).await;
                // Idle for longer than ping_interval.
                cores::sleep(Duration::from_millis(30)).await;
                let r = q(&victim, "SELECT 1", &[]).await;
                assert!(r.is_ok(), "{}: {r:?}", db.name);
                let s = victim.stats();
                assert_eq!(
                    (
                        s.pings,
                        s.ping_failures,
                        s.discarded,
                        s.connects,
                        s.in_flight
                    ),
                    (1, 1, 1, 2, 0),
                    "{}: {s:?}",
                    db.name
                );
            })
        });
    }
}

#[test]
fn f_a_recently_used_dead_connection_fails_the_query_without_retry() {
    for db in DBS {
        on_shard(move || {
            Box::pin(async move {
                let config = DbPoolConfig {
                    pool_size: 1,
                    ..DbPoolConfig::default()
                };
                let victim = pool(db, config);
                let admin = pool(db, DbPoolConfig::default());
                kill_idle(db, &victim, &admin).await;
                let r = q(&victim, "SELECT 1", &[]).await;
                assert!(
                    matches!(
                        r,
                        Err(PoolError::Query(DbError::Closed(_) | DbError::Io(_)))
                    ),
                    "{}: {r:?}",
                    db.name
                );
                assert!(q(&victim, "SELECT 1", &[]).await.is_ok(), "{}", db.name);
                let s = victim.stats();
                assert_eq!(
                    (s.pings, s.discarded, s.connects, s.in_flight),
                    (0, 1, 2, 0),
                    "{}: {s:?}",
                    db.name
                );
            })
        });
    }
}

#[test]
fn g_a_slow_query_does_not_block_the_shard() {
    for db in DBS {
        on_shard(move || {
            Box::pin(async move {
                let p = pool(db, DbPoolConfig::default());
                let log: Rc<RefCell<Vec<&'static str>>> = Rc::default();
                let ticks = Rc::new(Cell::new(0u32));
                let stop = Rc::new(Cell::new(false));
                let ticker = {
                    let (ticks, stop) = (ticks.clone(), stop.clone());
                    cores::spawn_local(async move {
                        while !stop.get() {
                            cores::sleep(Duration::from_millis(10)).await;
                            ticks.set(ticks.get() + 1);
                        }
                    })
                };
                let slow = {
                    let (log, ticks) = (log.clone(), ticks.clone());
                    let f = p.query((db.sleep)(0.3), vec![], None);
                    cores::spawn_local(async move {
                        let r = f.await;
                        log.borrow_mut().push("slow");
                        (r, ticks.get())
                    })
                };
                cores::sleep(Duration::from_millis(20)).await;
                let fast = {
                    let log = log.clone();
                    let f = p.query("SELECT 1", vec![], None);
                    cores::spawn_local(async move {
                        let r = f.await;
                        log.borrow_mut().push("fast");
                        r
                    })
                };
                let (slow_r, ticks_at_slow_end) = slow.await;
                let fast_r = fast.await;
                stop.set(true);
                ticker.await;
                assert!(slow_r.is_ok(), "{}: {slow_r:?}", db.name);
                assert!(fast_r.is_ok(), "{}: {fast_r:?}", db.name);
                assert_eq!(*log.borrow(), ["fast", "slow"], "{}", db.name);
                assert!(ticks_at_slow_end >= 2, "{}: timer stalled", db.name);
                let s = p.stats();
                assert_eq!((s.in_flight, s.connects), (0, 2), "{}: {s:?}", db.name);
            })
        });
    }
}

// ------------------------------------------------------------ db_url host names

/// A resolver for this shard asking 127.0.0.1:`dns_port` (one attempt, `timeout` per
/// query) after the hosts table `hosts`.
fn resolver(dns_port: u16, timeout: Duration, hosts: &[(&str, IpAddr)]) -> Rc<RingResolver> {
    let mut config = ResolverConfig::with_nameserver(SocketAddr::from(([127, 0, 0, 1], dns_port)));
    config.timeout = timeout;
    config.attempts = 1;
    let mut table = Hosts::new();
    for (name, ip) in hosts {
        table.insert(name, *ip);
    }
    ring_resolver(
        &SystemDnsConfig {
            config,
            hosts: table,
        },
        64,
    )
}

/// A pool for `db` whose URL names `host` (and `port`, if given), resolved by `resolver`.
fn named_pool(
    db: Db,
    host: &str,
    port: Option<u16>,
    config: DbPoolConfig,
    resolver: Rc<RingResolver>,
) -> Rc<DbPool> {
    let mut url = DbUrl::parse(db.url).expect("test url");
    url.host = host.to_owned();
    if let Some(port) = port {
        url.port = port;
    }
    DbPool::with_resolver(url, config, resolver).expect("pool")
}

/// A UDP port on 127.0.0.1 nothing listens on: a DNS query to it fails at once.
fn closed_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("reserve a UDP port")
}

/// A port on 127.0.0.1 that forwards its next `n` connections to `db`'s server; the
/// same port on 127.0.0.2 (or any other loopback address) has nothing behind it.
fn forwarder(db: Db, n: usize) -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind forwarder");
    let port = l.local_addr().expect("addr").port();
    forward(l, upstream(db), n, Duration::ZERO);
    port
}

const OTHER_LOOPBACK: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

#[test]
fn h_a_host_name_from_the_hosts_file_reaches_each_backend() {
    for db in DBS {
        on_shard(move || {
            Box::pin(async move {
                // No DNS server: only the hosts table can answer.
                let r = resolver(
                    closed_udp_port(),
                    Duration::from_secs(1),
                    &[("db-hosts.ringsip.test", IpAddr::V4(Ipv4Addr::LOCALHOST))],
                );
                let p = named_pool(
                    db,
                    "db-hosts.ringsip.test",
                    None,
                    DbPoolConfig::default(),
                    r,
                );
                let port = upstream(db).port();
                assert_eq!(p.server(), format!("db-hosts.ringsip.test:{port}"));
                let r = q(&p, db.echo, &["hosted"]).await;
                assert_eq!(
                    r.as_ref().ok().and_then(|r| cell(r, 0, 0)).as_deref(),
                    Some("hosted"),
                    "{}: {r:?}",
                    db.name
                );
                let s = p.stats();
                assert_eq!(
                    (s.connects, s.connect_failures, s.resolve_failures, s.open),
                    (1, 0, 0, 1),
                    "{}: {s:?}",
                    db.name
                );
            })
        });
    }
}

#[test]
fn h_a_host_name_from_dns_is_resolved_again_on_reconnect() {
    for db in DBS {
        let dns = FakeDns::start();
        let host = "db-dns.ringsip.test";
        let port = forwarder(db, 1);
        // First the name points where nothing listens, for 2 s.
        dns.set_a(host, &[OTHER_LOOPBACK], 2);
        let dns_port = dns.port;
        let dns = std::sync::Arc::new(dns);
        let zone = std::sync::Arc::clone(&dns);
        on_shard(move || {
            Box::pin(async move {
                let config = DbPoolConfig {
                    reconnect_interval_min: Duration::from_millis(20),
                    reconnect_interval_max: Duration::from_millis(40),
                    ..DbPoolConfig::default()
                };
                let r = resolver(dns_port, Duration::from_secs(1), &[]);
                let p = named_pool(db, host, Some(port), config, r);
                let wrong = SocketAddr::from((OTHER_LOOPBACK, port));
                let r = q(&p, "SELECT 1", &[]).await;
                assert!(
                    matches!(&r, Err(PoolError::Connect { addr, .. }) if *addr == wrong),
                    "{}: {r:?}",
                    db.name
                );
                // The record changes; within its TTL the pool still uses the cached one.
                zone.set_a(host, &[Ipv4Addr::LOCALHOST], 60);
                cores::sleep(Duration::from_millis(50)).await;
                let r = q(&p, "SELECT 1", &[]).await;
                assert!(
                    matches!(&r, Err(PoolError::Connect { addr, .. }) if *addr == wrong),
                    "{}: {r:?}",
                    db.name
                );
                assert_eq!(zone.asked(host, RecordType::A), 1, "{}", db.name);
                // Once it expired, the next connect asks again and reaches the server.
                cores::sleep(Duration::from_millis(2100)).await;
                let r = q(&p, "SELECT 1", &[]).await;
                assert_eq!(
                    r.as_ref().ok().and_then(|r| cell(r, 0, 0)).as_deref(),
                    Some("1"),
                    "{}: {r:?}",
                    db.name
                );
                assert_eq!(zone.asked(host, RecordType::A), 2, "{}", db.name);
                let s = p.stats();
                assert_eq!(
                    (s.connects, s.connect_failures, s.resolve_failures),
                    (1, 2, 0),
                    "{}: {s:?}",
                    db.name
                );
            })
        });
        drop(dns);
    }
}

#[test]
fn h_the_next_address_is_tried_when_a_connect_is_refused() {
    for db in DBS {
        let dns = FakeDns::start();
        let host = "db-two.ringsip.test";
        let port = forwarder(db, 1);
        dns.set_a(host, &[OTHER_LOOPBACK, Ipv4Addr::LOCALHOST], 60);
        let dns_port = dns.port;
        on_shard(move || {
            Box::pin(async move {
                let r = resolver(dns_port, Duration::from_secs(1), &[]);
                let p = named_pool(db, host, Some(port), DbPoolConfig::default(), r);
                let r = q(&p, "SELECT 1", &[]).await;
                assert!(r.is_ok(), "{}: {r:?}", db.name);
                let s = p.stats();
                assert_eq!(
                    (s.connects, s.connect_failures),
                    (1, 0),
                    "{}: {s:?}",
                    db.name
                );
            })
        });
        drop(dns);
    }
}

/// `hole` accepts no connection once its accept queue is full (see
/// e_a_black_holed_server_times_out_then_down_at_once); returns what keeps it so.
async fn black_hole(hole: SocketAddr) -> (TcpListener, Vec<TcpStream>) {
    let listener = TcpListener::bind(hole, false, 0).expect("bind the black hole");
    let mut held = Vec::new();
    for _ in 0..16 {
        match TcpStream::connect(hole, Duration::from_millis(200)).await {
            Ok(s) => held.push(s),
            Err(e) if e.kind() == io::ErrorKind::TimedOut => break,
            Err(e) => panic!("filling the accept queue: {e}"),
        }
    }
    assert!(held.len() < 16, "the accept queue never filled");
    (listener, held)
}

#[test]
fn h_a_black_holed_first_address_leaves_time_for_the_next() {
    let dns = FakeDns::start();
    let host = "db-hole.ringsip.test";
    let port = forwarder(MYSQL, 1);
    dns.set_a(host, &[OTHER_LOOPBACK, Ipv4Addr::LOCALHOST], 60);
    let dns_port = dns.port;
    on_shard(move || {
        Box::pin(async move {
            let hole = black_hole(SocketAddr::from((OTHER_LOOPBACK, port))).await;
            let config = DbPoolConfig {
                connect_timeout: Duration::from_millis(1000),
                ..DbPoolConfig::default()
            };
            let r = resolver(dns_port, Duration::from_secs(1), &[]);
            let p = named_pool(MYSQL, host, Some(port), config, r);
            let r = q(&p, "SELECT 1", &[]).await;
            assert!(r.is_ok(), "{r:?}");
            assert_eq!((p.stats().connects, p.stats().connect_failures), (1, 0));
            drop(hole);
        })
    });
}

#[test]
fn h_the_time_spent_resolving_is_taken_from_the_address_shares() {
    let dns = FakeDns::start();
    let host = "db-late.ringsip.test";
    let port = forwarder(MYSQL, 1);
    // The answer takes 600 ms of the 1000 ms connect time-out: the black-holed first
    // address gets half of the 400 ms left, not half of a fresh second, so the second
    // address is still reached in time.
    dns.set_a_delayed(
        host,
        &[OTHER_LOOPBACK, Ipv4Addr::LOCALHOST],
        60,
        Duration::from_millis(600),
    );
    let dns_port = dns.port;
    on_shard(move || {
        Box::pin(async move {
            let hole = black_hole(SocketAddr::from((OTHER_LOOPBACK, port))).await;
            let config = DbPoolConfig {
                connect_timeout: Duration::from_millis(1000),
                ..DbPoolConfig::default()
            };
            let r = resolver(dns_port, Duration::from_secs(2), &[]);
            let p = named_pool(MYSQL, host, Some(port), config, r);
            let r = q(&p, "SELECT 1", &[]).await;
            assert!(r.is_ok(), "{r:?}");
            assert_eq!((p.stats().connects, p.stats().connect_failures), (1, 0));
            drop(hole);
        })
    });
}

#[test]
fn h_an_unresolvable_host_name_fails_the_connect_and_backs_off() {
    let dns = FakeDns::start();
    // Known, but without address records.
    dns.set_a("noaddr.ringsip.test", &[], 60);
    let dns_port = dns.port;
    on_shard(move || {
        Box::pin(async move {
            let config = DbPoolConfig {
                reconnect_interval_min: Duration::from_secs(30),
                reconnect_interval_max: Duration::from_secs(60),
                ..DbPoolConfig::default()
            };
            let r = resolver(dns_port, Duration::from_secs(1), &[]);
            let p = named_pool(MYSQL, "nxdomain.ringsip.test", None, config, Rc::clone(&r));
            let e = q(&p, "SELECT 1", &[]).await;
            assert!(
                matches!(&e, Err(PoolError::Resolve { host, source: ResolveError::NxDomain { .. } })
                    if host == "nxdomain.ringsip.test"),
                "{e:?}"
            );
            let text = e.err().map(|e| e.to_string()).unwrap_or_default();
            assert!(
                text.contains("nxdomain.ringsip.test") && text.contains("NXDOMAIN"),
                "{text}"
            );
            // Back-off: the next call fails at once, naming the server and the cause.
            let again = poll_once(p.query("SELECT 1", vec![], None));
            assert!(
                matches!(&again, Some(Err(PoolError::Down { server, last_error, .. }))
                    if server == "nxdomain.ringsip.test:3306" && last_error.contains("NXDOMAIN")),
                "{again:?}"
            );
            let s = p.stats();
            assert_eq!(
                (
                    s.in_flight,
                    s.connecting,
                    s.open,
                    s.connect_failures,
                    s.resolve_failures,
                    s.down_rejections
                ),
                (0, 0, 0, 1, 1, 1),
                "{s:?}"
            );

            let p = named_pool(MYSQL, "noaddr.ringsip.test", None, config, r);
            let e = q(&p, "SELECT 1", &[]).await;
            assert!(
                matches!(
                    &e,
                    Err(PoolError::Resolve {
                        source: ResolveError::NoData { .. },
                        ..
                    })
                ),
                "{e:?}"
            );
            assert_eq!(p.stats().resolve_failures, 1);
        })
    });
}

#[test]
fn h_a_dns_time_out_is_bounded_by_the_connect_time_out_and_blocks_nothing() {
    let dns = FakeDns::start();
    dns.set_silent("silent.ringsip.test");
    let dns_port = dns.port;
    on_shard(move || {
        Box::pin(async move {
            // The resolver would wait 5 s; the connect time-out (300 ms) cuts it.
            let config = DbPoolConfig {
                connect_timeout: Duration::from_millis(300),
                ..DbPoolConfig::default()
            };
            let p = named_pool(
                MYSQL,
                "silent.ringsip.test",
                None,
                config,
                resolver(dns_port, Duration::from_secs(5), &[]),
            );
            let order: Rc<RefCell<Vec<&'static str>>> = Rc::default();
            let unresolved = {
                let order = Rc::clone(&order);
                let f = p.query("SELECT 1", vec![], None);
                cores::spawn_local(async move {
                    let r = f.await;
                    order.borrow_mut().push("unresolved");
                    r
                })
            };
            // Meanwhile the shard serves another pool's query.
            let other = pool(MYSQL, DbPoolConfig::default());
            let r = q(&other, "SELECT 1", &[]).await;
            order.borrow_mut().push("other");
            assert!(r.is_ok(), "{r:?}");
            let r = unresolved.await;
            assert!(
                matches!(&r, Err(PoolError::ResolveTimeout { host, timeout })
                    if host == "silent.ringsip.test" && *timeout == Duration::from_millis(300)),
                "{r:?}"
            );
            assert_eq!(*order.borrow(), ["other", "unresolved"]);
            assert_eq!(
                (p.stats().connect_failures, p.stats().resolve_failures),
                (1, 1)
            );

            // With a resolver time-out shorter than the connect time-out, the
            // resolver's own error is reported.
            let config = DbPoolConfig {
                connect_timeout: Duration::from_secs(3),
                ..DbPoolConfig::default()
            };
            let p = named_pool(
                MYSQL,
                "silent.ringsip.test",
                None,
                config,
                resolver(dns_port, Duration::from_millis(200), &[]),
            );
            let r = q(&p, "SELECT 1", &[]).await;
            assert!(
                matches!(
                    &r,
                    Err(PoolError::Resolve {
                        source: ResolveError::Timeout { .. },
                        ..
                    })
                ),
                "{r:?}"
            );
        })
    });
}

#[test]
fn h_a_pool_without_a_resolver_refuses_a_host_name() {
    let url = DbUrl::parse("mysql://root@db.ringsip.test/test").expect("url");
    assert!(matches!(
        DbPool::new(url, DbPoolConfig::default()),
        Err(PoolError::NoResolver(h)) if h == "db.ringsip.test"
    ));
    let url = DbUrl::parse("mysql://root@db..ringsip.test/test").expect("url");
    assert!(matches!(
        DbPool::new(url, DbPoolConfig::default()),
        Err(PoolError::InvalidHost(_))
    ));
}
