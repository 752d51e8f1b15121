//! framecast-bench against real servers over loopback: the daemon (no errors, every
//! framing, both loop shapes), a server that corrupts and drops frames (errors counted,
//! exit code 3), a small broadcast relay, a refused connection and a server that dies
//! mid-run (exit code 1), Ctrl-C (a summary of the window so far, exit code 130), the
//! open loop's frame count and summary, `--source` spreading connections over source
//! addresses, and the hints for a run in which nothing comes back.
//! Runs are short and bounded; no timing is asserted.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::io::{BufRead, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;

use common::{run_bench, run_bench_under_ulimit, run_bench_with, BenchRun, Daemon};

/// Holds the machine for one test at a time: every test here loads both cores with a
/// bench and a server for a window of about a second, and when they run side by side
/// on a small machine a window can pass without a frame, or a misbehaving test server
/// be reached too late to show its errors.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static MACHINE: Mutex<()> = Mutex::new(());
    MACHINE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A run of one measured second without warmup against `addr`, its summary as JSON,
/// with `extra` flags.
fn one_second(addr: &str, extra: &[&str]) -> BenchRun {
    let mut args = vec![addr, "--json", "--duration", "1", "--warmup", "0"];
    args.extend_from_slice(extra);
    run_bench(&args)
}

/// Asserts a clean run: exit 0, frames received, no errors of any kind.
fn assert_clean(run: &BenchRun) {
    assert_eq!(
        run.code,
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        run.stdout,
        run.stderr
    );
    assert!(run.number("frames_received") > 0.0, "{}", run.stdout);
    assert_eq!(run.number("total"), 0.0, "{}", run.stdout);
}

#[test]
fn two_seconds_against_the_daemon_without_a_single_error() {
    let _machine = one_at_a_time();
    let daemon = Daemon::start(&[]);
    let addr = daemon.addr.to_string();
    let pid = daemon.pid().to_string();
    let run = run_bench(&[
        &addr,
        "--json",
        "--duration",
        "2",
        "--warmup",
        "0.2",
        "--connections",
        "20",
        "--depth",
        "8",
        "--size",
        "32..4096",
        "--server-pid",
        &pid,
    ]);
    assert_clean(&run);
    let frames = run.number("frames_received");
    assert!(run.number("frames_sent") > 0.0, "{}", run.stdout);
    assert!(
        run.number("bytes_received") >= frames * 36.0,
        "{}",
        run.stdout
    );
    assert!(run.number("p50") > 0.0 && run.number("p50") <= run.number("max"));
    // The daemon is another process: its CPU figure is there, if only 0 s.
    assert!(run.number("server_s") >= 0.0, "{}", run.stdout);
    assert!(run.number("bench_s") >= 0.0, "{}", run.stdout);
    assert!(run.stderr.contains("connections up"), "{}", run.stderr);
}

#[test]
fn every_framing_and_both_loop_shapes_check_out() {
    let _machine = one_at_a_time();
    let cases: &[(&str, &[&str])] = &[
        ("u8", &["--size", "32..255", "--depth", "3"]),
        ("u16le", &["--size", "1000", "--threads", "2"]),
        (
            "u64be",
            &["--size", "64KiB", "--connections", "2", "--depth", "4"],
        ),
        ("line", &["--size", "64..300", "--depth", "2"]),
        ("fixed:100", &["--connections", "5"]),
        (
            "raw",
            &["--size", "512", "--depth", "16", "--connections", "4"],
        ),
        ("u32be", &["--rate", "2000", "--connections", "4"]),
        (
            "u32be",
            &["--connect-rate", "200", "--connections", "6", "-t", "3"],
        ),
        // Large frames are slow in a debug build on a loaded machine: a longer window.
        (
            "u32be",
            &[
                "--size",
                "300KiB",
                "--connections",
                "2",
                "--depth",
                "2",
                "--duration",
                "1.5",
            ],
        ),
    ];
    for (framing, extra) in cases {
        let daemon = Daemon::start(&["--framing", framing]);
        let addr = daemon.addr.to_string();
        let mut args = vec![
            addr.as_str(),
            "--json",
            "--framing",
            framing,
            "--warmup",
            "0.1",
        ];
        args.extend_from_slice(extra);
        if !extra.contains(&"--duration") {
            args.extend_from_slice(&["--duration", "1"]);
        }
        if !extra.contains(&"--connections") {
            args.extend_from_slice(&["--connections", "3"]);
        }
        let run = run_bench(&args);
        assert_clean(&run);
    }
}

/// A threaded test server on `127.0.0.1:0`: each accepted connection (numbered from
/// 0, in accept order) gets `TCP_NODELAY` and a thread of its own running `serve`.
fn serve_each(serve: impl Fn(usize, TcpStream) + Send + Sync + 'static) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let serve = Arc::new(serve);
    thread::spawn(move || {
        for (id, stream) in listener.incoming().enumerate() {
            let Ok(stream) = stream else { return };
            stream.set_nodelay(true).unwrap();
            let serve = Arc::clone(&serve);
            thread::spawn(move || serve(id, stream));
        }
    });
    addr
}

/// The next u32be frame, header included; `None` at the end of the stream or on an
/// error (a test server then just stops).
fn next_frame(stream: &mut impl Read) -> Option<Vec<u8>> {
    let mut frame = vec![0u8; 4];
    stream.read_exact(&mut frame).ok()?;
    let len = u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize;
    frame.resize(4 + len, 0);
    stream.read_exact(&mut frame[4..]).ok()?;
    Some(frame)
}

/// A threaded u32be echo server that flips a payload byte in frame number `flip` and
/// drops frame number `drop`, counting frames over all connections from 0.
fn start_liar(flip: usize, drop: usize) -> SocketAddr {
    let count = AtomicUsize::new(0);
    serve_each(move |_, mut stream| {
        while let Some(mut frame) = next_frame(&mut stream) {
            let n = count.fetch_add(1, Ordering::SeqCst);
            if n == drop {
                continue;
            }
            if n == flip {
                *frame.last_mut().unwrap() ^= 0x20;
            }
            if stream.write_all(&frame).is_err() {
                return;
            }
        }
    })
}

#[test]
fn a_flipped_byte_and_a_dropped_frame_are_reported_and_fail_the_run() {
    let _machine = one_at_a_time();
    let addr = start_liar(50, 100).to_string();
    let run = one_second(&addr, &["--connections", "2", "--depth", "4"]);
    assert_eq!(run.code, Some(3), "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.number("corrupted"), 1.0, "{}", run.stdout);
    assert_eq!(run.number("lost"), 1.0, "{}", run.stdout);
    assert_eq!(run.number("duplicated"), 0.0, "{}", run.stdout);
    assert_eq!(run.number("total"), 2.0, "{}", run.stdout);
    assert!(run.stderr.contains("2 errors"), "{}", run.stderr);

    // The text summary names them too.
    let run = run_bench(&[&addr, "--duration", "0.2", "--warmup", "0", "-c", "1"]);
    assert_eq!(
        run.code,
        Some(0),
        "the liar only lies once:\n{}",
        run.stdout
    );
}

#[test]
fn text_summary_names_lost_and_corrupted_frames() {
    let _machine = one_at_a_time();
    let addr = start_liar(10, 20).to_string();
    let run = run_bench(&[
        &addr,
        "--duration",
        "1",
        "--warmup",
        "0",
        "-c",
        "1",
        "-P",
        "2",
    ]);
    assert_eq!(run.code, Some(3), "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("errors    1 lost, 1 corrupted"),
        "{}",
        run.stdout
    );
}

#[test]
fn a_dropped_frame_at_depth_one_is_unanswered() {
    let _machine = one_at_a_time();
    let addr = start_liar(usize::MAX, 5).to_string();
    let run = one_second(&addr, &["-c", "1"]);
    assert_eq!(run.code, Some(3), "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.number("unanswered"), 1.0, "{}", run.stdout);
}

/// A raw echo server that leaves out bytes `cut` of the first connection's stream
/// (counted from its first byte) and echoes everything else as it comes.
fn start_raw_cutter(cut: std::ops::Range<usize>) -> SocketAddr {
    serve_each(move |id, mut stream| {
        let cut = if id == 0 { cut.clone() } else { 0..0 };
        let mut at = 0;
        let mut buf = [0u8; 4096];
        loop {
            let n = match stream.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let kept: Vec<u8> = (at..at + n)
                .filter(|i| !cut.contains(i))
                .map(|i| buf[i - at])
                .collect();
            at += n;
            if stream.write_all(&kept).is_err() {
                return;
            }
        }
    })
}

#[test]
fn raw_messages_realign_after_bytes_go_missing() {
    let _machine = one_at_a_time();
    // 300 bytes out of the middle of message 10: that message comes back corrupted,
    // the next one starts 212 bytes into the 512 that follow, and everything after it
    // checks out again rather than being cut in the wrong place.
    let addr = start_raw_cutter(512 * 10 + 100..512 * 10 + 400).to_string();
    let run = one_second(
        &addr,
        &["--framing", "raw", "--size", "512", "-c", "2", "-P", "4"],
    );
    assert_eq!(run.code, Some(3), "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.number("corrupted"), 1.0, "{}", run.stdout);
    assert_eq!(run.number("lost"), 0.0, "{}", run.stdout);
    assert_eq!(run.number("total"), 1.0, "{}", run.stdout);
    assert_eq!(run.number("skipped_bytes"), 212.0, "{}", run.stdout);
    assert!(run.number("frames_received") > 100.0, "{}", run.stdout);

    // A whole message and a half gone: one corrupted, one lost.
    let addr = start_raw_cutter(512 * 10 + 100..512 * 11 + 400).to_string();
    let run = run_bench(&[
        &addr,
        "--framing",
        "raw",
        "--size",
        "512",
        "--duration",
        "1",
        "--warmup",
        "0",
        "-c",
        "1",
        "-P",
        "4",
    ]);
    assert_eq!(run.code, Some(3), "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("errors    1 lost, 1 corrupted, 212 bytes skipped to realign"),
        "{}",
        run.stdout
    );
}

/// A threaded echo server that sends every byte back as it comes, whatever the framing.
fn start_echo() -> SocketAddr {
    serve_each(|_, mut reader| {
        let Ok(mut writer) = reader.try_clone() else {
            return;
        };
        let _ = std::io::copy(&mut reader, &mut writer);
    })
}

#[test]
fn a_deep_window_of_large_frames_is_not_encoded_all_at_once() {
    let _machine = one_at_a_time();
    // 4 x 65536 x 64 KiB is 16 GiB of frames in flight; under a 2 GiB address-space
    // limit the bench must still run, keeping the window full as the socket allows.
    let addr = start_echo().to_string();
    let deep = [
        "--json",
        "--duration",
        "0.5",
        "--warmup",
        "0",
        "-s",
        "64KiB",
        "-P",
        "65536",
    ];
    let mut args = vec![addr.as_str(), "-c", "4"];
    args.extend_from_slice(&deep);
    let run = run_bench_under_ulimit("-v 2097152", &args);
    assert_clean(&run);

    // A broadcast publisher's window likewise.
    let addr = start_relay().to_string();
    let mut args = vec![
        addr.as_str(),
        "--scenario",
        "broadcast",
        "--publishers",
        "1",
        "--subscribers",
        "1",
    ];
    args.extend_from_slice(&deep);
    let run = run_bench_under_ulimit("-v 2097152", &args);
    assert_clean(&run);
}

/// A u32be echo server that echoes `frames` frames on each connection, the last one in
/// the same segment as its FIN (corked, then shut down), and then reads and discards
/// whatever comes until the client closes.
fn start_fin_with_data(frames: usize) -> SocketAddr {
    serve_each(move |_, mut stream| {
        for n in 1..=frames {
            let Some(frame) = next_frame(&mut stream) else {
                return;
            };
            if n == frames {
                // Held back until the FIN joins it: one segment, one event.
                socket2::SockRef::from(&stream).set_tcp_cork(true).unwrap();
            }
            if stream.write_all(&frame).is_err() {
                return;
            }
        }
        let _ = stream.shutdown(std::net::Shutdown::Write);
        let _ = std::io::copy(&mut stream, &mut std::io::sink());
    })
}

#[test]
fn a_close_that_arrives_with_the_last_data_is_seen() {
    let _machine = one_at_a_time();
    // Without a second read the close goes unseen: the connection stays "up" and
    // the frame sent after the last reply is unanswered (exit 3, not 1).
    let addr = start_fin_with_data(50).to_string();
    let run = run_bench(&[
        &addr,
        "--json",
        "--duration",
        "3",
        "--warmup",
        "0",
        "-c",
        "1",
    ]);
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("every connection closed"),
        "{}",
        run.stderr
    );
    assert_eq!(run.number("connections_closed"), 1.0, "{}", run.stdout);
    assert_eq!(run.number("unanswered"), 0.0, "{}", run.stdout);
}

/// A u32be echo server that also hands the second connection a copy of the first
/// connection's first frame (after the second one's frame 10), and drops the second
/// connection's own frame 50.
fn start_misdeliverer() -> SocketAddr {
    let first: (Mutex<Option<Vec<u8>>>, Condvar) = Default::default();
    serve_each(move |id, mut stream| {
        for n in 0.. {
            let Some(frame) = next_frame(&mut stream) else {
                return;
            };
            let (slot, ready) = &first;
            if id == 0 && n == 0 {
                *slot.lock().unwrap() = Some(frame.clone());
                ready.notify_all();
            }
            if id == 1 && n == 10 {
                let (copy, _) = ready
                    .wait_timeout_while(slot.lock().unwrap(), common::TIMEOUT, |copy| {
                        copy.is_none()
                    })
                    .unwrap();
                let copy = copy.clone().expect("the first connection's first frame");
                if stream.write_all(&copy).is_err() {
                    return;
                }
            }
            if id == 1 && n == 50 {
                continue;
            }
            if stream.write_all(&frame).is_err() {
                return;
            }
        }
    })
}

#[test]
fn a_misdelivered_frame_does_not_hide_a_lost_one() {
    let _machine = one_at_a_time();
    let addr = start_misdeliverer().to_string();
    let run = one_second(&addr, &["-c", "2", "-P", "4"]);
    assert_eq!(run.code, Some(3), "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.number("misdelivered"), 1.0, "{}", run.stdout);
    assert_eq!(run.number("lost"), 1.0, "{}", run.stdout);
    assert_eq!(run.number("total"), 2.0, "{}", run.stdout);
}

/// A u32be echo server that holds frame `held` of each connection back and sends it
/// right after frame `held + by`.
fn start_late(held: usize, by: usize) -> SocketAddr {
    serve_each(move |_, mut stream| {
        let mut kept = Vec::new();
        for n in 0.. {
            let Some(frame) = next_frame(&mut stream) else {
                return;
            };
            if n == held {
                kept = frame;
                continue;
            }
            if stream.write_all(&frame).is_err() {
                return;
            }
            if n == held + by && stream.write_all(&kept).is_err() {
                return;
            }
        }
    })
}

#[test]
fn a_late_frame_is_counted_once_however_late() {
    let _machine = one_at_a_time();
    // 5 frames late: inside the tracker's window. 100 late: beyond it, where whether
    // the frame was seen before is no longer known, but one hole is still open.
    for by in ["5", "100"] {
        let addr = start_late(10, by.parse().unwrap()).to_string();
        let run = one_second(&addr, &["-c", "1", "-P", "2"]);
        assert_eq!(run.code, Some(3), "{by}: {}\n{}", run.stdout, run.stderr);
        assert_eq!(run.number("reordered"), 1.0, "{by}: {}", run.stdout);
        assert_eq!(run.number("lost"), 0.0, "{by}: {}", run.stdout);
        assert_eq!(run.number("total"), 1.0, "{by}: {}", run.stdout);
    }
}

/// A u32be echo server that answers the first `prompt` frames of a connection at once
/// and holds every later reply until no frame has come for `quiet` (as at the end of a
/// run), then sends the held ones in order: each of them at least `quiet` late.
fn start_staller(prompt: usize, quiet: std::time::Duration) -> SocketAddr {
    serve_each(move |_, mut stream| {
        let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
        let mut held = Vec::new();
        for n in 0.. {
            if n == prompt {
                reader.get_ref().set_read_timeout(Some(quiet)).unwrap();
            }
            // A frame never starts across a pause here (the bench writes whole
            // frames), so a read that times out consumed nothing: quiet.
            match reader.fill_buf() {
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    if stream.write_all(&std::mem::take(&mut held)).is_err() {
                        return;
                    }
                    continue;
                }
                Err(_) => return,
                Ok(_) => {}
            }
            let Some(frame) = next_frame(&mut reader) else {
                return;
            };
            if n < prompt {
                if stream.write_all(&frame).is_err() {
                    return;
                }
            } else {
                held.extend_from_slice(&frame);
            }
        }
    })
}

#[test]
fn open_loop_latency_counts_replies_that_come_back_in_the_drain() {
    let _machine = one_at_a_time();
    // Replies stall from frame 100 on and come back only once sending has stopped:
    // after the measured window. They were sent inside it, so their latency (at least
    // the 300 ms the server held them) is what the percentiles must show.
    let quiet = std::time::Duration::from_millis(300);
    let addr = start_staller(100, quiet).to_string();
    let run = one_second(&addr, &["-c", "1", "--rate", "1000"]);
    assert_clean(&run);
    let held_us = quiet.as_micros() as f64;
    assert!(run.number("max") >= held_us, "{}", run.stdout);
    assert!(run.number("p50") >= held_us, "{}", run.stdout);
}

/// A threaded u32be relay: every frame goes to every other client, as broadcast mode
/// does.
fn start_relay() -> SocketAddr {
    start_relay_dropping(0)
}

/// Like [`start_relay`], but the first `first` frames of each sender reach nobody.
fn start_relay_dropping(first: usize) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let clients: Arc<Mutex<Vec<(usize, TcpStream)>>> = Arc::default();
    thread::spawn(move || {
        // Clients are registered here, in accept order, before their frames are read:
        // a relay delivers to a connection from the moment it accepts it.
        for (id, stream) in listener.incoming().enumerate() {
            let Ok(mut reader) = stream else { return };
            reader.set_nodelay(true).unwrap();
            clients
                .lock()
                .unwrap()
                .push((id, reader.try_clone().unwrap()));
            let clients = Arc::clone(&clients);
            thread::spawn(move || {
                for n in 0.. {
                    let Some(frame) = next_frame(&mut reader) else {
                        return;
                    };
                    if n < first {
                        continue;
                    }
                    for (other, stream) in clients.lock().unwrap().iter_mut() {
                        if *other != id {
                            let _ = stream.write_all(&frame);
                        }
                    }
                }
            });
        }
    });
    addr
}

#[test]
fn broadcast_scenario_checks_every_delivery() {
    let _machine = one_at_a_time();
    let addr = start_relay().to_string();
    let run = run_bench(&[
        &addr,
        "--json",
        "--scenario",
        "broadcast",
        "--publishers",
        "1",
        "--subscribers",
        "5",
        "--depth",
        "8",
        "--duration",
        "1",
        "--warmup",
        "0.1",
    ]);
    assert_clean(&run);
    assert_eq!(run.number("subscribers"), 5.0);
    // Every frame sent reaches five subscribers.
    assert!(run.number("frames_received") >= run.number("frames_sent"));
}

#[test]
fn broadcast_frames_lost_at_the_start_of_a_stream_are_counted() {
    let _machine = one_at_a_time();
    // The relay passes on none of a publisher's first three frames. Subscribers are
    // there before any publisher, so they know each stream starts at 0: three lost
    // for each of the two subscribers.
    let addr = start_relay_dropping(3).to_string();
    let run = run_bench(&[
        &addr,
        "--json",
        "--scenario",
        "broadcast",
        "--publishers",
        "1",
        "--subscribers",
        "2",
        "--depth",
        "8",
        "--duration",
        "0.5",
        "--warmup",
        "0",
    ]);
    assert_eq!(run.code, Some(3), "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.number("lost"), 6.0, "{}", run.stdout);
    assert_eq!(run.number("total"), 6.0, "{}", run.stdout);
}

#[test]
fn broadcast_with_several_publishers_and_threads() {
    let _machine = one_at_a_time();
    let addr = start_relay().to_string();
    let run = run_bench(&[
        &addr,
        "--json",
        "--scenario",
        "broadcast",
        "--publishers",
        "2",
        "--subscribers",
        "3",
        "--threads",
        "2",
        "--size",
        "40..400",
        "--depth",
        "4",
        "--duration",
        "1",
        "--warmup",
        "0.1",
    ]);
    assert_clean(&run);
}

#[test]
fn broadcast_against_the_daemon_checks_every_delivery() {
    let _machine = one_at_a_time();
    for extra in [&[][..], &["--echo-self"][..]] {
        let mut args = vec!["--mode", "broadcast"];
        args.extend_from_slice(extra);
        let daemon = Daemon::start(&args);
        let addr = daemon.addr.to_string();
        let run = run_bench(&[
            &addr,
            "--json",
            "--scenario",
            "broadcast",
            "--publishers",
            "2",
            "--subscribers",
            "10",
            "--depth",
            "8",
            "--size",
            "32..1000",
            "--duration",
            "1",
            "--warmup",
            "0.2",
        ]);
        assert_clean(&run);
        // Eleven receivers (ten subscribers, the other publisher) for every frame sent,
        // twelve with --echo-self. The window's edges blur the count: frames in flight
        // as it opens are received in it, and those in flight as it closes are not; at
        // most 2 publishers x depth 8 frames each way, times the receivers.
        let receivers = if extra.is_empty() { 11.0 } else { 12.0 };
        let sent = run.number("frames_sent");
        let received = run.number("frames_received");
        let edge = 2.0 * 8.0 * receivers;
        assert!(
            sent > 0.0 && (received - receivers * sent).abs() <= 2.0 * edge,
            "{received} deliveries for {sent} frames: {}",
            run.stdout
        );
    }
}

#[test]
fn broadcast_in_an_open_loop_against_the_daemon() {
    let _machine = one_at_a_time();
    let daemon = Daemon::start(&["--mode", "broadcast"]);
    let addr = daemon.addr.to_string();
    let run = run_bench(&[
        &addr,
        "--json",
        "--scenario",
        "broadcast",
        "--publishers",
        "3",
        "--subscribers",
        "4",
        "--rate",
        "3000",
        "--threads",
        "2",
        "--duration",
        "1",
        "--warmup",
        "0.1",
    ]);
    assert_clean(&run);
    assert_eq!(run.number("rate"), 3000.0);
}

#[test]
fn refused_connection_is_a_clear_error() {
    let _machine = one_at_a_time();
    let addr = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().to_string()
    };
    let run = run_bench(&[&addr, "--duration", "1"]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!("cannot connect to {addr}")),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
}

#[test]
fn a_server_dying_mid_run_ends_the_run_with_a_clear_error() {
    let _machine = one_at_a_time();
    let mut daemon = Some(Daemon::start(&[]));
    let addr = daemon.as_ref().unwrap().addr.to_string();
    let run = run_bench_with(
        &[&addr, "--duration", "15", "--warmup", "0", "-c", "4"],
        |line, _| {
            if line.contains("connections up") {
                daemon.take(); // kills the daemon once traffic flows
            }
        },
    );
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("every connection closed"),
        "{}",
        run.stderr
    );
    assert!(run.stdout.contains("aborted"), "{}", run.stdout);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
}

/// Sends `signal` to `pids` with kill(1); a process already gone is no error here.
fn signal(signal: &str, pids: &[u32]) {
    let pids: Vec<String> = pids.iter().map(u32::to_string).collect();
    let _ = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .args(&pids)
        .status();
}

#[test]
fn a_machine_that_stalls_everything_does_not_lose_frames() {
    let _machine = one_at_a_time();
    // A loaded CI host can stop both processes for seconds. Freeze them with frames in
    // flight across the end of the run: time the bench did not run must not count as
    // the server's silence, so nothing may be reported unanswered.
    let daemon = Daemon::start(&[]);
    let addr = daemon.addr.to_string();
    let daemon_pid = daemon.pid();
    let mut frozen = false;
    let run = run_bench_with(
        &[
            &addr,
            "--json",
            "--duration",
            "1.5",
            "--warmup",
            "0",
            "-c",
            "10",
            "-P",
            "8",
        ],
        |line, bench_pid| {
            if !frozen && line.contains("connections up") {
                frozen = true;
                signal("STOP", &[daemon_pid, bench_pid]);
                std::thread::sleep(std::time::Duration::from_millis(2500));
                signal("CONT", &[bench_pid]);
                std::thread::sleep(std::time::Duration::from_millis(300));
                signal("CONT", &[daemon_pid]);
            }
        },
    );
    assert!(frozen, "{}", run.stderr);
    assert_clean(&run);
    drop(daemon);
}

#[test]
fn payloads_too_small_for_the_integrity_header_are_a_usage_error() {
    let _machine = one_at_a_time();
    let run = run_bench(&["127.0.0.1:9", "--size", "8..64"]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("integrity header"), "{}", run.stderr);
    let run = run_bench(&["127.0.0.1:9", "--framing", "raw", "--size", "64..128"]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    let run = run_bench(&["no-such-host.invalid:1"]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("[ADDR]"), "{}", run.stderr);
}

#[test]
fn help_describes_the_bench_and_matches_the_readme() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_framecast-bench"))
        .arg("--help")
        .output()
        .expect("run framecast-bench --help");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    // Its own description, not the package's (which describes the daemon).
    assert!(help.starts_with("A load generator"), "{help}");
    common::assert_help_matches_readme(&help, "## Load testing");
}

/// Runs the bench with `args` (against a port nothing listens on: it must not get that
/// far) and checks it exits 2 with a message containing `says`, and no panic.
fn assert_usage_error(args: &[&str], says: &str) {
    let run = run_bench(&[&["127.0.0.1:9"], args].concat());
    assert_eq!(run.code, Some(2), "{args:?}: {}", run.stderr);
    assert!(
        run.stderr.contains(says) && !run.stderr.contains("panicked"),
        "{args:?}: {}",
        run.stderr
    );
}

#[test]
fn usage_errors_quote_the_value_and_say_what_is_wrong() {
    let _machine = one_at_a_time();
    assert_usage_error(&["--duration", "0"], "invalid value '0' for '--duration'");
    assert_usage_error(&["--size", "10..5"], "MIN is larger than MAX");
}

#[test]
fn flags_that_would_be_ignored_are_usage_errors() {
    let _machine = one_at_a_time();
    // No such process: its CPU time would be a silent "n/a" after the run.
    assert_usage_error(&["--server-pid", "4294967295"], "'--server-pid <PID>'");
    // A flag of the other scenario.
    assert_usage_error(
        &["--scenario", "broadcast", "-c", "8"],
        "--connections applies",
    );
    assert_usage_error(&["--publishers", "2"], "--publishers applies");
}

#[test]
fn durations_too_long_to_add_up_are_a_usage_error() {
    let _machine = one_at_a_time();
    assert_usage_error(&["-d", "1e19", "--warmup", "1e19"], "'--warmup'");
    assert_usage_error(&["-d", "1e19", "--warmup", "1"], "'--duration'");
}

#[test]
fn a_connect_rate_too_slow_to_ever_finish_is_a_usage_error() {
    let _machine = one_at_a_time();
    // A listener, so that the first connection succeeds and the second one's pacing is
    // what the run trips on.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let run = run_bench(&[&addr, "--connect-rate", "1e-20", "-c", "2"]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("'--connect-rate'"), "{}", run.stderr);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
}

#[test]
fn too_many_publishers_are_a_usage_error() {
    let _machine = one_at_a_time();
    let run = run_bench(&[
        "127.0.0.1:9",
        "--scenario",
        "broadcast",
        "--publishers",
        "100000",
        "--subscribers",
        "0",
    ]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("'--publishers'"), "{}", run.stderr);
}

#[test]
fn ctrl_c_ends_the_run_early_with_a_summary_of_what_was_measured() {
    let _machine = one_at_a_time();
    let daemon = Daemon::start(&[]);
    let addr = daemon.addr.to_string();
    let mut sent = false;
    let run = run_bench_with(
        &[
            &addr,
            "--json",
            "--duration",
            "60",
            "--warmup",
            "0.2",
            "-c",
            "10",
            // An open loop at a modest rate: light on a machine running other tests.
            "--rate",
            "5000",
        ],
        |line, bench_pid| {
            // The first progress line comes a second in: measuring has begun.
            if !sent && line.contains("connections up") {
                sent = true;
                signal("INT", &[bench_pid]);
            }
        },
    );
    assert!(sent, "{}", run.stderr);
    assert_eq!(run.code, Some(130), "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("\"interrupted\":true"),
        "{}",
        run.stdout
    );
    assert!(run.number("frames_received") > 0.0, "{}", run.stdout);
    assert_eq!(
        run.number("total"),
        0.0,
        "nothing in flight is lost: {}",
        run.stdout
    );
    let measured = run.number("duration_s");
    assert!(measured > 0.0 && measured < 30.0, "{}", run.stdout);
}

#[test]
fn ctrl_c_while_connecting_stops_before_any_load() {
    let _machine = one_at_a_time();
    let daemon = Daemon::start(&[]);
    let addr = daemon.addr.to_string();
    let mut sent = false;
    // 100 connections at 4 per second would take 25 s to open.
    let run = run_bench_with(
        &[&addr, "--json", "--connect-rate", "4", "-c", "100"],
        |line, bench_pid| {
            if !sent && line.contains("connecting:") {
                sent = true;
                signal("INT", &[bench_pid]);
            }
        },
    );
    assert!(sent, "{}", run.stderr);
    assert_eq!(run.code, Some(130), "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("interrupted while connecting"),
        "{}",
        run.stderr
    );
    assert!(
        run.stdout.is_empty(),
        "no summary of nothing: {}",
        run.stdout
    );
}

#[test]
fn a_second_ctrl_c_exits_at_once() {
    let _machine = one_at_a_time();
    // A server that accepts and never answers: after the first signal the bench would
    // wait out its drain and report every frame unanswered (exit 3); the second
    // signal cuts that short, with no summary.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    thread::spawn(move || {
        let held: Vec<TcpStream> = listener.incoming().map_while(Result::ok).collect();
        drop(held);
    });
    let (mut first, mut second) = (false, false);
    let run = run_bench_with(
        &[
            &addr,
            "--json",
            "--duration",
            "60",
            "--warmup",
            "0",
            "-c",
            "2",
        ],
        |line, bench_pid| {
            // The second signal only once the first has been seen (the progress line
            // says the drain began): two signals pending at once are one signal.
            if !first && line.contains("connections up") {
                first = true;
                signal("INT", &[bench_pid]);
            } else if first && !second && line.contains("drain]") {
                second = true;
                signal("INT", &[bench_pid]);
            }
        },
    );
    assert!(first && second, "{}", run.stderr);
    assert_eq!(run.code, Some(130), "{}\n{}", run.stdout, run.stderr);
    assert!(run.stdout.is_empty(), "{}", run.stdout);
}

#[test]
fn the_open_loop_sends_exactly_the_frames_due_in_the_window() {
    let _machine = one_at_a_time();
    let daemon = Daemon::start(&[]);
    // A bare port, wrk's letters and units: 300 frames/s over 3 connections for 1 s
    // after a warmup of 200 ms; frames are counted by their intended send time.
    let port = daemon.addr.port().to_string();
    let run = run_bench(&[
        &port, "--json", "-c", "3", "-R", "0.3k", "-d", "1s", "--warmup", "200ms",
    ]);
    assert_clean(&run);
    let sent = run.number("frames_sent");
    assert!((299.0..=301.0).contains(&sent), "{}", run.stdout);
    assert_eq!(run.number("frames_received"), sent, "{}", run.stdout);
    // The open-loop summary: the pacing error, the rate reached, the set-up time.
    for key in [
        "error_p50",
        "error_p99",
        "error_p99_9",
        "error_max",
        "early",
        "lead",
        "connect_s",
    ] {
        assert!(run.number(key) >= 0.0, "{key}: {}", run.stdout);
    }
    assert!(run.stdout.contains("\"shortfall\":false"), "{}", run.stdout);
    assert_eq!(run.number("rate"), 300.0, "{}", run.stdout);
}

#[test]
fn the_open_loop_summary_shows_the_pacing_error() {
    let _machine = one_at_a_time();
    let daemon = Daemon::start(&[]);
    let addr = daemon.addr.to_string();
    let run = run_bench(&[&addr, "-c", "2", "-R", "500", "-d", "0.5", "--warmup", "0"]);
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("pacing    off by p50 "),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("2 connections set up in "),
        "{}",
        run.stdout
    );
}

/// An echo server that notes the address each connection comes from.
fn start_echo_noting_peers() -> (SocketAddr, Arc<Mutex<Vec<std::net::IpAddr>>>) {
    let peers = Arc::new(Mutex::new(Vec::new()));
    let noted = Arc::clone(&peers);
    let addr = serve_each(move |_, mut reader| {
        if let Ok(peer) = reader.peer_addr() {
            noted.lock().unwrap().push(peer.ip());
        }
        let Ok(mut writer) = reader.try_clone() else {
            return;
        };
        let _ = std::io::copy(&mut reader, &mut writer);
    });
    (addr, peers)
}

#[test]
fn source_addresses_spread_the_connections() {
    let _machine = one_at_a_time();
    let (addr, peers) = start_echo_noting_peers();
    let run = one_second(
        &addr.to_string(),
        &["-c", "6", "--source", "127.0.0.2-127.0.0.3,127.0.0.4"],
    );
    assert_clean(&run);
    let mut seen = peers.lock().unwrap().clone();
    seen.sort();
    let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
    let expected = [
        "127.0.0.2",
        "127.0.0.2",
        "127.0.0.3",
        "127.0.0.3",
        "127.0.0.4",
        "127.0.0.4",
    ];
    assert_eq!(seen, expected.map(ip), "round-robin over the sources");
}

#[test]
fn a_source_of_the_wrong_family_is_a_usage_error() {
    assert_usage_error(&["--source", "::1"], "'--source'");
    assert_usage_error(&["--source", "127.0.0.9-127.0.0.2"], "runs backwards");
}

#[test]
fn nothing_coming_back_names_the_likely_causes() {
    let _machine = one_at_a_time();
    // Reads everything, answers nothing: as a server of another framing would.
    let addr = serve_each(|_, mut stream| {
        let _ = std::io::copy(&mut stream, &mut std::io::sink());
    });
    let run = one_second(&addr.to_string(), &["-c", "2"]);
    assert_eq!(run.code, Some(3), "{}\n{}", run.stdout, run.stderr);
    assert!(run.number("unanswered") > 0.0, "{}", run.stdout);
    for says in ["nothing came back", "--framing u32be", "--mode broadcast"] {
        assert!(run.stdout.contains(says), "{says}: {}", run.stdout);
        assert!(run.stderr.contains(says), "{says}: {}", run.stderr);
    }
}

#[test]
fn ctrl_c_during_the_warmup_is_reported_as_such() {
    let _machine = one_at_a_time();
    let daemon = Daemon::start(&[]);
    let addr = daemon.addr.to_string();
    let mut sent = false;
    let run = run_bench_with(
        &[
            &addr, "--json", "-d", "10s", "--warmup", "1m", "-c", "2", "-R", "1k",
        ],
        |line, bench_pid| {
            if !sent && line.contains("warmup") {
                sent = true;
                signal("INT", &[bench_pid]);
            }
        },
    );
    assert!(sent, "{}", run.stderr);
    assert_eq!(run.code, Some(130), "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("\"interrupted_in_warmup\":true"),
        "{}",
        run.stdout
    );
    let warmed = run.number("warmup_run_s");
    assert!(warmed > 0.0 && warmed < 60.0, "{}", run.stdout);
}
