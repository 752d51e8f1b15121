//! Graceful shutdown over real sockets: on SIGTERM every complete frame already sent
//! is echoed, connections close cleanly, the daemon exits 0; a second signal exits at
//! once; the drain timeout bounds the wait.

mod common;

use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::{connect, frame_u32be, read_frame_u32be, write_until_blocked, Daemon, TIMEOUT};

#[test]
fn sigterm_echoes_every_frame_sent_before_it_then_exits_0() {
    const CLIENTS: usize = 4;
    const FRAMES: u32 = 500;
    let mut daemon = Daemon::start(&[]);
    let addr = daemon.addr;
    let (tx, rx) = std::sync::mpsc::channel();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| {
            let tx = tx.clone();
            thread::spawn(move || {
                let mut stream = connect(addr);
                // Under 64 KiB per client: all of it is in the daemon's socket buffers
                // (or already served) once `write_all` returns.
                let wire: Vec<u8> = (0..FRAMES)
                    .flat_map(|seq| {
                        frame_u32be(format!("client {id} frame {seq:>6}.........").as_bytes())
                    })
                    .collect();
                stream.write_all(&wire).unwrap();
                let mut reader = BufReader::new(stream);
                let mut seen = 0;
                while let Some(payload) = read_frame_u32be(&mut reader) {
                    assert_eq!(
                        payload,
                        format!("client {id} frame {seen:>6}.........").as_bytes()
                    );
                    seen += 1;
                    if seen == 1 {
                        tx.send(()).unwrap();
                    }
                }
                seen
            })
        })
        .collect();
    // Every client has written everything and got its first echo: now the signal.
    for _ in 0..CLIENTS {
        rx.recv_timeout(TIMEOUT)
            .expect("a client never got an echo");
    }
    daemon.signal("TERM");
    for client in clients {
        assert_eq!(
            client.join().unwrap(),
            FRAMES,
            "frames echoed before the close"
        );
    }
    assert_eq!(daemon.wait_exit(TIMEOUT), Some(0));
    daemon.wait_for_log("SIGTERM: shutting down");
    daemon.wait_for_log("shutdown complete: every connection flushed");
    assert!(
        TcpStream::connect(addr).is_err(),
        "still accepting after shutdown"
    );
}

/// A client that sends without reading until the daemon has output it cannot flush.
fn stalled_client(daemon: &Daemon) -> TcpStream {
    let mut hog = daemon.connect();
    let sent = write_until_blocked(&mut hog, &frame_u32be(&[1; 60_000]), usize::MAX);
    assert!(sent > 0);
    hog
}

#[test]
fn a_second_signal_stops_at_once() {
    let mut daemon = Daemon::start(&["--max-output", "256KiB", "--drain-timeout", "1m"]);
    let _hog = stalled_client(&daemon);
    daemon.signal("TERM");
    daemon.wait_for_log("SIGTERM: shutting down");
    thread::sleep(Duration::from_millis(200));
    daemon.assert_alive(); // still draining: the hog's output cannot be flushed
    let before = Instant::now();
    daemon.signal("INT");
    assert_eq!(daemon.wait_exit(TIMEOUT), Some(1));
    assert!(
        before.elapsed() < Duration::from_secs(5),
        "the second signal did not stop it at once"
    );
    daemon.wait_for_log("SIGINT again: stopping without finishing the drain");
}

#[test]
fn drain_timeout_bounds_the_shutdown() {
    let mut daemon = Daemon::start(&["--max-output", "256KiB", "--drain-timeout", "500ms"]);
    let _hog = stalled_client(&daemon);
    let before = Instant::now();
    daemon.signal("TERM");
    assert_eq!(daemon.wait_exit(TIMEOUT), Some(0));
    assert!(
        before.elapsed() >= Duration::from_millis(450),
        "exited before the drain timeout"
    );
    daemon.wait_for_log("drain timeout reached; closed 1 connection(s)");
}

#[test]
fn a_paused_connection_drained_at_shutdown_is_not_blamed_for_its_half_frame() {
    // A client streams frames without reading: reading it pauses (output cap), with
    // part of a frame in its buffer. SIGTERM stops reading it for good; while its
    // output drains, that half frame can never complete, so no frame timeout may
    // fire for it: the drain and linger deadlines decide how it ends.
    let daemon = Daemon::start(&[
        "--max-output",
        "64KiB",
        "--frame-timeout",
        "1s",
        "--write-timeout",
        "off",
        "--drain-timeout",
        "30s",
    ]);
    let mut client = daemon.connect();
    let addr = client.local_addr().unwrap();
    let frame = frame_u32be(&[b'x'; 1000]);
    let mut writer = client.try_clone().unwrap();
    let wire = frame.repeat(12_000);
    let sender = thread::spawn(move || {
        // Ends in an error once the daemon closes; what matters is what it logs.
        let _ = writer.write_all(&wire);
    });
    thread::sleep(Duration::from_millis(1500));
    daemon.signal("TERM");
    // Read slowly, so the drain outlasts the frame timeout several times over.
    client.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut received = 0;
    let mut buf = [0u8; 16 << 10];
    let started = Instant::now();
    while started.elapsed() < TIMEOUT {
        match std::io::Read::read(&mut client, &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => received += n,
        }
        thread::sleep(Duration::from_millis(5));
    }
    assert!(received >= frame.len(), "received {received} bytes");
    drop(client);
    sender.join().unwrap();
    daemon.wait_for_log(&format!("{addr}: closed"));
    let log = daemon.stderr();
    assert!(
        !log.contains(&format!("{addr}: closed (frame timeout")),
        "a connection that was closing was closed for a frame it could not finish:\n{log}"
    );
}

/// Reads frames until the stream ends: how many, and whether it ended cleanly (an end
/// of stream) rather than with a reset or another error.
fn read_all_frames(stream: &TcpStream) -> (usize, Result<(), std::io::ErrorKind>) {
    let mut reader = BufReader::with_capacity(64 << 10, stream);
    let mut frames = 0;
    loop {
        let mut header = [0u8; 4];
        match std::io::Read::read_exact(&mut reader, &mut header) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return (frames, Ok(())),
            Err(e) => return (frames, Err(e.kind())),
        }
        let mut payload = vec![0; u32::from_be_bytes(header) as usize];
        if let Err(e) = std::io::Read::read_exact(&mut reader, &mut payload) {
            return (frames, Err(e.kind()));
        }
        frames += 1;
    }
}

/// Writes `frames` frames of 1 KiB from a thread; the count of bytes written so far is
/// shared, so the test can see when the daemon stops taking them.
fn flood(stream: &TcpStream, frames: usize) -> (thread::JoinHandle<()>, Arc<AtomicUsize>) {
    let mut writer = stream.try_clone().unwrap();
    let written = Arc::new(AtomicUsize::new(0));
    let progress = Arc::clone(&written);
    let frame = frame_u32be(&[7; 1020]);
    let handle = thread::spawn(move || {
        let batch = frame.repeat(64);
        for _ in 0..frames / 64 {
            if writer.write_all(&batch).is_err() {
                return;
            }
            progress.fetch_add(batch.len(), Ordering::Relaxed);
        }
    });
    (handle, written)
}

/// Waits until the writer has made no progress for a while: the daemon stopped reading.
fn wait_until_stalled(written: &AtomicUsize) {
    let deadline = Instant::now() + TIMEOUT;
    let mut last = usize::MAX;
    while Instant::now() < deadline {
        let now = written.load(Ordering::Relaxed);
        if now == last && now > 0 {
            return;
        }
        last = now;
        thread::sleep(Duration::from_millis(200));
    }
    panic!("the writer never stalled");
}

#[test]
fn sigterm_answers_every_frame_of_a_backpressured_connection_before_a_clean_close() {
    // The case: a client sends 40,000 frames of 1 KiB and does not read yet;
    // the daemon is paused on it with a full receive queue when SIGTERM comes.
    const FRAMES: usize = 40_000 / 64 * 64;
    let mut daemon = Daemon::start(&["--drain-timeout", "60s"]);
    let client = daemon.connect();
    let (writer, written) = flood(&client, FRAMES);
    wait_until_stalled(&written);
    daemon.signal("TERM");
    daemon.wait_for_log("SIGTERM: shutting down");
    let (frames, end) = read_all_frames(&client);
    writer.join().unwrap();
    assert_eq!(end, Ok(()), "the close was not clean after {frames} frames");
    assert_eq!(
        frames, FRAMES,
        "a clean close, but not every frame was answered"
    );
    assert_eq!(daemon.wait_exit(TIMEOUT), Some(0));
    daemon.wait_for_log("shutdown complete: every connection flushed");
}

#[test]
fn a_connection_cut_at_the_drain_timeout_with_unanswered_frames_is_reset() {
    // No writer is left running: a reset is reported once, to whichever call on the
    // socket comes first.
    let mut daemon = Daemon::start(&["--drain-timeout", "500ms"]);
    let mut client = daemon.connect();
    let sent = write_until_blocked(&mut client, &frame_u32be(&[7; 1020]), usize::MAX);
    assert!(
        sent > 1 << 20,
        "only {sent} bytes went out before the daemon pushed back"
    );
    daemon.signal("TERM");
    assert_eq!(daemon.wait_exit(TIMEOUT), Some(0));
    let (frames, end) = read_all_frames(&client);
    assert_eq!(
        end,
        Err(std::io::ErrorKind::ConnectionReset),
        "after {frames} frames the stream ended as if every frame had been answered"
    );
    daemon.wait_for_log("reset at the drain timeout with");
}

#[test]
fn sighup_and_sigusr1_do_not_stop_the_daemon() {
    let mut daemon = Daemon::start(&[]);
    let mut client = daemon.connect();
    daemon.signal("HUP");
    daemon.wait_for_log("SIGHUP: ignored");
    daemon.signal("USR1");
    daemon.wait_for_log("stats: 1 connection(s)");
    daemon.assert_alive();
    common::echo_roundtrip(&mut client, &frame_u32be(b"still here"));
}
