//! Access control: which peer addresses may connect. Pure address arithmetic over
//! CIDR blocks, IPv4 and IPv6; it knows nothing of sockets.
//!
//! Rules: a peer matching any `deny` block is refused; otherwise, if there are `allow`
//! blocks, it must match one of them. Deny wins. An IPv4 peer seen through a dual-stack
//! IPv6 socket (`::ffff:a.b.c.d`) is matched as the IPv4 address it is.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// An address block such as `10.0.0.0/8`, `::1/128`, or a bare address (one host).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// The block's address, with the host bits cleared.
    network: IpAddr,
    /// Prefix length in bits: up to 32 for IPv4, 128 for IPv6.
    prefix: u8,
}

impl Cidr {
    /// True if `addr` lies within the block.
    pub fn contains(&self, addr: IpAddr) -> bool {
        match (self.network, canonical(addr)) {
            (IpAddr::V4(net), IpAddr::V4(a)) => {
                masked(u32::from(a).into(), self.prefix, 32) == u32::from(net).into()
            }
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                masked(u128::from(a), self.prefix, 128) == u128::from(net)
            }
            _ => false,
        }
    }
}

/// `::ffff:a.b.c.d` as `a.b.c.d`; every other address as it is.
fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    }
}

/// `bits` with all but the top `prefix` of `width` bits cleared.
fn masked(bits: u128, prefix: u8, width: u32) -> u128 {
    let host_bits = width - u32::from(prefix);
    if host_bits >= 128 {
        0
    } else {
        bits >> host_bits << host_bits
    }
}

/// Text that is not an address block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseCidrError(String);

impl fmt::Display for ParseCidrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid address block '{}' (expected e.g. 10.0.0.0/8, ::1/128 or 192.168.1.7)",
            self.0
        )
    }
}

impl std::error::Error for ParseCidrError {}

impl FromStr for Cidr {
    type Err = ParseCidrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ParseCidrError(s.to_owned());
        let (addr, prefix) = match s.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (s, None),
        };
        let addr = canonical(addr.parse::<IpAddr>().map_err(|_| bad())?);
        let width: u8 = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|&p| p <= width)
                .ok_or_else(bad)?,
            None => width,
        };
        let network = match addr {
            IpAddr::V4(a) => IpAddr::V4((masked(u32::from(a).into(), prefix, 32) as u32).into()),
            IpAddr::V6(a) => IpAddr::V6(masked(u128::from(a), prefix, 128).into()),
        };
        Ok(Cidr { network, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// The allow and deny lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessList {
    /// If not empty, only peers in one of these blocks may connect.
    pub allow: Vec<Cidr>,
    /// Peers in any of these blocks are refused, whatever `allow` says.
    pub deny: Vec<Cidr>,
}

impl AccessList {
    /// True if a peer at `addr` may connect.
    pub fn permits(&self, addr: IpAddr) -> bool {
        !self.deny.iter().any(|c| c.contains(addr))
            && (self.allow.is_empty() || self.allow.iter().any(|c| c.contains(addr)))
    }

    /// True when there are no rules (every peer is permitted).
    pub fn is_open(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn cidr(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    #[test]
    fn matches_ipv4_blocks() {
        let net = cidr("10.1.0.0/16");
        assert!(net.contains(ip("10.1.255.3")));
        assert!(!net.contains(ip("10.2.0.1")));
        assert!(cidr("0.0.0.0/0").contains(ip("203.0.113.9")));
        assert!(cidr("192.168.1.7").contains(ip("192.168.1.7")));
        assert!(!cidr("192.168.1.7").contains(ip("192.168.1.8")));
    }

    #[test]
    fn matches_ipv6_blocks_and_mapped_ipv4() {
        assert!(cidr("2001:db8::/32").contains(ip("2001:db8:ffff::1")));
        assert!(!cidr("2001:db8::/32").contains(ip("2001:db9::1")));
        assert!(cidr("::1/128").contains(ip("::1")));
        assert!(cidr("::/0").contains(ip("fe80::1")));
        // A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d.
        assert!(cidr("127.0.0.0/8").contains(ip("::ffff:127.0.0.1")));
        assert!(!cidr("::1/128").contains(ip("127.0.0.1")));
    }

    #[test]
    fn clears_host_bits_and_prints_the_block() {
        assert_eq!(cidr("10.1.2.3/8").to_string(), "10.0.0.0/8");
        assert_eq!(cidr("2001:db8::7/64").to_string(), "2001:db8::/64");
        assert_eq!(cidr("::1").to_string(), "::1/128");
    }

    #[test]
    fn rejects_malformed_blocks() {
        for s in [
            "",
            "10.0.0.0/33",
            "::/129",
            "10.0.0/8",
            "10.0.0.0/",
            "/8",
            "host/8",
            "1.2.3.4/-1",
        ] {
            assert!(s.parse::<Cidr>().is_err(), "{s:?} should not parse");
        }
    }

    #[test]
    fn deny_wins_over_allow() {
        let rules = AccessList {
            allow: vec![cidr("127.0.0.0/8")],
            deny: vec![cidr("127.0.0.2")],
        };
        assert!(rules.permits(ip("127.0.0.1")));
        assert!(!rules.permits(ip("127.0.0.2")));
        assert!(!rules.permits(ip("10.0.0.1")), "not in the allow list");
        let deny_only = AccessList {
            allow: vec![],
            deny: vec![cidr("10.0.0.0/8")],
        };
        assert!(deny_only.permits(ip("127.0.0.1")));
        assert!(!deny_only.permits(ip("10.9.9.9")));
        assert!(AccessList::default().permits(ip("198.51.100.1")));
    }
}
