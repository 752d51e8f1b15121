//! The UDP echo run (`udp://HOST:PORT` targets): each message is one datagram, carrying
//! the same integrity header as a stream's payload, so every reply is verified. A
//! datagram has its boundaries, so no framing applies. UDP may lose datagrams: a
//! datagram not answered within [`LOSS_AFTER`] counts as lost (a figure of the run,
//! like the rate), never as an error of the server; a reply that fails verification,
//! or that comes from another socket's sequence, is an error.
//!
//! One thread, one `mio::Poll`, `-c` connected sockets, each keeping `--depth`
//! datagrams in flight (closed loop); a lost one is replaced, so the loop goes on.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io;
use std::net::{SocketAddr, UdpSocket as StdUdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};

use crate::config::{BenchConfig, Load, Scenario};
use crate::payload::{Format, Header, Pattern};
use crate::stats::new_histogram;
use crate::{cpu, RunError};

/// A datagram unanswered this long is counted lost and replaced.
pub const LOSS_AFTER: Duration = Duration::from_millis(500);
/// The largest datagram over IPv4.
pub const MAX_DATAGRAM: usize = 65_507;
/// The longest the loop sleeps in one poll: loss is looked for at least this often.
const TICK: Duration = Duration::from_millis(10);

/// One socket's traffic.
struct Flow {
    /// Connected to the target, non-blocking.
    socket: UdpSocket,
    /// Its id in the payload header.
    id: u32,
    /// The next sequence number.
    seq: u64,
    /// Datagrams in flight: sequence and send time (ns since the epoch), oldest first.
    in_flight: VecDeque<(u64, u64)>,
    /// Size generator state.
    rng: u64,
    /// The socket would not take a datagram: wait for `WRITABLE`.
    blocked: bool,
}

/// What a UDP run measured.
#[derive(Debug)]
pub struct UdpReport {
    /// The target, as named.
    pub target: String,
    /// Sockets.
    pub sockets: usize,
    /// Datagrams each kept in flight.
    pub depth: usize,
    /// Payload sizes.
    pub size: (usize, usize),
    /// The measured window.
    pub measured: Duration,
    /// Warmup before it.
    pub warmup: Duration,
    /// Datagrams sent in the window.
    pub sent: u64,
    /// Replies received in the window.
    pub echoed: u64,
    /// Datagrams sent in the window and never answered.
    pub lost: u64,
    /// Replies that failed verification or belong to no datagram in flight.
    pub corrupted: u64,
    /// Bytes sent and received in the window.
    pub bytes: (u64, u64),
    /// Round trips, in ns.
    pub latency: Histogram<u64>,
    /// The bench's CPU time over the window.
    pub bench_cpu: Option<Duration>,
    /// The server's, with `--server-pid`.
    pub server_cpu: Option<(u32, Duration)>,
    /// Ended early by a signal.
    pub interrupted: bool,
}

/// The next payload size in `min..=max`.
fn next_size(rng: &mut u64, min: usize, max: usize) -> usize {
    if min == max {
        return min;
    }
    *rng ^= *rng << 13;
    *rng ^= *rng >> 7;
    *rng ^= *rng << 17;
    min + (*rng % (max - min + 1) as u64) as usize
}

/// Checks what a UDP run can take.
///
/// # Errors
/// A message for the flag that does not fit.
pub fn validate(config: &BenchConfig) -> Result<(), String> {
    if !matches!(config.scenario, Scenario::Echo { .. }) {
        return Err("a udp:// target takes --scenario echo only (UDP echo, RFC 862)".into());
    }
    if !matches!(config.load, Load::Closed { .. }) {
        return Err("a udp:// target takes the closed loop (--depth), not --rate".into());
    }
    if config.size.max > MAX_DATAGRAM {
        return Err(format!(
            "a udp:// datagram carries at most {MAX_DATAGRAM} bytes (--size)"
        ));
    }
    if config.room.is_some() || !config.sources.is_empty() || config.threads > 1 {
        return Err("a udp:// target takes none of --room, --source, --threads".into());
    }
    Ok(())
}

/// Runs the UDP echo load against `config.target`.
///
/// # Errors
/// The sockets or the poller cannot be set up.
pub fn run(config: &BenchConfig, interrupt: &AtomicBool) -> Result<UdpReport, RunError> {
    let Scenario::Echo { connections } = config.scenario else {
        return Err(RunError::Setup(io::ErrorKind::InvalidInput.into()));
    };
    let depth = match config.load {
        Load::Closed { depth } => depth.max(1),
        Load::Open { .. } => 1,
    };
    let (min, max) = (config.size.min, config.size.max);
    let pattern = Pattern::new(Format::Binary, min, max);
    let mut poll = Poll::new().map_err(RunError::Setup)?;
    let local: SocketAddr = if config.target.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let mut flows = Vec::with_capacity(connections);
    for id in 0..connections {
        let socket = StdUdpSocket::bind(local).map_err(RunError::Setup)?;
        socket.connect(config.target).map_err(RunError::Setup)?;
        socket.set_nonblocking(true).map_err(RunError::Setup)?;
        let mut socket = UdpSocket::from_std(socket);
        poll.registry()
            .register(&mut socket, Token(id), Interest::READABLE)
            .map_err(RunError::Setup)?;
        flows.push(Flow {
            socket,
            id: id as u32,
            seq: 0,
            in_flight: VecDeque::with_capacity(depth),
            rng: config.seed.wrapping_add(id as u64).max(1),
            blocked: false,
        });
    }
    let epoch = Instant::now();
    let warm_end = epoch + config.warmup;
    let end = warm_end + config.duration;
    let ns = |t: Instant| u64::try_from(t.duration_since(epoch).as_nanos()).unwrap_or(u64::MAX);
    let (warm_ns, end_ns) = (ns(warm_end), ns(end));
    let in_window = |stamp: u64| stamp >= warm_ns && stamp < end_ns;
    let mut report = UdpReport {
        target: config.target_name(),
        sockets: connections,
        depth,
        size: (min, max),
        measured: Duration::ZERO,
        warmup: config.warmup,
        sent: 0,
        echoed: 0,
        lost: 0,
        corrupted: 0,
        bytes: (0, 0),
        latency: new_histogram(),
        bench_cpu: None,
        server_cpu: None,
        interrupted: false,
    };
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    let mut datagram = vec![0u8; max];
    let mut events = Events::with_capacity(1024);
    let mut window_start: Option<(Instant, Option<Duration>, Option<Duration>)> = None;
    let mut window_end: Option<Instant> = None;
    let cpu_now = || {
        (
            cpu::process_time(None).ok(),
            config
                .server_pid
                .and_then(|pid| cpu::process_time(Some(pid)).ok()),
        )
    };
    loop {
        let now = Instant::now();
        if window_start.is_none() && now >= warm_end {
            let (bench, server) = cpu_now();
            window_start = Some((now, bench, server));
        }
        let sending = now < end && !interrupt.load(Ordering::Relaxed);
        if !sending && window_end.is_none() {
            window_end = Some(now);
            report.interrupted = now < end;
            if let Some((start, bench, server)) = window_start {
                let (bench_now, server_now) = cpu_now();
                report.measured = now.saturating_duration_since(start);
                report.bench_cpu = bench.zip(bench_now).map(|(a, b)| b.saturating_sub(a));
                report.server_cpu = config
                    .server_pid
                    .zip(server.zip(server_now))
                    .map(|(pid, (a, b))| (pid, b.saturating_sub(a)));
            }
        }
        let now_ns = ns(now);
        // Losses: the oldest first; a lost datagram is replaced while the run lasts.
        for flow in &mut flows {
            while let Some(&(_, stamp)) = flow.in_flight.front() {
                if now_ns.saturating_sub(stamp) < LOSS_AFTER.as_nanos() as u64 {
                    break;
                }
                flow.in_flight.pop_front();
                if in_window(stamp) {
                    report.lost += 1;
                }
            }
        }
        if !sending && flows.iter().all(|f| f.in_flight.is_empty()) {
            break;
        }
        if sending {
            for flow in flows.iter_mut().filter(|f| !f.blocked) {
                while flow.in_flight.len() < depth {
                    let len = next_size(&mut flow.rng, min, max);
                    let payload = &mut datagram[..len];
                    payload.copy_from_slice(pattern.template(flow.seq, len));
                    let stamp = ns(Instant::now());
                    let header = Header {
                        conn: flow.id,
                        len: len as u32,
                        seq: flow.seq,
                        stamp,
                    };
                    pattern.write(payload, &header);
                    match flow.socket.send(payload) {
                        Ok(_) => {
                            flow.in_flight.push_back((flow.seq, stamp));
                            flow.seq += 1;
                            if in_window(stamp) {
                                report.sent += 1;
                                report.bytes.0 += len as u64;
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            flow.blocked = true;
                            let token = Token(flow.id as usize);
                            let both = Interest::READABLE | Interest::WRITABLE;
                            let _ = poll.registry().reregister(&mut flow.socket, token, both);
                            break;
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        // ICMP "port unreachable" from an earlier datagram, and the
                        // like: this one is lost, the run goes on.
                        Err(_) => break,
                    }
                }
            }
        }
        if let Err(e) = poll.poll(&mut events, Some(TICK)) {
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(RunError::Setup(e));
            }
        }
        for event in events.iter() {
            let Some(flow) = flows.get_mut(event.token().0) else {
                continue;
            };
            if event.is_writable() && flow.blocked {
                flow.blocked = false;
                let token = Token(flow.id as usize);
                let _ = poll
                    .registry()
                    .reregister(&mut flow.socket, token, Interest::READABLE);
            }
            loop {
                let n = match flow.socket.recv(&mut buf) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => break, // WouldBlock, or an ICMP error for a lost one
                };
                let arrived = ns(Instant::now());
                let reply = &buf[..n];
                let header = pattern.verify(reply).ok().filter(|h| h.conn == flow.id);
                let found = header.and_then(|h| {
                    let at = flow.in_flight.iter().position(|&(seq, _)| seq == h.seq)?;
                    flow.in_flight.remove(at)
                });
                match found {
                    Some((_, stamp)) => {
                        if in_window(stamp) {
                            report.echoed += 1;
                            report.bytes.1 += n as u64;
                            let _ = report.latency.record(arrived.saturating_sub(stamp).max(1));
                        }
                    }
                    // Corrupted, another socket's, or a duplicate of one answered.
                    None => report.corrupted += 1,
                }
            }
        }
    }
    Ok(report)
}

impl UdpReport {
    /// Datagrams echoed per second of the window.
    pub fn rate(&self) -> f64 {
        self.echoed as f64 / self.measured.as_secs_f64().max(1e-9)
    }

    /// CPU time per echoed datagram, in µs.
    fn per_datagram(&self, cpu: Option<Duration>) -> Option<f64> {
        cpu.filter(|_| self.echoed > 0)
            .map(|c| c.as_secs_f64() * 1e6 / self.echoed as f64)
    }

    /// The share of datagrams sent that were lost, in percent.
    fn loss_percent(&self) -> f64 {
        100.0 * self.lost as f64 / self.sent.max(1) as f64
    }

    /// The summary for people.
    pub fn text(&self) -> String {
        let secs = self.measured.as_secs_f64().max(1e-9);
        let mut out = String::new();
        let _ = writeln!(
            out,
            "framecast-bench: {} udp echo, {} sockets, {}..{}-byte datagrams, closed loop, depth {}",
            self.target, self.sockets, self.size.0, self.size.1, self.depth
        );
        let _ = writeln!(
            out,
            "  {:.2} s measured after {:.2} s of warmup{}",
            secs,
            self.warmup.as_secs_f64(),
            if self.interrupted {
                " (interrupted)"
            } else {
                ""
            }
        );
        let _ = writeln!(
            out,
            "  datagrams {} sent ({:.1}/s), {} echoed ({:.1}/s), {} lost ({:.3}%)",
            self.sent,
            self.sent as f64 / secs,
            self.echoed,
            self.rate(),
            self.lost,
            self.loss_percent()
        );
        let _ = writeln!(
            out,
            "  bytes     out {:.2} MB/s, in {:.2} MB/s",
            self.bytes.0 as f64 / secs / 1e6,
            self.bytes.1 as f64 / secs / 1e6
        );
        let q = |p: f64| self.latency.value_at_quantile(p) as f64 / 1e3;
        let _ = writeln!(
            out,
            "  latency   p50 {:.1} µs, p99 {:.1} µs, p99.9 {:.1} µs, max {:.1} µs",
            q(0.5),
            q(0.99),
            q(0.999),
            self.latency.max() as f64 / 1e3
        );
        let errors = if self.corrupted == 0 {
            "none (lost datagrams are UDP's, not errors)".to_owned()
        } else {
            format!("{} corrupted or unexpected replies", self.corrupted)
        };
        let _ = writeln!(out, "  errors    {errors}");
        let bench = self.per_datagram(self.bench_cpu);
        let mut cpu = match (self.bench_cpu, bench) {
            (Some(c), Some(per)) => format!("bench {:.2} s, {per:.3} µs/datagram", c.as_secs_f64()),
            _ => "bench n/a".to_owned(),
        };
        if let Some((pid, c)) = self.server_cpu {
            let per = self.per_datagram(Some(c)).unwrap_or(0.0);
            let _ = write!(
                cpu,
                "; server (pid {pid}) {:.2} s, {per:.3} µs/datagram",
                c.as_secs_f64()
            );
        }
        let _ = writeln!(out, "  cpu       {cpu}");
        out
    }

    /// The summary as one JSON object (keys as the stream runs' where they mean the
    /// same: `frames_per_s`, `cpu.server_us_per_frame`).
    pub fn json(&self) -> String {
        let num = |v: Option<f64>| v.map_or_else(|| "null".to_owned(), |v| format!("{v:.3}"));
        let secs = self.measured.as_secs_f64().max(1e-9);
        format!(
            concat!(
                "{{\"scenario\":\"udp_echo\",\"target\":\"{}\",\"sockets\":{},\"depth\":{},",
                "\"size_min\":{},\"size_max\":{},\"measured_s\":{:.3},\"sent\":{},\"echoed\":{},",
                "\"lost\":{},\"corrupted\":{},\"frames_per_s\":{:.1},\"mb_out_per_s\":{:.3},",
                "\"mb_in_per_s\":{:.3},\"latency_us\":{{\"p50\":{:.1},\"p99\":{:.1},\"max\":{:.1}}},",
                "\"cpu\":{{\"bench_us_per_frame\":{},\"server_us_per_frame\":{}}},\"interrupted\":{}}}"
            ),
            self.target,
            self.sockets,
            self.depth,
            self.size.0,
            self.size.1,
            secs,
            self.sent,
            self.echoed,
            self.lost,
            self.corrupted,
            self.rate(),
            self.bytes.0 as f64 / secs / 1e6,
            self.bytes.1 as f64 / secs / 1e6,
            self.latency.value_at_quantile(0.5) as f64 / 1e3,
            self.latency.value_at_quantile(0.99) as f64 / 1e3,
            self.latency.max() as f64 / 1e3,
            num(self.per_datagram(self.bench_cpu)),
            num(self.server_cpu.and_then(|(_, c)| self.per_datagram(Some(c)))),
            self.interrupted
        )
    }
}
