//! Where to connect: the address forms of the command line, parsed once into a
//! [`Target`]: TCP (`HOST:PORT`, a port, `tcp://`), `unix:PATH`, `tls://HOST:PORT` and
//! `udp://HOST:PORT`, the forms the daemon's `--listen` takes.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

/// A place to connect to, as named on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A TCP address: `HOST:PORT`, `IP:PORT`, a bare port (loopback) or `tcp://` and
    /// one of those. Every address the name resolves to, tried in order.
    Tcp {
        /// The text as given (without `tcp://`), for messages.
        name: String,
        /// The addresses it resolves to, never empty.
        addrs: Vec<SocketAddr>,
    },
    /// A Unix-domain stream socket.
    Unix {
        /// Its path.
        path: PathBuf,
    },
    /// TLS over TCP (`tls://HOST:PORT`): the server's certificate must name `host`
    /// (checked against `--tls-ca`, unless `--insecure`).
    Tls {
        /// The text as given (without `tls://`), for messages.
        name: String,
        /// The host part, the name the certificate must carry.
        host: String,
        /// The addresses it resolves to, never empty.
        addrs: Vec<SocketAddr>,
    },
    /// UDP (`udp://HOST:PORT`): each line or `--send` is one datagram, each datagram
    /// received is shown on a line of its own; no framing.
    Udp {
        /// The text as given (without `udp://`), for messages.
        name: String,
        /// The first address it resolves to.
        addr: SocketAddr,
    },
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Tcp { name, .. } => f.write_str(name),
            Target::Unix { path } => write!(f, "unix:{}", path.display()),
            Target::Tls { name, .. } => write!(f, "tls://{name}"),
            Target::Udp { name, .. } => write!(f, "udp://{name}"),
        }
    }
}

/// Parses an address as the client's command line takes it.
///
/// # Errors
/// A one-line message: an unknown scheme, a missing path, or a name that does not
/// resolve (see [`framecast::config::parse_socket_addrs`]).
pub fn parse_target(text: &str) -> Result<Target, String> {
    if let Some(path) = text.strip_prefix("unix:") {
        if path.is_empty() {
            return Err(format!(
                "'{text}': unix: needs a path, e.g. unix:/tmp/framecast.sock"
            ));
        }
        return Ok(Target::Unix { path: path.into() });
    }
    let (scheme, rest) = match text.split_once("://") {
        Some((scheme @ ("tcp" | "tls" | "udp"), rest)) => (scheme, rest),
        Some((scheme, _)) => {
            return Err(format!(
                "'{text}': unknown scheme '{scheme}://' (expected HOST:PORT, a port, tcp://, tls://, udp:// or unix:PATH)"
            ))
        }
        None => ("tcp", text),
    };
    let addrs = framecast::config::parse_socket_addrs(rest)?;
    let name = rest.to_owned();
    Ok(match scheme {
        "tls" => {
            let host = rest.rsplit_once(':').map_or("", |(h, _)| h);
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let host = if host.is_empty() { "127.0.0.1" } else { host }.to_owned();
            Target::Tls { name, host, addrs }
        }
        "udp" => Target::Udp {
            addr: addrs
                .first()
                .copied()
                .ok_or_else(|| format!("'{text}' resolves to no address"))?,
            name,
        },
        _ => Target::Tcp { name, addrs },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(text: &str) -> Vec<SocketAddr> {
        match parse_target(text).unwrap() {
            Target::Tcp { addrs, .. } => addrs,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_bare_port_means_loopback() {
        assert_eq!(addrs("7070"), vec!["127.0.0.1:7070".parse().unwrap()]);
    }

    #[test]
    fn takes_ip_port_and_tcp_scheme() {
        assert_eq!(addrs("127.0.0.1:9"), vec!["127.0.0.1:9".parse().unwrap()]);
        assert_eq!(addrs("tcp://[::1]:9"), vec!["[::1]:9".parse().unwrap()]);
        assert_eq!(parse_target("tcp://7070").unwrap().to_string(), "7070");
    }

    #[test]
    fn takes_unix_tls_and_udp() {
        assert_eq!(
            parse_target("unix:/tmp/s").unwrap(),
            Target::Unix {
                path: "/tmp/s".into()
            }
        );
        match parse_target("tls://localhost:9").unwrap() {
            Target::Tls { host, addrs, .. } => {
                assert_eq!(host, "localhost");
                assert!(!addrs.is_empty());
            }
            other => panic!("{other:?}"),
        }
        match parse_target("udp://127.0.0.1:9").unwrap() {
            Target::Udp { addr, .. } => assert_eq!(addr, "127.0.0.1:9".parse().unwrap()),
            other => panic!("{other:?}"),
        }
        assert_eq!(parse_target("udp://9").unwrap().to_string(), "udp://9");
        assert!(parse_target("unix:").is_err());
    }

    #[test]
    fn refuses_unknown_schemes_and_garbage() {
        assert!(parse_target("http://x:1")
            .unwrap_err()
            .contains("unknown scheme"));
        assert!(parse_target("nonsense").is_err());
    }
}
