//! The reactor: one thread, one [`mio::Poll`], the listeners and a [`Slab`] of
//! connections keyed by their [`Token`]. It moves bytes between sockets and codecs and
//! asks the [`Mode`](crate::mode::Mode) where frames go; it knows no framing and no mode
//! by name.
//!
//! One loop turn:
//! 1. flush every connection with new output (one vectored write batch each, as Redis
//!    does before it sleeps), and drop the connections closed during the turn;
//! 2. poll, blocking only if no connection is still ready;
//! 3. mark what the events say is ready, accept new connections;
//! 4. read each ready connection until `WouldBlock` or its byte budget, handing every
//!    run of complete frames to the mode. A connection stopped by its budget or by
//!    backpressure remembers that its socket is still readable.

mod connection;
mod output;
mod read_buf;

use std::fmt;
use std::io;
use std::mem;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use log::{debug, error, info, trace, warn};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use crate::codec::Codec;
use crate::config::Config;
use crate::mode::{Mode, Offer, SlowConsumer};
use connection::{Connection, Phase};

pub use output::Output;
pub use read_buf::ReadBuf;

/// Token of the first listener; listener `i` is `FIRST_LISTENER + i`. Connection
/// tokens are slab keys, far below (`max_connections` is checked against it).
const FIRST_LISTENER: usize = usize::MAX / 2;
/// Bytes read from one connection per loop turn before the others get their turn, so a
/// flooding client cannot starve the rest (four full 64 KiB reads).
const READ_BUDGET: usize = 256 << 10;
/// Connections accepted per listener per loop turn, so a connect storm cannot starve
/// established connections.
const ACCEPT_BATCH: usize = 64;
/// Pause after an accept error such as EMFILE, so it is not retried in a busy loop.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Events taken from one poll call.
const EVENTS_CAPACITY: usize = 1024;

/// A server that could not start.
#[derive(Debug)]
pub enum StartError {
    /// A listen address could not be bound.
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why, as the OS said it.
        source: io::Error,
    },
    /// The poller could not be created or a listener registered.
    Poll(io::Error),
    /// The configuration cannot work.
    Config(String),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Bind { addr, source } => write!(f, "cannot listen on {addr}: {source}"),
            StartError::Poll(e) => write!(f, "cannot set up the event loop: {e}"),
            StartError::Config(why) => write!(f, "invalid configuration: {why}"),
        }
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StartError::Bind { source, .. } | StartError::Poll(source) => Some(source),
            StartError::Config(_) => None,
        }
    }
}

/// Counters of what the server has done, logged when it stops.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    /// Connections accepted and served.
    pub accepted: u64,
    /// Connections closed right after accept because of `max_connections`.
    pub refused: u64,
    /// Connections closed for breaking the framing.
    pub protocol_errors: u64,
    /// Recipients closed for passing the output cap (slow-consumer policy `disconnect`).
    pub slow_disconnects: u64,
    /// Frames skipped for recipients past the output cap (slow-consumer policy `drop`).
    pub frames_dropped: u64,
    /// Connections that ended in the middle of a frame.
    pub truncated: u64,
    /// Complete frames received.
    pub frames_in: u64,
    /// Bytes received.
    pub bytes_in: u64,
    /// Bytes written.
    pub bytes_out: u64,
}

/// A listening socket and whether it may hold connections not yet accepted.
struct Listener {
    socket: TcpListener,
    addr: SocketAddr,
    ready: bool,
}

/// The framecast reactor.
pub struct Server {
    /// The one poller every socket is registered with.
    poll: Poll,
    /// Listening sockets; index `i` has token `FIRST_LISTENER + i`.
    listeners: Vec<Listener>,
    /// Live connections; a connection's key is its token.
    conns: Slab<Connection>,
    /// What the server was asked to do.
    config: Config,
    /// Connections to read this turn (readable, not yet drained to `WouldBlock`).
    ready: Vec<usize>,
    /// Connections with output to flush before the next poll.
    dirty: Vec<usize>,
    /// Connections closed this turn, deregistered and dropped before the next poll.
    closed: Vec<usize>,
    /// An empty list kept to swap with `ready` or `dirty`, so turns do not allocate.
    spare: Vec<usize>,
    /// No accepting before this instant (after an accept error).
    accept_paused_until: Option<Instant>,
    /// Refusals not yet logged, and when the last refusal was logged.
    refusals: (u64, Option<Instant>),
    /// What has happened so far.
    stats: Stats,
}

impl Server {
    /// Binds every listen address in `config` and registers it with a new poller.
    ///
    /// # Errors
    /// [`StartError::Bind`] naming the address that failed, [`StartError::Poll`] if
    /// the poller fails, [`StartError::Config`] for an unusable configuration.
    pub fn bind(config: Config) -> Result<Server, StartError> {
        if config.listen.is_empty() {
            return Err(StartError::Config("no listen address".into()));
        }
        if config.max_connections >= FIRST_LISTENER {
            return Err(StartError::Config("max connections is too large".into()));
        }
        let poll = Poll::new().map_err(StartError::Poll)?;
        let mut listeners = Vec::with_capacity(config.listen.len());
        for (i, &addr) in config.listen.iter().enumerate() {
            let mut socket =
                TcpListener::bind(addr).map_err(|source| StartError::Bind { addr, source })?;
            let addr = socket
                .local_addr()
                .map_err(|source| StartError::Bind { addr, source })?;
            poll.registry()
                .register(&mut socket, Token(FIRST_LISTENER + i), Interest::READABLE)
                .map_err(StartError::Poll)?;
            listeners.push(Listener {
                socket,
                addr,
                ready: false,
            });
        }
        Ok(Server {
            poll,
            listeners,
            conns: Slab::new(),
            config,
            ready: Vec::new(),
            dirty: Vec::new(),
            closed: Vec::new(),
            spare: Vec::new(),
            accept_paused_until: None,
            refusals: (0, None),
            stats: Stats::default(),
        })
    }

    /// The bound addresses, with real ports where port 0 was asked for.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners.iter().map(|l| l.addr).collect()
    }

    /// What the server has done so far.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Runs the event loop until the poller fails.
    ///
    /// # Errors
    /// Only a failing `poll` (not a connection's trouble, which closes that connection).
    pub fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(EVENTS_CAPACITY);
        let c = &self.config;
        let broadcast = match c.mode {
            Mode::Broadcast => format!(
                " (echo-self {}, slow consumers: {})",
                c.echo_self, c.slow_consumer
            ),
            Mode::Echo => String::new(),
        };
        info!(
            "serving {} listener(s): mode {}{broadcast}, framing {}, max frame {} B, max output {} B, max connections {}",
            self.listeners.len(), c.mode, c.framing, c.max_frame, c.max_output, c.max_connections
        );
        loop {
            self.flush_dirty();
            self.reap();
            let timeout = self.poll_timeout();
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if interrupted(&e) => continue,
                Err(e) => return Err(e),
            }
            for event in events.iter() {
                match event.token() {
                    Token(t) if t >= FIRST_LISTENER => {
                        if let Some(listener) = self.listeners.get_mut(t - FIRST_LISTENER) {
                            listener.ready = true;
                        }
                    }
                    Token(key) => {
                        // Spurious events happen, and a closed connection's key may be gone.
                        let Some(conn) = self.conns.get_mut(key) else {
                            continue;
                        };
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            conn.readable = true;
                            mark(&mut self.ready, &mut conn.in_ready, key);
                        }
                        if event.is_writable() || event.is_error() {
                            mark(&mut self.dirty, &mut conn.in_dirty, key);
                        }
                    }
                }
            }
            self.accept_ready();
            self.serve_ready();
        }
    }

    /// How long the next poll may block: not at all while work is pending, until the
    /// accept pause ends, or indefinitely.
    fn poll_timeout(&mut self) -> Option<Duration> {
        let listening = self.listeners.iter().any(|l| l.ready);
        if let Some(until) = self.accept_paused_until {
            let now = Instant::now();
            if now < until {
                return Some(if self.ready.is_empty() {
                    until - now
                } else {
                    Duration::ZERO
                });
            }
            self.accept_paused_until = None;
        }
        if !self.ready.is_empty() || listening {
            Some(Duration::ZERO)
        } else {
            None
        }
    }

    /// Accepts from every ready listener, up to a batch each.
    fn accept_ready(&mut self) {
        if self.accept_paused_until.is_some() {
            return;
        }
        for i in 0..self.listeners.len() {
            if self.listeners[i].ready {
                self.accept(i);
            }
        }
    }

    /// Accepts up to [`ACCEPT_BATCH`] connections from listener `i`.
    fn accept(&mut self, i: usize) {
        for _ in 0..ACCEPT_BATCH {
            match self.listeners[i].socket.accept() {
                Ok((stream, peer)) => self.admit(stream, peer),
                Err(e) if would_block(&e) => {
                    self.listeners[i].ready = false;
                    return;
                }
                Err(e) if interrupted(&e) || e.kind() == io::ErrorKind::ConnectionAborted => {}
                Err(e) => {
                    // EMFILE, ENFILE, ENOBUFS...: the pending connection stays queued;
                    // try again after a pause rather than spinning on it.
                    let addr = self.listeners[i].addr;
                    error!("accept on {addr}: {e}; pausing accepts for {ACCEPT_BACKOFF:?}");
                    self.accept_paused_until = Some(Instant::now() + ACCEPT_BACKOFF);
                    return;
                }
            }
        }
    }

    /// Registers an accepted connection, or closes it at once if the server is full.
    fn admit(&mut self, mut stream: TcpStream, peer: SocketAddr) {
        if self.conns.len() >= self.config.max_connections {
            self.stats.refused += 1;
            self.refusals.0 += 1;
            let now = Instant::now();
            if self
                .refusals
                .1
                .is_none_or(|last| now.duration_since(last) >= Duration::from_secs(1))
            {
                warn!(
                    "refused {} connection(s): at the limit of {} connections",
                    self.refusals.0, self.config.max_connections
                );
                self.refusals = (0, Some(now));
            }
            return; // dropping the stream closes it
        }
        if let Err(e) = stream.set_nodelay(true) {
            debug!("{peer}: cannot set TCP_NODELAY: {e}");
        }
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut stream, Token(key), Interest::READABLE)
        {
            warn!("{peer}: cannot register connection: {e}");
            return;
        }
        let codec = Codec::new(self.config.framing, self.config.max_frame);
        entry.insert(Connection::new(stream, peer, codec));
        self.stats.accepted += 1;
        debug!("{peer}: connected (token {key}, {} open)", self.conns.len());
    }

    /// Reads every connection on the ready list once, up to its budget.
    fn serve_ready(&mut self) {
        let mut batch = mem::replace(&mut self.ready, mem::take(&mut self.spare));
        for key in batch.drain(..) {
            if let Some(conn) = self.conns.get_mut(key) {
                if mem::take(&mut conn.in_ready) {
                    self.serve(key);
                }
            }
        }
        self.spare = batch;
    }

    /// Reads from one connection until `WouldBlock`, end of stream, backpressure or the
    /// byte budget, handing complete frames on after every read.
    fn serve(&mut self, key: usize) {
        let mut budget = READ_BUDGET;
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
            match conn.read() {
                Ok(0) => {
                    conn.readable = false;
                    if conn.input.is_empty() {
                        debug!("{}: end of stream", conn.peer);
                    } else {
                        debug!(
                            "{}: end of stream in the middle of a frame ({} bytes pending)",
                            conn.peer,
                            conn.input.data().len()
                        );
                        self.stats.truncated += 1;
                    }
                    self.drain(key);
                    return;
                }
                Ok(n) => {
                    budget = budget.saturating_sub(n);
                    self.stats.bytes_in += n as u64;
                    self.frame(key);
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

    /// Cuts the connection's input into runs of complete frames and delivers them.
    fn frame(&mut self, key: usize) {
        loop {
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            let run = match conn.codec.scan(conn.input.data()) {
                Ok(run) if run.is_incomplete() => return,
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
            let frames = conn.input.split(run.len);
            conn.input.discard(run.skip);
            if let Some(error) = run.oversize {
                debug!("{}: skipping oversized frame: {error}", conn.peer);
            }
            if run.frames > 0 {
                trace!("{}: {} frame(s), {} bytes", conn.peer, run.frames, run.len);
                self.stats.frames_in += run.frames as u64;
                self.deliver(key, frames, run.frames as u64);
            }
        }
    }

    /// Queues a run of `count` frames from connection `from` for the audience the mode
    /// names: one refcounted `Bytes`, shared by every recipient.
    fn deliver(&mut self, from: usize, frames: Bytes, count: u64) {
        let audience = self.config.mode.audience(self.config.echo_self);
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
            match policy.offer(frames.len(), conn.output.len(), cap, conn.dropping) {
                Offer::Queue => {
                    conn.output.push(frames.clone());
                    mark(&mut self.dirty, &mut conn.in_dirty, key);
                }
                Offer::Skip => {
                    if !mem::replace(&mut conn.dropping, true) {
                        debug!(
                            "{}: slow consumer: {} bytes pending, skipping frames",
                            conn.peer,
                            conn.output.len()
                        );
                    }
                    conn.dropped += count;
                    self.stats.frames_dropped += count;
                }
                Offer::Disconnect => {
                    info!(
                        "{}: slow consumer: {} bytes pending would pass the cap of {cap} bytes; disconnecting",
                        conn.peer,
                        conn.output.len()
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
        if conn.output.len() > self.config.max_output {
            conn.paused = true;
        }
        mark(&mut self.dirty, &mut conn.in_dirty, key);
    }

    /// Flushes every connection on the dirty list.
    fn flush_dirty(&mut self) {
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
    /// waits for: resumes reading below half the cap, closes a drained connection,
    /// asks for `WRITABLE` only while output remains.
    fn flush(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.phase == Phase::Closed {
            return;
        }
        match conn.flush() {
            Ok(n) => self.stats.bytes_out += n as u64,
            Err(e) => {
                self.close(key, &e);
                return;
            }
        }
        if conn.dropping && SlowConsumer::resumes(conn.output.len(), self.config.max_output) {
            debug!(
                "{}: caught up after {} skipped frames",
                conn.peer, conn.dropped
            );
            conn.dropping = false;
        }
        if conn.paused && conn.output.len() <= self.config.max_output / 2 {
            conn.paused = false;
            if conn.readable {
                mark(&mut self.ready, &mut conn.in_ready, key);
            }
        }
        if conn.phase == Phase::Draining && conn.output.is_empty() {
            self.close(key, &"done");
            return;
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
    }

    /// Stops reading a connection; it closes once its queued output is written.
    fn drain(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.phase == Phase::Open {
            conn.phase = Phase::Draining;
            mark(&mut self.dirty, &mut conn.in_dirty, key);
        }
    }

    /// Marks a connection closed; it is deregistered and dropped before the next poll,
    /// so its key cannot be reused while an event for it may still be in hand.
    fn close(&mut self, key: usize, why: &dyn fmt::Display) {
        if let Some(conn) = self.conns.get_mut(key) {
            mark_closed(conn, key, &mut self.closed, why);
        }
    }

    /// Deregisters and drops the connections closed this turn.
    fn reap(&mut self) {
        for key in self.closed.drain(..) {
            if let Some(mut conn) = self.conns.try_remove(key) {
                if let Err(e) = self.poll.registry().deregister(&mut conn.stream) {
                    debug!("{}: deregister: {e}", conn.peer);
                }
            }
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
fn mark(list: &mut Vec<usize>, flag: &mut bool, key: usize) {
    if !mem::replace(flag, true) {
        list.push(key);
    }
}

fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

fn interrupted(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::Interrupted
}
