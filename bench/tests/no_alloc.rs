//! The engines' hot path allocates nothing in steady state: a UAC wired to a UAS in
//! memory (fake clock, 1000 calls/s) is warmed up until every table and queue reached
//! its high-water mark, then a counting allocator must see no allocation on this thread
//! for thousands more calls. Its own binary, so no other test shares the allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ringsip_bench::engine::{Outbox, Scenario, Transport, Uac, UacConfig, Uas};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

fn note_allocation() {
    if COUNTING.with(|c| c.get()) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every call is forwarded unchanged to the system allocator; counting touches
// only an atomic and a const-initialised thread-local Cell (no allocation).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from System.alloc/realloc with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Datagrams in flight, in reused buffers.
struct Wire {
    queue: VecDeque<(usize, Vec<u8>)>,
    spare: Vec<Vec<u8>>,
}

impl Wire {
    fn new() -> Wire {
        Wire {
            queue: VecDeque::with_capacity(4096),
            spare: (0..4096).map(|_| Vec::with_capacity(2048)).collect(),
        }
    }

    fn load(&mut self, out: &mut Outbox) {
        for (local, _, bytes) in out.iter() {
            let mut b = self.spare.pop().expect("spare buffer");
            b.clear();
            b.extend_from_slice(bytes);
            self.queue.push_back((local, b));
        }
        out.clear();
    }
}

#[test]
fn steady_state_calls_do_not_allocate() {
    let uas_addr: SocketAddr = "127.0.0.1:5060".parse().unwrap();
    let locals: Vec<SocketAddr> = (0..8)
        .map(|i| SocketAddr::from(([127, 0, 0, 1], 6000 + i)))
        .collect();
    let mut uac = Uac::new(UacConfig {
        scenario: Scenario::Call,
        target: uas_addr,
        ruri: format!("sip:uas@{uas_addr}"),
        locals: locals.clone(),
        transport: Transport::Udp,
        rate: 1000.0,
        concurrency: 1,
        max_calls: None,
        duration: Duration::from_secs(3600),
        hold: Duration::from_millis(20),
        // Short, so the time-out queue reaches its high-water mark during warm-up.
        timeout: Duration::from_secs(1),
        shard: 0,
        nonce: 1,
        max_in_flight: 10_000,
    });
    let mut uas = Uas::new(&[uas_addr]);
    let mut out = Outbox::new();
    let mut to_uas = Wire::new();
    let mut to_uac = Wire::new();
    let t0 = Instant::now();
    let mut now = t0;
    let mut step = |now: Instant, uac: &mut Uac, uas: &mut Uas| {
        uac.on_tick(now, &mut out);
        to_uas.load(&mut out);
        uas.on_tick(now, &mut out);
        to_uac.load(&mut out);
        while !to_uas.queue.is_empty() || !to_uac.queue.is_empty() {
            while let Some((local, b)) = to_uas.queue.pop_front() {
                let from = locals[local];
                uas.on_datagram(&b, from, 0, now, &mut out);
                to_uas.spare.push(b);
                to_uac.load(&mut out);
            }
            while let Some((local, b)) = to_uac.queue.pop_front() {
                uac.on_datagram(&b, uas_addr, local, now, &mut out);
                to_uac.spare.push(b);
                to_uas.load(&mut out);
            }
        }
    };
    // Warm-up: 3 s of fake time, 3000 calls.
    while now - t0 < Duration::from_secs(3) {
        now += Duration::from_millis(1);
        step(now, &mut uac, &mut uas);
    }
    let ok_before = uac.stats.calls_ok;
    COUNTING.with(|c| c.set(true));
    while now - t0 < Duration::from_secs(8) {
        now += Duration::from_millis(1);
        step(now, &mut uac, &mut uas);
    }
    COUNTING.with(|c| c.set(false));
    let measured = uac.stats.calls_ok - ok_before;
    assert!(measured >= 4900, "only {measured} calls completed");
    assert_eq!(uac.stats.calls_failed, 0);
    assert_eq!(
        ALLOCATIONS.load(Ordering::Relaxed),
        0,
        "allocations during {measured} steady-state calls"
    );
}
