//! The framings by name: which codec cuts a stream, and the names the command lines use
//! for them (`u32be`, `line`, `fixed:64`, `raw`).

use std::fmt;
use std::str::FromStr;

use crate::units::parse_size;

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

#[cfg(test)]
mod tests {
    use super::*;

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
