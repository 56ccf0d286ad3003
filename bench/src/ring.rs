//! The driver on ringsip's own `cores` runtime: one shard per `--cpus` entry, each a
//! thread with its own io_uring ring (or cores' epoll fallback). Per shard, one
//! [`ShardState`] owns the engines, their `cores::UdpSocket`s and one [`Outbox`]:
//! datagrams arrive through each socket's multishot receive handler (bytes borrowed from
//! the ring's buffer, no copy), the engines' answers leave through `send_to` (batched by
//! the ring per loop turn), and the engines' timers are one token timer on the shard's
//! wheel, re-armed to the engines' next deadline after every event.
//!
//! Invariants: the state is touched only on its shard (`Rc<RefCell<_>>`, never shared);
//! a handler borrows it for the duration of one event and calls nothing that re-enters
//! it; the outbox is empty between events.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use cores::{TimerId, UdpSocket};

use crate::cli::{RunArgs, UasArgs};
use crate::driver::{
    finish_run, install_signal_handlers, plan_run, publish, Progress, ProgressBoard, SetupError,
    ShardPlan, UacShardResult, STOP,
};
use crate::engine::{Outbox, Uac, Uas, UasStats};
use crate::report::Report;

/// Longest time between two ticks while a UAC runs (so SIGINT is seen promptly).
const MAX_WAIT: Duration = Duration::from_millis(100);

type Done = mpsc::Sender<(usize, UacShardResult)>;

/// One shard's engines and sockets.
struct ShardState {
    id: usize,
    uac: Option<Uac>,
    uac_socks: Vec<UdpSocket>,
    uas: Option<Uas>,
    uas_socks: Vec<UdpSocket>,
    out: Outbox,
    armed: Option<(Instant, TimerId)>,
    board: Option<Arc<Vec<Progress>>>,
    done: Option<Done>,
    /// Datagrams `send_to` refused (no operation slot free); like network loss.
    send_errors: u64,
}

thread_local! {
    /// This shard's state, for closures posted to the shard (collecting UAS counters).
    static STATE: RefCell<Option<Rc<RefCell<ShardState>>>> = const { RefCell::new(None) };
}

impl ShardState {
    fn flush(&mut self, from_uac: bool) {
        let socks = if from_uac {
            &self.uac_socks
        } else {
            &self.uas_socks
        };
        for (local, to, bytes) in self.out.iter() {
            let sent = socks.get(local).map(|s| s.send_to(bytes, to));
            if !matches!(sent, Some(Ok(()))) {
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
                for s in &self.uac_socks {
                    s.stop_recv();
                }
                if self.send_errors > 0 {
                    eprintln!(
                        "ringsip-load: shard {}: {} datagrams not sent (no operation slot)",
                        self.id, self.send_errors
                    );
                }
                let result = UacShardResult::of(self.uac.take());
                if let Some(tx) = self.done.take() {
                    let _ = tx.send((self.id, result));
                }
            }
        }
        self.rearm(now);
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

/// Binds this shard's sockets, builds its engines and installs the handlers.
fn setup_shard(
    id: usize,
    plan: ShardPlan,
    board: Option<Arc<Vec<Progress>>>,
    done: Option<Done>,
    with_uac: bool,
) -> std::io::Result<()> {
    let mut uac_socks = Vec::new();
    if with_uac {
        for _ in 0..plan.ports {
            uac_socks.push(UdpSocket::bind(SocketAddr::new(plan.local_ip, 0), false)?);
        }
    }
    let mut uas_socks = Vec::new();
    if let Some(addr) = plan.uas {
        uas_socks.push(UdpSocket::bind(addr, plan.reuseport)?);
    }
    let uac = with_uac.then(|| {
        let mut cfg = plan.cfg;
        cfg.locals = uac_socks.iter().map(|s| s.local_addr()).collect();
        Uac::new(cfg)
    });
    let uas_locals: Vec<SocketAddr> = uas_socks.iter().map(|s| s.local_addr()).collect();
    let uas = (!uas_socks.is_empty()).then(|| Uas::new(&uas_locals));
    let state = Rc::new(RefCell::new(ShardState {
        id,
        uac,
        uac_socks: uac_socks.clone(),
        uas,
        uas_socks: uas_socks.clone(),
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
    let st = Rc::clone(&state);
    cores::set_timer_handler(move |_, _| {
        let mut st = st.borrow_mut();
        st.armed = None;
        st.after_event(cores::now());
    });
    // First tick: the UAC starts its run on this loop turn.
    state.borrow_mut().after_event(cores::now());
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
    let rt = cores::start(runtime_config(&cpus, args.cpus.is_some()), move |id| {
        let plan = ShardPlan::uas_only(bind, reuseport);
        setup_shard(id, plan, None, None, false)
    })
    .map_err(|e| match e {
        cores::StartError::Setup { source, .. } => SetupError::Bind { addr: bind, source },
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
