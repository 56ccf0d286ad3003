//! The checker: turns the syntax tree into the compiled `Script`, resolving every name
//! (modules, module parameters, functions, routes, flags, variables) and checking arity,
//! argument kinds, read-only targets, route-type restrictions and `async()` rules.
//!
//! Invariant: it never stops at the first error; every finding goes to `Diagnostics`, and
//! a `Script` is returned only when there is no error.

use std::sync::Mutex;

use super::ast::{self, BinOp, ExprKind, Item, Literal, RouteKind, StmtKind, UnOp};
use super::decls::{
    FnDecl, FnId, FnImpl, ModId, ModParamKind, ParamKind, Registry, RouteMask, ANY, ASYNC_ROUTES,
};
use super::diag::{line_col, Diagnostics, Span};
use super::ir::*;
use super::pv::{self, FmtPart, MsgPv, Names, Pv, PvIndex, PvKind};
use super::xlog_level;

/// A successful compilation: the script and its warnings.
#[derive(Debug)]
pub struct Compiled {
    pub script: Script,
    pub warnings: Diagnostics,
}

/// Compiles a script text. `file` names it in diagnostics.
pub fn compile(file: &str, src: &str, registry: &Registry) -> Result<Compiled, Diagnostics> {
    let mut diags = Diagnostics::new(file, src);
    let (toks, expanded) = super::lexer::lex_with_expansions(src, &mut diags);
    let tree = super::parser::parse(src, toks, &expanded, &mut diags);
    let mut c = Compiler {
        reg: registry,
        src,
        diags: &mut diags,
        globals: Globals::default(),
        loaded: vec![],
        modparams: vec![],
        names: Names::default(),
        flag_names: vec![],
        route_decls: vec![],
        sites: vec![],
        edges: vec![],
        cur: 0,
        breakable: 0,
        host_calls: vec![],
        sync_host_calls: vec![],
        launching: false,
        unavailable: vec![],
    };
    let routes = c.run(&tree);
    let script = Script {
        file: file.to_owned(),
        globals: std::mem::take(&mut c.globals),
        registry: registry.clone(),
        modules: std::mem::take(&mut c.loaded),
        modparams: std::mem::take(&mut c.modparams),
        routes,
        shv: (0..c.names.shvs.len())
            .map(|_| Mutex::new(Value::Null))
            .collect(),
        names: std::mem::take(&mut c.names),
        flag_names: std::mem::take(&mut c.flag_names),
        host_calls: std::mem::take(&mut c.host_calls),
        sync_host_calls: std::mem::take(&mut c.sync_host_calls),
    };
    diags.sort();
    if diags.has_errors() {
        Err(diags)
    } else {
        Ok(Compiled {
            script,
            warnings: diags,
        })
    }
}

struct Site {
    route: usize,
    decl: &'static FnDecl,
    span: Span,
    is_async: bool,
}

struct Compiler<'a> {
    reg: &'a Registry,
    src: &'a str,
    diags: &'a mut Diagnostics,
    globals: Globals,
    loaded: Vec<ModId>,
    modparams: Vec<ModParam>,
    names: Names,
    flag_names: Vec<Box<str>>,
    route_decls: Vec<(RouteKind, Option<String>)>,
    sites: Vec<Site>,
    /// Route `from` runs route `to` in its own context (route(), async resume).
    edges: Vec<(usize, usize)>,
    cur: usize,
    breakable: u32,
    host_calls: Vec<FnId>,
    /// Host function calls outside `async()`/`launch()`, with their line and column.
    sync_host_calls: Vec<(FnId, u32, u32)>,
    /// Lowering the call of a `launch()`.
    launching: bool,
    /// Modules named by a `loadmodule` that ringsip does not have.
    unavailable: Vec<String>,
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "yes" | "on" | "true" | "1" | "enable" => Some(true),
        "no" | "off" | "false" | "0" | "disable" => Some(false),
        _ => None,
    }
}

/// Parses `[proto:]host[:port] [as host[:port]]`.
pub fn parse_socket(raw: &str) -> Result<SocketSpec, String> {
    let raw = raw.trim().trim_matches('"');
    let (main, advertised) = match raw.split_once(" as ") {
        Some((m, a)) => (m.trim(), Some(a.trim().to_owned())),
        None => (raw, None),
    };
    let (proto, rest) = match main.split_once(':') {
        Some((p, r))
            if !p.is_empty()
                && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !p.chars().all(|c| c.is_ascii_hexdigit()) =>
        {
            (p.to_ascii_lowercase(), r)
        }
        _ => ("udp".to_owned(), main),
    };
    if !matches!(
        proto.as_str(),
        "udp" | "tcp" | "tls" | "ws" | "wss" | "sctp" | "bin" | "hep_udp" | "hep_tcp"
    ) {
        return Err(format!("unknown transport `{proto}` in socket `{raw}`"));
    }
    let (host, port) = if let Some(r) = rest.strip_prefix('[') {
        let (h, p) = r
            .split_once(']')
            .ok_or_else(|| format!("unclosed `[` in socket `{raw}`"))?;
        (format!("[{h}]"), p.strip_prefix(':'))
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p)),
            None => (rest.to_owned(), None),
        }
    };
    if host.is_empty() {
        return Err(format!("missing host in socket `{raw}`"));
    }
    let port = match port {
        Some(p) => Some(
            p.parse::<u16>()
                .map_err(|_| format!("bad port `{p}` in socket `{raw}`"))?,
        ),
        None => None,
    };
    Ok(SocketSpec {
        proto,
        host,
        port,
        advertised,
    })
}

impl Compiler<'_> {
    fn run(&mut self, tree: &ast::File) -> Vec<Route> {
        // Pass 1: globals, modules, parameters and the route table.
        let mut blocks = Vec::new();
        for item in &tree.items {
            match item {
                Item::Global {
                    name,
                    name_span,
                    raw,
                    single,
                    value_span,
                } => self.global(name, *name_span, raw, single.as_ref(), *value_span),
                Item::LoadModule { path, span } => self.loadmodule(path, *span),
                Item::ModParam {
                    module,
                    module_span,
                    param,
                    param_span,
                    value,
                    value_span,
                } => self.modparam(module, *module_span, param, *param_span, value, *value_span),
                Item::Route(b) => {
                    self.declare_route(b);
                    blocks.push(b);
                }
            }
        }
        if !blocks
            .iter()
            .any(|b| b.kind == RouteKind::Request && b.name.is_none())
        {
            self.diags.error(
                Span::new(0, 0),
                "the script has no main request route `route { ... }`",
            );
        }
        // Pass 2: bodies.
        let mut routes = Vec::with_capacity(blocks.len());
        for (i, b) in blocks.iter().enumerate() {
            self.cur = i;
            let body = self.block(&b.body);
            let mut timer_interval = None;
            let mut event_async = false;
            match b.kind {
                RouteKind::Timer => match b.extra.first() {
                    Some((v, sp)) => match v.trim().parse::<u32>() {
                        Ok(n) if n > 0 => timer_interval = Some(n),
                        _ => self.diags.error(*sp, format!("timer_route interval must be a positive number of seconds, found `{v}`")),
                    },
                    None => self.diags.error(b.span, "timer_route needs an interval: `timer_route[name, seconds]`"),
                },
                RouteKind::Event => {
                    for (v, sp) in &b.extra {
                        match v.trim() {
                            "async" => event_async = true,
                            "sync" => {}
                            _ => self.diags.error(*sp, format!("unknown event_route option `{v}` (expected `sync` or `async`)")),
                        }
                    }
                }
                _ => {
                    if let Some((_, sp)) = b.extra.first() {
                        self.diags.error(*sp, format!("`{}` takes only a name", b.kind.keyword()));
                    }
                }
            }
            routes.push(Route {
                kind: b.kind,
                name: b.name.as_deref().map(Into::into),
                body,
                timer_interval,
                event_async,
                line: line_col(self.src, b.span.start as usize).0,
            });
        }
        self.check_route_types(&blocks);
        routes
    }

    fn global(
        &mut self,
        name: &str,
        name_span: Span,
        raw: &str,
        single: Option<&Literal>,
        vspan: Span,
    ) {
        let text = match single {
            Some(Literal::Str(s)) | Some(Literal::Ident(s)) => s.clone(),
            Some(Literal::Int(v)) => v.to_string(),
            None => raw.to_owned(),
        };
        let int = || match single {
            Some(Literal::Int(v)) => Some(*v),
            _ => None,
        };
        let g = &mut self.globals;
        let bad = |diags: &mut Diagnostics, what: &str| {
            diags.error(
                vspan,
                format!("global parameter `{name}` expects {what}, found `{raw}`"),
            );
        };
        match name {
            "socket" | "listen" => match parse_socket(&text) {
                Ok(s) => g.sockets.push(s),
                Err(e) => self.diags.error(vspan, e),
            },
            "log_level" | "debug" => match int() {
                Some(v) => g.log_level = i32::try_from(v).unwrap_or(4),
                None => bad(self.diags, "an integer"),
            },
            "children" | "udp_workers" | "tcp_workers" => {
                match int().and_then(|v| u32::try_from(v).ok()) {
                    Some(v) if v > 0 => {
                        if name == "tcp_workers" {
                            g.tcp_workers = Some(v);
                        } else {
                            g.udp_workers = Some(v);
                        }
                    }
                    _ => bad(self.diags, "a positive integer"),
                }
            }
            "xlog_default_level" => match int() {
                Some(v) => g.xlog_default_level = i32::try_from(v).unwrap_or(-1),
                None => match xlog_level(&text) {
                    Some(l) => g.xlog_default_level = l,
                    None => bad(self.diags, "a log level"),
                },
            },
            "mpath" => g.mpath = Some(text),
            "debug_mode" | "stderror_enabled" | "syslog_enabled" | "log_stderror"
            | "auto_aliases" => match parse_bool(&text) {
                Some(b) => match name {
                    "debug_mode" => g.debug_mode = b,
                    "stderror_enabled" | "log_stderror" => g.stderror_enabled = Some(b),
                    "syslog_enabled" => g.syslog_enabled = Some(b),
                    _ => g.auto_aliases = b,
                },
                None => bad(self.diags, "yes/no"),
            },
            "alias" => g.aliases.push(text),
            _ => {
                self.diags.warning(
                    name_span,
                    format!("global parameter `{name}` is not used by ringsip; ignored"),
                );
                g.ignored.push((name.to_owned(), raw.to_owned()));
            }
        }
    }

    fn loadmodule(&mut self, path: &str, span: Span) {
        let base = path.rsplit('/').next().unwrap_or(path);
        let name = base.strip_suffix(".so").unwrap_or(base);
        match self.reg.module(name) {
            Some((id, _)) if name != "core" => {
                if self.loaded.contains(&id) {
                    self.diags
                        .warning(span, format!("module `{name}` is loaded twice"));
                } else {
                    self.loaded.push(id);
                }
            }
            _ => {
                let known: Vec<&str> = self
                    .reg
                    .functions()
                    .map(|(_, m, _)| m)
                    .chain(super::decls::BUILTIN_MODULES.iter().map(|m| m.name))
                    .filter(|m| *m != "core")
                    .fold(Vec::new(), |mut v, m| {
                        if !v.contains(&m) {
                            v.push(m);
                        }
                        v
                    });
                self.diags.error(
                    span,
                    format!(
                        "module `{name}` is not available in ringsip (available: {})",
                        known.join(", ")
                    ),
                );
                self.unavailable.push(name.to_owned());
            }
        }
    }

    fn modparam(
        &mut self,
        module: &str,
        mspan: Span,
        param: &str,
        pspan: Span,
        value: &Literal,
        vspan: Span,
    ) {
        let Some((id, decl)) = self
            .reg
            .module(module)
            .filter(|(id, _)| self.loaded.contains(id))
        else {
            // The failed `loadmodule` was reported already.
            if !self.unavailable.iter().any(|m| m == module) {
                self.diags.error(mspan, format!("modparam for module `{module}`, which is not loaded (add `loadmodule \"{module}.so\"` before it)"));
            }
            return;
        };
        let Some(pd) = decl.params.iter().find(|p| p.name == param) else {
            let names: Vec<&str> = decl.params.iter().map(|p| p.name).collect();
            let list = if names.is_empty() {
                "none".to_owned()
            } else {
                names.join(", ")
            };
            self.diags.error(
                pspan,
                format!("module `{module}` has no parameter `{param}` (parameters: {list})"),
            );
            return;
        };
        let v = match (pd.kind, value) {
            (ModParamKind::Int | ModParamKind::Any, Literal::Int(i)) => ModParamValue::Int(*i),
            (ModParamKind::Str | ModParamKind::Any, Literal::Str(s)) => {
                ModParamValue::Str(s.clone())
            }
            (ModParamKind::Int, _) => {
                self.diags.error(
                    vspan,
                    format!("parameter `{param}` of module `{module}` is an integer"),
                );
                return;
            }
            _ => {
                self.diags.error(
                    vspan,
                    format!("parameter `{param}` of module `{module}` is a string"),
                );
                return;
            }
        };
        self.modparams.push(ModParam {
            module: id,
            module_name: decl.name,
            name: param.to_owned(),
            value: v,
        });
    }

    fn declare_route(&mut self, b: &ast::RouteBlock) {
        let needs_name = matches!(
            b.kind,
            RouteKind::Failure | RouteKind::Branch | RouteKind::Timer | RouteKind::Event
        );
        let no_name = matches!(
            b.kind,
            RouteKind::Error | RouteKind::Local | RouteKind::Startup
        );
        if needs_name && b.name.is_none() {
            self.diags.error(
                b.span,
                format!(
                    "`{}` needs a name: `{}[name]`",
                    b.kind.keyword(),
                    b.kind.keyword()
                ),
            );
        }
        if no_name && b.name.is_some() {
            self.diags
                .error(b.span, format!("`{}` takes no name", b.kind.keyword()));
        }
        if self
            .route_decls
            .iter()
            .any(|(k, n)| *k == b.kind && *n == b.name)
        {
            let what = match &b.name {
                Some(n) => format!("`{}[{n}]`", b.kind.keyword()),
                None => format!("`{}`", b.kind.keyword()),
            };
            self.diags.error(b.span, format!("{what} is defined twice"));
        }
        self.route_decls.push((b.kind, b.name.clone()));
    }

    fn find_route(&self, kind: RouteKind, name: &str) -> Option<usize> {
        self.route_decls
            .iter()
            .position(|(k, n)| *k == kind && n.as_deref() == Some(name))
    }

    fn route_ref(&mut self, kind: RouteKind, name: &str, span: Span) -> Option<RouteId> {
        match self.find_route(kind, name) {
            Some(i) => Some(RouteId(i as u16)),
            None => {
                self.diags
                    .error(span, format!("`{}[{name}]` is not defined", kind.keyword()));
                None
            }
        }
    }

    fn check_route_types(&mut self, blocks: &[&ast::RouteBlock]) {
        let n = blocks.len();
        let mut mask: Vec<RouteMask> = blocks
            .iter()
            .map(|b| match (b.kind, &b.name) {
                (RouteKind::Request, Some(_)) => 0,
                (k, _) => k.bit(),
            })
            .collect();
        for _ in 0..=n {
            let mut changed = false;
            for &(from, to) in &self.edges {
                let add = mask.get(from).copied().unwrap_or(0);
                if let Some(m) = mask.get_mut(to) {
                    if *m | add != *m {
                        *m |= add;
                        changed = true;
                    }
                }
            }
            if !changed {
                break;
            }
        }
        for m in mask.iter_mut() {
            if *m == 0 {
                *m = RouteKind::Request.bit();
            }
        }
        let kinds_of = |m: RouteMask| -> String {
            [
                RouteKind::Request,
                RouteKind::Reply,
                RouteKind::Failure,
                RouteKind::Branch,
                RouteKind::Error,
                RouteKind::Local,
                RouteKind::Startup,
                RouteKind::Timer,
                RouteKind::Event,
            ]
            .iter()
            .filter(|k| m & k.bit() != 0)
            .map(|k| k.keyword())
            .collect::<Vec<_>>()
            .join(", ")
        };
        for s in std::mem::take(&mut self.sites) {
            let m = mask.get(s.route).copied().unwrap_or(0);
            let bad = m & !s.decl.routes;
            if bad != 0 {
                self.diags.error(
                    s.span,
                    format!(
                        "`{}` cannot be used in {} (allowed in: {})",
                        s.decl.name,
                        kinds_of(bad),
                        kinds_of(s.decl.routes)
                    ),
                );
            }
            if s.is_async && m & !ASYNC_ROUTES != 0 {
                let why = if m & !ASYNC_ROUTES & RouteKind::Branch.bit() != 0 {
                    ": a branch is not held while an operation runs (OpenSIPS does not \
                     suspend branch routes either); do the lookup in the request route \
                     before t_relay()"
                } else {
                    ""
                };
                self.diags.error(
                    s.span,
                    format!(
                        "`async()` cannot be used in {} (allowed in: {}){why}",
                        kinds_of(m & !ASYNC_ROUTES),
                        kinds_of(ASYNC_ROUTES)
                    ),
                );
            }
        }
    }

    fn block(&mut self, stmts: &[ast::Stmt]) -> Box<[Stmt]> {
        let mut out = Vec::with_capacity(stmts.len());
        for s in stmts {
            self.stmt(s, &mut out);
        }
        out.into_boxed_slice()
    }

    fn stmt(&mut self, s: &ast::Stmt, out: &mut Vec<Stmt>) {
        let lowered = match &s.kind {
            StmtKind::Block(b) => {
                for x in b {
                    self.stmt(x, out);
                }
                return;
            }
            StmtKind::Expr(e) => match self.expr(e) {
                Some(Expr::Call(c)) => Stmt::Call(c),
                Some(Expr::Route(r, args)) => Stmt::Route(r, args),
                Some(_) => {
                    self.diags.error(e.span, "this expression is not a statement; expected a function call, `route(...)` or an assignment");
                    return;
                }
                None => return,
            },
            StmtKind::Assign {
                target,
                target_span,
                op,
                value,
            } => {
                let target = match pv::parse_pv(target, &mut self.names) {
                    Ok(p) => p,
                    Err(m) => {
                        self.diags.error(*target_span, m);
                        return;
                    }
                };
                if !target.writable() {
                    self.diags.error(
                        *target_span,
                        "this pseudo-variable is read-only (writable: $ru $rU $rd $rp $du $var $avp $shv, without transformations)",
                    );
                }
                if target.index == PvIndex::All {
                    self.diags.error(
                        *target_span,
                        "cannot assign to all values `[*]`; assign to `$avp(x)` or `$avp(x)[n]`",
                    );
                }
                let Some(value) = self.expr(value) else {
                    return;
                };
                Stmt::Assign {
                    target,
                    op: *op,
                    value,
                }
            }
            StmtKind::If { cond, then, els } => {
                let cond = self.expr(cond);
                let then = self.block(then);
                let els = els
                    .as_ref()
                    .map_or_else(|| Box::from([]), |e| self.block(e));
                let Some(cond) = cond else { return };
                Stmt::If { cond, then, els }
            }
            StmtKind::While { cond, body } => {
                let cond = self.expr(cond);
                self.breakable += 1;
                let body = self.block(body);
                self.breakable -= 1;
                let Some(cond) = cond else { return };
                Stmt::While { cond, body }
            }
            StmtKind::For {
                var,
                var_span,
                source,
                source_span,
                body,
            } => {
                let var = self.pv(var, *var_span);
                let source = self.pv(source, *source_span);
                if let Some(v) = &var {
                    if !v.writable() || v.index != PvIndex::None {
                        self.diags.error(
                            *var_span,
                            "the `for` variable must be a writable pseudo-variable without index",
                        );
                    }
                }
                if let Some(s) = &source {
                    if s.index != PvIndex::All || !s.trans.is_empty() {
                        self.diags.error(*source_span, "`for` iterates over all values: write `$(avp(x)[*])` or `$(hdr(X)[*])`");
                    }
                }
                self.breakable += 1;
                let body = self.block(body);
                self.breakable -= 1;
                let (Some(var), Some(source)) = (var, source) else {
                    return;
                };
                Stmt::ForEach { var, source, body }
            }
            StmtKind::Switch { subject, arms } => {
                let subject = self.expr(subject);
                let mut cases = Vec::new();
                let mut default = None;
                let mut body = Vec::new();
                self.breakable += 1;
                for arm in arms {
                    let at = body.len();
                    match &arm.value {
                        None => {
                            if default.is_some() {
                                self.diags.error(arm.span, "second `default` in `switch`");
                            }
                            default = Some(at);
                        }
                        Some(v) => match &v.kind {
                            ExprKind::Int(i) => cases.push((CaseValue::Int(*i), at)),
                            ExprKind::Str { value, .. } => {
                                cases.push((CaseValue::Str(value.as_str().into()), at))
                            }
                            _ => self
                                .diags
                                .error(v.span, "`case` value must be a constant integer or string"),
                        },
                    }
                    for st in &arm.body {
                        self.stmt(st, &mut body);
                    }
                }
                self.breakable -= 1;
                let Some(subject) = subject else { return };
                Stmt::Switch {
                    subject,
                    cases: cases.into_boxed_slice(),
                    default,
                    body: body.into_boxed_slice(),
                }
            }
            StmtKind::Return(v) => Stmt::Return(match v {
                Some(e) => match self.expr(e) {
                    Some(x) => Some(x),
                    None => return,
                },
                None => None,
            }),
            StmtKind::Exit => Stmt::Exit,
            StmtKind::Drop => Stmt::Drop,
            StmtKind::Break => {
                if self.breakable == 0 {
                    self.diags
                        .error(s.span, "`break` outside `switch` or `while`");
                }
                Stmt::Break
            }
            StmtKind::Async {
                call,
                resume,
                resume_span,
            } => {
                let c = self.call(call, true);
                let r = self.route_ref(RouteKind::Request, resume, *resume_span);
                if let Some(r) = r {
                    self.edges.push((self.cur, r.0 as usize));
                }
                match (c, r) {
                    (Some(call), Some(resume)) => Stmt::Async { call, resume },
                    _ => return,
                }
            }
            StmtKind::Launch { call, report } => {
                self.launching = true;
                let c = self.call(call, false);
                self.launching = false;
                if let Some(c) = &c {
                    if !c.decl.async_capable {
                        self.diags.error(call.name_span, format!("`{}` has no asynchronous implementation and cannot be used in `launch()`", c.decl.name));
                    }
                }
                let r = match report {
                    Some((n, sp)) => self.route_ref(RouteKind::Request, n, *sp).map(Some),
                    None => Some(None),
                };
                match (c, r) {
                    (Some(call), Some(report)) => Stmt::Launch { call, report },
                    _ => return,
                }
            }
        };
        out.push(lowered);
    }

    fn pv(&mut self, text: &str, span: Span) -> Option<Pv> {
        match pv::parse_pv(text, &mut self.names) {
            Ok(p) => Some(p),
            Err(m) => {
                self.diags.error(span, m);
                None
            }
        }
    }

    fn format(&mut self, s: &str, span: Span) -> Option<Expr> {
        match pv::split_format(s, &mut self.names) {
            Ok(parts) => Some(match &*parts {
                [] => Expr::Str("".into()),
                [FmtPart::Lit(l)] => Expr::Str(l.clone()),
                _ => Expr::Fmt(parts),
            }),
            Err(m) => {
                self.diags.error(span, m);
                None
            }
        }
    }

    fn expr(&mut self, e: &ast::Expr) -> Option<Expr> {
        Some(match &e.kind {
            ExprKind::Absent => {
                self.diags.error(e.span, "missing expression");
                return None;
            }
            ExprKind::Int(v) => Expr::Int(*v),
            // As in OpenSIPS, a string in an expression is literal; only function parameters
            // expand pseudo-variables (expressions build strings with `+`).
            ExprKind::Str { value, .. } => Expr::Str(value.as_str().into()),
            ExprKind::Null => Expr::Null,
            ExprKind::Myself => {
                self.diags
                    .error(e.span, "`myself` can only be compared: `uri == myself`");
                return None;
            }
            ExprKind::Pv(t) => Expr::Pv(self.pv(t, e.span)?),
            ExprKind::Ident(name) => {
                let legacy = match name.as_str() {
                    "uri" => Some(MsgPv::Ru),
                    "method" => Some(MsgPv::Rm),
                    "status" => Some(MsgPv::Rs),
                    "src_ip" => Some(MsgPv::Si),
                    "src_port" => Some(MsgPv::Sp),
                    "dst_ip" => Some(MsgPv::RecvIp),
                    "dst_port" => Some(MsgPv::RecvPort),
                    "proto" => Some(MsgPv::Proto),
                    "from_uri" => Some(MsgPv::Fu),
                    "to_uri" => Some(MsgPv::Tu),
                    _ => None,
                };
                match legacy {
                    Some(m) => Expr::Pv(Pv {
                        kind: PvKind::Msg(m),
                        index: PvIndex::None,
                        trans: Box::new([]),
                    }),
                    None => {
                        let call = ast::CallExpr {
                            name: name.clone(),
                            name_span: e.span,
                            args: vec![],
                            span: e.span,
                        };
                        Expr::Call(self.call(&call, false)?)
                    }
                }
            }
            ExprKind::Call(c) if c.name == "route" => {
                let Some((arg, params)) = c.args.split_first() else {
                    self.diags.error(c.span, "`route()` needs a route name");
                    return None;
                };
                let name = match &arg.kind {
                    ExprKind::Ident(n) => n.clone(),
                    ExprKind::Str { value, .. } => value.clone(),
                    ExprKind::Int(v) => v.to_string(),
                    _ => {
                        self.diags.error(arg.span, "expected a route name");
                        return None;
                    }
                };
                let r = self.route_ref(RouteKind::Request, &name, arg.span);
                let mut args = Vec::with_capacity(params.len());
                for p in params {
                    let v = match &p.kind {
                        // Parameters, unlike expression strings, expand pseudo-variables.
                        ExprKind::Str { value, .. } => self.format(value, p.span),
                        _ => self.expr(p),
                    };
                    args.extend(v);
                }
                let r = r?;
                if args.len() != params.len() {
                    return None;
                }
                self.edges.push((self.cur, r.0 as usize));
                Expr::Route(r, args.into_boxed_slice())
            }
            ExprKind::Call(c) => Expr::Call(self.call(c, false)?),
            ExprKind::Unary(op, x) => {
                let x = Box::new(self.expr(x)?);
                match op {
                    UnOp::Not => Expr::Not(x),
                    UnOp::Neg => Expr::Neg(x),
                    UnOp::BitNot => Expr::BitNot(x),
                }
            }
            ExprKind::Binary(op @ (BinOp::Eq | BinOp::Ne), l, r)
                if matches!(r.kind, ExprKind::Myself) || matches!(l.kind, ExprKind::Myself) =>
            {
                let other = if matches!(r.kind, ExprKind::Myself) {
                    l
                } else {
                    r
                };
                Expr::Myself {
                    lhs: Box::new(self.expr(other)?),
                    neg: *op == BinOp::Ne,
                }
            }
            ExprKind::Binary(op @ (BinOp::Match | BinOp::NotMatch), l, r) => {
                let lhs = self.expr(l);
                let neg = *op == BinOp::NotMatch;
                let out = match &r.kind {
                    ExprKind::Str { value, .. } => {
                        match regex::RegexBuilder::new(value)
                            .case_insensitive(true)
                            .build()
                        {
                            Ok(re) => Expr::Match {
                                lhs: Box::new(lhs?),
                                re: Box::new(re),
                                neg,
                            },
                            Err(err) => {
                                self.diags
                                    .error(r.span, format!("invalid regular expression: {err}"));
                                return None;
                            }
                        }
                    }
                    _ => {
                        let rhs = self.expr(r)?;
                        Expr::MatchDyn {
                            lhs: Box::new(lhs?),
                            rhs: Box::new(rhs),
                            neg,
                        }
                    }
                };
                out
            }
            ExprKind::Binary(op, l, r) => {
                let l = self.expr(l);
                let r = self.expr(r);
                Expr::Bin(*op, Box::new(l?), Box::new(r?))
            }
        })
    }

    /// Resolves a function call and compiles its arguments.
    fn call(&mut self, c: &ast::CallExpr, is_async: bool) -> Option<Call> {
        if matches!(
            c.name.as_str(),
            "route" | "async" | "launch" | "return" | "exit" | "drop"
        ) {
            self.diags
                .error(c.name_span, format!("`{}` cannot be used here", c.name));
            return None;
        }
        let candidates: Vec<(FnId, ModId, &'static FnDecl)> = self.reg.lookup(&c.name).collect();
        let loaded: Vec<_> = candidates
            .iter()
            .filter(|(_, m, _)| {
                self.reg.module_decl(*m).is_some_and(|d| d.name == "core")
                    || self.loaded.contains(m)
            })
            .collect();
        let Some(&&(id, _, decl)) = loaded
            .iter()
            .find(|(_, _, d)| (d.min_args()..=d.params.len()).contains(&c.args.len()))
            .or(loaded.first())
        else {
            match candidates.first() {
                Some((_, m, _)) => {
                    let m = self.reg.module_decl(*m).map_or("?", |d| d.name);
                    self.diags.error(c.name_span, format!("function `{}` is provided by module `{m}`, which is not loaded (add `loadmodule \"{m}.so\"`)", c.name));
                }
                None => self
                    .diags
                    .error(c.name_span, format!("unknown function `{}`", c.name)),
            }
            return None;
        };
        debug_assert!(
            decl.routes & ANY != 0,
            "declaration of {} allows no route",
            decl.name
        );
        let n = c.args.len();
        if n < decl.min_args() || n > decl.params.len() {
            let want = if decl.min_args() == decl.params.len() {
                format!("{}", decl.params.len())
            } else {
                format!("{} to {}", decl.min_args(), decl.params.len())
            };
            self.diags.error(
                c.span,
                format!("`{}` takes {want} argument(s), {n} given", c.name),
            );
            return None;
        }
        // A host function without an asynchronous implementation runs synchronously under
        // `async()` and the resume route runs at once (as in OpenSIPS); core statements
        // such as xlog have no place there.
        if is_async && !decl.async_capable && decl.imp != FnImpl::Host {
            self.diags.error(
                c.name_span,
                format!(
                    "`{}` has no asynchronous implementation and cannot be used in `async()`",
                    c.name
                ),
            );
        }
        if decl.imp == FnImpl::Host && !self.host_calls.contains(&id) {
            self.host_calls.push(id);
        }
        if decl.imp == FnImpl::Host && !is_async && !self.launching {
            let (line, col) = super::diag::line_col(self.src, c.name_span.start as usize);
            self.sync_host_calls.push((id, line, col));
        }
        self.sites.push(Site {
            route: self.cur,
            decl,
            span: c.name_span,
            is_async,
        });
        let mut args = Vec::with_capacity(decl.params.len());
        if decl.imp == FnImpl::Core(super::decls::CoreFn::Xlog) {
            // xlog([level,] format) -> [Int(level), format]
            let (level, fmt) = match c.args.as_slice() {
                [f] => (Some(self.globals.xlog_default_level), f),
                [l, f] => {
                    let lv = match &l.kind {
                        ExprKind::Str { value, .. } | ExprKind::Ident(value) => xlog_level(value),
                        ExprKind::Int(v) => i32::try_from(*v).ok(),
                        _ => None,
                    };
                    if lv.is_none() {
                        self.diags.error(l.span, "xlog level must be a constant: L_ALERT, L_CRIT, L_ERR, L_WARN, L_NOTICE, L_INFO or L_DBG");
                    }
                    (lv, f)
                }
                _ => (None, &c.args[0]),
            };
            args.push(CArg::Int(i64::from(level?)));
            args.push(self.arg(ParamKind::Str, "format", &c.name, fmt)?);
        } else {
            let mut ok = true;
            for (i, p) in decl.params.iter().enumerate() {
                match c.args.get(i) {
                    Some(a) if matches!(a.kind, ExprKind::Absent) => {
                        if p.optional {
                            args.push(CArg::Absent);
                        } else {
                            self.diags.error(
                                a.span,
                                format!("argument `{}` of `{}` is required", p.name, c.name),
                            );
                            ok = false;
                        }
                    }
                    Some(a) => match self.arg(p.kind, p.name, &c.name, a) {
                        Some(x) => {
                            self.check_constant(p.name, &c.name, a.span, &x);
                            args.push(x)
                        }
                        None => ok = false,
                    },
                    None if p.optional => args.push(CArg::Absent),
                    None => {
                        // A required parameter after optional ones (`rest_post(url, body, , $var(out))`).
                        self.diags.error(
                            c.span,
                            format!("argument `{}` of `{}` is required (leave optional ones empty: `a, , c`)", p.name, c.name),
                        );
                        ok = false;
                    }
                }
            }
            if !ok {
                return None;
            }
        }
        Some(Call {
            f: id,
            decl,
            imp: decl.imp,
            args: args.into_boxed_slice(),
            line: line_col(self.src, c.span.start as usize).0,
        })
    }

    /// Checks constant arguments whose meaning is fixed by the parameter: SIP status codes
    /// (`code`) and regular expressions (`regex`).
    fn check_constant(&mut self, pname: &str, fname: &str, span: Span, a: &CArg) {
        match (pname, a) {
            ("code", CArg::Int(v)) if !(100..=699).contains(v) => self.diags.error(
                span,
                format!("`{fname}`: {v} is not a SIP status code (100..699)"),
            ),
            ("regex", CArg::Str(re)) => {
                if let Err(e) = regex::Regex::new(re) {
                    self.diags
                        .error(span, format!("`{fname}`: invalid regular expression: {e}"));
                }
            }
            _ => {}
        }
    }

    fn arg(&mut self, kind: ParamKind, pname: &str, fname: &str, a: &ast::Expr) -> Option<CArg> {
        let bad = |diags: &mut Diagnostics, what: &str| {
            diags.error(
                a.span,
                format!("argument `{pname}` of `{fname}` must be {what}"),
            );
            None
        };
        match (kind, &a.kind) {
            (ParamKind::Str | ParamKind::Any, ExprKind::Str { .. } | ExprKind::Pv(_)) => {
                let e = match &a.kind {
                    ExprKind::Pv(t) => Expr::Pv(self.pv(t, a.span)?),
                    ExprKind::Str { value, .. } => self.format(value, a.span)?,
                    _ => return bad(self.diags, "a string"),
                };
                Some(match e {
                    Expr::Str(s) => CArg::Str(s),
                    Expr::Fmt(p) => CArg::Fmt(p),
                    Expr::Pv(p) => CArg::Fmt(Box::new([FmtPart::Pv(p)])),
                    _ => return bad(self.diags, "a string"),
                })
            }
            (ParamKind::Str, ExprKind::Int(v)) => Some(CArg::Str(v.to_string().into())),
            (ParamKind::Any, ExprKind::Int(v)) => Some(CArg::Int(*v)),
            (ParamKind::Str | ParamKind::Any, _) => {
                bad(self.diags, "a string, an integer or a pseudo-variable")
            }
            (ParamKind::StrConst, ExprKind::Str { value, .. }) => {
                Some(CArg::Str(value.as_str().into()))
            }
            (ParamKind::StrConst, ExprKind::Int(v)) => Some(CArg::Str(v.to_string().into())),
            (ParamKind::StrConst, _) => bad(self.diags, "a constant string"),
            (ParamKind::Int, ExprKind::Int(v)) => Some(CArg::Int(*v)),
            (ParamKind::Int, ExprKind::Str { value, .. }) => match value.trim().parse::<i64>() {
                Ok(v) => Some(CArg::Int(v)),
                Err(_) if value.trim().starts_with('$') => {
                    Some(CArg::IntPv(self.pv(value.trim(), a.span)?))
                }
                Err(_) => bad(self.diags, "an integer"),
            },
            (ParamKind::Int, ExprKind::Pv(t)) => Some(CArg::IntPv(self.pv(t, a.span)?)),
            (ParamKind::Int, _) => bad(self.diags, "an integer or a pseudo-variable"),
            (
                ParamKind::PvOut | ParamKind::PvIn | ParamKind::PvOutList,
                ExprKind::Pv(_) | ExprKind::Str { .. },
            ) => {
                let text = match &a.kind {
                    ExprKind::Pv(t) | ExprKind::Str { value: t, .. } => t.as_str(),
                    _ => "",
                };
                let mut list = Vec::new();
                for part in text.split(';').map(str::trim).filter(|s| !s.is_empty()) {
                    let p = self.pv(part, a.span)?;
                    if kind != ParamKind::PvIn && !p.writable() {
                        self.diags.error(a.span, format!("argument `{pname}` of `{fname}` must be a writable pseudo-variable; `{part}` is read-only"));
                        return None;
                    }
                    list.push(p);
                }
                match (kind, list.len()) {
                    (ParamKind::PvOutList, n) if n > 0 => {
                        Some(CArg::PvList(list.into_boxed_slice()))
                    }
                    (_, 1) => list.pop().map(CArg::Pv),
                    _ => bad(self.diags, "one pseudo-variable"),
                }
            }
            (ParamKind::PvOut | ParamKind::PvIn | ParamKind::PvOutList, _) => {
                bad(self.diags, "a pseudo-variable")
            }
            (ParamKind::Route(k), ExprKind::Ident(n) | ExprKind::Str { value: n, .. }) => {
                Some(CArg::Route(self.route_ref(k, n, a.span)?))
            }
            (ParamKind::Route(k), ExprKind::Int(v)) => {
                Some(CArg::Route(self.route_ref(k, &v.to_string(), a.span)?))
            }
            (ParamKind::Route(_), _) => bad(self.diags, "a route name"),
            (ParamKind::Flag, ExprKind::Int(v)) => match u32::try_from(*v) {
                Ok(b) if b < NAMED_FLAG_BASE => Some(CArg::Int(*v)),
                _ => bad(self.diags, "a flag number 0..31 or a flag name"),
            },
            (ParamKind::Flag, ExprKind::Ident(n) | ExprKind::Str { value: n, .. }) => {
                if let Ok(v) = n.parse::<u32>() {
                    return if v < NAMED_FLAG_BASE {
                        Some(CArg::Int(i64::from(v)))
                    } else {
                        bad(self.diags, "a flag number 0..31 or a flag name")
                    };
                }
                let idx = match self.flag_names.iter().position(|f| **f == **n) {
                    Some(i) => i,
                    None => {
                        self.flag_names.push(n.as_str().into());
                        self.flag_names.len() - 1
                    }
                };
                if idx >= 32 {
                    return bad(self.diags, "one of at most 32 named flags");
                }
                Some(CArg::Int(i64::from(NAMED_FLAG_BASE) + idx as i64))
            }
            (ParamKind::Flag, _) => bad(self.diags, "a flag name or number"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockets() {
        let s = parse_socket("udp:127.0.0.1:5060").unwrap();
        assert_eq!(
            (s.proto.as_str(), s.host.as_str(), s.port),
            ("udp", "127.0.0.1", Some(5060))
        );
        let s = parse_socket("tcp:[::1]:5070 as 1.2.3.4:5070").unwrap();
        assert_eq!(
            (s.host.as_str(), s.port, s.advertised.as_deref()),
            ("[::1]", Some(5070), Some("1.2.3.4:5070"))
        );
        let s = parse_socket("10.0.0.1").unwrap();
        assert_eq!((s.proto.as_str(), s.port), ("udp", None));
        assert!(parse_socket("udp:1.2.3.4:99999").is_err());
        assert!(parse_socket("foo:1.2.3.4:5060").is_err());
    }
}
