//! What a benchmark run is asked to do: target, framing, scenario, load shape, payload
//! sizes, timing. Plain data, the parser for `--size MIN..MAX`, and the checks that
//! make a configuration runnable; it knows nothing of sockets or of the command line.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use framecast::codec::Framing;
use framecast::units::parse_size;

use super::payload::Format;

/// Default target: where `framecast` listens by default.
pub const DEFAULT_TARGET: &str = framecast::config::DEFAULT_LISTEN;
/// Default payload size in bytes: the standard 512-byte frames.
pub const DEFAULT_SIZE: usize = 512;
/// Largest payload the bench sends, in bytes: what the integrity header's 32-bit length
/// field can state (and a `u32be` frame can carry). Frames above the server's own
/// limit (framecast's `--max-frame`, 8 MiB by default) are the server's to refuse.
pub const MAX_SIZE: usize = u32::MAX as usize;
/// Most source addresses `--source` may list or span.
pub const MAX_SOURCES: usize = 4096;
/// Most connections one run may open; far above what loopback tests need, low enough
/// that a typo cannot exhaust the file descriptor table.
pub const MAX_CONNECTIONS: usize = 100_000;
/// The longest room name `framecast --rooms` takes.
pub const MAX_ROOM_NAME: usize = 255;
/// Most broadcast publishers: every receiving connection tracks each one's sequence,
/// and the flow-control board holds one slot per publisher and thread.
pub const MAX_PUBLISHERS: usize = 1024;
/// Most sequence windows a broadcast run may keep (connections x publishers, about 50
/// bytes each): memory stays in the low hundreds of megabytes whatever the flags.
pub const MAX_TRACKED: usize = 1 << 22;
/// Most frames one connection may keep in flight.
pub const MAX_DEPTH: usize = 1 << 20;
/// Longest run, warmup included: a bench is bounded in time even when mistyped.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

/// Which traffic pattern to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// Every connection sends frames and checks that each comes back to it, in order.
    Echo {
        /// Connections to open.
        connections: usize,
    },
    /// Publishers send; every other connection (the subscribers and the other
    /// publishers) receives and checks each frame and its publish→receive latency.
    Broadcast {
        /// Connections that send.
        publishers: usize,
        /// Connections that only receive.
        subscribers: usize,
    },
}

impl Scenario {
    /// Connections the scenario opens in total.
    pub fn connections(self) -> usize {
        match self {
            Scenario::Echo { connections } => connections,
            Scenario::Broadcast {
                publishers,
                subscribers,
            } => publishers.saturating_add(subscribers),
        }
    }

    /// Connections that send frames.
    pub fn senders(self) -> usize {
        match self {
            Scenario::Echo { connections } => connections,
            Scenario::Broadcast { publishers, .. } => publishers,
        }
    }

    /// The scenario's name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Echo { .. } => "echo",
            Scenario::Broadcast { .. } => "broadcast",
        }
    }
}

/// How fast frames are sent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Load {
    /// Closed loop: echo connections keep `depth` frames in flight (1 is strict
    /// ping-pong); a broadcast publisher stays at most `depth` frames ahead of its
    /// slowest receiver.
    Closed {
        /// Frames in flight per sending connection.
        depth: usize,
    },
    /// Open loop: `rate` frames per second in total, spread evenly over the sending
    /// connections and sent on schedule whatever the replies do. Latency counts from
    /// the earlier of each frame's intended and actual send times (coordinated
    /// omission corrected, and nothing hidden when a frame leaves a little early).
    Open {
        /// Frames per second, all senders together.
        rate: f64,
    },
}

/// Payload sizes: one size, or sizes drawn uniformly from an inclusive range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizeRange {
    /// Smallest payload, in bytes.
    pub min: usize,
    /// Largest payload, in bytes (equal to `min` for a single size).
    pub max: usize,
}

impl SizeRange {
    /// A single size.
    pub fn fixed(size: usize) -> SizeRange {
        SizeRange {
            min: size,
            max: size,
        }
    }

    /// True when every payload has the same size.
    pub fn is_fixed(&self) -> bool {
        self.min == self.max
    }
}

impl fmt::Display for SizeRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_fixed() {
            write!(f, "{}", self.min)
        } else {
            write!(f, "{}..{}", self.min, self.max)
        }
    }
}

/// A `--size` that is neither a size nor a range of sizes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseSizeRangeError {
    /// The text given.
    text: String,
    /// Two sizes, the first larger than the second: say so rather than show the syntax.
    reversed: bool,
}

impl fmt::Display for ParseSizeRangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.reversed {
            write!(
                f,
                "invalid size range '{}': MIN is larger than MAX",
                self.text
            )
        } else {
            write!(
                f,
                "invalid size '{}' (expected BYTES or MIN..MAX, e.g. 512, 4KiB or 64..1024)",
                self.text
            )
        }
    }
}

impl std::error::Error for ParseSizeRangeError {}

impl FromStr for SizeRange {
    type Err = ParseSizeRangeError;

    /// Parses `512`, `4KiB` or `64..1024` (inclusive; units as for `--max-frame`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let error = |reversed| ParseSizeRangeError {
            text: s.to_owned(),
            reversed,
        };
        let bad = || error(false);
        match s.split_once("..") {
            None => parse_size(s).map(SizeRange::fixed).map_err(|_| bad()),
            Some((min, max)) => {
                let min = parse_size(min).map_err(|_| bad())?;
                let max = parse_size(max).map_err(|_| bad())?;
                if min > max {
                    return Err(error(true));
                }
                Ok(SizeRange { min, max })
            }
        }
    }
}

/// How the bench reaches the server.
#[derive(Debug, Clone)]
pub enum Transport {
    /// TCP to `BenchConfig::target`.
    Tcp,
    /// A Unix-domain stream socket at this path (`target` is unused).
    Unix(std::path::PathBuf),
    /// TLS over TCP to `target`, verifying the server as `name` with `config` (or not
    /// at all with `--insecure`); each handshake is done while connecting, before the
    /// clock starts.
    Tls {
        /// The client's session settings.
        config: std::sync::Arc<rustls::ClientConfig>,
        /// The name the server's certificate must carry.
        name: String,
    },
    /// UDP datagrams to `target`, one message each (see `udp`).
    Udp,
}

/// Everything one benchmark run needs.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// The server to load (its IP address; unused for a Unix socket).
    pub target: SocketAddr,
    /// How it is reached.
    pub transport: Transport,
    /// How frames are delimited on the wire; `raw` sends fixed-size messages unframed.
    pub framing: Framing,
    /// Echo or broadcast, with the connection counts.
    pub scenario: Scenario,
    /// Closed loop (depth) or open loop (rate).
    pub load: Load,
    /// Payload sizes.
    pub size: SizeRange,
    /// Measured time, after the warmup.
    pub duration: Duration,
    /// Time under load before measuring starts (connections are already up).
    pub warmup: Duration,
    /// New connections per second while connecting; `None` opens them all at once.
    pub connect_rate: Option<f64>,
    /// Event-loop threads; each owns a share of the connections.
    pub threads: usize,
    /// A process (the server) whose CPU time is reported per frame.
    pub server_pid: Option<u32>,
    /// Seed of the random payload sizes, so runs are reproducible.
    pub seed: u64,
    /// Local addresses the connections are bound to, round-robin; empty: the
    /// kernel's choice. Each address has its own ephemeral ports towards the target.
    pub sources: Vec<IpAddr>,
    /// A shortfall against the open loop's rate counts as a failed run.
    pub strict: bool,
    /// Broadcast against `framecast --rooms`: every connection's first frame, the name
    /// of the room it joins (sent before the run, never counted or checked).
    pub room: Option<Vec<u8>>,
}

impl BenchConfig {
    /// A closed-loop echo run of 50 connections at depth 1 with 512-byte payloads
    /// against `target`, for 10 s after 1 s of warmup.
    pub fn new(target: SocketAddr) -> BenchConfig {
        BenchConfig {
            target,
            transport: Transport::Tcp,
            framing: Framing::default(),
            scenario: Scenario::Echo { connections: 50 },
            load: Load::Closed { depth: 1 },
            size: SizeRange::fixed(DEFAULT_SIZE),
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(1),
            connect_rate: None,
            threads: 1,
            server_pid: None,
            seed: 1,
            sources: Vec::new(),
            strict: false,
            room: None,
        }
    }

    /// The target as the command line names it: `HOST:PORT` for TCP (as before),
    /// `unix:PATH`, `tls://HOST:PORT`, `udp://HOST:PORT`.
    pub fn target_name(&self) -> String {
        match &self.transport {
            Transport::Tcp => self.target.to_string(),
            Transport::Unix(path) => format!("unix:{}", path.display()),
            Transport::Tls { .. } => format!("tls://{}", self.target),
            Transport::Udp => format!("udp://{}", self.target),
        }
    }

    /// The payload format the framing calls for.
    pub fn format(&self) -> Format {
        Format::for_framing(self.framing)
    }

    /// Threads actually used: never more than there are connections.
    pub fn effective_threads(&self) -> usize {
        self.threads.clamp(1, self.scenario.connections().max(1))
    }

    /// Checks that the configuration can run.
    ///
    /// # Errors
    /// [`ConfigError`] naming the first problem, in the command line's words.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let header = self.format().header_len();
        if self.size.min < header {
            return Err(ConfigError::SizeBelowHeader {
                size: self.size.min,
                header,
            });
        }
        let largest = match self.framing {
            Framing::Length { width, .. } if width < 8 => MAX_SIZE.min((1usize << (8 * width)) - 1),
            _ => MAX_SIZE,
        };
        if self.size.max > largest {
            return Err(ConfigError::SizeAboveMax {
                size: self.size.max,
                max: largest,
                framing: self.framing,
            });
        }
        match self.framing {
            Framing::Fixed(n) if self.size != SizeRange::fixed(n) => {
                return Err(ConfigError::FixedSizeMismatch {
                    size: self.size,
                    fixed: n,
                });
            }
            Framing::Raw if !self.size.is_fixed() => {
                return Err(ConfigError::RawNeedsOneSize { size: self.size });
            }
            _ => {}
        }
        match self.scenario {
            Scenario::Echo { connections } => {
                check_count("--connections", connections, MAX_CONNECTIONS)?
            }
            Scenario::Broadcast {
                publishers,
                subscribers,
            } => {
                check_count("--publishers", publishers, MAX_PUBLISHERS)?;
                if publishers.saturating_add(subscribers) > MAX_CONNECTIONS {
                    return Err(ConfigError::OutOfRange {
                        flag: "--subscribers",
                        value: subscribers.to_string(),
                        why: format!("publishers + subscribers must be at most {MAX_CONNECTIONS}"),
                    });
                }
                let tracked = publishers
                    .saturating_add(subscribers)
                    .saturating_mul(publishers);
                if tracked > MAX_TRACKED {
                    return Err(ConfigError::OutOfRange {
                        flag: "--publishers",
                        value: publishers.to_string(),
                        why: format!(
                            "every connection tracks every publisher: publishers x (publishers \
                             + subscribers) must be at most {MAX_TRACKED}"
                        ),
                    });
                }
                if publishers == 1 && subscribers == 0 {
                    return Err(ConfigError::OutOfRange {
                        flag: "--subscribers",
                        value: "0".into(),
                        why: "one publisher needs at least one subscriber to deliver to".into(),
                    });
                }
            }
        }
        if let Some(room) = &self.room {
            let why = if !matches!(self.scenario, Scenario::Broadcast { .. }) {
                Some("a room is for the broadcast scenario".to_owned())
            } else if room.is_empty() || room.len() > MAX_ROOM_NAME {
                Some(format!("a room name is 1 to {MAX_ROOM_NAME} bytes"))
            } else {
                None
            };
            if let Some(why) = why {
                return Err(ConfigError::OutOfRange {
                    flag: "--room",
                    value: String::from_utf8_lossy(room).into_owned(),
                    why,
                });
            }
        }
        match self.load {
            Load::Closed { depth } => check_count("--depth", depth, MAX_DEPTH)?,
            Load::Open { rate } if !(rate.is_finite() && rate > 0.0) => {
                return Err(ConfigError::OutOfRange {
                    flag: "--rate",
                    value: rate.to_string(),
                    why: "must be a positive number of frames per second".into(),
                });
            }
            Load::Open { .. } => {}
        }
        if let Some(rate) = self.connect_rate {
            if !(rate.is_finite() && rate > 0.0) {
                return Err(ConfigError::OutOfRange {
                    flag: "--connect-rate",
                    value: rate.to_string(),
                    why: "must be a positive number of connections per second".into(),
                });
            }
            // Connecting is part of the run, and is bounded like the rest of it.
            let pacing = self.scenario.connections().saturating_sub(1) as f64 / rate;
            if pacing > MAX_DURATION.as_secs_f64() {
                return Err(ConfigError::OutOfRange {
                    flag: "--connect-rate",
                    value: rate.to_string(),
                    why: format!(
                        "opening {} connections at that rate takes more than {} s",
                        self.scenario.connections(),
                        MAX_DURATION.as_secs()
                    ),
                });
            }
        }
        check_count("--threads", self.threads, 1024)?;
        if !self.sources.is_empty() && matches!(self.transport, Transport::Unix(_)) {
            return Err(ConfigError::OutOfRange {
                flag: "--source",
                value: self.target_name(),
                why: "a Unix socket has no source address".into(),
            });
        }
        if let Some(wrong) = self
            .sources
            .iter()
            .find(|ip| ip.is_ipv4() != self.target.is_ipv4())
        {
            return Err(ConfigError::OutOfRange {
                flag: "--source",
                value: wrong.to_string(),
                why: format!("the target {} is of the other address family", self.target),
            });
        }
        if self.warmup > MAX_DURATION {
            return Err(ConfigError::OutOfRange {
                flag: "--warmup",
                value: self.warmup.as_secs_f64().to_string(),
                why: format!("must be at most {} s", MAX_DURATION.as_secs()),
            });
        }
        // Checked: both come from the command line, and their sum can overflow.
        let too_long = match self.duration.checked_add(self.warmup) {
            Some(total) => total > MAX_DURATION,
            None => true,
        };
        if self.duration.is_zero() || too_long {
            return Err(ConfigError::OutOfRange {
                flag: "--duration",
                value: self.duration.as_secs_f64().to_string(),
                why: format!(
                    "must be more than 0 and, with the warmup, at most {} s",
                    MAX_DURATION.as_secs()
                ),
            });
        }
        Ok(())
    }
}

/// Parses `--source`: addresses separated by commas, each a single address or an IPv4
/// range `FIRST-LAST` (`127.0.0.2-127.0.0.9`, inclusive).
///
/// # Errors
/// A message quoting the part that is not an address or a range, or a list longer
/// than [`MAX_SOURCES`].
pub fn parse_sources(text: &str) -> Result<Vec<IpAddr>, String> {
    let mut sources = Vec::new();
    for part in text.split(',').map(str::trim) {
        let bad = || format!("'{part}' is not an address or a range such as 127.0.0.2-127.0.0.9");
        match part.split_once('-') {
            None => sources.push(part.parse::<IpAddr>().map_err(|_| bad())?),
            Some((first, last)) => {
                let first: Ipv4Addr = first.trim().parse().map_err(|_| bad())?;
                let last: Ipv4Addr = last.trim().parse().map_err(|_| bad())?;
                let (a, b) = (u32::from(first), u32::from(last));
                if a > b {
                    return Err(format!("range '{part}' runs backwards"));
                }
                if (b - a) as usize >= MAX_SOURCES {
                    return Err(format!(
                        "range '{part}' spans more than {MAX_SOURCES} addresses"
                    ));
                }
                sources.extend((a..=b).map(|n| IpAddr::V4(Ipv4Addr::from(n))));
            }
        }
        if sources.len() > MAX_SOURCES {
            return Err(format!("more than {MAX_SOURCES} source addresses"));
        }
    }
    Ok(sources)
}

/// Checks `1 <= value <= max` for a count flag.
fn check_count(flag: &'static str, value: usize, max: usize) -> Result<(), ConfigError> {
    if value == 0 || value > max {
        return Err(ConfigError::OutOfRange {
            flag,
            value: value.to_string(),
            why: format!("must be between 1 and {max}"),
        });
    }
    Ok(())
}

/// A configuration that cannot run.
#[derive(Debug, Clone, PartialEq)]
pub enum ConfigError {
    /// Payloads too small for the integrity header.
    SizeBelowHeader {
        /// The smallest payload asked for.
        size: usize,
        /// The header's size in this framing's payload format.
        header: usize,
    },
    /// Payloads too large for the framing's length header (or the bench's maximum).
    SizeAboveMax {
        /// The largest payload asked for.
        size: usize,
        /// The largest payload possible.
        max: usize,
        /// The framing.
        framing: Framing,
    },
    /// `fixed:N` framing with payloads of another size.
    FixedSizeMismatch {
        /// The sizes asked for.
        size: SizeRange,
        /// The framing's frame size.
        fixed: usize,
    },
    /// `raw` framing with a range of sizes: messages are cut by size on the way back.
    RawNeedsOneSize {
        /// The sizes asked for.
        size: SizeRange,
    },
    /// A count or rate outside its range.
    OutOfRange {
        /// The flag, as on the command line.
        flag: &'static str,
        /// The value given.
        value: String,
        /// What it must be.
        why: String,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::SizeBelowHeader { size, header } => write!(
                f,
                "invalid value '{size}' for '--size': a payload must hold the {header}-byte \
                 integrity header (checksum, connection id, length, sequence number, timestamp); \
                 use --size {header} or more"
            ),
            ConfigError::SizeAboveMax { size, max, framing } => write!(
                f,
                "invalid value '{size}' for '--size': {framing} frames carry at most {max} bytes"
            ),
            ConfigError::FixedSizeMismatch { size, fixed } => write!(
                f,
                "invalid value '{size}' for '--size': framing fixed:{fixed} needs --size {fixed}"
            ),
            ConfigError::RawNeedsOneSize { size } => write!(
                f,
                "invalid value '{size}' for '--size': raw framing sends fixed-size messages, \
                 counted by bytes; give one size"
            ),
            ConfigError::OutOfRange { flag, value, why } => {
                write!(f, "invalid value '{value}' for '{flag}': {why}")
            }
        }
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> BenchConfig {
        BenchConfig::new(([127, 0, 0, 1], 7070).into())
    }

    #[test]
    fn parses_single_sizes_and_inclusive_ranges() {
        assert_eq!("512".parse(), Ok(SizeRange::fixed(512)));
        assert_eq!("4KiB".parse(), Ok(SizeRange::fixed(4096)));
        assert_eq!("64..1024".parse(), Ok(SizeRange { min: 64, max: 1024 }));
        assert_eq!(
            "1KiB..1MiB".parse(),
            Ok(SizeRange {
                min: 1024,
                max: 1 << 20
            })
        );
        assert_eq!("100..100".parse(), Ok(SizeRange::fixed(100)));
    }

    #[test]
    fn rejects_bad_sizes_and_reversed_ranges() {
        for text in [
            "", "..", "10..", "..10", "1024..64", "a..b", "1.5KiB", "64...128", "-1",
        ] {
            assert!(
                text.parse::<SizeRange>().is_err(),
                "{text:?} should not parse"
            );
        }
        let error = "1024..64".parse::<SizeRange>().unwrap_err().to_string();
        assert!(error.contains("MIN is larger than MAX"), "{error}");
    }

    #[test]
    fn size_ranges_display_as_parsed() {
        assert_eq!(SizeRange::fixed(512).to_string(), "512");
        assert_eq!(SizeRange { min: 64, max: 128 }.to_string(), "64..128");
    }

    #[test]
    fn default_configuration_is_valid() {
        assert_eq!(config().validate(), Ok(()));
    }

    #[test]
    fn rejects_payloads_that_cannot_hold_the_integrity_header() {
        let mut c = config();
        c.size = "16..512".parse().unwrap();
        let error = c.validate().unwrap_err();
        assert_eq!(
            error,
            ConfigError::SizeBelowHeader {
                size: 16,
                header: 32
            }
        );
        assert!(
            error.to_string().contains("use --size 32 or more"),
            "{error}"
        );
        // Line framing carries the header as text, which takes more room.
        c.framing = Framing::Line;
        c.size = SizeRange::fixed(40);
        assert!(matches!(
            c.validate(),
            Err(ConfigError::SizeBelowHeader { header: 64, .. })
        ));
    }

    #[test]
    fn rejects_payloads_too_long_for_the_length_header() {
        let mut c = config();
        c.framing = "u8".parse().unwrap();
        c.size = SizeRange::fixed(256);
        assert!(matches!(
            c.validate(),
            Err(ConfigError::SizeAboveMax { max: 255, .. })
        ));
        c.size = SizeRange::fixed(255);
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn fixed_and_raw_framings_need_one_matching_size() {
        let mut c = config();
        c.framing = "fixed:64".parse().unwrap();
        c.size = SizeRange::fixed(512);
        assert!(matches!(
            c.validate(),
            Err(ConfigError::FixedSizeMismatch { fixed: 64, .. })
        ));
        c.size = SizeRange::fixed(64);
        assert_eq!(c.validate(), Ok(()));
        c.framing = Framing::Raw;
        c.size = "64..128".parse().unwrap();
        assert!(matches!(
            c.validate(),
            Err(ConfigError::RawNeedsOneSize { .. })
        ));
    }

    #[test]
    fn rejects_zero_counts_and_rates() {
        let mut c = config();
        c.scenario = Scenario::Echo { connections: 0 };
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("--connections"));
        let mut c = config();
        c.load = Load::Closed { depth: 0 };
        assert!(c.validate().unwrap_err().to_string().contains("--depth"));
        let mut c = config();
        c.load = Load::Open { rate: 0.0 };
        assert!(c.validate().unwrap_err().to_string().contains("--rate"));
        let mut c = config();
        c.duration = Duration::ZERO;
        assert!(c.validate().unwrap_err().to_string().contains("--duration"));
        let mut c = config();
        c.scenario = Scenario::Broadcast {
            publishers: 1,
            subscribers: 0,
        };
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("--subscribers"));
    }

    #[test]
    fn durations_too_long_to_add_are_a_usage_error_naming_the_flag() {
        let huge = Duration::from_secs_f64(1e19);
        let mut c = config();
        c.duration = huge;
        c.warmup = huge;
        assert!(c.validate().unwrap_err().to_string().contains("--warmup"));
        c.warmup = MAX_DURATION;
        assert!(c.validate().unwrap_err().to_string().contains("--duration"));
        c.duration = Duration::MAX;
        assert!(c.validate().unwrap_err().to_string().contains("--duration"));
        c.duration = Duration::from_secs(1);
        c.warmup = MAX_DURATION - Duration::from_secs(1);
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn a_connect_rate_too_slow_to_finish_is_a_usage_error() {
        let mut c = config();
        c.connect_rate = Some(1e-20);
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("--connect-rate"));
        // One connection needs no pacing at all.
        c.scenario = Scenario::Echo { connections: 1 };
        assert_eq!(c.validate(), Ok(()));
        c.scenario = Scenario::Echo { connections: 50 };
        c.connect_rate = Some(0.01);
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn publishers_are_capped_and_so_is_what_receivers_track() {
        let mut c = config();
        c.scenario = Scenario::Broadcast {
            publishers: 100_000,
            subscribers: 0,
        };
        let error = c.validate().unwrap_err().to_string();
        assert!(
            error.contains("--publishers") && error.contains("1024"),
            "{error}"
        );
        c.scenario = Scenario::Broadcast {
            publishers: MAX_PUBLISHERS,
            subscribers: 1000,
        };
        assert_eq!(c.validate(), Ok(()));
        c.scenario = Scenario::Broadcast {
            publishers: MAX_PUBLISHERS,
            subscribers: 10_000,
        };
        let error = c.validate().unwrap_err().to_string();
        assert!(error.contains("--publishers"), "{error}");
    }

    #[test]
    fn sources_are_lists_and_ranges_of_addresses() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(parse_sources("127.0.0.2"), Ok(vec![ip("127.0.0.2")]));
        assert_eq!(
            parse_sources("127.0.0.2-127.0.0.4,::1"),
            Ok(vec![
                ip("127.0.0.2"),
                ip("127.0.0.3"),
                ip("127.0.0.4"),
                ip("::1")
            ])
        );
        for bad in [
            "",
            "127.0.0.9-127.0.0.2",
            "localhost",
            "10.0.0.0-10.1.0.0",
            "::1-::2",
        ] {
            assert!(parse_sources(bad).is_err(), "{bad:?}");
        }
        let mut c = config();
        c.sources = vec![ip("::1")];
        assert!(c.validate().unwrap_err().to_string().contains("--source"));
    }

    #[test]
    fn sizes_go_up_to_what_the_framing_carries() {
        let mut c = config();
        c.size = SizeRange::fixed(64 << 20);
        assert_eq!(c.validate(), Ok(()), "u32be carries far more than 8 MiB");
        c.size = SizeRange::fixed(u32::MAX as usize + 1);
        assert!(matches!(
            c.validate(),
            Err(ConfigError::SizeAboveMax { max: MAX_SIZE, .. })
        ));
    }

    #[test]
    fn threads_never_exceed_connections() {
        let mut c = config();
        c.threads = 8;
        c.scenario = Scenario::Echo { connections: 3 };
        assert_eq!(c.effective_threads(), 3);
    }
}
