//! A TCP round trip on a warm shard allocates nothing, under both backends: a client
//! task writes a message and reads its echo (each read waits for readiness, so the
//! backend's waiting machinery is exercised every time); after a warm-up, a counting
//! allocator must see no allocation on the shard thread. Its own binary, so no other
//! test shares the allocator.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::BACKENDS;
use cores::{AsyncStream, TcpListener, TcpStream};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

// SAFETY: every call is forwarded unchanged to the system allocator; counting touches
// only an atomic and a const-initialised thread-local Cell (no allocation).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(|c| c.get()) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from System.alloc/realloc with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.with(|c| c.get()) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn warm_tcp_round_trips_do_not_allocate() {
    for backend in BACKENDS {
        let (allocations, trips) = common::run(backend, || {
            Box::pin(async {
                let listener =
                    TcpListener::bind("127.0.0.1:0".parse().unwrap(), false, 16).unwrap();
                let addr: SocketAddr = listener.local_addr();
                listener
                    .accept_with(|r| {
                        let (s, _) = r.unwrap();
                        let mut rd = s.try_clone();
                        let mut wr = s;
                        cores::spawn_local(async move {
                            let mut buf = [0u8; 512];
                            while let Ok(n) = rd.read(&mut buf).await {
                                if n == 0 || wr.write_all(&buf[..n]).await.is_err() {
                                    break;
                                }
                            }
                        });
                    })
                    .unwrap();
                let mut c = TcpStream::connect(addr, Duration::from_secs(5))
                    .await
                    .unwrap();
                c.set_nodelay(true).unwrap();
                let msg = [7u8; 200];
                let mut buf = [0u8; 512];
                let mut trip = async |c: &mut TcpStream| {
                    c.write_all(&msg).await.unwrap();
                    let mut got = 0;
                    while got < msg.len() {
                        let n = c.read(&mut buf).await.unwrap();
                        assert!(n > 0);
                        got += n;
                    }
                };
                for _ in 0..200 {
                    trip(&mut c).await;
                }
                ALLOCATIONS.store(0, Ordering::Relaxed);
                COUNTING.with(|f| f.set(true));
                for _ in 0..2000 {
                    trip(&mut c).await;
                }
                COUNTING.with(|f| f.set(false));
                (ALLOCATIONS.load(Ordering::Relaxed), 2000)
            })
        });
        assert_eq!(
            allocations, 0,
            "{backend:?}: {allocations} allocations in {trips} warm round trips"
        );
    }
}
