//! The data path: read a connection, cut its input into runs of frames, hand them to
//! the service, flush output with vectored writes (pulling bodies as it drains), and
//! close in two phases. Timestamps for the timers are noted on the way, a few stores
//! per read.

use std::mem;
use std::time::Duration;

use bytes::Bytes;
use log::{debug, info, trace, warn};
use mio::Token;

use super::connection::{Connection, Pending, Phase};
use super::ctx::{Body, Closed, ConnId, Ctx, Frames};
use super::oplog::Notice;
use super::{interrupted, stream_mut, stream_of, would_block, Core, Entry, Reactor};
use crate::codec::{diagnose, FrameError};
use crate::service::Service;

/// Bytes read from one connection per loop turn before the others get their turn, so a
/// flooding client cannot starve the rest (one read of the largest room).
pub(super) const READ_BUDGET: usize = 256 << 10;
/// A connection whose last read brought at least this many bytes is echoed with
/// `splice` where the service and framing allow it. Below, the copies it saves cost
/// less than the one more call it makes per event: a short splice does not prove the
/// socket drained, as a short read does, so splicing goes on to `WouldBlock`.
pub(super) const SPLICE_FROM: usize = 4096;
/// How long a closing connection may keep sending after our side has shut down, before
/// it is closed anyway.
pub(super) const LINGER: Duration = Duration::from_secs(2);
/// During a shutdown a caught-up connection is closed once nothing has come in or gone
/// out for this long: a peer still sending (its writer about to run again) is not cut
/// between two of its writes.
pub(super) const SHUTDOWN_QUIET: Duration = Duration::from_millis(250);
/// Stale timer entries tolerated beyond twice the live connections before a sweep.
const STALE_TIMERS_SLACK: usize = 1024;

impl<S: Service> Reactor<S> {
    /// Reads every connection on the ready list once, up to its budget.
    pub(super) fn serve_ready(&mut self) {
        let mut batch = mem::replace(&mut self.core.ready, mem::take(&mut self.core.spare));
        for key in batch.drain(..) {
            if let Some(conn) = stream_mut(&mut self.core.entries, key) {
                if mem::take(&mut conn.in_ready) {
                    self.serve(key, READ_BUDGET);
                }
            }
        }
        self.core.spare = batch;
    }

    /// Reads from one connection until it is drained, at end of stream, under
    /// backpressure or after `budget` bytes, handing complete frames on after every read.
    ///
    /// Drained means `WouldBlock`, or a read that did not fill the room offered: the
    /// socket held nothing more at that instant, so edge-triggered readiness will fire
    /// again when more arrives, and the read that would only say `WouldBlock` is saved
    /// (a syscall per event at one frame in flight). Not after a hang-up was reported:
    /// then reading goes on to the end of stream.
    pub(super) fn serve(&mut self, key: usize, budget: usize) {
        let lent = self.core.lend_shared(key);
        self.read_and_frame(key, budget);
        if lent {
            self.core.take_back_shared(key);
        }
        self.core.after_transport(key);
        self.core.settle(key);
    }

    /// [`Reactor::serve`]'s loop.
    fn read_and_frame(&mut self, key: usize, mut budget: usize) {
        loop {
            let core = &mut self.core;
            let Some(conn) = stream_mut(&mut core.entries, key) else {
                return;
            };
            if !conn.wants_read() {
                return;
            }
            if budget == 0 {
                // Still readable: read again next turn, after the others.
                mark(&mut core.ready, &mut conn.in_ready, key);
                return;
            }
            if core.splicer.is_some()
                && conn.phase == Phase::Open
                && conn.last_read >= SPLICE_FROM
                && conn.is_flushed()
                && conn.input.is_empty()
            {
                match core.splice_echo(key, budget) {
                    Some(n) => budget = budget.saturating_sub(n),
                    None => return,
                }
                continue;
            }
            match conn.read() {
                Ok((0, _)) => {
                    core.on_eof(key);
                    return;
                }
                Ok((n, filled)) => {
                    conn.last_read = n;
                    budget = budget.saturating_sub(n);
                    core.stats.bytes_in += n as u64;
                    conn.traffic.bytes_in += n as u64;
                    let drained = !filled && !conn.hup && conn.stream.short_read_drains();
                    if drained {
                        conn.readable = false;
                    }
                    if conn.phase == Phase::Lingering {
                        conn.unanswered += conn.input.data().len() as u64;
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
                    if conn.stream.is_tls() && e.kind() == std::io::ErrorKind::InvalidData {
                        core.stats.tls_errors += 1;
                        debug!("{}: TLS: {e}", conn.peer);
                    }
                    core.close(key, Closed::Io(e.kind()));
                    return;
                }
            }
        }
    }

    /// Cuts the connection's input into runs of complete frames and hands them to the
    /// service, then notes frame boundaries for the idle and frame timers.
    fn frame(&mut self, key: usize) {
        let mut boundary = false;
        let mut completed = false;
        loop {
            let Reactor { core, service } = self;
            let Some(conn) = stream_mut(&mut core.entries, key) else {
                return;
            };
            let run = match conn.codec.scan(conn.input.data()) {
                Ok(run) if run.is_incomplete() => break,
                Ok(run) => run,
                Err(error) => {
                    core.on_protocol_error(key, error);
                    return;
                }
            };
            if let Some(error) = run.oversize {
                debug!("{}: skipping oversized frame: {error}", conn.peer);
                core.stats.oversize_skipped += 1;
            }
            boundary |= run.frames > 0 || run.oversize.is_some();
            if run.frames > 0 {
                completed = true;
                trace!("{}: {} frame(s), {} bytes", conn.peer, run.frames, run.len);
                core.stats.frames_in += run.frames as u64;
                conn.traffic.frames_in += run.frames as u64;
                let id = ConnId::new(key, conn.serial);
                core.untaken = Some((key, run.len));
                let frames = Frames {
                    key,
                    len: run.len,
                    count: run.frames,
                };
                service.on_frames(&mut Ctx::reactor(core), id, frames);
                core.after_frames(key);
            }
            // The frames are consumed now; what follows them is to be discarded.
            match stream_mut(&mut core.entries, key) {
                Some(conn) if conn.phase == Phase::Open => conn.input.discard(run.skip),
                _ => return,
            }
        }
        let core = &mut self.core;
        let now = core.now;
        let Some(conn) = stream_mut(&mut core.entries, key) else {
            return;
        };
        if completed {
            conn.clock.last_frame = now;
        }
        let started = conn.clock.frame_started;
        // A frame's clock runs from its first byte; it stops while we are the ones not
        // reading (backpressure).
        conn.clock.frame_started = if conn.paused || conn.held || !conn.is_mid_frame() {
            None
        } else if boundary {
            Some(now)
        } else {
            started.or(Some(now))
        };
        if started.is_none() && conn.clock.frame_started.is_some() {
            core.rearm(key);
        }
    }

    /// Flushes every connection on the dirty list, then tells the service which ones
    /// drained below the low-water mark and whose bodies ended.
    pub(super) fn flush_dirty(&mut self) {
        let core = &mut self.core;
        let mut batch = mem::replace(&mut core.dirty, mem::take(&mut core.spare));
        for key in batch.drain(..) {
            if let Some(conn) = stream_mut(&mut core.entries, key) {
                if mem::take(&mut conn.in_dirty) {
                    core.flush(key);
                }
            }
        }
        core.spare = batch;
        let Reactor { core, service } = self;
        while let Some(id) = core.drained.pop() {
            service.on_drain(&mut Ctx::reactor(core), id);
        }
        // In the order they ended; what the service sends now is flushed next turn.
        for id in mem::take(&mut core.bodies_done) {
            if core.stream(id).is_some() {
                service.on_body_done(&mut Ctx::reactor(core), id);
            }
        }
    }

    /// Tells the service about the connections closed this turn, then deregisters and
    /// drops them; sweeps their timer entries once stale ones outnumber the live
    /// connections, so the heap stays O(connections) whatever the churn.
    pub(super) fn reap(&mut self) {
        while !self.core.closed.is_empty() {
            let closed = mem::take(&mut self.core.closed);
            for (key, why) in &closed {
                let Reactor { core, service } = self;
                if let Some(conn) = stream_mut(&mut core.entries, *key) {
                    let id = ConnId::new(*key, conn.serial);
                    service.on_close(&mut Ctx::reactor(core), id, why);
                }
            }
            for (key, why) in closed {
                if let Some(Entry::Stream(mut conn)) = self.core.entries.try_remove(key) {
                    self.core.open -= 1;
                    if conn.leaves_unanswered(why != Closed::Done) {
                        let unread =
                            conn.unanswered + conn.input.data().len() as u64 + conn.unread();
                        self.core.stats.resets += 1;
                        self.core.stats.unanswered_bytes += unread;
                        debug!(
                            "{}: reset: {unread} bytes received were never answered, {} queued bytes never written",
                            conn.peer,
                            conn.output.len()
                        );
                        if let Err(e) = conn.reset_on_close() {
                            debug!("{}: cannot reset: {e}", conn.peer);
                        }
                    }
                    if let Err(e) = self.core.poll.registry().deregister(&mut conn.stream) {
                        debug!("{}: deregister: {e}", conn.peer);
                    }
                }
            }
        }
        let core = &mut self.core;
        if core.timers.len() > 2 * core.open + STALE_TIMERS_SLACK {
            let entries = &core.entries;
            core.timers.retain(|when, key, serial| {
                matches!(entries.get(key), Some(Entry::Stream(c)) if c.serial == serial && c.clock.armed == Some(when))
            });
        }
    }
}

impl Core {
    /// After reading connection `key`: a TLS handshake that completed is noted (its
    /// deadline dropped), and records the transport still holds (handshake messages
    /// the socket did not take, echoes written through) get the connection flushed, so
    /// it asks for `WRITABLE`.
    fn after_transport(&mut self, key: usize) {
        let Some(conn) = stream_mut(&mut self.entries, key) else {
            return;
        };
        if conn.clock.handshake_until.is_some() && !conn.stream.is_handshaking() {
            conn.clock.handshake_until = None;
            self.stats.tls_handshakes += 1;
            #[cfg(feature = "tls")]
            if let super::Stream::Tls(tls) = &conn.stream {
                debug!("{}: TLS handshake done ({})", conn.peer, tls.describe());
            }
        }
        if conn.stream.wants_write() {
            mark(&mut self.dirty, &mut conn.in_dirty, key);
        }
    }

    /// Lends the shared read buffer to connection `key` if it holds little: true if
    /// it did, and then [`Core::take_back_shared`] must follow before any other
    /// connection is read.
    fn lend_shared(&mut self, key: usize) -> bool {
        let Some(conn) = stream_mut(&mut self.entries, key) else {
            return false;
        };
        if !conn.wants_read() || !conn.input.wants_shared() {
            return false;
        }
        conn.input.lend(&mut self.shared);
        true
    }

    /// Takes the shared read buffer back from connection `key`, which keeps only its
    /// leftover bytes.
    fn take_back_shared(&mut self, key: usize) {
        if let Some(conn) = stream_mut(&mut self.entries, key) {
            conn.input.give_back(&mut self.shared);
        }
    }

    /// Echoes what one connection has sent with `splice`, its bytes never copied into
    /// user space: what the socket would not take back is queued, so later input takes
    /// the copying path behind it. The bytes read, or `None` when reading is over for
    /// now (`WouldBlock`, end of stream, an error).
    fn splice_echo(&mut self, key: usize, budget: usize) -> Option<usize> {
        let (Some(splicer), Some(conn)) =
            (self.splicer.as_mut(), stream_mut(&mut self.entries, key))
        else {
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
                self.stats.frames_out += 1;
                self.stats.bytes_in += pass.read as u64;
                self.stats.bytes_out += pass.written as u64;
                let traffic = &mut conn.traffic;
                traffic.frames_in += 1;
                traffic.frames_out += 1;
                traffic.bytes_in += pass.read as u64;
                traffic.bytes_out += pass.written as u64;
                if !pass.rest.is_empty() {
                    self.enqueue(key, pass.rest);
                    self.after_frames(key);
                }
                Some(pass.read)
            }
            Err(e) if would_block(&e) => {
                conn.readable = false;
                None
            }
            Err(e) => {
                self.close(key, Closed::Io(e.kind()));
                None
            }
        }
    }

    /// The peer has finished sending (end of stream read): nothing more to read; a
    /// lingering connection is done, any other delivers what it completed and closes.
    fn on_eof(&mut self, key: usize) {
        let Some(conn) = stream_mut(&mut self.entries, key) else {
            return;
        };
        conn.readable = false;
        conn.eof = true;
        if conn.phase == Phase::Lingering {
            self.close(key, Closed::Done);
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

    /// After the service has had a run from `key`: a run it left is discarded, and a
    /// sender whose own output passed the cap is read no further until it drains
    /// below half (backpressure on the source).
    fn after_frames(&mut self, key: usize) {
        let untaken = self.untaken.take();
        let cap = self.config.max_output;
        let Some(conn) = stream_mut(&mut self.entries, key) else {
            return;
        };
        if let Some((_, len)) = untaken.filter(|&(k, _)| k == key) {
            conn.input.discard(len);
        }
        if conn.output.footprint() > cap {
            conn.paused = true;
        }
    }

    /// The untaken run, if `frames` is it: its length.
    fn claim(&mut self, frames: &Frames) -> Option<usize> {
        match self.untaken {
            Some((key, len)) if key == frames.key && len == frames.len => {
                self.untaken = None;
                Some(len)
            }
            _ => None,
        }
    }

    /// Sends a run back to its sender: straight from the read buffer when nothing is
    /// queued ahead (no `Bytes`, no refcount, and the buffer's room is reused without
    /// zeroing), the rest as one `Bytes`.
    pub(super) fn echo(&mut self, frames: Frames) {
        let Some(mut len) = self.claim(&frames) else {
            return;
        };
        let key = frames.key;
        let Some(conn) = stream_mut(&mut self.entries, key) else {
            return;
        };
        self.stats.frames_out += frames.count as u64;
        conn.traffic.frames_out += frames.count as u64;
        if conn.is_flushed() {
            match conn.write_through(len) {
                Ok(written) => {
                    self.stats.bytes_out += written as u64;
                    conn.traffic.bytes_out += written as u64;
                    if written > 0 {
                        conn.clock.last_frame = self.now;
                    }
                    len -= written;
                }
                Err(e) => {
                    self.close(key, Closed::Io(e.kind()));
                    return;
                }
            }
            if len == 0 {
                return;
            }
        }
        let rest = conn.input.split(len);
        self.enqueue(key, rest);
    }

    /// Takes a run out of the read buffer as one `Bytes`.
    pub(super) fn take(&mut self, frames: Frames) -> Bytes {
        let Some(len) = self.claim(&frames) else {
            return Bytes::new();
        };
        stream_mut(&mut self.entries, frames.key).map_or_else(Bytes::new, |c| c.input.split(len))
    }

    /// Queues `bytes`, holding `frames` frames, for an open connection `id`; false if
    /// it is not open.
    pub(super) fn send(&mut self, id: ConnId, bytes: Bytes, frames: u64) -> bool {
        match stream_of(&mut self.entries, id) {
            Some(conn) if conn.phase == Phase::Open => conn.traffic.frames_out += frames,
            _ => return false,
        }
        self.stats.frames_out += frames;
        self.enqueue(id.key(), bytes);
        true
    }

    /// Queues a body for an open connection `id`; false if it is not open.
    pub(super) fn send_body(&mut self, id: ConnId, body: Box<dyn Body>) -> bool {
        let Some(conn) = stream_of(&mut self.entries, id).filter(|c| c.phase == Phase::Open) else {
            return false;
        };
        conn.bodies.push_back(Pending::Body(body));
        mark(&mut self.dirty, &mut conn.in_dirty, id.key());
        true
    }

    /// Puts `bytes` after everything queued on connection `key` (behind its bodies, if
    /// it has any, so the order of sends holds) and lists it for flushing.
    fn enqueue(&mut self, key: usize, bytes: Bytes) {
        let low_water = self.config.max_output / 2;
        let Some(conn) = stream_mut(&mut self.entries, key) else {
            return;
        };
        if conn.bodies.is_empty() {
            conn.output.push(bytes);
        } else {
            conn.bodies.push_back(Pending::Bytes(bytes));
        }
        conn.above_low_water |= conn.output.footprint() > low_water;
        mark(&mut self.dirty, &mut conn.in_dirty, key);
    }

    /// Reads `id` again after the service paused it.
    pub(super) fn resume(&mut self, id: ConnId) {
        let key = id.key();
        let Some(conn) = stream_of(&mut self.entries, id) else {
            return;
        };
        if !mem::replace(&mut conn.held, false) {
            return;
        }
        if conn.readable {
            mark(&mut self.ready, &mut conn.in_ready, key);
        }
    }

    /// Writes a connection's output until done or `WouldBlock`, pulling its bodies as
    /// room appears, then updates what it waits for: resumes reading below half the
    /// cap, finishes a draining connection, asks for `WRITABLE` only while output
    /// remains.
    fn flush(&mut self, key: usize) {
        let now = self.now;
        let (cap, low_water) = (self.config.max_output, self.config.max_output / 2);
        let Some(conn) = stream_mut(&mut self.entries, key) else {
            return;
        };
        if conn.phase == Phase::Closed {
            return;
        }
        let mut written = 0;
        loop {
            match pull_bodies(conn, low_water) {
                Ok(done) => {
                    let id = ConnId::new(key, conn.serial);
                    self.bodies_done.extend(std::iter::repeat_n(id, done));
                }
                Err(e) => {
                    warn!("{}: a body failed: {e}; closing", conn.peer);
                    self.close(key, Closed::Io(e.kind()));
                    return;
                }
            }
            match conn.flush() {
                Ok(n) => written += n,
                Err(e) => {
                    self.close(key, Closed::Io(e.kind()));
                    return;
                }
            }
            // Written out with a body still to come: pull more and write again.
            if !conn.output.is_empty() || conn.bodies.is_empty() {
                break;
            }
        }
        self.stats.bytes_out += written as u64;
        conn.traffic.bytes_out += written as u64;
        if written > 0 {
            conn.clock.last_frame = now;
        }
        if !conn.output.is_empty() {
            let queued = conn.output.len() as u64;
            self.stats.queued_high_water = self.stats.queued_high_water.max(queued);
        }
        let stalled = conn.clock.write_stalled;
        conn.clock.write_stalled = match (conn.is_flushed(), written > 0) {
            (true, _) => None,
            (false, true) => Some(now),
            (false, false) => stalled.or(Some(now)),
        };
        let mut rearm = stalled.is_none() && conn.clock.write_stalled.is_some();
        if conn.above_low_water && conn.output.footprint() <= low_water {
            conn.above_low_water = false;
            self.drained.push(ConnId::new(key, conn.serial));
        }
        if conn.paused && conn.output.footprint() <= cap / 2 {
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
        if conn.phase == Phase::Draining && conn.is_flushed() && conn.eof {
            // The peer has finished and has everything: a TLS peer is told so with
            // close_notify before the socket closes.
            if !conn.stream.is_tls() {
                self.close(key, Closed::Done);
                return;
            }
            if let Err(e) = conn.stream.shutdown_write() {
                self.close(key, Closed::Io(e.kind()));
                return;
            }
            if !conn.stream.wants_write() {
                self.close(key, Closed::Done);
                return;
            }
        }
        if conn.phase == Phase::Draining && conn.is_flushed() {
            // The peer may still be sending: shut our side so it sees the end of the
            // stream after everything queued, and read until it closes too.
            if let Err(e) = conn.stream.shutdown_write() {
                self.close(key, Closed::Io(e.kind()));
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
                self.close(key, Closed::Io(e.kind()));
                return;
            }
            conn.registered = interest;
        }
        if rearm {
            self.rearm(key);
        }
        self.settle(key);
    }

    /// Stops reading a connection; it closes once its queued output is written.
    pub(super) fn drain(&mut self, key: usize) {
        let Some(conn) = stream_mut(&mut self.entries, key) else {
            return;
        };
        if conn.phase == Phase::Open {
            conn.phase = Phase::Draining;
            conn.clock.frame_started = None;
            // What is left is no complete frame: a partial one, or what follows a
            // protocol error.
            conn.input.discard(usize::MAX);
            mark(&mut self.dirty, &mut conn.in_dirty, key);
        }
    }

    /// During a shutdown: an open connection that has nothing more to read just now,
    /// no frame half received and everything answered and written starts to close
    /// (after its goodbye). Until then it is served as usual, so every frame it sent
    /// before the shutdown is answered.
    pub(super) fn settle(&mut self, key: usize) {
        if self.draining_until.is_none() {
            return;
        }
        let Some(conn) = stream_mut(&mut self.entries, key) else {
            return;
        };
        if conn.phase != Phase::Open || !conn.is_caught_up() {
            return;
        }
        if conn.clock.last_frame + SHUTDOWN_QUIET <= self.now {
            self.goodbye(key, "shutdown");
            self.drain(key);
        } else {
            self.rearm(key); // `Expiry::Quiet` brings it back here
        }
    }

    /// Connection `key` broke the framing with `error`: counted, logged with what the
    /// rejected bytes suggest (at `info` once a second, the rest folded; each at
    /// `debug`), told why with `--goodbye`, and closed once its output is flushed.
    fn on_protocol_error(&mut self, key: usize, error: FrameError) {
        let Some(conn) = stream_mut(&mut self.entries, key) else {
            return;
        };
        self.stats.oversize += 1;
        let head = conn.input.data();
        let head = head.get(..diagnose::SAMPLE).unwrap_or(head);
        let hint = diagnose::diagnose(self.config.framing, head, self.config.max_frame)
            .map(|hint| format!("; {hint}"))
            .unwrap_or_default();
        let line = format!(
            "{}: protocol error: {error}{hint}; closing after {} queued bytes",
            conn.peer,
            conn.output.len()
        );
        if self.notices.admit(Notice::ProtocolError, self.now) {
            info!("{line}");
        } else {
            debug!("{line}");
        }
        self.goodbye(key, &format!("protocol error: {error}"));
        self.drain(key);
    }

    /// With `--goodbye`: queues one last frame on connection `key`, in its framing,
    /// saying why it is being closed (`framecast: closing: idle timeout`).
    pub(super) fn goodbye(&mut self, key: usize, why: &str) {
        if !self.config.goodbye {
            return;
        }
        let Some(conn) = stream_mut(&mut self.entries, key) else {
            return;
        };
        if conn.phase != Phase::Open || conn.outbound {
            return;
        }
        if let Some(frame) = goodbye_frame(&conn.codec, why) {
            conn.traffic.frames_out += 1;
            self.stats.frames_out += 1;
            self.enqueue(key, frame);
        }
    }

    /// Closes connection `key` for a policy reason: with a goodbye (its backlog
    /// dropped so the goodbye is the next thing it reads), else at once as `closed`.
    pub(super) fn policy_close(&mut self, key: usize, why: &str, closed: Closed) {
        if !self.config.goodbye {
            self.close(key, closed);
            return;
        }
        if let Some(conn) = stream_mut(&mut self.entries, key) {
            conn.output.keep_front();
            conn.bodies.clear();
        }
        self.goodbye(key, why);
        self.drain(key);
    }

    /// Marks a connection closed; the service is told and it is deregistered and
    /// dropped before the next poll, so its key cannot be reused while an event for it
    /// may still be in hand.
    pub(super) fn close(&mut self, key: usize, why: Closed) {
        if let Some(conn) = stream_mut(&mut self.entries, key) {
            mark_closed(conn, key, &mut self.closed, why);
        }
    }
}

/// The goodbye frame for `why` in `codec`'s framing: `framecast: closing: WHY`. Fixed
/// frames get the text cut or padded with spaces to their size; a raw stream gets it
/// as a line.
pub(super) fn goodbye_frame(codec: &crate::codec::Codec, why: &str) -> Option<Bytes> {
    use crate::codec::{Codec, Encoder};
    let text = format!("framecast: closing: {why}");
    let mut payload = text.into_bytes();
    match codec {
        Codec::Fixed(c) => payload.resize(c.size(), b' '),
        Codec::Raw(_) => payload.push(b'\n'),
        Codec::Line(_) => payload.retain(|&b| b != b'\n'),
        Codec::Length(_) => {}
    }
    let mut out = bytes::BytesMut::new();
    codec.encode(&payload, &mut out).ok()?;
    Some(out.freeze())
}

/// Pulls chunks from a connection's bodies while its output is at or under
/// `low_water`, so a body costs at most about the cap whatever its size. Returns how
/// many of the service's bodies gave their last chunk.
fn pull_bodies(conn: &mut Connection, low_water: usize) -> std::io::Result<usize> {
    let room = low_water.max(super::read_buf::MIN_CHUNK);
    let mut done = 0;
    while conn.output.footprint() <= low_water {
        match conn.bodies.front_mut() {
            None => break,
            Some(Pending::Body(body)) => match body.next_chunk(room)? {
                Some(chunk) => conn.output.push(chunk),
                None => {
                    conn.bodies.pop_front();
                    done += 1;
                }
            },
            Some(Pending::Bytes(_)) => {
                if let Some(Pending::Bytes(bytes)) = conn.bodies.pop_front() {
                    conn.output.push(bytes);
                }
            }
        }
    }
    Ok(done)
}

/// Marks `conn` closed and lists it for reaping, once.
fn mark_closed(conn: &mut Connection, key: usize, closed: &mut Vec<(usize, Closed)>, why: Closed) {
    if conn.phase != Phase::Closed {
        debug!("{}: closed ({why})", conn.peer);
        conn.phase = Phase::Closed;
        closed.push((key, why));
    }
}

/// Puts `key` on `list` unless its flag says it is already there.
pub(super) fn mark(list: &mut Vec<usize>, flag: &mut bool, key: usize) {
    if !mem::replace(flag, true) {
        list.push(key);
    }
}
