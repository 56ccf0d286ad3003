//! Transports (UDP, TCP, TLS) on top of `cores`, and next-hop resolution (DNS).

pub mod dns;
