//! Line framing: a frame ends at `\n`; a `\r` right before it belongs to the delimiter.
//!
//! ```text
//!  +---+---+---+---+---+----+----+
//!  | h | e | l | l | o | \r | \n |   "hello" with CRLF (the \r is optional)
//!  +---+---+---+---+---+----+----+
//!  |<----- payload --->|<-delim->|
//! ```
//!
//! The decoder remembers how far it has searched, so bytes arriving one at a time cost
//! O(1) each, not a rescan of the whole line. A line whose payload exceeds the maximum
//! is an error as soon as that many bytes have arrived without a delimiter.

use bytes::{BufMut, BytesMut};

use super::{Decoded, Decoder, Encoder, FrameError, Oversize};

/// Decoder and encoder for newline-delimited frames.
///
/// ```
/// use bytes::BytesMut;
/// use framecast::codec::{decode_frame, LineCodec, Oversize};
///
/// let mut codec = LineCodec::new(80, Oversize::Close);
/// let mut wire = BytesMut::from(&b"hi\r\nthere\npart"[..]);
/// assert_eq!(&decode_frame(&mut codec, &mut wire).unwrap().unwrap()[..], b"hi\r\n");
/// assert_eq!(&decode_frame(&mut codec, &mut wire).unwrap().unwrap()[..], b"there\n");
/// assert_eq!(decode_frame(&mut codec, &mut wire).unwrap(), None);
/// assert_eq!(&wire[..], b"part");
/// ```
#[derive(Debug, Clone)]
pub struct LineCodec {
    /// Longest payload accepted, delimiter excluded, in bytes.
    max_frame: usize,
    /// What to do with a line over `max_frame`.
    oversize: Oversize,
    /// Bytes of the current line already searched for `\n` without success.
    searched: usize,
    /// True while discarding the rest of an oversized line (policy `Skip`).
    discarding: bool,
}

impl LineCodec {
    /// A codec for lines of at most `max_frame` payload bytes.
    pub fn new(max_frame: usize, oversize: Oversize) -> Self {
        LineCodec {
            max_frame,
            oversize,
            searched: 0,
            discarding: false,
        }
    }

    /// True while the rest of an oversized line is being discarded.
    pub fn is_discarding(&self) -> bool {
        self.discarding
    }

    /// The longest incomplete line: a maximal payload plus a `\r` awaiting its `\n`.
    pub fn max_pending(&self) -> usize {
        self.max_frame.saturating_add(1)
    }

    /// The longest a complete line can be: payload plus `\r\n`.
    fn max_line(&self) -> usize {
        self.max_frame.saturating_add(2)
    }
}

/// The payload of a complete line: without its `\n` and a `\r` just before it.
pub(super) fn strip_delimiter(frame: &[u8]) -> &[u8] {
    let line = frame.strip_suffix(b"\n").unwrap_or(frame);
    line.strip_suffix(b"\r").unwrap_or(line)
}

impl Decoder for LineCodec {
    fn decode(&mut self, buf: &[u8]) -> Result<Decoded, FrameError> {
        if self.discarding {
            return Ok(match memchr::memchr(b'\n', buf) {
                Some(i) => {
                    self.discarding = false;
                    Decoded::Skip(i + 1)
                }
                None if buf.is_empty() => Decoded::Incomplete,
                None => Decoded::Skip(buf.len()),
            });
        }
        let window = &buf[..buf.len().min(self.max_line())];
        let start = self.searched.min(window.len());
        if let Some(i) = memchr::memchr(b'\n', &window[start..]) {
            let len = start + i + 1;
            if strip_delimiter(&window[..len]).len() <= self.max_frame {
                self.searched = 0;
                return Ok(Decoded::Frame(len));
            }
        } else if window.len() < self.max_line() {
            self.searched = window.len();
            return Ok(Decoded::Incomplete);
        }
        let error = FrameError::LineTooLong {
            max: self.max_frame,
        };
        match self.oversize {
            Oversize::Close => Err(error),
            Oversize::Skip => {
                // Drop what is here; the next call discards up to the next `\n`.
                let newline = memchr::memchr(b'\n', buf);
                self.searched = 0;
                self.discarding = newline.is_none();
                Ok(Decoded::Oversize(
                    newline.map_or(buf.len(), |i| i + 1),
                    error,
                ))
            }
        }
    }
}

impl Encoder for LineCodec {
    /// Appends `payload` and `\n`, or `\r\n` when the payload itself ends in `\r` (a
    /// bare `\n` would make that `\r` read as half of the delimiter, so the payload
    /// would not survive the round trip).
    fn encode(&self, payload: &[u8], dst: &mut BytesMut) -> Result<(), FrameError> {
        if memchr::memchr(b'\n', payload).is_some() {
            return Err(FrameError::DelimiterInPayload);
        }
        let delimiter: &[u8] = if payload.ends_with(b"\r") {
            b"\r\n"
        } else {
            b"\n"
        };
        dst.reserve(payload.len() + delimiter.len());
        dst.put_slice(payload);
        dst.put_slice(delimiter);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::decode_frame;

    #[test]
    fn splits_lf_and_crlf_lines() {
        let mut c = LineCodec::new(16, Oversize::Close);
        let mut wire = BytesMut::from(&b"a\nbc\r\n\nrest"[..]);
        let frames: Vec<_> =
            std::iter::from_fn(|| decode_frame(&mut c, &mut wire).unwrap()).collect();
        assert_eq!(frames, [&b"a\n"[..], b"bc\r\n", b"\n"]);
        assert_eq!(strip_delimiter(&frames[1]), b"bc");
        assert_eq!(&wire[..], b"rest");
    }

    #[test]
    fn never_rescans_searched_bytes() {
        let mut c = LineCodec::new(64, Oversize::Close);
        assert_eq!(c.decode(b"abc"), Ok(Decoded::Incomplete));
        assert_eq!(c.searched, 3);
        assert_eq!(c.decode(b"abcde"), Ok(Decoded::Incomplete));
        assert_eq!(c.searched, 5);
        assert_eq!(c.decode(b"abcde\n"), Ok(Decoded::Frame(6)));
        assert_eq!(c.searched, 0);
    }

    #[test]
    fn accepts_line_of_exactly_max_with_either_delimiter() {
        let mut c = LineCodec::new(3, Oversize::Close);
        assert_eq!(c.decode(b"abc\n"), Ok(Decoded::Frame(4)));
        assert_eq!(c.decode(b"abc\r"), Ok(Decoded::Incomplete));
        assert_eq!(c.decode(b"abc\r\n"), Ok(Decoded::Frame(5)));
    }

    #[test]
    fn rejects_line_over_max_without_waiting_for_delimiter() {
        let mut c = LineCodec::new(3, Oversize::Close);
        let err = Err(FrameError::LineTooLong { max: 3 });
        assert_eq!(c.decode(b"abcd"), Ok(Decoded::Incomplete));
        assert_eq!(c.decode(b"abcde"), err);
        assert_eq!(c.decode(b"abcd\n"), err);
        assert_eq!(c.decode(b"abcde\n"), err);
    }

    #[test]
    fn skips_oversized_line_up_to_next_delimiter() {
        let mut c = LineCodec::new(3, Oversize::Skip);
        let err = FrameError::LineTooLong { max: 3 };
        assert_eq!(c.decode(b"abcdefg"), Ok(Decoded::Oversize(7, err)));
        assert!(c.is_discarding());
        assert_eq!(c.decode(b"hij"), Ok(Decoded::Skip(3)));
        assert_eq!(c.decode(b"k\nok\n"), Ok(Decoded::Skip(2)));
        assert!(!c.is_discarding());
        assert_eq!(c.decode(b"ok\n"), Ok(Decoded::Frame(3)));
        // An oversized line that is complete in one read leaves nothing to discard.
        assert_eq!(c.decode(b"abcdef\nok\n"), Ok(Decoded::Oversize(7, err)));
        assert_eq!(c.decode(b"ok\n"), Ok(Decoded::Frame(3)));
    }

    #[test]
    fn encoder_appends_lf_and_refuses_embedded_newline() {
        let c = LineCodec::new(16, Oversize::Close);
        let mut dst = BytesMut::new();
        c.encode(b"hi", &mut dst).unwrap();
        assert_eq!(&dst[..], b"hi\n");
        assert_eq!(
            c.encode(b"a\nb", &mut dst),
            Err(FrameError::DelimiterInPayload)
        );
    }

    #[test]
    fn payload_ending_in_cr_survives_the_round_trip() {
        // Found by the `line` fuzz target: `\r` + `\n` decoded as an empty payload.
        let mut c = LineCodec::new(16, Oversize::Close);
        for payload in [&b"\r"[..], b"a\r", b"\r\r"] {
            let mut wire = BytesMut::new();
            c.encode(payload, &mut wire).unwrap();
            let frame = decode_frame(&mut c, &mut wire).unwrap().unwrap();
            assert_eq!(strip_delimiter(&frame), payload);
        }
    }
}
