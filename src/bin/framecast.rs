//! The framecast daemon: command line -> `Config` + a service -> `Reactor` -> run. The
//! only place where errors become exit codes: 0 after a graceful shutdown, 1 when the
//! daemon cannot start, fails, or is stopped by a second signal, 2 for a bad command
//! line. Signals arrive on a thread of their own and reach the reactor through its
//! `Handle`.

use std::fmt;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;
use std::time::Duration;

use bytes::BytesMut;
use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};
use framecast::access::{AccessList, Cidr};
use framecast::codec::{Codec, Encoder, Oversize};
use framecast::config::{self, parse_duration, parse_optional_duration, parse_size, TlsFiles};
use framecast::fd_limit::{self, FdLimit};
use framecast::service::broadcast::BridgeConfig;
use framecast::service::{broadcast, Broadcast, Echo, Greeting, SlowConsumer};
use framecast::workers::{WorkerEnd, Workers};
use framecast::{Config, Framing, Handle, Listen, Reactor, Service, Stopped};
use log::{info, warn};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
use signal_hook::iterator::Signals;

/// What the daemon does with complete frames: which service it runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Mode {
    /// Each frame goes back to its sender, in order.
    #[default]
    Echo,
    /// Each frame goes to every other connected client (chat-room style).
    Broadcast,
}

impl FromStr for Mode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "echo" => Ok(Mode::Echo),
            "broadcast" => Ok(Mode::Broadcast),
            _ => Err(format!("unknown value '{s}' (expected echo or broadcast)")),
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Echo => "echo",
            Mode::Broadcast => "broadcast",
        })
    }
}

/// What the signals do, for `--help`.
const SIGNALS_HELP: &str = "Signals:
  SIGINT, SIGTERM  graceful shutdown: stop accepting, flush every connection for up to
                   the drain timeout, exit 0; a second one stops at once (exit 1)
  SIGUSR1          log the counters (the --stats-interval line) at once
  SIGHUP           logged and otherwise ignored: there is no configuration to reload";

/// A TCP daemon that cuts byte streams into frames and echoes or broadcasts them.
#[derive(Debug, Parser)]
#[command(name = "framecast", version, about, max_term_width = 100, after_help = SIGNALS_HELP)]
struct Args {
    /// Address to listen on: [tcp://]HOST:PORT (every address the name resolves to; IP:PORT,
    /// [::1]:PORT) or a bare PORT on loopback, unix:PATH, udp://HOST:PORT or
    /// tls://HOST:PORT; may be given several times, in any mix.
    #[arg(
        long = "listen",
        value_name = "ADDR",
        default_value = config::DEFAULT_LISTEN,
        value_parser = parse_listen
    )]
    listen: Vec<Listeners>,

    /// What to do with each complete frame: echo (back to its sender) or broadcast (to
    /// every other client).
    #[arg(long, value_name = "MODE", default_value = "echo")]
    mode: Mode,

    /// In broadcast mode, also send each frame back to its sender.
    #[arg(long)]
    echo_self: bool,

    /// In broadcast mode, what happens when a client's backlog (output waiting behind
    /// the frames being written to it) passes --max-output: pace (lossless: its
    /// publishers are read no further until it drains below half; one that keeps a
    /// publisher waiting past --slow-consumer-timeout is closed), disconnect it, or drop
    /// whole frames for it until it catches up.
    #[arg(long, value_name = "POLICY", default_value = "pace")]
    slow_consumer: SlowConsumer,

    /// With --slow-consumer pace: how long a client may keep a publisher waiting in one
    /// stretch before it is closed.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "2s")]
    slow_consumer_timeout: Duration,

    /// In broadcast mode, rooms: a client's first frame (1 to 255 bytes) names the room
    /// it joins and goes to nobody; its frames then go only to that room.
    #[arg(long)]
    rooms: bool,

    /// How frames are delimited: u8, u16be, u16le, u32be, u32le, u64be, u64le, line,
    /// fixed:N or raw.
    #[arg(long, value_name = "NAME", default_value = "u32be")]
    framing: Framing,

    /// Largest frame payload accepted (bytes, or with KiB/MiB/GiB); a larger declared
    /// length is a protocol error.
    #[arg(long, value_name = "SIZE", value_parser = parse_size, default_value = "8MiB")]
    max_frame: usize,

    /// Cap on a connection's pending output; past it, reading from that connection
    /// stops until the output drains below half.
    #[arg(long, value_name = "SIZE", value_parser = parse_size, default_value = "4MiB")]
    max_output: usize,

    /// Connections served at once; further ones are accepted and closed at once.
    #[arg(long, value_name = "N", default_value_t = config::DEFAULT_MAX_CONNECTIONS)]
    max_connections: usize,

    /// A frame over --max-frame: close the connection, or skip the frame as it arrives
    /// (never buffering it) and carry on with the next.
    #[arg(long, value_name = "POLICY", value_parser = parse_oversize, default_value = "close")]
    oversize: Oversize,

    /// Close a connection with no complete frame in or out for this long (e.g. 5m), or
    /// off.
    #[arg(long, value_name = "DURATION", value_parser = parse_optional_duration, default_value = "off")]
    idle_timeout: Limit,

    /// A frame whose first byte has arrived must complete within this time (defeats
    /// slowloris clients), or off.
    #[arg(long, value_name = "DURATION", value_parser = parse_optional_duration, default_value = "30s")]
    frame_timeout: Limit,

    /// Close a connection whose pending output makes no progress for this long, or off.
    #[arg(long, value_name = "DURATION", value_parser = parse_optional_duration, default_value = "30s")]
    write_timeout: Limit,

    /// On SIGINT/SIGTERM, how long to keep flushing pending output before exiting.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "5s")]
    drain_timeout: Duration,

    /// Log a line of counters at info this often (connections, frames and bytes per
    /// second, errors), or off.
    #[arg(long, value_name = "DURATION", value_parser = parse_optional_duration, default_value = "off")]
    stats_interval: Limit,

    /// Accept only peers in this address block (repeatable; IPv4 or IPv6, e.g.
    /// 10.0.0.0/8, ::1, or a bare address). Peers are matched as the family they are:
    /// an IPv4 peer on a dual-stack socket matches IPv4 blocks, an IPv4-mapped block
    /// (::ffff:127.0.0.0/104) is the IPv4 block it stands for (127.0.0.0/8), and IPv6
    /// blocks (::/0) never match IPv4 peers. IPv4-compatible addresses (::127.0.0.1)
    /// are refused. Unix-socket peers have no address: the rules do not apply to them
    /// (the socket file's permissions do); UDP datagrams are matched one by one.
    #[arg(long, value_name = "CIDR")]
    allow: Vec<Cidr>,

    /// Refuse peers in this address block (repeatable; wins over --allow; matched as
    /// --allow is).
    #[arg(long, value_name = "CIDR")]
    deny: Vec<Cidr>,

    /// Set TCP_NODELAY on accepted sockets: small frames go out at once.
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    nodelay: bool,

    /// Enable TCP keepalive on accepted sockets, probing after this much idle time
    /// (whole seconds, 1s to 32767s), or off.
    #[arg(long, value_name = "DURATION", value_parser = config::parse_keepalive, default_value = "off")]
    keepalive: Limit,

    /// Listen backlog: connections the kernel queues before they are accepted.
    #[arg(long, value_name = "N", default_value_t = config::DEFAULT_BACKLOG)]
    backlog: u32,

    /// Echo streams read 4 KiB or more at a time with splice(2), never copying them
    /// into the daemon (Linux; needs --framing raw in echo mode). Over loopback the
    /// clients' sends then cost more, and throughput can drop (see the README).
    #[arg(long)]
    splice: bool,

    /// Send one frame with this text to each new connection before anything else (in
    /// every mode), e.g. a chat room's welcome.
    #[arg(long, value_name = "TEXT")]
    greeting: Option<String>,

    /// Before closing a connection for a policy reason (slow consumer, oversize frame,
    /// a timeout, the connection limit, shutdown), send it one last frame saying why.
    #[arg(long)]
    goodbye: bool,

    /// Certificate chain (PEM, the server's certificate first) for tls:// listeners.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    tls_cert: Option<PathBuf>,

    /// Private key (PEM: PKCS#8, PKCS#1 or SEC1) of --tls-cert.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<PathBuf>,

    /// Mutual TLS: clients of tls:// listeners must present a certificate signed by a
    /// CA in this PEM file, or the handshake fails.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,

    /// A TLS handshake must complete within this time after accept.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "10s")]
    tls_handshake_timeout: Duration,

    /// UDP listeners: replies that may wait for room in the socket (each up to 64 KiB);
    /// past it replies are dropped and counted, the loop never blocks.
    #[arg(long, value_name = "N", default_value_t = config::DEFAULT_UDP_QUEUE)]
    udp_queue: usize,

    /// Serve the admin endpoint (HTTP: /metrics, /stats, /healthz, /connz) on this
    /// address: IP:PORT, HOST:PORT or a bare PORT on loopback. Off unless given.
    #[arg(long, value_name = "ADDR", value_parser = parse_admin)]
    admin: Option<AdminAddrs>,

    /// Event-loop threads, each a reactor of its own with its own SO_REUSEPORT
    /// listener (the kernel spreads connections over them); 0 means one per core.
    /// Broadcast rooms span them; --max-connections is split among them.
    #[arg(long, value_name = "N", default_value_t = 1)]
    workers: usize,

    /// In broadcast mode, bridge the rooms through a NATS server (nats://HOST:PORT):
    /// local frames are published there, one message each, and what other daemons
    /// publish comes to the local members. While it is unreachable local rooms go on
    /// and frames bound for it are dropped and counted.
    #[arg(long, value_name = "URL", value_parser = parse_bridge)]
    bridge: Option<(String, SocketAddr)>,

    /// With --bridge: the subject prefix; a room's subject is PREFIX.<its name in
    /// hex> with --rooms, PREFIX without.
    #[arg(long, value_name = "PREFIX", default_value = "framecast", value_parser = parse_subject)]
    bridge_subject: String,
}

/// `nats://HOST:PORT`, resolved now (a reconnect goes to the same address).
fn parse_bridge(text: &str) -> Result<(String, SocketAddr), String> {
    use std::net::ToSocketAddrs;
    let Some(rest) = text.strip_prefix("nats://") else {
        return Err(format!("'{text}' is not nats://HOST:PORT"));
    };
    let addr = rest
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve '{rest}': {e}"))?
        .next()
        .ok_or_else(|| format!("'{rest}' resolves to no address"))?;
    Ok((text.to_owned(), addr))
}

/// A NATS subject without wildcards.
fn parse_subject(text: &str) -> Result<String, String> {
    if framecast::proto::nats::is_valid_subject(text) {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "'{text}' is not a NATS subject (dot-separated tokens, no spaces, no * or >)"
        ))
    }
}

/// The daemon's whole setup: the reactor's configuration and the service's.
struct Setup {
    config: Config,
    mode: Mode,
    echo_self: bool,
    slow_consumer: SlowConsumer,
    slow_consumer_timeout: Duration,
    rooms: bool,
    greeting: Option<String>,
    workers: usize,
    bridge: Option<BridgeConfig>,
}

/// A time limit that `off` disables. (An alias, so clap takes the whole `Option` from
/// the parser rather than making the flag optional.)
type Limit = Option<Duration>;

/// `close` or `skip`.
fn parse_oversize(text: &str) -> Result<Oversize, String> {
    match text {
        "close" => Ok(Oversize::Close),
        "skip" => Ok(Oversize::Skip),
        _ => Err(format!("unknown policy '{text}' (expected close or skip)")),
    }
}

impl Args {
    /// Checks what the parser cannot check field by field: the service's rules here,
    /// the reactor's through `Config::validate`, each named by its flag.
    fn into_setup(self) -> Result<Setup, clap::Error> {
        let invalid = |msg: String| Args::command().error(ErrorKind::ValueValidation, msg);
        if self.echo_self && self.mode != Mode::Broadcast {
            return Err(invalid(
                "'--echo-self' needs '--mode broadcast' (echo mode always answers the sender)"
                    .into(),
            ));
        }
        let workers = match self.workers {
            0 => framecast::workers::per_core(),
            n => n,
        };
        if workers > framecast::workers::MAX_WORKERS {
            return Err(invalid(format!(
                "invalid '--workers': at most {} (one thread each)",
                framecast::workers::MAX_WORKERS
            )));
        }
        if workers > self.max_connections {
            return Err(invalid(format!(
                "invalid '--workers': {workers} workers cannot share --max-connections {}",
                self.max_connections
            )));
        }
        if self.bridge.is_some() && self.mode != Mode::Broadcast {
            return Err(invalid("'--bridge' needs '--mode broadcast'".into()));
        }
        if self.rooms && self.mode != Mode::Broadcast {
            return Err(invalid("'--rooms' needs '--mode broadcast'".into()));
        }
        if self.splice && (self.mode != Mode::Echo || self.greeting.is_some()) {
            return Err(invalid(
                "'--splice' needs '--framing raw' and '--mode echo', without '--greeting' (only unframed echo passes bytes on unseen)"
                    .into(),
            ));
        }
        let config = Config {
            listen: self.listen.into_iter().flat_map(|l| l.0).collect(),
            framing: self.framing,
            max_frame: self.max_frame,
            max_output: self.max_output,
            max_connections: self.max_connections,
            oversize: self.oversize,
            idle_timeout: self.idle_timeout,
            frame_timeout: self.frame_timeout,
            write_timeout: self.write_timeout,
            drain_timeout: self.drain_timeout,
            stats_interval: self.stats_interval,
            access: AccessList {
                allow: self.allow,
                deny: self.deny,
            },
            nodelay: self.nodelay,
            keepalive: self.keepalive,
            backlog: self.backlog,
            splice: self.splice,
            goodbye: self.goodbye,
            admin: self.admin.map(|l| l.0).unwrap_or_default(),
            reuse_port: false,
            udp_queue: self.udp_queue,
            tls: self.tls_cert.zip(self.tls_key).map(|(cert, key)| TlsFiles {
                cert,
                key,
                client_ca: self.tls_client_ca,
            }),
            tls_handshake_timeout: self.tls_handshake_timeout,
        };
        let tls_listener = config.listen.iter().any(|l| matches!(l, Listen::Tls(_)));
        if config.tls.is_some() && !tls_listener {
            return Err(invalid(
                "'--tls-cert' without a tls:// listener (add '--listen tls://HOST:PORT')".into(),
            ));
        }
        if config.splice && tls_listener {
            return Err(invalid(
                "'--splice' with a tls:// listener: TLS records are decrypted in the daemon, so they cannot be spliced"
                    .into(),
            ));
        }
        if self.mode == Mode::Broadcast {
            if let Some(udp) = config.listen.iter().find(|l| !l.is_stream()) {
                return Err(invalid(format!(
                    "'--listen {udp}' with '--mode broadcast': a UDP listener only echoes (RFC 862: each datagram back to its sender); broadcast needs stream listeners (tcp://, unix:, tls://)"
                )));
            }
        }
        if let Err(e) = config.validate() {
            let flag = e.field.replace('_', "-");
            return Err(invalid(format!("invalid '--{flag}': {}", e.problem)));
        }
        if let Some(text) = &self.greeting {
            let codec = Codec::new(config.framing, config.max_frame);
            if let Err(e) = codec.encode(text.as_bytes(), &mut BytesMut::new()) {
                return Err(invalid(format!(
                    "invalid value '{text}' for '--greeting <TEXT>': {e} in framing {}",
                    config.framing
                )));
            }
        }
        Ok(Setup {
            config,
            mode: self.mode,
            echo_self: self.echo_self,
            slow_consumer: self.slow_consumer,
            slow_consumer_timeout: self.slow_consumer_timeout,
            rooms: self.rooms,
            greeting: self.greeting,
            bridge: self.bridge.map(|(url, addr)| BridgeConfig {
                addr,
                url,
                prefix: self.bridge_subject,
            }),
            workers,
        })
    }
}

/// The listeners one `--listen` stands for.
#[derive(Debug, Clone)]
struct Listeners(Vec<Listen>);

/// Parses one `--listen` value.
fn parse_listen(text: &str) -> Result<Listeners, String> {
    config::parse_listen(text).map(Listeners)
}

/// The addresses `--admin` stands for.
#[derive(Debug, Clone)]
struct AdminAddrs(Vec<SocketAddr>);

/// Parses `--admin`: TCP only.
fn parse_admin(text: &str) -> Result<AdminAddrs, String> {
    config::parse_socket_addrs(text.strip_prefix("tcp://").unwrap_or(text)).map(AdminAddrs)
}

/// Raises the open-file limit for `max_connections`, logging what it did. Returns the
/// limit and what is wanted when the hard limit keeps it short: see [`warn_fd_short`].
/// Never fatal: running out of descriptors is survived anyway.
fn raise_fd_limit(max_connections: usize) -> Option<(u64, u64)> {
    match fd_limit::raise_for(max_connections) {
        Ok(FdLimit::Enough) => None,
        Ok(FdLimit::Raised { from, to }) => {
            info!("raised the open-file limit from {from} to {to} for --max-connections {max_connections}");
            None
        }
        Ok(FdLimit::Short { limit, wanted }) => Some((limit, wanted)),
        Err(e) => {
            warn!("cannot raise the open-file limit: {e}");
            None
        }
    }
}

/// Says why `--max-connections` cannot be reached, and how many connections can: the
/// limit less the descriptors the daemon holds once it is set up.
fn warn_fd_short(limit: u64, wanted: u64, max_connections: usize) {
    let held = fd_limit::open_below(limit).unwrap_or(fd_limit::RESERVED);
    warn!(
        "the open-file limit is {limit} and the hard limit allows no more: about {} \
         connections can be open at once, not --max-connections {max_connections} \
         (which needs {wanted}; raise the hard limit, e.g. `ulimit -n`)",
        limit.saturating_sub(held)
    );
}

/// Delivers signals to the reactor from a thread of its own: the first SIGINT or
/// SIGTERM starts a graceful shutdown, the next stops at once; SIGUSR1 logs the
/// counters; SIGHUP is logged and ignored.
fn forward_signals(handles: Vec<Handle>) -> std::io::Result<()> {
    let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP, SIGUSR1])?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                let name = match signal {
                    SIGINT => "SIGINT",
                    SIGTERM => "SIGTERM",
                    SIGUSR1 => {
                        handles.iter().for_each(Handle::log_stats);
                        continue;
                    }
                    _ => {
                        info!("SIGHUP: ignored (framecast has no configuration to reload; SIGTERM stops it)");
                        continue;
                    }
                };
                // The reactor says "again" and stops at once on a second shutdown.
                for handle in &handles {
                    handle.shutdown(name);
                }
            }
        })?;
    Ok(())
}

/// Binds and runs the reactor with `service`: the daemon's exit code.
fn serve<S: Service>(config: Config, service: S, banner: &str) -> ExitCode {
    let max_connections = config.max_connections;
    let fd_short = raise_fd_limit(max_connections);
    let mut reactor = match Reactor::bind(config, service) {
        Ok(reactor) => reactor,
        Err(e) => {
            eprintln!("framecast: {e}");
            return ExitCode::from(1);
        }
    };
    if let Err(e) = forward_signals(vec![reactor.handle()]) {
        eprintln!("framecast: cannot handle signals: {e}");
        return ExitCode::from(1);
    }
    if let Some((limit, wanted)) = fd_short {
        warn_fd_short(limit, wanted, max_connections);
    }
    print_addrs(&reactor.listening(), &reactor.admin_addrs(), banner);

    match reactor.run() {
        Ok(Stopped::Drained | Stopped::DrainTimedOut { .. }) => ExitCode::SUCCESS,
        Ok(Stopped::Forced) => ExitCode::from(1),
        Err(e) => {
            eprintln!("framecast: event loop failed: {e}");
            ExitCode::from(1)
        }
    }
}

/// Prints the start-up lines every test and operator waits for.
fn print_addrs(listening: &[Listen], admin: &[SocketAddr], banner: &str) {
    let mut stdout = std::io::stdout().lock();
    for listen in listening {
        // Best effort: a closed stdout must not stop the daemon.
        let _ = match listen {
            Listen::Udp(_) => writeln!(stdout, "framecast listening on {listen} (udp echo)"),
            _ => writeln!(stdout, "framecast listening on {listen} ({banner})"),
        };
    }
    for addr in admin {
        let _ = writeln!(stdout, "framecast admin on {addr}");
    }
    let _ = stdout.flush();
}

/// Binds `n` workers, each serving what `make` builds, wires them with `wire`, and
/// runs them: the daemon's exit code (1 if any worker failed or panicked).
fn serve_workers<S: Service + Send + 'static>(
    config: Config,
    n: usize,
    make: impl FnMut(usize) -> S,
    wire: impl FnOnce(&mut Workers<S>),
    banner: &str,
) -> ExitCode {
    let max_connections = config.max_connections;
    let fd_short = raise_fd_limit(max_connections);
    let mut workers = match Workers::bind(config, n, make) {
        Ok(workers) => workers,
        Err(e) => {
            eprintln!("framecast: {e}");
            return ExitCode::from(1);
        }
    };
    wire(&mut workers);
    if let Err(e) = forward_signals(workers.handles()) {
        eprintln!("framecast: cannot handle signals: {e}");
        return ExitCode::from(1);
    }
    if let Some((limit, wanted)) = fd_short {
        warn_fd_short(limit, wanted, max_connections);
    }
    info!("{n} workers, each with its own SO_REUSEPORT listener and a share of --max-connections");
    print_addrs(&workers.listening(), &workers.admin_addrs(), banner);
    let ends = workers.run();
    if ends.iter().all(WorkerEnd::is_clean) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn main() -> ExitCode {
    let setup = match Args::parse().into_setup() {
        Ok(setup) => setup,
        Err(e) => e.exit(),
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let banner = format!("{}, {}", setup.mode, setup.config.framing);
    let bridged = setup.bridge.is_some();
    let room = || {
        let mut room = Broadcast::new(setup.echo_self, setup.slow_consumer)
            .slow_consumer_timeout(setup.slow_consumer_timeout);
        if setup.rooms {
            room = room.with_rooms();
        }
        if let Some(bridge) = &setup.bridge {
            room = room.with_bridge(bridge.clone());
        }
        room
    };
    let config = setup.config;
    let cap = config.max_output;
    let n = setup.workers;
    // The rooms span the workers: each worker's broadcast is linked to every other's.
    // Bridged, each worker has a NATS connection of its own instead, and NATS (which
    // never sends a connection its own messages) is what links them.
    let mesh = |notifiers: Vec<_>| {
        let fabrics = if bridged {
            Vec::new()
        } else {
            broadcast::mesh(&notifiers, cap)
        };
        fabrics.into_iter()
    };
    match (setup.mode, setup.greeting, n) {
        (Mode::Echo, None, 1) => serve(config, Echo, &banner),
        (Mode::Echo, Some(text), 1) => serve(config, Greeting::new(text, Echo), &banner),
        (Mode::Broadcast, None, 1) => serve(config, room(), &banner),
        (Mode::Broadcast, Some(text), 1) => serve(config, Greeting::new(text, room()), &banner),
        (Mode::Echo, None, n) => serve_workers(config, n, |_| Echo, |_| {}, &banner),
        (Mode::Echo, Some(text), n) => {
            let make = |_| Greeting::new(text.clone(), Echo);
            serve_workers(config, n, make, |_| {}, &banner)
        }
        (Mode::Broadcast, None, n) => {
            let wire = |w: &mut Workers<Broadcast>| {
                let fabrics = mesh(w.notifiers());
                for (service, fabric) in w.services_mut().zip(fabrics) {
                    service.span(fabric);
                }
            };
            serve_workers(config, n, |_| room(), wire, &banner)
        }
        (Mode::Broadcast, Some(text), n) => {
            let wire = |w: &mut Workers<Greeting<Broadcast>>| {
                let fabrics = mesh(w.notifiers());
                for (service, fabric) in w.services_mut().zip(fabrics) {
                    service.inner_mut().span(fabric);
                }
            };
            let make = |_| Greeting::new(text.clone(), room());
            serve_workers(config, n, make, wire, &banner)
        }
    }
}
