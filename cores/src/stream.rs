//! The I/O traits protocol drivers (SQL, HTTP, DNS) are written against.
//!
//! Owns nothing; defines the contract. Implementations on a shard copy between the
//! caller's slice and kernel-owned buffers, so a future dropped mid-operation never
//! leaves the kernel writing into memory it no longer owns (see STYLE.md, "completion
//! ownership is sacred"). Dropping a pending future cancels the operation; the stream
//! may then be in an unknown protocol state and drivers must discard it.

use std::future::Future;
use std::io;

/// A connected, ordered byte stream (TCP, TLS over TCP, Unix socket, pipe pair).
pub trait AsyncStream {
    /// Reads at most `buf.len()` bytes. `Ok(0)` means the peer closed its side.
    fn read(&mut self, buf: &mut [u8]) -> impl Future<Output = io::Result<usize>>;

    /// Writes all of `buf`, or fails.
    fn write_all(&mut self, buf: &[u8]) -> impl Future<Output = io::Result<()>>;
}

/// A connected datagram socket (UDP to one peer, e.g. a DNS server).
pub trait AsyncDatagram {
    /// Sends one datagram; returns the number of bytes sent.
    fn send(&mut self, buf: &[u8]) -> impl Future<Output = io::Result<usize>>;

    /// Receives one datagram into `buf`; returns its length (truncated to `buf.len()`).
    fn recv(&mut self, buf: &mut [u8]) -> impl Future<Output = io::Result<usize>>;
}
