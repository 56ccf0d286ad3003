//! The vocabulary shared by every machine of `txn`: what goes in ([`Event`]), what comes
//! out ([`Action`]), the timers ([`TimerKind`], [`TimerId`]) and the legs of a proxy
//! transaction ([`Leg`], [`BranchIdx`]).
//!
//! Invariant kept by every machine: a timer is armed by exactly one `SetTimer` and leaves
//! the armed set by exactly one of: its `ClearTimer`, or its delivery as `Event::Timer` at
//! or after its deadline. Re-arming a timer that is armed emits `SetTimer` again (the new
//! deadline replaces the old one). A terminated machine has no armed timer.

use std::time::Instant;

/// Index of a client branch inside one proxy transaction (0-based, < `max_branches`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BranchIdx(pub u8);

/// Which machine of a proxy transaction an action or timer belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Leg {
    /// The server transaction for the request received from upstream.
    Server,
    /// The server transaction of a CANCEL received for it (RFC 3261 §9.2).
    CancelServer,
    /// The client transaction of one branch (the forwarded request).
    Branch(BranchIdx),
    /// The client transaction of the CANCEL this proxy sent on a branch (§9.1, §16.10).
    BranchCancel(BranchIdx),
}

/// The timers of RFC 3261 §17 and §16.6, RFC 6026 §7, and OpenSIPS `fr_inv_timer`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TimerKind {
    /// INVITE client request retransmission (§17.1.1.2), unreliable only.
    A,
    /// INVITE client: no response (`fr_timer`); after a CANCEL: the 64*T1 guard of §9.1.
    B,
    /// Proxy INVITE timer (§16.6 step 11), restarted by each provisional.
    C,
    /// INVITE client Completed: absorb final retransmissions (unreliable only).
    D,
    /// Non-INVITE client request retransmission (§17.1.2.2), unreliable only.
    E,
    /// Non-INVITE client timeout (`fr_timer`).
    F,
    /// INVITE server final response retransmission (§17.2.1), unreliable only.
    G,
    /// INVITE server: wait for the ACK (64*T1).
    H,
    /// INVITE server Confirmed: absorb ACK retransmissions (T4 capped by `wt_timer`, unreliable only).
    I,
    /// Non-INVITE server Completed: absorb request retransmissions (`wt_timer`, unreliable).
    J,
    /// Non-INVITE client Completed: absorb response retransmissions (T4 capped by `wt_timer`, unreliable).
    K,
    /// INVITE server Accepted state (RFC 6026 §7.1), `wt_timer`.
    L,
    /// INVITE client Accepted state (RFC 6026 §7.2), `wt_timer`.
    M,
    /// OpenSIPS `fr_inv_timer`: longest ringing time of an INVITE branch.
    FrInv,
}

/// One armed timer of a proxy transaction. With the transaction's `TxnId` it is unique
/// in a shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TimerId {
    pub leg: Leg,
    pub kind: TimerKind,
}

/// A response to send upstream: relayed from a branch, or built by the proxy itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response<M> {
    /// A response received on a branch; the glue strips our top Via before sending.
    Relayed { status: u16, msg: M },
    /// A response this proxy generates (100 Trying, 408, 487, 500, the 200 to a CANCEL,
    /// `t_reply`): the glue builds it from `request` (RFC 3261 §8.2.6) with the standard
    /// reason phrase, adding a To-tag when `status > 100`.
    Local { status: u16, request: M },
}

impl<M> Response<M> {
    pub fn status(&self) -> u16 {
        match self {
            Response::Relayed { status, .. } | Response::Local { status, .. } => *status,
        }
    }
}

/// What happened to a proxy transaction. The glue matches incoming messages with
/// `TxnTable` and turns them into events; `now` is passed beside the event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event<M> {
    /// The original request arrived again from upstream (same key, same method).
    RequestRetransmit,
    /// An ACK matched the INVITE server transaction (RFC 3261 §17.2.3: ACK maps to INVITE).
    Ack { ack: M },
    /// A CANCEL (first or retransmitted) matched the INVITE server transaction (§9.2).
    Cancel { cancel: M },
    /// A response to the request forwarded on `branch` (CSeq method = that request's).
    Response {
        branch: BranchIdx,
        status: u16,
        msg: M,
    },
    /// A response to the CANCEL this proxy sent on `branch` (CSeq method CANCEL).
    CancelResponse { branch: BranchIdx, status: u16 },
    /// The transport could not send on `branch` (RFC 3261 §16.9: acts as a 503).
    TransportError { branch: BranchIdx },
    /// An armed timer reached its deadline. Stale deliveries (cleared, or re-armed to a
    /// later deadline) are ignored.
    Timer(TimerId),
}

/// What the glue must do, in order, after a call into a proxy transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action<M> {
    /// Send `request` on `branch` (the glue adds our Via with the branch's id, see
    /// `TxnTable::branch_id`). `retransmit` is true for Timer A/E retransmissions; the
    /// glue may re-send the bytes it serialized the first time.
    SendRequest {
        branch: BranchIdx,
        request: M,
        retransmit: bool,
    },
    /// Send (or re-send) a CANCEL on `branch`, built from that branch's request as RFC 3261
    /// §9.1 says (same Request-URI, Call-ID, From, To, CSeq number, top Via).
    SendCancel { branch: BranchIdx, retransmit: bool },
    /// Send the hop-by-hop ACK for the non-2xx final `response` received on `branch`
    /// (§17.1.1.3). Emitted again for each retransmission of that final.
    SendAck { branch: BranchIdx, response: M },
    /// Send `response` upstream on the server transaction.
    SendResponse {
        response: Response<M>,
        retransmit: bool,
    },
    /// Send the response to a CANCEL upstream (always `Local`, status 200).
    SendCancelReply {
        response: Response<M>,
        retransmit: bool,
    },
    /// Forward a 2xx to an INVITE upstream statelessly (RFC 3261 §16.7 step 9, RFC 6026
    /// §8.4): the server transaction already ended or sent a non-2xx final.
    ForwardStateless { response: M },
    /// An ACK that is not for a non-2xx final of ours (end-to-end ACK for a 2xx): the
    /// glue routes it like any other request.
    ForwardAck { ack: M },
    /// Arm (or re-arm) `timer` to fire at `deadline`.
    SetTimer { timer: TimerId, deadline: Instant },
    /// Disarm `timer`.
    ClearTimer { timer: TimerId },
    /// A response on `branch` for the proxy core (onreply_route, statistics): provisional
    /// or final. `response` is `None` when the proxy made it up: 408 (Timer B/F/C,
    /// `fr_inv_timer`), 503 (transport error), 487 (CANCEL guard expired).
    BranchResponse {
        branch: BranchIdx,
        status: u16,
        response: Option<M>,
    },
    /// Every branch has a final and the best one is >= 300, and `t_on_failure` was armed:
    /// run the failure route now. It may add branches (`ProxyTxn::add_branch`), then the
    /// glue calls `ProxyTxn::failure_route_done`.
    RunFailureRoute { branch: BranchIdx, status: u16 },
    /// Every machine of the transaction terminated and every timer is disarmed: the glue
    /// removes it from the table (`TxnTable::remove`).
    Terminated,
}

/// An armed-or-not deadline, with the emitting of `SetTimer` / `ClearTimer`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Deadline(Option<Instant>);

impl Deadline {
    pub(crate) fn arm<M>(&mut self, timer: TimerId, deadline: Instant, out: &mut Vec<Action<M>>) {
        self.0 = Some(deadline);
        out.push(Action::SetTimer { timer, deadline });
    }

    pub(crate) fn clear<M>(&mut self, timer: TimerId, out: &mut Vec<Action<M>>) {
        if self.0.take().is_some() {
            out.push(Action::ClearTimer { timer });
        }
    }

    /// True (and disarmed) when this delivery is the live one: armed and due.
    pub(crate) fn fire(&mut self, now: Instant) -> bool {
        match self.0 {
            Some(d) if now >= d => {
                self.0 = None;
                true
            }
            _ => false,
        }
    }

    pub(crate) fn is_armed(&self) -> bool {
        self.0.is_some()
    }
}

/// The class of a status code (1 for 1xx ... 6 for 6xx).
pub(crate) fn class(status: u16) -> u16 {
    status / 100
}
