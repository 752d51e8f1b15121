//! One bench connection: its socket, its role, what it has sent, what it expects back,
//! the partial frame left over from the last read and the output not yet written. It
//! does the connection's I/O and verification; *when* to send is the worker's call.

use std::io::{self, Read, Write};

use bytes::{Buf, BytesMut};
use framecast::reactor::Stream;
use mio::{Interest, Registry, Token};

use super::payload::Header;
use super::stats::Stats;
use super::track::SeqWindow;
use super::worker::Plan;
use framecast::codec::{Codec, Decoded, Decoder, Encoder};

/// A partial frame longer than this is read into the connection's own buffer rather
/// than copied in front of the thread's shared read buffer on every read: copying a
/// few hundred bytes is cheaper than a buffer per connection, copying megabytes is not.
const INLINE_PENDING: usize = 16 << 10;
/// Room added to a connection's own buffer for each read of a large frame.
const PENDING_READ: usize = 64 << 10;

/// What a connection does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Sends frames and expects each back.
    Echo,
    /// Sends frames for the others (and receives theirs, as broadcast delivers them).
    Publisher,
    /// Only receives.
    Subscriber,
}

impl Role {
    /// True if the connection sends frames.
    pub fn sends(self) -> bool {
        self != Role::Subscriber
    }
}

/// How a read ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadEnd {
    /// The socket is drained (a short read or `WouldBlock`).
    Drained,
    /// The read budget ran out with the socket still readable.
    Budget,
    /// The connection is finished; the reason says why, for the report.
    Closed(Closed),
}

/// Why a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Closed {
    /// The server closed it (end of stream or reset).
    ByServer(String),
    /// An I/O error.
    Io(String),
    /// The stream broke the framing; nothing after that point can be trusted.
    Framing(String),
}

/// One connection.
pub struct Conn {
    /// The socket, non-blocking, `TCP_NODELAY`.
    pub stream: Stream,
    /// Its token: its index in the worker's connection list.
    pub token: Token,
    /// Its id in payloads: unique across the run's threads.
    pub id: u32,
    /// What it does.
    pub role: Role,
    /// False once closed; a closed connection is deregistered and never touched again.
    pub open: bool,
    /// Cuts what comes back into frames (for `raw`, fixed-size messages).
    decoder: Codec,
    /// The partial frame left after the last read.
    pending: Vec<u8>,
    /// Frames encoded and not yet written.
    out: BytesMut,
    /// Whether the socket is registered for `WRITABLE` (only while output is pending).
    wants_write: bool,
    /// The poller reported the peer's end of stream (or an error): no further event
    /// will come, so a short read proves nothing and reading goes on until the socket
    /// says end of stream, `WouldBlock` or error.
    read_closed: bool,
    /// Frames generated so far: the next sequence number.
    pub sent: u64,
    /// Echo: this connection's own frames coming back. Broadcast: unused.
    echo: SeqWindow,
    /// Broadcast: each publisher's frames, indexed by publisher id (from 0 for a
    /// subscriber; from the first one seen for a publisher).
    pub sources: Vec<SeqWindow>,
    /// Corrupted frames not yet matched with the gap they leave in a sequence.
    unexplained: u64,
    /// Raw and fixed framings: a message failed verification, so the stream may have
    /// lost its alignment; the next message is searched for byte by byte.
    realigning: bool,
    /// State of the size generator (xorshift64), seeded per connection.
    rng: u64,
    /// Open loop: this connection's schedule offset and interval, in nanoseconds.
    pub schedule: (f64, f64),
}

impl Conn {
    /// A connection with id `id` and role `role` over a connected `stream`.
    pub fn new(stream: Stream, token: Token, id: u32, role: Role, plan: &Plan) -> Conn {
        let sources = match role {
            Role::Echo => Vec::new(),
            // Subscribers connect before any publisher, so a server that accepts in
            // order (framecast does, from one queue, and delivers to a connection from
            // the moment it accepts it) delivers them every frame: each stream starts
            // at 0, and frames lost at its very start count.
            Role::Subscriber => vec![SeqWindow::starting_at(0); plan.publishers],
            // A publisher may be accepted after another publisher's first frames went
            // out, and gets its own back only with `--echo-self`: it takes the first
            // number it sees as the start.
            Role::Publisher => vec![SeqWindow::unstarted(); plan.publishers],
        };
        Conn {
            stream,
            token,
            id,
            role,
            open: true,
            decoder: plan.decoder.clone(),
            pending: Vec::new(),
            out: BytesMut::new(),
            wants_write: false,
            read_closed: false,
            sent: 0,
            echo: SeqWindow::starting_at(0),
            sources,
            unexplained: 0,
            realigning: false,
            rng: plan.seed ^ (u64::from(id) + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1,
            schedule: (0.0, 0.0),
        }
    }

    /// Echo frames sent and neither answered nor accounted for as lost or corrupted.
    pub fn in_flight(&self) -> u64 {
        let answered = self.echo.next().unwrap_or(0) + self.unexplained;
        self.sent.saturating_sub(answered)
    }

    /// Bytes encoded and not yet written.
    pub fn queued(&self) -> usize {
        self.out.len()
    }

    /// Encodes the next frame, stamped `stamp` ns since the epoch, into the
    /// connection's output. Returns its wire length.
    pub fn push_frame(&mut self, plan: &Plan, stamp: u64) -> usize {
        let mut out = std::mem::take(&mut self.out);
        let n = self.encode_frame(plan, stamp, &mut out);
        self.out = out;
        n
    }

    /// Encodes the next frame, stamped `stamp` ns since the epoch, at the end of
    /// `dst` (the connection's output, or the thread's staging buffer). Returns its
    /// wire length.
    pub fn encode_frame(&mut self, plan: &Plan, stamp: u64, dst: &mut BytesMut) -> usize {
        let len = self.next_size(plan);
        let start = dst.len();
        let template = plan.pattern.template(self.sent, len);
        if plan.encoder.encode(template, dst).is_err() {
            // Sizes are validated against the framing before the run; a payload the
            // encoder refuses is skipped rather than sent wrong.
            dst.truncate(start);
            return 0;
        }
        let frame = &dst[start..];
        let at = offset_of(plan.encoder.payload(frame), frame);
        let header = Header {
            conn: self.id,
            len: len as u32,
            seq: self.sent,
            stamp,
        };
        plan.pattern
            .write(&mut dst[start + at..start + at + len], &header);
        self.sent += 1;
        dst.len() - start
    }

    /// Writes `staged` frames straight from the thread's staging buffer, keeping what
    /// the socket does not take in the connection's output (which must be empty, so
    /// order is kept).
    ///
    /// # Errors
    /// The write error; the caller closes the connection.
    pub fn send_staged(&mut self, registry: &Registry, staged: &[u8]) -> io::Result<()> {
        debug_assert!(self.out.is_empty());
        let mut rest = staged;
        while !rest.is_empty() {
            match self.stream.write(rest) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    rest = &rest[n..];
                    if !rest.is_empty() {
                        break; // the send buffer is full
                    }
                }
                Err(e) if would_block(&e) => break,
                Err(e) if interrupted(&e) => {}
                Err(e) => return Err(e),
            }
        }
        if !rest.is_empty() {
            self.out.extend_from_slice(rest);
            self.flush(registry)?;
        }
        Ok(())
    }

    /// The next payload size.
    fn next_size(&mut self, plan: &Plan) -> usize {
        let span = (plan.size.max - plan.size.min) as u64;
        if span == 0 {
            return plan.size.min;
        }
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        plan.size.min + (self.rng % (span + 1)) as usize
    }

    /// Writes queued output until it is all written or the socket is full, then keeps
    /// `WRITABLE` interest exactly while output remains.
    ///
    /// # Errors
    /// The write error; the caller closes the connection.
    pub fn flush(&mut self, registry: &Registry) -> io::Result<()> {
        while !self.out.is_empty() {
            match self.stream.write(&self.out) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.out.advance(n);
                    if !self.out.is_empty() {
                        // A short write means the send buffer is full: wait for WRITABLE
                        // rather than spend a syscall on the WouldBlock.
                        break;
                    }
                }
                Err(e) if would_block(&e) => break,
                Err(e) if interrupted(&e) => {}
                Err(e) => return Err(e),
            }
        }
        // TLS: records the socket did not take yet are output too.
        self.stream.send_pending()?;
        let wants_write = !self.out.is_empty() || self.stream.wants_write();
        if wants_write != self.wants_write {
            let interest = if wants_write {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            registry.reregister(&mut self.stream, self.token, interest)?;
            self.wants_write = wants_write;
        }
        Ok(())
    }

    /// Notes that the poller reported the peer's end of stream or an error on this
    /// socket: the next reads go on until the socket itself reports it.
    pub fn mark_read_closed(&mut self) {
        self.read_closed = true;
    }

    /// Reads until drained, closed or `budget` bytes, verifying every complete frame.
    /// `shared` is the thread's read buffer; `clock` gives the time of each read in ns
    /// since the epoch (one clock read per read call, not per frame).
    pub fn read(
        &mut self,
        shared: &mut [u8],
        plan: &Plan,
        stats: &mut Stats,
        measuring: bool,
        budget: usize,
        clock: &mut dyn FnMut() -> u64,
    ) -> ReadEnd {
        let mut budget = budget;
        loop {
            let result = if self.pending.len() > INLINE_PENDING {
                self.read_large(plan, stats, measuring, clock)
            } else {
                self.read_shared(shared, plan, stats, measuring, clock)
            };
            match result {
                Ok((0, _)) => {
                    let why = if self.pending.is_empty() {
                        "end of stream".to_owned()
                    } else {
                        format!(
                            "end of stream in the middle of a frame ({} bytes pending)",
                            self.pending.len()
                        )
                    };
                    return ReadEnd::Closed(Closed::ByServer(why));
                }
                Ok((n, room))
                    if n < room && !self.read_closed && self.stream.short_read_drains() =>
                {
                    // Edge-triggered readiness: a short read emptied the socket, and
                    // anything arriving later raises a new event (tokio relies on the
                    // same), so the WouldBlock read is not worth a syscall. Not so when
                    // the FIN or reset came with this event: it raises no other.
                    return ReadEnd::Drained;
                }
                Ok((n, _)) => {
                    budget = budget.saturating_sub(n);
                    if budget == 0 {
                        return ReadEnd::Budget;
                    }
                }
                Err(ReadError::Closed(closed)) => return ReadEnd::Closed(closed),
                Err(ReadError::Io(e)) if would_block(&e) => return ReadEnd::Drained,
                Err(ReadError::Io(e)) if e.kind() == io::ErrorKind::ConnectionReset => {
                    return ReadEnd::Closed(Closed::ByServer(e.to_string()))
                }
                Err(ReadError::Io(e)) => return ReadEnd::Closed(Closed::Io(e.to_string())),
            }
        }
    }

    /// One read into the thread's buffer, behind the (small) pending partial frame;
    /// returns the bytes read and the room there was.
    fn read_shared(
        &mut self,
        shared: &mut [u8],
        plan: &Plan,
        stats: &mut Stats,
        measuring: bool,
        clock: &mut dyn FnMut() -> u64,
    ) -> Result<(usize, usize), ReadError> {
        let kept = self.pending.len();
        let room = shared.len() - kept;
        shared[..kept].copy_from_slice(&self.pending);
        let n = read_some(&mut self.stream, &mut shared[kept..])?;
        if n > 0 {
            let data = &shared[..kept + n];
            let used = self.frames(data, plan, stats, measuring, clock())?;
            self.pending.clear();
            self.pending.extend_from_slice(&data[used..]);
        }
        Ok((n, room))
    }

    /// One read into the connection's own buffer, for a large partial frame.
    fn read_large(
        &mut self,
        plan: &Plan,
        stats: &mut Stats,
        measuring: bool,
        clock: &mut dyn FnMut() -> u64,
    ) -> Result<(usize, usize), ReadError> {
        let kept = self.pending.len();
        self.pending.resize(kept + PENDING_READ, 0);
        let read = read_some(&mut self.stream, &mut self.pending[kept..]);
        self.pending.truncate(kept + *read.as_ref().unwrap_or(&0));
        let n = read?;
        if n > 0 {
            let pending = std::mem::take(&mut self.pending);
            let used = self.frames(&pending, plan, stats, measuring, clock());
            self.pending = pending;
            let used = used?;
            self.pending.copy_within(used.., 0);
            self.pending.truncate(self.pending.len() - used);
        }
        Ok((n, PENDING_READ))
    }

    /// Verifies every complete frame at the front of `data`; returns the bytes used.
    fn frames(
        &mut self,
        data: &[u8],
        plan: &Plan,
        stats: &mut Stats,
        measuring: bool,
        now: u64,
    ) -> Result<usize, ReadError> {
        let mut used = 0;
        let mut frames = 0u64;
        let mut all = 0u64;
        let mut run = (0u64, 0u64);
        let mut broken = None;
        // Latency counts by when a frame was (meant to be) sent, not when it came back:
        // a reply held up past the end of the window still counts, in the drain too,
        // or a stall at the end would vanish from the percentiles.
        let window = plan.stamp_window();
        while used < data.len() {
            if let (true, Some(size)) = (self.realigning, plan.realign) {
                let found = find_payload(&data[used..], size, plan);
                let skip = found.unwrap_or_else(|skip| skip);
                used += skip;
                stats.integrity.skipped_bytes += skip as u64;
                if found.is_err() {
                    break;
                }
                self.realigning = false;
            }
            let rest = &data[used..];
            let n = match self.decoder.decode(rest) {
                Ok(Decoded::Frame(n)) => n,
                Ok(Decoded::Incomplete) => break,
                // The decoder closes on oversize, so these two are one case.
                Ok(Decoded::Skip(_) | Decoded::Oversize(..)) => {
                    broken = Some(Closed::Framing("oversized frame".into()));
                    break;
                }
                Err(e) => {
                    broken = Some(Closed::Framing(e.to_string()));
                    break;
                }
            };
            let frame = &rest[..n];
            let Some(stamp) = self.verify(frame, plan, stats) else {
                // When realigning, the next message may start anywhere within this
                // one: the search passes over it byte by byte.
                if !self.realigning {
                    used += n;
                }
                continue;
            };
            used += n;
            all += 1;
            if measuring {
                frames += 1;
                stats.bytes_received += n as u64;
            }
            if window.contains(&stamp) {
                // Frames sent in one batch share a stamp, and those read in one batch
                // share `now`: record runs of equal latencies at once.
                let latency = now.saturating_sub(stamp).max(1);
                if latency != run.0 && run.1 > 0 {
                    stats.latency.saturating_record_n(run.0, run.1);
                    run.1 = 0;
                }
                run = (latency, run.1 + 1);
            }
        }
        if run.1 > 0 {
            stats.latency.saturating_record_n(run.0, run.1);
        }
        stats.frames_received += frames;
        stats.frames_total += all;
        stats.bytes_total += used as u64;
        match broken {
            Some(closed) => {
                stats.integrity.corrupted += 1;
                Err(closed.into())
            }
            None => Ok(used),
        }
    }

    /// Checks one frame and counts what it says; returns its stamp if it is good.
    fn verify(&mut self, frame: &[u8], plan: &Plan, stats: &mut Stats) -> Option<u64> {
        let header = match plan.pattern.verify(self.decoder.payload(frame)) {
            Ok(header) => header,
            Err(_) => {
                stats.integrity.corrupted += 1;
                self.unexplained += 1;
                self.realigning = plan.realign.is_some();
                return None;
            }
        };
        let window = match self.role {
            Role::Echo if header.conn == self.id && header.seq < self.sent => &mut self.echo,
            // Another connection's frame (its checksum holds): it explains none of
            // this connection's gaps, so a frame of ours lost as well is still counted.
            Role::Echo => {
                stats.integrity.misdelivered += 1;
                return None;
            }
            _ => match self.sources.get_mut(header.conn as usize) {
                Some(window) => window,
                None => {
                    stats.integrity.misdelivered += 1;
                    return None;
                }
            },
        };
        let arrival = window.observe(header.seq);
        stats
            .integrity
            .count(arrival, window, &mut self.unexplained);
        Some(header.stamp)
    }

    /// Registers the connection for reading.
    ///
    /// # Errors
    /// The registry's error.
    pub fn register(&mut self, registry: &Registry) -> io::Result<()> {
        registry.register(&mut self.stream, self.token, Interest::READABLE)
    }

    /// Deregisters and marks the connection closed (the socket closes on drop).
    pub fn close(&mut self, registry: &Registry) {
        if self.open {
            self.open = false;
            let _ = registry.deregister(&mut self.stream);
            let _ = self.stream.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// A read that did not end in bytes.
enum ReadError {
    /// The socket's error.
    Io(io::Error),
    /// The stream broke the framing.
    Closed(Closed),
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        ReadError::Io(e)
    }
}

impl From<Closed> for ReadError {
    fn from(closed: Closed) -> Self {
        ReadError::Closed(closed)
    }
}

/// Where in `data` the first message of `size` bytes starts whose payload verifies
/// (`Ok`), or, if none does yet, how many bytes can go because no such message starts
/// among them (`Err`): all but the last `size - 1`, which may begin one.
fn find_payload(data: &[u8], size: usize, plan: &Plan) -> Result<usize, usize> {
    let Some(last) = data.len().checked_sub(size) else {
        return Err(0);
    };
    (0..=last)
        .find(|&at| plan.pattern.verify(&data[at..at + size]).is_ok())
        .ok_or(last + 1)
}

/// Where `inner` starts within `outer`, which contains it.
fn offset_of(inner: &[u8], outer: &[u8]) -> usize {
    (inner.as_ptr() as usize).saturating_sub(outer.as_ptr() as usize)
}

/// One `read` call, retried on `Interrupted`.
fn read_some(stream: &mut Stream, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match stream.read(buf) {
            Err(e) if interrupted(&e) => {}
            other => return other,
        }
    }
}

/// `WouldBlock` ends a read or write loop.
pub fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

/// `Interrupted` is retried.
pub fn interrupted(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::Interrupted
}
