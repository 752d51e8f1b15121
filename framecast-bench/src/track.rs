//! Sequence tracking, sans-IO: given the sequence numbers of one sender's frames as
//! they arrive at one receiver, says which arrived in order, which were skipped, which
//! came twice and which came late. A 64-frame window of recently seen numbers (the
//! anti-replay window of RFC 4303, §3.4.3) tells a duplicate from a late arrival that
//! fills an earlier gap, in constant memory; beyond the window, a count of the holes
//! that left it open still tells a very late frame (one such hole fills) from a
//! duplicate (none is left). It also keeps how many of the sender's holes the counts
//! call lost, so a late arrival takes back only what this sender was charged.

/// What one arrival was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// The next expected number (or the first one ever seen, without a known start).
    InOrder,
    /// A number ahead of the expected one: this many frames before it are missing so
    /// far (counted as lost until they show up late).
    Gap(u64),
    /// A number seen before, or one beyond the window when every hole there is filled.
    Duplicate,
    /// A number behind the expected one, not seen before: it fills an earlier gap.
    Late,
    /// Without a known start, a number below the first one seen: sent before it and
    /// arriving after it, so out of order, but it fills no gap counted here.
    BeforeStart,
}

/// How many numbers below the next expected one the window remembers.
pub const WINDOW: u64 = 64;

/// One sender's numbers as seen by one receiver.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SeqWindow {
    /// One past the highest number seen; `None` before the first arrival when the start
    /// is not known (a broadcast receiver joins a stream already running).
    next: Option<u64>,
    /// The first number of the stream: numbers below it are no holes of this window.
    start: u64,
    /// Bit `i` set: number `next - 1 - i` has arrived.
    seen: u64,
    /// Distinct numbers in `start..next` that have arrived; the rest are holes.
    received: u64,
    /// Of the holes, how many the counts call lost (the others were put down to
    /// corrupted frames, whose numbers cannot be trusted).
    charged: u64,
}

impl SeqWindow {
    /// A window expecting `first` next (an echo connection's own frames start at 0).
    pub fn starting_at(first: u64) -> SeqWindow {
        SeqWindow {
            next: Some(first),
            start: first,
            ..SeqWindow::default()
        }
    }

    /// A window that takes the first number it sees as the start.
    pub fn unstarted() -> SeqWindow {
        SeqWindow::default()
    }

    /// One past the highest number seen, if any was.
    pub fn next(&self) -> Option<u64> {
        self.next
    }

    /// Numbers below the next expected one that have not arrived.
    pub fn holes(&self) -> u64 {
        match self.next {
            Some(next) => (next - self.start).saturating_sub(self.received),
            None => 0,
        }
    }

    /// Holes that have left the window: numbers too old for the bitmap, never seen.
    fn departed(&self) -> u64 {
        let Some(next) = self.next else { return 0 };
        let span = next - self.start;
        let valid = if span >= WINDOW {
            u64::MAX
        } else {
            (1u64 << span) - 1
        };
        let inside = u64::from((!self.seen & valid).count_ones());
        self.holes().saturating_sub(inside)
    }

    /// Records that `n` of the holes just opened are counted as lost.
    pub fn charge(&mut self, n: u64) {
        self.charged = self.charged.saturating_add(n).min(self.holes());
    }

    /// A late arrival filled a hole: takes back one lost frame if this sender was
    /// charged one. Returns whether it was.
    pub fn refund(&mut self) -> bool {
        if self.charged == 0 {
            return false;
        }
        self.charged -= 1;
        true
    }

    /// Records the arrival of `seq`.
    pub fn observe(&mut self, seq: u64) -> Arrival {
        let Some(next) = self.next else {
            self.next = Some(seq.saturating_add(1));
            self.start = seq;
            self.seen = 1;
            self.received = 1;
            return Arrival::InOrder;
        };
        if seq >= next {
            let gap = seq - next;
            self.seen = shift(self.seen, gap.saturating_add(1)) | 1;
            self.next = Some(seq.saturating_add(1));
            self.received += 1;
            return if gap == 0 {
                Arrival::InOrder
            } else {
                Arrival::Gap(gap)
            };
        }
        if seq < self.start {
            // Sent before the first number this receiver saw, and arriving after it.
            return Arrival::BeforeStart;
        }
        let age = next - 1 - seq;
        if age >= WINDOW {
            // Too old to know whether it came before; it can only fill a hole that
            // left the window, and with none left it is a duplicate.
            if self.departed() == 0 {
                return Arrival::Duplicate;
            }
            self.received += 1;
            return Arrival::Late;
        }
        let bit = 1u64 << age;
        if self.seen & bit != 0 {
            Arrival::Duplicate
        } else {
            self.seen |= bit;
            self.received += 1;
            Arrival::Late
        }
    }
}

/// `bits << by`, zero once everything has shifted out.
fn shift(bits: u64, by: u64) -> u64 {
    if by >= 64 {
        0
    } else {
        bits << by
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_numbers_are_in_order() {
        let mut w = SeqWindow::starting_at(0);
        for seq in 0..200 {
            assert_eq!(w.observe(seq), Arrival::InOrder);
        }
        assert_eq!(w.next(), Some(200));
    }

    #[test]
    fn a_skipped_number_is_a_gap_then_late_when_it_shows_up() {
        let mut w = SeqWindow::starting_at(0);
        assert_eq!(w.observe(0), Arrival::InOrder);
        assert_eq!(w.observe(3), Arrival::Gap(2));
        assert_eq!(w.observe(4), Arrival::InOrder);
        assert_eq!(w.observe(1), Arrival::Late);
        assert_eq!(w.observe(1), Arrival::Duplicate);
        assert_eq!(w.observe(2), Arrival::Late);
        assert_eq!(w.observe(5), Arrival::InOrder);
    }

    #[test]
    fn a_repeated_number_is_a_duplicate() {
        let mut w = SeqWindow::starting_at(0);
        for seq in 0..10 {
            w.observe(seq);
        }
        assert_eq!(w.observe(9), Arrival::Duplicate);
        assert_eq!(w.observe(0), Arrival::Duplicate);
    }

    #[test]
    fn numbers_beyond_the_window_fill_holes_that_left_it_then_are_duplicates() {
        let mut w = SeqWindow::starting_at(0);
        w.observe(0);
        assert_eq!(w.observe(1000), Arrival::Gap(999));
        assert_eq!(w.holes(), 999);
        assert_eq!(w.observe(1000 - WINDOW + 1), Arrival::Late);
        assert_eq!(w.observe(1000 - WINDOW), Arrival::Late);
        assert_eq!(w.holes(), 997);
        // 0 arrived already, but that is beyond the window: all that is known is that
        // holes are left there.
        assert_eq!(w.observe(0), Arrival::Late);
    }

    #[test]
    fn a_number_beyond_the_window_with_no_hole_left_is_a_duplicate() {
        let mut w = SeqWindow::starting_at(0);
        for seq in 0..200 {
            if seq != 10 {
                w.observe(seq);
            }
        }
        assert_eq!(w.holes(), 1);
        assert_eq!(w.observe(10), Arrival::Late);
        assert_eq!(w.holes(), 0);
        assert_eq!(w.observe(10), Arrival::Duplicate);
        assert_eq!(w.observe(3), Arrival::Duplicate);
    }

    #[test]
    fn refunds_only_what_was_charged() {
        let mut w = SeqWindow::starting_at(0);
        w.observe(0);
        assert_eq!(w.observe(3), Arrival::Gap(2));
        w.charge(1);
        assert_eq!(w.observe(1), Arrival::Late);
        assert!(w.refund());
        assert_eq!(w.observe(2), Arrival::Late);
        assert!(!w.refund());
    }

    #[test]
    fn an_unstarted_window_takes_its_first_number_as_the_start() {
        let mut w = SeqWindow::unstarted();
        assert_eq!(w.next(), None);
        assert_eq!(w.observe(41), Arrival::InOrder);
        assert_eq!(w.observe(42), Arrival::InOrder);
        assert_eq!(w.observe(41), Arrival::Duplicate);
        assert_eq!(w.next(), Some(43));
        assert_eq!(w.holes(), 0);
        // Numbers before the start are no holes of its own.
        assert_eq!(w.observe(40), Arrival::BeforeStart);
        assert_eq!(w.holes(), 0);
    }
}
