//! The transaction layer's per-transaction and per-message cost, sans-io, on a table
//! already holding `BACKGROUND` live transactions (see `ringsip_bench::txn`):
//! - `invite`: INVITE in, 100 out, relayed, 100/180/200 in, 200 relayed, Timers L/M,
//!   remove — 4 messages in;
//! - `non-invite`: OPTIONS in, relayed, 200 in and relayed, Timers J/K, remove — 2 in.
//!
//! Criterion's time is per transaction; its throughput is set to the messages of one
//! transaction, so `thrpt` reads as messages per second (per message = time / messages).
//!
//! Run: `cargo bench -p ringsip-bench --bench txn_path`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ringsip_bench::txn::{TxnRun, INVITE_MESSAGES, NON_INVITE_MESSAGES};

fn txn_path(c: &mut Criterion) {
    let mut run = TxnRun::new().expect("table");
    run.invite().expect("INVITE transaction");
    run.non_invite().expect("non-INVITE transaction");

    let mut g = c.benchmark_group("txn");
    g.throughput(Throughput::Elements(INVITE_MESSAGES));
    g.bench_function("invite", |b| {
        b.iter(|| run.invite().expect("INVITE transaction"))
    });
    g.throughput(Throughput::Elements(NON_INVITE_MESSAGES));
    g.bench_function("non-invite", |b| {
        b.iter(|| run.non_invite().expect("non-INVITE transaction"))
    });
    g.finish();
}

criterion_group!(benches, txn_path);
criterion_main!(benches);
