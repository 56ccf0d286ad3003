//! `sip`: the sans-io SIP message layer (RFC 3261 §7 message format, §20 header fields,
//! §25 grammar; RFC 4475/5118 torture cases). No I/O, no clock.
//!
//! - [`Message::parse`] indexes a received buffer in one pass (start line, header lines,
//!   body framed by Content-Length) without copying; typed headers (Via, From, To, CSeq, ...)
//!   parse on first use, the hot ones cached.
//! - [`Message::validate`] / [`Message::check_mandatory`] are the proxy's semantic checks,
//!   reported apart from syntax ([`ParseError`]).
//! - Edits (`prepend_via`, `strip_top_route`, `set_request_uri`, ...) are recorded as span
//!   edits and applied by [`Message::write_into`] / [`Message::write_to`] in one pass.
//! - [`reply::write_reply`] builds a stateless reply into a caller's buffer.
//!
//! Invariant for the whole module: no input can make it panic (no unchecked indexing, no
//! unchecked arithmetic on input-derived values) and the parse/access/forward path
//! allocates nothing.

pub mod edit;
pub mod header;
pub mod message;
pub mod reply;
pub mod scan;
pub mod uri;

pub use edit::EditError;
pub use header::{
    CSeq, Contact, Credentials, HeaderError, HeaderErrorKind, HeaderName, Method, NameAddr, Via,
};
pub use message::{
    HeaderField, HeaderValues, Invalid, Limits, Message, MissingHeader, NameAddrs, ParseError,
    StartLine, StartLineFault, Transport,
};
pub use reply::{write_reply, ReplyError, ReplySpec};
pub use scan::Span;
pub use uri::{parse_uri, Host, SipUri, TelUri, Uri, UriError};
