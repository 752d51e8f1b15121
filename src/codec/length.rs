//! Length-prefixed framing: a fixed-width unsigned header holding the payload length.
//!
//! ```text
//!  u32be (the default, Python's struct.pack('!I', n)):
//!  +--------+--------+--------+--------+---------------- ... ---+
//!  |          payload length n          |     n payload bytes    |
//!  |   (4 bytes, big-endian, unsigned)  |                        |
//!  +--------+--------+--------+--------+---------------- ... ---+
//!  widths 1, 2, 4 or 8 bytes; big- or little-endian; the header is not counted in n
//! ```
//!
//! The declared length is checked against the maximum before anything else happens,
//! so a header claiming 4 GiB costs nothing: the decoder never asks for room, and the
//! read buffer only grows with bytes that really arrive.

use bytes::{BufMut, BytesMut};

use super::Endian;
use super::{Decoded, Decoder, Encoder, FrameError, Oversize};

/// Decoder and encoder for length-prefixed frames.
///
/// ```
/// use bytes::BytesMut;
/// use framecast::codec::{decode_frame, Encoder, LengthCodec, Oversize};
/// use framecast::codec::Endian;
///
/// let mut codec = LengthCodec::new(4, Endian::Big, 1024, Oversize::Close);
/// let mut wire = BytesMut::new();
/// codec.encode(b"hello", &mut wire).unwrap();
/// assert_eq!(&wire[..], b"\x00\x00\x00\x05hello");
///
/// let frame = decode_frame(&mut codec, &mut wire).unwrap().unwrap();
/// assert_eq!(&frame[..], b"\x00\x00\x00\x05hello"); // the exact wire bytes
/// assert!(wire.is_empty());
/// ```
#[derive(Debug, Clone)]
pub struct LengthCodec {
    /// Header size in bytes: 1, 2, 4 or 8.
    width: usize,
    /// Header byte order.
    endian: Endian,
    /// Largest payload accepted, in bytes.
    max_frame: usize,
    /// What to do with a declared length over `max_frame`.
    oversize: Oversize,
    /// Payload bytes of an oversized frame still to discard (policy `Skip`).
    discard: u64,
}

impl LengthCodec {
    /// A codec with a `width`-byte header (1, 2, 4 or 8; anything else is treated as
    /// the nearest valid width above it, up to 8). A `max_frame` above
    /// [`MAX_FRAME_LIMIT`](super::MAX_FRAME_LIMIT) is taken as that limit.
    pub fn new(width: usize, endian: Endian, max_frame: usize, oversize: Oversize) -> Self {
        let width = match width {
            0 | 1 => 1,
            2 => 2,
            3 | 4 => 4,
            _ => 8,
        };
        LengthCodec {
            width,
            endian,
            max_frame: max_frame.min(super::MAX_FRAME_LIMIT),
            oversize,
            discard: 0,
        }
    }

    /// Header size in bytes.
    pub fn width(&self) -> usize {
        self.width
    }

    /// True while the payload of an oversized frame is being discarded.
    pub fn is_discarding(&self) -> bool {
        self.discard > 0
    }

    /// The largest incomplete frame: a header plus a maximal payload.
    pub fn max_pending(&self) -> usize {
        self.width.saturating_add(self.max_frame)
    }

    /// The largest length the header can express.
    fn header_max(&self) -> u64 {
        u64::MAX >> (64 - 8 * self.width as u32)
    }

    /// Reads the header at the front of `b`, which holds at least `width` bytes. Each
    /// width is a fixed-size load: a variable-length copy would cost a `memcpy` call
    /// per frame (2-3x slower in `benches/codec.rs`).
    #[inline]
    fn declared_len(&self, b: &[u8]) -> u64 {
        // `None` cannot happen (the caller checked the length); 0 keeps it panic-free.
        match (self.width, self.endian) {
            (1, _) => b.first().map_or(0, |&h| u64::from(h)),
            (2, Endian::Big) => b
                .first_chunk()
                .map_or(0, |h| u64::from(u16::from_be_bytes(*h))),
            (2, Endian::Little) => b
                .first_chunk()
                .map_or(0, |h| u64::from(u16::from_le_bytes(*h))),
            (4, Endian::Big) => b
                .first_chunk()
                .map_or(0, |h| u64::from(u32::from_be_bytes(*h))),
            (4, Endian::Little) => b
                .first_chunk()
                .map_or(0, |h| u64::from(u32::from_le_bytes(*h))),
            (_, Endian::Big) => b.first_chunk().map_or(0, |h| u64::from_be_bytes(*h)),
            (_, Endian::Little) => b.first_chunk().map_or(0, |h| u64::from_le_bytes(*h)),
        }
    }

    /// The length of the complete frame at the front of `buf`, header included (for a
    /// buffer known to start with one; otherwise at most `buf.len()`).
    pub fn frame_len(&self, buf: &[u8]) -> usize {
        let declared = usize::try_from(self.declared_len(buf)).unwrap_or(usize::MAX);
        self.width.saturating_add(declared).min(buf.len())
    }

    /// The complete frames at the front of `buf`: their total length and count. The
    /// reactor's hot loop, one header read and two comparisons per frame; it stops at
    /// the first incomplete or oversized frame, which [`Decoder::decode`] then handles.
    #[inline]
    pub fn complete_prefix(&self, buf: &[u8]) -> (usize, usize) {
        if self.discard > 0 {
            return (0, 0);
        }
        let (mut at, mut frames) = (0, 0);
        while let Some(header) = buf.get(at..at + self.width) {
            let len = self.declared_len(header);
            if len > self.max_frame as u64 {
                break;
            }
            // `len <= max_frame <= isize::MAX / 2` and `at + width <= buf.len() <=
            // isize::MAX`: no overflow.
            let next = at + self.width + len as usize;
            if next > buf.len() {
                break;
            }
            at = next;
            frames += 1;
        }
        (at, frames)
    }
}

impl Decoder for LengthCodec {
    #[inline]
    fn decode(&mut self, buf: &[u8]) -> Result<Decoded, FrameError> {
        if self.discard > 0 {
            let n = self.discard.min(buf.len() as u64);
            self.discard -= n;
            // `n <= buf.len()`, so the cast back is lossless.
            return Ok(if n == 0 {
                Decoded::Incomplete
            } else {
                Decoded::Skip(n as usize)
            });
        }
        if buf.len() < self.width {
            return Ok(Decoded::Incomplete);
        }
        let len = self.declared_len(buf);
        if len > self.max_frame as u64 {
            let error = FrameError::TooLong {
                len,
                max: self.max_frame,
            };
            return match self.oversize {
                Oversize::Close => Err(error),
                Oversize::Skip => {
                    let available = (buf.len() - self.width) as u64;
                    let now = len.min(available);
                    self.discard = len - now;
                    Ok(Decoded::Oversize(self.width + now as usize, error))
                }
            };
        }
        // `len <= max_frame`, a usize, so neither the cast nor the sum overflows.
        let total = self.width + len as usize;
        Ok(if buf.len() >= total {
            Decoded::Frame(total)
        } else {
            Decoded::Incomplete
        })
    }
}

impl Encoder for LengthCodec {
    #[inline]
    fn encode(&self, payload: &[u8], dst: &mut BytesMut) -> Result<(), FrameError> {
        let len = payload.len() as u64;
        let max = self.header_max();
        if len > max {
            return Err(FrameError::PayloadTooLong {
                len: payload.len(),
                max,
            });
        }
        dst.reserve(self.width + payload.len());
        // Fixed-size stores, as in `declared_len`: a slice of the variable width would
        // cost a `memcpy` call per frame. `len <= header_max`, so no cast truncates.
        match (self.width, self.endian) {
            (1, _) => dst.put_u8(len as u8),
            (2, Endian::Big) => dst.put_u16(len as u16),
            (2, Endian::Little) => dst.put_u16_le(len as u16),
            (4, Endian::Big) => dst.put_u32(len as u32),
            (4, Endian::Little) => dst.put_u32_le(len as u32),
            (_, Endian::Big) => dst.put_u64(len),
            (_, Endian::Little) => dst.put_u64_le(len),
        }
        dst.put_slice(payload);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::decode_frame;

    fn codec(width: usize, endian: Endian) -> LengthCodec {
        LengthCodec::new(width, endian, 1 << 20, Oversize::Close)
    }

    #[test]
    fn a_limitless_max_frame_cannot_overflow_the_header_arithmetic() {
        let mut c = LengthCodec::new(8, Endian::Big, usize::MAX, Oversize::Close);
        // A length that wraps `offset + header + length` to a small number, after a
        // complete frame: the scan must stop, not loop or take it as complete.
        let mut wire = vec![0, 0, 0, 0, 0, 0, 0, 1, b'a'];
        wire.extend_from_slice(&(u64::MAX - 8).to_be_bytes());
        assert_eq!(c.complete_prefix(&wire), (9, 1));
        assert!(matches!(
            c.decode(&wire[9..]),
            Err(FrameError::TooLong { .. })
        ));
        // Just under the limit: a frame that can never complete, and no overflow.
        let len = crate::codec::MAX_FRAME_LIMIT as u64;
        assert_eq!(c.complete_prefix(&len.to_be_bytes()), (0, 0));
        assert_eq!(c.decode(&len.to_be_bytes()), Ok(Decoded::Incomplete));
    }

    #[test]
    fn reads_headers_of_every_width_and_order() {
        let cases: [(usize, Endian, &[u8]); 7] = [
            (1, Endian::Big, b"\x03"),
            (2, Endian::Big, b"\x00\x03"),
            (2, Endian::Little, b"\x03\x00"),
            (4, Endian::Big, b"\x00\x00\x00\x03"),
            (4, Endian::Little, b"\x03\x00\x00\x00"),
            (8, Endian::Big, b"\x00\x00\x00\x00\x00\x00\x00\x03"),
            (8, Endian::Little, b"\x03\x00\x00\x00\x00\x00\x00\x00"),
        ];
        for (width, endian, header) in cases {
            let mut c = codec(width, endian);
            let mut wire = BytesMut::from(header);
            wire.extend_from_slice(b"abcXYZ");
            assert_eq!(
                c.decode(&wire),
                Ok(Decoded::Frame(width + 3)),
                "width {width}"
            );
            let frame = decode_frame(&mut c, &mut wire).unwrap().unwrap();
            assert_eq!(&frame[width..], b"abc");
            assert_eq!(&wire[..], b"XYZ");

            let mut encoded = BytesMut::new();
            c.encode(b"abc", &mut encoded).unwrap();
            assert_eq!(&encoded[..width], header, "encode width {width} {endian:?}");
        }
    }

    #[test]
    fn encodes_multibyte_lengths_in_every_width_and_order() {
        for width in [1, 2, 4, 8] {
            let len: usize = if width == 1 { 0xfe } else { 0x0102 };
            let payload = vec![b'x'; len];
            for endian in [Endian::Big, Endian::Little] {
                let mut c = codec(width, endian);
                let mut wire = BytesMut::new();
                c.encode(&payload, &mut wire).unwrap();
                let full = match endian {
                    Endian::Big => (len as u64).to_be_bytes(),
                    Endian::Little => (len as u64).to_le_bytes(),
                };
                let header = match endian {
                    Endian::Big => &full[8 - width..],
                    Endian::Little => &full[..width],
                };
                assert_eq!(&wire[..width], header, "width {width} {endian:?}");
                assert_eq!(&wire[width..], &payload[..]);
                assert_eq!(c.decode(&wire), Ok(Decoded::Frame(width + len)));
            }
        }
    }

    #[test]
    fn waits_for_header_and_payload() {
        let mut c = codec(4, Endian::Big);
        assert_eq!(c.decode(b""), Ok(Decoded::Incomplete));
        assert_eq!(c.decode(b"\x00\x00"), Ok(Decoded::Incomplete));
        assert_eq!(c.decode(b"\x00\x00\x00\x02a"), Ok(Decoded::Incomplete));
        assert_eq!(c.decode(b"\x00\x00\x00\x02ab"), Ok(Decoded::Frame(6)));
    }

    #[test]
    fn empty_payload_is_a_frame() {
        let mut c = codec(2, Endian::Big);
        assert_eq!(c.decode(b"\x00\x00\x00"), Ok(Decoded::Frame(2)));
    }

    #[test]
    fn rejects_declared_len_over_max_before_alloc() {
        let mut c = LengthCodec::new(4, Endian::Big, 1024, Oversize::Close);
        let err = FrameError::TooLong {
            len: u32::MAX as u64,
            max: 1024,
        };
        assert_eq!(c.decode(b"\xff\xff\xff\xff"), Err(err));
        // Errors leave the decoder unchanged: asking again gives the same answer.
        assert_eq!(c.decode(b"\xff\xff\xff\xffxx"), Err(err));
        assert_eq!(c.decode(b"\x00\x00\x04\x00"), Ok(Decoded::Incomplete));
        assert!(c.decode(b"\x00\x00\x04\x01").is_err());
    }

    #[test]
    fn u64_lengths_beyond_usize_are_rejected() {
        let mut c = codec(8, Endian::Little);
        assert!(matches!(
            c.decode(&[0xff; 8]),
            Err(FrameError::TooLong { len: u64::MAX, .. })
        ));
    }

    #[test]
    fn skips_oversized_payload_as_it_arrives() {
        let mut c = LengthCodec::new(2, Endian::Big, 4, Oversize::Skip);
        let err = FrameError::TooLong { len: 10, max: 4 };
        // Header plus 3 of 10 payload bytes: drop all 5, 7 still to discard.
        assert_eq!(c.decode(b"\x00\x0aabc"), Ok(Decoded::Oversize(5, err)));
        assert!(c.is_discarding());
        assert_eq!(c.decode(b""), Ok(Decoded::Incomplete));
        assert_eq!(c.decode(b"defg"), Ok(Decoded::Skip(4)));
        assert_eq!(c.decode(b"hij\x00\x01z"), Ok(Decoded::Skip(3)));
        assert!(!c.is_discarding());
        assert_eq!(c.decode(b"\x00\x01z"), Ok(Decoded::Frame(3)));
    }

    #[test]
    fn encoder_refuses_payload_too_long_for_header() {
        let c = codec(1, Endian::Big);
        let mut dst = BytesMut::new();
        assert!(c.encode(&[0; 255], &mut dst).is_ok());
        assert_eq!(
            c.encode(&[0; 256], &mut dst),
            Err(FrameError::PayloadTooLong { len: 256, max: 255 })
        );
    }
}
