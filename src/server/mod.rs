//! The reactor: one thread, one [`mio::Poll`], the listeners and a [`Slab`] of
//! connections keyed by their [`Token`]. It moves bytes between sockets and codecs and
//! asks the [`Mode`] where frames go; it knows no framing and no mode by name.
//!
//! One loop turn:
//! 1. flush every connection with new output (one vectored write batch each, as Redis
//!    does before it sleeps), and drop the connections closed during the turn;
//! 2. poll, blocking only until the next deadline and only if no connection is still
//!    ready;
//! 3. mark what the events say is ready; accept new connections, a bounded batch per
//!    listener;
//! 4. read each ready connection until `WouldBlock` or its byte budget, handing every
//!    run of complete frames to the mode. A connection stopped by its budget or by
//!    backpressure remembers that its socket is still readable;
//! 5. close connections whose deadline has passed; once a second, take back the empty
//!    read buffers of connections gone quiet.
//!
//! The parts: [`accept`](self) admits connections, `serve` is the data path (read,
//! frame, deliver, flush, close), `timers` the deadlines.

mod accept;
mod connection;
mod output;
mod read_buf;
mod serve;
mod splice;
mod timers;

use std::fmt;
use std::fs::File;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};
#[cfg(feature = "signals")]
use signal_hook::consts::{SIGINT, SIGTERM};
#[cfg(feature = "signals")]
use signal_hook_mio::v1_0::Signals;
use slab::Slab;

use crate::codec::Codec;
use crate::config::Config;
use crate::mode::Mode;
use connection::{Connection, Phase};
use timers::{Timeouts, Timers};

pub use output::Output;
pub use read_buf::ReadBuf;
pub use timers::Expiry;

/// Token of the first listener; listener `i` is `FIRST_LISTENER + i`. Connection
/// tokens are slab keys, far below (`max_connections` is checked against it).
const FIRST_LISTENER: usize = usize::MAX / 2;
/// The largest `max_connections` a server takes: connection tokens must stay below the
/// listeners'.
pub const MAX_CONNECTIONS_LIMIT: usize = FIRST_LISTENER - 1;
/// Token of the signal pipe, outside both ranges.
const SIGNALS: Token = Token(usize::MAX);
/// Events taken from one poll call.
const EVENTS_CAPACITY: usize = 1024;
/// A connection with no complete frame in or out for this long gives back its empty
/// read buffer (up to 256 KiB after streaming, 1 MiB after a large frame), so many
/// quiet connections cost little memory, as Redis frees idle clients' query buffers.
const RELEASE_IDLE_AFTER: Duration = Duration::from_secs(2);
/// How often connections are looked over for idle buffers, while there are any.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

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

/// How [`Server::run`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// A signal asked for shutdown and every connection was flushed and closed.
    Drained,
    /// A signal asked for shutdown; the drain timeout cut the remaining connections.
    DrainTimedOut {
        /// Connections still open when the time ran out.
        cut: usize,
    },
    /// A second signal arrived during the drain.
    Forced,
}

/// Counters of what the server has done, logged when it stops.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    /// Connections accepted and served.
    pub accepted: u64,
    /// Connections closed right after accept because of `max_connections`.
    pub refused: u64,
    /// Connections closed right after accept by the access rules.
    pub denied: u64,
    /// Pending connections closed unserved because no file descriptor was left.
    pub shed: u64,
    /// Connections closed for breaking the framing.
    pub protocol_errors: u64,
    /// Oversized frames skipped (policy `skip`).
    pub oversized: u64,
    /// Connections that ended in the middle of a frame.
    pub truncated: u64,
    /// Connections closed by `--idle-timeout`.
    pub idle_timeouts: u64,
    /// Connections closed by `--frame-timeout`.
    pub frame_timeouts: u64,
    /// Connections closed by `--write-timeout`.
    pub write_timeouts: u64,
    /// Recipients closed for passing the output cap (slow-consumer policy `disconnect`).
    pub slow_disconnects: u64,
    /// Frames skipped for recipients past the output cap (slow-consumer policy `drop`).
    pub frames_dropped: u64,
    /// Complete frames received.
    pub frames_in: u64,
    /// Bytes received.
    pub bytes_in: u64,
    /// Bytes written.
    pub bytes_out: u64,
    /// Read buffers given back by connections gone quiet.
    pub buffers_released: u64,
}

/// The `--stats-interval` schedule: the line logs rates since the previous one.
#[derive(Debug, Clone, Copy)]
struct StatsLine {
    /// The interval.
    every: Duration,
    /// When the next line is due.
    due: Instant,
    /// When the previous line was logged (or the server started).
    since: Instant,
    /// The counters at that time.
    last: Stats,
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
    /// Listening sockets; index `i` has token `FIRST_LISTENER + i`. Emptied at shutdown.
    listeners: Vec<Listener>,
    /// Live connections; a connection's key is its token.
    conns: Slab<Connection>,
    /// What the server was asked to do.
    config: Config,
    /// The configured per-connection time limits.
    timeouts: Timeouts,
    /// Connection deadlines.
    timers: Timers,
    /// The time at the start of this loop turn: one clock read per turn, not per event.
    now: Instant,
    /// Serial number for the next connection.
    next_serial: u64,
    /// Connections to read this turn (readable, not yet drained to `WouldBlock`).
    ready: Vec<usize>,
    /// Connections with output to flush before the next poll.
    dirty: Vec<usize>,
    /// Connections closed this turn, deregistered and dropped before the next poll.
    closed: Vec<usize>,
    /// An empty list kept to swap with `ready` or `dirty`, so turns do not allocate.
    spare: Vec<usize>,
    /// A file descriptor held in reserve: released when accept reports EMFILE, so the
    /// pending connection can be accepted and closed instead of spinning on it.
    spare_fd: Option<File>,
    /// No accepting before this instant (after an accept error).
    accept_paused_until: Option<Instant>,
    /// The current pause after accept errors; doubles while they persist.
    accept_backoff: Duration,
    /// Refusals not yet logged, and when the last refusal was logged.
    refusals: (u64, Option<Instant>),
    /// SIGINT/SIGTERM, when `Server::handle_signals` was called.
    #[cfg(feature = "signals")]
    signals: Option<Signals>,
    /// During a graceful shutdown: when the drain gives up.
    draining_until: Option<Instant>,
    /// When connections are next looked over for idle read buffers.
    next_sweep: Instant,
    /// With `--stats-interval`: when the next line of counters is due.
    stats_line: Option<StatsLine>,
    /// What has happened so far.
    stats: Stats,
    /// With unframed echo on Linux: the pipe that passes bytes back without copying
    /// them into user space (see `splice`).
    splicer: Option<splice::Splicer>,
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
        if config.max_connections > MAX_CONNECTIONS_LIMIT {
            return Err(StartError::Config("max connections is too large".into()));
        }
        let poll = Poll::new().map_err(StartError::Poll)?;
        let mut listeners = Vec::with_capacity(config.listen.len());
        for (i, &addr) in config.listen.iter().enumerate() {
            let bind_error = |source| StartError::Bind { addr, source };
            let mut socket = accept::bind_listener(addr, config.backlog).map_err(bind_error)?;
            let addr = socket.local_addr().map_err(bind_error)?;
            poll.registry()
                .register(&mut socket, Token(FIRST_LISTENER + i), Interest::READABLE)
                .map_err(StartError::Poll)?;
            listeners.push(Listener {
                socket,
                addr,
                ready: false,
            });
        }
        let started = Instant::now();
        let stats_line = config.stats_interval.map(|every| StatsLine {
            every,
            due: started + every,
            since: started,
            last: Stats::default(),
        });
        let splicer = Server::splicer_for(&config);
        let timeouts = Timeouts {
            idle: config.idle_timeout,
            frame: config.frame_timeout,
            write: config.write_timeout,
        };
        Ok(Server {
            poll,
            listeners,
            conns: Slab::new(),
            config,
            timeouts,
            timers: Timers::default(),
            now: Instant::now(),
            next_serial: 0,
            ready: Vec::new(),
            dirty: Vec::new(),
            closed: Vec::new(),
            spare: Vec::new(),
            spare_fd: accept::reserve_fd(),
            accept_paused_until: None,
            accept_backoff: accept::MIN_BACKOFF,
            refusals: (0, None),
            #[cfg(feature = "signals")]
            signals: None,
            draining_until: None,
            next_sweep: started + SWEEP_INTERVAL,
            stats_line,
            stats: Stats::default(),
            splicer,
        })
    }

    /// With `splice` asked for: a splicer, when every frame goes back to its sender
    /// alone and any bytes make a frame (no boundaries to find, so none to see). None
    /// if the kernel cannot, which only costs the copies.
    fn splicer_for(config: &Config) -> Option<splice::Splicer> {
        let audience = config.mode.audience(config.echo_self);
        let codec = Codec::with_oversize(config.framing, config.max_frame, config.oversize);
        if !(config.splice && audience.sender && !audience.others && codec.is_transparent()) {
            return None;
        }
        splice::Splicer::new(serve::READ_BUDGET)
            .map_err(|e| warn!("no splice: {e}; echoing by copying"))
            .ok()
    }

    #[cfg(feature = "signals")]
    /// Makes SIGINT and SIGTERM start a graceful shutdown (a second one stops at once),
    /// through the same poller as everything else.
    ///
    /// # Errors
    /// If the signal handlers or their pipe cannot be set up.
    pub fn handle_signals(&mut self) -> io::Result<()> {
        let mut signals = Signals::new([SIGINT, SIGTERM])?;
        self.poll
            .registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)?;
        self.signals = Some(signals);
        Ok(())
    }

    /// The bound addresses, with real ports where port 0 was asked for.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners.iter().map(|l| l.addr).collect()
    }

    /// What the server has done so far.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Runs the event loop until a signal's graceful shutdown completes (see
    /// [`Server::handle_signals`]); without signals, until the poller fails.
    ///
    /// # Errors
    /// Only a failing `poll` (not a connection's trouble, which closes that connection).
    pub fn run(&mut self) -> io::Result<Stopped> {
        let mut events = Events::with_capacity(EVENTS_CAPACITY);
        self.log_start();
        loop {
            self.flush_dirty();
            self.reap();
            if let Some(stopped) = self.drain_finished() {
                self.log_stop(stopped);
                return Ok(stopped);
            }
            let timeout = self.poll_timeout();
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if interrupted(&e) => continue,
                Err(e) => return Err(e),
            }
            self.now = Instant::now();
            for event in events.iter() {
                match event.token() {
                    #[cfg(feature = "signals")]
                    SIGNALS => {
                        if self.on_signal() {
                            self.log_stop(Stopped::Forced);
                            return Ok(Stopped::Forced);
                        }
                    }
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
                            conn.hup |= event.is_read_closed() || event.is_error();
                            serve::mark(&mut self.ready, &mut conn.in_ready, key);
                        }
                        if event.is_writable() || event.is_error() {
                            serve::mark(&mut self.dirty, &mut conn.in_dirty, key);
                        }
                    }
                }
            }
            self.accept_ready();
            self.serve_ready();
            // After reading, so a frame that arrived with this wake-up counts as activity.
            self.expire_timers();
            self.log_refusals();
            if self.now >= self.next_sweep {
                self.release_idle_buffers();
            }
            if self.stats_line.is_some_and(|line| self.now >= line.due) {
                self.log_stats();
            }
        }
    }

    /// How long the next poll may block: not at all while work is pending, otherwise
    /// until the earliest deadline (timers, accept pause, drain), or indefinitely.
    fn poll_timeout(&self) -> Option<Duration> {
        let accepting = self.accept_paused_until.is_none();
        if !self.ready.is_empty() || (accepting && self.listeners.iter().any(|l| l.ready)) {
            return Some(Duration::ZERO);
        }
        let deadlines = [
            self.timers.next(),
            self.accept_paused_until,
            self.draining_until,
            (!self.conns.is_empty()).then_some(self.next_sweep),
            self.stats_line.map(|line| line.due),
            self.next_refusals_line().filter(|_| self.refusals.0 > 0),
        ];
        let next = deadlines.into_iter().flatten().min()?;
        Some(next.saturating_duration_since(Instant::now()))
    }

    /// Closes every connection whose deadline has passed; re-arms those whose deadline
    /// has moved on since their entry was made.
    fn expire_timers(&mut self) {
        while let Some((when, key, serial)) = self.timers.pop_due(self.now) {
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            if conn.serial != serial
                || conn.clock.armed != Some(when)
                || conn.phase == Phase::Closed
            {
                continue; // a stale entry: superseded, or for an earlier connection
            }
            conn.clock.armed = None;
            match conn.clock.deadline(&self.timeouts) {
                Some((deadline, expiry)) if deadline <= self.now => {
                    match expiry {
                        Expiry::Idle => self.stats.idle_timeouts += 1,
                        Expiry::Frame => self.stats.frame_timeouts += 1,
                        Expiry::Write => self.stats.write_timeouts += 1,
                        Expiry::Linger => {}
                    }
                    self.close(key, &expiry);
                }
                Some((deadline, _)) => {
                    conn.clock.armed = Some(deadline);
                    self.timers.arm(deadline, key, serial);
                }
                None => {}
            }
        }
    }

    /// Gives back the empty read buffers of connections with no complete frame in or out
    /// for [`RELEASE_IDLE_AFTER`]. O(connections) once per [`SWEEP_INTERVAL`], only while
    /// there are connections: a few microseconds a second for thousands of them.
    fn release_idle_buffers(&mut self) {
        self.next_sweep = self.now + SWEEP_INTERVAL;
        for (_, conn) in self.conns.iter_mut() {
            if self.now.saturating_duration_since(conn.clock.last_frame) < RELEASE_IDLE_AFTER {
                continue;
            }
            let released = conn.input.release_if_empty();
            if released > 0 {
                self.stats.buffers_released += 1;
                debug!(
                    "{}: quiet, released its {released}-byte read buffer",
                    conn.peer
                );
            }
        }
    }

    /// The `--stats-interval` line: connections open, rates since the last line, and
    /// the error counters since start.
    fn log_stats(&mut self) {
        let Some(StatsLine {
            every, since, last, ..
        }) = self.stats_line
        else {
            return;
        };
        let s = self.stats;
        let secs = self
            .now
            .saturating_duration_since(since)
            .as_secs_f64()
            .max(1e-9);
        let rate = |now: u64, then: u64| now.saturating_sub(then) as f64 / secs;
        info!(
            "stats: {} connection(s); {:.0} frames/s in, {:.2} MB/s in, {:.2} MB/s out over {secs:.1} s; \
             since start {} accepted, {} refused, {} denied, {} protocol errors, {} timeouts, \
             {} slow disconnects, {} frames dropped",
            self.conns.len(),
            rate(s.frames_in, last.frames_in),
            rate(s.bytes_in, last.bytes_in) / 1e6,
            rate(s.bytes_out, last.bytes_out) / 1e6,
            s.accepted,
            s.refused,
            s.denied,
            s.protocol_errors,
            s.idle_timeouts + s.frame_timeouts + s.write_timeouts,
            s.slow_disconnects,
            s.frames_dropped
        );
        self.stats_line = Some(StatsLine {
            every,
            due: self.now + every,
            since: self.now,
            last: s,
        });
    }

    /// Makes sure connection `key` has a timer entry no later than its deadline. Called
    /// when a deadline may have moved earlier (a frame or a write stall began).
    fn rearm(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if let Some((when, _)) = conn.clock.deadline(&self.timeouts) {
            if conn.clock.armed.is_none_or(|armed| when < armed) {
                conn.clock.armed = Some(when);
                self.timers.arm(when, key, conn.serial);
            }
        }
    }

    #[cfg(feature = "signals")]
    /// Reads the pending signals; the first starts a graceful shutdown. Returns true
    /// when a second one asks to stop at once.
    fn on_signal(&mut self) -> bool {
        let Some(signals) = self.signals.as_mut() else {
            return false;
        };
        let received: Vec<i32> = signals.pending().collect();
        for signal in received {
            let name = if signal == SIGINT {
                "SIGINT"
            } else {
                "SIGTERM"
            };
            if self.draining_until.is_some() {
                warn!("{name} again: stopping without finishing the drain");
                return true;
            }
            self.begin_shutdown(name);
        }
        false
    }

    /// Stops accepting, reads what connections have already sent, and starts flushing
    /// everything for up to the drain timeout.
    fn begin_shutdown(&mut self, signal: &str) {
        info!(
            "{signal}: shutting down; flushing {} connection(s) for up to {:?} (send it again to stop at once)",
            self.conns.len(),
            self.config.drain_timeout
        );
        for mut listener in self.listeners.drain(..) {
            if let Err(e) = self.poll.registry().deregister(&mut listener.socket) {
                debug!("deregister listener {}: {e}", listener.addr);
            }
        }
        self.draining_until = Some(self.now + self.config.drain_timeout);
        let keys: Vec<usize> = self.conns.iter().map(|(key, _)| key).collect();
        // Frames that arrived before the signal are served in full first (in broadcast,
        // while every recipient is still open), then every connection drains.
        let budget = self.config.max_frame.saturating_add(self.config.max_output);
        for &key in &keys {
            if let Some(conn) = self.conns.get_mut(key) {
                conn.readable = true;
            }
            self.serve(key, budget);
        }
        for &key in &keys {
            self.drain(key);
        }
    }

    /// During a shutdown: `Some` once every connection is closed, or when the drain
    /// timeout has passed (closing what is left).
    fn drain_finished(&mut self) -> Option<Stopped> {
        let until = self.draining_until?;
        if self.conns.is_empty() {
            return Some(Stopped::Drained);
        }
        if Instant::now() < until {
            return None;
        }
        let cut = self.conns.len();
        let keys: Vec<usize> = self.conns.iter().map(|(key, _)| key).collect();
        for key in keys {
            self.close(key, &"drain timeout");
        }
        self.reap();
        Some(Stopped::DrainTimedOut { cut })
    }

    fn log_start(&self) {
        let c = &self.config;
        let broadcast = match c.mode {
            Mode::Broadcast => format!(
                " (echo-self {}, slow consumers: {})",
                c.echo_self, c.slow_consumer
            ),
            Mode::Echo => String::new(),
        };
        let splice = if self.splicer.is_some() {
            ", splice"
        } else {
            ""
        };
        info!(
            "serving {} listener(s): mode {}{broadcast}, framing {}{splice}, max frame {} B, max output {} B, max connections {}",
            self.listeners.len(),
            c.mode,
            c.framing,
            c.max_frame,
            c.max_output,
            c.max_connections
        );
        for listener in &self.listeners {
            if !listener.addr.ip().is_loopback() {
                info!(
                    "listening on {}, which is not a loopback address: reachable from other hosts",
                    listener.addr
                );
            }
        }
    }

    fn log_stop(&self, stopped: Stopped) {
        let s = &self.stats;
        match stopped {
            Stopped::Drained => info!("shutdown complete: every connection flushed"),
            Stopped::DrainTimedOut { cut } => {
                warn!("shutdown: drain timeout reached; closed {cut} connection(s) with output pending")
            }
            Stopped::Forced => warn!(
                "shutdown forced; {} connection(s) dropped",
                self.conns.len()
            ),
        }
        info!(
            "totals: {} accepted, {} refused at the limit, {} denied, {} shed at the fd limit, \
             {} frames in, {} bytes in, {} bytes out, {} protocol errors, {} oversized skipped, \
             {} truncated, timeouts {} idle / {} frame / {} write, {} slow disconnects, {} frames dropped, \
             {} idle read buffers released",
            s.accepted,
            s.refused,
            s.denied,
            s.shed,
            s.frames_in,
            s.bytes_in,
            s.bytes_out,
            s.protocol_errors,
            s.oversized,
            s.truncated,
            s.idle_timeouts,
            s.frame_timeouts,
            s.write_timeouts,
            s.slow_disconnects,
            s.frames_dropped,
            s.buffers_released
        );
    }
}

fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

fn interrupted(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::Interrupted
}
