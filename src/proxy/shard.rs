//! One shard: its listening sockets, its transaction table and the script state of each
//! transaction, and the path of every message it receives.
//!
//! Owns: `Core` (sockets, `TxnTable`, per-transaction `TxnCtx`, counters) and the
//! interpreter with its scratch `MsgState`. Everything is single-threaded: the shard's
//! receive, timer and task callbacks borrow it one at a time through `Rc<RefCell<Shard>>`
//! (never across an `.await`).
//!
//! Invariants: `ctxs` slot `i` is `Some` exactly while table slot `i` holds a live transaction
//! of the same generation; `ctx.dests.len()` equals the transaction's branch count; a
//! timer token names (slot, generation, sequence) so a stale one is ignored.
//!
//! Next hops that are host names (RFC 3263): `t_relay` starts the resolution as a local
//! task and counts it in `ctx.resolving`; the branch is added when it completes (never
//! after a CANCEL or the end of the transaction), or, if it failed, a branch that fails
//! at once with a transport error (so the failure route runs as for any failed branch).
//! While a resolution is pending the transaction's failure hook is armed, so the final
//! response waits for it; the failure hand-off is held until it completes. A branch that
//! fails with 503 or a local time-out and has resolved targets left is retried on the
//! next one before its failure counts (§4.3).
//!
//! RFC 3261: §8.2 / §16.3 request validation (400, 483, 505), §16.6 forwarding (our
//! Via with a branch naming this shard), §16.7 response processing (via `txn`), §16.11
//! stateless forwarding of responses by their Via, §18.2.2 where responses go (with RFC
//! 3581 `rport`), §9.1 / §17.1.1.3 CANCEL and ACK construction for a branch.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use crate::script::{
    ast::RouteKind,
    interp::{MsgState, Outcome},
    Interpreter, RouteId,
};
use crate::sip::message::Invalid;
use crate::sip::{parse_uri, write_reply, HeaderName, Message, Method, ReplySpec, Uri};
use crate::txn::{Action, BranchIdx, Event, Response, TimerId, TxnId};

use super::host::{Armed, Host, Rx};
use super::nexthop::{HostTarget, NextHopError, NextHopTarget};
use super::Shared;

/// Kernel receive buffer of each SIP socket (see `tuning/socket-buffers.md`).
const UDP_RCVBUF: usize = 8 << 20;
/// Kernel send buffer of each SIP socket.
const UDP_SNDBUF: usize = 4 << 20;

/// A message handle stored in transactions: the bytes as sent (or as received). A
/// request's is the received datagram's own buffer, shared with the parsed message the
/// transaction's context keeps (one copy of the request per transaction).
pub type Pkt = Bytes;

/// Per-shard counters (read through the management interface and by tests).
#[derive(Clone, Debug, Default)]
pub struct ProxyStats {
    pub requests: u64,
    pub responses: u64,
    pub parse_errors: u64,
    pub rejected_requests: u64,
    pub txn_created: u64,
    pub txn_table_full: u64,
    pub txn_retransmissions_absorbed: u64,
    pub branches: u64,
    pub local_replies: u64,
    pub stateless_forwards: u64,
    pub responses_relayed: u64,
    pub responses_unmatched: u64,
    pub mailbox_handoffs: u64,
    pub mailbox_full: u64,
    pub unroutable: u64,
    pub sync_io_refused: u64,
    pub script_aborts: u64,
    pub async_started: u64,
    pub async_completed: u64,
    pub async_timeouts: u64,
    pub async_orphan_resumes: u64,
    /// Retransmissions of a reply held by a suspended onreply route (absorbed: the held
    /// reply goes on once its resume route has run).
    pub held_reply_retransmissions: u64,
    /// Replies dropped because too many already waited behind a held reply.
    pub held_reply_overflow: u64,
    pub send_errors: u64,
    /// RFC 3263 resolutions started by `t_relay` for host-name next hops.
    pub dns_relays: u64,
    /// Of those, the ones that completed after the transaction was cancelled or ended.
    pub dns_relays_dropped: u64,
    /// Branches retried on the next resolved target (RFC 3263 §4.3).
    pub dns_failovers: u64,
}

impl ProxyStats {
    /// Operations started under `async()`/`launch()` and not completed yet.
    pub fn async_in_flight(&self) -> u64 {
        self.async_started.saturating_sub(self.async_completed)
    }
}

/// The sockets of one listening address on this shard.
pub struct Listener {
    /// The public address, bound by every shard with `SO_REUSEPORT`.
    pub public: cores::UdpSocket,
    pub addr: SocketAddr,
    /// This shard's own socket on the same IP: requests it forwards leave from here, so
    /// their responses come back to this shard.
    pub own: cores::UdpSocket,
    pub own_addr: SocketAddr,
    /// `addr` as text (`IP:port`, `[v6]:port`), written once so the message path does
    /// not format a socket address per message.
    pub addr_text: String,
    /// `own_addr` as text.
    pub own_text: String,
}

/// A timer of a transaction armed in the shard's wheel.
struct TimerSlot {
    timer: TimerId,
    wheel: cores::TimerId,
    deadline: Instant,
    seq: u16,
}

/// Script and routing state kept with a transaction.
pub struct TxnCtx {
    pub generation: u32,
    /// The request as the request route left it (edits included). Boxed: the context
    /// moves in and out of its slot, and a `Message` is about 2 KiB.
    pub request: Box<Message>,
    /// AVPs and flags across routes and suspensions (`None` while a route runs).
    pub state: Option<MsgState>,
    pub rx: Rx,
    /// Where responses go (RFC 3261 §18.2.2, RFC 3581).
    pub upstream: SocketAddr,
    /// To-tag of every local reply of this transaction.
    pub to_tag: String,
    pub armed: Armed,
    /// Destination of each branch, by branch index.
    pub dests: Vec<BranchDest>,
    /// RFC 3263 resolutions started by `t_relay` on this transaction, not finished.
    pub resolving: u16,
    /// The failure hand-off (`RunFailureRoute`, or the end of a failure route that
    /// relayed to a host name) waits for `resolving` to reach zero.
    failure_held: bool,
    /// Branches that failed (503, time-out) with failover targets left, to retry.
    failover_due: Vec<BranchIdx>,
    timers: Vec<TimerSlot>,
    timer_seq: u16,
    /// Route runs suspended in `async()` on this transaction, each waiting for its
    /// operation (usually none or one; a reply route may suspend while the request or
    /// failure route is suspended too).
    pub suspended: Vec<Suspension>,
}

/// A route run of a transaction suspended in `async()`, waiting for operation `op`.
pub struct Suspension {
    /// The operation's number ([`Core::op_seq`]).
    pub op: u64,
    /// The route to run when it completes.
    pub resume: RouteId,
    /// Route state that must survive the suspension (`$du`, appended branches, ...).
    pub carry: Carry,
    /// Set when an onreply route suspended: the reply, held until the resume route ran.
    pub reply: Option<Box<HeldReply>>,
}

/// A reply whose onreply route suspended in `async()`. It is neither relayed nor shown
/// to the transaction until the resume route has run; replies of the same transaction
/// that arrive meanwhile wait behind it, in order (retransmissions of it are absorbed).
pub struct HeldReply {
    /// The reply with the edits its routes made so far (our Via still on top).
    pub msg: Message,
    pub rx: Rx,
    /// The branch it belongs to.
    pub matched: crate::txn::ResponseMatch,
    pub status: u16,
    /// The onreply route still to run after the resume route (the one armed with
    /// `t_on_reply`, when the global `onreply_route` suspended).
    pub then: Option<RouteId>,
    /// Replies of this transaction received while this one is held (raw, with where
    /// they came from), processed in order once it is done.
    pub queued: Vec<(Bytes, Rx)>,
}

/// Replies of one transaction that may wait behind a held reply; past this, more are
/// dropped (and counted): a UAS retransmits what matters.
const MAX_QUEUED_REPLIES: usize = 16;

/// Where one branch of a transaction went.
#[derive(Clone, Debug, Default)]
pub struct BranchDest {
    /// `None` for a branch made up to fail (its next hop was unresolvable): nothing is
    /// sent on it.
    pub addr: Option<SocketAddr>,
    /// The next targets of the same RFC 3263 resolution, for failover (§4.3).
    pub spare: Vec<SocketAddr>,
    /// A provisional arrived on this branch (a time-out after it is no failover case:
    /// the target was reached).
    pub provisional: bool,
}

/// A next-hop resolution's result, handed back to its shard.
type Resolved = Result<Vec<SocketAddr>, super::nexthop::NextHopError>;

impl TxnCtx {
    /// Keeps what a route run left on this transaction: the message with its edits, the
    /// script state, the armed routes, and — if the run suspended in `async()` — the
    /// continuation. Returns whether it suspended.
    fn keep_run(
        &mut self,
        msg: Message,
        st: MsgState,
        armed: Armed,
        outcome: &Outcome,
        op: Option<u64>,
        carry: Carry,
    ) -> bool {
        *self.request = msg;
        self.state = Some(st);
        self.armed = armed;
        match (outcome, op) {
            (Outcome::Suspended { resume }, Some(op)) => {
                self.suspended.push(Suspension {
                    op,
                    resume: *resume,
                    carry,
                    reply: None,
                });
                true
            }
            _ => false,
        }
    }

    /// Takes the suspension waiting for operation `op`.
    fn take_suspension(&mut self, op: u64) -> Option<Suspension> {
        let pos = self.suspended.iter().position(|s| s.op == op)?;
        Some(self.suspended.swap_remove(pos))
    }

    /// The reply held by a suspended onreply route, if any.
    fn held_reply_mut(&mut self) -> Option<&mut HeldReply> {
        self.suspended
            .iter_mut()
            .find_map(|s| s.reply.as_deref_mut())
    }
}

/// What a route run decided that the resume route continues from.
#[derive(Clone, Debug, Default)]
pub struct Carry {
    /// `$du`.
    pub du: Option<String>,
    /// `append_branch()` URIs not relayed yet.
    pub branches: Vec<String>,
    /// Route values `loose_route()` removed.
    pub routes_stripped: usize,
    /// Set when the suspension happened in a failure route: its reply status. The
    /// failure hand-off then ends after the resume route.
    pub failure_status: Option<u16>,
}

impl Carry {
    fn take_from(h: &mut Host<'_>, failure_status: Option<u16>) -> Carry {
        Carry {
            du: h.du.take(),
            branches: std::mem::take(&mut h.branches),
            routes_stripped: h.routes_stripped,
            failure_status,
        }
    }

    fn give_to(self, h: &mut Host<'_>) {
        h.du = self.du;
        h.branches = self.branches;
        h.routes_stripped = self.routes_stripped;
        if let Some(s) = self.failure_status {
            h.reply_status = s;
        }
    }
}

/// Work found while executing actions that needs the interpreter.
enum Deferred {
    /// Branches of the transaction to retry on their next target (RFC 3263 §4.3).
    Failover(TxnId),
    Failure {
        id: TxnId,
        status: u16,
    },
    /// An ACK the transaction passed on (end-to-end): routed by the script.
    RouteAck(Pkt, Rx),
}

/// The shard's state apart from the interpreter.
pub struct Core {
    pub id: u16,
    pub shared: Arc<Shared>,
    pub listeners: Vec<Listener>,
    pub table: crate::txn::TxnTable<Pkt>,
    /// Script context of each live transaction, by table slot.
    pub ctxs: super::slots::Slots<TxnCtx>,
    actions: Vec<Action<Pkt>>,
    deferred: Vec<Deferred>,
    out: Vec<u8>,
    /// Where locally generated replies are written: zeroed once, reused (clearing a 64 KiB
    /// buffer per 100 Trying cost more instructions than the rest of the call).
    reply_buf: Box<[u8]>,
    scratch: String,
    pub stats: ProxyStats,
    tag_seq: u64,
    tag_salt: u64,
    /// The shard itself, for completions that come back later (async operations).
    pub me: Weak<RefCell<Shard>>,
    /// Numbers async operations.
    pub op_seq: u64,
    /// Transactions that ended while an `async()` was pending: kept until it resumes.
    orphans: Vec<(TxnId, TxnCtx)>,
    /// Runs branch routes (inside `t_relay`, while the shard's interpreter is busy).
    branch_interp: Interpreter,
}

/// One shard: core + interpreter.
pub struct Shard {
    pub core: Core,
    interp: Interpreter,
    st: MsgState,
}

thread_local! {
    static SHARD: RefCell<Option<Rc<RefCell<Shard>>>> = const { RefCell::new(None) };
}

/// Runs `f` on this thread's shard, if it has one and it is not busy.
pub fn with_shard<R>(f: impl FnOnce(&mut Shard) -> R) -> Option<R> {
    SHARD.with(|s| {
        let rc = s.borrow().clone()?;
        let mut guard = rc.try_borrow_mut().ok()?;
        Some(f(&mut guard))
    })
}

fn reason_of(status: u16) -> &'static str {
    match status {
        100 => "Trying",
        180 => "Ringing",
        183 => "Session Progress",
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        416 => "Unsupported URI Scheme",
        477 => "Send Failed",
        478 => "Unresolvable Destination",
        481 => "Call/Transaction Does Not Exist",
        483 => "Too Many Hops",
        486 => "Busy Here",
        487 => "Request Terminated",
        500 => "Server Internal Error",
        503 => "Service Unavailable",
        505 => "Version Not Supported",
        _ => "Unknown",
    }
}

impl Shard {
    /// Sets up this shard on its thread (the `cores` setup callback).
    pub fn install(id: usize, shared: Arc<Shared>) -> io::Result<()> {
        let mut listeners = Vec::new();
        for addr in &shared.listen {
            let public = cores::UdpSocket::bind(*addr, true)?;
            let own = cores::UdpSocket::bind(SocketAddr::new(addr.ip(), 0), false)?;
            for sock in [&public, &own] {
                // A burst must queue in the kernel, not be dropped (RcvbufErrors).
                if let Err(e) = sock.set_buffer_sizes(UDP_RCVBUF, UDP_SNDBUF) {
                    tracing::warn!("cannot size the socket buffers of {addr}: {e}");
                }
            }
            let (addr, own_addr) = (public.local_addr(), own.local_addr());
            listeners.push(Listener {
                addr,
                own_addr,
                addr_text: addr.to_string(),
                own_text: own_addr.to_string(),
                public,
                own,
            });
        }
        let shard_id = u16::try_from(id).map_err(|_| io::Error::other("too many shards"))?;
        let table = crate::txn::TxnTable::new(
            shard_id,
            shared.max_transactions,
            shared.branch_secret,
            shared.tm,
        )
        .map_err(|e| io::Error::other(e.to_string()))?;
        let st = MsgState::new(&shared.script);
        let shard = Rc::new(RefCell::new(Shard {
            core: Core {
                id: shard_id,
                listeners: Vec::new(),
                table,
                ctxs: super::slots::Slots::default(),
                actions: Vec::new(),
                deferred: Vec::new(),
                out: Vec::with_capacity(65536),
                reply_buf: vec![0; crate::sip::message::MAX_MESSAGE_LEN].into_boxed_slice(),
                scratch: String::with_capacity(256),
                stats: ProxyStats::default(),
                tag_seq: 0,
                tag_salt: super::random_u64(),
                me: Weak::new(),
                op_seq: 0,
                orphans: Vec::new(),
                branch_interp: Interpreter::new(),
                shared,
            },
            interp: Interpreter::new(),
            st,
        }));
        for (i, l) in listeners.iter().enumerate() {
            for sock in [&l.public, &l.own] {
                let weak = Rc::downgrade(&shard);
                let local = sock.local_addr();
                sock.recv_with(move |_, data, src| {
                    if let Some(s) = weak.upgrade() {
                        if let Ok(mut s) = s.try_borrow_mut() {
                            s.on_datagram(
                                data,
                                Rx {
                                    src,
                                    listener: i,
                                    local,
                                },
                            );
                        }
                    }
                })?;
            }
        }
        let weak = Rc::downgrade(&shard);
        cores::set_timer_handler(move |_, token| {
            if let Some(s) = weak.upgrade() {
                if let Ok(mut s) = s.try_borrow_mut() {
                    s.on_timer(token);
                }
            }
        });
        {
            let mut s = shard.borrow_mut();
            s.core.listeners = listeners;
            s.core.me = Rc::downgrade(&shard);
        }
        SHARD.with(|slot| *slot.borrow_mut() = Some(shard));
        if id == 0 {
            tracing::info!(
                "ringsip ready on {:?} ({} backend)",
                "udp",
                cores::backend_name()
            );
        }
        Ok(())
    }

    /// Every datagram on any of this shard's sockets.
    pub fn on_datagram(&mut self, data: &[u8], rx: Rx) {
        let mut msg = match Message::parse_datagram(Bytes::copy_from_slice(data)) {
            Ok(m) => m,
            Err(e) => {
                self.core.stats.parse_errors += 1;
                tracing::debug!("unparsable datagram from {}: {e}", rx.src);
                return;
            }
        };
        if msg.is_request() {
            self.on_request(msg, rx);
        } else {
            self.on_response(&mut msg, rx);
        }
    }

    fn on_request(&mut self, mut msg: Message, rx: Rx) {
        let core = &mut self.core;
        core.stats.requests += 1;
        if let Err(e) = check_request(&msg) {
            core.stats.rejected_requests += 1;
            let code = e.status_code();
            core.reply_stateless(&msg, rx, code, reason_of(code));
            return;
        }
        if let Err(missing) = msg.check_mandatory() {
            core.stats.rejected_requests += 1;
            tracing::debug!("request from {} lacks {:?}", rx.src, missing.0);
            core.reply_stateless(&msg, rx, 400, "Missing Mandatory Header");
            return;
        }
        // Transaction matching (RFC 3261 §17.2.3; ACK and CANCEL find their INVITE).
        if let Some(id) = core.match_request(&msg) {
            let pkt: Pkt = msg.buffer().clone();
            let event = match msg.method() {
                Some(Method::Ack) => Event::Ack { ack: pkt },
                Some(Method::Cancel) => Event::Cancel { cancel: pkt },
                _ => {
                    core.stats.txn_retransmissions_absorbed += 1;
                    Event::RequestRetransmit
                }
            };
            let now = cores::now();
            if core.table.handle(id, event, now, &mut core.actions).is_ok() {
                core.run_actions(id);
            }
            self.run_deferred();
            return;
        }
        let Some(route) = self.core.shared.script.request_route() else {
            return;
        };
        self.st.reset();
        let script = Arc::clone(&self.core.shared.script);
        let mut host = Host::new(&mut self.core, &mut msg, rx, RouteKind::Request);
        let outcome = self.interp.run(&script, route, &mut self.st, &mut host);
        let carry = Carry::take_from(&mut host, None);
        let (txn, armed, op) = (host.txn, host.armed, host.suspended_op);
        if let Outcome::Aborted(e) = &outcome {
            self.core.stats.script_aborts += 1;
            tracing::error!("request route aborted: {e}");
        }
        if let Some(id) = txn {
            let st = self.st.clone();
            if let Some(ctx) = self.core.ctx_mut(id) {
                ctx.keep_run(msg, st, armed, &outcome, op, carry);
            }
        }
        self.run_deferred();
    }

    fn on_response(&mut self, msg: &mut Message, rx: Rx) {
        self.core.stats.responses += 1;
        self.route_response(msg, rx);
    }

    /// A response's path: to the shard that owns its transaction, to the transaction's
    /// onreply routes, or forwarded statelessly when it matches none. The reply is
    /// borrowed along this path (a `Message` is about 2 KiB; moving it costs a copy) and
    /// copied only when an onreply route suspends and holds it.
    fn route_response(&mut self, msg: &mut Message, rx: Rx) {
        let core = &mut self.core;
        let Some(status) = msg.status_code() else {
            return;
        };
        // The branch is looked at while the message is borrowed; only the owner and the
        // match (both Copy) outlive that.
        let (other_owner, matched) = match (msg.top_via(), msg.cseq()) {
            (Ok(v), Ok(c)) => {
                let branch = v
                    .branch
                    .and_then(|b| std::str::from_utf8(b).ok())
                    .unwrap_or("");
                match crate::txn::shard_of_branch(branch) {
                    Some(owner) if owner != core.id => (Some(owner), None),
                    _ => (None, core.table.match_response(branch, c.method.as_str())),
                }
            }
            _ => {
                core.stats.parse_errors += 1;
                return;
            }
        };
        if let Some(owner) = other_owner {
            core.hand_over(owner, msg.as_bytes(), rx);
            return;
        }
        let Some(m) = matched else {
            core.stats.responses_unmatched += 1;
            core.forward_response_stateless(msg, rx);
            return;
        };
        if m.cancel {
            // The response to a CANCEL of ours: no onreply route runs for it.
            self.relay_reply(m, status, msg);
            return;
        }
        // A reply held by a suspended onreply route goes first: this one waits behind it,
        // unless it is a retransmission of a reply already waiting.
        if let Some(held) = self.core.ctx_mut(m.txn).and_then(TxnCtx::held_reply_mut) {
            let bytes = msg.as_bytes();
            let (retransmission, overflow) =
                if held.msg.as_bytes() == bytes || held.queued.iter().any(|(b, _)| b == bytes) {
                    (1, 0)
                } else if held.queued.len() >= MAX_QUEUED_REPLIES {
                    (0, 1)
                } else {
                    held.queued.push((msg.buffer().clone(), rx));
                    (0, 0)
                };
            let stats = &mut self.core.stats;
            stats.held_reply_retransmissions += retransmission;
            stats.held_reply_overflow += overflow;
            return;
        }
        // onreply_route: the global one first, then the one armed by t_on_reply (OpenSIPS
        // runs both).
        let script = Arc::clone(&self.core.shared.script);
        let armed = self.core.ctx_mut(m.txn).and_then(|c| c.armed.on_reply);
        let global = script.route(RouteKind::Reply, None);
        self.reply_routes(m, status, msg, rx, [global, armed], Vec::new());
    }

    /// Runs onreply routes (`routes`, in order) on reply `msg` of transaction branch `m`,
    /// then hands the reply to its transaction — unless a route dropped it (provisional
    /// replies only, as in OpenSIPS) or suspended in `async()`, which holds it until its
    /// resume route has run ([`Shard::resume`]). `queued` are replies that waited behind
    /// this one: they are processed afterwards, in order.
    fn reply_routes(
        &mut self,
        m: crate::txn::ResponseMatch,
        status: u16,
        msg: &mut Message,
        rx: Rx,
        routes: [Option<RouteId>; 2],
        queued: Vec<(Bytes, Rx)>,
    ) {
        let id = m.txn;
        let script = Arc::clone(&self.core.shared.script);
        for (i, route) in routes.iter().enumerate() {
            let Some(route) = *route else {
                continue;
            };
            let Some(mut st) = self.core.ctx_mut(id).and_then(|c| c.state.take()) else {
                break;
            };
            // `$var`s of the request route are not visible in a reply route.
            st.reset_vars();
            let mut host = Host::new(&mut self.core, msg, rx, RouteKind::Reply);
            host.txn = Some(id);
            host.branch_idx = i32::from(m.branch.0);
            let outcome = self.interp.run(&script, route, &mut st, &mut host);
            let op = host.suspended_op;
            if let Outcome::Aborted(e) = &outcome {
                self.core.stats.script_aborts += 1;
                tracing::error!("onreply route aborted: {e}");
            }
            let Some(ctx) = self.core.ctx_mut(id) else {
                return;
            };
            ctx.state = Some(st);
            match (outcome, op) {
                (Outcome::Suspended { resume }, Some(op)) => {
                    let then = if i == 0 { routes[1] } else { None };
                    ctx.suspended.push(Suspension {
                        op,
                        resume,
                        carry: Carry::default(),
                        reply: Some(Box::new(HeldReply {
                            msg: msg.clone(),
                            rx,
                            matched: m,
                            status,
                            then,
                            queued,
                        })),
                    });
                    return;
                }
                (Outcome::Drop, _) if status < 200 => {
                    self.release_queued(queued);
                    return;
                }
                _ => {}
            }
        }
        self.relay_reply(m, status, msg);
        self.release_queued(queued);
    }

    /// Hands a reply (its onreply routes done) to its transaction, which relays or
    /// absorbs it (RFC 3261 §16.7).
    fn relay_reply(&mut self, m: crate::txn::ResponseMatch, status: u16, msg: &mut Message) {
        let id = m.txn;
        let core = &mut self.core;
        if msg.strip_top_via().is_err() {
            return;
        }
        core.out.clear();
        msg.write_to(&mut core.out);
        let pkt: Pkt = Bytes::copy_from_slice(&core.out);
        let now = cores::now();
        if core
            .table
            .handle(id, m.into_event(status, pkt), now, &mut core.actions)
            .is_ok()
        {
            core.run_actions(id);
        }
        self.run_deferred();
    }

    /// Processes replies that waited behind a held one, in order (each may be held in
    /// turn, and the ones after it then wait again).
    fn release_queued(&mut self, queued: Vec<(Bytes, Rx)>) {
        for (bytes, rx) in queued {
            match Message::parse_datagram(bytes) {
                Ok(mut msg) => self.route_response(&mut msg, rx),
                Err(e) => tracing::debug!("queued reply no longer parses: {e}"),
            }
        }
    }

    /// A token timer fired: (slot, generation, sequence).
    fn on_timer(&mut self, token: u64) {
        let index = (token >> 32) as u32;
        let gen16 = ((token >> 16) & 0xffff) as u32;
        let seq = (token & 0xffff) as u16;
        let core = &mut self.core;
        let Some(Some(ctx)) = core.ctxs.get_mut(index as usize) else {
            return;
        };
        if ctx.generation & 0xffff != gen16 {
            return;
        }
        let Some(pos) = ctx.timers.iter().position(|t| t.seq == seq) else {
            return;
        };
        let slot = ctx.timers.swap_remove(pos);
        let id = TxnId {
            index,
            generation: ctx.generation,
        };
        let now = cores::now().max(slot.deadline);
        if core
            .table
            .handle(id, Event::Timer(slot.timer), now, &mut core.actions)
            .is_ok()
        {
            core.run_actions(id);
        }
        self.run_deferred();
    }

    /// Runs the failure routes and end-to-end ACK routes queued by actions.
    fn run_deferred(&mut self) {
        while let Some(d) = self.core.deferred.pop() {
            match d {
                Deferred::Failure { id, status } => self.run_failure_route(id, status),
                Deferred::Failover(id) => {
                    if self.core.failover(id) > 0 {
                        self.core.sync_failure_hook(id);
                        self.core.run_actions(id);
                    }
                }
                Deferred::RouteAck(pkt, rx) => {
                    if let Ok(msg) = Message::parse_datagram(pkt) {
                        self.route_stateless(msg, rx);
                    }
                }
            }
        }
    }

    /// Runs the request route on a request that belongs to no transaction (2xx ACK).
    fn route_stateless(&mut self, mut msg: Message, rx: Rx) {
        let Some(route) = self.core.shared.script.request_route() else {
            return;
        };
        self.st.reset();
        let script = Arc::clone(&self.core.shared.script);
        let mut host = Host::new(&mut self.core, &mut msg, rx, RouteKind::Request);
        let _ = self.interp.run(&script, route, &mut self.st, &mut host);
    }

    fn run_failure_route(&mut self, id: TxnId, status: u16) {
        let script = Arc::clone(&self.core.shared.script);
        // RFC 3263 §4.3: a branch with targets left is retried before anything fails.
        if self.core.failover(id) > 0 {
            self.core.sync_failure_hook(id);
            self.end_failure_hand_off(id);
            return;
        }
        let Some(ctx) = self.core.ctx_mut(id) else {
            return;
        };
        if ctx.resolving > 0 {
            // A branch is still being resolved: the failure is not final yet.
            ctx.failure_held = true;
            return;
        }
        let route = ctx.armed.on_failure.take();
        let rx = ctx.rx;
        let mut msg = (*ctx.request).clone();
        let mut st = ctx.state.take().unwrap_or_else(|| MsgState::new(&script));
        if let Some(t) = self.core.table.get_mut(id) {
            t.set_on_failure(false);
        }
        if let Some(route) = route {
            let mut host = Host::new(&mut self.core, &mut msg, rx, RouteKind::Failure);
            host.txn = Some(id);
            host.reply_status = status;
            let outcome = self.interp.run(&script, route, &mut st, &mut host);
            let carry = Carry::take_from(&mut host, Some(status));
            let (armed, op) = (host.armed, host.suspended_op);
            if let Outcome::Aborted(e) = &outcome {
                self.core.stats.script_aborts += 1;
                tracing::error!("failure route aborted: {e}");
            }
            if let Some(ctx) = self.core.ctx_mut(id) {
                ctx.armed.on_reply = armed.on_reply.or(ctx.armed.on_reply);
                ctx.armed.on_failure = armed.on_failure;
                if let (Outcome::Suspended { resume }, Some(op)) = (outcome, op) {
                    // The hand-off ends after the resume route (`Shard::resume`).
                    ctx.suspended.push(Suspension {
                        op,
                        resume,
                        carry,
                        reply: None,
                    });
                    *ctx.request = msg;
                    ctx.state = Some(st);
                    return;
                }
            }
        }
        if let Some(ctx) = self.core.ctx_mut(id) {
            ctx.state = Some(st);
            if ctx.resolving > 0 {
                // The route relayed to a host name: its branch comes when resolved.
                ctx.failure_held = true;
                return;
            }
        }
        self.end_failure_hand_off(id);
    }

    /// Tells the transaction its failure hand-off is over (it sends the best final
    /// unless a new branch is pending) and runs the resulting actions.
    fn end_failure_hand_off(&mut self, id: TxnId) {
        let now = cores::now();
        let core = &mut self.core;
        if let Some(t) = core.table.get_mut(id) {
            t.failure_route_done(now, &mut core.actions);
            core.run_actions(id);
        }
    }

    /// An RFC 3263 resolution started by `t_relay` completed: adds the branch carrying
    /// `m` to the first target (the others kept for failover), or, if it failed, a
    /// branch that fails at once as on a transport error (RFC 3261 §16.9: as a 503).
    /// Nothing is added once the transaction was cancelled, answered or ended.
    pub fn on_resolved(&mut self, id: TxnId, m: Message, r: Resolved) {
        let core = &mut self.core;
        let Some(ctx) = core.ctx_mut(id) else {
            core.stats.dns_relays_dropped += 1;
            return;
        };
        ctx.resolving = ctx.resolving.saturating_sub(1);
        let open = core
            .table
            .get(id)
            .is_some_and(|t| !t.was_cancelled() && !t.final_sent());
        let added = if !open {
            core.stats.dns_relays_dropped += 1;
            true
        } else {
            match r {
                Ok(mut targets) if !targets.is_empty() => {
                    let first = targets.remove(0);
                    core.push_branch(id, m, Some(first), targets).is_ok()
                }
                r => {
                    core.stats.unroutable += 1;
                    if let Err(e) = r {
                        tracing::info!("cannot route: {e}");
                    }
                    match core.push_branch(id, m, None, Vec::new()) {
                        Ok(b) => {
                            let now = cores::now();
                            let _ = core.table.handle(
                                id,
                                Event::TransportError { branch: b },
                                now,
                                &mut core.actions,
                            );
                            true
                        }
                        Err(_) => false,
                    }
                }
            }
        };
        let stuck = !added
            && core.table.get(id).is_some_and(|t| t.branch_count() == 0)
            && core.ctx_mut(id).is_some_and(|c| c.resolving == 0);
        if stuck {
            // No branch could be made and none exists: nothing else would ever answer.
            if let Some(pkt) = core.txn_reply_pkt(id, 500, "Server Internal Error") {
                let now = cores::now();
                if let Some(t) = core.table.get_mut(id) {
                    let response = Response::Relayed {
                        status: 500,
                        msg: pkt,
                    };
                    let _ = t.reply(response, now, &mut core.actions);
                }
            }
        }
        core.sync_failure_hook(id);
        let held = core
            .ctx_mut(id)
            .is_some_and(|c| c.resolving == 0 && std::mem::take(&mut c.failure_held));
        if held {
            self.end_failure_hand_off(id);
        } else {
            self.core.run_actions(id);
        }
        self.run_deferred();
    }

    /// Completes a suspended `async()`: sets `$rc`, applies the outputs, runs the resume
    /// route on the transaction's message (or the held reply) and state.
    pub fn resume(&mut self, id: TxnId, op: u64, rc: i32, outputs: crate::modules::Outputs) {
        self.core.stats.async_completed += 1;
        let Some(susp) = self.core.ctx_mut(id).and_then(|c| c.take_suspension(op)) else {
            // The transaction ended while suspended (e.g. CANCEL): the resume route still
            // runs, on its saved message; relaying or replying from it fails cleanly.
            if let Some((ctx, susp)) = self.core.take_orphan(id, op) {
                self.core.stats.async_orphan_resumes += 1;
                self.resume_orphan(id, ctx, susp, rc, outputs);
            }
            return;
        };
        if let Some(held) = susp.reply {
            self.resume_reply(id, susp.resume, *held, rc, outputs);
            return;
        }
        let script = Arc::clone(&self.core.shared.script);
        let Some(ctx) = self.core.ctx_mut(id) else {
            return;
        };
        let rx = ctx.rx;
        let armed = ctx.armed;
        let carry = susp.carry;
        let failure = carry.failure_status;
        let kind = if failure.is_some() {
            RouteKind::Failure
        } else {
            RouteKind::Request
        };
        let mut msg = (*ctx.request).clone();
        let mut st = ctx.state.take().unwrap_or_else(|| MsgState::new(&script));
        let mut host = Host::new(&mut self.core, &mut msg, rx, kind);
        host.txn = Some(id);
        host.armed = armed;
        carry.give_to(&mut host);
        // The request route's `$var`s do not survive the suspension; the function's
        // `$var` outputs are set after they are cleared, for the resume route to read.
        st.reset_vars();
        outputs.apply(&script, &mut st, &mut host);
        let outcome = self
            .interp
            .resume(&script, susp.resume, rc, &mut st, &mut host);
        let carry = Carry::take_from(&mut host, failure);
        let (armed, op2) = (host.armed, host.suspended_op);
        if let Outcome::Aborted(e) = &outcome {
            self.core.stats.script_aborts += 1;
            tracing::error!("resume route aborted: {e}");
        }
        let mut end_failure = false;
        if let Some(ctx) = self.core.ctx_mut(id) {
            let suspended = ctx.keep_run(msg, st, armed, &outcome, op2, carry);
            if !suspended && failure.is_some() {
                if ctx.resolving > 0 {
                    ctx.failure_held = true;
                } else {
                    end_failure = true;
                }
            }
        }
        if end_failure {
            self.end_failure_hand_off(id);
        }
        self.run_deferred();
    }

    /// The resume route of a suspended onreply route: runs on the held reply, then the
    /// reply goes on as if the onreply route had ended there (the armed onreply route
    /// still to run, then the transaction), unless the route dropped or suspended it
    /// again. The replies that waited behind it follow.
    fn resume_reply(
        &mut self,
        id: TxnId,
        route: RouteId,
        held: HeldReply,
        rc: i32,
        outputs: crate::modules::Outputs,
    ) {
        let script = Arc::clone(&self.core.shared.script);
        let HeldReply {
            mut msg,
            rx,
            matched,
            status,
            then,
            queued,
        } = held;
        let Some(mut st) = self
            .core
            .ctx_mut(id)
            .map(|c| c.state.take().unwrap_or_else(|| MsgState::new(&script)))
        else {
            return;
        };
        let mut host = Host::new(&mut self.core, &mut msg, rx, RouteKind::Reply);
        host.txn = Some(id);
        host.branch_idx = i32::from(matched.branch.0);
        // The request route's `$var`s do not survive the suspension; the function's
        // `$var` outputs are set after they are cleared, for the resume route to read.
        st.reset_vars();
        outputs.apply(&script, &mut st, &mut host);
        let outcome = self.interp.resume(&script, route, rc, &mut st, &mut host);
        let op = host.suspended_op;
        if let Outcome::Aborted(e) = &outcome {
            self.core.stats.script_aborts += 1;
            tracing::error!("resume route aborted: {e}");
        }
        let Some(ctx) = self.core.ctx_mut(id) else {
            return;
        };
        ctx.state = Some(st);
        match (outcome, op) {
            (Outcome::Suspended { resume }, Some(op)) => {
                ctx.suspended.push(Suspension {
                    op,
                    resume,
                    carry: Carry::default(),
                    reply: Some(Box::new(HeldReply {
                        msg,
                        rx,
                        matched,
                        status,
                        then,
                        queued,
                    })),
                });
            }
            (Outcome::Drop, _) if status < 200 => self.release_queued(queued),
            _ => self.reply_routes(matched, status, &mut msg, rx, [then, None], queued),
        }
    }
}

impl Shard {
    /// Runs the resume route of a transaction that ended while it was suspended (its
    /// context kept in `orphans` until then). A held reply then goes on as a reply that
    /// matches no transaction would (RFC 3261 §16.11: forwarded by its Via). The route
    /// may suspend again: the context stays an orphan until that resumes too.
    fn resume_orphan(
        &mut self,
        id: TxnId,
        mut ctx: TxnCtx,
        susp: Suspension,
        rc: i32,
        outputs: crate::modules::Outputs,
    ) {
        let script = Arc::clone(&self.core.shared.script);
        let mut st = ctx.state.take().unwrap_or_else(|| MsgState::new(&script));
        let (mut msg, rx, kind, held) = match susp.reply {
            Some(held) => {
                let held = *held;
                let msg = held.msg.clone();
                (msg, held.rx, RouteKind::Reply, Some(held))
            }
            None => ((*ctx.request).clone(), ctx.rx, RouteKind::Request, None),
        };
        let mut host = Host::new(&mut self.core, &mut msg, rx, kind);
        host.txn = Some(id);
        if let Some(h) = &held {
            host.branch_idx = i32::from(h.matched.branch.0);
        }
        let failure = susp.carry.failure_status;
        susp.carry.give_to(&mut host);
        // The request route's `$var`s do not survive the suspension; the function's
        // `$var` outputs are set after they are cleared, for the resume route to read.
        st.reset_vars();
        outputs.apply(&script, &mut st, &mut host);
        let outcome = self
            .interp
            .resume(&script, susp.resume, rc, &mut st, &mut host);
        let carry = Carry::take_from(&mut host, failure);
        let op = host.suspended_op;
        if let Outcome::Aborted(e) = &outcome {
            self.core.stats.script_aborts += 1;
            tracing::error!("resume route aborted: {e}");
        }
        ctx.state = Some(st);
        match (outcome, op, held) {
            (Outcome::Suspended { resume }, Some(op), held) => {
                let reply = match held {
                    Some(h) => Some(Box::new(HeldReply { msg, ..h })),
                    None => {
                        *ctx.request = msg;
                        None
                    }
                };
                ctx.suspended.push(Suspension {
                    op,
                    resume,
                    carry,
                    reply,
                });
            }
            (Outcome::Drop, _, Some(h)) if h.status < 200 => self.release_queued(h.queued),
            (_, _, Some(h)) => {
                self.core.forward_response_stateless(&mut msg, h.rx);
                self.release_queued(h.queued);
            }
            (_, _, None) => {}
        }
        if !ctx.suspended.is_empty() {
            self.core.orphans.push((id, ctx));
        }
        self.run_deferred();
    }

    /// Runs `launch()`'s report route (if any) with `$rc` and the outputs, on a blank
    /// message (the launching one is gone, as in OpenSIPS).
    pub fn report(&mut self, report: Option<RouteId>, rc: i32, outputs: crate::modules::Outputs) {
        self.core.stats.async_completed += 1;
        let Some(route) = report else {
            return;
        };
        let script = Arc::clone(&self.core.shared.script);
        let Ok(mut msg) = Message::parse_datagram(Bytes::from_static(LAUNCH_MSG)) else {
            return;
        };
        let Some(local) = self.core.listeners.first().map(|l| l.addr) else {
            return;
        };
        let rx = Rx {
            src: local,
            listener: 0,
            local,
        };
        let mut st = MsgState::new(&script);
        let mut host = Host::new(&mut self.core, &mut msg, rx, RouteKind::Request);
        // The request route's `$var`s do not survive the suspension; the function's
        // `$var` outputs are set after they are cleared, for the resume route to read.
        st.reset_vars();
        outputs.apply(&script, &mut st, &mut host);
        let _ = self.interp.resume(&script, route, rc, &mut st, &mut host);
        self.run_deferred();
    }
}

/// The message a `launch()` report route sees.
const LAUNCH_MSG: &[u8] = b"OPTIONS sip:launch@localhost SIP/2.0\r\nVia: SIP/2.0/UDP localhost;branch=z9hG4bKlaunch\r\nFrom: <sip:launch@localhost>;tag=l\r\nTo: <sip:launch@localhost>\r\nCall-ID: launch\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 0\r\nContent-Length: 0\r\n\r\n";

impl Core {
    pub fn ctx_mut(&mut self, id: TxnId) -> Option<&mut TxnCtx> {
        self.ctxs
            .get_mut(id.index as usize)?
            .as_mut()
            .filter(|c| c.generation == id.generation)
    }

    /// The transaction this request belongs to, if any.
    fn match_request(&mut self, msg: &Message) -> Option<TxnId> {
        let via = msg.top_via().ok()?;
        let branch = std::str::from_utf8(via.branch?).ok()?;
        let method = msg.method()?.as_str();
        self.scratch.clear();
        self.scratch.push_str(std::str::from_utf8(via.host).ok()?);
        self.scratch.push(':');
        push_decimal(&mut self.scratch, u64::from(via.port.unwrap_or(5060)));
        self.table
            .match_request(branch, &self.scratch, method)
            .ok()
            .flatten()
    }

    /// Whether `uri_or_host` (a SIP URI, or host[:port]) names one of our sockets.
    pub fn is_myself(&self, uri_or_host: &[u8]) -> bool {
        match parse_uri(uri_or_host) {
            Ok(Uri::Sip(s)) => self.is_myself_sip(&s),
            Ok(_) => false,
            Err(_) => {
                let text = std::str::from_utf8(uri_or_host).unwrap_or("");
                let (host, port) = match text.rsplit_once(':') {
                    Some((h, p)) if !h.contains(':') || h.ends_with(']') => (h, p.parse().ok()),
                    _ => (text, None),
                };
                let ip: Option<IpAddr> = host.trim_matches(|c| c == '[' || c == ']').parse().ok();
                self.names_us(host.as_bytes(), ip, port.unwrap_or(5060))
            }
        }
    }

    /// Whether an already parsed SIP URI names one of our sockets (its host and port;
    /// the port defaults to 5060).
    pub fn is_myself_sip(&self, uri: &crate::sip::uri::SipUri<'_>) -> bool {
        self.names_us(uri.host_text, uri.host.ip(), uri.port.unwrap_or(5060))
    }

    /// Whether `host` (its text, and the address if it is an IP literal) with `port` is
    /// one of our listening addresses or an alias.
    fn names_us(&self, host: &[u8], ip: Option<IpAddr>, port: u16) -> bool {
        let by_ip = ip.is_some_and(|ip| {
            self.listeners
                .iter()
                .any(|l| l.addr.ip() == ip && (l.addr.port() == port || l.own_addr.port() == port))
        });
        by_ip
            || self.shared.aliases.iter().any(|a| {
                let (ah, ap) = match a.rsplit_once(':') {
                    Some((h, p)) => (h, p.parse().unwrap_or(5060)),
                    None => (a.as_str(), 5060),
                };
                ah.as_bytes().eq_ignore_ascii_case(host) && ap == port
            })
    }

    /// Where responses to `msg` go (RFC 3261 §18.2.2 with RFC 3581): the source address
    /// when the top Via asks `rport`, else the source IP and the Via's sent-by port.
    pub fn upstream_of(msg: &Message, rx: Rx) -> SocketAddr {
        match msg.top_via() {
            Ok(v) if v.rport.is_some() => rx.src,
            Ok(v) => SocketAddr::new(rx.src.ip(), v.port.unwrap_or(5060)),
            Err(_) => rx.src,
        }
    }

    /// A To-tag for replies this shard makes up.
    pub fn new_tag(&mut self) -> String {
        self.tag_seq = self.tag_seq.wrapping_add(1);
        let mut tag = String::with_capacity(2 + 8 + 16);
        tag.push_str("rs");
        push_hex(&mut tag, self.tag_salt & 0xffff_ffff);
        push_hex(&mut tag, self.tag_seq);
        tag
    }

    /// A stateless reply's To-tag: the same for retransmissions of one request.
    fn stateless_tag(&self, msg: &Message, out: &mut String) {
        let mut h: u64 = self.tag_salt;
        for part in [
            msg.call_id().unwrap_or(b""),
            msg.top_via().ok().and_then(|v| v.branch).unwrap_or(b""),
        ] {
            for b in part {
                h = (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
            }
        }
        out.push_str("rs");
        push_hex(out, h);
    }

    /// Sends bytes to `to` from listener `l`'s public socket.
    fn send_public(&mut self, l: usize, bytes: &[u8], to: SocketAddr) {
        let ok = self
            .listeners
            .get(l)
            .or(self.listeners.first())
            .map(|l| l.public.send_to(bytes, to).is_ok());
        if ok != Some(true) {
            self.stats.send_errors += 1;
        }
    }

    /// Sends bytes to `to` from listener `l`'s own socket (forwarded requests).
    fn send_own(&mut self, l: usize, bytes: &[u8], to: SocketAddr) {
        let ok = self
            .listeners
            .get(l)
            .or(self.listeners.first())
            .map(|l| l.own.send_to(bytes, to).is_ok());
        if ok != Some(true) {
            self.stats.send_errors += 1;
        }
    }

    /// A stateless reply (sl_send_reply, errors before any transaction).
    pub fn reply_stateless(&mut self, req: &Message, rx: Rx, code: u16, reason: &str) {
        if req.method() == Some(Method::Ack) {
            return;
        }
        let mut tag = String::new();
        self.stateless_tag(req, &mut tag);
        self.send_reply_bytes(req, rx, Self::upstream_of(req, rx), code, reason, &tag);
    }

    fn send_reply_bytes(
        &mut self,
        req: &Message,
        rx: Rx,
        to: SocketAddr,
        code: u16,
        reason: &str,
        tag: &str,
    ) {
        let mut out = ReplyOut {
            buf: &mut self.reply_buf,
            listeners: &self.listeners,
            stats: &mut self.stats,
        };
        out.send(req, rx.listener, to, code, reason, tag);
    }

    /// Builds a reply to the transaction's request with its To-tag (t_reply).
    pub fn txn_reply_pkt(&mut self, id: TxnId, code: u16, reason: &str) -> Option<Pkt> {
        let mut buf = std::mem::take(&mut self.reply_buf);
        let Some(ctx) = self.ctx_mut(id) else {
            self.reply_buf = buf;
            return None;
        };
        let spec = ReplySpec {
            code,
            reason: reason.as_bytes(),
            to_tag: Some(ctx.to_tag.as_bytes()),
            extra_headers: b"Server: ringsip\r\n",
            body: b"",
        };
        let pkt = write_reply(&ctx.request, &spec, &mut buf)
            .ok()
            .and_then(|n| buf.get(..n))
            .map(Bytes::copy_from_slice);
        self.reply_buf = buf;
        pkt
    }

    /// Creates the transaction of `msg` (t_newtran); `Err` is the script return code.
    pub fn new_txn(&mut self, msg: &Message, rx: Rx, armed: Armed) -> Result<TxnId, i32> {
        let via = msg.top_via().map_err(|_| -1)?;
        let branch = via
            .branch
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or("");
        let method = msg.method().ok_or(-1)?;
        let mut sent_by = std::mem::take(&mut self.scratch);
        sent_by.clear();
        sent_by.push_str(std::str::from_utf8(via.host).unwrap_or(""));
        sent_by.push(':');
        push_decimal(&mut sent_by, u64::from(via.port.unwrap_or(5060)));
        let now = cores::now();
        let pkt: Pkt = msg.buffer().clone();
        let inserted = self.table.insert(
            branch,
            &sent_by,
            method.as_str(),
            pkt,
            false,
            now,
            &mut self.actions,
        );
        self.scratch = sent_by;
        let id = match inserted {
            Ok(id) => id,
            Err(crate::txn::TableError::Full { .. }) => {
                self.stats.txn_table_full += 1;
                self.actions.clear();
                self.reply_stateless(msg, rx, 503, "Service Unavailable");
                return Err(-2);
            }
            Err(e) => {
                tracing::debug!("cannot create a transaction: {e}");
                self.actions.clear();
                return Err(-1);
            }
        };
        self.stats.txn_created += 1;
        let to_tag = self.new_tag();
        *self.ctxs.slot(id.index as usize) = Some(TxnCtx {
            generation: id.generation,
            request: Box::new(msg.clone()),
            state: None,
            rx,
            upstream: Self::upstream_of(msg, rx),
            to_tag,
            armed,
            dests: Vec::new(),
            resolving: 0,
            failure_held: false,
            failover_due: Vec::new(),
            timers: Vec::new(),
            timer_seq: 0,
            suspended: Vec::new(),
        });
        if let Some(t) = self.table.get_mut(id) {
            t.set_on_failure(armed.on_failure.is_some());
        }
        self.run_actions(id);
        Ok(id)
    }

    /// Adds one branch to transaction `id` (t_relay): `msg` as the route left it, with
    /// `ruri` replacing its Request-URI for an appended branch, sent to `$du`, else the
    /// first remaining Route, else the Request-URI (RFC 3261 §16.6 steps 6-7). A host
    /// name is resolved first (RFC 3263, on the shard's resolver): the branch is added
    /// when that completes ([`Shard::on_resolved`]) and `Ok` means "in progress".
    #[allow(clippy::too_many_arguments)]
    pub fn add_branch(
        &mut self,
        id: TxnId,
        msg: &Message,
        ruri: Option<&str>,
        du: Option<&str>,
        routes_stripped: usize,
        branch_route: Option<(RouteId, &mut MsgState)>,
    ) -> Result<(), i32> {
        let mut m = msg.clone();
        if let Some(u) = ruri {
            m.set_request_uri(u.as_bytes()).map_err(|_| -1)?;
        }
        // branch_route (armed by t_on_branch): runs on this branch's copy of the request;
        // it may edit it or change `$du`, and `drop` discards the branch.
        let mut du_after: Option<String> = du.map(str::to_string);
        if let Some((route, st)) = branch_route {
            let script = Arc::clone(&self.shared.script);
            let Some(rx) = self.ctx_mut(id).map(|c| c.rx) else {
                return Err(-1);
            };
            let idx = self.table.get(id).map_or(0, |t| t.branch_count());
            let mut interp = std::mem::take(&mut self.branch_interp);
            let mut host = Host::new(self, &mut m, rx, RouteKind::Branch);
            host.txn = Some(id);
            host.du = du_after.take();
            host.branch_idx = i32::try_from(idx).unwrap_or(i32::MAX);
            host.routes_stripped = routes_stripped;
            let outcome = interp.run(&script, route, st, &mut host);
            du_after = host.du.take();
            self.branch_interp = interp;
            match outcome {
                Outcome::Drop => return Err(-1),
                Outcome::Aborted(e) => {
                    self.stats.script_aborts += 1;
                    tracing::error!("branch route aborted: {e}");
                }
                _ => {}
            }
        }
        let du = du_after.as_deref();
        let target = if ruri.is_some() && du.is_none() {
            m.request_uri().unwrap_or(b"")
        } else {
            next_hop(&m, du, routes_stripped)
        };
        match super::nexthop::classify(target) {
            Ok(NextHopTarget::Static(dest)) => {
                self.push_branch(id, m, Some(dest), Vec::new())?;
                self.run_actions(id);
                Ok(())
            }
            Ok(NextHopTarget::Resolve(host)) => self.start_resolution(id, m, host),
            Err(e) => {
                self.stats.unroutable += 1;
                tracing::info!("cannot route: {e}");
                Err(-2)
            }
        }
    }

    /// Starts the RFC 3263 resolution of `host` for a branch of `id` carrying `m`.
    fn start_resolution(&mut self, id: TxnId, m: Message, host: HostTarget) -> Result<(), i32> {
        let Some(txn) = self.table.get_mut(id) else {
            return Err(-1);
        };
        if txn.was_cancelled() || txn.final_sent() {
            return Err(-1);
        }
        // The final response must wait for this branch: the failure hook makes the
        // transaction hand over to us instead of answering when its branches are done.
        txn.set_on_failure(true);
        let Some(ctx) = self.ctx_mut(id) else {
            return Err(-1);
        };
        ctx.resolving = ctx.resolving.checked_add(1).ok_or(-1)?;
        self.stats.dns_relays += 1;
        let resolver = super::nexthop::shard_resolver(&self.shared.modules.dns);
        let limit = self.shared.tm.fr_timer;
        let me = self.me.clone();
        cores::spawn_local(async move {
            let r = match cores::timeout(limit, super::nexthop::resolve_udp(&resolver, &host)).await
            {
                Ok(r) => r,
                Err(_) => Err(NextHopError::TimedOut {
                    host: host.host.clone(),
                }),
            };
            deliver_resolution(me, id, m, r);
        });
        Ok(())
    }

    /// Adds a branch carrying `m` (our Via prepended) to `dest`, `None` meaning a branch
    /// that will not be sent (it is failed by the caller). The actions are left queued.
    fn push_branch(
        &mut self,
        id: TxnId,
        mut m: Message,
        dest: Option<SocketAddr>,
        spare: Vec<SocketAddr>,
    ) -> Result<BranchIdx, i32> {
        let Some(txn) = self.table.get(id) else {
            return Err(-1);
        };
        if txn.was_cancelled() {
            return Err(-1);
        }
        let b = BranchIdx(u8::try_from(txn.branch_count()).map_err(|_| -1)?);
        let listener = self.ctx_mut(id).map_or(0, |c| c.rx.listener);
        let Some(own) = self.listeners.get(listener).or(self.listeners.first()) else {
            return Err(-1);
        };
        let branch = self.table.branch_id(id, b);
        let mut via = std::mem::take(&mut self.scratch);
        via.clear();
        via.push_str("SIP/2.0/UDP ");
        via.push_str(&own.own_text);
        via.push_str(";branch=");
        via.push_str(branch.as_str());
        let prepended = m.prepend_via(via.as_bytes());
        self.scratch = via;
        prepended.map_err(|_| -1)?;
        if m.max_forwards().ok().flatten().is_none() {
            let _ = m.append_header(b"Max-Forwards", b"70");
        }
        let mut bytes = Vec::with_capacity(m.written_len());
        m.write_to(&mut bytes);
        let pkt: Pkt = Bytes::from(bytes);
        let now = cores::now();
        let Some(txn) = self.table.get_mut(id) else {
            return Err(-1);
        };
        match txn.add_branch(pkt, false, now, &mut self.actions) {
            Ok(b) => {
                if let Some(ctx) = self.ctx_mut(id) {
                    debug_assert_eq!(ctx.dests.len(), usize::from(b.0));
                    ctx.dests.push(BranchDest {
                        addr: dest,
                        spare,
                        provisional: false,
                    });
                }
                self.stats.branches += 1;
                Ok(b)
            }
            Err(e) => {
                tracing::debug!("t_relay refused: {e}");
                self.actions.clear();
                Err(-1)
            }
        }
    }

    /// Whether the transaction needs its failure hook for us: a resolution is pending
    /// or a branch has failover targets left.
    fn needs_failure_hook(ctx: &TxnCtx) -> bool {
        ctx.resolving > 0 || ctx.dests.iter().any(|d| !d.spare.is_empty())
    }

    /// Arms the transaction's failure hook if the script armed a failure route or the
    /// relay needs it ([`Core::needs_failure_hook`]).
    fn sync_failure_hook(&mut self, id: TxnId) {
        let Some(ctx) = self.ctx_mut(id) else {
            return;
        };
        let on = ctx.armed.on_failure.is_some() || Self::needs_failure_hook(ctx);
        if let Some(t) = self.table.get_mut(id) {
            t.set_on_failure(on);
        }
    }

    /// Retries the branches of `id` that failed with failover targets left, each on its
    /// next target (RFC 3263 §4.3). Returns how many branches were added; the actions
    /// are left queued.
    fn failover(&mut self, id: TxnId) -> usize {
        let Some(ctx) = self.ctx_mut(id) else {
            return 0;
        };
        let due = std::mem::take(&mut ctx.failover_due);
        let mut added = 0;
        for b in due {
            let open = self
                .table
                .get(id)
                .is_some_and(|t| !t.was_cancelled() && !t.final_sent());
            if !open {
                break;
            }
            let Some(ctx) = self.ctx_mut(id) else {
                break;
            };
            let Some(d) = ctx.dests.get_mut(usize::from(b.0)) else {
                continue;
            };
            let mut spare = std::mem::take(&mut d.spare);
            if spare.is_empty() {
                continue;
            }
            let next = spare.remove(0);
            let Some(sent) = self.table.get(id).and_then(|t| t.branch_request(b)) else {
                continue;
            };
            let Ok(mut m) = Message::parse_datagram(sent.clone()) else {
                continue;
            };
            if m.strip_top_via().is_err() {
                continue;
            }
            if self.push_branch(id, m, Some(next), spare).is_ok() {
                tracing::debug!("RFC 3263 failover of branch {} to {next}", b.0);
                self.stats.dns_failovers += 1;
                added += 1;
            }
        }
        added
    }

    /// Queues actions produced outside the table (e.g. `ProxyTxn::reply`).
    pub fn queue_actions(&mut self, actions: Vec<Action<Pkt>>) {
        self.actions.extend(actions);
    }

    /// Executes the transaction layer's actions for `id`.
    pub fn run_actions(&mut self, id: TxnId) {
        let mut actions = std::mem::take(&mut self.actions);
        let mut terminated = false;
        let mut failure_route = false;
        for a in actions.drain(..) {
            match a {
                Action::SendRequest {
                    branch, request, ..
                } => {
                    if let Some((l, dest)) = self.branch_dest(id, branch) {
                        self.send_own(l, &request, dest);
                    }
                }
                Action::SendCancel { branch, .. } => {
                    self.send_branch_cancel_or_ack(id, branch, None)
                }
                Action::SendAck { branch, response } => {
                    self.send_branch_cancel_or_ack(id, branch, Some(&response))
                }
                Action::SendResponse { response, .. } => self.send_response(id, response, false),
                Action::SendCancelReply { response, .. } => self.send_response(id, response, true),
                Action::ForwardStateless { response } => {
                    if let Some(ctx) = self.ctx_mut(id) {
                        let (l, to) = (ctx.rx.listener, ctx.upstream);
                        self.send_public(l, &response, to);
                    }
                }
                Action::ForwardAck { ack } => {
                    if let Some(ctx) = self.ctx_mut(id) {
                        let rx = ctx.rx;
                        self.deferred.push(Deferred::RouteAck(ack, rx));
                    }
                }
                Action::SetTimer { timer, deadline } => self.set_timer(id, timer, deadline),
                Action::ClearTimer { timer } => {
                    if let Some(ctx) = self.ctx_mut(id) {
                        if let Some(pos) = ctx.timers.iter().position(|t| t.timer == timer) {
                            let t = ctx.timers.swap_remove(pos);
                            cores::cancel_timer(t.wheel);
                        }
                    }
                }
                Action::BranchResponse {
                    branch,
                    status,
                    response,
                } => self.note_branch_response(id, branch, status, response.is_none()),
                Action::RunFailureRoute { status, .. } => {
                    failure_route = true;
                    self.deferred.push(Deferred::Failure { id, status });
                }
                Action::Terminated => terminated = true,
            }
        }
        // Failover waits for the failure hand-off when this batch has one (it retries
        // first there); otherwise it runs once these actions are done.
        if !failure_route && !terminated {
            if let Some(ctx) = self.ctx_mut(id) {
                if !ctx.failover_due.is_empty() {
                    self.deferred.push(Deferred::Failover(id));
                }
            }
        }
        // Actions queued by the loop above (none today) stay; the buffer is reused.
        if self.actions.is_empty() {
            self.actions = actions;
        }
        if terminated {
            self.remove_txn(id);
        }
    }

    /// Notes a branch's response for RFC 3263 failover: a 503 (received, or made up on a
    /// transport error) or a local time-out before any provisional retries the branch on
    /// its next target, if it has one (§4.3).
    fn note_branch_response(&mut self, id: TxnId, b: BranchIdx, status: u16, local: bool) {
        let Some(ctx) = self.ctx_mut(id) else {
            return;
        };
        let Some(d) = ctx.dests.get_mut(usize::from(b.0)) else {
            return;
        };
        if status < 200 {
            d.provisional = true;
            return;
        }
        let retry = status == 503 || (status == 408 && local && !d.provisional);
        if !retry {
            d.spare.clear();
        } else if !d.spare.is_empty() && !ctx.failover_due.contains(&b) {
            ctx.failover_due.push(b);
        }
    }

    fn remove_txn(&mut self, id: TxnId) {
        if let Some(slot) = self.ctxs.get_mut(id.index as usize) {
            if let Some(mut ctx) = slot.take() {
                for t in ctx.timers.drain(..) {
                    cores::cancel_timer(t.wheel);
                }
                if !ctx.suspended.is_empty() {
                    // Its resume routes must still run, each exactly once.
                    self.orphans.push((id, ctx));
                }
            }
        }
        self.table.remove(id);
    }

    /// Takes the context of a transaction that ended while operation `op` was pending,
    /// with that operation's suspension (the caller puts the context back if others are
    /// still pending).
    fn take_orphan(&mut self, id: TxnId, op: u64) -> Option<(TxnCtx, Suspension)> {
        let pos = self
            .orphans
            .iter()
            .position(|(i, c)| *i == id && c.suspended.iter().any(|s| s.op == op))?;
        let (_, mut ctx) = self.orphans.swap_remove(pos);
        let susp = ctx.take_suspension(op)?;
        Some((ctx, susp))
    }

    fn set_timer(&mut self, id: TxnId, timer: TimerId, deadline: Instant) {
        let Some(ctx) = self.ctx_mut(id) else {
            return;
        };
        if let Some(pos) = ctx.timers.iter().position(|t| t.timer == timer) {
            let old = ctx.timers.swap_remove(pos);
            cores::cancel_timer(old.wheel);
        }
        ctx.timer_seq = ctx.timer_seq.wrapping_add(1);
        let seq = ctx.timer_seq;
        let token = (u64::from(id.index) << 32)
            | (u64::from(id.generation & 0xffff) << 16)
            | u64::from(seq);
        let wheel = cores::arm_timer_token(deadline, token);
        ctx.timers.push(TimerSlot {
            timer,
            wheel,
            deadline,
            seq,
        });
    }

    fn branch_dest(&mut self, id: TxnId, b: BranchIdx) -> Option<(usize, SocketAddr)> {
        let ctx = self.ctx_mut(id)?;
        Some((ctx.rx.listener, ctx.dests.get(usize::from(b.0))?.addr?))
    }

    /// Sends a response upstream; a `Local` one is built from the transaction's request,
    /// or from the CANCEL (`to_cancel`) it answers.
    fn send_response(&mut self, id: TxnId, response: Response<Pkt>, to_cancel: bool) {
        let Some(ctx) = self.ctx_mut(id) else {
            return;
        };
        let (l, to, rx) = (ctx.rx.listener, ctx.upstream, ctx.rx);
        match response {
            Response::Relayed { msg, .. } => {
                self.stats.responses_relayed += 1;
                self.send_public(l, &msg, to);
            }
            Response::Local { status, request } => {
                // Borrows the context's request and tag next to the reply buffer (no
                // copy of the request per reply).
                let Some(Some(ctx)) = self.ctxs.get_mut(id.index as usize) else {
                    return;
                };
                if ctx.generation != id.generation {
                    return;
                }
                let mut out = ReplyOut {
                    buf: &mut self.reply_buf,
                    listeners: &self.listeners,
                    stats: &mut self.stats,
                };
                let reason = reason_of(status);
                if !to_cancel {
                    // The server transaction's own request (100, 408, 487, 500...).
                    out.send(&ctx.request, rx.listener, to, status, reason, &ctx.to_tag);
                } else if let Ok(cancel) = Message::parse_datagram(request) {
                    out.send(&cancel, rx.listener, to, status, reason, &ctx.to_tag);
                }
            }
        }
    }

    /// Builds and sends a CANCEL (RFC 3261 §9.1) or, with `response`, the ACK of a
    /// non-2xx final response (§17.1.1.3) for branch `b`.
    fn send_branch_cancel_or_ack(&mut self, id: TxnId, b: BranchIdx, response: Option<&Pkt>) {
        let Some((l, dest)) = self.branch_dest(id, b) else {
            return;
        };
        let Some(req) = self
            .table
            .get(id)
            .and_then(|t| t.branch_request(b))
            .cloned()
        else {
            return;
        };
        let Ok(req) = Message::parse_datagram(req) else {
            return;
        };
        let method = if response.is_some() { "ACK" } else { "CANCEL" };
        let mut s = String::with_capacity(512);
        let ruri = String::from_utf8_lossy(req.original_request_uri().unwrap_or(b""));
        let _ = write!(s, "{method} {ruri} SIP/2.0\r\n");
        if let Some(v) = req.header_lines(HeaderName::Via).next() {
            // Our Via is the first value of the first Via line.
            let first = split_first_value(v);
            let _ = write!(s, "Via: {}\r\n", String::from_utf8_lossy(first));
        }
        for r in req.header_lines(HeaderName::Route) {
            let _ = write!(s, "Route: {}\r\n", String::from_utf8_lossy(r));
        }
        let from = req.header(HeaderName::From).unwrap_or(b"");
        let _ = write!(s, "From: {}\r\n", String::from_utf8_lossy(from));
        let to: Vec<u8> = match response {
            Some(resp) => Message::parse_datagram(resp.clone())
                .ok()
                .and_then(|r| r.header(HeaderName::To).map(<[u8]>::to_vec))
                .unwrap_or_default(),
            None => req.header(HeaderName::To).unwrap_or(b"").to_vec(),
        };
        let _ = write!(s, "To: {}\r\n", String::from_utf8_lossy(&to));
        let _ = write!(
            s,
            "Call-ID: {}\r\n",
            String::from_utf8_lossy(req.call_id().unwrap_or(b""))
        );
        let cseq = req.cseq().map_or(0, |c| c.number);
        let _ = write!(
            s,
            "CSeq: {cseq} {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        );
        self.send_own(l, s.as_bytes(), dest);
    }

    /// Forwards a response that matches no transaction by its Via (RFC 3261 §16.11 /
    /// §18.2.2): our Via on top is removed and the response goes to the next one.
    fn forward_response_stateless(&mut self, msg: &mut Message, rx: Rx) {
        let ours = msg
            .top_via()
            .ok()
            .map(|v| {
                let host = String::from_utf8_lossy(v.host).into_owned();
                let mut hp = host;
                let _ = write!(hp, ":{}", v.port.unwrap_or(5060));
                self.is_myself(hp.as_bytes())
            })
            .unwrap_or(false);
        if !ours {
            return;
        }
        let next = msg.vias().nth(1).and_then(Result::ok).map(|v| {
            let ip: Option<IpAddr> = v
                .received
                .and_then(|r| std::str::from_utf8(r).ok())
                .and_then(|r| r.parse().ok())
                .or_else(|| {
                    std::str::from_utf8(v.host)
                        .ok()
                        .and_then(|h| h.trim_matches(|c| c == '[' || c == ']').parse().ok())
                });
            let port = match v.rport {
                Some(Some(p)) => p,
                _ => v.port.unwrap_or(5060),
            };
            ip.map(|ip| SocketAddr::new(ip, port))
        });
        let Some(Some(to)) = next else {
            return;
        };
        if msg.strip_top_via().is_err() {
            return;
        }
        self.stats.stateless_forwards += 1;
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        msg.write_to(&mut out);
        self.send_public(rx.listener, &out, to);
        out.clear();
        self.out = out;
    }

    /// Forwards a request statelessly (`forward()`): our Via (branch derived from the
    /// incoming one, RFC 3261 §16.11), `received`/`rport` on the sender's Via.
    pub fn forward_stateless(&mut self, msg: &Message, rx: Rx, dest_uri: &[u8]) -> i32 {
        let Some(dest) = resolve_static(dest_uri) else {
            self.stats.unroutable += 1;
            return -2;
        };
        let mut m = msg.clone();
        if self.listeners.get(rx.listener).is_none() {
            return -1;
        }
        let mut v = std::mem::take(&mut self.scratch);
        let edited = self.stateless_vias(msg, &mut m, rx, &mut v);
        self.scratch = v;
        if edited.is_err() {
            return -1;
        }
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        m.write_to(&mut out);
        self.send_public(rx.listener, &out, dest);
        out.clear();
        self.out = out;
        self.stats.stateless_forwards += 1;
        1
    }

    /// `forward()`'s Via edits on `m` (a copy of `msg`): our Via on top, then the sender's
    /// with `received`/`rport` (RFC 3261 §18.2.1, RFC 3581 §4), so replies can be routed
    /// back statelessly. Edits inserted at the same place come out in the order recorded,
    /// so ours is recorded first. `v` is scratch space.
    fn stateless_vias(
        &self,
        msg: &Message,
        m: &mut Message,
        rx: Rx,
        v: &mut String,
    ) -> Result<(), crate::sip::EditError> {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in msg.top_via().ok().and_then(|v| v.branch).unwrap_or(b"") {
            h = (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
        }
        let own = self
            .listeners
            .get(rx.listener)
            .map_or("", |l| l.addr_text.as_str());
        v.clear();
        v.push_str("SIP/2.0/UDP ");
        v.push_str(own);
        v.push_str(";branch=z9hG4bKsl");
        push_hex(v, h);
        m.prepend_via(v.as_bytes())?;
        if let Some(top) = msg.header_lines(HeaderName::Via).next() {
            v.clear();
            via_with_received(split_first_value(top), rx.src, v);
            m.strip_top_via()?;
            m.prepend_via(v.as_bytes())?;
        }
        Ok(())
    }

    /// Passes a response for a transaction of another shard to its owner.
    fn hand_over(&mut self, owner: u16, bytes: &[u8], rx: Rx) {
        let Some(h) = cores::shard_handle(usize::from(owner)) else {
            return;
        };
        let copy = bytes.to_vec();
        match h.post(Box::new(move || {
            let _ = with_shard(|s| s.on_datagram(&copy, rx));
        })) {
            Ok(()) => self.stats.mailbox_handoffs += 1,
            Err(_) => self.stats.mailbox_full += 1,
        }
    }
}

/// Where a request goes (RFC 3261 §16.6 steps 6-7, §16.12): `$du` if set, else the first
/// Route value left after `loose_route()` removed ours, else the Request-URI.
pub fn next_hop<'a>(msg: &'a Message, du: Option<&'a str>, routes_stripped: usize) -> &'a [u8] {
    match du {
        Some(d) => d.as_bytes(),
        // Only the chosen Route value is parsed: the ones before it (ours, removed by
        // `loose_route()`) are skipped as text.
        None => match msg
            .header_values(HeaderName::Route)
            .nth(routes_stripped)
            .map(|v| crate::sip::header::parse_name_addr(v, HeaderName::Route))
        {
            Some(Ok(r)) => r.uri,
            _ => msg.request_uri().unwrap_or(b""),
        },
    }
}

/// The checks a proxy makes on a request before acting on it (RFC 3261 §16.3, §8.2;
/// RFC 4475 §3.1.2): the SIP version, single-valued headers not repeated, and a typed
/// parse of what the proxy itself interprets — the top Via (transaction matching and
/// the response path), From, To, Call-ID, CSeq (its method equal to the request's),
/// Max-Forwards, Expires, Route (loose routing), Date, and no `?headers` in the
/// Request-URI. Lower Via values, Contact and Record-Route are forwarded unchanged
/// and not parsed here (§16.3: a proxy checks only the parts it interprets); a route
/// script that reads them sees their parse errors through its accessors. This is
/// [`Message::validate`] without those three, and reports the same [`Invalid`] for
/// everything it does check. The parses of the top Via, From, To and CSeq are cached
/// in the message for the rest of its processing. One implementation with
/// [`Message::validate`]: [`Message::validate_in`] with [`Scope::Proxy`](crate::sip::message::Scope).
pub fn check_request(msg: &Message) -> Result<(), Invalid> {
    msg.validate_in(crate::sip::message::Scope::Proxy)
}

/// Where a locally built reply is written and sent from: borrows of the [`Core`]'s
/// fields, so a reply can be built from a request the core owns without copying it.
struct ReplyOut<'a> {
    buf: &'a mut [u8],
    listeners: &'a [Listener],
    stats: &'a mut ProxyStats,
}

impl ReplyOut<'_> {
    /// Builds reply `code` to `req` with To-tag `tag` and sends it to `to` from listener
    /// `l`'s public socket.
    fn send(
        &mut self,
        req: &Message,
        l: usize,
        to: SocketAddr,
        code: u16,
        reason: &str,
        tag: &str,
    ) {
        let spec = ReplySpec {
            code,
            reason: reason.as_bytes(),
            to_tag: Some(tag.as_bytes()),
            extra_headers: b"Server: ringsip\r\n",
            body: b"",
        };
        match write_reply(req, &spec, self.buf) {
            Ok(n) => {
                self.stats.local_replies += 1;
                let bytes = self.buf.get(..n).unwrap_or(&[]);
                let ok = self
                    .listeners
                    .get(l)
                    .or(self.listeners.first())
                    .map(|l| l.public.send_to(bytes, to).is_ok());
                if ok != Some(true) {
                    self.stats.send_errors += 1;
                }
            }
            Err(e) => tracing::debug!("cannot build a {code} reply: {e}"),
        }
    }
}

/// Appends `n` in decimal (what `write!(s, "{n}")` writes, without the formatter).
pub fn push_decimal(s: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        // Truncation intended: a digit.
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &d in &digits[at..] {
        s.push(char::from(d));
    }
}

/// Appends `v` in lower-case hex without leading zeros (`{v:x}`).
pub fn push_hex(s: &mut String, v: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut shift = (64 - (v | 1).leading_zeros()).div_ceil(4) * 4;
    while shift > 0 {
        shift -= 4;
        s.push(char::from(HEX[((v >> shift) & 0xf) as usize]));
    }
}

/// Appends an IP address as `Display` writes it; IPv4 without the formatter.
pub fn push_ip(s: &mut String, ip: IpAddr) {
    match ip {
        IpAddr::V4(a) => {
            for (i, o) in a.octets().into_iter().enumerate() {
                if i > 0 {
                    s.push('.');
                }
                push_decimal(s, u64::from(o));
            }
        }
        IpAddr::V6(a) => {
            let _ = write!(s, "{a}");
        }
    }
}

/// Appends to `out` a Via value with `received` and `rport` set to where the request
/// came from: any `received`/`rport` it carried (RFC 3581: an empty `rport` asks for the
/// port) is replaced, so neither parameter appears twice.
fn via_with_received(via: &[u8], src: SocketAddr, out: &mut String) {
    let text = String::from_utf8_lossy(via);
    let mut parts = text.split(';');
    out.push_str(parts.next().unwrap_or("").trim_end());
    for p in parts {
        let name = p.split('=').next().unwrap_or("").trim();
        if name.eq_ignore_ascii_case("received") || name.eq_ignore_ascii_case("rport") {
            continue;
        }
        out.push(';');
        out.push_str(p.trim());
    }
    out.push_str(";received=");
    push_ip(out, src.ip());
    out.push_str(";rport=");
    push_decimal(out, u64::from(src.port()));
}

/// The first comma-separated value of a header line (outside quotes and `<>`).
fn split_first_value(v: &[u8]) -> &[u8] {
    let (mut quoted, mut depth) = (false, 0i32);
    for (i, &c) in v.iter().enumerate() {
        match c {
            b'"' => quoted = !quoted,
            b'<' if !quoted => depth += 1,
            b'>' if !quoted => depth -= 1,
            b',' if !quoted && depth == 0 => return v.get(..i).unwrap_or(v),
            _ => {}
        }
    }
    v
}

/// Resolves a SIP URI (or `host[:port]`) whose host is an IP address or `localhost`
/// (stateless `forward()`: host names are not resolved there).
pub fn resolve_static(uri: &[u8]) -> Option<SocketAddr> {
    match super::nexthop::classify(uri) {
        Ok(NextHopTarget::Static(a)) => Some(a),
        _ => None,
    }
}

/// Hands a resolution's result to its shard. Tasks run from the shard's loop, so the
/// shard is free; if it ever is not, the delivery is retried on the next loop turn.
fn deliver_resolution(me: Weak<RefCell<Shard>>, id: TxnId, m: Message, r: Resolved) {
    let Some(shard) = me.upgrade() else {
        return;
    };
    let Ok(mut s) = shard.try_borrow_mut() else {
        drop(shard);
        cores::spawn_local(async move { deliver_resolution(me, id, m, r) });
        return;
    };
    s.on_resolved(id, m, r);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An INVITE with `extra` header lines, `ruri` as its Request-URI and `cseq_method`.
    fn invite(ruri: &str, cseq_method: &str, extra: &str) -> Message {
        let text = format!(
            "INVITE {ruri} SIP/2.0\r\n\
             Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKcheck1\r\n\
             {extra}\
             Max-Forwards: 70\r\n\
             From: <sip:alice@example.com>;tag=a1\r\n\
             To: <sip:bob@example.com>\r\n\
             Call-ID: check-1@192.0.2.1\r\n\
             CSeq: 1 {cseq_method}\r\n\
             Contact: <sip:alice@192.0.2.1>\r\n\
             Content-Length: 0\r\n\r\n"
        );
        Message::parse_datagram(Bytes::from(text)).expect("the test message parses")
    }

    #[test]
    fn check_request_accepts_a_well_formed_request() {
        for ruri in ["sip:bob@192.0.2.2", "sip:a?b@192.0.2.2", "sip:192.0.2.2;lr"] {
            let m = invite(ruri, "INVITE", "Route: <sip:192.0.2.9;lr>\r\n");
            assert_eq!(m.validate(), Ok(()), "{ruri}");
            assert_eq!(check_request(&m), Ok(()), "{ruri}");
        }
    }

    /// What the proxy interprets is rejected exactly as `Message::validate` rejects it.
    #[test]
    fn check_request_rejects_what_validate_rejects_in_the_parts_a_proxy_reads() {
        let cases = [
            (
                "sip:bob@192.0.2.2",
                "INVITE",
                "From: <sip:x@example.com>;tag=2\r\n",
            ),
            (
                "sip:bob@192.0.2.2",
                "INVITE",
                "Call-ID: second@192.0.2.1\r\n",
            ),
            ("sip:bob@192.0.2.2", "BYE", ""),
            ("sip:bob@192.0.2.2", "INVITE", "Max-Forwards: lots\r\n"),
            (
                "sip:bob@192.0.2.2",
                "INVITE",
                "Route: sip:192.0.2.9;lr>\r\n",
            ),
            ("sip:bob@192.0.2.2", "INVITE", "Expires: soon\r\n"),
            ("sip:bob@192.0.2.2?Subject=hi", "INVITE", ""),
            ("sip:a?b@192.0.2.2?Subject=hi", "INVITE", ""),
        ];
        for (ruri, method, extra) in cases {
            let m = invite(ruri, method, extra);
            let want = m.validate();
            assert!(want.is_err(), "{ruri} {method} {extra:?}");
            assert_eq!(check_request(&m), want, "{ruri} {method} {extra:?}");
        }
        // A malformed top Via (the transaction key): same verdict too.
        let text = "OPTIONS sip:bob@192.0.2.2 SIP/2.0\r\nVia: SIP/2.0/UDP ;branch=z9hG4bKx\r\n\
                    Max-Forwards: 70\r\nFrom: <sip:a@example.com>;tag=1\r\n\
                    To: <sip:b@example.com>\r\nCall-ID: v@1\r\nCSeq: 1 OPTIONS\r\n\
                    Content-Length: 0\r\n\r\n";
        let m = Message::parse_datagram(Bytes::from_static(text.as_bytes())).expect("parses");
        assert!(m.validate().is_err());
        assert_eq!(check_request(&m), m.validate());
    }

    /// Contact, Record-Route and the Vias below the top one are forwarded unchanged and
    /// not checked (RFC 3261 §16.3), where `Message::validate` refuses them.
    #[test]
    fn check_request_leaves_what_the_proxy_does_not_read_to_the_next_hop() {
        for extra in [
            "Contact: <sip:alice@192.0.2.1\r\n",
            "Record-Route: <sip:192.0.2.7;lr\r\n",
            "Via: SIP/2.0/UDP ;branch=z9hG4bKlower\r\n",
        ] {
            let m = invite("sip:bob@192.0.2.2", "INVITE", extra);
            assert!(m.validate().is_err(), "{extra:?}");
            assert_eq!(check_request(&m), Ok(()), "{extra:?}");
        }
    }

    /// `next_hop` parses only the Route value it returns.
    #[test]
    fn next_hop_is_the_first_route_left_or_the_request_uri() {
        let m = invite(
            "sip:bob@192.0.2.2",
            "INVITE",
            "Route: <sip:192.0.2.9;lr>, <sip:192.0.2.10;lr>\r\n",
        );
        assert_eq!(next_hop(&m, None, 0), b"sip:192.0.2.9;lr");
        assert_eq!(next_hop(&m, None, 1), b"sip:192.0.2.10;lr");
        assert_eq!(next_hop(&m, None, 2), b"sip:bob@192.0.2.2");
        assert_eq!(next_hop(&m, Some("192.0.2.3:5070"), 0), b"192.0.2.3:5070");
    }

    #[test]
    fn text_helpers_write_what_the_formatter_writes() {
        for n in [0u64, 7, 10, 99, 5060, 65535, u64::MAX] {
            let mut s = String::new();
            push_decimal(&mut s, n);
            assert_eq!(s, n.to_string());
            s.clear();
            push_hex(&mut s, n);
            assert_eq!(s, format!("{n:x}"));
        }
        for ip in ["127.0.0.1", "0.0.0.0", "10.200.3.255", "::1", "2001:db8::5"] {
            let ip: IpAddr = ip.parse().unwrap();
            let mut s = String::new();
            push_ip(&mut s, ip);
            assert_eq!(s, ip.to_string());
        }
    }
}
