//! What a run counts: frames and bytes each way inside the measured window, integrity
//! and connection errors over the whole run, and the latency histogram. Each event-loop
//! thread fills its own [`Stats`] without sharing; they are merged once at the end.
//! [`Progress`] is the one shared piece: a few counters per thread that the thread
//! stores (never read-modify-writes) once per read batch, for the per-second line.

use std::sync::atomic::{AtomicU64, Ordering};

use hdrhistogram::Histogram;

use super::track::{Arrival, SeqWindow};

/// Largest latency the histogram holds, in nanoseconds (one hour); larger values are
/// recorded as this.
pub const MAX_LATENCY_NS: u64 = 3_600_000_000_000;
/// Significant decimal digits the histogram keeps: 0.1 % resolution at any latency.
pub const SIGNIFICANT_DIGITS: u8 = 3;

/// Frames that did not arrive as sent, over the whole run (warmup and drain included).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Integrity {
    /// Frames skipped in a sender's sequence and never seen later.
    pub lost: u64,
    /// Frames received twice.
    pub duplicated: u64,
    /// Frames that arrived after a later one of the same sender.
    pub reordered: u64,
    /// Frames that failed verification: checksum, length, header, or a stream that
    /// broke the framing itself.
    pub corrupted: u64,
    /// Frames sent that had not come back when the run ended, after the drain period.
    pub unanswered: u64,
    /// Frames that came back to, or from, a connection they do not belong to.
    pub misdelivered: u64,
    /// Raw and fixed framings: bytes passed over after a corrupted message, up to the
    /// next message that verifies. Not an error count of its own: the corrupted and
    /// lost frames around them are.
    pub skipped_bytes: u64,
}

impl Integrity {
    /// Every integrity error together.
    pub fn total(&self) -> u64 {
        self.lost
            + self.duplicated
            + self.reordered
            + self.corrupted
            + self.unanswered
            + self.misdelivered
    }

    /// Adds another thread's counts.
    pub fn merge(&mut self, other: &Integrity) {
        self.lost += other.lost;
        self.duplicated += other.duplicated;
        self.reordered += other.reordered;
        self.corrupted += other.corrupted;
        self.unanswered += other.unanswered;
        self.misdelivered += other.misdelivered;
        self.skipped_bytes += other.skipped_bytes;
    }

    /// Counts one arrival at `window` (its sender's) as the tracker classified it.
    /// `unexplained` holds corrupted frames not yet matched to a gap: a corrupted
    /// frame's number cannot be trusted, so the gap it leaves is not counted a second
    /// time as lost. A late frame is reordered, and takes back a lost frame only if
    /// its own sender was charged one: each frame is counted once.
    pub fn count(&mut self, arrival: Arrival, window: &mut SeqWindow, unexplained: &mut u64) {
        match arrival {
            Arrival::InOrder => {}
            Arrival::Gap(gap) => {
                let explained = gap.min(*unexplained);
                *unexplained -= explained;
                self.lost += gap - explained;
                window.charge(gap - explained);
            }
            Arrival::Duplicate => self.duplicated += 1,
            Arrival::Late => {
                self.reordered += 1;
                if window.refund() {
                    self.lost = self.lost.saturating_sub(1);
                }
            }
            Arrival::BeforeStart => self.reordered += 1,
        }
    }
}

/// Connection trouble over the whole run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnectionErrors {
    /// Connections that could not be established.
    pub failed: u64,
    /// Connections the server closed (end of stream or reset) before the run ended.
    pub closed: u64,
    /// Other I/O errors, each closing its connection.
    pub io: u64,
}

impl ConnectionErrors {
    /// Every connection error together.
    pub fn total(&self) -> u64 {
        self.failed + self.closed + self.io
    }

    /// Adds another thread's counts.
    pub fn merge(&mut self, other: &ConnectionErrors) {
        self.failed += other.failed;
        self.closed += other.closed;
        self.io += other.io;
    }
}

/// One thread's (or, merged, the whole run's) figures.
#[derive(Debug, Clone)]
pub struct Stats {
    /// Frames sent inside the measured window.
    pub frames_sent: u64,
    /// Wire bytes (headers included) sent inside the measured window.
    pub bytes_sent: u64,
    /// Frames received and verified inside the measured window.
    pub frames_received: u64,
    /// Wire bytes received inside the measured window.
    pub bytes_received: u64,
    /// Frames received over the whole run, warmup and drain included (progress line).
    pub frames_total: u64,
    /// Wire bytes received over the whole run (progress line).
    pub bytes_total: u64,
    /// Integrity errors.
    pub integrity: Integrity,
    /// Connection errors.
    pub connections: ConnectionErrors,
    /// Latency of every frame sent inside the window (by its stamp: in the open loop,
    /// the earlier of its intended and actual send times), whenever it came back, the
    /// drain included; in nanoseconds.
    pub latency: Histogram<u64>,
    /// Open loop: how far from its intended send time each frame of the window was
    /// written, early or late, in nanoseconds: the generator's own error (when late,
    /// inside the latency).
    pub pacing: Histogram<u64>,
    /// Open loop: frames of the window written before their intended time (within the
    /// timer's lead).
    pub sent_early: u64,
    /// Open loop: how early the send timer was armed at the end (the thread's learnt
    /// wake-up delay), in ns; the largest over threads.
    pub timer_lead: u64,
}

impl Stats {
    /// Empty figures.
    pub fn new() -> Stats {
        Stats {
            frames_sent: 0,
            bytes_sent: 0,
            frames_received: 0,
            bytes_received: 0,
            frames_total: 0,
            bytes_total: 0,
            integrity: Integrity::default(),
            connections: ConnectionErrors::default(),
            latency: new_histogram(),
            pacing: new_histogram(),
            sent_early: 0,
            timer_lead: 0,
        }
    }

    /// Adds another thread's figures.
    pub fn merge(&mut self, other: &Stats) {
        self.frames_sent += other.frames_sent;
        self.bytes_sent += other.bytes_sent;
        self.frames_received += other.frames_received;
        self.bytes_received += other.bytes_received;
        self.frames_total += other.frames_total;
        self.bytes_total += other.bytes_total;
        self.sent_early += other.sent_early;
        self.timer_lead = self.timer_lead.max(other.timer_lead);
        self.integrity.merge(&other.integrity);
        self.connections.merge(&other.connections);
        // Both histograms have the same bounds, so adding cannot fail; if it ever did,
        // the samples would be missing, not wrong.
        let _ = self.latency.add(&other.latency);
        let _ = self.pacing.add(&other.pacing);
    }

    /// Counts a frame written at `sent` ns whose intended send time was `due`: how
    /// far off it went out, either way.
    pub fn record_pacing(&mut self, sent: u64, due: u64) {
        if sent < due {
            self.sent_early += 1;
        }
        // 0 is below the histogram's lowest value: a frame on time counts as 1 ns.
        self.pacing.saturating_record(sent.abs_diff(due).max(1));
    }

    /// Every error together.
    pub fn errors(&self) -> u64 {
        self.integrity.total() + self.connections.total()
    }
}

impl Default for Stats {
    fn default() -> Self {
        Stats::new()
    }
}

/// A latency histogram in nanoseconds, 1 ns to [`MAX_LATENCY_NS`], 3 significant digits.
#[allow(clippy::expect_used)] // constant bounds, checked by a unit test: cannot fail
pub fn new_histogram() -> Histogram<u64> {
    // hdrhistogram refuses only low < 1, high < 2 * low or sigfig > 5.
    Histogram::new_with_bounds(1, MAX_LATENCY_NS, SIGNIFICANT_DIGITS)
        .expect("constant histogram bounds are valid")
}

/// One thread's live counters for the progress line. Single writer (the thread),
/// relaxed stores; the reader only needs figures that are roughly current.
#[derive(Debug, Default)]
pub struct Progress {
    /// Frames received since the run started (warmup included).
    pub frames: AtomicU64,
    /// Wire bytes received since the run started.
    pub bytes: AtomicU64,
    /// Connections established and not closed.
    pub up: AtomicU64,
    /// Errors of every kind so far.
    pub errors: AtomicU64,
}

/// A snapshot of every thread's [`Progress`], summed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProgressTotals {
    /// Frames received so far.
    pub frames: u64,
    /// Wire bytes received so far.
    pub bytes: u64,
    /// Connections up.
    pub up: u64,
    /// Errors so far.
    pub errors: u64,
}

impl ProgressTotals {
    /// Sums the threads' counters.
    pub fn sum<'a>(threads: impl IntoIterator<Item = &'a Progress>) -> ProgressTotals {
        threads
            .into_iter()
            .fold(ProgressTotals::default(), |acc, p| ProgressTotals {
                frames: acc.frames + p.frames.load(Ordering::Relaxed),
                bytes: acc.bytes + p.bytes.load(Ordering::Relaxed),
                up: acc.up + p.up.load(Ordering::Relaxed),
                errors: acc.errors + p.errors.load(Ordering::Relaxed),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_adds_counts_and_histograms() {
        let mut a = Stats::new();
        a.frames_received = 3;
        a.integrity.lost = 1;
        a.latency.record(1_000).unwrap();
        let mut b = Stats::new();
        b.frames_received = 4;
        b.connections.closed = 2;
        b.latency.record(3_000).unwrap();
        a.merge(&b);
        assert_eq!(a.frames_received, 7);
        assert_eq!(a.errors(), 3);
        assert_eq!(a.latency.len(), 2);
        assert_eq!(a.latency.max(), b.latency.max());
    }

    /// Feeds `seqs` to `window` as they arrive, counting into `integrity`.
    fn feed(
        integrity: &mut Integrity,
        window: &mut SeqWindow,
        unexplained: &mut u64,
        seqs: &[u64],
    ) {
        for &seq in seqs {
            let arrival = window.observe(seq);
            integrity.count(arrival, window, unexplained);
        }
    }

    #[test]
    fn a_corrupted_frame_is_not_also_counted_lost() {
        let mut integrity = Integrity::default();
        let mut window = SeqWindow::starting_at(0);
        let mut unexplained = 1;
        integrity.corrupted += 1;
        feed(&mut integrity, &mut window, &mut unexplained, &[0, 2]);
        assert_eq!(integrity.total(), 1);
        feed(&mut integrity, &mut window, &mut unexplained, &[5]);
        assert_eq!(integrity.lost, 2);
    }

    #[test]
    fn a_frame_from_before_a_joined_stream_takes_back_no_loss() {
        let mut integrity = Integrity::default();
        let mut window = SeqWindow::unstarted();
        let mut unexplained = 0;
        // Joined at 5; 6 is lost; 3 was sent before the join and arrives late.
        feed(&mut integrity, &mut window, &mut unexplained, &[5, 7, 3]);
        assert_eq!((integrity.lost, integrity.reordered), (1, 1));
    }

    #[test]
    fn a_late_frame_is_reordered_not_lost() {
        let mut integrity = Integrity::default();
        let mut window = SeqWindow::starting_at(0);
        let mut unexplained = 0;
        feed(&mut integrity, &mut window, &mut unexplained, &[0, 2, 1]);
        assert_eq!(
            integrity,
            Integrity {
                reordered: 1,
                ..Integrity::default()
            }
        );
    }

    #[test]
    fn a_frame_later_than_the_window_is_counted_once() {
        let mut integrity = Integrity::default();
        let mut window = SeqWindow::starting_at(0);
        let mut unexplained = 0;
        let mut seqs: Vec<u64> = (0..200).filter(|&seq| seq != 10).collect();
        seqs.push(10);
        feed(&mut integrity, &mut window, &mut unexplained, &seqs);
        assert_eq!(
            integrity,
            Integrity {
                reordered: 1,
                ..Integrity::default()
            }
        );
        // Again, with no hole left: a duplicate.
        feed(&mut integrity, &mut window, &mut unexplained, &[10]);
        assert_eq!((integrity.reordered, integrity.duplicated), (1, 1));
        assert_eq!(integrity.lost, 0);
    }

    #[test]
    fn a_late_frame_takes_back_only_its_own_senders_loss() {
        let mut integrity = Integrity::default();
        let (mut a, mut b) = (SeqWindow::starting_at(0), SeqWindow::starting_at(0));
        // Sender a loses frame 1 for good.
        let mut unexplained = 0;
        feed(&mut integrity, &mut a, &mut unexplained, &[0, 2]);
        // Sender b's frame 1 comes back corrupted, which explains its gap; then it
        // comes back intact, late.
        integrity.corrupted += 1;
        unexplained += 1;
        feed(&mut integrity, &mut b, &mut unexplained, &[0, 2, 1]);
        assert_eq!(
            integrity,
            Integrity {
                lost: 1,
                corrupted: 1,
                reordered: 1,
                ..Integrity::default()
            }
        );
    }

    #[test]
    fn histogram_keeps_three_digits_from_nanoseconds_to_an_hour() {
        let mut h = new_histogram();
        h.record(15_123).unwrap();
        h.record(MAX_LATENCY_NS).unwrap();
        assert!((h.min() as f64 - 15_123.0).abs() / 15_123.0 < 0.001);
        assert!(h.max() >= MAX_LATENCY_NS);
    }
}
