//! The load generator's sans-io engines: [`Uac`] starts calls and matches their
//! responses, [`Uas`] answers requests. Both take a datagram (or a tick) and `now`, and
//! append what to send to an [`Outbox`]; they never touch a socket or a clock.
//!
//! UAC (RFC 3261 §17.1): one transaction at a time per call slot. Over UDP requests are
//! retransmitted with Timer A/E back-off (T1 = 500 ms doubling; non-INVITE capped at
//! T2 = 4 s, INVITE retransmissions stop on a provisional response); over TCP they are
//! sent once (§17.1.1.2, §17.1.2.2: Timers A and E are not started on a reliable
//! transport). Either way a transaction time-out (Timer B/F, 64·T1 by default,
//! configurable) fails the call as `timeout`.
//! A final non-2xx response to INVITE is ACKed in its transaction (same branch); a 2xx is
//! ACKed with a new branch, and a retransmitted 2xx is ACKed again (§13.2.2.4).
//!
//! A call is sent from one source socket (UDP) or over one connection (TCP), its `local`
//! index, chosen round-robin among those still usable. When the driver reports a
//! connection lost ([`Uac::connection_lost`]) the calls on it fail as `connection` at once
//! and new calls avoid it; with none left, no more calls start.
//!
//! Call slots live in a slab; the Call-ID carries the slot index and its generation
//! (see [`crate::template`]), so matching a response is a hex decode, not a lookup.
//! Timers are FIFO queues, one per distinct duration (every entry of a queue has the same
//! duration, so the queue is sorted by deadline); a stale entry (slot reused, transaction
//! moved on) is recognised by its generation and epoch and skipped when it expires.
//! Steady state allocates nothing: the slab, queues and outbox only grow to their
//! high-water marks.
//!
//! UAS: stateless except for its 200s to INVITE. INVITE → 100, 180, 200; BYE, OPTIONS,
//! REGISTER, CANCEL → 200; ACK → nothing; anything else → 501. The To tag is a hash of the
//! Call-ID, so a retransmitted INVITE gets the same answers. A 200 to INVITE is kept and
//! retransmitted until its ACK arrives (Timer G, T1 doubling to T2) or for at most 64·T1
//! (Timer H), RFC 3261 §13.3.1.4; the table of them is bounded ([`MAX_PENDING_2XX`]).
//! Responses go to the datagram's source address (what a proxy expects, RFC 3581-style);
//! over TCP, `local` names the connection the request came on and responses go back on
//! it (RFC 3261 §18.2.2), the 2xx retransmissions too (§13.3.1.4 applies end to end).
//!
//! In-dialog requests (the ACK to a 2xx, BYE) follow the dialog learnt from the 2xx
//! (§12.1.2, §12.2.1.1): Request-URI = the Contact URI, and a `Route:` line with the
//! Record-Route entries reversed (loose routing assumed). Every request is sent to the
//! configured target, which is the first hop of that route when a proxy record-routes.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::frame::FrameError;
use crate::msg::{self, HeaderName, StartLine};
pub use crate::template::Transport;
use crate::template::{self, Templates, KEY_LEN};

/// RFC 3261 Timer T1.
pub const T1: Duration = Duration::from_millis(500);
/// RFC 3261 Timer T2.
pub const T2: Duration = Duration::from_secs(4);
/// Timer B/F default: 64·T1.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(32);

/// Retransmission queues: level k holds timers of T1·2^k (k = 0..=6, up to 32 s).
const RETRANS_LEVELS: usize = 7;
/// The level whose duration is T2 (non-INVITE retransmissions stay there).
const T2_LEVEL: u8 = 3;
/// Longest remote tag kept for ACK/BYE.
const MAX_TAG: usize = 64;

/// What each call does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// OPTIONS → 200.
    Options,
    /// REGISTER → 200.
    Register,
    /// INVITE → 100/180/200, ACK, (hold), BYE → 200.
    Call,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Options => "options",
            Scenario::Register => "register",
            Scenario::Call => "call",
        }
    }
}

/// Datagrams to send, appended by the engines and drained by the driver. Reused across
/// loop turns: `clear` keeps the capacity.
#[derive(Debug, Default)]
pub struct Outbox {
    buf: Vec<u8>,
    items: Vec<OutDatagram>,
}

#[derive(Debug, Clone, Copy)]
struct OutDatagram {
    local: u32,
    to: SocketAddr,
    start: usize,
    end: usize,
}

impl Outbox {
    pub fn new() -> Outbox {
        Outbox {
            buf: Vec::with_capacity(64 * 1024),
            items: Vec::with_capacity(256),
        }
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn clear(&mut self) {
        self.buf.clear();
        self.items.clear();
    }

    /// Datagram `i`: (index of the local socket to send it from, or id of the
    /// connection to send it on; destination; bytes).
    pub fn get(&self, i: usize) -> Option<(usize, SocketAddr, &[u8])> {
        let d = self.items.get(i)?;
        Some((d.local as usize, d.to, self.buf.get(d.start..d.end)?))
    }

    /// The last datagram appended.
    pub fn last(&self) -> Option<(usize, SocketAddr, &[u8])> {
        self.get(self.items.len().checked_sub(1)?)
    }

    pub fn iter(&self) -> impl Iterator<Item = (usize, SocketAddr, &[u8])> + '_ {
        (0..self.items.len()).filter_map(move |i| self.get(i))
    }

    fn push_with(&mut self, local: usize, to: SocketAddr, write: impl FnOnce(&mut Vec<u8>)) {
        let start = self.buf.len();
        write(&mut self.buf);
        let local = u32::try_from(local).unwrap_or(u32::MAX);
        self.items.push(OutDatagram {
            local,
            to,
            start,
            end: self.buf.len(),
        });
    }
}

/// Why a call failed (the report's `failures`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Failures {
    pub timeout: u64,
    pub status_4xx: u64,
    pub status_5xx: u64,
    pub status_6xx: u64,
    pub other: u64,
    /// The call's connection was lost (TCP) before the call ended.
    pub connection: u64,
    /// The failing final responses by request and status, e.g. `("INVITE", 503)`.
    pub by_status: std::collections::BTreeMap<(&'static str, u16), u64>,
}

impl Failures {
    pub fn total(&self) -> u64 {
        self.timeout
            + self.status_4xx
            + self.status_5xx
            + self.status_6xx
            + self.other
            + self.connection
    }

    fn add(&mut self, o: &Failures) {
        self.timeout += o.timeout;
        self.status_4xx += o.status_4xx;
        self.status_5xx += o.status_5xx;
        self.status_6xx += o.status_6xx;
        self.other += o.other;
        self.connection += o.connection;
        for (k, n) in &o.by_status {
            *self.by_status.entry(*k).or_default() += n;
        }
    }

    /// A call failed on a final response `code` (≥ 300) to `request`. Allocates only for
    /// a (request, status) pair not seen before.
    fn count_status(&mut self, request: &'static str, code: u16) {
        *self.by_status.entry((request, code)).or_default() += 1;
        match code {
            400..=499 => self.status_4xx += 1,
            500..=599 => self.status_5xx += 1,
            600..=699 => self.status_6xx += 1,
            _ => self.other += 1,
        }
    }
}

/// Why a connection failed or was closed (TCP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnError {
    /// The connect was refused (nobody listens).
    Refused,
    /// The connect did not complete within its time-out.
    ConnectTimeout,
    /// Reset by the peer, or a write on a connection the peer had closed.
    Reset,
    /// The peer closed the connection while it was still needed.
    Closed,
    /// A message without Content-Length (mandatory on streams, RFC 3261 §18.3).
    MissingContentLength,
    /// A Content-Length that is not a number, or two that differ.
    BadContentLength,
    /// A message longer than the framing limit.
    TooLarge,
    /// More bytes queued for a connection than its limit: the peer does not read.
    WriteBacklog,
    /// Any other I/O error (the driver logs it).
    Other,
}

impl ConnError {
    /// The reason a failed connect stands for.
    pub fn of_connect(e: &std::io::Error) -> ConnError {
        match e.kind() {
            std::io::ErrorKind::ConnectionRefused => ConnError::Refused,
            std::io::ErrorKind::TimedOut => ConnError::ConnectTimeout,
            _ => ConnError::of_io(e),
        }
    }

    /// The reason a read or write error on an established connection stands for.
    pub fn of_io(e: &std::io::Error) -> ConnError {
        use std::io::ErrorKind;
        match e.kind() {
            // The kernel gave up on the peer (retransmission or keep-alive time-out).
            ErrorKind::TimedOut
            | ErrorKind::ConnectionReset
            | ErrorKind::ConnectionAborted
            | ErrorKind::BrokenPipe
            | ErrorKind::NotConnected => ConnError::Reset,
            ErrorKind::UnexpectedEof => ConnError::Closed,
            _ => ConnError::Other,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ConnError::Refused => "refused",
            ConnError::ConnectTimeout => "connect_timeout",
            ConnError::Reset => "reset",
            ConnError::Closed => "closed",
            ConnError::MissingContentLength => "missing_content_length",
            ConnError::BadContentLength => "bad_content_length",
            ConnError::TooLarge => "too_large",
            ConnError::WriteBacklog => "write_backlog",
            ConnError::Other => "other",
        }
    }
}

impl From<FrameError> for ConnError {
    fn from(e: FrameError) -> ConnError {
        match e {
            FrameError::MissingContentLength => ConnError::MissingContentLength,
            FrameError::BadContentLength => ConnError::BadContentLength,
            FrameError::TooLarge => ConnError::TooLarge,
        }
    }
}

/// Connection errors by reason (see [`ConnError`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnErrors {
    pub refused: u64,
    pub connect_timeout: u64,
    pub reset: u64,
    pub closed: u64,
    pub missing_content_length: u64,
    pub bad_content_length: u64,
    pub too_large: u64,
    pub write_backlog: u64,
    pub other: u64,
}

impl ConnErrors {
    pub fn count(&mut self, e: ConnError) {
        *self.counter(e) += 1;
    }

    fn counter(&mut self, e: ConnError) -> &mut u64 {
        match e {
            ConnError::Refused => &mut self.refused,
            ConnError::ConnectTimeout => &mut self.connect_timeout,
            ConnError::Reset => &mut self.reset,
            ConnError::Closed => &mut self.closed,
            ConnError::MissingContentLength => &mut self.missing_content_length,
            ConnError::BadContentLength => &mut self.bad_content_length,
            ConnError::TooLarge => &mut self.too_large,
            ConnError::WriteBacklog => &mut self.write_backlog,
            ConnError::Other => &mut self.other,
        }
    }

    /// Every reason with its count, in a fixed order.
    pub fn by_reason(&self) -> [(ConnError, u64); 9] {
        [
            (ConnError::Refused, self.refused),
            (ConnError::ConnectTimeout, self.connect_timeout),
            (ConnError::Reset, self.reset),
            (ConnError::Closed, self.closed),
            (ConnError::MissingContentLength, self.missing_content_length),
            (ConnError::BadContentLength, self.bad_content_length),
            (ConnError::TooLarge, self.too_large),
            (ConnError::WriteBacklog, self.write_backlog),
            (ConnError::Other, self.other),
        ]
    }

    pub fn total(&self) -> u64 {
        self.by_reason().iter().map(|(_, n)| n).sum()
    }

    pub fn add(&mut self, o: &ConnErrors) {
        for (e, n) in o.by_reason() {
            *self.counter(e) += n;
        }
    }
}

/// Latency histograms in microseconds, from the first transmission of a request.
#[derive(Debug, Clone)]
pub struct Latency {
    pub invite_180: Histogram<u64>,
    pub invite_200: Histogram<u64>,
    pub bye_200: Histogram<u64>,
    pub request_200: Histogram<u64>,
}

impl Latency {
    fn new() -> Latency {
        let h = || {
            // 1 µs .. 1 h at 3 significant digits; constant bounds cannot fail.
            Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
        };
        Latency {
            invite_180: h(),
            invite_200: h(),
            bye_200: h(),
            request_200: h(),
        }
    }
}

fn record(h: &mut Histogram<u64>, d: Duration) {
    let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1);
    h.saturating_record(us);
}

/// The UAC's counters and histograms; shards' stats are summed with [`UacStats::merge`].
#[derive(Debug, Clone)]
pub struct UacStats {
    pub calls_started: u64,
    pub calls_ok: u64,
    pub calls_failed: u64,
    pub failures: Failures,
    /// Requests retransmitted on Timer A/E, plus retransmitted 2xx to INVITE re-ACKed.
    pub retransmissions: u64,
    /// Responses that match no live transaction (late, duplicate, or not ours).
    pub stray_responses: u64,
    /// Datagrams that could not be read as a SIP response with Call-ID and CSeq
    /// (requests sent to the UAC included: it answers none).
    pub unparsable: u64,
    /// TCP: connections established.
    pub connections_opened: u64,
    /// TCP: connects that failed and connections lost, by reason.
    pub connection_errors: ConnErrors,
    pub latency: Latency,
}

impl UacStats {
    fn new() -> UacStats {
        UacStats {
            calls_started: 0,
            calls_ok: 0,
            calls_failed: 0,
            failures: Failures::default(),
            retransmissions: 0,
            stray_responses: 0,
            unparsable: 0,
            connections_opened: 0,
            connection_errors: ConnErrors::default(),
            latency: Latency::new(),
        }
    }

    /// Adds another shard's stats into these.
    pub fn merge(&mut self, o: &UacStats) {
        self.calls_started += o.calls_started;
        self.calls_ok += o.calls_ok;
        self.calls_failed += o.calls_failed;
        self.failures.add(&o.failures);
        self.retransmissions += o.retransmissions;
        self.stray_responses += o.stray_responses;
        self.unparsable += o.unparsable;
        self.connections_opened += o.connections_opened;
        self.connection_errors.add(&o.connection_errors);
        let l = &mut self.latency;
        let r = &o.latency;
        for (a, b) in [
            (&mut l.invite_180, &r.invite_180),
            (&mut l.invite_200, &r.invite_200),
            (&mut l.bye_200, &r.bye_200),
            (&mut l.request_200, &r.request_200),
        ] {
            // Same bounds on both sides, so adding cannot fail; saturate if it ever does.
            if a.add(b).is_err() {
                for v in b.iter_recorded() {
                    a.saturating_record_n(v.value_iterated_to(), v.count_at_value());
                }
            }
        }
    }
}

impl Default for UacStats {
    fn default() -> Self {
        UacStats::new()
    }
}

/// How one UAC engine (one shard's share of the load) runs.
#[derive(Debug, Clone)]
pub struct UacConfig {
    pub scenario: Scenario,
    /// Where every request is sent (the proxy, or the UAS directly).
    pub target: SocketAddr,
    /// The Request-URI of INVITE/OPTIONS (REGISTER uses its host part).
    pub ruri: String,
    /// The addresses of this engine's source sockets or connections (index = `local` in
    /// datagrams).
    pub locals: Vec<SocketAddr>,
    /// UDP (with retransmissions) or TCP (without).
    pub transport: Transport,
    /// Calls started per second; 0 = closed loop.
    pub rate: f64,
    /// Closed loop: calls outstanding at once.
    pub concurrency: u32,
    /// Stop starting calls after this many.
    pub max_calls: Option<u64>,
    /// Stop starting calls after this long.
    pub duration: Duration,
    /// Time between the 200 to INVITE and the BYE.
    pub hold: Duration,
    /// Timer B/F: a transaction without final response fails as `timeout` after this.
    pub timeout: Duration,
    /// This engine's shard id (part of every Call-ID).
    pub shard: u16,
    /// This run's nonce (part of every Call-ID and branch).
    pub nonce: u32,
    /// Most calls in flight at once; a call that cannot get a slot fails as `other`.
    pub max_in_flight: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Free,
    /// INVITE sent, no final response yet.
    Inviting,
    /// 200 to INVITE received and ACKed; waiting for the hold timer.
    Holding,
    /// BYE sent.
    Byeing,
    /// OPTIONS or REGISTER sent.
    Requesting,
}

#[derive(Debug, Clone)]
struct Call {
    gen: u32,
    phase: Phase,
    sock: u16,
    /// First transmission of the current transaction.
    txn_start: Instant,
    /// Bumped at every transaction change; timers carry the epoch they were armed in.
    epoch: u32,
    retrans_level: u8,
    retransmitting: bool,
    got_180: bool,
    to_tag: [u8; MAX_TAG],
    to_tag_len: u8,
    /// The dialog's remote target (`..target_len`) then its `Route:` line (may be empty),
    /// learnt from the 2xx to INVITE. The buffer is reused when the slot is.
    dialog: Vec<u8>,
    target_len: usize,
}

#[derive(Debug, Clone, Copy)]
struct TimerEntry {
    at: Instant,
    slot: u32,
    gen: u32,
    epoch: u32,
}

/// Which request of a call to (re)send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Request {
    Invite,
    Ack2xx,
    AckNon2xx,
    Bye,
    Single,
}

/// The UAC engine; see the module doc.
pub struct Uac {
    cfg: UacConfig,
    templates: Vec<Templates>,
    calls: Vec<Call>,
    free: Vec<u32>,
    in_flight: usize,
    next_sock: usize,
    /// Per `local`: still usable (a lost connection is not).
    usable: Vec<bool>,
    usable_count: usize,
    retrans: [VecDeque<TimerEntry>; RETRANS_LEVELS],
    timeouts: VecDeque<TimerEntry>,
    holds: VecDeque<TimerEntry>,
    started_at: Option<Instant>,
    stopped_starting: bool,
    finished_at: Option<Instant>,
    pub stats: UacStats,
}

impl Uac {
    pub fn new(cfg: UacConfig) -> Uac {
        let templates = cfg
            .locals
            .iter()
            .map(|l| Templates::new(*l, &cfg.ruri, cfg.nonce, cfg.transport))
            .collect();
        Uac {
            templates,
            calls: Vec::new(),
            free: Vec::new(),
            in_flight: 0,
            next_sock: 0,
            usable: vec![true; cfg.locals.len()],
            usable_count: cfg.locals.len(),
            retrans: Default::default(),
            timeouts: VecDeque::new(),
            holds: VecDeque::new(),
            started_at: None,
            stopped_starting: false,
            finished_at: None,
            stats: UacStats::new(),
            cfg,
        }
    }

    pub fn config(&self) -> &UacConfig {
        &self.cfg
    }

    /// Calls started and not yet finished.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// When the first tick ran (the start of the run).
    pub fn started_at(&self) -> Option<Instant> {
        self.started_at
    }

    /// When the last call finished after the bounds were reached; `None` while running.
    pub fn finished_at(&self) -> Option<Instant> {
        self.finished_at
    }

    /// True once no more calls will start and none is in flight.
    pub fn is_done(&self) -> bool {
        self.finished_at.is_some()
    }

    /// Stops starting new calls (e.g. on SIGINT); calls in flight still finish.
    pub fn stop_starting(&mut self) {
        self.stopped_starting = true;
    }

    /// Connection `local` is gone (TCP): its calls in flight fail as `connection`, no new
    /// call uses it, and with no connection left no call starts any more. The next
    /// [`Uac::on_tick`] notices when the run is then over.
    pub fn connection_lost(&mut self, local: usize) {
        let Some(usable) = self.usable.get_mut(local) else {
            return;
        };
        if !std::mem::replace(usable, false) {
            return;
        }
        self.usable_count -= 1;
        if self.usable_count == 0 {
            self.stopped_starting = true;
        }
        for idx in 0..self.calls.len() {
            let c = &self.calls[idx];
            if c.phase != Phase::Free && usize::from(c.sock) == local {
                self.stats.failures.connection += 1;
                self.finish(idx, false);
            }
        }
    }

    /// The earliest instant at which [`Uac::on_tick`] has something to do, if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut consider = |t: Instant| {
            next = Some(next.map_or(t, |n| n.min(t)));
        };
        for q in self.retrans.iter().chain([&self.timeouts, &self.holds]) {
            if let Some(e) = q.front() {
                consider(e.at);
            }
        }
        if let (Some(start), false) = (self.started_at, self.stopped_starting) {
            consider(start + self.cfg.duration);
            if let Some(at) = self.next_start(start) {
                consider(at);
            }
        }
        next
    }

    /// Fixed rate: when the next call is due (call k starts at k / rate).
    fn next_start(&self, start: Instant) -> Option<Instant> {
        (self.cfg.rate > 0.0).then(|| {
            let secs = self.stats.calls_started as f64 / self.cfg.rate;
            start + Duration::from_secs_f64(secs)
        })
    }

    /// Runs timers due at `now` and starts the calls due by the rate (or to refill the
    /// closed loop).
    pub fn on_tick(&mut self, now: Instant, out: &mut Outbox) {
        let start = *self.started_at.get_or_insert(now);
        let end = start + self.cfg.duration;
        self.run_timers(now, out);
        while !self.stopped_starting {
            if let Some(max) = self.cfg.max_calls {
                if self.stats.calls_started >= max {
                    self.stopped_starting = true;
                    break;
                }
            }
            // A fixed rate starts every call scheduled before the end, even when the tick
            // that starts it comes a little after the end (timer resolution).
            let due = if let Some(at) = self.next_start(start) {
                if at >= end {
                    self.stopped_starting = true;
                    break;
                }
                now >= at
            } else {
                if now >= end {
                    self.stopped_starting = true;
                    break;
                }
                self.in_flight < self.cfg.concurrency as usize
            };
            if !due {
                break;
            }
            if !self.start_call(now, out) && self.cfg.rate <= 0.0 {
                // Closed loop with the slab full: wait for a call to end.
                break;
            }
        }
        if self.stopped_starting && self.in_flight == 0 && self.finished_at.is_none() {
            self.finished_at = Some(now);
        }
    }

    /// Handles one datagram received on local socket `local` from `from`.
    pub fn on_datagram(
        &mut self,
        bytes: &[u8],
        _from: SocketAddr,
        _local: usize,
        now: Instant,
        out: &mut Outbox,
    ) {
        let Some(StartLine::Response { code }) = msg::start_line(bytes) else {
            self.stats.unparsable += 1;
            return;
        };
        let s = msg::summarize(bytes);
        let (Some(call_id), Some(method)) = (s.call_id, s.cseq_method) else {
            self.stats.unparsable += 1;
            return;
        };
        let Some((shard, slot, gen)) = template::parse_call_id(call_id, self.cfg.nonce) else {
            self.stats.stray_responses += 1;
            return;
        };
        let live = shard == self.cfg.shard
            && self
                .calls
                .get(slot as usize)
                .is_some_and(|c| c.gen == gen && c.phase != Phase::Free);
        if !live {
            self.stats.stray_responses += 1;
            return;
        }
        let idx = slot as usize;
        let phase = self.calls[idx].phase;
        match (phase, method) {
            (Phase::Inviting, b"INVITE") => {
                self.on_invite_response(idx, code, s.to_tag, bytes, now, out)
            }
            (Phase::Holding | Phase::Byeing, b"INVITE") if (200..300).contains(&code) => {
                // Our ACK was lost and the UAS (or proxy) retransmitted its 2xx.
                self.stats.retransmissions += 1;
                self.send(idx, Request::Ack2xx, out);
            }
            (Phase::Byeing, b"BYE") => self.on_final_or_provisional(idx, code, now, true),
            (Phase::Requesting, b"OPTIONS" | b"REGISTER") => {
                self.on_final_or_provisional(idx, code, now, false)
            }
            _ => self.stats.stray_responses += 1,
        }
    }

    fn on_invite_response(
        &mut self,
        idx: usize,
        code: u16,
        to_tag: Option<&[u8]>,
        response: &[u8],
        now: Instant,
        out: &mut Outbox,
    ) {
        let call = &mut self.calls[idx];
        let latency = now.saturating_duration_since(call.txn_start);
        if code < 200 {
            call.retransmitting = false;
            if code >= 180 && !call.got_180 {
                call.got_180 = true;
                record(&mut self.stats.latency.invite_180, latency);
            }
            return;
        }
        let tag = to_tag.unwrap_or(&[]);
        let tag_fits = tag.len() <= MAX_TAG;
        if tag_fits {
            call.to_tag[..tag.len()].copy_from_slice(tag);
            call.to_tag_len = tag.len() as u8;
        }
        if code >= 300 {
            if tag_fits {
                self.send(idx, Request::AckNon2xx, out);
            }
            self.stats.failures.count_status("INVITE", code);
            self.finish(idx, false);
            return;
        }
        record(&mut self.stats.latency.invite_200, latency);
        let learnt = learn_dialog(call, response, self.cfg.ruri.as_bytes());
        if !tag_fits || tag.is_empty() || !learnt {
            // A 2xx without a usable To tag, Contact or route set cannot be ACKed or
            // ended with BYE.
            self.stats.failures.other += 1;
            self.finish(idx, false);
            return;
        }
        self.send(idx, Request::Ack2xx, out);
        if self.cfg.hold.is_zero() {
            self.begin_txn(idx, Phase::Byeing, now, out);
        } else {
            let call = &mut self.calls[idx];
            call.phase = Phase::Holding;
            call.epoch = call.epoch.wrapping_add(1);
            let e = TimerEntry {
                at: now + self.cfg.hold,
                slot: idx as u32,
                gen: call.gen,
                epoch: call.epoch,
            };
            self.holds.push_back(e);
        }
    }

    /// A response to BYE (`bye`) or to OPTIONS/REGISTER.
    fn on_final_or_provisional(&mut self, idx: usize, code: u16, now: Instant, bye: bool) {
        if code < 200 {
            return;
        }
        if code >= 300 {
            let request = match (bye, self.cfg.scenario) {
                (true, _) => "BYE",
                (false, Scenario::Register) => "REGISTER",
                (false, _) => "OPTIONS",
            };
            self.stats.failures.count_status(request, code);
            self.finish(idx, false);
            return;
        }
        let latency = now.saturating_duration_since(self.calls[idx].txn_start);
        let h = if bye {
            &mut self.stats.latency.bye_200
        } else {
            &mut self.stats.latency.request_200
        };
        record(h, latency);
        self.finish(idx, true);
    }

    /// Starts one call; false if no slot was free (the call is counted as failed) or no
    /// socket or connection is usable (no call starts any more).
    fn start_call(&mut self, now: Instant, out: &mut Outbox) -> bool {
        let Some(sock) = self.pick_sock() else {
            self.stopped_starting = true;
            return false;
        };
        self.stats.calls_started += 1;
        let idx = match self.free.pop() {
            Some(i) => i as usize,
            None if self.calls.len() < self.cfg.max_in_flight => {
                self.calls.push(Call {
                    gen: 0,
                    phase: Phase::Free,
                    sock: 0,
                    txn_start: now,
                    epoch: 0,
                    retrans_level: 0,
                    retransmitting: false,
                    got_180: false,
                    to_tag: [0; MAX_TAG],
                    to_tag_len: 0,
                    dialog: Vec::new(),
                    target_len: 0,
                });
                self.calls.len() - 1
            }
            None => {
                self.stats.calls_failed += 1;
                self.stats.failures.other += 1;
                return false;
            }
        };
        self.in_flight += 1;
        let call = &mut self.calls[idx];
        call.sock = sock as u16;
        call.got_180 = false;
        call.to_tag_len = 0;
        let phase = match self.cfg.scenario {
            Scenario::Call => Phase::Inviting,
            Scenario::Options | Scenario::Register => Phase::Requesting,
        };
        self.begin_txn(idx, phase, now, out);
        true
    }

    /// The next usable socket or connection, round-robin.
    fn pick_sock(&mut self) -> Option<usize> {
        let n = self.templates.len();
        if self.usable_count == 0 || n == 0 {
            return None;
        }
        for _ in 0..n {
            let sock = self.next_sock % n;
            self.next_sock = self.next_sock.wrapping_add(1);
            if self.usable.get(sock).copied().unwrap_or(false) {
                return Some(sock);
            }
        }
        None
    }

    /// Starts a client transaction of call `idx`: sends its request, arms the time-out
    /// timer and, on an unreliable transport, the retransmission timer.
    fn begin_txn(&mut self, idx: usize, phase: Phase, now: Instant, out: &mut Outbox) {
        let reliable = self.cfg.transport.is_reliable();
        let call = &mut self.calls[idx];
        call.phase = phase;
        call.epoch = call.epoch.wrapping_add(1);
        call.txn_start = now;
        call.retrans_level = 0;
        call.retransmitting = !reliable;
        let e = TimerEntry {
            at: now + T1,
            slot: idx as u32,
            gen: call.gen,
            epoch: call.epoch,
        };
        if !reliable {
            self.retrans[0].push_back(e);
        }
        self.timeouts.push_back(TimerEntry {
            at: now + self.cfg.timeout,
            ..e
        });
        let req = match phase {
            Phase::Inviting => Request::Invite,
            Phase::Byeing => Request::Bye,
            _ => Request::Single,
        };
        self.send(idx, req, out);
    }

    fn send(&mut self, idx: usize, req: Request, out: &mut Outbox) {
        let call = &self.calls[idx];
        let sock = usize::from(call.sock);
        let Some(t) = self.templates.get(sock) else {
            return;
        };
        let key = template::call_key(self.cfg.shard, idx as u32, call.gen);
        let tag = &call.to_tag[..usize::from(call.to_tag_len)];
        let (tpl, kind, tag, in_dialog) = match req {
            Request::Invite => (&t.invite, b'i', &[][..], false),
            Request::Ack2xx => (&t.ack, b'a', tag, true),
            Request::AckNon2xx => (&t.ack, b'i', tag, false),
            Request::Bye => (&t.bye, b'b', tag, true),
            Request::Single => match self.cfg.scenario {
                Scenario::Register => (&t.register, b'r', &[][..], false),
                _ => (&t.options, b'o', &[][..], false),
            },
        };
        let (target, route) = call.dialog.split_at(call.target_len.min(call.dialog.len()));
        out.push_with(sock, self.cfg.target, |buf| {
            if in_dialog {
                tpl.render_in_dialog(buf, &key, kind, tag, target, route)
            } else {
                tpl.render(buf, &key, kind, tag)
            }
        });
    }

    fn finish(&mut self, idx: usize, ok: bool) {
        let call = &mut self.calls[idx];
        debug_assert!(call.phase != Phase::Free);
        call.phase = Phase::Free;
        call.gen = call.gen.wrapping_add(1);
        self.free.push(idx as u32);
        self.in_flight -= 1;
        if ok {
            self.stats.calls_ok += 1;
        } else {
            self.stats.calls_failed += 1;
        }
    }

    fn current(&self, e: &TimerEntry) -> Option<usize> {
        let idx = e.slot as usize;
        let c = self.calls.get(idx)?;
        (c.gen == e.gen && c.epoch == e.epoch && c.phase != Phase::Free).then_some(idx)
    }

    fn run_timers(&mut self, now: Instant, out: &mut Outbox) {
        while let Some(e) = self.holds.front().copied().filter(|e| e.at <= now) {
            self.holds.pop_front();
            if let Some(idx) = self.current(&e) {
                if self.calls[idx].phase == Phase::Holding {
                    self.begin_txn(idx, Phase::Byeing, e.at.max(now), out);
                }
            }
        }
        for level in 0..RETRANS_LEVELS {
            while let Some(e) = self.retrans[level].front().copied().filter(|e| e.at <= now) {
                self.retrans[level].pop_front();
                let Some(idx) = self.current(&e) else {
                    continue;
                };
                let call = &mut self.calls[idx];
                if !call.retransmitting || usize::from(call.retrans_level) != level {
                    continue;
                }
                let invite = call.phase == Phase::Inviting;
                let next = if invite {
                    (call.retrans_level + 1).min(RETRANS_LEVELS as u8 - 1)
                } else {
                    (call.retrans_level + 1).min(T2_LEVEL)
                };
                call.retrans_level = next;
                let at = e.at + T1 * (1u32 << next);
                self.retrans[usize::from(next)].push_back(TimerEntry { at, ..e });
                self.stats.retransmissions += 1;
                let req = match call.phase {
                    Phase::Inviting => Request::Invite,
                    Phase::Byeing => Request::Bye,
                    _ => Request::Single,
                };
                self.send(idx, req, out);
            }
        }
        while let Some(e) = self.timeouts.front().copied().filter(|e| e.at <= now) {
            self.timeouts.pop_front();
            if let Some(idx) = self.current(&e) {
                if self.calls[idx].phase != Phase::Holding {
                    self.stats.failures.timeout += 1;
                    self.finish(idx, false);
                }
            }
        }
    }
}

/// Most Record-Route entries kept for a dialog's route set.
const MAX_ROUTES: usize = 16;
/// Longest remote target URI kept.
const MAX_TARGET: usize = 512;

/// Learns the dialog state a UAC needs from the 2xx to its INVITE (RFC 3261 §12.1.2):
/// the remote target (Contact URI, else the initial Request-URI `ruri`) and the route
/// set (Record-Route entries in reverse order) as one `Route:` line. False if the
/// response has more entries or a longer URI than kept, or a Contact URI with spaces.
fn learn_dialog(call: &mut Call, response: &[u8], ruri: &[u8]) -> bool {
    let mut contact: Option<&[u8]> = None;
    let mut routes: [&[u8]; MAX_ROUTES] = [&[]; MAX_ROUTES];
    let mut n = 0;
    for h in msg::headers(response) {
        match HeaderName::of(h.name) {
            HeaderName::Contact if contact.is_none() => contact = Some(addr_spec(h.value)),
            HeaderName::RecordRoute => {
                for entry in msg::comma_list(h.value) {
                    let Some(slot) = routes.get_mut(n) else {
                        return false;
                    };
                    *slot = entry;
                    n += 1;
                }
            }
            _ => {}
        }
    }
    let target = contact.filter(|c| !c.is_empty()).unwrap_or(ruri);
    if target.len() > MAX_TARGET
        || target
            .iter()
            .any(|c| c.is_ascii_whitespace() || c.is_ascii_control())
    {
        return false;
    }
    call.dialog.clear();
    call.dialog.extend_from_slice(target);
    call.target_len = target.len();
    if n > 0 {
        call.dialog.extend_from_slice(b"Route: ");
        for (i, r) in routes[..n].iter().rev().enumerate() {
            if i > 0 {
                call.dialog.extend_from_slice(b", ");
            }
            call.dialog.extend_from_slice(r);
        }
        call.dialog.extend_from_slice(b"\r\n");
    }
    true
}

/// The URI of a Contact value: inside `<...>`, else up to the first `;`.
fn addr_spec(value: &[u8]) -> &[u8] {
    if let Some(open) = memchr::memchr(b'<', value) {
        let rest = value.get(open + 1..).unwrap_or(&[]);
        let close = memchr::memchr(b'>', rest).unwrap_or(rest.len());
        return rest.get(..close).unwrap_or(&[]);
    }
    let end = memchr::memchr(b';', value).unwrap_or(value.len());
    value.get(..end).unwrap_or(&[]).trim_ascii()
}

/// The UAS's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UasStats {
    pub invite: u64,
    pub ack: u64,
    pub bye: u64,
    pub options: u64,
    pub register: u64,
    pub cancel: u64,
    pub other_requests: u64,
    pub responses_sent: u64,
    /// 200s to INVITE retransmitted because no ACK came (Timer G).
    pub retransmissions: u64,
    /// 200s to INVITE never ACKed within 64·T1 (Timer H).
    pub ack_timeouts: u64,
    /// 200s sent once only because the pending table was full.
    pub pending_full: u64,
    /// Datagrams that are not a request with Via, Call-ID and CSeq (responses included).
    pub unparsable: u64,
    /// TCP: connections accepted.
    pub connections_accepted: u64,
    /// TCP: connections refused because the shard's connection table was full.
    pub connections_rejected: u64,
    /// TCP: connections closed on an error, by reason (a peer's close is not an error).
    pub connection_errors: ConnErrors,
}

impl UasStats {
    pub fn merge(&mut self, o: &UasStats) {
        self.invite += o.invite;
        self.ack += o.ack;
        self.bye += o.bye;
        self.options += o.options;
        self.register += o.register;
        self.cancel += o.cancel;
        self.other_requests += o.other_requests;
        self.responses_sent += o.responses_sent;
        self.retransmissions += o.retransmissions;
        self.ack_timeouts += o.ack_timeouts;
        self.pending_full += o.pending_full;
        self.unparsable += o.unparsable;
        self.connections_accepted += o.connections_accepted;
        self.connections_rejected += o.connections_rejected;
        self.connection_errors.add(&o.connection_errors);
    }
}

/// The UAS engine; see the module doc.
pub struct Uas {
    /// Per local socket: `Contact: <sip:uas@host:port>\r\n`; over TCP one, for the
    /// listening address.
    contacts: Vec<Vec<u8>>,
    transport: Transport,
    /// 200s to INVITE not yet ACKed (Timer G/H); slots reuse their buffers.
    pending: Vec<Pending2xx>,
    pending_free: Vec<u32>,
    /// Dialog (hash of the Call-ID) → slot in `pending`.
    pending_index: HashMap<u64, u32, BuildHasherDefault<IdentityHasher>>,
    /// Timer G queues: level k holds timers of T1·2^k (k = 0..=3, capped at T2).
    timer_g: [VecDeque<TimerEntry>; 4],
    max_pending: usize,
    pub stats: UasStats,
}

#[derive(Debug)]
struct Pending2xx {
    gen: u32,
    live: bool,
    level: u8,
    local: usize,
    to: SocketAddr,
    give_up: Instant,
    hash: u64,
    bytes: Vec<u8>,
}

/// Most unacknowledged 200s a UAS keeps retransmitting; beyond, a 200 is sent once
/// (counted in `pending_full`).
pub const MAX_PENDING_2XX: usize = 200_000;

impl Uas {
    /// A UAS answering on UDP sockets bound to `locals` (index = `local` in datagrams).
    pub fn new(locals: &[SocketAddr]) -> Uas {
        Uas::with_contacts(locals, Transport::Udp)
    }

    /// A UAS answering on TCP connections accepted on `listen`: `local` in messages and
    /// in the outbox is the driver's id of the connection, and the Contact names
    /// `listen` with `;transport=tcp`.
    pub fn new_stream(listen: SocketAddr) -> Uas {
        Uas::with_contacts(&[listen], Transport::Tcp)
    }

    fn with_contacts(locals: &[SocketAddr], transport: Transport) -> Uas {
        let contacts = locals
            .iter()
            .map(|l| format!("Contact: <sip:uas@{l}{}>\r\n", transport.uri_param()).into_bytes())
            .collect();
        Uas {
            contacts,
            transport,
            pending: Vec::new(),
            pending_free: Vec::new(),
            pending_index: HashMap::default(),
            timer_g: Default::default(),
            max_pending: MAX_PENDING_2XX,
            stats: UasStats::default(),
        }
    }

    /// 200s to INVITE still waiting for their ACK.
    pub fn pending_2xx(&self) -> usize {
        self.pending_index.len()
    }

    /// The earliest instant at which [`Uas::on_tick`] has something to do, if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.timer_g
            .iter()
            .filter_map(|q| q.front().map(|e| e.at))
            .min()
    }

    /// Retransmits unacknowledged 200s to INVITE (Timer G: T1 doubling up to T2) and
    /// gives up on them after 64·T1 (Timer H), RFC 3261 §13.3.1.4.
    pub fn on_tick(&mut self, now: Instant, out: &mut Outbox) {
        for level in 0..self.timer_g.len() {
            while let Some(e) = self.timer_g[level].front().copied().filter(|e| e.at <= now) {
                self.timer_g[level].pop_front();
                let idx = e.slot as usize;
                let Some(p) = self.pending.get_mut(idx) else {
                    continue;
                };
                if !p.live || p.gen != e.gen || usize::from(p.level) != level {
                    continue;
                }
                if now >= p.give_up {
                    self.stats.ack_timeouts += 1;
                    self.release(idx);
                    continue;
                }
                let next = (p.level + 1).min(T2_LEVEL);
                p.level = next;
                let at = e.at + T1 * (1u32 << next);
                self.timer_g[usize::from(next)].push_back(TimerEntry { at, ..e });
                self.stats.retransmissions += 1;
                self.stats.responses_sent += 1;
                let bytes = &p.bytes;
                out.push_with(p.local, p.to, |buf| buf.extend_from_slice(bytes));
            }
        }
    }

    fn release(&mut self, idx: usize) {
        if let Some(p) = self.pending.get_mut(idx) {
            if p.live {
                p.live = false;
                p.gen = p.gen.wrapping_add(1);
                self.pending_index.remove(&p.hash);
                self.pending_free.push(idx as u32);
            }
        }
    }

    /// Keeps the 200 just written (the outbox's last datagram) for retransmission.
    fn keep_2xx(&mut self, hash: u64, now: Instant, out: &Outbox) {
        if self.pending_index.contains_key(&hash) {
            return; // a retransmitted INVITE: its 200 is already kept
        }
        let Some((local, to, bytes)) = out.last() else {
            return;
        };
        let idx = match self.pending_free.pop() {
            Some(i) => i as usize,
            None if self.pending.len() < self.max_pending => {
                self.pending.push(Pending2xx {
                    gen: 0,
                    live: false,
                    level: 0,
                    local,
                    to,
                    give_up: now,
                    hash,
                    bytes: Vec::new(),
                });
                self.pending.len() - 1
            }
            None => {
                self.stats.pending_full += 1;
                return;
            }
        };
        let p = &mut self.pending[idx];
        p.live = true;
        p.level = 0;
        p.local = local;
        p.to = to;
        p.give_up = now + T1 * 64;
        p.hash = hash;
        p.bytes.clear();
        p.bytes.extend_from_slice(bytes);
        self.timer_g[0].push_back(TimerEntry {
            at: now + T1,
            slot: idx as u32,
            gen: p.gen,
            epoch: 0,
        });
        self.pending_index.insert(hash, idx as u32);
    }

    /// Answers one datagram received on local socket `local` from `from`.
    pub fn on_datagram(
        &mut self,
        bytes: &[u8],
        from: SocketAddr,
        local: usize,
        now: Instant,
        out: &mut Outbox,
    ) {
        let Some(StartLine::Request { method }) = msg::start_line(bytes) else {
            self.stats.unparsable += 1;
            return;
        };
        let s = msg::summarize(bytes);
        let has_via = msg::headers(bytes).any(|h| HeaderName::of(h.name) == HeaderName::Via);
        let Some(call_id) = s.call_id.filter(|_| has_via && s.cseq_num.is_some()) else {
            self.stats.unparsable += 1;
            return;
        };
        let hash = fnv1a(call_id);
        let tag = hex16(hash);
        match method {
            b"INVITE" => {
                self.stats.invite += 1;
                self.respond(bytes, b"100 Trying", None, false, from, local, out);
                self.respond(bytes, b"180 Ringing", Some(&tag), false, from, local, out);
                self.respond(bytes, b"200 OK", Some(&tag), true, from, local, out);
                self.keep_2xx(hash, now, out);
            }
            b"ACK" => {
                self.stats.ack += 1;
                if let Some(&idx) = self.pending_index.get(&hash) {
                    self.release(idx as usize);
                }
            }
            b"BYE" => {
                self.stats.bye += 1;
                self.respond(bytes, b"200 OK", Some(&tag), false, from, local, out);
            }
            b"OPTIONS" => {
                self.stats.options += 1;
                self.respond(bytes, b"200 OK", Some(&tag), false, from, local, out);
            }
            b"REGISTER" => {
                self.stats.register += 1;
                self.respond(bytes, b"200 OK", Some(&tag), false, from, local, out);
            }
            b"CANCEL" => {
                self.stats.cancel += 1;
                self.respond(bytes, b"200 OK", Some(&tag), false, from, local, out);
            }
            _ => {
                self.stats.other_requests += 1;
                self.respond(
                    bytes,
                    b"501 Not Implemented",
                    Some(&tag),
                    false,
                    from,
                    local,
                    out,
                );
            }
        }
    }

    /// Appends a response to `req`: status line, its Via, From, To (tagged), Call-ID,
    /// CSeq and Record-Route lines copied verbatim (and Contact for REGISTER), then our
    /// Contact if `contact`.
    #[allow(clippy::too_many_arguments)]
    fn respond(
        &mut self,
        req: &[u8],
        status: &[u8],
        tag: Option<&[u8; 16]>,
        contact: bool,
        to: SocketAddr,
        local: usize,
        out: &mut Outbox,
    ) {
        self.stats.responses_sent += 1;
        let our_contact = match (contact, self.transport) {
            (false, _) => None,
            (true, Transport::Udp) => self.contacts.get(local).map(|c| c.as_slice()),
            (true, Transport::Tcp) => self.contacts.first().map(|c| c.as_slice()),
        };
        out.push_with(local, to, |buf| {
            write_response(buf, req, status, tag, our_contact)
        });
    }
}

/// Writes a response to `req` into `buf`; see [`Uas::respond`].
pub(crate) fn write_response(
    buf: &mut Vec<u8>,
    req: &[u8],
    status: &[u8],
    tag: Option<&[u8; 16]>,
    contact: Option<&[u8]>,
) {
    let register = matches!(
        msg::start_line(req),
        Some(StartLine::Request {
            method: b"REGISTER"
        })
    );
    buf.extend_from_slice(b"SIP/2.0 ");
    buf.extend_from_slice(status);
    buf.extend_from_slice(b"\r\n");
    for h in msg::headers(req) {
        let copy = match HeaderName::of(h.name) {
            HeaderName::Via
            | HeaderName::From
            | HeaderName::CallId
            | HeaderName::CSeq
            | HeaderName::RecordRoute => true,
            HeaderName::Contact => register,
            HeaderName::To => {
                buf.extend_from_slice(h.line);
                if let (Some(t), None) = (tag, msg::tag_param(h.value)) {
                    buf.extend_from_slice(b";tag=");
                    buf.extend_from_slice(t);
                }
                buf.extend_from_slice(b"\r\n");
                false
            }
            HeaderName::Other => false,
        };
        if copy {
            buf.extend_from_slice(h.line);
            buf.extend_from_slice(b"\r\n");
        }
    }
    if let Some(c) = contact {
        buf.extend_from_slice(c);
    }
    buf.extend_from_slice(b"Server: ringsip-load\r\nContent-Length: 0\r\n\r\n");
}

/// FNV-1a of a Call-ID: the dialog's key, and (in hex) the UAS's To tag, stable so a
/// retransmitted INVITE gets the same tag.
fn fnv1a(call_id: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in call_id {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn hex16(h: u64) -> [u8; 16] {
    let mut t = [0u8; 16];
    for (i, c) in t.iter_mut().enumerate() {
        let nib = ((h >> (60 - 4 * i)) & 0xf) as u8;
        *c = if nib < 10 {
            b'0' + nib
        } else {
            b'a' + nib - 10
        };
    }
    t
}

/// Hasher for keys that already are hashes (the FNV-1a of a Call-ID).
#[derive(Default)]
struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

const _: () = assert!(KEY_LEN == 20);

#[cfg(test)]
mod tests;
