//! What the reactor counts, and the one place that renders it: the `--stats-interval`
//! line and the totals at shutdown both read [`Stats::counters`]. Plain integers in
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
    /// Connections reset rather than closed cleanly: closed with input never answered
    /// or output never written (cut at the drain timeout, a timeout, a protocol error).
    pub resets: u64,
    /// Bytes those connections had sent that were never answered.
    pub unanswered_bytes: u64,
}

/// One counter as every renderer shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counter {
    /// A short name, `snake_case` (a metric name's stem).
    pub name: &'static str,
    /// What it counts, in a few words (the log lines' label, a metric's help).
    pub label: &'static str,
    /// The value.
    pub value: u64,
}

impl Stats {
    /// Every counter, in the order the log lines show them.
    pub fn counters(&self) -> [Counter; 18] {
        let c = |name, label, value| Counter { name, label, value };
        [
            c("accepted", "accepted", self.accepted),
            c("refused", "refused at the limit", self.refused),
            c("denied", "denied", self.denied),
            c("shed", "shed at the fd limit", self.shed),
            c("frames_in", "frames in", self.frames_in),
            c("bytes_in", "bytes in", self.bytes_in),
            c("bytes_out", "bytes out", self.bytes_out),
            c("protocol_errors", "protocol errors", self.protocol_errors),
            c("oversized", "oversized skipped", self.oversized),
            c("truncated", "truncated", self.truncated),
            c("idle_timeouts", "idle timeouts", self.idle_timeouts),
            c("frame_timeouts", "frame timeouts", self.frame_timeouts),
            c("write_timeouts", "write timeouts", self.write_timeouts),
            c(
                "slow_disconnects",
                "slow disconnects",
                self.slow_disconnects,
            ),
            c("frames_dropped", "frames dropped", self.frames_dropped),
            c(
                "buffers_released",
                "idle read buffers released",
                self.buffers_released,
            ),
            c("resets", "reset with input unanswered", self.resets),
            c(
                "unanswered_bytes",
                "bytes unanswered",
                self.unanswered_bytes,
            ),
        ]
    }

    /// The counters as `N label, N label, ...`, leaving out the traffic counters
    /// when `events_only` (the interval line shows those as rates).
    pub fn render(&self, events_only: bool) -> String {
        let mut out = String::new();
        for counter in self.counters() {
            if events_only && matches!(counter.name, "frames_in" | "bytes_in" | "bytes_out") {
                continue;
            }
            if !out.is_empty() {
                out.push_str(", ");
            }
            let _ = write!(out, "{} {}", counter.value, counter.label);
        }
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

    /// The line for `now` with `open` connections, and the schedule moved on.
    pub fn render(&mut self, stats: &Stats, open: usize, now: Instant) -> String {
        let secs = now
            .saturating_duration_since(self.since)
            .as_secs_f64()
            .max(1e-9);
        let rate = |now: u64, then: u64| now.saturating_sub(then) as f64 / secs;
        let line = format!(
            "stats: {open} connection(s); {:.0} frames/s in, {:.2} MB/s in, {:.2} MB/s out over {secs:.1} s; since start {}",
            rate(stats.frames_in, self.last.frames_in),
            rate(stats.bytes_in, self.last.bytes_in) / 1e6,
            rate(stats.bytes_out, self.last.bytes_out) / 1e6,
            stats.render(true),
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

    #[test]
    fn the_line_and_the_totals_render_the_same_counters() {
        let stats = Stats {
            accepted: 4,
            frames_in: 30,
            protocol_errors: 1,
            ..Stats::default()
        };
        let totals = stats.render(false);
        assert!(
            totals.starts_with("4 accepted, 0 refused at the limit"),
            "{totals}"
        );
        assert!(totals.contains("30 frames in"), "{totals}");
        let t0 = Instant::now();
        let mut line = StatsLine::new(Duration::from_secs(1), t0);
        let text = line.render(&stats, 3, t0 + Duration::from_secs(2));
        assert!(text.contains("3 connection(s); 15 frames/s in"), "{text}");
        assert!(text.contains("since start 4 accepted"), "{text}");
        assert!(text.contains("1 protocol errors"), "{text}");
        assert!(
            !text.contains("frames in,"),
            "traffic is shown as rates: {text}"
        );
        assert_eq!(line.due, t0 + Duration::from_secs(3));
        assert_eq!(line.last, stats);
    }
}
