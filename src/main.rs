//! The `ringsip` command: run the proxy, check a script, print the default script.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use mimalloc::MiMalloc;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

/// ringsip: a thread-per-core io_uring SIP proxy scripted in the OpenSIPS language.
#[derive(Parser, Debug)]
#[command(name = "ringsip", version, about)]
struct Args {
    /// The routing script (OpenSIPS syntax). Without it, the embedded default script runs.
    #[arg(short = 'f', long = "config", value_name = "FILE")]
    config: Option<PathBuf>,

    /// Check the script and exit: non-zero with `file:line:col: message` lines on errors.
    #[arg(short = 'c', long = "check")]
    check: bool,

    /// Add a listening socket, e.g. `udp:127.0.0.1:5060` (repeatable).
    #[arg(short = 'l', long = "listen", value_name = "PROTO:IP:PORT")]
    listen: Vec<String>,

    /// Number of shards (one pinned thread per shard). Overrides the script's `children`.
    #[arg(long = "cores", value_name = "N")]
    cores: Option<usize>,

    /// CPUs to pin the shards to, e.g. `0,2-3`. Overrides --cores.
    #[arg(long = "cpus", value_name = "LIST")]
    cpus: Option<String>,

    /// More logging (repeat for more); overrides the script's `log_level`.
    #[arg(short = 'd', action = clap::ArgAction::Count)]
    debug: u8,

    /// Serve the management endpoint (/metrics, /stats, /health) on this address.
    #[arg(long = "mgmt", value_name = "IP:PORT")]
    mgmt: Option<std::net::SocketAddr>,

    /// Print the embedded default script and exit.
    #[arg(long = "print-default-script")]
    print_default_script: bool,
}

fn parse_cpus(list: &str) -> Result<Vec<usize>, String> {
    let mut cpus = Vec::new();
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = || format!("bad CPU list `{list}`");
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) =
                    (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
                if a > b || b - a > 4096 {
                    return Err(bad());
                }
                cpus.extend(a..=b);
            }
            None => cpus.push(part.parse().map_err(|_| bad())?),
        }
    }
    if cpus.is_empty() {
        return Err(format!("empty CPU list `{list}`"));
    }
    Ok(cpus)
}

/// Log level from the script's `log_level` (OpenSIPS: -3..4) or `-d` counts.
fn init_logging(script_level: i32, debug: u8) {
    use tracing_subscriber::EnvFilter;
    let level = match (debug, script_level) {
        (d, _) if d >= 2 => "trace",
        (1, _) => "debug",
        (_, l) if l >= 4 => "debug",
        (_, 3) => "info",
        (_, l) if l >= 1 => "warn",
        _ => "error",
    };
    // "ringsip ready" is an info line tests and operators wait for: always shown.
    let filter = EnvFilter::try_from_env("RINGSIP_LOG")
        .unwrap_or_else(|_| EnvFilter::new(format!("{level},ringsip::proxy::shard=info")));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.print_default_script {
        print!("{}", ringsip::script::DEFAULT_SCRIPT);
        return ExitCode::SUCCESS;
    }
    let (file, src) = match &args.config {
        Some(path) => match std::fs::read_to_string(path) {
            Ok(s) => (path.display().to_string(), s),
            Err(e) => {
                eprintln!("ringsip: cannot read {}: {e}", path.display());
                return ExitCode::from(2);
            }
        },
        None => (
            "<default script>".to_string(),
            ringsip::script::DEFAULT_SCRIPT.to_string(),
        ),
    };
    let script = match ringsip::proxy::compile_script(&file, &src) {
        Ok(s) => s,
        Err(e) => {
            eprint!("{e}");
            return ExitCode::FAILURE;
        }
    };
    init_logging(script.globals.log_level, args.debug);
    let cpus = match args.cpus.as_deref().map(parse_cpus).transpose() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ringsip: {e}");
            return ExitCode::from(2);
        }
    };
    let opts = ringsip::proxy::Options {
        listen: args.listen.clone(),
        cores: args.cores,
        cpus,
        mgmt: args.mgmt,
    };
    let shared = match ringsip::proxy::prepare(script, &opts) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{file}: {e}");
            return ExitCode::FAILURE;
        }
    };
    if args.check {
        eprintln!("{file}: OK");
        return ExitCode::SUCCESS;
    }
    let rt = match ringsip::proxy::run(shared, &opts) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ringsip: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.join();
    ExitCode::SUCCESS
}
