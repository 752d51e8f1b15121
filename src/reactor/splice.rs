//! Zero-copy pass-through for unframed echo, on Linux: `splice(2)` moves what a socket
//! received into a pipe and from the pipe back out to the socket, as page references,
//! so the bytes never enter user space (HAProxy and nginx forward the same way).
//!
//! One pipe serves every connection and is empty between calls: a connection's bytes
//! go in and straight out again, and whatever the socket would not take is read back
//! into memory at once, to be queued like any other output. So no bytes of one
//! connection can linger for the next, and the pipe costs two descriptors in all.

use std::io;

use bytes::{Bytes, BytesMut};

/// A pipe the kernel moves pages through; empty whenever no call is running.
#[derive(Debug)]
pub struct Splicer {
    /// Read end, write end.
    #[cfg(target_os = "linux")]
    pipe: (std::os::fd::OwnedFd, std::os::fd::OwnedFd),
    /// The most one pass moves: the pipe's capacity.
    capacity: usize,
    /// The pipe could not be emptied: it may hold someone's bytes and must not be used.
    broken: bool,
}

/// What one pass did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pass {
    /// Bytes taken from the socket (0 at end of stream).
    pub read: usize,
    /// Bytes of those written back to the socket.
    pub written: usize,
    /// What the socket would not take yet, in order, to be queued: `read - written`
    /// bytes, copied out of the pipe.
    pub rest: Bytes,
}

#[cfg(target_os = "linux")]
impl Splicer {
    /// A non-blocking pipe, asked to hold `capacity` bytes (the kernel may round it, or
    /// refuse beyond `/proc/sys/fs/pipe-max-size`; then it keeps its default).
    ///
    /// # Errors
    /// If the pipe cannot be created (no descriptor left).
    pub fn new(capacity: usize) -> io::Result<Splicer> {
        use rustix::pipe::{fcntl_getpipe_size, fcntl_setpipe_size, pipe_with, PipeFlags};

        let pipe = pipe_with(PipeFlags::NONBLOCK | PipeFlags::CLOEXEC)?;
        let capacity =
            fcntl_setpipe_size(&pipe.1, capacity).or_else(|_| fcntl_getpipe_size(&pipe.1))?;
        Ok(Splicer {
            pipe,
            capacity,
            broken: false,
        })
    }

    /// Moves up to `limit` bytes (at most the pipe's capacity) from `socket` back out
    /// to it, and copies what it would not take into [`Pass::rest`].
    ///
    /// # Errors
    /// A read error (`WouldBlock` included: nothing was read) leaves nothing behind. A
    /// write error comes with the pipe emptied and the bytes read lost, so the caller
    /// must close the connection, as after any write error.
    pub fn echo<S: std::os::fd::AsFd>(&mut self, socket: &S, limit: usize) -> io::Result<Pass> {
        use rustix::pipe::{splice, SpliceFlags};

        let want = limit.min(self.capacity);
        let flags = SpliceFlags::NONBLOCK | SpliceFlags::MOVE;
        let read = retry(|| splice(socket, None, &self.pipe.1, None, want, flags))?;
        let mut pass = Pass {
            read,
            ..Pass::default()
        };
        while pass.written < read {
            match splice(&self.pipe.0, None, socket, None, read - pass.written, flags) {
                Ok(0) => {
                    return Err(self.discard(read - pass.written, io::ErrorKind::WriteZero.into()))
                }
                Ok(n) => pass.written += n,
                Err(rustix::io::Errno::INTR) => {}
                Err(rustix::io::Errno::AGAIN) => break,
                Err(e) => return Err(self.discard(read - pass.written, e.into())),
            }
        }
        pass.rest = self.take(read - pass.written)?;
        Ok(pass)
    }

    /// False once the pipe could not be emptied: it may hold a connection's bytes, so
    /// the server must drop it rather than pass another connection through it.
    pub fn is_usable(&self) -> bool {
        !self.broken
    }

    /// Reads `len` bytes out of the pipe; marks it broken if they cannot all be read.
    fn take(&mut self, len: usize) -> io::Result<Bytes> {
        let mut rest = BytesMut::zeroed(len);
        let mut done = 0;
        while done < len {
            match rustix::io::read(&self.pipe.0, &mut rest[done..]) {
                Ok(0) => {
                    self.broken = true;
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                Ok(n) => done += n,
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => {
                    self.broken = true;
                    return Err(e.into());
                }
            }
        }
        Ok(rest.freeze())
    }

    /// Empties the pipe of `len` bytes after a failed write, and returns `error`.
    fn discard(&mut self, len: usize, error: io::Error) -> io::Error {
        match self.take(len) {
            Ok(_) => error,
            Err(e) => e,
        }
    }
}

#[cfg(not(target_os = "linux"))]
impl Splicer {
    /// Not available here: every connection takes the copying path.
    ///
    /// # Errors
    /// Always `Unsupported`.
    pub fn new(_capacity: usize) -> io::Result<Splicer> {
        Err(io::ErrorKind::Unsupported.into())
    }

    /// Never called: no `Splicer` exists off Linux.
    pub fn is_usable(&self) -> bool {
        false
    }

    /// Never called: no `Splicer` exists off Linux.
    ///
    /// # Errors
    /// Always `Unsupported`.
    pub fn echo<S>(&mut self, _socket: &S, _limit: usize) -> io::Result<Pass> {
        Err(io::ErrorKind::Unsupported.into())
    }
}

/// Runs `f` again while it is interrupted.
#[cfg(target_os = "linux")]
fn retry(mut f: impl FnMut() -> rustix::io::Result<usize>) -> io::Result<usize> {
    loop {
        match f() {
            Err(rustix::io::Errno::INTR) => {}
            result => return result.map_err(io::Error::from),
        }
    }
}
