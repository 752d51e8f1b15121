//! What a run found, as text for people (a summary in the manner of wrk and
//! redis-benchmark, and the per-second progress line) and as one JSON object for
//! scripts. Pure formatting of figures already gathered: no I/O, no clock.

use std::fmt::Write as _;
use std::time::Duration;

use super::config::{BenchConfig, Load, Scenario};
use super::stats::Stats;

/// Latency quantiles reported, with their labels.
pub const QUANTILES: [(&str, f64); 5] = [
    ("p50", 0.50),
    ("p90", 0.90),
    ("p99", 0.99),
    ("p99.9", 0.999),
    ("p99.99", 0.9999),
];

/// How a run ended, which the command line turns into its exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Every frame came back intact and no connection failed.
    Clean,
    /// The run completed but counted errors.
    Errors,
    /// The run could not complete: every connection was lost.
    Aborted,
    /// Interrupted (Ctrl-C) before its end, without errors: the figures cover a
    /// shorter window than asked.
    Interrupted,
    /// With `--strict`: the open loop sent less than its rate asked for.
    Shortfall,
}

/// The open loop falls short when it sends less than this share of its rate.
pub const SHORTFALL: f64 = 0.99;

/// The figures of a finished run and the configuration that produced them.
#[derive(Debug, Clone)]
pub struct Report {
    /// What was run.
    pub config: BenchConfig,
    /// Length of the measured window (shorter than asked if the run was cut short).
    pub measured: Duration,
    /// Merged figures of every thread.
    pub stats: Stats,
    /// The bench's own CPU time over the measured window.
    pub bench_cpu: Option<Duration>,
    /// The server's CPU time over the measured window (with `--server-pid`).
    pub server_cpu: Option<Duration>,
    /// Why the run was cut short, if it was.
    pub aborted: Option<String>,
    /// Whether a signal ended the run before its duration was up.
    pub interrupted: bool,
    /// How long opening every connection took.
    pub connect_time: Duration,
    /// Warmup actually run: shorter than asked when a signal came during it.
    pub warmed_up: Duration,
}

impl Report {
    /// How the run ended.
    pub fn status(&self) -> Status {
        if self.aborted.is_some() {
            Status::Aborted
        } else if self.stats.errors() > 0 {
            Status::Errors
        } else if self.interrupted {
            Status::Interrupted
        } else if self.config.strict && self.shortfall().is_some() {
            Status::Shortfall
        } else {
            Status::Clean
        }
    }

    /// Open loop: the frames per second actually sent, when that is under
    /// [`SHORTFALL`] of the rate asked for (the bench, or the server's back pressure,
    /// could not keep up).
    pub fn shortfall(&self) -> Option<f64> {
        let Load::Open { rate } = self.config.load else {
            return None;
        };
        let sent = self.sent_per_second();
        (self.measured > Duration::ZERO && sent < rate * SHORTFALL).then_some(sent)
    }

    /// True when a signal came before the warmup was over: nothing was measured.
    pub fn interrupted_in_warmup(&self) -> bool {
        self.interrupted && self.warmed_up < self.config.warmup
    }

    /// When frames went out and not one came back, the likely reasons, in the
    /// command line's words.
    pub fn hint(&self) -> Option<String> {
        let s = &self.stats;
        let sent = s.frames_sent > 0 || s.integrity.unanswered > 0;
        if !sent
            || s.frames_total > 0
            || s.frames_received > 0
            || s.integrity.corrupted > 0
            || self.aborted.is_some()
        {
            return None;
        }
        let c = &self.config;
        Some(match c.scenario {
            Scenario::Echo { .. } => format!(
                "nothing came back: does the server echo, and speak --framing {}? A server \
                 waiting for the end of a frame in another framing never answers, and a \
                 broadcast server (framecast --mode broadcast) relays a frame to the other \
                 connections, never to its sender",
                c.framing
            ),
            Scenario::Broadcast { .. } => format!(
                "nothing was delivered: does the server relay to the other connections \
                 (framecast --mode broadcast), and speak --framing {}? An echo server sends \
                 each frame back to its publisher only",
                c.framing
            ),
        })
    }

    fn seconds(&self) -> f64 {
        self.measured.as_secs_f64().max(1e-9)
    }

    /// Frames received per second: echoes, or broadcast deliveries.
    pub fn frames_per_second(&self) -> f64 {
        self.stats.frames_received as f64 / self.seconds()
    }

    /// Frames sent per second.
    pub fn sent_per_second(&self) -> f64 {
        self.stats.frames_sent as f64 / self.seconds()
    }

    /// Wire megabytes (10^6 bytes) sent per second.
    pub fn mb_out_per_second(&self) -> f64 {
        self.stats.bytes_sent as f64 / 1e6 / self.seconds()
    }

    /// Wire megabytes (10^6 bytes) received per second.
    pub fn mb_in_per_second(&self) -> f64 {
        self.stats.bytes_received as f64 / 1e6 / self.seconds()
    }

    /// CPU microseconds per frame received, for `cpu` spent over the window.
    fn per_frame_us(&self, cpu: Option<Duration>) -> Option<f64> {
        let frames = self.stats.frames_received;
        cpu.filter(|_| frames > 0)
            .map(|cpu| cpu.as_secs_f64() * 1e6 / frames as f64)
    }

    /// The bench's CPU microseconds per frame received.
    pub fn bench_us_per_frame(&self) -> Option<f64> {
        self.per_frame_us(self.bench_cpu)
    }

    /// The server's CPU microseconds per frame received (echoed or delivered).
    pub fn server_us_per_frame(&self) -> Option<f64> {
        self.per_frame_us(self.server_cpu)
    }

    /// The latency at `quantile`, in ns; `None` without samples.
    fn latency(&self, quantile: f64) -> Option<u64> {
        let h = &self.stats.latency;
        (!h.is_empty()).then(|| h.value_at_quantile(quantile))
    }

    /// The summary for people.
    pub fn text(&self) -> String {
        let c = &self.config;
        let s = &self.stats;
        let mut out = String::new();
        let who = match c.scenario {
            Scenario::Echo { connections } => {
                format!("echo, {connections} connection{}", plural(connections))
            }
            Scenario::Broadcast {
                publishers,
                subscribers,
            } => format!(
                "broadcast, {publishers} publisher{} -> {subscribers} subscriber{}",
                plural(publishers),
                plural(subscribers)
            ),
        };
        let load = match c.load {
            Load::Closed { depth } => format!("closed loop, depth {depth}"),
            Load::Open { rate } => format!("open loop, {rate} frames/s"),
        };
        let threads = c.effective_threads();
        let _ = writeln!(
            out,
            "framecast-bench: {} {who}, {} framing, {}-byte payloads, {load}, {threads} thread{}",
            c.target_name(),
            c.framing,
            c.size,
            plural(threads)
        );
        let connections = c.scenario.connections();
        let _ = writeln!(
            out,
            "  {connections} connection{} set up in {:.3} s ({:.0}/s){}",
            plural(connections),
            self.connect_time.as_secs_f64(),
            connections as f64 / self.connect_time.as_secs_f64().max(1e-9),
            match c.sources.len() {
                0 => String::new(),
                n => format!(" from {n} source address{}", if n == 1 { "" } else { "es" }),
            }
        );
        if self.interrupted_in_warmup() {
            let _ = writeln!(
                out,
                "  interrupted during the warmup, after {:.2} s of {:.2} s: nothing was measured",
                self.warmed_up.as_secs_f64(),
                c.warmup.as_secs_f64()
            );
        } else {
            let _ = writeln!(
                out,
                "  {:.2} s measured after {:.2} s of warmup",
                self.measured.as_secs_f64(),
                c.warmup.as_secs_f64()
            );
        }
        let received = if matches!(c.scenario, Scenario::Broadcast { .. }) {
            "delivered"
        } else {
            "echoed"
        };
        let _ = writeln!(
            out,
            "  frames    {} sent ({:.1}/s), {} {received} ({:.1}/s)",
            s.frames_sent,
            self.sent_per_second(),
            s.frames_received,
            self.frames_per_second()
        );
        let _ = writeln!(
            out,
            "  bytes     out {:.2} MB/s, in {:.2} MB/s (wire bytes, 1 MB = 10^6 B)",
            self.mb_out_per_second(),
            self.mb_in_per_second()
        );
        let mut labels = format!("  latency   {:>10}", "min");
        let mut values = format!("            {:>10}", fmt_latency(self.latency(0.0)));
        for (label, q) in QUANTILES {
            let _ = write!(labels, " {label:>10}");
            let _ = write!(values, " {:>10}", fmt_latency(self.latency(q)));
        }
        let _ = write!(labels, " {:>10}", "max");
        let _ = write!(values, " {:>10}", fmt_latency(self.latency(1.0)));
        let _ = writeln!(out, "{labels}\n{values}");
        if let Some(pacing) = self.pacing_text() {
            let _ = writeln!(out, "  pacing    {pacing}");
        }
        if let (Some(sent), Load::Open { rate }) = (self.shortfall(), c.load) {
            let _ = writeln!(
                out,
                "  shortfall sent {sent:.1} frames/s of the {rate} asked ({:.1}%): the bench \
                 or the server's back pressure could not keep up{}",
                sent / rate * 100.0,
                if c.strict {
                    " (--strict: a failed run)"
                } else {
                    ""
                }
            );
        }
        let _ = writeln!(out, "  errors    {}", self.errors_text());
        if let Some(hint) = self.hint() {
            let _ = writeln!(out, "  hint      {hint}");
        }
        let mut cpu = match (self.bench_cpu, self.bench_us_per_frame()) {
            (Some(t), Some(per)) => {
                format!("bench {:.2} s, {per:.3} µs/frame", t.as_secs_f64())
            }
            (Some(t), None) => format!("bench {:.2} s", t.as_secs_f64()),
            _ => "bench n/a".to_owned(),
        };
        if let Some(pid) = c.server_pid {
            let _ = match (self.server_cpu, self.server_us_per_frame()) {
                (Some(t), Some(per)) => write!(
                    cpu,
                    "; server (pid {pid}) {:.2} s, {per:.3} µs/frame",
                    t.as_secs_f64()
                ),
                (Some(t), None) => write!(cpu, "; server (pid {pid}) {:.2} s", t.as_secs_f64()),
                _ => write!(cpu, "; server (pid {pid}) n/a"),
            };
        }
        let _ = writeln!(out, "  cpu       {cpu}");
        if let Some(why) = &self.aborted {
            let _ = writeln!(out, "  aborted   {why}");
        }
        if self.interrupted && !self.interrupted_in_warmup() {
            let _ = writeln!(
                out,
                "  interrupted by a signal: the figures cover the {:.2} s measured until then",
                self.measured.as_secs_f64()
            );
        }
        out
    }

    /// How far from their intended time a quantile of the open loop's frames went
    /// out, early or late, in ns.
    fn pacing(&self, quantile: f64) -> Option<u64> {
        let h = &self.stats.pacing;
        (!h.is_empty()).then(|| h.value_at_quantile(quantile))
    }

    /// The pacing line: how far from their intended send time frames were written,
    /// and how many early, within the timer's lead (open loop only).
    fn pacing_text(&self) -> Option<String> {
        if !matches!(self.config.load, Load::Open { .. }) {
            return None;
        }
        let p = |q| fmt_latency(self.pacing(q));
        let s = &self.stats;
        let sent = s.pacing.len();
        let early = if sent > 0 {
            100.0 * s.sent_early as f64 / sent as f64
        } else {
            0.0
        };
        Some(format!(
            "off by p50 {}, p99 {}, p99.9 {}, max {} (|actual - intended send time|; {early:.0}% early, the timer armed {} ahead)",
            p(0.5),
            p(0.99),
            p(0.999),
            p(1.0),
            fmt_latency(Some(s.timer_lead)),
        ))
    }

    /// The errors line: "none", or every non-zero count.
    fn errors_text(&self) -> String {
        let i = &self.stats.integrity;
        let k = &self.stats.connections;
        let counts = [
            (i.lost, "lost"),
            (i.duplicated, "duplicated"),
            (i.reordered, "reordered"),
            (i.corrupted, "corrupted"),
            (i.misdelivered, "misdelivered"),
            (i.unanswered, "unanswered at the end"),
            (k.failed, "connections failed"),
            (k.closed, "connections closed by the server"),
            (k.io, "connection I/O errors"),
            (i.skipped_bytes, "bytes skipped to realign"),
        ];
        let parts: Vec<String> = counts
            .iter()
            .filter(|(n, _)| *n > 0)
            .map(|(n, what)| format!("{n} {what}"))
            .collect();
        if parts.is_empty() {
            "none".to_owned()
        } else {
            parts.join(", ")
        }
    }

    /// The summary as one JSON object on one line. Latencies are in microseconds;
    /// figures that do not exist (no samples, no server pid) are `null`.
    pub fn json(&self) -> String {
        let c = &self.config;
        let s = &self.stats;
        let (connections, publishers, subscribers) = match c.scenario {
            Scenario::Echo { connections } => (connections, 0, 0),
            Scenario::Broadcast {
                publishers,
                subscribers,
            } => (publishers + subscribers, publishers, subscribers),
        };
        let (depth, rate) = match c.load {
            Load::Closed { depth } => (Some(depth as f64), None),
            Load::Open { rate } => (None, Some(rate)),
        };
        let mut latency = String::from("{");
        let _ = write!(latency, "\"min\":{}", json_us(self.latency(0.0)));
        for (label, q) in QUANTILES {
            let key = label.replace('.', "_");
            let _ = write!(latency, ",\"{key}\":{}", json_us(self.latency(q)));
        }
        let _ = write!(latency, ",\"max\":{}", json_us(self.latency(1.0)));
        let mean = (!s.latency.is_empty()).then(|| s.latency.mean() / 1e3);
        let _ = write!(latency, ",\"mean\":{}}}", json_num(mean));
        let pacing = if matches!(c.load, Load::Open { .. }) {
            format!(
                "{{\"error_p50\":{},\"error_p99\":{},\"error_p99_9\":{},\"error_max\":{},\"early\":{},\"lead\":{}}}",
                json_us(self.pacing(0.5)),
                json_us(self.pacing(0.99)),
                json_us(self.pacing(0.999)),
                json_us(self.pacing(1.0)),
                s.sent_early,
                json_us(Some(s.timer_lead))
            )
        } else {
            "null".to_owned()
        };
        let i = &s.integrity;
        let k = &s.connections;
        format!(
            concat!(
                "{{\"scenario\":\"{}\",\"target\":\"{}\",\"framing\":\"{}\",",
                "\"size_min\":{},\"size_max\":{},\"connections\":{},\"publishers\":{},",
                "\"subscribers\":{},\"threads\":{},\"depth\":{},\"rate\":{},",
                "\"warmup_s\":{},\"duration_s\":{},",
                "\"frames_sent\":{},\"frames_received\":{},\"bytes_sent\":{},\"bytes_received\":{},",
                "\"frames_per_s\":{},\"sent_per_s\":{},\"mb_out_per_s\":{},\"mb_in_per_s\":{},",
                "\"latency_us\":{},\"pacing_us\":{},",
                "\"errors\":{{\"total\":{},\"lost\":{},\"duplicated\":{},\"reordered\":{},",
                "\"corrupted\":{},\"misdelivered\":{},\"unanswered\":{},\"skipped_bytes\":{},",
                "\"connections_failed\":{},\"connections_closed\":{},\"io\":{}}},",
                "\"cpu\":{{\"bench_s\":{},\"bench_us_per_frame\":{},\"server_pid\":{},",
                "\"server_s\":{},\"server_us_per_frame\":{}}},",
                "\"connect_s\":{},\"warmup_run_s\":{},\"shortfall\":{},\"sent_per_s_short\":{},",
                "\"hint\":{},\"interrupted\":{},\"interrupted_in_warmup\":{},\"aborted\":{}}}"
            ),
            c.scenario.name(),
            c.target_name(),
            c.framing,
            c.size.min,
            c.size.max,
            connections,
            publishers,
            subscribers,
            c.effective_threads(),
            json_num(depth),
            json_num(rate),
            json_num(Some(c.warmup.as_secs_f64())),
            json_num(Some(self.measured.as_secs_f64())),
            s.frames_sent,
            s.frames_received,
            s.bytes_sent,
            s.bytes_received,
            json_num(Some(self.frames_per_second())),
            json_num(Some(self.sent_per_second())),
            json_num(Some(self.mb_out_per_second())),
            json_num(Some(self.mb_in_per_second())),
            latency,
            pacing,
            s.errors(),
            i.lost,
            i.duplicated,
            i.reordered,
            i.corrupted,
            i.misdelivered,
            i.unanswered,
            i.skipped_bytes,
            k.failed,
            k.closed,
            k.io,
            json_num(self.bench_cpu.map(|d| d.as_secs_f64())),
            json_num(self.bench_us_per_frame()),
            c.server_pid
                .map_or_else(|| "null".to_owned(), |p| p.to_string()),
            json_num(self.server_cpu.map(|d| d.as_secs_f64())),
            json_num(self.server_us_per_frame()),
            json_num(Some(self.connect_time.as_secs_f64())),
            json_num(Some(self.warmed_up.as_secs_f64())),
            self.shortfall().is_some(),
            json_num(self.shortfall()),
            self.hint()
                .as_deref()
                .map_or_else(|| "null".to_owned(), json_string),
            self.interrupted,
            self.interrupted_in_warmup(),
            self.aborted
                .as_deref()
                .map_or_else(|| "null".to_owned(), json_string),
        )
    }
}

/// One progress line: `[  3.0 s] 123456 frames/s  63.2 MB/s  50/50 up  0 errors`.
pub fn progress_line(
    elapsed: Duration,
    phase: &str,
    frames_per_second: f64,
    mb_per_second: f64,
    up: u64,
    connections: usize,
    errors: u64,
) -> String {
    let phase = if phase.is_empty() {
        String::new()
    } else {
        format!(" {phase}")
    };
    format!(
        "[{:6.1} s{phase}] {frames_per_second:.0} frames/s, {mb_per_second:.1} MB/s, {up}/{connections} connections up, {errors} errors",
        elapsed.as_secs_f64()
    )
}

/// A latency in nanoseconds, in the unit that keeps three or four digits.
pub fn fmt_latency(ns: Option<u64>) -> String {
    let Some(ns) = ns else {
        return "-".to_owned();
    };
    let ns = ns as f64;
    if ns < 1e3 {
        format!("{ns:.0} ns")
    } else if ns < 1e6 {
        format!("{:.1} µs", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.2} ms", ns / 1e6)
    } else {
        format!("{:.2} s", ns / 1e9)
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// Nanoseconds as JSON microseconds.
fn json_us(ns: Option<u64>) -> String {
    json_num(ns.map(|ns| ns as f64 / 1e3))
}

/// A JSON number, or `null` for a missing or non-finite one.
fn json_num(value: Option<f64>) -> String {
    match value {
        Some(v) if v.is_finite() => {
            let text = format!("{v:.3}");
            let text = text.trim_end_matches('0').trim_end_matches('.');
            if text.is_empty() || text == "-" {
                "0".to_owned()
            } else {
                text.to_owned()
            }
        }
        _ => "null".to_owned(),
    }
}

/// A JSON string literal.
fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        let mut config = BenchConfig::new(([127, 0, 0, 1], 7070).into());
        config.server_pid = Some(42);
        let mut stats = Stats::new();
        stats.frames_sent = 2_000_000;
        stats.frames_received = 2_000_000;
        stats.bytes_sent = 1_032_000_000;
        stats.bytes_received = 1_032_000_000;
        for us in 1..=1000u64 {
            stats.latency.record(us * 1000).unwrap();
        }
        Report {
            config,
            measured: Duration::from_secs(10),
            stats,
            bench_cpu: Some(Duration::from_millis(1500)),
            server_cpu: Some(Duration::from_secs(2)),
            aborted: None,
            interrupted: false,
            connect_time: Duration::from_millis(20),
            warmed_up: Duration::from_secs(1),
        }
    }

    #[test]
    fn latencies_use_a_readable_unit() {
        assert_eq!(fmt_latency(Some(850)), "850 ns");
        assert_eq!(fmt_latency(Some(15_230)), "15.2 µs");
        assert_eq!(fmt_latency(Some(2_500_000)), "2.50 ms");
        assert_eq!(fmt_latency(Some(3_000_000_000)), "3.00 s");
        assert_eq!(fmt_latency(None), "-");
    }

    #[test]
    fn summary_shows_rates_latency_errors_and_cpu() {
        let text = report().text();
        assert!(text.contains("200000.0/s"), "{text}");
        assert!(text.contains("out 103.20 MB/s, in 103.20 MB/s"), "{text}");
        assert!(text.contains("p99.99"), "{text}");
        assert!(text.contains("500.2 µs"), "{text}");
        assert!(text.contains("errors    none"), "{text}");
        assert!(text.contains("bench 1.50 s, 0.750 µs/frame"), "{text}");
        assert!(
            text.contains("server (pid 42) 2.00 s, 1.000 µs/frame"),
            "{text}"
        );
    }

    #[test]
    fn summary_lists_only_the_errors_that_happened() {
        let mut r = report();
        r.stats.integrity.lost = 1;
        r.stats.integrity.corrupted = 2;
        let text = r.text();
        assert!(text.contains("errors    1 lost, 2 corrupted\n"), "{text}");
        assert_eq!(r.status(), Status::Errors);
        r.aborted = Some("server gone".into());
        assert_eq!(r.status(), Status::Aborted);
    }

    #[test]
    fn an_interrupted_run_says_so_and_errors_still_come_first() {
        let mut r = report();
        assert!(!r.text().contains("interrupted"));
        assert!(r.json().contains("\"interrupted\":false,"));
        r.interrupted = true;
        r.measured = Duration::from_millis(3250);
        assert_eq!(r.status(), Status::Interrupted);
        let text = r.text();
        assert!(
            text.contains("interrupted by a signal: the figures cover the 3.25 s"),
            "{text}"
        );
        assert!(r
            .json()
            .contains("\"interrupted\":true,\"interrupted_in_warmup\":false,\"aborted\":null}"));
        r.stats.integrity.lost = 1;
        assert_eq!(r.status(), Status::Errors);
    }

    #[test]
    fn json_is_one_object_with_the_figures() {
        let json = report().json();
        assert!(json.starts_with('{') && json.ends_with('}'), "{json}");
        assert!(!json.contains('\n'));
        assert!(json.contains("\"frames_received\":2000000"), "{json}");
        assert!(json.contains("\"frames_per_s\":200000,"), "{json}");
        assert!(json.contains("\"p99_9\":"), "{json}");
        assert!(json.contains("\"server_us_per_frame\":1}"), "{json}");
        assert!(json.contains("\"depth\":1,\"rate\":null"), "{json}");
        assert!(
            json.contains(
                "\"interrupted\":false,\"interrupted_in_warmup\":false,\"aborted\":null}"
            ),
            "{json}"
        );
        let braces = json.matches('{').count();
        assert_eq!(braces, json.matches('}').count());
    }

    #[test]
    fn json_escapes_strings_and_writes_null_for_missing_numbers() {
        assert_eq!(json_string("a \"b\"\n\\"), r#""a \"b\"\n\\""#);
        assert_eq!(json_num(None), "null");
        assert_eq!(json_num(Some(f64::NAN)), "null");
        assert_eq!(json_num(Some(1.5)), "1.5");
        assert_eq!(json_num(Some(0.0)), "0");
        let mut r = report();
        r.stats.latency.reset();
        assert!(r.json().contains("\"min\":null"));
    }

    #[test]
    fn progress_line_names_the_figures() {
        let line = progress_line(
            Duration::from_secs(3),
            "warmup",
            123_456.4,
            63.25,
            50,
            50,
            0,
        );
        assert_eq!(
            line,
            "[   3.0 s warmup] 123456 frames/s, 63.2 MB/s, 50/50 connections up, 0 errors"
        );
    }

    #[test]
    fn open_loop_summary_reports_pacing_shortfall_and_strictness() {
        let mut r = report();
        r.config.load = Load::Open { rate: 400_000.0 };
        // 100 frames 1-100 µs late, 25 frames 10 µs early.
        for late_us in 1..=100u64 {
            r.stats.record_pacing(1_000_000 + late_us * 1000, 1_000_000);
        }
        for _ in 0..25 {
            r.stats.record_pacing(1_000_000, 1_010_000);
        }
        r.stats.timer_lead = 42_000;
        let text = r.text();
        assert!(text.contains("pacing    off by p50 38.0 µs"), "{text}");
        assert!(
            text.contains("20% early, the timer armed 42.0 µs ahead"),
            "{text}"
        );
        assert!(text.contains("shortfall sent 200000.0 frames/s of the 400000 asked (50.0%)"));
        let json = r.json();
        assert!(
            json.contains("\"pacing_us\":{\"error_p50\":38.015,"),
            "{json}"
        );
        assert!(json.contains("\"early\":25,\"lead\":42}"), "{json}");
        assert!(json.contains("\"shortfall\":true,\"sent_per_s_short\":200000,"));
        assert_eq!(r.status(), Status::Clean, "a shortfall fails only --strict");
        r.config.strict = true;
        assert_eq!(r.status(), Status::Shortfall);
        r.config.load = Load::Open { rate: 200_000.0 };
        assert_eq!(r.shortfall(), None);
        assert_eq!(r.status(), Status::Clean);
    }

    #[test]
    fn a_warmup_cut_short_is_reported_as_such() {
        let mut r = report();
        r.interrupted = true;
        r.measured = Duration::ZERO;
        r.warmed_up = Duration::from_millis(300);
        let text = r.text();
        assert!(
            text.contains(
                "interrupted during the warmup, after 0.30 s of 1.00 s: nothing was measured"
            ),
            "{text}"
        );
        assert!(!text.contains("measured after"), "{text}");
        assert!(r.json().contains("\"interrupted_in_warmup\":true"));
    }

    #[test]
    fn nothing_coming_back_names_the_likely_causes() {
        let mut r = report();
        assert_eq!(r.hint(), None);
        r.stats.frames_received = 0;
        r.stats.integrity.unanswered = 50;
        let hint = r.hint().unwrap();
        assert!(
            hint.contains("--framing u32be") && hint.contains("--mode broadcast"),
            "{hint}"
        );
        assert!(r.text().contains("hint      nothing came back"));
        r.config.scenario = Scenario::Broadcast {
            publishers: 1,
            subscribers: 2,
        };
        assert!(r
            .hint()
            .unwrap()
            .contains("An echo server sends each frame back"));
    }
}
