//! `ringsip-instr PATH N`: runs one measured per-message path N times, for instruction
//! counting under callgrind (`bench/instructions.sh` runs it for N=1 and N=1001 and takes
//! the difference / 1000, which removes start-up and set-up). Paths:
//!
//! - `parse-invite`: ringsip parse of the typical INVITE + Via branch, To tag, Call-ID,
//!   CSeq, Max-Forwards, Route + a forward's edits + serialize;
//! - `read-invite`: ringsip parse + method, Via branch, Call-ID, CSeq, Max-Forwards
//!   (like for like with the next one);
//! - `rsip-parse-invite`: `rsip` 0.4 parse of the same bytes + method, Via branch,
//!   Call-ID, CSeq, Max-Forwards;
//! - `script-default-route`: default script, fixed-string host (interpreter alone);
//! - `script-default-msg`, `script-residential-msg`: parse + route with a real message;
//! - `txn-invite`, `txn-non-invite`: one whole transaction through `TxnTable`.
//!
//! Every iteration checks its result; a failure exits with status 1 and says why.

use std::hint::black_box;
use std::process::ExitCode;

use bytes::Bytes;
use ringsip::script::DEFAULT_SCRIPT;
use ringsip::sip::Limits;
use ringsip_bench::script::{invite_without_route, RouteRun, RESIDENTIAL_SCRIPT};
use ringsip_bench::txn::TxnRun;
use ringsip_bench::{forward, PathError, TYPICAL_INVITE};

const PATHS: &[&str] = &[
    "parse-invite",
    "read-invite",
    "rsip-parse-invite",
    "script-default-route",
    "script-default-msg",
    "script-residential-msg",
    "txn-invite",
    "txn-non-invite",
];

fn repeat(n: u64, mut f: impl FnMut() -> Result<(), PathError>) -> Result<(), PathError> {
    for _ in 0..n {
        f()?;
    }
    Ok(())
}

fn run(path: &str, n: u64) -> Result<(), PathError> {
    match path {
        "parse-invite" => {
            let limits = Limits::default();
            let mut out = [0u8; 2048];
            repeat(n, || {
                let buf = Bytes::from_static(black_box(TYPICAL_INVITE));
                let len = forward::ringsip_forward(buf, &limits, &mut out)?;
                black_box(&out[..len]);
                Ok(())
            })
        }
        "read-invite" => {
            let limits = Limits::default();
            repeat(n, || {
                let buf = Bytes::from_static(black_box(TYPICAL_INVITE));
                black_box(forward::ringsip_read(buf, &limits)?);
                Ok(())
            })
        }
        "rsip-parse-invite" => repeat(n, || {
            black_box(forward::rsip_read(black_box(TYPICAL_INVITE))?);
            Ok(())
        }),
        "script-default-route" => {
            let mut r = RouteRun::default_fixed()?;
            repeat(n, || r.run())
        }
        "script-default-msg" => {
            let mut r =
                RouteRun::with_message("default.cfg", DEFAULT_SCRIPT, &invite_without_route())?;
            repeat(n, || r.run())
        }
        "script-residential-msg" => {
            let mut r = RouteRun::with_message(
                "residential.cfg",
                RESIDENTIAL_SCRIPT,
                &invite_without_route(),
            )?;
            repeat(n, || r.run())
        }
        "txn-invite" => {
            let mut t = TxnRun::new()?;
            repeat(n, || t.invite())
        }
        "txn-non-invite" => {
            let mut t = TxnRun::new()?;
            repeat(n, || t.non_invite())
        }
        other => Err(PathError {
            what: "unknown path",
            detail: format!("{other:?}; known: {}", PATHS.join(", ")),
        }),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(path), Some(n)) = (args.get(1), args.get(2).and_then(|n| n.parse::<u64>().ok()))
    else {
        eprintln!("usage: ringsip-instr PATH N\npaths: {}", PATHS.join(" "));
        return ExitCode::from(2);
    };
    match run(path, n) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ringsip-instr: {e}");
            ExitCode::from(1)
        }
    }
}
