//! Allocations per call of a whole `ringsip-load` run over TCP (UAC and in-process UAS,
//! the real driver on the cores runtime): a run of 2N calls must not allocate more than
//! a run of N calls plus a small margin, i.e. the steady state allocates (almost)
//! nothing. Counted process-wide (every thread) by a counting allocator; its own binary,
//! so no other test shares it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use clap::Parser;
use ringsip_bench::cli::{Cli, Command};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; counting touches
// only an atomic.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from System.alloc/realloc with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_for(scenario: &str, calls: u64) -> usize {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let calls = calls.to_string();
    let cli = Cli::try_parse_from([
        "ringsip-load",
        "run",
        "--transport",
        "tcp",
        "--target",
        &port,
        "--uas",
        &port,
        "--scenario",
        scenario,
        "--calls",
        &calls,
        "--concurrency",
        "10",
        "--connections",
        "2",
        "--quiet",
    ])
    .unwrap();
    let Command::Run(args) = cli.command else {
        unreachable!()
    };
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let report = ringsip_bench::ring::run(&args).unwrap();
    let n = ALLOCATIONS.load(Ordering::Relaxed) - before;
    assert_eq!(report.calls_ok, args.calls.unwrap(), "{report:?}");
    n
}

#[test]
fn tcp_runs_allocate_per_run_not_per_call() {
    for scenario in ["call", "options"] {
        // Warm the process (first-use allocations of std and the runtime).
        allocations_for(scenario, 100);
        let small = allocations_for(scenario, 2_000);
        let large = allocations_for(scenario, 4_000);
        eprintln!("{scenario}: 2000 calls: {small} allocations, 4000 calls: {large}");
        let extra = large.saturating_sub(small);
        // 2000 more calls: at most one allocation per 100 calls.
        assert!(
            extra <= 20,
            "{scenario}: {extra} more allocations for 2000 more calls"
        );
    }
}
