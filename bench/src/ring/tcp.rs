//! SIP over TCP for a load-generator shard (RFC 3261 §18): the UAC's connections to the
//! target, the UAS's listening socket and accepted connections.
//!
//! Each connection is a [`Conn`] in the shard's [`Conns`] table and two tasks on the
//! shard's executor: a reader that feeds a [`Framer`] (Content-Length framing) and hands
//! every complete message to the engine, and a writer that sends what the engine queued
//! for the connection, one batch per wake-up. The engines see a connection as a `local`
//! id: the UAC's calls are dealt to its connections, the UAS answers on the connection
//! a request came on (§18.2.2).
//!
//! A connection ends once, in [`ShardState::conn_ended`]: on end of stream, a read or
//! write error, a framing error (the stream cannot be resynchronised), or a write
//! backlog over [`MAX_BACKLOG`]. It is then shut down (which ends the other task), its
//! error counted by reason, and the UAC fails the calls that were on it. Closing the
//! UAC's connections at the end of a run is not an error.
//!
//! Bounds: [`MAX_CONNECTIONS`] per shard and side (the UAS refuses more, counted), at
//! most [`MAX_BACKLOG`] bytes queued per connection, messages up to
//! [`crate::frame::MAX_MESSAGE`]. Buffers grow to their high-water marks and are reused:
//! sending or receiving a message allocates nothing once warm.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use cores::{AsyncStream, TcpListener, TcpStream};

use super::ShardState;
use crate::engine::{ConnError, ConnErrors, Uac, UacConfig};
use crate::frame::Framer;

/// Most connections one side of a shard keeps (ids carry a 16-bit index).
pub(super) const MAX_CONNECTIONS: usize = 1 << 16;
/// Most bytes queued for one connection before it counts as `write_backlog` and closes.
pub(super) const MAX_BACKLOG: usize = 4 << 20;
/// Free space offered to each read.
const READ_CHUNK: usize = 16 * 1024;

/// Which engine a connection feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Side {
    Uac,
    Uas,
}

/// One connection's shared state: the bytes queued for its writer and how it ends.
pub(super) struct Conn {
    /// A handle for shutdown (the tasks hold their own).
    stream: TcpStream,
    out: RefCell<Vec<u8>>,
    writer: Cell<Option<Waker>>,
    /// No more sends; the tasks stop.
    closing: Cell<bool>,
    /// The first error seen by a sender (backlog), reported when the connection ends.
    error: Cell<Option<ConnError>>,
    /// `conn_ended` ran for this connection.
    ended: Cell<bool>,
}

impl Conn {
    fn new(stream: TcpStream) -> Conn {
        Conn {
            stream,
            out: RefCell::new(Vec::new()),
            writer: Cell::new(None),
            closing: Cell::new(false),
            error: Cell::new(None),
            ended: Cell::new(false),
        }
    }

    /// Queues `bytes` for the writer; false if the connection is closing. Over the
    /// backlog limit the connection fails (`write_backlog`).
    fn send(&self, bytes: &[u8]) -> bool {
        if self.closing.get() {
            return false;
        }
        {
            let mut out = self.out.borrow_mut();
            if out.len() + bytes.len() > MAX_BACKLOG {
                drop(out);
                self.fail(ConnError::WriteBacklog);
                return false;
            }
            out.extend_from_slice(bytes);
        }
        if let Some(w) = self.writer.take() {
            w.wake();
        }
        true
    }

    /// Records `e` (if first) and shuts the connection down; its reader then ends and
    /// reports it.
    fn fail(&self, e: ConnError) {
        if self.error.get().is_none() {
            self.error.set(Some(e));
        }
        self.close();
    }

    /// Stops both tasks: the writer on its next wake-up, the reader's pending read
    /// (shutdown of the read half completes it with end of stream).
    fn close(&self) {
        if self.closing.replace(true) {
            return;
        }
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
        if let Some(w) = self.writer.take() {
            w.wake();
        }
    }

    /// The writer's wait: `Ready(true)` with the queued bytes swapped into `batch`,
    /// `Ready(false)` once closing.
    fn poll_batch(&self, batch: &mut Vec<u8>, cx: &mut Context<'_>) -> Poll<bool> {
        if self.closing.get() {
            return Poll::Ready(false);
        }
        let mut out = self.out.borrow_mut();
        if out.is_empty() {
            let w = match self.writer.take() {
                Some(w) if w.will_wake(cx.waker()) => w,
                _ => cx.waker().clone(),
            };
            self.writer.set(Some(w));
            return Poll::Pending;
        }
        std::mem::swap(&mut *out, batch);
        Poll::Ready(true)
    }
}

/// The connections of one side of a shard, by id: index in the low 16 bits, the slot's
/// generation in the high 16 (a stale id, e.g. a 2xx retransmission for a connection
/// gone, finds nothing).
pub(super) struct Conns {
    slots: Vec<(u16, Option<Rc<Conn>>)>,
    free: Vec<u32>,
}

impl Conns {
    pub(super) fn new() -> Conns {
        Conns {
            slots: Vec::new(),
            free: Vec::new(),
        }
    }

    fn insert(&mut self, conn: Rc<Conn>) -> Option<u32> {
        let index = match self.free.pop() {
            Some(i) => i,
            None if self.slots.len() < MAX_CONNECTIONS => {
                self.slots.push((0, None));
                (self.slots.len() - 1) as u32
            }
            None => return None,
        };
        let slot = self.slots.get_mut(index as usize)?;
        slot.1 = Some(conn);
        Some(u32::from(slot.0) << 16 | index)
    }

    fn get(&self, id: usize) -> Option<&Rc<Conn>> {
        let (gen, conn) = self.slots.get(id & 0xffff)?;
        (usize::from(*gen) == id >> 16).then_some(conn.as_ref()?)
    }

    fn remove(&mut self, id: usize) {
        if let Some((gen, conn)) = self.slots.get_mut(id & 0xffff) {
            if usize::from(*gen) == id >> 16 && conn.take().is_some() {
                *gen = gen.wrapping_add(1);
                self.free.push((id & 0xffff) as u32);
            }
        }
    }

    /// Queues a message on connection `id`; false if it is gone or closing.
    pub(super) fn send(&self, id: usize, bytes: &[u8]) -> bool {
        self.get(id).is_some_and(|c| c.send(bytes))
    }

    /// Closes every connection (the UAC's, at the end of its run: not an error).
    pub(super) fn close_all(&self) {
        for c in self.slots.iter().filter_map(|(_, c)| c.as_ref()) {
            c.close();
        }
    }
}

impl ShardState {
    fn conns(&mut self, side: Side) -> Option<&mut Conns> {
        let links = match side {
            Side::Uac => &mut self.uac_links,
            Side::Uas => &mut self.uas_links,
        };
        match links {
            super::Links::Tcp(c) => Some(c),
            super::Links::Udp(_) => None,
        }
    }

    /// Hands every complete message `framer` holds to the engine of `side`, then sends
    /// the answers and re-arms the timer. Err: the stream cannot be framed any further
    /// (the messages before the bad one were handled).
    fn on_stream_data(
        &mut self,
        side: Side,
        id: u32,
        peer: SocketAddr,
        framer: &mut Framer,
    ) -> Result<(), ConnError> {
        let now = cores::now();
        let result = loop {
            match framer.next_message() {
                Ok(Some(m)) => match side {
                    Side::Uac => {
                        if let Some(uac) = &mut self.uac {
                            uac.on_datagram(m, peer, id as usize, now, &mut self.out);
                        }
                    }
                    Side::Uas => {
                        if let Some(uas) = &mut self.uas {
                            uas.on_datagram(m, peer, id as usize, now, &mut self.out);
                        }
                    }
                },
                Ok(None) => break Ok(()),
                Err(e) => break Err(e.into()),
            }
        };
        match side {
            Side::Uac => self.after_event(now),
            Side::Uas => {
                self.publish_uas();
                self.flush(false);
                self.rearm(now);
            }
        }
        result
    }

    /// Connection `id` of `side` ended (`why`: `None` for end of stream). Runs once per
    /// connection: closes it, counts its error, and on the UAC side fails its calls.
    fn conn_ended(&mut self, side: Side, id: u32, why: Option<ConnError>) {
        let Some(conns) = self.conns(side) else {
            return;
        };
        let Some(conn) = conns.get(id as usize).cloned() else {
            return;
        };
        if conn.ended.replace(true) {
            return;
        }
        // A close we asked for ends the stream too; what was recorded first is the cause.
        let why = conn.error.get().or(why);
        conn.close();
        match side {
            Side::Uac => {
                let Some(uac) = &mut self.uac else {
                    return; // the run is over: its connections close on purpose
                };
                let why = why.unwrap_or(ConnError::Closed);
                uac.stats.connection_errors.count(why);
                eprintln!(
                    "ringsip-load: shard {}: connection {id} to {} lost: {}",
                    self.id,
                    uac.config().target,
                    why.name()
                );
                uac.connection_lost(id as usize);
                self.after_event(cores::now());
            }
            Side::Uas => {
                if let (Some(uas), Some(e)) = (&mut self.uas, why) {
                    uas.stats.connection_errors.count(e);
                    eprintln!(
                        "ringsip-load: shard {}: UAS connection {id} closed: {}",
                        self.id,
                        e.name()
                    );
                }
                if let Some(conns) = self.conns(side) {
                    conns.remove(id as usize);
                }
            }
        }
    }

    /// Registers an established connection and starts its reader and writer.
    fn adopt(
        st: &Rc<RefCell<ShardState>>,
        side: Side,
        stream: TcpStream,
        peer: SocketAddr,
    ) -> Option<u32> {
        let _ = stream.set_nodelay(true);
        let conn = Rc::new(Conn::new(stream.try_clone()));
        let id = st.borrow_mut().conns(side)?.insert(Rc::clone(&conn))?;
        cores::spawn_local(read_loop(Rc::clone(st), side, id, stream.try_clone(), peer));
        cores::spawn_local(write_loop(Rc::clone(st), side, id, conn, stream));
        Some(id)
    }
}

/// Reads until end of stream or an error, handing complete messages to the engine.
async fn read_loop(
    st: Rc<RefCell<ShardState>>,
    side: Side,
    id: u32,
    mut rd: TcpStream,
    peer: SocketAddr,
) {
    let mut framer = Framer::default();
    let why = loop {
        match rd.read(framer.spare(READ_CHUNK)).await {
            Ok(0) => break None,
            Ok(n) => {
                framer.filled(n);
                if let Err(e) = st.borrow_mut().on_stream_data(side, id, peer, &mut framer) {
                    break Some(e);
                }
            }
            Err(e) => break Some(ConnError::of_io(&e)),
        }
    };
    st.borrow_mut().conn_ended(side, id, why);
}

/// Sends what the engine queued for the connection, a batch per wake-up, until it closes.
async fn write_loop(
    st: Rc<RefCell<ShardState>>,
    side: Side,
    id: u32,
    conn: Rc<Conn>,
    mut wr: TcpStream,
) {
    let mut batch = Vec::new();
    loop {
        if !poll_fn(|cx| conn.poll_batch(&mut batch, cx)).await {
            return;
        }
        if let Err(e) = wr.write_all(&batch).await {
            st.borrow_mut()
                .conn_ended(side, id, Some(ConnError::of_io(&e)));
            return;
        }
        batch.clear();
    }
}

/// Accepts connections on `listener` for the UAS (multishot accept).
pub(super) fn accept_with(st: &Rc<RefCell<ShardState>>, listener: &TcpListener) -> io::Result<()> {
    let weak = Rc::downgrade(st);
    listener.accept_with(move |r| {
        let Some(st) = weak.upgrade() else {
            return;
        };
        match r {
            Ok((stream, peer)) => {
                if ShardState::adopt(&st, Side::Uas, stream, peer).is_some() {
                    if let Some(uas) = &mut st.borrow_mut().uas {
                        uas.stats.connections_accepted += 1;
                    }
                } else if let Some(uas) = &mut st.borrow_mut().uas {
                    // Table full: the stream was dropped, which closes it.
                    uas.stats.connections_rejected += 1;
                }
                st.borrow().publish_uas();
            }
            Err(e) => {
                if let Some(uas) = &mut st.borrow_mut().uas {
                    uas.stats.connection_errors.count(ConnError::of_io(&e));
                }
            }
        }
    })
}

/// Opens the UAC's `n` connections to `cfg.target` (concurrently, each with `timeout`),
/// then builds the UAC over those that succeeded and starts the run. Failed connects
/// are counted by reason and logged; with none up, the run ends without calls.
pub(super) fn connect_uac(
    st: &Rc<RefCell<ShardState>>,
    mut cfg: UacConfig,
    n: usize,
    local_ip: IpAddr,
    timeout: Duration,
) {
    let st = Rc::clone(st);
    cores::spawn_local(async move {
        let target = cfg.target;
        let source = Some(SocketAddr::new(local_ip, 0));
        let attempts: Vec<_> = (0..n)
            .map(|_| cores::spawn_local(TcpStream::connect_from(source, target, timeout)))
            .collect();
        let mut errors = ConnErrors::default();
        let mut streams = Vec::with_capacity(n);
        for a in attempts {
            match a.await.and_then(|s| s.local_addr().map(|l| (s, l))) {
                Ok(s) => streams.push(s),
                Err(e) => {
                    let why = ConnError::of_connect(&e);
                    errors.count(why);
                    let shard = st.borrow().id;
                    eprintln!(
                        "ringsip-load: shard {shard}: connection to {target} failed: {e} ({})",
                        why.name()
                    );
                }
            }
        }
        cfg.locals.clear();
        for (stream, local) in streams {
            // Ids are 0, 1, ... in order (a fresh table): the UAC's `local` indexes.
            match ShardState::adopt(&st, Side::Uac, stream, target) {
                Some(id) if id as usize == cfg.locals.len() => cfg.locals.push(local),
                _ => errors.count(ConnError::Other),
            }
        }
        let mut uac = Uac::new(cfg);
        uac.stats.connections_opened = uac.config().locals.len() as u64;
        uac.stats.connection_errors = errors;
        let mut state = st.borrow_mut();
        state.uac = Some(uac);
        state.after_event(cores::now());
    });
}
