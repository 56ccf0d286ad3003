//! Byte buffers between a driver and its `AsyncStream`: an input buffer the protocol
//! decoders consume from, and an output buffer flushed with one `write_all`.
//!
//! Invariant: `rbuf` holds only bytes received and not yet consumed by a decoder.

use bytes::BytesMut;
use cores::AsyncStream;

use super::DbError;

/// How much room one `read` call is offered.
const READ_CHUNK: usize = 16 * 1024;

/// Buffers larger than this are released after a command.
pub(crate) const KEEP_CAPACITY: usize = 256 * 1024;

pub(crate) struct Wire<S> {
    pub stream: S,
    pub rbuf: BytesMut,
    pub wbuf: BytesMut,
}

impl<S: AsyncStream> Wire<S> {
    pub fn new(stream: S) -> Self {
        Wire {
            stream,
            rbuf: BytesMut::with_capacity(READ_CHUNK),
            wbuf: BytesMut::with_capacity(1024),
        }
    }

    /// Reads at least one more byte into `rbuf`; end of stream is [`DbError::Closed`].
    pub async fn fill(&mut self) -> Result<(), DbError> {
        let old = self.rbuf.len();
        self.rbuf.resize(old + READ_CHUNK, 0);
        let res = match self.rbuf.get_mut(old..) {
            Some(spare) => self.stream.read(spare).await,
            None => Ok(0),
        };
        match res {
            Ok(0) => {
                self.rbuf.truncate(old);
                Err(DbError::Closed("end of stream".into()))
            }
            Ok(n) => {
                self.rbuf.truncate(old + n.min(READ_CHUNK));
                Ok(())
            }
            Err(e) => {
                self.rbuf.truncate(old);
                Err(io_error(e))
            }
        }
    }

    /// Gives back the memory a large request or response left in the buffers, so an idle
    /// pooled connection holds little.
    pub fn trim(&mut self) {
        if self.rbuf.is_empty() && self.rbuf.capacity() > KEEP_CAPACITY {
            self.rbuf = BytesMut::with_capacity(READ_CHUNK);
        }
        if self.wbuf.is_empty() && self.wbuf.capacity() > KEEP_CAPACITY {
            self.wbuf = BytesMut::with_capacity(1024);
        }
    }

    /// Writes all of `wbuf` and empties it.
    pub async fn flush(&mut self) -> Result<(), DbError> {
        let res = self.stream.write_all(&self.wbuf).await;
        self.wbuf.clear();
        res.map_err(io_error)
    }
}

/// A reset or broken pipe is the peer closing; anything else stays an I/O error.
fn io_error(e: std::io::Error) -> DbError {
    match e.kind() {
        std::io::ErrorKind::BrokenPipe
        | std::io::ErrorKind::ConnectionReset
        | std::io::ErrorKind::ConnectionAborted => DbError::Closed(e.to_string()),
        _ => DbError::Io(e),
    }
}
