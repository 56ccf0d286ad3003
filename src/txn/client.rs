//! Client transactions (RFC 3261 §17.1): the INVITE client machine (§17.1.1, with the
//! Accepted state and Timer M of RFC 6026 §7.2) and the non-INVITE client machine
//! (§17.1.2). Each owns its timers and the request it (re)sends; it does not decide what
//! the proxy does with a response, it only reports what the response means
//! ([`ClientOutcome`]).
//!
//! Invariants: a machine in `Terminated` has no armed timer; a machine reports at most one
//! first final (`Final`/`Success`/`TimedOut`) — later ones are `Absorbed`, except 2xx
//! retransmissions in Accepted, which are reported again (`Success`) because a proxy
//! forwards every 2xx to an INVITE (RFC 6026 §8.4).

use std::time::{Duration, Instant};

use super::action::{class, Action, BranchIdx, Deadline, Leg, TimerId, TimerKind};
use super::config::TmConfig;

/// What a response or timer meant to a client machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientOutcome {
    /// Nothing for the proxy core (retransmission, stale timer, request retransmitted).
    Absorbed,
    /// A provisional response.
    Provisional,
    /// The first final response >= 300 (INVITE: ACK already emitted), or any final of a
    /// non-INVITE request, 2xx included.
    Final,
    /// A 2xx to an INVITE (first or retransmitted).
    Success,
    /// Timer B or F fired: the transaction ended without a final (proxy: act as 408).
    TimedOut,
}

/// RFC 3261 Figure 5 + RFC 6026 Figure 5 states.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientInviteState {
    Calling,
    Proceeding,
    Completed,
    Accepted,
    Terminated,
}

/// INVITE client transaction (RFC 3261 §17.1.1, RFC 6026 §7.2).
#[derive(Clone, Debug)]
pub struct ClientInvite<M> {
    state: ClientInviteState,
    request: M,
    branch: BranchIdx,
    reliable: bool,
    interval_a: Duration,
    timer_a: Deadline,
    timer_b: Deadline,
    timer_d: Deadline,
    timer_m: Deadline,
}

fn tid(leg: Leg, kind: TimerKind) -> TimerId {
    TimerId { leg, kind }
}

impl<M: Clone> ClientInvite<M> {
    /// Send the INVITE, arm Timer A (unreliable) and Timer B (`fr_timer`).
    pub fn start(
        request: M,
        branch: BranchIdx,
        reliable: bool,
        cfg: &TmConfig,
        now: Instant,
        out: &mut Vec<Action<M>>,
    ) -> Self {
        let mut c = ClientInvite {
            state: ClientInviteState::Calling,
            request,
            branch,
            reliable,
            interval_a: cfg.t1,
            timer_a: Deadline::default(),
            timer_b: Deadline::default(),
            timer_d: Deadline::default(),
            timer_m: Deadline::default(),
        };
        out.push(Action::SendRequest {
            branch,
            request: c.request.clone(),
            retransmit: false,
        });
        if !reliable {
            c.timer_a.arm(c.id(TimerKind::A), now + cfg.t1, out);
        }
        c.timer_b.arm(c.id(TimerKind::B), now + cfg.fr_timer, out);
        c
    }

    fn id(&self, kind: TimerKind) -> TimerId {
        tid(Leg::Branch(self.branch), kind)
    }

    pub fn state(&self) -> ClientInviteState {
        self.state
    }

    pub fn request(&self) -> &M {
        &self.request
    }

    pub fn is_terminated(&self) -> bool {
        self.state == ClientInviteState::Terminated
    }

    /// A response whose CSeq method is INVITE arrived for this branch.
    pub fn on_response(
        &mut self,
        status: u16,
        msg: &M,
        cfg: &TmConfig,
        now: Instant,
        out: &mut Vec<Action<M>>,
    ) -> ClientOutcome {
        use ClientInviteState::*;
        match (self.state, class(status)) {
            (Calling | Proceeding, 1) => {
                if self.state == Calling {
                    self.timer_a.clear(self.id(TimerKind::A), out);
                    self.timer_b.clear(self.id(TimerKind::B), out);
                    self.state = Proceeding;
                }
                ClientOutcome::Provisional
            }
            (Calling | Proceeding, 2) => {
                self.timer_a.clear(self.id(TimerKind::A), out);
                self.timer_b.clear(self.id(TimerKind::B), out);
                self.state = Accepted;
                self.timer_m
                    .arm(self.id(TimerKind::M), now + cfg.wt_timer, out);
                ClientOutcome::Success
            }
            (Calling | Proceeding, 3..=6) => {
                self.timer_a.clear(self.id(TimerKind::A), out);
                self.timer_b.clear(self.id(TimerKind::B), out);
                out.push(Action::SendAck {
                    branch: self.branch,
                    response: msg.clone(),
                });
                if self.reliable {
                    self.state = Terminated;
                } else {
                    self.state = Completed;
                    self.timer_d
                        .arm(self.id(TimerKind::D), now + cfg.wt_timer, out);
                }
                ClientOutcome::Final
            }
            (Completed, 3..=6) => {
                out.push(Action::SendAck {
                    branch: self.branch,
                    response: msg.clone(),
                });
                ClientOutcome::Absorbed
            }
            // RFC 6026 §7.2: every 2xx in Accepted goes to the TU; a 2xx after the
            // transaction ended is still forwarded by a proxy (§8.4), statelessly.
            (Accepted | Terminated, 2) => ClientOutcome::Success,
            _ => ClientOutcome::Absorbed,
        }
    }

    /// A timer of this branch fired. Timers C and FrInv belong to the proxy, not here.
    pub fn on_timer(
        &mut self,
        kind: TimerKind,
        now: Instant,
        cfg: &TmConfig,
        out: &mut Vec<Action<M>>,
    ) -> ClientOutcome {
        use ClientInviteState::*;
        match kind {
            TimerKind::A if self.timer_a.fire(now) => {
                if self.state == Calling {
                    out.push(Action::SendRequest {
                        branch: self.branch,
                        request: self.request.clone(),
                        retransmit: true,
                    });
                    self.interval_a = self.interval_a.saturating_mul(2);
                    self.timer_a
                        .arm(self.id(TimerKind::A), now + self.interval_a, out);
                }
                ClientOutcome::Absorbed
            }
            TimerKind::B if self.timer_b.fire(now) => {
                self.terminate(out);
                ClientOutcome::TimedOut
            }
            TimerKind::D if self.timer_d.fire(now) => {
                self.terminate(out);
                ClientOutcome::Absorbed
            }
            TimerKind::M if self.timer_m.fire(now) => {
                self.terminate(out);
                ClientOutcome::Absorbed
            }
            _ => {
                let _ = cfg;
                ClientOutcome::Absorbed
            }
        }
    }

    /// A CANCEL was sent for this INVITE: whatever state, wait at most 64*T1 more for a
    /// final (RFC 3261 §9.1), reusing Timer B. No effect once a final arrived.
    pub fn arm_cancel_guard(&mut self, cfg: &TmConfig, now: Instant, out: &mut Vec<Action<M>>) {
        if matches!(
            self.state,
            ClientInviteState::Calling | ClientInviteState::Proceeding
        ) {
            self.timer_b
                .arm(self.id(TimerKind::B), now + cfg.t1_x64(), out);
        }
    }

    /// Stop now (transport error): disarm everything.
    pub fn terminate(&mut self, out: &mut Vec<Action<M>>) {
        self.timer_a.clear(self.id(TimerKind::A), out);
        self.timer_b.clear(self.id(TimerKind::B), out);
        self.timer_d.clear(self.id(TimerKind::D), out);
        self.timer_m.clear(self.id(TimerKind::M), out);
        self.state = ClientInviteState::Terminated;
    }
}

/// RFC 3261 Figure 6 states.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientNonInviteState {
    Trying,
    Proceeding,
    Completed,
    Terminated,
}

/// Non-INVITE client transaction (RFC 3261 §17.1.2). With `request == None` it carries
/// the CANCEL of a branch (§9.1): the glue builds that request, see `Action::SendCancel`.
#[derive(Clone, Debug)]
pub struct ClientNonInvite<M> {
    state: ClientNonInviteState,
    request: Option<M>,
    branch: BranchIdx,
    reliable: bool,
    interval_e: Duration,
    timer_e: Deadline,
    timer_f: Deadline,
    timer_k: Deadline,
}

impl<M: Clone> ClientNonInvite<M> {
    /// Send the request (or the branch's CANCEL when `request` is `None`), arm Timer E
    /// (unreliable) and Timer F (`fr_timer`).
    pub fn start(
        request: Option<M>,
        branch: BranchIdx,
        reliable: bool,
        cfg: &TmConfig,
        now: Instant,
        out: &mut Vec<Action<M>>,
    ) -> Self {
        let mut c = ClientNonInvite {
            state: ClientNonInviteState::Trying,
            request,
            branch,
            reliable,
            interval_e: cfg.t1,
            timer_e: Deadline::default(),
            timer_f: Deadline::default(),
            timer_k: Deadline::default(),
        };
        c.send(false, out);
        if !reliable {
            c.timer_e.arm(c.id(TimerKind::E), now + cfg.t1, out);
        }
        c.timer_f.arm(c.id(TimerKind::F), now + cfg.fr_timer, out);
        c
    }

    fn leg(&self) -> Leg {
        if self.request.is_some() {
            Leg::Branch(self.branch)
        } else {
            Leg::BranchCancel(self.branch)
        }
    }

    fn id(&self, kind: TimerKind) -> TimerId {
        tid(self.leg(), kind)
    }

    fn send(&self, retransmit: bool, out: &mut Vec<Action<M>>) {
        match &self.request {
            Some(request) => out.push(Action::SendRequest {
                branch: self.branch,
                request: request.clone(),
                retransmit,
            }),
            None => out.push(Action::SendCancel {
                branch: self.branch,
                retransmit,
            }),
        }
    }

    /// The request sent, `None` for a CANCEL leg.
    pub fn request(&self) -> Option<&M> {
        self.request.as_ref()
    }

    pub fn state(&self) -> ClientNonInviteState {
        self.state
    }

    pub fn is_terminated(&self) -> bool {
        self.state == ClientNonInviteState::Terminated
    }

    pub fn on_response(
        &mut self,
        status: u16,
        cfg: &TmConfig,
        now: Instant,
        out: &mut Vec<Action<M>>,
    ) -> ClientOutcome {
        use ClientNonInviteState::*;
        match (self.state, class(status)) {
            (Trying | Proceeding, 1) => {
                self.state = Proceeding;
                ClientOutcome::Provisional
            }
            (Trying | Proceeding, 2..=6) => {
                self.timer_e.clear(self.id(TimerKind::E), out);
                self.timer_f.clear(self.id(TimerKind::F), out);
                if self.reliable {
                    self.state = Terminated;
                } else {
                    self.state = Completed;
                    self.timer_k
                        .arm(self.id(TimerKind::K), now + cfg.linger_t4(), out);
                }
                ClientOutcome::Final
            }
            _ => ClientOutcome::Absorbed,
        }
    }

    pub fn on_timer(
        &mut self,
        kind: TimerKind,
        now: Instant,
        cfg: &TmConfig,
        out: &mut Vec<Action<M>>,
    ) -> ClientOutcome {
        use ClientNonInviteState::*;
        match kind {
            TimerKind::E if self.timer_e.fire(now) => {
                if matches!(self.state, Trying | Proceeding) {
                    self.send(true, out);
                    self.interval_e = if self.state == Trying {
                        self.interval_e.saturating_mul(2).min(cfg.t2)
                    } else {
                        cfg.t2
                    };
                    self.timer_e
                        .arm(self.id(TimerKind::E), now + self.interval_e, out);
                }
                ClientOutcome::Absorbed
            }
            TimerKind::F if self.timer_f.fire(now) => {
                self.terminate(out);
                ClientOutcome::TimedOut
            }
            TimerKind::K if self.timer_k.fire(now) => {
                self.terminate(out);
                ClientOutcome::Absorbed
            }
            _ => ClientOutcome::Absorbed,
        }
    }

    /// Stop now (transport error): disarm everything.
    pub fn terminate(&mut self, out: &mut Vec<Action<M>>) {
        self.timer_e.clear(self.id(TimerKind::E), out);
        self.timer_f.clear(self.id(TimerKind::F), out);
        self.timer_k.clear(self.id(TimerKind::K), out);
        self.state = ClientNonInviteState::Terminated;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B0: BranchIdx = BranchIdx(0);

    fn timers(out: &[Action<u32>]) -> Vec<(TimerKind, bool)> {
        out.iter()
            .filter_map(|a| match a {
                Action::SetTimer { timer, .. } => Some((timer.kind, true)),
                Action::ClearTimer { timer } => Some((timer.kind, false)),
                _ => None,
            })
            .collect()
    }

    fn deadline(out: &[Action<u32>], kind: TimerKind) -> Option<Instant> {
        out.iter().rev().find_map(|a| match a {
            Action::SetTimer { timer, deadline } if timer.kind == kind => Some(*deadline),
            _ => None,
        })
    }

    #[test]
    fn invite_calling_retransmits_with_doubling_a_then_b_times_out() {
        let cfg = TmConfig::default();
        let t0 = Instant::now();
        let mut out = Vec::new();
        let mut c = ClientInvite::start(7u32, B0, false, &cfg, t0, &mut out);
        assert_eq!(
            out[0],
            Action::SendRequest {
                branch: B0,
                request: 7,
                retransmit: false
            }
        );
        assert_eq!(deadline(&out, TimerKind::A), Some(t0 + cfg.t1));
        assert_eq!(deadline(&out, TimerKind::B), Some(t0 + cfg.fr_timer));
        let mut at = t0 + cfg.t1;
        let mut interval = cfg.t1;
        for _ in 0..3 {
            out.clear();
            assert_eq!(
                c.on_timer(TimerKind::A, at, &cfg, &mut out),
                ClientOutcome::Absorbed
            );
            assert!(matches!(
                out[0],
                Action::SendRequest {
                    retransmit: true,
                    ..
                }
            ));
            interval *= 2;
            assert_eq!(deadline(&out, TimerKind::A), Some(at + interval));
            at += interval;
        }
        out.clear();
        let b = t0 + cfg.fr_timer;
        assert_eq!(
            c.on_timer(TimerKind::B, b, &cfg, &mut out),
            ClientOutcome::TimedOut
        );
        assert!(c.is_terminated());
        assert_eq!(timers(&out), vec![(TimerKind::A, false)]);
    }

    #[test]
    fn invite_stale_timer_is_ignored() {
        let cfg = TmConfig::default();
        let t0 = Instant::now();
        let mut out = Vec::new();
        let mut c = ClientInvite::start(1u32, B0, false, &cfg, t0, &mut out);
        out.clear();
        // B fired early (before its deadline): stale, ignored.
        assert_eq!(
            c.on_timer(TimerKind::B, t0, &cfg, &mut out),
            ClientOutcome::Absorbed
        );
        assert!(out.is_empty());
        assert_eq!(c.state(), ClientInviteState::Calling);
    }

    #[test]
    fn invite_provisional_then_non2xx_acks_and_absorbs_retransmissions() {
        let cfg = TmConfig::default();
        let t0 = Instant::now();
        let mut out = Vec::new();
        let mut c = ClientInvite::start(1u32, B0, false, &cfg, t0, &mut out);
        out.clear();
        assert_eq!(
            c.on_response(180, &2, &cfg, t0, &mut out),
            ClientOutcome::Provisional
        );
        assert_eq!(c.state(), ClientInviteState::Proceeding);
        assert_eq!(
            timers(&out),
            vec![(TimerKind::A, false), (TimerKind::B, false)]
        );
        out.clear();
        assert_eq!(
            c.on_response(486, &3, &cfg, t0, &mut out),
            ClientOutcome::Final
        );
        assert_eq!(
            out[0],
            Action::SendAck {
                branch: B0,
                response: 3
            }
        );
        assert_eq!(c.state(), ClientInviteState::Completed);
        assert_eq!(deadline(&out, TimerKind::D), Some(t0 + cfg.wt_timer));
        out.clear();
        assert_eq!(
            c.on_response(486, &4, &cfg, t0, &mut out),
            ClientOutcome::Absorbed
        );
        assert!(matches!(out[0], Action::SendAck { .. }));
        out.clear();
        c.on_timer(TimerKind::D, t0 + cfg.wt_timer, &cfg, &mut out);
        assert!(c.is_terminated());
    }

    #[test]
    fn invite_reliable_skips_a_and_d() {
        let cfg = TmConfig::default();
        let t0 = Instant::now();
        let mut out = Vec::new();
        let mut c = ClientInvite::start(1u32, B0, true, &cfg, t0, &mut out);
        assert_eq!(timers(&out), vec![(TimerKind::B, true)]);
        out.clear();
        c.on_response(500, &2, &cfg, t0, &mut out);
        assert!(c.is_terminated());
        assert!(matches!(out.last(), Some(Action::SendAck { .. })));
    }

    #[test]
    fn invite_2xx_enters_accepted_and_reports_retransmissions() {
        let cfg = TmConfig::default();
        let t0 = Instant::now();
        let mut out = Vec::new();
        let mut c = ClientInvite::start(1u32, B0, false, &cfg, t0, &mut out);
        out.clear();
        assert_eq!(
            c.on_response(200, &2, &cfg, t0, &mut out),
            ClientOutcome::Success
        );
        assert_eq!(c.state(), ClientInviteState::Accepted);
        assert_eq!(deadline(&out, TimerKind::M), Some(t0 + cfg.wt_timer));
        assert!(!out.iter().any(|a| matches!(a, Action::SendAck { .. })));
        out.clear();
        assert_eq!(
            c.on_response(200, &2, &cfg, t0, &mut out),
            ClientOutcome::Success
        );
        assert_eq!(
            c.on_response(180, &2, &cfg, t0, &mut out),
            ClientOutcome::Absorbed
        );
        c.on_timer(TimerKind::M, t0 + cfg.wt_timer, &cfg, &mut out);
        assert!(c.is_terminated());
    }

    #[test]
    fn invite_cancel_guard_rearms_b() {
        let cfg = TmConfig::default();
        let t0 = Instant::now();
        let mut out = Vec::new();
        let mut c = ClientInvite::start(1u32, B0, false, &cfg, t0, &mut out);
        c.on_response(180, &2, &cfg, t0, &mut out);
        out.clear();
        let t = t0 + Duration::from_secs(10);
        c.arm_cancel_guard(&cfg, t, &mut out);
        assert_eq!(deadline(&out, TimerKind::B), Some(t + cfg.t1_x64()));
        out.clear();
        assert_eq!(
            c.on_timer(TimerKind::B, t + cfg.t1_x64(), &cfg, &mut out),
            ClientOutcome::TimedOut
        );
        assert!(c.is_terminated());
    }

    #[test]
    fn non_invite_e_caps_at_t2_and_f_times_out() {
        let cfg = TmConfig::default();
        let t0 = Instant::now();
        let mut out = Vec::new();
        let mut c = ClientNonInvite::start(Some(1u32), B0, false, &cfg, t0, &mut out);
        let mut at = t0 + cfg.t1;
        let mut expect = cfg.t1;
        for _ in 0..5 {
            out.clear();
            c.on_timer(TimerKind::E, at, &cfg, &mut out);
            expect = (expect * 2).min(cfg.t2);
            assert_eq!(deadline(&out, TimerKind::E), Some(at + expect));
            at += expect;
        }
        out.clear();
        assert_eq!(
            c.on_timer(TimerKind::F, t0 + cfg.fr_timer, &cfg, &mut out),
            ClientOutcome::TimedOut
        );
        assert!(c.is_terminated());
        assert_eq!(timers(&out), vec![(TimerKind::E, false)]);
    }

    #[test]
    fn non_invite_proceeding_retransmits_at_t2_then_final_arms_k() {
        let cfg = TmConfig::default();
        let t0 = Instant::now();
        let mut out = Vec::new();
        let mut c = ClientNonInvite::start(Some(1u32), B0, false, &cfg, t0, &mut out);
        assert_eq!(
            c.on_response(100, &cfg, t0, &mut out),
            ClientOutcome::Provisional
        );
        out.clear();
        c.on_timer(TimerKind::E, t0 + cfg.t1, &cfg, &mut out);
        assert_eq!(deadline(&out, TimerKind::E), Some(t0 + cfg.t1 + cfg.t2));
        out.clear();
        assert_eq!(c.on_response(200, &cfg, t0, &mut out), ClientOutcome::Final);
        assert_eq!(c.state(), ClientNonInviteState::Completed);
        assert_eq!(deadline(&out, TimerKind::K), Some(t0 + cfg.linger_t4()));
        assert_eq!(
            c.on_response(200, &cfg, t0, &mut out),
            ClientOutcome::Absorbed
        );
        out.clear();
        c.on_timer(TimerKind::K, t0 + cfg.linger_t4(), &cfg, &mut out);
        assert!(c.is_terminated());
    }

    #[test]
    fn cancel_leg_sends_cancel_actions() {
        let cfg = TmConfig::default();
        let t0 = Instant::now();
        let mut out = Vec::new();
        let mut c = ClientNonInvite::<u32>::start(None, BranchIdx(2), true, &cfg, t0, &mut out);
        assert_eq!(
            out[0],
            Action::SendCancel {
                branch: BranchIdx(2),
                retransmit: false
            }
        );
        assert!(matches!(
            out[1],
            Action::SetTimer {
                timer: TimerId {
                    leg: Leg::BranchCancel(BranchIdx(2)),
                    kind: TimerKind::F
                },
                ..
            }
        ));
        out.clear();
        c.on_response(200, &cfg, t0, &mut out);
        assert!(c.is_terminated());
    }
}
