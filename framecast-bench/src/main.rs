//! framecast-bench: command line -> `BenchConfig` -> `bench::run` -> report. The only
//! place where errors become exit codes: 0 when every frame came back intact, 1 when
//! the run could not start or was cut short (bad target, refused connection, server
//! gone), 2 for a bad command line, 3 when the run completed but counted errors (lost,
//! duplicated, reordered or corrupted frames, connections closed by the server; with
//! `--strict`, also an open loop that fell short of its `--rate`), 130
//! when Ctrl-C (SIGINT) or SIGTERM ended it early without errors: the summary of what
//! was measured until then is still printed, as wrk does. A second signal exits at once.
//! `--scenario chaos` exits as an ordinary run does for its verified traffic, and 4
//! when that was clean but the server's peak memory passed its bound.

use std::io::Write;
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use clap::error::ErrorKind;
use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser, ValueEnum};
use framecast::codec::Framing;
use framecast_bench::chaos::{ChaosConfig, ChaosStatus};
use framecast_bench::config::Transport;
use framecast_bench::{self as bench, config, BenchConfig, Load, Scenario, SizeRange, Status};

/// A load generator for framecast and any server speaking the same framing: event
/// driven, verifies every frame, reports rates, latency percentiles, errors and CPU
/// time per frame.
#[derive(Debug, Parser)]
#[command(name = "framecast-bench", version, max_term_width = 100)]
struct Args {
    /// The server to load: [tcp://]HOST:PORT or a bare PORT on 127.0.0.1, unix:PATH,
    /// tls://HOST:PORT (with --tls-ca or --insecure) or udp://HOST:PORT (UDP echo: each
    /// message a datagram; lost datagrams are counted, not errors).
    #[arg(value_name = "ADDR", default_value = config::DEFAULT_TARGET)]
    target: String,

    /// How frames are delimited: u8, u16be, u16le, u32be, u32le, u64be, u64le, line,
    /// fixed:N or raw (fixed-size messages without framing, checked byte by byte).
    #[arg(long, value_name = "NAME", default_value = "u32be")]
    framing: Framing,

    /// Traffic pattern.
    #[arg(long, value_enum, default_value = "echo")]
    scenario: ScenarioName,

    /// Chaos: the verified traffic beside the hostile clients, echo or broadcast
    /// (against `framecast --mode broadcast --rooms`).
    #[arg(long, value_enum, value_name = "KIND", default_value = "echo")]
    traffic: TrafficName,

    /// Chaos: hostile threads, each running one attack at a time.
    #[arg(long, value_name = "N", default_value_t = bench::chaos::DEFAULT_HOSTILE)]
    hostile: usize,

    /// Chaos: the server's peak memory allowed (KiB, MiB allowed); by default derived
    /// from its command line (--server-pid). Past it the run exits 4.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    rss_bound: Option<usize>,

    /// Connections (echo scenario).
    #[arg(long, short = 'c', value_name = "N", default_value_t = 50)]
    connections: usize,

    /// Publishing connections (broadcast scenario), at most 1024.
    #[arg(long, value_name = "P", default_value_t = 1)]
    publishers: usize,

    /// Receiving-only connections (broadcast scenario).
    #[arg(long, value_name = "S", default_value_t = 10)]
    subscribers: usize,

    /// Broadcast against `framecast --rooms`: every connection first joins room NAME
    /// (run several benches with different names for several rooms).
    #[arg(long, value_name = "NAME")]
    room: Option<String>,

    /// Closed loop: frames each connection keeps in flight (1 = ping-pong); broadcast:
    /// how far a publisher may run ahead of its slowest receiver.
    #[arg(long, short = 'P', value_name = "D", default_value_t = 1)]
    depth: usize,

    /// Open loop: frames per second in total (10k, 1.5M allowed), sent on schedule
    /// whatever the replies do; latency counts from each frame's intended send time
    /// (its actual one when sent early, within the timer's learnt wake-up delay).
    /// Replaces --depth.
    #[arg(long, short = 'R', short_alias = 'r', value_name = "R", conflicts_with = "depth", value_parser = parse_rate)]
    rate: Option<f64>,

    /// Payload bytes, or MIN..MAX for sizes drawn at random (KiB, MiB allowed); 512 by
    /// default, N with --framing fixed:N.
    #[arg(long, short = 's', value_name = "BYTES|MIN..MAX")]
    size: Option<SizeRange>,

    /// Time measured, after the warmup: 10s, 1m, 500ms (a bare number is seconds).
    #[arg(long, short = 'd', value_name = "TIME", default_value = "10s", value_parser = parse_time)]
    duration: Duration,

    /// Time of load before measuring starts.
    #[arg(long, value_name = "TIME", default_value = "1s", value_parser = parse_time)]
    warmup: Duration,

    /// New connections per second while connecting (default: as fast as possible).
    #[arg(long, value_name = "PER_SEC", value_parser = parse_rate)]
    connect_rate: Option<f64>,

    /// Local addresses to connect from, spread round-robin: ADDR[,ADDR...] or a range
    /// such as 127.0.0.2-127.0.0.9; each gives the run another ~28,000 ephemeral ports.
    #[arg(long, value_name = "ADDRS", value_parser = parse_sources)]
    source: Option<Sources>,

    /// Event-loop threads, each owning a share of the connections.
    #[arg(long, short = 't', value_name = "T", default_value_t = 1)]
    threads: usize,

    /// Also report the CPU time of this process (the server) per frame, over the
    /// measured window.
    #[arg(long, value_name = "PID")]
    server_pid: Option<u32>,

    /// Read framecast's /stats from this admin address (framecast --admin) before and
    /// after the run, and print the daemon's view beside the bench's.
    #[arg(long, value_name = "ADMIN_ADDR", value_parser = resolve)]
    server_stats: Option<SocketAddr>,

    /// Seed of the random payload sizes.
    #[arg(long, value_name = "N", default_value_t = 1)]
    seed: u64,

    /// Print the summary as one JSON object on stdout instead of text.
    #[arg(long)]
    json: bool,

    /// Exit 3 also when the open loop falls short of --rate by more than 1%.
    #[arg(long)]
    strict: bool,

    /// tls:// targets: trust the CA certificates in this PEM file (the server's
    /// certificate must name the target's host).
    #[arg(long, value_name = "PEM", conflicts_with = "insecure")]
    tls_ca: Option<std::path::PathBuf>,

    /// tls:// targets: do not verify the server's certificate at all (benchmarks
    /// against a self-signed certificate; never for real traffic).
    #[arg(long)]
    insecure: bool,
}

/// The scenarios, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ScenarioName {
    /// Every connection sends and checks that each frame comes back.
    Echo,
    /// Publishers send; every other connection checks every frame it receives
    /// (the server runs `--mode broadcast`).
    Broadcast,
    /// --traffic echo or broadcast, verified, beside hostile clients (--hostile);
    /// with --server-pid also the server's peak memory against its bound, and its CPU.
    Chaos,
}

/// The verified traffic of a chaos run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum TrafficName {
    /// As `--scenario echo`.
    Echo,
    /// As `--scenario broadcast`, every connection in one room of `framecast --rooms`.
    Broadcast,
}

/// Parses `--rss-bound`: a size as the daemon's flags take it.
fn parse_size(text: &str) -> Result<usize, String> {
    framecast::units::parse_size(text).map_err(|e| e.to_string())
}

/// A parsed command line: the run and what is asked beside it.
struct Parsed {
    config: BenchConfig,
    /// Print the report as JSON.
    json: bool,
    /// The chaos scenario's own settings, when it is that scenario.
    chaos: Option<ChaosConfig>,
    /// `--server-stats`: the daemon's admin endpoint, read before and after.
    server_stats: Option<SocketAddr>,
}

/// Parses a duration as load testers write it: `10s`, `1m`, `500ms`, `2h`, or a bare
/// number of seconds such as `10` or `2.5`.
fn parse_time(text: &str) -> Result<Duration, String> {
    if let Some(d) = text
        .parse::<f64>()
        .ok()
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
    {
        return Ok(d);
    }
    framecast::units::parse_duration(text).map_err(|_| {
        format!("'{text}' is not a duration (expected e.g. 10s, 1m, 500ms or a number of seconds)")
    })
}

/// The `--source` addresses as one value (clap would take a `Vec` for a list of
/// flags).
#[derive(Debug, Clone)]
struct Sources(Vec<std::net::IpAddr>);

/// Parses `--source`; see [`config::parse_sources`].
fn parse_sources(text: &str) -> Result<Sources, String> {
    config::parse_sources(text).map(Sources)
}

/// Parses a rate such as `1000`, `2.5k` or `1M` (k = 10^3, M = 10^6, as wrk2 and
/// tcpkali write them).
fn parse_rate(text: &str) -> Result<f64, String> {
    let bad = || format!("'{text}' is not a rate (expected e.g. 1000, 10k or 1.5M per second)");
    let trimmed = text.trim();
    let (number, scale) = match trimmed.char_indices().last() {
        Some((at, 'k' | 'K')) => (&trimmed[..at], 1e3),
        Some((at, 'm' | 'M')) => (&trimmed[..at], 1e6),
        _ => (trimmed, 1.0),
    };
    let value = number.parse::<f64>().map_err(|_| bad())? * scale;
    if value.is_finite() && value > 0.0 {
        Ok(value)
    } else {
        Err(bad())
    }
}

/// Parses a command line into the run's configuration and what is asked beside it.
fn parse_from<I, T>(argv: I) -> Result<Parsed, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let matches = Args::command().try_get_matches_from(argv)?;
    let given = |id: &str| matches.value_source(id) == Some(ValueSource::CommandLine);
    let args = Args::from_arg_matches(&matches)?;
    // A flag of the other scenario would be silently ignored: say so instead.
    let chaos_only = (args.scenario != ScenarioName::Chaos)
        .then(|| {
            ["traffic", "hostile", "rss-bound"]
                .into_iter()
                .find(|id| given(&id.replace('-', "_")))
        })
        .flatten()
        .map(|id| format!("--{id} applies to --scenario chaos only"));
    let stray = match args.traffic_name() {
        _ if chaos_only.is_some() => chaos_only,
        TrafficName::Echo => ["publishers", "subscribers"]
            .into_iter()
            .find(|id| given(id))
            .map(|id| format!("--{id} applies to --scenario broadcast only")),
        TrafficName::Broadcast => given("connections").then(|| {
            "--connections applies to --scenario echo only (broadcast connects \
             --publishers + --subscribers)"
                .to_owned()
        }),
    };
    if let Some(msg) = stray {
        return Err(Args::command().error(ErrorKind::ArgumentConflict, msg));
    }
    args.into_config()
}

impl Args {
    /// The traffic the scenario runs: a chaos run's is its `--traffic`.
    fn traffic_name(&self) -> TrafficName {
        match self.scenario {
            ScenarioName::Echo => TrafficName::Echo,
            ScenarioName::Broadcast => TrafficName::Broadcast,
            ScenarioName::Chaos => self.traffic,
        }
    }

    /// Checks what the parser cannot check field by field.
    fn into_config(self) -> Result<Parsed, clap::Error> {
        let invalid = |msg: String| Args::command().error(ErrorKind::ValueValidation, msg);
        let bad_target = |why: String| {
            invalid(format!(
                "invalid value '{}' for '[ADDR]': {why}",
                self.target
            ))
        };
        let (target, transport) = match self.target.split_once("://") {
            _ if self.target.starts_with("unix:") => {
                let path = &self.target["unix:".len()..];
                if path.is_empty() {
                    return Err(bad_target("unix: needs a path".into()));
                }
                (([0, 0, 0, 0], 0).into(), Transport::Unix(path.into()))
            }
            Some(("tcp", rest)) => (resolve(rest).map_err(bad_target)?, Transport::Tcp),
            Some(("udp", rest)) => (resolve(rest).map_err(bad_target)?, Transport::Udp),
            Some(("tls", rest)) => {
                let addr = resolve(rest).map_err(bad_target)?;
                let host = rest.rsplit_once(':').map_or(rest, |(h, _)| h);
                let host = host.trim_start_matches('[').trim_end_matches(']');
                let name = if host.is_empty() || host.parse::<u16>().is_ok() {
                    "127.0.0.1".to_owned()
                } else {
                    host.to_owned()
                };
                if self.tls_ca.is_none() && !self.insecure {
                    return Err(bad_target(
                        "a tls:// target needs --tls-ca PEM (or --insecure)".into(),
                    ));
                }
                let config = framecast::reactor::client_config(self.tls_ca.as_deref())
                    .map_err(|e| invalid(format!("invalid value for '--tls-ca': {e}")))?;
                (addr, Transport::Tls { config, name })
            }
            Some((scheme, _)) => {
                return Err(bad_target(format!(
                    "unknown scheme '{scheme}://' (expected tcp://, tls://, udp:// or unix:)"
                )))
            }
            None => (resolve(&self.target).map_err(bad_target)?, Transport::Tcp),
        };
        if self.tls_ca.is_some() && !matches!(transport, Transport::Tls { .. }) {
            return Err(invalid("'--tls-ca' needs a tls:// target".into()));
        }
        if self.scenario == ScenarioName::Chaos && !matches!(transport, Transport::Tcp) {
            return Err(invalid("'--scenario chaos' needs a TCP target".into()));
        }
        let size = self.size.unwrap_or(match self.framing {
            Framing::Fixed(n) => SizeRange::fixed(n),
            _ => SizeRange::fixed(config::DEFAULT_SIZE),
        });
        let scenario = match self.traffic_name() {
            TrafficName::Echo => Scenario::Echo {
                connections: self.connections,
            },
            TrafficName::Broadcast => Scenario::Broadcast {
                publishers: self.publishers,
                subscribers: self.subscribers,
            },
        };
        let load = match self.rate {
            Some(rate) => Load::Open { rate },
            None => Load::Closed { depth: self.depth },
        };
        let config = BenchConfig {
            target,
            transport,
            framing: self.framing,
            scenario,
            load,
            size,
            duration: self.duration,
            warmup: self.warmup,
            connect_rate: self.connect_rate,
            threads: self.threads,
            server_pid: self.server_pid,
            seed: self.seed,
            sources: self.source.map(|s| s.0).unwrap_or_default(),
            strict: self.strict,
            room: self.room.map(String::into_bytes),
        };
        config.validate().map_err(|e| invalid(e.to_string()))?;
        if matches!(config.transport, Transport::Udp) {
            bench::udp::validate(&config).map_err(invalid)?;
        }
        if let Some(pid) = config.server_pid {
            // Found out now, not as a silent "n/a" in the summary after the run.
            bench::cpu::process_time(Some(pid)).map_err(|e| {
                invalid(format!(
                    "invalid value '{pid}' for '--server-pid <PID>': cannot read its CPU time: {e}"
                ))
            })?;
        }
        let chaos = (self.scenario == ScenarioName::Chaos).then(|| ChaosConfig {
            hostile: self.hostile,
            rss_bound: self.rss_bound.map(|b| b as u64),
        });
        if chaos.is_some() && !(1..=bench::chaos::MAX_HOSTILE).contains(&self.hostile) {
            return Err(invalid(format!(
                "invalid value '{}' for '--hostile <N>': must be between 1 and {}",
                self.hostile,
                bench::chaos::MAX_HOSTILE
            )));
        }
        Ok(Parsed {
            config,
            json: self.json,
            chaos,
            server_stats: self.server_stats,
        })
    }
}

/// Resolves `HOST:PORT` to its first address; a bare port is on 127.0.0.1, as wrk,
/// redis-benchmark and the daemon's `--listen` take it.
fn resolve(target: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = target.parse() {
        return Ok(addr);
    }
    if let Ok(port) = target.parse::<u16>() {
        return Ok(([127, 0, 0, 1], port).into());
    }
    target
        .to_socket_addrs()
        .map_err(|e| e.to_string())?
        .next()
        .ok_or_else(|| "resolves to no address".to_owned())
}

fn main() -> ExitCode {
    let Parsed {
        config,
        json,
        chaos,
        server_stats,
    } = match parse_from(std::env::args_os()) {
        Ok(parsed) => parsed,
        Err(e) => e.exit(),
    };
    let before = match server_stats.map(bench::server_stats::fetch).transpose() {
        Ok(before) => before,
        Err(e) => {
            eprintln!("framecast-bench: --server-stats: {e}");
            return ExitCode::from(1);
        }
    };
    let interrupt = match on_signals() {
        Ok(flag) => flag,
        Err(e) => {
            eprintln!("framecast-bench: cannot handle signals: {e}");
            return ExitCode::from(1);
        }
    };
    let mut stderr = std::io::stderr();
    let mut progress = |line: &str| {
        let _ = writeln!(stderr, "{line}");
    };
    if let Some(chaos) = chaos {
        return run_chaos(&config, &chaos, json, &mut progress, &interrupt);
    }
    if matches!(config.transport, Transport::Udp) {
        return run_udp(&config, json, &interrupt);
    }
    let report = match bench::run(&config, &mut progress, &interrupt) {
        Ok(report) => report,
        Err(e) => return run_failed(&e),
    };
    let mut text = if json { report.json() } else { report.text() };
    if let (Some(addr), Some(before)) = (server_stats, &before) {
        let after = bench::server_stats::fetch(addr);
        text = bench::server_stats::annotate(&text, json, addr, before, after, &report);
    }
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{}", text.trim_end());
    let _ = stdout.flush();
    match report.status() {
        Status::Clean => ExitCode::SUCCESS,
        Status::Aborted => {
            if let Some(why) = &report.aborted {
                eprintln!("framecast-bench: run cut short: {why}");
            }
            ExitCode::from(1)
        }
        Status::Errors => {
            eprintln!(
                "framecast-bench: {} errors (see the summary)",
                report.stats.errors()
            );
            if let Some(hint) = report.hint() {
                eprintln!("framecast-bench: {hint}");
            }
            ExitCode::from(3)
        }
        Status::Interrupted => ExitCode::from(INTERRUPTED),
        Status::Shortfall => {
            eprintln!(
                "framecast-bench: sent {:.1} frames/s, short of --rate (--strict)",
                report.shortfall().unwrap_or(0.0)
            );
            ExitCode::from(3)
        }
    }
}

/// Says why a run could not finish; its exit code (interrupted, or 1).
fn run_failed(e: &bench::RunError) -> ExitCode {
    eprintln!("framecast-bench: {e}");
    if matches!(e, bench::RunError::Interrupted { .. }) {
        ExitCode::from(INTERRUPTED)
    } else {
        ExitCode::from(1)
    }
}

/// Runs UDP echo and prints its report: 0 when every reply verified (lost datagrams
/// are UDP's, not errors), 1 when nothing came back at all, 3 for corrupted replies.
fn run_udp(config: &BenchConfig, json: bool, interrupt: &AtomicBool) -> ExitCode {
    let report = match bench::udp::run(config, interrupt) {
        Ok(report) => report,
        Err(e) => return run_failed(&e),
    };
    let text = if json { report.json() } else { report.text() };
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{}", text.trim_end());
    let _ = stdout.flush();
    if report.corrupted > 0 {
        eprintln!(
            "framecast-bench: {} corrupted or unexpected replies",
            report.corrupted
        );
        return ExitCode::from(3);
    }
    if report.echoed == 0 && report.sent > 0 {
        eprintln!(
            "framecast-bench: no datagram came back: is a UDP echo server listening on {}?",
            report.target
        );
        return ExitCode::from(1);
    }
    if report.interrupted {
        return ExitCode::from(INTERRUPTED);
    }
    ExitCode::SUCCESS
}

/// Exit code of a chaos run whose verified traffic was clean but whose server's peak
/// memory passed its bound.
const OVER_BOUND: u8 = 4;

/// Runs the chaos scenario and prints its report: the exit codes of an ordinary run
/// for its verified traffic, and [`OVER_BOUND`] when only the memory bound failed.
fn run_chaos(
    config: &BenchConfig,
    chaos: &ChaosConfig,
    json: bool,
    progress: &mut dyn FnMut(&str),
    interrupt: &AtomicBool,
) -> ExitCode {
    let report = match bench::chaos::run(config, chaos, progress, interrupt) {
        Ok(report) => report,
        Err(e) => return run_failed(&e),
    };
    let text = if json { report.json() } else { report.text() };
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{}", text.trim_end());
    let _ = stdout.flush();
    match report.status() {
        ChaosStatus::Clean => ExitCode::SUCCESS,
        ChaosStatus::OverBound => {
            eprintln!(
                "framecast-bench: the server's peak memory passed its bound (see the summary)"
            );
            ExitCode::from(OVER_BOUND)
        }
        ChaosStatus::Traffic(Status::Aborted) => {
            if let Some(why) = &report.traffic.aborted {
                eprintln!("framecast-bench: run cut short: {why}");
            }
            ExitCode::from(1)
        }
        ChaosStatus::Traffic(Status::Interrupted) => ExitCode::from(INTERRUPTED),
        ChaosStatus::Traffic(_) => {
            eprintln!(
                "framecast-bench: {} errors in the verified traffic (see the summary)",
                report.traffic.stats.errors()
            );
            ExitCode::from(3)
        }
    }
}

/// Exit code of a run ended by a signal: 128 + SIGINT, as shells report Ctrl-C.
const INTERRUPTED: u8 = 130;

/// A flag that SIGINT and SIGTERM set, ending the run early with a summary; once it is
/// set, a second signal exits at once.
fn on_signals() -> std::io::Result<Arc<AtomicBool>> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let flag = Arc::new(AtomicBool::new(false));
    for signal in [SIGINT, SIGTERM] {
        // The exit must be registered first: it looks at the flag before this signal
        // sets it, so only a second signal exits.
        signal_hook::flag::register_conditional_shutdown(
            signal,
            i32::from(INTERRUPTED),
            Arc::clone(&flag),
        )?;
        signal_hook::flag::register(signal, Arc::clone(&flag))?;
    }
    Ok(flag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_units_or_fractional_seconds() {
        assert_eq!(parse_time("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_time("0.25"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_time("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_time("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_time("500ms"), Ok(Duration::from_millis(500)));
        for bad in ["", "-1", "ten", "1e400", "NaN", "5 days"] {
            assert!(parse_time(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn rates_take_k_and_m_suffixes() {
        assert_eq!(parse_rate("1000"), Ok(1000.0));
        assert_eq!(parse_rate("10k"), Ok(10_000.0));
        assert_eq!(parse_rate("2.5K"), Ok(2_500.0));
        assert_eq!(parse_rate("1M"), Ok(1e6));
        for bad in ["", "k", "0", "-5k", "ten", "1e400", "NaN"] {
            assert!(parse_rate(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn flag_letters_are_wrks() {
        let Parsed { config, .. } = parse_from([
            "framecast-bench",
            "7070",
            "-c",
            "3",
            "-t",
            "2",
            "-d",
            "2s",
            "-R",
            "10k",
        ])
        .unwrap();
        assert_eq!(config.target, ([127, 0, 0, 1], 7070).into());
        assert_eq!(config.scenario, Scenario::Echo { connections: 3 });
        assert_eq!(config.threads, 2);
        assert_eq!(config.duration, Duration::from_secs(2));
        assert_eq!(config.load, Load::Open { rate: 10_000.0 });
    }

    #[test]
    fn targets_are_addresses_or_resolvable_names() {
        assert_eq!(resolve("127.0.0.1:7070"), Ok(([127, 0, 0, 1], 7070).into()));
        assert!(resolve("localhost:7070").is_ok_and(|a| a.port() == 7070));
        assert!(resolve("127.0.0.1").is_err(), "a port is required");
        assert_eq!(resolve("7070"), Ok(([127, 0, 0, 1], 7070).into()));
    }

    #[test]
    fn fixed_framing_defaults_the_size_to_the_frame_size() {
        let args = Args::try_parse_from(["framecast-bench", "--framing", "fixed:100"]).unwrap();
        let Parsed { config, .. } = args.into_config().unwrap();
        assert_eq!(config.size, SizeRange::fixed(100));
    }

    #[test]
    fn flags_of_the_other_scenario_are_refused() {
        let run = |args: &[&str]| {
            parse_from(["framecast-bench"].iter().chain(args))
                .map(|parsed| parsed.config.scenario)
                .map_err(|e| e.to_string())
        };
        let error = run(&["--scenario", "broadcast", "-c", "5"]).unwrap_err();
        assert!(
            error.contains("--connections applies to --scenario echo"),
            "{error}"
        );
        let error = run(&["--publishers", "2"]).unwrap_err();
        assert!(
            error.contains("--publishers applies to --scenario broadcast"),
            "{error}"
        );
        let error = run(&["--scenario", "echo", "--subscribers", "2"]).unwrap_err();
        assert!(error.contains("--subscribers applies"), "{error}");
        // Each scenario's own flags, and defaults of the other's, are fine.
        assert_eq!(run(&["-c", "5"]), Ok(Scenario::Echo { connections: 5 }));
        assert_eq!(
            run(&["--scenario", "broadcast", "--subscribers", "3"]),
            Ok(Scenario::Broadcast {
                publishers: 1,
                subscribers: 3
            })
        );
    }

    #[test]
    fn rate_and_depth_exclude_each_other() {
        let parsed = Args::try_parse_from(["framecast-bench", "--rate", "10", "--depth", "2"]);
        assert!(parsed.is_err());
        let args = Args::try_parse_from(["framecast-bench", "--rate", "10"]).unwrap();
        let Parsed { config, .. } = args.into_config().unwrap();
        assert_eq!(config.load, Load::Open { rate: 10.0 });
    }
}
