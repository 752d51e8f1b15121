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
//!  the checksum covers everything after it: the fields' values and the filler
//!
//!  text (line framing, which forbids '\n'), lowercase hex, 64-byte header:
//!  | checksum 16 | conn 8 | len 8 | seq 16 | stamp 16 | filler |
//! ```
//!
//! `conn` is the sending connection's id, `seq` its frame counter (from 0), `stamp` the
//! send time in nanoseconds since the run's epoch (in an open loop the earlier of the
//! intended and the actual send time), `len` the payload's own length, so a frame cut short or merged is caught even
//! when the checksum happens to survive. The filler is a window into a fixed printable
//! pattern, shifted by `seq` so consecutive frames differ; writing it is one copy.
//!
//! The checksum covers every byte after it: it combines a hash of the header fields'
//! values with a checksum of the filler. Since the filler of frame `seq` is known in advance,
//! [`Pattern`] keeps the filler checksums of a fixed payload size in a table, and
//! verification compares the filler with what was sent (`memcmp`, at memory speed)
//! instead of summing it again: the same verdict as recomputing the checksum over the
//! bytes, for a fraction of the CPU, which a load generator needs to stay cheaper per
//! frame than the server it measures.

use std::fmt;
use std::sync::OnceLock;

/// Header size of the binary format, in bytes: the smallest binary payload.
pub const BINARY_HEADER: usize = 32;
/// Header size of the text format, in bytes: the smallest text payload.
pub const TEXT_HEADER: usize = 64;
/// How far the filler window moves with `seq`, in bytes: frames of consecutive
/// sequence numbers carry different filler bytes, so a server that swaps payload
/// bytes between frames is caught. A power of two, so the shift is a mask, not a
/// division, on the per-frame path.
const PATTERN_SHIFTS: usize = 512;
/// Largest single payload size whose filler checksums are all computed when the
/// pattern is made: 512 shifts of 16 KiB is 8 MiB to sum, a few milliseconds before
/// the clock starts, and the per-frame lookup is then a plain load, which matters for
/// small frames. Larger sizes (up to megabytes, where summing 512 fillers would take
/// seconds) compute each shift's checksum when it is first needed, a cost that the
/// frame's own bytes dwarf.
const EAGER_TABLE_MAX: usize = 16 << 10;

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
    pub fn for_framing(framing: framecast::codec::Framing) -> Format {
        match framing {
            framecast::codec::Framing::Line => Format::Text,
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
    /// The filler bytes differ from those sent (the checksum over them would fail).
    Filler,
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
                "checksum mismatch: payload carries {carried:016x}, its bytes give {computed:016x}"
            ),
            IntegrityError::Filler => f.write_str("payload bytes differ from those sent"),
            IntegrityError::Length { declared, actual } => {
                write!(f, "payload declares {declared} bytes but has {actual}")
            }
        }
    }
}

impl std::error::Error for IntegrityError {}

/// Lanes of the checksum: eight 64-bit words, one 64-byte block per step.
const LANES: usize = 8;
/// Odd multipliers that fold the lanes together (from splitmix64 and wyhash).
const FOLD: [u64; LANES] = [
    0x9e37_79b9_7f4a_7c15,
    0xbf58_476d_1ce4_e5b9,
    0x94d0_49bb_1331_11eb,
    0xd6e8_feb8_6659_fd93,
    0xa076_1d64_78bd_642f,
    0xe703_7ed1_a0b4_28db,
    0x8ebc_6af0_9c88_c6e3,
    0x5899_65cc_7537_4cc3,
];

/// A 64-bit checksum: Fletcher-style sums (a running sum and a sum of running sums)
/// over 64-bit words in eight independent lanes, folded with odd multipliers and
/// mixed with the length. A single changed byte always changes a lane sum, and a swap
/// of two differing words changes a running sum; the final mix keeps such a change
/// visible but for a 2^-64 coincidence.
pub fn checksum(bytes: &[u8]) -> u64 {
    let mut sum = [0u64; LANES];
    let mut weighted = [0u64; LANES];
    let mut blocks = bytes.chunks_exact(8 * LANES);
    for block in &mut blocks {
        add_block(block, &mut sum, &mut weighted);
    }
    let rest = blocks.remainder();
    if !rest.is_empty() {
        let mut last = [0u8; 8 * LANES];
        last[..rest.len()].copy_from_slice(rest);
        add_block(&last, &mut sum, &mut weighted);
    }
    // Independent multiplies, not a chain of mixes: this runs once per frame.
    let mut a = bytes.len() as u64;
    let mut b = 0u64;
    for lane in 0..LANES {
        a = a.wrapping_add(sum[lane].wrapping_mul(FOLD[lane]));
        b = b.wrapping_add(weighted[lane].wrapping_mul(FOLD[LANES - 1 - lane]));
    }
    mix(a ^ mix(b))
}

/// One 64-byte block into the lanes.
#[inline(always)]
fn add_block(block: &[u8], sum: &mut [u64; LANES], weighted: &mut [u64; LANES]) {
    for (lane, word) in block.chunks_exact(8).enumerate().take(LANES) {
        let word = u64::from_le_bytes([
            word[0], word[1], word[2], word[3], word[4], word[5], word[6], word[7],
        ]);
        sum[lane] = sum[lane].wrapping_add(word);
        weighted[lane] = weighted[lane].wrapping_add(sum[lane]);
    }
}

/// The splitmix64 finaliser: spreads every input bit over the output.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The payload checksum: a hash of the header fields' values (each field has exactly
/// one encoding in either format, so hashing values covers their bytes) combined with
/// the checksum of the filler. A change in one field changes its term by an odd
/// multiple, hence the sum, hence the mixed result: always detected.
fn combine(header: &Header, len: u32, filler: u64) -> u64 {
    let fields = (u64::from(header.conn) << 32 | u64::from(len))
        .wrapping_mul(FOLD[0])
        .wrapping_add(header.seq.wrapping_mul(FOLD[1]))
        .wrapping_add(header.stamp.wrapping_mul(FOLD[2]));
    mix(fields ^ filler.rotate_left(23))
}

/// The filler that payloads are cut from, and what is known about it in advance.
#[derive(Debug, Clone)]
pub struct Pattern {
    /// How headers are written.
    format: Format,
    /// Printable ASCII (`!`..`~`), so any framing, `line` included, can carry it.
    bytes: Vec<u8>,
    /// With a single payload size: that size, and the filler checksum of each shift.
    table: Option<(usize, Sums)>,
}

/// The filler checksums of a single payload size, one per shift.
#[derive(Debug, Clone)]
enum Sums {
    /// All computed when the pattern was made (sizes up to [`EAGER_TABLE_MAX`]).
    Eager(Vec<u64>),
    /// Each computed when first needed (the pattern is shared by every thread).
    Lazy(Vec<OnceLock<u64>>),
}

impl Pattern {
    /// The filler for payloads of `min..=max` bytes in `format`. With a single size,
    /// the filler checksum of each shift is computed once: here for sizes up to
    /// `EAGER_TABLE_MAX` (16 KiB), when first needed for larger ones.
    pub fn new(format: Format, min: usize, max: usize) -> Pattern {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let bytes = (0..max + PATTERN_SHIFTS)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                b'!' + (state % 94) as u8
            })
            .collect();
        let mut pattern = Pattern {
            format,
            bytes,
            table: None,
        };
        if min == max {
            let sums = if max <= EAGER_TABLE_MAX {
                let seqs = 0..PATTERN_SHIFTS as u64;
                Sums::Eager(seqs.map(|seq| pattern.sum_filler(seq, max)).collect())
            } else {
                Sums::Lazy((0..PATTERN_SHIFTS).map(|_| OnceLock::new()).collect())
            };
            pattern.table = Some((max, sums));
        }
        pattern
    }

    /// The header format.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The template of payload `seq` of `len` bytes: filler everywhere, the header
    /// bytes to be overwritten by [`Pattern::write`]. A `len` beyond the largest size
    /// the pattern was made for is cut short.
    pub fn template(&self, seq: u64, len: usize) -> &[u8] {
        let start = shift(seq);
        let end = (start + len).min(self.bytes.len());
        &self.bytes[start..end]
    }

    /// The checksum of the filler of payload `seq` of `len` bytes, from the table
    /// when there is one for `len`.
    #[inline]
    fn filler_checksum(&self, seq: u64, len: usize) -> u64 {
        match &self.table {
            Some((size, Sums::Eager(sums))) if *size == len => sums[shift(seq)],
            Some((size, Sums::Lazy(sums))) if *size == len => {
                *sums[shift(seq)].get_or_init(|| self.sum_filler(seq, len))
            }
            _ => self.sum_filler(seq, len),
        }
    }

    /// The checksum of the filler of payload `seq` of `len` bytes, summed over its bytes.
    /// Out of line, so the table lookup above stays small enough to inline.
    #[inline(never)]
    fn sum_filler(&self, seq: u64, len: usize) -> u64 {
        let filler = self.template(seq, len).get(self.format.header_len()..);
        checksum(filler.unwrap_or_default())
    }

    /// Writes `header` and the checksum into the front of `payload`, whose filler is
    /// the template of `header.seq` (copied there by the encoder). The payload's own
    /// length goes into the header whatever `header.len` says.
    ///
    /// # Panics
    /// If `payload` is shorter than the format's header: the configuration's
    /// validation rules that out.
    pub fn write(&self, payload: &mut [u8], header: &Header) {
        let len = payload.len() as u32;
        // From the values, not from the bytes just written: reading those back right
        // after the encoder's copy would stall on store forwarding.
        let sum = combine(header, len, self.filler_checksum(header.seq, payload.len()));
        match self.format {
            Format::Binary => {
                payload[8..12].copy_from_slice(&header.conn.to_le_bytes());
                payload[12..16].copy_from_slice(&len.to_le_bytes());
                payload[16..24].copy_from_slice(&header.seq.to_le_bytes());
                payload[24..32].copy_from_slice(&header.stamp.to_le_bytes());
                payload[..8].copy_from_slice(&sum.to_le_bytes());
            }
            Format::Text => {
                put_hex(&mut payload[16..24], header.conn.into());
                put_hex(&mut payload[24..32], len.into());
                put_hex(&mut payload[32..48], header.seq);
                put_hex(&mut payload[48..64], header.stamp);
                put_hex(&mut payload[..16], sum);
            }
        }
    }

    /// Checks a received payload and returns its header: the checksum against the
    /// header fields and the filler that was sent, then the filler byte for byte.
    ///
    /// # Errors
    /// [`IntegrityError`] when the payload is too short, malformed, declares another
    /// length than it has, fails its checksum, or carries other filler bytes than were
    /// sent. Which connection or sequence number it should carry is the caller's
    /// business.
    pub fn verify(&self, payload: &[u8]) -> Result<Header, IntegrityError> {
        let format = self.format;
        let header_len = format.header_len();
        if payload.len() < header_len {
            return Err(IntegrityError::TooShort { len: payload.len() });
        }
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
        if header.len as usize != payload.len() {
            return Err(IntegrityError::Length {
                declared: header.len,
                actual: payload.len(),
            });
        }
        let computed = combine(
            &header,
            header.len,
            self.filler_checksum(header.seq, payload.len()),
        );
        if carried != computed {
            return Err(IntegrityError::Checksum { carried, computed });
        }
        if payload[header_len..] != self.template(header.seq, payload.len())[header_len..] {
            return Err(IntegrityError::Filler);
        }
        Ok(header)
    }
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

/// Where the filler window of frame `seq` starts.
fn shift(seq: u64) -> usize {
    (seq & (PATTERN_SHIFTS as u64 - 1)) as usize
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
        let pattern = Pattern::new(format, 0, 4096);
        let mut bytes = pattern.template(header.seq, len).to_vec();
        pattern.write(&mut bytes, header);
        bytes
    }

    fn verify(format: Format, payload: &[u8]) -> Result<Header, IntegrityError> {
        Pattern::new(format, 0, 4096).verify(payload)
    }

    /// Recomputes the carried checksum from the fields and the bytes of the filler, as
    /// a third party would.
    fn checksum_of_the_rest(format: Format, payload: &[u8]) -> u64 {
        let header = verify(format, payload).unwrap();
        let filler = checksum(&payload[format.header_len()..]);
        combine(&header, payload.len() as u32, filler)
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
    fn swapped_words_change_the_checksum() {
        let bytes: Vec<u8> = (0..200u8).collect();
        let before = checksum(&bytes);
        for (a, b) in [(0, 64), (8, 128), (0, 8), (64, 192)] {
            let mut swapped = bytes.clone();
            for i in 0..8 {
                swapped.swap(a + i, b + i);
            }
            assert_ne!(checksum(&swapped), before, "words at {a} and {b}");
        }
    }

    #[test]
    fn trailing_zeros_change_the_checksum() {
        assert_ne!(checksum(b"abc"), checksum(b"abc\0"));
        assert_ne!(checksum(b""), checksum(b"\0"));
    }

    #[test]
    fn carried_checksum_is_a_checksum_of_every_byte_after_it() {
        let bytes = payload(Format::Binary, 300, &HEADER);
        assert_eq!(
            le_u64(&bytes[..8]),
            checksum_of_the_rest(Format::Binary, &bytes)
        );
        let bytes = payload(Format::Text, 300, &HEADER);
        assert_eq!(
            get_hex(&bytes[..16]),
            Some(checksum_of_the_rest(Format::Text, &bytes))
        );
    }

    #[test]
    fn a_single_size_pattern_agrees_with_any_size_pattern() {
        let fixed = Pattern::new(Format::Binary, 512, 512);
        let any = Pattern::new(Format::Binary, 32, 512);
        assert_same_on_the_wire(&fixed, &any, 512);
    }

    /// `a` and `b` write the same bytes for payloads of `size`, and each verifies the
    /// other's.
    fn assert_same_on_the_wire(a: &Pattern, b: &Pattern, size: usize) {
        for seq in [0, 1, 511, 512, 1 << 40] {
            let header = Header { seq, ..HEADER };
            let mut from_a = a.template(seq, size).to_vec();
            a.write(&mut from_a, &header);
            let mut from_b = b.template(seq, size).to_vec();
            b.write(&mut from_b, &header);
            assert_eq!(from_a, from_b);
            assert!(a.verify(&from_b).is_ok() && b.verify(&from_a).is_ok());
        }
    }

    #[test]
    fn every_filler_checksum_table_agrees_with_summing_the_bytes() {
        for format in [Format::Binary, Format::Text] {
            for size in [64, 100, 512, EAGER_TABLE_MAX, EAGER_TABLE_MAX + 1] {
                let pattern = Pattern::new(format, size, size);
                let eager = matches!(pattern.table, Some((_, Sums::Eager(_))));
                assert_eq!(eager, size <= EAGER_TABLE_MAX, "{format:?} {size}");
                // Every shift, and the same shifts again a whole cycle later.
                for seq in (0..PATTERN_SHIFTS as u64).chain([512, 513, 1 << 40]) {
                    assert_eq!(
                        pattern.filler_checksum(seq, size),
                        pattern.sum_filler(seq, size),
                        "{format:?} size {size} seq {seq}"
                    );
                    let bytes = pattern.template(seq, size);
                    let filler = checksum(&bytes[format.header_len()..]);
                    assert_eq!(pattern.filler_checksum(seq, size), filler);
                }
            }
        }
    }

    #[test]
    fn a_table_pattern_agrees_with_a_lazy_one_on_the_wire() {
        // The same size, summed up front and when first needed, writes the same bytes.
        let eager = Pattern::new(Format::Binary, 4096, 4096);
        let mut lazy = eager.clone();
        lazy.table = Some((4096, Sums::Lazy(vec![OnceLock::new(); PATTERN_SHIFTS])));
        assert_same_on_the_wire(&eager, &lazy, 4096);
    }

    #[test]
    fn filler_from_another_frame_is_caught() {
        let pattern = Pattern::new(Format::Binary, 0, 512);
        let mut bytes = payload(Format::Binary, 200, &HEADER);
        let other = pattern.template(HEADER.seq + 1, 200);
        bytes[BINARY_HEADER..].copy_from_slice(&other[BINARY_HEADER..]);
        assert!(pattern.verify(&bytes).is_err());
    }

    #[test]
    fn consecutive_frames_carry_different_filler() {
        let pattern = Pattern::new(Format::Binary, 512, 512);
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
