//! Access control: which peer addresses may connect. Pure address arithmetic over
//! CIDR blocks, IPv4 and IPv6; it knows nothing of sockets.
//!
//! Rules: a peer matching any `deny` block is refused; otherwise, if there are `allow`
//! blocks, it must match one of them. Deny wins.
//!
//! Dual stack: a peer is matched as the address family it really is, whatever socket
//! it came through. An IPv4 peer seen through a dual-stack IPv6 socket
//! (`::ffff:a.b.c.d`) is matched as the IPv4 address it is, and a block written in
//! IPv4-mapped form (`::ffff:127.0.0.0/104`) is the IPv4 block it stands for
//! (`127.0.0.0/8`). So every rule means the same on an IPv4 listener, an IPv6-only one
//! and a dual-stack one, and an IPv6 block such as `::/0` never matches IPv4 peers.
//! The deprecated IPv4-compatible form (`::127.0.0.1`, RFC 4291 2.5.5.1) is refused:
//! no peer has such an address, so a rule written that way would match nothing.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;

/// Bits in front of the IPv4 address in an IPv4-mapped IPv6 address (`::ffff:0:0/96`).
const MAPPED_PREFIX: u8 = 96;

/// An address block such as `10.0.0.0/8`, `::1/128`, or a bare address (one host).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// The block's address, with the host bits cleared; never IPv4-mapped (a mapped
    /// block is stored as the IPv4 block it stands for).
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

/// True for a deprecated IPv4-compatible address, `::a.b.c.d`: the top 96 bits zero,
/// other than the unspecified `::` and the loopback `::1`.
fn is_ipv4_compatible(v6: Ipv6Addr) -> bool {
    let bits = u128::from(v6);
    bits >> 32 == 0 && bits > 1
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

/// Text that is not an address block, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseCidrError {
    /// Nothing at all.
    Empty,
    /// The part before any `/` is not an IPv4 or IPv6 address.
    Address {
        /// The whole text given.
        text: String,
    },
    /// The prefix length is not plain decimal digits (`+8`, `0008`, ` 8`, empty).
    Prefix {
        /// The whole text given.
        text: String,
    },
    /// The prefix length is longer than the address.
    PrefixRange {
        /// The whole text given.
        text: String,
        /// The address's width in bits: 32 or 128.
        max: u8,
    },
    /// An IPv4-mapped address with a prefix shorter than its `::ffff:0:0/96` part.
    MappedPrefix {
        /// The whole text given.
        text: String,
        /// The prefix given.
        prefix: u8,
    },
    /// A deprecated IPv4-compatible address (`::127.0.0.1`).
    Compatible {
        /// The whole text given.
        text: String,
        /// The IPv4 address it embeds.
        ipv4: std::net::Ipv4Addr,
    },
}

/// How an address block is written, for error messages.
const EXAMPLES: &str = "e.g. 10.0.0.0/8, ::1/128, ::ffff:10.0.0.0/104 or 192.168.1.7";

impl fmt::Display for ParseCidrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseCidrError::Empty => write!(f, "empty address block (expected {EXAMPLES})"),
            ParseCidrError::Address { text } => write!(
                f,
                "invalid address block '{text}': not an IPv4 or IPv6 address (expected {EXAMPLES})"
            ),
            ParseCidrError::Prefix { text } => write!(
                f,
                "invalid address block '{text}': the prefix length after '/' must be a \
                 decimal number of bits, without sign or leading zeros"
            ),
            ParseCidrError::PrefixRange { text, max } => {
                let family = if *max == 32 { "IPv4" } else { "IPv6" };
                write!(
                    f,
                    "invalid address block '{text}': an {family} prefix length is 0 to {max}"
                )
            }
            ParseCidrError::MappedPrefix { text, prefix } => {
                write!(
                    f,
                    "invalid address block '{text}': an IPv4-mapped address (::ffff:a.b.c.d) \
                     takes a prefix length of {MAPPED_PREFIX} to 128"
                )?;
                if *prefix <= 32 {
                    let (addr, _) = text.split_once('/').unwrap_or((text, ""));
                    write!(
                        f,
                        "; for the IPv4 /{prefix}, write {addr}/{}",
                        prefix + MAPPED_PREFIX
                    )?;
                }
                Ok(())
            }
            ParseCidrError::Compatible { text, ipv4 } => write!(
                f,
                "invalid address block '{text}': a deprecated IPv4-compatible address \
                 (RFC 4291), which no peer has; write {ipv4} (or ::ffff:{ipv4}) for the IPv4 peer"
            ),
        }
    }
}

impl std::error::Error for ParseCidrError {}

impl FromStr for Cidr {
    type Err = ParseCidrError;

    /// Parses `ADDR` (one host) or `ADDR/PREFIX`. Host bits set in `ADDR` are cleared
    /// (`10.1.2.3/8` is `10.0.0.0/8`), as routers and firewalls take it.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = || s.to_owned();
        if s.is_empty() {
            return Err(ParseCidrError::Empty);
        }
        let (addr, prefix) = match s.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (s, None),
        };
        let addr = addr
            .parse::<IpAddr>()
            .map_err(|_| ParseCidrError::Address { text: text() })?;
        let width: u8 = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => parse_prefix(p, width).map_err(|e| match e {
                PrefixError::Syntax => ParseCidrError::Prefix { text: text() },
                PrefixError::Range => ParseCidrError::PrefixRange {
                    text: text(),
                    max: width,
                },
            })?,
            None => width,
        };
        let (addr, prefix) = match addr {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) if prefix >= MAPPED_PREFIX => (IpAddr::V4(v4), prefix - MAPPED_PREFIX),
                Some(_) => {
                    return Err(ParseCidrError::MappedPrefix {
                        text: text(),
                        prefix,
                    })
                }
                None if is_ipv4_compatible(v6) => {
                    return Err(ParseCidrError::Compatible {
                        text: text(),
                        ipv4: std::net::Ipv4Addr::from((u128::from(v6) as u32).to_be_bytes()),
                    })
                }
                None => (addr, prefix),
            },
            v4 => (v4, prefix),
        };
        let network = match addr {
            IpAddr::V4(a) => IpAddr::V4((masked(u32::from(a).into(), prefix, 32) as u32).into()),
            IpAddr::V6(a) => IpAddr::V6(masked(u128::from(a), prefix, 128).into()),
        };
        Ok(Cidr { network, prefix })
    }
}

/// Why a prefix length did not parse.
enum PrefixError {
    /// Not plain decimal digits.
    Syntax,
    /// Digits, but more bits than the address has.
    Range,
}

/// A prefix length of at most `width` bits: decimal digits only, no sign, no leading
/// zero (`u8::from_str` alone takes `+8` and `0008`, which no other tool writes; a
/// leading zero may mean octal to some readers).
fn parse_prefix(text: &str, width: u8) -> Result<u8, PrefixError> {
    let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    if !digits || (text.len() > 1 && text.starts_with('0')) {
        return Err(PrefixError::Syntax);
    }
    // Long runs of digits overflow u8: they are out of range, not malformed.
    match text.parse::<u8>() {
        Ok(p) if p <= width => Ok(p),
        _ => Err(PrefixError::Range),
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
    fn mapped_blocks_are_the_ipv4_blocks_they_stand_for() {
        assert_eq!(cidr("::ffff:0:0/96"), cidr("0.0.0.0/0"));
        assert_eq!(cidr("::ffff:127.0.0.0/104"), cidr("127.0.0.0/8"));
        assert_eq!(cidr("::ffff:127.0.0.0/104").to_string(), "127.0.0.0/8");
        assert_eq!(cidr("::FFFF:10.1.2.3/120").to_string(), "10.1.2.0/24");
        assert_eq!(cidr("::ffff:192.0.2.7"), cidr("192.0.2.7/32"));
        assert_eq!(cidr("::ffff:c000:207/128"), cidr("192.0.2.7"));
    }

    #[test]
    fn mapped_blocks_match_ipv4_peers_on_either_kind_of_socket() {
        let loopback = cidr("::ffff:127.0.0.0/104");
        assert!(loopback.contains(ip("127.0.0.1")), "IPv4 socket");
        assert!(
            loopback.contains(ip("::ffff:127.0.0.1")),
            "dual-stack socket"
        );
        assert!(!loopback.contains(ip("10.0.0.1")));
        assert!(!loopback.contains(ip("::1")), "IPv6 loopback is not IPv4's");
        let all_v4 = cidr("::ffff:0:0/96");
        assert!(all_v4.contains(ip("203.0.113.9")));
        assert!(all_v4.contains(ip("::ffff:203.0.113.9")));
        assert!(!all_v4.contains(ip("2001:db8::1")));
    }

    #[test]
    fn ipv6_blocks_never_match_ipv4_peers() {
        // ::/0 covers ::ffff:0:0/96 as bits, but an IPv4 peer is matched as IPv4
        // whatever socket it came through, so the rule means the same everywhere.
        for block in ["::/0", "::/64", "::/80", "64:ff9b::/96"] {
            assert!(!cidr(block).contains(ip("127.0.0.1")), "{block}");
            assert!(!cidr(block).contains(ip("::ffff:127.0.0.1")), "{block}");
        }
        assert!(cidr("::/0").contains(ip("::1")));
    }

    #[test]
    fn refuses_mapped_addresses_with_an_ipv4_length_prefix() {
        let error = "::ffff:10.0.0.0/8".parse::<Cidr>().unwrap_err();
        assert_eq!(
            error,
            ParseCidrError::MappedPrefix {
                text: "::ffff:10.0.0.0/8".into(),
                prefix: 8
            }
        );
        assert!(
            error.to_string().contains("write ::ffff:10.0.0.0/104"),
            "{error}"
        );
        assert!(matches!(
            "::ffff:0:0/95".parse::<Cidr>(),
            Err(ParseCidrError::MappedPrefix { prefix: 95, .. })
        ));
    }

    #[test]
    fn refuses_deprecated_ipv4_compatible_addresses() {
        for text in ["::127.0.0.1", "::127.0.0.0/104", "::7f00:1", "::10.0.0.0/8"] {
            let error = text.parse::<Cidr>().unwrap_err();
            assert!(
                matches!(error, ParseCidrError::Compatible { .. }),
                "{text}: {error:?}"
            );
        }
        let error = "::127.0.0.1".parse::<Cidr>().unwrap_err().to_string();
        assert!(
            error.contains("IPv4-compatible") && error.contains("write 127.0.0.1"),
            "{error}"
        );
        // The unspecified and loopback addresses share the ::/96 block and are fine.
        assert_eq!(cidr("::1").to_string(), "::1/128");
        assert_eq!(cidr("::/0").to_string(), "::/0");
        assert_eq!(cidr("::/96").to_string(), "::/96");
    }

    #[test]
    fn refuses_prefixes_that_are_not_plain_decimal() {
        for text in [
            "10.0.0.0/+8",
            "10.0.0.0/0008",
            "10.0.0.0/08",
            "10.0.0.0/",
            "10.0.0.0/ 8",
            "10.0.0.0/8 ",
            "10.0.0.0/-0",
            "10.0.0.0/0x8",
            "10.0.0.0/8/8",
            "::1/+128",
            "::1/0128",
        ] {
            assert_eq!(
                text.parse::<Cidr>(),
                Err(ParseCidrError::Prefix { text: text.into() }),
                "{text}"
            );
        }
        let error = "10.0.0.0/+8".parse::<Cidr>().unwrap_err().to_string();
        assert!(error.contains("without sign or leading zeros"), "{error}");
        assert_eq!(cidr("10.0.0.0/0"), cidr("0.0.0.0/0"), "a lone 0 is fine");
    }

    #[test]
    fn refuses_prefixes_longer_than_the_address() {
        for (text, max) in [
            ("10.0.0.0/33", 32),
            ("10.0.0.0/256", 32),
            ("10.0.0.0/99999999999999999999", 32),
            ("::/129", 128),
            ("::ffff:10.0.0.0/129", 128),
        ] {
            assert_eq!(
                text.parse::<Cidr>(),
                Err(ParseCidrError::PrefixRange {
                    text: text.into(),
                    max
                }),
                "{text}"
            );
        }
        let error = "10.0.0.0/33".parse::<Cidr>().unwrap_err().to_string();
        assert!(error.contains("IPv4 prefix length is 0 to 32"), "{error}");
        assert_eq!(cidr("10.0.0.0/32").to_string(), "10.0.0.0/32");
        assert_eq!(cidr("::/128").to_string(), "::/128");
    }

    #[test]
    fn refuses_empty_text_and_non_addresses_naming_the_problem() {
        assert_eq!("".parse::<Cidr>(), Err(ParseCidrError::Empty));
        for text in [
            "/8",
            "host/8",
            "10.0.0/8",
            "010.0.0.1",
            " 10.0.0.1",
            "fe80::1%eth0",
        ] {
            assert_eq!(
                text.parse::<Cidr>(),
                Err(ParseCidrError::Address { text: text.into() }),
                "{text}"
            );
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
