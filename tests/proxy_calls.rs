//! Calls through a real `ringsip` process over real UDP sockets: a UAC and UASs of the
//! test harness (`tests/common`) exercise the stateful proxy paths of RFC 3261 §16/§17.

mod common;

use std::time::{Duration, Instant};

use common::{reply, Proxy, Req, SipMsg, Ua};

const BASE: &str = r#"
socket=udp:127.0.0.1:{{PORT}}
log_level=3
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "maxfwd.so"
loadmodule "sipmsgops.so"
loadmodule "signaling.so"
modparam("tm", "fr_timeout", 2)
modparam("tm", "fr_inv_timeout", 3)
"#;

/// The canonical residential routing, with `EXTRA` spliced before t_relay.
fn script(extra_relay: &str, more_routes: &str) -> String {
    format!(
        r#"{BASE}
route {{
    if (!mf_process_maxfwd_header(10)) {{
        sl_send_reply(483, "Too Many Hops");
        exit;
    }}
    if (has_totag()) {{
        if (loose_route()) {{
            t_relay();
        }} else {{
            if (!is_method("ACK")) sl_send_reply(404, "Not here");
        }}
        exit;
    }}
    if (is_method("CANCEL")) {{
        if (t_check_trans()) t_relay();
        exit;
    }}
    record_route();
    {extra_relay}
    if (!t_relay()) {{
        sl_reply_error();
    }}
    exit;
}}
{more_routes}
"#
    )
}

fn within(d: u64) -> Duration {
    Duration::from_millis(d)
}

/// A UAS that sees one INVITE, answers 180 then `final_code` (with a To-tag).
fn uas_answer(uas: &Ua, call_id: &str, final_code: u16) -> SipMsg {
    let (inv, from) = uas.expect_request(call_id, "INVITE");
    uas.send(
        &reply(&inv, 180, "Ringing", Some("uas1"), Some(uas.addr)),
        from,
    );
    let reason = if final_code == 200 { "OK" } else { "Busy Here" };
    uas.send(
        &reply(&inv, final_code, reason, Some("uas1"), Some(uas.addr)),
        from,
    );
    inv
}

#[test]
fn invite_ack_bye_through_the_proxy() {
    let proxy = Proxy::start(&script("", ""), 1, &[]);
    let (uac, uas) = (Ua::new(), Ua::new());
    let invite = Req::new("INVITE", format!("sip:bob@{}", uas.addr));
    uac.send(&invite.render(uac.addr), proxy.addr);

    // The proxy answers 100 itself (RFC 3261 §16.2 / §17.2.1).
    let trying = uac.expect_status(&invite.call_id, "INVITE", 100);
    assert_eq!(trying.header_all("via").len(), 1);

    let inv = uas_answer(&uas, &invite.call_id, 200);
    // Our Via on top with a branch naming the shard, the UAC's below; RR; Max-Forwards-1.
    let vias = inv.header_all("via");
    assert_eq!(vias.len(), 2, "{}", inv.raw);
    assert!(
        inv.top_branch().unwrap_or("").starts_with("z9hG4bKrs"),
        "{}",
        inv.raw
    );
    let rr = inv.header("record-route").expect("record-route");
    assert!(
        rr.contains(&proxy.addr.to_string()) && rr.contains(";lr"),
        "{rr}"
    );
    assert_eq!(inv.header("max-forwards"), Some("69"), "{}", inv.raw);

    uac.expect_status(&invite.call_id, "INVITE", 180);
    let ok = uac.expect_status(&invite.call_id, "INVITE", 200);
    assert_eq!(
        ok.header_all("via").len(),
        1,
        "our Via is stripped: {}",
        ok.raw
    );
    assert!(ok.header("record-route").is_some());
    let to_tag = ok.to_tag().expect("to tag").to_string();

    // ACK and BYE follow the route set: R-URI = the UAS contact, Route = the proxy.
    for (method, cseq) in [("ACK", 1), ("BYE", 2)] {
        let mut r = Req::new(method, format!("sip:bob@{}", uas.addr));
        r.call_id = invite.call_id.clone();
        r.from_tag = invite.from_tag.clone();
        r.to_tag = Some(to_tag.clone());
        r.cseq = cseq;
        r.routes = vec![format!("<sip:{};lr>", proxy.addr)];
        uac.send(&r.render(uac.addr), proxy.addr);
        let (got, from) = uas.expect_request(&invite.call_id, method);
        assert!(
            got.header("route").is_none(),
            "our Route is removed: {}",
            got.raw
        );
        if method == "BYE" {
            uas.send(&reply(&got, 200, "OK", None, None), from);
        }
    }
    uac.expect_status(&invite.call_id, "BYE", 200);
}

#[test]
fn cancel_while_ringing_gives_487_and_cancels_the_branch() {
    let proxy = Proxy::start(&script("", ""), 1, &[]);
    let (uac, uas) = (Ua::new(), Ua::new());
    let invite = Req::new("INVITE", format!("sip:bob@{}", uas.addr));
    uac.send(&invite.render(uac.addr), proxy.addr);
    let (inv, from) = uas.expect_request(&invite.call_id, "INVITE");
    uas.send(
        &reply(&inv, 180, "Ringing", Some("uas1"), Some(uas.addr)),
        from,
    );
    uac.expect_status(&invite.call_id, "INVITE", 180);

    // CANCEL: same branch, CSeq number and Call-ID (RFC 3261 §9.1).
    let mut cancel = Req::new("CANCEL", invite.ruri.clone());
    cancel.call_id = invite.call_id.clone();
    cancel.from_tag = invite.from_tag.clone();
    cancel.branch = invite.branch.clone();
    uac.send(&cancel.render(uac.addr), proxy.addr);
    uac.expect_status(&invite.call_id, "CANCEL", 200);

    // The proxy cancels the branch; the UAS answers the CANCEL and 487s the INVITE.
    let (c, cfrom) = uas.expect_request(&invite.call_id, "CANCEL");
    assert_eq!(
        c.top_branch(),
        inv.top_branch(),
        "CANCEL has the INVITE's branch"
    );
    uas.send(&reply(&c, 200, "OK", None, None), cfrom);
    uas.send(
        &reply(&inv, 487, "Request Terminated", Some("uas1"), None),
        from,
    );
    // The 487 is ACKed hop-by-hop by the proxy.
    let (ack, _) = uas.expect_request(&invite.call_id, "ACK");
    assert_eq!(ack.top_branch(), inv.top_branch());
    uac.expect_status(&invite.call_id, "INVITE", 487);
}

#[test]
fn busy_uas_is_acked_and_failure_route_reroutes_to_a_second_uas() {
    let (uac, uas1, uas2) = (Ua::new(), Ua::new(), Ua::new());
    let failure = format!(
        r#"failure_route[reroute] {{
    if (t_check_status("486")) {{
        $ru = "sip:bob@{}";
        t_relay();
    }}
}}"#,
        uas2.addr
    );
    let proxy = Proxy::start(&script("t_on_failure(\"reroute\");", &failure), 1, &[]);
    let invite = Req::new("INVITE", format!("sip:bob@{}", uas1.addr));
    uac.send(&invite.render(uac.addr), proxy.addr);

    let (inv1, from1) = uas1.expect_request(&invite.call_id, "INVITE");
    uas1.send(&reply(&inv1, 486, "Busy Here", Some("b1"), None), from1);
    let (ack, _) = uas1.expect_request(&invite.call_id, "ACK");
    assert_eq!(
        ack.top_branch(),
        inv1.top_branch(),
        "hop-by-hop ACK for the 486"
    );

    let (inv2, from2) = uas2.expect_request(&invite.call_id, "INVITE");
    assert_ne!(inv2.top_branch(), inv1.top_branch(), "a new branch");
    uas2.send(&reply(&inv2, 200, "OK", Some("b2"), Some(uas2.addr)), from2);
    let ok = uac.expect_status(&invite.call_id, "INVITE", 200);
    assert_eq!(ok.to_tag(), Some("b2"));
    // The 486 never reaches the UAC.
    assert!(uac.recv_match(within(300), |m| m.status() == 486).is_none());
}

#[test]
fn unanswered_invite_times_out_with_408() {
    let proxy = Proxy::start(&script("", ""), 1, &[]);
    let (uac, uas) = (Ua::new(), Ua::new());
    let invite = Req::new("INVITE", format!("sip:bob@{}", uas.addr));
    let started = Instant::now();
    uac.send(&invite.render(uac.addr), proxy.addr);
    let (first, _) = uas.expect_request(&invite.call_id, "INVITE");
    // The proxy retransmits the INVITE to the silent UAS (Timer A = T1 = 500 ms,
    // RFC 3261 §17.1.1.2).
    let (again, _) = uas
        .recv_match(Duration::from_millis(1500), |m| m.method() == "INVITE")
        .expect("an INVITE retransmission");
    assert_eq!(again.top_branch(), first.top_branch());
    // fr_timeout is 2 s: no final before it, a 408 after it.
    let (r, _) = uac
        .recv_match(Duration::from_secs(6), |m| {
            m.call_id() == invite.call_id && m.status() >= 200
        })
        .expect("a final response");
    assert_eq!(r.status(), 408, "{}", r.raw);
    assert!(started.elapsed() >= Duration::from_millis(1900));
}

#[test]
fn request_retransmissions_are_absorbed_and_the_last_response_resent() {
    let proxy = Proxy::start(&script("", ""), 1, &[]);
    let (uac, uas) = (Ua::new(), Ua::new());
    let invite = Req::new("INVITE", format!("sip:bob@{}", uas.addr));
    let text = invite.render(uac.addr);
    uac.send(&text, proxy.addr);
    let (inv, from) = uas.expect_request(&invite.call_id, "INVITE");
    uas.send(&reply(&inv, 180, "Ringing", Some("t"), None), from);
    uac.expect_status(&invite.call_id, "INVITE", 180);
    // The UAC retransmits: the UAS does not see it again; the UAC gets the 180 again.
    uac.send(&text, proxy.addr);
    uac.expect_status(&invite.call_id, "INVITE", 180);
    assert!(uas
        .recv_match(within(300), |m| m.method() == "INVITE")
        .is_none());
    uas.send(&reply(&inv, 200, "OK", Some("t"), Some(uas.addr)), from);
    uac.expect_status(&invite.call_id, "INVITE", 200);
}

#[test]
fn a_lost_response_is_recovered_by_retransmission() {
    let proxy = Proxy::start(&script("", ""), 1, &[]);
    let (uac, uas) = (Ua::new(), Ua::new());
    let reg = Req::new("OPTIONS", format!("sip:bob@{}", uas.addr));
    uac.send(&reg.render(uac.addr), proxy.addr);
    // The UAS "loses" the first request (does not answer); the proxy retransmits it
    // (Timer E, T1 = 500 ms) and the UAS answers the retransmission.
    let (first, _) = uas.expect_request(&reg.call_id, "OPTIONS");
    let (again, from) = uas
        .recv_match(Duration::from_secs(2), |m| m.call_id() == reg.call_id)
        .expect("a retransmission");
    assert_eq!(first.top_branch(), again.top_branch());
    uas.send(&reply(&again, 200, "OK", Some("t"), None), from);
    uac.expect_status(&reg.call_id, "OPTIONS", 200);
}

#[test]
fn parallel_fork_to_two_uas() {
    let (uac, uas1, uas2) = (Ua::new(), Ua::new(), Ua::new());
    let extra = format!("append_branch(\"sip:bob@{}\");", uas2.addr);
    let proxy = Proxy::start(&script(&extra, ""), 1, &[]);
    let invite = Req::new("INVITE", format!("sip:bob@{}", uas1.addr));
    uac.send(&invite.render(uac.addr), proxy.addr);
    let (inv1, from1) = uas1.expect_request(&invite.call_id, "INVITE");
    let (inv2, from2) = uas2.expect_request(&invite.call_id, "INVITE");
    assert_ne!(inv1.top_branch(), inv2.top_branch());
    uas2.send(&reply(&inv2, 180, "Ringing", Some("u2"), None), from2);
    uas1.send(&reply(&inv1, 200, "OK", Some("u1"), Some(uas1.addr)), from1);
    let ok = uac.expect_status(&invite.call_id, "INVITE", 200);
    assert_eq!(ok.to_tag(), Some("u1"));
    // The other branch is cancelled (RFC 3261 §16.7 step 10).
    let (c, _) = uas2.expect_request(&invite.call_id, "CANCEL");
    assert_eq!(c.top_branch(), inv2.top_branch());
}

#[test]
fn max_forwards_zero_is_answered_483() {
    let proxy = Proxy::start(&script("", ""), 1, &[]);
    let (uac, uas) = (Ua::new(), Ua::new());
    let mut invite = Req::new("INVITE", format!("sip:bob@{}", uas.addr));
    invite.max_forwards = 0;
    uac.send(&invite.render(uac.addr), proxy.addr);
    uac.expect_status(&invite.call_id, "INVITE", 483);
    assert!(uas.recv(within(300)).is_none());
}

#[test]
fn malformed_requests_get_400_or_are_dropped_and_the_proxy_lives_on() {
    let proxy = Proxy::start(&script("", ""), 1, &[]);
    let uac = Ua::new();
    // Missing Call-ID: 400.
    let text = Req::new("OPTIONS", "sip:x@127.0.0.1:9").render(uac.addr);
    let broken: String = text
        .lines()
        .filter(|l| !l.starts_with("Call-ID"))
        .map(|l| format!("{l}\n"))
        .collect::<String>()
        .replace('\n', "\r\n")
        .replace("\r\r\n", "\r\n");
    uac.send(&broken, proxy.addr);
    let (r, _) = uac.recv(within(2000)).expect("a reply");
    assert_eq!(r.status(), 400, "{}", r.raw);
    // Garbage: no reply possible, silently dropped.
    uac.send("\u{1}\u{2}garbage\r\n\r\n", proxy.addr);
    // Still alive.
    let ok = Req::new("INVITE", "sip:x@127.0.0.1:9");
    let mut ok = ok;
    ok.max_forwards = 0;
    uac.send(&ok.render(uac.addr), proxy.addr);
    uac.expect_status(&ok.call_id, "INVITE", 483);
}

#[test]
fn branch_route_edits_each_branch_and_drop_discards_one() {
    let (uac, uas1, uas2) = (Ua::new(), Ua::new(), Ua::new());
    let extra = format!(
        "append_branch(\"sip:dropme@{}\"); t_on_branch(\"per_branch\");",
        uas2.addr
    );
    let more = r#"branch_route[per_branch] {
    if ($rU == "dropme") { drop; }
    append_hf("X-Branch: $T_branch_idx\r\n");
}"#;
    let proxy = Proxy::start(&script(&extra, more), 1, &[]);
    let invite = Req::new("INVITE", format!("sip:bob@{}", uas1.addr));
    uac.send(&invite.render(uac.addr), proxy.addr);
    let (inv, from) = uas1.expect_request(&invite.call_id, "INVITE");
    assert_eq!(inv.header("x-branch"), Some("0"), "{}", inv.raw);
    // The dropped branch never leaves the proxy.
    assert!(uas2.recv(within(300)).is_none());
    uas1.send(&reply(&inv, 200, "OK", Some("b"), Some(uas1.addr)), from);
    uac.expect_status(&invite.call_id, "INVITE", 200);
}

/// `modparam("tm", "wt_timer", N)`: an answered call's transactions (INVITE in Accepted,
/// BYE in Completed) leave the table N seconds after their final response, not 32 s
/// (RFC 6026 Timer L / RFC 3261 Timer J); a retransmitted BYE inside that window is still
/// absorbed with the last response resent.
#[test]
fn ended_transactions_leave_the_table_after_wt_timer() {
    let src = script("", "").replace(
        "modparam(\"tm\", \"fr_timeout\", 2)",
        "modparam(\"tm\", \"fr_timeout\", 2)\nmodparam(\"tm\", \"wt_timer\", 1)",
    );
    let proxy = Proxy::start(&src, 1, &[]);
    let (uac, uas) = (Ua::new(), Ua::new());
    let invite = Req::new("INVITE", format!("sip:bob@{}", uas.addr));
    uac.send(&invite.render(uac.addr), proxy.addr);
    uas_answer(&uas, &invite.call_id, 200);
    let ok = uac.expect_status(&invite.call_id, "INVITE", 200);
    let to_tag = ok.to_tag().expect("to tag").to_string();
    let mut bye = Req::new("BYE", format!("sip:bob@{}", uas.addr));
    bye.call_id = invite.call_id.clone();
    bye.from_tag = invite.from_tag.clone();
    bye.to_tag = Some(to_tag);
    bye.cseq = 2;
    bye.routes = vec![format!("<sip:{};lr>", proxy.addr)];
    let bye_wire = bye.render(uac.addr);
    uac.send(&bye_wire, proxy.addr);
    let (got, from) = uas.expect_request(&invite.call_id, "BYE");
    uas.send(&reply(&got, 200, "OK", None, None), from);
    uac.expect_status(&invite.call_id, "BYE", 200);
    let ended = Instant::now();

    // Within wt_timer: both transactions are still there, and a retransmitted BYE is
    // answered from the BYE transaction, not forwarded again.
    let live = proxy.wait_metric("ringsip_transactions", within(500), |v| v == 2);
    assert_eq!(live, Some(2));
    uac.send(&bye_wire, proxy.addr);
    uac.expect_status(&invite.call_id, "BYE", 200);
    assert!(
        uas.recv(within(300)).is_none(),
        "the retransmitted BYE was absorbed"
    );

    // After wt_timer (1 s), the table is empty.
    let left = proxy.wait_metric("ringsip_transactions", Duration::from_secs(4), |v| v == 0);
    assert_eq!(left, Some(0), "transactions left after wt_timer");
    let took = ended.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "ended transactions lingered {took:?} with wt_timer = 1 s"
    );
}

/// `forward()` (stateless, RFC 3261 §16.11): our Via goes on top, the sender's gets
/// `received` and its empty `rport` filled in (RFC 3581) exactly once, and the UAS's
/// response finds its way back by the Vias alone.
#[test]
fn stateless_forward_puts_our_via_on_top_and_routes_the_response_back() {
    let proxy = Proxy::start(
        &format!("{BASE}\nroute {{\n    forward();\n    exit;\n}}\n"),
        1,
        &[],
    );
    let (uac, uas) = (Ua::new(), Ua::new());
    let invite = Req::new("INVITE", format!("sip:bob@{}", uas.addr));
    uac.send(&invite.render(uac.addr), proxy.addr);
    let (got, from) = uas.expect_request(&invite.call_id, "INVITE");
    let vias = got.header_all("via");
    assert_eq!(vias.len(), 2, "{}", got.raw);
    assert!(
        vias[0].contains(&proxy.addr.to_string()) && vias[0].contains("branch=z9hG4bK"),
        "our Via first: {}",
        got.raw
    );
    let sender = &vias[1];
    assert!(sender.contains(&uac.addr.to_string()), "{}", got.raw);
    assert!(sender.contains("received=127.0.0.1"), "{}", got.raw);
    assert_eq!(
        sender.matches("rport").count(),
        1,
        "rport once, with the port: {sender}"
    );
    assert!(
        sender.contains(&format!("rport={}", uac.addr.port())),
        "{sender}"
    );

    uas.send(&reply(&got, 200, "OK", Some("t1"), Some(uas.addr)), from);
    let ok = uac.expect_status(&invite.call_id, "INVITE", 200);
    assert_eq!(
        ok.header_all("via").len(),
        1,
        "our Via is stripped: {}",
        ok.raw
    );
}
