//! Why a run failed, as one line for stderr and a documented exit code.

use std::fmt;
use std::io;
use std::time::Duration;

/// The exit codes, one per kind of failure (listed in `--help`: keep the two in step).
pub mod exit {
    /// Every frame was sent, and the run ended as asked.
    pub const OK: u8 = 0;
    /// A local problem: a file, stdin or stdout could not be used, a line or file could
    /// not be framed.
    pub const LOCAL: u8 = 1;
    /// A bad flag or argument (clap's own code).
    pub const USAGE: u8 = 2;
    /// The server could not be reached: refused, unreachable, no answer to connect.
    pub const UNREACHABLE: u8 = 3;
    /// The server reset the connection, closed it in the middle of a frame or before
    /// `--count` frames came, or broke the framing.
    pub const RESET: u8 = 4;
    /// `--timeout` ran out.
    pub const TIMED_OUT: u8 = 5;
    /// `--send-file`: the echo differs from the file, or did not come back.
    pub const MISMATCH: u8 = 6;
}

/// A failed run.
#[derive(Debug)]
pub enum Failure {
    /// See [`exit::LOCAL`].
    Local(String),
    /// See [`exit::USAGE`]: found after parsing (a `--send` that cannot be framed).
    Usage(String),
    /// See [`exit::UNREACHABLE`].
    Unreachable {
        /// The address that failed last (or the target as given).
        target: String,
        /// The last address's error.
        error: io::Error,
    },
    /// See [`exit::RESET`].
    Reset(String),
    /// See [`exit::TIMED_OUT`]: the `--timeout` that ran out.
    TimedOut(Duration),
    /// See [`exit::MISMATCH`].
    Mismatch(String),
}

impl Failure {
    /// The process exit code for this failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Local(_) => exit::LOCAL,
            Failure::Usage(_) => exit::USAGE,
            Failure::Unreachable { .. } => exit::UNREACHABLE,
            Failure::Reset(_) => exit::RESET,
            Failure::TimedOut(_) => exit::TIMED_OUT,
            Failure::Mismatch(_) => exit::MISMATCH,
        }
    }

    /// A failure of the connection while reading or writing: a reset is the server's
    /// doing, anything else is reported as it is.
    pub fn io(doing: &str, error: &io::Error) -> Failure {
        match error.kind() {
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe => {
                Failure::Reset(format!("connection reset by the server while {doing}"))
            }
            _ => Failure::Reset(format!("{doing}: {}", describe(error))),
        }
    }
}

/// An I/O error in words, without the `(os error N)` tail.
pub fn describe(error: &io::Error) -> String {
    match error.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
        io::ErrorKind::TimedOut => "no answer (timed out)".to_owned(),
        io::ErrorKind::HostUnreachable => "host unreachable".to_owned(),
        io::ErrorKind::NetworkUnreachable => "network unreachable".to_owned(),
        io::ErrorKind::AddrNotAvailable => "address not available".to_owned(),
        _ => {
            let text = error.to_string();
            match text.find(" (os error") {
                Some(at) => text[..at].to_lowercase(),
                None => text,
            }
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Local(message) | Failure::Reset(message) | Failure::Mismatch(message) => {
                f.write_str(message)
            }
            Failure::Usage(message) => write!(f, "error: {message}"),
            Failure::Unreachable { target, error } => {
                write!(f, "cannot connect to {target}: {}", describe(error))?;
                if error.kind() == io::ErrorKind::ConnectionRefused {
                    f.write_str(" (is the daemon running there?)")?;
                }
                Ok(())
            }
            Failure::TimedOut(limit) => write!(f, "timed out after {limit:?} (--timeout)"),
        }
    }
}

impl std::error::Error for Failure {}
