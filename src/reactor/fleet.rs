//! Counters across workers (`--workers N`): each reactor keeps its own [`Stats`] in
//! plain integers, as a single reactor does, and copies them to its seat on a shared
//! [`StatsBoard`] every [`PUBLISH_EVERY`], off the data path (one uncontended lock a
//! quarter second, never one per frame). The admin endpoint, served by worker 0, shows
//! the sum of the seats (its own counters fresh) and one row per worker. It knows
//! nothing of threads or services.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::{Gauges, Stats};
use crate::reactor::Kind;
use crate::service::report::{Column, Report};

/// How often a worker copies its counters to the board: what `/stats` may lag behind
/// for the other workers.
pub const PUBLISH_EVERY: Duration = Duration::from_millis(250);

/// The workers' counters, one seat each, as last published.
#[derive(Debug)]
pub struct StatsBoard {
    seats: Mutex<Vec<(Stats, Gauges)>>,
}

impl StatsBoard {
    /// A board for `workers` seats, all zero.
    pub fn new(workers: usize) -> Arc<StatsBoard> {
        Arc::new(StatsBoard {
            seats: Mutex::new(vec![Default::default(); workers]),
        })
    }

    /// Every seat's counters, as last published, by worker.
    pub fn seats(&self) -> Vec<(Stats, Gauges)> {
        self.seats
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The sum over every seat.
    pub fn total(&self) -> (Stats, Gauges) {
        let mut total = (Stats::default(), Gauges::default());
        for (stats, gauges) in self.seats() {
            add(&mut total, &stats, &gauges);
        }
        total
    }

    fn publish(&self, seat: usize, stats: Stats, gauges: Gauges) {
        let mut seats = self.seats.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(slot) = seats.get_mut(seat) {
            *slot = (stats, gauges);
        }
    }
}

/// A reactor's seat on a board.
#[derive(Debug)]
pub(super) struct Seat {
    pub(super) index: usize,
    pub(super) board: Arc<StatsBoard>,
    /// When the counters are next copied to the board.
    pub(super) due: Instant,
}

impl Seat {
    /// Copies `stats` and `gauges` to the board and schedules the next copy.
    pub(super) fn publish(&mut self, stats: Stats, gauges: Gauges, now: Instant) {
        self.board.publish(self.index, stats, gauges);
        self.due = now + PUBLISH_EVERY;
    }

    /// The sum over every worker, this one's counters taken fresh.
    pub(super) fn total(&self, stats: &Stats, gauges: &Gauges) -> (Stats, Gauges) {
        let mut total = (*stats, *gauges);
        for (i, (s, g)) in self.board.seats().iter().enumerate() {
            if i != self.index {
                add(&mut total, s, g);
            }
        }
        total
    }

    /// One row per worker (`/stats` `workers`, `/metrics` `framecast_worker_*`).
    pub(super) fn report(&self, stats: &Stats, gauges: &Gauges, report: &mut Report) {
        const COLUMNS: &[Column] = &[
            Column {
                name: "connections_accepted",
                kind: Kind::Counter,
                help: "Connections this worker accepted.",
            },
            Column {
                name: "connections_open",
                kind: Kind::Gauge,
                help: "Connections this worker serves now.",
            },
            Column {
                name: "frames_in",
                kind: Kind::Counter,
                help: "Complete frames this worker received.",
            },
            Column {
                name: "frames_out",
                kind: Kind::Counter,
                help: "Frames this worker sent.",
            },
        ];
        let table = report.table("worker", COLUMNS);
        for (i, (s, g)) in self.board.seats().iter().enumerate() {
            let (s, g) = if i == self.index {
                (stats, gauges)
            } else {
                (s, g)
            };
            table.push(
                i.to_string().as_bytes(),
                &[s.accepted, g.open, s.frames_in, s.frames_out],
            );
        }
    }
}

/// Adds one worker's counters to `total`: counts add up, high-water marks and the
/// longest turn take the largest, the uptime the longest.
fn add(total: &mut (Stats, Gauges), stats: &Stats, gauges: &Gauges) {
    // Destructured whole, so a counter added to `Stats` cannot be forgotten here.
    let Stats {
        accepted,
        refused,
        denied,
        shed,
        oversize,
        truncated,
        oversize_skipped,
        idle_timeouts,
        frame_timeouts,
        write_timeouts,
        slow_disconnects,
        frames_dropped,
        frames_in,
        frames_out,
        bytes_in,
        bytes_out,
        queued_high_water,
        buffers_released,
        resets,
        unanswered_bytes,
        tls_handshakes,
        tls_errors,
        tls_handshake_timeouts,
        datagrams_in,
        datagrams_out,
        datagrams_dropped,
        datagrams_refused_port,
        datagrams_denied,
        datagram_errors,
        turns,
        longest_turn_us,
    } = *stats;
    let t = &mut total.0;
    t.accepted += accepted;
    t.refused += refused;
    t.denied += denied;
    t.shed += shed;
    t.oversize += oversize;
    t.truncated += truncated;
    t.oversize_skipped += oversize_skipped;
    t.idle_timeouts += idle_timeouts;
    t.frame_timeouts += frame_timeouts;
    t.write_timeouts += write_timeouts;
    t.slow_disconnects += slow_disconnects;
    t.frames_dropped += frames_dropped;
    t.frames_in += frames_in;
    t.frames_out += frames_out;
    t.bytes_in += bytes_in;
    t.bytes_out += bytes_out;
    t.queued_high_water = t.queued_high_water.max(queued_high_water);
    t.buffers_released += buffers_released;
    t.resets += resets;
    t.unanswered_bytes += unanswered_bytes;
    t.tls_handshakes += tls_handshakes;
    t.tls_errors += tls_errors;
    t.tls_handshake_timeouts += tls_handshake_timeouts;
    t.datagrams_in += datagrams_in;
    t.datagrams_out += datagrams_out;
    t.datagrams_dropped += datagrams_dropped;
    t.datagrams_refused_port += datagrams_refused_port;
    t.datagrams_denied += datagrams_denied;
    t.datagram_errors += datagram_errors;
    t.turns += turns;
    t.longest_turn_us = t.longest_turn_us.max(longest_turn_us);
    let g = &mut total.1;
    g.open += gauges.open;
    g.queued += gauges.queued;
    g.uptime = g.uptime.max(gauges.uptime);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_total_adds_counts_and_keeps_the_largest_marks() {
        let board = StatsBoard::new(2);
        let now = Instant::now();
        let mut seat = Seat {
            index: 1,
            board: Arc::clone(&board),
            due: now,
        };
        let one = Stats {
            accepted: 3,
            frames_in: 10,
            longest_turn_us: 7,
            ..Stats::default()
        };
        let gauges = Gauges {
            open: 2,
            ..Gauges::default()
        };
        seat.publish(one, gauges, now);
        assert_eq!(seat.due, now + PUBLISH_EVERY);
        let mine = Stats {
            accepted: 1,
            frames_in: 5,
            longest_turn_us: 9,
            ..Stats::default()
        };
        let seat0 = Seat {
            index: 0,
            board: Arc::clone(&board),
            due: now,
        };
        let (total, g) = seat0.total(&mine, &Gauges::default());
        assert_eq!((total.accepted, total.frames_in, g.open), (4, 15, 2));
        assert_eq!(total.longest_turn_us, 9);
        let mut report = Report::default();
        seat0.report(&mine, &Gauges::default(), &mut report);
        assert_eq!(report.tables[0].rows[1], ("1".into(), vec![3, 2, 10, 0]));
    }
}
