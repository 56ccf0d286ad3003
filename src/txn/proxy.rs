//! The proxy transaction: one server transaction plus the client branches it forks to, as
//! a stateful proxy runs them (RFC 3261 §16.6-§16.10). It owns: the upstream server
//! machine, the server machine of a received CANCEL (§9.2), each branch's client machine,
//! the CANCEL client machine of each branch (§9.1), Timer C and `fr_inv_timer` per INVITE
//! branch, the response context (best final, §16.7) and the failure-route hand-off.
//!
//! Invariants:
//! - Upstream gets at most one final response through the server transaction, except
//!   2xx to an INVITE: every 2xx is forwarded (§16.7 step 5, RFC 6026 §8.4), through the
//!   server transaction while it can carry it (Proceeding/Accepted), statelessly after.
//! - A non-2xx final goes upstream only when every branch has a final (received or made
//!   up: 408 on Timer B/F/C/`fr_inv_timer`, 503 on transport error, 487 when the CANCEL
//!   guard expires), after the failure route ran if one was armed.
//! - Once a final went upstream or a CANCEL arrived, every INVITE branch without a final
//!   is cancelled: at once if it had a provisional, else as soon as one arrives (§9.1).
//! - `Action::Terminated` is emitted once, when every machine terminated; by then no
//!   timer of the transaction is armed.

use std::time::Instant;

use super::action::{class, Action, BranchIdx, Deadline, Event, Leg, Response, TimerId, TimerKind};
use super::client::{ClientInvite, ClientInviteState, ClientNonInvite, ClientOutcome};
use super::config::TmConfig;
use super::server::{SendError, ServerInvite, ServerInviteState, ServerNonInvite};

/// INVITE or any other method (RFC 3261 §17 has two machine families).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TxnKind {
    Invite,
    NonInvite,
}

/// Why the proxy core's request on a transaction was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TxnError {
    #[error("the transaction was cancelled (t_was_cancelled); no new branch")]
    Cancelled,
    #[error("a final response was already sent upstream")]
    AlreadyFinal,
    #[error("the transaction already has its maximum of {max} branches")]
    TooManyBranches { max: u8 },
    #[error(transparent)]
    Send(#[from] SendError),
}

#[derive(Clone, Debug)]
enum ServerSide<M> {
    Invite(ServerInvite<M>),
    NonInvite(ServerNonInvite<M>),
}

#[derive(Clone, Debug)]
enum ClientSide<M> {
    Invite(ClientInvite<M>),
    NonInvite(ClientNonInvite<M>),
}

#[derive(Clone, Debug)]
enum CancelLeg<M> {
    None,
    /// CANCEL wanted, but no provisional yet (§9.1: wait for one).
    Pending,
    Sent(ClientNonInvite<M>),
}

#[derive(Clone, Debug)]
struct BranchFinal<M> {
    status: u16,
    /// `None` when made up by the proxy.
    response: Option<M>,
}

#[derive(Clone, Debug)]
pub(crate) struct Branch<M> {
    client: ClientSide<M>,
    reliable: bool,
    cancel: CancelLeg<M>,
    outcome: Option<BranchFinal<M>>,
    provisional: bool,
    timer_c: Deadline,
    fr_inv: Deadline,
}

impl<M: Clone> Branch<M> {
    fn client_terminated(&self) -> bool {
        match &self.client {
            ClientSide::Invite(c) => c.is_terminated(),
            ClientSide::NonInvite(c) => c.is_terminated(),
        }
    }

    fn is_done(&self) -> bool {
        self.client_terminated()
            && match &self.cancel {
                CancelLeg::Sent(c) => c.is_terminated(),
                _ => true,
            }
            && !self.timer_c.is_armed()
            && !self.fr_inv.is_armed()
    }

    fn clear_proxy_timers(&mut self, b: BranchIdx, out: &mut Vec<Action<M>>) {
        self.timer_c.clear(tid(b, TimerKind::C), out);
        self.fr_inv.clear(tid(b, TimerKind::FrInv), out);
    }
}

fn tid(b: BranchIdx, kind: TimerKind) -> TimerId {
    TimerId {
        leg: Leg::Branch(b),
        kind,
    }
}

/// One stateful proxy transaction (server side + branches). `M` is the glue's handle to
/// a parsed message; it is cloned into actions, so make it cheap to clone.
#[derive(Clone, Debug)]
pub struct ProxyTxn<M> {
    cfg: TmConfig,
    kind: TxnKind,
    request: M,
    upstream_reliable: bool,
    server: ServerSide<M>,
    cancel_server: Option<ServerNonInvite<M>>,
    branches: Vec<Branch<M>>,
    cancelled: bool,
    final_sent: bool,
    on_failure: bool,
    in_failure_route: bool,
    branches_at_failure: usize,
    terminated: bool,
}

impl<M: Clone> ProxyTxn<M> {
    /// A new request from upstream (`cfg` must pass `TmConfig::validate`, as `TxnTable::new`
    /// checks). INVITE: the server transaction enters Proceeding and
    /// 100 Trying is sent at once (RFC 3261 §16.2, §17.2.1).
    pub fn new(
        kind: TxnKind,
        request: M,
        upstream_reliable: bool,
        cfg: &TmConfig,
        now: Instant,
        out: &mut Vec<Action<M>>,
    ) -> Self {
        Self::new_in(Vec::new(), kind, request, upstream_reliable, cfg, now, out)
    }

    /// `new`, reusing `storage` (empty, with capacity) for the branches.
    pub(crate) fn new_in(
        mut storage: Vec<Branch<M>>,
        kind: TxnKind,
        request: M,
        upstream_reliable: bool,
        cfg: &TmConfig,
        now: Instant,
        out: &mut Vec<Action<M>>,
    ) -> Self {
        storage.clear();
        let server = match kind {
            TxnKind::Invite => {
                let mut s = ServerInvite::new(upstream_reliable);
                let trying = Response::Local {
                    status: 100,
                    request: request.clone(),
                };
                let sent = s.send_response(trying, cfg, now, out);
                debug_assert!(sent.is_ok(), "a new server transaction accepts 100");
                ServerSide::Invite(s)
            }
            TxnKind::NonInvite => {
                ServerSide::NonInvite(ServerNonInvite::new(Leg::Server, upstream_reliable))
            }
        };
        ProxyTxn {
            cfg: *cfg,
            kind,
            request,
            upstream_reliable,
            server,
            cancel_server: None,
            branches: storage,
            cancelled: false,
            final_sent: false,
            on_failure: false,
            in_failure_route: false,
            branches_at_failure: 0,
            terminated: false,
        }
    }

    /// The branch storage, emptied, for the next transaction of a table slot.
    pub(crate) fn into_storage(self) -> Vec<Branch<M>> {
        let mut v = self.branches;
        v.clear();
        v
    }

    pub fn kind(&self) -> TxnKind {
        self.kind
    }

    /// The request this transaction serves.
    pub fn request(&self) -> &M {
        &self.request
    }

    /// The request forwarded on `branch`.
    pub fn branch_request(&self, branch: BranchIdx) -> Option<&M> {
        match &self.branches.get(usize::from(branch.0))?.client {
            ClientSide::Invite(c) => Some(c.request()),
            ClientSide::NonInvite(c) => c.request(),
        }
    }

    /// OpenSIPS `t_was_cancelled()`: a CANCEL for this INVITE was received.
    pub fn was_cancelled(&self) -> bool {
        self.cancelled
    }

    /// A final response went upstream through the server transaction.
    pub fn final_sent(&self) -> bool {
        self.final_sent
    }

    pub fn is_terminated(&self) -> bool {
        self.terminated
    }

    pub fn branch_count(&self) -> usize {
        self.branches.len()
    }

    /// Branches whose client machine has not terminated yet.
    pub fn pending_branches(&self) -> usize {
        self.branches.iter().filter(|b| !b.is_done()).count()
    }

    /// The final (received or made up) of `branch`, if it has one.
    pub fn branch_status(&self, branch: BranchIdx) -> Option<u16> {
        self.branches
            .get(usize::from(branch.0))
            .and_then(|b| b.outcome.as_ref().map(|o| o.status))
    }

    /// The 401 and 407 responses received on the branches (§16.7 step 7): when the final
    /// sent upstream is a 401/407, the glue copies every WWW-Authenticate and
    /// Proxy-Authenticate of these into it before sending.
    pub fn challenges(&self) -> impl Iterator<Item = &M> + '_ {
        self.branches.iter().filter_map(|b| {
            let o = b.outcome.as_ref()?;
            if o.status == 401 || o.status == 407 {
                o.response.as_ref()
            } else {
                None
            }
        })
    }

    /// OpenSIPS `t_on_failure`: arm (or disarm) the failure route for the next time all
    /// branches fail. Consumed when it runs; re-arm from inside it for another round.
    pub fn set_on_failure(&mut self, armed: bool) {
        self.on_failure = armed;
    }

    /// Forward `request` on a new branch (`t_relay`, also from a failure route for serial
    /// forking). Emits `SendRequest` for the new branch and arms its timers.
    pub fn add_branch(
        &mut self,
        request: M,
        reliable: bool,
        now: Instant,
        out: &mut Vec<Action<M>>,
    ) -> Result<BranchIdx, TxnError> {
        if self.final_sent || self.terminated {
            return Err(TxnError::AlreadyFinal);
        }
        if self.cancelled {
            return Err(TxnError::Cancelled);
        }
        let max = self.cfg.max_branches;
        let idx = match u8::try_from(self.branches.len()) {
            Ok(i) if i < max => BranchIdx(i),
            _ => return Err(TxnError::TooManyBranches { max }),
        };
        let mut branch = Branch {
            client: match self.kind {
                TxnKind::Invite => ClientSide::Invite(ClientInvite::start(
                    request, idx, reliable, &self.cfg, now, out,
                )),
                TxnKind::NonInvite => ClientSide::NonInvite(ClientNonInvite::start(
                    Some(request),
                    idx,
                    reliable,
                    &self.cfg,
                    now,
                    out,
                )),
            },
            reliable,
            cancel: CancelLeg::None,
            outcome: None,
            provisional: false,
            timer_c: Deadline::default(),
            fr_inv: Deadline::default(),
        };
        if self.kind == TxnKind::Invite {
            branch
                .timer_c
                .arm(tid(idx, TimerKind::C), now + self.cfg.timer_c, out);
        }
        self.branches.push(branch);
        Ok(idx)
    }

    /// Send a response of the proxy's own upstream (`t_reply`), provisional or final.
    /// A final cancels the INVITE branches still pending.
    pub fn reply(
        &mut self,
        response: Response<M>,
        now: Instant,
        out: &mut Vec<Action<M>>,
    ) -> Result<(), TxnError> {
        if response.status() >= 200 && self.final_sent {
            return Err(TxnError::AlreadyFinal);
        }
        let r = self.send_upstream(response, now, out);
        self.check_terminated(out);
        r
    }

    /// The failure route announced by `RunFailureRoute` finished. If it added no branch,
    /// the best final goes upstream now (487 if the transaction was cancelled).
    pub fn failure_route_done(&mut self, now: Instant, out: &mut Vec<Action<M>>) {
        if !self.in_failure_route {
            return;
        }
        self.in_failure_route = false;
        if !self.final_sent {
            if self.branches.len() > self.branches_at_failure {
                self.maybe_finish(now, out);
            } else {
                self.send_best(now, out);
            }
        }
        self.check_terminated(out);
    }

    /// Feed one event. Actions are appended to `out` in the order the glue must run them.
    pub fn handle(&mut self, event: Event<M>, now: Instant, out: &mut Vec<Action<M>>) {
        match event {
            Event::RequestRetransmit => match &mut self.server {
                ServerSide::Invite(s) => s.on_request_retransmit(out),
                ServerSide::NonInvite(s) => s.on_request_retransmit(out),
            },
            Event::Ack { ack } => {
                let absorbed = match &mut self.server {
                    ServerSide::Invite(s) => s.on_ack(&self.cfg, now, out),
                    ServerSide::NonInvite(_) => false,
                };
                if !absorbed {
                    out.push(Action::ForwardAck { ack });
                }
            }
            Event::Cancel { cancel } => self.on_cancel(cancel, now, out),
            Event::Response {
                branch,
                status,
                msg,
            } => self.on_branch_response(branch, status, msg, now, out),
            Event::CancelResponse { branch, status } => {
                if let Some(br) = self.branches.get_mut(usize::from(branch.0)) {
                    if let CancelLeg::Sent(c) = &mut br.cancel {
                        c.on_response(status, &self.cfg, now, out);
                    }
                }
            }
            Event::TransportError { branch } => self.on_transport_error(branch, now, out),
            Event::Timer(id) => self.on_timer(id, now, out),
        }
        self.check_terminated(out);
    }

    fn on_cancel(&mut self, cancel: M, now: Instant, out: &mut Vec<Action<M>>) {
        if let Some(cs) = &mut self.cancel_server {
            cs.on_request_retransmit(out);
            return;
        }
        // §16.10: a CANCEL that matched gets 200 at once, whatever happens to the INVITE.
        let mut cs = ServerNonInvite::new(Leg::CancelServer, self.upstream_reliable);
        let ok = Response::Local {
            status: 200,
            request: cancel,
        };
        let sent = cs.send_response(ok, &self.cfg, now, out);
        debug_assert!(sent.is_ok(), "a new server transaction accepts 200");
        self.cancel_server = Some(cs);
        if self.kind != TxnKind::Invite || self.final_sent {
            return;
        }
        self.cancelled = true;
        if self.branches.is_empty() && !self.in_failure_route {
            // Nothing forwarded yet (the script may be suspended): answer now.
            let terminated = Response::Local {
                status: 487,
                request: self.request.clone(),
            };
            let _ = self.send_upstream(terminated, now, out);
            return;
        }
        self.cancel_pending_branches(now, out);
    }

    fn on_branch_response(
        &mut self,
        b: BranchIdx,
        status: u16,
        msg: M,
        now: Instant,
        out: &mut Vec<Action<M>>,
    ) {
        let cfg = self.cfg;
        let Some(br) = self.branches.get_mut(usize::from(b.0)) else {
            return;
        };
        let outcome = match &mut br.client {
            ClientSide::Invite(c) => c.on_response(status, &msg, &cfg, now, out),
            ClientSide::NonInvite(c) => c.on_response(status, &cfg, now, out),
        };
        match outcome {
            ClientOutcome::Absorbed | ClientOutcome::TimedOut => {}
            ClientOutcome::Provisional => {
                let first = !br.provisional;
                br.provisional = true;
                if self.kind == TxnKind::Invite && br.outcome.is_none() {
                    // §16.7 step 2: a provisional restarts Timer C.
                    br.timer_c.arm(tid(b, TimerKind::C), now + cfg.timer_c, out);
                    if first {
                        br.fr_inv
                            .arm(tid(b, TimerKind::FrInv), now + cfg.fr_inv_timer, out);
                    }
                }
                if matches!(br.cancel, CancelLeg::Pending) {
                    self.send_cancel(b, now, out);
                }
                let Some(br) = self.branches.get(usize::from(b.0)) else {
                    return;
                };
                if br.outcome.is_none() {
                    out.push(Action::BranchResponse {
                        branch: b,
                        status,
                        response: Some(msg.clone()),
                    });
                    // §16.7 step 5: provisionals other than 100 go upstream at once.
                    if status != 100 && !self.final_sent && !self.cancelled {
                        let relayed = Response::Relayed { status, msg };
                        let _ = self.send_upstream(relayed, now, out);
                    }
                }
            }
            ClientOutcome::Final => {
                br.clear_proxy_timers(b, out);
                if br.outcome.is_some() {
                    return; // we gave up on this branch already; ACKed and absorbed
                }
                br.outcome = Some(BranchFinal {
                    status,
                    response: Some(msg.clone()),
                });
                out.push(Action::BranchResponse {
                    branch: b,
                    status,
                    response: Some(msg.clone()),
                });
                if self.kind == TxnKind::NonInvite && class(status) == 2 && !self.final_sent {
                    // §16.7 step 5: any 2xx goes up at once; other branches just finish.
                    let _ = self.send_upstream(Response::Relayed { status, msg }, now, out);
                } else if self.kind == TxnKind::Invite && class(status) == 6 {
                    // §16.7 step 5: a 6xx cancels the other branches.
                    self.cancel_pending_branches(now, out);
                }
                self.maybe_finish(now, out);
            }
            ClientOutcome::Success => {
                br.clear_proxy_timers(b, out);
                if br.outcome.is_none() {
                    br.outcome = Some(BranchFinal {
                        status,
                        response: Some(msg.clone()),
                    });
                    out.push(Action::BranchResponse {
                        branch: b,
                        status,
                        response: Some(msg.clone()),
                    });
                }
                self.forward_2xx(status, msg, now, out);
                self.cancel_pending_branches(now, out);
            }
        }
    }

    fn forward_2xx(&mut self, status: u16, msg: M, now: Instant, out: &mut Vec<Action<M>>) {
        let can_carry = match &self.server {
            ServerSide::Invite(s) => matches!(
                s.state(),
                ServerInviteState::Proceeding | ServerInviteState::Accepted
            ),
            ServerSide::NonInvite(_) => false,
        };
        if can_carry {
            let _ = self.send_upstream(Response::Relayed { status, msg }, now, out);
        } else {
            out.push(Action::ForwardStateless { response: msg });
        }
    }

    fn on_transport_error(&mut self, b: BranchIdx, now: Instant, out: &mut Vec<Action<M>>) {
        let Some(br) = self.branches.get_mut(usize::from(b.0)) else {
            return;
        };
        match &mut br.client {
            ClientSide::Invite(c) => c.terminate(out),
            ClientSide::NonInvite(c) => c.terminate(out),
        }
        if let CancelLeg::Sent(c) = &mut br.cancel {
            c.terminate(out);
        }
        br.clear_proxy_timers(b, out);
        if br.outcome.is_none() {
            // §16.9: behave as if a 503 was received.
            br.outcome = Some(BranchFinal {
                status: 503,
                response: None,
            });
            out.push(Action::BranchResponse {
                branch: b,
                status: 503,
                response: None,
            });
            self.maybe_finish(now, out);
        }
    }

    fn on_timer(&mut self, id: TimerId, now: Instant, out: &mut Vec<Action<M>>) {
        let cfg = self.cfg;
        match id.leg {
            Leg::Server => match &mut self.server {
                ServerSide::Invite(s) => s.on_timer(id.kind, &cfg, now, out),
                ServerSide::NonInvite(s) => s.on_timer(id.kind, now, out),
            },
            Leg::CancelServer => {
                if let Some(cs) = &mut self.cancel_server {
                    cs.on_timer(id.kind, now, out);
                }
            }
            Leg::BranchCancel(b) => {
                if let Some(br) = self.branches.get_mut(usize::from(b.0)) {
                    if let CancelLeg::Sent(c) = &mut br.cancel {
                        c.on_timer(id.kind, now, &cfg, out);
                    }
                }
            }
            Leg::Branch(b) => {
                let Some(br) = self.branches.get_mut(usize::from(b.0)) else {
                    return;
                };
                match id.kind {
                    TimerKind::C | TimerKind::FrInv => {
                        let live = if id.kind == TimerKind::C {
                            br.timer_c.fire(now)
                        } else {
                            br.fr_inv.fire(now)
                        };
                        if live {
                            self.give_up_branch(b, now, out);
                        }
                    }
                    kind => {
                        let outcome = match &mut br.client {
                            ClientSide::Invite(c) => c.on_timer(kind, now, &cfg, out),
                            ClientSide::NonInvite(c) => c.on_timer(kind, now, &cfg, out),
                        };
                        if outcome == ClientOutcome::TimedOut {
                            self.branch_timed_out(b, now, out);
                        }
                    }
                }
            }
        }
    }

    /// Timer C or `fr_inv_timer` fired (§16.8): the branch counts as 408 now; CANCEL it
    /// (at once if it had a provisional, else when one comes; Timer B ends it otherwise).
    fn give_up_branch(&mut self, b: BranchIdx, now: Instant, out: &mut Vec<Action<M>>) {
        let Some(br) = self.branches.get_mut(usize::from(b.0)) else {
            return;
        };
        br.clear_proxy_timers(b, out);
        if br.outcome.is_none() {
            br.outcome = Some(BranchFinal {
                status: 408,
                response: None,
            });
            out.push(Action::BranchResponse {
                branch: b,
                status: 408,
                response: None,
            });
        }
        self.cancel_branch(b, now, out);
        self.maybe_finish(now, out);
    }

    /// Timer B or F ended the branch's client transaction without a final.
    fn branch_timed_out(&mut self, b: BranchIdx, now: Instant, out: &mut Vec<Action<M>>) {
        let Some(br) = self.branches.get_mut(usize::from(b.0)) else {
            return;
        };
        br.clear_proxy_timers(b, out);
        let was_cancelled = !matches!(br.cancel, CancelLeg::None);
        if matches!(br.cancel, CancelLeg::Pending) {
            br.cancel = CancelLeg::None;
        }
        if br.outcome.is_none() {
            // §9.1: no final 64*T1 after our CANCEL: consider it cancelled.
            let status = if was_cancelled { 487 } else { 408 };
            br.outcome = Some(BranchFinal {
                status,
                response: None,
            });
            out.push(Action::BranchResponse {
                branch: b,
                status,
                response: None,
            });
            self.maybe_finish(now, out);
        }
    }

    fn cancel_pending_branches(&mut self, now: Instant, out: &mut Vec<Action<M>>) {
        for i in 0..self.branches.len() {
            if let Ok(i) = u8::try_from(i) {
                self.cancel_branch(BranchIdx(i), now, out);
            }
        }
    }

    /// Cancel one INVITE branch that has no final from the network yet.
    fn cancel_branch(&mut self, b: BranchIdx, now: Instant, out: &mut Vec<Action<M>>) {
        let Some(br) = self.branches.get_mut(usize::from(b.0)) else {
            return;
        };
        let ClientSide::Invite(c) = &br.client else {
            return;
        };
        if !matches!(
            c.state(),
            ClientInviteState::Calling | ClientInviteState::Proceeding
        ) || !matches!(br.cancel, CancelLeg::None)
        {
            return;
        }
        if br.provisional {
            self.send_cancel(b, now, out);
        } else {
            br.cancel = CancelLeg::Pending;
        }
    }

    fn send_cancel(&mut self, b: BranchIdx, now: Instant, out: &mut Vec<Action<M>>) {
        let cfg = self.cfg;
        let Some(br) = self.branches.get_mut(usize::from(b.0)) else {
            return;
        };
        if let ClientSide::Invite(c) = &mut br.client {
            if !matches!(
                c.state(),
                ClientInviteState::Calling | ClientInviteState::Proceeding
            ) {
                br.cancel = CancelLeg::None;
                return;
            }
            c.arm_cancel_guard(&cfg, now, out);
            br.cancel =
                CancelLeg::Sent(ClientNonInvite::start(None, b, br.reliable, &cfg, now, out));
        }
    }

    /// If every branch has a final and nothing final went upstream: run the failure route
    /// (once armed) or send the best final.
    fn maybe_finish(&mut self, now: Instant, out: &mut Vec<Action<M>>) {
        if self.final_sent
            || self.in_failure_route
            || self.branches.is_empty()
            || self.branches.iter().any(|b| b.outcome.is_none())
        {
            return;
        }
        if let Some((branch, status)) = self.best() {
            if status >= 300 && self.on_failure {
                self.on_failure = false;
                self.in_failure_route = true;
                self.branches_at_failure = self.branches.len();
                out.push(Action::RunFailureRoute { branch, status });
                return;
            }
        }
        self.send_best(now, out);
    }

    /// §16.7 step 6: a 6xx if any; else the lowest class; inside a class a received
    /// response before a made-up one, then the earliest branch.
    fn best(&self) -> Option<(BranchIdx, u16)> {
        self.branches
            .iter()
            .enumerate()
            .filter_map(|(i, b)| {
                let o = b.outcome.as_ref()?;
                let c = class(o.status);
                let rank = if c == 6 { 0 } else { c };
                Some(((rank, o.response.is_none(), i), o.status))
            })
            .min_by_key(|(key, _)| *key)
            .and_then(|((_, _, i), status)| Some((BranchIdx(u8::try_from(i).ok()?), status)))
    }

    fn send_best(&mut self, now: Instant, out: &mut Vec<Action<M>>) {
        let chosen = self.best().and_then(|(b, status)| {
            let o = self.branches.get(usize::from(b.0))?.outcome.as_ref()?;
            Some((status, o.response.clone()))
        });
        let local = |status| Response::Local {
            status,
            request: self.request.clone(),
        };
        let response = match chosen {
            // §9.2 / §16.10: a cancelled INVITE ends with 487.
            _ if self.cancelled => match chosen {
                Some((487, Some(msg))) => Response::Relayed { status: 487, msg },
                _ => local(487),
            },
            // §16.7 step 6: a 503 becomes 500 (the 503 was about the next hop).
            Some((503, _)) => local(500),
            Some((status, Some(msg))) => Response::Relayed { status, msg },
            Some((status, None)) => local(status),
            None => local(408),
        };
        let _ = self.send_upstream(response, now, out);
    }

    fn send_upstream(
        &mut self,
        response: Response<M>,
        now: Instant,
        out: &mut Vec<Action<M>>,
    ) -> Result<(), TxnError> {
        let is_final = response.status() >= 200;
        match &mut self.server {
            ServerSide::Invite(s) => s.send_response(response, &self.cfg, now, out)?,
            ServerSide::NonInvite(s) => s.send_response(response, &self.cfg, now, out)?,
        }
        if is_final {
            self.final_sent = true;
            self.cancel_pending_branches(now, out);
        }
        Ok(())
    }

    fn check_terminated(&mut self, out: &mut Vec<Action<M>>) {
        if self.terminated || self.in_failure_route {
            return;
        }
        let server_done = match &self.server {
            ServerSide::Invite(s) => s.is_terminated(),
            ServerSide::NonInvite(s) => s.is_terminated(),
        };
        let cancel_done = self
            .cancel_server
            .as_ref()
            .is_none_or(|c| c.is_terminated());
        if server_done && cancel_done && self.branches.iter().all(|b| b.is_done()) {
            self.terminated = true;
            out.push(Action::Terminated);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use super::*;

    /// A proxy transaction plus the armed-timer set its actions describe.
    struct Drive {
        txn: ProxyTxn<u32>,
        cfg: TmConfig,
        t0: Instant,
        now: Instant,
        armed: HashMap<TimerId, Instant>,
        log: Vec<Action<u32>>,
    }

    const B0: BranchIdx = BranchIdx(0);
    const B1: BranchIdx = BranchIdx(1);

    impl Drive {
        fn new(kind: TxnKind) -> Self {
            let cfg = TmConfig::default();
            let t0 = Instant::now();
            let mut out = Vec::new();
            let txn = ProxyTxn::new(kind, 1, false, &cfg, t0, &mut out);
            let mut d = Drive {
                txn,
                cfg,
                t0,
                now: t0,
                armed: HashMap::new(),
                log: Vec::new(),
            };
            d.absorb(out);
            d
        }

        fn absorb(&mut self, out: Vec<Action<u32>>) -> Vec<Action<u32>> {
            for a in &out {
                match a {
                    Action::SetTimer { timer, deadline } => {
                        self.armed.insert(*timer, *deadline);
                    }
                    Action::ClearTimer { timer } => {
                        assert!(
                            self.armed.remove(timer).is_some(),
                            "cleared unarmed {timer:?}"
                        );
                    }
                    _ => {}
                }
            }
            self.log.extend(out.iter().cloned());
            out
        }

        fn ev(&mut self, e: Event<u32>) -> Vec<Action<u32>> {
            let mut out = Vec::new();
            self.txn.handle(e, self.now, &mut out);
            self.absorb(out)
        }

        fn branch(&mut self, req: u32) -> BranchIdx {
            let mut out = Vec::new();
            let b = self.txn.add_branch(req, false, self.now, &mut out).unwrap();
            self.absorb(out);
            b
        }

        fn resp(&mut self, branch: BranchIdx, status: u16, msg: u32) -> Vec<Action<u32>> {
            self.ev(Event::Response {
                branch,
                status,
                msg,
            })
        }

        /// Fire every timer due up to `until`, in deadline order.
        fn advance(&mut self, until: Instant) -> Vec<Action<u32>> {
            let mut all = Vec::new();
            loop {
                let next = self
                    .armed
                    .iter()
                    .filter(|(_, d)| **d <= until)
                    .min_by_key(|(t, d)| (**d, format!("{t:?}")))
                    .map(|(t, d)| (*t, *d));
                let Some((timer, deadline)) = next else { break };
                self.armed.remove(&timer);
                self.now = deadline;
                all.extend(self.ev(Event::Timer(timer)));
            }
            self.now = until.max(self.now);
            all
        }

        /// Run until terminated (at most an hour of timers).
        fn finish(&mut self) {
            let end = self.now + Duration::from_secs(3600);
            self.advance(end);
            assert!(self.txn.is_terminated(), "not terminated: {:?}", self.armed);
            assert!(self.armed.is_empty(), "armed at end: {:?}", self.armed);
            assert_eq!(self.txn.pending_branches(), 0);
            let terms = self
                .log
                .iter()
                .filter(|a| **a == Action::Terminated)
                .count();
            assert_eq!(terms, 1);
        }

        fn upstream_finals(&self) -> Vec<Response<u32>> {
            self.log
                .iter()
                .filter_map(|a| match a {
                    Action::SendResponse {
                        response,
                        retransmit: false,
                    } if response.status() >= 200 => Some(response.clone()),
                    _ => None,
                })
                .collect()
        }
    }

    fn has(out: &[Action<u32>], pred: impl Fn(&Action<u32>) -> bool) -> bool {
        out.iter().any(pred)
    }

    #[test]
    fn invite_sends_100_and_resends_it_on_retransmission() {
        let mut d = Drive::new(TxnKind::Invite);
        assert_eq!(
            d.log[0],
            Action::SendResponse {
                response: Response::Local {
                    status: 100,
                    request: 1
                },
                retransmit: false
            }
        );
        let out = d.ev(Event::RequestRetransmit);
        assert!(has(&out, |a| matches!(
            a,
            Action::SendResponse {
                retransmit: true,
                ..
            }
        )));
    }

    #[test]
    fn non_invite_sends_no_100() {
        let d = Drive::new(TxnKind::NonInvite);
        assert!(d.log.is_empty());
    }

    #[test]
    fn best_of_two_4xx_is_the_first_and_goes_up_once_after_both() {
        let mut d = Drive::new(TxnKind::Invite);
        d.branch(10);
        d.branch(11);
        let out = d.resp(B0, 180, 20);
        assert!(has(&out, |a| *a
            == Action::SendResponse {
                response: Response::Relayed {
                    status: 180,
                    msg: 20
                },
                retransmit: false
            }));
        let out = d.resp(B0, 486, 21);
        assert!(has(&out, |a| matches!(
            a,
            Action::SendAck { branch: B0, .. }
        )));
        assert!(d.upstream_finals().is_empty(), "b1 still pending");
        d.resp(B1, 404, 22);
        assert_eq!(
            d.upstream_finals(),
            vec![Response::Relayed {
                status: 486,
                msg: 21
            }]
        );
        d.finish();
    }

    #[test]
    fn a_6xx_wins_and_cancels_the_other_branches() {
        let mut d = Drive::new(TxnKind::Invite);
        d.branch(10);
        d.branch(11);
        d.branch(12);
        d.resp(B1, 180, 20);
        d.resp(B0, 404, 21);
        let out = d.resp(BranchIdx(2), 603, 22);
        assert!(has(&out, |a| matches!(
            a,
            Action::SendCancel { branch: B1, .. }
        )));
        d.ev(Event::CancelResponse {
            branch: B1,
            status: 200,
        });
        d.resp(B1, 487, 23);
        assert_eq!(
            d.upstream_finals(),
            vec![Response::Relayed {
                status: 603,
                msg: 22
            }]
        );
        d.finish();
    }

    #[test]
    fn a_503_is_sent_up_as_500() {
        let mut d = Drive::new(TxnKind::Invite);
        d.branch(10);
        d.resp(B0, 503, 21);
        assert_eq!(
            d.upstream_finals(),
            vec![Response::Local {
                status: 500,
                request: 1
            }]
        );
        d.finish();
    }

    #[test]
    fn every_2xx_is_forwarded_and_other_branches_cancelled() {
        let mut d = Drive::new(TxnKind::Invite);
        d.branch(10);
        d.branch(11);
        d.resp(B1, 183, 20);
        let out = d.resp(B0, 200, 21);
        assert!(has(&out, |a| *a
            == Action::SendResponse {
                response: Response::Relayed {
                    status: 200,
                    msg: 21
                },
                retransmit: false
            }));
        assert!(has(&out, |a| matches!(
            a,
            Action::SendCancel { branch: B1, .. }
        )));
        // b1 answers too (race with our CANCEL): forwarded as well.
        let out = d.resp(B1, 200, 22);
        assert!(has(&out, |a| matches!(
            a,
            Action::SendResponse {
                response: Response::Relayed { msg: 22, .. },
                ..
            }
        )));
        // 2xx retransmission from b0 while Accepted: forwarded.
        let out = d.resp(B0, 200, 21);
        assert!(has(&out, |a| matches!(a, Action::SendResponse { .. })));
        assert!(!has(&d.log, |a| matches!(a, Action::SendAck { .. })));
        d.finish();
    }

    #[test]
    fn a_2xx_after_a_non2xx_final_goes_statelessly() {
        let mut d = Drive::new(TxnKind::Invite);
        d.branch(10);
        d.resp(B0, 180, 20);
        // fr_inv_timer expires: 408 upstream, CANCEL down.
        let at = d.now + d.cfg.fr_inv_timer;
        let out = d.advance(at);
        assert!(has(&out, |a| matches!(
            a,
            Action::SendCancel { branch: B0, .. }
        )));
        assert_eq!(
            d.upstream_finals(),
            vec![Response::Local {
                status: 408,
                request: 1
            }]
        );
        let out = d.resp(B0, 200, 30);
        assert!(has(&out, |a| *a == Action::ForwardStateless { response: 30 }));
        d.finish();
    }

    #[test]
    fn no_answer_gives_408_after_fr_timer() {
        let mut d = Drive::new(TxnKind::Invite);
        d.branch(10);
        let before = d.now + d.cfg.fr_timer - Duration::from_millis(1);
        d.advance(before);
        assert!(d.upstream_finals().is_empty());
        let retransmits = d
            .log
            .iter()
            .filter(|a| {
                matches!(
                    a,
                    Action::SendRequest {
                        retransmit: true,
                        ..
                    }
                )
            })
            .count();
        assert_eq!(retransmits, 3, "A at 0.5, 1.5, 3.5 s");
        let out = d.advance(d.t0 + d.cfg.fr_timer);
        assert!(has(&out, |a| *a
            == Action::BranchResponse {
                branch: B0,
                status: 408,
                response: None
            }));
        assert_eq!(
            d.upstream_finals(),
            vec![Response::Local {
                status: 408,
                request: 1
            }]
        );
        d.ev(Event::Ack { ack: 5 });
        d.finish();
    }

    #[test]
    fn timer_c_restarts_on_provisional_and_fires_after_silence() {
        let cfg = TmConfig {
            fr_inv_timer: Duration::from_secs(600),
            ..TmConfig::default()
        };
        let mut d = Drive::new(TxnKind::Invite);
        d.cfg = cfg;
        d.txn.cfg = cfg;
        d.branch(10);
        let c = TimerId {
            leg: Leg::Branch(B0),
            kind: TimerKind::C,
        };
        assert_eq!(d.armed.get(&c), Some(&(d.t0 + cfg.timer_c)));
        d.now += Duration::from_secs(100);
        d.resp(B0, 180, 20);
        assert_eq!(d.armed.get(&c), Some(&(d.now + cfg.timer_c)));
        let at = d.now + cfg.timer_c;
        let out = d.advance(at);
        assert!(has(&out, |a| matches!(a, Action::SendCancel { .. })));
        assert_eq!(d.upstream_finals().len(), 1);
        assert_eq!(d.upstream_finals()[0].status(), 408);
        // The UAS never answers the CANCEL: the §9.1 guard ends the branch.
        d.finish();
    }

    #[test]
    fn cancel_answers_200_cancels_branches_and_ends_with_487() {
        let mut d = Drive::new(TxnKind::Invite);
        d.branch(10);
        d.branch(11);
        d.resp(B0, 180, 20);
        let out = d.ev(Event::Cancel { cancel: 50 });
        assert!(has(&out, |a| *a
            == Action::SendCancelReply {
                response: Response::Local {
                    status: 200,
                    request: 50
                },
                retransmit: false
            }));
        assert!(has(&out, |a| matches!(
            a,
            Action::SendCancel { branch: B0, .. }
        )));
        assert!(!has(&out, |a| matches!(
            a,
            Action::SendCancel { branch: B1, .. }
        )));
        assert!(d.txn.was_cancelled());
        // Retransmitted CANCEL: the 200 again.
        let out = d.ev(Event::Cancel { cancel: 50 });
        assert!(has(&out, |a| matches!(
            a,
            Action::SendCancelReply {
                retransmit: true,
                ..
            }
        )));
        // b1's first provisional triggers its CANCEL (§9.1).
        let out = d.resp(B1, 100, 21);
        assert!(has(&out, |a| matches!(
            a,
            Action::SendCancel { branch: B1, .. }
        )));
        d.ev(Event::CancelResponse {
            branch: B0,
            status: 200,
        });
        d.resp(B0, 487, 22);
        d.resp(B1, 487, 23);
        assert_eq!(d.upstream_finals().len(), 1);
        assert_eq!(d.upstream_finals()[0].status(), 487);
        let mut out = Vec::new();
        assert_eq!(
            d.txn.add_branch(12, false, d.now, &mut out),
            Err(TxnError::AlreadyFinal)
        );
        d.ev(Event::Ack { ack: 6 });
        d.finish();
    }

    #[test]
    fn cancel_before_any_branch_answers_487_at_once() {
        let mut d = Drive::new(TxnKind::Invite);
        d.ev(Event::Cancel { cancel: 50 });
        assert_eq!(
            d.upstream_finals(),
            vec![Response::Local {
                status: 487,
                request: 1
            }]
        );
        let mut out = Vec::new();
        assert_eq!(
            d.txn.add_branch(12, false, d.now, &mut out),
            Err(TxnError::AlreadyFinal)
        );
        d.finish();
    }

    #[test]
    fn failure_route_can_add_a_serial_branch() {
        let mut d = Drive::new(TxnKind::Invite);
        d.txn.set_on_failure(true);
        d.branch(10);
        let out = d.resp(B0, 486, 20);
        assert!(has(&out, |a| *a
            == Action::RunFailureRoute {
                branch: B0,
                status: 486
            }));
        assert!(d.upstream_finals().is_empty());
        let b1 = d.branch(11);
        assert_eq!(b1, B1);
        let mut out = Vec::new();
        d.txn.failure_route_done(d.now, &mut out);
        d.absorb(out);
        assert!(d.upstream_finals().is_empty());
        d.resp(B1, 200, 21);
        assert_eq!(d.upstream_finals().len(), 1);
        assert_eq!(d.upstream_finals()[0].status(), 200);
        d.finish();
    }

    #[test]
    fn failure_route_without_new_branch_sends_best() {
        let mut d = Drive::new(TxnKind::Invite);
        d.txn.set_on_failure(true);
        d.branch(10);
        d.resp(B0, 404, 20);
        let mut out = Vec::new();
        d.txn.failure_route_done(d.now, &mut out);
        d.absorb(out);
        assert_eq!(
            d.upstream_finals(),
            vec![Response::Relayed {
                status: 404,
                msg: 20
            }]
        );
        d.finish();
    }

    #[test]
    fn transport_error_counts_as_503() {
        let mut d = Drive::new(TxnKind::NonInvite);
        d.branch(10);
        let out = d.ev(Event::TransportError { branch: B0 });
        assert!(has(&out, |a| *a
            == Action::BranchResponse {
                branch: B0,
                status: 503,
                response: None
            }));
        assert_eq!(d.upstream_finals()[0].status(), 500);
        d.finish();
    }

    #[test]
    fn non_invite_2xx_goes_up_at_once_and_f_gives_408() {
        let mut d = Drive::new(TxnKind::NonInvite);
        d.branch(10);
        d.branch(11);
        d.resp(B1, 200, 20);
        assert_eq!(
            d.upstream_finals(),
            vec![Response::Relayed {
                status: 200,
                msg: 20
            }]
        );
        d.finish();
        assert_eq!(d.txn.branch_status(B0), Some(408));

        let mut d = Drive::new(TxnKind::NonInvite);
        d.branch(10);
        d.advance(d.t0 + d.cfg.fr_timer);
        assert_eq!(d.upstream_finals()[0].status(), 408);
        d.finish();
    }

    #[test]
    fn challenges_lists_every_401_and_407() {
        let mut d = Drive::new(TxnKind::Invite);
        d.branch(10);
        d.branch(11);
        d.branch(12);
        d.resp(B0, 401, 20);
        d.resp(B1, 404, 21);
        d.resp(BranchIdx(2), 407, 22);
        assert_eq!(
            d.txn.challenges().copied().collect::<Vec<_>>(),
            vec![20, 22]
        );
        assert_eq!(d.upstream_finals()[0].status(), 401);
        d.finish();
    }

    #[test]
    fn completed_resends_final_on_retransmission_and_absorbs_ack() {
        let mut d = Drive::new(TxnKind::Invite);
        d.branch(10);
        d.resp(B0, 486, 20);
        let out = d.ev(Event::RequestRetransmit);
        assert_eq!(
            out,
            vec![Action::SendResponse {
                response: Response::Relayed {
                    status: 486,
                    msg: 20
                },
                retransmit: true
            }]
        );
        let out = d.ev(Event::Ack { ack: 7 });
        assert!(!has(&out, |a| matches!(a, Action::ForwardAck { .. })));
        let out = d.ev(Event::Ack { ack: 7 });
        assert!(out.is_empty(), "ACK retransmission absorbed: {out:?}");
        d.finish();
    }

    #[test]
    fn end_to_end_ack_is_forwarded() {
        let mut d = Drive::new(TxnKind::Invite);
        d.branch(10);
        d.resp(B0, 200, 20);
        let out = d.ev(Event::Ack { ack: 7 });
        assert_eq!(out, vec![Action::ForwardAck { ack: 7 }]);
        d.finish();
    }

    #[test]
    fn cancel_after_the_final_is_answered_200_without_effect() {
        let mut d = Drive::new(TxnKind::Invite);
        d.branch(10);
        d.resp(B0, 200, 20);
        let out = d.ev(Event::Cancel { cancel: 50 });
        assert!(has(&out, |a| matches!(a, Action::SendCancelReply { .. })));
        assert!(!has(&out, |a| matches!(a, Action::SendCancel { .. })));
        assert!(!d.txn.was_cancelled());
        d.finish();
    }

    #[test]
    fn cancel_during_failure_route_ends_with_487() {
        let mut d = Drive::new(TxnKind::Invite);
        d.txn.set_on_failure(true);
        d.branch(10);
        d.resp(B0, 486, 20);
        assert!(has(&d.log, |a| matches!(a, Action::RunFailureRoute { .. })));
        d.ev(Event::Cancel { cancel: 50 });
        assert!(d.txn.was_cancelled());
        let mut out = Vec::new();
        assert_eq!(
            d.txn.add_branch(11, false, d.now, &mut out),
            Err(TxnError::Cancelled)
        );
        d.txn.failure_route_done(d.now, &mut out);
        d.absorb(out);
        assert_eq!(
            d.upstream_finals(),
            vec![Response::Local {
                status: 487,
                request: 1
            }]
        );
        d.finish();
    }

    #[test]
    fn late_2xx_after_timer_b_is_still_forwarded() {
        let mut d = Drive::new(TxnKind::Invite);
        d.branch(10);
        d.advance(d.t0 + d.cfg.fr_timer);
        assert_eq!(d.upstream_finals()[0].status(), 408);
        let out = d.resp(B0, 200, 20);
        assert_eq!(out, vec![Action::ForwardStateless { response: 20 }]);
        d.finish();
    }

    #[test]
    fn script_provisional_reply_then_relay() {
        let mut d = Drive::new(TxnKind::Invite);
        let mut out = Vec::new();
        d.txn
            .reply(
                Response::Local {
                    status: 183,
                    request: 1,
                },
                d.now,
                &mut out,
            )
            .unwrap();
        d.absorb(out);
        let out = d.ev(Event::RequestRetransmit);
        assert!(has(&out, |a| matches!(
            a,
            Action::SendResponse {
                response: Response::Local { status: 183, .. },
                retransmit: true
            }
        )));
        d.branch(10);
        d.resp(B0, 603, 20);
        assert_eq!(d.upstream_finals()[0].status(), 603);
        d.finish();
    }

    #[test]
    fn stale_and_early_timers_do_nothing() {
        let mut d = Drive::new(TxnKind::Invite);
        d.branch(10);
        let b = TimerId {
            leg: Leg::Branch(B0),
            kind: TimerKind::B,
        };
        assert!(d.ev(Event::Timer(b)).is_empty(), "early B");
        let g = TimerId {
            leg: Leg::Server,
            kind: TimerKind::G,
        };
        assert!(d.ev(Event::Timer(g)).is_empty(), "G never armed");
        let k = TimerId {
            leg: Leg::BranchCancel(BranchIdx(5)),
            kind: TimerKind::K,
        };
        assert!(d.ev(Event::Timer(k)).is_empty(), "no such branch");
        assert!(d
            .ev(Event::Response {
                branch: BranchIdx(9),
                status: 200,
                msg: 1
            })
            .is_empty());
        d.resp(B0, 404, 20);
        d.finish();
    }

    #[test]
    fn sizes_stay_small() {
        use std::rc::Rc;
        let txn = std::mem::size_of::<ProxyTxn<Rc<()>>>();
        let branch = std::mem::size_of::<Branch<Rc<()>>>();
        println!("ProxyTxn {txn} bytes, Branch {branch} bytes");
        assert!(txn <= 512, "ProxyTxn grew to {txn} bytes");
        assert!(branch <= 384, "Branch grew to {branch} bytes");
    }

    #[test]
    fn reply_refuses_a_second_final_and_too_many_branches_is_an_error() {
        let mut d = Drive::new(TxnKind::Invite);
        for i in 0..d.cfg.max_branches {
            d.branch(u32::from(i));
        }
        let mut out = Vec::new();
        assert_eq!(
            d.txn.add_branch(99, false, d.now, &mut out),
            Err(TxnError::TooManyBranches { max: 12 })
        );
        let r = Response::Local {
            status: 480,
            request: 1,
        };
        d.txn.reply(r.clone(), d.now, &mut out).unwrap();
        assert_eq!(d.txn.reply(r, d.now, &mut out), Err(TxnError::AlreadyFinal));
        d.absorb(out);
        // No branch had a provisional: all wait for one, then Timer B ends them.
        d.ev(Event::Ack { ack: 3 });
        d.finish();
    }
}
