//! The reactor's configuration: what to listen on, how to frame, and every limit that
//! bounds memory, validated in one place ([`Config::validate`]) with a typed error.
//! Plain data; it knows nothing of sockets, services or the command line.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::access::AccessList;
use crate::codec::{Framing, Oversize, MAX_FRAME_LIMIT};
pub use crate::listen::{parse_listen, parse_socket_addrs, Listen};
pub use crate::units::{
    parse_duration, parse_optional_duration, parse_size, ParseDurationError, ParseSizeError,
};

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
/// Default time a started frame has to complete (30 s): defeats slowloris clients that
/// trickle a byte at a time, yet is generous to any real sender.
pub const DEFAULT_FRAME_TIMEOUT: Duration = Duration::from_secs(30);
/// Default time pending output may make no progress before the connection is closed (30 s).
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Default time a graceful shutdown spends flushing pending output (5 s).
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest TCP keepalive idle time Linux accepts (`MAX_TCP_KEEPIDLE`, 32767 s); the
/// kernel counts it in whole seconds, so `--keepalive` is checked against both when
/// parsed rather than failing on every accepted socket.
pub const MAX_KEEPALIVE: Duration = Duration::from_secs(32767);
/// Default number of UDP replies that may wait for room in the socket (1024, so at
/// most 64 MiB of them at the largest datagram size).
pub const DEFAULT_UDP_QUEUE: usize = 1024;
/// Default time a TLS handshake may take (10 s): a real client needs a few round
/// trips, a client that stalls it holds a connection for no more than this.
pub const DEFAULT_TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default listen backlog: enough for connect bursts, as Redis and nginx use (511) and more.
pub const DEFAULT_BACKLOG: u32 = 1024;

/// Everything the reactor needs to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// What to listen on (TCP, Unix, UDP, TLS, in any mix); at least one.
    pub listen: Vec<Listen>,
    /// How the byte stream is cut into frames.
    pub framing: Framing,
    /// Largest payload a frame may declare or carry, in bytes.
    pub max_frame: usize,
    /// Cap on one connection's pending output, in bytes.
    pub max_output: usize,
    /// Connections served at once; further ones are closed right after accept.
    pub max_connections: usize,
    /// What to do with a frame over `max_frame`.
    pub oversize: Oversize,
    /// Close a connection with no complete frame in or out for this long.
    pub idle_timeout: Option<Duration>,
    /// Close a connection whose started frame does not complete within this time.
    pub frame_timeout: Option<Duration>,
    /// Close a connection whose pending output makes no progress for this long.
    pub write_timeout: Option<Duration>,
    /// On SIGINT/SIGTERM, how long to keep flushing pending output before exiting.
    pub drain_timeout: Duration,
    /// Log a line of counters this often, if set.
    pub stats_interval: Option<Duration>,
    /// Which peers may connect.
    pub access: AccessList,
    /// Set `TCP_NODELAY` on accepted sockets (no Nagle delay for small frames).
    pub nodelay: bool,
    /// Enable TCP keepalive on accepted sockets, probing after this much idle time.
    pub keepalive: Option<Duration>,
    /// Listen backlog: connections the kernel queues before they are accepted.
    pub backlog: u32,
    /// Echo unframed streams with `splice(2)`, without copying them into user space
    /// (Linux; needs `Framing::Raw`, and a service that echoes verbatim, otherwise
    /// ignored).
    pub splice: bool,
    /// Before a policy close (slow consumer, oversize frame, a timeout, the connection
    /// limit, shutdown), queue one last frame saying why, in the connection's framing.
    pub goodbye: bool,
    /// UDP replies that may wait for room in a socket's send buffer, per UDP
    /// listener; past it replies are dropped and counted. At most this many times
    /// 64 KiB.
    pub udp_queue: usize,
    /// The certificate and key for `tls://` listeners (and the CA for client
    /// certificates); needed when there is one.
    pub tls: Option<TlsFiles>,
    /// A TLS handshake must complete within this time after accept.
    pub tls_handshake_timeout: Duration,
    /// Addresses of the admin endpoint (HTTP: `/metrics`, `/stats`, `/healthz`,
    /// `/connz`), served in the same event loop but never by the service; none by
    /// default.
    pub admin: Vec<SocketAddr>,
    /// Bind the listening sockets with `SO_REUSEPORT`, so several reactors (the
    /// workers of [`crate::workers`]) listen on the same address and the kernel
    /// spreads connections over them. Off for a single reactor.
    pub reuse_port: bool,
}

/// PEM files for `tls://` listeners, read when the reactor starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, the server's own certificate first.
    pub cert: PathBuf,
    /// Its private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// With one: clients must present a certificate signed by a CA in this file
    /// (mutual TLS).
    pub client_ca: Option<PathBuf>,
}

/// A configuration that cannot work: which field, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The [`Config`] field at fault (`max_frame`): a command line maps it to its flag.
    pub field: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.problem)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Checks every rule the fields must keep together; the reactor calls it before it
    /// starts, so nothing is silently coerced.
    ///
    /// # Errors
    /// The first [`ConfigError`] found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |field, problem: String| Err(ConfigError { field, problem });
        if self.listen.is_empty() {
            return fail("listen", "no listen address".into());
        }
        if self.max_frame == 0 {
            return fail("max_frame", "must be at least 1 byte".into());
        }
        if self.max_frame > MAX_FRAME_LIMIT {
            return fail("max_frame", format!("at most {MAX_FRAME_LIMIT} bytes"));
        }
        if self.max_connections == 0 {
            return fail("max_connections", "must be at least 1".into());
        }
        if self.max_connections > crate::reactor::MAX_CONNECTIONS_LIMIT {
            return fail(
                "max_connections",
                format!("at most {}", crate::reactor::MAX_CONNECTIONS_LIMIT),
            );
        }
        if self.max_output == 0 {
            return fail("max_output", "must be at least 1 byte".into());
        }
        if let Framing::Fixed(size) = self.framing {
            if size > self.max_frame {
                return fail(
                    "framing",
                    format!(
                        "fixed:{size} is larger than the max frame ({})",
                        self.max_frame
                    ),
                );
            }
        }
        let tls_listener = self.listen.iter().find(|l| matches!(l, Listen::Tls(_)));
        if let Some(listen) = tls_listener {
            if !cfg!(feature = "tls") {
                return fail(
                    "listen",
                    format!("{listen}: this build has no TLS (the `tls` feature is off)"),
                );
            }
            if self.tls.is_none() {
                return fail(
                    "tls",
                    format!("{listen} needs a certificate and a key (--tls-cert, --tls-key)"),
                );
            }
            if self.splice {
                return fail(
                    "splice",
                    format!("{listen}: TLS records must be decrypted, so they cannot be spliced"),
                );
            }
        }
        if self.splice && self.framing != Framing::Raw {
            return fail(
                "splice",
                "needs raw framing (only unframed bytes can pass unseen)".into(),
            );
        }
        Ok(())
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: vec![Listen::Tcp(SocketAddr::from(([127, 0, 0, 1], 7070)))],
            framing: Framing::default(),
            max_frame: DEFAULT_MAX_FRAME,
            max_output: DEFAULT_MAX_OUTPUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            oversize: Oversize::Close,
            idle_timeout: None,
            frame_timeout: Some(DEFAULT_FRAME_TIMEOUT),
            write_timeout: Some(DEFAULT_WRITE_TIMEOUT),
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            stats_interval: None,
            access: AccessList::default(),
            nodelay: true,
            keepalive: None,
            backlog: DEFAULT_BACKLOG,
            splice: false,
            goodbye: false,
            admin: Vec::new(),
            reuse_port: false,
            udp_queue: DEFAULT_UDP_QUEUE,
            tls: None,
            tls_handshake_timeout: DEFAULT_TLS_HANDSHAKE_TIMEOUT,
        }
    }
}

/// Parses a TCP keepalive idle time: whole seconds from `1s` to [`MAX_KEEPALIVE`], or
/// `off` (also `0`) for none.
///
/// # Errors
/// A message naming the problem: not a duration, or one the kernel would refuse.
pub fn parse_keepalive(text: &str) -> Result<Option<Duration>, String> {
    let idle = parse_optional_duration(text).map_err(|e| e.to_string())?;
    match idle {
        Some(d) if d.subsec_nanos() != 0 || d < Duration::from_secs(1) || d > MAX_KEEPALIVE => {
            Err(format!(
                "TCP keepalive takes whole seconds, from 1s to {}s (about 9h), or off",
                MAX_KEEPALIVE.as_secs()
            ))
        }
        _ => Ok(idle),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_field_at_fault() {
        assert_eq!(Config::default().validate(), Ok(()));
        let field = |config: Config| config.validate().map_err(|e| e.field);
        assert_eq!(
            field(Config {
                max_frame: 0,
                ..Config::default()
            }),
            Err("max_frame")
        );
        assert_eq!(
            field(Config {
                max_connections: 0,
                ..Config::default()
            }),
            Err("max_connections")
        );
        assert_eq!(
            field(Config {
                framing: Framing::Fixed(100),
                max_frame: 99,
                ..Config::default()
            }),
            Err("framing")
        );
        assert_eq!(
            field(Config {
                splice: true,
                ..Config::default()
            }),
            Err("splice")
        );
        assert_eq!(
            field(Config {
                splice: true,
                framing: Framing::Raw,
                ..Config::default()
            }),
            Ok(())
        );
        assert_eq!(
            field(Config {
                listen: vec![],
                ..Config::default()
            }),
            Err("listen")
        );
    }

    #[test]
    fn keepalive_is_whole_seconds_the_kernel_accepts_or_off() {
        assert_eq!(parse_keepalive("off"), Ok(None));
        assert_eq!(parse_keepalive("0s"), Ok(None));
        assert_eq!(parse_keepalive("42s"), Ok(Some(Duration::from_secs(42))));
        assert_eq!(parse_keepalive("9h"), Ok(Some(Duration::from_secs(32400))));
        assert_eq!(parse_keepalive("32767s"), Ok(Some(MAX_KEEPALIVE)));
        for bad in ["500ms", "1500ms", "32768s", "10h", "soon"] {
            assert!(parse_keepalive(bad).is_err(), "{bad:?} should not parse");
        }
    }
}
