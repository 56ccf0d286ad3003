//! `t_relay()` to host names through a real `ringsip` process: the next hop is resolved by
//! RFC 3263 (NAPTR → SRV → A) on the shard's own resolver, asking a small DNS server run
//! by the test (std UDP socket, answers built with hickory-proto). The proxy is pointed at
//! it with `RINGSIP_RESOLV_CONF` / `RINGSIP_HOSTS` / `RINGSIP_DNS_PORT`; system files are
//! never touched. Set `RINGSIP_BACKEND=epoll` to run the same tests on the epoll backend.

mod common;
#[path = "common/dns.rs"]
mod fake_dns;

use std::net::Ipv4Addr;
use std::time::Duration;

use common::{reply, Proxy, Req, TempDir, Ua};
use fake_dns::{name, FakeDns};
use hickory_proto::rr::rdata::{NAPTR, SRV};
use hickory_proto::rr::{RData, Record, RecordType};

const ZONE: &str = "dnsrelay.test";

// ---------------------------------------------------------------- the zone

fn srv_record(owner: &str, priority: u16, port: u16, target: &str) -> Record {
    Record::from_rdata(
        name(owner),
        60,
        RData::SRV(SRV::new(priority, 10, port, name(target))),
    )
}

fn naptr_record(owner: &str, service: &str, replacement: &str) -> Record {
    Record::from_rdata(
        name(owner),
        60,
        RData::NAPTR(NAPTR::new(
            10,
            10,
            b"S".to_vec().into_boxed_slice(),
            service.as_bytes().to_vec().into_boxed_slice(),
            Vec::new().into_boxed_slice(),
            name(replacement),
        )),
    )
}

/// The zone every test uses, on a [`FakeDns`]. `t1`/`t2` are the SRV targets of `svc`
/// (priority 10 then 20) on the ports given; `slow` answers its A query after 300 ms;
/// any other name is NXDOMAIN.
fn zone(srv_ports: (u16, u16)) -> FakeDns {
    let dns = FakeDns::start();
    let local = [Ipv4Addr::LOCALHOST];
    for host in ["a", "t1", "t2"] {
        dns.set_a(&format!("{host}.{ZONE}"), &local, 60);
    }
    dns.set_a_delayed(
        &format!("slow.{ZONE}"),
        &local,
        60,
        Duration::from_millis(300),
    );
    let svc = format!("svc.{ZONE}");
    let srv = format!("_sip._udp.svc.{ZONE}");
    dns.set_records(
        &svc,
        vec![naptr_record(&svc, "SIP+D2U", &srv)],
        Duration::ZERO,
    );
    dns.set_records(
        &srv,
        vec![
            srv_record(&srv, 10, srv_ports.0, &format!("t1.{ZONE}")),
            srv_record(&srv, 20, srv_ports.1, &format!("t2.{ZONE}")),
        ],
        Duration::ZERO,
    );
    dns
}

// ---------------------------------------------------------------- the proxy

const SCRIPT: &str = r#"
socket=udp:127.0.0.1:{{PORT}}
log_level=3
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "sipmsgops.so"
loadmodule "signaling.so"
modparam("tm", "fr_timeout", 2)
modparam("tm", "fr_inv_timeout", 3)

route {
    if (has_totag()) {
        if (loose_route()) {
            t_relay();
        } else {
            if (!is_method("ACK")) sl_send_reply(404, "Not here");
        }
        exit;
    }
    if (is_method("CANCEL")) {
        if (t_check_trans()) t_relay();
        exit;
    }
    record_route();
    if ($rU == "withfailure") t_on_failure("unresolvable");
    if (is_present_hf("X-Fork")) append_branch("$hdr(X-Fork)");
    if (!t_relay()) {
        sl_reply_error();
    }
    exit;
}

failure_route[unresolvable] {
    if (t_check_status("503")) t_reply(478, "Unresolvable Destination");
}
"#;

/// `ringsip` on `SCRIPT` with one shard, resolving through `dns` only (its own resolv.conf
/// and hosts file, never the system's); killed on drop, with its directory.
fn start_proxy(dns: &FakeDns) -> (Proxy, TempDir) {
    let dir = TempDir::new("dnsrelay");
    let resolv = dir.0.join("resolv.conf");
    std::fs::write(
        &resolv,
        "nameserver 127.0.0.1\noptions timeout:2 attempts:1\n",
    )
    .expect("write resolv.conf");
    let hosts = dir.0.join("hosts");
    std::fs::write(&hosts, "127.0.0.1 localhost\n").expect("write hosts");
    let port = dns.port.to_string();
    let proxy = Proxy::start_with_env(
        SCRIPT,
        1,
        &[],
        &[
            ("RINGSIP_RESOLV_CONF", resolv.as_os_str()),
            ("RINGSIP_HOSTS", hosts.as_os_str()),
            ("RINGSIP_DNS_PORT", port.as_ref()),
        ],
    );
    (proxy, dir)
}

/// Answers the INVITE of `call_id` with `code` (To-tag `tag`).
fn answer(uas: &Ua, call_id: &str, code: u16, reason: &str, tag: &str) -> common::SipMsg {
    let (inv, from) = uas.expect_request(call_id, "INVITE");
    uas.send(&reply(&inv, code, reason, Some(tag), Some(uas.addr)), from);
    inv
}

// ---------------------------------------------------------------- the tests

#[test]
fn a_record_next_hop_completes_the_call() {
    let dns = zone((1, 1));
    let (proxy, _dir) = start_proxy(&dns);
    let (uac, uas) = (Ua::new(), Ua::new());
    let invite = Req::new("INVITE", format!("sip:bob@a.{ZONE}:{}", uas.addr.port()));
    uac.send(&invite.render(uac.addr), proxy.addr);
    // The transaction exists at once: 100 Trying before any DNS answer is needed.
    uac.expect_status(&invite.call_id, "INVITE", 100);
    let inv = answer(&uas, &invite.call_id, 200, "OK", "uas1");
    assert_eq!(inv.ruri(), format!("sip:bob@a.{ZONE}:{}", uas.addr.port()));
    let ok = uac.expect_status(&invite.call_id, "INVITE", 200);
    assert_eq!(ok.header_all("via").len(), 1, "{}", ok.raw);
    // Port given: addresses only (RFC 3263 §4.2), no NAPTR/SRV.
    assert!(dns.asked(&format!("a.{ZONE}"), RecordType::A) >= 1);
    assert_eq!(dns.asked(&format!("a.{ZONE}"), RecordType::NAPTR), 0);

    // A second call to the same name is served from the shard's cache.
    let before = dns.queries_total();
    let again = Req::new("INVITE", format!("sip:bob@a.{ZONE}:{}", uas.addr.port()));
    uac.send(&again.render(uac.addr), proxy.addr);
    answer(&uas, &again.call_id, 200, "OK", "uas2");
    uac.expect_status(&again.call_id, "INVITE", 200);
    assert_eq!(dns.queries_total(), before, "answered from cache");
}

#[test]
fn srv_failover_retries_a_503_on_the_next_target() {
    let (uas1, uas2, uac) = (Ua::new(), Ua::new(), Ua::new());
    let dns = zone((uas1.addr.port(), uas2.addr.port()));
    let (proxy, _dir) = start_proxy(&dns);
    let invite = Req::new("INVITE", format!("sip:bob@svc.{ZONE}"));
    uac.send(&invite.render(uac.addr), proxy.addr);
    uac.expect_status(&invite.call_id, "INVITE", 100);

    // The priority-10 target answers 503; the proxy ACKs it and tries priority 20.
    let first = answer(&uas1, &invite.call_id, 503, "Service Unavailable", "t1");
    let (ack, _) = uas1.expect_request(&invite.call_id, "ACK");
    assert_eq!(ack.top_branch(), first.top_branch());
    let second = answer(&uas2, &invite.call_id, 200, "OK", "t2");
    assert_ne!(
        first.top_branch(),
        second.top_branch(),
        "the retry is a new branch"
    );
    assert!(dns.asked(&format!("svc.{ZONE}"), RecordType::NAPTR) >= 1);
    assert!(dns.asked(&format!("_sip._udp.svc.{ZONE}"), RecordType::SRV) >= 1);

    // The UAC sees the 200 and never the 503.
    let mut finals = Vec::new();
    while let Some((m, _)) = uac.recv(Duration::from_millis(500)) {
        if m.call_id() == invite.call_id && m.status() >= 200 {
            finals.push(m.status());
        }
    }
    assert_eq!(finals, vec![200]);
}

#[test]
fn nxdomain_host_gets_a_final_response_at_once() {
    let dns = zone((1, 1));
    let (proxy, _dir) = start_proxy(&dns);
    let uac = Ua::new();

    // No failure route: the branch fails as on a transport error (a 503 becomes 500
    // upstream, RFC 3261 §16.7 step 6).
    let invite = Req::new("INVITE", format!("sip:bob@nowhere.{ZONE}"));
    uac.send(&invite.render(uac.addr), proxy.addr);
    uac.expect_status(&invite.call_id, "INVITE", 100);
    uac.expect_status(&invite.call_id, "INVITE", 500);
    assert!(dns.asked(&format!("nowhere.{ZONE}"), RecordType::NAPTR) >= 1);

    // With a failure route: it runs and sees the 503.
    let invite = Req::new("INVITE", format!("sip:withfailure@nowhere.{ZONE}"));
    uac.send(&invite.render(uac.addr), proxy.addr);
    let r = uac.expect_status(&invite.call_id, "INVITE", 478);
    assert!(r.start.contains("Unresolvable Destination"), "{}", r.raw);

    // A non-INVITE too.
    let options = Req::new("OPTIONS", format!("sip:bob@nowhere.{ZONE}"));
    uac.send(&options.render(uac.addr), proxy.addr);
    uac.expect_status(&options.call_id, "OPTIONS", 500);
}

#[test]
fn a_pending_query_does_not_hold_up_other_calls() {
    let dns = zone((1, 1));
    let (proxy, _dir) = start_proxy(&dns);
    let (uac1, uas1, uac2, uas2) = (Ua::new(), Ua::new(), Ua::new(), Ua::new());

    let slow = Req::new(
        "INVITE",
        format!("sip:bob@slow.{ZONE}:{}", uas1.addr.port()),
    );
    uac1.send(&slow.render(uac1.addr), proxy.addr);
    uac1.expect_status(&slow.call_id, "INVITE", 100);

    // Same (single) shard, IP literal: completes while the DNS answer is outstanding.
    let fast = Req::new("INVITE", format!("sip:bob@{}", uas2.addr));
    uac2.send(&fast.render(uac2.addr), proxy.addr);
    answer(&uas2, &fast.call_id, 200, "OK", "fast");
    uac2.expect_status(&fast.call_id, "INVITE", 200);
    assert!(
        uas1.recv(Duration::from_millis(1)).is_none(),
        "the slow call's INVITE was sent before the fast call completed"
    );

    answer(&uas1, &slow.call_id, 200, "OK", "slow");
    uac1.expect_status(&slow.call_id, "INVITE", 200);
}

#[test]
fn cancel_while_resolving_gives_487_and_no_branch() {
    let dns = zone((1, 1));
    let (proxy, _dir) = start_proxy(&dns);
    let (uac, uas) = (Ua::new(), Ua::new());
    let invite = Req::new("INVITE", format!("sip:bob@slow.{ZONE}:{}", uas.addr.port()));
    uac.send(&invite.render(uac.addr), proxy.addr);
    uac.expect_status(&invite.call_id, "INVITE", 100);

    let mut cancel = Req::new("CANCEL", invite.ruri.clone());
    cancel.call_id = invite.call_id.clone();
    cancel.from_tag = invite.from_tag.clone();
    cancel.branch = invite.branch.clone();
    uac.send(&cancel.render(uac.addr), proxy.addr);
    uac.expect_status(&invite.call_id, "CANCEL", 200);
    uac.expect_status(&invite.call_id, "INVITE", 487);

    // The resolution completes later (300 ms); no INVITE may go out after the CANCEL.
    assert!(
        uas.recv(Duration::from_millis(800)).is_none(),
        "a branch was added after CANCEL"
    );
    assert!(dns.asked(&format!("slow.{ZONE}"), RecordType::A) >= 1);
}

#[test]
fn parallel_fork_waits_for_the_branch_being_resolved() {
    let dns = zone((1, 1));
    let (proxy, _dir) = start_proxy(&dns);
    let (uac, slow_uas, busy_uas) = (Ua::new(), Ua::new(), Ua::new());
    // Two branches: a host name answered after 300 ms, and an IP literal that is busy.
    let mut invite = Req::new(
        "INVITE",
        format!("sip:bob@slow.{ZONE}:{}", slow_uas.addr.port()),
    );
    invite
        .extra
        .push(format!("X-Fork: sip:bob@{}", busy_uas.addr));
    uac.send(&invite.render(uac.addr), proxy.addr);
    uac.expect_status(&invite.call_id, "INVITE", 100);
    answer(&busy_uas, &invite.call_id, 486, "Busy Here", "busy");
    busy_uas.expect_request(&invite.call_id, "ACK");

    // Every branch sent so far failed, but one is still being resolved: no final yet.
    answer(&slow_uas, &invite.call_id, 200, "OK", "slow");
    let mut finals = Vec::new();
    while let Some((m, _)) = uac.recv(Duration::from_millis(500)) {
        if m.call_id() == invite.call_id && m.status() >= 200 {
            finals.push(m.status());
        }
    }
    assert_eq!(finals, vec![200]);
}

#[test]
fn srv_failover_on_a_target_that_never_answers() {
    let (silent, uas2, uac) = (Ua::new(), Ua::new(), Ua::new());
    let dns = zone((silent.addr.port(), uas2.addr.port()));
    let (proxy, _dir) = start_proxy(&dns);
    let invite = Req::new("INVITE", format!("sip:bob@svc.{ZONE}"));
    uac.send(&invite.render(uac.addr), proxy.addr);
    uac.expect_status(&invite.call_id, "INVITE", 100);
    let (first, _) = silent.expect_request(&invite.call_id, "INVITE");

    // No response at all: Timer B (fr_timeout, 2 s here) gives the branch a local 408,
    // and the request goes to the next SRV target (RFC 3263 §4.3).
    let second = answer(&uas2, &invite.call_id, 200, "OK", "t2");
    assert_ne!(first.top_branch(), second.top_branch());
    let mut finals = Vec::new();
    while let Some((m, _)) = uac.recv(Duration::from_millis(500)) {
        if m.call_id() == invite.call_id && m.status() >= 200 {
            finals.push(m.status());
        }
    }
    assert_eq!(finals, vec![200]);
}
