//! Per-connection deadlines over real sockets: idle, slowloris and stalled-writer
//! connections are closed; their neighbours are not.

mod common;

use std::io::{self, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use common::{echo_roundtrip, frame_u32be, read_to_end, Daemon, TIMEOUT};

/// Writes `bytes` one at a time, `gap` apart, until the daemon closes the connection;
/// returns how many were written.
fn trickle(stream: &mut TcpStream, bytes: &[u8], gap: Duration) -> usize {
    for (i, byte) in bytes.iter().enumerate() {
        if stream.write_all(std::slice::from_ref(byte)).is_err() {
            return i;
        }
        thread::sleep(gap);
    }
    bytes.len()
}

#[test]
fn idle_connection_is_closed_and_a_busy_one_is_not() {
    let daemon = Daemon::start(&["--idle-timeout", "1s"]);
    let mut idle = daemon.connect();
    let mut busy = daemon.connect();
    let start = Instant::now();
    // The busy client exchanges a frame every 100 ms for well past the idle timeout
    // (ten times the interval, so a loaded test machine does not make it look idle).
    while start.elapsed() < Duration::from_millis(2500) {
        echo_roundtrip(&mut busy, &frame_u32be(b"ping"));
        thread::sleep(Duration::from_millis(100));
    }
    // The idle one was closed (it reads the end of stream at once).
    assert_eq!(read_to_end(&mut idle), b"");
    let idle_addr = idle.local_addr().unwrap();
    daemon.wait_for_log(&format!("{idle_addr}: closed (idle timeout)"));
    echo_roundtrip(&mut busy, &frame_u32be(b"still here"));
}

#[test]
fn slowloris_frame_is_cut_off_by_the_frame_timeout() {
    let daemon = Daemon::start(&["--frame-timeout", "500ms"]);
    let mut good = daemon.connect();
    let mut slow = daemon.connect();
    let slow_addr = slow.local_addr().unwrap();
    // A 60-byte frame at one byte per 100 ms would take 6 s.
    let frame = frame_u32be(&[b's'; 56]);
    let started = Instant::now();
    let sent = trickle(&mut slow, &frame, Duration::from_millis(100));
    assert!(
        sent < frame.len(),
        "the daemon let a slowloris frame trickle in for {:?}",
        started.elapsed()
    );
    daemon.wait_for_log(&format!("{slow_addr}: closed (frame timeout"));
    echo_roundtrip(&mut good, &frame_u32be(b"unaffected"));
}

#[test]
fn a_slow_frame_that_completes_in_time_is_echoed() {
    let daemon = Daemon::start(&["--frame-timeout", "2s"]);
    let mut client = daemon.connect();
    let frame = frame_u32be(b"in three pieces");
    for piece in frame.chunks(7) {
        client.write_all(piece).unwrap();
        thread::sleep(Duration::from_millis(150));
    }
    assert_eq!(common::read_n(&mut client, frame.len()), frame);
    // Frames keep arriving in pieces; each gets its own clock.
    for _ in 0..3 {
        for piece in frame.chunks(7) {
            client.write_all(piece).unwrap();
            thread::sleep(Duration::from_millis(300));
        }
        assert_eq!(common::read_n(&mut client, frame.len()), frame);
    }
}

#[test]
fn a_half_frame_left_by_a_backpressured_read_stays_on_the_clock() {
    // The read that completes a 16 MiB frame (more than the socket takes at once, so
    // reading pauses) also brings the first bytes of the next frame and empties the
    // socket. Once the echo is read and reading resumes, that half frame is still on
    // the frame clock, though no byte arrives to restart it.
    let daemon = Daemon::start(&[
        "--frame-timeout",
        "1s",
        "--max-output",
        "64KiB",
        "--max-frame",
        "32MiB",
    ]);
    let mut client = daemon.connect();
    let addr = client.local_addr().unwrap();
    let big = frame_u32be(&vec![b'b'; 16 << 20]);
    let (head, tail) = big.split_at(big.len() - 100);
    let mut last = tail.to_vec();
    last.extend_from_slice(&frame_u32be(b"0123456789")[..8]);
    let mut writer = client.try_clone().unwrap();
    let head = head.to_vec();
    let sender = thread::spawn(move || {
        writer.write_all(&head).unwrap();
        // One write: the end of the big frame and the start of the next arrive together.
        writer.write_all(&last).unwrap();
    });
    assert!(common::read_n(&mut client, big.len()) == big);
    sender.join().unwrap();
    daemon.wait_for_log(&format!("{addr}: closed (frame timeout"));
}

#[test]
fn writer_that_never_reads_is_closed_by_the_write_timeout() {
    let daemon = Daemon::start(&["--write-timeout", "500ms", "--max-output", "64KiB"]);
    let mut good = daemon.connect();
    let mut hog = daemon.connect();
    let hog_addr = hog.local_addr().unwrap();
    hog.set_write_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let frame = frame_u32be(&[0xEE; 16 << 10]);
    let deadline = Instant::now() + TIMEOUT;
    let mut sent = 0usize;
    // Write without reading until the daemon gives up on us (our writes then fail).
    loop {
        assert!(
            Instant::now() < deadline,
            "the stalled connection was never closed"
        );
        match hog.write(&frame[sent % frame.len()..]) {
            Ok(n) => sent += n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break, // reset: closed by the daemon
        }
        if daemon
            .stderr()
            .contains(&format!("{hog_addr}: closed (write timeout"))
        {
            break;
        }
    }
    daemon.wait_for_log(&format!(
        "{hog_addr}: closed (write timeout: pending output made no progress)"
    ));
    echo_roundtrip(&mut good, &frame_u32be(b"unaffected"));
}
