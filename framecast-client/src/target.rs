//! Where to connect: the address forms of the command line, parsed once into a
//! [`Target`]. Today only TCP; `unix:PATH`, `tls://` and `udp://` are recognised and
//! refused with a message, so the transports issue adds a variant and a connector
//! without touching the parsing of the others.

use std::fmt;
use std::net::SocketAddr;

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
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Tcp { name, .. } => f.write_str(name),
        }
    }
}

/// Address forms that are known but come with a later transport.
const NOT_YET: [(&str, &str); 3] = [
    ("unix:", "Unix-domain socket"),
    ("tls://", "TLS"),
    ("udp://", "UDP"),
];

/// Parses an address as the client's command line takes it.
///
/// # Errors
/// A one-line message: an unknown scheme, a form that is not supported yet, or a name
/// that does not resolve (see [`framecast::config::parse_socket_addrs`]).
pub fn parse_target(text: &str) -> Result<Target, String> {
    for (prefix, what) in NOT_YET {
        if text.starts_with(prefix) {
            return Err(format!(
                "'{text}': {what} addresses ({prefix}...) are not supported yet; use HOST:PORT or a port for TCP"
            ));
        }
    }
    let rest = match text.split_once("://") {
        Some(("tcp", rest)) => rest,
        Some((scheme, _)) => {
            return Err(format!(
                "'{text}': unknown scheme '{scheme}://' (expected HOST:PORT, a port or tcp://HOST:PORT)"
            ))
        }
        None => text,
    };
    let addrs = framecast::config::parse_socket_addrs(rest)?;
    Ok(Target::Tcp {
        name: rest.to_owned(),
        addrs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(text: &str) -> Vec<SocketAddr> {
        match parse_target(text).unwrap() {
            Target::Tcp { addrs, .. } => addrs,
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
    fn refuses_later_transports_by_name() {
        for (text, word) in [
            ("unix:/tmp/s", "Unix"),
            ("tls://example.org:443", "TLS"),
            ("udp://127.0.0.1:9", "UDP"),
        ] {
            let error = parse_target(text).unwrap_err();
            assert!(
                error.contains(word) && error.contains("not supported yet"),
                "{error}"
            );
        }
    }

    #[test]
    fn refuses_unknown_schemes_and_garbage() {
        assert!(parse_target("http://x:1")
            .unwrap_err()
            .contains("unknown scheme"));
        assert!(parse_target("nonsense").is_err());
    }
}
