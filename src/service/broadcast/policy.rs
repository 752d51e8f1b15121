//! The slow-consumer policies: what happens when a recipient's backlog passes the cap.

use std::fmt;
use std::str::FromStr;

/// What to do with a recipient whose backlog (output waiting behind the chunk being
/// written to it) passes `max_output`. The sender's own echo is never treated so: its
/// input is what it waits on, so the reactor reads it no further until it drains.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SlowConsumer {
    /// Lossless: queue the frame anyway and read the publisher no further until every
    /// recipient of its frames is back under half the cap; a recipient that keeps a
    /// publisher waiting longer than the timeout in one stretch is closed.
    #[default]
    Pace,
    /// Close the recipient.
    Disconnect,
    /// Keep it, but skip whole frames for it until its output drains below half the cap.
    Drop,
}

/// The fate of a frame offered to a recipient other than its sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// Queue it.
    Queue,
    /// Queue it, and hold its publisher until the recipient drains (policy `pace`).
    QueueAndHold,
    /// Skip it for this recipient (counted as dropped).
    Skip,
    /// Close the recipient instead.
    Disconnect,
}

impl SlowConsumer {
    /// Decides for a frame of `len` bytes offered to a recipient with `backlog` bytes
    /// waiting behind the chunk it is being written, `cap` allowed, and `dropping` set
    /// while it is skipping frames. A recipient with no backlog is keeping up, so it
    /// takes any frame, even one larger than the cap: it holds at most the chunk in
    /// progress plus the cap plus one read's frames.
    pub fn offer(self, len: usize, backlog: usize, cap: usize, dropping: bool) -> Offer {
        let over = backlog > 0 && backlog.saturating_add(len) > cap;
        match self {
            SlowConsumer::Pace if over => Offer::QueueAndHold,
            SlowConsumer::Disconnect if over => Offer::Disconnect,
            SlowConsumer::Drop if dropping || over => Offer::Skip,
            _ => Offer::Queue,
        }
    }

    /// Whether a recipient that is skipping frames may receive again: once its backlog
    /// has drained below half the cap, so it gets runs of frames, not a sprinkle.
    pub fn resumes(backlog: usize, cap: usize) -> bool {
        backlog <= cap / 2
    }
}

/// A policy name that is not known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseNameError {
    name: String,
}

impl fmt::Display for ParseNameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown value '{}' (expected pace, disconnect or drop)",
            self.name
        )
    }
}

impl std::error::Error for ParseNameError {}

impl FromStr for SlowConsumer {
    type Err = ParseNameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pace" => Ok(SlowConsumer::Pace),
            "disconnect" => Ok(SlowConsumer::Disconnect),
            "drop" => Ok(SlowConsumer::Drop),
            _ => Err(ParseNameError { name: s.to_owned() }),
        }
    }
}

impl fmt::Display for SlowConsumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SlowConsumer::Pace => "pace",
            SlowConsumer::Disconnect => "disconnect",
            SlowConsumer::Drop => "drop",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pace_queues_everything_and_holds_past_the_cap() {
        let p = SlowConsumer::Pace;
        assert_eq!(p.offer(10, 90, 100, false), Offer::Queue);
        assert_eq!(p.offer(11, 90, 100, false), Offer::QueueAndHold);
        assert_eq!(p.offer(500, 0, 100, false), Offer::Queue, "idle takes any");
    }

    #[test]
    fn disconnect_policy_closes_a_recipient_that_would_pass_the_cap() {
        let p = SlowConsumer::Disconnect;
        assert_eq!(p.offer(10, 90, 100, false), Offer::Queue);
        assert_eq!(p.offer(11, 90, 100, false), Offer::Disconnect);
        assert_eq!(
            p.offer(500, 0, 100, false),
            Offer::Queue,
            "an idle recipient takes a big frame"
        );
    }

    #[test]
    fn drop_policy_skips_whole_frames_until_drained_below_half() {
        let p = SlowConsumer::Drop;
        assert_eq!(p.offer(10, 90, 100, false), Offer::Queue);
        assert_eq!(p.offer(11, 90, 100, false), Offer::Skip);
        // Once skipping, even a frame that would fit is skipped until the recipient
        // has drained to half the cap.
        assert_eq!(p.offer(1, 60, 100, true), Offer::Skip);
        assert!(!SlowConsumer::resumes(51, 100));
        assert!(SlowConsumer::resumes(50, 100));
    }

    #[test]
    fn names_round_trip() {
        for name in ["pace", "disconnect", "drop"] {
            assert_eq!(name.parse::<SlowConsumer>().unwrap().to_string(), name);
        }
        assert!("kick".parse::<SlowConsumer>().is_err());
    }
}
