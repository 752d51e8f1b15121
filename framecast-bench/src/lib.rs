//! `framecast-bench`, the load generator, as a library: it connects to a server that
//! speaks one of framecast's framings, loads it from one or more event-loop threads,
//! verifies every frame that comes back, and reports rates, latency, errors and CPU
//! time. The command line (`src/bin/framecast-bench.rs`) only parses flags into a
//! [`BenchConfig`], calls [`run`] and prints the [`Report`].
//!
//! # Layout
//! - [`config`]: [`BenchConfig`], scenarios, load shapes, `--size MIN..MAX`, validation.
//! - [`payload`]: the integrity format inside each frame (ids, sequence, stamp,
//!   checksum); sans-IO.
//! - [`track`]: per-sender sequence tracking: lost, duplicated, reordered; sans-IO.
//! - `conn`: one connection's socket, buffers, sending and verification.
//! - `worker`: one thread's mio event loop: when to send, read, drain.
//! - [`pacer`]: the open loop's schedule (sans-IO) and its `timerfd`.
//! - [`stats`]: counters and the latency histogram, merged across threads.
//! - [`cpu`]: CPU time of a process from `/proc`.
//! - [`report`]: the summary as text and JSON, the progress line.
//! - [`chaos`]: the chaos scenario: a [`run`] of verified traffic beside hostile
//!   clients, and the server's peak memory and CPU over it.
//! - [`server_stats`]: `--server-stats`, the daemon's `/stats` before and after.
//!
//! # A run
//! 1. Connect every connection from this thread, in order (broadcast: subscribers
//!    before publishers, so the server knows every receiver before the first frame),
//!    at `--connect-rate` if given, from the `--source` addresses in turn, after
//!    raising the soft open-file limit as far as needed and allowed. Any failure ends
//!    the run, naming the likely limit (open files, ephemeral ports, the server's
//!    backlog); the set-up time goes into the report.
//! 2. Hand the connections round-robin to `--threads` workers and start the clock.
//!    Warmup, then the measured window: only frames received in it count towards
//!    rates, only frames sent in it (by their stamp) towards latency, even when they
//!    come back in the drain; errors count throughout.
//! 3. At the end, stop sending and drain until nothing arrives for [`DRAIN`] (time the
//!    bench itself was stalled does not count); what has not come back
//!    by then is unanswered. Meanwhile this thread prints a progress line each second
//!    and reads CPU times at the start and end of the measured window. An interrupt
//!    (Ctrl-C) moves the end to the moment this thread sees it: the workers stop
//!    sending and drain, and the report covers the shorter window.

pub mod chaos;
pub mod config;
mod conn;
pub mod cpu;
pub mod pacer;
pub mod payload;
pub mod report;
pub mod server_stats;
pub mod stats;
pub mod track;
pub mod udp;
mod worker;

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr, TcpStream as StdTcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use config::Transport;
use framecast::fd_limit::FdLimit;
use framecast::reactor::{Stream, TlsStream};
use mio::{Poll, Token, Waker};
use socket2::{Domain, Protocol, Socket, Type};

pub use config::{BenchConfig, ConfigError, Load, Scenario, SizeRange};
pub use report::{Report, Status};

use conn::{Conn, Role};
use framecast::codec::Codec;
use framecast::codec::Framing;
use pacer::Pacer;
use payload::Pattern;
use stats::{Progress, ProgressTotals, Stats};
use worker::{Board, Plan, Worker, NOT_CUT, PACER, WAKER};

/// At the end, how long without a single frame arriving before frames still in flight
/// count as unanswered. Only time the bench was running counts, in steps of at most
/// [`DRAIN_STEP`]: a machine that stalls everything for seconds (a loaded CI host) must
/// not turn into lost frames.
pub const DRAIN: Duration = Duration::from_secs(2);
/// The most one turn of the event loop adds to the drain's quiet time.
pub const DRAIN_STEP: Duration = Duration::from_millis(100);
/// Hard limit on the drain, for a server that trickles frames back forever.
pub const MAX_DRAIN: Duration = Duration::from_secs(30);
/// How long one connection attempt may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Interval of the progress line.
pub const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);
/// With `--room` and raw framing, the pause between the last join and the first frame.
const RAW_JOIN_PAUSE: Duration = Duration::from_millis(100);
/// Longest a paced connect waits before it looks at the interrupt flag again.
const INTERRUPT_CHECK: Duration = Duration::from_millis(50);

/// A run that could not start.
#[derive(Debug)]
pub enum RunError {
    /// The configuration cannot run.
    Config(ConfigError),
    /// A connection could not be established.
    Connect {
        /// The target, as named on the command line.
        addr: String,
        /// Connections established before this one.
        established: usize,
        /// Time spent connecting until the failure.
        after: Duration,
        /// Why, as the OS said it.
        source: io::Error,
    },
    /// An event loop could not be set up.
    Setup(io::Error),
    /// Interrupted (Ctrl-C) while connecting, before any load was sent.
    Interrupted {
        /// Connections established by then.
        established: usize,
    },
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::Config(e) => e.fmt(f),
            RunError::Connect {
                addr,
                established: 0,
                source,
                ..
            } if !is_local_limit(source) => write!(
                f,
                "cannot connect to {addr}: {source} (is the server running and listening there?)"
            ),
            RunError::Connect {
                addr,
                established,
                after,
                source,
            } => write!(
                f,
                "cannot open connection {} to {addr}: {source} ({established} were established \
                 in {:.2} s){}",
                established + 1,
                after.as_secs_f64(),
                connect_hint(source)
            ),
            RunError::Setup(e) => write!(f, "cannot set up the event loop: {e}"),
            RunError::Interrupted { established } => write!(
                f,
                "interrupted while connecting ({established} connection(s) established); nothing was measured"
            ),
        }
    }
}

impl std::error::Error for RunError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RunError::Config(e) => Some(e),
            RunError::Connect { source, .. } | RunError::Setup(source) => Some(source),
            RunError::Interrupted { .. } => None,
        }
    }
}

impl From<ConfigError> for RunError {
    fn from(e: ConfigError) -> Self {
        RunError::Config(e)
    }
}

/// Runs the benchmark `config` describes, calling `progress` with a line of text about
/// once a second, and returns the report. Once `interrupt` turns true (a signal
/// handler sets it), the run ends early as if its duration were up: sending stops,
/// frames in flight are drained, and the report covers the window measured so far.
///
/// # Errors
/// [`RunError`] if the configuration is invalid, a connection cannot be established, an
/// event loop cannot be created, or `interrupt` turns true while connecting. Trouble
/// once the run is under way (the server closing connections, corrupting or losing
/// frames) is in the report instead.
pub fn run(
    config: &BenchConfig,
    progress: &mut dyn FnMut(&str),
    interrupt: &AtomicBool,
) -> Result<Report, RunError> {
    config.validate()?;
    let threads = config.effective_threads();
    let wanted = config.scenario.connections().saturating_add(4 * threads);
    match framecast::fd_limit::raise_for(wanted) {
        Ok(FdLimit::Short { limit, wanted }) => progress(&format!(
            "note: the open-file limit is {limit} and its hard limit keeps it there; {wanted} \
             descriptors are wanted, so connections past it will fail"
        )),
        Ok(_) => {}
        Err(e) => progress(&format!("note: cannot raise the open-file limit: {e}")),
    }
    let (streams, connect_time) = connect_all(config, progress, interrupt)?;

    let mut polls = Vec::with_capacity(threads);
    let mut wakers = Vec::with_capacity(threads);
    for _ in 0..threads {
        let poll = Poll::new().map_err(RunError::Setup)?;
        wakers.push(Waker::new(poll.registry(), WAKER).map_err(RunError::Setup)?);
        polls.push(poll);
    }
    let board = match config.scenario {
        Scenario::Broadcast { publishers, .. } => Some(Arc::new(Board::new(publishers, wakers))),
        Scenario::Echo { .. } => None,
    };
    let progress_counters: Arc<Vec<Progress>> =
        Arc::new((0..threads).map(|_| Progress::default()).collect());

    // Everything that takes time is done before the clock starts.
    let pattern = Pattern::new(config.format(), config.size.min, config.size.max);
    let epoch = Instant::now();
    let warm_end = epoch + config.warmup;
    let end = warm_end + config.duration;
    let plan = Arc::new(plan(config, pattern, threads, epoch, warm_end, end));
    let mut pacers = Vec::with_capacity(threads);
    for poll in &polls {
        pacers.push(match config.load {
            Load::Open { .. } => {
                Some(Pacer::new(poll.registry(), PACER, epoch).map_err(RunError::Setup)?)
            }
            Load::Closed { .. } => None,
        });
    }

    let mut shares: Vec<Vec<Conn>> = (0..threads).map(|_| Vec::new()).collect();
    let senders = config.scenario.senders();
    for (id, role, stream) in streams {
        let t = id as usize % threads;
        let token = Token(shares[t].len());
        let mut conn = Conn::new(stream, token, id, role, &plan);
        if let Load::Open { rate } = config.load {
            // Sender `k` of `senders` sends every `senders / rate` s, offset by
            // `k / rate` s, so the frames of all senders together are evenly spaced.
            // Senders have ids 0..senders in both scenarios.
            let k = f64::from(id);
            conn.schedule = (k / rate * 1e9, senders as f64 / rate * 1e9);
        }
        shares[t].push(conn);
    }

    let bench_at_start = cpu::process_time(None).ok();
    let mut window_start: Option<(Option<Duration>, Option<Duration>)> = None;
    let mut window_end: Option<(Instant, Option<Duration>, Option<Duration>)> = None;
    let outcomes = thread::scope(|scope| {
        let handles: Vec<_> = polls
            .into_iter()
            .zip(shares)
            .zip(pacers)
            .enumerate()
            .map(|(index, ((poll, conns), pacer))| {
                let worker = Worker::new(
                    index,
                    poll,
                    conns,
                    Arc::clone(&plan),
                    Arc::clone(&progress_counters),
                    board.clone(),
                    pacer,
                );
                thread::Builder::new()
                    .name(format!("bench-{index}"))
                    .spawn_scoped(scope, move || worker.run())
            })
            .collect();
        let total = config.scenario.connections();
        let mut last = (epoch, ProgressTotals::default());
        let mut next_tick = epoch + PROGRESS_INTERVAL;
        loop {
            let running = handles
                .iter()
                .any(|h| h.as_ref().is_ok_and(|h| !h.is_finished()));
            let now = Instant::now();
            // A signal after the planned end changes nothing: the drain is under way.
            if interrupt.load(Ordering::Relaxed) && !plan.is_cut() && now < plan.end() {
                plan.cut_at(now);
            }
            let end = plan.end();
            if window_start.is_none() && (now >= warm_end.min(end) || !running) {
                window_start = Some((
                    cpu::process_time(None).ok(),
                    config
                        .server_pid
                        .and_then(|pid| cpu::process_time(Some(pid)).ok()),
                ));
            }
            if window_end.is_none() && (now >= end || !running) {
                window_end = Some((
                    now.min(end),
                    cpu::process_time(None).ok(),
                    config
                        .server_pid
                        .and_then(|pid| cpu::process_time(Some(pid)).ok()),
                ));
            }
            if !running {
                break;
            }
            if now >= next_tick {
                let totals = ProgressTotals::sum(progress_counters.iter());
                let secs = now.duration_since(last.0).as_secs_f64().max(1e-9);
                // The phase of the second the line covers, judged at its middle.
                let middle = now.checked_sub(PROGRESS_INTERVAL / 2).unwrap_or(now);
                let phase = if middle < warm_end {
                    "warmup"
                } else if middle >= end {
                    "drain"
                } else {
                    ""
                };
                progress(&report::progress_line(
                    now.duration_since(epoch),
                    phase,
                    (totals.frames - last.1.frames) as f64 / secs,
                    (totals.bytes - last.1.bytes) as f64 / 1e6 / secs,
                    totals.up,
                    total,
                    totals.errors,
                ));
                last = (now, totals);
                next_tick += PROGRESS_INTERVAL;
            }
            let mut wake = next_tick;
            if window_start.is_none() {
                wake = wake.min(warm_end);
            }
            if window_end.is_none() {
                wake = wake.min(end);
            }
            // Short naps so a run whose connections all fail ends at once.
            thread::sleep(
                wake.saturating_duration_since(Instant::now())
                    .min(Duration::from_millis(50)),
            );
        }
        handles
            .into_iter()
            .map(|h| h.ok().and_then(|h| h.join().ok()))
            .collect::<Vec<_>>()
    });

    let mut stats = Stats::new();
    let mut first_close = None;
    let mut all_closed_at: Option<Instant> = None;
    let mut threads_lost = 0;
    let mut all_closed = true;
    for outcome in outcomes {
        let Some(outcome) = outcome else {
            threads_lost += 1;
            continue;
        };
        stats.merge(&outcome.stats);
        first_close = first_close.or(outcome.first_close);
        match outcome.all_closed_at {
            Some(at) => all_closed_at = Some(all_closed_at.map_or(at, |t: Instant| t.max(at))),
            None => all_closed = false,
        }
    }
    let aborted = if threads_lost > 0 {
        Some(format!(
            "{threads_lost} event-loop thread(s) failed to start or panicked"
        ))
    } else if all_closed {
        let at = all_closed_at.map_or(0.0, |t| t.duration_since(epoch).as_secs_f64());
        Some(format!(
            "every connection closed after {at:.2} s, before the end of the run (first: {}); is the server still running?",
            first_close.as_deref().unwrap_or("no reason given")
        ))
    } else {
        None
    };
    let (cpu_start_bench, cpu_start_server) = window_start.unwrap_or((bench_at_start, None));
    let (measured_end, cpu_end_bench, cpu_end_server) =
        window_end.unwrap_or((plan.end(), None, None));
    let measured = measured_end.saturating_duration_since(warm_end);
    let diff = |a: Option<Duration>, b: Option<Duration>| match (a, b) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a)),
        _ => None,
    };
    Ok(Report {
        config: config.clone(),
        measured,
        stats,
        bench_cpu: diff(cpu_start_bench, cpu_end_bench),
        server_cpu: diff(cpu_start_server, cpu_end_server),
        aborted,
        interrupted: plan.is_cut(),
        connect_time,
        warmed_up: plan.end().min(warm_end).saturating_duration_since(epoch),
    })
}

/// The read-only plan every worker shares.
fn plan(
    config: &BenchConfig,
    pattern: Pattern,
    threads: usize,
    epoch: Instant,
    warm_end: Instant,
    end: Instant,
) -> Plan {
    let (encoder, decoder) = match config.framing {
        // No framing on the wire: the messages are cut by their (single) size on the
        // way back, so every byte is still checked where it belongs.
        Framing::Raw => (
            Codec::new(Framing::Raw, config.size.max),
            Codec::new(Framing::Fixed(config.size.max), config.size.max),
        ),
        framing => {
            let codec = Codec::new(framing, config.size.max);
            (codec.clone(), codec)
        }
    };
    let publishers = match config.scenario {
        Scenario::Broadcast { publishers, .. } => publishers,
        Scenario::Echo { .. } => 0,
    };
    let realign = match config.framing {
        Framing::Raw | Framing::Fixed(_) => Some(config.size.max),
        _ => None,
    };
    Plan {
        encoder,
        decoder,
        pattern,
        realign,
        size: config.size,
        load: config.load,
        publishers,
        seed: config.seed,
        threads,
        epoch,
        warm_end,
        planned_end: end,
        cut: AtomicU64::new(NOT_CUT),
    }
}

/// True for the errors that are this machine's limits rather than the server's answer.
fn is_local_limit(e: &io::Error) -> bool {
    use rustix::io::Errno;
    [
        Errno::MFILE,
        Errno::NFILE,
        Errno::ADDRNOTAVAIL,
        Errno::NOBUFS,
    ]
    .iter()
    .any(|errno| e.raw_os_error() == Some(errno.raw_os_error()))
}

/// What to do about a connection that failed, by its error.
fn connect_hint(e: &io::Error) -> String {
    use rustix::io::Errno;
    let is = |errno: Errno| e.raw_os_error() == Some(errno.raw_os_error());
    if is(Errno::MFILE) {
        let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
        let show = |l: Option<u64>| l.map_or_else(|| "unlimited".to_owned(), |l| l.to_string());
        format!(
            "; the open-file limit is {} (hard {}): raise the hard limit (ulimit -Hn as root, \
             LimitNOFILE= in systemd, /etc/security/limits.conf), or split the connections \
             over several bench processes",
            show(limit.current),
            show(limit.maximum)
        )
    } else if is(Errno::NFILE) {
        "; the system's open-file table is full (fs.file-max)".to_owned()
    } else if is(Errno::ADDRNOTAVAIL) {
        "; out of ephemeral ports towards this target: connect from more local addresses \
         (--source 127.0.0.2-127.0.0.9) or widen net.ipv4.ip_local_port_range"
            .to_owned()
    } else if e.kind() == io::ErrorKind::TimedOut || e.kind() == io::ErrorKind::ConnectionRefused {
        "; the server's accept backlog or connection limit may be full (framecast \
         --max-connections, net.core.somaxconn); try --connect-rate"
            .to_owned()
    } else {
        String::new()
    }
}

/// Connects one stream to the target by its transport, from `source` if given (TCP
/// and TLS), non-blocking; a TLS session has done its handshake.
fn connect_one(config: &BenchConfig, source: Option<IpAddr>) -> io::Result<Stream> {
    let target = config.target;
    match &config.transport {
        Transport::Unix(path) => {
            let stream = std::os::unix::net::UnixStream::connect(path)?;
            stream.set_nonblocking(true)?;
            Ok(Stream::Unix(mio::net::UnixStream::from_std(stream)))
        }
        Transport::Tls { config, name } => {
            let mut tcp = connect_tcp(target, source)?;
            let name = rustls::pki_types::ServerName::try_from(name.clone())
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
            let mut tls = rustls::ClientConnection::new(std::sync::Arc::clone(config), name)
                .map_err(io::Error::other)?;
            // Blocking, bounded: the handshake is part of connecting, not of the run.
            tcp.set_nonblocking(false)?;
            tcp.set_read_timeout(Some(CONNECT_TIMEOUT))?;
            tcp.set_write_timeout(Some(CONNECT_TIMEOUT))?;
            while tls.is_handshaking() {
                tls.complete_io(&mut tcp)?;
            }
            tcp.set_read_timeout(None)?;
            tcp.set_write_timeout(None)?;
            tcp.set_nonblocking(true)?;
            let stream = TlsStream::new(mio::net::TcpStream::from_std(tcp), tls);
            Ok(Stream::Tls(Box::new(stream)))
        }
        Transport::Tcp | Transport::Udp => Ok(Stream::Tcp(mio::net::TcpStream::from_std(
            connect_tcp(target, source)?,
        ))),
    }
}

/// Connects one TCP socket to `target`, from `source` if given.
fn connect_tcp(target: SocketAddr, source: Option<IpAddr>) -> io::Result<StdTcpStream> {
    let stream = match source {
        None => StdTcpStream::connect_timeout(&target, CONNECT_TIMEOUT)?,
        Some(ip) => {
            let socket = Socket::new(
                Domain::for_address(target),
                Type::STREAM,
                Some(Protocol::TCP),
            )?;
            socket.bind(&SocketAddr::new(ip, 0).into())?;
            socket.connect_timeout(&target.into(), CONNECT_TIMEOUT)?;
            socket.into()
        }
    };
    stream.set_nodelay(true)?;
    stream.set_nonblocking(true)?;
    Ok(stream)
}

/// Sends the frame that joins `room` on a new connection, before the run: a few bytes
/// into an empty socket buffer, so one write takes them.
fn join(stream: &mut Stream, framing: Framing, room: &[u8]) -> io::Result<()> {
    use framecast::Encoder;
    use std::io::Write;
    let mut frame = bytes::BytesMut::new();
    framecast::Codec::new(framing, room.len())
        .encode(room, &mut frame)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    let n = stream.write(&frame)?;
    if n == frame.len() {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "the join frame was not taken whole",
        ))
    }
}

/// A connection established: its id, its role, its socket.
type Connected = (u32, Role, Stream);

/// Opens every connection, in the order the scenario needs, at the connect rate, from
/// the source addresses in turn; returns them and how long it took.
fn connect_all(
    config: &BenchConfig,
    progress: &mut dyn FnMut(&str),
    interrupt: &AtomicBool,
) -> Result<(Vec<Connected>, Duration), RunError> {
    let order: Vec<(u32, Role)> = match config.scenario {
        Scenario::Echo { connections } => {
            (0..connections as u32).map(|id| (id, Role::Echo)).collect()
        }
        Scenario::Broadcast {
            publishers,
            subscribers,
        } => {
            let p = publishers as u32;
            (p..p + subscribers as u32)
                .map(|id| (id, Role::Subscriber))
                .chain((0..p).map(|id| (id, Role::Publisher)))
                .collect()
        }
    };
    let started = Instant::now();
    let mut next_tick = started + PROGRESS_INTERVAL;
    let mut streams = Vec::with_capacity(order.len());
    for (n, (id, role)) in order.into_iter().enumerate() {
        if let Some(rate) = config.connect_rate {
            // Validation bounds the pacing; should it not have, wait the longest run
            // rather than panic on the conversion or the addition.
            let delay = Duration::try_from_secs_f64(n as f64 / rate)
                .unwrap_or(config::MAX_DURATION)
                .min(config::MAX_DURATION);
            let due = started.checked_add(delay).unwrap_or(started);
            while !interrupt.load(Ordering::Relaxed) && Instant::now() < due {
                thread::sleep(
                    due.saturating_duration_since(Instant::now())
                        .min(INTERRUPT_CHECK),
                );
            }
        }
        if interrupt.load(Ordering::Relaxed) {
            return Err(RunError::Interrupted { established: n });
        }
        let source = (!config.sources.is_empty()).then(|| config.sources[n % config.sources.len()]);
        let mut stream = connect_one(config, source).map_err(|source| RunError::Connect {
            addr: config.target_name(),
            established: n,
            after: started.elapsed(),
            source,
        })?;
        if let Some(room) = &config.room {
            join(&mut stream, config.framing, room).map_err(|source| RunError::Connect {
                addr: config.target_name(),
                established: n,
                after: started.elapsed(),
                source,
            })?;
        }
        streams.push((id, role, stream));
        if Instant::now() >= next_tick {
            progress(&format!(
                "connecting: {}/{}",
                n + 1,
                config.scenario.connections()
            ));
            next_tick += PROGRESS_INTERVAL;
        }
    }
    if config.room.is_some() && config.framing == Framing::Raw {
        // No boundaries in a raw stream: the server takes a connection's first read as
        // the room's name, so the first frames must not follow the join too closely
        // (a publisher's, coalesced with it, made a room name of 525 bytes).
        thread::sleep(RAW_JOIN_PAUSE);
    }
    Ok((streams, started.elapsed()))
}
