//! The script interpreter's per-message cost on a request route (an initial INVITE),
//! module functions faked (see `ringsip_bench::script`):
//! - `default/fixed`: the embedded default script, pseudo-variables from fixed strings —
//!   the interpreter alone;
//! - `default/message`, `residential/message`: parse a fresh INVITE and run the route
//!   with the pseudo-variables read from it (and Max-Forwards, Record-Route, append_hf
//!   edits applied); `parse-only` is the parse alone, to subtract.
//!
//! Run: `cargo bench -p ringsip-bench --bench script_route`.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ringsip::script::DEFAULT_SCRIPT;
use ringsip::sip::Message;
use ringsip_bench::script::{invite_without_route, RouteRun, RESIDENTIAL_SCRIPT};

fn script_route(c: &mut Criterion) {
    let mut g = c.benchmark_group("script");
    g.throughput(Throughput::Elements(1));

    let mut fixed = RouteRun::default_fixed().expect("default script");
    fixed.run().expect("default route on the fixed host");
    g.bench_function("default/fixed", |b| {
        b.iter(|| fixed.run().expect("default route"))
    });

    let invite = invite_without_route();
    let mut dflt =
        RouteRun::with_message("default.cfg", DEFAULT_SCRIPT, &invite).expect("default script");
    dflt.run().expect("default route on the message");
    g.bench_function("default/message", |b| {
        b.iter(|| dflt.run().expect("default route"))
    });

    let mut resi = RouteRun::with_message("residential.cfg", RESIDENTIAL_SCRIPT, &invite)
        .expect("residential script");
    resi.run().expect("residential route on the message");
    g.bench_function("residential/message", |b| {
        b.iter(|| resi.run().expect("residential route"))
    });

    let raw = Bytes::from(invite);
    g.bench_function("parse-only", |b| {
        b.iter(|| Message::parse_datagram(black_box(raw.clone())).expect("parse"))
    });
    g.finish();
}

criterion_group!(benches, script_route);
criterion_main!(benches);
