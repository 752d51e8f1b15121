//! Received bytes cut into frames with the library's codec, sans-IO. Frames up to
//! `--max-frame` come out whole; a larger one streams out as chunks (the codec's
//! [`Oversize::Skip`] policy discards it as it arrives), so no frame, however large its
//! header says it is, is ever held in memory whole.

use bytes::{Bytes, BytesMut};
use framecast::codec::{Codec, Decoded, Decoder, FrameError, Framing, Oversize};

/// What the front of the received bytes holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Received {
    /// A complete frame of at most the maximum, exact wire bytes.
    Frame(Bytes),
    /// A piece of a frame over the maximum, exact wire bytes.
    Large {
        /// The wire bytes of this piece.
        chunk: Bytes,
        /// Set on the first piece when the header declares the payload's length.
        declared: Option<u64>,
        /// True on the first piece of the frame.
        first: bool,
        /// True on the piece that ends the frame.
        last: bool,
    },
}

/// Cuts received bytes into [`Received`] items.
#[derive(Debug)]
pub struct Receiver {
    /// The decoder, with the skip policy and the display maximum.
    codec: Codec,
    /// Received bytes not yet cut.
    buf: BytesMut,
}

impl Receiver {
    /// A receiver for `framing` whose whole frames are at most `max_frame` bytes.
    pub fn new(framing: Framing, max_frame: usize) -> Receiver {
        Receiver {
            codec: Codec::with_oversize(framing, max_frame, Oversize::Skip),
            buf: BytesMut::new(),
        }
    }

    /// The payload inside a complete frame (header or delimiter stripped).
    pub fn payload<'a>(&self, frame: &'a [u8]) -> &'a [u8] {
        self.codec.payload(frame)
    }

    /// Adds received bytes.
    pub fn extend(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// True when the stream stands between frames: nothing buffered, nothing being
    /// streamed out. An end of stream anywhere else cuts a frame short.
    pub fn is_between_frames(&self) -> bool {
        self.buf.is_empty() && !self.codec.is_discarding()
    }

    /// The next item, or `Ok(None)` when more bytes are needed.
    ///
    /// # Errors
    /// The stream breaks the framing (not expected with the skip policy, kept so a
    /// codec that does report errors is not ignored).
    pub fn take(&mut self) -> Result<Option<Received>, FrameError> {
        Ok(Some(match self.codec.decode(&self.buf)? {
            Decoded::Incomplete => return Ok(None),
            Decoded::Frame(n) => Received::Frame(self.buf.split_to(n).freeze()),
            Decoded::Oversize(n, error) => Received::Large {
                chunk: self.buf.split_to(n).freeze(),
                declared: match error {
                    FrameError::TooLong { len, .. } => Some(len),
                    _ => None,
                },
                first: true,
                last: !self.codec.is_discarding(),
            },
            Decoded::Skip(n) => Received::Large {
                chunk: self.buf.split_to(n).freeze(),
                declared: None,
                first: false,
                last: !self.codec.is_discarding(),
            },
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(rx: &mut Receiver) -> Vec<Received> {
        std::iter::from_fn(|| rx.take().unwrap()).collect()
    }

    #[test]
    fn small_frames_come_out_whole_in_any_chunking() {
        let wire = b"\x00\x00\x00\x02hi\x00\x00\x00\x00\x00\x00\x00\x01!";
        for size in [1, 2, 5, wire.len()] {
            let mut rx = Receiver::new(Framing::default(), 16);
            let mut frames = Vec::new();
            for chunk in wire.chunks(size) {
                rx.extend(chunk);
                frames.extend(drain(&mut rx));
            }
            let payloads: Vec<&[u8]> = frames
                .iter()
                .map(|f| match f {
                    Received::Frame(b) => rx.payload(b),
                    other => panic!("{other:?}"),
                })
                .collect();
            assert_eq!(payloads, [&b"hi"[..], b"", b"!"]);
            assert!(rx.is_between_frames());
        }
    }

    #[test]
    fn a_large_length_frame_streams_out_with_its_declared_length() {
        let mut rx = Receiver::new(Framing::default(), 4);
        rx.extend(b"\x00\x00\x00\x0aabc");
        let first = drain(&mut rx);
        assert_eq!(
            first,
            [Received::Large {
                chunk: Bytes::from_static(b"\x00\x00\x00\x0aabc"),
                declared: Some(10),
                first: true,
                last: false
            }]
        );
        assert!(!rx.is_between_frames());
        rx.extend(b"defghij\x00\x00\x00\x01z");
        let rest = drain(&mut rx);
        assert!(
            matches!(&rest[0], Received::Large { chunk, first: false, last: true, .. } if &chunk[..] == b"defghij")
        );
        assert!(matches!(&rest[1], Received::Frame(f) if &f[..] == b"\x00\x00\x00\x01z"));
    }

    #[test]
    fn a_long_line_streams_out_until_its_newline() {
        let mut rx = Receiver::new(Framing::Line, 3);
        rx.extend(b"abcdef");
        assert!(matches!(
            &drain(&mut rx)[..],
            [Received::Large {
                first: true,
                last: false,
                declared: None,
                ..
            }]
        ));
        rx.extend(b"gh\nok\n");
        let rest = drain(&mut rx);
        assert!(
            matches!(&rest[0], Received::Large { chunk, last: true, .. } if &chunk[..] == b"gh\n")
        );
        assert!(matches!(&rest[1], Received::Frame(f) if &f[..] == b"ok\n"));
    }
}
