//! Broadcast flow control (`--slow-consumer pace`, the default) and rooms, over real
//! sockets: readers that keep reading, however slowly, get every frame of a burst far
//! larger than the cap, in order; a reader that stops holds the room back for at most
//! the timeout and is then closed, with a goodbye that says why; memory stays within
//! the caps; a slow reader in one room never slows another room.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::thread;
use std::time::Duration;

use common::{frame_u32be, read_frame_u32be, Daemon};

const FRAMES: u32 = 400;
const SIZE: usize = 64 << 10;

/// Frame `seq` of a burst: its number, then bytes that depend on it.
fn burst_payload(seq: u32) -> Vec<u8> {
    let mut p = seq.to_be_bytes().to_vec();
    p.extend((0..SIZE - 4).map(|i| (i as u32).wrapping_mul(31).wrapping_add(seq) as u8));
    p
}

/// Reads `FRAMES` frames and checks each is the next of the burst; `delay` after each.
fn read_burst(mut stream: TcpStream, delay: Duration) -> u32 {
    for seq in 0..FRAMES {
        let Some(p) = read_frame_u32be(&mut stream) else {
            return seq;
        };
        if p.len() != SIZE {
            // A goodbye: this reader was closed as a slow consumer.
            panic!(
                "reader closed at frame {seq}: {}",
                String::from_utf8_lossy(&p)
            );
        }
        assert!(
            p == burst_payload(seq),
            "frame {seq} corrupted or out of order"
        );
        thread::sleep(delay);
    }
    FRAMES
}

/// The daemon's peak resident set, in KiB.
fn peak_rss_kib(daemon: &Daemon) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", daemon.pid())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// The user's scenario: ten readers (three of them pausing `slow` after each frame), one client that never reads,
/// and a publisher that sends 400 frames of 64 KiB (25 MiB) as fast as it can.
fn burst(cap: Option<(&str, u64)>, slow: Duration) {
    let mut args = vec![
        "--mode",
        "broadcast",
        // Far above the longest stretch a live reader holds the publisher (half the cap at
        // its pace: 256 ms at the default cap), so a loaded machine does not close one.
        "--slow-consumer-timeout",
        "3s",
        "--goodbye",
    ];
    let cap_kib = match cap {
        Some((flag, kib)) => {
            args.extend(["--max-output", flag]);
            kib
        }
        None => 4096,
    };
    let daemon = Daemon::start(&args);
    let readers: Vec<TcpStream> = (0..10).map(|_| daemon.connect()).collect();
    let mut stalled = daemon.connect();
    let mut publisher = daemon.connect();
    daemon.wait_for_log("12 open)");

    let readers: Vec<_> = readers
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            let delay = if i < 3 { slow } else { Duration::ZERO };
            thread::spawn(move || read_burst(s, delay))
        })
        .collect();
    let sender = thread::spawn(move || {
        for seq in 0..FRAMES {
            publisher
                .write_all(&frame_u32be(&burst_payload(seq)))
                .unwrap_or_else(|e| panic!("publishing frame {seq}: {e}"));
        }
        publisher
    });
    // The publisher gets through only because the reader that stopped is closed once it
    // has held the room for the timeout: without that it would wait for ever.
    let _publisher = sender.join().expect("publisher");
    for (i, reader) in readers.into_iter().enumerate() {
        assert_eq!(
            reader.join().expect("reader"),
            FRAMES,
            "reader {i} lost frames"
        );
    }

    // The stopped reader now reads what it was sent before it was closed: whole frames
    // in order, then the goodbye, then the end of the stream.
    let mut got = 0;
    let goodbye = loop {
        let p = read_frame_u32be(&mut stalled).expect("a goodbye before the end");
        if p.len() != SIZE {
            break String::from_utf8(p).expect("goodbye text");
        }
        assert!(
            p == burst_payload(got),
            "stalled reader: frame {got} corrupted"
        );
        got += 1;
    };
    assert!(got < FRAMES, "the stopped reader was not closed");
    assert!(
        goodbye.starts_with("framecast: closing: slow consumer (backlog "),
        "{goodbye}"
    );
    assert!(
        read_frame_u32be(&mut stalled).is_none(),
        "end after the goodbye"
    );

    // Memory: each of the 11 recipients holds at most the cap plus one read of the
    // publisher's frames and the chunk being written; without pace holding the
    // publisher, the stopped reader alone would pile up some 20 MiB.
    let peak = peak_rss_kib(&daemon);
    let bound = 11 * (cap_kib + 2 * 256 + 64) + 16 * 1024;
    assert!(peak < bound, "peak RSS {peak} KiB over {bound} KiB");
}

#[test]
fn pace_loses_nothing_for_readers_that_keep_reading_at_the_default_cap() {
    burst(None, Duration::from_millis(8));
}

#[test]
fn pace_loses_nothing_for_readers_that_keep_reading_at_one_mib() {
    burst(Some(("1MiB", 1024)), Duration::from_millis(3));
}

/// Joins `room` on a new connection.
fn join(daemon: &Daemon, room: &str) -> TcpStream {
    let mut s = daemon.connect();
    s.write_all(&frame_u32be(room.as_bytes())).unwrap();
    s
}

#[test]
fn rooms_keep_their_frames_to_themselves() {
    let daemon = Daemon::start(&["--mode", "broadcast", "--rooms", "--echo-self"]);
    let mut a1 = join(&daemon, "a");
    let mut a2 = join(&daemon, "a");
    let mut b1 = join(&daemon, "b");
    daemon.wait_for_log("joined room \"a\" (2 members)");
    daemon.wait_for_log("joined room \"b\" (1 members)");
    // A join is not a publication: a2 and b1 must not see "a" or "b" as frames. The
    // frames after the join in the same write are published, in order.
    let mut two = frame_u32be(b"b");
    two.extend(frame_u32be(b"b1 was here"));
    let mut b2 = daemon.connect();
    b2.write_all(&two).unwrap();
    a1.write_all(&frame_u32be(b"to a")).unwrap();

    assert_eq!(read_frame_u32be(&mut a1).unwrap(), b"to a", "echo-self");
    assert_eq!(read_frame_u32be(&mut a2).unwrap(), b"to a");
    assert_eq!(
        read_frame_u32be(&mut b2).unwrap(),
        b"b1 was here",
        "echo-self"
    );
    assert_eq!(read_frame_u32be(&mut b1).unwrap(), b"b1 was here");
    b1.write_all(&frame_u32be(b"to b")).unwrap();
    assert_eq!(read_frame_u32be(&mut b2).unwrap(), b"to b");
    assert_eq!(read_frame_u32be(&mut b1).unwrap(), b"to b");
    // Room a saw nothing of room b.
    a2.write_all(&frame_u32be(b"a2")).unwrap();
    assert_eq!(read_frame_u32be(&mut a1).unwrap(), b"a2");
    assert_eq!(read_frame_u32be(&mut a2).unwrap(), b"a2");
}

#[test]
fn a_bad_room_name_is_refused_with_a_reason() {
    let daemon = Daemon::start(&["--mode", "broadcast", "--rooms", "--goodbye"]);
    for name in [&b""[..], &[b'x'; 256][..]] {
        let mut s = daemon.connect();
        s.write_all(&frame_u32be(name)).unwrap();
        let goodbye = read_frame_u32be(&mut s).expect("a goodbye");
        assert_eq!(
            goodbye,
            b"framecast: closing: a room name is 1 to 255 bytes"
        );
        assert!(read_frame_u32be(&mut s).is_none());
    }
    // A name of 255 bytes is fine.
    let mut a = join(&daemon, &"x".repeat(255));
    let mut b = join(&daemon, &"x".repeat(255));
    daemon.wait_for_log("(2 members)");
    a.write_all(&frame_u32be(b"hi")).unwrap();
    assert_eq!(read_frame_u32be(&mut b).unwrap(), b"hi");
}

#[test]
fn a_stopped_reader_in_one_room_never_slows_another() {
    // A timeout long enough that room a stays held for the whole test.
    let daemon = Daemon::start(&[
        "--mode",
        "broadcast",
        "--rooms",
        "--max-output",
        "256KiB",
        "--slow-consumer-timeout",
        "60s",
    ]);
    let _stopped = join(&daemon, "a");
    let mut pa = join(&daemon, "a");
    let mut pb = join(&daemon, "b");
    let rb = join(&daemon, "b");
    daemon.wait_for_log("joined room \"a\" (2 members)");
    daemon.wait_for_log("joined room \"b\" (2 members)");
    // Room a's publisher sends until the daemon stops reading it.
    let frame = frame_u32be(&[7; 16 << 10]);
    let sent = common::write_until_blocked(&mut pa, &frame, 64 << 20);
    assert!(sent < 64 << 20, "room a's publisher was never held");
    // Room b moves at full speed meanwhile: 25 MiB through to its reader.
    let reader = thread::spawn(move || read_burst(rb, Duration::ZERO));
    for seq in 0..FRAMES {
        pb.write_all(&frame_u32be(&burst_payload(seq))).unwrap();
    }
    assert_eq!(reader.join().expect("reader"), FRAMES);
    // And room a is still held: its publisher still cannot send.
    assert_eq!(common::write_until_blocked(&mut pa, &frame, 1 << 20), 0);
}

#[test]
fn two_benches_in_two_rooms_see_only_their_own_frames() {
    // Each bench checks every frame it receives against the publishers it knows: a
    // frame from the other room's publishers would be an error, a lost one too.
    let daemon = Daemon::start(&["--mode", "broadcast", "--rooms"]);
    let addr = daemon.addr.to_string();
    let runs: Vec<_> = ["one", "two"]
        .into_iter()
        .map(|room| {
            let addr = addr.clone();
            thread::spawn(move || {
                common::run_bench(&[
                    &addr,
                    "--json",
                    "--scenario",
                    "broadcast",
                    "--publishers",
                    "2",
                    "--subscribers",
                    "5",
                    "--room",
                    room,
                    "--duration",
                    "1",
                    "--warmup",
                    "0.2",
                ])
            })
        })
        .collect();
    for run in runs {
        let run = run.join().expect("bench");
        assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
        assert!(run.number("frames_received") > 0.0, "{}", run.stdout);
        assert_eq!(run.number("total"), 0.0, "{}", run.stdout);
    }
}
