//! Decode throughput: frames per second for `u32be` and `line` at 16 B, 512 B and
//! 64 KiB payloads, many frames per buffer, both frame by frame (each frame its own
//! zero-copy `Bytes`, `decode_frame`) and as runs (`Codec::scan`, what the reactor does).

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use framecast::codec::{decode_frame, Codec, Encoder};
use framecast::Framing;

/// Bytes of encoded frames per measured buffer.
const BUFFER: usize = 1 << 20;

fn stream(codec: &Codec, payload_len: usize) -> (BytesMut, u64) {
    let payload = vec![b'x'; payload_len];
    let mut buf = BytesMut::with_capacity(BUFFER + payload_len + 8);
    let mut frames = 0;
    while buf.len() < BUFFER {
        codec
            .encode(&payload, &mut buf)
            .unwrap_or_else(|e| panic!("encode: {e}"));
        frames += 1;
    }
    (buf, frames)
}

fn decode(c: &mut Criterion) {
    for framing in ["u32be", "line"] {
        let framing: Framing = framing.parse().unwrap_or_else(|e| panic!("{e}"));
        let mut group = c.benchmark_group(format!("decode/{framing}"));
        for (label, size) in [("16B", 16), ("512B", 512), ("64KiB", 64 << 10)] {
            let codec = Codec::new(framing, 8 << 20);
            let (wire, frames) = stream(&codec, size);
            group.throughput(Throughput::Elements(frames));
            group.bench_function(format!("frames/{label}"), |b| {
                let mut codec = codec.clone();
                b.iter_batched_ref(
                    || wire.clone(),
                    |buf| {
                        while let Ok(Some(frame)) = decode_frame(&mut codec, buf) {
                            black_box(frame);
                        }
                    },
                    BatchSize::LargeInput,
                );
            });
            group.bench_function(format!("runs/{label}"), |b| {
                let mut codec = codec.clone();
                b.iter(|| {
                    let mut rest = &wire[..];
                    let mut count = 0;
                    while let Ok(run) = codec.scan(rest) {
                        if run.is_incomplete() {
                            break;
                        }
                        count += run.frames;
                        rest = &rest[run.len + run.skip..];
                    }
                    black_box(count)
                });
            });
        }
        group.finish();
    }
}

criterion_group!(benches, decode);
criterion_main!(benches);
