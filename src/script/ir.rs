//! The compiled script: routes as trees of resolved statements. Every function call is
//! bound to a `FnId` with its arguments pre-parsed by parameter kind, every route reference
//! is a `RouteId`, every variable a slot, every constant regex compiled. This is what the
//! interpreter runs and what shards share (read-only, plus the `$shv` table).

use std::sync::Mutex;

use super::ast::{AssignOp, BinOp, RouteKind};
use super::decls::{FnDecl, FnId, FnImpl, ModId, Registry};
use super::pv::{FmtPart, Names, Pv};

/// Index of a route in `Script::routes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RouteId(pub u16);

/// A script value held by `$var`, `$avp`, `$shv` and passed around by modules.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Value {
    #[default]
    Null,
    Int(i64),
    Str(String),
}

/// A listening socket from `socket=`/`listen=`: `proto:host:port [as host:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketSpec {
    /// `udp`, `tcp`, `tls`, ... (`udp` when omitted).
    pub proto: String,
    pub host: String,
    pub port: Option<u16>,
    /// The `as host:port` advertised address, verbatim.
    pub advertised: Option<String>,
}

/// Core global parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Globals {
    pub sockets: Vec<SocketSpec>,
    pub log_level: i32,
    /// `children=` / `udp_workers=`: read as shard count.
    pub udp_workers: Option<u32>,
    pub tcp_workers: Option<u32>,
    pub debug_mode: bool,
    pub xlog_default_level: i32,
    pub mpath: Option<String>,
    pub stderror_enabled: Option<bool>,
    pub syslog_enabled: Option<bool>,
    pub auto_aliases: bool,
    pub aliases: Vec<String>,
    /// Accepted but not interpreted parameters, `(name, raw value)`.
    pub ignored: Vec<(String, String)>,
}

impl Default for Globals {
    fn default() -> Globals {
        Globals {
            sockets: Vec::new(),
            log_level: 2,
            udp_workers: None,
            tcp_workers: None,
            debug_mode: false,
            xlog_default_level: super::XLOG_L_ERR,
            mpath: None,
            stderror_enabled: None,
            syslog_enabled: None,
            auto_aliases: true,
            aliases: Vec::new(),
            ignored: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModParamValue {
    Int(i64),
    Str(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModParam {
    pub module: ModId,
    pub module_name: &'static str,
    pub name: String,
    pub value: ModParamValue,
}

/// A compiled function argument.
#[derive(Debug, Clone)]
pub enum CArg {
    /// An optional parameter that was not given.
    Absent,
    Int(i64),
    Str(Box<str>),
    /// A string with pseudo-variables, expanded at call time.
    Fmt(Box<[FmtPart]>),
    /// An integer parameter given as a pseudo-variable.
    IntPv(Pv),
    Pv(Pv),
    PvList(Box<[Pv]>),
    Route(RouteId),
}

#[derive(Debug, Clone)]
pub struct Call {
    pub f: FnId,
    pub decl: &'static FnDecl,
    pub imp: FnImpl,
    pub args: Box<[CArg]>,
    /// Source line, for run-time log messages.
    pub line: u32,
}

#[derive(Debug, Clone)]
pub enum Expr {
    Int(i64),
    Str(Box<str>),
    Fmt(Box<[FmtPart]>),
    Null,
    Pv(Pv),
    Call(Call),
    /// `route(name, args...)`
    Route(RouteId, Box<[Expr]>),
    Not(Box<Expr>),
    Neg(Box<Expr>),
    BitNot(Box<Expr>),
    Bin(BinOp, Box<Expr>, Box<Expr>),
    /// `lhs =~ "constant"` (case-insensitive, as OpenSIPS), `neg` for `!~`.
    Match {
        lhs: Box<Expr>,
        re: Box<regex::Regex>,
        neg: bool,
    },
    /// `lhs =~ $var(re)`: the regex is compiled at run time.
    MatchDyn {
        lhs: Box<Expr>,
        rhs: Box<Expr>,
        neg: bool,
    },
    /// `lhs == myself` (`neg` for `!=`).
    Myself {
        lhs: Box<Expr>,
        neg: bool,
    },
}

#[derive(Debug, Clone)]
pub enum CaseValue {
    Int(i64),
    Str(Box<str>),
}

#[derive(Debug, Clone)]
pub enum Stmt {
    Call(Call),
    Expr(Expr),
    Assign {
        target: Pv,
        op: AssignOp,
        value: Expr,
    },
    If {
        cond: Expr,
        then: Box<[Stmt]>,
        els: Box<[Stmt]>,
    },
    /// Cases jump to an index in `body` and fall through until `break`.
    Switch {
        subject: Expr,
        cases: Box<[(CaseValue, usize)]>,
        default: Option<usize>,
        body: Box<[Stmt]>,
    },
    While {
        cond: Expr,
        body: Box<[Stmt]>,
    },
    /// `for (var in source[*])`: `source` is read with `At(0)`, `At(1)`, ... until NULL.
    ForEach {
        var: Pv,
        source: Pv,
        body: Box<[Stmt]>,
    },
    Return(Option<Expr>),
    Exit,
    Drop,
    Break,
    Route(RouteId, Box<[Expr]>),
    Async {
        call: Call,
        resume: RouteId,
    },
    Launch {
        call: Call,
        report: Option<RouteId>,
    },
}

#[derive(Debug, Clone)]
pub struct Route {
    pub kind: RouteKind,
    pub name: Option<Box<str>>,
    pub body: Box<[Stmt]>,
    /// `timer_route[name, interval]` in seconds.
    pub timer_interval: Option<u32>,
    /// `event_route[E, async]`.
    pub event_async: bool,
    pub line: u32,
}

/// A compiled script. Shared read-only by the shards (wrap in `Arc`); `$shv` values are
/// the only mutable state, behind per-variable locks.
#[derive(Debug)]
pub struct Script {
    pub file: String,
    pub globals: Globals,
    pub registry: Registry,
    /// Loaded modules (by `loadmodule`), in load order.
    pub modules: Vec<ModId>,
    pub modparams: Vec<ModParam>,
    pub routes: Vec<Route>,
    pub names: Names,
    /// Named flags; the name at index `i` is bit `NAMED_FLAG_BASE + i`.
    pub flag_names: Vec<Box<str>>,
    pub shv: Box<[Mutex<Value>]>,
    /// Every host-implemented function the script calls, each once.
    pub host_calls: Vec<FnId>,
    /// Every call of a host function outside `async()`/`launch()`: function, line, column
    /// (the proxy refuses at start a synchronous call of a function that only has an
    /// asynchronous implementation).
    pub sync_host_calls: Vec<(FnId, u32, u32)>,
}

/// Named flags get bits from here up (numbers below are the numeric flags 0..=31).
pub const NAMED_FLAG_BASE: u32 = 32;

impl Script {
    /// The route of that kind and name (`None` = the unnamed one).
    pub fn route(&self, kind: RouteKind, name: Option<&str>) -> Option<RouteId> {
        self.routes
            .iter()
            .position(|r| r.kind == kind && r.name.as_deref() == name)
            .map(|i| RouteId(i as u16))
    }

    /// The main request route `route{}`.
    pub fn request_route(&self) -> Option<RouteId> {
        self.route(RouteKind::Request, None)
    }

    pub fn route_def(&self, id: RouteId) -> Option<&Route> {
        self.routes.get(id.0 as usize)
    }

    /// Module parameters given for one module.
    pub fn modparams_of<'a>(&'a self, module: &'a str) -> impl Iterator<Item = &'a ModParam> + 'a {
        self.modparams
            .iter()
            .filter(move |p| p.module_name == module)
    }

    pub fn is_loaded(&self, module: &str) -> bool {
        self.modules.iter().any(|m| {
            self.registry
                .module_decl(*m)
                .is_some_and(|d| d.name == module)
        })
    }
}
