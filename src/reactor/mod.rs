//! The reactor: one thread, one [`mio::Poll`], and a [`Slab`] of entries (listeners,
//! connections, the waker) keyed by their [`Token`]. It moves bytes between sockets and
//! codecs and hands complete frames to a [`Service`]; it knows no framing and no
//! service by name.
//!
//! One loop turn:
//! 1. flush every connection with new output (one vectored write batch each, as Redis
//!    does before it sleeps), tell the service who drained, and drop the connections
//!    closed during the turn (telling the service);
//! 2. poll, blocking only until the next deadline and only if no connection is still
//!    ready;
//! 3. mark what the events say is ready; accept new connections, a bounded batch per
//!    listener;
//! 4. read each ready connection until `WouldBlock` or its byte budget, handing every
//!    run of complete frames to the service. A connection stopped by its budget or by
//!    backpressure remembers that its socket is still readable;
//! 5. close connections whose deadline has passed, run the service's due timers; once
//!    a second, take back the empty read buffers of connections gone quiet.
//!
//! The parts: `accept` admits connections, `serve` is the data path (read, frame,
//! deliver, flush, close), `timers` the deadlines, [`Ctx`] what a service may do
//! ([`FakeCtx`]: the same without a reactor, for unit tests of a service),
//! `admin` the admin endpoint's connections (never the service's; the HTTP is
//! [`crate::admin`]'s), `oplog` the rate-limited lines for the operator, `stats` the
//! counters and their renderers.

mod accept;
mod admin;
mod connection;
mod ctx;
mod datagram;
mod fake;
mod fleet;
pub mod mailbox;
mod oplog;
mod outbound;
mod output;
mod read_buf;
mod serve;
mod splice;
mod stats;
mod timers;
#[cfg(feature = "tls")]
mod tls;
mod transport;

use std::fmt;
use std::fs::File;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;

use crate::config::{Config, ConfigError};
use crate::listen::Listen;
use crate::service::{Report, Service};
use connection::{Connection, Phase};
use oplog::Notice;
use timers::{ServiceTimers, Timeouts, Timers};

pub use admin::{ADMIN_IDLE, MAX_ADMIN_CONNECTIONS};
pub use ctx::{Body, Closed, ConnId, Ctx, Frame, FrameIter, Frames, SendError};
pub use datagram::{is_refused_port, MAX_DATAGRAM};
pub use fake::{FakeCtx, FakeState};
pub use fleet::{StatsBoard, PUBLISH_EVERY};
pub use mailbox::Notifier;
pub use output::{Output, CHUNK_COST};
pub use read_buf::ReadBuf;
pub use stats::{Gauges, Kind, Metric, Stats, Value, METRICS};
pub use timers::Expiry;
#[cfg(feature = "tls")]
pub use tls::{client_config, server_config, TlsError, TlsStream};
pub use transport::{Peer, Stream};

/// The largest `max_connections` a reactor takes: each connection holds a descriptor,
/// and no process holds more than a C `int` counts.
pub const MAX_CONNECTIONS_LIMIT: usize = i32::MAX as usize;
/// Events taken from one poll call.
const EVENTS_CAPACITY: usize = 1024;
/// A connection with no complete frame in or out for this long gives back its empty
/// read buffer (up to 256 KiB after streaming, 1 MiB after a large frame), so many
/// quiet connections cost little memory, as Redis frees idle clients' query buffers.
const RELEASE_IDLE_AFTER: Duration = Duration::from_secs(2);
/// Listen backlog of an admin listener: a scraper or an operator, not a crowd.
const ADMIN_BACKLOG: u32 = 64;
/// Each kind of operator line (refusals, timeouts, protocol errors) is logged at
/// `info` at most this often; the rest are counted into the next line.
const NOTICE_EVERY: Duration = Duration::from_secs(1);
/// How often connections are looked over for idle buffers, while there are any.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// A reactor that could not start.
#[derive(Debug)]
pub enum StartError {
    /// A listen address could not be bound.
    Bind {
        /// The address, as given.
        addr: Listen,
        /// Why, as the OS said it.
        source: io::Error,
    },
    /// The poller could not be created or a listener registered.
    Poll(io::Error),
    /// A TLS certificate, key or CA file cannot be used.
    #[cfg(feature = "tls")]
    Tls(TlsError),
    /// The configuration cannot work.
    Config(ConfigError),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Bind { addr, source } => write!(f, "cannot listen on {addr}: {source}"),
            StartError::Poll(e) => write!(f, "cannot set up the event loop: {e}"),
            #[cfg(feature = "tls")]
            StartError::Tls(e) => write!(f, "cannot use {e}"),
            StartError::Config(why) => write!(f, "invalid configuration: {why}"),
        }
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StartError::Bind { source, .. } | StartError::Poll(source) => Some(source),
            StartError::Config(e) => Some(e),
            #[cfg(feature = "tls")]
            StartError::Tls(e) => Some(e),
        }
    }
}

/// How [`Reactor::run`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// A shutdown was asked for and every connection was flushed and closed.
    Drained,
    /// A shutdown was asked for; the drain timeout cut the remaining connections.
    DrainTimedOut {
        /// Connections still open when the time ran out.
        cut: usize,
    },
    /// A stop at once was asked for ([`Handle::stop_now`]).
    Forced,
}

/// What another thread asked of the reactor through a [`Handle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Request {
    /// Stop accepting, flush everything, stop (a graceful shutdown), for this reason.
    Shutdown(&'static str),
    /// Stop at once, for this reason.
    Stop(&'static str),
    /// Log the counters now.
    LogStats,
}

/// Controls a running reactor from any thread (a signal handler's thread, a test):
/// cheap to clone; each call wakes the reactor through its poller.
#[derive(Debug, Clone)]
pub struct Handle {
    waker: Arc<Waker>,
    requests: Arc<Mutex<Vec<Request>>>,
    /// Set with each request, so a wake-up for a [`Notifier`] takes no lock.
    asked: Arc<AtomicBool>,
}

impl Handle {
    fn ask(&self, request: Request) {
        self.requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(request);
        self.asked.store(true, Ordering::SeqCst);
        if let Err(e) = self.waker.wake() {
            warn!("cannot wake the event loop: {e}");
        }
    }

    /// Starts a graceful shutdown: no more connections are accepted, every connection
    /// is flushed for up to the drain timeout, then [`Reactor::run`] returns. `why`
    /// names the cause in the log (`"SIGTERM"`).
    pub fn shutdown(&self, why: &'static str) {
        self.ask(Request::Shutdown(why));
    }

    /// Stops at once, dropping what is still queued.
    pub fn stop_now(&self, why: &'static str) {
        self.ask(Request::Stop(why));
    }

    /// Logs the counters at once (as `--stats-interval` does).
    pub fn log_stats(&self) {
        self.ask(Request::LogStats);
    }
}

/// What a listener's connections are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Clients of the service.
    Data,
    /// The admin endpoint (`Config::admin`): served by the reactor, never the service.
    Admin,
}

/// A listening socket and whether it may hold connections not yet accepted.
struct Listener {
    /// The socket, of its kind.
    socket: transport::ListenSocket,
    /// What it listens on, with the real port.
    listen: Listen,
    ready: bool,
    role: Role,
}

/// What a slab key stands for: each token is the key of one of these.
// Nearly every entry is a connection: boxing them would cost an allocation and an
// indirection each to save the few listeners some bytes.
#[allow(clippy::large_enum_variant)]
enum Entry {
    /// A listening socket.
    Listener(Listener),
    /// A client connection.
    Stream(Connection),
    /// A connection to the admin endpoint.
    Admin(admin::AdminConn),
    /// A UDP socket, echoing datagrams.
    Datagram(datagram::DatagramSocket),
    /// The waker through which a [`Handle`] reaches the loop.
    Waker,
}

/// The connection at `key`, if that entry is one.
fn stream_mut(entries: &mut Slab<Entry>, key: usize) -> Option<&mut Connection> {
    match entries.get_mut(key) {
        Some(Entry::Stream(conn)) => Some(conn),
        _ => None,
    }
}

/// The connection `id` names, if it is still in `entries`.
fn stream_of(entries: &mut Slab<Entry>, id: ConnId) -> Option<&mut Connection> {
    match entries.get_mut(id.key()) {
        Some(Entry::Stream(conn)) if conn.serial == id.serial => Some(conn),
        _ => None,
    }
}

/// Everything but the service: what a [`Ctx`] borrows.
struct Core {
    /// The one poller every socket is registered with.
    poll: Poll,
    /// Listeners, connections and the waker; a key is a token.
    entries: Slab<Entry>,
    /// Keys of the listeners, in the order they were given, data then admin. The
    /// data listeners go at shutdown; the admin ones stay, to watch the drain.
    listeners: Vec<usize>,
    /// The admin endpoint's connections.
    admin: admin::AdminPort,
    /// Connections in `entries`.
    open: usize,
    /// What the reactor was asked to do, validated.
    config: Config,
    /// The configured per-connection time limits.
    timeouts: Timeouts,
    /// Connection deadlines.
    timers: Timers,
    /// The service's timers.
    service_timers: ServiceTimers,
    /// The time at the start of this loop turn: one clock read per turn, not per event.
    now: Instant,
    /// Serial number for the next connection.
    next_serial: u64,
    /// Connections to read this turn (readable, not yet drained to `WouldBlock`).
    ready: Vec<usize>,
    /// Connections with output to flush before the next poll.
    dirty: Vec<usize>,
    /// An empty list kept to swap with `ready` or `dirty`, so turns do not allocate.
    spare: Vec<usize>,
    /// Connections closed this turn, and why: the service is told, then they are
    /// deregistered and dropped before the next poll.
    closed: Vec<(usize, Closed)>,
    /// Connections accepted this turn, for the service's `on_open`.
    opened: Vec<(ConnId, Peer)>,
    /// Connections whose output fell below the low-water mark, for `on_drain`.
    drained: Vec<ConnId>,
    /// Connections whose body gave its last chunk, for `on_body_done`.
    bodies_done: Vec<ConnId>,
    /// The run of frames handed to the service and not yet taken: its connection and
    /// length, discarded after the callback if the service left it.
    untaken: Option<(usize, usize)>,
    /// A file descriptor held in reserve: released when accept reports EMFILE, so the
    /// pending connection can be accepted and closed instead of spinning on it.
    spare_fd: Option<File>,
    /// No accepting before this instant (after an accept error).
    accept_paused_until: Option<Instant>,
    /// The current pause after accept errors; doubles while they persist.
    accept_backoff: Duration,
    /// Lines for the operator (refusals, timeouts, protocol errors), at most one a
    /// second per kind.
    notices: oplog::Throttle,
    /// What [`Handle`]s have asked for since the last turn.
    requests: Arc<Mutex<Vec<Request>>>,
    /// Set by a [`Handle`] with each request.
    asked: Arc<AtomicBool>,
    /// Set by a [`Notifier`]: the service's `on_wake` is due.
    notified: Arc<AtomicBool>,
    /// The waker [`Handle`]s and [`Notifier`]s use (one per poller, as mio wants).
    waker: Arc<Waker>,
    /// With `--workers`: this reactor's seat on the board of every worker's counters.
    seat: Option<fleet::Seat>,
    /// During a graceful shutdown: when the drain gives up.
    draining_until: Option<Instant>,
    /// When connections are next looked over for idle read buffers.
    next_sweep: Instant,
    /// With `--stats-interval`: when the next line of counters is due.
    stats_line: Option<stats::StatsLine>,
    /// What has happened so far.
    stats: Stats,
    /// When the reactor was built, for the uptime.
    started: Instant,
    /// The one read buffer lent to each connection holding little while it is read
    /// (see `ReadBuf::lend`), so an idle or trickling connection costs only its
    /// leftover bytes.
    shared: ReadBuf,
    /// With unframed echo on Linux: the pipe that passes bytes back without copying
    /// them into user space (see `splice`).
    splicer: Option<splice::Splicer>,
}

/// The framecast reactor, driving one service.
pub struct Reactor<S> {
    core: Core,
    service: S,
}

impl<S: Service> Reactor<S> {
    /// Validates `config`, binds every listen address and registers it with a new
    /// poller, to serve `service`.
    ///
    /// # Errors
    /// [`StartError::Config`] for an unusable configuration, [`StartError::Bind`]
    /// naming the address that failed, [`StartError::Poll`] if the poller fails.
    pub fn bind(config: Config, service: S) -> Result<Reactor<S>, StartError> {
        config.validate().map_err(StartError::Config)?;
        let poll = Poll::new().map_err(StartError::Poll)?;
        let mut entries = Slab::new();
        let mut listeners = Vec::with_capacity(config.listen.len() + config.admin.len());
        let data = config.listen.iter().cloned().map(|l| (l, Role::Data));
        // Loaded once, for every tls:// listener.
        #[cfg(feature = "tls")]
        let mut tls_config: Option<Arc<rustls::ServerConfig>> = None;
        let admin_roles = config.admin.iter().map(|&a| (Listen::Tcp(a), Role::Admin));
        for (listen, role) in data.chain(admin_roles) {
            let backlog = match role {
                Role::Data => config.backlog,
                Role::Admin => ADMIN_BACKLOG,
            };
            let reuse_port = role == Role::Data && config.reuse_port;
            let bind_error = |source| StartError::Bind {
                addr: listen.clone(),
                source,
            };
            let (mut socket, listen) = match &listen {
                Listen::Tcp(addr) => {
                    let socket =
                        accept::bind_listener(*addr, backlog, reuse_port).map_err(bind_error)?;
                    let addr = socket.local_addr().map_err(bind_error)?;
                    (transport::ListenSocket::Tcp(socket), Listen::Tcp(addr))
                }
                Listen::Unix(path) => {
                    let path = transport::absolute(path);
                    let (socket, file) =
                        transport::bind_unix(&path, backlog).map_err(bind_error)?;
                    (
                        transport::ListenSocket::Unix(socket, file),
                        Listen::Unix(path),
                    )
                }
                Listen::Udp(addr) => {
                    let mut socket =
                        datagram::bind(*addr, config.udp_queue, reuse_port).map_err(bind_error)?;
                    let entry = entries.vacant_entry();
                    poll.registry()
                        .register(socket.socket_mut(), Token(entry.key()), Interest::READABLE)
                        .map_err(StartError::Poll)?;
                    listeners.push(entry.key());
                    entry.insert(Entry::Datagram(socket));
                    continue;
                }
                #[cfg(feature = "tls")]
                Listen::Tls(addr) => {
                    let Some(files) = &config.tls else {
                        return Err(StartError::Config(ConfigError {
                            field: "tls",
                            problem: format!("{listen} needs a certificate and a key"),
                        }));
                    };
                    let tls = match &tls_config {
                        Some(tls) => Arc::clone(tls),
                        None => {
                            let tls = tls::server_config(files).map_err(StartError::Tls)?;
                            tls_config = Some(Arc::clone(&tls));
                            tls
                        }
                    };
                    let socket =
                        accept::bind_listener(*addr, backlog, reuse_port).map_err(bind_error)?;
                    let addr = socket.local_addr().map_err(bind_error)?;
                    (transport::ListenSocket::Tls(socket, tls), Listen::Tls(addr))
                }
                #[cfg(not(feature = "tls"))]
                Listen::Tls(_) => {
                    return Err(StartError::Config(ConfigError {
                        field: "listen",
                        problem: format!("{listen}: this build has no TLS"),
                    }))
                }
            };
            let entry = entries.vacant_entry();
            poll.registry()
                .register(&mut socket, Token(entry.key()), Interest::READABLE)
                .map_err(StartError::Poll)?;
            listeners.push(entry.key());
            entry.insert(Entry::Listener(Listener {
                socket,
                listen,
                ready: false,
                role,
            }));
        }
        let waker_entry = entries.vacant_entry();
        let waker =
            Waker::new(poll.registry(), Token(waker_entry.key())).map_err(StartError::Poll)?;
        waker_entry.insert(Entry::Waker);
        let now = Instant::now();
        let splicer = (config.splice && service.echoes_verbatim())
            .then(|| {
                splice::Splicer::new(serve::READ_BUDGET)
                    .map_err(|e| warn!("no splice: {e}; echoing by copying"))
                    .ok()
            })
            .flatten();
        let core = Core {
            poll,
            entries,
            listeners,
            admin: admin::AdminPort::default(),
            open: 0,
            timeouts: Timeouts {
                idle: config.idle_timeout,
                frame: config.frame_timeout,
                write: config.write_timeout,
                quiet: None,
            },
            stats_line: config
                .stats_interval
                .map(|every| stats::StatsLine::new(every, now)),
            config,
            timers: Timers::default(),
            service_timers: ServiceTimers::default(),
            now,
            next_serial: 0,
            ready: Vec::new(),
            dirty: Vec::new(),
            spare: Vec::new(),
            closed: Vec::new(),
            opened: Vec::new(),
            drained: Vec::new(),
            bodies_done: Vec::new(),
            untaken: None,
            spare_fd: accept::reserve_fd(),
            accept_paused_until: None,
            accept_backoff: accept::MIN_BACKOFF,
            notices: oplog::Throttle::new(NOTICE_EVERY),
            requests: Arc::default(),
            asked: Arc::default(),
            notified: Arc::default(),
            waker: Arc::new(waker),
            seat: None,
            draining_until: None,
            next_sweep: now + SWEEP_INTERVAL,
            stats: Stats::default(),
            started: now,
            splicer,
            shared: ReadBuf::new(0),
        };
        Ok(Reactor { core, service })
    }

    /// A handle to shut the reactor down or ask for its counters from another thread.
    pub fn handle(&self) -> Handle {
        Handle {
            waker: Arc::clone(&self.core.waker),
            requests: Arc::clone(&self.core.requests),
            asked: Arc::clone(&self.core.asked),
        }
    }

    /// A [`Notifier`] that has the service's [`Service::on_wake`] called from any
    /// thread (another reactor with a message for it, say).
    pub fn notifier(&self) -> Notifier {
        Notifier::new(
            Arc::clone(&self.core.waker),
            Arc::clone(&self.core.notified),
        )
    }

    /// Takes seat `index` on `board`: the counters are copied there every
    /// [`PUBLISH_EVERY`], and the admin endpoint (if this reactor serves one) shows
    /// the sum of every seat and a row per seat. For `--workers`.
    pub fn share_stats(&mut self, board: Arc<StatsBoard>, index: usize) {
        self.core.seat = Some(fleet::Seat {
            index,
            board,
            due: self.core.now,
        });
    }

    /// The IP addresses of the listeners (TCP, TLS and UDP), in the order given, with
    /// real ports where port 0 was asked for. [`Reactor::listening`] has every
    /// listener with its kind.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.core.listener_addrs(Role::Data)
    }

    /// Every listener, with its kind and real address (a port 0 asked for is the port
    /// the system chose), in the order given: what the daemon prints at start.
    pub fn listening(&self) -> Vec<Listen> {
        self.core
            .listeners
            .iter()
            .filter_map(|&key| match self.core.entries.get(key) {
                Some(Entry::Listener(l)) if l.role == Role::Data => Some(l.listen.clone()),
                Some(Entry::Datagram(d)) => Some(d.listen.clone()),
                _ => None,
            })
            .collect()
    }

    /// The admin endpoint's bound addresses (`Config::admin`), with real ports.
    pub fn admin_addrs(&self) -> Vec<SocketAddr> {
        self.core.listener_addrs(Role::Admin)
    }

    /// What the reactor has done so far.
    pub fn stats(&self) -> Stats {
        self.core.stats
    }

    /// What is true now: open connections, queued output, uptime.
    pub fn gauges(&self) -> Gauges {
        self.core.gauges()
    }

    /// The service.
    pub fn service(&self) -> &S {
        &self.service
    }

    /// The service, to wire it up before [`Reactor::run`] (to other reactors, say).
    pub fn service_mut(&mut self) -> &mut S {
        &mut self.service
    }

    /// Runs the event loop until a [`Handle`]'s shutdown completes or it asks to stop.
    ///
    /// # Errors
    /// Only a failing `poll` (not a connection's trouble, which closes that connection).
    pub fn run(&mut self) -> io::Result<Stopped> {
        let mut events = Events::with_capacity(EVENTS_CAPACITY);
        self.log_start();
        self.core.now = Instant::now();
        {
            let Reactor { core, service } = self;
            service.on_start(&mut Ctx::reactor(core));
        }
        loop {
            self.flush_dirty();
            self.reap();
            if let Some(stopped) = self.drain_finished() {
                self.core.publish_stats();
                self.core.log_stop(stopped);
                return Ok(stopped);
            }
            // One clock read before the poll, which its timeout needed anyway, times
            // the turn that ends here.
            let before_poll = Instant::now();
            self.core.end_turn(before_poll);
            let timeout = self.core.poll_timeout(before_poll);
            match self.core.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if interrupted(&e) => continue,
                Err(e) => return Err(e),
            }
            self.core.now = Instant::now();
            let mut woken = false;
            for event in events.iter() {
                let key = event.token().0;
                // Spurious events happen, and a closed connection's key may be gone.
                match self.core.entries.get_mut(key) {
                    Some(Entry::Listener(listener)) => listener.ready = true,
                    Some(Entry::Waker) => woken = true,
                    Some(Entry::Admin(conn)) => self.core.admin.mark(conn, key),
                    // A writable event needs no flag: a socket with replies queued is
                    // served every turn until they are out.
                    Some(Entry::Datagram(socket)) => {
                        socket.ready |= event.is_readable() || event.is_error();
                    }
                    Some(Entry::Stream(conn)) => {
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            conn.readable = true;
                            conn.hup |= event.is_read_closed() || event.is_error();
                            serve::mark(&mut self.core.ready, &mut conn.in_ready, key);
                        }
                        if event.is_writable() || event.is_error() {
                            serve::mark(&mut self.core.dirty, &mut conn.in_dirty, key);
                        }
                    }
                    None => {}
                }
            }
            if woken && self.core.asked.swap(false, Ordering::SeqCst) && self.on_requests() {
                self.core.publish_stats();
                self.core.log_stop(Stopped::Forced);
                return Ok(Stopped::Forced);
            }
            if woken && self.core.notified.swap(false, Ordering::SeqCst) {
                let Reactor { core, service } = self;
                service.on_wake(&mut Ctx::reactor(core));
            }
            self.core.accept_ready();
            self.core.serve_datagrams();
            self.open_accepted();
            self.serve_ready();
            let service = &self.service;
            self.core.serve_admin(&|| {
                let mut report = Report::default();
                service.report(&mut report);
                report
            });
            if self
                .core
                .seat
                .as_ref()
                .is_some_and(|s| now_due(s.due, self.core.now))
            {
                self.core.publish_stats();
            }
            // After reading, so a frame that arrived with this wake-up counts as activity.
            self.core.expire_timers();
            self.run_service_timers();
            self.core.log_notices();
            if self.core.now >= self.core.next_sweep {
                self.core.release_idle_buffers();
            }
            let now = self.core.now;
            if self.core.stats_line.is_some_and(|l| now >= l.due) {
                let gauges = self.core.gauges();
                if let Some(line) = self.core.stats_line.as_mut() {
                    info!("{}", line.render(&self.core.stats, &gauges, now));
                }
            }
        }
    }

    /// Tells the service about the connections accepted this turn.
    fn open_accepted(&mut self) {
        let Reactor { core, service } = self;
        while let Some((id, peer)) = core.opened.pop() {
            service.on_open(&mut Ctx::reactor(core), id, &peer);
        }
    }

    /// Calls the service for each of its timers that has come due.
    fn run_service_timers(&mut self) {
        let Reactor { core, service } = self;
        while let Some(tag) = core.service_timers.pop_due(core.now) {
            service.on_timer(&mut Ctx::reactor(core), tag);
        }
    }

    /// Acts on what handles asked for. Returns true to stop at once.
    fn on_requests(&mut self) -> bool {
        let requests = std::mem::take(
            &mut *self
                .core
                .requests
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for request in requests {
            match request {
                Request::Shutdown(why) if self.core.draining_until.is_none() => {
                    self.begin_shutdown(why);
                }
                Request::Shutdown(why) => {
                    warn!("{why} again: stopping without finishing the drain");
                    return true;
                }
                Request::Stop(why) => {
                    warn!("{why}: stopping at once");
                    return true;
                }
                Request::LogStats => {
                    let now = self.core.now;
                    let gauges = self.core.gauges();
                    let core = &mut self.core;
                    let mut line = core
                        .stats_line
                        .unwrap_or_else(|| stats::StatsLine::new(Duration::from_secs(1), now));
                    info!("{}", line.render(&core.stats, &gauges, now));
                    if core.stats_line.is_some() {
                        core.stats_line = Some(line);
                    }
                }
            }
        }
        false
    }

    /// Stops accepting, serves what connections have already sent, and starts
    /// flushing everything for up to the drain timeout.
    fn begin_shutdown(&mut self, why: &str) {
        info!(
            "{why}: shutting down; flushing {} connection(s) for up to {:?} (send it again to stop at once)",
            self.core.open, self.core.config.drain_timeout
        );
        let entries = &self.core.entries;
        let (admin, data): (Vec<usize>, Vec<usize>) =
            std::mem::take(&mut self.core.listeners)
                .into_iter()
                .partition(|&key| {
                    matches!(entries.get(key), Some(Entry::Listener(l)) if l.role == Role::Admin)
                });
        self.core.listeners = admin;
        for key in data {
            match self.core.entries.try_remove(key) {
                Some(Entry::Listener(mut listener)) => {
                    if let Err(e) = self.core.poll.registry().deregister(&mut listener.socket) {
                        debug!("deregister listener {}: {e}", listener.listen);
                    }
                }
                // Datagrams have no connection to drain: the socket stops answering
                // now, and replies still queued are dropped with it.
                Some(Entry::Datagram(mut socket)) => {
                    if socket.queued() > 0 {
                        info!(
                            "{}: {} queued repl(ies) dropped at shutdown",
                            socket.listen,
                            socket.queued()
                        );
                    }
                    if let Err(e) = self.core.poll.registry().deregister(socket.socket_mut()) {
                        debug!("deregister {}: {e}", socket.listen);
                    }
                }
                _ => {}
            }
        }
        self.core.draining_until = Some(self.core.now + self.core.config.drain_timeout);
        self.core.timeouts.quiet = Some(serve::SHUTDOWN_QUIET);
        {
            let Reactor { core, service } = self;
            service.on_shutdown(&mut Ctx::reactor(core));
        }
        // Every connection goes on being served: what it sent before the shutdown is
        // answered, and it starts to close once it has nothing more to read, no frame
        // half received and everything written, and nothing has come in or gone out
        // for `SHUTDOWN_QUIET` (`Core::settle`).
        for key in self.core.stream_keys() {
            if let Some(conn) = stream_mut(&mut self.core.entries, key) {
                conn.readable = true;
                serve::mark(&mut self.core.ready, &mut conn.in_ready, key);
            }
        }
    }

    /// During a shutdown: `Some` once every connection is closed, or when the drain
    /// timeout has passed (closing what is left).
    fn drain_finished(&mut self) -> Option<Stopped> {
        let until = self.core.draining_until?;
        if self.core.open == 0 {
            return Some(Stopped::Drained);
        }
        if Instant::now() < until {
            return None;
        }
        let cut = self.core.open;
        let (resets, unanswered) = (self.core.stats.resets, self.core.stats.unanswered_bytes);
        for key in self.core.stream_keys() {
            self.core.close(key, Closed::Shutdown);
        }
        self.reap();
        let reset = self.core.stats.resets - resets;
        if reset > 0 {
            warn!(
                "shutdown: {reset} connection(s) reset at the drain timeout with {} bytes they sent never answered (or output never written)",
                self.core.stats.unanswered_bytes - unanswered
            );
        }
        Some(Stopped::DrainTimedOut { cut })
    }

    fn log_start(&self) {
        let c = &self.core.config;
        let splice = if self.core.splicer.is_some() {
            ", splice"
        } else {
            ""
        };
        info!(
            "{}serving {} listener(s): {}, framing {}{splice}, max frame {} B, max output {} B, max connections {}",
            self.core.who(),
            self.listening().len(),
            self.service.describe(),
            c.framing,
            c.max_frame,
            c.max_output,
            c.max_connections
        );
        for addr in self.local_addrs() {
            // `to_canonical`: [::ffff:127.0.0.1] is IPv4 loopback on a dual-stack socket.
            if !addr.ip().to_canonical().is_loopback() {
                info!(
                    "listening on {addr}, which is not a loopback address: reachable from other hosts"
                );
            }
        }
        for addr in self.admin_addrs() {
            let reach = if addr.ip().is_loopback() {
                ""
            } else {
                ", which is not a loopback address: reachable from other hosts"
            };
            info!("admin endpoint on http://{addr}/ (/metrics, /stats, /healthz, /connz){reach}");
        }
    }
}

impl Core {
    /// The addresses of the listeners with `role`.
    fn listener_addrs(&self, role: Role) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|&key| match self.entries.get(key) {
                Some(Entry::Listener(l)) if l.role == role => l.listen.socket_addr(),
                Some(Entry::Datagram(d)) if role == Role::Data => d.listen.socket_addr(),
                _ => None,
            })
            .collect()
    }

    /// With `--workers`: copies the counters to this reactor's seat on the board.
    fn publish_stats(&mut self) {
        let (stats, gauges, now) = (self.stats, self.gauges(), self.now);
        if let Some(seat) = self.seat.as_mut() {
            seat.publish(stats, gauges, now);
        }
    }

    /// Counts the turn that began at `self.now` and ends at `end`.
    fn end_turn(&mut self, end: Instant) {
        let micros = end.saturating_duration_since(self.now).as_micros();
        self.stats.turns += 1;
        let micros = u64::try_from(micros).unwrap_or(u64::MAX);
        if micros > self.stats.longest_turn_us {
            self.stats.longest_turn_us = micros;
        }
    }

    /// Logs the operator lines whose second is up, each with the count it folded.
    fn log_notices(&mut self) {
        use oplog::Notice;
        let max = self.config.max_connections;
        let timeouts = self.timeouts;
        let limit = |d: Option<Duration>| d.map_or_else(|| "off".into(), |d| format!("{d:?}"));
        for (kind, n, over) in self.notices.due(self.now) {
            let secs = over.as_secs_f64();
            match kind {
                Notice::OverLimit => {
                    warn!("refused {n} connection(s): at the limit of {max} connections")
                }
                Notice::Denied => info!(
                    "refused {n} more connection(s) by the access rules in the last {secs:.1} s"
                ),
                Notice::IdleTimeout => info!(
                    "idle timeout: {n} more connection(s) closed in the last {secs:.1} s (--idle-timeout {})",
                    limit(timeouts.idle)
                ),
                Notice::FrameTimeout => info!(
                    "frame timeout: {n} more connection(s) closed in the last {secs:.1} s (--frame-timeout {})",
                    limit(timeouts.frame)
                ),
                Notice::WriteTimeout => info!(
                    "write timeout: {n} more connection(s) closed in the last {secs:.1} s (--write-timeout {})",
                    limit(timeouts.write)
                ),
                Notice::ProtocolError => info!(
                    "protocol error: {n} more connection(s) closed in the last {secs:.1} s (each is logged at debug)"
                ),
            }
        }
    }

    /// The open connection `id` names (not a later one reusing its key).
    fn stream(&self, id: ConnId) -> Option<&Connection> {
        match self.entries.get(id.key()) {
            Some(Entry::Stream(conn)) if conn.serial == id.serial => Some(conn),
            _ => None,
        }
    }

    /// As [`Core::stream`], mutable.
    fn stream_mut(&mut self, id: ConnId) -> Option<&mut Connection> {
        stream_of(&mut self.entries, id)
    }

    /// The key of connection `id`, while it is in the slab.
    fn key_of(&self, id: ConnId) -> Option<usize> {
        self.stream(id).map(|_| id.key())
    }

    /// The keys of every connection.
    fn stream_keys(&self) -> Vec<usize> {
        self.entries
            .iter()
            .filter(|(_, e)| matches!(e, Entry::Stream(_)))
            .map(|(key, _)| key)
            .collect()
    }

    /// Every open connection.
    fn open_ids(&self) -> Vec<ConnId> {
        self.entries
            .iter()
            .filter_map(|(key, e)| match e {
                Entry::Stream(c) if c.phase == Phase::Open => Some(ConnId::new(key, c.serial)),
                _ => None,
            })
            .collect()
    }

    /// Whether any listener may have connections waiting (data or admin).
    fn any_listener_ready(&self) -> bool {
        self.listeners
            .iter()
            .any(|&key| matches!(self.entries.get(key), Some(Entry::Listener(l)) if l.ready))
    }

    /// How long the next poll may block: not at all while work is pending (connections
    /// to read or to flush, admin requests), otherwise until the earliest deadline
    /// (timers, accept pause, drain), or indefinitely.
    fn poll_timeout(&self, now: Instant) -> Option<Duration> {
        let accepting = self.accept_paused_until.is_none();
        // Output queued by the callbacks that run after the flush (on_drain,
        // on_body_done, on_close) is flushed next turn, without waiting for an event.
        if !self.ready.is_empty()
            || !self.dirty.is_empty()
            || self.admin.has_ready()
            || (accepting && self.any_listener_ready())
            || self.any_datagram_ready()
        {
            return Some(Duration::ZERO);
        }
        let deadlines = [
            self.timers.next(),
            self.service_timers.next(),
            self.accept_paused_until,
            self.draining_until,
            (self.open > 0).then_some(self.next_sweep),
            self.stats_line.map(|line| line.due),
            self.seat.as_ref().map(|seat| seat.due),
            self.notices.next_due(),
            self.admin.next_deadline(),
        ];
        let next = deadlines.into_iter().flatten().min()?;
        Some(next.saturating_duration_since(now))
    }

    /// Closes every connection whose deadline has passed; re-arms those whose deadline
    /// has moved on since their entry was made.
    fn expire_timers(&mut self) {
        while let Some((when, key, serial)) = self.timers.pop_due(self.now) {
            let Some(conn) = stream_mut(&mut self.entries, key) else {
                continue;
            };
            if conn.serial != serial
                || conn.clock.armed != Some(when)
                || conn.phase == Phase::Closed
            {
                continue; // a stale entry: superseded, or for an earlier connection
            }
            conn.clock.armed = None;
            match conn.deadline(&self.timeouts) {
                Some((deadline, Expiry::Quiet)) if deadline <= self.now => {
                    conn.clock.armed = None;
                    self.settle(key);
                }
                Some((deadline, expiry)) if deadline <= self.now => {
                    let (count, notice) = match expiry {
                        Expiry::Idle => (&mut self.stats.idle_timeouts, Notice::IdleTimeout),
                        Expiry::Frame => (&mut self.stats.frame_timeouts, Notice::FrameTimeout),
                        Expiry::Write => (&mut self.stats.write_timeouts, Notice::WriteTimeout),
                        Expiry::Handshake => {
                            self.stats.tls_handshake_timeouts += 1;
                            debug!("{}: closing: {expiry}", conn.peer);
                            self.close(key, Closed::Timeout(expiry));
                            continue;
                        }
                        Expiry::Linger | Expiry::Quiet => {
                            self.close(key, Closed::Timeout(expiry));
                            continue;
                        }
                    };
                    *count += 1;
                    if self.notices.admit(notice, self.now) {
                        info!("{}: closing: {expiry}", conn.peer);
                    }
                    // A goodbye can still be written after an idle or frame timeout (not
                    // when writes stall); the connection then closes as any drain does.
                    if self.config.goodbye
                        && conn.phase == Phase::Open
                        && matches!(expiry, Expiry::Idle | Expiry::Frame)
                    {
                        debug!("{}: {expiry}; saying goodbye", conn.peer);
                        conn.clock.linger_until = Some(self.now + serve::LINGER);
                        self.goodbye(key, &expiry.to_string());
                        self.drain(key);
                        self.rearm(key);
                        continue;
                    }
                    self.close(key, Closed::Timeout(expiry));
                }
                Some((deadline, _)) => {
                    conn.clock.armed = Some(deadline);
                    self.timers.arm(deadline, key, serial);
                }
                None => {}
            }
        }
    }

    /// Makes sure connection `key` has a timer entry no later than its deadline. Called
    /// when a deadline may have moved earlier (a frame or a write stall began).
    fn rearm(&mut self, key: usize) {
        let Some(conn) = stream_mut(&mut self.entries, key) else {
            return;
        };
        if let Some((when, _)) = conn.deadline(&self.timeouts) {
            if conn.clock.armed.is_none_or(|armed| when < armed) {
                conn.clock.armed = Some(when);
                self.timers.arm(when, key, conn.serial);
            }
        }
    }

    /// Gives back the empty read buffers of connections with no complete frame in or out
    /// for [`RELEASE_IDLE_AFTER`]. O(connections) once per [`SWEEP_INTERVAL`], only while
    /// there are connections: a few microseconds a second for thousands of them.
    fn release_idle_buffers(&mut self) {
        self.next_sweep = self.now + SWEEP_INTERVAL;
        for (_, entry) in self.entries.iter_mut() {
            let Entry::Stream(conn) = entry else {
                continue;
            };
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

    fn log_stop(&self, stopped: Stopped) {
        let who = self.who();
        match stopped {
            Stopped::Drained => info!("{who}shutdown complete: every connection flushed"),
            Stopped::DrainTimedOut { cut } => {
                warn!("{who}shutdown: drain timeout reached; closed {cut} connection(s) with output pending")
            }
            Stopped::Forced => warn!("{who}shutdown forced; {} connection(s) dropped", self.open),
        }
        info!("{who}totals: {}", self.stats.render(&self.gauges(), false));
    }

    /// `worker N: ` before a worker's lifecycle lines (`--workers`), else nothing.
    fn who(&self) -> String {
        self.seat
            .as_ref()
            .map(|seat| format!("worker {}: ", seat.index))
            .unwrap_or_default()
    }
}

/// True once `due` has come at `now`.
fn now_due(due: Instant, now: Instant) -> bool {
    now >= due
}

/// True for the error that ends a read or write loop: the socket has no more for now.
fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

/// True for the error after which a call is simply made again.
fn interrupted(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::Interrupted
}
