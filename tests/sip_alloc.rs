//! The proxy's per-message path allocates nothing: parse a typical INVITE, read the headers a
//! proxy touches, apply a forward's edits, serialize into a send buffer; and build a
//! stateless reply. Counted with a thread-local counting global allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bytes::Bytes;
use ringsip::sip::{write_reply, HeaderName, Limits, Message, ReplySpec, Transport};

struct Counting;

thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator unchanged; only counts calls on armed threads.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if ARMED.with(Cell::get) {
            COUNT.with(|c| c.set(c.get() + 1));
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if ARMED.with(Cell::get) {
            COUNT.with(|c| c.set(c.get() + 1));
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn allocations<R>(f: impl FnOnce() -> R) -> (R, usize) {
    COUNT.with(|c| c.set(0));
    ARMED.with(|a| a.set(true));
    let r = f();
    ARMED.with(|a| a.set(false));
    (r, COUNT.with(Cell::get))
}

static INVITE: &[u8] = include_bytes!("fixtures/typical_invite.sip");

#[test]
fn the_counter_counts() {
    let (v, n) = allocations(|| Vec::<u8>::with_capacity(8));
    drop(v);
    assert_eq!(n, 1);
}

#[test]
fn forward_path_allocates_nothing() {
    let limits = Limits::default();
    let mut out = [0u8; 2048];
    let (len, n) = allocations(|| {
        let mut m = Message::parse(Bytes::from_static(INVITE), Transport::Datagram, &limits)
            .expect("parse");
        let via = m.top_via().expect("via");
        assert_eq!(via.branch, Some(&b"z9hG4bK776asdhds"[..]));
        assert!(m.to().expect("to").tag().is_none());
        assert_eq!(
            m.call_id().expect("call-id"),
            b"a84b4c76e66710@pc33.atlanta.example.com"
        );
        assert_eq!(m.cseq().expect("cseq").number, 314159);
        assert_eq!(m.routes().count(), 2);
        assert_eq!(m.max_forwards(), Ok(Some(70)));
        m.prepend_via(b"SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKringsip0.1.abc")
            .expect("via");
        m.prepend_record_route(b"<sip:192.0.2.1;lr>").expect("rr");
        assert_eq!(m.decrement_max_forwards(), Ok(69));
        m.strip_top_route().expect("route");
        m.write_into(&mut out).expect("write")
    });
    assert_eq!(n, 0, "allocations on the forward path");
    let fwd = Message::parse_datagram(out[..len].to_vec()).expect("reparse");
    assert_eq!(fwd.max_forwards(), Ok(Some(69)));
    assert_eq!(fwd.routes().count(), 1);
    assert_eq!(fwd.record_routes().count(), 1);
    assert_eq!(fwd.vias().count(), 2);
    assert_eq!(fwd.top_via().unwrap().host, b"192.0.2.1");
    assert_eq!(fwd.body(), Message::parse_datagram(INVITE).unwrap().body());
}

#[test]
fn stateless_reply_allocates_nothing() {
    let m = Message::parse(
        Bytes::from_static(INVITE),
        Transport::Datagram,
        &Limits::default(),
    )
    .expect("parse");
    let mut out = [0u8; 1024];
    let (len, n) = allocations(|| {
        write_reply(
            &m,
            &ReplySpec {
                code: 483,
                reason: b"Too Many Hops",
                to_tag: Some(b"ringsip-1"),
                ..Default::default()
            },
            &mut out,
        )
        .expect("reply")
    });
    assert_eq!(n, 0, "allocations building a reply");
    let r = Message::parse_datagram(out[..len].to_vec()).expect("reparse");
    assert_eq!(r.status_code(), Some(483));
    assert_eq!(r.header(HeaderName::CallId), m.header(HeaderName::CallId));
}
