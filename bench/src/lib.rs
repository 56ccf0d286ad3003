//! `ringsip-load`: a SIP load generator (UAC and UAS) much cheaper per call than sipp.
//!
//! Layers, sans-io first: [`msg`] (just enough SIP scanning), [`template`] (pre-rendered
//! requests patched in place), [`engine`] (UAC/UAS state machines, call slab, timers,
//! stats), [`frame`] (Content-Length framing of SIP over TCP), [`report`] (hdrhistogram
//! percentiles, JSON, table), [`cli`] (the command line fixed by `LOADGEN_CONTRACT.md`),
//! [`driver`] (the run: plan, progress, report, signals) and [`ring`] (the shards on the
//! `cores` io_uring runtime: UDP sockets, TCP connections, clock, timers).
//!
//! The same library also carries the per-message paths the criterion benches and
//! `ringsip-instr` measure (`paths/`, re-exported at the crate root).

pub mod cli;
pub mod driver;
pub mod engine;
pub mod frame;
pub mod msg;
pub mod report;
pub mod ring;
pub mod template;

#[path = "../paths/lib.rs"]
mod paths;
pub use paths::*;
