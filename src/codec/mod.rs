//! Framing, sans-IO: cutting a byte stream into frames and building frames from
//! payloads. Nothing here touches a socket or a clock, so every codec can be unit-,
//! property- and fuzz-tested by feeding it bytes in any chunking.
//!
//! A [`Decoder`] only *looks* at the unread bytes and says what comes first: a complete
//! frame of `n` bytes, bytes to discard, or "incomplete" (a value, not an error). The
//! caller owns the buffer and advances it; [`decode_frame`] does that for one frame at a
//! time and [`scan`] for a run of consecutive frames, which the reactor hands on as a
//! single refcounted [`Bytes`] (one refcount operation per read rather than per frame).
//!
//! Frames always include their header or delimiter: they are the exact wire bytes, so
//! echoing or relaying one copies nothing.

pub mod diagnose;
mod fixed;
mod framing;
mod length;
mod line;
mod raw;

use std::fmt;

use bytes::{Buf, Bytes, BytesMut};

pub use fixed::FixedCodec;
pub use framing::{Endian, Framing, ParseFramingError};
pub use length::LengthCodec;
pub use line::LineCodec;
pub use raw::RawCodec;

/// The largest `max_frame` a codec takes (half the address space; a larger one is taken
/// as this): no buffer could hold a larger frame, and it keeps the header arithmetic
/// (offset + header + declared length) clear of overflow.
pub const MAX_FRAME_LIMIT: usize = isize::MAX as usize / 2;

/// What a decoder found at the front of the unread bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded {
    /// A complete frame of this many bytes (header or delimiter included).
    Frame(usize),
    /// An oversized frame begins here and is being discarded (policy [`Oversize::Skip`]):
    /// drop this many bytes; the error says what was too large.
    Oversize(usize, FrameError),
    /// Bytes of a frame already being discarded: drop this many.
    Skip(usize),
    /// Not enough bytes yet for a decision.
    Incomplete,
}

/// What to do with a frame larger than the maximum.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Oversize {
    /// Report [`FrameError`]; the connection is closed.
    #[default]
    Close,
    /// Discard the frame as it arrives (never buffering it) and resume after it.
    Skip,
}

/// Cuts a byte stream into frames.
///
/// Contract: `buf` holds the unread bytes, starting right after whatever the previous
/// call returned. After `Frame(n)`, `Oversize(n, _)` or `Skip(n)` the caller drops `n`
/// bytes from the front before the next call; after `Incomplete` it calls again with the
/// same bytes plus more. A decoder may remember how far it has searched, so it never
/// rescans a byte. Errors leave the decoder unchanged.
pub trait Decoder {
    /// Says what comes first in `buf`.
    ///
    /// # Errors
    /// [`FrameError`] when the stream violates the framing (a declared length over the
    /// maximum, a line with no delimiter within it) and the policy is [`Oversize::Close`].
    fn decode(&mut self, buf: &[u8]) -> Result<Decoded, FrameError>;
}

/// Builds frames from payloads.
pub trait Encoder {
    /// Appends the frame carrying `payload` to `dst`.
    ///
    /// # Errors
    /// [`FrameError`] when the payload cannot be framed (too long for the header, a
    /// delimiter inside a line, the wrong size for fixed framing).
    fn encode(&self, payload: &[u8], dst: &mut BytesMut) -> Result<(), FrameError>;
}

/// A stream that breaks its framing, or a payload that cannot be framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// A header declares a payload longer than the maximum.
    TooLong {
        /// The declared payload length.
        len: u64,
        /// The configured maximum.
        max: usize,
    },
    /// More than the maximum arrived without a line delimiter.
    LineTooLong {
        /// The configured maximum line length, delimiter excluded.
        max: usize,
    },
    /// A payload too long for the header width (encoding).
    PayloadTooLong {
        /// The payload length.
        len: usize,
        /// The longest the header can express (or the maximum frame).
        max: u64,
    },
    /// A line payload containing `\n` (encoding).
    DelimiterInPayload,
    /// A payload whose size differs from the fixed frame size (encoding).
    WrongSize {
        /// The payload length.
        len: usize,
        /// The fixed frame size.
        expected: usize,
    },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            FrameError::TooLong { len, max } => {
                write!(f, "declared frame length {len} exceeds the maximum {max}")
            }
            FrameError::LineTooLong { max } => {
                write!(
                    f,
                    "line longer than the maximum {max} bytes without a delimiter"
                )
            }
            FrameError::PayloadTooLong { len, max } => {
                write!(f, "payload of {len} bytes exceeds the maximum {max}")
            }
            FrameError::DelimiterInPayload => f.write_str("line payload contains a newline"),
            FrameError::WrongSize { len, expected } => {
                write!(
                    f,
                    "payload of {len} bytes, but fixed frames are {expected} bytes"
                )
            }
        }
    }
}

impl std::error::Error for FrameError {}

/// One of the framings, chosen at run time; dispatches to the concrete codec.
#[derive(Debug, Clone)]
pub enum Codec {
    /// Length-prefixed frames.
    Length(LengthCodec),
    /// Newline-delimited frames.
    Line(LineCodec),
    /// Fixed-size frames.
    Fixed(FixedCodec),
    /// No framing.
    Raw(RawCodec),
}

impl Codec {
    /// A codec for `framing` that accepts payloads of at most `max_frame` bytes and
    /// closes on anything larger.
    pub fn new(framing: Framing, max_frame: usize) -> Codec {
        Codec::with_oversize(framing, max_frame, Oversize::Close)
    }

    /// Like [`Codec::new`], with an explicit policy for oversized frames.
    pub fn with_oversize(framing: Framing, max_frame: usize, oversize: Oversize) -> Codec {
        match framing {
            Framing::Length { width, endian } => {
                Codec::Length(LengthCodec::new(width, endian, max_frame, oversize))
            }
            Framing::Line => Codec::Line(LineCodec::new(max_frame, oversize)),
            Framing::Fixed(size) => Codec::Fixed(FixedCodec::new(size)),
            Framing::Raw => Codec::Raw(RawCodec),
        }
    }

    /// The most bytes an incomplete frame can occupy before the decoder either
    /// completes it or reports it: what a read buffer must be able to hold.
    pub fn max_pending(&self) -> usize {
        match self {
            Codec::Length(c) => c.max_pending(),
            Codec::Line(c) => c.max_pending(),
            Codec::Fixed(c) => c.size(),
            Codec::Raw(_) => 0,
        }
    }

    /// True when any bytes, as they come, are complete frames (no framing): a stream
    /// can be passed on without being looked at.
    pub fn is_transparent(&self) -> bool {
        matches!(self, Codec::Raw(_))
    }

    /// True while an oversized frame is being discarded ([`Oversize::Skip`]): the
    /// stream is in the middle of a frame even though no byte of it is buffered.
    pub fn is_discarding(&self) -> bool {
        match self {
            Codec::Length(c) => c.is_discarding(),
            Codec::Line(c) => c.is_discarding(),
            Codec::Fixed(_) | Codec::Raw(_) => false,
        }
    }

    /// The payload inside a complete `frame` (header or delimiter stripped).
    #[inline]
    pub fn payload<'a>(&self, frame: &'a [u8]) -> &'a [u8] {
        match self {
            Codec::Length(c) => frame.get(c.width()..).unwrap_or_default(),
            Codec::Line(_) => line::strip_delimiter(frame),
            Codec::Fixed(_) | Codec::Raw(_) => frame,
        }
    }

    /// Where the payload lies inside a complete `frame` (see [`Codec::payload`]).
    pub fn payload_range(&self, frame: &[u8]) -> std::ops::Range<usize> {
        let payload = self.payload(frame);
        let start = match self {
            Codec::Length(c) => c.width().min(frame.len()),
            _ => 0,
        };
        start..start + payload.len()
    }

    /// The length of the first frame of `buf`, which starts with complete frames (a
    /// run that [`Codec::scan`] found): how to cut a run into frames again without
    /// touching the decoder's state.
    pub fn frame_len(&self, buf: &[u8]) -> usize {
        match self {
            Codec::Length(c) => c.frame_len(buf),
            Codec::Line(_) => memchr::memchr(b'\n', buf).map_or(buf.len(), |i| i + 1),
            Codec::Fixed(c) => c.size().min(buf.len()),
            Codec::Raw(_) => buf.len(),
        }
    }

    /// [`scan`] with the dispatch hoisted out of the per-frame loop.
    ///
    /// # Errors
    /// As [`Decoder::decode`], only when the very first frame is bad.
    pub fn scan(&mut self, buf: &[u8]) -> Result<Run, FrameError> {
        match self {
            Codec::Length(c) => match c.complete_prefix(buf) {
                (_, 0) => scan(c, buf),
                (len, frames) => Ok(Run {
                    len,
                    frames,
                    ..Run::default()
                }),
            },
            Codec::Line(c) => scan(c, buf),
            Codec::Fixed(c) => scan(c, buf),
            Codec::Raw(c) => scan(c, buf),
        }
    }
}

// Inlined, like the dispatch below: the bench calls these once per frame, and the
// call, not the match, was the cost.
impl Decoder for Codec {
    #[inline]
    fn decode(&mut self, buf: &[u8]) -> Result<Decoded, FrameError> {
        match self {
            Codec::Length(c) => c.decode(buf),
            Codec::Line(c) => c.decode(buf),
            Codec::Fixed(c) => c.decode(buf),
            Codec::Raw(c) => c.decode(buf),
        }
    }
}

impl Encoder for Codec {
    #[inline]
    fn encode(&self, payload: &[u8], dst: &mut BytesMut) -> Result<(), FrameError> {
        match self {
            Codec::Length(c) => c.encode(payload, dst),
            Codec::Line(c) => c.encode(payload, dst),
            Codec::Fixed(c) => c.encode(payload, dst),
            Codec::Raw(c) => c.encode(payload, dst),
        }
    }
}

/// The front of a buffer as [`scan`] sees it: `len` bytes holding `frames` complete
/// frames, then `skip` bytes to discard. All zero means "incomplete".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Run {
    /// Bytes of complete frames at the front.
    pub len: usize,
    /// How many frames those bytes hold.
    pub frames: usize,
    /// Bytes after the frames that belong to an oversized frame being discarded.
    pub skip: usize,
    /// Set when an oversized frame begins within the skipped bytes.
    pub oversize: Option<FrameError>,
}

impl Run {
    /// True when nothing at the front can be consumed yet.
    pub fn is_incomplete(&self) -> bool {
        self.len == 0 && self.skip == 0
    }
}

/// Finds the longest run of complete frames at the front of `buf`, stopping at the
/// first incomplete frame or discarded bytes. The caller consumes `len + skip` bytes.
///
/// # Errors
/// As [`Decoder::decode`], but only when the error comes first: frames before a bad
/// header are returned, and the next call reports the error.
pub fn scan<D: Decoder + ?Sized>(decoder: &mut D, buf: &[u8]) -> Result<Run, FrameError> {
    let mut run = Run::default();
    loop {
        let rest = buf.get(run.len..).unwrap_or_default();
        match decoder.decode(rest) {
            Ok(Decoded::Frame(n)) => {
                run.len += n;
                run.frames += 1;
            }
            Ok(Decoded::Skip(n)) => {
                run.skip = n;
                return Ok(run);
            }
            Ok(Decoded::Oversize(n, error)) => {
                run.skip = n;
                run.oversize = Some(error);
                return Ok(run);
            }
            Ok(Decoded::Incomplete) => return Ok(run),
            Err(_) if run.frames > 0 => return Ok(run),
            Err(error) => return Err(error),
        }
    }
}

/// Splits the next complete frame off the front of `buf` (zero-copy: `split_to` +
/// `freeze`), dropping any bytes the decoder discards on the way. `Ok(None)` means the
/// buffer holds no complete frame yet.
///
/// # Errors
/// As [`Decoder::decode`].
pub fn decode_frame<D: Decoder + ?Sized>(
    decoder: &mut D,
    buf: &mut BytesMut,
) -> Result<Option<Bytes>, FrameError> {
    loop {
        match decoder.decode(buf)? {
            Decoded::Frame(n) => return Ok(Some(buf.split_to(n).freeze())),
            Decoded::Skip(n) | Decoded::Oversize(n, _) => buf.advance(n),
            Decoded::Incomplete => return Ok(None),
        }
    }
}

#[cfg(test)]
mod tests;
