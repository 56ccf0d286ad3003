//! The DNS resolver against a small DNS server on 127.0.0.1 (std UDP and TCP sockets on
//! the same port, answers built with hickory-proto), driven through the blocking shims
//! of `cores::testing`. The clock is fake: TTL expiry is tested by moving it.

use std::cell::Cell;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use cores::testing::{block_on, BlockingTcp, BlockingUdp};
use hickory_proto::op::{Message, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, NAPTR, SOA, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use ringsip::transport::dns::{
    Cache, DnsIo, Hosts, NextHop, QueryType, Rdata, ResolveError, Resolver, ResolverConfig,
    SipResolveError, SipTarget, SipTransport, Srv,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Proto {
    Udp,
    Tcp,
}

/// What the server saw: (query name without trailing dot, type, transport).
type Log = Arc<Mutex<Vec<(String, RecordType, Proto)>>>;
/// Given a query and the transport it came on, the messages to send back.
type Handler = Arc<dyn Fn(&Message, Proto) -> Vec<Message> + Send + Sync>;

struct TestServer {
    addr: SocketAddr,
    log: Log,
    stop: Arc<AtomicBool>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl TestServer {
    fn start(handler: impl Fn(&Message, Proto) -> Vec<Message> + Send + Sync + 'static) -> Self {
        let handler: Handler = Arc::new(handler);
        let (tcp, udp) = bind_pair();
        let addr = udp.local_addr().unwrap();
        let log: Log = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        udp.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        tcp.set_nonblocking(true).unwrap();
        let udp_thread = {
            let (log, stop, handler) = (log.clone(), stop.clone(), handler.clone());
            thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((len, peer)) = udp.recv_from(&mut buf) else {
                        continue;
                    };
                    let query = Message::from_vec(&buf[..len]).unwrap();
                    record(&log, &query, Proto::Udp);
                    for reply in handler(&query, Proto::Udp) {
                        udp.send_to(&reply.to_vec().unwrap(), peer).unwrap();
                    }
                }
            })
        };
        let tcp_thread = {
            let (log, stop) = (log.clone(), stop.clone());
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
                    let query = Message::from_vec(&body).unwrap();
                    record(&log, &query, Proto::Tcp);
                    for reply in handler(&query, Proto::Tcp) {
                        let bytes = reply.to_vec().unwrap();
                        let len = u16::try_from(bytes.len()).unwrap().to_be_bytes();
                        conn.write_all(&len).unwrap();
                        conn.write_all(&bytes).unwrap();
                    }
                }
            })
        };
        Self {
            addr,
            log,
            stop,
            threads: vec![udp_thread, tcp_thread],
        }
    }

    fn queries(&self) -> Vec<(String, RecordType, Proto)> {
        self.log.lock().unwrap().clone()
    }

    fn count(&self, name: &str, rtype: RecordType) -> usize {
        self.queries()
            .iter()
            .filter(|(n, t, _)| n == name && *t == rtype)
            .count()
    }
}

impl Drop for TestServer {
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

fn record(log: &Log, query: &Message, proto: Proto) {
    let q = &query.queries[0];
    let name = q
        .name()
        .to_ascii()
        .trim_end_matches('.')
        .to_ascii_lowercase();
    log.lock().unwrap().push((name, q.query_type(), proto));
}

fn name(text: &str) -> Name {
    Name::from_ascii(format!("{text}.")).unwrap()
}

/// The skeleton of a reply to `query`: same id and question, RD/RA set.
fn reply(query: &Message) -> Message {
    let mut m = Message::response(query.metadata.id, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.metadata.recursion_available = true;
    m.add_queries(query.queries.iter().cloned());
    m
}

fn qname(query: &Message) -> String {
    query.queries[0]
        .name()
        .to_ascii()
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

fn qtype(query: &Message) -> RecordType {
    query.queries[0].query_type()
}

fn a(owner: &str, ttl: u32, ip: [u8; 4]) -> Record {
    Record::from_rdata(
        name(owner),
        ttl,
        RData::A(A::new(ip[0], ip[1], ip[2], ip[3])),
    )
}

fn aaaa(owner: &str, ttl: u32, ip: &str) -> Record {
    Record::from_rdata(name(owner), ttl, RData::AAAA(AAAA(ip.parse().unwrap())))
}

fn srv(owner: &str, priority: u16, weight: u16, port: u16, target: &str) -> Record {
    Record::from_rdata(
        name(owner),
        300,
        RData::SRV(SRV::new(priority, weight, port, name(target))),
    )
}

fn naptr(owner: &str, order: u16, pref: u16, service: &str, replacement: &str) -> Record {
    Record::from_rdata(
        name(owner),
        300,
        RData::NAPTR(NAPTR::new(
            order,
            pref,
            b"S".to_vec().into_boxed_slice(),
            service.as_bytes().to_vec().into_boxed_slice(),
            Vec::new().into_boxed_slice(),
            name(replacement),
        )),
    )
}

fn cname(owner: &str, target: &str) -> Record {
    Record::from_rdata(name(owner), 300, RData::CNAME(CNAME(name(target))))
}

/// An authority-section SOA whose negative TTL (RFC 2308 §5) is `minimum`.
fn soa(zone: &str, minimum: u32) -> Record {
    Record::from_rdata(
        name(zone),
        3600,
        RData::SOA(SOA::new(
            name(&format!("ns.{zone}")),
            name(&format!("hostmaster.{zone}")),
            1,
            3600,
            600,
            86400,
            minimum,
        )),
    )
}

/// A negative answer: NXDOMAIN (or NODATA if `nx` is false) with the zone SOA.
fn negative(query: &Message, nx: bool, zone: &str, minimum: u32) -> Message {
    let mut m = reply(query);
    if nx {
        m.metadata.response_code = ResponseCode::NXDomain;
    }
    m.add_authority(soa(zone, minimum));
    m
}

/// Blocking sockets whose receive time-out bounds each attempt, and a fake clock.
struct TestIo {
    now: Cell<Instant>,
    recv_timeout: Duration,
}

impl TestIo {
    fn advance(&self, by: Duration) {
        self.now.set(self.now.get() + by);
    }
}

impl DnsIo for TestIo {
    type Udp = BlockingUdp;
    type Tcp = BlockingTcp;

    async fn connect_udp(&self, server: SocketAddr) -> io::Result<BlockingUdp> {
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        socket.connect(server)?;
        socket.set_read_timeout(Some(self.recv_timeout))?;
        Ok(BlockingUdp(socket))
    }

    async fn connect_tcp(&self, server: SocketAddr) -> io::Result<BlockingTcp> {
        let stream = TcpStream::connect_timeout(&server, self.recv_timeout)?;
        stream.set_read_timeout(Some(self.recv_timeout))?;
        Ok(BlockingTcp(stream))
    }

    async fn timeout<F: std::future::Future>(&self, _limit: Duration, fut: F) -> Option<F::Output> {
        // The sockets carry the limit (SO_RCVTIMEO); see `DnsIo::timeout`.
        Some(fut.await)
    }

    fn now(&self) -> Instant {
        self.now.get()
    }
}

fn resolver_with(server: &TestServer, hosts: Hosts, timeout: Duration) -> Resolver<TestIo> {
    let mut config = ResolverConfig::with_nameserver(server.addr);
    config.timeout = timeout;
    config.attempts = 1;
    let io = TestIo {
        now: Cell::new(Instant::now()),
        recv_timeout: timeout,
    };
    Resolver::new(io, config, hosts, Cache::new(256), 1)
}

fn resolver(server: &TestServer) -> Resolver<TestIo> {
    resolver_with(server, Hosts::new(), Duration::from_secs(5))
}

fn hop(addr: &str, transport: SipTransport) -> NextHop {
    NextHop {
        addr: addr.parse().unwrap(),
        transport,
    }
}

fn target(host: &str) -> SipTarget<'_> {
    SipTarget {
        host,
        port: None,
        transport: None,
        sips: false,
    }
}

#[test]
fn a_and_aaaa_answers() {
    let server = TestServer::start(|q, _| {
        let mut m = reply(q);
        match qtype(q) {
            RecordType::A => {
                m.add_answer(a("host.example", 60, [192, 0, 2, 10]));
                m.add_answer(a("host.example", 60, [192, 0, 2, 11]));
            }
            RecordType::AAAA => {
                m.add_answer(aaaa("host.example", 60, "2001:db8::10"));
            }
            _ => return vec![negative(q, false, "example", 60)],
        }
        vec![m]
    });
    let resolver = resolver(&server);
    let ips = block_on(resolver.lookup_ip("Host.Example.")).unwrap();
    let expected: Vec<IpAddr> = vec![
        "192.0.2.10".parse().unwrap(),
        "192.0.2.11".parse().unwrap(),
        "2001:db8::10".parse().unwrap(),
    ];
    assert_eq!(ips, expected);
    // Both from cache now.
    assert_eq!(
        block_on(resolver.lookup_ip("host.example")).unwrap(),
        expected
    );
    assert_eq!(server.queries().len(), 2);
}

#[test]
fn srv_with_glue_in_additional_section() {
    let server = TestServer::start(|q, _| {
        let mut m = reply(q);
        match (qname(q).as_str(), qtype(q)) {
            ("_sip._tcp.example.com", RecordType::SRV) => {
                m.add_answer(srv(
                    "_sip._tcp.example.com",
                    10,
                    0,
                    5070,
                    "sip1.example.com",
                ));
                m.add_additional(a("sip1.example.com", 300, [192, 0, 2, 1]));
                m.add_additional(aaaa("sip1.example.com", 300, "2001:db8::1"));
                vec![m]
            }
            _ => vec![negative(q, false, "example.com", 60)],
        }
    });
    let resolver = resolver(&server);
    let hops = block_on(resolver.resolve_sip(&SipTarget {
        transport: Some(SipTransport::Tcp),
        ..target("example.com")
    }))
    .unwrap();
    assert_eq!(
        hops,
        [
            hop("192.0.2.1:5070", SipTransport::Tcp),
            hop("[2001:db8::1]:5070", SipTransport::Tcp),
        ]
    );
    // The addresses came from the additional section: only the SRV was asked.
    assert_eq!(
        server.queries(),
        [(
            "_sip._tcp.example.com".to_owned(),
            RecordType::SRV,
            Proto::Udp
        )]
    );
}

#[test]
fn naptr_then_srv_then_address_chain() {
    let server = TestServer::start(|q, _| {
        let mut m = reply(q);
        match (qname(q).as_str(), qtype(q)) {
            ("example.com", RecordType::NAPTR) => {
                m.add_answer(naptr(
                    "example.com",
                    20,
                    10,
                    "SIP+D2U",
                    "_sip._udp.example.com",
                ));
                m.add_answer(naptr(
                    "example.com",
                    10,
                    10,
                    "SIP+D2T",
                    "_sip._tcp.example.com",
                ));
                m.add_answer(naptr(
                    "example.com",
                    5,
                    10,
                    "SIP+D2S",
                    "_sip._sctp.example.com",
                ));
            }
            ("_sip._tcp.example.com", RecordType::SRV) => {
                m.add_answer(srv(
                    "_sip._tcp.example.com",
                    20,
                    0,
                    5062,
                    "backup.example.com",
                ));
                m.add_answer(srv(
                    "_sip._tcp.example.com",
                    10,
                    0,
                    5060,
                    "main.example.com",
                ));
            }
            ("_sip._udp.example.com", RecordType::SRV) => {
                m.add_answer(srv(
                    "_sip._udp.example.com",
                    10,
                    0,
                    5060,
                    "main.example.com",
                ));
            }
            ("main.example.com", RecordType::A) => {
                m.add_answer(a("main.example.com", 300, [192, 0, 2, 1]));
            }
            ("backup.example.com", RecordType::A) => {
                m.add_answer(a("backup.example.com", 300, [192, 0, 2, 2]));
            }
            _ => return vec![negative(q, false, "example.com", 60)],
        }
        vec![m]
    });
    let resolver = resolver(&server);
    let hops = block_on(resolver.resolve_sip(&target("example.com"))).unwrap();
    assert_eq!(
        hops,
        [
            hop("192.0.2.1:5060", SipTransport::Tcp),
            hop("192.0.2.2:5062", SipTransport::Tcp),
            hop("192.0.2.1:5060", SipTransport::Udp),
        ]
    );
    assert_eq!(server.count("_sip._sctp.example.com", RecordType::SRV), 0);
    // main.example.com's A was asked once though used twice.
    assert_eq!(server.count("main.example.com", RecordType::A), 1);
}

#[test]
fn srv_fallback_without_naptr_and_address_fallback_without_srv() {
    let server = TestServer::start(|q, _| {
        let mut m = reply(q);
        match (qname(q).as_str(), qtype(q)) {
            ("withsrv.example", RecordType::NAPTR) => {
                return vec![negative(q, false, "example", 60)]
            }
            ("_sip._udp.withsrv.example", RecordType::SRV) => {
                m.add_answer(srv(
                    "_sip._udp.withsrv.example",
                    0,
                    0,
                    5080,
                    "pbx.withsrv.example",
                ));
                m.add_additional(a("pbx.withsrv.example", 300, [192, 0, 2, 80]));
            }
            ("plain.example", RecordType::A) => {
                m.add_answer(a("plain.example", 300, [192, 0, 2, 9]));
            }
            _ => return vec![negative(q, false, "example", 60)],
        }
        vec![m]
    });
    let resolver = resolver(&server);
    assert_eq!(
        block_on(resolver.resolve_sip(&target("withsrv.example"))).unwrap(),
        [hop("192.0.2.80:5080", SipTransport::Udp)]
    );
    assert_eq!(
        block_on(resolver.resolve_sip(&target("plain.example"))).unwrap(),
        [hop("192.0.2.9:5060", SipTransport::Udp)]
    );
    assert_eq!(
        block_on(resolver.resolve_sip(&SipTarget {
            sips: true,
            ..target("plain.example")
        }))
        .unwrap(),
        [hop("192.0.2.9:5061", SipTransport::Tls)]
    );
    // A port in the URI skips NAPTR and SRV.
    let before = server.queries().len();
    assert_eq!(
        block_on(resolver.resolve_sip(&SipTarget {
            port: Some(5099),
            ..target("plain.example")
        }))
        .unwrap(),
        [hop("192.0.2.9:5099", SipTransport::Udp)]
    );
    assert_eq!(server.queries().len(), before, "answered from cache");
    // Numeric hosts need no DNS at all.
    assert_eq!(
        block_on(resolver.resolve_sip(&SipTarget {
            transport: Some(SipTransport::Tcp),
            ..target("[2001:db8::5]")
        }))
        .unwrap(),
        [hop("[2001:db8::5]:5060", SipTransport::Tcp)]
    );
    assert_eq!(server.queries().len(), before);
}

#[test]
fn cname_chain_followed_within_and_across_answers() {
    let server = TestServer::start(|q, _| {
        let mut m = reply(q);
        match (qname(q).as_str(), qtype(q)) {
            // A full chain in one answer.
            ("www.example", RecordType::A) => {
                m.add_answer(cname("www.example", "mid.example"));
                m.add_answer(cname("mid.example", "final.example"));
                m.add_answer(a("final.example", 300, [192, 0, 2, 7]));
            }
            // A CNAME alone: the resolver must ask for the target itself.
            ("alias.example", RecordType::A) => {
                m.add_answer(cname("alias.example", "final.example"));
            }
            ("alias2.example", RecordType::A) => {
                m.add_answer(cname("alias2.example", "other.example"));
            }
            ("other.example", RecordType::A) => {
                m.add_answer(a("other.example", 300, [192, 0, 2, 8]));
            }
            ("loop1.example", RecordType::A) => {
                m.add_answer(cname("loop1.example", "loop2.example"));
            }
            ("loop2.example", RecordType::A) => {
                m.add_answer(cname("loop2.example", "loop1.example"));
            }
            _ => return vec![negative(q, false, "example", 60)],
        }
        vec![m]
    });
    let resolver = resolver(&server);
    let found = block_on(resolver.lookup("www.example", QueryType::A)).unwrap();
    assert_eq!(found.name, "final.example");
    assert_eq!(found.records, [Rdata::A("192.0.2.7".parse().unwrap())]);
    let found = block_on(resolver.lookup("alias.example", QueryType::A)).unwrap();
    assert_eq!(found.name, "final.example");
    assert_eq!(
        server.count("final.example", RecordType::A),
        0,
        "final's A was cached"
    );
    let found = block_on(resolver.lookup("alias2.example", QueryType::A)).unwrap();
    assert_eq!(found.name, "other.example");
    assert_eq!(found.records, [Rdata::A("192.0.2.8".parse().unwrap())]);
    assert_eq!(
        server.count("other.example", RecordType::A),
        1,
        "target asked itself"
    );
    // Served from the cached CNAMEs without asking again.
    let before = server.queries().len();
    let found = block_on(resolver.lookup("www.example", QueryType::A)).unwrap();
    assert_eq!(found.records, [Rdata::A("192.0.2.7".parse().unwrap())]);
    assert_eq!(server.queries().len(), before);
    // A CNAME loop is bounded.
    let err = block_on(resolver.lookup("loop1.example", QueryType::A)).unwrap_err();
    assert!(matches!(err, ResolveError::CnameChain { .. }), "{err}");
}

#[test]
fn nxdomain_cached_negatively_until_soa_minimum() {
    let server = TestServer::start(|q, _| vec![negative(q, true, "example", 60)]);
    let resolver = resolver(&server);
    for _ in 0..2 {
        let err = block_on(resolver.lookup("gone.example", QueryType::A)).unwrap_err();
        assert!(
            matches!(err, ResolveError::NxDomain { ref name } if name == "gone.example"),
            "{err}"
        );
    }
    // NXDOMAIN covers every type of the name (RFC 2308 §5).
    let err = block_on(resolver.lookup("gone.example", QueryType::Srv)).unwrap_err();
    assert!(matches!(err, ResolveError::NxDomain { .. }), "{err}");
    assert_eq!(server.queries().len(), 1, "one query for three lookups");
    resolver.io().advance(Duration::from_secs(61));
    let err = block_on(resolver.lookup("gone.example", QueryType::A)).unwrap_err();
    assert!(matches!(err, ResolveError::NxDomain { .. }), "{err}");
    assert_eq!(
        server.queries().len(),
        2,
        "asked again after the negative TTL"
    );
}

#[test]
fn nodata_cached_per_type() {
    let server = TestServer::start(|q, _| match qtype(q) {
        RecordType::A => {
            let mut m = reply(q);
            m.add_answer(a("v4.example", 300, [192, 0, 2, 4]));
            vec![m]
        }
        _ => vec![negative(q, false, "example", 30)],
    });
    let resolver = resolver(&server);
    for _ in 0..2 {
        let err = block_on(resolver.lookup("v4.example", QueryType::Aaaa)).unwrap_err();
        assert!(
            matches!(
                err,
                ResolveError::NoData {
                    qtype: QueryType::Aaaa,
                    ..
                }
            ),
            "{err}"
        );
    }
    assert!(block_on(resolver.lookup("v4.example", QueryType::A)).is_ok());
    assert_eq!(server.queries().len(), 2);
}

#[test]
fn ttl_expiry_follows_the_fake_clock() {
    let server = TestServer::start(|q, _| {
        let mut m = reply(q);
        m.add_answer(a("short.example", 30, [192, 0, 2, 30]));
        vec![m]
    });
    let resolver = resolver(&server);
    block_on(resolver.lookup("short.example", QueryType::A)).unwrap();
    resolver.io().advance(Duration::from_secs(29));
    block_on(resolver.lookup("short.example", QueryType::A)).unwrap();
    assert_eq!(server.queries().len(), 1);
    resolver.io().advance(Duration::from_secs(1));
    block_on(resolver.lookup("short.example", QueryType::A)).unwrap();
    assert_eq!(server.queries().len(), 2, "expired at exactly the TTL");
}

#[test]
fn truncated_udp_answer_is_retried_over_tcp() {
    let server = TestServer::start(|q, proto| {
        let mut m = reply(q);
        if proto == Proto::Udp {
            m.metadata.truncation = true;
            return vec![m];
        }
        for i in 0..40u8 {
            m.add_answer(srv(
                "_sip._udp.big.example",
                10,
                u16::from(i),
                5060,
                &format!("h{i}.big.example"),
            ));
        }
        vec![m]
    });
    let resolver = resolver(&server);
    let found = block_on(resolver.lookup("_sip._udp.big.example", QueryType::Srv)).unwrap();
    assert_eq!(found.records.len(), 40);
    assert_eq!(
        found.records[3],
        Rdata::Srv(Srv {
            priority: 10,
            weight: 3,
            port: 5060,
            target: "h3.big.example".to_owned()
        })
    );
    let protos: Vec<Proto> = server.queries().iter().map(|(_, _, p)| *p).collect();
    assert_eq!(protos, [Proto::Udp, Proto::Tcp]);
}

#[test]
fn answer_with_wrong_id_or_question_is_ignored() {
    let server = TestServer::start(|q, _| {
        let mut forged = reply(q);
        forged.metadata.id = q.metadata.id.wrapping_add(1);
        forged.add_answer(a("id.example", 300, [203, 0, 113, 66]));
        let mut other_question = reply(q);
        other_question.queries[0].set_name(name("other.example"));
        other_question.add_answer(a("other.example", 300, [203, 0, 113, 67]));
        let mut real = reply(q);
        real.add_answer(a("id.example", 300, [192, 0, 2, 1]));
        vec![forged, other_question, real]
    });
    let resolver = resolver(&server);
    let found = block_on(resolver.lookup("id.example", QueryType::A)).unwrap();
    assert_eq!(found.records, [Rdata::A("192.0.2.1".parse().unwrap())]);
}

#[test]
fn silent_server_gives_a_timeout_error() {
    let server = TestServer::start(|_, _| Vec::new());
    let resolver = resolver_with(&server, Hosts::new(), Duration::from_millis(200));
    let err = block_on(resolver.lookup("silent.example", QueryType::A)).unwrap_err();
    assert!(
        matches!(err, ResolveError::Timeout { ref name, qtype: QueryType::A, .. } if name == "silent.example"),
        "{err}"
    );
    let err = block_on(resolver.resolve_sip(&target("silent.example"))).unwrap_err();
    assert!(
        matches!(
            err,
            SipResolveError::Dns {
                source: ResolveError::Timeout { .. },
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn hosts_file_overrides_dns() {
    let server = TestServer::start(|q, _| {
        let mut m = reply(q);
        m.add_answer(a("pbx.example", 300, [198, 51, 100, 1]));
        vec![m]
    });
    let hosts = ringsip::transport::dns::parse_hosts("10.9.9.9 pbx.example pbx\n").unwrap();
    let resolver = resolver_with(&server, hosts, Duration::from_secs(5));
    let found = block_on(resolver.lookup("PBX.example.", QueryType::A)).unwrap();
    assert_eq!(found.records, [Rdata::A("10.9.9.9".parse().unwrap())]);
    assert_eq!(
        block_on(resolver.resolve_sip(&target("pbx.example"))).unwrap(),
        [hop("10.9.9.9:5060", SipTransport::Udp)]
    );
    // A listed name is answered from the table alone, AAAA included (NODATA).
    let err = block_on(resolver.lookup("pbx", QueryType::Aaaa)).unwrap_err();
    assert!(matches!(err, ResolveError::NoData { .. }), "{err}");
    assert!(
        server.queries().is_empty(),
        "DNS never asked: {:?}",
        server.queries()
    );
}

#[test]
fn server_failure_is_reported() {
    let server = TestServer::start(|q, _| {
        let mut m = reply(q);
        m.metadata.response_code = ResponseCode::ServFail;
        vec![m]
    });
    let resolver = resolver(&server);
    let err = block_on(resolver.lookup("broken.example", QueryType::A)).unwrap_err();
    assert!(
        matches!(
            err,
            ResolveError::ServerFailure {
                rcode: ResponseCode::ServFail,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn retries_move_on_to_the_next_nameserver() {
    let silent = TestServer::start(|_, _| Vec::new());
    let failing = TestServer::start(|q, _| {
        let mut m = reply(q);
        m.metadata.response_code = ResponseCode::Refused;
        vec![m]
    });
    let good = TestServer::start(|q, _| {
        let mut m = reply(q);
        m.add_answer(a("retry.example", 300, [192, 0, 2, 55]));
        vec![m]
    });
    let mut config = ResolverConfig::with_nameserver(silent.addr);
    config.nameservers.extend([failing.addr, good.addr]);
    config.timeout = Duration::from_millis(200);
    config.attempts = 1;
    let io = TestIo {
        now: Cell::new(Instant::now()),
        recv_timeout: config.timeout,
    };
    let resolver = Resolver::new(io, config, Hosts::new(), Cache::new(16), 1);
    let found = block_on(resolver.lookup("retry.example", QueryType::A)).unwrap();
    assert_eq!(found.records, [Rdata::A("192.0.2.55".parse().unwrap())]);
    assert_eq!(silent.queries().len(), 1);
    assert_eq!(failing.queries().len(), 1);
    assert_eq!(good.queries().len(), 1);
}

#[test]
fn attempts_are_rounds_over_the_nameserver_list() {
    let silent = TestServer::start(|_, _| Vec::new());
    let mut config = ResolverConfig::with_nameserver(silent.addr);
    config.timeout = Duration::from_millis(100);
    config.attempts = 3;
    let io = TestIo {
        now: Cell::new(Instant::now()),
        recv_timeout: config.timeout,
    };
    let resolver = Resolver::new(io, config, Hosts::new(), Cache::new(16), 1);
    let err = block_on(resolver.lookup("never.example", QueryType::Srv)).unwrap_err();
    assert!(
        matches!(err, ResolveError::Timeout { attempts: 3, .. }),
        "{err}"
    );
    assert_eq!(silent.queries().len(), 3);
}

#[test]
fn sip_target_in_a_nonexistent_domain_fails_with_nxdomain() {
    let server = TestServer::start(|q, _| vec![negative(q, true, "example", 60)]);
    let resolver = resolver(&server);
    let err = block_on(resolver.resolve_sip(&target("nowhere.example"))).unwrap_err();
    assert!(
        matches!(
            err,
            SipResolveError::Dns {
                source: ResolveError::NxDomain { .. },
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(server.queries().len(), 1, "only the NAPTR was asked");
    let err = block_on(resolver.resolve_sip(&SipTarget {
        sips: true,
        transport: Some(SipTransport::Udp),
        ..target("nowhere.example")
    }))
    .unwrap_err();
    assert!(matches!(err, SipResolveError::SipsOverUdp { .. }), "{err}");
}
