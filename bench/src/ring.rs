//! The driver on ringsip's own `cores` runtime: one shard per `--cpus` entry, each a
//! thread with its own io_uring ring (or cores' epoll fallback). Per shard, one
//! [`ShardState`] owns the engines, their links (UDP sockets or TCP connections, see
//! [`Links`]) and one [`Outbox`]. UDP: datagrams arrive through each socket's multishot
//! receive handler (bytes borrowed from the ring's buffer, no copy), the engines' answers
//! leave through `send_to` (batched by the ring per loop turn). TCP: see [`tcp`] (a
//! reader and a writer task per connection, Content-Length framing). The engines' timers
//! are one token timer on the shard's wheel, re-armed to the engines' next deadline
//! after every event.
//!
//! Invariants: the state is touched only on its shard (`Rc<RefCell<_>>`, never shared);
//! a handler or task borrows it for the duration of one event and calls nothing that
//! re-enters it; the outbox is empty between events.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use cores::{TcpListener, TimerId, UdpSocket};

use crate::cli::{RunArgs, UasArgs};
use crate::driver::{
    finish_run, install_signal_handlers, plan_run, publish, publish_uas, published_uas, Progress,
    ProgressBoard, SetupError, ShardPlan, UacShardResult, STOP,
};
use crate::engine::{Outbox, Transport, Uac, Uas, UasStats};
use crate::report::Report;

mod tcp;

/// Backlog of a UAS's TCP listening socket.
const LISTEN_BACKLOG: i32 = 1024;

/// Longest time between two ticks while a UAC runs (so SIGINT is seen promptly).
const MAX_WAIT: Duration = Duration::from_millis(100);

type Done = mpsc::Sender<(usize, UacShardResult)>;

/// How one engine's messages travel: `local` in the outbox indexes the UDP sockets, or
/// names a TCP connection.
enum Links {
    Udp(Vec<UdpSocket>),
    Tcp(tcp::Conns),
}

impl Links {
    /// Sends one message; false if it could not be (no operation slot, connection gone).
    fn send(&self, local: usize, to: SocketAddr, bytes: &[u8]) -> bool {
        match self {
            Links::Udp(socks) => socks
                .get(local)
                .is_some_and(|s| s.send_to(bytes, to).is_ok()),
            Links::Tcp(conns) => conns.send(local, bytes),
        }
    }

    /// Stops receiving (UDP) or closes every connection (TCP).
    fn close(&self) {
        match self {
            Links::Udp(socks) => {
                for s in socks {
                    s.stop_recv();
                }
            }
            Links::Tcp(conns) => conns.close_all(),
        }
    }
}

/// One shard's engines and links.
struct ShardState {
    id: usize,
    uac: Option<Uac>,
    uac_links: Links,
    uas: Option<Uas>,
    uas_links: Links,
    /// TCP: the UAS's listening socket (kept open while the shard runs).
    uas_listener: Option<TcpListener>,
    out: Outbox,
    armed: Option<(Instant, TimerId)>,
    board: Option<Arc<Vec<Progress>>>,
    done: Option<Done>,
    /// Messages not sent: no operation slot free (UDP, like network loss) or their
    /// connection was gone (TCP).
    send_errors: u64,
}

thread_local! {
    /// This shard's state, for closures posted to the shard (collecting UAS counters).
    static STATE: RefCell<Option<Rc<RefCell<ShardState>>>> = const { RefCell::new(None) };
}

impl ShardState {
    fn flush(&mut self, from_uac: bool) {
        let links = if from_uac {
            &self.uac_links
        } else {
            &self.uas_links
        };
        for (local, to, bytes) in self.out.iter() {
            if !links.send(local, to, bytes) {
                self.send_errors += 1;
            }
        }
        self.out.clear();
    }

    /// After any event: run the engines' due timers (and start due calls), send, publish
    /// progress, hand back a finished UAC, re-arm the shard timer.
    fn after_event(&mut self, now: Instant) {
        if let Some(uac) = &mut self.uac {
            if STOP.load(Ordering::Relaxed) {
                uac.stop_starting();
            }
            uac.on_tick(now, &mut self.out);
        }
        self.publish_uas();
        self.flush(true);
        if let Some(uas) = &mut self.uas {
            uas.on_tick(now, &mut self.out);
        }
        self.flush(false);
        if let Some(uac) = &self.uac {
            if let Some(board) = &self.board {
                publish(board, self.id, &uac.stats);
            }
            if uac.is_done() {
                self.uac_links.close();
                if self.send_errors > 0 {
                    eprintln!(
                        "ringsip-load: shard {}: {} messages not sent (no operation slot, \
                         or connection gone)",
                        self.id, self.send_errors
                    );
                }
                let uas = self.uas.as_ref().map(|u| u.stats);
                let result = UacShardResult::of(self.uac.take(), uas);
                if let Some(tx) = self.done.take() {
                    let _ = tx.send((self.id, result));
                }
            }
        }
        self.rearm(now);
    }

    /// Publishes the UAS's counters for the report; called after every event that
    /// reached the UAS, before its responses are sent.
    fn publish_uas(&self) {
        if let (Some(uas), Some(board)) = (&self.uas, &self.board) {
            publish_uas(board, self.id, &uas.stats);
        }
    }

    fn rearm(&mut self, now: Instant) {
        let mut next = [
            self.uac.as_ref().and_then(|u| u.next_deadline()),
            self.uas.as_ref().and_then(|u| u.next_deadline()),
        ]
        .into_iter()
        .flatten()
        .min();
        if self.uac.is_some() {
            let cap = now + MAX_WAIT;
            next = Some(next.map_or(cap, |n| n.min(cap)));
        }
        let Some(next) = next else {
            return;
        };
        match self.armed {
            Some((at, _)) if at <= next => {}
            Some((_, id)) => {
                cores::cancel_timer(id);
                self.armed = Some((next, cores::arm_timer_token(next, 0)));
            }
            None => self.armed = Some((next, cores::arm_timer_token(next, 0))),
        }
    }
}

/// Binds this shard's sockets (or listens, or starts connecting), builds its engines and
/// installs the handlers.
fn setup_shard(
    id: usize,
    plan: ShardPlan,
    board: Option<Arc<Vec<Progress>>>,
    done: Option<Done>,
    with_uac: bool,
) -> std::io::Result<()> {
    let transport = plan.cfg.transport;
    let mut uac_socks = Vec::new();
    if with_uac && transport == Transport::Udp {
        for _ in 0..plan.ports {
            uac_socks.push(UdpSocket::bind(SocketAddr::new(plan.local_ip, 0), false)?);
        }
    }
    let mut uas_socks = Vec::new();
    let mut uas_listener = None;
    let mut uas = None;
    if let Some(addr) = plan.uas {
        match transport {
            Transport::Udp => {
                let sock = UdpSocket::bind(addr, plan.reuseport)?;
                uas = Some(Uas::new(&[sock.local_addr()]));
                uas_socks.push(sock);
            }
            Transport::Tcp => {
                let l = TcpListener::bind(addr, plan.reuseport, LISTEN_BACKLOG)?;
                uas = Some(Uas::new_stream(l.local_addr()));
                uas_listener = Some(l);
            }
        }
    }
    // UDP: the UAC starts on this loop turn; TCP: once its connections are up.
    let uac = (with_uac && transport == Transport::Udp).then(|| {
        let mut cfg = plan.cfg.clone();
        cfg.locals = uac_socks.iter().map(|s| s.local_addr()).collect();
        Uac::new(cfg)
    });
    let links = |socks: &Vec<UdpSocket>| match transport {
        Transport::Udp => Links::Udp(socks.clone()),
        Transport::Tcp => Links::Tcp(tcp::Conns::new()),
    };
    let state = Rc::new(RefCell::new(ShardState {
        id,
        uac,
        uac_links: links(&uac_socks),
        uas,
        uas_links: links(&uas_socks),
        uas_listener: None,
        out: Outbox::new(),
        armed: None,
        board,
        done,
        send_errors: 0,
    }));
    for (i, sock) in uac_socks.iter().enumerate() {
        let st = Rc::clone(&state);
        sock.recv_with(move |_, bytes, from| {
            let mut st = st.borrow_mut();
            let now = cores::now();
            let ShardState { uac, out, .. } = &mut *st;
            if let Some(uac) = uac {
                uac.on_datagram(bytes, from, i, now, out);
            }
            st.after_event(now);
        })?;
    }
    for (i, sock) in uas_socks.iter().enumerate() {
        let st = Rc::clone(&state);
        sock.recv_with(move |_, bytes, from| {
            let mut st = st.borrow_mut();
            let now = cores::now();
            let ShardState { uas, out, .. } = &mut *st;
            if let Some(uas) = uas {
                uas.on_datagram(bytes, from, i, now, out);
            }
            st.flush(false);
            st.rearm(now);
        })?;
    }
    if let Some(l) = uas_listener {
        tcp::accept_with(&state, &l)?;
        state.borrow_mut().uas_listener = Some(l);
    }
    let st = Rc::clone(&state);
    cores::set_timer_handler(move |_, _| {
        let mut st = st.borrow_mut();
        st.armed = None;
        st.after_event(cores::now());
    });
    if with_uac && transport == Transport::Tcp {
        tcp::connect_uac(
            &state,
            plan.cfg,
            plan.ports,
            plan.local_ip,
            plan.connect_timeout,
        );
    } else {
        // First tick: the UAC starts its run on this loop turn.
        state.borrow_mut().after_event(cores::now());
    }
    STATE.with(|s| *s.borrow_mut() = Some(state));
    Ok(())
}

fn runtime_config(cpus: &[Option<usize>], pinned: bool) -> cores::Config {
    cores::Config {
        cpus: Some(cpus.iter().map(|c| c.unwrap_or(0)).collect()),
        pin: pinned,
        thread_name: "load".to_string(),
        ..cores::Config::default()
    }
}

/// `ringsip-load run` on the cores runtime.
pub fn run(args: &RunArgs) -> Result<Report, SetupError> {
    install_signal_handlers();
    let plans = plan_run(args)?;
    let shards = plans.len();
    let cpus: Vec<Option<usize>> = plans.iter().map(|p| p.cpu).collect();
    let pinned = args.cpus.is_some();
    let mut board = ProgressBoard::new(shards);
    let shared = board.shared();
    let shared_uas = board.shared();
    let plans = Mutex::new(plans.into_iter().map(Some).collect::<Vec<_>>());
    let (tx, rx) = mpsc::channel();
    let rt = cores::start(runtime_config(&cpus, pinned), move |id| {
        let plan = plans
            .lock()
            .ok()
            .and_then(|mut p| p.get_mut(id).and_then(Option::take))
            .ok_or_else(|| std::io::Error::other("no plan for this shard"))?;
        setup_shard(id, plan, Some(Arc::clone(&shared)), Some(tx.clone()), true)
    })
    .map_err(|e| SetupError::Runtime(e.to_string()))?;
    let mut results: Vec<Option<UacShardResult>> = (0..shards).map(|_| None).collect();
    let mut received = 0;
    while received < shards {
        match rx.recv_timeout(Duration::from_millis(20)) {
            Ok((id, r)) => {
                if let Some(slot) = results.get_mut(id) {
                    if slot.replace(r).is_none() {
                        received += 1;
                    }
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                rt.shutdown();
                return Err(SetupError::Panicked);
            }
        }
        if !args.quiet {
            board.maybe_print();
        }
    }
    rt.shutdown();
    // The UAS side as it ended, not as it was when each shard's own UAC finished.
    for (id, r) in results.iter_mut().enumerate() {
        if let Some(r) = r {
            if r.uas.is_some() {
                r.uas = published_uas(&shared_uas, id).or(r.uas);
            }
        }
    }
    finish_run(args, results.into_iter().flatten().collect())
}

/// `ringsip-load uas` on the cores runtime: until SIGTERM/SIGINT.
pub fn run_uas(args: &UasArgs) -> Result<UasStats, SetupError> {
    install_signal_handlers();
    let cpus: Vec<Option<usize>> = match &args.cpus {
        Some(l) => l.0.iter().map(|c| Some(*c)).collect(),
        None => vec![None],
    };
    let reuseport = cpus.len() > 1;
    let bind = args.bind;
    let transport = Transport::from(args.transport);
    let rt = cores::start(runtime_config(&cpus, args.cpus.is_some()), move |id| {
        let plan = ShardPlan::uas_only(bind, transport, reuseport);
        setup_shard(id, plan, None, None, false)
    })
    .map_err(|e| match e {
        cores::StartError::Setup { source, .. } => SetupError::Bind {
            transport: transport.name(),
            addr: bind,
            source,
        },
        other => SetupError::Runtime(other.to_string()),
    })?;
    while !STOP.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let (tx, rx) = mpsc::channel::<UasStats>();
    let mut asked = 0;
    for h in rt.shards() {
        let tx = tx.clone();
        let posted = h.post(Box::new(move || {
            let stats = STATE.with(|s| {
                s.borrow()
                    .as_ref()
                    .and_then(|st| st.borrow().uas.as_ref().map(|u| u.stats))
            });
            let _ = tx.send(stats.unwrap_or_default());
        }));
        if posted.is_ok() {
            asked += 1;
        }
    }
    drop(tx);
    let mut total = UasStats::default();
    for _ in 0..asked {
        match rx.recv_timeout(Duration::from_secs(2)) {
            Ok(s) => total.merge(&s),
            Err(_) => break,
        }
    }
    rt.shutdown();
    Ok(total)
}
