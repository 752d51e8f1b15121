//! Raw "framing": no boundaries at all. Whatever bytes have arrived form the next
//! frame, so an echo server returns them as they come (RFC 862).
//!
//! ```text
//!  ...| any bytes, passed on as they arrive |...
//! ```

use bytes::{BufMut, BytesMut};

use super::{Decoded, Decoder, Encoder, FrameError};

/// The identity codec: every non-empty buffer is one frame.
///
/// ```
/// use bytes::BytesMut;
/// use framecast::codec::{decode_frame, RawCodec};
///
/// let mut wire = BytesMut::from(&b"any bytes"[..]);
/// assert_eq!(&decode_frame(&mut RawCodec, &mut wire).unwrap().unwrap()[..], b"any bytes");
/// assert_eq!(decode_frame(&mut RawCodec, &mut wire).unwrap(), None);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct RawCodec;

impl Decoder for RawCodec {
    #[inline]
    fn decode(&mut self, buf: &[u8]) -> Result<Decoded, FrameError> {
        Ok(if buf.is_empty() {
            Decoded::Incomplete
        } else {
            Decoded::Frame(buf.len())
        })
    }
}

impl Encoder for RawCodec {
    fn encode(&self, payload: &[u8], dst: &mut BytesMut) -> Result<(), FrameError> {
        dst.put_slice(payload);
        Ok(())
    }
}
