//! What a run is, whatever runs its shards: the plan (how `run`'s load is split over
//! the shards), the progress board (counters each shard publishes, the once-a-second
//! line), the shards' results and the final report (table on stderr, JSON to a file or
//! stdout), SIGINT/SIGTERM handling, and the set-up errors. The shards themselves run
//! on the `cores` runtime ([`crate::ring`]).
//!
//! The only unsafe here is installing the signal handler (sigaction).

use std::io;
use std::mem::zeroed;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cli::{RunArgs, DEFAULT_SOCKETS};
use crate::engine::{Transport, Uac, UacConfig, UacStats, UasStats};
use crate::report::{self, Cpu, Report};

/// Why a run could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("{0}")]
    Usage(String),
    #[error("cannot bind {transport} {addr}: {source}")]
    Bind {
        transport: &'static str,
        addr: SocketAddr,
        source: io::Error,
    },
    #[error("cannot find the local address toward {target}: {source}")]
    Route {
        target: SocketAddr,
        source: io::Error,
    },
    #[error("--local-ip {local} and --target {target} are not of the same family")]
    Family { local: IpAddr, target: SocketAddr },
    #[error("cannot start the shards: {0}")]
    Runtime(String),
    #[error("a shard thread panicked")]
    Panicked,
    #[error("cannot write the JSON report to {path}: {source}")]
    Json { path: String, source: io::Error },
}

/// Set by SIGINT/SIGTERM.
pub(crate) static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

pub(crate) fn install_signal_handlers() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: `on_signal` is async-signal-safe (one atomic store); a zeroed sigaction
        // with only the handler set is a valid argument.
        unsafe {
            let mut sa: libc::sigaction = zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// Progress counters one shard publishes for the progress line.
#[derive(Default)]
pub(crate) struct Progress {
    started: AtomicU64,
    ok: AtomicU64,
    failed: AtomicU64,
    retrans: AtomicU64,
    /// The in-process UAS's counters as of the shard's last event (`run --uas`). A shard's
    /// UAS keeps serving other shards' calls after its own UAC is done, so the report
    /// takes these once the runtime has stopped, not the copy in [`UacShardResult`].
    uas: std::sync::Mutex<Option<UasStats>>,
}

/// What a UAC shard hands back.
pub(crate) struct UacShardResult {
    pub stats: UacStats,
    /// The in-process UAS's counters when the UAC finished (`run --uas`).
    pub uas: Option<UasStats>,
    pub started_at: Option<Instant>,
    pub finished_at: Option<Instant>,
}

impl UacShardResult {
    pub fn of(uac: Option<Uac>, uas: Option<UasStats>) -> UacShardResult {
        match uac {
            Some(u) => UacShardResult {
                started_at: u.started_at(),
                finished_at: u.finished_at(),
                stats: u.stats,
                uas,
            },
            None => UacShardResult {
                stats: UacStats::default(),
                uas,
                started_at: None,
                finished_at: None,
            },
        }
    }
}

/// One shard's share of a run, before its sockets are bound.
pub(crate) struct ShardPlan {
    pub cpu: Option<usize>,
    /// The UAC's configuration; `locals` is filled once the sockets are bound.
    pub cfg: UacConfig,
    /// How many UAC source sockets this shard binds (UDP, port 0 on `local_ip`) or
    /// connections it opens to the target (TCP, from `local_ip`).
    pub ports: usize,
    /// TCP: how long a connect may take.
    pub connect_timeout: Duration,
    pub local_ip: IpAddr,
    /// The in-process UAS address, if any (every shard binds it).
    pub uas: Option<SocketAddr>,
    /// Bind the UAS address with SO_REUSEPORT (more than one shard).
    pub reuseport: bool,
}

impl ShardPlan {
    /// A shard that only answers, on `bind` over `transport`.
    pub fn uas_only(bind: SocketAddr, transport: Transport, reuseport: bool) -> ShardPlan {
        ShardPlan {
            cpu: None,
            cfg: UacConfig {
                scenario: crate::engine::Scenario::Options,
                target: bind,
                ruri: String::new(),
                locals: Vec::new(),
                transport,
                rate: 0.0,
                concurrency: 1,
                max_calls: Some(0),
                duration: Duration::ZERO,
                hold: Duration::ZERO,
                timeout: crate::engine::DEFAULT_TIMEOUT,
                shard: 0,
                nonce: 0,
                max_in_flight: 1,
            },
            ports: 0,
            connect_timeout: Duration::ZERO,
            local_ip: bind.ip(),
            uas: Some(bind),
            reuseport,
        }
    }
}

/// Splits `run`'s load over the shards: rate, calls and concurrency are divided, source
/// ports (UDP) or connections (TCP) dealt out round-robin (at least one per shard).
pub(crate) fn plan_run(args: &RunArgs) -> Result<Vec<ShardPlan>, SetupError> {
    let transport = Transport::from(args.transport);
    let sockets = match (transport, args.ports, args.connections) {
        (Transport::Udp, _, Some(_)) => {
            return Err(SetupError::Usage(
                "--connections applies to --transport tcp (UDP: --ports)".into(),
            ))
        }
        (Transport::Tcp, Some(_), _) => {
            return Err(SetupError::Usage(
                "--ports applies to --transport udp (TCP: --connections)".into(),
            ))
        }
        (Transport::Udp, p, None) => p.unwrap_or(DEFAULT_SOCKETS),
        (Transport::Tcp, None, c) => c.unwrap_or(DEFAULT_SOCKETS),
    };
    let cpus: Vec<Option<usize>> = match &args.cpus {
        Some(l) => l.0.iter().map(|c| Some(*c)).collect(),
        None => vec![None],
    };
    let shards = cpus.len();
    let local_ip = match args.local_ip {
        Some(ip) => ip,
        None => route_source(args.target)?,
    };
    if local_ip.is_ipv4() != args.target.is_ipv4() {
        return Err(SetupError::Family {
            local: local_ip,
            target: args.target,
        });
    }
    let tparam = transport.uri_param();
    let ruri = match (&args.ruri, args.uas) {
        (Some(r), _) => r.clone(),
        (None, Some(uas)) => format!("sip:uas@{uas}{tparam}"),
        (None, None) => format!("sip:uas@{}{tparam}", args.target),
    };
    let nonce = run_nonce();
    let timeout = Duration::from_millis(args.timeout_ms);
    let hold = Duration::from_millis(args.hold_ms);
    let ports = usize::from(sockets).max(shards);
    let mut plans = Vec::with_capacity(shards);
    for (s, cpu) in cpus.iter().enumerate() {
        let share =
            |total: u64| total / shards as u64 + u64::from((s as u64) < total % shards as u64);
        let rate = args.rate / shards as f64;
        let concurrency = (share(u64::from(args.concurrency)) as u32).max(1);
        let max_in_flight = if rate > 0.0 {
            (rate * (timeout + hold).as_secs_f64() + rate).ceil() as usize
        } else {
            concurrency as usize
        }
        .clamp(1, 4_000_000);
        plans.push(ShardPlan {
            cpu: *cpu,
            cfg: UacConfig {
                scenario: args.scenario.into(),
                target: args.target,
                ruri: ruri.clone(),
                locals: Vec::new(),
                transport,
                rate,
                concurrency,
                max_calls: args.calls.map(share),
                duration: Duration::from_secs_f64(args.duration),
                hold,
                timeout,
                shard: s as u16,
                nonce,
                max_in_flight,
            },
            ports: (s..ports).step_by(shards).count(),
            connect_timeout: Duration::from_millis(args.connect_timeout_ms),
            local_ip,
            uas: args.uas,
            reuseport: shards > 1,
        });
    }
    Ok(plans)
}

/// The progress line's counters, one set per shard.
pub(crate) struct ProgressBoard {
    shards: Arc<Vec<Progress>>,
    begin: Instant,
    last_print: Instant,
    /// Calls finished (ok + failed) at the last print.
    last_done: u64,
}

impl ProgressBoard {
    pub fn new(shards: usize) -> ProgressBoard {
        let now = Instant::now();
        ProgressBoard {
            shards: Arc::new((0..shards).map(|_| Progress::default()).collect()),
            begin: now,
            last_print: now,
            last_done: 0,
        }
    }

    /// The counters the shards publish into (see [`publish`]).
    pub fn shared(&self) -> Arc<Vec<Progress>> {
        Arc::clone(&self.shards)
    }

    /// Prints the progress line if a second has passed since the last one.
    pub fn maybe_print(&mut self) {
        let interval = self.last_print.elapsed();
        if interval < Duration::from_secs(1) {
            return;
        }
        self.last_print = Instant::now();
        let sum = |f: fn(&Progress) -> &AtomicU64| -> u64 {
            self.shards
                .iter()
                .map(|p| f(p).load(Ordering::Relaxed))
                .sum()
        };
        let (ok, failed) = (sum(|p| &p.ok), sum(|p| &p.failed));
        let done = ok + failed;
        let rate = done.saturating_sub(self.last_done) as f64 / interval.as_secs_f64();
        self.last_done = done;
        eprintln!(
            "{}",
            report::progress_line(
                self.begin.elapsed(),
                rate,
                sum(|p| &p.started),
                ok,
                failed,
                sum(|p| &p.retrans),
            )
        );
    }
}

/// Publishes a UAS's counters (before the event's responses are sent, so a call that
/// completes on another shard is always already counted here).
pub(crate) fn publish_uas(board: &Arc<Vec<Progress>>, shard: usize, s: &UasStats) {
    if let Some(p) = board.get(shard) {
        if let Ok(mut slot) = p.uas.lock() {
            *slot = Some(*s);
        }
    }
}

/// The UAS counters last published by `shard`.
pub(crate) fn published_uas(board: &Arc<Vec<Progress>>, shard: usize) -> Option<UasStats> {
    board
        .get(shard)
        .and_then(|p| p.uas.lock().ok().and_then(|s| *s))
}

/// Publishes a UAC's counters for the progress line.
pub(crate) fn publish(board: &Arc<Vec<Progress>>, shard: usize, s: &UacStats) {
    if let Some(p) = board.get(shard) {
        p.started.store(s.calls_started, Ordering::Relaxed);
        p.ok.store(s.calls_ok, Ordering::Relaxed);
        p.failed.store(s.calls_failed, Ordering::Relaxed);
        p.retrans.store(s.retransmissions, Ordering::Relaxed);
    }
}

/// Merges the shards' results, prints the table, writes the JSON.
pub(crate) fn finish_run(
    args: &RunArgs,
    results: Vec<UacShardResult>,
) -> Result<Report, SetupError> {
    let mut stats = UacStats::default();
    let mut uas: Option<UasStats> = None;
    let mut first: Option<Instant> = None;
    let mut last: Option<Instant> = None;
    for r in results {
        stats.merge(&r.stats);
        if let Some(u) = &r.uas {
            uas.get_or_insert_with(UasStats::default).merge(u);
        }
        first = match (first, r.started_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        last = match (last, r.finished_at) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }
    let duration = match (first, last) {
        (Some(a), Some(b)) => b.saturating_duration_since(a),
        _ => Duration::ZERO,
    };
    let mut report = Report::new(
        crate::engine::Scenario::from(args.scenario).name(),
        &args.target.to_string(),
        Transport::from(args.transport).name(),
        args.rate,
        duration,
        &stats,
        Cpu::of_process(),
    );
    if let Some(u) = uas {
        report.set_uas(&u);
    }
    let mut table = Vec::new();
    let _ = report.write_table(&mut table);
    eprint!("{}", String::from_utf8_lossy(&table));
    if let Some(path) = &args.json {
        let json = report.to_json();
        if path.as_os_str() == "-" {
            println!("{json}");
        } else {
            std::fs::write(path, json + "\n").map_err(|source| SetupError::Json {
                path: path.display().to_string(),
                source,
            })?;
        }
    }
    Ok(report)
}

/// The source address the kernel would use toward `target` (no packet is sent).
fn route_source(target: SocketAddr) -> Result<IpAddr, SetupError> {
    let err = |source| SetupError::Route { target, source };
    let any: SocketAddr = if target.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        SocketAddr::from(([0u16; 8], 0))
    };
    let s = UdpSocket::bind(any).map_err(err)?;
    s.connect(target).map_err(err)?;
    Ok(s.local_addr().map_err(err)?.ip())
}

fn run_nonce() -> u32 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    ((t ^ (t >> 32) ^ (u64::from(std::process::id()) << 16)) & 0xffff_ffff) as u32
}
