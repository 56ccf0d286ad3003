//! The per-message paths that ringsip's criterion benches and the instruction counter
//! (`ringsip-instr`) measure, written once so both measure the same work:
//!
//! - [`forward`]: parse a typical INVITE, read what a proxy reads, apply a forward's edits,
//!   serialize (RFC 3261 §16.6); and, for comparison, the published `rsip` crate's parse of
//!   the same bytes.
//! - [`script`]: the interpreter running a route against a fake host, with the message's
//!   pseudo-variables answered from fixed strings or from a real parsed message.
//! - [`txn`]: the transaction layer driven sans-io through whole transactions
//!   (RFC 3261 §17, §16.7; RFC 6026 Accepted states), timers delivered at their deadlines.
//!
//! Invariant: every path checks the result it produced (a wrong route decision, a missing
//! header, a transaction that does not terminate is an error), so a bench cannot measure
//! a path that silently took a shortcut.

pub mod forward;
pub mod script;
pub mod txn;

/// The typical initial INVITE of the test fixtures (byte-exact).
pub static TYPICAL_INVITE: &[u8] = include_bytes!("../../tests/fixtures/typical_invite.sip");

/// Why a measured path did not produce what it must.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathError {
    /// The path and the step that went wrong.
    pub what: &'static str,
    /// What was seen instead.
    pub detail: String,
}

impl PathError {
    pub(crate) fn new(what: &'static str, detail: impl std::fmt::Debug) -> PathError {
        PathError {
            what,
            detail: format!("{detail:?}"),
        }
    }
}

impl std::fmt::Display for PathError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.what, self.detail)
    }
}

impl std::error::Error for PathError {}

#[cfg(test)]
mod tests {
    use super::script::{invite_without_route, RouteRun, RESIDENTIAL_SCRIPT};
    use super::*;

    #[test]
    fn every_path_runs_and_checks_itself() {
        let limits = ringsip::sip::Limits::default();
        let mut out = [0u8; 2048];
        let len =
            forward::ringsip_forward(bytes::Bytes::from_static(TYPICAL_INVITE), &limits, &mut out)
                .expect("forward");
        let fwd = ringsip::sip::Message::parse_datagram(out[..len].to_vec()).expect("reparse");
        assert_eq!(fwd.max_forwards(), Ok(Some(69)));
        let r = forward::rsip_read(TYPICAL_INVITE).expect("rsip");
        assert_eq!((r.cseq, r.max_forwards), (314159, 70));
        let own = forward::ringsip_read(bytes::Bytes::from_static(TYPICAL_INVITE), &limits)
            .expect("read");
        assert_eq!(own, r);
        RouteRun::default_fixed()
            .expect("compile")
            .run()
            .expect("default");
        let inv = invite_without_route();
        assert!(!inv.windows(6).any(|w| w == b"Route:"));
        RouteRun::with_message("r.cfg", RESIDENTIAL_SCRIPT, &inv)
            .expect("compile")
            .run()
            .expect("residential");
        let mut t = txn::TxnRun::new().expect("table");
        t.invite().expect("invite");
        t.invite().expect("invite again: the first one was removed");
        t.non_invite().expect("non-invite");
    }

    #[test]
    fn a_route_that_replies_instead_of_relaying_is_an_error() {
        let exhausted: Vec<u8> = script::invite_without_route()
            .split_inclusive(|b| *b == b'\n')
            .flat_map(|l| {
                if l.starts_with(b"Max-Forwards:") {
                    &b"Max-Forwards: 0\r\n"[..]
                } else {
                    l
                }
            })
            .copied()
            .collect();
        let mut r =
            RouteRun::with_message("r.cfg", RESIDENTIAL_SCRIPT, &exhausted).expect("compile");
        let e = r.run().expect_err("483 is not a relay");
        assert_eq!(e.what, "script-message-route");
    }
}
