//! The DNS resolver on a real shard (`RingDnsIo`), under both backends, against a small
//! DNS server on 127.0.0.1 (std UDP and TCP sockets on one port, answers built with
//! hickory-proto): A lookups and caching, UDP→TCP fallback, NXDOMAIN, a silent server
//! timing out on the timer wheel while other lookups proceed, the hosts table, RFC 3263
//! SRV selection, and the start-up reading of resolv.conf/hosts files.

use std::cell::Cell;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use hickory_proto::op::{Message, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, SOA, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use ringsip::transport::dns::ring::{ring_resolver, SystemDnsConfig};
use ringsip::transport::dns::{NextHop, ResolveError, SipTarget, SipTransport};

mod shard_runner;

use shard_runner::{on_shard, BACKENDS};

fn name(text: &str) -> Name {
    Name::from_ascii(format!("{text}.")).unwrap()
}

fn a(owner: &str, ip: [u8; 4]) -> Record {
    Record::from_rdata(
        name(owner),
        300,
        RData::A(A::new(ip[0], ip[1], ip[2], ip[3])),
    )
}

/// The zone the server answers, over UDP (`tcp` false) or TCP.
fn answer(query: &Message, tcp: bool) -> Option<Message> {
    let q = &query.queries[0];
    let qname = q
        .name()
        .to_ascii()
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let mut m = Message::response(query.metadata.id, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.metadata.recursion_available = true;
    m.add_queries(query.queries.iter().cloned());
    match (qname.as_str(), q.query_type()) {
        ("silent.test", _) => return None,
        ("www.test", RecordType::A) => {
            m.add_answer(a("www.test", [127, 0, 0, 1]));
        }
        ("big.test", RecordType::A) if !tcp => m.metadata.truncation = true,
        ("big.test", RecordType::A) => {
            for i in 1..=40u8 {
                m.add_answer(a("big.test", [127, 0, 1, i]));
            }
        }
        ("_sip._udp.proxy.test", RecordType::SRV) => {
            m.add_answer(Record::from_rdata(
                name("_sip._udp.proxy.test"),
                300,
                RData::SRV(SRV::new(10, 0, 5070, name("node.proxy.test"))),
            ));
        }
        ("node.proxy.test", RecordType::A) => {
            m.add_answer(a("node.proxy.test", [127, 0, 0, 7]));
        }
        (other, _) => {
            // A name above with another type: NODATA; any other name: NXDOMAIN. Both
            // with the zone's SOA (RFC 2308).
            let exists = ["www.test", "big.test", "node.proxy.test", "proxy.test"];
            if !exists.contains(&other) {
                m.metadata.response_code = ResponseCode::NXDomain;
            }
            m.add_authority(Record::from_rdata(
                name("test"),
                300,
                RData::SOA(SOA::new(
                    name("ns.test"),
                    name("hostmaster.test"),
                    1,
                    3600,
                    600,
                    86400,
                    60,
                )),
            ));
        }
    }
    Some(m)
}

struct DnsServer {
    addr: SocketAddr,
    queries: Arc<AtomicUsize>,
    tcp_queries: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl DnsServer {
    fn start() -> DnsServer {
        let (tcp, udp) = bind_pair();
        let addr = udp.local_addr().unwrap();
        let queries = Arc::new(AtomicUsize::new(0));
        let tcp_queries = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        udp.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        tcp.set_nonblocking(true).unwrap();
        let u = {
            let (queries, stop) = (queries.clone(), stop.clone());
            thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((len, peer)) = udp.recv_from(&mut buf) else {
                        continue;
                    };
                    queries.fetch_add(1, Ordering::SeqCst);
                    let query = Message::from_vec(&buf[..len]).unwrap();
                    if let Some(reply) = answer(&query, false) {
                        udp.send_to(&reply.to_vec().unwrap(), peer).unwrap();
                    }
                }
            })
        };
        let t = {
            let (tcp_queries, stop) = (tcp_queries.clone(), stop.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Ok((mut conn, _)) = tcp.accept() else {
                        thread::sleep(Duration::from_millis(10));
                        continue;
                    };
                    conn.set_nonblocking(false).unwrap();
                    let mut prefix = [0u8; 2];
                    if conn.read_exact(&mut prefix).is_err() {
                        continue;
                    }
                    let mut body = vec![0u8; usize::from(u16::from_be_bytes(prefix))];
                    conn.read_exact(&mut body).unwrap();
                    tcp_queries.fetch_add(1, Ordering::SeqCst);
                    let query = Message::from_vec(&body).unwrap();
                    if let Some(reply) = answer(&query, true) {
                        let bytes = reply.to_vec().unwrap();
                        let len = u16::try_from(bytes.len()).unwrap().to_be_bytes();
                        conn.write_all(&len).unwrap();
                        conn.write_all(&bytes).unwrap();
                    }
                }
            })
        };
        DnsServer {
            addr,
            queries,
            tcp_queries,
            stop,
            threads: vec![u, t],
        }
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// A TCP listener and a UDP socket on the same free 127.0.0.1 port.
fn bind_pair() -> (TcpListener, UdpSocket) {
    for _ in 0..50 {
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        if let Ok(udp) = UdpSocket::bind(("127.0.0.1", port)) {
            return (tcp, udp);
        }
    }
    panic!("no port free for both UDP and TCP");
}

/// resolv.conf and hosts files as an administrator would write them, read the way
/// the proxy does at start-up; the nameserver is then pointed at the test server's
/// port (resolv.conf cannot name a port).
fn system_config(server: SocketAddr) -> SystemDnsConfig {
    let dir = std::env::temp_dir().join(format!(
        "ringsip-ring-dns-{}-{}",
        std::process::id(),
        server.port()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let resolv = dir.join("resolv.conf");
    let hosts = dir.join("hosts");
    std::fs::write(
        &resolv,
        "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n",
    )
    .unwrap();
    std::fs::write(&hosts, "127.0.0.2 hosted.test hosted\n").unwrap();
    let mut sys = SystemDnsConfig::read_from(&resolv, &hosts).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(
        sys.config.nameservers,
        vec![SocketAddr::from(([127, 0, 0, 1], 53))]
    );
    assert_eq!(sys.config.timeout, Duration::from_secs(1));
    sys.config.nameservers = vec![server];
    sys
}

#[derive(Debug, PartialEq)]
struct Seen {
    www: Vec<IpAddr>,
    www_again: Vec<IpAddr>,
    big: usize,
    hosted: Vec<IpAddr>,
    missing_is_nxdomain: bool,
    silent_timed_out: bool,
    ticks_while_silent: u32,
    hops: Vec<NextHop>,
}

#[test]
fn resolver_on_the_ring() {
    for backend in BACKENDS {
        let server = DnsServer::start();
        let sys = system_config(server.addr);
        let seen = on_shard(
            backend,
            Box::new(move || {
                let sys = sys.clone();
                Box::pin(async move {
                    let r = ring_resolver(&sys, 128);
                    let www = r.lookup_ip("www.test").await.unwrap();
                    let www_again = r.lookup_ip("WWW.test.").await.unwrap();
                    let big = r.lookup_ip("big.test").await.unwrap().len();
                    let hosted = r.lookup_ip("hosted.test").await.unwrap();
                    let missing = r.lookup_ip("missing.test").await;
                    // A silent server: the lookup times out on the timer wheel while
                    // a ticker on the same shard keeps running.
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
                    let silent = r.lookup_ip("silent.test").await;
                    let ticks_while_silent = ticks.get();
                    done.set(true);
                    let _ = ticker.await;
                    let hops = r
                        .resolve_sip(&SipTarget {
                            host: "proxy.test",
                            port: None,
                            transport: Some(SipTransport::Udp),
                            sips: false,
                        })
                        .await
                        .unwrap();
                    Seen {
                        www,
                        www_again,
                        big,
                        hosted,
                        missing_is_nxdomain: matches!(missing, Err(ResolveError::NxDomain { .. })),
                        silent_timed_out: matches!(silent, Err(ResolveError::Timeout { .. })),
                        ticks_while_silent,
                        hops,
                    }
                })
            }),
        );
        let local = IpAddr::V4(Ipv4Addr::LOCALHOST);
        assert_eq!(seen.www, vec![local], "{backend:?}");
        assert_eq!(seen.www_again, vec![local]);
        assert_eq!(seen.big, 40);
        assert_eq!(seen.hosted, vec![IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))]);
        assert!(seen.missing_is_nxdomain);
        assert!(seen.silent_timed_out);
        assert!(seen.ticks_while_silent > 0, "{backend:?}: shard stalled");
        assert_eq!(
            seen.hops,
            vec![NextHop {
                addr: SocketAddr::from(([127, 0, 0, 7], 5070)),
                transport: SipTransport::Udp
            }]
        );
        // The big answer came over TCP; www was asked once (A and AAAA, then cached).
        assert_eq!(server.tcp_queries.load(Ordering::SeqCst), 1);
        assert!(server.queries.load(Ordering::SeqCst) >= 6);
    }
}
