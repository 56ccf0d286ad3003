//! Runs the real `ringsip-load` binary: a `uas` process and a `run` process pointed
//! straight at it over loopback UDP (no proxy), and checks the JSON report.

use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_ringsip-load");

/// A `ringsip-load uas` child, stopped with SIGTERM on drop.
struct UasProcess {
    child: Option<Child>,
    addr: SocketAddr,
}

impl UasProcess {
    fn start() -> UasProcess {
        // Let the kernel pick a free port, then hand it to the UAS.
        let addr = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let child = Command::new(BIN)
            .args(["uas", "--bind", &addr.to_string()])
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

    /// Sends OPTIONS until the UAS answers (it binds after the process starts).
    fn wait_ready(&self) {
        let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
        probe
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let me = probe.local_addr().unwrap();
        let req = format!(
            "OPTIONS sip:uas@{} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKprobe\r\n\
             From: <sip:probe@x>;tag=p\r\nTo: <sip:uas@x>\r\nCall-ID: probe\r\n\
             CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
            self.addr
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut buf = [0u8; 2048];
        while Instant::now() < deadline {
            probe.send_to(req.as_bytes(), self.addr).unwrap();
            if let Ok((n, _)) = probe.recv_from(&mut buf) {
                assert!(buf[..n].starts_with(b"SIP/2.0 200 OK\r\n"));
                return;
            }
        }
        panic!("UAS on {} never answered", self.addr);
    }

    /// SIGTERM, then the exit status and the counters line it printed.
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

fn run(uas: &UasProcess, scenario: &str, extra: &[&str]) -> serde_json::Value {
    let target = uas.addr.to_string();
    let out = Command::new(BIN)
        .args([
            "run",
            "--target",
            &target,
            "--scenario",
            scenario,
            "--json",
            "-",
        ])
        .args(extra)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
    // The table goes to stderr, the JSON (only) to stdout.
    assert!(stderr.contains("calls started"), "{stderr}");
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("bad JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

fn assert_shape(v: &serde_json::Value) {
    for k in [
        "scenario",
        "target",
        "offered_rate",
        "achieved_rate",
        "duration_s",
        "calls_started",
        "calls_ok",
        "calls_failed",
        "failures",
        "retransmissions",
        "latency_us",
        "cpu",
    ] {
        assert!(v.get(k).is_some(), "missing {k} in {v}");
    }
    for k in ["timeout", "status_4xx", "status_5xx", "status_6xx", "other"] {
        assert!(v["failures"][k].is_u64(), "failures.{k}");
    }
    for h in ["invite_180", "invite_200", "bye_200", "request_200"] {
        for k in ["p50", "p90", "p99", "p999", "max", "count"] {
            assert!(v["latency_us"][h][k].is_u64(), "latency_us.{h}.{k}");
        }
    }
    assert!(v["cpu"]["user_s"].is_f64() && v["cpu"]["sys_s"].is_f64());
}

#[test]
fn call_scenario_against_the_uas() {
    let uas = UasProcess::start();
    let v = run(&uas, "call", &["--calls", "200", "--rate", "200"]);
    assert_shape(&v);
    assert_eq!(v["scenario"], "call");
    assert_eq!(v["target"], uas.addr.to_string());
    assert_eq!(v["offered_rate"], 200.0);
    assert_eq!(v["calls_started"], 200);
    assert_eq!(v["calls_ok"], 200);
    assert_eq!(v["calls_failed"], 0);
    for h in ["invite_180", "invite_200", "bye_200"] {
        assert_eq!(v["latency_us"][h]["count"], 200, "{h}");
    }
    assert_eq!(v["latency_us"]["request_200"]["count"], 0);
    // 200 calls at 200/s take about one second.
    let d = v["duration_s"].as_f64().unwrap();
    assert!(d > 0.9, "duration {d}");
    let (code, stderr) = uas.stop();
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("INVITE 200 ACK 200 BYE 200"), "{stderr}");
}

#[test]
fn options_scenario_against_the_uas() {
    let uas = UasProcess::start();
    let v = run(
        &uas,
        "options",
        &["--calls", "200", "--rate", "200", "--quiet"],
    );
    assert_shape(&v);
    assert_eq!(v["scenario"], "options");
    assert_eq!(v["calls_ok"], 200);
    assert_eq!(v["calls_failed"], 0);
    assert_eq!(v["latency_us"]["request_200"]["count"], 200);
    assert_eq!(v["latency_us"]["invite_200"]["count"], 0);
}

#[test]
fn closed_loop_register_with_in_process_uas() {
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let p = port.to_string();
    let out = Command::new(BIN)
        .args([
            "run",
            "--target",
            &p,
            "--uas",
            &p,
            "--scenario",
            "register",
            "--calls",
            "500",
            "--concurrency",
            "20",
            "--json",
            "-",
            "--quiet",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["offered_rate"], 0.0);
    assert_eq!(v["calls_ok"], 500);
    assert_eq!(v["calls_failed"], 0);
}

#[test]
fn usage_and_setup_errors_exit_2() {
    let bad = Command::new(BIN)
        .args(["run", "--scenario", "call"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    // Binding an address this host does not have is a set-up error.
    let bad = Command::new(BIN)
        .args(["uas", "--bind", "192.0.2.1:5060"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("cannot bind"));
}
