//! The script interpreter on a request route, with the module functions faked so that the
//! interpreter itself is measured: name-free dispatch by function id, expression and
//! condition evaluation, pseudo-variable reads, the string arena.
//!
//! Two hosts:
//! - [`FixedHost`] answers the message pseudo-variables of a typical initial INVITE from
//!   fixed strings (what `tests/script_alloc.rs` does), so only the interpreter runs.
//! - [`MessageHost`] answers them from a real parsed [`Message`] (URI parsing, From/To
//!   parsing included), and its fake `mf_process_maxfwd_header`, `record_route` and
//!   `append_hf` apply their real edits to the message; the transaction functions
//!   (`t_check_trans`, `t_relay`, `t_on_*`) only return the code a new transaction gets.
//!
//! Invariant: a run that does not end in exactly one `t_relay()` and no reply is an error
//! (the route took another path than an initial INVITE's).

use bytes::Bytes;
use ringsip::script::interp::{Arg, AsyncStart, MsgState, Outcome, PvGot, ScriptHost, ValRef};
use ringsip::script::pv::{MsgPv, PvIndex};
use ringsip::script::{
    compile, FnDecl, FnId, Interpreter, Registry, RouteId, Script, DEFAULT_SCRIPT,
};
use ringsip::sip::{parse_uri, Message, Uri};

use crate::PathError;

/// The canonical residential script (OpenSIPS distribution style) of the test suite.
pub const RESIDENTIAL_SCRIPT: &str = include_str!("../../tests/scripts/residential.cfg");

/// This proxy's domain in both scripts' runs (the INVITE's Request-URI host).
const MY_DOMAIN: &str = "biloxi.example.com";

/// What a faked module function does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fake {
    /// Returns this code and does nothing else.
    Code(i32),
    /// `t_relay`: counted, returns 1.
    Relay,
    /// `send_reply`, `sl_send_reply`, `sl_reply_error`, `t_reply`: counted, returns 1.
    Reply,
    /// `is_myself(host)`: true for [`MY_DOMAIN`].
    IsMyself,
    /// `mf_process_maxfwd_header`: decrements Max-Forwards (real edit with a message).
    MaxFwd,
    /// `record_route`: prepends our Record-Route (real edit with a message).
    RecordRoute,
    /// `append_hf(line)`: appends the header line (real edit with a message).
    AppendHf,
}

/// The faked functions by function id, bound once like the proxy's dispatch table.
fn bind_fakes(script: &Script) -> Vec<Fake> {
    let mut fakes = Vec::new();
    for (id, _module, decl) in script.registry.functions() {
        let fake = match decl.name {
            // An initial request: no transaction yet, no Route to follow.
            "t_check_trans" | "loose_route" => Fake::Code(-1),
            "t_relay" => Fake::Relay,
            "send_reply" | "sl_send_reply" | "sl_reply_error" | "t_reply" => Fake::Reply,
            "is_myself" => Fake::IsMyself,
            "mf_process_maxfwd_header" => Fake::MaxFwd,
            "record_route" => Fake::RecordRoute,
            "append_hf" => Fake::AppendHf,
            _ => Fake::Code(1),
        };
        let i = id.0 as usize;
        if fakes.len() <= i {
            fakes.resize(i + 1, Fake::Code(1));
        }
        if let Some(slot) = fakes.get_mut(i) {
            *slot = fake;
        }
    }
    fakes
}

fn first_str<'a>(args: &[Arg<'a>]) -> &'a str {
    match args.first() {
        Some(Arg::Str(s)) => s,
        _ => "",
    }
}

/// Counts of the decisions a run made.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Decisions {
    pub relays: u32,
    pub replies: u32,
}

/// Pseudo-variables of a typical initial INVITE from fixed strings.
pub struct FixedHost {
    fakes: Vec<Fake>,
    pub decisions: Decisions,
}

impl ScriptHost for FixedHost {
    fn pv_get(&mut self, pv: &MsgPv, _index: PvIndex, out: &mut String) -> PvGot {
        let s = match pv {
            MsgPv::Rm => "INVITE",
            MsgPv::Ru => "sip:bob@biloxi.example.com",
            MsgPv::RUser => "bob",
            MsgPv::Rd => MY_DOMAIN,
            MsgPv::Fu => "sip:alice@atlanta.example.com",
            MsgPv::Fd => "atlanta.example.com",
            MsgPv::Ft => "1928301774",
            MsgPv::Tu => "sip:bob@biloxi.example.com",
            MsgPv::Ci => "a84b4c76e66710@pc33.atlanta.example.com",
            MsgPv::Cs => return PvGot::Int(314159),
            _ => return PvGot::Null,
        };
        out.push_str(s);
        PvGot::Str
    }
    fn pv_set(&mut self, _pv: &MsgPv, _value: ValRef<'_>) -> bool {
        true
    }
    fn call(&mut self, f: FnId, _d: &'static FnDecl, args: &[Arg<'_>], _st: &mut MsgState) -> i32 {
        match self
            .fakes
            .get(f.0 as usize)
            .copied()
            .unwrap_or(Fake::Code(-1))
        {
            Fake::Code(rc) => rc,
            Fake::Relay => {
                self.decisions.relays += 1;
                1
            }
            Fake::Reply => {
                self.decisions.replies += 1;
                1
            }
            Fake::IsMyself => {
                if first_str(args).eq_ignore_ascii_case(MY_DOMAIN) {
                    1
                } else {
                    -1
                }
            }
            Fake::MaxFwd | Fake::RecordRoute | Fake::AppendHf => 1,
        }
    }
    fn call_async(
        &mut self,
        f: FnId,
        d: &'static FnDecl,
        args: &[Arg<'_>],
        st: &mut MsgState,
    ) -> AsyncStart {
        AsyncStart::Done(self.call(f, d, args, st))
    }
    fn launch(
        &mut self,
        f: FnId,
        d: &'static FnDecl,
        args: &[Arg<'_>],
        _report: Option<RouteId>,
        st: &mut MsgState,
    ) -> i32 {
        self.call(f, d, args, st)
    }
    fn is_myself(&mut self, uri: &str) -> bool {
        uri.contains(MY_DOMAIN)
    }
}

/// Pseudo-variables read from a parsed message; edits applied to it.
pub struct MessageHost {
    fakes: Vec<Fake>,
    raw: Bytes,
    pub msg: Message,
    pub decisions: Decisions,
}

fn put(out: &mut String, bytes: Option<&[u8]>) -> PvGot {
    match bytes.and_then(|b| std::str::from_utf8(b).ok()) {
        Some(s) => {
            out.push_str(s);
            PvGot::Str
        }
        None => PvGot::Null,
    }
}

/// User (`host == false`) or host part of a SIP URI.
fn uri_part(out: &mut String, uri: Option<&[u8]>, host: bool) -> PvGot {
    match uri.map(parse_uri) {
        Some(Ok(Uri::Sip(s))) if host => put(out, Some(s.host_text)),
        Some(Ok(Uri::Sip(s))) => put(out, s.user),
        _ => PvGot::Null,
    }
}

impl ScriptHost for MessageHost {
    fn pv_get(&mut self, pv: &MsgPv, _index: PvIndex, out: &mut String) -> PvGot {
        let m = &self.msg;
        match pv {
            MsgPv::Rm => put(out, Some(m.method_text())),
            MsgPv::Ru => put(out, m.request_uri()),
            MsgPv::RUser => uri_part(out, m.request_uri(), false),
            MsgPv::Rd => uri_part(out, m.request_uri(), true),
            MsgPv::Fu => put(out, m.from().ok().map(|n| n.uri)),
            MsgPv::Fd => uri_part(out, m.from().ok().map(|n| n.uri), true),
            MsgPv::Ft => put(out, m.from().ok().and_then(|n| n.tag())),
            MsgPv::Tu => put(out, m.to().ok().map(|n| n.uri)),
            MsgPv::Tt => put(out, m.to().ok().and_then(|n| n.tag())),
            MsgPv::Ci => put(out, m.call_id().ok()),
            MsgPv::Cs => match m.cseq() {
                Ok(c) => PvGot::Int(i64::from(c.number)),
                Err(_) => PvGot::Null,
            },
            _ => PvGot::Null,
        }
    }
    fn pv_set(&mut self, _pv: &MsgPv, _value: ValRef<'_>) -> bool {
        false
    }
    fn call(&mut self, f: FnId, _d: &'static FnDecl, args: &[Arg<'_>], _st: &mut MsgState) -> i32 {
        match self
            .fakes
            .get(f.0 as usize)
            .copied()
            .unwrap_or(Fake::Code(-1))
        {
            Fake::Code(rc) => rc,
            Fake::Relay => {
                self.decisions.relays += 1;
                1
            }
            Fake::Reply => {
                self.decisions.replies += 1;
                1
            }
            Fake::IsMyself => {
                if first_str(args).eq_ignore_ascii_case(MY_DOMAIN) {
                    1
                } else {
                    -1
                }
            }
            Fake::MaxFwd => match self.msg.decrement_max_forwards() {
                Ok(_) => 1,
                Err(_) => -1,
            },
            Fake::RecordRoute => match self.msg.prepend_record_route(b"<sip:192.0.2.1;lr>") {
                Ok(()) => 1,
                Err(_) => -1,
            },
            Fake::AppendHf => match self.msg.append_header_raw(first_str(args).as_bytes()) {
                Ok(()) => 1,
                Err(_) => -1,
            },
        }
    }
    fn call_async(
        &mut self,
        f: FnId,
        d: &'static FnDecl,
        args: &[Arg<'_>],
        st: &mut MsgState,
    ) -> AsyncStart {
        AsyncStart::Done(self.call(f, d, args, st))
    }
    fn launch(
        &mut self,
        f: FnId,
        d: &'static FnDecl,
        args: &[Arg<'_>],
        _report: Option<RouteId>,
        st: &mut MsgState,
    ) -> i32 {
        self.call(f, d, args, st)
    }
    fn is_myself(&mut self, uri: &str) -> bool {
        uri.contains(MY_DOMAIN)
    }
}

/// A compiled script, its request route, and a reusable interpreter and state.
pub struct RouteRun<H> {
    pub script: Script,
    route: RouteId,
    interp: Interpreter,
    st: MsgState,
    pub host: H,
}

fn compiled(name: &str, src: &str) -> Result<(Script, RouteId), PathError> {
    let script = compile(name, src, &Registry::builtin())
        .map_err(|d| PathError::new("script: compile", d.to_string()))?
        .script;
    let route = script
        .request_route()
        .ok_or_else(|| PathError::new("script: request route", "absent"))?;
    Ok((script, route))
}

fn check(what: &'static str, out: Outcome, d: Decisions) -> Result<(), PathError> {
    if out != Outcome::Exit || d.relays != 1 || d.replies != 0 {
        return Err(PathError::new(what, (out, d)));
    }
    Ok(())
}

impl RouteRun<FixedHost> {
    /// The embedded default script with the fixed-string host.
    pub fn default_fixed() -> Result<Self, PathError> {
        let (script, route) = compiled("default.cfg", DEFAULT_SCRIPT)?;
        let host = FixedHost {
            fakes: bind_fakes(&script),
            decisions: Decisions::default(),
        };
        Ok(RouteRun {
            st: MsgState::new(&script),
            script,
            route,
            interp: Interpreter::new(),
            host,
        })
    }

    /// Runs the request route once for a new message.
    pub fn run(&mut self) -> Result<(), PathError> {
        self.st.reset();
        self.host.decisions = Decisions::default();
        let out = self
            .interp
            .run(&self.script, self.route, &mut self.st, &mut self.host);
        check("script-default-route", out, self.host.decisions)
    }
}

/// The typical INVITE without its preloaded Route header (the residential script refuses
/// preloaded routes on initial requests).
pub fn invite_without_route() -> Vec<u8> {
    let mut v = Vec::with_capacity(crate::TYPICAL_INVITE.len());
    for line in crate::TYPICAL_INVITE.split_inclusive(|b| *b == b'\n') {
        if !line.starts_with(b"Route:") {
            v.extend_from_slice(line);
        }
    }
    v
}

impl RouteRun<MessageHost> {
    /// `src` (default or residential script) with a real message behind the
    /// pseudo-variables.
    pub fn with_message(name: &str, src: &str, msg: &[u8]) -> Result<Self, PathError> {
        let (script, route) = compiled(name, src)?;
        let raw = Bytes::copy_from_slice(msg);
        let msg = Message::parse_datagram(raw.clone())
            .map_err(|e| PathError::new("script: parse message", e))?;
        let host = MessageHost {
            fakes: bind_fakes(&script),
            raw,
            msg,
            decisions: Decisions::default(),
        };
        Ok(RouteRun {
            st: MsgState::new(&script),
            script,
            route,
            interp: Interpreter::new(),
            host,
        })
    }

    /// Parses the message afresh (no header parsed yet, no edit) and runs the request
    /// route on it once: the figure is parse + route.
    pub fn run(&mut self) -> Result<(), PathError> {
        self.st.reset();
        self.host.msg = Message::parse_datagram(self.host.raw.clone())
            .map_err(|e| PathError::new("script-message-route: parse", e))?;
        self.host.decisions = Decisions::default();
        let out = self
            .interp
            .run(&self.script, self.route, &mut self.st, &mut self.host);
        check("script-message-route", out, self.host.decisions)
    }
}
