//! The command line, parsed by clap into [`Args`]; values are checked here, so a bad
//! flag ends the run with clap's exit code 2 before anything connects.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use framecast::codec::Framing;
use framecast::config::DEFAULT_LISTEN;
use framecast::units::{parse_duration, parse_size};

use crate::target::{parse_target, Target};

const EXIT_CODES: &str = "\
Exit codes:
  0  done: input ended (or --count reached) and the replies were shown
  1  local problem: a file, stdin or stdout failed; a line or file cannot be framed
  2  bad flag or argument
  3  cannot connect: refused, unreachable, no answer
  4  reset by the server; closed by it mid-frame or before --count; framing broken
  5  --timeout ran out
  6  --send-file: the echo differs from the file, or never came back";

/// Talk to a framed port: each line typed is sent as one frame, each frame received is
/// printed on a line of its own.
#[derive(Debug, Parser)]
#[command(name = "framecast-client", version, after_help = EXIT_CODES)]
pub struct Args {
    /// Where the daemon listens: HOST:PORT, IP:PORT, a port on loopback, tcp://HOST:PORT,
    /// unix:PATH, tls://HOST:PORT (with --tls-ca or --insecure) or udp://HOST:PORT
    /// (each line one datagram, no framing)
    #[arg(value_name = "ADDR", default_value = DEFAULT_LISTEN, value_parser = parse_target)]
    pub addr: Target,

    /// How frames are cut: u8, u16be, u16le, u32be, u32le, u64be, u64le, line,
    /// fixed:N or raw (raw shows each read as it comes)
    #[arg(long, value_name = "NAME", default_value = "u32be", value_parser = parse_framing)]
    pub framing: Framing,

    /// Print frames as hex bytes instead of escaped text
    #[arg(long)]
    pub hex: bool,

    /// Send TEXT as one frame (repeatable; stdin is not read)
    #[arg(long = "send", value_name = "TEXT")]
    pub send: Vec<String>,

    /// Send the file as one frame, after any --send, with a progress bar on stderr,
    /// and check that the echo matches it byte for byte (stdin is not read)
    #[arg(long, value_name = "PATH")]
    pub send_file: Option<PathBuf>,

    /// With --send-file: do not expect an echo (e.g. against a broadcast daemon)
    #[arg(long, requires = "send_file")]
    pub no_verify: bool,

    /// Exit after N frames received (the end of input then does not end the run)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,

    /// After the end of input, how long to wait for replies still due, e.g. 1s or
    /// 500ms (restarted by each arrival while the echo of --send-file comes back)
    #[arg(long, value_name = "D", default_value = "1s", value_parser = parse_duration)]
    pub wait: Duration,

    /// Bound the whole run, connecting included, e.g. 10s
    #[arg(long, value_name = "D", value_parser = parse_duration)]
    pub timeout: Option<Duration>,

    /// Largest frame shown whole; a larger one is reported by size (and still checked
    /// against --send-file)
    // Written as the daemon's `--help` writes its default (a test holds them equal).
    #[arg(long, value_name = "SIZE", default_value = "8MiB", value_parser = parse_size)]
    pub max_frame: usize,

    /// tls:// targets: trust the CA certificates in this PEM file
    #[arg(long, value_name = "PEM", conflicts_with = "insecure")]
    pub tls_ca: Option<PathBuf>,

    /// tls:// targets: do not verify the server's certificate (testing only)
    #[arg(long)]
    pub insecure: bool,
}

impl Args {
    /// True when the frames to send come from flags, not from stdin.
    pub fn is_scripted(&self) -> bool {
        !self.send.is_empty() || self.send_file.is_some()
    }
}

fn parse_framing(text: &str) -> Result<Framing, String> {
    text.parse()
        .map_err(|e: framecast::codec::ParseFramingError| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use framecast::config::DEFAULT_MAX_FRAME;

    #[test]
    fn the_command_line_is_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn defaults_match_the_daemon() {
        let args = Args::try_parse_from(["framecast-client"]).unwrap();
        assert_eq!(args.addr.to_string(), DEFAULT_LISTEN);
        assert_eq!(args.framing, Framing::default());
        assert_eq!(args.wait, Duration::from_secs(1));
        assert_eq!(args.max_frame, DEFAULT_MAX_FRAME);
        assert!(!args.is_scripted());
    }

    #[test]
    fn bad_values_are_usage_errors() {
        for argv in [
            &["framecast-client", "--framing", "u24"][..],
            &["framecast-client", "--wait", "5"],
            &["framecast-client", "--count", "0"],
            &["framecast-client", "unix:"],
            &["framecast-client", "http://x:1"],
            &["framecast-client", "--no-verify"],
        ] {
            let error = Args::try_parse_from(argv).unwrap_err();
            assert_eq!(error.exit_code(), 2, "{argv:?}");
        }
    }
}
