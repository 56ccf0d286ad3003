//! The function and module registry: what a module declares (functions with their
//! parameter kinds, the route types that may call them, whether they have an asynchronous
//! implementation; module parameters), and the declarations of the built-in modules.
//!
//! Declarations are static tables. Implementations of module functions are bound by the
//! host (`ScriptHost::call` receives the resolved `FnId` and its `FnDecl`); functions that
//! belong to the script itself (`xlog`, flags, `is_method`, ...) are `FnImpl::Core` and run
//! inside the interpreter. Names and route types follow the OpenSIPS 3.x module docs.

use super::ast::RouteKind;

/// Set of route kinds, one bit per `RouteKind`.
pub type RouteMask = u16;
pub const REQ: RouteMask = RouteKind::Request.bit();
pub const REPLY: RouteMask = RouteKind::Reply.bit();
pub const FAIL: RouteMask = RouteKind::Failure.bit();
pub const BRANCH: RouteMask = RouteKind::Branch.bit();
pub const ERROR: RouteMask = RouteKind::Error.bit();
pub const LOCAL: RouteMask = RouteKind::Local.bit();
pub const STARTUP: RouteMask = RouteKind::Startup.bit();
pub const TIMER: RouteMask = RouteKind::Timer.bit();
pub const EVENT: RouteMask = RouteKind::Event.bit();
/// Routes that run with a SIP message.
pub const MSG: RouteMask = REQ | REPLY | FAIL | BRANCH | ERROR | LOCAL;
pub const ANY: RouteMask = MSG | STARTUP | TIMER | EVENT;
/// Where `async()` may stand: the routes where a transaction waits for the script — the
/// request route, failure routes, and onreply routes (the reply is held until the resume
/// route ran). Not branch routes: OpenSIPS does not suspend a branch either (its manual
/// lists branch_route as "may be included in the future"; its tm module runs the function
/// synchronously there, which on a ringsip core would block every call), so ringsip
/// refuses it at start (`docs/async.md`).
pub const ASYNC_ROUTES: RouteMask = REQ | FAIL | REPLY;

/// What kind of argument a function parameter takes; checked and pre-parsed at compile
/// time, delivered to the implementation as the matching `Arg` variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    /// A string; `"..."` may embed pseudo-variables, expanded at call time (`Arg::Str`).
    Str,
    /// A string fixed at compile time (`Arg::Str`).
    StrConst,
    /// An integer: literal, numeric string, or a pseudo-variable read at call time
    /// (`Arg::Int`).
    Int,
    /// A writable pseudo-variable the function sets (`Arg::Pv`).
    PvOut,
    /// Any pseudo-variable, read by the function (`Arg::Pv`).
    PvIn,
    /// One or more writable pseudo-variables: a bare one, or a string listing them
    /// separated by `;` (`"$avp(a);$avp(b)"`) (`Arg::PvList`).
    PvOutList,
    /// The name of an existing route of that kind (`Arg::Route`).
    Route(RouteKind),
    /// A flag: name or number, resolved to a bit index (`Arg::Int`).
    Flag,
    /// A string with pseudo-variables or an integer (`Arg::Str` or `Arg::Int`).
    Any,
}

#[derive(Debug, Clone, Copy)]
pub struct ParamDecl {
    pub name: &'static str,
    pub kind: ParamKind,
    pub optional: bool,
}

/// Functions implemented by the interpreter itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CoreFn {
    Xlog,
    SetFlag,
    ResetFlag,
    IsFlagSet,
    IsMethod,
    HasTotag,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FnImpl {
    Core(CoreFn),
    /// Implemented by the host (a module in `src/modules/`), reached via `ScriptHost::call`.
    Host,
}

#[derive(Debug, Clone, Copy)]
pub struct FnDecl {
    pub name: &'static str,
    pub params: &'static [ParamDecl],
    /// Route kinds that may call it.
    pub routes: RouteMask,
    /// Has an asynchronous implementation (may be used under `async()`/`launch()`).
    pub async_capable: bool,
    pub imp: FnImpl,
}

impl FnDecl {
    pub fn min_args(&self) -> usize {
        self.params.iter().filter(|p| !p.optional).count()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModParamKind {
    Int,
    Str,
    /// Either (OpenSIPS accepts both for some parameters, e.g. `db_url` ids).
    Any,
}

#[derive(Debug, Clone, Copy)]
pub struct ModParamDecl {
    pub name: &'static str,
    pub kind: ModParamKind,
}

/// A module as the script sees it.
#[derive(Debug)]
pub struct ModuleDecl {
    /// OpenSIPS module name (`tm`, `db_mysql`, ...); `core` is always loaded.
    pub name: &'static str,
    pub functions: &'static [FnDecl],
    pub params: &'static [ModParamDecl],
}

/// Index of a function in a `Registry`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FnId(pub u16);

/// Index of a module in a `Registry`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ModId(pub u16);

/// All modules the binary has, with their functions numbered.
#[derive(Debug, Clone)]
pub struct Registry {
    modules: Vec<&'static ModuleDecl>,
    fns: Vec<(ModId, &'static FnDecl)>,
}

impl Registry {
    /// The built-in declarations of this file.
    pub fn builtin() -> Registry {
        Registry::new(BUILTIN_MODULES)
    }

    /// A registry of the given modules. A later module with the same name replaces an
    /// earlier one (so `src/modules/` can supersede the declarations here).
    pub fn new(modules: &[&'static ModuleDecl]) -> Registry {
        let mut r = Registry {
            modules: Vec::new(),
            fns: Vec::new(),
        };
        for m in modules {
            r.add(m);
        }
        r
    }

    pub fn add(&mut self, m: &'static ModuleDecl) {
        if let Some(slot) = self.modules.iter_mut().find(|x| x.name == m.name) {
            *slot = m;
        } else {
            self.modules.push(m);
        }
        self.fns.clear();
        for (mi, m) in self.modules.iter().enumerate() {
            for f in m.functions {
                self.fns.push((ModId(mi as u16), f));
            }
        }
    }

    pub fn module(&self, name: &str) -> Option<(ModId, &'static ModuleDecl)> {
        self.modules
            .iter()
            .enumerate()
            .find(|(_, m)| m.name == name)
            .map(|(i, m)| (ModId(i as u16), *m))
    }

    pub fn module_decl(&self, id: ModId) -> Option<&'static ModuleDecl> {
        self.modules.get(id.0 as usize).copied()
    }

    /// All functions of that name (several modules may declare one name).
    pub fn lookup<'a>(
        &'a self,
        name: &'a str,
    ) -> impl Iterator<Item = (FnId, ModId, &'static FnDecl)> + 'a {
        self.fns
            .iter()
            .enumerate()
            .filter(move |(_, (_, f))| f.name == name)
            .map(|(i, (m, f))| (FnId(i as u16), *m, *f))
    }

    pub fn decl(&self, id: FnId) -> Option<&'static FnDecl> {
        self.fns.get(id.0 as usize).map(|(_, f)| *f)
    }

    /// Module name of a function, for host binding.
    pub fn module_of(&self, id: FnId) -> Option<&'static str> {
        self.fns
            .get(id.0 as usize)
            .and_then(|(m, _)| self.modules.get(m.0 as usize))
            .map(|m| m.name)
    }

    /// Every function: `(id, module name, decl)`; the host binds implementations by it.
    pub fn functions(&self) -> impl Iterator<Item = (FnId, &'static str, &'static FnDecl)> + '_ {
        self.fns.iter().enumerate().map(|(i, (m, f))| {
            let module = self.modules.get(m.0 as usize).map_or("", |d| d.name);
            (FnId(i as u16), module, *f)
        })
    }
}

const fn req(name: &'static str, kind: ParamKind) -> ParamDecl {
    ParamDecl {
        name,
        kind,
        optional: false,
    }
}
const fn opt(name: &'static str, kind: ParamKind) -> ParamDecl {
    ParamDecl {
        name,
        kind,
        optional: true,
    }
}
const fn host(name: &'static str, params: &'static [ParamDecl], routes: RouteMask) -> FnDecl {
    FnDecl {
        name,
        params,
        routes,
        async_capable: false,
        imp: FnImpl::Host,
    }
}
const fn host_async(name: &'static str, params: &'static [ParamDecl], routes: RouteMask) -> FnDecl {
    FnDecl {
        name,
        params,
        routes,
        async_capable: true,
        imp: FnImpl::Host,
    }
}
const fn core(
    name: &'static str,
    params: &'static [ParamDecl],
    routes: RouteMask,
    f: CoreFn,
) -> FnDecl {
    FnDecl {
        name,
        params,
        routes,
        async_capable: false,
        imp: FnImpl::Core(f),
    }
}
const fn ip(name: &'static str) -> ModParamDecl {
    ModParamDecl {
        name,
        kind: ModParamKind::Int,
    }
}
const fn sp(name: &'static str) -> ModParamDecl {
    ModParamDecl {
        name,
        kind: ModParamKind::Str,
    }
}
const fn ap(name: &'static str) -> ModParamDecl {
    ModParamDecl {
        name,
        kind: ModParamKind::Any,
    }
}

use ParamKind as K;

pub static CORE: ModuleDecl = ModuleDecl {
    name: "core",
    functions: &[
        // xlog([level,] format): the two-argument form is told apart by the checker.
        core(
            "xlog",
            &[req("format", K::Str), opt("format2", K::Str)],
            ANY,
            CoreFn::Xlog,
        ),
        core("setflag", &[req("flag", K::Flag)], MSG, CoreFn::SetFlag),
        core("resetflag", &[req("flag", K::Flag)], MSG, CoreFn::ResetFlag),
        core("isflagset", &[req("flag", K::Flag)], MSG, CoreFn::IsFlagSet),
        host(
            "is_myself",
            &[req("uri_or_host", K::Str), opt("port", K::Int)],
            ANY,
        ),
        host(
            "forward",
            &[opt("destination", K::Str)],
            REQ | FAIL | BRANCH | REPLY,
        ),
        host("rewriteuri", &[req("uri", K::Str)], REQ | FAIL | BRANCH),
        host("seturi", &[req("uri", K::Str)], REQ | FAIL | BRANCH),
        host(
            "append_branch",
            &[opt("uri", K::Str), opt("qvalue", K::Str)],
            REQ | FAIL,
        ),
        host("force_rport", &[], REQ | BRANCH),
        host(
            "force_send_socket",
            &[req("socket", K::StrConst)],
            REQ | FAIL | BRANCH,
        ),
    ],
    params: &[],
};

static PROTO_UDP: ModuleDecl = ModuleDecl {
    name: "proto_udp",
    functions: &[],
    params: &[ip("udp_port")],
};
static PROTO_TCP: ModuleDecl = ModuleDecl {
    name: "proto_tcp",
    functions: &[],
    params: &[
        ip("tcp_port"),
        ip("tcp_send_timeout"),
        ip("tcp_max_msg_chunks"),
        ip("tcp_crlf_pingpong"),
        ip("tcp_crlf_drop"),
        ip("tcp_async"),
        ip("tcp_async_max_postponed_chunks"),
        ip("tcp_async_local_connect_timeout"),
        ip("tcp_async_local_write_timeout"),
    ],
};
static PROTO_TLS: ModuleDecl = ModuleDecl {
    name: "proto_tls",
    functions: &[],
    params: &[
        ip("tls_port"),
        ip("tls_send_timeout"),
        ip("tls_max_msg_chunks"),
        ip("tls_async"),
    ],
};
static TLS_MGM: ModuleDecl = ModuleDecl {
    name: "tls_mgm",
    functions: &[],
    params: &[
        sp("server_domain"),
        sp("client_domain"),
        sp("certificate"),
        sp("private_key"),
        sp("ca_list"),
        sp("ca_dir"),
        sp("tls_method"),
        sp("verify_cert"),
        sp("require_cert"),
        sp("ciphers_list"),
        sp("match_ip_address"),
        sp("match_sip_domain"),
    ],
};

static TM: ModuleDecl = ModuleDecl {
    name: "tm",
    functions: &[
        host("t_relay", &[opt("flags", K::Str)], REQ | FAIL),
        host(
            "t_reply",
            &[req("code", K::Int), req("reason", K::Str)],
            REQ | FAIL,
        ),
        host("t_newtran", &[], REQ),
        host(
            "t_on_reply",
            &[req("route", K::Route(RouteKind::Reply))],
            REQ | FAIL | BRANCH | REPLY,
        ),
        host(
            "t_on_failure",
            &[req("route", K::Route(RouteKind::Failure))],
            REQ | FAIL | BRANCH | REPLY,
        ),
        host(
            "t_on_branch",
            &[req("route", K::Route(RouteKind::Branch))],
            REQ | FAIL,
        ),
        host(
            "t_check_status",
            &[req("regex", K::Str)],
            REQ | FAIL | REPLY | BRANCH,
        ),
        host("t_was_cancelled", &[], FAIL | REPLY | BRANCH),
        host("t_check_trans", &[], REQ | BRANCH),
    ],
    params: &[
        ip("fr_timeout"),
        ip("fr_inv_timeout"),
        ip("wt_timer"),
        ip("delete_timer"),
        ip("T1_timer"),
        ip("T2_timer"),
        ip("ruri_matching"),
        ip("via1_matching"),
        ip("unix_tx_timeout"),
        ip("restart_fr_on_each_reply"),
        ip("onreply_avp_mode"),
        ip("pass_provisional_replies"),
        ip("syn_branch"),
        ip("auto_100trying"),
        ip("disable_6xx_block"),
        ip("enable_stats"),
        sp("minor_branch_flag"),
        sp("tm_replication_cluster"),
    ],
};

static SL: ModuleDecl = ModuleDecl {
    name: "sl",
    functions: &[
        host(
            "sl_send_reply",
            &[req("code", K::Int), req("reason", K::Str)],
            REQ | ERROR,
        ),
        host("sl_reply_error", &[], REQ),
    ],
    params: &[ip("enable_stats")],
};

static SIGNALING: ModuleDecl = ModuleDecl {
    name: "signaling",
    functions: &[host(
        "send_reply",
        &[req("code", K::Int), req("reason", K::Str)],
        REQ | FAIL | ERROR,
    )],
    params: &[],
};

static RR: ModuleDecl = ModuleDecl {
    name: "rr",
    functions: &[
        host(
            "record_route",
            &[opt("params", K::Str)],
            REQ | BRANCH | FAIL,
        ),
        host(
            "record_route_preset",
            &[req("address", K::Str), opt("address2", K::Str)],
            REQ | BRANCH | FAIL,
        ),
        host("loose_route", &[], REQ),
    ],
    params: &[
        ip("append_fromtag"),
        ip("enable_double_rr"),
        ip("add_username"),
        ip("enable_socket_mismatch_warning"),
    ],
};

static MAXFWD: ModuleDecl = ModuleDecl {
    name: "maxfwd",
    functions: &[host(
        "mf_process_maxfwd_header",
        &[req("max_value", K::Int)],
        REQ,
    )],
    params: &[ip("max_limit")],
};

static SIPMSGOPS: ModuleDecl = ModuleDecl {
    name: "sipmsgops",
    functions: &[
        core(
            "is_method",
            &[req("methods", K::StrConst)],
            MSG,
            CoreFn::IsMethod,
        ),
        core("has_totag", &[], MSG, CoreFn::HasTotag),
        host(
            "append_hf",
            &[req("text", K::Str), opt("header", K::StrConst)],
            MSG,
        ),
        host(
            "insert_hf",
            &[req("text", K::Str), opt("header", K::StrConst)],
            MSG,
        ),
        host("remove_hf", &[req("header", K::Str)], MSG),
        host("is_present_hf", &[req("header", K::Str)], MSG),
    ],
    params: &[],
};

static TEXTOPS: ModuleDecl = ModuleDecl {
    name: "textops",
    functions: &[
        host("search", &[req("regex", K::StrConst)], MSG),
        host(
            "subst_uri",
            &[req("subst", K::StrConst)],
            REQ | FAIL | BRANCH,
        ),
    ],
    params: &[],
};

static CFGUTILS: ModuleDecl = ModuleDecl {
    name: "cfgutils",
    functions: &[
        host_async("sleep", &[req("seconds", K::Int)], ANY),
        host_async("usleep", &[req("microseconds", K::Int)], ANY),
    ],
    params: &[
        ip("initial_probability"),
        sp("hash_file"),
        sp("shvset"),
        sp("varset"),
        ip("lock_pool_size"),
    ],
};

const DB_PARAMS: &[ModParamDecl] = &[
    ap("db_url"),
    sp("avp_table"),
    ip("use_domain"),
    sp("uuid_column"),
    sp("username_column"),
    sp("domain_column"),
    sp("attribute_column"),
    sp("value_column"),
    sp("type_column"),
    ip("buf_size"),
    ip("query_timeout"),
    // ringsip: per-shard pool bounds (see docs/async.md).
    ip("pool_size"),
    ip("connect_timeout"),
    ip("max_queued_queries"),
];

static AVPOPS: ModuleDecl = ModuleDecl {
    name: "avpops",
    functions: &[host_async(
        "avp_db_query",
        &[
            req("query", K::Str),
            opt("dest", K::PvOutList),
            opt("db_id", K::Int),
        ],
        ANY,
    )],
    params: DB_PARAMS,
};

static SQLOPS: ModuleDecl = ModuleDecl {
    name: "sqlops",
    functions: &[
        host_async(
            "sql_query",
            &[
                req("query", K::Str),
                opt("dest", K::PvOutList),
                opt("db_id", K::Int),
            ],
            ANY,
        ),
        // ringsip: `?` placeholders bound to values, never spliced into the SQL text.
        host_async(
            "sql_query_params",
            &[
                req("query", K::StrConst),
                req("dest", K::PvOutList),
                req("p1", K::Str),
                opt("p2", K::Str),
                opt("p3", K::Str),
                opt("p4", K::Str),
                opt("p5", K::Str),
            ],
            ANY,
        ),
    ],
    params: DB_PARAMS,
};

static DB_MYSQL: ModuleDecl = ModuleDecl {
    name: "db_mysql",
    functions: &[],
    params: &[
        ip("exec_query_threshold"),
        ip("timeout_interval"),
        ip("max_db_queries"),
        ip("max_db_retries"),
        ip("ps_max_col_size"),
        ip("use_tls"),
        ip("pool_size"),
    ],
};

static DB_POSTGRES: ModuleDecl = ModuleDecl {
    name: "db_postgres",
    functions: &[],
    params: &[
        ip("exec_query_threshold"),
        ip("max_db_queries"),
        ip("timeout"),
        ip("use_tls"),
        ip("pool_size"),
    ],
};

static REST_CLIENT: ModuleDecl = ModuleDecl {
    name: "rest_client",
    functions: &[
        host_async(
            "rest_get",
            &[
                req("url", K::Str),
                req("body", K::PvOut),
                opt("ctype", K::PvOut),
                opt("rcode", K::PvOut),
            ],
            ANY,
        ),
        host_async(
            "rest_post",
            &[
                req("url", K::Str),
                req("send_body", K::Str),
                opt("send_ctype", K::Str),
                req("body", K::PvOut),
                opt("ctype", K::PvOut),
                opt("rcode", K::PvOut),
            ],
            ANY,
        ),
        host_async(
            "rest_put",
            &[
                req("url", K::Str),
                req("send_body", K::Str),
                opt("send_ctype", K::Str),
                req("body", K::PvOut),
                opt("ctype", K::PvOut),
                opt("rcode", K::PvOut),
            ],
            ANY,
        ),
        host("rest_append_hf", &[req("header", K::Str)], ANY),
    ],
    params: &[
        ip("connection_timeout"),
        ip("connect_poll_interval"),
        ip("curl_timeout"),
        ip("ssl_verifypeer"),
        ip("ssl_verifyhost"),
        sp("ssl_capath"),
        ip("max_async_transfers"),
        ip("max_transfer_size"),
        ip("no_concurrent_connects"),
        ip("curl_conn_lifetime"),
        ip("enable_expect_100"),
        // ringsip: the largest response body accepted; idle keep-alive connections kept
        // per server.
        ip("max_body_size"),
        ip("max_idle_connections"),
    ],
};

static EXEC: ModuleDecl = ModuleDecl {
    name: "exec",
    functions: &[host_async(
        "exec",
        &[
            req("command", K::Str),
            opt("input", K::Str),
            opt("out", K::PvOut),
            opt("err", K::PvOut),
            opt("env", K::PvIn),
        ],
        ANY,
    )],
    params: &[
        ip("setvars"),
        ip("time_to_kill"),
        // ringsip: SIGTERM→SIGKILL grace and the per-stream output bound.
        ip("kill_grace_ms"),
        ip("max_output_size"),
    ],
};

/// Every module declared here.
pub static BUILTIN_MODULES: &[&ModuleDecl] = &[
    &CORE,
    &PROTO_UDP,
    &PROTO_TCP,
    &PROTO_TLS,
    &TLS_MGM,
    &TM,
    &SL,
    &SIGNALING,
    &RR,
    &MAXFWD,
    &SIPMSGOPS,
    &TEXTOPS,
    &CFGUTILS,
    &AVPOPS,
    &SQLOPS,
    &DB_MYSQL,
    &DB_POSTGRES,
    &REST_CLIENT,
    &EXEC,
];
