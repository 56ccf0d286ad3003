//! What the script sees of one message on a shard: `Host` implements
//! [`ScriptHost`] — pseudo-variables read and written on the SIP message, `myself`, and
//! module functions dispatched by function id through [`Dispatch`] (bound once at start:
//! no name is looked up while a message runs).
//!
//! A `Host` lives for one route run; it borrows the shard's core (transaction table,
//! sockets) and the message being routed. What a run decides that outlives it (armed
//! `t_on_*` routes, `$du`, the transaction it created) is read back by the shard.

use std::fmt::Write as _;
use std::net::SocketAddr;

use crate::script::{
    ast::RouteKind,
    interp::{Arg, AsyncStart, MsgState, PvGot, ScriptHost, ValRef},
    pv::{MsgPv, PvIndex},
    FnDecl, FnId, FnImpl, Registry, RouteId, Script,
};
use crate::sip::{HeaderName, Message, Uri};
use crate::txn::TxnId;

use super::shard::Core;

/// A synchronous module function: OpenSIPS return code (0 stops the script).
pub type HostFn = for<'a, 'b, 'c, 'd> fn(&'a mut Host<'b>, &'c [Arg<'d>], &mut MsgState) -> i32;

/// An asynchronous module function: builds the operation's future and its deadline from
/// the arguments (the I/O starts when the shard polls it), or fails at once with a code.
pub type AsyncFn =
    for<'a, 'b, 'c, 'd> fn(
        &'a mut Host<'b>,
        &'c [Arg<'d>],
        &mut MsgState,
    ) -> Result<(super::asyncop::OpFuture, std::time::Duration), i32>;

/// Module implementations by function id.
pub struct Dispatch {
    sync: Vec<Option<HostFn>>,
    asyncs: Vec<Option<AsyncFn>>,
}

impl Dispatch {
    /// Binds every host function of the registry to its implementation, if it has one.
    pub fn bind(registry: &Registry) -> Dispatch {
        let mut sync = Vec::new();
        let mut asyncs = Vec::new();
        for (_, module, decl) in registry.functions() {
            let host = matches!(decl.imp, FnImpl::Host);
            sync.push(
                host.then(|| crate::modules::sync_fn(module, decl.name))
                    .flatten(),
            );
            asyncs.push(
                (host && decl.async_capable)
                    .then(|| crate::modules::async_fn(module, decl.name))
                    .flatten(),
            );
        }
        Dispatch { sync, asyncs }
    }

    fn sync_fn(&self, f: FnId) -> Option<HostFn> {
        self.sync.get(f.0 as usize).copied().flatten()
    }

    fn async_fn(&self, f: FnId) -> Option<AsyncFn> {
        self.asyncs.get(f.0 as usize).copied().flatten()
    }

    /// `file:line:col: ...` of every synchronous call of a function that only runs
    /// asynchronously (it does I/O, and a core never blocks): refused at start.
    pub fn sync_io_calls(&self, script: &Script) -> Vec<String> {
        script
            .sync_host_calls
            .iter()
            .filter(|(f, _, _)| self.sync_fn(*f).is_none() && self.async_fn(*f).is_some())
            .map(|(f, line, col)| {
                let n = script.registry.decl(*f).map_or("?", |d| d.name);
                format!(
                    "{}:{line}:{col}: `{n}` does I/O and must run under async() or launch() \
                     in ringsip (a core never blocks)",
                    script.file
                )
            })
            .collect()
    }

    /// `module:function` of every host function the script calls that has no
    /// implementation; the proxy refuses to start when this is not empty.
    pub fn missing(&self, script: &Script) -> Vec<String> {
        script
            .host_calls
            .iter()
            .filter(|f| self.sync_fn(**f).is_none() && self.async_fn(**f).is_none())
            .map(|f| {
                let m = script.registry.module_of(*f).unwrap_or("?");
                let n = script.registry.decl(*f).map_or("?", |d| d.name);
                format!("{m}:{n}")
            })
            .collect()
    }
}

/// Where a message came from and on which of our sockets.
#[derive(Clone, Copy, Debug)]
pub struct Rx {
    pub src: SocketAddr,
    /// Index of the listener it arrived on (public socket) — or whose own socket.
    pub listener: usize,
    pub local: SocketAddr,
}

/// Routes armed by `t_on_reply` / `t_on_failure` / `t_on_branch` during a run.
#[derive(Clone, Copy, Debug, Default)]
pub struct Armed {
    pub on_reply: Option<RouteId>,
    pub on_failure: Option<RouteId>,
    pub on_branch: Option<RouteId>,
}

/// The script's view of one message during one route run.
pub struct Host<'a> {
    pub core: &'a mut Core,
    pub msg: &'a mut Message,
    pub rx: Rx,
    pub kind: RouteKind,
    /// The transaction of this message, once `t_newtran`/`t_relay`/`async` created it.
    pub txn: Option<TxnId>,
    /// `$du`.
    pub du: Option<String>,
    /// URIs added by `append_branch()` (forked in parallel by the next `t_relay`).
    pub branches: Vec<String>,
    /// `$rs`/`$rr` in failure and reply routes (the reply under consideration).
    pub reply_status: u16,
    /// `$T_branch_idx`.
    pub branch_idx: i32,
    /// How many of the message's Route values `loose_route()` removed.
    pub routes_stripped: usize,
    pub armed: Armed,
    /// Something answered or forwarded the request in this run.
    pub acted: bool,
    /// `force_rport()` was called.
    pub force_rport: bool,
    /// An `async()` started in this run (the shard stores the continuation).
    pub suspended_op: Option<u64>,
    /// Headers queued by `rest_append_hf()` for the next REST call.
    pub rest_headers: Vec<String>,
}

impl<'a> Host<'a> {
    pub fn new(core: &'a mut Core, msg: &'a mut Message, rx: Rx, kind: RouteKind) -> Host<'a> {
        Host {
            core,
            msg,
            rx,
            kind,
            txn: None,
            du: None,
            branches: Vec::new(),
            reply_status: 0,
            branch_idx: 0,
            routes_stripped: 0,
            armed: Armed::default(),
            acted: false,
            force_rport: false,
            suspended_op: None,
            rest_headers: Vec::new(),
        }
    }

    /// The status this route looks at: the message's own for a reply, else `reply_status`.
    pub fn status(&self) -> u16 {
        self.msg.status_code().unwrap_or(self.reply_status)
    }
}

/// Writes `bytes` (lossily as UTF-8) to `out`.
fn put(out: &mut String, bytes: &[u8]) -> PvGot {
    match std::str::from_utf8(bytes) {
        Ok(s) => out.push_str(s),
        Err(_) => out.push_str(&String::from_utf8_lossy(bytes)),
    }
    PvGot::Str
}

fn put_opt(out: &mut String, bytes: Option<&[u8]>) -> PvGot {
    match bytes {
        Some(b) => put(out, b),
        None => PvGot::Null,
    }
}

/// URI parts the pseudo-variables read.
#[derive(Clone, Copy)]
enum UriPart {
    User,
    Host,
    Port,
    Transport,
}

fn uri_part(out: &mut String, uri: &[u8], part: UriPart) -> PvGot {
    let Ok(parsed) = crate::sip::parse_uri(uri) else {
        return PvGot::Null;
    };
    match (parsed, part) {
        (Uri::Sip(s), UriPart::User) => put_opt(out, s.user),
        (Uri::Sip(s), UriPart::Host) => put(out, s.host_text),
        (Uri::Sip(s), UriPart::Port) => PvGot::Int(i64::from(s.port.unwrap_or(0))),
        (Uri::Sip(s), UriPart::Transport) => match s.transport() {
            Some(t) => put(out, t),
            None => {
                out.push_str("udp");
                PvGot::Str
            }
        },
        (Uri::Tel(t), UriPart::User) => put(out, t.number),
        _ => PvGot::Null,
    }
}

/// A name-addr header (From/To): the URI, user, host, display name, or tag.
fn name_addr_pv(msg: &Message, out: &mut String, to: bool, pv: &MsgPv) -> PvGot {
    let na = if to { msg.to() } else { msg.from() };
    let Ok(na) = na else {
        return PvGot::Null;
    };
    match pv {
        MsgPv::Fu | MsgPv::Tu => put(out, na.uri),
        MsgPv::FUser | MsgPv::TUser => uri_part(out, na.uri, UriPart::User),
        MsgPv::Fd | MsgPv::Td => uri_part(out, na.uri, UriPart::Host),
        MsgPv::Fn | MsgPv::Tn => put_opt(out, na.display_name_unquoted()),
        MsgPv::Ft | MsgPv::Tt => put_opt(out, na.tag()),
        _ => PvGot::Null,
    }
}

/// Picks the value at `idx` among `values` (None = first; negative counts from the end;
/// All = all, comma-separated).
fn pick<'m>(
    out: &mut String,
    mut values: impl DoubleEndedIterator<Item = &'m [u8]>,
    idx: PvIndex,
) -> PvGot {
    match idx {
        PvIndex::None | PvIndex::Var(_) => put_opt(out, values.next()),
        PvIndex::At(n) if n >= 0 => put_opt(out, values.nth(n as usize)),
        PvIndex::At(n) => put_opt(out, values.nth_back((-(n as i64) - 1) as usize)),
        PvIndex::All => {
            let mut any = false;
            for v in values {
                if any {
                    out.push(',');
                }
                put(out, v);
                any = true;
            }
            if any {
                PvGot::Str
            } else {
                PvGot::Null
            }
        }
    }
}

/// `$time(fmt)`: strftime of the local time.
fn strftime(out: &mut String, fmt: &str) -> PvGot {
    match cores::time::strftime_local(fmt) {
        Some(s) => {
            out.push_str(&s);
            PvGot::Str
        }
        None => PvGot::Null,
    }
}

impl ScriptHost for Host<'_> {
    fn pv_get(&mut self, pv: &MsgPv, index: PvIndex, out: &mut String) -> PvGot {
        let msg = &*self.msg;
        match pv {
            MsgPv::Ru => put_opt(out, msg.request_uri()),
            MsgPv::RUser | MsgPv::Rd | MsgPv::Rp | MsgPv::RTransport => {
                let Some(ru) = msg.request_uri() else {
                    return PvGot::Null;
                };
                let part = match pv {
                    MsgPv::RUser => UriPart::User,
                    MsgPv::Rd => UriPart::Host,
                    MsgPv::Rp => UriPart::Port,
                    _ => UriPart::Transport,
                };
                match uri_part(out, ru, part) {
                    PvGot::Int(0) if matches!(part, UriPart::Port) => PvGot::Int(5060),
                    g => g,
                }
            }
            MsgPv::Ou => put_opt(out, msg.original_request_uri()),
            MsgPv::OUser => match msg.original_request_uri() {
                Some(u) => uri_part(out, u, UriPart::User),
                None => PvGot::Null,
            },
            MsgPv::Du => match &self.du {
                Some(d) => {
                    out.push_str(d);
                    PvGot::Str
                }
                None => PvGot::Null,
            },
            MsgPv::Fu | MsgPv::FUser | MsgPv::Fd | MsgPv::Fn | MsgPv::Ft => {
                name_addr_pv(msg, out, false, pv)
            }
            MsgPv::Tu | MsgPv::TUser | MsgPv::Td | MsgPv::Tn | MsgPv::Tt => {
                name_addr_pv(msg, out, true, pv)
            }
            MsgPv::Ci => put_opt(out, msg.call_id().ok()),
            MsgPv::Cs => match msg.cseq() {
                Ok(c) => PvGot::Int(i64::from(c.number)),
                Err(_) => PvGot::Null,
            },
            MsgPv::Rm => {
                if msg.is_request() {
                    put(out, msg.method_text())
                } else {
                    match msg.cseq() {
                        Ok(c) => put(out, c.method_text),
                        Err(_) => PvGot::Null,
                    }
                }
            }
            MsgPv::Rs => match self.status() {
                0 => PvGot::Null,
                s => PvGot::Int(i64::from(s)),
            },
            MsgPv::Rr => put_opt(out, msg.reason()),
            MsgPv::Si => {
                let _ = write!(out, "{}", self.rx.src.ip());
                PvGot::Str
            }
            MsgPv::Sp => PvGot::Int(i64::from(self.rx.src.port())),
            MsgPv::RecvIp => {
                let _ = write!(out, "{}", self.rx.local.ip());
                PvGot::Str
            }
            MsgPv::RecvPort => PvGot::Int(i64::from(self.rx.local.port())),
            MsgPv::Proto => {
                out.push_str("udp");
                PvGot::Str
            }
            MsgPv::Hdr(name) => {
                let lines = msg.header_lines_named(name.as_bytes());
                let all: smallvec_lines::Lines = lines.collect();
                pick(out, all.iter().copied(), index)
            }
            MsgPv::Ua => put_opt(out, msg.user_agent()),
            MsgPv::Ct => put_opt(out, msg.header(HeaderName::Contact)),
            MsgPv::Mb => put(out, msg.as_bytes()),
            MsgPv::Rb => put(out, msg.body()),
            MsgPv::Ml => PvGot::Int(msg.as_bytes().len() as i64),
            MsgPv::TBranchIdx => PvGot::Int(i64::from(self.branch_idx)),
            MsgPv::Ts => PvGot::Int(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs() as i64),
            ),
            MsgPv::Tf => strftime(out, "%a %b %e %H:%M:%S %Y"),
            MsgPv::Time(fmt) => strftime(out, fmt),
            MsgPv::Random => PvGot::Int((super::random_u64() >> 33) as i64),
        }
    }

    fn pv_set(&mut self, pv: &MsgPv, value: ValRef<'_>) -> bool {
        let text = |v: ValRef<'_>, buf: &mut String| -> bool {
            match v {
                ValRef::Null => false,
                ValRef::Int(i) => {
                    let _ = write!(buf, "{i}");
                    true
                }
                ValRef::Str(s) => {
                    buf.push_str(s);
                    true
                }
            }
        };
        let mut buf = String::new();
        match pv {
            MsgPv::Du => {
                self.du = if text(value, &mut buf) {
                    Some(buf)
                } else {
                    None
                };
                true
            }
            MsgPv::Ru => text(value, &mut buf) && self.msg.set_request_uri(buf.as_bytes()).is_ok(),
            MsgPv::RUser => {
                if text(value, &mut buf) {
                    self.msg.set_request_uri_user(Some(buf.as_bytes())).is_ok()
                } else {
                    self.msg.set_request_uri_user(None).is_ok()
                }
            }
            MsgPv::Rd => {
                text(value, &mut buf) && self.msg.set_request_uri_host(buf.as_bytes()).is_ok()
            }
            MsgPv::Rp => match value {
                ValRef::Null => self.msg.set_request_uri_port(None).is_ok(),
                ValRef::Int(i) => u16::try_from(i)
                    .ok()
                    .is_some_and(|p| self.msg.set_request_uri_port(Some(p)).is_ok()),
                ValRef::Str(s) => s
                    .trim()
                    .parse::<u16>()
                    .ok()
                    .is_some_and(|p| self.msg.set_request_uri_port(Some(p)).is_ok()),
            },
            _ => false,
        }
    }

    fn call(&mut self, f: FnId, decl: &'static FnDecl, args: &[Arg<'_>], st: &mut MsgState) -> i32 {
        match self.core.shared.dispatch.sync_fn(f) {
            Some(imp) => imp(self, args, st),
            None => {
                self.core.stats.sync_io_refused += 1;
                tracing::error!(
                    "{}() does I/O and must run under async() or launch() in ringsip \
                     (a core never blocks); returning -1",
                    decl.name
                );
                -1
            }
        }
    }

    fn call_async(
        &mut self,
        f: FnId,
        decl: &'static FnDecl,
        args: &[Arg<'_>],
        st: &mut MsgState,
    ) -> AsyncStart {
        match self.core.shared.dispatch.async_fn(f) {
            Some(imp) => match imp(self, args, st) {
                Ok((fut, timeout)) => super::asyncop::suspend(self, fut, timeout),
                Err(rc) => AsyncStart::Done(rc),
            },
            // No asynchronous implementation: run it synchronously (as OpenSIPS does);
            // the resume route runs at once.
            None => AsyncStart::Done(self.call(f, decl, args, st)),
        }
    }

    fn launch(
        &mut self,
        f: FnId,
        decl: &'static FnDecl,
        args: &[Arg<'_>],
        report: Option<RouteId>,
        st: &mut MsgState,
    ) -> i32 {
        match self.core.shared.dispatch.async_fn(f) {
            Some(imp) => match imp(self, args, st) {
                Ok((fut, timeout)) => super::asyncop::launch(self, fut, timeout, report),
                Err(rc) => rc,
            },
            // Nothing to detach: it runs now (its report route, if any, is not run:
            // there is no completion to report).
            None => self.call(f, decl, args, st),
        }
    }

    fn is_myself(&mut self, uri: &str) -> bool {
        self.core.is_myself(uri.as_bytes())
    }

    /// `$tt` non-empty, without copying the tag out: a To that does not parse or has no
    /// (or an empty) tag is `false`, as `$tt` is then null or empty.
    fn has_totag(&mut self) -> Option<bool> {
        Some(
            self.msg
                .to()
                .ok()
                .and_then(|t| t.tag())
                .is_some_and(|t| !t.is_empty()),
        )
    }
}

/// A tiny stack-first collection of header lines (most headers occur a few times).
mod smallvec_lines {
    /// Header line values, borrowed from the message.
    pub struct Lines<'m> {
        inline: [&'m [u8]; 8],
        len: usize,
        spill: Vec<&'m [u8]>,
    }

    impl<'m> FromIterator<&'m [u8]> for Lines<'m> {
        fn from_iter<I: IntoIterator<Item = &'m [u8]>>(iter: I) -> Self {
            let mut l = Lines {
                inline: [&[]; 8],
                len: 0,
                spill: Vec::new(),
            };
            for v in iter {
                if let Some(slot) = l.inline.get_mut(l.len) {
                    *slot = v;
                    l.len += 1;
                } else {
                    l.spill.push(v);
                }
            }
            l
        }
    }

    impl<'m> Lines<'m> {
        pub fn iter(&self) -> impl DoubleEndedIterator<Item = &&'m [u8]> + '_ {
            self.inline.iter().take(self.len).chain(self.spill.iter())
        }
    }
}
