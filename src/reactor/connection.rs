//! One client connection: its socket, input buffer, codec, output queue and the small
//! state machine that decides what it wants from the poller. It does its own I/O but
//! knows nothing of other connections or of services.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::time::Instant;

use bytes::Bytes;
use mio::Interest;

use super::ctx::Body;
use super::output::Output;
use super::read_buf::ReadBuf;
use super::timers::{Clock, Expiry, Timeouts};
use super::transport::{Peer, Stream};
use super::{interrupted, would_block};
use crate::codec::Codec;

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Reading and writing.
    Open,
    /// No more reading (end of stream, a protocol error, shutdown): flush what is
    /// queued, then close, or linger if the peer may still be sending.
    Draining,
    /// Output flushed and our side shut down; reading and discarding until the peer
    /// closes too (or a deadline), so closing does not reset the connection and destroy
    /// data the peer has not read yet.
    Lingering,
    /// Done; waiting to be deregistered and dropped at the end of the loop turn.
    Closed,
}

/// A client connection.
pub struct Connection {
    /// The socket (TCP, Unix or TLS), non-blocking, registered under the connection's
    /// slab key.
    pub stream: Stream,
    /// Where it comes from, for logs.
    pub peer: Peer,
    /// Unique for the server's lifetime: tells this connection from a later one that
    /// reuses its slab key (timer entries carry it).
    pub serial: u64,
    /// Bytes received and not yet framed.
    pub input: ReadBuf,
    /// This connection's framing state.
    pub codec: Codec,
    /// Frames waiting to be written to this peer.
    pub output: Output,
    /// Where the connection is in its life.
    pub phase: Phase,
    /// Opened by the service ([`super::Ctx::connect`]), not accepted: it speaks the
    /// service's own protocol, so the reactor never writes a goodbye on it.
    pub outbound: bool,
    /// The peer has closed its sending side (end of stream read).
    pub eof: bool,
    /// The poller reported a hang-up or an error: read until end of stream or the
    /// error, not just until a short read.
    pub hup: bool,
    /// The socket may hold unread bytes: set by a readable event, cleared by `WouldBlock`
    /// or a short read.
    /// Edge-triggered readiness fires once, so a connection that stops reading early
    /// (budget spent, backpressure) must remember this itself.
    pub readable: bool,
    /// Bytes the last read brought: a connection streaming more than
    /// [`SPLICE_FROM`](super::serve::SPLICE_FROM) per read is echoed by `splice` when
    /// that is possible.
    pub last_read: usize,
    /// Reading is stopped because its own output passed the cap (backpressure).
    pub paused: bool,
    /// Reading is stopped because the service asked (`Ctx::pause`).
    pub held: bool,
    /// Output has passed half the cap since the service was last told it drained.
    pub above_low_water: bool,
    /// Bodies waiting to be pulled into `output`, in order, after what it holds, and
    /// the bytes sent behind them.
    pub bodies: VecDeque<Pending>,
    /// Bytes received and never answered: left in the buffer when reading stopped
    /// (a partial frame, what followed a protocol error) or read while lingering. A
    /// connection closed with any is reset, never closed cleanly: a clean end of
    /// stream means every complete frame was answered.
    pub unanswered: u64,
    /// Already on the server's list of connections to read this turn.
    pub in_ready: bool,
    /// Already on the server's list of connections to flush before the next poll.
    pub in_dirty: bool,
    /// The interest currently registered with the poller.
    pub registered: Interest,
    /// Timestamps the timers work from.
    pub clock: Clock,
    /// What has flowed through it, for `/connz`.
    pub traffic: Traffic,
}

/// One connection's counters, kept beside the reactor's totals at the same places
/// (an add per read, per write and per run of frames, not per frame).
#[derive(Debug, Clone, Copy)]
pub struct Traffic {
    /// When it was accepted.
    pub opened: Instant,
    /// Complete frames received.
    pub frames_in: u64,
    /// Frames sent to it.
    pub frames_out: u64,
    /// Bytes received.
    pub bytes_in: u64,
    /// Bytes written.
    pub bytes_out: u64,
}

/// Output waiting behind a body, in the order it was sent.
pub enum Pending {
    /// A service's body, pulled as the peer drains; the service hears when it ends.
    Body(Box<dyn Body>),
    /// Bytes sent while a body was ahead of them: they wait their turn.
    Bytes(Bytes),
}

impl Connection {
    /// A new open connection, registered for `READABLE`, accepted at `now`.
    pub fn new(stream: Stream, peer: Peer, serial: u64, codec: Codec, now: Instant) -> Self {
        Connection {
            stream,
            peer,
            serial,
            input: ReadBuf::new(codec.max_pending()),
            codec,
            output: Output::default(),
            phase: Phase::Open,
            outbound: false,
            eof: false,
            hup: false,
            readable: false,
            last_read: 0,
            paused: false,
            held: false,
            above_low_water: false,
            bodies: VecDeque::new(),
            unanswered: 0,
            in_ready: false,
            in_dirty: false,
            registered: Interest::READABLE,
            clock: Clock::new(now),
            traffic: Traffic {
                opened: now,
                frames_in: 0,
                frames_out: 0,
                bytes_in: 0,
                bytes_out: 0,
            },
        }
    }

    /// True while the connection should be read from: open and not paused (or
    /// lingering), and possibly holding unread bytes.
    pub fn wants_read(&self) -> bool {
        let reading = match self.phase {
            Phase::Open => !self.paused && !self.held,
            Phase::Lingering => true,
            Phase::Draining | Phase::Closed => false,
        };
        reading && self.readable && !self.eof
    }

    /// True while a frame is partly received: its first byte arrived, its last has not.
    pub fn is_mid_frame(&self) -> bool {
        !self.input.is_empty() || self.codec.is_discarding()
    }

    /// True when closing now would leave the peer short: input read while lingering
    /// (it may hold complete frames), or, for a close that did not end in the peer's
    /// end of stream (`cut`), anything received and not served, still unread in the
    /// kernel, or queued and not written. Such a connection is reset, not closed
    /// cleanly.
    pub fn leaves_unanswered(&self, cut: bool) -> bool {
        self.unanswered > 0
            || (cut && (!self.input.is_empty() || !self.is_flushed() || self.unread() > 0))
    }

    /// Makes the coming close a reset (RST): `SO_LINGER` with a zero timeout.
    ///
    /// # Errors
    /// If the OS refuses the option.
    pub fn reset_on_close(&self) -> io::Result<()> {
        socket2::SockRef::from(&self.stream).set_linger(Some(std::time::Duration::ZERO))
    }

    /// Bytes the kernel holds for this connection that were never read.
    pub fn unread(&self) -> u64 {
        rustix::io::ioctl_fionread(&self.stream).unwrap_or(0)
    }

    /// The earliest deadline and what it enforces: the idle limit only while open (a
    /// closing connection has its linger and write limits).
    pub fn deadline(&self, limits: &Timeouts) -> Option<(Instant, Expiry)> {
        if self.phase == Phase::Open {
            let limit = self.clock.deadline(limits);
            let quiet = limits
                .quiet
                .filter(|_| self.is_caught_up())
                .map(|d| (self.clock.last_frame + d, Expiry::Quiet));
            limit.into_iter().chain(quiet).min_by_key(|&(when, _)| when)
        } else {
            let closing = Timeouts {
                idle: None,
                ..*limits
            };
            self.clock.deadline(&closing)
        }
    }

    /// True when the connection owes its peer nothing: read to the end of what
    /// arrived, not paused, everything written and no frame half received.
    pub fn is_caught_up(&self) -> bool {
        !self.readable && !self.paused && self.is_flushed() && !self.is_mid_frame()
    }

    /// True when nothing waits to be written: no queued output, no body, and nothing
    /// held by the transport (TLS records the socket has not taken yet).
    pub fn is_flushed(&self) -> bool {
        self.output.is_empty() && self.bodies.is_empty() && !self.stream.wants_write()
    }

    /// The interest the connection needs now: `WRITABLE` only while output is pending
    /// (queued, or TLS records not yet written).
    pub fn interest(&self) -> Interest {
        if self.output.is_empty() && !self.stream.wants_write() {
            Interest::READABLE
        } else {
            Interest::READABLE | Interest::WRITABLE
        }
    }

    /// Reads once from the socket into the input buffer: bytes read, and whether they
    /// filled the room offered.
    ///
    /// # Errors
    /// As `Read::read` on the socket.
    pub fn read(&mut self) -> io::Result<(usize, bool)> {
        self.input.read_from(&mut self.stream)
    }

    /// Writes the first `len` received bytes straight from the input buffer until done
    /// or the socket would block, and consumes what was written. For frames whose only
    /// recipient is this connection, with nothing queued ahead of them.
    ///
    /// # Errors
    /// Any write error but `WouldBlock` and `Interrupted`; a write of zero is `WriteZero`.
    pub fn write_through(&mut self, len: usize) -> io::Result<usize> {
        let mut written = 0;
        while let Some(pending) = self
            .input
            .data()
            .get(written..len)
            .filter(|p| !p.is_empty())
        {
            match self.stream.write(pending) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => written += n,
                Err(e) if interrupted(&e) => {}
                Err(e) if would_block(&e) => break,
                Err(e) => return Err(e),
            }
        }
        self.input.discard(written);
        Ok(written)
    }

    /// Writes queued output until done or the socket would block (and what the
    /// transport still holds: TLS records).
    ///
    /// # Errors
    /// Any write error but `WouldBlock` and `Interrupted`.
    pub fn flush(&mut self) -> io::Result<usize> {
        self.stream.send_pending()?;
        let written = self.output.write_to(&mut self.stream)?;
        self.stream.send_pending()?;
        Ok(written)
    }
}
