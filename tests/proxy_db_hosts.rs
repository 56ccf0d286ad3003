//! `db_url` host names through a real `ringsip` process: the name is resolved by the
//! shard's own resolver — from a hosts file (`RINGSIP_HOSTS`) or from a DNS server run by
//! the test (`RINGSIP_RESOLV_CONF` + `RINGSIP_DNS_PORT`) — and the query runs on the local
//! MariaDB / PostgreSQL. A name that does not resolve gives `$rc` -1, a log line naming
//! the host and the DNS error, and the shard keeps serving. System files are never
//! touched. Set `RINGSIP_BACKEND=epoll` to run the same tests on the epoll backend.

mod common;
#[path = "common/dns.rs"]
mod fake_dns;

use std::net::{Ipv4Addr, UdpSocket};
use std::time::{Duration, Instant};

use common::{Proxy, Req, TempDir, Ua};
use fake_dns::FakeDns;
use hickory_proto::rr::RecordType;

const MARIADB: (&str, u16) = ("mysql://root@", 3306);
const POSTGRES: (&str, u16) = ("postgres://postgres@", 5432);

/// A script querying the `db_url` `url` on every INVITE and answering with the value
/// or `$rc`; OPTIONS are answered at once.
fn script(url: &str, connect_timeout_ms: u32) -> String {
    format!(
        r#"
socket=udp:127.0.0.1:{{{{PORT}}}}
log_level=3
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "signaling.so"
loadmodule "sipmsgops.so"
loadmodule "avpops.so"
modparam("avpops", "db_url", "{url}")
modparam("avpops", "connect_timeout", {connect_timeout_ms})
modparam("avpops", "query_timeout", 3000)
route {{
    if (is_method("OPTIONS")) {{ sl_send_reply(200, "fast path"); exit; }}
    async(avp_db_query("SELECT 40 + 2", "$avp(v)"), resume);
}}
route [resume] {{
    $avp(rc) = $rc;
    if ($rc < 0) {{ t_reply(500, "rc $avp(rc)"); exit; }}
    t_reply(200, "value $avp(v)");
}}
"#
    )
}

/// A UDP port on 127.0.0.1 nothing listens on (DNS asked there fails at once).
fn closed_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("reserve a UDP port")
}

/// Starts ringsip on `script` with its resolver reading `hosts` (hosts(5) text) and
/// asking 127.0.0.1:`dns_port` (`timeout_s` per query, one attempt).
fn start(script: &str, hosts: &str, dns_port: u16, timeout_s: u32) -> (Proxy, TempDir) {
    let dir = TempDir::new("dbhosts");
    let resolv = dir.0.join("resolv.conf");
    std::fs::write(
        &resolv,
        format!("nameserver 127.0.0.1\noptions timeout:{timeout_s} attempts:1\n"),
    )
    .expect("write resolv.conf");
    let hosts_path = dir.0.join("hosts");
    std::fs::write(&hosts_path, hosts).expect("write hosts");
    let port = dns_port.to_string();
    let proxy = Proxy::start_with_env(
        script,
        1,
        &[],
        &[
            ("RINGSIP_RESOLV_CONF", resolv.as_os_str()),
            ("RINGSIP_HOSTS", hosts_path.as_os_str()),
            ("RINGSIP_DNS_PORT", port.as_ref()),
        ],
    );
    (proxy, dir)
}

/// Sends an INVITE and returns its final response.
fn invite(uac: &Ua, proxy: &Proxy, within: Duration) -> common::SipMsg {
    let req = Req::new("INVITE", "sip:service@127.0.0.1:9");
    uac.send(&req.render(uac.addr), proxy.addr);
    let (m, _) = uac
        .recv_match(within, |m| m.call_id() == req.call_id && m.status() >= 200)
        .expect("a final response");
    m
}

fn hosts_file_name_runs_the_query(db: (&str, u16)) {
    let host = "db-hosts.ringsip.test";
    let url = format!("{}{host}:{}/test", db.0, db.1);
    // The DNS port is closed: only the hosts file can answer.
    let (proxy, _dir) = start(
        &script(&url, 2000),
        &format!("127.0.0.1 localhost\n127.0.0.1 {host}\n"),
        closed_udp_port(),
        1,
    );
    let uac = Ua::new();
    for _ in 0..3 {
        let r = invite(&uac, &proxy, Duration::from_secs(5));
        assert_eq!(r.start, "SIP/2.0 200 value 42");
    }
}

#[test]
fn a_hosts_file_name_reaches_mariadb() {
    hosts_file_name_runs_the_query(MARIADB);
}

#[test]
fn a_hosts_file_name_reaches_postgres() {
    hosts_file_name_runs_the_query(POSTGRES);
}

fn dns_name_runs_the_query(db: (&str, u16)) {
    let dns = FakeDns::start();
    let host = "db.dnsdb.ringsip.test";
    dns.set_a(host, &[Ipv4Addr::LOCALHOST], 300);
    let url = format!("{}{host}:{}/test", db.0, db.1);
    let (proxy, _dir) = start(&script(&url, 2000), "127.0.0.1 localhost\n", dns.port, 1);
    let uac = Ua::new();
    let r = invite(&uac, &proxy, Duration::from_secs(5));
    assert_eq!(r.start, "SIP/2.0 200 value 42");
    assert_eq!(dns.asked(host, RecordType::A), 1);
    // The connection is reused: no new lookup for the next query.
    let r = invite(&uac, &proxy, Duration::from_secs(5));
    assert_eq!(r.start, "SIP/2.0 200 value 42");
    assert_eq!(dns.asked(host, RecordType::A), 1);
}

#[test]
fn a_dns_name_reaches_mariadb() {
    dns_name_runs_the_query(MARIADB);
}

#[test]
fn a_dns_name_reaches_postgres() {
    dns_name_runs_the_query(POSTGRES);
}

#[test]
fn an_unresolvable_name_fails_the_query_backs_off_and_the_proxy_keeps_serving() {
    let dns = FakeDns::start();
    let host = "gone.dnsdb.ringsip.test";
    // NXDOMAIN, answered after 300 ms so that a second call queues behind the first
    // (one connection per shard) and meets the back-off. The start-up check passes.
    dns.set_nxdomain(host, Duration::from_millis(300));
    let url = format!("mysql://root@{host}/test");
    let script = script(&url, 2000).replace(
        "modparam(\"avpops\", \"query_timeout\", 3000)",
        "modparam(\"avpops\", \"query_timeout\", 3000)\nmodparam(\"avpops\", \"pool_size\", 1)",
    );
    let (proxy, _dir) = start(&script, "127.0.0.1 localhost\n", dns.port, 1);
    let uac = Ua::new();
    let (a, b) = (
        Req::new("INVITE", "sip:service@127.0.0.1:9"),
        Req::new("INVITE", "sip:service@127.0.0.1:9"),
    );
    uac.send(&a.render(uac.addr), proxy.addr);
    uac.send(&b.render(uac.addr), proxy.addr);
    for req in [&a, &b] {
        let (r, _) = uac
            .recv_match(Duration::from_secs(5), |m| {
                m.call_id() == req.call_id && m.status() >= 200
            })
            .expect("a final response");
        assert_eq!(r.start, "SIP/2.0 500 rc -1");
    }
    assert!(
        proxy.saw_log(
            &format!("did not resolve: {host}: no such domain (NXDOMAIN)"),
            Duration::from_secs(2)
        ),
        "a log line names the host and the DNS error"
    );
    assert!(
        proxy.saw_log(
            &format!("database {host}:3306 is down"),
            Duration::from_secs(2)
        ),
        "the queued call met the back-off"
    );
    assert_eq!(dns.asked(host, RecordType::A), 1);
    // Other requests are served.
    let o = Req::new("OPTIONS", "sip:x@127.0.0.1:9");
    uac.send(&o.render(uac.addr), proxy.addr);
    uac.expect_status(&o.call_id, "OPTIONS", 200);
}

#[test]
fn a_dns_time_out_is_cut_by_the_connect_time_out_while_the_shard_serves() {
    let dns = FakeDns::start();
    let host = "silent.dnsdb.ringsip.test";
    dns.set_silent(host);
    // The resolver would wait 5 s per query; connect_timeout is 500 ms.
    let url = format!("postgres://postgres@{host}/test");
    let (proxy, _dir) = start(&script(&url, 500), "127.0.0.1 localhost\n", dns.port, 5);
    let uac = Ua::new();
    let inv = Req::new("INVITE", "sip:service@127.0.0.1:9");
    let sent = Instant::now();
    uac.send(&inv.render(uac.addr), proxy.addr);
    // While the name is being resolved, the single shard answers OPTIONS.
    let o = Req::new("OPTIONS", "sip:x@127.0.0.1:9");
    uac.send(&o.render(uac.addr), proxy.addr);
    let (first, _) = uac
        .recv_match(Duration::from_secs(4), |m| m.status() >= 200)
        .expect("a final response");
    assert_eq!(
        (first.call_id(), first.start.as_str()),
        (o.call_id.as_str(), "SIP/2.0 200 fast path")
    );
    let (r, _) = uac
        .recv_match(Duration::from_secs(4), |m| {
            m.call_id() == inv.call_id && m.status() >= 200
        })
        .expect("the INVITE's final response");
    assert_eq!(r.start, "SIP/2.0 500 rc -1");
    // Cut by the connect time-out, not the resolver's 5 s.
    assert!(
        sent.elapsed() < Duration::from_secs(4),
        "{:?}",
        sent.elapsed()
    );
    assert!(
        proxy.saw_log(
            &format!("database host \"{host}\" did not resolve within the connect time-out"),
            Duration::from_secs(2)
        ),
        "a log line names the host and the time-out"
    );
}
