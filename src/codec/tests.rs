//! Property tests shared by every codec: any chunking of a stream yields the same frames,
//! arbitrary bytes never panic nor grow the buffer past one frame plus one read.

use bytes::{Buf, Bytes, BytesMut};
use proptest::prelude::*;

use super::*;
use crate::codec::Endian;

const MAX_FRAME: usize = 300;

/// Every framing, with payloads it can carry: (framing, payload generator).
fn framing_and_payloads() -> impl Strategy<Value = (Framing, Vec<Vec<u8>>)> {
    let bytes = |max| prop::collection::vec(any::<u8>(), 0..max);
    let length = |width, endian| {
        let max = if width == 1 { 255 } else { MAX_FRAME };
        prop::collection::vec(bytes(max + 1), 0..40)
            .prop_map(move |p| (Framing::Length { width, endian }, p))
    };
    let line_payload = prop::collection::vec(
        any::<u8>().prop_filter("no delimiter", |b| *b != b'\n'),
        0..MAX_FRAME,
    );
    prop_oneof![
        length(1, Endian::Big),
        length(2, Endian::Big),
        length(2, Endian::Little),
        length(4, Endian::Big),
        length(4, Endian::Little),
        length(8, Endian::Big),
        length(8, Endian::Little),
        prop::collection::vec(line_payload, 0..40).prop_map(|p| (Framing::Line, p)),
        (1..64usize).prop_flat_map(|n| {
            prop::collection::vec(prop::collection::vec(any::<u8>(), n), 0..40)
                .prop_map(move |p| (Framing::Fixed(n), p))
        }),
    ]
}

/// Feeds `stream` in chunks of the given sizes (cycled), decoding after each one as
/// the reactor does, and checks that the buffer never holds more than one pending
/// frame plus the last read.
fn feed(codec: &mut Codec, stream: &[u8], chunks: &[usize]) -> Result<Vec<Bytes>, FrameError> {
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut rest = stream;
    for &size in chunks.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (chunk, tail) = rest.split_at(size.clamp(1, rest.len()));
        rest = tail;
        buf.extend_from_slice(chunk);
        while let Some(frame) = decode_frame(codec, &mut buf)? {
            frames.push(frame);
        }
        assert!(
            buf.len() <= codec.max_pending() + chunk.len(),
            "buffered {} > pending {} + read {}",
            buf.len(),
            codec.max_pending(),
            chunk.len()
        );
    }
    Ok(frames)
}

fn encode_all(codec: &Codec, payloads: &[Vec<u8>]) -> (BytesMut, Vec<Bytes>) {
    let mut stream = BytesMut::new();
    let mut frames = Vec::new();
    for payload in payloads {
        let mut frame = BytesMut::new();
        codec.encode(payload, &mut frame).unwrap();
        stream.extend_from_slice(&frame);
        frames.push(frame.freeze());
    }
    (stream, frames)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_split_yields_the_same_frames(
        (framing, payloads) in framing_and_payloads(),
        chunks in prop::collection::vec(1..700usize, 1..20),
    ) {
        let mut codec = Codec::new(framing, MAX_FRAME);
        let (stream, expected) = encode_all(&codec, &payloads);
        let frames = feed(&mut codec, &stream, &chunks).unwrap();
        prop_assert_eq!(&frames, &expected);
        for (frame, payload) in frames.iter().zip(&payloads) {
            prop_assert_eq!(codec.payload(frame), &payload[..]);
        }
    }

    #[test]
    fn byte_at_a_time_yields_the_same_frames((framing, payloads) in framing_and_payloads()) {
        let mut codec = Codec::new(framing, MAX_FRAME);
        let (stream, expected) = encode_all(&codec, &payloads);
        prop_assert_eq!(feed(&mut codec, &stream, &[1]).unwrap(), expected);
    }

    #[test]
    fn scan_finds_the_same_runs_as_frame_by_frame(
        (framing, payloads) in framing_and_payloads(),
        chunks in prop::collection::vec(1..700usize, 1..20),
    ) {
        let mut codec = Codec::new(framing, MAX_FRAME);
        let (stream, expected) = encode_all(&codec, &payloads);
        let mut buf = BytesMut::new();
        let (mut frames, mut out) = (0, BytesMut::new());
        let mut rest = &stream[..];
        for &size in chunks.iter().cycle() {
            if rest.is_empty() { break; }
            let (chunk, tail) = rest.split_at(size.min(rest.len()));
            rest = tail;
            buf.extend_from_slice(chunk);
            loop {
                let run = codec.scan(&buf).unwrap();
                if run.is_incomplete() { break; }
                frames += run.frames;
                out.extend_from_slice(&buf.split_to(run.len));
            }
        }
        prop_assert_eq!(frames, expected.len());
        prop_assert_eq!(&out[..], &stream[..]);
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn raw_passes_every_byte_through(
        stream in prop::collection::vec(any::<u8>(), 0..2000),
        chunks in prop::collection::vec(1..300usize, 1..10),
    ) {
        let mut codec = Codec::new(Framing::Raw, MAX_FRAME);
        let frames = feed(&mut codec, &stream, &chunks).unwrap();
        prop_assert!(frames.iter().all(|f| !f.is_empty()));
        prop_assert_eq!(frames.concat(), stream);
    }

    #[test]
    fn arbitrary_bytes_never_panic_or_overgrow(
        framing in prop_oneof![
            Just("u8"), Just("u16le"), Just("u32be"), Just("u64le"), Just("line"), Just("fixed:7"), Just("raw")
        ],
        skip in any::<bool>(),
        stream in prop::collection::vec(any::<u8>(), 0..4000),
        chunks in prop::collection::vec(1..500usize, 1..10),
    ) {
        let framing: Framing = framing.parse().unwrap();
        let oversize = if skip { Oversize::Skip } else { Oversize::Close };
        let mut codec = Codec::with_oversize(framing, 64, oversize);
        if let Ok(frames) = feed(&mut codec, &stream, &chunks) {
            // Whatever came out re-encodes to the very same bytes.
            for frame in frames {
                let mut again = BytesMut::new();
                codec.encode(codec.payload(&frame), &mut again).unwrap();
                // A CRLF line re-encodes with a bare LF unless its payload ends in CR.
                let lf_for_crlf = framing == Framing::Line
                    && frame.ends_with(b"\r\n")
                    && !codec.payload(&frame).ends_with(b"\r");
                if !lf_for_crlf {
                    prop_assert_eq!(&again[..], &frame[..]);
                }
            }
        } else {
            prop_assert!(!skip, "the skip policy never reports an error");
        }
    }

    #[test]
    fn skip_policy_recovers_the_frames_around_an_oversized_one(
        width in prop::sample::select(vec![2usize, 4, 8]),
        before in prop::collection::vec(any::<u8>(), 0..64),
        after in prop::collection::vec(any::<u8>(), 0..64),
        huge in 65..5000usize,
        chunks in prop::collection::vec(1..900usize, 1..10),
    ) {
        let framing = Framing::Length { width, endian: Endian::Big };
        let mut codec = Codec::with_oversize(framing, 64, Oversize::Skip);
        let mut stream = BytesMut::new();
        codec.encode(&before, &mut stream).unwrap();
        codec.encode(&vec![7; huge], &mut stream).unwrap();
        codec.encode(&after, &mut stream).unwrap();
        let frames = feed(&mut codec, &stream, &chunks).unwrap();
        let payloads: Vec<&[u8]> = frames.iter().map(|f| codec.payload(f)).collect();
        prop_assert_eq!(payloads, vec![&before[..], &after[..]]);
    }
}

#[test]
fn decode_frame_stops_at_an_error_after_earlier_frames() {
    let mut codec = Codec::new(
        Framing::Length {
            width: 1,
            endian: Endian::Big,
        },
        4,
    );
    let mut buf = BytesMut::from(&b"\x01a\x09xxxx"[..]);
    assert_eq!(
        &decode_frame(&mut codec, &mut buf).unwrap().unwrap()[..],
        b"\x01a"
    );
    assert_eq!(
        decode_frame(&mut codec, &mut buf),
        Err(FrameError::TooLong { len: 9, max: 4 })
    );
}

#[test]
fn scan_returns_frames_before_a_bad_header_then_the_error() {
    let mut codec = Codec::new(
        Framing::Length {
            width: 1,
            endian: Endian::Big,
        },
        4,
    );
    let mut buf = BytesMut::from(&b"\x01a\x00\x09xxxx"[..]);
    let run = codec.scan(&buf).unwrap();
    assert_eq!((run.len, run.frames, run.skip), (3, 2, 0));
    buf.advance(run.len);
    assert_eq!(
        codec.scan(&buf),
        Err(FrameError::TooLong { len: 9, max: 4 })
    );
}
