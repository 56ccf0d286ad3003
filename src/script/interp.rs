//! The interpreter: runs a compiled route against one message's script state
//! (`MsgState`: `$var` slots, AVP stacks, flags, `$rc`), reaching the SIP message and the
//! module functions through `ScriptHost`. Sans-io: it never blocks; `async()` makes it
//! return `Outcome::Suspended` and the owner later calls `Interpreter::resume`.
//!
//! Semantics follow OpenSIPS 3.x: a function or route returning 0 stops the script (like
//! `exit`); negative is false, positive true; `return` without value returns 1; `$var`
//! values do not survive a suspension, AVPs do.
//!
//! Invariant: strings produced while evaluating live in one reused arena that is reset per
//! statement, so a route of calls, conditions and constant arguments allocates nothing
//! once the arena has grown.

use std::fmt::Write as _;

use super::ast::{AssignOp, BinOp};
use super::decls::{CoreFn, FnDecl, FnId, FnImpl};
use super::ir::{CArg, Call, CaseValue, Expr, RouteId, Script, Stmt, Value, NAMED_FLAG_BASE};
use super::pv::{apply_str, str_to_int, FmtPart, MsgPv, Pv, PvIndex, PvKind, TransOut};

/// Most arguments a function may declare.
pub const MAX_ARGS: usize = 8;
/// Deepest nesting of `route()` calls (OpenSIPS `max_recursive_level`).
pub const MAX_ROUTE_DEPTH: u32 = 100;
/// Most iterations of one `while` (OpenSIPS `max_while_loops`).
pub const MAX_WHILE_LOOPS: u32 = 10_000;

/// An argument as a function implementation receives it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Arg<'a> {
    /// Optional parameter not given, or an integer pseudo-variable that was unset.
    Absent,
    Int(i64),
    Str(&'a str),
    Pv(&'a Pv),
    PvList(&'a [Pv]),
    Route(RouteId),
}

/// A borrowed script value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValRef<'a> {
    Null,
    Int(i64),
    Str(&'a str),
}

impl ValRef<'_> {
    pub fn to_value(self) -> Value {
        match self {
            ValRef::Null => Value::Null,
            ValRef::Int(i) => Value::Int(i),
            ValRef::Str(s) => Value::Str(s.to_owned()),
        }
    }
}

impl Value {
    pub fn as_ref(&self) -> ValRef<'_> {
        match self {
            Value::Null => ValRef::Null,
            Value::Int(i) => ValRef::Int(*i),
            Value::Str(s) => ValRef::Str(s),
        }
    }
    /// Overwrites in place, reusing the string's capacity.
    pub fn set(&mut self, v: ValRef<'_>) {
        match (self as &mut Value, v) {
            (Value::Str(s), ValRef::Str(n)) => {
                s.clear();
                s.push_str(n);
            }
            (slot, v) => *slot = v.to_value(),
        }
    }
}

/// What `ScriptHost::pv_get` produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PvGot {
    Null,
    Int(i64),
    /// The string was appended to `out`.
    Str,
}

/// How an asynchronous start went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsyncStart {
    /// The operation is in flight; the host will call `Interpreter::resume` with its `$rc`.
    Pending,
    /// It completed (or could only run) synchronously with this return code.
    Done(i32),
}

/// Everything the interpreter needs from the proxy: the message's pseudo-variables, the
/// module functions, and the local addresses (`myself`).
pub trait ScriptHost {
    /// Reads a message pseudo-variable; strings are appended to `out`.
    fn pv_get(&mut self, pv: &MsgPv, index: PvIndex, out: &mut String) -> PvGot;
    /// Writes one of the writable message pseudo-variables (`$ru $rU $rd $rp $du`);
    /// `ValRef::Null` resets it. Returns false if it could not be set.
    fn pv_set(&mut self, pv: &MsgPv, value: ValRef<'_>) -> bool;
    /// Runs a module function synchronously; returns its OpenSIPS return code.
    fn call(&mut self, f: FnId, decl: &'static FnDecl, args: &[Arg<'_>], st: &mut MsgState) -> i32;
    /// Starts a function under `async()`.
    fn call_async(
        &mut self,
        f: FnId,
        decl: &'static FnDecl,
        args: &[Arg<'_>],
        st: &mut MsgState,
    ) -> AsyncStart;
    /// Starts a function under `launch()`, detached; `report` runs when it completes.
    /// Returns the code of starting it.
    fn launch(
        &mut self,
        f: FnId,
        decl: &'static FnDecl,
        args: &[Arg<'_>],
        report: Option<RouteId>,
        st: &mut MsgState,
    ) -> i32;
    /// Whether `host` (a URI or host[:port]) is one of this proxy's addresses or aliases.
    fn is_myself(&mut self, uri: &str) -> bool;
    /// `has_totag()` answered directly from the message, when the host can do that more
    /// cheaply than through `$tt`: `Some(true)` exactly when `$tt` reads as a non-empty
    /// string. `None` (the default) makes the interpreter read `$tt`.
    fn has_totag(&mut self) -> Option<bool> {
        None
    }
}

/// The script state of one message (one transaction across suspensions).
#[derive(Debug, Clone)]
pub struct MsgState {
    vars: Vec<Value>,
    /// One stack per AVP id; the newest value is last.
    avps: Vec<Vec<Value>>,
    pub flags: u64,
    /// `$rc` / `$retcode`.
    pub rc: i32,
}

impl MsgState {
    pub fn new(script: &Script) -> MsgState {
        MsgState {
            vars: vec![Value::Null; script.names.vars.len()],
            avps: vec![Vec::new(); script.names.avps.len()],
            flags: 0,
            rc: 0,
        }
    }

    /// Clears everything for the next message, keeping allocations.
    pub fn reset(&mut self) {
        self.reset_vars();
        for a in &mut self.avps {
            a.clear();
        }
        self.flags = 0;
        self.rc = 0;
    }

    /// Clears `$var`s (they do not survive a suspension).
    pub fn reset_vars(&mut self) {
        for v in &mut self.vars {
            if let Value::Str(s) = v {
                s.clear();
            }
            *v = Value::Null;
        }
    }

    pub fn var(&self, slot: u16) -> ValRef<'_> {
        self.vars
            .get(slot as usize)
            .map_or(ValRef::Null, Value::as_ref)
    }

    pub fn set_var(&mut self, slot: u16, v: ValRef<'_>) {
        if let Some(s) = self.vars.get_mut(slot as usize) {
            s.set(v);
        }
    }

    /// Values of an AVP, newest first.
    pub fn avp_values(&self, id: u16) -> impl Iterator<Item = ValRef<'_>> {
        self.avps
            .get(id as usize)
            .into_iter()
            .flat_map(|s| s.iter().rev().map(Value::as_ref))
    }

    fn avp_pos(&self, id: u16, idx: i32) -> Option<usize> {
        let len = self.avps.get(id as usize)?.len();
        let from_newest = if idx >= 0 {
            usize::try_from(idx).ok()?
        } else {
            len.checked_sub(usize::try_from(idx.unsigned_abs()).ok()?)?
        };
        len.checked_sub(1)?.checked_sub(from_newest)
    }

    /// `$avp(x)[idx]`: `PvIndex::None` is the newest, `At(n)` counts from the newest,
    /// negative from the oldest.
    pub fn avp(&self, id: u16, idx: PvIndex) -> ValRef<'_> {
        let i = match idx {
            PvIndex::At(n) => self.avp_pos(id, n),
            _ => self.avp_pos(id, 0),
        };
        i.and_then(|i| self.avps.get(id as usize)?.get(i))
            .map_or(ValRef::Null, Value::as_ref)
    }

    /// Adds a value on top.
    pub fn avp_push(&mut self, id: u16, v: ValRef<'_>) {
        if let Some(s) = self.avps.get_mut(id as usize) {
            s.push(v.to_value());
        }
    }

    /// Deletes all values.
    pub fn avp_delete_all(&mut self, id: u16) {
        if let Some(s) = self.avps.get_mut(id as usize) {
            s.clear();
        }
    }

    fn avp_delete_at(&mut self, id: u16, idx: i32) {
        if let Some(i) = self.avp_pos(id, idx) {
            if let Some(s) = self.avps.get_mut(id as usize) {
                s.remove(i);
            }
        }
    }

    fn avp_overwrite(&mut self, id: u16, idx: i32, v: ValRef<'_>) {
        match self.avp_pos(id, idx) {
            Some(i) => {
                if let Some(slot) = self.avps.get_mut(id as usize).and_then(|s| s.get_mut(i)) {
                    slot.set(v);
                }
            }
            None if idx == 0 => self.avp_push(id, v),
            None => {}
        }
    }

    pub fn flag(&self, bit: u32) -> bool {
        bit < 64 && self.flags & (1u64 << bit) != 0
    }
    pub fn set_flag(&mut self, bit: u32, on: bool) {
        if bit < 64 {
            if on {
                self.flags |= 1u64 << bit;
            } else {
                self.flags &= !(1u64 << bit);
            }
        }
    }
}

/// Assigns a writable pseudo-variable (used by module implementations for their output
/// parameters). `=` semantics: an AVP gets a new value on top; `Null` deletes the top one.
pub fn set_pv<H: ScriptHost + ?Sized>(
    script: &Script,
    st: &mut MsgState,
    host: &mut H,
    pv: &Pv,
    v: ValRef<'_>,
) -> bool {
    assign(script, st, host, pv, AssignOp::Set, v)
}

fn assign<H: ScriptHost + ?Sized>(
    script: &Script,
    st: &mut MsgState,
    host: &mut H,
    pv: &Pv,
    op: AssignOp,
    v: ValRef<'_>,
) -> bool {
    match &pv.kind {
        // A script variable has no NULL: assigning NULL stores 0 (as OpenSIPS does).
        PvKind::Var(slot) => st.set_var(*slot, if v == ValRef::Null { ValRef::Int(0) } else { v }),
        PvKind::Avp(id) => match (op, resolve_index(st, pv.index), v) {
            (AssignOp::SetFinal, _, ValRef::Null) => st.avp_delete_all(*id),
            (AssignOp::SetFinal, _, v) => {
                st.avp_delete_all(*id);
                st.avp_push(*id, v);
            }
            (_, PvIndex::At(n), ValRef::Null) => st.avp_delete_at(*id, n),
            (_, PvIndex::At(n), v) => st.avp_overwrite(*id, n, v),
            (AssignOp::Set, _, ValRef::Null) => st.avp_delete_at(*id, 0),
            (AssignOp::Set, _, v) => st.avp_push(*id, v),
            // `+=`/`-=` computed the new value from the top one: replace it.
            (_, _, v) => st.avp_overwrite(*id, 0, v),
        },
        PvKind::Shv(id) => match script.shv.get(*id as usize) {
            Some(m) => match m.lock() {
                Ok(mut g) => g.set(v),
                Err(p) => p.into_inner().set(v),
            },
            None => return false,
        },
        PvKind::Msg(m) => return host.pv_set(m, v),
        PvKind::RetCode | PvKind::Param(_) => return false,
    }
    true
}

/// Why a run stopped early.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunError {
    #[error("route nesting deeper than {MAX_ROUTE_DEPTH} (route at line {line})")]
    RouteDepth { line: u32 },
    #[error("route id {0} does not exist in this script")]
    NoSuchRoute(u16),
}

/// How running a route ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The route ran to its end or `return`ed this code.
    Done(i32),
    /// `exit` (or a function/route returning 0).
    Exit,
    /// `drop`: the message (reply / branch) must be dropped.
    Drop,
    /// `async()` started an operation; the host calls `resume(resume, rc)` when it ends.
    Suspended {
        resume: RouteId,
    },
    Aborted(RunError),
}

/// A value during evaluation; strings are ranges in the arena.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Val {
    Null,
    Int(i64),
    Str(usize, usize),
}

/// Control flow out of a statement.
enum Flow {
    Next,
    Break,
    Return(i32),
    Exit,
    Drop,
    Suspend(RouteId),
    Abort(RunError),
}

/// Stops that propagate out of an expression (a call returning 0, `exit` in a route).
enum Stop {
    Exit,
    Drop,
    Suspend(RouteId),
    Abort(RunError),
}

impl From<Stop> for Flow {
    fn from(s: Stop) -> Flow {
        match s {
            Stop::Exit => Flow::Exit,
            Stop::Drop => Flow::Drop,
            Stop::Suspend(r) => Flow::Suspend(r),
            Stop::Abort(e) => Flow::Abort(e),
        }
    }
}

/// A compiled argument after evaluation, before borrowing the arena.
#[derive(Clone, Copy)]
enum Slot<'s> {
    Arg(Arg<'s>),
    Arena(usize, usize),
}

/// Reusable interpreter; one per shard.
#[derive(Debug, Default)]
pub struct Interpreter {
    arena: String,
    tbuf: String,
    depth: u32,
    /// `route(name, args...)` parameters of all active calls; `params_len` are in use.
    params: Vec<Value>,
    params_len: usize,
    /// The current route's parameters: `(start in params, count)`.
    frame: (usize, usize),
}

impl Interpreter {
    pub fn new() -> Interpreter {
        Interpreter {
            arena: String::with_capacity(1024),
            tbuf: String::with_capacity(256),
            depth: 0,
            params: Vec::new(),
            params_len: 0,
            frame: (0, 0),
        }
    }

    /// Runs a route from its start (the request route for a new request, an onreply route
    /// for a reply, ...).
    pub fn run<H: ScriptHost + ?Sized>(
        &mut self,
        script: &Script,
        route: RouteId,
        st: &mut MsgState,
        host: &mut H,
    ) -> Outcome {
        self.arena.clear();
        self.depth = 0;
        self.params_len = 0;
        self.frame = (0, 0);
        match self.run_route(script, route, st, host) {
            Flow::Next | Flow::Break => Outcome::Done(1),
            Flow::Return(0) | Flow::Exit => Outcome::Exit,
            Flow::Return(n) => Outcome::Done(n),
            Flow::Drop => Outcome::Drop,
            Flow::Suspend(r) => Outcome::Suspended { resume: r },
            Flow::Abort(e) => Outcome::Aborted(e),
        }
    }

    /// Runs the resume route of a finished `async()` with `$rc` = `rc`. The caller clears
    /// the request route's `$var`s (`MsgState::reset_vars`) *before* it sets the
    /// function's outputs, so that `$var` outputs reach the resume route, as in OpenSIPS.
    pub fn resume<H: ScriptHost + ?Sized>(
        &mut self,
        script: &Script,
        route: RouteId,
        rc: i32,
        st: &mut MsgState,
        host: &mut H,
    ) -> Outcome {
        st.rc = rc;
        self.run(script, route, st, host)
    }

    fn run_route<H: ScriptHost + ?Sized>(
        &mut self,
        script: &Script,
        route: RouteId,
        st: &mut MsgState,
        host: &mut H,
    ) -> Flow {
        let Some(r) = script.route_def(route) else {
            return Flow::Abort(RunError::NoSuchRoute(route.0));
        };
        if self.depth >= MAX_ROUTE_DEPTH {
            return Flow::Abort(RunError::RouteDepth { line: r.line });
        }
        self.depth += 1;
        let f = self.block(script, &r.body, st, host);
        self.depth -= 1;
        f
    }

    /// Runs a route as `route(x)` does and gives its return code (Err for a stop).
    fn call_route<H: ScriptHost + ?Sized>(
        &mut self,
        script: &Script,
        route: RouteId,
        args: &[Expr],
        st: &mut MsgState,
        host: &mut H,
    ) -> Result<i32, Stop> {
        // Arguments go on the parameter stack, reusing old slots' string capacity.
        let base = self.params_len;
        for a in args {
            let v = self.eval(script, a, st, host)?;
            let vr = val_ref(&self.arena, v);
            match self.params.get_mut(self.params_len) {
                Some(slot) => slot.set(vr),
                None => self.params.push(vr.to_value()),
            }
            self.params_len += 1;
        }
        let saved = self.frame;
        self.frame = (base, args.len());
        let flow = self.run_route(script, route, st, host);
        self.frame = saved;
        self.params_len = base;
        let rc = match flow {
            Flow::Next | Flow::Break => 1,
            Flow::Return(0) | Flow::Exit => return Err(Stop::Exit),
            Flow::Return(n) => n,
            Flow::Drop => return Err(Stop::Drop),
            Flow::Suspend(r) => return Err(Stop::Suspend(r)),
            Flow::Abort(e) => return Err(Stop::Abort(e)),
        };
        st.rc = rc;
        Ok(rc)
    }

    fn block<H: ScriptHost + ?Sized>(
        &mut self,
        script: &Script,
        body: &[Stmt],
        st: &mut MsgState,
        host: &mut H,
    ) -> Flow {
        for s in body {
            let mark = self.arena.len();
            let f = self.stmt(script, s, st, host);
            self.arena.truncate(mark);
            if !matches!(f, Flow::Next) {
                return f;
            }
        }
        Flow::Next
    }

    fn stmt<H: ScriptHost + ?Sized>(
        &mut self,
        script: &Script,
        s: &Stmt,
        st: &mut MsgState,
        host: &mut H,
    ) -> Flow {
        match s {
            Stmt::Call(c) => match self.call(script, c, st, host) {
                Ok(_) => Flow::Next,
                Err(stop) => stop.into(),
            },
            Stmt::Route(r, args) => match self.call_route(script, *r, args, st, host) {
                Ok(_) => Flow::Next,
                Err(stop) => stop.into(),
            },
            Stmt::Expr(e) => match self.eval(script, e, st, host) {
                Ok(_) => Flow::Next,
                Err(stop) => stop.into(),
            },
            Stmt::Assign { target, op, value } => {
                let v = match self.eval(script, value, st, host) {
                    Ok(v) => v,
                    Err(stop) => return stop.into(),
                };
                let v = match op {
                    AssignOp::Add | AssignOp::Sub => {
                        let cur = match self.pv(script, target, st, host) {
                            Ok(c) => c,
                            Err(stop) => return stop.into(),
                        };
                        let bop = if *op == AssignOp::Add {
                            BinOp::Add
                        } else {
                            BinOp::Sub
                        };
                        self.binop(bop, cur, v)
                    }
                    _ => v,
                };
                let vr = val_ref(&self.arena, v);
                if !assign(script, st, host, target, *op, vr) {
                    tracing::warn!(target: "script", "could not assign a pseudo-variable");
                }
                Flow::Next
            }
            Stmt::If { cond, then, els } => match self.cond(script, cond, st, host) {
                Ok(true) => self.block(script, then, st, host),
                Ok(false) => self.block(script, els, st, host),
                Err(stop) => stop.into(),
            },
            Stmt::While { cond, body } => {
                let mut n = 0u32;
                loop {
                    match self.cond(script, cond, st, host) {
                        Ok(true) => {}
                        Ok(false) => return Flow::Next,
                        Err(stop) => return stop.into(),
                    }
                    n += 1;
                    if n > MAX_WHILE_LOOPS {
                        tracing::warn!(target: "script", "while loop stopped after {MAX_WHILE_LOOPS} iterations");
                        return Flow::Next;
                    }
                    match self.block(script, body, st, host) {
                        Flow::Next => {}
                        Flow::Break => return Flow::Next,
                        other => return other,
                    }
                }
            }
            Stmt::ForEach { var, source, body } => {
                for i in 0..MAX_WHILE_LOOPS {
                    let at = PvIndex::At(i32::try_from(i).unwrap_or(i32::MAX));
                    let mark = self.arena.len();
                    let v = match self.pv_at(script, source, at, st, host) {
                        Ok(v) => v,
                        Err(stop) => return stop.into(),
                    };
                    if v == Val::Null {
                        self.arena.truncate(mark);
                        return Flow::Next;
                    }
                    assign(
                        script,
                        st,
                        host,
                        var,
                        AssignOp::Set,
                        val_ref(&self.arena, v),
                    );
                    self.arena.truncate(mark);
                    match self.block(script, body, st, host) {
                        Flow::Next => {}
                        Flow::Break => return Flow::Next,
                        other => return other,
                    }
                }
                Flow::Next
            }
            Stmt::Switch {
                subject,
                cases,
                default,
                body,
            } => {
                let v = match self.eval(script, subject, st, host) {
                    Ok(v) => v,
                    Err(stop) => return stop.into(),
                };
                let start = cases
                    .iter()
                    .find(|(c, _)| match (c, v) {
                        (CaseValue::Int(i), Val::Int(x)) => *i == x,
                        (CaseValue::Int(i), Val::Str(a, b)) => self
                            .arena
                            .get(a..b)
                            .is_some_and(|s| s.trim().parse::<i64>() == Ok(*i)),
                        (CaseValue::Str(s), Val::Str(a, b)) => self.arena.get(a..b) == Some(&**s),
                        (CaseValue::Str(s), Val::Int(x)) => s.trim().parse::<i64>() == Ok(x),
                        _ => false,
                    })
                    .map(|(_, at)| *at)
                    .or(*default);
                match start {
                    Some(at) => match self.block(script, body.get(at..).unwrap_or(&[]), st, host) {
                        Flow::Break => Flow::Next,
                        other => other,
                    },
                    None => Flow::Next,
                }
            }
            Stmt::Return(v) => {
                let rc = match v {
                    None => 1,
                    Some(e) => match self.eval(script, e, st, host) {
                        Ok(Val::Int(i)) => i32::try_from(i).unwrap_or(if i < 0 { -1 } else { 1 }),
                        Ok(Val::Str(a, b)) => {
                            i32::try_from(str_to_int(self.arena.get(a..b).unwrap_or("")))
                                .unwrap_or(1)
                        }
                        Ok(Val::Null) => -1,
                        Err(stop) => return stop.into(),
                    },
                };
                Flow::Return(rc)
            }
            Stmt::Exit => Flow::Exit,
            Stmt::Drop => Flow::Drop,
            Stmt::Break => Flow::Break,
            Stmt::Async { call, resume } => {
                let mut slots = [Slot::Arg(Arg::Absent); MAX_ARGS];
                if let Err(stop) = self.eval_args(script, call, st, host, &mut slots) {
                    return stop.into();
                }
                let args = resolve_args(&self.arena, &slots, call.args.len());
                match host.call_async(
                    call.f,
                    call.decl,
                    &args[..call.args.len().min(MAX_ARGS)],
                    st,
                ) {
                    AsyncStart::Pending => Flow::Suspend(*resume),
                    AsyncStart::Done(rc) => {
                        // No suspension happened, so `$var`s stay (unlike `resume`).
                        st.rc = rc;
                        match self.run_route(script, *resume, st, host) {
                            Flow::Abort(e) => Flow::Abort(e),
                            Flow::Drop => Flow::Drop,
                            Flow::Suspend(r) => Flow::Suspend(r),
                            _ => Flow::Exit,
                        }
                    }
                }
            }
            Stmt::Launch { call, report } => {
                let mut slots = [Slot::Arg(Arg::Absent); MAX_ARGS];
                if let Err(stop) = self.eval_args(script, call, st, host, &mut slots) {
                    return stop.into();
                }
                let args = resolve_args(&self.arena, &slots, call.args.len());
                st.rc = host.launch(
                    call.f,
                    call.decl,
                    &args[..call.args.len().min(MAX_ARGS)],
                    *report,
                    st,
                );
                Flow::Next
            }
        }
    }

    fn eval_args<'s, H: ScriptHost + ?Sized>(
        &mut self,
        script: &Script,
        call: &'s Call,
        st: &mut MsgState,
        host: &mut H,
        slots: &mut [Slot<'s>; MAX_ARGS],
    ) -> Result<(), Stop> {
        for (slot, a) in slots.iter_mut().zip(call.args.iter()) {
            *slot = self.arg_slot(script, a, st, host)?;
        }
        Ok(())
    }

    /// Evaluates a call's arguments and runs it; gives the return code, or a stop when it
    /// returned 0.
    fn call<H: ScriptHost + ?Sized>(
        &mut self,
        script: &Script,
        c: &Call,
        st: &mut MsgState,
        host: &mut H,
    ) -> Result<i32, Stop> {
        let rc = match c.imp {
            FnImpl::Core(f) => self.core(script, f, c, st, host)?,
            FnImpl::Host => {
                let mark = self.arena.len();
                let mut slots = [Slot::Arg(Arg::Absent); MAX_ARGS];
                self.eval_args(script, c, st, host, &mut slots)?;
                let n = c.args.len().min(MAX_ARGS);
                let args = resolve_args(&self.arena, &slots, n);
                let rc = host.call(c.f, c.decl, &args[..n], st);
                self.arena.truncate(mark);
                rc
            }
        };
        st.rc = rc;
        if rc == 0 {
            return Err(Stop::Exit);
        }
        Ok(rc)
    }

    fn arg_slot<'s, H: ScriptHost + ?Sized>(
        &mut self,
        script: &Script,
        a: &'s CArg,
        st: &mut MsgState,
        host: &mut H,
    ) -> Result<Slot<'s>, Stop> {
        Ok(match a {
            CArg::Absent => Slot::Arg(Arg::Absent),
            CArg::Int(v) => Slot::Arg(Arg::Int(*v)),
            CArg::Str(s) => Slot::Arg(Arg::Str(s)),
            CArg::Fmt(parts) => {
                let start = self.arena.len();
                self.format(script, parts, st, host)?;
                Slot::Arena(start, self.arena.len())
            }
            CArg::IntPv(pv) => match self.pv(script, pv, st, host)? {
                Val::Int(i) => Slot::Arg(Arg::Int(i)),
                Val::Str(a, b) => {
                    Slot::Arg(Arg::Int(str_to_int(self.arena.get(a..b).unwrap_or(""))))
                }
                Val::Null => Slot::Arg(Arg::Absent),
            },
            CArg::Pv(p) => Slot::Arg(Arg::Pv(p)),
            CArg::PvList(l) => Slot::Arg(Arg::PvList(l)),
            CArg::Route(r) => Slot::Arg(Arg::Route(*r)),
        })
    }

    fn core<H: ScriptHost + ?Sized>(
        &mut self,
        script: &Script,
        f: CoreFn,
        c: &Call,
        st: &mut MsgState,
        host: &mut H,
    ) -> Result<i32, Stop> {
        let int_arg = |i: usize| match c.args.get(i) {
            Some(CArg::Int(v)) => *v,
            _ => 0,
        };
        Ok(match f {
            CoreFn::Xlog => {
                let level = i32::try_from(int_arg(0)).unwrap_or(-1);
                if level > script.globals.log_level {
                    return Ok(1);
                }
                let start = self.arena.len();
                if let Some(CArg::Fmt(parts)) = c.args.get(1) {
                    self.format(script, parts, st, host)?;
                } else if let Some(CArg::Str(s)) = c.args.get(1) {
                    self.arena.push_str(s);
                }
                let msg = self.arena.get(start..).unwrap_or("").trim_end_matches('\n');
                match level {
                    i32::MIN..=-1 => tracing::error!(target: "xlog", line = c.line, "{msg}"),
                    0 | 1 => tracing::warn!(target: "xlog", line = c.line, "{msg}"),
                    2 | 3 => tracing::info!(target: "xlog", line = c.line, "{msg}"),
                    _ => tracing::debug!(target: "xlog", line = c.line, "{msg}"),
                }
                self.arena.truncate(start);
                1
            }
            CoreFn::SetFlag | CoreFn::ResetFlag | CoreFn::IsFlagSet => {
                let bit = u32::try_from(int_arg(0)).unwrap_or(u32::MAX);
                debug_assert!(bit < NAMED_FLAG_BASE * 2);
                match f {
                    CoreFn::SetFlag => st.set_flag(bit, true),
                    CoreFn::ResetFlag => st.set_flag(bit, false),
                    _ => return Ok(if st.flag(bit) { 1 } else { -1 }),
                }
                1
            }
            CoreFn::IsMethod => {
                let methods = match c.args.first() {
                    Some(CArg::Str(s)) => &**s,
                    _ => "",
                };
                let start = self.arena.len();
                let got = host.pv_get(&MsgPv::Rm, PvIndex::None, &mut self.arena);
                let m = self.arena.get(start..).unwrap_or("");
                let hit = got == PvGot::Str
                    && methods.split('|').any(|x| x.trim().eq_ignore_ascii_case(m));
                self.arena.truncate(start);
                if hit {
                    1
                } else {
                    -1
                }
            }
            CoreFn::HasTotag => {
                if let Some(hit) = host.has_totag() {
                    return Ok(if hit { 1 } else { -1 });
                }
                let start = self.arena.len();
                let got = host.pv_get(&MsgPv::Tt, PvIndex::None, &mut self.arena);
                let hit = got == PvGot::Str && self.arena.len() > start;
                self.arena.truncate(start);
                if hit {
                    1
                } else {
                    -1
                }
            }
        })
    }

    /// Appends a format string's expansion to the arena.
    fn format<H: ScriptHost + ?Sized>(
        &mut self,
        script: &Script,
        parts: &[FmtPart],
        st: &mut MsgState,
        host: &mut H,
    ) -> Result<(), Stop> {
        for p in parts {
            match p {
                FmtPart::Lit(l) => self.arena.push_str(l),
                FmtPart::Pv(pv) => match self.pv(script, pv, st, host)? {
                    Val::Null => self.arena.push_str("<null>"),
                    Val::Int(i) => {
                        let _ = write!(self.arena, "{i}");
                    }
                    Val::Str(..) => {} // already in place at the arena's end
                },
            }
        }
        Ok(())
    }

    /// Reads a pseudo-variable and applies its transformations. A string result is at the
    /// end of the arena.
    fn pv<H: ScriptHost + ?Sized>(
        &mut self,
        script: &Script,
        pv: &Pv,
        st: &mut MsgState,
        host: &mut H,
    ) -> Result<Val, Stop> {
        let index = resolve_index(st, pv.index);
        self.pv_at(script, pv, index, st, host)
    }

    /// `pv` read at an explicit index.
    fn pv_at<H: ScriptHost + ?Sized>(
        &mut self,
        script: &Script,
        pv: &Pv,
        index: PvIndex,
        st: &mut MsgState,
        host: &mut H,
    ) -> Result<Val, Stop> {
        let start = self.arena.len();
        let mut v = match &pv.kind {
            PvKind::Msg(m) => match host.pv_get(m, index, &mut self.arena) {
                PvGot::Null => {
                    self.arena.truncate(start);
                    Val::Null
                }
                PvGot::Int(i) => {
                    self.arena.truncate(start);
                    Val::Int(i)
                }
                PvGot::Str => Val::Str(start, self.arena.len()),
            },
            PvKind::Var(slot) => self.push_ref(st.var(*slot)),
            PvKind::Avp(id) => {
                if index == PvIndex::All {
                    let mut any = false;
                    for (i, v) in st.avp_values(*id).enumerate() {
                        if i > 0 {
                            self.arena.push(',');
                        }
                        any = true;
                        match v {
                            ValRef::Null => {}
                            ValRef::Int(n) => {
                                let _ = write!(self.arena, "{n}");
                            }
                            ValRef::Str(s) => self.arena.push_str(s),
                        }
                    }
                    if any {
                        Val::Str(start, self.arena.len())
                    } else {
                        Val::Null
                    }
                } else {
                    let r = st.avp(*id, index);
                    self.push_ref(r)
                }
            }
            PvKind::Shv(id) => match script.shv.get(*id as usize) {
                Some(m) => {
                    let g = match m.lock() {
                        Ok(g) => g,
                        Err(p) => p.into_inner(),
                    };
                    let r = g.as_ref();
                    match r {
                        ValRef::Null => Val::Null,
                        ValRef::Int(i) => Val::Int(i),
                        ValRef::Str(s) => {
                            self.arena.push_str(s);
                            Val::Str(start, self.arena.len())
                        }
                    }
                }
                None => Val::Null,
            },
            PvKind::RetCode => Val::Int(i64::from(st.rc)),
            PvKind::Param(n) => {
                let (base, count) = self.frame;
                let i = usize::from(*n);
                let r = if i <= count {
                    self.params
                        .get(base + i - 1)
                        .map_or(ValRef::Null, Value::as_ref)
                } else {
                    ValRef::Null
                };
                match r {
                    ValRef::Null => Val::Null,
                    ValRef::Int(i) => Val::Int(i),
                    ValRef::Str(s) => {
                        self.arena.push_str(s);
                        Val::Str(start, self.arena.len())
                    }
                }
            }
        };
        for t in pv.trans.iter() {
            let (a, b) = match v {
                Val::Null => return Ok(Val::Null),
                Val::Str(a, b) => (a, b),
                Val::Int(i) => {
                    let a = self.arena.len();
                    let _ = write!(self.arena, "{i}");
                    (a, self.arena.len())
                }
            };
            self.tbuf.clear();
            let resolved = t.resolve(|slot| match st.var(slot) {
                ValRef::Int(i) => i,
                ValRef::Str(s) => str_to_int(s),
                ValRef::Null => 0,
            });
            let t = resolved.as_ref().unwrap_or(t);
            let out = apply_str(t, self.arena.get(a..b).unwrap_or(""), &mut self.tbuf);
            self.arena.truncate(a);
            v = match out {
                TransOut::Int(i) => Val::Int(i),
                TransOut::Null => Val::Null,
                TransOut::Str => {
                    self.arena.push_str(&self.tbuf);
                    Val::Str(a, self.arena.len())
                }
            };
        }
        Ok(v)
    }

    fn push_ref(&mut self, r: ValRef<'_>) -> Val {
        match r {
            ValRef::Null => Val::Null,
            ValRef::Int(i) => Val::Int(i),
            ValRef::Str(s) => {
                let a = self.arena.len();
                self.arena.push_str(s);
                Val::Str(a, self.arena.len())
            }
        }
    }

    /// Truth of a condition: calls and routes are true when they return > 0; other values
    /// when non-zero / non-empty.
    fn cond<H: ScriptHost + ?Sized>(
        &mut self,
        script: &Script,
        e: &Expr,
        st: &mut MsgState,
        host: &mut H,
    ) -> Result<bool, Stop> {
        let mark = self.arena.len();
        let r = match e {
            Expr::Call(c) => Ok(self.call(script, c, st, host)? > 0),
            Expr::Route(r, args) => Ok(self.call_route(script, *r, args, st, host)? > 0),
            Expr::Not(x) => Ok(!self.cond(script, x, st, host)?),
            Expr::Bin(BinOp::And, l, r) => {
                Ok(self.cond(script, l, st, host)? && self.cond(script, r, st, host)?)
            }
            Expr::Bin(BinOp::Or, l, r) => {
                Ok(self.cond(script, l, st, host)? || self.cond(script, r, st, host)?)
            }
            _ => {
                let v = self.eval(script, e, st, host)?;
                Ok(self.truthy(v))
            }
        };
        self.arena.truncate(mark);
        r
    }

    fn truthy(&self, v: Val) -> bool {
        match v {
            Val::Null => false,
            Val::Int(i) => i != 0,
            Val::Str(a, b) => b > a,
        }
    }

    fn eval<H: ScriptHost + ?Sized>(
        &mut self,
        script: &Script,
        e: &Expr,
        st: &mut MsgState,
        host: &mut H,
    ) -> Result<Val, Stop> {
        Ok(match e {
            Expr::Int(i) => Val::Int(*i),
            Expr::Null => Val::Null,
            Expr::Str(s) => {
                let a = self.arena.len();
                self.arena.push_str(s);
                Val::Str(a, self.arena.len())
            }
            Expr::Fmt(parts) => {
                let a = self.arena.len();
                self.format(script, parts, st, host)?;
                Val::Str(a, self.arena.len())
            }
            Expr::Pv(p) => self.pv(script, p, st, host)?,
            Expr::Call(c) => Val::Int(i64::from(self.call(script, c, st, host)?)),
            Expr::Route(r, args) => {
                Val::Int(i64::from(self.call_route(script, *r, args, st, host)?))
            }
            Expr::Not(_) | Expr::Bin(BinOp::And | BinOp::Or, ..) => {
                Val::Int(i64::from(self.cond(script, e, st, host)?))
            }
            Expr::Neg(x) => match self.eval(script, x, st, host)? {
                Val::Int(i) => i.checked_neg().map_or(Val::Null, Val::Int),
                v => self
                    .as_int(v)
                    .and_then(i64::checked_neg)
                    .map_or(Val::Null, Val::Int),
            },
            Expr::BitNot(x) => {
                let v = self.eval(script, x, st, host)?;
                self.as_int(v).map_or(Val::Null, |i| Val::Int(!i))
            }
            Expr::Bin(op, l, r) => {
                let a = self.eval(script, l, st, host)?;
                let b = self.eval(script, r, st, host)?;
                self.binop(*op, a, b)
            }
            Expr::Match { lhs, re, neg } => {
                let v = self.eval(script, lhs, st, host)?;
                let hit = match v {
                    Val::Str(a, b) => re.is_match(self.arena.get(a..b).unwrap_or("")),
                    Val::Int(i) => {
                        let a = self.arena.len();
                        let _ = write!(self.arena, "{i}");
                        re.is_match(self.arena.get(a..).unwrap_or(""))
                    }
                    Val::Null => false,
                };
                Val::Int(i64::from(hit != *neg))
            }
            Expr::MatchDyn { lhs, rhs, neg } => {
                let v = self.eval(script, lhs, st, host)?;
                let r = self.eval(script, rhs, st, host)?;
                let (Some(text), Some(pat)) = (self.text(v), self.text(r)) else {
                    return Ok(Val::Int(i64::from(*neg)));
                };
                let hit = match regex::RegexBuilder::new(pat).case_insensitive(true).build() {
                    Ok(re) => re.is_match(text),
                    Err(err) => {
                        tracing::warn!(target: "script", "invalid regular expression `{pat}`: {err}");
                        false
                    }
                };
                Val::Int(i64::from(hit != *neg))
            }
            Expr::Myself { lhs, neg } => {
                let v = self.eval(script, lhs, st, host)?;
                let hit = match v {
                    Val::Str(a, b) => host.is_myself(self.arena.get(a..b).unwrap_or("")),
                    _ => false,
                };
                Val::Int(i64::from(hit != *neg))
            }
        })
    }

    fn text(&self, v: Val) -> Option<&str> {
        match v {
            Val::Str(a, b) => self.arena.get(a..b),
            _ => None,
        }
    }

    fn as_int(&self, v: Val) -> Option<i64> {
        match v {
            Val::Int(i) => Some(i),
            Val::Str(a, b) => self.arena.get(a..b).map(str_to_int),
            Val::Null => None,
        }
    }

    fn binop(&mut self, op: BinOp, a: Val, b: Val) -> Val {
        use std::cmp::Ordering;
        let bool_val = |x: bool| Val::Int(i64::from(x));
        match op {
            BinOp::Eq | BinOp::Ne | BinOp::Lt | BinOp::Gt | BinOp::Le | BinOp::Ge => {
                let ord: Option<Ordering> = match (a, b) {
                    (Val::Null, Val::Null) => Some(Ordering::Equal),
                    (Val::Null, _) | (_, Val::Null) => None,
                    (Val::Int(x), Val::Int(y)) => Some(x.cmp(&y)),
                    (Val::Int(x), Val::Str(..)) => self
                        .text(b)
                        .and_then(|s| s.trim().parse::<i64>().ok())
                        .map(|y| x.cmp(&y)),
                    (Val::Str(..), Val::Int(y)) => self
                        .text(a)
                        .and_then(|s| s.trim().parse::<i64>().ok())
                        .map(|x| x.cmp(&y)),
                    (Val::Str(..), Val::Str(..)) => {
                        Some(self.text(a).unwrap_or("").cmp(self.text(b).unwrap_or("")))
                    }
                };
                bool_val(match op {
                    BinOp::Eq => ord == Some(Ordering::Equal),
                    BinOp::Ne => ord != Some(Ordering::Equal),
                    BinOp::Lt => ord == Some(Ordering::Less),
                    BinOp::Gt => ord == Some(Ordering::Greater),
                    BinOp::Le => matches!(ord, Some(Ordering::Less | Ordering::Equal)),
                    _ => matches!(ord, Some(Ordering::Greater | Ordering::Equal)),
                })
            }
            BinOp::Add if matches!(a, Val::Str(..)) || matches!(b, Val::Str(..)) => {
                // String concatenation: build at the arena's end.
                let start = self.arena.len();
                for v in [a, b] {
                    match v {
                        Val::Null => {}
                        Val::Int(i) => {
                            let _ = write!(self.arena, "{i}");
                        }
                        Val::Str(x, y) => {
                            self.tbuf.clear();
                            self.tbuf.push_str(self.arena.get(x..y).unwrap_or(""));
                            self.arena.push_str(&self.tbuf);
                        }
                    }
                }
                Val::Str(start, self.arena.len())
            }
            _ => {
                let (Some(x), Some(y)) = (self.as_int(a), self.as_int(b)) else {
                    return Val::Null;
                };
                let r = match op {
                    BinOp::Add => x.checked_add(y),
                    BinOp::Sub => x.checked_sub(y),
                    BinOp::Mul => x.checked_mul(y),
                    BinOp::Div => x.checked_div(y),
                    BinOp::Mod => x.checked_rem(y),
                    BinOp::BitOr => Some(x | y),
                    BinOp::BitAnd => Some(x & y),
                    BinOp::BitXor => Some(x ^ y),
                    BinOp::Shl => u32::try_from(y).ok().and_then(|s| x.checked_shl(s)),
                    BinOp::Shr => u32::try_from(y).ok().and_then(|s| x.checked_shr(s)),
                    BinOp::And => Some(i64::from(x != 0 && y != 0)),
                    BinOp::Or => Some(i64::from(x != 0 || y != 0)),
                    _ => None,
                };
                match r {
                    Some(v) => Val::Int(v),
                    None => {
                        tracing::warn!(target: "script", "arithmetic overflow or division by zero ({x} {op:?} {y})");
                        Val::Null
                    }
                }
            }
        }
    }
}

/// Turns a `[$var(i)]` index into `At(i)`.
fn resolve_index(st: &MsgState, idx: PvIndex) -> PvIndex {
    match idx {
        PvIndex::Var(slot) => PvIndex::At(match st.var(slot) {
            ValRef::Int(i) => i32::try_from(i).unwrap_or(i32::MAX),
            ValRef::Str(s) => i32::try_from(str_to_int(s)).unwrap_or(i32::MAX),
            ValRef::Null => 0,
        }),
        other => other,
    }
}

fn val_ref(arena: &str, v: Val) -> ValRef<'_> {
    match v {
        Val::Null => ValRef::Null,
        Val::Int(i) => ValRef::Int(i),
        Val::Str(a, b) => ValRef::Str(arena.get(a..b).unwrap_or("")),
    }
}

// Small and called on every module-function call: kept inline so its argument array is
// built in place (when the compiler outlined it, the copy of the returned array cost
// ~350 instructions per default-script route).
#[inline(always)]
fn resolve_args<'a>(arena: &'a str, slots: &[Slot<'a>; MAX_ARGS], n: usize) -> [Arg<'a>; MAX_ARGS] {
    let mut out = [Arg::Absent; MAX_ARGS];
    for (o, s) in out.iter_mut().zip(slots.iter()).take(n) {
        *o = match *s {
            Slot::Arg(a) => a,
            Slot::Arena(a, b) => Arg::Str(arena.get(a..b).unwrap_or("")),
        };
    }
    out
}
