//! Sequence tracking, sans-IO: given the sequence numbers of one sender's frames as
//! they arrive at one receiver, says which arrived in order, which were skipped, which
//! came twice and which came late. A 64-frame window of recently seen numbers (the
//! anti-replay window of RFC 4303, §3.4.3) tells a duplicate from a late arrival that
//! fills an earlier gap, in constant memory.

/// What one arrival was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// The next expected number (or the first one ever seen, without a known start).
    InOrder,
    /// A number ahead of the expected one: this many frames before it are missing so
    /// far (counted as lost until they show up late).
    Gap(u64),
    /// A number seen before.
    Duplicate,
    /// A number behind the expected one, not seen before: it fills an earlier gap.
    Late,
    /// A number too far behind to know whether it was seen: a duplicate or very late.
    Stale,
}

/// How many numbers below the next expected one the window remembers.
pub const WINDOW: u64 = 64;

/// One sender's numbers as seen by one receiver.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SeqWindow {
    /// One past the highest number seen; `None` before the first arrival when the start
    /// is not known (a broadcast receiver joins a stream already running).
    next: Option<u64>,
    /// Bit `i` set: number `next - 1 - i` has arrived.
    seen: u64,
}

impl SeqWindow {
    /// A window expecting `first` next (an echo connection's own frames start at 0).
    pub fn starting_at(first: u64) -> SeqWindow {
        SeqWindow {
            next: Some(first),
            seen: 0,
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

    /// Records the arrival of `seq`.
    pub fn observe(&mut self, seq: u64) -> Arrival {
        let Some(next) = self.next else {
            self.next = Some(seq.saturating_add(1));
            self.seen = 1;
            return Arrival::InOrder;
        };
        if seq >= next {
            let gap = seq - next;
            self.seen = shift(self.seen, gap.saturating_add(1)) | 1;
            self.next = Some(seq.saturating_add(1));
            return if gap == 0 {
                Arrival::InOrder
            } else {
                Arrival::Gap(gap)
            };
        }
        let age = next - 1 - seq;
        if age >= WINDOW {
            return Arrival::Stale;
        }
        let bit = 1u64 << age;
        if self.seen & bit != 0 {
            Arrival::Duplicate
        } else {
            self.seen |= bit;
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
    fn numbers_beyond_the_window_are_stale() {
        let mut w = SeqWindow::starting_at(0);
        w.observe(0);
        assert_eq!(w.observe(1000), Arrival::Gap(999));
        assert_eq!(w.observe(1000 - WINDOW + 1), Arrival::Late);
        assert_eq!(w.observe(1000 - WINDOW), Arrival::Stale);
        assert_eq!(w.observe(0), Arrival::Stale);
    }

    #[test]
    fn an_unstarted_window_takes_its_first_number_as_the_start() {
        let mut w = SeqWindow::unstarted();
        assert_eq!(w.next(), None);
        assert_eq!(w.observe(41), Arrival::InOrder);
        assert_eq!(w.observe(42), Arrival::InOrder);
        assert_eq!(w.observe(41), Arrival::Duplicate);
        assert_eq!(w.next(), Some(43));
    }
}
