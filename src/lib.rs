//! ringsip: a thread-per-core io_uring SIP proxy scripted in the OpenSIPS language.
//!
//! The map is `../shared/DESIGN.md` (and `docs/architecture.md`): `sip` and `txn` are
//! sans-io; `transport` and `proxy` run on the `cores` runtime; `script` compiles and
//! interprets the routing script; `modules` are the functions a script calls.

pub mod mgmt;
pub mod modules;
pub mod proxy;
pub mod script;
pub mod sip;
pub mod transport;
pub mod txn;
