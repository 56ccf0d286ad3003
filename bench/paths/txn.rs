//! The transaction layer's per-message work, sans-io: a [`TxnTable`] driven through whole
//! proxy transactions as the shard drives it (match, insert, `t_relay`'s branch, responses
//! matched by our branch id, timers delivered at their deadlines until `Terminated`, then
//! `remove`). Messages are `u32` handles, so only the layer itself is measured.
//!
//! - INVITE over UDP (RFC 3261 §17.2.1 / §17.1.1, §16.7, RFC 6026 Accepted states):
//!   INVITE in, 100 out, INVITE forwarded, 100/180/200 in and relayed; Timers L and M end
//!   it. 4 messages in.
//! - non-INVITE over UDP (§17.2.2 / §17.1.2): request in, forwarded, 200 in and relayed;
//!   Timers J and K end it. 2 messages in.
//!
//! Invariant: a transaction that does not relay its 200 or does not terminate within a
//! bounded number of timer deliveries is an error.

use std::time::Instant;

use ringsip::txn::{Action, Event, Response, TimerId, TmConfig, TxnId, TxnTable};

use crate::PathError;

/// Messages received per INVITE transaction (INVITE, 100, 180, 200).
pub const INVITE_MESSAGES: u64 = 4;
/// Messages received per non-INVITE transaction (request, 200).
pub const NON_INVITE_MESSAGES: u64 = 2;
/// Live transactions kept in the table beside the measured one, so matching works on a
/// table of a loaded shard's size rather than an empty one.
pub const BACKGROUND: u32 = 1000;

const BRANCH: &str = "z9hG4bK776asdhds";
const SENT_BY: &str = "pc33.atlanta.example.com:5060";
/// Most timer deliveries one transaction may need to end.
const MAX_TIMER_STEPS: usize = 32;

/// A table, the reused action buffer, and the armed timers of the transaction in flight.
pub struct TxnRun {
    table: TxnTable<u32>,
    out: Vec<Action<u32>>,
    timers: Vec<(TimerId, Instant)>,
    start: Instant,
    terminated: bool,
    relayed_final: Option<u16>,
    /// Send actions seen (requests, responses, ACKs, CANCELs), for the record.
    pub sends: u64,
}

impl TxnRun {
    /// A table of capacity `BACKGROUND + 16` already holding `BACKGROUND` live INVITE
    /// transactions (never answered, never expired: their timers are not delivered).
    pub fn new() -> Result<TxnRun, PathError> {
        let mut table = TxnTable::new(0, BACKGROUND + 16, 0x5eed_5eed, TmConfig::default())
            .map_err(|e| PathError::new("txn: config", e))?;
        let start = Instant::now();
        let mut out = Vec::with_capacity(32);
        for i in 0..BACKGROUND {
            let branch = format!("z9hG4bKbackground{i}");
            table
                .insert(
                    &branch,
                    "uac.example.net:5060",
                    "INVITE",
                    i,
                    false,
                    start,
                    &mut out,
                )
                .map_err(|e| PathError::new("txn: background insert", e))?;
            out.clear();
        }
        Ok(TxnRun {
            table,
            out,
            timers: Vec::with_capacity(16),
            start,
            terminated: false,
            relayed_final: None,
            sends: 0,
        })
    }

    /// Takes the actions of the last call: timers armed/cleared, sends counted.
    fn absorb(&mut self) {
        for a in self.out.drain(..) {
            match a {
                Action::SetTimer { timer, deadline } => {
                    match self.timers.iter_mut().find(|(t, _)| *t == timer) {
                        Some(slot) => slot.1 = deadline,
                        None => self.timers.push((timer, deadline)),
                    }
                }
                Action::ClearTimer { timer } => self.timers.retain(|(t, _)| *t != timer),
                Action::Terminated => self.terminated = true,
                Action::SendResponse { response, .. } => {
                    self.sends += 1;
                    if let Response::Relayed { status, .. } = response {
                        if status >= 200 {
                            self.relayed_final = Some(status);
                        }
                    }
                }
                Action::SendRequest { .. }
                | Action::SendCancel { .. }
                | Action::SendAck { .. }
                | Action::SendCancelReply { .. }
                | Action::ForwardStateless { .. }
                | Action::ForwardAck { .. } => self.sends += 1,
                Action::BranchResponse { .. } | Action::RunFailureRoute { .. } => {}
            }
        }
    }

    /// Delivers the armed timers, earliest first, each at its deadline, until the
    /// transaction terminates; then removes it.
    fn expire(&mut self, id: TxnId, what: &'static str) -> Result<(), PathError> {
        let mut steps = 0;
        while !self.terminated {
            steps += 1;
            let next = self
                .timers
                .iter()
                .enumerate()
                .min_by_key(|(_, (_, d))| *d)
                .map(|(i, _)| i);
            let (Some(i), true) = (next, steps <= MAX_TIMER_STEPS) else {
                return Err(PathError::new(
                    what,
                    ("not terminated", steps, &self.timers),
                ));
            };
            let (timer, deadline) = self.timers.swap_remove(i);
            self.table
                .handle(id, Event::Timer(timer), deadline, &mut self.out)
                .map_err(|e| PathError::new(what, e))?;
            self.absorb();
        }
        if !self.table.remove(id) {
            return Err(PathError::new(what, "remove: not live"));
        }
        if !self.timers.is_empty() {
            return Err(PathError::new(what, ("timers left armed", &self.timers)));
        }
        Ok(())
    }

    fn begin(&mut self, method: &str, what: &'static str) -> Result<TxnId, PathError> {
        self.terminated = false;
        self.relayed_final = None;
        self.timers.clear();
        let now = self.start;
        match self.table.match_request(BRANCH, SENT_BY, method) {
            Ok(None) => {}
            other => return Err(PathError::new(what, ("match_request", other))),
        }
        let id = self
            .table
            .insert(BRANCH, SENT_BY, method, 1, false, now, &mut self.out)
            .map_err(|e| PathError::new(what, e))?;
        self.absorb();
        Ok(id)
    }

    /// One transaction: `method` in, relayed on one branch, `statuses` back (the last one
    /// final), then its timers to the end.
    fn transaction(
        &mut self,
        method: &str,
        statuses: &[u16],
        what: &'static str,
    ) -> Result<(), PathError> {
        let now = self.start;
        let id = self.begin(method, what)?;
        let txn = self
            .table
            .get_mut(id)
            .ok_or_else(|| PathError::new(what, "inserted transaction not live"))?;
        let branch = txn
            .add_branch(2, false, now, &mut self.out)
            .map_err(|e| PathError::new(what, e))?;
        self.absorb();
        let via = self.table.branch_id(id, branch);
        for (msg, &status) in (3u32..).zip(statuses) {
            let m = self
                .table
                .match_response(via.as_str(), method)
                .ok_or_else(|| PathError::new(what, ("response not matched", status)))?;
            if m.txn != id {
                return Err(PathError::new(what, ("matched another transaction", m.txn)));
            }
            self.table
                .handle(id, m.into_event(status, msg), now, &mut self.out)
                .map_err(|e| PathError::new(what, e))?;
            self.absorb();
        }
        let last = statuses.last().copied();
        if self.relayed_final != last {
            return Err(PathError::new(
                what,
                ("final not relayed", self.relayed_final),
            ));
        }
        self.expire(id, what)
    }

    /// An INVITE transaction: INVITE, 100, 180, 200 ([`INVITE_MESSAGES`]).
    pub fn invite(&mut self) -> Result<(), PathError> {
        self.transaction("INVITE", &[100, 180, 200], "txn-invite")
    }

    /// A non-INVITE transaction (OPTIONS): request, 200 ([`NON_INVITE_MESSAGES`]).
    pub fn non_invite(&mut self) -> Result<(), PathError> {
        self.transaction("OPTIONS", &[200], "txn-non-invite")
    }
}
