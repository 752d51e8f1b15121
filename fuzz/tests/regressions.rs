//! Replays every saved input under `regressions/<target>/` through the harness, without
//! libFuzzer, and pins the findings as plain unit tests.

use std::fs;
use std::path::Path;

use bytes::BytesMut;
use framecast::codec::{Codec, Decoder, Encoder, Oversize};
use framecast::Framing;
use framecast_fuzz::{check, Target};

#[test]
fn saved_inputs_pass_the_harness() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("regressions");
    let targets = [
        ("length", Target::Length),
        ("line", Target::Line),
        ("fixed", Target::Fixed),
        ("raw", Target::Raw),
    ];
    let mut replayed = 0;
    for (name, target) in targets {
        let Ok(dir) = fs::read_dir(root.join(name)) else {
            continue;
        };
        for entry in dir {
            let path = entry.unwrap().path();
            let data = fs::read(&path).unwrap();
            eprintln!("replaying {}", path.display());
            check(target, &data);
            replayed += 1;
        }
    }
    assert!(replayed > 0, "no saved inputs under {}", root.display());
}

/// Finding 1 (fixed in 690da2e): the minimized fuzz input is the stream `\r\r\n`.
#[test]
fn line_payload_ending_in_cr_round_trips() {
    let mut codec = Codec::with_oversize(Framing::Line, 16, Oversize::Close);
    let mut wire = BytesMut::new();
    codec.encode(b"\r", &mut wire).unwrap();
    let decoded = codec.decode(&wire).unwrap();
    assert_eq!(
        (decoded, codec.payload(&wire)),
        (framecast::codec::Decoded::Frame(wire.len()), &b"\r"[..]),
        "encode(b\"\\r\") = b\"{}\"",
        wire.escape_ascii()
    );
}
