//! The integrity format of a bench payload, sans-IO: writing a header and checksum
//! into a payload, and verifying a received one. It knows nothing of framing (the
//! payload travels inside whatever frame the codec builds) nor of sockets or clocks
//! (the timestamp is a number handed in).
//!
//! ```text
//!  binary (every framing but line), little-endian, 32-byte header:
//!  +----------+--------+--------+----------+----------+------------------ ... --+
//!  | checksum |  conn  |  len   |   seq    |  stamp   |  filler (printable)      |
//!  |   u64    |  u32   |  u32   |   u64    |   u64    |                          |
//!  +----------+--------+--------+----------+----------+------------------ ... --+
//!  0          8        12       16         24         32                       len
//!  checksum covers bytes 8..len: everything but itself
//!
//!  text (line framing, which forbids '\n'), lowercase hex, 64-byte header:
//!  | checksum 16 | conn 8 | len 8 | seq 16 | stamp 16 | filler |
//! ```
//!
//! `conn` is the sending connection's id, `seq` its frame counter (from 0), `stamp` the
//! send time in nanoseconds since the run's epoch (the *intended* send time in an open
//! loop), `len` the payload's own length, so a frame cut short or merged is caught even
//! when the checksum happens to survive. The filler is a window into a fixed printable
//! pattern, shifted by `seq` so consecutive frames differ; writing it is one copy.

use std::fmt;

/// Header size of the binary format, in bytes: the smallest binary payload.
pub const BINARY_HEADER: usize = 32;
/// Header size of the text format, in bytes: the smallest text payload.
pub const TEXT_HEADER: usize = 64;
/// How far the filler window moves with `seq`, in bytes: frames of consecutive
/// sequence numbers carry different filler bytes, so a server that swaps payload
/// bytes between frames is caught by the checksum.
const PATTERN_SHIFTS: usize = 509;

/// How the header is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Little-endian integers: compact and cheap, for any framing that carries bytes.
    Binary,
    /// Lowercase hex digits: for `line` framing, whose payloads cannot contain `\n`.
    Text,
}

impl Format {
    /// The format a framing can carry.
    pub fn for_framing(framing: crate::Framing) -> Format {
        match framing {
            crate::Framing::Line => Format::Text,
            _ => Format::Binary,
        }
    }

    /// Header length in bytes: the smallest payload of this format.
    pub fn header_len(self) -> usize {
        match self {
            Format::Binary => BINARY_HEADER,
            Format::Text => TEXT_HEADER,
        }
    }

    /// Bytes of the checksum field at the front; the checksum covers the rest.
    fn checksum_len(self) -> usize {
        match self {
            Format::Binary => 8,
            Format::Text => 16,
        }
    }
}

/// The fields a payload carries besides its filler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Id of the connection that sent the frame.
    pub conn: u32,
    /// The payload's length, header included.
    pub len: u32,
    /// The sender's frame counter, from 0.
    pub seq: u64,
    /// Send time, nanoseconds since the run's epoch.
    pub stamp: u64,
}

/// Why a received payload is not what was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntegrityError {
    /// Shorter than the header.
    TooShort {
        /// The payload's length.
        len: usize,
    },
    /// A header field is not hex digits (text format).
    Malformed,
    /// The checksum does not match the bytes.
    Checksum {
        /// The checksum the payload carries.
        carried: u64,
        /// The checksum of the bytes received.
        computed: u64,
    },
    /// The length field disagrees with the payload's length.
    Length {
        /// The length the header declares.
        declared: u32,
        /// The payload's length.
        actual: usize,
    },
}

impl fmt::Display for IntegrityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            IntegrityError::TooShort { len } => {
                write!(f, "payload of {len} bytes is shorter than the header")
            }
            IntegrityError::Malformed => f.write_str("payload header is not hex digits"),
            IntegrityError::Checksum { carried, computed } => write!(
                f,
                "checksum mismatch: payload carries {carried:016x}, bytes sum to {computed:016x}"
            ),
            IntegrityError::Length { declared, actual } => {
                write!(f, "payload declares {declared} bytes but has {actual}")
            }
        }
    }
}

impl std::error::Error for IntegrityError {}

/// A 64-bit checksum: Fletcher-style sums over 64-bit words in four independent lanes
/// (so it runs at memory speed), mixed with the length at the end. Any change of a
/// single byte, and any swap of two differing 32-byte blocks, changes the result.
pub fn checksum(bytes: &[u8]) -> u64 {
    let mut sum = [0u64; 4];
    let mut weighted = [0u64; 4];
    let mut chunks = bytes.chunks_exact(32);
    for chunk in &mut chunks {
        for (lane, word) in chunk.chunks_exact(8).enumerate() {
            let mut w = [0u8; 8];
            w.copy_from_slice(word);
            sum[lane] = sum[lane].wrapping_add(u64::from_le_bytes(w));
            weighted[lane] = weighted[lane].wrapping_add(sum[lane]);
        }
    }
    let mut tail = [0u8; 32];
    let rest = chunks.remainder();
    tail[..rest.len()].copy_from_slice(rest);
    let mut h = bytes.len() as u64 ^ 0x9e37_79b9_7f4a_7c15;
    for lane in 0..4 {
        let mut w = [0u8; 8];
        w.copy_from_slice(&tail[8 * lane..8 * lane + 8]);
        let s = sum[lane].wrapping_add(u64::from_le_bytes(w));
        h = mix(h ^ s);
        h = mix(h ^ weighted[lane].wrapping_add(s));
    }
    h
}

/// The splitmix64 finaliser: spreads every input bit over the output.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Fixed printable filler bytes that payloads are cut from.
#[derive(Debug, Clone)]
pub struct Pattern {
    /// Printable ASCII (`!`..`~`), so any framing, `line` included, can carry it.
    bytes: Vec<u8>,
}

impl Pattern {
    /// A pattern long enough for payloads of up to `max_len` bytes.
    pub fn new(max_len: usize) -> Pattern {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let bytes = (0..max_len + PATTERN_SHIFTS)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                b'!' + (state % 94) as u8
            })
            .collect();
        Pattern { bytes }
    }

    /// The template of payload `seq` of `len` bytes: filler everywhere, the header
    /// bytes to be overwritten by [`write`]. `len` must be at most the pattern's
    /// `max_len`; a longer one is cut to it.
    pub fn template(&self, seq: u64, len: usize) -> &[u8] {
        let start = (seq % PATTERN_SHIFTS as u64) as usize;
        let end = (start + len).min(self.bytes.len());
        &self.bytes[start..end]
    }
}

/// Writes `header` and the checksum into the front of `payload`, whose filler is
/// already in place (a [`Pattern::template`] copied by the encoder). The payload's
/// length goes into the header whatever `header.len` says.
///
/// # Panics
/// If `payload` is shorter than the format's header: the configuration's validation
/// rules that out.
pub fn write(format: Format, payload: &mut [u8], header: &Header) {
    let len = payload.len() as u32;
    match format {
        Format::Binary => {
            payload[8..12].copy_from_slice(&header.conn.to_le_bytes());
            payload[12..16].copy_from_slice(&len.to_le_bytes());
            payload[16..24].copy_from_slice(&header.seq.to_le_bytes());
            payload[24..32].copy_from_slice(&header.stamp.to_le_bytes());
            let sum = checksum(&payload[8..]);
            payload[..8].copy_from_slice(&sum.to_le_bytes());
        }
        Format::Text => {
            put_hex(&mut payload[16..24], header.conn.into());
            put_hex(&mut payload[24..32], len.into());
            put_hex(&mut payload[32..48], header.seq);
            put_hex(&mut payload[48..64], header.stamp);
            let sum = checksum(&payload[16..]);
            put_hex(&mut payload[..16], sum);
        }
    }
}

/// Checks a received payload and returns its header.
///
/// # Errors
/// [`IntegrityError`] when the payload is too short, malformed, fails its checksum, or
/// declares another length than it has. Which connection or sequence number it should
/// carry is the caller's business.
pub fn verify(format: Format, payload: &[u8]) -> Result<Header, IntegrityError> {
    if payload.len() < format.header_len() {
        return Err(IntegrityError::TooShort { len: payload.len() });
    }
    let split = format.checksum_len();
    let computed = checksum(&payload[split..]);
    let (carried, header) = match format {
        Format::Binary => (
            le_u64(&payload[..8]),
            Header {
                conn: le_u32(&payload[8..12]),
                len: le_u32(&payload[12..16]),
                seq: le_u64(&payload[16..24]),
                stamp: le_u64(&payload[24..32]),
            },
        ),
        Format::Text => {
            let field = |range: std::ops::Range<usize>| {
                get_hex(&payload[range]).ok_or(IntegrityError::Malformed)
            };
            (
                field(0..16)?,
                Header {
                    conn: field(16..24)? as u32,
                    len: field(24..32)? as u32,
                    seq: field(32..48)?,
                    stamp: field(48..64)?,
                },
            )
        }
    };
    if carried != computed {
        return Err(IntegrityError::Checksum { carried, computed });
    }
    if header.len as usize != payload.len() {
        return Err(IntegrityError::Length {
            declared: header.len,
            actual: payload.len(),
        });
    }
    Ok(header)
}

fn le_u32(bytes: &[u8]) -> u32 {
    let mut raw = [0u8; 4];
    raw.copy_from_slice(bytes);
    u32::from_le_bytes(raw)
}

fn le_u64(bytes: &[u8]) -> u64 {
    let mut raw = [0u8; 8];
    raw.copy_from_slice(bytes);
    u64::from_le_bytes(raw)
}

/// Writes `value` as `dst.len()` lowercase hex digits (the low bits if too few).
fn put_hex(dst: &mut [u8], mut value: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for byte in dst.iter_mut().rev() {
        *byte = DIGITS[(value & 0xf) as usize];
        value >>= 4;
    }
}

/// Reads lowercase hex digits; `None` if any byte is not one.
fn get_hex(src: &[u8]) -> Option<u64> {
    src.iter().try_fold(0u64, |acc, &b| {
        let digit = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            _ => return None,
        };
        Some(acc << 4 | u64::from(digit))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(format: Format, len: usize, header: &Header) -> Vec<u8> {
        let pattern = Pattern::new(4096);
        let mut bytes = pattern.template(header.seq, len).to_vec();
        write(format, &mut bytes, header);
        bytes
    }

    const HEADER: Header = Header {
        conn: 7,
        len: 0,
        seq: 123_456_789,
        stamp: 987_654_321,
    };

    #[test]
    fn written_payload_verifies_and_returns_its_header() {
        for format in [Format::Binary, Format::Text] {
            for len in [32, 33, 64, 100, 512, 4096] {
                if len < format.header_len() {
                    continue;
                }
                let bytes = payload(format, len, &HEADER);
                assert_eq!(bytes.len(), len);
                let header = verify(format, &bytes).unwrap();
                assert_eq!(
                    header,
                    Header {
                        len: len as u32,
                        ..HEADER
                    }
                );
            }
        }
    }

    #[test]
    fn text_payload_has_no_newline() {
        let bytes = payload(
            Format::Text,
            300,
            &Header {
                stamp: u64::MAX,
                ..HEADER
            },
        );
        assert!(!bytes.contains(&b'\n'));
        assert!(bytes.iter().all(u8::is_ascii_graphic));
    }

    #[test]
    fn every_single_byte_flip_is_detected() {
        for format in [Format::Binary, Format::Text] {
            let good = payload(format, 200, &HEADER);
            for i in 0..good.len() {
                for flip in [0x01, 0x80, 0xff] {
                    let mut bad = good.clone();
                    bad[i] ^= flip;
                    assert!(
                        verify(format, &bad).is_err(),
                        "{format:?}: flip {flip:#x} at byte {i} went unnoticed"
                    );
                }
            }
        }
    }

    #[test]
    fn truncated_or_extended_payload_is_detected() {
        let good = payload(Format::Binary, 512, &HEADER);
        assert!(verify(Format::Binary, &good[..511]).is_err());
        let mut longer = good.clone();
        longer.push(b'x');
        assert!(verify(Format::Binary, &longer).is_err());
        assert_eq!(
            verify(Format::Binary, &good[..10]),
            Err(IntegrityError::TooShort { len: 10 })
        );
    }

    #[test]
    fn swapped_blocks_change_the_checksum() {
        let mut bytes: Vec<u8> = (0..128u8).collect();
        let before = checksum(&bytes);
        let (a, b) = bytes.split_at_mut(64);
        a[..32].swap_with_slice(&mut b[..32]);
        assert_ne!(checksum(&bytes), before);
    }

    #[test]
    fn consecutive_frames_carry_different_filler() {
        let pattern = Pattern::new(512);
        assert_ne!(pattern.template(0, 512), pattern.template(1, 512));
        assert_eq!(pattern.template(3, 512).len(), 512);
    }

    #[test]
    fn text_header_rejects_non_hex() {
        let mut bytes = payload(Format::Text, 100, &HEADER);
        bytes[20] = b'Z';
        assert_eq!(verify(Format::Text, &bytes), Err(IntegrityError::Malformed));
    }

    #[test]
    fn hex_round_trips() {
        let mut buf = [0u8; 16];
        for value in [0, 1, 0xdead_beef, u64::MAX] {
            put_hex(&mut buf, value);
            assert_eq!(get_hex(&buf), Some(value));
        }
    }
}
