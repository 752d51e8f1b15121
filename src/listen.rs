//! Listen addresses: what a reactor may listen on, in the forms the command line takes
//! them (`tcp://HOST:PORT`, the default scheme, so `127.0.0.1:7070`, `[::1]:7070`,
//! `localhost:7070` and a bare port work as before; `unix:PATH`; `udp://HOST:PORT`;
//! `tls://HOST:PORT`). Plain data and parsing; it knows nothing of sockets.
//!
//! ```
//! use framecast::Listen;
//!
//! let tcp: Listen = "127.0.0.1:7070".parse()?;
//! assert_eq!(tcp, Listen::Tcp("127.0.0.1:7070".parse()?));
//! assert_eq!(tcp.to_string(), "tcp://127.0.0.1:7070");
//! let unix: Listen = "unix:/run/framecast.sock".parse()?;
//! assert_eq!(unix, Listen::Unix("/run/framecast.sock".into()));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::str::FromStr;

/// One listening socket a reactor opens.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Listen {
    /// A TCP listener: framed streams.
    Tcp(SocketAddr),
    /// A Unix-domain stream socket at this path: framed streams, as TCP. A stale
    /// socket file (nothing listening) is replaced; anything else at the path is
    /// refused. The file is removed when the reactor is dropped.
    Unix(PathBuf),
    /// A UDP socket: every datagram goes back to its sender (RFC 862); framing does
    /// not apply, a datagram already has its boundaries.
    Udp(SocketAddr),
    /// A TCP listener speaking TLS (needs `Config::tls` and the `tls` feature): framed
    /// streams inside the TLS session.
    Tls(SocketAddr),
}

impl Listen {
    /// The scheme naming the kind: `tcp`, `unix`, `udp` or `tls`.
    pub fn kind(&self) -> &'static str {
        match self {
            Listen::Tcp(_) => "tcp",
            Listen::Unix(_) => "unix",
            Listen::Udp(_) => "udp",
            Listen::Tls(_) => "tls",
        }
    }

    /// The IP address and port, for every kind but Unix.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        match self {
            Listen::Tcp(a) | Listen::Udp(a) | Listen::Tls(a) => Some(*a),
            Listen::Unix(_) => None,
        }
    }

    /// True for the kinds whose clients are connections with a byte stream (TCP,
    /// Unix, TLS), which the service serves; false for UDP.
    pub fn is_stream(&self) -> bool {
        !matches!(self, Listen::Udp(_))
    }
}

impl From<SocketAddr> for Listen {
    fn from(addr: SocketAddr) -> Self {
        Listen::Tcp(addr)
    }
}

impl fmt::Display for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Listen::Unix(path) => write!(f, "unix:{}", path.display()),
            other => match other.socket_addr() {
                Some(addr) => write!(f, "{}://{addr}", other.kind()),
                None => Ok(()),
            },
        }
    }
}

/// A listen address that does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseListenError(String);

impl fmt::Display for ParseListenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ParseListenError {}

/// The forms, for messages.
const FORMS: &str =
    "expected [tcp://]HOST:PORT, a bare PORT, unix:PATH, udp://HOST:PORT or tls://HOST:PORT";

/// The scheme of `text` and the rest, `tcp` when none is given.
fn split_scheme(text: &str) -> Result<(&'static str, &str), String> {
    if let Some(path) = text.strip_prefix("unix:") {
        // `unix:///run/x.sock` is the URL spelling of `unix:/run/x.sock`.
        let path = path
            .strip_prefix("//")
            .filter(|p| p.starts_with('/'))
            .unwrap_or(path);
        if path.is_empty() {
            return Err(format!(
                "'{text}': unix: needs a path, e.g. unix:/run/framecast.sock"
            ));
        }
        return Ok(("unix", path));
    }
    match text.split_once("://") {
        None => Ok(("tcp", text)),
        Some(("tcp", rest)) => Ok(("tcp", rest)),
        Some(("udp", rest)) => Ok(("udp", rest)),
        Some(("tls", rest)) => Ok(("tls", rest)),
        Some((scheme, _)) => Err(format!("'{text}': unknown scheme '{scheme}://' ({FORMS})")),
    }
}

/// The listener of `kind` on `addr`.
fn with_kind(kind: &str, addr: SocketAddr) -> Listen {
    match kind {
        "udp" => Listen::Udp(addr),
        "tls" => Listen::Tls(addr),
        _ => Listen::Tcp(addr),
    }
}

impl FromStr for Listen {
    type Err = ParseListenError;

    /// Parses one literal address: an IP and port with an optional scheme, or
    /// `unix:PATH`. Names and bare ports, which stand for several addresses or need a
    /// lookup, are [`parse_listen`]'s.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (kind, rest) = split_scheme(text).map_err(ParseListenError)?;
        if kind == "unix" {
            return Ok(Listen::Unix(rest.into()));
        }
        rest.parse::<SocketAddr>()
            .map(|addr| with_kind(kind, addr))
            .map_err(|_| {
                ParseListenError(format!("'{text}' is not IP:PORT with a scheme ({FORMS})"))
            })
    }
}

/// Parses a listen address as the command line takes it: any form of [`Listen`], where
/// `HOST:PORT` stands for every address the name resolves to (`localhost:7070` is
/// usually 127.0.0.1 and ::1) and a bare `PORT` is loopback, like the default.
///
/// # Errors
/// A message naming the problem: an unknown scheme, not an address, a name that does
/// not resolve.
pub fn parse_listen(text: &str) -> Result<Vec<Listen>, String> {
    let (kind, rest) = split_scheme(text)?;
    if kind == "unix" {
        return Ok(vec![Listen::Unix(rest.into())]);
    }
    let addrs = parse_socket_addrs(rest).map_err(|e| {
        if rest == text {
            e
        } else {
            format!("{e} (in '{text}')")
        }
    })?;
    Ok(addrs.into_iter().map(|a| with_kind(kind, a)).collect())
}

/// Parses an IP socket address: `IP:PORT` (`[::1]:7070` for IPv6); `HOST:PORT`, every
/// address the name resolves to; or a bare `PORT`, on loopback.
///
/// # Errors
/// A message naming the problem: not an address, a name that does not resolve.
pub fn parse_socket_addrs(text: &str) -> Result<Vec<SocketAddr>, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(vec![addr]);
    }
    if let Ok(port) = text.parse::<u16>() {
        return Ok(vec![(Ipv4Addr::LOCALHOST, port).into()]);
    }
    if !text.contains(':') {
        return Err(format!(
            "'{text}' is not HOST:PORT, IP:PORT or a port number"
        ));
    }
    let mut addrs: Vec<SocketAddr> = Vec::new();
    for addr in text
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve '{text}': {e}"))?
    {
        if !addrs.contains(&addr) {
            addrs.push(addr);
        }
    }
    if addrs.is_empty() {
        return Err(format!("'{text}' resolves to no address"));
    }
    Ok(addrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> Listen {
        let mut all = parse_listen(text).unwrap();
        assert_eq!(all.len(), 1, "{text}");
        all.remove(0)
    }

    #[test]
    fn tcp_is_the_default_scheme_and_old_forms_keep_working() {
        let v4: SocketAddr = "127.0.0.1:7070".parse().unwrap();
        assert_eq!(one("127.0.0.1:7070"), Listen::Tcp(v4));
        assert_eq!(one("tcp://127.0.0.1:7070"), Listen::Tcp(v4));
        assert_eq!(one("7070"), Listen::Tcp(v4), "a bare port is loopback");
        assert_eq!(one("tcp://7070"), Listen::Tcp(v4));
        assert_eq!(one("[::1]:0"), Listen::Tcp("[::1]:0".parse().unwrap()));
        let local = parse_listen("localhost:7070").unwrap();
        assert!(!local.is_empty());
        assert!(local
            .iter()
            .all(|l| matches!(l, Listen::Tcp(a) if a.ip().is_loopback() && a.port() == 7070)));
    }

    #[test]
    fn every_scheme_parses_and_prints_back() {
        for text in [
            "tcp://127.0.0.1:1",
            "udp://127.0.0.1:2",
            "tls://[::1]:3",
            "unix:/tmp/framecast.sock",
            "unix:relative.sock",
        ] {
            assert_eq!(one(text).to_string(), text);
            assert_eq!(text.parse::<Listen>().unwrap().to_string(), text);
        }
        assert_eq!(one("udp://9").to_string(), "udp://127.0.0.1:9");
        assert_eq!(
            one("unix:///run/x.sock"),
            Listen::Unix("/run/x.sock".into())
        );
        assert!(one("udp://127.0.0.1:2").socket_addr().is_some());
        assert!(!one("udp://127.0.0.1:2").is_stream());
        assert!(one("unix:/x").socket_addr().is_none());
    }

    #[test]
    fn refuses_unknown_schemes_missing_paths_and_garbage() {
        for bad in [
            "",
            "localhost",
            "127.0.0.1:99999",
            "no-such-host.invalid:1",
            "http://127.0.0.1:1",
            "unix:",
            "udp://",
            "tls://nowhere",
        ] {
            assert!(parse_listen(bad).is_err(), "{bad:?}");
        }
        assert!(parse_listen("http://x:1")
            .unwrap_err()
            .contains("unknown scheme"));
        assert!(
            "localhost:1".parse::<Listen>().is_err(),
            "FromStr does no lookups"
        );
    }

    #[test]
    fn a_socket_addr_is_a_tcp_listener() {
        let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
        assert_eq!(Listen::from(addr), Listen::Tcp(addr));
    }
}
