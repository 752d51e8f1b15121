//! The chaos scenario: verified echo or broadcast traffic (an ordinary [`crate::run`])
//! beside hostile clients, for the run's duration, and what the server paid for them.
//!
//! Hostile threads, each cycling through the [`Attack`]s that apply to the framing:
//! garbage of the framing in use, oversize length declarations, resets (`SO_LINGER` 0)
//! in the middle of a frame and in the middle of the server's writes, slowloris
//! clients trickling a byte at a time, clients that never read, and connect/close
//! churn. Meanwhile a sampler reads the server's resident set (`/proc/PID/status`)
//! and, at the end, its peak (`VmHWM`) and CPU time (`/proc/PID/stat`).
//!
//! The verified traffic must see no error at all: every frame checked byte for byte,
//! none lost, duplicated or reordered. Broadcast traffic runs against `framecast
//! --mode broadcast --rooms`: the verified connections share [`VERIFIED_ROOM`], hostile
//! clients that send anything are in [`HOSTILE_ROOM`] (so their bytes, valid frames
//! or not, reach no verified receiver), and clients that never read or reset mid-write
//! join the verified room, where the server must hold or pace its output for them.
//!
//! This module knows the scenario's attacks and its report; the load itself, its
//! verification and its report are the rest of the crate's.

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use framecast::codec::{Codec, Encoder, Framing};
use socket2::SockRef;

use crate::config::{BenchConfig, ConfigError, Scenario, MAX_ROOM_NAME};
use crate::report::{Report, Status};
use crate::RunError;

/// Default number of hostile threads, each one attack at a time.
pub const DEFAULT_HOSTILE: usize = 8;
/// The room of the verified broadcast traffic (padded to the frame size for `fixed:N`).
pub const VERIFIED_ROOM: &str = "chaos-verified";
/// The room of hostile clients that send: nothing they send reaches a verified receiver.
pub const HOSTILE_ROOM: &str = "chaos-hostile";
/// Most hostile threads: each holds at most [`SLOWLORIS_CONNECTIONS`] connections.
pub const MAX_HOSTILE: usize = 256;
/// Connections one slowloris attack holds at once.
pub const SLOWLORIS_CONNECTIONS: usize = 16;
/// Connect/close cycles in one churn attack.
const CHURN_CYCLES: usize = 50;
/// How long a client that never reads holds its connection: well under framecast's
/// `--slow-consumer-timeout` (2 s), so in broadcast the server paces for it rather
/// than closing it, and well under the bench's drain ([`crate::DRAIN`]), so a stall it
/// causes near the end is not mistaken for lost frames.
const HOLD: Duration = Duration::from_millis(400);
/// Slowloris: time between two bytes on each connection.
const TRICKLE: Duration = Duration::from_millis(100);
/// Slowloris: how long one attack trickles.
const TRICKLE_FOR: Duration = Duration::from_secs(1);
/// Timeout of every blocking connect, read and write of a hostile client, so a
/// stopping run never waits long on one.
const IO_TIMEOUT: Duration = Duration::from_millis(200);
/// Interval of the resident-set samples.
const SAMPLE_INTERVAL: Duration = Duration::from_millis(50);
/// Most bytes one hostile writer pushes before it stops (it stops earlier when the
/// server stops reading it).
const MAX_PUSH: usize = 8 << 20;
/// Garbage: most bytes of one burst.
const MAX_GARBAGE: usize = 16 << 10;
/// Oversize, line framing: bytes of a line without its end, more than any small
/// `--max-frame`.
const LONG_LINE: usize = 64 << 10;
/// framecast's largest read buffer per connection (its reactor's `MAX_CHUNK`, 256 KiB,
/// as the README states it).
pub const READ_BUFFER_MAX: u64 = 256 << 10;
/// What one connection costs framecast besides its buffers: its slab entry, timers and
/// queues, rounded up generously.
pub const CONNECTION_OVERHEAD: u64 = 8 << 10;

/// One kind of hostile client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attack {
    /// Random bytes, framed or not as they fall, then a close.
    Garbage,
    /// A length header at its largest value (every bit set), or an endless line.
    Oversize,
    /// Part of a frame, then a reset.
    ResetMidFrame,
    /// Echo: frames sent without reading until the server stops reading them, then a
    /// reset while it writes back. Broadcast: a member of the verified room that
    /// resets while the server writes to it.
    ResetMidWrite,
    /// Many connections, each sending one byte of a frame every `TRICKLE` (100 ms).
    Slowloris,
    /// Echo: frames sent until the server stops reading, held, closed. Broadcast: a
    /// member of the verified room that never reads, held, closed.
    NeverRead,
    /// Connections opened and closed (or reset) at once, over and over.
    Churn,
}

impl Attack {
    /// Every attack, in the order the threads cycle through them.
    pub const ALL: [Attack; 7] = [
        Attack::Garbage,
        Attack::Oversize,
        Attack::ResetMidFrame,
        Attack::ResetMidWrite,
        Attack::Slowloris,
        Attack::NeverRead,
        Attack::Churn,
    ];

    /// The attack's name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Attack::Garbage => "garbage",
            Attack::Oversize => "oversize",
            Attack::ResetMidFrame => "reset_mid_frame",
            Attack::ResetMidWrite => "reset_mid_write",
            Attack::Slowloris => "slowloris",
            Attack::NeverRead => "never_read",
            Attack::Churn => "churn",
        }
    }

    /// True if the attack means something in `framing`: a stream without lengths or
    /// line ends (`fixed:N`, `raw`) has nothing to declare too large.
    pub fn applies_to(self, framing: Framing) -> bool {
        self != Attack::Oversize || matches!(framing, Framing::Length { .. } | Framing::Line)
    }
}

/// What the chaos scenario adds to a run of verified traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChaosConfig {
    /// Hostile threads, each running one attack at a time.
    pub hostile: usize,
    /// The peak resident set the server may reach, in bytes; `None`: derived from the
    /// server's command line (see [`ServerLimits::bound`]).
    pub rss_bound: Option<u64>,
}

impl Default for ChaosConfig {
    fn default() -> Self {
        ChaosConfig {
            hostile: DEFAULT_HOSTILE,
            rss_bound: None,
        }
    }
}

/// The server's limits that bound its memory, as its command line states them
/// (framecast's defaults where it does not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// `--max-frame`, bytes.
    pub max_frame: u64,
    /// `--max-output`, bytes.
    pub max_output: u64,
    /// `--max-connections`.
    pub max_connections: u64,
}

impl ServerLimits {
    /// The limits in a framecast command line (`argv`, the program first or not);
    /// flags given as `--flag VALUE` or `--flag=VALUE`, the last one winning. A value
    /// that does not parse leaves the default, as framecast would not have started.
    pub fn from_args<S: AsRef<str>>(argv: &[S]) -> ServerLimits {
        let mut limits = ServerLimits {
            max_frame: framecast::config::DEFAULT_MAX_FRAME as u64,
            max_output: framecast::config::DEFAULT_MAX_OUTPUT as u64,
            max_connections: framecast::config::DEFAULT_MAX_CONNECTIONS as u64,
        };
        let size = |v: &str| framecast::units::parse_size(v).ok().map(|n| n as u64);
        let mut args = argv.iter().map(AsRef::as_ref);
        while let Some(arg) = args.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((flag, value)) => (flag, Some(value)),
                None => (arg, None),
            };
            let slot = match flag {
                "--max-frame" => &mut limits.max_frame,
                "--max-output" => &mut limits.max_output,
                "--max-connections" => &mut limits.max_connections,
                _ => continue,
            };
            let Some(value) = inline.or_else(|| args.next()) else {
                break;
            };
            let parsed = if flag == "--max-connections" {
                value.parse().ok()
            } else {
                size(value)
            };
            if let Some(n) = parsed {
                *slot = n;
            }
        }
        limits
    }

    /// The limits of the process `pid`, from `/proc/PID/cmdline`.
    ///
    /// # Errors
    /// The read error (no such process, not Linux).
    pub fn of_process(pid: u32) -> io::Result<ServerLimits> {
        let raw = std::fs::read(format!("/proc/{pid}/cmdline"))?;
        let argv: Vec<String> = raw
            .split(|&b| b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        Ok(ServerLimits::from_args(&argv))
    }

    /// What framecast promises `connections` connections cost at most, on top of
    /// `baseline`: each holds at most a frame being received (`--max-frame`), its
    /// output (`--max-output`), and one read buffer per connection whose frames wait
    /// in its queue ([`READ_BUFFER_MAX`] each: its own, and in broadcast with `pace`
    /// one per publisher), plus [`CONNECTION_OVERHEAD`]. Only connections that can be
    /// open at once count: at most `--max-connections`.
    pub fn bound(&self, baseline: u64, connections: u64, read_buffers: u64) -> u64 {
        let per_connection = self
            .max_frame
            .saturating_add(self.max_output)
            .saturating_add(read_buffers.saturating_mul(READ_BUFFER_MAX))
            .saturating_add(CONNECTION_OVERHEAD);
        baseline.saturating_add(
            connections
                .min(self.max_connections)
                .saturating_mul(per_connection),
        )
    }
}

/// The memory bound a run is checked against, and where it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bound {
    /// Bytes.
    pub bytes: u64,
    /// How it was found, for the report.
    pub how: String,
}

/// The server's memory over the run, in bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Memory {
    /// Resident set when the run started, before any load.
    pub baseline: u64,
    /// Largest resident set sampled during the run.
    pub peak_sampled: u64,
    /// The kernel's peak (`VmHWM`) at the end: the process's whole life, so it also
    /// counts what happened before the run.
    pub hwm: Option<u64>,
    /// What the server's limits promise.
    pub bound: Option<Bound>,
}

impl Memory {
    /// The peak: the kernel's when known, else the sampled one.
    pub fn peak(&self) -> u64 {
        self.hwm.unwrap_or(0).max(self.peak_sampled)
    }

    /// True if the peak passed the bound.
    pub fn over_bound(&self) -> bool {
        self.bound.as_ref().is_some_and(|b| self.peak() > b.bytes)
    }
}

/// How often each attack ran.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AttackTotals {
    /// Attacks run (started).
    pub runs: u64,
    /// Connections opened for them.
    pub connections: u64,
    /// Connections that could not be opened (the server full, or gone).
    pub connect_failures: u64,
}

/// Counters the hostile threads share, one set per attack.
#[derive(Default)]
struct Counts([[AtomicU64; 3]; Attack::ALL.len()]);

impl Counts {
    fn add(&self, attack: Attack, field: usize) {
        if let Some(i) = Attack::ALL.iter().position(|&a| a == attack) {
            self.0[i][field].fetch_add(1, Ordering::Relaxed);
        }
    }

    fn totals(&self) -> Vec<(Attack, AttackTotals)> {
        Attack::ALL
            .iter()
            .zip(&self.0)
            .map(|(&attack, [runs, conns, failures])| {
                (
                    attack,
                    AttackTotals {
                        runs: runs.load(Ordering::Relaxed),
                        connections: conns.load(Ordering::Relaxed),
                        connect_failures: failures.load(Ordering::Relaxed),
                    },
                )
            })
            .collect()
    }
}

const RUNS: usize = 0;
const CONNECTIONS: usize = 1;
const CONNECT_FAILURES: usize = 2;

/// A chaos run's outcome.
#[derive(Debug, Clone)]
pub struct ChaosReport {
    /// The verified traffic's report, as an ordinary run's.
    pub traffic: Report,
    /// Hostile threads.
    pub hostile: usize,
    /// What each attack did.
    pub attacks: Vec<(Attack, AttackTotals)>,
    /// The server's memory (with `--server-pid`).
    pub memory: Option<Memory>,
    /// The server's CPU time over the whole run, connecting and drain included.
    pub server_cpu: Option<Duration>,
    /// Wall time of the whole run.
    pub elapsed: Duration,
}

/// How a chaos run ended, for the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChaosStatus {
    /// As the verified traffic's run ended, when that is not clean.
    Traffic(Status),
    /// The traffic was clean, but the server's peak memory passed its bound.
    OverBound,
    /// Clean traffic, memory within its bound (or not measured).
    Clean,
}

impl ChaosReport {
    /// How the run ended: the traffic's errors first, then the memory bound.
    pub fn status(&self) -> ChaosStatus {
        match self.traffic.status() {
            Status::Clean if self.memory.as_ref().is_some_and(Memory::over_bound) => {
                ChaosStatus::OverBound
            }
            Status::Clean => ChaosStatus::Clean,
            other => ChaosStatus::Traffic(other),
        }
    }

    /// The server's CPU time as a share of one core over the run.
    pub fn server_cpu_share(&self) -> Option<f64> {
        let secs = self.elapsed.as_secs_f64();
        self.server_cpu
            .filter(|_| secs > 0.0)
            .map(|cpu| cpu.as_secs_f64() / secs)
    }

    /// The summary as text: the traffic's, then the chaos lines.
    pub fn text(&self) -> String {
        let mut out = self.traffic.text();
        if !out.ends_with('\n') {
            out.push('\n');
        }
        let _ = writeln!(
            out,
            "chaos     {} hostile thread{} over {:.2} s:",
            self.hostile,
            if self.hostile == 1 { "" } else { "s" },
            self.elapsed.as_secs_f64()
        );
        for (attack, t) in &self.attacks {
            if t.runs == 0 {
                continue;
            }
            let _ = writeln!(
                out,
                "            {:<16} {:>6} runs, {:>7} connections, {} connect failures",
                attack.name(),
                t.runs,
                t.connections,
                t.connect_failures
            );
        }
        let errors = self.traffic.stats.errors();
        let _ = writeln!(
            out,
            "verified  {}",
            if errors == 0 {
                "no errors beside the hostile clients".to_owned()
            } else {
                format!("{errors} ERRORS beside the hostile clients")
            }
        );
        match &self.memory {
            Some(m) => {
                let mib = |b: u64| b as f64 / f64::from(1u32 << 20);
                let _ = write!(
                    out,
                    "memory    server peak {:.1} MiB (VmHWM {}, sampled {:.1} MiB), {:.1} MiB at the start",
                    mib(m.peak()),
                    m.hwm.map_or_else(|| "n/a".to_owned(), |h| format!("{:.1} MiB", mib(h))),
                    mib(m.peak_sampled),
                    mib(m.baseline),
                );
                match &m.bound {
                    Some(b) => {
                        let verdict = if m.over_bound() { "OVER" } else { "within" };
                        let _ = writeln!(
                            out,
                            "; {verdict} the bound of {:.1} MiB ({})",
                            mib(b.bytes),
                            b.how
                        );
                    }
                    None => out.push('\n'),
                }
            }
            None => out.push_str("memory    n/a (give --server-pid)\n"),
        }
        if let (Some(cpu), Some(share)) = (self.server_cpu, self.server_cpu_share()) {
            let _ = writeln!(
                out,
                "server    cpu {:.2} s over the run, {:.0}% of a core",
                cpu.as_secs_f64(),
                share * 100.0
            );
        }
        out
    }

    /// The summary as one JSON object: the chaos figures, and the traffic's summary
    /// under `traffic`.
    pub fn json(&self) -> String {
        let num = |v: Option<u64>| v.map_or_else(|| "null".to_owned(), |v| v.to_string());
        let mut attacks = String::from("{");
        for (i, (attack, t)) in self.attacks.iter().enumerate() {
            let _ = write!(
                attacks,
                "{}\"{}\":{{\"runs\":{},\"connections\":{},\"connect_failures\":{}}}",
                if i == 0 { "" } else { "," },
                attack.name(),
                t.runs,
                t.connections,
                t.connect_failures
            );
        }
        attacks.push('}');
        let memory = self.memory.as_ref();
        let bound = memory.and_then(|m| m.bound.as_ref());
        format!(
            "{{\"scenario\":\"chaos\",\"hostile\":{},\"elapsed_s\":{:.3},\"verified_errors\":{},\
             \"rss_start_bytes\":{},\"rss_peak_bytes\":{},\"rss_hwm_bytes\":{},\
             \"rss_sampled_peak_bytes\":{},\"rss_bound_bytes\":{},\"rss_over_bound\":{},\
             \"server_cpu_run_s\":{},\"server_cpu_share\":{},\"attacks\":{attacks},\"traffic\":{}}}",
            self.hostile,
            self.elapsed.as_secs_f64(),
            self.traffic.stats.errors(),
            num(memory.map(|m| m.baseline)),
            num(memory.map(Memory::peak)),
            num(memory.and_then(|m| m.hwm)),
            num(memory.map(|m| m.peak_sampled)),
            num(bound.map(|b| b.bytes)),
            memory.is_some_and(Memory::over_bound),
            self.server_cpu
                .map_or_else(|| "null".to_owned(), |c| format!("{:.3}", c.as_secs_f64())),
            self.server_cpu_share()
                .map_or_else(|| "null".to_owned(), |s| format!("{s:.4}")),
            self.traffic.json().trim_end(),
        )
    }
}

/// A room name as the framing carries it: `fixed:N` frames are N bytes, so the name
/// is padded with `-` to N.
///
/// # Errors
/// [`ConfigError`] when the framing cannot carry a room name framecast takes (1 to
/// 255 bytes).
pub fn room_name(name: &str, framing: Framing) -> Result<Vec<u8>, ConfigError> {
    let mut room = name.as_bytes().to_vec();
    if let Framing::Fixed(n) = framing {
        if n > MAX_ROOM_NAME || n < room.len() {
            return Err(ConfigError::OutOfRange {
                flag: "--framing",
                value: framing.to_string(),
                why: format!(
                    "chaos broadcast joins rooms, and a fixed:N room name is N bytes: N must be \
                     {} to {MAX_ROOM_NAME}",
                    room.len()
                ),
            });
        }
        room.resize(n, b'-');
    }
    Ok(room)
}

/// Runs verified traffic as `traffic` describes it beside `chaos.hostile` hostile
/// threads, until the traffic's run is over.
///
/// # Errors
/// As [`crate::run`]; also [`RunError::Config`] for a broadcast framing that cannot
/// name a room.
pub fn run(
    traffic: &BenchConfig,
    chaos: &ChaosConfig,
    progress: &mut dyn FnMut(&str),
    interrupt: &AtomicBool,
) -> Result<ChaosReport, RunError> {
    let mut traffic = traffic.clone();
    let broadcast = matches!(traffic.scenario, Scenario::Broadcast { .. });
    let hostile_room = if broadcast {
        if traffic.room.is_none() {
            traffic.room = Some(room_name(VERIFIED_ROOM, traffic.framing)?);
        }
        Some(room_name(HOSTILE_ROOM, traffic.framing)?)
    } else {
        None
    };
    traffic.validate()?;
    let hostile = chaos.hostile.clamp(1, MAX_HOSTILE);
    let pid = traffic.server_pid;
    let baseline = pid.and_then(|pid| rss(pid).ok()).and_then(|s| s.rss);
    let bound = baseline.and_then(|baseline| bound(&traffic, chaos, hostile, baseline));
    let cpu_start = pid.and_then(|pid| crate::cpu::process_time(Some(pid)).ok());
    let started = Instant::now();
    let counts = Counts::default();
    let stop = AtomicBool::new(false);
    let plan = HostilePlan {
        target: traffic.target,
        framing: traffic.framing,
        payload: traffic.size.min,
        verified_room: traffic.room.clone().filter(|_| broadcast),
        hostile_room,
        seed: traffic.seed,
    };
    let (outcome, peak_sampled) = thread::scope(|scope| {
        let stop_ref = &stop;
        let sampler = pid.map(|pid| scope.spawn(move || sample_peak(pid, stop_ref)));
        for index in 0..hostile {
            let (plan, counts, stop) = (&plan, &counts, &stop);
            let spawned = thread::Builder::new()
                .name(format!("chaos-{index}"))
                .spawn_scoped(scope, move || plan.attack_until(index, counts, stop));
            if let Err(e) = spawned {
                progress(&format!("note: hostile thread {index} did not start: {e}"));
            }
        }
        let outcome = crate::run(&traffic, progress, interrupt);
        stop.store(true, Ordering::Relaxed);
        let peak = sampler.and_then(|s| s.join().ok()).unwrap_or(0);
        (outcome, peak)
    });
    let report = outcome?;
    let elapsed = started.elapsed();
    let cpu_end = pid.and_then(|pid| crate::cpu::process_time(Some(pid)).ok());
    let memory = baseline.map(|baseline| Memory {
        baseline,
        peak_sampled: peak_sampled.max(baseline),
        hwm: pid.and_then(|pid| rss(pid).ok()).and_then(|s| s.hwm),
        bound,
    });
    Ok(ChaosReport {
        traffic: report,
        hostile,
        attacks: counts.totals(),
        memory,
        server_cpu: match (cpu_start, cpu_end) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a)),
            _ => None,
        },
        elapsed,
    })
}

/// The memory bound: the one given, or what the server's command line promises for
/// the connections this run can hold at once.
fn bound(
    traffic: &BenchConfig,
    chaos: &ChaosConfig,
    hostile: usize,
    baseline: u64,
) -> Option<Bound> {
    if let Some(bytes) = chaos.rss_bound {
        return Some(Bound {
            bytes,
            how: "--rss-bound".to_owned(),
        });
    }
    let limits = ServerLimits::of_process(traffic.server_pid?).ok()?;
    // Slowloris holds the most connections of any attack.
    let connections =
        traffic.scenario.connections() as u64 + (hostile * SLOWLORIS_CONNECTIONS) as u64;
    let read_buffers = match traffic.scenario {
        Scenario::Echo { .. } => 1,
        Scenario::Broadcast { publishers, .. } => 1 + publishers as u64,
    };
    let bytes = limits.bound(baseline, connections, read_buffers);
    let kib = |b: u64| b >> 10;
    Some(Bound {
        bytes,
        how: format!(
            "start + {} connections x (max-frame {} KiB + max-output {} KiB + {read_buffers} x {} KiB \
             read buffer + {} KiB)",
            connections.min(limits.max_connections),
            kib(limits.max_frame),
            kib(limits.max_output),
            kib(READ_BUFFER_MAX),
            kib(CONNECTION_OVERHEAD)
        ),
    })
}

/// A process's resident set now and at its peak, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rss {
    /// `VmRSS`.
    pub rss: Option<u64>,
    /// `VmHWM`.
    pub hwm: Option<u64>,
}

/// Reads `VmRSS` and `VmHWM` from the text of a `/proc/PID/status` file.
pub fn parse_status(text: &str) -> Rss {
    let field = |name: &str| {
        text.lines().find_map(|line| {
            let kib = line.strip_prefix(name)?.trim().strip_suffix("kB")?.trim();
            kib.parse::<u64>().ok().map(|k| k.saturating_mul(1024))
        })
    };
    Rss {
        rss: field("VmRSS:"),
        hwm: field("VmHWM:"),
    }
}

/// The resident set of process `pid`.
///
/// # Errors
/// The read error (no such process, not Linux).
pub fn rss(pid: u32) -> io::Result<Rss> {
    std::fs::read_to_string(format!("/proc/{pid}/status")).map(|text| parse_status(&text))
}

/// Samples the resident set of `pid` until `stop`; the largest sample.
fn sample_peak(pid: u32, stop: &AtomicBool) -> u64 {
    let mut peak = 0;
    while !stop.load(Ordering::Relaxed) {
        if let Some(now) = rss(pid).ok().and_then(|s| s.rss) {
            peak = peak.max(now);
        }
        thread::sleep(SAMPLE_INTERVAL);
    }
    peak
}

/// What every hostile thread needs to know.
struct HostilePlan {
    /// The server.
    target: SocketAddr,
    /// Its framing.
    framing: Framing,
    /// Payload bytes of the valid frames hostile clients send (the traffic's smallest,
    /// which the server's `--max-frame` takes).
    payload: usize,
    /// Broadcast: the verified room, which clients that never read join.
    verified_room: Option<Vec<u8>>,
    /// Broadcast: the room of clients that send.
    hostile_room: Option<Vec<u8>>,
    /// Seed of the garbage.
    seed: u64,
}

/// A small deterministic generator (xorshift64*), so a run's garbage reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Which room a hostile client joins first (broadcast).
#[derive(Clone, Copy)]
enum Join {
    /// The hostile room: the client will send.
    Hostile,
    /// The verified room: the client only receives (or does not).
    Verified,
}

impl HostilePlan {
    /// Runs attacks one after the other, starting at the thread's own, until `stop`.
    fn attack_until(&self, index: usize, counts: &Counts, stop: &AtomicBool) {
        let attacks: Vec<Attack> = Attack::ALL
            .into_iter()
            .filter(|a| a.applies_to(self.framing))
            .collect();
        let mut rng = Rng(self.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (index as u64 + 1) | 1);
        let mut next = index;
        while !stop.load(Ordering::Relaxed) {
            let attack = attacks[next % attacks.len()];
            next += 1;
            counts.add(attack, RUNS);
            let mut client = Client {
                plan: self,
                attack,
                counts,
                stop,
            };
            // Every error here is the server's answer to a hostile client (a reset, a
            // close), or a connect failure already counted: nothing to report.
            let _ = client.run(&mut rng);
        }
    }

    /// A valid frame of the framing, `payload` printable bytes (raw: just the bytes).
    fn valid_frame(&self, rng: &mut Rng) -> Vec<u8> {
        let payload: Vec<u8> = (0..self.payload)
            .map(|_| b'a' + rng.below(26) as u8)
            .collect();
        let mut frame = BytesMut::new();
        match Codec::new(self.framing, payload.len()).encode(&payload, &mut frame) {
            Ok(()) => frame.to_vec(),
            Err(_) => payload,
        }
    }

    /// The first part of a frame: a header and half the payload, half a line, half a
    /// fixed frame.
    fn partial_frame(&self, rng: &mut Rng) -> Vec<u8> {
        let frame = self.valid_frame(rng);
        let header = match self.framing {
            Framing::Length { width, .. } => width,
            _ => 0,
        };
        let keep = header + (frame.len() - header) / 2;
        frame[..keep.max(1)].to_vec()
    }

    /// A declaration no `--max-frame` below the header's range takes: a length header
    /// with every bit set, or a long line without its end.
    fn oversize(&self) -> Vec<u8> {
        match self.framing {
            Framing::Length { width, .. } => {
                let mut bytes = vec![0xff; width];
                bytes.extend_from_slice(b"oversize");
                bytes
            }
            _ => vec![b'x'; LONG_LINE],
        }
    }
}

/// One attack's connections.
struct Client<'a> {
    plan: &'a HostilePlan,
    attack: Attack,
    counts: &'a Counts,
    stop: &'a AtomicBool,
}

impl Client<'_> {
    fn run(&mut self, rng: &mut Rng) -> io::Result<()> {
        let plan = self.plan;
        let echo = plan.verified_room.is_none();
        match self.attack {
            Attack::Garbage => {
                let mut s = self.connect(Join::Hostile)?;
                let len = 1 + rng.below(MAX_GARBAGE);
                s.write_all(&rng.bytes(len))?;
                drain(&mut s);
            }
            Attack::Oversize => {
                let mut s = self.connect(Join::Hostile)?;
                s.write_all(&plan.oversize())?;
                // The server closes it (a protocol error): wait for that, briefly.
                drain(&mut s);
            }
            Attack::ResetMidFrame => {
                let mut s = self.connect(Join::Hostile)?;
                if rng.below(2) == 0 {
                    s.write_all(&plan.valid_frame(rng))?;
                }
                s.write_all(&plan.partial_frame(rng))?;
                reset(s);
            }
            Attack::ResetMidWrite if echo => {
                let mut s = self.connect(Join::Hostile)?;
                push_until_blocked(&mut s, &plan.valid_frame(rng), self.stop)?;
                reset(s);
            }
            Attack::ResetMidWrite => {
                let s = self.connect(Join::Verified)?;
                self.hold(HOLD / 2);
                reset(s);
            }
            Attack::NeverRead => {
                let join = if echo { Join::Hostile } else { Join::Verified };
                let mut s = self.connect(join)?;
                if echo {
                    push_until_blocked(&mut s, &plan.valid_frame(rng), self.stop)?;
                }
                self.hold(HOLD);
            }
            Attack::Slowloris => {
                let frame = plan.valid_frame(rng);
                let mut held: Vec<TcpStream> = (0..SLOWLORIS_CONNECTIONS)
                    .filter_map(|_| self.connect(Join::Hostile).ok())
                    .collect();
                let until = Instant::now() + TRICKLE_FOR;
                // One byte at a time, never a whole frame.
                let mut at = 0;
                while Instant::now() < until && !self.stop.load(Ordering::Relaxed) {
                    if at + 1 < frame.len() {
                        held.retain_mut(|s| s.write_all(&frame[at..=at]).is_ok());
                        at += 1;
                    }
                    thread::sleep(TRICKLE);
                }
            }
            Attack::Churn => {
                for cycle in 0..CHURN_CYCLES {
                    if self.stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let s = self.connect_bare()?;
                    if cycle % 2 == 0 {
                        reset(s);
                    }
                }
            }
        }
        Ok(())
    }

    /// Connects, counting the connection or its failure; in broadcast joins a room.
    fn connect(&self, join: Join) -> io::Result<TcpStream> {
        let mut s = self.connect_bare()?;
        let room = match join {
            Join::Hostile => &self.plan.hostile_room,
            Join::Verified => &self.plan.verified_room,
        };
        if let Some(room) = room {
            let mut frame = BytesMut::new();
            Codec::new(self.plan.framing, room.len())
                .encode(room, &mut frame)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
            s.write_all(&frame)?;
        }
        Ok(s)
    }

    /// Connects without joining anything.
    fn connect_bare(&self) -> io::Result<TcpStream> {
        match TcpStream::connect_timeout(&self.plan.target, IO_TIMEOUT) {
            Ok(s) => {
                self.counts.add(self.attack, CONNECTIONS);
                s.set_read_timeout(Some(IO_TIMEOUT))?;
                s.set_write_timeout(Some(IO_TIMEOUT))?;
                s.set_nodelay(true)?;
                Ok(s)
            }
            Err(e) => {
                self.counts.add(self.attack, CONNECT_FAILURES);
                // Do not spin against a full or absent server.
                thread::sleep(IO_TIMEOUT);
                Err(e)
            }
        }
    }

    /// Sleeps for `time`, or until the run stops.
    fn hold(&self, time: Duration) {
        let until = Instant::now() + time;
        while !self.stop.load(Ordering::Relaxed) {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            thread::sleep(left.min(SAMPLE_INTERVAL));
        }
    }
}

/// Reads what the server sends for up to [`IO_TIMEOUT`] without a byte, or until it
/// closes; the bytes are thrown away.
fn drain(s: &mut TcpStream) {
    let mut buf = [0u8; 16 << 10];
    while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
}

/// Closes with a reset (`SO_LINGER` 0) instead of a FIN.
fn reset(s: TcpStream) {
    // Should the option not take, the close is an ordinary one: still hostile enough.
    let _ = SockRef::from(&s).set_linger(Some(Duration::ZERO));
    drop(s);
}

/// Writes `frame` over and over without reading, until the server stops reading us
/// (a write times out), [`MAX_PUSH`] bytes have gone, or the run stops.
fn push_until_blocked(s: &mut TcpStream, frame: &[u8], stop: &AtomicBool) -> io::Result<()> {
    let mut sent = 0;
    while sent < MAX_PUSH && !stop.load(Ordering::Relaxed) {
        match s.write(&frame[sent % frame.len()..]) {
            Ok(n) => sent += n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_limits_come_from_the_command_line_with_framecasts_defaults() {
        let limits = ServerLimits::from_args(&["framecast", "--listen", "127.0.0.1:0"]);
        assert_eq!(limits.max_frame, 8 << 20);
        assert_eq!(limits.max_output, 4 << 20);
        assert_eq!(limits.max_connections, 10_000);
        let limits = ServerLimits::from_args(&[
            "framecast",
            "--max-frame",
            "1KiB",
            "--max-output=256KiB",
            "--max-connections",
            "500",
            "--max-frame",
            "2KiB",
        ]);
        assert_eq!(
            limits,
            ServerLimits {
                max_frame: 2048,
                max_output: 256 << 10,
                max_connections: 500
            }
        );
        // A flag at the end without its value changes nothing.
        assert_eq!(
            ServerLimits::from_args(&["framecast", "--max-output"]).max_output,
            4 << 20
        );
    }

    #[test]
    fn the_bound_counts_only_connections_that_can_be_open() {
        let limits = ServerLimits {
            max_frame: 1 << 10,
            max_output: 256 << 10,
            max_connections: 10,
        };
        let per = (1 << 10) + (256 << 10) + READ_BUFFER_MAX + CONNECTION_OVERHEAD;
        assert_eq!(limits.bound(1000, 4, 1), 1000 + 4 * per);
        assert_eq!(
            limits.bound(1000, 400, 1),
            1000 + 10 * per,
            "at most max-connections"
        );
        assert_eq!(
            limits.bound(0, 1, 3),
            (1 << 10) + (256 << 10) + 3 * READ_BUFFER_MAX + CONNECTION_OVERHEAD
        );
        let huge = ServerLimits {
            max_frame: u64::MAX,
            ..limits
        };
        assert_eq!(huge.bound(1, 2, 1), u64::MAX, "saturates");
    }

    #[test]
    fn reads_rss_and_its_peak_from_proc_status() {
        let status = "Name:\tframecast\nVmHWM:\t   20480 kB\nVmRSS:\t    8192 kB\nThreads:\t2\n";
        assert_eq!(
            parse_status(status),
            Rss {
                rss: Some(8192 * 1024),
                hwm: Some(20480 * 1024)
            }
        );
        assert_eq!(
            parse_status(""),
            Rss {
                rss: None,
                hwm: None
            }
        );
        assert_eq!(parse_status("VmRSS: lots kB\n").rss, None);
    }

    #[test]
    fn the_peak_is_checked_against_the_bound() {
        let mut m = Memory {
            baseline: 10,
            peak_sampled: 90,
            hwm: Some(100),
            bound: Some(Bound {
                bytes: 100,
                how: String::new(),
            }),
        };
        assert_eq!(m.peak(), 100);
        assert!(!m.over_bound());
        m.peak_sampled = 101;
        assert!(m.over_bound(), "a sample above the kernel's figure counts");
        m.bound = None;
        assert!(!m.over_bound());
    }

    #[test]
    fn room_names_fit_the_framing() {
        assert_eq!(room_name("room", Framing::Line), Ok(b"room".to_vec()));
        assert_eq!(
            room_name("room", Framing::Fixed(8)),
            Ok(b"room----".to_vec())
        );
        assert!(room_name("room", Framing::Fixed(300)).is_err());
        assert!(room_name("room", Framing::Fixed(3)).is_err());
    }

    #[test]
    fn oversize_applies_only_where_a_length_or_line_can_be_declared() {
        assert!(Attack::Oversize.applies_to(Framing::default()));
        assert!(Attack::Oversize.applies_to(Framing::Line));
        assert!(!Attack::Oversize.applies_to(Framing::Raw));
        assert!(!Attack::Oversize.applies_to(Framing::Fixed(64)));
        assert!(Attack::Churn.applies_to(Framing::Raw));
    }

    #[test]
    fn hostile_frames_are_what_they_claim() {
        let plan = HostilePlan {
            target: ([127, 0, 0, 1], 1).into(),
            framing: Framing::default(),
            payload: 10,
            verified_room: None,
            hostile_room: None,
            seed: 1,
        };
        let mut rng = Rng(7);
        let frame = plan.valid_frame(&mut rng);
        assert_eq!(&frame[..4], &10u32.to_be_bytes());
        assert_eq!(frame.len(), 14);
        assert_eq!(plan.partial_frame(&mut rng).len(), 4 + 5, "header and half");
        assert_eq!(plan.oversize()[..4], [0xff; 4]);
    }
}
