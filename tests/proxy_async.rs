//! `async()` and `launch()` through a real `ringsip` process: SQL against the local
//! MariaDB and PostgreSQL, HTTP against a server in the test, real child processes, and
//! timers — checking the resume route, `$rc`, output variables, and that the (single)
//! shard keeps serving other requests while operations are pending.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{token, Proxy, Req, Ua};

const MODULES: &str = r#"
socket=udp:127.0.0.1:{{PORT}}
log_level=3
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "signaling.so"
loadmodule "sipmsgops.so"
loadmodule "avpops.so"
loadmodule "sqlops.so"
loadmodule "rest_client.so"
loadmodule "exec.so"
loadmodule "cfgutils.so"
"#;

fn mysql(sql: &str) {
    let out = Command::new("mariadb")
        .args(["-h", "127.0.0.1", "-u", "root", "test", "-e", sql])
        .output()
        .expect("run mariadb client");
    assert!(
        out.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn psql(sql: &str) {
    let out = Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            "test",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ])
        .output()
        .expect("run psql");
    assert!(
        out.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A users table with (uid, credit) rows on the given backend; dropped on drop.
struct Users {
    table: String,
    pg: bool,
}

impl Users {
    fn create(pg: bool) -> Users {
        let table = token("users_");
        let create = format!("CREATE TABLE {table} (uid VARCHAR(64), credit INT)");
        let insert =
            format!("INSERT INTO {table} VALUES ('alice', 42), ('bob', 7), ('carol', NULL)");
        if pg {
            psql(&create);
            psql(&insert);
        } else {
            mysql(&create);
            mysql(&insert);
        }
        Users { table, pg }
    }

    fn url(&self) -> &'static str {
        if self.pg {
            "postgres://postgres@127.0.0.1:5432/test"
        } else {
            "mysql://root@127.0.0.1:3306/test"
        }
    }
}

impl Drop for Users {
    fn drop(&mut self) {
        let sql = format!("DROP TABLE IF EXISTS {}", self.table);
        if self.pg {
            psql(&sql);
        } else {
            mysql(&sql);
        }
    }
}

/// The OpenSIPS manual's example, with the uid taken from the From user first and a reply
/// added to the resume route so the UAC sees the outcome.
fn credit_script(users: &Users) -> String {
    format!(
        r#"{MODULES}
modparam("avpops", "db_url", "{url}")
modparam("avpops", "query_timeout", 2000)
route {{
    if (is_method("OPTIONS")) {{ sl_send_reply(200, "fast path"); exit; }}
    $avp(uid) = $fU;
    async(avp_db_query("SELECT credit FROM {table} WHERE uid='$avp(uid)'", "$avp(credit)"), resume_credit);
}}
route [resume_credit] {{
    # $rc is the query's until the next function call (xlog sets it again).
    $avp(rc) = $rc;
    if ($rc < 0) {{ xlog("error $rc in avp_db_query()\n"); t_reply(500, "rc $avp(rc)"); exit; }}
    xlog("Credit of user $avp(uid) is $avp(credit)\n");
    t_reply(200, "credit $avp(credit)");
}}
"#,
        url = users.url(),
        table = users.table
    )
}

/// Sends an INVITE whose From user is `user` and returns the final response.
fn call(uac: &Ua, proxy: &Proxy, user: &str) -> common::SipMsg {
    let req = Req::new("INVITE", "sip:service@127.0.0.1:9");
    let text = req
        .render(uac.addr)
        .replace("sip:alice@", &format!("sip:{user}@"));
    uac.send(&text, proxy.addr);
    let (m, _) = uac
        .recv_match(Duration::from_secs(6), |m| {
            m.call_id() == req.call_id && m.status() >= 200
        })
        .expect("a final response");
    m
}

fn credit_lookup(pg: bool) {
    let users = Users::create(pg);
    let proxy = Proxy::start(&credit_script(&users), 1, &[]);
    let uac = Ua::new();
    let r = call(&uac, &proxy, "alice");
    assert_eq!(
        (r.status(), r.start.as_str()),
        (200, "SIP/2.0 200 credit 42")
    );
    assert!(proxy.saw_log("Credit of user alice is 42", Duration::from_secs(2)));
    // No rows: $rc = -2.
    let r = call(&uac, &proxy, "nobody");
    assert_eq!(r.start, "SIP/2.0 500 rc -2");
    // NULL comes back as OpenSIPS's "<null>".
    let r = call(&uac, &proxy, "carol");
    assert_eq!(r.start, "SIP/2.0 200 credit <null>");
    assert_in_flight_zero(&proxy);
}

/// Every async operation started was delivered (DESIGN.md: nothing leaks).
fn assert_in_flight_zero(proxy: &Proxy) {
    // Snapshots are published every 100 ms: wait for one that saw the operations.
    let started = proxy.wait_metric("ringsip_async_started", Duration::from_secs(3), |v| v > 0);
    assert!(started.unwrap_or(0) > 0, "no async operation was counted");
    let v = proxy.wait_metric("ringsip_async_in_flight", Duration::from_secs(3), |v| {
        v == 0
    });
    assert_eq!(v, Some(0), "async operations still in flight");
}

#[test]
fn manual_example_on_mariadb() {
    credit_lookup(false);
}

#[test]
fn manual_example_on_postgres() {
    credit_lookup(true);
}

#[test]
fn the_verbatim_manual_example_runs_unchanged() {
    let users = Users::create(false);
    let script = format!(
        r#"{MODULES}
modparam("avpops", "db_url", "{url}")
route {{
    async(avp_db_query("SELECT credit FROM {table} WHERE uid='$avp(uid)'", "$avp(credit)"), resume_credit);
}}
route [resume_credit] {{
    if ($rc < 0) {{ xlog("error $rc in avp_db_query()\n"); exit; }}
    xlog("Credit of user $avp(uid) is $avp(credit)\n");
}}
"#,
        url = users.url(),
        table = users.table
    );
    let proxy = Proxy::start(&script, 1, &[]);
    let uac = Ua::new();
    uac.send(
        &Req::new("INVITE", "sip:x@127.0.0.1:9").render(uac.addr),
        proxy.addr,
    );
    // $avp(uid) is unset, so no user matches: $rc is -2, as OpenSIPS gives.
    assert!(proxy.saw_log("error -2 in avp_db_query()", Duration::from_secs(3)));
}

#[test]
fn multi_row_results_stack_avps_and_sql_errors_are_negative() {
    let users = Users::create(false);
    let script = format!(
        r#"{MODULES}
modparam("sqlops", "db_url", "{url}")
route {{
    if ($fU == "bad") {{
        async(sql_query("SELECT nosuchcolumn FROM {table}", "$avp(c)"), done);
    }}
    async(sql_query("SELECT uid, credit FROM {table} WHERE credit IS NOT NULL ORDER BY uid", "$avp(u);$avp(c)"), done);
}}
route [done] {{
    if ($rc < 0) {{ t_reply(500, "rc $rc"); exit; }}
    t_reply(200, "$(avp(u)[0]) $(avp(c)[0]) $(avp(u)[1]) $(avp(c)[1])");
}}
"#,
        url = users.url(),
        table = users.table
    );
    let proxy = Proxy::start(&script, 1, &[]);
    let uac = Ua::new();
    let r = call(&uac, &proxy, "anyone");
    assert_eq!(r.start, "SIP/2.0 200 alice 42 bob 7");
    let r = call(&uac, &proxy, "bad");
    assert_eq!(r.start, "SIP/2.0 500 rc -1");
}

#[test]
fn parameterized_query_resists_injection() {
    let users = Users::create(true);
    let script = format!(
        r#"{MODULES}
modparam("sqlops", "db_url", "{url}")
route {{
    async(sql_query_params("SELECT credit FROM {table} WHERE uid=?", "$avp(c)", "$fU"), done);
}}
route [done] {{
    t_reply(200, "rc $rc credit $avp(c)");
}}
"#,
        url = users.url(),
        table = users.table
    );
    let proxy = Proxy::start(&script, 1, &[]);
    let uac = Ua::new();
    assert_eq!(call(&uac, &proxy, "bob").start, "SIP/2.0 200 rc 1 credit 7");
    // A From user that would be an injection in the plain form matches nothing here.
    let r = call(&uac, &proxy, "x'%20OR%20'1'='1");
    assert!(r.start.starts_with("SIP/2.0 200 rc -2"), "{}", r.start);
}

#[test]
fn a_dead_database_fails_fast_with_a_negative_rc() {
    let dead = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = dead.local_addr().expect("addr").port();
    drop(dead);
    let script = format!(
        r#"{MODULES}
modparam("avpops", "db_url", "mysql://root@127.0.0.1:{port}/test")
modparam("avpops", "connect_timeout", 300)
route {{
    async(avp_db_query("SELECT 1", "$avp(x)"), done);
}}
route [done] {{
    t_reply(503, "db rc $rc");
}}
"#
    );
    let proxy = Proxy::start(&script, 1, &[]);
    let uac = Ua::new();
    for _ in 0..3 {
        let t = Instant::now();
        let r = call(&uac, &proxy, "x");
        assert_eq!(r.start, "SIP/2.0 503 db rc -1");
        assert!(t.elapsed() < Duration::from_secs(2));
    }
    assert_in_flight_zero(&proxy);
}

#[test]
fn a_slow_query_does_not_hold_up_other_calls_on_the_same_shard() {
    let users = Users::create(false);
    let script = format!(
        r#"{MODULES}
modparam("avpops", "db_url", "{url}")
route {{
    if (is_method("OPTIONS")) {{ sl_send_reply(200, "fast"); exit; }}
    async(avp_db_query("SELECT SLEEP(0.5)", "$avp(x)"), done);
}}
route [done] {{
    t_reply(200, "slow done");
}}
"#,
        url = users.url()
    );
    let proxy = Proxy::start(&script, 1, &[]);
    let (slow, fast) = (Ua::new(), Ua::new());
    let inv = Req::new("INVITE", "sip:x@127.0.0.1:9");
    slow.send(&inv.render(slow.addr), proxy.addr);
    std::thread::sleep(Duration::from_millis(50));
    // While the query sleeps, OPTIONS are answered at once by the same single shard.
    for _ in 0..20 {
        let o = Req::new("OPTIONS", "sip:x@127.0.0.1:9");
        fast.send(&o.render(fast.addr), proxy.addr);
        fast.expect_status(&o.call_id, "OPTIONS", 200);
    }
    // ...and the INVITE is still waiting for its query.
    assert!(slow
        .recv_match(Duration::from_millis(10), |m| m.status() >= 200)
        .is_none());
    let (r, _) = slow
        .recv_match(Duration::from_secs(3), |m| m.status() >= 200)
        .expect("the slow call completes");
    assert_eq!(r.start, "SIP/2.0 200 slow done");
}

#[test]
fn cancel_while_suspended_still_runs_the_resume_route_once() {
    let script = format!(
        r#"{MODULES}
route {{
    if (is_method("CANCEL")) {{ exit; }}
    async(usleep(400000), done);
}}
route [done] {{
    xlog("resumed rc=$rc\n");
    if (!t_relay()) {{ xlog("relay after cancel failed\n"); }}
}}
"#
    );
    let proxy = Proxy::start(&script, 1, &[]);
    let uac = Ua::new();
    let inv = Req::new("INVITE", "sip:x@127.0.0.1:9");
    uac.send(&inv.render(uac.addr), proxy.addr);
    uac.expect_status(&inv.call_id, "INVITE", 100);
    let mut cancel = Req::new("CANCEL", inv.ruri.clone());
    cancel.call_id = inv.call_id.clone();
    cancel.from_tag = inv.from_tag.clone();
    cancel.branch = inv.branch.clone();
    uac.send(&cancel.render(uac.addr), proxy.addr);
    uac.expect_status(&inv.call_id, "CANCEL", 200);
    uac.expect_status(&inv.call_id, "INVITE", 487);
    assert!(proxy.saw_log("resumed rc=1", Duration::from_secs(2)));
    assert!(proxy.saw_log("relay after cancel failed", Duration::from_secs(1)));
    assert_in_flight_zero(&proxy);
}

/// A one-connection-at-a-time HTTP server answering each request with `body` after
/// `delay`.
fn http_server(body: &'static str, delay: Duration) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind http");
    let port = l.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for conn in l.incoming().take(64) {
            let Ok(mut c) = conn else { continue };
            let mut buf = [0u8; 4096];
            let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = c.read(&mut buf);
            std::thread::sleep(delay);
            let resp = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = c.write_all(resp.as_bytes());
        }
    });
    port
}

#[test]
fn rest_get_fills_the_body_and_a_slow_server_times_out() {
    let ok = http_server("{\"credit\":42}", Duration::ZERO);
    let slow = http_server("{}", Duration::from_secs(3));
    let script = format!(
        r#"{MODULES}
modparam("rest_client", "curl_timeout", 1)
route {{
    if ($fU == "slow") {{
        async(rest_get("http://127.0.0.1:{slow}/x", "$var(body)", "$var(ct)", "$var(code)"), done);
    }}
    async(rest_get("http://127.0.0.1:{ok}/credit", "$avp(body)", "$avp(ct)", "$avp(code)"), done);
}}
route [done] {{
    t_reply(200, "rc $rc code $avp(code) $avp(body)");
}}
"#
    );
    let proxy = Proxy::start(&script, 1, &[]);
    let uac = Ua::new();
    let r = call(&uac, &proxy, "alice");
    assert_eq!(r.start, "SIP/2.0 200 rc 1 code 200 {\"credit\":42}");
    let t = Instant::now();
    let r = call(&uac, &proxy, "slow");
    assert!(r.start.starts_with("SIP/2.0 200 rc -3"), "{}", r.start);
    assert!(t.elapsed() < Duration::from_millis(2500));
    assert_in_flight_zero(&proxy);
}

/// OpenSIPS's own example reads `rest_get`'s `$var` outputs in the resume route: they are
/// set after the request route's `$var`s are cleared, not cleared with them.
#[test]
fn var_outputs_reach_the_resume_route_and_other_vars_do_not() {
    let ok = http_server("sip:next@example.net", Duration::ZERO);
    let script = format!(
        r#"{MODULES}
route {{
    $var(before) = "set in the request route";
    async(rest_get("http://127.0.0.1:{ok}/route", $var(body), $var(ct), $var(code)), done);
}}
route [done] {{
    if ($var(before) == NULL) {{
        t_reply(200, "rc $rc code $var(code) ct $var(ct) body $var(body)");
    }} else {{
        t_reply(500, "request-route var survived: $var(before)");
    }}
}}
"#
    );
    let proxy = Proxy::start(&script, 1, &[]);
    let uac = Ua::new();
    let r = call(&uac, &proxy, "alice");
    assert_eq!(
        r.start,
        "SIP/2.0 200 rc 1 code 200 ct application/json body sip:next@example.net"
    );
    assert_in_flight_zero(&proxy);
}

/// An HTTP/1.1 server that keeps connections open (one thread per connection) and counts
/// the connections it accepted.
fn keep_alive_server(body: &'static str) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let l = TcpListener::bind("127.0.0.1:0").expect("bind http");
    let port = l.local_addr().expect("addr").port();
    let accepted = std::sync::Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        for conn in l.incoming().take(64) {
            let Ok(mut c) = conn else { continue };
            count.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || {
                let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
                let mut buf = [0u8; 4096];
                // One request per read is enough for these tests (small GETs, one at a time).
                while let Ok(n) = c.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if c.write_all(resp.as_bytes()).is_err() {
                        break;
                    }
                }
            });
        }
    });
    (port, accepted)
}

/// Keep-alive connections are reused across calls; `max_idle_connections` 0 turns reuse off.
#[test]
fn rest_connections_are_kept_alive_unless_max_idle_connections_is_0() {
    use std::sync::atomic::Ordering;
    for (idle, expected) in [(None, 1), (Some(0), 3)] {
        let (port, accepted) = keep_alive_server("ok");
        let param = idle.map_or(String::new(), |n| {
            format!("modparam(\"rest_client\", \"max_idle_connections\", {n})")
        });
        let script = format!(
            r#"{MODULES}
{param}
route {{
    async(rest_get("http://127.0.0.1:{port}/x", $var(body)), done);
}}
route [done] {{
    t_reply(200, "rc $rc $var(body)");
}}
"#
        );
        let proxy = Proxy::start(&script, 1, &[]);
        let uac = Ua::new();
        for user in ["a", "b", "c"] {
            let r = call(&uac, &proxy, user);
            assert_eq!(r.start, "SIP/2.0 200 rc 1 ok");
        }
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            expected,
            "max_idle_connections {idle:?}"
        );
    }
}

#[test]
fn exec_output_and_a_hung_command_is_killed() {
    let script = format!(
        r#"{MODULES}
modparam("exec", "time_to_kill", 1)
route {{
    if ($fU == "hang") {{
        async(exec("sleep 30"), done);
    }}
    async(exec("tr a-z A-Z", "hello $fU", "$avp(out)"), done);
}}
route [done] {{
    t_reply(200, "rc $rc out $avp(out)");
}}
"#
    );
    let proxy = Proxy::start(&script, 1, &[]);
    let uac = Ua::new();
    let r = call(&uac, &proxy, "bob");
    assert_eq!(r.start, "SIP/2.0 200 rc 1 out HELLO BOB");
    let t = Instant::now();
    let r = call(&uac, &proxy, "hang");
    assert!(r.start.starts_with("SIP/2.0 200 rc -2"), "{}", r.start);
    assert!(t.elapsed() < Duration::from_secs(4));
    assert_in_flight_zero(&proxy);
}

#[test]
fn exec_exports_the_env_avp_as_osips_exec_variables() {
    let script = format!(
        r#"{MODULES}
route {{
    $avp(env) = "first";
    $avp(env) = "second";
    async(exec("printenv OSIPS_EXEC_0 OSIPS_EXEC_1 | tr '\n' ' '", , "$avp(out)", , "$avp(env)"), done);
}}
route [done] {{
    t_reply(200, "rc $rc out $avp(out)");
}}
"#
    );
    let proxy = Proxy::start(&script, 1, &[]);
    let uac = Ua::new();
    let r = call(&uac, &proxy, "x");
    assert_eq!(r.start.trim_end(), "SIP/2.0 200 rc 1 out second first");
    assert_in_flight_zero(&proxy);
}

#[test]
fn launch_runs_detached_and_reports() {
    let script = format!(
        r#"{MODULES}
route {{
    launch(exec("echo launched"), report);
    sl_send_reply(202, "launched");
}}
route [report] {{
    xlog("report rc=$rc\n");
}}
"#
    );
    let proxy = Proxy::start(&script, 1, &[]);
    let uac = Ua::new();
    let r = call(&uac, &proxy, "x");
    assert_eq!(r.status(), 202);
    assert!(proxy.saw_log("report rc=1", Duration::from_secs(3)));
    assert_in_flight_zero(&proxy);
}

#[test]
fn async_in_a_failure_route_resumes_and_can_reroute() {
    let (uac, uas1, uas2) = (Ua::new(), Ua::new(), Ua::new());
    let script = format!(
        r#"{MODULES}
route {{
    t_on_failure("missed");
    t_relay();
}}
failure_route[missed] {{
    async(usleep(100000), retry);
}}
route[retry] {{
    xlog("failure resume rc=$rc status=$rs\n");
    $ru = "sip:bob@{uas2}";
    t_relay();
}}
"#,
        uas2 = uas2.addr
    );
    let proxy = Proxy::start(&script, 1, &[]);
    let inv = Req::new("INVITE", format!("sip:bob@{}", uas1.addr));
    uac.send(&inv.render(uac.addr), proxy.addr);
    let (i1, f1) = uas1.expect_request(&inv.call_id, "INVITE");
    uas1.send(&common::reply(&i1, 486, "Busy Here", Some("b1"), None), f1);
    let (i2, f2) = uas2.expect_request(&inv.call_id, "INVITE");
    uas2.send(
        &common::reply(&i2, 200, "OK", Some("b2"), Some(uas2.addr)),
        f2,
    );
    let ok = uac.expect_status(&inv.call_id, "INVITE", 200);
    assert_eq!(ok.to_tag(), Some("b2"));
    assert!(proxy.saw_log("failure resume rc=1 status=486", Duration::from_secs(1)));
    assert_in_flight_zero(&proxy);
}

#[test]
fn du_and_appended_branches_survive_a_suspension() {
    let (uac, uas1, uas2) = (Ua::new(), Ua::new(), Ua::new());
    let script = format!(
        r#"{MODULES}
route {{
    $du = "sip:{uas1}";
    append_branch("sip:carol@{uas2}");
    async(usleep(50000), go);
}}
route[go] {{
    t_relay();
}}
"#,
        uas1 = uas1.addr,
        uas2 = uas2.addr
    );
    let proxy = Proxy::start(&script, 1, &[]);
    // The Request-URI points nowhere; $du and the appended branch carry the call.
    let inv = Req::new("INVITE", "sip:bob@127.0.0.1:9");
    uac.send(&inv.render(uac.addr), proxy.addr);
    let (i1, _) = uas1.expect_request(&inv.call_id, "INVITE");
    assert_eq!(
        i1.ruri(),
        "sip:bob@127.0.0.1:9",
        "$du changes the destination only"
    );
    let (i2, _) = uas2.expect_request(&inv.call_id, "INVITE");
    assert_eq!(i2.ruri(), format!("sip:carol@{}", uas2.addr));
    assert_in_flight_zero(&proxy);
}

#[test]
fn slow_http_exec_and_sleep_do_not_hold_up_other_calls_on_the_same_shard() {
    let slow_http = http_server("{}", Duration::from_millis(600));
    let script = format!(
        r#"{MODULES}
route {{
    if (is_method("OPTIONS")) {{ sl_send_reply(200, "fast"); exit; }}
    if ($fU == "http") {{ async(rest_get("http://127.0.0.1:{slow_http}/", "$avp(b)"), done); }}
    if ($fU == "exec") {{ async(exec("sleep 0.6"), done); }}
    async(usleep(600000), done);
}}
route [done] {{
    t_reply(200, "slow $fU rc $rc");
}}
"#
    );
    let proxy = Proxy::start(&script, 1, &[]);
    let fast = Ua::new();
    for kind in ["http", "exec", "sleep"] {
        let slow = Ua::new();
        let inv = Req::new("INVITE", "sip:x@127.0.0.1:9");
        let text = inv
            .render(slow.addr)
            .replace("sip:alice@", &format!("sip:{kind}@"));
        slow.send(&text, proxy.addr);
        std::thread::sleep(Duration::from_millis(50));
        // While the operation runs, the single shard answers other requests at once.
        for _ in 0..20 {
            let o = Req::new("OPTIONS", "sip:x@127.0.0.1:9");
            fast.send(&o.render(fast.addr), proxy.addr);
            fast.expect_status(&o.call_id, "OPTIONS", 200);
        }
        assert!(
            slow.recv_match(Duration::from_millis(10), |m| m.status() >= 200)
                .is_none(),
            "{kind}: the slow call must still be pending"
        );
        let (r, _) = slow
            .recv_match(Duration::from_secs(3), |m| m.status() >= 200)
            .expect("the slow call completes");
        assert_eq!(r.start, format!("SIP/2.0 200 slow {kind} rc 1"), "{kind}");
    }
    assert_in_flight_zero(&proxy);
}

/// Every message `ua` receives within `within` that matches `pred`.
fn collect(
    ua: &Ua,
    within: Duration,
    pred: impl Fn(&common::SipMsg) -> bool,
) -> Vec<common::SipMsg> {
    let deadline = Instant::now() + within;
    let mut out = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match ua.recv(left) {
            Some((m, _)) if pred(&m) => out.push(m),
            Some(_) => {}
            None => break,
        }
    }
    out
}

/// INVITE from `uac` through `proxy` to `uas`; returns the request as the UAS got it and
/// where it came from (the proxy's own socket).
fn invite_through(
    uac: &Ua,
    uas: &Ua,
    proxy: &Proxy,
) -> (Req<'static>, common::SipMsg, std::net::SocketAddr) {
    let inv = Req::new("INVITE", format!("sip:bob@{}", uas.addr));
    uac.send(&inv.render(uac.addr), proxy.addr);
    let (i, from) = uas.expect_request(&inv.call_id, "INVITE");
    (inv, i, from)
}

#[test]
fn async_in_an_onreply_route_holds_the_reply_until_its_resume_route_ran() {
    let (uac, uas) = (Ua::new(), Ua::new());
    let script = format!(
        r#"{MODULES}
route {{
    t_on_reply("armed");
    t_relay();
}}
onreply_route {{
    if ($rs == 200) {{
        $avp(step) = "held";
        append_hf("X-Before: 1\r\n");
        async(usleep(400000), back);
    }}
}}
route[back] {{
    xlog("reply resume rc=$rc rs=$rs rr=$rr\n");
    $avp(step) = "resumed";
    append_hf("X-Resumed: $rc\r\n");
}}
onreply_route[armed] {{
    if ($rs == 200) {{ append_hf("X-Armed: $avp(step)\r\n"); }}
}}
"#
    );
    let proxy = Proxy::start(&script, 1, &[]);
    let (inv, i, from) = invite_through(&uac, &uas, &proxy);
    // A provisional is not held (its route does not suspend).
    uas.send(&common::reply(&i, 180, "Ringing", Some("u1"), None), from);
    uac.expect_status(&inv.call_id, "INVITE", 180);
    let ok = common::reply(&i, 200, "OK", Some("u1"), Some(uas.addr));
    uas.send(&ok, from);
    // The UAS retransmits its 200 while it is held: absorbed, not relayed again.
    std::thread::sleep(Duration::from_millis(100));
    uas.send(&ok, from);
    std::thread::sleep(Duration::from_millis(100));
    uas.send(&ok, from);
    let early = collect(&uac, Duration::from_millis(100), |m| m.status() == 200);
    assert!(early.is_empty(), "the 200 went out while held: {early:?}");
    let oks = collect(&uac, Duration::from_millis(1200), |m| {
        m.call_id() == inv.call_id && m.status() == 200
    });
    assert_eq!(
        oks.len(),
        1,
        "the UAC must get the 200 exactly once: {oks:?}"
    );
    let ok = &oks[0];
    assert_eq!(ok.header("X-Before"), Some("1"), "{}", ok.raw);
    assert_eq!(ok.header("X-Resumed"), Some("1"), "{}", ok.raw);
    // The armed onreply route ran after the resume route, as if the global one ended.
    assert_eq!(ok.header("X-Armed"), Some("resumed"), "{}", ok.raw);
    assert_eq!(ok.to_tag(), Some("u1"));
    assert!(proxy.saw_log("reply resume rc=1 rs=200 rr=OK", Duration::from_secs(1)));
    assert_eq!(
        proxy.wait_metric(
            "ringsip_held_reply_retransmissions",
            Duration::from_secs(2),
            |v| v == 2
        ),
        Some(2)
    );
    assert_in_flight_zero(&proxy);
}

fn db_lookup_in_an_onreply_route(pg: bool) {
    let users = Users::create(pg);
    let (uac, uas) = (Ua::new(), Ua::new());
    let script = format!(
        r#"{MODULES}
modparam("avpops", "db_url", "{url}")
route {{
    t_on_reply("r");
    t_relay();
}}
onreply_route[r] {{
    if ($rs == 200) {{
        async(avp_db_query("SELECT credit FROM {table} WHERE uid='alice'", "$avp(credit)"), back);
    }}
}}
route[back] {{
    if ($rc < 0) {{ append_hf("X-Credit-Error: $rc\r\n"); exit; }}
    append_hf("X-Credit: $avp(credit)\r\n");
}}
"#,
        url = users.url(),
        table = users.table
    );
    let proxy = Proxy::start(&script, 1, &[]);
    let (inv, i, from) = invite_through(&uac, &uas, &proxy);
    uas.send(
        &common::reply(&i, 200, "OK", Some("u2"), Some(uas.addr)),
        from,
    );
    let oks = collect(&uac, Duration::from_millis(2500), |m| {
        m.call_id() == inv.call_id && m.status() == 200
    });
    assert_eq!(oks.len(), 1, "exactly one 200: {oks:?}");
    assert_eq!(oks[0].header("X-Credit"), Some("42"), "{}", oks[0].raw);
    assert_eq!(oks[0].header("X-Credit-Error"), None);
    assert_in_flight_zero(&proxy);
}

#[test]
fn a_mariadb_lookup_in_an_onreply_route_adds_a_header_to_the_relayed_reply() {
    db_lookup_in_an_onreply_route(false);
}

#[test]
fn a_postgres_lookup_in_an_onreply_route_adds_a_header_to_the_relayed_reply() {
    db_lookup_in_an_onreply_route(true);
}

#[test]
fn a_resume_route_may_drop_a_held_provisional_and_later_replies_wait_behind_it() {
    let (uac, uas) = (Ua::new(), Ua::new());
    let script = format!(
        r#"{MODULES}
route {{
    t_on_reply("r");
    t_relay();
}}
onreply_route[r] {{
    if ($rs == 180) {{ async(usleep(300000), gone); }}
}}
route[gone] {{
    xlog("dropping held $rs\n");
    drop;
}}
"#
    );
    let proxy = Proxy::start(&script, 1, &[]);
    let (inv, i, from) = invite_through(&uac, &uas, &proxy);
    let t = Instant::now();
    uas.send(&common::reply(&i, 180, "Ringing", Some("u3"), None), from);
    uas.send(
        &common::reply(&i, 183, "Session Progress", Some("u3"), None),
        from,
    );
    // The 183 waits behind the held 180, which its resume route drops.
    let (first, _) = uac
        .recv_match(Duration::from_secs(2), |m| {
            m.call_id() == inv.call_id && (180..200).contains(&m.status())
        })
        .expect("a provisional");
    assert_eq!(first.status(), 183, "{}", first.raw);
    assert!(
        t.elapsed() >= Duration::from_millis(250),
        "the 183 overtook the held 180"
    );
    assert!(proxy.saw_log("dropping held 180", Duration::from_secs(1)));
    uas.send(
        &common::reply(&i, 200, "OK", Some("u3"), Some(uas.addr)),
        from,
    );
    let rest = collect(&uac, Duration::from_millis(700), |m| {
        m.call_id() == inv.call_id && m.status() >= 180
    });
    let statuses: Vec<u16> = rest.iter().map(common::SipMsg::status).collect();
    assert_eq!(statuses, vec![200], "the dropped 180 never reaches the UAC");
    assert_in_flight_zero(&proxy);
}

#[test]
fn cancel_while_a_reply_is_held_resumes_once_and_cancels_the_branch_after() {
    let (uac, uas) = (Ua::new(), Ua::new());
    let script = format!(
        r#"{MODULES}
route {{
    t_on_reply("r");
    t_relay();
}}
onreply_route[r] {{
    if ($rs == 180) {{ async(usleep(400000), back); }}
}}
route[back] {{
    xlog("held 180 resumed rc=$rc\n");
}}
"#
    );
    let proxy = Proxy::start(&script, 1, &[]);
    let (inv, i, from) = invite_through(&uac, &uas, &proxy);
    uas.send(&common::reply(&i, 180, "Ringing", Some("u4"), None), from);
    std::thread::sleep(Duration::from_millis(50));
    let mut cancel = Req::new("CANCEL", inv.ruri.clone());
    cancel.call_id = inv.call_id.clone();
    cancel.from_tag = inv.from_tag.clone();
    cancel.branch = inv.branch.clone();
    uac.send(&cancel.render(uac.addr), proxy.addr);
    uac.expect_status(&inv.call_id, "CANCEL", 200);
    // The transaction has not seen a provisional yet (it is held): RFC 3261 §9.1, no
    // CANCEL downstream before one.
    assert!(
        uas.recv_match(Duration::from_millis(200), |m| m.method() == "CANCEL")
            .is_none(),
        "CANCEL sent before the branch's provisional was let through"
    );
    // Released, the 180 reaches the transaction, which now cancels the branch (and, the
    // call being cancelled, does not pass the 180 up: as for any 180 after a CANCEL).
    let (c, cfrom) = uas.expect_request(&inv.call_id, "CANCEL");
    uas.send(&common::reply(&c, 200, "OK", Some("u4"), None), cfrom);
    uas.send(
        &common::reply(&i, 487, "Request Terminated", Some("u4"), None),
        from,
    );
    let got = collect(&uac, Duration::from_millis(800), |m| {
        m.call_id() == inv.call_id && m.cseq_method() == "INVITE" && m.status() >= 180
    });
    // (The 487 may come twice: the UAC does not ACK it, so it is retransmitted.)
    let statuses: Vec<u16> = got.iter().map(common::SipMsg::status).collect();
    assert!(
        !statuses.is_empty() && statuses.iter().all(|s| *s == 487),
        "{statuses:?}"
    );
    assert!(proxy.saw_log("held 180 resumed rc=1", Duration::from_secs(1)));
    assert!(!proxy.saw_log("held 180 resumed", Duration::from_millis(300)));
    assert_in_flight_zero(&proxy);
}

#[test]
fn a_branch_timing_out_while_its_reply_is_held_resumes_once() {
    let (uac, uas) = (Ua::new(), Ua::new());
    let script = format!(
        r#"{MODULES}
modparam("tm", "fr_timeout", 1)
route {{
    t_on_reply("r");
    t_relay();
}}
onreply_route[r] {{
    if ($rs == 180) {{ async(usleep(2000000), back); }}
}}
route[back] {{
    xlog("late 180 resumed rc=$rc\n");
}}
"#
    );
    let proxy = Proxy::start(&script, 1, &[]);
    let (inv, i, from) = invite_through(&uac, &uas, &proxy);
    uas.send(&common::reply(&i, 180, "Ringing", Some("u5"), None), from);
    // fr_timer: the transaction saw no reply on the branch (it is held) and gives up.
    let t = Instant::now();
    let r = uac.expect_status(&inv.call_id, "INVITE", 408);
    assert!(t.elapsed() < Duration::from_millis(1800), "{}", r.raw);
    assert!(proxy.saw_log("late 180 resumed rc=1", Duration::from_secs(3)));
    // The late provisional is absorbed by the completed transaction.
    let late = collect(&uac, Duration::from_millis(500), |m| m.status() == 180);
    assert!(late.is_empty(), "a 180 after the final: {late:?}");
    assert!(!proxy.saw_log("late 180 resumed", Duration::from_millis(200)));
    assert_in_flight_zero(&proxy);
}

#[test]
fn a_reply_held_past_the_end_of_its_transaction_resumes_once_and_goes_on_statelessly() {
    let (uac, uas) = (Ua::new(), Ua::new());
    let script = format!(
        r#"{MODULES}
modparam("tm", "fr_timeout", 1)
modparam("tm", "T1_timer", 20)
modparam("tm", "wt_timer", 1)
route {{
    t_on_reply("r");
    t_relay();
}}
onreply_route[r] {{
    if ($rs == 200) {{ async(usleep(3000000), back); }}
}}
route[back] {{
    xlog("orphan reply resumed rc=$rc rs=$rs\n");
    append_hf("X-Late: yes\r\n");
}}
"#
    );
    let proxy = Proxy::start(&script, 1, &[]);
    let msg = Req::new("MESSAGE", format!("sip:bob@{}", uas.addr));
    uac.send(&msg.render(uac.addr), proxy.addr);
    let (m, from) = uas.expect_request(&msg.call_id, "MESSAGE");
    uas.send(&common::reply(&m, 200, "OK", Some("u6"), None), from);
    // fr_timer gives up on the (held) branch: 408; Timer J (wt_timer, 1 s) then ends it.
    uac.expect_status(&msg.call_id, "MESSAGE", 408);
    assert!(proxy.saw_log("orphan reply resumed rc=1 rs=200", Duration::from_secs(4)));
    // With its transaction gone, the reply goes on as any late reply would: by its Via.
    let late = uac.expect_status(&msg.call_id, "MESSAGE", 200);
    assert_eq!(late.header("X-Late"), Some("yes"), "{}", late.raw);
    assert_eq!(
        proxy.wait_metric(
            "ringsip_async_orphan_resumes",
            Duration::from_secs(2),
            |v| v == 1
        ),
        Some(1)
    );
    assert_in_flight_zero(&proxy);
}

#[test]
fn a_resume_route_of_an_ended_transaction_may_suspend_again() {
    let script = format!(
        r#"{MODULES}
modparam("tm", "T1_timer", 20)
modparam("tm", "wt_timer", 1)
route {{
    t_reply(200, "early");
    async(usleep(1800000), first);
}}
route[first] {{
    xlog("orphan first rc=$rc\n");
    async(usleep(100000), second);
}}
route[second] {{
    xlog("orphan second rc=$rc\n");
}}
"#
    );
    let proxy = Proxy::start(&script, 1, &[]);
    let uac = Ua::new();
    let msg = Req::new("MESSAGE", "sip:x@127.0.0.1:9");
    uac.send(&msg.render(uac.addr), proxy.addr);
    uac.expect_status(&msg.call_id, "MESSAGE", 200);
    // Timer J (64*T1 = 1.28 s) ends the transaction before the first operation does.
    assert!(proxy.saw_log("orphan first rc=1", Duration::from_secs(3)));
    assert!(proxy.saw_log("orphan second rc=1", Duration::from_secs(1)));
    assert_eq!(
        proxy.wait_metric(
            "ringsip_async_orphan_resumes",
            Duration::from_secs(2),
            |v| v == 2
        ),
        Some(2)
    );
    assert_in_flight_zero(&proxy);
}
