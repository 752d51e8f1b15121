//! The data path: read a connection, cut its input into runs of frames, deliver them
//! to the audience the mode names, flush output with vectored writes, and close in two
//! phases. Timestamps for the timers are noted on the way, a few stores per read.

use std::fmt;
use std::mem;
use std::net::Shutdown;
use std::time::Duration;

use bytes::Bytes;
use log::{debug, info, trace, warn};
use mio::Token;

use super::connection::{Connection, Phase};
use super::output::CHUNK_COST;
use super::{interrupted, would_block, Server};
use crate::mode::{Offer, SlowConsumer};

/// Bytes read from one connection per loop turn before the others get their turn, so a
/// flooding client cannot starve the rest (one read of the largest room).
pub(super) const READ_BUDGET: usize = 256 << 10;
/// A connection whose last read brought at least this many bytes is echoed with
/// `splice` where the mode and framing allow it. Below, the copies it saves cost less
/// than the one more call it makes per event: a short splice does not prove the socket
/// drained, as a short read does, so splicing goes on to `WouldBlock`.
pub(super) const SPLICE_FROM: usize = 4096;
/// How long a closing connection may keep sending after our side has shut down, before
/// it is closed anyway.
const LINGER: Duration = Duration::from_secs(2);
/// Stale timer entries tolerated beyond twice the live connections before a sweep.
const STALE_TIMERS_SLACK: usize = 1024;

impl Server {
    /// Reads every connection on the ready list once, up to its budget.
    pub(super) fn serve_ready(&mut self) {
        let mut batch = mem::replace(&mut self.ready, mem::take(&mut self.spare));
        for key in batch.drain(..) {
            if let Some(conn) = self.conns.get_mut(key) {
                if mem::take(&mut conn.in_ready) {
                    self.serve(key, READ_BUDGET);
                }
            }
        }
        self.spare = batch;
    }

    /// Reads from one connection until it is drained, at end of stream, under
    /// backpressure or after `budget` bytes, handing complete frames on after every read.
    ///
    /// Drained means `WouldBlock`, or a read that did not fill the room offered: the
    /// socket held nothing more at that instant, so edge-triggered readiness will fire
    /// again when more arrives, and the read that would only say `WouldBlock` is saved
    /// (a syscall per event at one frame in flight). Not after a hang-up was reported:
    /// then reading goes on to the end of stream.
    pub(super) fn serve(&mut self, key: usize, mut budget: usize) {
        loop {
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            if !conn.wants_read() {
                return;
            }
            if budget == 0 {
                // Still readable: read again next turn, after the others.
                mark(&mut self.ready, &mut conn.in_ready, key);
                return;
            }
            if self.splicer.is_some()
                && conn.phase == Phase::Open
                && conn.last_read >= SPLICE_FROM
                && conn.output.is_empty()
                && conn.input.is_empty()
            {
                match self.splice_echo(key, budget) {
                    Some(n) => budget = budget.saturating_sub(n),
                    None => return,
                }
                continue;
            }
            match conn.read() {
                Ok((0, _)) => {
                    self.on_eof(key);
                    return;
                }
                Ok((n, filled)) => {
                    conn.last_read = n;
                    budget = budget.saturating_sub(n);
                    self.stats.bytes_in += n as u64;
                    let drained = !filled && !conn.hup;
                    if drained {
                        conn.readable = false;
                    }
                    if conn.phase == Phase::Lingering {
                        conn.input.discard(usize::MAX);
                    } else {
                        self.frame(key);
                    }
                    if drained {
                        return;
                    }
                }
                Err(e) if would_block(&e) => {
                    conn.readable = false;
                    return;
                }
                Err(e) if interrupted(&e) => {}
                Err(e) => {
                    self.close(key, &e);
                    return;
                }
            }
        }
    }

    /// Echoes what one connection has sent with `splice`, its bytes never copied into
    /// user space: what the socket would not take back is queued, so later input takes
    /// the copying path behind it. The bytes read, or `None` when reading is over for
    /// now (`WouldBlock`, end of stream, an error).
    fn splice_echo(&mut self, key: usize, budget: usize) -> Option<usize> {
        let (Some(splicer), Some(conn)) = (self.splicer.as_mut(), self.conns.get_mut(key)) else {
            return None;
        };
        let result = splicer.echo(&conn.stream, budget);
        if !splicer.is_usable() {
            warn!("zero-copy echo: its pipe cannot be emptied; copying from now on");
            self.splicer = None;
        }
        match result {
            Ok(pass) if pass.read == 0 => {
                self.on_eof(key);
                None
            }
            Ok(pass) => {
                trace!(
                    "{}: 1 frame(s), {} bytes, spliced; {} bytes queued",
                    conn.peer,
                    pass.read,
                    pass.rest.len()
                );
                conn.last_read = pass.read;
                conn.clock.last_frame = self.now;
                self.stats.frames_in += 1;
                self.stats.bytes_in += pass.read as u64;
                self.stats.bytes_out += pass.written as u64;
                if !pass.rest.is_empty() {
                    self.enqueue_backpressured(key, pass.rest);
                }
                Some(pass.read)
            }
            Err(e) if would_block(&e) => {
                conn.readable = false;
                None
            }
            Err(e) => {
                self.close(key, &e);
                None
            }
        }
    }

    /// The peer has finished sending (end of stream read): nothing more to read; a
    /// lingering connection is done, any other delivers what it completed and closes.
    fn on_eof(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        conn.readable = false;
        conn.eof = true;
        if conn.phase == Phase::Lingering {
            self.close(key, &"closed by peer after our shutdown");
            return;
        }
        if conn.is_mid_frame() {
            debug!(
                "{}: end of stream in the middle of a frame ({} bytes pending)",
                conn.peer,
                conn.input.data().len()
            );
            self.stats.truncated += 1;
        } else {
            debug!("{}: end of stream", conn.peer);
        }
        self.drain(key);
    }

    /// Cuts the connection's input into runs of complete frames and delivers them, then
    /// notes frame boundaries for the idle and frame timers.
    fn frame(&mut self, key: usize) {
        let mut boundary = false;
        let mut completed = false;
        loop {
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            let run = match conn.codec.scan(conn.input.data()) {
                Ok(run) if run.is_incomplete() => break,
                Ok(run) => run,
                Err(error) => {
                    info!(
                        "{}: protocol error: {error}; closing after {} queued bytes",
                        conn.peer,
                        conn.output.len()
                    );
                    self.stats.protocol_errors += 1;
                    self.drain(key);
                    return;
                }
            };
            if let Some(error) = run.oversize {
                debug!("{}: skipping oversized frame: {error}", conn.peer);
                self.stats.oversized += 1;
            }
            boundary |= run.frames > 0 || run.oversize.is_some();
            if run.frames > 0 {
                completed = true;
                trace!("{}: {} frame(s), {} bytes", conn.peer, run.frames, run.len);
                self.stats.frames_in += run.frames as u64;
                self.deliver(key, run.len, run.frames as u64);
            }
            // The frames are consumed now; what follows them is to be discarded.
            match self.conns.get_mut(key) {
                Some(conn) if conn.phase == Phase::Open => conn.input.discard(run.skip),
                _ => return,
            }
        }
        let now = self.now;
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if completed {
            conn.clock.last_frame = now;
        }
        let started = conn.clock.frame_started;
        // A frame's clock runs from its first byte; it stops while we are the ones not
        // reading (backpressure).
        conn.clock.frame_started = if conn.paused || !conn.is_mid_frame() {
            None
        } else if boundary {
            Some(now)
        } else {
            started.or(Some(now))
        };
        if started.is_none() && conn.clock.frame_started.is_some() {
            self.rearm(key);
        }
    }

    /// Hands a run of `count` frames — the first `len` bytes of `from`'s input — to the
    /// audience the mode names. When the sender is the only recipient and nothing is
    /// queued ahead, they are written straight from the read buffer (no `Bytes`, no
    /// refcount, and the buffer's room is reused without zeroing); otherwise, and for
    /// whatever that write leaves, they become one refcounted `Bytes` shared by every
    /// recipient.
    fn deliver(&mut self, from: usize, len: usize, count: u64) {
        let audience = self.config.mode.audience(self.config.echo_self);
        let Some(conn) = self.conns.get_mut(from) else {
            return;
        };
        let mut len = len;
        if audience.sender && !audience.others && conn.output.is_empty() {
            match conn.write_through(len) {
                Ok(written) => {
                    self.stats.bytes_out += written as u64;
                    if written > 0 {
                        conn.clock.last_frame = self.now;
                    }
                    len -= written;
                }
                Err(e) => {
                    self.close(from, &e);
                    return;
                }
            }
            if len == 0 {
                return;
            }
        }
        let frames = conn.input.split(len);
        if audience.others {
            self.fan_out(from, &frames, count);
        }
        if audience.sender {
            self.enqueue_backpressured(from, frames);
        }
    }

    /// Offers frames to every open connection but `from`; one past its output cap is
    /// handled by the slow-consumer policy, so it never slows the sender or the others.
    fn fan_out(&mut self, from: usize, frames: &Bytes, count: u64) {
        let (cap, policy) = (self.config.max_output, self.config.slow_consumer);
        for (key, conn) in self.conns.iter_mut() {
            if key == from || conn.phase != Phase::Open {
                continue;
            }
            let cost = frames.len() + CHUNK_COST;
            match policy.offer(cost, conn.output.backlog(), cap, conn.dropping) {
                Offer::Queue => {
                    conn.output.push(frames.clone());
                    mark(&mut self.dirty, &mut conn.in_dirty, key);
                }
                Offer::Skip => {
                    if !mem::replace(&mut conn.dropping, true) {
                        debug!(
                            "{}: slow consumer: a backlog of {} bytes, skipping frames",
                            conn.peer,
                            conn.output.backlog()
                        );
                    }
                    conn.dropped += count;
                    self.stats.frames_dropped += count;
                }
                Offer::Disconnect => {
                    info!(
                        "{}: slow consumer: a backlog of {} bytes would pass the cap of {cap} bytes; disconnecting",
                        conn.peer,
                        conn.output.backlog()
                    );
                    self.stats.slow_disconnects += 1;
                    mark_closed(conn, key, &mut self.closed, &"slow consumer");
                }
            }
        }
    }

    /// Queues frames on a connection whose own input produced them: past the output
    /// cap, stop reading it until it drains below half (backpressure on the source).
    fn enqueue_backpressured(&mut self, key: usize, frames: Bytes) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        conn.output.push(frames);
        if conn.output.footprint() > self.config.max_output {
            conn.paused = true;
        }
        mark(&mut self.dirty, &mut conn.in_dirty, key);
    }

    /// Flushes every connection on the dirty list.
    pub(super) fn flush_dirty(&mut self) {
        let mut batch = mem::replace(&mut self.dirty, mem::take(&mut self.spare));
        for key in batch.drain(..) {
            if let Some(conn) = self.conns.get_mut(key) {
                if mem::take(&mut conn.in_dirty) {
                    self.flush(key);
                }
            }
        }
        self.spare = batch;
    }

    /// Writes a connection's output until done or `WouldBlock`, then updates what it
    /// waits for: resumes reading below half the cap, finishes a draining connection,
    /// asks for `WRITABLE` only while output remains.
    fn flush(&mut self, key: usize) {
        let now = self.now;
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.phase == Phase::Closed {
            return;
        }
        let written = match conn.flush() {
            Ok(n) => n,
            Err(e) => {
                self.close(key, &e);
                return;
            }
        };
        self.stats.bytes_out += written as u64;
        if written > 0 {
            conn.clock.last_frame = now;
        }
        let stalled = conn.clock.write_stalled;
        conn.clock.write_stalled = match (conn.output.is_empty(), written > 0) {
            (true, _) => None,
            (false, true) => Some(now),
            (false, false) => stalled.or(Some(now)),
        };
        let mut rearm = stalled.is_none() && conn.clock.write_stalled.is_some();
        if conn.dropping && SlowConsumer::resumes(conn.output.backlog(), self.config.max_output) {
            debug!(
                "{}: caught up after {} skipped frames",
                conn.peer, conn.dropped
            );
            conn.dropping = false;
        }
        if conn.paused && conn.output.footprint() <= self.config.max_output / 2 {
            conn.paused = false;
            // The frame clock stopped while we were not reading; a frame left half
            // received starts it again now, whether or not more bytes come. Not on a
            // connection that is closing: nothing more will be read from it.
            if conn.phase == Phase::Open
                && conn.is_mid_frame()
                && conn.clock.frame_started.is_none()
            {
                conn.clock.frame_started = Some(now);
                rearm = true;
            }
            if conn.readable {
                mark(&mut self.ready, &mut conn.in_ready, key);
            }
        }
        if conn.phase == Phase::Draining && conn.output.is_empty() {
            if conn.eof {
                self.close(key, &"done");
                return;
            }
            // The peer may still be sending: shut our side so it sees the end of the
            // stream after everything queued, and read until it closes too.
            if let Err(e) = conn.stream.shutdown(Shutdown::Write) {
                self.close(key, &e);
                return;
            }
            conn.phase = Phase::Lingering;
            let until = now + LINGER;
            conn.clock.linger_until = Some(self.draining_until.map_or(until, |d| d.min(until)));
            conn.readable = true;
            mark(&mut self.ready, &mut conn.in_ready, key);
            rearm = true;
        }
        let interest = conn.interest();
        if interest != conn.registered {
            if let Err(e) = self
                .poll
                .registry()
                .reregister(&mut conn.stream, Token(key), interest)
            {
                self.close(key, &e);
                return;
            }
            conn.registered = interest;
        }
        if rearm {
            self.rearm(key);
        }
    }

    /// Stops reading a connection; it closes once its queued output is written.
    pub(super) fn drain(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.phase == Phase::Open {
            conn.phase = Phase::Draining;
            conn.clock.frame_started = None;
            mark(&mut self.dirty, &mut conn.in_dirty, key);
        }
    }

    /// Marks a connection closed; it is deregistered and dropped before the next poll,
    /// so its key cannot be reused while an event for it may still be in hand.
    pub(super) fn close(&mut self, key: usize, why: &dyn fmt::Display) {
        if let Some(conn) = self.conns.get_mut(key) {
            mark_closed(conn, key, &mut self.closed, why);
        }
    }

    /// Deregisters and drops the connections closed this turn; sweeps their timer
    /// entries once stale ones outnumber the live connections, so the heap stays
    /// O(connections) whatever the churn.
    pub(super) fn reap(&mut self) {
        if self.closed.is_empty() {
            return;
        }
        for key in self.closed.drain(..) {
            if let Some(mut conn) = self.conns.try_remove(key) {
                if let Err(e) = self.poll.registry().deregister(&mut conn.stream) {
                    debug!("{}: deregister: {e}", conn.peer);
                }
            }
        }
        if self.timers.len() > 2 * self.conns.len() + STALE_TIMERS_SLACK {
            let conns = &self.conns;
            self.timers.retain(|when, key, serial| {
                conns
                    .get(key)
                    .is_some_and(|c| c.serial == serial && c.clock.armed == Some(when))
            });
        }
    }
}

/// Marks `conn` closed and lists it for reaping, once.
fn mark_closed(conn: &mut Connection, key: usize, closed: &mut Vec<usize>, why: &dyn fmt::Display) {
    if conn.phase != Phase::Closed {
        if conn.dropped > 0 {
            debug!(
                "{}: closed ({why}); {} frames skipped for it",
                conn.peer, conn.dropped
            );
        } else {
            debug!("{}: closed ({why})", conn.peer);
        }
        conn.phase = Phase::Closed;
        closed.push(key);
    }
}

/// Puts `key` on `list` unless its flag says it is already there.
pub(super) fn mark(list: &mut Vec<usize>, flag: &mut bool, key: usize) {
    if !mem::replace(flag, true) {
        list.push(key);
    }
}
