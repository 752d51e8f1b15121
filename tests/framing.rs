//! Every framing over real sockets: frames come back byte-exact whatever the chunking,
//! and a partial frame is never echoed.

mod common;

use std::io::Write;
use std::net::TcpStream;

use common::{finish, read_n, Daemon, Rng};

/// Encodes `payload` with a `width`-byte length header in the given byte order.
fn length_frame(width: usize, big_endian: bool, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u64;
    let mut frame = if big_endian {
        len.to_be_bytes()[8 - width..].to_vec()
    } else {
        len.to_le_bytes()[..width].to_vec()
    };
    frame.extend_from_slice(payload);
    frame
}

/// Writes `wire` in random small pieces, so frames straddle writes.
fn write_chunked(stream: &mut TcpStream, wire: &[u8], seed: u64) {
    let mut rng = Rng::new(seed);
    let mut rest = wire;
    while !rest.is_empty() {
        let n = (1 + rng.below(700)).min(rest.len());
        stream.write_all(&rest[..n]).unwrap();
        rest = &rest[n..];
    }
}

/// Starts a daemon with `framing`, sends `wire` chunked, expects it all back, then
/// half-closes and expects nothing more: `wire` must hold only complete frames.
fn assert_echoes(framing: &str, wire: &[u8]) {
    let daemon = Daemon::start(&["--framing", framing]);
    let mut client = daemon.connect();
    write_chunked(&mut client, wire, wire.len() as u64);
    assert!(
        read_n(&mut client, wire.len()) == wire,
        "{framing}: echo differs"
    );
    finish(&mut client, b"");
}

#[test]
fn every_length_prefix_width_and_order() {
    let cases = [
        ("u8", 1, true),
        ("u16be", 2, true),
        ("u16le", 2, false),
        ("u32be", 4, true),
        ("u32le", 4, false),
        ("u64be", 8, true),
        ("u64le", 8, false),
    ];
    for (name, width, big_endian) in cases {
        let mut rng = Rng::new(width as u64 * 7 + big_endian as u64);
        let max = if width == 1 { 256 } else { 5000 };
        let wire: Vec<u8> = (0..100)
            .flat_map(|_| {
                let len = rng.below(max);
                length_frame(width, big_endian, &rng.bytes(len))
            })
            .collect();
        assert_echoes(name, &wire);
    }
}

#[test]
fn little_endian_header_is_what_struct_pack_i_sends() {
    // struct.pack('i', 3) + b'abc' on x86.
    assert_echoes("u32le", b"\x03\x00\x00\x00abc");
}

#[test]
fn line_with_lf_and_crlf() {
    let mut wire = Vec::new();
    for i in 0..300 {
        let end: &[u8] = if i % 2 == 0 { b"\n" } else { b"\r\n" };
        wire.extend_from_slice(format!("line {i}: {}", "x".repeat(i * 3)).as_bytes());
        wire.extend_from_slice(end);
    }
    wire.extend_from_slice(b"\n\r\n");
    assert_echoes("line", &wire);
}

#[test]
fn fixed_size_frames() {
    let wire = Rng::new(3).bytes(48 * 200);
    assert_echoes("fixed:48", &wire);
}

#[test]
fn raw_echoes_whatever_arrives() {
    let wire = Rng::new(5).bytes(300_000);
    let daemon = Daemon::start(&["--framing", "raw"]);
    let mut client = daemon.connect();
    write_chunked(&mut client, &wire, 1);
    finish(&mut client, &wire);
}

#[test]
fn a_partial_frame_is_never_echoed() {
    // The same trailing bytes that raw framing echoes at once are held back by every
    // real framing until the frame completes; at end of stream they are dropped.
    let cases: [(&str, &[u8], &[u8]); 4] = [
        ("u8", b"\x02ok\x05abc", b"\x02ok"),
        ("u32le", b"\x01\x00\x00\x00!\x09\x00", b"\x01\x00\x00\x00!"),
        ("line", b"done\r\nnot yet", b"done\r\n"),
        ("fixed:4", b"abcdefg", b"abcd"),
    ];
    for (framing, sent, complete) in cases {
        let daemon = Daemon::start(&["--framing", framing]);
        let mut client = daemon.connect();
        client.write_all(sent).unwrap();
        finish(&mut client, complete);
    }
}
