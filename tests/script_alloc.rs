//! Running a simple route allocates nothing once the interpreter's buffers have grown:
//! the default script's initial-INVITE path is run twice under a counting allocator and
//! the second run must not allocate.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use ringsip::script::interp::{Arg, AsyncStart, MsgState, Outcome, PvGot, ScriptHost, ValRef};
use ringsip::script::pv::{MsgPv, PvIndex};
use ringsip::script::{compile, FnDecl, FnId, Interpreter, Registry, RouteId, DEFAULT_SCRIPT};

struct Counting;
static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// A host that answers from fixed data and counts calls, without allocating.
struct StaticHost {
    calls: usize,
}

impl ScriptHost for StaticHost {
    fn pv_get(&mut self, pv: &MsgPv, _index: PvIndex, out: &mut String) -> PvGot {
        match pv {
            MsgPv::Rm => out.push_str("INVITE"),
            MsgPv::RUser => out.push_str("bob"),
            MsgPv::Ru => out.push_str("sip:bob@example.com"),
            _ => return PvGot::Null,
        }
        PvGot::Str
    }
    fn pv_set(&mut self, _pv: &MsgPv, _value: ValRef<'_>) -> bool {
        true
    }
    fn call(
        &mut self,
        _f: FnId,
        decl: &'static FnDecl,
        _args: &[Arg<'_>],
        _st: &mut MsgState,
    ) -> i32 {
        self.calls += 1;
        match decl.name {
            "loose_route" | "t_check_trans" => -1,
            _ => 1,
        }
    }
    fn call_async(
        &mut self,
        _f: FnId,
        _d: &'static FnDecl,
        _a: &[Arg<'_>],
        _st: &mut MsgState,
    ) -> AsyncStart {
        AsyncStart::Done(1)
    }
    fn launch(
        &mut self,
        _f: FnId,
        _d: &'static FnDecl,
        _a: &[Arg<'_>],
        _r: Option<RouteId>,
        _st: &mut MsgState,
    ) -> i32 {
        1
    }
    fn is_myself(&mut self, _uri: &str) -> bool {
        false
    }
}

#[test]
fn default_route_does_not_allocate_when_warm() {
    let script = compile("default.cfg", DEFAULT_SCRIPT, &Registry::builtin())
        .unwrap()
        .script;
    let route = script.request_route().unwrap();
    let mut st = MsgState::new(&script);
    let mut it = Interpreter::new();
    let mut host = StaticHost { calls: 0 };
    assert_eq!(it.run(&script, route, &mut st, &mut host), Outcome::Exit);
    let first_calls = host.calls;
    st.reset();
    COUNTING.store(true, Ordering::SeqCst);
    let out = it.run(&script, route, &mut st, &mut host);
    COUNTING.store(false, Ordering::SeqCst);
    assert_eq!(out, Outcome::Exit);
    assert_eq!(host.calls, 2 * first_calls);
    assert_eq!(ALLOCS.load(Ordering::SeqCst), 0);
}
