//! Runs the real `ringsip-load` binary over TCP on loopback: a `uas --transport tcp`
//! process and a `run --transport tcp` process pointed straight at it (no proxy); raw
//! TCP peers that split, coalesce or mis-frame messages; a refused connect. The backend
//! is whatever `RINGSIP_BACKEND` says (run the suite once plain, once with `epoll`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_ringsip-load");

/// A free loopback TCP port (bound, read, released).
fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn options(uri: SocketAddr, call_id: &str, branch: &str) -> String {
    format!(
        "OPTIONS sip:uas@{uri};transport=tcp SIP/2.0\r\n\
         Via: SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bK{branch}\r\n\
         From: <sip:probe@x>;tag=p\r\nTo: <sip:uas@x>\r\nCall-ID: {call_id}\r\n\
         CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
}

/// Reads from `s` until `n` complete responses (each ending its header section with no
/// body) arrived or the peer closed; returns the bytes.
fn read_responses(s: &mut TcpStream, n: usize) -> Vec<u8> {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while got.windows(4).filter(|w| w == b"\r\n\r\n").count() < n {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => got.extend_from_slice(&buf[..k]),
            // A peer closing with unread data resets instead: also the end.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("reading responses: {e}"),
        }
    }
    got
}

/// A `ringsip-load uas --transport tcp` child, killed on drop.
struct UasProcess {
    child: Option<Child>,
    addr: SocketAddr,
}

impl UasProcess {
    fn start() -> UasProcess {
        let addr = free_port();
        let child = Command::new(BIN)
            .args(["uas", "--bind", &addr.to_string(), "--transport", "tcp"])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let uas = UasProcess {
            child: Some(child),
            addr,
        };
        uas.wait_ready();
        uas
    }

    /// Connects and sends OPTIONS until the UAS answers (it listens after it starts).
    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(mut s) = TcpStream::connect(self.addr) {
                s.write_all(options(self.addr, "probe", "probe").as_bytes())
                    .unwrap();
                let got = read_responses(&mut s, 1);
                assert!(
                    got.starts_with(b"SIP/2.0 200 OK\r\n"),
                    "{}",
                    String::from_utf8_lossy(&got)
                );
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("UAS on {} never answered", self.addr);
    }

    /// SIGTERM, then the exit status and what it printed on stderr.
    fn stop(mut self) -> (i32, String) {
        let child = self.child.take().unwrap();
        // SAFETY: kill(2) on our own, not yet reaped, child's pid.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        let out = child.wait_with_output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Drop for UasProcess {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn run_raw(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

/// `ringsip-load run --transport tcp ... --json -`: the JSON report and stderr.
fn run(target: SocketAddr, scenario: &str, extra: &[&str]) -> (serde_json::Value, String) {
    let target = target.to_string();
    let mut args = vec![
        "run",
        "--transport",
        "tcp",
        "--target",
        &target,
        "--scenario",
        scenario,
        "--json",
        "-",
        "--quiet",
    ];
    args.extend_from_slice(extra);
    let out = run_raw(&args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
    assert!(stderr.contains("transport tcp"), "{stderr}");
    let v = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("bad JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)));
    (v, stderr)
}

fn assert_no_connection_errors(v: &serde_json::Value) {
    let errors = v["connections"]["errors"].as_object().unwrap();
    for (k, n) in errors {
        assert_eq!(n, 0, "connection error {k}: {v}");
    }
}

#[test]
fn tcp_call_scenario_against_the_uas() {
    let uas = UasProcess::start();
    let (v, _) = run(
        uas.addr,
        "call",
        &["--calls", "300", "--rate", "300", "--connections", "4"],
    );
    assert_eq!(v["transport"], "tcp");
    assert_eq!(v["scenario"], "call");
    assert_eq!(v["calls_started"], 300);
    assert_eq!(v["calls_ok"], 300);
    assert_eq!(v["calls_failed"], 0);
    assert_eq!(v["retransmissions"], 0);
    assert_eq!(v["stray_responses"], 0);
    assert_eq!(v["unparsable"], 0);
    assert_eq!(v["connections"]["opened"], 4);
    assert_no_connection_errors(&v);
    // The UAS is another process: no in-process UAS counters.
    assert!(v["connections"].get("uas").is_none(), "{v}");
    for h in ["invite_180", "invite_200", "bye_200"] {
        assert_eq!(v["latency_us"][h]["count"], 300, "{h}");
    }
    let (code, stderr) = uas.stop();
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("INVITE 300 ACK 300 BYE 300"), "{stderr}");
    // 4 from the run, 1 from the readiness probe.
    assert!(
        stderr.contains("connections accepted 5 rejected 0 errors: refused 0"),
        "{stderr}"
    );
}

#[test]
fn tcp_options_scenario_against_the_uas() {
    let uas = UasProcess::start();
    let (v, _) = run(
        uas.addr,
        "options",
        &["--calls", "500", "--concurrency", "50"],
    );
    assert_eq!(v["calls_ok"], 500);
    assert_eq!(v["calls_failed"], 0);
    assert_eq!(v["retransmissions"], 0);
    assert_eq!(v["latency_us"]["request_200"]["count"], 500);
    // Default: 8 connections.
    assert_eq!(v["connections"]["opened"], 8);
    assert_no_connection_errors(&v);
    let (code, stderr) = uas.stop();
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("OPTIONS 501"), "{stderr}");
}

#[test]
fn tcp_in_process_uas_on_two_shards() {
    let p = free_port().to_string();
    let out = run_raw(&[
        "run",
        "--transport",
        "tcp",
        "--target",
        &p,
        "--uas",
        &p,
        "--scenario",
        "register",
        "--calls",
        "400",
        "--concurrency",
        "20",
        "--connections",
        "3",
        "--cpus",
        "0,1",
        "--json",
        "-",
        "--quiet",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["calls_ok"], 400, "{stderr}");
    assert_eq!(v["calls_failed"], 0);
    // At least one connection per shard: 3 over 2 shards.
    assert_eq!(v["connections"]["opened"], 3);
    assert_no_connection_errors(&v);
    // The in-process UAS's side, summed over its two shards.
    let uas = &v["connections"]["uas"];
    assert_eq!(uas["accepted"], 3, "{v}");
    assert_eq!(uas["rejected"], 0);
    for (k, n) in uas["errors"].as_object().unwrap() {
        assert_eq!(n, 0, "UAS connection error {k}: {v}");
    }
}

#[test]
fn connection_refused_is_a_counted_error_not_a_hang() {
    let closed = free_port();
    let started = Instant::now();
    let (v, stderr) = run(closed, "options", &["--calls", "10", "--connections", "2"]);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(v["connections"]["opened"], 0);
    assert_eq!(v["connections"]["errors"]["refused"], 2);
    assert_eq!(v["calls_started"], 0);
    assert!(stderr.contains("refused 2"), "{stderr}");
    assert!(
        stderr.contains(&format!("connection to {closed} failed")) && stderr.contains("(refused)"),
        "{stderr}"
    );
}

#[test]
fn uas_frames_split_and_coalesced_requests_and_closes_on_bad_framing() {
    let uas = UasProcess::start();
    // One request written in three pieces, with pauses so they arrive as separate reads.
    let mut s = TcpStream::connect(uas.addr).unwrap();
    s.set_nodelay(true).unwrap();
    let req = options(uas.addr, "split", "split");
    let (a, rest) = req.as_bytes().split_at(10);
    let (b, c) = rest.split_at(rest.len() - 3);
    for part in [a, b, c] {
        s.write_all(part).unwrap();
        std::thread::sleep(Duration::from_millis(50));
    }
    let got = read_responses(&mut s, 1);
    assert!(got.starts_with(b"SIP/2.0 200 OK\r\n"));
    assert!(String::from_utf8_lossy(&got).contains("Call-ID: split\r\n"));
    // Three requests in one write: three responses, in order, on the same connection.
    let three = ["c1", "c2", "c3"]
        .map(|id| options(uas.addr, id, id))
        .concat();
    s.write_all(three.as_bytes()).unwrap();
    let got = String::from_utf8(read_responses(&mut s, 3)).unwrap();
    let ids: Vec<&str> = got
        .split("\r\n")
        .filter_map(|l| l.strip_prefix("Call-ID: "))
        .collect();
    assert_eq!(ids, ["c1", "c2", "c3"]);
    // No Content-Length: the UAS closes the connection (end of stream, no answer).
    let bad = options(uas.addr, "bad", "bad").replace("Content-Length: 0\r\n", "");
    s.write_all(bad.as_bytes()).unwrap();
    assert!(read_responses(&mut s, 1).is_empty());
    // A bad Content-Length, on a second connection.
    let mut s2 = TcpStream::connect(uas.addr).unwrap();
    let bad = options(uas.addr, "bad2", "bad2").replace("Content-Length: 0", "Content-Length: x");
    s2.write_all(bad.as_bytes()).unwrap();
    assert!(read_responses(&mut s2, 1).is_empty());
    let (code, stderr) = uas.stop();
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("OPTIONS 5 "), "{stderr}");
    assert!(
        stderr.contains("missing_content_length 1, bad_content_length 1"),
        "{stderr}"
    );
}

/// A peer that answers the first request with `response` (raw bytes), then keeps the
/// connection open until the client closes it.
fn fake_peer(response: &'static [u8]) -> (SocketAddr, std::thread::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let t = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut buf = [0u8; 4096];
        let mut got = Vec::new();
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        let _ = s.write_all(response);
        // Wait for the client to close.
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
        }
    });
    (addr, t)
}

#[test]
fn uac_counts_a_response_without_content_length_and_fails_the_call() {
    let (addr, peer) = fake_peer(b"SIP/2.0 200 OK\r\nCall-ID: whatever\r\n\r\n");
    let started = Instant::now();
    let (v, stderr) = run(
        addr,
        "options",
        &[
            "--calls",
            "1",
            "--connections",
            "1",
            "--timeout-ms",
            "20000",
        ],
    );
    // Failed at once, not after the transaction time-out.
    assert!(started.elapsed() < Duration::from_secs(10), "{stderr}");
    assert_eq!(v["calls_started"], 1);
    assert_eq!(v["calls_failed"], 1);
    assert_eq!(v["failures"]["connection"], 1);
    assert_eq!(v["failures"]["timeout"], 0);
    assert_eq!(v["connections"]["opened"], 1);
    assert_eq!(v["connections"]["errors"]["missing_content_length"], 1);
    assert!(stderr.contains("lost: missing_content_length"), "{stderr}");
    peer.join().unwrap();
}

#[test]
fn transport_options_must_match_the_transport() {
    for (args, msg) in [
        (
            &["--transport", "udp", "--connections", "2"][..],
            "--connections applies to --transport tcp",
        ),
        (
            &["--transport", "tcp", "--ports", "2"],
            "--ports applies to --transport udp",
        ),
    ] {
        let mut all = vec!["run", "--target", "127.0.0.1:9", "--scenario", "options"];
        all.extend_from_slice(args);
        let out = run_raw(&all);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(msg),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
