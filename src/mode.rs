//! Modes: what happens to a complete frame. Pure decisions — "a frame from X goes to
//! whom", "a recipient past its cap gets what" — with no I/O: the reactor asks, then
//! delivers.

use std::fmt;
use std::str::FromStr;

/// The daemon's behaviour towards complete frames.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Mode {
    /// Each frame goes back to its sender, in order.
    #[default]
    Echo,
    /// Each frame goes to every other connected client (chat-room style).
    Broadcast,
}

/// Who receives a frame, relative to the connection that sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Audience {
    /// The sender gets its own frame back.
    pub sender: bool,
    /// Every other open connection gets the frame.
    pub others: bool,
}

impl Mode {
    /// Who receives a frame sent by a client; `echo_self` adds the sender in broadcast.
    pub fn audience(self, echo_self: bool) -> Audience {
        match self {
            Mode::Echo => Audience {
                sender: true,
                others: false,
            },
            Mode::Broadcast => Audience {
                sender: echo_self,
                others: true,
            },
        }
    }
}

/// What to do with a recipient whose pending output passes the cap. The sender of a
/// frame is never treated so: its own input is what it is waiting on, so it is simply
/// read no further until it drains (backpressure).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SlowConsumer {
    /// Close the recipient.
    #[default]
    Disconnect,
    /// Keep it, but skip whole frames for it until its output drains below half the cap.
    Drop,
}

/// The fate of a frame offered to a recipient other than its sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// Queue it.
    Queue,
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

/// A mode or policy name that is not known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseNameError {
    name: String,
    expected: &'static str,
}

impl fmt::Display for ParseNameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown value '{}' (expected {})",
            self.name, self.expected
        )
    }
}

impl std::error::Error for ParseNameError {}

impl FromStr for Mode {
    type Err = ParseNameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "echo" => Ok(Mode::Echo),
            "broadcast" => Ok(Mode::Broadcast),
            _ => Err(ParseNameError {
                name: s.to_owned(),
                expected: "echo or broadcast",
            }),
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Echo => "echo",
            Mode::Broadcast => "broadcast",
        })
    }
}

impl FromStr for SlowConsumer {
    type Err = ParseNameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "disconnect" => Ok(SlowConsumer::Disconnect),
            "drop" => Ok(SlowConsumer::Drop),
            _ => Err(ParseNameError {
                name: s.to_owned(),
                expected: "disconnect or drop",
            }),
        }
    }
}

impl fmt::Display for SlowConsumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SlowConsumer::Disconnect => "disconnect",
            SlowConsumer::Drop => "drop",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_returns_frames_to_their_sender_only() {
        for echo_self in [false, true] {
            assert_eq!(
                Mode::Echo.audience(echo_self),
                Audience {
                    sender: true,
                    others: false
                }
            );
        }
    }

    #[test]
    fn broadcast_reaches_the_others_and_the_sender_only_on_request() {
        assert_eq!(
            Mode::Broadcast.audience(false),
            Audience {
                sender: false,
                others: true
            }
        );
        assert_eq!(
            Mode::Broadcast.audience(true),
            Audience {
                sender: true,
                others: true
            }
        );
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
        for name in ["echo", "broadcast"] {
            assert_eq!(name.parse::<Mode>().unwrap().to_string(), name);
        }
        for name in ["disconnect", "drop"] {
            assert_eq!(name.parse::<SlowConsumer>().unwrap().to_string(), name);
        }
        assert!("chat".parse::<Mode>().is_err());
        assert!("kick".parse::<SlowConsumer>().is_err());
    }
}
