//! Fixed-size framing: every frame is exactly N bytes, with no header.
//!
//! ```text
//!  +-------- N bytes --------+-------- N bytes --------+--- ...
//!  |         frame 1         |         frame 2         |
//!  +-------------------------+-------------------------+--- ...
//! ```

use bytes::{BufMut, BytesMut};

use super::{Decoded, Decoder, Encoder, FrameError};

/// Decoder and encoder for fixed-size frames.
///
/// ```
/// use bytes::BytesMut;
/// use framecast::codec::{decode_frame, FixedCodec};
///
/// let mut codec = FixedCodec::new(3);
/// let mut wire = BytesMut::from(&b"abcdefg"[..]);
/// assert_eq!(&decode_frame(&mut codec, &mut wire).unwrap().unwrap()[..], b"abc");
/// assert_eq!(&decode_frame(&mut codec, &mut wire).unwrap().unwrap()[..], b"def");
/// assert_eq!(decode_frame(&mut codec, &mut wire).unwrap(), None);
/// ```
#[derive(Debug, Clone)]
pub struct FixedCodec {
    /// Frame size in bytes; at least 1.
    size: usize,
}

impl FixedCodec {
    /// A codec for frames of `size` bytes (a size of 0 is taken as 1).
    pub fn new(size: usize) -> Self {
        FixedCodec { size: size.max(1) }
    }

    /// Frame size in bytes.
    pub fn size(&self) -> usize {
        self.size
    }
}

impl Decoder for FixedCodec {
    #[inline]
    fn decode(&mut self, buf: &[u8]) -> Result<Decoded, FrameError> {
        Ok(if buf.len() >= self.size {
            Decoded::Frame(self.size)
        } else {
            Decoded::Incomplete
        })
    }
}

impl Encoder for FixedCodec {
    fn encode(&self, payload: &[u8], dst: &mut BytesMut) -> Result<(), FrameError> {
        if payload.len() != self.size {
            return Err(FrameError::WrongSize {
                len: payload.len(),
                expected: self.size,
            });
        }
        dst.put_slice(payload);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_for_a_whole_frame() {
        let mut c = FixedCodec::new(4);
        assert_eq!(c.decode(b"abc"), Ok(Decoded::Incomplete));
        assert_eq!(c.decode(b"abcd"), Ok(Decoded::Frame(4)));
        assert_eq!(c.decode(b"abcdefghi"), Ok(Decoded::Frame(4)));
    }

    #[test]
    fn encoder_refuses_wrong_size() {
        let c = FixedCodec::new(4);
        let mut dst = BytesMut::new();
        assert_eq!(
            c.encode(b"abc", &mut dst),
            Err(FrameError::WrongSize {
                len: 3,
                expected: 4
            })
        );
        c.encode(b"abcd", &mut dst).unwrap();
        assert_eq!(&dst[..], b"abcd");
    }
}
