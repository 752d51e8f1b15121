//! Broadcast over real sockets: every client gets every other client's frames, each
//! sender's in order and byte-exact; slow consumers are disconnected or skipped
//! without slowing anyone else, and memory stays bounded by the caps.

mod common;

use std::io::{BufReader, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use common::{frame_u32be, read_frame_u32be, read_to_end, Daemon, Rng, TIMEOUT};
use framecast::codec::{decode_frame, Codec, Encoder};
use framecast::Framing;

/// The payload sender `sender` sends as its `seq`th frame: ids, then seeded bytes.
fn payload(sender: u32, seq: u32, max_len: usize) -> Vec<u8> {
    let mut rng = Rng::new(((sender as u64) << 32) | seq as u64 | 1 << 63);
    let mut p = sender.to_be_bytes().to_vec();
    p.extend_from_slice(&seq.to_be_bytes());
    let len = rng.below(max_len);
    p.extend(rng.bytes(len));
    p
}

/// Splits a payload made by [`payload`] into (sender, seq), checking its bytes.
fn check(p: &[u8], max_len: usize) -> (u32, u32) {
    assert!(p.len() >= 8, "short payload");
    let sender = u32::from_be_bytes(p[..4].try_into().unwrap());
    let seq = u32::from_be_bytes(p[4..8].try_into().unwrap());
    assert!(
        p == payload(sender, seq, max_len),
        "frame {seq} from {sender} corrupted"
    );
    (sender, seq)
}

fn chat(echo_self: bool) {
    const CLIENTS: u32 = 10;
    const FRAMES: u32 = 200;
    const MAX_LEN: usize = 3000;
    let mut args = vec!["--mode", "broadcast"];
    if echo_self {
        args.push("--echo-self");
    }
    let daemon = Daemon::start(&args);
    let clients: Vec<TcpStream> = (0..CLIENTS).map(|_| daemon.connect()).collect();
    daemon.wait_for_log(&format!("{CLIENTS} open)"));

    let expected = if echo_self {
        CLIENTS * FRAMES
    } else {
        (CLIENTS - 1) * FRAMES
    };
    let handles: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(id, stream)| {
            let id = id as u32;
            let mut writer = stream.try_clone().unwrap();
            let sender = thread::spawn(move || {
                // Several frames per write: sticky packets on the way in.
                let mut batch = Vec::new();
                for seq in 0..FRAMES {
                    batch.extend(frame_u32be(&payload(id, seq, MAX_LEN)));
                    if seq % 7 == 6 || seq == FRAMES - 1 {
                        writer.write_all(&batch).unwrap();
                        batch.clear();
                    }
                }
            });
            thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut next = vec![0u32; CLIENTS as usize];
                for _ in 0..expected {
                    let frame = read_frame_u32be(&mut reader).expect("closed too early");
                    let (from, seq) = check(&frame, MAX_LEN);
                    assert!(echo_self || from != id, "client {id} got its own frame");
                    assert_eq!(
                        seq, next[from as usize],
                        "client {id}: frames from {from} out of order"
                    );
                    next[from as usize] += 1;
                }
                sender.join().unwrap();
                for (from, &n) in next.iter().enumerate() {
                    let want = if from as u32 == id && !echo_self {
                        0
                    } else {
                        FRAMES
                    };
                    assert_eq!(n, want, "client {id} got {n} frames from {from}");
                }
                stream
            })
        })
        .collect();
    let streams: Vec<TcpStream> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    // Nothing more was queued for anybody: no duplicates after the expected count.
    for mut stream in streams {
        stream.shutdown(Shutdown::Write).unwrap();
        assert_eq!(
            read_to_end(&mut stream),
            b"",
            "extra bytes after every frame arrived"
        );
    }
}

#[test]
fn ten_clients_each_receive_the_others_frames_in_order() {
    chat(false);
}

#[test]
fn echo_self_adds_the_senders_own_frames() {
    chat(true);
}

/// One publisher of 64 KiB frames, 20 fast subscribers and one that does not read.
/// The publisher stays at most `WINDOW` frames ahead of the slowest fast subscriber,
/// so only the one that does not read can pass the cap.
struct SlowScenario {
    daemon: Daemon,
    publisher: TcpStream,
    fast: Vec<TcpStream>,
    /// Frames each fast subscriber has received so far.
    progress: Vec<Arc<AtomicU32>>,
    slow: TcpStream,
    rss_before: u64,
}

/// Frames the publisher may be ahead of the fast subscribers: 256 KiB, half the cap.
const WINDOW: u32 = 4;

const BIG: usize = 64 << 10;
/// 30 MiB: far past the 512 KiB cap plus what kernel socket buffers can absorb.
const PHASE_ONE: u32 = 480;

impl SlowScenario {
    fn start(policy: &str) -> SlowScenario {
        let daemon = Daemon::start(&[
            "--mode",
            "broadcast",
            "--max-output",
            "512KiB",
            "--slow-consumer",
            policy,
            // The slow one reads nothing for all of phase one, which a loaded machine
            // can stretch past the default 30 s: the write timeout is not under test.
            "--write-timeout",
            "off",
        ]);
        let slow = daemon.connect();
        let fast: Vec<TcpStream> = (0..20).map(|_| daemon.connect()).collect();
        let publisher = daemon.connect();
        daemon.wait_for_log("22 open)");
        let rss_before = daemon.rss_kib();
        let progress = fast.iter().map(|_| Arc::new(AtomicU32::new(0))).collect();
        SlowScenario {
            daemon,
            publisher,
            fast,
            progress,
            slow,
            rss_before,
        }
    }

    /// Starts a reader per fast subscriber that checks every frame arrives, in order,
    /// until the end marker; returns how many frames each saw.
    fn spawn_fast_readers(&mut self) -> Vec<thread::JoinHandle<u32>> {
        self.fast
            .drain(..)
            .zip(self.progress.clone())
            .map(|(stream, progress)| {
                thread::spawn(move || {
                    let mut reader = BufReader::with_capacity(1 << 17, stream);
                    let mut next = 0;
                    loop {
                        let frame = read_frame_u32be(&mut reader).expect("fast subscriber cut off");
                        if frame == b"end" {
                            return next;
                        }
                        let seq = check_big(&frame);
                        assert_eq!(seq, next, "a fast subscriber lost or reordered frames");
                        next += 1;
                        progress.store(next, Ordering::Release);
                    }
                })
            })
            .collect()
    }

    fn publish(&mut self, seqs: std::ops::Range<u32>) {
        for seq in seqs {
            let deadline = Instant::now() + TIMEOUT;
            while self
                .progress
                .iter()
                .any(|p| p.load(Ordering::Acquire) + WINDOW < seq)
            {
                assert!(Instant::now() < deadline, "fast subscribers stalled");
                thread::yield_now();
            }
            let mut p = payload(0, seq, 1);
            p.resize(BIG, seq as u8);
            // Deterministic content check: rebuild it the same way on receipt.
            self.publisher.write_all(&frame_u32be(&p)).unwrap();
        }
    }

    fn assert_memory_bounded(&self) {
        let after = self.daemon.rss_kib();
        // Caps: 512 KiB for the slow one plus a run, small queues for the fast ones.
        assert!(
            after < self.rss_before + 8 * 1024,
            "RSS grew from {} KiB to {after} KiB",
            self.rss_before
        );
    }
}

/// Checks a big frame built by `SlowScenario::publish` and returns its sequence number.
fn check_big(frame: &[u8]) -> u32 {
    assert_eq!(frame.len(), BIG, "a partial frame reached a subscriber");
    let seq = u32::from_be_bytes(frame[4..8].try_into().unwrap());
    let mut p = payload(0, seq, 1);
    p.resize(BIG, seq as u8);
    assert!(frame == p, "frame {seq} corrupted");
    seq
}

#[test]
fn slow_consumer_is_disconnected_and_the_fast_ones_get_everything() {
    let mut s = SlowScenario::start("disconnect");
    let readers = s.spawn_fast_readers();
    s.publish(0..PHASE_ONE);
    s.publisher.write_all(&frame_u32be(b"end")).unwrap();
    for reader in readers {
        assert_eq!(reader.join().unwrap(), PHASE_ONE);
    }
    let slow_addr = s.slow.local_addr().unwrap();
    s.daemon
        .wait_for_log(&format!("{slow_addr}: slow consumer"));
    s.daemon
        .wait_for_log("would pass the cap of 524288 bytes; disconnecting");
    s.assert_memory_bounded();
    // The slow one finds its connection closed once it reads what was in flight.
    s.slow.set_read_timeout(Some(TIMEOUT)).unwrap();
    let leftover = read_to_end(&mut s.slow);
    assert!(
        leftover.len() < PHASE_ONE as usize * (BIG + 4),
        "the slow one got everything"
    );
    s.daemon.assert_alive();
}

#[test]
fn slow_consumer_under_drop_loses_only_whole_frames_and_resumes() {
    let mut s = SlowScenario::start("drop");
    let readers = s.spawn_fast_readers();
    s.publish(0..PHASE_ONE);
    let slow_addr = s.slow.local_addr().unwrap();
    s.daemon
        .wait_for_log(&format!("{slow_addr}: slow consumer"));
    s.assert_memory_bounded();

    // Now the slow one reads: whole, intact frames in order, with gaps; then, once it
    // has caught up, every frame published after that.
    let caught_up = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&caught_up);
    let slow = s.slow.try_clone().unwrap();
    let slow_reader = thread::spawn(move || {
        let mut reader = BufReader::with_capacity(1 << 17, slow);
        let mut seqs = Vec::new();
        loop {
            let frame = read_frame_u32be(&mut reader).expect("slow subscriber cut off");
            if frame == b"end" {
                return seqs;
            }
            let seq = check_big(&frame);
            if seq >= PHASE_ONE {
                flag.store(true, Ordering::SeqCst);
            }
            seqs.push(seq);
        }
    });
    // Publish one frame at a time until the slow subscriber receives a new one
    // (bounded: it must catch up well within this many frames).
    let mut seq = PHASE_ONE;
    while !caught_up.load(Ordering::SeqCst) {
        assert!(seq < PHASE_ONE + 2000, "the slow subscriber never resumed");
        s.publish(seq..seq + 1);
        seq += 1;
        thread::sleep(Duration::from_millis(5));
    }
    s.publish(seq..seq + 20);
    seq += 20;
    s.publisher.write_all(&frame_u32be(b"end")).unwrap();

    for reader in readers {
        assert_eq!(
            reader.join().unwrap(),
            seq,
            "fast subscribers get every frame"
        );
    }
    let seqs = slow_reader.join().unwrap();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "frames out of order");
    let phase_one = seqs.iter().filter(|&&q| q < PHASE_ONE).count();
    assert!(
        phase_one < PHASE_ONE as usize,
        "nothing was dropped for the slow subscriber"
    );
    // After resuming, nothing is missing.
    let first_new = seqs.iter().position(|&q| q >= PHASE_ONE).unwrap();
    let resumed = &seqs[first_new..];
    assert_eq!(*resumed.last().unwrap(), seq - 1);
    assert!(
        resumed.windows(2).all(|w| w[1] == w[0] + 1),
        "frames lost after catching up"
    );
    s.daemon.assert_alive();
}

/// A frame of `len` bytes whose content depends on `seq`, as `SlowScenario` builds them.
fn numbered(seq: u32, len: usize) -> Vec<u8> {
    let mut p = payload(0, seq, 1);
    p.resize(len, seq as u8);
    p
}

/// Reads one frame and checks it is `numbered(seq, len)`.
fn expect_numbered(reader: &mut impl std::io::Read, seq: u32, len: usize, who: &str) {
    let frame = read_frame_u32be(reader).unwrap_or_else(|| panic!("{who}: cut off"));
    assert!(frame == numbered(seq, len), "{who}: frame {seq} differs");
}

#[test]
fn a_recipient_taking_a_large_frame_is_not_behind_for_it() {
    // Default caps: 8 MiB frames, 4 MiB of output. Frames of 6 MiB are legal, so a
    // recipient still being written one of them when the next arrives is keeping up;
    // only one with a whole frame waiting behind that is past the cap. (A loopback
    // socket that is not read absorbs about 4 MiB, so part of each frame 0 stays queued.)
    const LEN: usize = 6 << 20;
    let daemon = Daemon::start(&["--mode", "broadcast"]);
    let first = daemon.connect();
    let second = daemon.connect();
    let mut watcher = BufReader::with_capacity(1 << 20, daemon.connect());
    let mut publisher = daemon.connect();
    daemon.wait_for_log("4 open)");
    let publish = |publisher: &mut TcpStream, watcher: &mut BufReader<TcpStream>, seq| {
        publisher
            .write_all(&frame_u32be(&numbered(seq, LEN)))
            .unwrap();
        // The watcher has it all only once the daemon has offered it to everyone.
        expect_numbered(watcher, seq, LEN, "watcher");
    };
    // Neither `first` nor `second` reads: most of frame 0 waits in their queues when
    // frame 1 comes.
    publish(&mut publisher, &mut watcher, 0);
    publish(&mut publisher, &mut watcher, 1);
    let mut first = BufReader::with_capacity(1 << 20, first);
    expect_numbered(&mut first, 0, LEN, "first");
    expect_numbered(&mut first, 1, LEN, "first");
    // `second` still has frame 1 waiting whole behind frame 0: frame 2 would put it
    // past the cap, `first` has caught up and takes it.
    publish(&mut publisher, &mut watcher, 2);
    expect_numbered(&mut first, 2, LEN, "first");
    let (first_addr, second_addr) = (
        first.get_ref().local_addr().unwrap(),
        second.local_addr().unwrap(),
    );
    daemon.wait_for_log(&format!("{second_addr}: slow consumer"));
    assert!(
        !daemon
            .stderr()
            .contains(&format!("{first_addr}: slow consumer")),
        "a recipient that kept up was cut:\n{}",
        daemon.stderr()
    );
}

#[test]
fn broadcast_works_with_every_framing() {
    for name in ["u8", "u16le", "u32be", "u64be", "line", "fixed:16", "raw"] {
        let framing: Framing = name.parse().unwrap();
        let daemon = Daemon::start(&["--mode", "broadcast", "--framing", name]);
        let mut a = daemon.connect();
        let mut b = daemon.connect();
        let mut listener = daemon.connect();
        daemon.wait_for_log("3 open)");
        let codec = Codec::new(framing, 1 << 20);
        let encode = |tag: u8| {
            let mut wire = BytesMut::new();
            for i in 0..50u8 {
                let body = if name.starts_with("fixed") {
                    vec![tag; 16]
                } else {
                    vec![tag; 1 + i as usize]
                };
                codec.encode(&body, &mut wire).unwrap();
            }
            wire
        };
        let (wire_a, wire_b) = (encode(b'a'), encode(b'b'));
        a.write_all(&wire_a).unwrap();
        b.write_all(&wire_b).unwrap();
        // The listener sees both streams, interleaved only at frame boundaries.
        let total = wire_a.len() + wire_b.len();
        let mut got = BytesMut::from(&common::read_n(&mut listener, total)[..]);
        let (mut from_a, mut from_b) = (BytesMut::new(), BytesMut::new());
        if framing == Framing::Raw {
            // Raw has no frames to keep whole; each sender's bytes still arrive in order.
            from_a.extend(got.iter().filter(|&&c| c == b'a'));
            from_b.extend(got.iter().filter(|&&c| c == b'b'));
        } else {
            let mut decoder = codec.clone();
            while let Some(frame) = decode_frame(&mut decoder, &mut got).unwrap() {
                let payload = codec.payload(&frame);
                assert!(
                    payload.iter().all(|&c| c == payload[0]),
                    "{name}: frames interleaved"
                );
                let stream = if payload[0] == b'a' {
                    &mut from_a
                } else {
                    &mut from_b
                };
                stream.extend_from_slice(&frame);
            }
        }
        assert!(
            from_a == wire_a && from_b == wire_b,
            "{name}: streams differ"
        );
        // Each sender got the other's frames.
        assert_eq!(common::read_n(&mut a, wire_b.len()), wire_b, "{name}");
        assert_eq!(common::read_n(&mut b, wire_a.len()), wire_a, "{name}");
    }
}
