//! Hostile and careless clients: a 4 GiB declared length, a client that never reads,
//! more clients than allowed. Each is contained; nobody else notices; memory stays flat.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;

use common::{echo_roundtrip, finish, frame_u32be, read_to_end, write_until_blocked, Daemon};

#[test]
fn four_gib_declared_length_closes_only_that_connection_and_costs_nothing() {
    let mut daemon = Daemon::start(&[]);
    let mut good = daemon.connect();
    echo_roundtrip(&mut good, &frame_u32be(&[1; 100_000]));
    let before = daemon.rss_kib();

    let mut hostile = daemon.connect();
    let mut wire = frame_u32be(b"ok");
    wire.extend_from_slice(&u32::MAX.to_be_bytes());
    wire.extend_from_slice(&[0xAB; 1000]);
    hostile.write_all(&wire).unwrap();
    // The complete frame before the bad header is still echoed, then the close.
    assert_eq!(read_to_end(&mut hostile), frame_u32be(b"ok"));
    daemon.wait_for_log(
        "protocol error: declared frame length 4294967295 exceeds the maximum 8388608",
    );

    echo_roundtrip(&mut good, &frame_u32be(b"unaffected"));
    let after = daemon.rss_kib();
    assert!(
        after < before + 1024,
        "RSS grew from {before} KiB to {after} KiB"
    );
    daemon.assert_alive();
}

#[test]
fn line_longer_than_max_frame_is_a_protocol_error() {
    let daemon = Daemon::start(&["--framing", "line", "--max-frame", "1KiB"]);
    let mut client = daemon.connect();
    client.write_all(b"short\n").unwrap();
    client.write_all(&[b'x'; 4096]).unwrap();
    assert_eq!(read_to_end(&mut client), b"short\n");
    daemon.wait_for_log("line longer than the maximum 1024 bytes without a delimiter");
}

#[test]
fn client_that_never_reads_stays_bounded_in_server_memory() {
    let mut daemon = Daemon::start(&["--max-output", "1MiB", "--max-frame", "64KiB"]);
    let mut bystander = daemon.connect();
    echo_roundtrip(&mut bystander, &frame_u32be(&[7; 50_000]));
    let before = daemon.rss_kib();

    // Write frames without ever reading, until the daemon stops reading us (our writes
    // block for a while) or 256 MiB have gone out.
    let mut hog = daemon.connect();
    let frame = frame_u32be(&[0x5A; 60_000]);
    let mut sent = write_until_blocked(&mut hog, &frame, 256 << 20);
    assert!(
        sent < 256 << 20,
        "the daemon kept reading from a client that never reads"
    );

    // Bounded: max-output + max-frame + buffers, not what was sent.
    let after = daemon.rss_kib();
    assert!(
        after < before + 8 * 1024,
        "RSS grew from {before} KiB to {after} KiB after {sent} bytes sent"
    );
    // The bystander does not notice.
    echo_roundtrip(&mut bystander, &frame_u32be(b"still fast"));

    // Once the hog reads, everything it sent comes back: nothing was dropped.
    let received = {
        let reader = hog.try_clone().unwrap();
        let counter = thread::spawn(move || count_until_close(reader));
        // Finish the partial frame we may have left, then half-close.
        let partial = sent % frame.len();
        if partial != 0 {
            hog.write_all(&frame[partial..]).unwrap();
            sent += frame.len() - partial;
        }
        hog.shutdown(std::net::Shutdown::Write).unwrap();
        counter
            .join()
            .unwrap_or_else(|_| panic!("{}", daemon.stderr()))
    };
    assert_eq!(
        received,
        sent,
        "bytes echoed vs bytes sent:\n{}",
        daemon.stderr()
    );
    daemon.assert_alive();
}

/// Reads until close, checking every byte is part of a well-formed echo stream.
fn count_until_close(mut stream: TcpStream) -> usize {
    let mut total = 0;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return total,
            Ok(n) => total += n,
            Err(e) => panic!("reading the echo back after {total} bytes: {e}"),
        }
    }
}

#[test]
fn oversize_skip_discards_a_100_mib_frame_and_keeps_the_connection() {
    let mut daemon = Daemon::start(&["--oversize", "skip", "--max-frame", "1MiB"]);
    let mut client = daemon.connect();
    echo_roundtrip(&mut client, &frame_u32be(b"before"));
    let before = daemon.rss_kib();

    let mut writer = client.try_clone().unwrap();
    let sender = thread::spawn(move || {
        writer.write_all(&(100u32 << 20).to_be_bytes()).unwrap();
        let chunk = vec![0x42; 1 << 20];
        for _ in 0..100 {
            writer.write_all(&chunk).unwrap();
        }
        writer.write_all(&frame_u32be(b"after the giant")).unwrap();
    });
    // Nothing of the skipped frame comes back; the next frame does.
    assert_eq!(
        common::read_n(&mut client, 4 + 15),
        frame_u32be(b"after the giant")
    );
    sender.join().unwrap();
    daemon.wait_for_log(
        "skipping oversized frame: declared frame length 104857600 exceeds the maximum 1048576",
    );
    let after = daemon.rss_kib();
    assert!(
        after < before + 4 * 1024,
        "RSS grew from {before} KiB to {after} KiB"
    );
    finish(&mut client, b"");
    daemon.assert_alive();
}

#[test]
fn oversize_skip_discards_an_overlong_line_up_to_its_delimiter() {
    let daemon = Daemon::start(&[
        "--framing",
        "line",
        "--oversize",
        "skip",
        "--max-frame",
        "1KiB",
    ]);
    let mut client = daemon.connect();
    let mut wire = b"first\r\n".to_vec();
    wire.extend(vec![b'x'; 300_000]);
    wire.extend_from_slice(b"\nsecond\n");
    client.write_all(&wire).unwrap();
    finish(&mut client, b"first\r\nsecond\n");
}

#[test]
fn quiet_connections_give_back_their_read_buffers_and_keep_half_frames() {
    let daemon = Daemon::start(&[]);
    let big = frame_u32be(&[7; 300_000]);
    let mut quiet: Vec<TcpStream> = (0..40).map(|_| daemon.connect()).collect();
    for stream in &mut quiet {
        echo_roundtrip(stream, &big);
    }
    // One connection stops in the middle of a frame: its buffered half must survive.
    let mut halfway = daemon.connect();
    let frame = frame_u32be(&[3; 50_000]);
    halfway.write_all(&frame[..20_000]).unwrap();
    let before = daemon.rss_kib();

    // Two seconds without a frame, then the next sweep: every quiet buffer goes back.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while daemon.stderr().matches("quiet, released its").count() < quiet.len() {
        assert!(
            std::time::Instant::now() < deadline,
            "not every quiet buffer was released:\n{}",
            daemon.stderr()
        );
        thread::sleep(std::time::Duration::from_millis(50));
    }
    // 40 buffers of at least 256 KiB each: 10 MiB; at least 8 MiB must be gone.
    let after = daemon.rss_kib();
    assert!(
        after + 8 * 1024 < before,
        "RSS {before} KiB with the buffers held, still {after} KiB after the release"
    );

    halfway.write_all(&frame[20_000..]).unwrap();
    let mut echoed = vec![0; frame.len()];
    halfway.read_exact(&mut echoed).unwrap();
    assert!(echoed == frame, "the half-received frame was damaged");
    for stream in &mut quiet {
        echo_roundtrip(stream, &frame_u32be(b"still here"));
    }
    assert!(
        !daemon.stderr().contains(&format!(
            "{}: quiet, released",
            halfway.local_addr().unwrap()
        )),
        "a half-received frame's buffer was released"
    );
}

#[test]
fn tiny_frames_queued_for_a_slow_reader_do_not_pin_large_buffers() {
    // A client that does not read its echoes, so each new echo waits in the queue.
    // Every cycle, a skipped overlong line grows the read buffer past 1 MiB, then a
    // 2-byte frame is cut from that buffer and queued. Were it split off without a
    // copy, each of those 2 bytes would keep its megabyte buffer alive.
    let mut daemon = Daemon::start(&[
        "--framing",
        "line",
        "--oversize",
        "skip",
        "--max-frame",
        "1MiB",
        "--max-output",
        "64MiB",
        "--write-timeout",
        "off",
    ]);
    let mut client = daemon.connect();
    let mut line = vec![b'y'; 999];
    line.push(b'\n');
    // Fill the sockets' buffers so echoes queue in the daemon from now on.
    let filled = write_until_blocked(&mut client, &line.repeat(64), 8 << 20);
    assert!(filled > 0);
    thread::sleep(std::time::Duration::from_millis(300));
    let before = daemon.rss_kib();
    let mut overlong = vec![b'x'; (1 << 20) + 1];
    overlong.extend_from_slice(b"\nt\n");
    for _ in 0..40 {
        client.write_all(&overlong).unwrap();
        thread::sleep(std::time::Duration::from_millis(10));
    }
    thread::sleep(std::time::Duration::from_millis(300));
    let after = daemon.rss_kib();
    assert!(
        after < before + (16 << 10),
        "RSS grew from {before} KiB to {after} KiB for 80 queued bytes"
    );
    // The daemon still serves; the queue is intact and in order.
    let mut other = daemon.connect();
    echo_roundtrip(&mut other, b"still here\n");
    drop(client);
    daemon.assert_alive();
}
