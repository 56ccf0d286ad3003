//! The command line, as fixed by `LOADGEN_CONTRACT.md`: `ringsip-load run ...` and
//! `ringsip-load uas ...`. Only parsing and validation live here; [`crate::driver`] runs
//! what was asked. Additions: `--timeout-ms` (Timer B/F, default 32 s), `--transport`,
//! `--connections` and `--connect-timeout-ms` (SIP over TCP).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::engine::{Scenario, Transport};

#[derive(Debug, Parser)]
#[command(
    name = "ringsip-load",
    version,
    about = "SIP load generator (UAC and UAS)"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the UAC role (and, with --uas, a UAS in the same process) and report.
    Run(RunArgs),
    /// Run the UAS role only, until SIGTERM/SIGINT.
    Uas(UasArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScenarioArg {
    Options,
    Register,
    Call,
}

impl From<ScenarioArg> for Scenario {
    fn from(s: ScenarioArg) -> Scenario {
        match s {
            ScenarioArg::Options => Scenario::Options,
            ScenarioArg::Register => Scenario::Register,
            ScenarioArg::Call => Scenario::Call,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum TransportArg {
    #[default]
    Udp,
    Tcp,
}

impl From<TransportArg> for Transport {
    fn from(t: TransportArg) -> Transport {
        match t {
            TransportArg::Udp => Transport::Udp,
            TransportArg::Tcp => Transport::Tcp,
        }
    }
}

/// Default number of UAC source ports (UDP) or connections (TCP).
pub const DEFAULT_SOCKETS: u16 = 8;

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Where every request is sent (the proxy, or a UAS directly).
    #[arg(long, value_name = "IP:PORT")]
    pub target: SocketAddr,
    #[arg(long, value_enum)]
    pub scenario: ScenarioArg,
    /// Calls (or requests) started per second; 0 = closed loop at max.
    #[arg(long, default_value_t = 0.0, value_parser = non_negative_f64)]
    pub rate: f64,
    /// Most calls outstanding at once in closed loop.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..))]
    pub concurrency: u32,
    /// Stop after this many calls started (default: unbounded).
    #[arg(long)]
    pub calls: Option<u64>,
    /// Stop starting calls after this many seconds.
    #[arg(long, default_value_t = 10.0, value_parser = non_negative_f64)]
    pub duration: f64,
    /// Hold time between the 200 to INVITE and the BYE, in ms.
    #[arg(long, default_value_t = 0)]
    pub hold_ms: u64,
    /// Also run the UAS role in this process on IP:PORT; the R-URI becomes
    /// sip:uas@IP:PORT (requests still go to --target).
    #[arg(long, value_name = "IP:PORT")]
    pub uas: Option<SocketAddr>,
    /// Request-URI to use (when the UAS is elsewhere).
    #[arg(long, value_parser = sip_uri, conflicts_with = "uas")]
    pub ruri: Option<String>,
    /// Source IP of the UAC sockets (default: the route's source toward --target).
    #[arg(long)]
    pub local_ip: Option<IpAddr>,
    /// SIP transport of the UAC (and of the in-process UAS).
    #[arg(long, value_enum, default_value_t = TransportArg::Udp)]
    pub transport: TransportArg,
    /// UDP: UAC source ports (sockets), spread over the proxy's shards [default: 8].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub ports: Option<u16>,
    /// TCP: connections to --target, spread over its workers; calls are dealt to them
    /// round-robin [default: 8].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub connections: Option<u16>,
    /// TCP: how long a connect may take before it counts as `connect_timeout`.
    #[arg(long, default_value_t = 3_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub connect_timeout_ms: u64,
    /// CPUs to pin the generator's shards to, e.g. `0`, `2,3` or `0-3` (one shard each).
    #[arg(long, value_parser = cpu_list)]
    pub cpus: Option<CpuList>,
    /// Write the JSON report to FILE (`-` for stdout).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// No progress line.
    #[arg(long)]
    pub quiet: bool,
    /// Transaction time-out (Timer B/F) in ms: a request without final response by then
    /// fails the call as `timeout`.
    #[arg(long, default_value_t = 32_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout_ms: u64,
}

#[derive(Debug, Clone, Args)]
pub struct UasArgs {
    /// Address to answer on.
    #[arg(long, value_name = "IP:PORT")]
    pub bind: SocketAddr,
    /// Listen for SIP over UDP or over TCP (answers go back on the request's connection).
    #[arg(long, value_enum, default_value_t = TransportArg::Udp)]
    pub transport: TransportArg,
    /// CPUs to pin the UAS shards to (one shard each, all bound with SO_REUSEPORT).
    #[arg(long, value_parser = cpu_list)]
    pub cpus: Option<CpuList>,
}

/// A parsed `--cpus` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuList(pub Vec<usize>);

fn cpu_list(s: &str) -> Result<CpuList, String> {
    let mut cpus = Vec::new();
    for part in s.split(',') {
        let part = part.trim();
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a, b),
            None => (part, part),
        };
        let a: usize = a
            .parse()
            .map_err(|_| format!("bad CPU number in {part:?}"))?;
        let b: usize = b
            .parse()
            .map_err(|_| format!("bad CPU number in {part:?}"))?;
        if a > b || b >= 4096 {
            return Err(format!("bad CPU range {part:?}"));
        }
        for c in a..=b {
            if !cpus.contains(&c) {
                cpus.push(c);
            }
        }
    }
    if cpus.is_empty() {
        return Err("empty CPU list".into());
    }
    Ok(CpuList(cpus))
}

fn non_negative_f64(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("not a number: {s:?}"))?;
    if !v.is_finite() || v < 0.0 {
        return Err(format!("must be a finite number >= 0: {s:?}"));
    }
    Ok(v)
}

fn sip_uri(s: &str) -> Result<String, String> {
    let lower = s.to_ascii_lowercase();
    if !(lower.starts_with("sip:") || lower.starts_with("sips:")) {
        return Err(format!("not a SIP URI: {s:?}"));
    }
    if s.chars()
        .any(|c| c.is_control() || c.is_whitespace() || c == '>' || c == '<')
    {
        return Err(format!(
            "URI with spaces, control characters or angle brackets: {s:?}"
        ));
    }
    Ok(s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("ringsip-load").chain(args.iter().copied()))
    }

    #[test]
    fn run_defaults_follow_the_contract() {
        let cli = parse(&["run", "--target", "127.0.0.1:5060", "--scenario", "call"]).unwrap();
        let Command::Run(r) = cli.command else {
            panic!("not run")
        };
        assert_eq!(r.rate, 0.0);
        assert_eq!(r.concurrency, 200);
        assert_eq!(r.calls, None);
        assert_eq!(r.duration, 10.0);
        assert_eq!(r.hold_ms, 0);
        assert_eq!(r.ports, None);
        assert_eq!(r.transport, TransportArg::Udp);
        assert_eq!(r.connections, None);
        assert_eq!(r.connect_timeout_ms, 3_000);
        assert_eq!(r.timeout_ms, 32_000);
        assert!(!r.quiet);
    }

    #[test]
    fn run_with_everything() {
        let cli = parse(&[
            "run",
            "--target",
            "10.0.0.1:5060",
            "--scenario",
            "register",
            "--rate",
            "1500",
            "--calls",
            "20000",
            "--duration",
            "30",
            "--hold-ms",
            "100",
            "--uas",
            "10.0.0.2:5080",
            "--local-ip",
            "10.0.0.2",
            "--ports",
            "16",
            "--cpus",
            "0,2-3",
            "--json",
            "-",
            "--quiet",
        ])
        .unwrap();
        let Command::Run(r) = cli.command else {
            panic!("not run")
        };
        assert_eq!(r.scenario, ScenarioArg::Register);
        assert_eq!(r.cpus, Some(CpuList(vec![0, 2, 3])));
        assert_eq!(r.json.as_deref(), Some(std::path::Path::new("-")));
        assert_eq!(r.uas, Some("10.0.0.2:5080".parse().unwrap()));
        assert_eq!(r.ports, Some(16));
    }

    #[test]
    fn tcp_options() {
        let cli = parse(&[
            "run",
            "--target",
            "127.0.0.1:5060",
            "--scenario",
            "call",
            "--transport",
            "tcp",
            "--connections",
            "3",
            "--connect-timeout-ms",
            "500",
        ])
        .unwrap();
        let Command::Run(r) = cli.command else {
            panic!("not run")
        };
        assert_eq!(r.transport, TransportArg::Tcp);
        assert_eq!(r.connections, Some(3));
        assert_eq!(r.connect_timeout_ms, 500);
        let cli = parse(&["uas", "--bind", "127.0.0.1:5080", "--transport", "tcp"]).unwrap();
        let Command::Uas(u) = cli.command else {
            panic!("not uas")
        };
        assert_eq!(u.transport, TransportArg::Tcp);
        for bad in [
            &["--transport", "sctp"][..],
            &["--transport", "tcp", "--connections", "0"],
            &["--transport", "tcp", "--connect-timeout-ms", "0"],
        ] {
            let args: Vec<&str> = ["run", "--target", "127.0.0.1:1", "--scenario", "call"]
                .into_iter()
                .chain(bad.iter().copied())
                .collect();
            assert_eq!(parse(&args).unwrap_err().exit_code(), 2, "{bad:?}");
        }
    }

    #[test]
    fn bad_usage_is_rejected() {
        for args in [
            &["run", "--scenario", "call"][..],
            &["run", "--target", "x", "--scenario", "call"],
            &["run", "--target", "127.0.0.1:1", "--scenario", "bogus"],
            &[
                "run",
                "--target",
                "127.0.0.1:1",
                "--scenario",
                "call",
                "--rate",
                "-1",
            ],
            &[
                "run",
                "--target",
                "127.0.0.1:1",
                "--scenario",
                "call",
                "--ports",
                "0",
            ],
            &[
                "run",
                "--target",
                "127.0.0.1:1",
                "--scenario",
                "call",
                "--cpus",
                "3-1",
            ],
            &[
                "run",
                "--target",
                "127.0.0.1:1",
                "--scenario",
                "call",
                "--ruri",
                "http://x",
            ],
            &[
                "run",
                "--target",
                "127.0.0.1:1",
                "--scenario",
                "call",
                "--ruri",
                "sip:a@b",
                "--uas",
                "127.0.0.1:2",
            ],
            &["uas"],
        ] {
            let e = parse(args).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{args:?}");
        }
        let cli = parse(&["uas", "--bind", "127.0.0.1:5080", "--cpus", "1"]).unwrap();
        assert!(matches!(cli.command, Command::Uas(_)));
    }
}
