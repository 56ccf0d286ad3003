//! `proxy`: the shard — glues transport → parser → transactions → script → transport on
//! one core, and owns the shard's transaction table, its per-transaction script state and
//! its suspended `async()` continuations. A reader finds a message's whole path here:
//!
//! - [`shard::Shard::on_datagram`]: parse (RFC 3261 §7), check what a proxy interprets
//!   ([`shard::check_request`], §8.2, §16.3), then
//!   a request goes to transaction matching (§17.2.3) or the script's request route, a
//!   response to its client transaction (§17.1.3) or to stateless forwarding (§16.11).
//! - [`host::Host`]: what the script sees — pseudo-variables over the message, and the
//!   module functions (tm, sl, rr, maxfwd, sipmsgops, ...) dispatched by function id.
//! - Transaction actions (send, retransmit, timers, failure route) are executed by
//!   [`shard::Core::run_actions`]; timers go to the shard's wheel (`cores`).
//!
//! Start-up ([`run`]): compile the script, check every function it calls is implemented,
//! resolve listening sockets, start one shard per CPU, each binding every listening address
//! with `SO_REUSEPORT` plus one socket of its own for the requests it forwards (so replies
//! land on the owning shard: `docs/architecture.md`).

pub mod asyncop;
pub mod host;
pub mod nexthop;
pub mod shard;
pub mod slots;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use crate::script::{ir::ModParamValue, Registry, Script};
use crate::txn::TmConfig;

pub use host::{Dispatch, Host, HostFn};
pub use shard::{ProxyStats, Shard};

/// Everything a shard needs that is shared read-only between shards.
pub struct Shared {
    pub script: Arc<Script>,
    pub dispatch: Dispatch,
    /// The listening addresses (public: Record-Route, `myself`).
    pub listen: Vec<SocketAddr>,
    /// `alias=` host names and addresses that are `myself` too.
    pub aliases: Vec<String>,
    pub tm: TmConfig,
    /// Transaction table capacity per shard.
    pub max_transactions: u32,
    /// Key of the branch ids' check hash (one per process).
    pub branch_secret: u128,
    /// Module state read at start (REST, TLS, DNS, exec parameters).
    pub modules: crate::modules::async_fns::ModuleShared,
}

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Script(String),
    #[error("the script calls functions ringsip does not implement yet: {0}")]
    Unimplemented(String),
    #[error("bad listening socket `{spec}`: {reason}")]
    Listen { spec: String, reason: String },
    #[error("bad module parameter {module}.{param}: {reason}")]
    ModParam {
        module: &'static str,
        param: String,
        reason: String,
    },
    #[error("runtime: {0}")]
    Runtime(#[from] cores::StartError),
}

/// Start-up options (from the command line and the script).
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Extra `-l proto:ip:port` listening sockets.
    pub listen: Vec<String>,
    /// Number of shards; `None`: the script's `children`/`udp_workers`, else all CPUs.
    pub cores: Option<usize>,
    /// Explicit CPU list; wins over `cores`.
    pub cpus: Option<Vec<usize>>,
    /// Where to serve the management endpoint (`/metrics`, `/stats`, `/health`).
    pub mgmt: Option<SocketAddr>,
}

/// Parses `udp:IP:PORT`, `IP:PORT`, `udp:IP` (port 5060), `[v6]:port`.
pub fn parse_listen(spec: &str) -> Result<SocketAddr, StartError> {
    let bad = |reason: &str| StartError::Listen {
        spec: spec.to_string(),
        reason: reason.to_string(),
    };
    let rest = match spec.split_once(':') {
        Some((proto, rest)) if proto.eq_ignore_ascii_case("udp") => rest,
        Some((proto, _)) if ["tcp", "tls", "ws", "wss", "sctp"].contains(&proto) => {
            return Err(bad("only udp sockets are supported so far"))
        }
        _ => spec,
    };
    if let Ok(a) = rest.parse::<SocketAddr>() {
        return Ok(a);
    }
    if let Ok(ip) = rest
        .trim_matches(|c| c == '[' || c == ']')
        .parse::<IpAddr>()
    {
        return Ok(SocketAddr::new(ip, 5060));
    }
    if let Some((host, port)) = rest.rsplit_once(':') {
        let port: u16 = port.parse().map_err(|_| bad("bad port"))?;
        let ip = host_ip(host).ok_or_else(|| bad("the host must be an IP address or localhost"))?;
        return Ok(SocketAddr::new(ip, port));
    }
    host_ip(rest)
        .map(|ip| SocketAddr::new(ip, 5060))
        .ok_or_else(|| bad("the host must be an IP address or localhost"))
}

fn host_ip(host: &str) -> Option<IpAddr> {
    if host.eq_ignore_ascii_case("localhost") {
        return Some(IpAddr::from([127, 0, 0, 1]));
    }
    host.trim_matches(|c| c == '[' || c == ']').parse().ok()
}

/// The `tm` module parameters (OpenSIPS names; timers in seconds, `T1_timer`... in ms).
fn tm_config(script: &Script) -> Result<TmConfig, StartError> {
    let mut cfg = TmConfig::default();
    for p in script.modparams.iter().filter(|p| p.module_name == "tm") {
        let ModParamValue::Int(v) = p.value else {
            continue;
        };
        let bad = |reason: &str| StartError::ModParam {
            module: "tm",
            param: p.name.clone(),
            reason: reason.to_string(),
        };
        let v = u64::try_from(v).map_err(|_| bad("must not be negative"))?;
        match p.name.as_str() {
            "fr_timeout" => cfg.fr_timer = Duration::from_secs(v),
            "fr_inv_timeout" => cfg.fr_inv_timer = Duration::from_secs(v),
            "T1_timer" => cfg.t1 = Duration::from_millis(v),
            "T2_timer" => cfg.t2 = Duration::from_millis(v),
            "wt_timer" => cfg.wt_timer = Duration::from_secs(v),
            other => tracing::warn!(
                "modparam(\"tm\", \"{other}\") is accepted for compatibility and has no effect"
            ),
        }
    }
    cfg.validate().map_err(|e| StartError::ModParam {
        module: "tm",
        param: "timers".into(),
        reason: e.to_string(),
    })?;
    Ok(cfg)
}

/// Compiles `src` (named `file` in diagnostics) with the built-in modules.
pub fn compile_script(file: &str, src: &str) -> Result<Script, StartError> {
    match crate::script::compile(file, src, &Registry::builtin()) {
        Ok(c) => {
            // Printed directly: logging is set up from the script, after this.
            if !c.warnings.items().is_empty() {
                eprint!("{}", c.warnings);
            }
            Ok(c.script)
        }
        Err(d) => Err(StartError::Script(d.to_string())),
    }
}

/// `file:line: ...` for every route block of a kind ringsip does not run yet: refused at
/// start rather than silently never run.
fn routes_without_runtime(script: &Script) -> Vec<String> {
    use crate::script::ast::RouteKind;
    script
        .routes
        .iter()
        .filter_map(|r| {
            let kind = match r.kind {
                RouteKind::Error => "error_route",
                RouteKind::Local => "local_route",
                RouteKind::Startup => "startup_route",
                RouteKind::Timer => "timer_route",
                RouteKind::Event => "event_route",
                _ => return None,
            };
            Some(format!(
                "{}:{}: {kind} is not supported by ringsip yet (it would never run)",
                script.file, r.line
            ))
        })
        .collect()
}

/// Builds the shared start-up state from a compiled script and the options.
pub fn prepare(script: Script, opts: &Options) -> Result<Shared, StartError> {
    let dispatch = Dispatch::bind(&script.registry);
    let missing = dispatch.missing(&script);
    if !missing.is_empty() {
        return Err(StartError::Unimplemented(missing.join(", ")));
    }
    let mut refused = dispatch.sync_io_calls(&script);
    refused.extend(routes_without_runtime(&script));
    if !refused.is_empty() {
        return Err(StartError::Script(refused.join("\n")));
    }
    let mut listen = Vec::new();
    for s in &script.globals.sockets {
        let spec = format!("{}:{}:{}", s.proto, s.host, s.port.unwrap_or(5060));
        listen.push(parse_listen(&spec)?);
    }
    for l in &opts.listen {
        listen.push(parse_listen(l)?);
    }
    if listen.is_empty() {
        listen.push(SocketAddr::from(([127, 0, 0, 1], 5060)));
    }
    let tm = tm_config(&script)?;
    crate::modules::avpops::settings(&script).map_err(|reason| StartError::ModParam {
        module: "avpops",
        param: "db_url".into(),
        reason,
    })?;
    let aliases = script.globals.aliases.clone();
    let modules =
        crate::modules::async_fns::ModuleShared::from_script(&script).map_err(|reason| {
            StartError::ModParam {
                module: "modules",
                param: "parameters".into(),
                reason,
            }
        })?;
    Ok(Shared {
        script: Arc::new(script),
        dispatch,
        listen,
        aliases,
        tm,
        max_transactions: 65536,
        branch_secret: (u128::from(random_u64()) << 64) | u128::from(random_u64()),
        modules,
    })
}

/// A random value (branch secret, tags, `$RANDOM`): std's per-process random hash keys
/// (seeded from the OS) mixed with a counter, so successive calls differ.
pub fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.finish()
}

/// Starts the shards and returns the running runtime (the caller waits on it).
pub fn run(shared: Shared, opts: &Options) -> Result<cores::Runtime, StartError> {
    let shared = Arc::new(shared);
    let mut cfg = cores::Config::default();
    let shards = opts
        .cores
        .or(shared.script.globals.udp_workers.map(|n| n as usize));
    cfg.cpus = match (&opts.cpus, shards) {
        (Some(list), _) => Some(list.clone()),
        (None, Some(n)) => Some(pick_cpus(n)),
        (None, None) => None,
    };
    cfg.thread_name = "ringsip".into();
    let setup_shared = Arc::clone(&shared);
    let n_shards = cfg.cpus.as_ref().map_or_else(
        || std::thread::available_parallelism().map_or(1, |p| p.get()),
        Vec::len,
    );
    let registry = crate::mgmt::Registry::new(n_shards);
    let mgmt = opts.mgmt;
    let rt = cores::start(cfg, move |id| {
        Shard::install(id, Arc::clone(&setup_shared))?;
        crate::mgmt::start_publishing(Arc::clone(&registry), id);
        match mgmt {
            Some(addr) if id == 0 => crate::mgmt::serve(addr, Arc::clone(&registry)),
            _ => Ok(()),
        }
    })?;
    Ok(rt)
}

/// `n` CPUs from those this process may run on (repeating if there are fewer).
fn pick_cpus(n: usize) -> Vec<usize> {
    let online = std::thread::available_parallelism().map_or(1, |p| p.get());
    (0..n.max(1)).map(|i| i % online).collect()
}
