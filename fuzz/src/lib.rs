//! The harness behind every fuzz target: it turns fuzzer bytes into a [`Case`] (a
//! codec configuration, a byte stream and a way to chop it into reads), drives the
//! stream through the decoder three ways at once, and checks them against each other
//! and against a reference model. It owns no codec logic and knows nothing of sockets:
//! "reads" are slices handed to the reactor's own [`ReadBuf`].
//!
//! # Input layout
//! ```text
//!  byte 0      bit 0: oversize policy (0 Close, 1 Skip);
//!              bits 1-3, length target only: % 7 picks u8 u16be u16le u32be u32le u64be u64le;
//!              bits 4-7: w, how the reactor hands runs on (below)
//!  bytes 1-2   u16 LE v: max_frame = 1 + v % 4096 (the frame size for the fixed target)
//!  byte 3      k = byte % 33: how many read sizes follow
//!  2k bytes    read sizes, u16 LE each, used in a cycle; 0 means "everything left"
//!  the rest    the stream
//! ```
//! Missing bytes count as zero, so every input is a valid case.
//!
//! # The three consumers, fed in lockstep one read at a time
//! - *contract*: [`Decoder::decode`] on the unread bytes, advancing by hand exactly as the
//!   trait documents (and checking each answer's `n` against the buffer);
//! - *frame by frame*: [`decode_frame`] on a `BytesMut`;
//! - *reactor*: [`ReadBuf::read_from`] then [`Codec::scan`] until incomplete, as
//!   the reactor's `frame` does; each run's frames leave the buffer as the services take
//!   them: the part a write-through managed to send is `discard`ed, the rest `split` off
//!   as `Bytes`; then `discard(skip)`. The part written through is `len * f / 15`, with
//!   `f = w * (run number + 1) % 16`: `w = 0` always splits (queued output, broadcast),
//!   other values mix whole, partial and no write-through.
//!
//! # Invariants (any failure panics, which libFuzzer reports as a crash)
//! 1. No panic, no arithmetic overflow (the fuzz build keeps overflow checks).
//! 2. Every answer consumes between 1 and `buf.len()` bytes; an error repeats when asked
//!    again (errors leave the decoder unchanged); with [`Oversize::Skip`] no error at all,
//!    and `Oversize`/`run.oversize` only ever appear under `Skip`.
//! 3. After every read, each consumer holds at most `max_pending() + that read's length`
//!    unconsumed bytes ("max frame + one read"); the read buffer holds exactly the stream
//!    bytes not yet consumed, and a read that says it did not fill its room took all that
//!    was offered (the reactor stops reading on such a read).
//! 4. The three consumers agree after every read: same bytes consumed, same frames (the
//!    reactor's runs tile the contract's frames exactly, with the same frame counts), same
//!    discarded ranges, same oversized-frame starts, same error at the same offset, same
//!    `is_discarding()`.
//! 5. The contract consumer's whole outcome (including whether the stream ends inside a
//!    frame being discarded) equals a reference model computed on the whole stream at
//!    once, independent of how the stream was chopped.
//! 6. Every frame is well formed (payload within the maximum, no `\n` in a line payload,
//!    fixed frames of exactly the size, raw frames not empty), re-encodes
//!    (`encode(payload(frame))`) to the same bytes — a line ending `\r\n` re-encodes with
//!    `\n` — and that re-encoded frame decodes, alone, to the same payload.

use std::fmt;
use std::ops::Range;

use bytes::BytesMut;
use framecast::codec::{decode_frame, Codec, Decoded, Decoder, Encoder, FrameError, Oversize};
use framecast::reactor::ReadBuf;
use framecast::Framing;

/// Which decoder a target drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Length-prefixed, every width and byte order.
    Length,
    /// Newline-delimited.
    Line,
    /// Fixed-size frames (no oversize policy applies).
    Fixed,
    /// No framing (no oversize policy applies).
    Raw,
}

/// The length-prefixed framings, by their command-line names.
const LENGTH_FRAMINGS: [&str; 7] = ["u8", "u16be", "u16le", "u32be", "u32le", "u64be", "u64le"];

/// Largest `max_frame` (and fixed frame size) a case uses, in bytes: small, so the
/// oversize paths are reached by inputs of a few kilobytes.
pub const MAX_FRAME_LIMIT: usize = 4096;

/// Most read sizes a case lists; they are used in a cycle.
const MAX_READ_SIZES: usize = 32;

/// One fuzz case: a codec configuration, a stream and how to chop it into reads.
pub struct Case<'a> {
    /// The framing under test.
    pub framing: Framing,
    /// Largest payload accepted, in bytes.
    pub max_frame: usize,
    /// Policy for oversized frames.
    pub oversize: Oversize,
    /// `w` in 0..16: how much of each run the reactor writes through (crate docs).
    pub write_through: usize,
    /// Read sizes, each at least 1, summing to the stream's length.
    pub reads: Vec<usize>,
    /// The bytes a client sends.
    pub stream: &'a [u8],
}

impl<'a> Case<'a> {
    /// Decodes fuzzer bytes into a case for `target` (see the crate docs for the layout).
    pub fn parse(target: Target, data: &'a [u8]) -> Case<'a> {
        let byte = |i: usize| data.get(i).copied().unwrap_or(0);
        let selector = byte(0);
        let max_frame = 1 + usize::from(u16::from_le_bytes([byte(1), byte(2)])) % MAX_FRAME_LIMIT;
        let count = usize::from(byte(3)) % (MAX_READ_SIZES + 1);
        let rest = data.get(4..).unwrap_or_default();
        let (sizes, stream) = rest.split_at((2 * count).min(rest.len()));
        let mut sizes: Vec<usize> = sizes
            .chunks(2)
            .map(|p| usize::from(u16::from_le_bytes([p[0], p.get(1).copied().unwrap_or(0)])))
            .collect();
        if sizes.is_empty() {
            sizes.push(0);
        }
        let mut reads = Vec::new();
        let mut left = stream.len();
        for &size in sizes.iter().cycle() {
            if left == 0 {
                break;
            }
            let n = if size == 0 { left } else { size.min(left) };
            reads.push(n);
            left -= n;
        }
        let framing = match target {
            Target::Length => {
                let name = LENGTH_FRAMINGS[usize::from(selector >> 1 & 7) % LENGTH_FRAMINGS.len()];
                name.parse().unwrap_or_else(|e| panic!("{name}: {e}"))
            }
            Target::Line => Framing::Line,
            Target::Fixed => Framing::Fixed(max_frame),
            Target::Raw => Framing::Raw,
        };
        let oversize = if selector & 1 == 1 {
            Oversize::Skip
        } else {
            Oversize::Close
        };
        Case {
            framing,
            max_frame,
            oversize,
            write_through: usize::from(selector >> 4),
            reads,
            stream,
        }
    }

    /// A fresh codec for this case.
    pub fn codec(&self) -> Codec {
        Codec::with_oversize(self.framing, self.max_frame, self.oversize)
    }
}

impl fmt::Debug for Case<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "framing {} max_frame {} oversize {:?} write_through {} reads {:?} stream ({} bytes) b\"{}\"",
            self.framing,
            self.max_frame,
            self.oversize,
            self.write_through,
            self.reads,
            self.stream.len(),
            self.stream.escape_ascii()
        )
    }
}

/// What a consumer made of a stream, in stream offsets.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Complete frames, in order.
    pub frames: Vec<Range<usize>>,
    /// Offsets where an oversized frame began.
    pub oversize: Vec<usize>,
    /// Discarded bytes, adjacent ranges merged.
    pub skipped: Vec<Range<usize>>,
    /// The error that ended the stream, and the offset of the frame it is about.
    pub error: Option<(usize, FrameError)>,
    /// Offset of the first byte not yet consumed.
    pub consumed: usize,
    /// True when the stream ends inside an oversized frame being discarded, so no byte
    /// of it is buffered (`Codec::is_discarding`).
    pub discarding: bool,
}

impl Outcome {
    fn frame(&mut self, n: usize) {
        self.frames.push(self.consumed..self.consumed + n);
        self.consumed += n;
    }

    fn skip(&mut self, n: usize) {
        let range = self.consumed..self.consumed + n;
        match self.skipped.last_mut() {
            Some(last) if last.end == range.start => last.end = range.end,
            _ => self.skipped.push(range),
        }
        self.consumed += n;
    }
}

/// Runs one fuzz input for `target`; panics when an invariant breaks.
pub fn check(target: Target, data: &[u8]) {
    check_case(&Case::parse(target, data));
}

/// Runs one case; panics when an invariant breaks.
pub fn check_case(case: &Case<'_>) {
    let mut contract = Contract::new(case);
    let mut by_frame = ByFrame::new(case);
    let mut reactor = Reactor::new(case);
    let mut pieces = Vec::new();
    let mut fed = 0;
    'reads: for &size in &case.reads {
        let mut chunk = &case.stream[fed..fed + size];
        fed += size;
        while !chunk.is_empty() {
            // The reactor's buffer decides how much one read takes, as the kernel would;
            // the other consumers are handed the same piece.
            let piece = reactor.read(&mut chunk, case);
            pieces.push(piece.clone());
            contract.feed(piece.end, case);
            by_frame.feed(piece.end, case);
            reactor.frame(case);
            agree(&contract, &by_frame, &reactor, piece.len(), case);
            if contract.out.error.is_some() {
                break 'reads;
            }
        }
    }
    runs_tile_frames(&reactor.runs, &contract.out.frames, case);
    let model = model(case, &pieces);
    assert_eq!(
        contract.out, model,
        "decoder differs from the reference model\n{case:?}"
    );
    for frame in &contract.out.frames {
        check_frame(&case.stream[frame.clone()], case);
    }
}

/// The decoder driven by hand through the [`Decoder`] contract.
struct Contract {
    codec: Codec,
    out: Outcome,
}

impl Contract {
    fn new(case: &Case<'_>) -> Self {
        Contract {
            codec: case.codec(),
            out: Outcome::default(),
        }
    }

    /// Consumes everything it can of `stream[consumed..fed]`.
    fn feed(&mut self, fed: usize, case: &Case<'_>) {
        loop {
            let buf = &case.stream[self.out.consumed..fed];
            let answer = self.codec.decode(buf);
            if let Ok(Decoded::Frame(n) | Decoded::Oversize(n, _) | Decoded::Skip(n)) = answer {
                assert!(
                    (1..=buf.len()).contains(&n),
                    "{answer:?} with {} bytes buffered\n{case:?}",
                    buf.len()
                );
            }
            if let Ok(Decoded::Oversize(..) | Decoded::Skip(_)) = answer {
                assert_eq!(
                    case.oversize,
                    Oversize::Skip,
                    "{answer:?} under Close\n{case:?}"
                );
            }
            match answer {
                Ok(Decoded::Frame(n)) => self.out.frame(n),
                Ok(Decoded::Oversize(n, _)) => {
                    self.out.oversize.push(self.out.consumed);
                    self.out.skip(n);
                }
                Ok(Decoded::Skip(n)) => self.out.skip(n),
                Ok(Decoded::Incomplete) => {
                    self.out.discarding = self.codec.is_discarding();
                    return;
                }
                Err(error) => {
                    assert_eq!(
                        case.oversize,
                        Oversize::Close,
                        "error {error} under Skip\n{case:?}"
                    );
                    assert_eq!(
                        self.codec.decode(buf),
                        Err(error),
                        "an error must leave the decoder unchanged\n{case:?}"
                    );
                    self.out.error = Some((self.out.consumed, error));
                    return;
                }
            }
        }
    }
}

/// The decoder driven through [`decode_frame`] on a `BytesMut`.
struct ByFrame {
    codec: Codec,
    buf: BytesMut,
    /// Stream bytes appended to `buf` so far.
    fed: usize,
    frames: Vec<Range<usize>>,
    error: Option<(usize, FrameError)>,
}

impl ByFrame {
    fn new(case: &Case<'_>) -> Self {
        ByFrame {
            codec: case.codec(),
            buf: BytesMut::new(),
            fed: 0,
            frames: Vec::new(),
            error: None,
        }
    }

    fn consumed(&self) -> usize {
        self.fed - self.buf.len()
    }

    /// Appends `stream[..fed]` it has not seen and takes every complete frame.
    fn feed(&mut self, fed: usize, case: &Case<'_>) {
        self.buf.extend_from_slice(&case.stream[self.fed..fed]);
        self.fed = fed;
        loop {
            match decode_frame(&mut self.codec, &mut self.buf) {
                Ok(Some(frame)) => {
                    let end = self.consumed();
                    let range = end - frame.len()..end;
                    assert_eq!(
                        &frame[..],
                        &case.stream[range.clone()],
                        "decode_frame returned bytes that were not next in the stream\n{case:?}"
                    );
                    self.frames.push(range);
                }
                Ok(None) => return,
                Err(error) => {
                    self.error = Some((self.consumed(), error));
                    return;
                }
            }
        }
    }
}

/// The decoder driven as the reactor's `frame` drives it: reads into a [`ReadBuf`], then
/// `scan`, `split(len)`, `discard(skip)` until the front is incomplete.
struct Reactor {
    codec: Codec,
    input: ReadBuf,
    /// Stream bytes read so far.
    fed: usize,
    /// Everything but `frames`, which a run does not list one by one.
    out: Outcome,
    /// Each run of frames handed on: its bytes and how many frames it holds.
    runs: Vec<(Range<usize>, usize)>,
}

impl Reactor {
    fn new(case: &Case<'_>) -> Self {
        let codec = case.codec();
        let input = ReadBuf::new(codec.max_pending());
        Reactor {
            codec,
            input,
            fed: 0,
            out: Outcome::default(),
            runs: Vec::new(),
        }
    }

    /// One read from `chunk`; returns the stream range it delivered.
    fn read(&mut self, chunk: &mut &[u8], case: &Case<'_>) -> Range<usize> {
        let (n, filled) = self
            .input
            .read_from(chunk)
            .unwrap_or_else(|e| panic!("reading a slice failed: {e}\n{case:?}"));
        assert!(n > 0, "a read from a non-empty slice returned 0\n{case:?}");
        // The reactor stops reading after a read that did not fill the room, trusting
        // that it took everything the source held.
        assert!(
            filled || chunk.is_empty(),
            "a read of {n} bytes said it did not fill the room, yet {} bytes were left\n{case:?}",
            chunk.len()
        );
        self.fed += n;
        self.fed - n..self.fed
    }

    fn frame(&mut self, case: &Case<'_>) {
        loop {
            let buffered = self.input.data().len();
            let run = match self.codec.scan(self.input.data()) {
                Ok(run) if run.is_incomplete() => return,
                Ok(run) => run,
                Err(error) => {
                    self.out.error = Some((self.out.consumed, error));
                    return;
                }
            };
            assert_eq!(
                run.frames == 0,
                run.len == 0,
                "{run:?}: frames and length disagree\n{case:?}"
            );
            assert!(
                run.len + run.skip <= buffered,
                "{run:?} with {buffered} bytes buffered\n{case:?}"
            );
            if run.skip > 0 || run.oversize.is_some() {
                assert_eq!(
                    case.oversize,
                    Oversize::Skip,
                    "{run:?} under Close\n{case:?}"
                );
            }
            let start = self.out.consumed;
            let f = case.write_through * (self.runs.len() + 1) % 16;
            let written = run.len * f / 15;
            assert_eq!(
                self.input.data().get(..written),
                Some(&case.stream[start..start + written]),
                "the bytes written through were not next in the stream\n{case:?}"
            );
            self.input.discard(written);
            let frames = self.input.split(run.len - written);
            assert_eq!(
                &frames[..],
                &case.stream[start + written..start + run.len],
                "split returned bytes that were not next in the stream\n{case:?}"
            );
            if run.frames > 0 {
                self.runs.push((start..start + run.len, run.frames));
            }
            self.out.consumed += run.len;
            if run.oversize.is_some() {
                self.out.oversize.push(self.out.consumed);
            }
            self.input.discard(run.skip);
            if run.skip > 0 {
                self.out.skip(run.skip);
            }
        }
    }
}

/// Invariants 3 and 4, after every read.
fn agree(contract: &Contract, by_frame: &ByFrame, reactor: &Reactor, read: usize, case: &Case<'_>) {
    let out = &contract.out;
    assert_eq!(
        (out.consumed, by_frame.consumed(), reactor.out.consumed),
        (out.consumed, out.consumed, out.consumed),
        "consumed bytes differ (contract, decode_frame, reactor)\n{case:?}"
    );
    assert_eq!(
        out.frames, by_frame.frames,
        "decode_frame found other frames\n{case:?}"
    );
    assert_eq!(
        (&out.error, &by_frame.error, &reactor.out.error),
        (&out.error, &out.error, &out.error),
        "errors differ (contract, decode_frame, reactor)\n{case:?}"
    );
    assert_eq!(
        (&out.skipped, &out.oversize),
        (&reactor.out.skipped, &reactor.out.oversize),
        "the reactor discarded other bytes\n{case:?}"
    );
    assert_eq!(
        (
            by_frame.codec.is_discarding(),
            reactor.codec.is_discarding()
        ),
        (out.discarding, out.discarding),
        "is_discarding differs (decode_frame, reactor)\n{case:?}"
    );
    let frames: usize = reactor.runs.iter().map(|(_, n)| n).sum();
    assert_eq!(
        frames,
        out.frames.len(),
        "scan counted other frames\n{case:?}"
    );
    let data = reactor.input.data();
    assert_eq!(
        data,
        &case.stream[out.consumed..reactor.fed],
        "the read buffer lost or reordered bytes\n{case:?}"
    );
    let bound = reactor.codec.max_pending() + read;
    assert!(
        data.len() <= bound,
        "{} bytes buffered > max_pending {} + read {read}\n{case:?}",
        data.len(),
        reactor.codec.max_pending()
    );
}

/// The reactor's runs are exactly consecutive groups of the contract's frames.
fn runs_tile_frames(runs: &[(Range<usize>, usize)], frames: &[Range<usize>], case: &Case<'_>) {
    let mut frames = frames.iter();
    for (run, count) in runs {
        let group: Vec<_> = frames.by_ref().take(*count).collect();
        let tiled = group.len() == *count
            && group.first().is_some_and(|f| f.start == run.start)
            && group.last().is_some_and(|f| f.end == run.end)
            && group.windows(2).all(|w| w[0].end == w[1].start);
        assert!(
            tiled,
            "run {run:?} of {count} frames does not match frames {group:?}\n{case:?}"
        );
    }
}

/// The outcome a correct decoder must reach on `stream[..fed]`, computed on the whole
/// stream at once from the framing's definition (raw framing alone depends on the reads).
fn model(case: &Case<'_>, reads: &[Range<usize>]) -> Outcome {
    let fed = reads.last().map_or(0, |r| r.end);
    let stream = &case.stream[..fed];
    let max = case.max_frame;
    let mut out = Outcome::default();
    match case.framing {
        Framing::Length { width, endian } => loop {
            let rest = &stream[out.consumed..];
            if rest.len() < width {
                break;
            }
            let mut header = rest[..width].to_vec();
            if endian == framecast::codec::Endian::Little {
                header.reverse();
            }
            let len = header
                .iter()
                .fold(0u128, |acc, &b| acc << 8 | u128::from(b));
            if len > max as u128 {
                let error = FrameError::TooLong {
                    len: len as u64,
                    max,
                };
                if case.oversize == Oversize::Close {
                    out.error = Some((out.consumed, error));
                    break;
                }
                out.oversize.push(out.consumed);
                out.discarding = width as u128 + len > rest.len() as u128;
                out.skip((width as u128 + len).min(rest.len() as u128) as usize);
                continue;
            }
            let total = width + len as usize;
            if rest.len() < total {
                break;
            }
            out.frame(total);
        },
        Framing::Line => loop {
            let rest = &stream[out.consumed..];
            if rest.is_empty() {
                break;
            }
            let newline = rest.iter().position(|&b| b == b'\n');
            match newline {
                Some(i) => {
                    let payload = if i > 0 && rest[i - 1] == b'\r' {
                        i - 1
                    } else {
                        i
                    };
                    if payload <= max {
                        out.frame(i + 1);
                        continue;
                    }
                }
                // "\r" may still be followed by "\n": only max + 2 bytes settle it.
                None if rest.len() < max + 2 => break,
                None => {}
            }
            if case.oversize == Oversize::Close {
                out.error = Some((out.consumed, FrameError::LineTooLong { max }));
                break;
            }
            out.oversize.push(out.consumed);
            out.discarding = newline.is_none();
            out.skip(newline.map_or(rest.len(), |i| i + 1));
        },
        Framing::Fixed(size) => {
            while stream.len() - out.consumed >= size {
                out.frame(size);
            }
        }
        Framing::Raw => {
            for read in reads {
                out.frame(read.len());
            }
        }
    }
    out
}

/// Invariant 6 for one frame.
fn check_frame(frame: &[u8], case: &Case<'_>) {
    let codec = case.codec();
    let payload = codec.payload(frame);
    let well_formed = match case.framing {
        Framing::Length { width, .. } => {
            payload.len() <= case.max_frame && frame.len() == width + payload.len()
        }
        Framing::Line => {
            payload.len() <= case.max_frame && !payload.contains(&b'\n') && frame.ends_with(b"\n")
        }
        Framing::Fixed(size) => frame.len() == size,
        Framing::Raw => !frame.is_empty(),
    };
    assert!(
        well_formed,
        "malformed frame b\"{}\"\n{case:?}",
        frame.escape_ascii()
    );
    let mut again = BytesMut::new();
    if let Err(e) = codec.encode(payload, &mut again) {
        panic!(
            "payload of frame b\"{}\" does not encode: {e}\n{case:?}",
            frame.escape_ascii()
        );
    }
    // A CRLF line may come back with either delimiter; anything else byte for byte.
    let crlf_as_lf = case.framing == Framing::Line
        && frame.ends_with(b"\r\n")
        && again[..] == [payload, b"\n"].concat()[..];
    assert!(
        again[..] == *frame || crlf_as_lf,
        "frame b\"{}\" re-encodes to b\"{}\"\n{case:?}",
        frame.escape_ascii(),
        again.escape_ascii()
    );
    let mut fresh = case.codec();
    let decoded = fresh.decode(&again);
    assert!(
        decoded == Ok(Decoded::Frame(again.len())) && fresh.payload(&again) == payload,
        "frame b\"{}\" re-encodes to b\"{}\", which decodes to {decoded:?} with payload b\"{}\", \
         not payload b\"{}\"\n{case:?}",
        frame.escape_ascii(),
        again.escape_ascii(),
        fresh.payload(&again).escape_ascii(),
        payload.escape_ascii()
    );
}
