//! Sizes and durations in the textual forms the command lines take (`8MiB`, `30s`):
//! plain parsers shared by the daemon, the codecs (`fixed:64KiB`) and the bench.

use std::fmt;
use std::time::Duration;

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

/// A duration that is not a whole number of ms, s, m or h.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseDurationError(String);

impl fmt::Display for ParseDurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid duration '{}' (expected e.g. 500ms, 30s, 5m or 1h)",
            self.0
        )
    }
}

impl std::error::Error for ParseDurationError {}

/// Parses a duration such as `500ms`, `30s`, `5m` or `1h` (a unit is required).
///
/// # Errors
/// [`ParseDurationError`] if the text is not a whole number with a known unit.
pub fn parse_duration(text: &str) -> Result<Duration, ParseDurationError> {
    let bad = || ParseDurationError(text.to_owned());
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(bad)?;
    let (digits, unit) = trimmed.split_at(split);
    let number: u64 = digits.parse().map_err(|_| bad())?;
    let millis = match unit.trim() {
        "ms" => Some(number),
        "s" => number.checked_mul(1_000),
        "m" | "min" => number.checked_mul(60_000),
        "h" => number.checked_mul(3_600_000),
        _ => None,
    };
    millis.map(Duration::from_millis).ok_or_else(bad)
}

/// Parses a duration, or `off` (also `0`) for none.
///
/// # Errors
/// As [`parse_duration`].
pub fn parse_optional_duration(text: &str) -> Result<Option<Duration>, ParseDurationError> {
    match text.trim() {
        "off" | "0" => Ok(None),
        _ => parse_duration(text).map(|d| Some(d).filter(|d| !d.is_zero())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations_with_units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        for bad in [
            "",
            "30",
            "s",
            "1.5s",
            "5 days",
            "-1s",
            "99999999999999999999h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should not parse");
        }
        assert_eq!(parse_optional_duration("off"), Ok(None));
        assert_eq!(parse_optional_duration("0"), Ok(None));
        assert_eq!(parse_optional_duration("0s"), Ok(None));
        assert_eq!(
            parse_optional_duration("10s"),
            Ok(Some(Duration::from_secs(10)))
        );
    }

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
}
