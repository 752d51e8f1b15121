//! `--splice`: unframed echo moved by the kernel, never copied into the daemon. The
//! bytes must come back exactly as with copying: to their own sender, in order, whole,
//! whether the socket takes them at once or a slow reader leaves some to be queued.

mod common;

use std::io::{Read, Write};
use std::net::Shutdown;
use std::thread;
use std::time::{Duration, Instant};

use common::{read_to_end, Daemon, Rng};

/// Streams `data` through `--splice` echo on one connection, writing in 64 KiB pieces
/// from one thread while this one reads; a slow reader first lets the daemon's socket
/// fill, then reads in small pieces with pauses. Returns what came back.
fn stream_through(daemon: &Daemon, data: Vec<u8>, slow: bool) -> Vec<u8> {
    let mut client = daemon.connect();
    let mut writer = client.try_clone().unwrap();
    let sender = thread::spawn(move || {
        for chunk in data.chunks(64 << 10) {
            writer.write_all(chunk).unwrap();
        }
        writer.shutdown(Shutdown::Write).unwrap();
    });
    let mut got = Vec::new();
    if slow {
        thread::sleep(Duration::from_millis(300));
        let mut buf = [0u8; 4096];
        for _ in 0..64 {
            let n = client.read(&mut buf).unwrap();
            got.extend_from_slice(&buf[..n]);
            thread::sleep(Duration::from_millis(2));
        }
    }
    got.extend(read_to_end(&mut client));
    sender.join().unwrap();
    got
}

/// The daemon's log once it has seen `clients` ends of stream: the log is collected
/// from its stderr as it comes, so lines may trail what a client has already read.
fn log_after_ends_of_stream(daemon: &Daemon, clients: usize) -> String {
    let deadline = Instant::now() + common::TIMEOUT;
    loop {
        let log = daemon.stderr();
        if log.matches(": end of stream").count() >= clients {
            return log;
        }
        assert!(
            Instant::now() < deadline,
            "{clients} ends of stream never logged:\n{log}"
        );
        thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn spliced_streams_come_back_whole_to_their_own_senders() {
    let daemon = Daemon::start_with_env(
        &["--framing", "raw", "--splice"],
        &[("RUST_LOG", "debug,framecast::reactor::serve=trace")],
    );
    daemon.wait_for_log("framing raw, splice");
    thread::scope(|scope| {
        let runs: Vec<_> = (0..6u64)
            .map(|i| {
                let daemon = &daemon;
                scope.spawn(move || {
                    let data = Rng::new(100 + i).bytes(6 << 20);
                    let slow = i % 3 == 0;
                    let got = stream_through(daemon, data.clone(), slow);
                    assert_eq!(got.len(), data.len(), "bytes echoed (slow reader: {slow})");
                    assert!(got == data, "echo differs (slow reader: {slow})");
                })
            })
            .collect();
        for run in runs {
            run.join().unwrap();
        }
    });
    // Both ways through the splice path were taken: straight back, and queued behind a
    // socket that was full.
    let log = log_after_ends_of_stream(&daemon, 6);
    let queued: Vec<usize> = log
        .lines()
        .filter_map(|l| l.split("spliced; ").nth(1))
        .filter_map(|rest| rest.split(' ').next()?.parse().ok())
        .collect();
    assert!(queued.contains(&0), "no read was spliced straight back");
    assert!(
        queued.iter().any(|&q| q > 0),
        "no spliced read was left over for a full socket"
    );
}

#[test]
fn small_reads_are_copied_and_large_ones_spliced_on_one_connection() {
    let daemon = Daemon::start_with_env(
        &["--framing", "raw", "--splice"],
        &[("RUST_LOG", "debug,framecast::reactor::serve=trace")],
    );
    let mut client = daemon.connect();
    let mut rng = Rng::new(7);
    let mut sent = Vec::new();
    // Small pieces one at a time (copied), a burst (spliced), small again (copied).
    for size in [10, 100, 1000, 1 << 20, 10, 100] {
        let piece = rng.bytes(size);
        client.write_all(&piece).unwrap();
        let mut back = vec![0u8; size];
        client.read_exact(&mut back).unwrap();
        assert!(back == piece, "a piece of {size} bytes came back different");
        sent.extend(piece);
    }
    client.shutdown(Shutdown::Write).unwrap();
    assert!(read_to_end(&mut client).is_empty());
    let log = log_after_ends_of_stream(&daemon, 1);
    assert!(
        log.contains("spliced;"),
        "the burst was not spliced:\n{log}"
    );
    let copied = log
        .lines()
        .filter(|l| l.contains("frame(s)") && !l.contains("spliced"))
        .count();
    assert!(
        copied >= 4,
        "small pieces were not copied ({copied} copied runs)"
    );
}
