//! Byte buffers between a driver and its `AsyncStream`: an input buffer the protocol
//! decoders consume from, and an output buffer flushed with one `write_all`.
//!
//! Invariant: `rbuf` holds only bytes received and not yet consumed by a decoder.

use bytes::BytesMut;
use cores::AsyncStream;

use super::DbError;

/// How much room the first `read` of a command is offered. The room is zeroed before each
/// read (a `&mut [u8]` must be initialized), so it starts small: a typical result is a few
/// hundred bytes, and zeroing 16 KiB per read cost more than the rest of the read path.
const READ_MIN: usize = 2 * 1024;

/// The most room one `read` is offered; reached by doubling while reads fill the room.
const READ_MAX: usize = 64 * 1024;

/// Buffers larger than this are released after a command.
pub(crate) const KEEP_CAPACITY: usize = 256 * 1024;

pub(crate) struct Wire<S> {
    pub stream: S,
    pub rbuf: BytesMut,
    pub wbuf: BytesMut,
    /// Room the next `read` is offered: [`READ_MIN`], doubled (up to [`READ_MAX`]) after a
    /// read that filled it, back to [`READ_MIN`] at [`Wire::trim`].
    chunk: usize,
}

impl<S: AsyncStream> Wire<S> {
    pub fn new(stream: S) -> Self {
        Wire {
            stream,
            rbuf: BytesMut::with_capacity(READ_MIN),
            wbuf: BytesMut::with_capacity(1024),
            chunk: READ_MIN,
        }
    }

    /// Reads at least one more byte into `rbuf`; end of stream is [`DbError::Closed`].
    pub async fn fill(&mut self) -> Result<(), DbError> {
        let old = self.rbuf.len();
        let room = self.chunk;
        self.rbuf.resize(old + room, 0);
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
                self.rbuf.truncate(old + n.min(room));
                if n >= room {
                    self.chunk = (room * 2).min(READ_MAX);
                }
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
        self.chunk = READ_MIN;
        if self.rbuf.is_empty() && self.rbuf.capacity() > KEEP_CAPACITY {
            self.rbuf = BytesMut::with_capacity(READ_MIN);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream that hands out `data` in reads of at most `per_read` bytes and records
    /// the room each read was offered.
    struct Chunks {
        data: Vec<u8>,
        pos: usize,
        per_read: usize,
        offered: Vec<usize>,
    }

    impl AsyncStream for Chunks {
        async fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.offered.push(buf.len());
            let n = buf.len().min(self.per_read).min(self.data.len() - self.pos);
            buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
            self.pos += n;
            Ok(n)
        }

        async fn write_all(&mut self, _buf: &[u8]) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn wire(len: usize, per_read: usize) -> Wire<Chunks> {
        let data = (0..len).map(|i| (i % 251) as u8).collect();
        Wire::new(Chunks {
            data,
            pos: 0,
            per_read,
            offered: Vec::new(),
        })
    }

    #[test]
    fn small_reads_are_offered_little_room_and_large_ones_grow_it() {
        // A small result: one read, offered READ_MIN.
        let mut w = wire(300, usize::MAX);
        cores::testing::block_on(w.fill()).unwrap();
        assert_eq!(w.rbuf.len(), 300);
        assert_eq!(w.stream.offered, vec![READ_MIN]);

        // A large one: the room doubles while reads fill it, up to READ_MAX, and every
        // byte arrives in order.
        let total = 3 * READ_MAX;
        let mut w = wire(total, usize::MAX);
        while w.rbuf.len() < total {
            cores::testing::block_on(w.fill()).unwrap();
        }
        let want: Vec<u8> = (0..total).map(|i| (i % 251) as u8).collect();
        assert_eq!(&w.rbuf[..], &want[..]);
        let offered = &w.stream.offered;
        assert_eq!(offered[..3], [READ_MIN, 2 * READ_MIN, 4 * READ_MIN]);
        assert_eq!(*offered.iter().max().unwrap(), READ_MAX);

        // After the command, the next one starts small again.
        w.rbuf.clear();
        w.trim();
        w.stream.data.extend_from_slice(b"next");
        cores::testing::block_on(w.fill()).unwrap();
        assert_eq!(&w.rbuf[..], b"next");
        assert_eq!(*w.stream.offered.last().unwrap(), READ_MIN);
    }

    #[test]
    fn a_short_read_does_not_grow_the_room_and_end_of_stream_is_closed() {
        let mut w = wire(5 * READ_MIN, 100);
        for _ in 0..5 {
            cores::testing::block_on(w.fill()).unwrap();
        }
        assert_eq!(w.rbuf.len(), 500);
        assert!(w.stream.offered.iter().all(|&n| n == READ_MIN));

        let mut w = wire(0, 100);
        let e = cores::testing::block_on(w.fill()).unwrap_err();
        assert!(matches!(e, DbError::Closed(_)), "{e:?}");
        assert!(w.rbuf.is_empty());
    }
}
