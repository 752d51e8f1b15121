//! CPU time of a process, read from `/proc/PID/stat` (utime + stime, every thread
//! included): the bench's own, and optionally the server's, so a run can report CPU
//! time per frame on each side. Linux only; elsewhere the figures are absent.

use std::io;
use std::time::Duration;

/// Clock ticks per second in `/proc/*/stat`: `USER_HZ`, which the kernel fixes at 100
/// for user space on every architecture Linux runs framecast on (what
/// `sysconf(_SC_CLK_TCK)` returns; reading it would need `libc`).
pub const TICKS_PER_SECOND: u64 = 100;

/// The user + system CPU time in the text of a `/proc/PID/stat` file, or `None` if
/// the text is not one. The command name (field 2) may contain spaces and
/// parentheses, so fields are counted from the last `)`.
pub fn parse_stat(text: &str) -> Option<Duration> {
    let after_name = &text[text.rfind(')')? + 1..];
    // Fields after the name start at field 3 (state); utime and stime are fields 14 and 15.
    let mut fields = after_name.split_ascii_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    let ticks = utime.checked_add(stime)?;
    Some(Duration::from_millis(
        ticks.saturating_mul(1000) / TICKS_PER_SECOND,
    ))
}

/// The CPU time used so far by process `pid`, or by this process for `None`.
///
/// # Errors
/// The read error (no such process, not Linux), or `InvalidData` for an unreadable file.
pub fn process_time(pid: Option<u32>) -> io::Result<Duration> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    let text = std::fs::read_to_string(&path)?;
    parse_stat(&text)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("cannot parse {path}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_utime_and_stime_after_a_tricky_command_name() {
        let stat = "4242 (a (weird) name) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 75 0 0 20 0 1 0 99 0 0";
        assert_eq!(parse_stat(stat), Some(Duration::from_millis(3250)));
    }

    #[test]
    fn rejects_text_that_is_not_a_stat_line() {
        assert_eq!(parse_stat(""), None);
        assert_eq!(parse_stat("1 (x) S 1 2"), None);
        assert_eq!(
            parse_stat("no parenthesis at all 1 2 3 4 5 6 7 8 9 10 11 12 13"),
            None
        );
    }

    #[test]
    fn reads_this_process() {
        // Linux CI: /proc exists. The figure only has to be a plausible duration.
        if let Ok(time) = process_time(None) {
            assert!(time < Duration::from_secs(24 * 3600));
        }
    }
}
