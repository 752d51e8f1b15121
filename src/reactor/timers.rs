//! Connection deadlines, checked lazily. Each connection keeps plain timestamps (last
//! frame, frame started, output stalled) that the data path updates for free; this heap
//! holds at most one live entry per connection, at the earliest deadline those
//! timestamps imply. When an entry comes due the connection's real deadline is worked
//! out again: expired, it is closed; moved on, it is re-armed. So a frame costs no timer
//! work, and a connection costs O(log n) once per timeout period, not once per event.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;
use std::time::{Duration, Instant};

/// Which limit a deadline enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// No complete frame in or out for `--idle-timeout`.
    Idle,
    /// A started frame did not complete within `--frame-timeout`.
    Frame,
    /// Pending output made no progress for `--write-timeout`.
    Write,
    /// A closing connection's peer did not finish sending in time.
    Linger,
    /// During a shutdown: a caught-up connection has been quiet long enough to close.
    Quiet,
    /// A TLS handshake did not complete within `--tls-handshake-timeout`.
    Handshake,
}

impl fmt::Display for Expiry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Expiry::Idle => "idle timeout",
            Expiry::Frame => "frame timeout: a frame started and did not complete",
            Expiry::Write => "write timeout: pending output made no progress",
            Expiry::Linger => "linger timeout",
            Expiry::Quiet => "quiet through the shutdown",
            Expiry::Handshake => "TLS handshake timeout",
        })
    }
}

/// The configured limits; `None` turns one off.
#[derive(Debug, Clone, Copy, Default)]
pub struct Timeouts {
    /// See [`Expiry::Idle`].
    pub idle: Option<Duration>,
    /// See [`Expiry::Frame`].
    pub frame: Option<Duration>,
    /// See [`Expiry::Write`].
    pub write: Option<Duration>,
    /// See [`Expiry::Quiet`]: set only once a shutdown has begun.
    pub quiet: Option<Duration>,
}

/// A connection's timestamps, from which its deadline follows.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// When the last complete frame came in or output went out.
    pub last_frame: Instant,
    /// When the first byte of the frame now in progress arrived.
    pub frame_started: Option<Instant>,
    /// Since when pending output has made no progress.
    pub write_stalled: Option<Instant>,
    /// A closing connection is dropped at this instant even if its peer keeps sending.
    pub linger_until: Option<Instant>,
    /// A TLS connection still in its handshake is closed at this instant.
    pub handshake_until: Option<Instant>,
    /// The deadline this connection's heap entry is at, if it has a live one.
    pub armed: Option<Instant>,
}

impl Clock {
    /// A clock for a connection that starts at `now`.
    pub fn new(now: Instant) -> Self {
        Clock {
            last_frame: now,
            frame_started: None,
            write_stalled: None,
            linger_until: None,
            handshake_until: None,
            armed: None,
        }
    }

    /// The earliest deadline and what it enforces.
    pub fn deadline(&self, limits: &Timeouts) -> Option<(Instant, Expiry)> {
        let candidates = [
            limits.idle.map(|d| (self.last_frame + d, Expiry::Idle)),
            limits
                .frame
                .zip(self.frame_started)
                .map(|(d, t)| (t + d, Expiry::Frame)),
            limits
                .write
                .zip(self.write_stalled)
                .map(|(d, t)| (t + d, Expiry::Write)),
            self.linger_until.map(|t| (t, Expiry::Linger)),
            self.handshake_until.map(|t| (t, Expiry::Handshake)),
        ];
        candidates
            .into_iter()
            .flatten()
            .min_by_key(|&(when, _)| when)
    }
}

/// Deadlines of every connection, earliest first. Entries are `(when, key, serial)`; the
/// serial tells a connection from a later one that reused its slab key.
#[derive(Debug, Default)]
pub struct Timers {
    heap: BinaryHeap<Reverse<(Instant, usize, u64)>>,
}

impl Timers {
    /// Adds an entry for connection `key` (with `serial`) at `when`.
    pub fn arm(&mut self, when: Instant, key: usize, serial: u64) {
        self.heap.push(Reverse((when, key, serial)));
    }

    /// The earliest entry's time, live or stale.
    pub fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((when, _, _))| *when)
    }

    /// Entries held, stale ones included.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Keeps only the entries `live` approves: stale entries (closed or re-armed
    /// connections) otherwise stay until they come due, so a connect storm could pile
    /// them up.
    pub fn retain(&mut self, mut live: impl FnMut(Instant, usize, u64) -> bool) {
        self.heap
            .retain(|Reverse((when, key, serial))| live(*when, *key, *serial));
    }

    /// Removes and returns the earliest entry if it is due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<(Instant, usize, u64)> {
        match self.heap.peek() {
            Some(Reverse((when, _, _))) if *when <= now => self.heap.pop().map(|Reverse(e)| e),
            _ => None,
        }
    }
}

/// The service's timers ([`Ctx::set_timer`](super::Ctx::set_timer)): `(when, order,
/// tag)`, earliest first and, at the same instant, in the order they were set.
#[derive(Debug, Default)]
pub struct ServiceTimers {
    heap: BinaryHeap<Reverse<(Instant, u64, u64)>>,
    /// How many timers have been set: ties at one instant keep their order.
    set: u64,
}

impl ServiceTimers {
    /// Sets a timer for `tag` at `when`.
    pub fn arm(&mut self, when: Instant, tag: u64) {
        self.set += 1;
        self.heap.push(Reverse((when, self.set, tag)));
    }

    /// When the earliest timer is due.
    pub fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((when, _, _))| *when)
    }

    /// Removes and returns the tag of the earliest timer if it is due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<u64> {
        match self.heap.peek() {
            Some(Reverse((when, _, _))) if *when <= now => {
                self.heap.pop().map(|Reverse((_, _, tag))| tag)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn deadline_is_the_earliest_active_limit() {
        let t0 = Instant::now();
        let limits = Timeouts {
            idle: Some(60 * SEC),
            frame: Some(30 * SEC),
            write: Some(10 * SEC),
            quiet: None,
        };
        let mut clock = Clock::new(t0);
        assert_eq!(clock.deadline(&limits), Some((t0 + 60 * SEC, Expiry::Idle)));
        clock.frame_started = Some(t0 + SEC);
        assert_eq!(
            clock.deadline(&limits),
            Some((t0 + 31 * SEC, Expiry::Frame))
        );
        clock.write_stalled = Some(t0 + 2 * SEC);
        assert_eq!(
            clock.deadline(&limits),
            Some((t0 + 12 * SEC, Expiry::Write))
        );
        assert_eq!(
            clock.deadline(&Timeouts::default()),
            None,
            "every limit off"
        );
    }

    #[test]
    fn pops_only_due_entries_in_time_order() {
        let t0 = Instant::now();
        let mut timers = Timers::default();
        timers.arm(t0 + 3 * SEC, 1, 10);
        timers.arm(t0 + SEC, 2, 20);
        timers.arm(t0 + 2 * SEC, 3, 30);
        assert_eq!(timers.next(), Some(t0 + SEC));
        assert_eq!(timers.pop_due(t0), None);
        assert_eq!(timers.pop_due(t0 + 2 * SEC), Some((t0 + SEC, 2, 20)));
        assert_eq!(timers.pop_due(t0 + 2 * SEC), Some((t0 + 2 * SEC, 3, 30)));
        assert_eq!(timers.pop_due(t0 + 2 * SEC), None);
        assert_eq!(timers.next(), Some(t0 + 3 * SEC));
    }

    #[test]
    fn service_timers_fire_in_time_order_then_in_the_order_set() {
        let t0 = Instant::now();
        let mut timers = ServiceTimers::default();
        timers.arm(t0 + 2 * SEC, 7);
        timers.arm(t0 + SEC, 8);
        timers.arm(t0 + SEC, 9);
        assert_eq!(timers.next(), Some(t0 + SEC));
        assert_eq!(timers.pop_due(t0), None, "nothing is due before its time");
        assert_eq!(timers.pop_due(t0 + SEC), Some(8));
        assert_eq!(timers.pop_due(t0 + SEC), Some(9));
        assert_eq!(timers.pop_due(t0 + SEC), None);
        assert_eq!(timers.pop_due(t0 + 5 * SEC), Some(7));
        assert_eq!(timers.next(), None);
    }

    #[test]
    fn retain_drops_stale_entries() {
        let t0 = Instant::now();
        let mut timers = Timers::default();
        for key in 0..10 {
            timers.arm(t0 + key as u32 * SEC, key, 1);
        }
        timers.retain(|_, key, _| key % 2 == 0);
        assert_eq!(timers.len(), 5);
        assert_eq!(timers.pop_due(t0 + 100 * SEC), Some((t0, 0, 1)));
        assert_eq!(timers.pop_due(t0 + 100 * SEC), Some((t0 + 2 * SEC, 2, 1)));
    }
}
