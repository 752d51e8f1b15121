//! What the operator must see, without a flood: each kind of [`Notice`] (refused
//! peers, timeouts by kind, protocol errors) gets at most one line a second at `info`;
//! what falls within that second is folded into a count said in one line when the
//! second is up. Every event still has its own line at `debug`. Pure bookkeeping: the
//! caller says what happened and when, and formats the lines.

use std::time::{Duration, Instant};

/// A kind of event worth an operator's attention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// A connection refused at `max_connections`.
    OverLimit,
    /// A peer refused by `--allow`/`--deny`.
    Denied,
    /// A connection closed by `--idle-timeout`.
    IdleTimeout,
    /// A connection closed by `--frame-timeout`.
    FrameTimeout,
    /// A connection closed by `--write-timeout`.
    WriteTimeout,
    /// A connection that broke the framing.
    ProtocolError,
}

impl Notice {
    /// Every kind, in slot order.
    pub const ALL: [Notice; 6] = [
        Notice::OverLimit,
        Notice::Denied,
        Notice::IdleTimeout,
        Notice::FrameTimeout,
        Notice::WriteTimeout,
        Notice::ProtocolError,
    ];

    fn slot(self) -> usize {
        self as usize
    }
}

/// One kind's line clock and what it has folded.
#[derive(Debug, Default, Clone, Copy)]
struct Slot {
    /// When this kind's last line was logged.
    last_line: Option<Instant>,
    /// Events since that line that had no line of their own.
    folded: u64,
}

/// The per-kind line clocks.
#[derive(Debug, Clone)]
pub struct Throttle {
    /// At most one line per kind this often.
    every: Duration,
    slots: [Slot; Notice::ALL.len()],
}

impl Throttle {
    /// A throttle allowing one line per kind per `every`.
    pub fn new(every: Duration) -> Self {
        Throttle {
            every,
            slots: [Slot::default(); Notice::ALL.len()],
        }
    }

    /// One more `kind` at `now`: true if it gets its own line now, false if it is
    /// folded into the next count.
    pub fn admit(&mut self, kind: Notice, now: Instant) -> bool {
        let every = self.every;
        let slot = &mut self.slots[kind.slot()];
        if slot.folded == 0 && slot.last_line.is_none_or(|last| now >= last + every) {
            slot.last_line = Some(now);
            true
        } else {
            slot.folded += 1;
            false
        }
    }

    /// The kinds whose folded count is due a line at `now`, with the count and the
    /// time since their last line; their clocks restart.
    pub fn due(&mut self, now: Instant) -> impl Iterator<Item = (Notice, u64, Duration)> + '_ {
        let every = self.every;
        Notice::ALL.into_iter().filter_map(move |kind| {
            let slot = &mut self.slots[kind.slot()];
            let last = slot.last_line?;
            if slot.folded == 0 || now < last + every {
                return None;
            }
            let folded = std::mem::take(&mut slot.folded);
            slot.last_line = Some(now);
            Some((kind, folded, now.saturating_duration_since(last)))
        })
    }

    /// When the next folded count is due a line, if any is waiting.
    pub fn next_due(&self) -> Option<Instant> {
        self.slots
            .iter()
            .filter(|s| s.folded > 0)
            .filter_map(|s| s.last_line.map(|last| last + self.every))
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_hundred_events_in_a_second_make_two_lines_that_count_them_all() {
        let t0 = Instant::now();
        let mut throttle = Throttle::new(Duration::from_secs(1));
        let mut own = 0;
        for i in 0..500u64 {
            if throttle.admit(Notice::ProtocolError, t0 + Duration::from_micros(i * 100)) {
                own += 1;
            }
        }
        assert_eq!(own, 1);
        assert_eq!(throttle.next_due(), Some(t0 + Duration::from_secs(1)));
        let half = t0 + Duration::from_millis(500);
        assert_eq!(throttle.due(half).count(), 0, "not before the second is up");
        let later = t0 + Duration::from_secs(1);
        let due: Vec<_> = throttle.due(later).collect();
        assert_eq!(due, [(Notice::ProtocolError, 499, Duration::from_secs(1))]);
        assert_eq!(throttle.next_due(), None);
        // The next event, a second after that line, has its own line again.
        assert!(!throttle.admit(Notice::ProtocolError, later));
        assert!(throttle.due(later + Duration::from_secs(1)).count() == 1);
        assert!(throttle.admit(Notice::ProtocolError, later + Duration::from_secs(2)));
    }

    #[test]
    fn kinds_have_clocks_of_their_own() {
        let t0 = Instant::now();
        let mut throttle = Throttle::new(Duration::from_secs(1));
        assert!(throttle.admit(Notice::Denied, t0));
        assert!(throttle.admit(Notice::IdleTimeout, t0));
        assert!(!throttle.admit(Notice::Denied, t0));
        assert!(throttle.admit(Notice::ProtocolError, t0));
    }
}
