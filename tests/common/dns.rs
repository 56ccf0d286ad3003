//! A small UDP DNS server on 127.0.0.1 for tests that resolve names (std socket, its own
//! thread, answers built with hickory-proto), whose zone the test may change while it
//! runs. Include it with `#[path = "common/dns.rs"] mod fake_dns;`.
//!
//! A name set with [`FakeDns::set_a`] gets its A records (and NODATA for other types); a
//! name set with [`FakeDns::set_a_delayed`] gets them late; a name set with
//! [`FakeDns::set_records`] gets whichever of its records (any type: SRV, NAPTR...) match
//! the query type, NODATA if none do; a name set with
//! [`FakeDns::set_silent`] is never answered; a name set with
//! [`FakeDns::set_nxdomain`] is NXDOMAIN after a delay; any other name is NXDOMAIN.
//! Negative answers carry an SOA whose minimum is [`NEGATIVE_TTL`] seconds.
//!
//! Everything here is test code: panics are the failure reports.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::{Ipv4Addr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use hickory_proto::op::{Message, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};

/// The SOA minimum of negative answers, in seconds.
pub const NEGATIVE_TTL: u32 = 1;

#[derive(Clone)]
enum Entry {
    /// Answers with those of `records` whose type is the query's (NODATA if none).
    Records {
        records: Vec<Record>,
        delay: Duration,
    },
    Silent,
    NxDomain {
        delay: Duration,
    },
}

/// The server; stopped on drop.
pub struct FakeDns {
    pub port: u16,
    zone: Arc<Mutex<HashMap<String, Entry>>>,
    queries: Arc<Mutex<Vec<(String, RecordType)>>>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

/// `text` as an absolute DNS name.
pub fn name(text: &str) -> Name {
    Name::from_ascii(format!("{}.", text.trim_end_matches('.'))).expect("test name")
}

fn soa(owner: &str) -> Record {
    let zone = owner.split_once('.').map_or(owner, |(_, z)| z);
    Record::from_rdata(
        name(zone),
        NEGATIVE_TTL,
        RData::SOA(SOA::new(
            name(&format!("ns.{zone}")),
            name(&format!("hostmaster.{zone}")),
            1,
            3600,
            600,
            86400,
            NEGATIVE_TTL,
        )),
    )
}

impl FakeDns {
    pub fn start() -> FakeDns {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind DNS socket");
        let port = sock.local_addr().expect("addr").port();
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .expect("read timeout");
        let zone: Arc<Mutex<HashMap<String, Entry>>> = Arc::default();
        let queries: Arc<Mutex<Vec<(String, RecordType)>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (zone, queries, stop) = (zone.clone(), queries.clone(), stop.clone());
            thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((len, peer)) = sock.recv_from(&mut buf) else {
                        continue;
                    };
                    let Ok(query) = Message::from_vec(&buf[..len]) else {
                        continue;
                    };
                    let Some(q) = query.queries.first() else {
                        continue;
                    };
                    let qname = q
                        .name()
                        .to_ascii()
                        .trim_end_matches('.')
                        .to_ascii_lowercase();
                    let qtype = q.query_type();
                    queries.lock().unwrap().push((qname.clone(), qtype));
                    let mut m = Message::response(query.metadata.id, OpCode::Query);
                    m.metadata.recursion_desired = true;
                    m.metadata.recursion_available = true;
                    m.add_queries(query.queries.iter().cloned());
                    let entry = zone.lock().unwrap().get(&qname).cloned();
                    let mut delay = Duration::ZERO;
                    match entry {
                        Some(Entry::Silent) => continue,
                        Some(Entry::NxDomain { delay: d }) => {
                            delay = d;
                            m.metadata.response_code = ResponseCode::NXDomain;
                            m.add_authority(soa(&qname));
                        }
                        Some(Entry::Records { records, delay: d }) => {
                            // The delay applies to answers with records; NODATA for
                            // the name's other types goes at once.
                            let mut any = false;
                            for r in records.into_iter().filter(|r| r.record_type() == qtype) {
                                any = true;
                                m.add_answer(r);
                            }
                            if any {
                                delay = d;
                            } else {
                                m.add_authority(soa(&qname));
                            }
                        }
                        None => {
                            m.metadata.response_code = ResponseCode::NXDomain;
                            m.add_authority(soa(&qname));
                        }
                    }
                    let bytes = m.to_vec().expect("encode answer");
                    if delay.is_zero() {
                        let _ = sock.send_to(&bytes, peer);
                    } else if let Ok(out) = sock.try_clone() {
                        thread::spawn(move || {
                            thread::sleep(delay);
                            let _ = out.send_to(&bytes, peer);
                        });
                    }
                }
            })
        };
        FakeDns {
            port,
            zone,
            queries,
            stop,
            thread: Some(thread),
        }
    }

    /// Answers A queries for `host` with `ips` (TTL `ttl` s); other types NODATA.
    pub fn set_a(&self, host: &str, ips: &[Ipv4Addr], ttl: u32) {
        self.set_a_delayed(host, ips, ttl, Duration::ZERO);
    }

    /// As [`FakeDns::set_a`], the A answers sent `delay` after each query.
    pub fn set_a_delayed(&self, host: &str, ips: &[Ipv4Addr], ttl: u32, delay: Duration) {
        let records = ips
            .iter()
            .map(|ip| Record::from_rdata(name(host), ttl, RData::A(A::from(*ip))))
            .collect();
        self.set_records(host, records, delay);
    }

    /// Answers queries for `host` with those of `records` whose type is asked for (their
    /// owner names are the records' own), `delay` after each such query; NODATA at once
    /// if none match.
    pub fn set_records(&self, host: &str, records: Vec<Record>, delay: Duration) {
        self.zone
            .lock()
            .unwrap()
            .insert(host.to_ascii_lowercase(), Entry::Records { records, delay });
    }

    /// Never answers queries for `host` (a DNS time-out).
    pub fn set_silent(&self, host: &str) {
        self.zone
            .lock()
            .unwrap()
            .insert(host.to_ascii_lowercase(), Entry::Silent);
    }

    /// Answers NXDOMAIN for `host`, `delay` after each query.
    pub fn set_nxdomain(&self, host: &str, delay: Duration) {
        self.zone
            .lock()
            .unwrap()
            .insert(host.to_ascii_lowercase(), Entry::NxDomain { delay });
    }

    /// How many queries arrived, for any name and type.
    pub fn queries_total(&self) -> usize {
        self.queries.lock().unwrap().len()
    }

    /// How many queries of `qtype` for `host` arrived.
    pub fn asked(&self, host: &str, qtype: RecordType) -> usize {
        self.queries
            .lock()
            .unwrap()
            .iter()
            .filter(|(n, t)| n == host && *t == qtype)
            .count()
    }
}

impl Drop for FakeDns {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
