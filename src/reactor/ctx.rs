//! What a service may do, and the handles it is given: [`Ctx`] (send, close, pause,
//! timers, limits, counters), [`ConnId`] (a connection), [`Frames`] (a run of complete
//! frames still in the read buffer), [`Frame`] (one of them) and [`Body`] (output
//! pulled as the peer drains). A `Ctx` borrows the reactor for one callback; it never
//! hands out a socket.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use log::debug;

use super::connection::Phase;
use super::fake::{FakeCtx, FakeState};
use super::{stream_mut, Core, Peer, Stats};
use crate::codec::{Codec, Encoder, FrameError};
use crate::config::Config;

/// A connection, as services name it: its slab key and a serial number that tells it
/// from a later connection reusing the key. Cheap to copy, compare and hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId {
    key: usize,
    pub(super) serial: u64,
}

impl ConnId {
    pub(super) fn new(key: usize, serial: u64) -> Self {
        ConnId { key, serial }
    }

    /// The connection's slab key: small and dense, so a service can index a `Vec` or a
    /// `Slab` with it. Reused after the connection closes ([`Service::on_close`]).
    ///
    /// [`Service::on_close`]: crate::service::Service::on_close
    pub fn key(self) -> usize {
        self.key
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.serial)
    }
}

/// A run of complete frames at the front of a connection's read buffer, handed to
/// [`Service::on_frames`]. Taking it ([`Ctx::echo`], [`Ctx::take`], [`Ctx::split`])
/// consumes the bytes; a run not taken is discarded when the callback returns.
///
/// [`Service::on_frames`]: crate::service::Service::on_frames
#[derive(Debug)]
pub struct Frames {
    pub(super) key: usize,
    pub(super) len: usize,
    pub(super) count: usize,
}

impl Frames {
    /// Bytes in the run, headers and delimiters included.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: a run holds at least one frame.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Frames in the run.
    pub fn count(&self) -> usize {
        self.count
    }
}

/// One complete frame: its exact wire bytes and where its payload lies in them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    wire: Bytes,
    payload: std::ops::Range<usize>,
}

impl Frame {
    /// The payload: the frame without its header or delimiter.
    pub fn payload(&self) -> &[u8] {
        &self.wire[self.payload.clone()]
    }

    /// The frame as it was on the wire, header or delimiter included.
    pub fn wire(&self) -> &Bytes {
        &self.wire
    }

    /// The payload as a shared `Bytes`, without copying.
    pub fn into_payload(self) -> Bytes {
        self.wire.slice(self.payload)
    }
}

/// The frames of a taken run, one at a time (from [`Ctx::split`]).
#[derive(Debug)]
pub struct FrameIter {
    rest: Bytes,
    codec: Codec,
}

impl Iterator for FrameIter {
    type Item = Frame;

    fn next(&mut self) -> Option<Frame> {
        if self.rest.is_empty() {
            return None;
        }
        let len = self.codec.frame_len(&self.rest).min(self.rest.len());
        let wire = self.rest.split_to(len);
        let payload = self.codec.payload_range(&wire);
        Some(Frame { wire, payload })
    }
}

/// Output produced as the peer reads: pulled a chunk at a time while the
/// connection's queued output is under half of `max_output`, so a body of any size
/// (a file, a generator) costs at most the cap in memory.
pub trait Body: Send {
    /// The next bytes to write (already framed), about `max` bytes or fewer;
    /// `Ok(None)` once the body is complete.
    ///
    /// # Errors
    /// Whatever stops the body (a file that cannot be read); the connection is closed.
    /// A body that can say what went wrong to its peer returns a last frame with the
    /// error instead, then `Ok(None)`.
    fn next_chunk(&mut self, max: usize) -> io::Result<Option<Bytes>>;
}

/// Why a connection closed, as [`Service::on_close`] is told.
///
/// [`Service::on_close`]: crate::service::Service::on_close
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Closed {
    /// The peer finished and everything owed to it was written.
    Done,
    /// The peer broke the framing.
    Protocol(FrameError),
    /// A deadline passed (idle, frame, write, linger).
    Timeout(super::Expiry),
    /// The socket failed (reset, broken pipe, ...).
    Io(io::ErrorKind),
    /// A service closed it ([`Ctx::close`], [`Ctx::close_now`]).
    Service,
    /// Its output passed the cap (a slow-consumer policy).
    SlowConsumer,
    /// The daemon was shutting down and the drain timeout passed.
    Shutdown,
}

impl fmt::Display for Closed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Closed::Done => f.write_str("done"),
            Closed::Protocol(e) => write!(f, "protocol error: {e}"),
            Closed::Timeout(expiry) => write!(f, "{expiry}"),
            Closed::Io(kind) => write!(f, "{}", io::Error::from(*kind)),
            Closed::Service => f.write_str("closed by the service"),
            Closed::SlowConsumer => f.write_str("slow consumer"),
            Closed::Shutdown => f.write_str("drain timeout"),
        }
    }
}

/// A payload that could not be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// The connection is closed or closing: nothing more can be sent to it.
    Gone,
    /// The payload cannot be framed in the connection's framing.
    Frame(FrameError),
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Gone => f.write_str("connection closed"),
            SendError::Frame(e) => write!(f, "cannot frame the payload: {e}"),
        }
    }
}

impl std::error::Error for SendError {}

/// The reactor as one callback sees it (or, in a unit test, a [`FakeCtx`]).
pub struct Ctx<'a> {
    inner: Inner<'a>,
}

/// What a `Ctx` acts on.
enum Inner<'a> {
    Reactor(&'a mut Core),
    Fake(&'a mut FakeCtx),
}

impl<'a> Ctx<'a> {
    /// The reactor's `Ctx` for one callback.
    pub(super) fn reactor(core: &'a mut Core) -> Ctx<'a> {
        Ctx {
            inner: Inner::Reactor(core),
        }
    }

    /// A `Ctx` over a fake reactor ([`FakeCtx::ctx`]).
    pub(super) fn fake(fake: &'a mut FakeCtx) -> Ctx<'a> {
        Ctx {
            inner: Inner::Fake(fake),
        }
    }
}

impl Ctx<'_> {
    /// The time at the start of this loop turn.
    pub fn now(&self) -> Instant {
        match &self.inner {
            Inner::Reactor(core) => core.now,
            Inner::Fake(fake) => fake.now_(),
        }
    }

    /// The reactor's configuration: limits, framing, timeouts.
    pub fn config(&self) -> &Config {
        match &self.inner {
            Inner::Reactor(core) => &core.config,
            Inner::Fake(fake) => fake.config_(),
        }
    }

    /// What the reactor has counted so far.
    pub fn stats(&self) -> &Stats {
        match &self.inner {
            Inner::Reactor(core) => &core.stats,
            Inner::Fake(fake) => fake.stats_(),
        }
    }

    /// The counters, for a service that counts what it decides (frames dropped,
    /// slow-consumer closes).
    pub fn stats_mut(&mut self) -> &mut Stats {
        match &mut self.inner {
            Inner::Reactor(core) => &mut core.stats,
            Inner::Fake(fake) => fake.stats_mut_(),
        }
    }

    /// The peer of an open connection.
    pub fn peer(&self, conn: ConnId) -> Option<Peer> {
        match &self.inner {
            Inner::Reactor(core) => core.stream(conn).map(|c| c.peer.clone()),
            Inner::Fake(fake) => fake.peer(conn),
        }
    }

    /// What waits behind the chunk being written to `conn` (bytes plus a small cost
    /// per queued chunk): how far it has fallen behind. `None` unless it is open.
    pub fn backlog(&self, conn: ConnId) -> Option<usize> {
        match &self.inner {
            Inner::Reactor(core) => core
                .stream(conn)
                .filter(|c| c.phase == Phase::Open)
                .map(|c| c.output.backlog()),
            Inner::Fake(fake) => fake.backlog(conn),
        }
    }

    /// Bytes queued for `conn` and not yet written, as the output cap counts them.
    pub fn queued(&self, conn: ConnId) -> Option<usize> {
        match &self.inner {
            Inner::Reactor(core) => core.stream(conn).map(|c| c.output.footprint()),
            Inner::Fake(fake) => fake.queued(conn),
        }
    }

    /// Sends a run back to the connection it came from: written straight from the read
    /// buffer when nothing is queued ahead (no copy), the rest queued as one `Bytes`.
    pub fn echo(&mut self, frames: Frames) {
        match &mut self.inner {
            Inner::Reactor(core) => core.echo(frames),
            Inner::Fake(fake) => fake.echo(&frames),
        }
    }

    /// Takes a run out of the read buffer as one shared `Bytes` (without copying when
    /// it is a large share of the buffer), to send to any number of connections.
    pub fn take(&mut self, frames: Frames) -> Bytes {
        match &mut self.inner {
            Inner::Reactor(core) => core.take(frames),
            Inner::Fake(fake) => fake.take(&frames),
        }
    }

    /// Takes a run and hands out its frames one at a time.
    pub fn split(&mut self, frames: Frames) -> FrameIter {
        let codec = match &mut self.inner {
            Inner::Reactor(core) => {
                stream_mut(&mut core.entries, frames.key).map(|c| c.codec.clone())
            }
            Inner::Fake(fake) => fake.codec(frames.key),
        }
        .unwrap_or_else(|| Codec::new(crate::codec::Framing::Raw, 0));
        FrameIter {
            rest: self.take(frames),
            codec,
        }
    }

    /// Queues wire bytes (one or more whole frames) for `conn`, after everything
    /// queued before. Returns false, sending nothing, unless `conn` is open. The
    /// bytes count in `Stats::bytes_out` as they are written, but not in
    /// `Stats::frames_out`: [`Ctx::send_frames`] says how many frames they hold.
    pub fn send(&mut self, conn: ConnId, bytes: Bytes) -> bool {
        self.queue(conn, bytes, 0)
    }

    /// As [`Ctx::send`], for bytes holding `count` whole frames (a run from
    /// [`Ctx::take`] and its [`Frames::count`]), which count as frames out.
    pub fn send_frames(&mut self, conn: ConnId, bytes: Bytes, count: usize) -> bool {
        self.queue(conn, bytes, count as u64)
    }

    fn queue(&mut self, conn: ConnId, bytes: Bytes, frames: u64) -> bool {
        match &mut self.inner {
            Inner::Reactor(core) => core.send(conn, bytes, frames),
            Inner::Fake(fake) => fake.send(conn, bytes, frames),
        }
    }

    /// Frames `payload` in `conn`'s framing and queues it.
    ///
    /// # Errors
    /// [`SendError::Frame`] when the payload cannot be framed (too long for the
    /// header, a newline in a line); [`SendError::Gone`] unless `conn` is open.
    pub fn send_frame(&mut self, conn: ConnId, payload: &[u8]) -> Result<(), SendError> {
        let bytes = self.encode(conn, payload)?;
        if self.queue(conn, bytes, 1) {
            Ok(())
        } else {
            Err(SendError::Gone)
        }
    }

    /// Frames `payload` in `conn`'s framing without sending it.
    ///
    /// # Errors
    /// As [`Ctx::send_frame`].
    pub fn encode(&self, conn: ConnId, payload: &[u8]) -> Result<Bytes, SendError> {
        let codec = match &self.inner {
            Inner::Reactor(core) => core.stream(conn).map(|c| c.codec.clone()),
            Inner::Fake(fake) => fake.peer(conn).and_then(|_| fake.codec(conn.key())),
        }
        .ok_or(SendError::Gone)?;
        let mut out = BytesMut::with_capacity(payload.len() + 8);
        codec.encode(payload, &mut out).map_err(SendError::Frame)?;
        Ok(out.freeze())
    }

    /// Queues a body for `conn`, pulled as it drains, after everything queued before;
    /// frames sent after it follow it. [`Service::on_body_done`] is called once it has
    /// given its last chunk. Returns false unless `conn` is open.
    ///
    /// [`Service::on_body_done`]: crate::service::Service::on_body_done
    pub fn send_body(&mut self, conn: ConnId, body: Box<dyn Body>) -> bool {
        match &mut self.inner {
            Inner::Reactor(core) => core.send_body(conn, body),
            Inner::Fake(fake) => fake.send_body(conn, body),
        }
    }

    /// Stops reading `conn` (its peer is pushed back by TCP) until [`Ctx::resume`].
    /// Frames already read are still delivered: the rest of the run being handed to
    /// the service when it pauses comes to it all the same.
    pub fn pause(&mut self, conn: ConnId) {
        match &mut self.inner {
            Inner::Reactor(core) => {
                if let Some(c) = core.stream_mut(conn) {
                    c.held = true;
                }
            }
            Inner::Fake(fake) => fake.pause(conn, true),
        }
    }

    /// Reads `conn` again after [`Ctx::pause`].
    pub fn resume(&mut self, conn: ConnId) {
        match &mut self.inner {
            Inner::Reactor(core) => core.resume(conn),
            Inner::Fake(fake) => fake.pause(conn, false),
        }
    }

    /// Closes `conn` gracefully: nothing more is read, everything queued is written,
    /// then the connection ends.
    pub fn close(&mut self, conn: ConnId) {
        match &mut self.inner {
            Inner::Reactor(core) => {
                if let Some(key) = core.key_of(conn) {
                    core.drain(key);
                }
            }
            Inner::Fake(fake) => fake.close(conn, FakeState::Closing),
        }
    }

    /// Queues `last` (one frame) for `conn`, then closes it as [`Ctx::close`] does.
    pub fn close_after(&mut self, conn: ConnId, last: Bytes) {
        self.queue(conn, last, 1);
        self.close(conn);
    }

    /// Closes `conn` at once, dropping what is queued for it.
    pub fn close_now(&mut self, conn: ConnId, why: Closed) {
        match &mut self.inner {
            Inner::Reactor(core) => {
                if let Some(key) = core.key_of(conn) {
                    debug!("token {key}: closing ({why})");
                    core.close(key, why);
                }
            }
            Inner::Fake(fake) => fake.close(conn, FakeState::Closed(why.to_string())),
        }
    }

    /// Closes `conn` for a policy reason (a slow consumer, say): with
    /// `Config::goodbye`, what waits behind the chunk being written is dropped and a
    /// last frame `framecast: closing: WHY` follows that chunk, then the connection
    /// closes as [`Ctx::close`] does; without it, as [`Ctx::close_now`] with `closed`.
    pub fn close_for(&mut self, conn: ConnId, why: &str, closed: Closed) {
        match &mut self.inner {
            Inner::Reactor(core) => {
                if let Some(key) = core.key_of(conn) {
                    debug!("token {key}: closing ({why})");
                    core.policy_close(key, why, closed);
                }
            }
            Inner::Fake(fake) => fake.close(conn, FakeState::Closed(why.to_owned())),
        }
    }

    /// Calls [`Service::on_timer`] with `tag` at `when` (or at the first loop turn
    /// after it). Timers cannot be cancelled: a service ignores a tag it no longer
    /// expects.
    ///
    /// [`Service::on_timer`]: crate::service::Service::on_timer
    pub fn set_timer(&mut self, when: Instant, tag: u64) {
        match &mut self.inner {
            Inner::Reactor(core) => core.service_timers.arm(when, tag),
            Inner::Fake(fake) => fake.set_timer(when, tag),
        }
    }

    /// Opens a TCP connection to `addr`, served by the reactor like an accepted one
    /// (caps, timers, close) but with `raw` framing: the service gets its bytes as
    /// they come in [`Service::on_frames`] and sends its own protocol with
    /// [`Ctx::send`]. [`Service::on_open`] is not called for it; a connect that fails
    /// ends in [`Service::on_close`].
    ///
    /// # Errors
    /// The socket cannot be made, or the reactor is shutting down (or is a fake).
    ///
    /// [`Service::on_frames`]: crate::service::Service::on_frames
    /// [`Service::on_open`]: crate::service::Service::on_open
    /// [`Service::on_close`]: crate::service::Service::on_close
    pub fn connect(&mut self, addr: SocketAddr) -> io::Result<ConnId> {
        match &mut self.inner {
            Inner::Reactor(core) => core.connect(addr),
            Inner::Fake(_) => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "a FakeCtx has no network",
            )),
        }
    }

    /// Every open connection, in key order.
    pub fn connections(&self) -> Vec<ConnId> {
        match &self.inner {
            Inner::Reactor(core) => core.open_ids(),
            Inner::Fake(fake) => fake.open_ids(),
        }
    }
}
