//! What the reactor counts, and the one list every renderer reads: [`Stats::metrics`]
//! names each counter once (its metric name, label, help and log text), and the
//! `--stats-interval` line, the totals at shutdown, `/metrics` (the Prometheus text
//! format) and `/stats` (JSON) are four ways of printing that list. Plain integers in
//! the reactor's own thread, so counting costs an add.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// Counters of what the reactor (and its service) has done.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Connections accepted and served.
    pub accepted: u64,
    /// Connections closed right after accept because of `max_connections`.
    pub refused: u64,
    /// Connections closed right after accept by the access rules.
    pub denied: u64,
    /// Pending connections closed unserved because no file descriptor was left.
    pub shed: u64,
    /// Connections closed for a frame over `max_frame` (a declared length or a line
    /// without its delimiter): protocol errors of kind `oversize`.
    pub oversize: u64,
    /// Connections that ended in the middle of a frame: protocol errors of kind
    /// `truncated`.
    pub truncated: u64,
    /// Oversized frames skipped (policy `skip`); the connection goes on.
    pub oversize_skipped: u64,
    /// Connections closed by `--idle-timeout`.
    pub idle_timeouts: u64,
    /// Connections closed by `--frame-timeout`.
    pub frame_timeouts: u64,
    /// Connections closed by `--write-timeout`.
    pub write_timeouts: u64,
    /// Recipients closed for passing the output cap (a slow-consumer policy).
    pub slow_disconnects: u64,
    /// Frames skipped for recipients past the output cap (slow-consumer policy `drop`).
    pub frames_dropped: u64,
    /// Complete frames received.
    pub frames_in: u64,
    /// Frames sent: queued for a client or written to it at once (a frame relayed to
    /// ten clients counts ten). Raw bytes a service sends with `Ctx::send` are not
    /// counted: only it knows how many frames they hold (`Ctx::send_frames`).
    pub frames_out: u64,
    /// Bytes received.
    pub bytes_in: u64,
    /// Bytes written.
    pub bytes_out: u64,
    /// The most output one connection has had queued after a flush (bytes): how far
    /// the slowest reader has fallen behind.
    pub queued_high_water: u64,
    /// Read buffers given back by connections gone quiet.
    pub buffers_released: u64,
    /// Connections reset rather than closed cleanly: closed with input never answered
    /// or output never written (cut at the drain timeout, a timeout, a protocol error).
    pub resets: u64,
    /// Bytes those connections had sent that were never answered.
    pub unanswered_bytes: u64,
    /// TLS handshakes completed.
    pub tls_handshakes: u64,
    /// TLS connections closed for a TLS error (a failed handshake: plaintext or
    /// garbage, a refused client certificate; a bad record later).
    pub tls_errors: u64,
    /// TLS connections closed for not completing the handshake in time.
    pub tls_handshake_timeouts: u64,
    /// UDP datagrams received (every one, answered or not).
    pub datagrams_in: u64,
    /// UDP datagrams sent back.
    pub datagrams_out: u64,
    /// UDP replies dropped because the reply queue was full (`--udp-queue`).
    pub datagrams_dropped: u64,
    /// UDP datagrams from source port 0, 7 or 19, not answered.
    pub datagrams_refused_port: u64,
    /// UDP datagrams refused by the access rules.
    pub datagrams_denied: u64,
    /// UDP receives or replies that failed (a reply lost).
    pub datagram_errors: u64,
    /// Event-loop turns (one poll and the work it brought).
    pub turns: u64,
    /// The longest turn, in microseconds, from the end of its poll to the start of
    /// the next one.
    pub longest_turn_us: u64,
}

/// What is true now rather than counted: read from the reactor when the counters are
/// rendered.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Gauges {
    /// Connections open.
    pub open: u64,
    /// Bytes queued for every connection and not yet written.
    pub queued: u64,
    /// Time since the reactor started.
    pub uptime: Duration,
}

/// Whether a metric only grows or goes up and down (Prometheus's `TYPE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only grows; its Prometheus name ends in `_total`.
    Counter,
    /// Goes up and down.
    Gauge,
}

/// A metric's value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    /// A count (or bytes).
    Count(u64),
    /// A time, shown in seconds.
    Seconds(f64),
}

/// One metric as every renderer shows it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Metric {
    /// The metric's family, `snake_case` (`connections_refused`): `framecast_` and,
    /// for a counter, `_total` around it make the Prometheus name.
    pub name: &'static str,
    /// The label telling this metric from the rest of its family (`reason`,
    /// `limit`), if it has one: a Prometheus label, and a suffix of the JSON key
    /// (`connections_refused_limit`).
    pub label: Option<(&'static str, &'static str)>,
    /// Counter or gauge.
    pub kind: Kind,
    /// What the family measures, one sentence (Prometheus's `HELP`).
    pub help: &'static str,
    /// What it counts in a few words, for the log lines (`refused at the limit`).
    pub text: &'static str,
    /// The value.
    pub value: Value,
}

impl Metric {
    /// The key in `/stats`: the family, then the label's value.
    pub fn key(&self) -> String {
        match self.label {
            Some((_, value)) => format!("{}_{value}", self.name),
            None => self.name.to_owned(),
        }
    }

    /// True for the traffic counters and the open connections, which the interval
    /// line shows apart (as rates, and up front).
    fn is_traffic(&self) -> bool {
        matches!(
            self.name,
            "frames_in" | "frames_out" | "bytes_in" | "bytes_out" | "connections_open"
        )
    }
}

/// How many metrics [`Stats::metrics`] lists.
pub const METRICS: usize = 35;

impl Stats {
    /// Every metric, grouped by family, in the order the log lines show them.
    pub fn metrics(&self, gauges: &Gauges) -> [Metric; METRICS] {
        use Kind::{Counter, Gauge};
        let m = |name, label, kind, help, text, value| Metric {
            name,
            label,
            kind,
            help,
            text,
            value: Value::Count(value),
        };
        let refused = "Connections closed right after accept, by reason.";
        let protocol = "Connections that broke the framing, by kind.";
        let timeouts = "Connections closed by a timeout, by kind.";
        let dropped = "UDP datagrams not answered, by reason.";
        [
            m(
                "connections_accepted",
                None,
                Counter,
                "Connections accepted and served.",
                "accepted",
                self.accepted,
            ),
            m(
                "connections_open",
                None,
                Gauge,
                "Connections open now.",
                "open",
                gauges.open,
            ),
            m(
                "connections_refused",
                Some(("reason", "limit")),
                Counter,
                refused,
                "refused at the limit",
                self.refused,
            ),
            m(
                "connections_refused",
                Some(("reason", "access")),
                Counter,
                refused,
                "denied",
                self.denied,
            ),
            m(
                "connections_refused",
                Some(("reason", "fd_limit")),
                Counter,
                refused,
                "shed at the fd limit",
                self.shed,
            ),
            m(
                "frames_in",
                None,
                Counter,
                "Complete frames received.",
                "frames in",
                self.frames_in,
            ),
            m(
                "frames_out",
                None,
                Counter,
                "Frames sent (a frame relayed to ten clients counts ten).",
                "frames out",
                self.frames_out,
            ),
            m(
                "bytes_in",
                None,
                Counter,
                "Bytes received.",
                "bytes in",
                self.bytes_in,
            ),
            m(
                "bytes_out",
                None,
                Counter,
                "Bytes written.",
                "bytes out",
                self.bytes_out,
            ),
            m(
                "protocol_errors",
                Some(("kind", "oversize")),
                Counter,
                protocol,
                "oversize protocol errors",
                self.oversize,
            ),
            m(
                "protocol_errors",
                Some(("kind", "truncated")),
                Counter,
                protocol,
                "truncated",
                self.truncated,
            ),
            m(
                "frames_oversize_skipped",
                None,
                Counter,
                "Frames over the maximum skipped as they arrived (--oversize skip).",
                "oversized skipped",
                self.oversize_skipped,
            ),
            m(
                "timeouts",
                Some(("kind", "idle")),
                Counter,
                timeouts,
                "idle timeouts",
                self.idle_timeouts,
            ),
            m(
                "timeouts",
                Some(("kind", "frame")),
                Counter,
                timeouts,
                "frame timeouts",
                self.frame_timeouts,
            ),
            m(
                "timeouts",
                Some(("kind", "write")),
                Counter,
                timeouts,
                "write timeouts",
                self.write_timeouts,
            ),
            m(
                "timeouts",
                Some(("kind", "tls_handshake")),
                Counter,
                timeouts,
                "TLS handshake timeouts",
                self.tls_handshake_timeouts,
            ),
            m(
                "tls_handshakes",
                None,
                Counter,
                "TLS handshakes completed.",
                "TLS handshakes",
                self.tls_handshakes,
            ),
            m(
                "tls_errors",
                None,
                Counter,
                "TLS connections closed for a TLS error (a failed handshake, a bad record).",
                "TLS errors",
                self.tls_errors,
            ),
            m(
                "slow_consumer_closes",
                None,
                Counter,
                "Clients closed for falling behind (a slow-consumer policy).",
                "slow disconnects",
                self.slow_disconnects,
            ),
            m(
                "slow_consumer_frames_dropped",
                None,
                Counter,
                "Frames skipped for clients past the output cap (--slow-consumer drop).",
                "frames dropped",
                self.frames_dropped,
            ),
            m(
                "output_queued_bytes",
                None,
                Gauge,
                "Bytes queued for all clients and not yet written.",
                "bytes queued",
                gauges.queued,
            ),
            m(
                "output_queued_high_water_bytes",
                None,
                Gauge,
                "The most output one connection has had queued after a write.",
                "most bytes queued for one connection",
                self.queued_high_water,
            ),
            m(
                "read_buffers_released",
                None,
                Counter,
                "Empty read buffers given back by connections gone quiet.",
                "idle read buffers released",
                self.buffers_released,
            ),
            m(
                "resets",
                None,
                Counter,
                "Connections reset with input unanswered or output unwritten.",
                "reset with input unanswered",
                self.resets,
            ),
            m(
                "unanswered_bytes",
                None,
                Counter,
                "Bytes received on reset connections that were never answered.",
                "bytes unanswered",
                self.unanswered_bytes,
            ),
            m(
                "datagrams_in",
                None,
                Counter,
                "UDP datagrams received.",
                "datagrams in",
                self.datagrams_in,
            ),
            m(
                "datagrams_out",
                None,
                Counter,
                "UDP datagrams sent back.",
                "datagrams out",
                self.datagrams_out,
            ),
            m(
                "datagrams_dropped",
                Some(("reason", "queue_full")),
                Counter,
                dropped,
                "replies dropped (queue full)",
                self.datagrams_dropped,
            ),
            m(
                "datagrams_dropped",
                Some(("reason", "port")),
                Counter,
                dropped,
                "datagrams from port 0, 7 or 19 unanswered",
                self.datagrams_refused_port,
            ),
            m(
                "datagrams_dropped",
                Some(("reason", "access")),
                Counter,
                dropped,
                "datagrams denied",
                self.datagrams_denied,
            ),
            m(
                "datagrams_dropped",
                Some(("reason", "error")),
                Counter,
                dropped,
                "datagram errors",
                self.datagram_errors,
            ),
            m(
                "loop_turns",
                None,
                Counter,
                "Event-loop turns.",
                "loop turns",
                self.turns,
            ),
            Metric {
                value: Value::Seconds(self.longest_turn_us as f64 / 1e6),
                ..m(
                    "loop_turn_longest_seconds",
                    None,
                    Gauge,
                    "The longest event-loop turn so far.",
                    "s longest turn",
                    0,
                )
            },
            Metric {
                value: Value::Seconds(gauges.uptime.as_secs_f64()),
                ..m(
                    "uptime_seconds",
                    None,
                    Gauge,
                    "Time since the reactor started.",
                    "s up",
                    0,
                )
            },
            m(
                "build_info",
                Some(("version", env!("CARGO_PKG_VERSION"))),
                Gauge,
                "Always 1; the label is the framecast version.",
                "build",
                1,
            ),
        ]
    }

    /// The metrics as `N text, N text, ...`, leaving out the traffic counters and
    /// the open connections when `events_only` (the interval line shows those apart).
    pub fn render(&self, gauges: &Gauges, events_only: bool) -> String {
        let mut out = String::new();
        for metric in self.metrics(gauges) {
            if metric.name == "build_info" || (events_only && metric.is_traffic()) {
                continue;
            }
            if !out.is_empty() {
                out.push_str(", ");
            }
            match metric.value {
                Value::Count(n) => write!(out, "{n} {}", metric.text),
                Value::Seconds(s) => write!(out, "{s:.3} {}", metric.text),
            }
            .unwrap_or_default();
        }
        out
    }

    /// The metrics in the Prometheus text exposition format (version 0.0.4): each
    /// family's `# HELP` and `# TYPE`, then its samples, named `framecast_*`.
    pub fn render_prometheus(&self, gauges: &Gauges) -> String {
        let mut out = String::with_capacity(4096);
        let mut family = "";
        for metric in self.metrics(gauges) {
            let name = match metric.kind {
                Kind::Counter => format!("framecast_{}_total", metric.name),
                Kind::Gauge => format!("framecast_{}", metric.name),
            };
            if metric.name != family {
                family = metric.name;
                let kind = match metric.kind {
                    Kind::Counter => "counter",
                    Kind::Gauge => "gauge",
                };
                let _ = writeln!(out, "# HELP {name} {}", metric.help);
                let _ = writeln!(out, "# TYPE {name} {kind}");
            }
            out.push_str(&name);
            if let Some((label, value)) = metric.label {
                let _ = write!(out, "{{{label}=\"{value}\"}}");
            }
            let _ = match metric.value {
                Value::Count(n) => writeln!(out, " {n}"),
                Value::Seconds(s) => writeln!(out, " {s:.6}"),
            };
        }
        out
    }

    /// The metrics as one flat JSON object of numbers, keyed by [`Metric::key`]
    /// (`{"connections_accepted":4,...}`); the version as a string.
    pub fn render_json(&self, gauges: &Gauges) -> String {
        let mut out = String::with_capacity(1024);
        out.push('{');
        for metric in self.metrics(gauges) {
            if out.len() > 1 {
                out.push(',');
            }
            if metric.name == "build_info" {
                let _ = write!(out, "\"version\":\"{}\"", env!("CARGO_PKG_VERSION"));
                continue;
            }
            let _ = match metric.value {
                Value::Count(n) => write!(out, "\"{}\":{n}", metric.key()),
                Value::Seconds(s) => write!(out, "\"{}\":{s:.6}", metric.key()),
            };
        }
        out.push('}');
        out
    }
}

/// The `--stats-interval` schedule: each line gives rates since the one before.
#[derive(Debug, Clone, Copy)]
pub struct StatsLine {
    /// The interval.
    pub every: Duration,
    /// When the next line is due.
    pub due: Instant,
    /// When the previous line was logged (or the reactor started).
    pub since: Instant,
    /// The counters at that time.
    pub last: Stats,
}

impl StatsLine {
    /// A schedule starting at `now`.
    pub fn new(every: Duration, now: Instant) -> Self {
        StatsLine {
            every,
            due: now + every,
            since: now,
            last: Stats::default(),
        }
    }

    /// The line for `now`, and the schedule moved on.
    pub fn render(&mut self, stats: &Stats, gauges: &Gauges, now: Instant) -> String {
        let secs = now
            .saturating_duration_since(self.since)
            .as_secs_f64()
            .max(1e-9);
        let rate = |now: u64, then: u64| now.saturating_sub(then) as f64 / secs;
        let line = format!(
            "stats: {} connection(s); {:.0} frames/s in, {:.0} frames/s out, {:.2} MB/s in, {:.2} MB/s out over {secs:.1} s; since start {}",
            gauges.open,
            rate(stats.frames_in, self.last.frames_in),
            rate(stats.frames_out, self.last.frames_out),
            rate(stats.bytes_in, self.last.bytes_in) / 1e6,
            rate(stats.bytes_out, self.last.bytes_out) / 1e6,
            stats.render(gauges, true),
        );
        *self = StatsLine {
            every: self.every,
            due: now + self.every,
            since: now,
            last: *stats,
        };
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> (Stats, Gauges) {
        let stats = Stats {
            accepted: 4,
            frames_in: 30,
            frames_out: 30,
            oversize: 1,
            longest_turn_us: 1500,
            ..Stats::default()
        };
        let gauges = Gauges {
            open: 3,
            ..Gauges::default()
        };
        (stats, gauges)
    }

    #[test]
    fn the_line_and_the_totals_render_the_same_counters() {
        let (stats, gauges) = session();
        let totals = stats.render(&gauges, false);
        assert!(
            totals.starts_with("4 accepted, 3 open, 0 refused at the limit"),
            "{totals}"
        );
        assert!(totals.contains("30 frames in, 30 frames out"), "{totals}");
        assert!(totals.contains("0.002 s longest turn"), "{totals}");
        let t0 = Instant::now();
        let mut line = StatsLine::new(Duration::from_secs(1), t0);
        let text = line.render(&stats, &gauges, t0 + Duration::from_secs(2));
        assert!(
            text.contains("3 connection(s); 15 frames/s in, 15 frames/s out"),
            "{text}"
        );
        assert!(text.contains("since start 4 accepted, 0 refused"), "{text}");
        assert!(text.contains("1 oversize protocol errors"), "{text}");
        assert!(
            !text.contains("frames in,"),
            "traffic is shown as rates: {text}"
        );
        assert_eq!(line.due, t0 + Duration::from_secs(3));
        assert_eq!(line.last, stats);
    }

    #[test]
    fn prometheus_families_have_help_and_type_once_and_labels() {
        let (stats, gauges) = session();
        let text = stats.render_prometheus(&gauges);
        assert!(text.contains(
            "# TYPE framecast_connections_accepted_total counter\nframecast_connections_accepted_total 4\n"
        ));
        assert!(text.contains("framecast_connections_open 3\n"));
        assert!(text.contains("framecast_protocol_errors_total{kind=\"oversize\"} 1\n"));
        assert_eq!(
            text.matches("# TYPE framecast_protocol_errors_total counter")
                .count(),
            1
        );
        assert!(text.contains("framecast_loop_turn_longest_seconds 0.001500\n"));
        // Every sample line belongs to the family announced last.
        let mut family = String::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                family = rest.split(' ').next().unwrap().to_owned();
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                assert_eq!(name, family, "{line}");
            }
        }
    }

    #[test]
    fn json_is_one_flat_object_keyed_by_family_and_label() {
        let (stats, gauges) = session();
        let json = stats.render_json(&gauges);
        assert!(json.starts_with("{\"connections_accepted\":4,\"connections_open\":3,"));
        assert!(json.contains("\"protocol_errors_oversize\":1,"), "{json}");
        assert!(json.contains("\"connections_refused_access\":0,"), "{json}");
        assert!(json.ends_with(&format!("\"version\":\"{}\"}}", env!("CARGO_PKG_VERSION"))));
        assert_eq!(json.matches('{').count(), 1, "flat: {json}");
    }
}
