//! TCP on the shard: echo through connect + multishot accept, refused connect fails
//! fast, connect to a black hole times out while timers keep firing.

mod common;

use std::cell::Cell;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use common::BACKENDS;
use cores::{AsyncStream, TcpListener, TcpStream};

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

#[test]
fn tcp_echo_with_accept_and_connect() {
    for backend in BACKENDS {
        let got = common::run(backend, || {
            Box::pin(async {
                let listener = TcpListener::bind(loopback(), false, 128).unwrap();
                let addr = listener.local_addr();
                listener
                    .accept_with(|r| {
                        let (mut s, _peer) = r.unwrap();
                        cores::spawn_local(async move {
                            let mut buf = [0u8; 1000];
                            loop {
                                match s.read(&mut buf).await {
                                    Ok(0) | Err(_) => break,
                                    Ok(n) => {
                                        if s.write_all(&buf[..n]).await.is_err() {
                                            break;
                                        }
                                    }
                                }
                            }
                        });
                    })
                    .unwrap();
                let mut c = TcpStream::connect(addr, Duration::from_secs(5))
                    .await
                    .unwrap();
                // Larger than one read buffer and than MAX_IO chunks on the echo side.
                let msg: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
                let mut back = Vec::new();
                let mut buf = vec![0u8; 4096];
                let writer_msg = msg.clone();
                c.write_all(&writer_msg[..100_000]).await.unwrap();
                while back.len() < 100_000 {
                    let n = c.read(&mut buf).await.unwrap();
                    assert!(n > 0);
                    back.extend_from_slice(&buf[..n]);
                }
                c.write_all(&writer_msg[100_000..]).await.unwrap();
                c.shutdown_write().unwrap();
                loop {
                    let n = c.read(&mut buf).await.unwrap();
                    if n == 0 {
                        break;
                    }
                    back.extend_from_slice(&buf[..n]);
                }
                drop(listener);
                (back == msg, cores::stats().tcp_accepted)
            })
        });
        assert_eq!(got, (true, 1), "{backend:?}");
    }
}

#[test]
fn connect_to_closed_port_fails_fast() {
    for backend in BACKENDS {
        // A port nobody listens on: bind, read the port, close.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let kind = common::run(backend, move || {
            Box::pin(async move {
                let addr: SocketAddr = ([127, 0, 0, 1], port).into();
                // A long time-out: the refusal must arrive long before it.
                match TcpStream::connect(addr, Duration::from_secs(60)).await {
                    Ok(_) => None,
                    Err(e) => Some(e.kind()),
                }
            })
        });
        assert_eq!(kind, Some(io::ErrorKind::ConnectionRefused), "{backend:?}");
    }
}

#[test]
fn connect_to_black_hole_times_out_while_timers_run() {
    for backend in BACKENDS {
        let (kind, ticks, filled) = common::run(backend, || {
            Box::pin(async {
                // A listener with backlog 0 that never accepts: once its accept queue is
                // full, the kernel drops further SYNs and connects hang.
                let listener = TcpListener::bind(loopback(), false, 0).unwrap();
                let addr = listener.local_addr();
                let mut held = Vec::new();
                for _ in 0..16 {
                    match TcpStream::connect(addr, Duration::from_millis(200)).await {
                        Ok(s) => held.push(s),
                        Err(e) if e.kind() == io::ErrorKind::TimedOut => break,
                        Err(e) => panic!("filling the accept queue: {e}"),
                    }
                }
                let filled = held.len();
                let ticks = Rc::new(Cell::new(0u32));
                let t = ticks.clone();
                let ticker = cores::spawn_local(async move {
                    loop {
                        cores::sleep(Duration::from_millis(10)).await;
                        t.set(t.get() + 1);
                    }
                });
                let r = TcpStream::connect(addr, Duration::from_millis(300)).await;
                drop(ticker);
                drop(held);
                drop(listener);
                (r.err().map(|e| e.kind()), ticks.get(), filled)
            })
        });
        assert_eq!(kind, Some(io::ErrorKind::TimedOut), "{backend:?}");
        assert!(filled < 16, "{backend:?}: accept queue never filled");
        assert!(
            ticks >= 2,
            "{backend:?}: timers stalled during connect: {ticks} ticks"
        );
    }
}

#[test]
fn cloned_stream_reads_while_another_task_writes() {
    for backend in BACKENDS {
        let ok = common::run(backend, || {
            Box::pin(async {
                let listener = TcpListener::bind(loopback(), false, 16).unwrap();
                let addr = listener.local_addr();
                listener
                    .accept_with(|r| {
                        let (s, _) = r.unwrap();
                        let mut rd = s.try_clone();
                        let mut wr = s;
                        cores::spawn_local(async move {
                            let mut buf = [0u8; 3000];
                            while let Ok(n) = rd.read(&mut buf).await {
                                if n == 0 || wr.write_all(&buf[..n]).await.is_err() {
                                    break;
                                }
                            }
                        });
                    })
                    .unwrap();
                let c = TcpStream::connect(addr, Duration::from_secs(5))
                    .await
                    .unwrap();
                let mut wr = c.try_clone();
                let mut rd = c;
                let msg: Vec<u8> = (0..1_000_000u32).map(|i| (i % 253) as u8).collect();
                let m2 = msg.clone();
                // Full duplex: the echo would deadlock a half-duplex client at this size.
                let writer = cores::spawn_local(async move {
                    wr.write_all(&m2).await.unwrap();
                    wr.shutdown_write().unwrap();
                });
                let mut back = Vec::with_capacity(msg.len());
                let mut buf = vec![0u8; 65536];
                loop {
                    let n = rd.read(&mut buf).await.unwrap();
                    if n == 0 {
                        break;
                    }
                    back.extend_from_slice(&buf[..n]);
                }
                writer.await;
                back == msg
            })
        });
        assert!(ok, "{backend:?}");
    }
}

#[test]
fn a_timed_out_read_is_cancelled_and_the_stream_stays_usable() {
    for backend in BACKENDS {
        let got = common::run(backend, || {
            Box::pin(async {
                let listener = TcpListener::bind(loopback(), false, 16).unwrap();
                let addr = listener.local_addr();
                let accepted: Rc<Cell<Option<TcpStream>>> = Rc::default();
                let a = accepted.clone();
                listener
                    .accept_with(move |r| a.set(Some(r.unwrap().0)))
                    .unwrap();
                let mut c = TcpStream::connect(addr, Duration::from_secs(5))
                    .await
                    .unwrap();
                let mut buf = [0u8; 16];
                let timed_out = cores::timeout(Duration::from_millis(20), c.read(&mut buf)).await;
                let cancelled = cores::stats().ops_cancelled;
                // Let the cancellation complete before the peer writes.
                cores::sleep(Duration::from_millis(20)).await;
                let mut server = loop {
                    if let Some(s) = accepted.take() {
                        break s;
                    }
                    cores::sleep(Duration::from_millis(1)).await;
                };
                server.write_all(b"x").await.unwrap();
                let n = c.read(&mut buf).await.unwrap();
                (timed_out.is_err(), cancelled >= 1, buf[..n].to_vec())
            })
        });
        assert_eq!(got, (true, true, b"x".to_vec()), "{backend:?}");
    }
}

#[test]
fn connect_from_leaves_from_the_chosen_source() {
    for backend in BACKENDS {
        let got = common::run(backend, || {
            Box::pin(async {
                let listener = TcpListener::bind(loopback(), false, 16).unwrap();
                let addr = listener.local_addr();
                let peer: Rc<Cell<Option<SocketAddr>>> = Rc::default();
                let p = peer.clone();
                listener
                    .accept_with(move |r| p.set(Some(r.unwrap().1)))
                    .unwrap();
                // All of 127/8 is local on Linux: 127.0.0.2 is a source other than the
                // default one.
                let source: SocketAddr = "127.0.0.2:0".parse().unwrap();
                let c = TcpStream::connect_from(Some(source), addr, Duration::from_secs(5))
                    .await
                    .unwrap();
                let local = c.local_addr().unwrap();
                let seen = loop {
                    if let Some(p) = peer.get() {
                        break p;
                    }
                    cores::sleep(Duration::from_millis(1)).await;
                };
                let v6: SocketAddr = "[::1]:0".parse().unwrap();
                let mixed = TcpStream::connect_from(Some(v6), addr, Duration::from_secs(5))
                    .await
                    .err()
                    .map(|e| e.kind());
                (local.ip(), seen, mixed)
            })
        });
        let source: std::net::IpAddr = "127.0.0.2".parse().unwrap();
        assert_eq!(got.0, source, "{backend:?}");
        assert_eq!(got.1.ip(), source, "{backend:?}");
        assert_ne!(got.1.port(), 0, "{backend:?}");
        assert_eq!(got.2, Some(io::ErrorKind::InvalidInput), "{backend:?}");
    }
}

#[test]
fn shutting_the_read_half_ends_a_pending_read() {
    for backend in BACKENDS {
        let got = common::run(backend, || {
            Box::pin(async {
                let listener = TcpListener::bind(loopback(), false, 16).unwrap();
                let addr = listener.local_addr();
                // Keep the accepted side open and silent: only our shutdown can end the read.
                let held: Rc<Cell<Option<TcpStream>>> = Rc::default();
                let h = held.clone();
                listener
                    .accept_with(move |r| h.set(Some(r.unwrap().0)))
                    .unwrap();
                let c = TcpStream::connect(addr, Duration::from_secs(5))
                    .await
                    .unwrap();
                let mut rd = c.try_clone();
                let reader = cores::spawn_local(async move {
                    let mut buf = [0u8; 64];
                    rd.read(&mut buf).await.map_err(|e| e.kind())
                });
                // Let the read be submitted and wait.
                cores::sleep(Duration::from_millis(20)).await;
                let before = reader.is_finished();
                c.shutdown(std::net::Shutdown::Read).unwrap();
                let r = cores::timeout(Duration::from_secs(5), reader).await;
                let still_held = held.take().is_some();
                (before, r.ok(), still_held)
            })
        });
        assert_eq!(got, (false, Some(Ok(0)), true), "{backend:?}");
    }
}
