//! Runtime configuration: what to listen on, how to frame, which mode, and every limit
//! that bounds memory. Plain data plus the parsers for its textual forms (`8MiB`,
//! `u32be`, `fixed:64`); it knows nothing of sockets or of the command line.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use crate::mode::{Mode, SlowConsumer};

/// Default listen address: loopback only, so a daemon started by hand is not exposed.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7070";
/// Default maximum payload of one frame, in bytes (8 MiB). Large enough for real
/// messages, small enough that a hostile length costs at most this much per connection.
pub const DEFAULT_MAX_FRAME: usize = 8 << 20;
/// Default cap on a connection's queued output, in bytes (4 MiB). Past it an echo
/// connection stops being read until its output drains below half.
pub const DEFAULT_MAX_OUTPUT: usize = 4 << 20;
/// Default maximum number of simultaneous connections; more are accepted and closed.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

/// Everything the server needs to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Addresses to listen on; at least one.
    pub listen: Vec<SocketAddr>,
    /// What happens to a complete frame.
    pub mode: Mode,
    /// In broadcast mode, also send each frame back to its sender.
    pub echo_self: bool,
    /// In broadcast mode, what happens to a recipient past `max_output`.
    pub slow_consumer: SlowConsumer,
    /// How the byte stream is cut into frames.
    pub framing: Framing,
    /// Largest payload a frame may declare or carry, in bytes.
    pub max_frame: usize,
    /// Cap on one connection's pending output, in bytes.
    pub max_output: usize,
    /// Connections served at once; further ones are closed right after accept.
    pub max_connections: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 7070))],
            mode: Mode::default(),
            echo_self: false,
            slow_consumer: SlowConsumer::default(),
            framing: Framing::default(),
            max_frame: DEFAULT_MAX_FRAME,
            max_output: DEFAULT_MAX_OUTPUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// Byte order of a length header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endian {
    /// Network order, most significant byte first (`struct.pack('!I', n)`).
    Big,
    /// Least significant byte first (`struct.pack('<I', n)`, native on x86).
    Little,
}

/// How a byte stream is cut into frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// A `width`-byte unsigned payload length (1, 2, 4 or 8 bytes), then the payload.
    Length {
        /// Header size in bytes: 1, 2, 4 or 8.
        width: usize,
        /// Byte order of the header.
        endian: Endian,
    },
    /// A frame ends at `\n`; a `\r` right before it belongs to the delimiter.
    Line,
    /// Every frame is exactly this many bytes.
    Fixed(usize),
    /// No framing: whatever arrives is passed on as it is (RFC 862 echo).
    Raw,
}

impl Default for Framing {
    fn default() -> Self {
        Framing::Length {
            width: 4,
            endian: Endian::Big,
        }
    }
}

/// A framing name that is not one of the known forms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseFramingError(String);

impl fmt::Display for ParseFramingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown framing '{}' (expected u8, u16be, u16le, u32be, u32le, u64be, u64le, line, fixed:N or raw)",
            self.0
        )
    }
}

impl std::error::Error for ParseFramingError {}

impl FromStr for Framing {
    type Err = ParseFramingError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ParseFramingError(s.to_owned());
        let length = |width, endian| Ok(Framing::Length { width, endian });
        match s {
            "u8" => length(1, Endian::Big),
            "u16be" => length(2, Endian::Big),
            "u16le" => length(2, Endian::Little),
            "u32be" => length(4, Endian::Big),
            "u32le" => length(4, Endian::Little),
            "u64be" => length(8, Endian::Big),
            "u64le" => length(8, Endian::Little),
            "line" => Ok(Framing::Line),
            "raw" => Ok(Framing::Raw),
            _ => match s.strip_prefix("fixed:").map(parse_size) {
                Some(Ok(n)) if n > 0 => Ok(Framing::Fixed(n)),
                _ => Err(bad()),
            },
        }
    }
}

impl fmt::Display for Framing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Framing::Length { width: 1, .. } => f.write_str("u8"),
            Framing::Length { width, endian } => {
                let order = if endian == Endian::Big { "be" } else { "le" };
                write!(f, "u{}{order}", width * 8)
            }
            Framing::Line => f.write_str("line"),
            Framing::Fixed(n) => write!(f, "fixed:{n}"),
            Framing::Raw => f.write_str("raw"),
        }
    }
}

/// A size that is not a whole number of bytes, KiB, MiB or GiB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseSizeError(String);

impl fmt::Display for ParseSizeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid size '{}' (expected bytes, or a number with KiB, MiB or GiB, e.g. 4096 or 8MiB)",
            self.0
        )
    }
}

impl std::error::Error for ParseSizeError {}

/// Parses a size such as `4096`, `64KiB`, `8MiB` or `1GiB` (units are binary and
/// case-insensitive; `B` is accepted as bytes).
///
/// # Errors
/// [`ParseSizeError`] if the text is not a whole number with a known unit, or overflows.
pub fn parse_size(text: &str) -> Result<usize, ParseSizeError> {
    let bad = || ParseSizeError(text.to_owned());
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (digits, unit) = trimmed.split_at(split);
    let number: usize = digits.parse().map_err(|_| bad())?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kib" => 10,
        "m" | "mib" => 20,
        "g" | "gib" => 30,
        _ => return Err(bad()),
    };
    number.checked_mul(1 << shift).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sizes_with_binary_units() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64KiB"), Ok(64 << 10));
        assert_eq!(parse_size("8MiB"), Ok(8 << 20));
        assert_eq!(parse_size("1gib"), Ok(1 << 30));
        assert_eq!(parse_size("12B"), Ok(12));
    }

    #[test]
    fn rejects_bad_sizes() {
        for text in ["", "MiB", "8 XB", "-1", "1.5MiB", "99999999999999999999GiB"] {
            assert!(parse_size(text).is_err(), "{text:?} should not parse");
        }
    }

    #[test]
    fn framing_names_round_trip() {
        for name in [
            "u8", "u16be", "u16le", "u32be", "u32le", "u64be", "u64le", "line", "fixed:48", "raw",
        ] {
            let framing: Framing = name.parse().unwrap();
            assert_eq!(framing.to_string(), name);
        }
        assert_eq!(Framing::default().to_string(), "u32be");
    }

    #[test]
    fn rejects_unknown_framings() {
        for name in ["u32", "u24be", "fixed:0", "fixed:", "fixed:x", "LINE"] {
            assert!(
                name.parse::<Framing>().is_err(),
                "{name:?} should not parse"
            );
        }
    }
}
