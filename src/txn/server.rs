//! Server transactions (RFC 3261 §17.2): the INVITE server machine (§17.2.1, with the
//! Accepted state and Timer L of RFC 6026 §7.1) and the non-INVITE server machine
//! (§17.2.2). Each owns its timers and the last response it sent, which it re-sends when
//! the request is retransmitted (and on Timer G).
//!
//! Invariants: at most one final response is sent in a state that allows it (INVITE:
//! one non-2xx, or any number of 2xx while Accepted); a machine in `Terminated` has no
//! armed timer.

use std::time::{Duration, Instant};

use super::action::{class, Action, Deadline, Leg, Response, TimerId, TimerKind};
use super::config::TmConfig;

/// The transaction user asked for a response the machine cannot send in its state.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("server transaction in state {state} cannot send a {status} response")]
pub struct SendError {
    pub state: &'static str,
    pub status: u16,
}

fn emit<M: Clone>(leg: Leg, response: &Response<M>, retransmit: bool, out: &mut Vec<Action<M>>) {
    let response = response.clone();
    out.push(match leg {
        Leg::CancelServer => Action::SendCancelReply {
            response,
            retransmit,
        },
        _ => Action::SendResponse {
            response,
            retransmit,
        },
    });
}

/// RFC 3261 Figure 7 + RFC 6026 Figure 7 states.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerInviteState {
    Proceeding,
    Completed,
    Confirmed,
    Accepted,
    Terminated,
}

/// INVITE server transaction (RFC 3261 §17.2.1, RFC 6026 §7.1).
#[derive(Clone, Debug)]
pub struct ServerInvite<M> {
    state: ServerInviteState,
    reliable: bool,
    last: Option<Response<M>>,
    interval_g: Duration,
    timer_g: Deadline,
    timer_h: Deadline,
    timer_i: Deadline,
    timer_l: Deadline,
}

fn sid(kind: TimerKind) -> TimerId {
    TimerId {
        leg: Leg::Server,
        kind,
    }
}

impl<M: Clone> ServerInvite<M> {
    /// A new INVITE arrived: Proceeding. The 100 Trying is the proxy's to send.
    pub fn new(reliable: bool) -> Self {
        ServerInvite {
            state: ServerInviteState::Proceeding,
            reliable,
            last: None,
            interval_g: Duration::ZERO,
            timer_g: Deadline::default(),
            timer_h: Deadline::default(),
            timer_i: Deadline::default(),
            timer_l: Deadline::default(),
        }
    }

    pub fn state(&self) -> ServerInviteState {
        self.state
    }

    pub fn is_terminated(&self) -> bool {
        self.state == ServerInviteState::Terminated
    }

    fn state_name(&self) -> &'static str {
        match self.state {
            ServerInviteState::Proceeding => "Proceeding",
            ServerInviteState::Completed => "Completed",
            ServerInviteState::Confirmed => "Confirmed",
            ServerInviteState::Accepted => "Accepted",
            ServerInviteState::Terminated => "Terminated",
        }
    }

    /// The transaction user sends `response`.
    pub fn send_response(
        &mut self,
        response: Response<M>,
        cfg: &TmConfig,
        now: Instant,
        out: &mut Vec<Action<M>>,
    ) -> Result<(), SendError> {
        use ServerInviteState::*;
        let status = response.status();
        match (self.state, class(status)) {
            (Proceeding, 1) => {}
            (Proceeding, 2) => {
                self.state = Accepted;
                self.timer_l.arm(sid(TimerKind::L), now + cfg.wt_timer, out);
            }
            // RFC 6026 §7.1: further 2xx are sent while Accepted.
            (Accepted, 2) => {}
            (Proceeding, 3..=6) => {
                self.state = Completed;
                if !self.reliable {
                    self.interval_g = cfg.t1;
                    self.timer_g.arm(sid(TimerKind::G), now + cfg.t1, out);
                }
                self.timer_h.arm(sid(TimerKind::H), now + cfg.t1_x64(), out);
            }
            _ => {
                return Err(SendError {
                    state: self.state_name(),
                    status,
                })
            }
        }
        emit(Leg::Server, &response, false, out);
        self.last = Some(response);
        Ok(())
    }

    /// The INVITE arrived again: re-send the last provisional (Proceeding) or the final
    /// (Completed). Absorbed otherwise (Accepted: RFC 6026 §7.1).
    pub fn on_request_retransmit(&mut self, out: &mut Vec<Action<M>>) {
        if matches!(
            self.state,
            ServerInviteState::Proceeding | ServerInviteState::Completed
        ) {
            if let Some(last) = &self.last {
                emit(Leg::Server, last, true, out);
            }
        }
    }

    /// An ACK matched. Returns true when it was for our non-2xx final (absorbed), false
    /// when the transaction user should see it (an end-to-end ACK).
    pub fn on_ack(&mut self, cfg: &TmConfig, now: Instant, out: &mut Vec<Action<M>>) -> bool {
        match self.state {
            ServerInviteState::Completed => {
                self.timer_g.clear(sid(TimerKind::G), out);
                self.timer_h.clear(sid(TimerKind::H), out);
                if self.reliable {
                    self.state = ServerInviteState::Terminated;
                } else {
                    self.state = ServerInviteState::Confirmed;
                    self.timer_i
                        .arm(sid(TimerKind::I), now + cfg.linger_t4(), out);
                }
                true
            }
            ServerInviteState::Confirmed => true,
            // A late ACK for our non-2xx (I or H ended us): nothing left to absorb, but
            // it is not an end-to-end ACK either.
            ServerInviteState::Terminated => self.last.as_ref().is_some_and(|r| r.status() >= 300),
            _ => false,
        }
    }

    pub fn on_timer(
        &mut self,
        kind: TimerKind,
        cfg: &TmConfig,
        now: Instant,
        out: &mut Vec<Action<M>>,
    ) {
        match kind {
            // G is disarmed on leaving Completed, so a live G is always in Completed.
            TimerKind::G
                if self.timer_g.fire(now) && self.state == ServerInviteState::Completed =>
            {
                if let Some(last) = &self.last {
                    emit(Leg::Server, last, true, out);
                }
                self.interval_g = self.interval_g.saturating_mul(2).min(cfg.t2);
                self.timer_g
                    .arm(sid(TimerKind::G), now + self.interval_g, out);
            }
            TimerKind::H if self.timer_h.fire(now) => self.terminate(out),
            TimerKind::I if self.timer_i.fire(now) => self.terminate(out),
            TimerKind::L if self.timer_l.fire(now) => self.terminate(out),
            _ => {}
        }
    }

    fn terminate(&mut self, out: &mut Vec<Action<M>>) {
        self.timer_g.clear(sid(TimerKind::G), out);
        self.timer_h.clear(sid(TimerKind::H), out);
        self.timer_i.clear(sid(TimerKind::I), out);
        self.timer_l.clear(sid(TimerKind::L), out);
        self.state = ServerInviteState::Terminated;
    }
}

/// RFC 3261 Figure 8 states.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerNonInviteState {
    Trying,
    Proceeding,
    Completed,
    Terminated,
}

/// Non-INVITE server transaction (RFC 3261 §17.2.2). Also serves the CANCEL received for
/// an INVITE (`leg == Leg::CancelServer`).
#[derive(Clone, Debug)]
pub struct ServerNonInvite<M> {
    state: ServerNonInviteState,
    leg: Leg,
    reliable: bool,
    last: Option<Response<M>>,
    timer_j: Deadline,
}

impl<M: Clone> ServerNonInvite<M> {
    pub fn new(leg: Leg, reliable: bool) -> Self {
        ServerNonInvite {
            state: ServerNonInviteState::Trying,
            leg,
            reliable,
            last: None,
            timer_j: Deadline::default(),
        }
    }

    pub fn state(&self) -> ServerNonInviteState {
        self.state
    }

    pub fn is_terminated(&self) -> bool {
        self.state == ServerNonInviteState::Terminated
    }

    fn jid(&self) -> TimerId {
        TimerId {
            leg: self.leg,
            kind: TimerKind::J,
        }
    }

    pub fn send_response(
        &mut self,
        response: Response<M>,
        cfg: &TmConfig,
        now: Instant,
        out: &mut Vec<Action<M>>,
    ) -> Result<(), SendError> {
        use ServerNonInviteState::*;
        let status = response.status();
        match (self.state, class(status)) {
            (Trying | Proceeding, 1) => self.state = Proceeding,
            (Trying | Proceeding, 2..=6) => {
                if self.reliable {
                    self.state = Terminated;
                } else {
                    self.state = Completed;
                    self.timer_j.arm(self.jid(), now + cfg.wt_timer, out);
                }
            }
            _ => {
                return Err(SendError {
                    state: match self.state {
                        Trying => "Trying",
                        Proceeding => "Proceeding",
                        Completed => "Completed",
                        Terminated => "Terminated",
                    },
                    status,
                })
            }
        }
        emit(self.leg, &response, false, out);
        self.last = Some(response);
        Ok(())
    }

    /// The request arrived again: re-send the last response (Proceeding, Completed);
    /// absorbed in Trying.
    pub fn on_request_retransmit(&mut self, out: &mut Vec<Action<M>>) {
        if matches!(
            self.state,
            ServerNonInviteState::Proceeding | ServerNonInviteState::Completed
        ) {
            if let Some(last) = &self.last {
                emit(self.leg, last, true, out);
            }
        }
    }

    pub fn on_timer(&mut self, kind: TimerKind, now: Instant, out: &mut Vec<Action<M>>) {
        if kind == TimerKind::J && self.timer_j.fire(now) {
            self.state = ServerNonInviteState::Terminated;
        }
        let _ = out;
    }

    /// Whether a final response was sent.
    pub fn has_final(&self) -> bool {
        matches!(
            self.state,
            ServerNonInviteState::Completed | ServerNonInviteState::Terminated
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(status: u16) -> Response<u32> {
        Response::Local { status, request: 0 }
    }

    fn kinds(out: &[Action<u32>]) -> Vec<(TimerKind, bool)> {
        out.iter()
            .filter_map(|a| match a {
                Action::SetTimer { timer, .. } => Some((timer.kind, true)),
                Action::ClearTimer { timer } => Some((timer.kind, false)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn invite_proceeding_resends_last_provisional() {
        let cfg = TmConfig::default();
        let t0 = Instant::now();
        let mut out = Vec::new();
        let mut s = ServerInvite::new(false);
        s.on_request_retransmit(&mut out);
        assert!(out.is_empty(), "nothing sent yet, nothing to re-send");
        s.send_response(local(100), &cfg, t0, &mut out).unwrap();
        out.clear();
        s.on_request_retransmit(&mut out);
        assert_eq!(
            out,
            vec![Action::SendResponse {
                response: local(100),
                retransmit: true
            }]
        );
    }

    #[test]
    fn invite_non2xx_g_doubles_to_t2_ack_confirms_i_terminates() {
        let cfg = TmConfig::default();
        let t0 = Instant::now();
        let mut out = Vec::new();
        let mut s = ServerInvite::new(false);
        s.send_response(local(486), &cfg, t0, &mut out).unwrap();
        assert_eq!(s.state(), ServerInviteState::Completed);
        assert_eq!(
            kinds(&out),
            vec![(TimerKind::G, true), (TimerKind::H, true)]
        );
        let mut at = t0 + cfg.t1;
        let mut interval = cfg.t1;
        for _ in 0..5 {
            out.clear();
            s.on_timer(TimerKind::G, &cfg, at, &mut out);
            assert!(matches!(
                out[0],
                Action::SendResponse {
                    retransmit: true,
                    ..
                }
            ));
            interval = (interval * 2).min(cfg.t2);
            assert_eq!(
                out[1],
                Action::SetTimer {
                    timer: sid(TimerKind::G),
                    deadline: at + interval
                }
            );
            at += interval;
        }
        assert!(s.send_response(local(200), &cfg, at, &mut out).is_err());
        out.clear();
        assert!(s.on_ack(&cfg, at, &mut out));
        assert_eq!(s.state(), ServerInviteState::Confirmed);
        assert_eq!(
            kinds(&out),
            vec![
                (TimerKind::G, false),
                (TimerKind::H, false),
                (TimerKind::I, true)
            ]
        );
        assert!(s.on_ack(&cfg, at, &mut out), "ACK retransmission absorbed");
        out.clear();
        s.on_timer(TimerKind::I, &cfg, at + cfg.linger_t4(), &mut out);
        assert!(s.is_terminated());
    }

    #[test]
    fn invite_h_fires_without_ack() {
        let cfg = TmConfig::default();
        let t0 = Instant::now();
        let mut out = Vec::new();
        let mut s = ServerInvite::new(true);
        s.send_response(local(404), &cfg, t0, &mut out).unwrap();
        assert_eq!(kinds(&out), vec![(TimerKind::H, true)], "no G on reliable");
        out.clear();
        s.on_timer(TimerKind::H, &cfg, t0 + cfg.t1_x64(), &mut out);
        assert!(s.is_terminated());
    }

    #[test]
    fn invite_reliable_ack_terminates_at_once() {
        let cfg = TmConfig::default();
        let t0 = Instant::now();
        let mut out = Vec::new();
        let mut s = ServerInvite::new(true);
        s.send_response(local(404), &cfg, t0, &mut out).unwrap();
        out.clear();
        assert!(s.on_ack(&cfg, t0, &mut out));
        assert!(s.is_terminated());
        assert_eq!(kinds(&out), vec![(TimerKind::H, false)]);
    }

    #[test]
    fn invite_2xx_accepted_absorbs_retransmits_sends_more_2xx_l_terminates() {
        let cfg = TmConfig::default();
        let t0 = Instant::now();
        let mut out = Vec::new();
        let mut s = ServerInvite::new(false);
        s.send_response(local(200), &cfg, t0, &mut out).unwrap();
        assert_eq!(s.state(), ServerInviteState::Accepted);
        out.clear();
        s.on_request_retransmit(&mut out);
        assert!(out.is_empty());
        assert!(!s.on_ack(&cfg, t0, &mut out), "2xx ACK is end-to-end");
        s.send_response(local(200), &cfg, t0, &mut out).unwrap();
        assert!(s.send_response(local(486), &cfg, t0, &mut out).is_err());
        out.clear();
        s.on_timer(TimerKind::L, &cfg, t0 + cfg.wt_timer, &mut out);
        assert!(s.is_terminated());
    }

    #[test]
    fn non_invite_trying_absorbs_then_final_j() {
        let cfg = TmConfig::default();
        let t0 = Instant::now();
        let mut out = Vec::new();
        let mut s = ServerNonInvite::new(Leg::Server, false);
        s.on_request_retransmit(&mut out);
        assert!(out.is_empty());
        s.send_response(local(180), &cfg, t0, &mut out).unwrap();
        assert_eq!(s.state(), ServerNonInviteState::Proceeding);
        s.send_response(local(200), &cfg, t0, &mut out).unwrap();
        assert_eq!(s.state(), ServerNonInviteState::Completed);
        assert!(s.send_response(local(500), &cfg, t0, &mut out).is_err());
        out.clear();
        s.on_request_retransmit(&mut out);
        assert_eq!(
            out,
            vec![Action::SendResponse {
                response: local(200),
                retransmit: true
            }]
        );
        out.clear();
        s.on_timer(TimerKind::J, t0 + cfg.wt_timer, &mut out);
        assert!(s.is_terminated());
    }

    #[test]
    fn cancel_leg_replies_with_cancel_reply_and_reliable_skips_j() {
        let cfg = TmConfig::default();
        let t0 = Instant::now();
        let mut out = Vec::new();
        let mut s = ServerNonInvite::new(Leg::CancelServer, true);
        s.send_response(local(200), &cfg, t0, &mut out).unwrap();
        assert_eq!(
            out,
            vec![Action::SendCancelReply {
                response: local(200),
                retransmit: false
            }]
        );
        assert!(s.is_terminated());
    }
}
