//! Test harness shared by the integration tests: a SIP user agent over plain blocking UDP
//! sockets (deliberately independent of ringsip's own parser, so it is an outside oracle),
//! and a way to start the real `ringsip` binary on a script.
//!
//! Everything here is test code: panics are the failure reports.

#![allow(dead_code)]

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

static SEQ: AtomicU64 = AtomicU64::new(1);

/// A fresh token for Call-IDs, tags and branches, unique within this test process.
pub fn token(prefix: &str) -> String {
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{}x{n}", std::process::id())
}

/// A received SIP message, parsed just enough for assertions.
#[derive(Clone, Debug)]
pub struct SipMsg {
    pub raw: String,
    pub start: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

fn canonical(name: &str) -> String {
    let lower = name.trim().to_ascii_lowercase();
    let long = match lower.as_str() {
        "v" => "via",
        "f" => "from",
        "t" => "to",
        "i" => "call-id",
        "m" => "contact",
        "l" => "content-length",
        "c" => "content-type",
        "k" => "supported",
        "s" => "subject",
        "e" => "content-encoding",
        "r" => "refer-to",
        _ => return lower,
    };
    long.to_string()
}

impl SipMsg {
    pub fn parse(bytes: &[u8]) -> Option<SipMsg> {
        let raw = String::from_utf8(bytes.to_vec()).ok()?;
        let (head, body) = raw.split_once("\r\n\r\n")?;
        let mut lines = head.split("\r\n");
        let start = lines.next()?.to_string();
        let mut headers: Vec<(String, String)> = Vec::new();
        for line in lines {
            if line.starts_with(' ') || line.starts_with('\t') {
                if let Some(last) = headers.last_mut() {
                    last.1.push(' ');
                    last.1.push_str(line.trim());
                }
                continue;
            }
            let (n, v) = line.split_once(':')?;
            // Comma-separated Via/Route/Record-Route values are split for convenience.
            let name = canonical(n);
            if matches!(name.as_str(), "via" | "route" | "record-route") {
                for part in split_commas(v) {
                    headers.push((name.clone(), part.trim().to_string()));
                }
            } else {
                headers.push((name, v.trim().to_string()));
            }
        }
        Some(SipMsg {
            start,
            headers,
            body: body.to_string(),
            raw,
        })
    }

    pub fn is_request(&self) -> bool {
        !self.start.starts_with("SIP/2.0 ")
    }

    pub fn method(&self) -> &str {
        if self.is_request() {
            self.start.split(' ').next().unwrap_or("")
        } else {
            self.cseq_method()
        }
    }

    pub fn status(&self) -> u16 {
        if self.is_request() {
            return 0;
        }
        self.start
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }

    pub fn ruri(&self) -> &str {
        self.start.split(' ').nth(1).unwrap_or("")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        let name = canonical(name);
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn header_all(&self, name: &str) -> Vec<&str> {
        let name = canonical(name);
        self.headers
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn cseq_method(&self) -> &str {
        self.header("cseq")
            .and_then(|c| c.split_whitespace().nth(1))
            .unwrap_or("")
    }

    pub fn call_id(&self) -> &str {
        self.header("call-id").unwrap_or("")
    }

    pub fn to_tag(&self) -> Option<&str> {
        param(self.header("to")?, "tag")
    }

    pub fn top_branch(&self) -> Option<&str> {
        param(self.header("via")?, "branch")
    }
}

fn split_commas(v: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut quoted, mut from) = (0i32, false, 0usize);
    for (i, ch) in v.char_indices() {
        match ch {
            '"' => quoted = !quoted,
            '<' if !quoted => depth += 1,
            '>' if !quoted => depth -= 1,
            ',' if !quoted && depth == 0 => {
                out.push(&v[from..i]);
                from = i + 1;
            }
            _ => {}
        }
    }
    out.push(&v[from..]);
    out
}

/// The value of `;name=value` in a header value (outside `<>`).
pub fn param<'a>(value: &'a str, name: &str) -> Option<&'a str> {
    let after = match value.rfind('>') {
        Some(i) => &value[i..],
        None => value,
    };
    after.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// A user agent on a blocking UDP socket bound to 127.0.0.1.
pub struct Ua {
    pub sock: UdpSocket,
    pub addr: SocketAddr,
}

impl Ua {
    pub fn new() -> Ua {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind UA socket");
        let addr = sock.local_addr().expect("local addr");
        Ua { sock, addr }
    }

    pub fn send(&self, msg: &str, to: SocketAddr) {
        self.sock.send_to(msg.as_bytes(), to).expect("send");
    }

    /// The next message within `within`, or None.
    pub fn recv(&self, within: Duration) -> Option<(SipMsg, SocketAddr)> {
        let deadline = Instant::now() + within;
        let mut buf = vec![0u8; 65536];
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            if left.is_zero() {
                return None;
            }
            self.sock.set_read_timeout(Some(left)).ok()?;
            match self.sock.recv_from(&mut buf) {
                Ok((n, from)) => {
                    if let Some(m) = SipMsg::parse(&buf[..n]) {
                        return Some((m, from));
                    }
                }
                Err(_) => return None,
            }
        }
    }

    /// The first message matching `pred` within `within`, discarding the others.
    pub fn recv_match(
        &self,
        within: Duration,
        pred: impl Fn(&SipMsg) -> bool,
    ) -> Option<(SipMsg, SocketAddr)> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let (m, from) = self.recv(left)?;
            if pred(&m) {
                return Some((m, from));
            }
        }
    }

    /// The first response with `status` for `call_id`/`method`.
    pub fn expect_status(&self, call_id: &str, method: &str, status: u16) -> SipMsg {
        match self.recv_match(Duration::from_secs(5), |m| {
            !m.is_request()
                && m.call_id() == call_id
                && m.cseq_method() == method
                && m.status() == status
        }) {
            Some((m, _)) => m,
            None => panic!("no {status} to {method} for {call_id} at {}", self.addr),
        }
    }

    /// The first request with `method` for `call_id`.
    pub fn expect_request(&self, call_id: &str, method: &str) -> (SipMsg, SocketAddr) {
        self.recv_match(Duration::from_secs(5), |m| {
            m.is_request() && m.call_id() == call_id && m.method() == method
        })
        .unwrap_or_else(|| panic!("no {method} for {call_id} at {}", self.addr))
    }
}

/// Builds a request sent by `ua` to `ruri`.
pub struct Req<'a> {
    pub method: &'a str,
    pub ruri: String,
    pub call_id: String,
    pub from_tag: String,
    pub to_tag: Option<String>,
    pub cseq: u32,
    pub branch: String,
    pub max_forwards: u32,
    pub routes: Vec<String>,
    pub extra: Vec<String>,
    pub body: String,
}

impl<'a> Req<'a> {
    pub fn new(method: &'a str, ruri: impl Into<String>) -> Req<'a> {
        Req {
            method,
            ruri: ruri.into(),
            call_id: token("call"),
            from_tag: token("ft"),
            to_tag: None,
            cseq: 1,
            branch: format!("z9hG4bK{}", token("b")),
            max_forwards: 70,
            routes: Vec::new(),
            extra: Vec::new(),
            body: String::new(),
        }
    }

    pub fn render(&self, from: SocketAddr) -> String {
        let mut s = String::new();
        let _ = write!(s, "{} {} SIP/2.0\r\n", self.method, self.ruri);
        let _ = write!(
            s,
            "Via: SIP/2.0/UDP {from};branch={};rport\r\n",
            self.branch
        );
        let _ = write!(s, "Max-Forwards: {}\r\n", self.max_forwards);
        for r in &self.routes {
            let _ = write!(s, "Route: {r}\r\n");
        }
        let _ = write!(s, "From: <sip:alice@{from}>;tag={}\r\n", self.from_tag);
        match &self.to_tag {
            Some(t) => {
                let _ = write!(s, "To: <{}>;tag={t}\r\n", self.ruri);
            }
            None => {
                let _ = write!(s, "To: <{}>\r\n", self.ruri);
            }
        }
        let _ = write!(s, "Call-ID: {}\r\n", self.call_id);
        let _ = write!(s, "CSeq: {} {}\r\n", self.cseq, self.method);
        let _ = write!(s, "Contact: <sip:alice@{from}>\r\n");
        for e in &self.extra {
            let _ = write!(s, "{e}\r\n");
        }
        let _ = write!(
            s,
            "Content-Length: {}\r\n\r\n{}",
            self.body.len(),
            self.body
        );
        s
    }
}

/// A response to `req` as a UAS would send it (RFC 3261 §8.2.6): Vias, From, To (with
/// `to_tag` when given), Call-ID, CSeq copied; Record-Route copied for 18x/2xx.
pub fn reply(
    req: &SipMsg,
    code: u16,
    reason: &str,
    to_tag: Option<&str>,
    contact: Option<SocketAddr>,
) -> String {
    let mut s = format!("SIP/2.0 {code} {reason}\r\n");
    for v in req.header_all("via") {
        let _ = write!(s, "Via: {v}\r\n");
    }
    if (101..300).contains(&code) {
        for rr in req.header_all("record-route") {
            let _ = write!(s, "Record-Route: {rr}\r\n");
        }
    }
    let _ = write!(s, "From: {}\r\n", req.header("from").unwrap_or(""));
    let to = req.header("to").unwrap_or("");
    match to_tag {
        Some(t) if param(to, "tag").is_none() => {
            let _ = write!(s, "To: {to};tag={t}\r\n");
        }
        _ => {
            let _ = write!(s, "To: {to}\r\n");
        }
    }
    let _ = write!(s, "Call-ID: {}\r\n", req.call_id());
    let _ = write!(s, "CSeq: {}\r\n", req.header("cseq").unwrap_or(""));
    if let Some(c) = contact {
        let _ = write!(s, "Contact: <sip:bob@{c}>\r\n");
    }
    s.push_str("Content-Length: 0\r\n\r\n");
    s
}

/// A free UDP port on 127.0.0.1 (bound and released; good enough for tests).
pub fn free_udp_port() -> u16 {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
    s.local_addr().expect("addr").port()
}

/// A running `ringsip` binary; killed on drop.
pub struct Proxy {
    pub child: Child,
    pub addr: SocketAddr,
    /// The management endpoint (`/metrics`).
    pub mgmt: SocketAddr,
    pub stderr: mpsc::Receiver<String>,
    _dir: TempDir,
}

/// A temporary directory removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(token(&format!("ringsip-{tag}-")));
        std::fs::create_dir_all(&p).expect("mkdir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Proxy {
    /// Starts ringsip on `script` (the text `{{PORT}}` is replaced by a free port) with
    /// `cores` shards, and waits for its "ready" log line.
    pub fn start(script: &str, cores: usize, extra_args: &[&str]) -> Proxy {
        Proxy::start_with_env(script, cores, extra_args, &[])
    }

    /// As [`Proxy::start`], with `env` added to the proxy's environment (e.g.
    /// `RINGSIP_HOSTS`, `RINGSIP_RESOLV_CONF`, `RINGSIP_DNS_PORT`).
    pub fn start_with_env(
        script: &str,
        cores: usize,
        extra_args: &[&str],
        env: &[(&str, &std::ffi::OsStr)],
    ) -> Proxy {
        let port = free_udp_port();
        let dir = TempDir::new("proxy");
        let path = dir.0.join("ringsip.cfg");
        std::fs::write(&path, script.replace("{{PORT}}", &port.to_string())).expect("write script");
        let mgmt = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr")
        };
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ringsip"));
        cmd.arg("-f")
            .arg(&path)
            .arg("--cores")
            .arg(cores.to_string())
            .arg("--mgmt")
            .arg(mgmt.to_string());
        cmd.args(extra_args);
        cmd.envs(env.iter().copied());
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn ringsip");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[ringsip] {line}");
                if tx.send(line).is_err() {
                    // Keep draining so the proxy never blocks on a full pipe.
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.contains("ringsip ready") => break,
                Ok(_) => {}
                Err(_) => {
                    let _ = child.kill();
                    panic!("ringsip did not become ready");
                }
            }
        }
        Proxy {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            mgmt,
            stderr: rx,
            _dir: dir,
        }
    }

    /// The value of a metric from `/metrics` (summed over its label sets).
    pub fn metric(&self, name: &str) -> Option<u64> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(self.mgmt).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .ok()?;
        let mut body = String::new();
        s.read_to_string(&mut body).ok()?;
        let mut found = None;
        for line in body
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let Some((key, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let metric = key.split('{').next().unwrap_or("");
            if metric == name {
                *found.get_or_insert(0) += value.trim().parse::<u64>().ok()?;
            }
        }
        found
    }

    /// Waits (up to `within`) until `metric(name)` satisfies `pred`; its last value.
    pub fn wait_metric(
        &self,
        name: &str,
        within: Duration,
        pred: impl Fn(u64) -> bool,
    ) -> Option<u64> {
        let deadline = Instant::now() + within;
        loop {
            let v = self.metric(name);
            if v.is_some_and(&pred) || Instant::now() >= deadline {
                return v;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether a log line containing `needle` arrives within `within`.
    pub fn saw_log(&self, needle: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
