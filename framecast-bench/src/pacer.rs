//! The open loop's clock: *which* sender is due next ([`Schedule`], sans-IO: a cursor
//! over one thread's senders in order of due time, so a pass costs what is due, not
//! what is connected) and *waking* at that moment ([`Pacer`]: a `timerfd` armed at an
//! absolute `CLOCK_MONOTONIC` deadline and registered in the thread's `Poll`, so the
//! thread sleeps in `epoll_wait` and wakes within microseconds, without spinning).
//! A sleeping thread wakes some time after its deadline (tens of µs on a VM), so the
//! pacer learns that delay ([`WakeLead`], a running median) and arms the timer that
//! much early: the frames of a pass then go out around their due time rather than
//! after it. Neither knows about sockets or frames.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Instant;

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use rustix::time::{
    clock_gettime, timerfd_create, timerfd_settime, ClockId, Itimerspec, TimerfdClockId,
    TimerfdFlags, TimerfdTimerFlags, Timespec,
};

/// Nanoseconds in a second.
const NANOS: i64 = 1_000_000_000;
/// How far one wake-up moves [`WakeLead`]'s estimate.
const LEAD_STEP_NS: u64 = 500;
/// The most [`WakeLead`] arms ahead: a frame never goes out earlier than this before
/// its time, however late the wake-ups.
pub const MAX_LEAD_NS: u64 = 250_000;

/// How late the timer wakes this thread: a running estimate of the median delay from
/// deadline to wake-up (each observation moves it 0.5 µs, `LEAD_STEP_NS`, towards itself,
/// so a rare millisecond stall barely moves it), capped at [`MAX_LEAD_NS`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WakeLead {
    ns: u64,
}

impl WakeLead {
    /// Notes a wake-up `late_ns` after the deadline armed.
    pub fn observe(&mut self, late_ns: u64) {
        self.ns = if late_ns > self.ns {
            (self.ns + LEAD_STEP_NS).min(MAX_LEAD_NS)
        } else {
            self.ns.saturating_sub(LEAD_STEP_NS)
        };
    }

    /// The estimate, in ns.
    pub fn ns(self) -> u64 {
        self.ns
    }
}

/// One thread's open-loop senders in the order their frames fall due.
///
/// Sender `k` (its id) of `senders` sends its `n`-th frame at `(k + n * senders) /
/// rate` seconds: every sender's frames together are evenly spaced, and the next due
/// frame of a thread is always the next entry of its own senders, sorted by id, round
/// after round. The cursor therefore moves in O(1) per frame however many
/// connections are idle.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// `(offset ns, connection index)` of this thread's senders, by offset.
    senders: Vec<(f64, usize)>,
    /// Nanoseconds between two frames of one sender.
    interval: f64,
    /// The entry whose frame is due next.
    pos: usize,
    /// The round of that frame: its sequence number on that sender.
    round: u64,
}

impl Schedule {
    /// A schedule over `senders` (`(offset ns, connection index)`, any order), each
    /// sending every `interval` ns.
    pub fn new(mut senders: Vec<(f64, usize)>, interval: f64) -> Schedule {
        senders.sort_by(|a, b| a.0.total_cmp(&b.0));
        Schedule {
            senders,
            interval,
            pos: 0,
            round: 0,
        }
    }

    /// When the next frame is due, in ns from the epoch, and on which connection;
    /// `None` without senders.
    pub fn peek(&self) -> Option<(u64, usize)> {
        let &(offset, index) = self.senders.get(self.pos)?;
        Some(((offset + self.round as f64 * self.interval) as u64, index))
    }

    /// Moves past the frame [`peek`](Schedule::peek) shows.
    pub fn advance(&mut self) {
        self.pos += 1;
        if self.pos >= self.senders.len() {
            self.pos = 0;
            self.round += 1;
        }
    }
}

/// A `timerfd` in a thread's `Poll`: one absolute deadline at a time, armed
/// [`WakeLead`] early.
///
/// Arming resets the timer's expiry count, and each expiry wakes the edge-triggered
/// poller afresh, so the descriptor is never read: one `timerfd_settime` per wake-up.
/// A timerfd, unlike `epoll_wait`'s timeout, takes no timer slack.
pub struct Pacer {
    /// The timer.
    fd: OwnedFd,
    /// The plan's epoch on `CLOCK_MONOTONIC` (the clock of [`Instant`] on Linux), in ns.
    epoch_ns: i64,
    /// The due time armed for and the moment the timer was set to (the lead before
    /// it), in ns from the epoch, if any: re-arming for the same time is skipped.
    armed: Option<(u64, u64)>,
    /// How late wake-ups come.
    lead: WakeLead,
}

impl Pacer {
    /// A disarmed timer counting from `epoch`, registered with `registry` as `token`.
    ///
    /// # Errors
    /// If the timer cannot be created or registered.
    pub fn new(registry: &Registry, token: Token, epoch: Instant) -> io::Result<Pacer> {
        let fd = timerfd_create(
            TimerfdClockId::Monotonic,
            TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
        )?;
        registry.register(&mut SourceFd(&fd.as_raw_fd()), token, Interest::READABLE)?;
        // The elapsed time first: the epoch found is then a few ns late, never early,
        // and so is every deadline.
        let since_epoch = i64::try_from(epoch.elapsed().as_nanos()).unwrap_or(i64::MAX);
        let now = clock_gettime(ClockId::Monotonic);
        let now_ns = now.tv_sec.saturating_mul(NANOS).saturating_add(now.tv_nsec);
        Ok(Pacer {
            fd,
            epoch_ns: now_ns.saturating_sub(since_epoch),
            armed: None,
            lead: WakeLead::default(),
        })
    }

    /// Wakes the poller for `due` ns from the epoch: the lead before it (at once if
    /// that has passed).
    ///
    /// # Errors
    /// If the kernel refuses the deadline.
    pub fn arm(&mut self, due: u64) -> io::Result<()> {
        if self.armed.is_some_and(|(d, _)| d == due) {
            return Ok(());
        }
        let set = due.saturating_sub(self.lead.ns());
        let at = self
            .epoch_ns
            .saturating_add(i64::try_from(set).unwrap_or(i64::MAX))
            .max(1); // 0 would disarm
        let spec = Itimerspec {
            it_interval: Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: Timespec {
                tv_sec: at / NANOS,
                tv_nsec: at % NANOS,
            },
        };
        timerfd_settime(&self.fd, TimerfdTimerFlags::ABSTIME, &spec)?;
        self.armed = Some((due, set));
        Ok(())
    }

    /// Called when the timer has fired, `now_ns` from the epoch: learns how late it
    /// woke the thread, and forgets the deadline, so the next [`arm`](Pacer::arm) sets
    /// one whatever it is.
    pub fn fired(&mut self, now_ns: u64) {
        if let Some((_, set)) = self.armed.take() {
            self.lead.observe(now_ns.saturating_sub(set));
        }
    }

    /// How early the timer is armed, and so how far ahead of now a pass sends, in ns.
    pub fn lead(&self) -> u64 {
        self.lead.ns()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::{Events, Poll};
    use std::time::Duration;

    #[test]
    fn schedule_visits_senders_in_order_of_due_time_round_after_round() {
        // Thread 1 of 2 over 6 senders at 6 frames/s: ids 1, 3, 5 (offsets 1/6 s ...),
        // every second each.
        let s = 1e9 / 6.0;
        let mut schedule = Schedule::new(vec![(5.0 * s, 2), (s, 0), (3.0 * s, 1)], 1e9);
        let mut seen = Vec::new();
        for _ in 0..7 {
            seen.push(schedule.peek().unwrap());
            schedule.advance();
        }
        let due: Vec<u64> = seen.iter().map(|&(d, _)| d).collect();
        assert!(due.windows(2).all(|w| w[0] < w[1]), "{due:?}");
        let order: Vec<usize> = seen.iter().map(|&(_, i)| i).collect();
        assert_eq!(order, [0, 1, 2, 0, 1, 2, 0]);
        assert_eq!(due[3], (s + 1e9) as u64);
    }

    #[test]
    fn schedule_without_senders_has_nothing_due() {
        assert_eq!(Schedule::new(Vec::new(), 1e6).peek(), None);
    }

    #[test]
    fn pacer_wakes_the_poller_once_per_deadline() {
        let mut poll = Poll::new().unwrap();
        let epoch = Instant::now();
        let mut pacer = Pacer::new(poll.registry(), Token(7), epoch).unwrap();
        let mut events = Events::with_capacity(4);
        for n in 1..=3u64 {
            pacer.arm(n * 1_000_000).unwrap();
            // Waits for the event, however long a loaded machine takes.
            loop {
                poll.poll(&mut events, Some(Duration::from_secs(10)))
                    .unwrap();
                if events.iter().any(|e| e.token() == Token(7)) {
                    break;
                }
            }
            let woke = epoch.elapsed();
            pacer.fired(woke.as_nanos() as u64);
            // Armed the lead learnt so far ahead of the deadline, never earlier.
            let lead = Duration::from_nanos(pacer.lead() + LEAD_STEP_NS);
            assert!(woke + lead >= Duration::from_millis(n), "woke early");
        }
    }

    #[test]
    fn wake_lead_settles_on_the_median_delay_and_shrugs_off_stalls() {
        let mut lead = WakeLead::default();
        // Wake-ups 40-60 µs late (median 50), with a 5 ms stall every 20th.
        for i in 0..2_000u64 {
            let late = if i % 20 == 19 {
                5_000_000
            } else {
                40_000 + (i * 7_919) % 20_001
            };
            lead.observe(late);
        }
        assert!((44_000..=58_000).contains(&lead.ns()), "{}", lead.ns());
        // Punctual wake-ups bring it back down to nothing.
        for _ in 0..200 {
            lead.observe(0);
        }
        assert_eq!(lead.ns(), 0);
    }

    #[test]
    fn wake_lead_is_capped() {
        let mut lead = WakeLead::default();
        for _ in 0..10_000 {
            lead.observe(u64::MAX);
        }
        assert_eq!(lead.ns(), MAX_LEAD_NS);
    }
}
