//! The open loop's clock: *which* sender is due next ([`Schedule`], sans-IO: a cursor
//! over one thread's senders in order of due time, so a pass costs what is due, not
//! what is connected) and *waking* at that moment ([`Pacer`]: a `timerfd` armed at an
//! absolute `CLOCK_MONOTONIC` deadline and registered in the thread's `Poll`, so the
//! thread sleeps in `epoll_wait` and wakes within microseconds, without spinning).
//! Neither knows about sockets or frames.

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

/// A `timerfd` in a thread's `Poll`: one absolute deadline at a time.
///
/// Arming resets the timer's expiry count, and each expiry wakes the edge-triggered
/// poller afresh, so the descriptor is never read: one `timerfd_settime` per wake-up.
/// A timerfd, unlike `epoll_wait`'s timeout, takes no timer slack.
pub struct Pacer {
    /// The timer.
    fd: OwnedFd,
    /// The plan's epoch on `CLOCK_MONOTONIC` (the clock of [`Instant`] on Linux), in ns.
    epoch_ns: i64,
    /// The deadline armed, in ns from the epoch, if any: re-arming at the same time is
    /// skipped.
    armed: Option<u64>,
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
        })
    }

    /// Wakes the poller at `due` ns from the epoch (at once if that has passed).
    ///
    /// # Errors
    /// If the kernel refuses the deadline.
    pub fn arm(&mut self, due: u64) -> io::Result<()> {
        if self.armed == Some(due) {
            return Ok(());
        }
        let at = self
            .epoch_ns
            .saturating_add(i64::try_from(due).unwrap_or(i64::MAX))
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
        self.armed = Some(due);
        Ok(())
    }

    /// Forgets the deadline armed: the next [`arm`](Pacer::arm) sets one whatever it
    /// is. Called when the timer has fired.
    pub fn fired(&mut self) {
        self.armed = None;
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
            pacer.fired();
            assert!(epoch.elapsed() >= Duration::from_millis(n), "woke early");
        }
    }
}
