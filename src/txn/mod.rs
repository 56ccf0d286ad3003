//! `txn`: the SIP transaction layer of a stateful proxy, sans-io: `(event, now) -> actions`.
//! It owns the transaction state machines and the shard's transaction table; it knows
//! nothing of bytes, sockets or clocks. Messages are an opaque handle `M: Clone` chosen
//! by the glue (an `Rc`, a slab index...), cloned into actions, so keep it cheap.
//!
//! RFCs: RFC 3261 §17.1.1 (INVITE client), §17.1.2 (non-INVITE client), §17.2.1 (INVITE
//! server), §17.2.2 (non-INVITE server), §17.1.3 / §17.2.3 (matching), §16.6-§16.10
//! (proxy forwarding, Timer C, response context and selection, CANCEL), §9.1 / §9.2
//! (CANCEL); RFC 6026 §7-§8 (Accepted states, Timers L and M, 2xx forwarding).
//!
//! # Public API
//!
//! - [`TmConfig`] — T1, T2, T4, `fr_timer` (Timers B/F), `fr_inv_timer`, Timer C,
//!   Timer D, `max_branches`; `validate()`.
//! - [`TxnTable<M>`] — one per shard, bounded: `new(shard, capacity, secret, cfg)`,
//!   `match_request(branch, sent_by, method)` (ACK/CANCEL find their INVITE),
//!   `insert(branch, sent_by, method, request, upstream_reliable, now, out) -> TxnId`,
//!   `match_response(branch, cseq_method) -> ResponseMatch` (then `.into_event(status,
//!   msg)`), `get`/`get_mut`/`handle(id, event, now, out)`/`remove(id)`,
//!   `branch_id(id, branch) -> BranchId` (what to write in our Via).
//! - Branch ids: [`encode_branch`], [`decode_branch`], [`shard_of_branch`]; layout in
//!   [`table`].
//! - [`ProxyTxn<M>`] — one server transaction + its branches: `add_branch` (`t_relay`),
//!   `reply` (`t_reply`), `set_on_failure` (`t_on_failure`), `failure_route_done`,
//!   `handle(Event)`, `was_cancelled` (`t_was_cancelled`), `final_sent`,
//!   `pending_branches`, `branch_status`, `request`, `branch_request`, `challenges`
//!   (the 401/407 responses whose challenges the glue merges, §16.7 step 7).
//! - [`Event<M>`] in, [`Action<M>`] out (appended to a caller-owned, reused `Vec`),
//!   [`TimerId`] = [`Leg`] + [`TimerKind`], [`Response<M>`] (relayed or local).
//! - The single machines, usable alone: [`ClientInvite`], [`ClientNonInvite`],
//!   [`ServerInvite`], [`ServerNonInvite`].
//!
//! # How the glue drives it
//!
//! 1. Request in: `match_request(top_via_branch, sent_by, method)`; a match becomes
//!    `Event::RequestRetransmit` (same method), `Event::Ack` or `Event::Cancel`; an ACK or
//!    CANCEL without a match is routed statelessly (§16.10, §16.11); any other request:
//!    `insert` (`TableError::Full` → 503 or drop, by configuration). Then the script runs
//!    and calls `get_mut(id)` → `add_branch` / `reply` / `set_on_failure`.
//! 2. Response in: `match_response(top_via_branch, cseq_method)` →
//!    `handle(id, m.into_event(status, msg), now, out)`; no match: forward statelessly
//!    (every 2xx to an INVITE must still go upstream, RFC 6026 §8.4).
//! 3. Send actions: for `SendRequest`/`SendCancel`/`SendAck` on `branch`, put
//!    `branch_id(id, branch)` in our Via; for `SendResponse` strip our Via (`Relayed`)
//!    or build the reply from the request (`Local`, same To-tag for every local reply of
//!    one transaction). `retransmit: true` may re-send the bytes serialized before.
//! 4. Timers: `SetTimer { timer, deadline }` arms `(TxnId, timer)` in the wheel (a new
//!    deadline replaces the old one), `ClearTimer` disarms it. Deliver
//!    `Event::Timer(timer)` with `now >= deadline` (a wheel that rounds down must pass
//!    the deadline itself as `now`): an early delivery is taken as stale and ignored, and
//!    so are deliveries of cleared or replaced timers, so a lazy wheel is fine.
//! 5. `RunFailureRoute`: run the failure route (it may `add_branch`), then call
//!    `failure_route_done`. Until then the transaction cannot finish.
//! 6. `Terminated`: `remove(id)` (its slot and branch storage are reused).
//!
//! ```
//! use std::time::Instant;
//! use ringsip::txn::{Action, Event, Response, TmConfig, TxnTable};
//!
//! // `M` is whatever handle the glue uses; a string stands in for a parsed message here.
//! let mut table: TxnTable<&str> = TxnTable::new(0, 1024, 0x5eed, TmConfig::default())?;
//! let mut out = Vec::new();
//! let now = Instant::now();
//! let id = table.insert("z9hG4bKuac1", "uac.example:5060", "INVITE", "INVITE", false, now, &mut out)?;
//! assert!(matches!(&out[0], Action::SendResponse { response: Response::Local { status: 100, .. }, .. }));
//! out.clear();
//! // The script relays to one target.
//! let b = table.get_mut(id).ok_or("gone")?.add_branch("INVITE to uas", false, now, &mut out)?;
//! let via_branch = table.branch_id(id, b); // goes in our Via
//! out.clear();
//! // The UAS rejects; the response comes back with our branch on top.
//! let m = table.match_response(via_branch.as_str(), "INVITE").ok_or("no match")?;
//! table.handle(id, m.into_event(486, "486 from uas"), now, &mut out)?;
//! assert!(out.iter().any(|a| matches!(a, Action::SendAck { .. })));
//! assert!(out.iter().any(|a| matches!(a,
//!     Action::SendResponse { response: Response::Relayed { status: 486, .. }, retransmit: false })));
//! // The upstream ACK is absorbed by the server transaction.
//! out.clear();
//! let ack = table.match_request("z9hG4bKuac1", "uac.example:5060", "ACK")?.ok_or("no match")?;
//! table.handle(ack, Event::Ack { ack: "ACK" }, now, &mut out)?;
//! assert!(!out.iter().any(|a| matches!(a, Action::ForwardAck { .. })));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Semantics worth knowing
//!
//! - Timers B and F last `fr_timer` (5 s, OpenSIPS), not 64*T1; set `fr_timer = 64*t1`
//!   for RFC values. Timers D, J, L and M (an ended transaction absorbing retransmissions)
//!   last `wt_timer` (5 s, OpenSIPS), not 32 s / 64*T1, and I and K (T4) never longer;
//!   set `wt_timer = 32 s` for RFC values. `fr_inv_timer` counts from a branch's first provisional and is not
//!   restarted; Timer C is restarted by every provisional. Either one expiring makes the
//!   branch a 408 at once and CANCELs it (§16.8); the 487 that follows is ACKed and
//!   absorbed.
//! - §16.7 selection: 6xx wins, else the lowest class, a received response before a
//!   made-up one, then the earliest branch; 503 goes up as 500. A cancelled INVITE ends
//!   with 487 (the branch's own 487 when the best is one).
//! - Every 2xx to an INVITE goes upstream at once; a 2xx to another method too
//!   (§16.7 step 5; later finals are absorbed). Other finals wait for every branch.
//! - `RunFailureRoute` is emitted only when `set_on_failure(true)` was called; it is
//!   consumed by running (re-arm inside the failure route for another round). It runs
//!   for cancelled transactions too: the script checks `was_cancelled()`, and
//!   `add_branch` then fails with `TxnError::Cancelled`.
//!
//! Per transaction the table allocates the matching key (one boxed slice + one map
//! entry); branch storage is recycled per slot; actions go into the caller's `Vec`.
//!
//! Not implemented: RFC 2543 matching without the magic cookie (`TableError::
//! NoMagicCookie`); a CANCEL for a non-INVITE request (routed statelessly, §9.2 "SHOULD
//! NOT"). Merging 401/407 challenges edits headers, so it is the glue's, from
//! `ProxyTxn::challenges`.

pub mod action;
pub mod client;
pub mod config;
pub mod proxy;
pub mod server;
pub mod table;

pub use action::{Action, BranchIdx, Event, Leg, Response, TimerId, TimerKind};
pub use client::{
    ClientInvite, ClientInviteState, ClientNonInvite, ClientNonInviteState, ClientOutcome,
};
pub use config::{ConfigError, TmConfig, MAX_TIMER};
pub use proxy::{ProxyTxn, TxnError, TxnKind};
pub use server::{
    SendError, ServerInvite, ServerInviteState, ServerNonInvite, ServerNonInviteState,
};
pub use table::{
    decode_branch, encode_branch, has_magic_cookie, shard_of_branch, BranchId, BranchParts,
    ResponseMatch, TableError, TxnId, TxnTable, BRANCH_ID_LEN, MAGIC_COOKIE,
};
