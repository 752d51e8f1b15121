//! Modes: what happens to a complete frame. Pure decisions ("a frame from X goes to
//! whom"), no I/O: the reactor asks, then delivers.

use std::fmt;
use std::str::FromStr;

/// The daemon's behaviour towards complete frames.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Mode {
    /// Each frame goes back to its sender, in order.
    #[default]
    Echo,
}

/// Who receives a frame, relative to the connection that sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// Only the sender.
    Sender,
}

impl Mode {
    /// Who receives a frame sent by a client.
    pub fn audience(self) -> Audience {
        match self {
            Mode::Echo => Audience::Sender,
        }
    }
}

/// A mode name that is not known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseModeError(String);

impl fmt::Display for ParseModeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown mode '{}' (expected echo)", self.0)
    }
}

impl std::error::Error for ParseModeError {}

impl FromStr for Mode {
    type Err = ParseModeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "echo" => Ok(Mode::Echo),
            _ => Err(ParseModeError(s.to_owned())),
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Echo => "echo",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_returns_frames_to_their_sender() {
        assert_eq!(Mode::Echo.audience(), Audience::Sender);
    }

    #[test]
    fn mode_names_round_trip() {
        assert_eq!("echo".parse::<Mode>().unwrap().to_string(), "echo");
        assert!("chat".parse::<Mode>().is_err());
    }
}
