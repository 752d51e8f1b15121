//! `--goodbye`: before a policy close the daemon sends one last frame saying why, in
//! the connection's framing, so a client can tell a policy close from a crash.

mod common;

use std::io::{BufReader, Read, Write};

use common::{read_frame_u32be, Daemon};

/// The frames a client receives until the stream ends.
fn frames_until_closed(stream: &std::net::TcpStream) -> Vec<String> {
    let mut reader = BufReader::new(stream);
    let mut frames = Vec::new();
    while let Some(payload) = read_frame_u32be(&mut reader) {
        frames.push(String::from_utf8_lossy(&payload).into_owned());
    }
    frames
}

#[test]
fn a_protocol_error_is_explained_before_the_close() {
    let daemon = Daemon::start(&["--goodbye"]);
    let mut client = daemon.connect();
    client.write_all(&common::frame_u32be(b"fine")).unwrap();
    client.write_all(b"hello\n").unwrap(); // "hell" read as a length
    let frames = frames_until_closed(&client);
    assert_eq!(frames.len(), 2, "{frames:?}");
    assert_eq!(frames[0], "fine");
    assert!(
        frames[1].starts_with(
            "framecast: closing: protocol error: declared frame length 1751477356 exceeds"
        ),
        "{frames:?}"
    );
}

#[test]
fn an_idle_timeout_is_explained_before_the_close() {
    let daemon = Daemon::start(&["--goodbye", "--idle-timeout", "300ms"]);
    let client = daemon.connect();
    assert_eq!(
        frames_until_closed(&client),
        ["framecast: closing: idle timeout"]
    );
}

#[test]
fn a_frame_timeout_is_explained_before_the_close() {
    let daemon = Daemon::start(&["--goodbye", "--frame-timeout", "300ms"]);
    let mut client = daemon.connect();
    client.write_all(&[0, 0, 0, 9, b'h']).unwrap(); // a frame begun, never finished
    let frames = frames_until_closed(&client);
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert!(
        frames[0].starts_with("framecast: closing: frame timeout"),
        "{frames:?}"
    );
}

#[test]
fn the_connection_limit_is_explained_to_the_one_refused() {
    let daemon = Daemon::start(&["--goodbye", "--max-connections", "1"]);
    let mut first = daemon.connect();
    common::echo_roundtrip(&mut first, &common::frame_u32be(b"in"));
    let second = daemon.connect();
    assert_eq!(
        frames_until_closed(&second),
        ["framecast: closing: connection limit"]
    );
}

#[test]
fn a_shutdown_is_explained_to_every_client_after_its_answers() {
    let mut daemon = Daemon::start(&["--goodbye"]);
    let mut client = daemon.connect();
    common::echo_roundtrip(&mut client, &common::frame_u32be(b"before"));
    daemon.signal("TERM");
    assert_eq!(
        frames_until_closed(&client),
        ["framecast: closing: shutdown"]
    );
    assert_eq!(daemon.wait_exit(common::TIMEOUT), Some(0));
}

#[test]
fn line_and_fixed_framings_get_the_goodbye_in_their_own_form() {
    let daemon = Daemon::start(&["--goodbye", "--idle-timeout", "300ms", "--framing", "line"]);
    let mut client = daemon.connect();
    let mut text = String::new();
    client.read_to_string(&mut text).unwrap();
    assert_eq!(text, "framecast: closing: idle timeout\n");

    let daemon = Daemon::start(&[
        "--goodbye",
        "--idle-timeout",
        "300ms",
        "--framing",
        "fixed:8",
    ]);
    let mut client = daemon.connect();
    let mut bytes = Vec::new();
    client.read_to_end(&mut bytes).unwrap();
    assert_eq!(bytes, b"framecas", "cut to one fixed frame");
}

#[test]
fn without_the_flag_nothing_is_said() {
    let daemon = Daemon::start(&["--idle-timeout", "300ms"]);
    let client = daemon.connect();
    assert!(frames_until_closed(&client).is_empty());
}
