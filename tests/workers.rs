//! `--workers N` over real sockets: echo served by both workers (their rows on
//! `/stats` say so), broadcast and rooms across workers (every frame once, in
//! per-publisher order), `pace` holding a publisher on one worker for a slow reader
//! on the other (nothing lost), a graceful shutdown of every worker, and a worker that
//! panics while the other goes on serving.

mod common;

use std::io::{BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::{
    echo_roundtrip, frame_u32be, json_number, read_frame_u32be, read_to_end, Daemon, TIMEOUT,
};

/// A number from the daemon's `/stats`.
fn stat(daemon: &Daemon, key: &str) -> u64 {
    let (status, body) = daemon.admin_get("/stats");
    assert_eq!(status, 200, "{body}");
    json_number(&body, key).unwrap_or_else(|| panic!("no {key} in {body}")) as u64
}

/// Waits until `/stats` says `key` is `want` (the other workers' counters reach it
/// within a quarter second).
fn wait_stat(daemon: &Daemon, key: &str, want: u64) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let got = stat(daemon, key);
        if got == want {
            return;
        }
        assert!(Instant::now() < deadline, "{key} stayed {got}, not {want}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// Each worker's row on `/stats`: (accepted, open, frames in, frames out).
fn worker_rows(daemon: &Daemon) -> Vec<(u64, u64, u64, u64)> {
    let (_, body) = daemon.admin_get("/stats");
    let at = body.find("\"workers\":").expect("a workers table");
    body[at..]
        .split("{\"name\":")
        .skip(1)
        .map(|row| {
            let n = |key| json_number(row, key).unwrap_or_else(|| panic!("{key} in {row}")) as u64;
            (
                n("connections_accepted"),
                n("connections_open"),
                n("frames_in"),
                n("frames_out"),
            )
        })
        .collect()
}

/// True when worker 0 serves `client` (its `/connz` lists the client's address).
fn on_worker_0(daemon: &Daemon, client: &TcpStream) -> bool {
    let local: SocketAddr = client.local_addr().unwrap();
    let (_, body) = daemon.admin_get("/connz?limit=1000");
    body.contains(&format!("\"peer\":\"{local}\""))
}

/// Connects and reads the greeting: the connection is then a member on its worker.
fn greeted(daemon: &Daemon) -> TcpStream {
    let mut client = daemon.connect();
    assert_eq!(
        read_frame_u32be(&mut client).as_deref(),
        Some(&b"hi"[..]),
        "the greeting"
    );
    client
}

/// At least `min` greeted clients, more until both workers have some (the kernel's
/// hash decides; worker 0's `/connz` says which it took).
fn spread_clients(daemon: &Daemon, min: usize) -> Vec<TcpStream> {
    let mut clients = Vec::new();
    loop {
        clients.push(greeted(daemon));
        let on_0 = clients.iter().filter(|c| on_worker_0(daemon, c)).count();
        if clients.len() >= min && on_0 > 0 && on_0 < clients.len() {
            return clients;
        }
        assert!(
            clients.len() < 64,
            "the kernel put every connection on one worker"
        );
    }
}

/// Payload `seq` of client `id`.
fn payload(id: u32, seq: u32) -> Vec<u8> {
    let mut p = id.to_be_bytes().to_vec();
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend((0..(seq % 200) as usize).map(|i| (i as u32 ^ id) as u8));
    p
}

fn ids(p: &[u8]) -> (u32, u32) {
    let id = u32::from_be_bytes(p[..4].try_into().unwrap());
    let seq = u32::from_be_bytes(p[4..8].try_into().unwrap());
    assert!(p == payload(id, seq), "frame {seq} of {id} corrupted");
    (id, seq)
}

/// Each client publishes `frames` frames and reads the frames of every client in
/// `peers(id)` (not itself), checking each sender's order; then half-closes and
/// checks nothing more came: every frame once.
fn chat(clients: Vec<TcpStream>, frames: u32, peers: impl Fn(u32) -> Vec<u32> + Sync) {
    let n = clients.len() as u32;
    thread::scope(|s| {
        for (id, stream) in clients.into_iter().enumerate() {
            let id = id as u32;
            let peers = &peers;
            s.spawn(move || {
                let mut writer = stream.try_clone().unwrap();
                let sender = thread::spawn(move || {
                    let mut batch = Vec::new();
                    for seq in 0..frames {
                        batch.extend(frame_u32be(&payload(id, seq)));
                        if seq % 5 == 4 || seq == frames - 1 {
                            writer.write_all(&batch).unwrap();
                            batch.clear();
                        }
                    }
                });
                let from = peers(id);
                let mut next = vec![0u32; n as usize];
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                for _ in 0..from.len() as u32 * frames {
                    let frame = read_frame_u32be(&mut reader).expect("closed too early");
                    let (sender, seq) = ids(&frame);
                    assert!(from.contains(&sender), "{id} got a frame of {sender}");
                    assert_eq!(seq, next[sender as usize], "{id}: {sender} out of order");
                    next[sender as usize] += 1;
                }
                sender.join().unwrap();
                stream.shutdown(Shutdown::Write).unwrap();
                let rest = read_to_end(reader.get_mut());
                assert!(
                    rest.is_empty(),
                    "{id}: {} bytes more than expected",
                    rest.len()
                );
            });
        }
    });
}

#[test]
fn echo_is_served_by_both_workers_and_counted_on_stats() {
    const CLIENTS: u64 = 40;
    let daemon = Daemon::start(&["--workers", "2", "--admin", "127.0.0.1:0"]);
    let mut clients: Vec<TcpStream> = (0..CLIENTS).map(|_| daemon.connect()).collect();
    for (i, client) in clients.iter_mut().enumerate() {
        let frames: Vec<u8> = (0..5)
            .flat_map(|j| frame_u32be(format!("{i}:{j}").as_bytes()))
            .collect();
        echo_roundtrip(client, &frames);
    }
    wait_stat(&daemon, "frames_in", CLIENTS * 5);
    wait_stat(&daemon, "connections_accepted", CLIENTS);
    let rows = worker_rows(&daemon);
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(
        rows.iter().all(|r| r.0 > 0 && r.2 > 0),
        "both workers served: {rows:?}"
    );
    assert_eq!(rows.iter().map(|r| r.0).sum::<u64>(), CLIENTS);
    assert_eq!(rows.iter().map(|r| r.1).sum::<u64>(), CLIENTS, "open now");
    let (_, metrics) = daemon.admin_get("/metrics");
    assert!(
        metrics.contains(&format!("framecast_frames_in_total {}\n", CLIENTS * 5)),
        "/metrics sums the workers"
    );
}

#[test]
fn broadcast_reaches_every_worker_once_in_each_publishers_order() {
    const CLIENTS: usize = 12;
    let args = [
        "--workers",
        "2",
        "--mode",
        "broadcast",
        "--greeting",
        "hi",
        "--admin",
        "127.0.0.1:0",
    ];
    let daemon = Daemon::start(&args);
    let clients = spread_clients(&daemon, CLIENTS);
    let all = clients.len() as u32;
    chat(clients, 150, |id| (0..all).filter(|&p| p != id).collect());
    // Both workers delivered (the other's row is at most a quarter second old).
    let deadline = Instant::now() + TIMEOUT;
    while !worker_rows(&daemon).iter().all(|r| r.3 > 0) {
        assert!(Instant::now() < deadline, "{:?}", worker_rows(&daemon));
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(stat(&daemon, "slow_consumer_frames_dropped"), 0);
}

#[test]
fn rooms_span_workers_and_keep_to_themselves() {
    const CLIENTS: usize = 12;
    let args = [
        "--workers",
        "2",
        "--mode",
        "broadcast",
        "--rooms",
        "--admin",
        "127.0.0.1:0",
    ];
    let daemon = Daemon::start(&args);
    let room = |id: u32| if id % 2 == 0 { "even" } else { "odd" };
    let mut clients: Vec<TcpStream> = (0..CLIENTS).map(|_| daemon.connect()).collect();
    for (id, client) in clients.iter_mut().enumerate() {
        client
            .write_all(&frame_u32be(room(id as u32).as_bytes()))
            .unwrap();
    }
    // Every join read (and so every member in its room) before anyone publishes.
    wait_stat(&daemon, "frames_in", CLIENTS as u64);
    let on_0 = clients.iter().filter(|c| on_worker_0(&daemon, c)).count();
    assert!(
        on_0 > 0 && on_0 < CLIENTS,
        "{on_0} of {CLIENTS} on worker 0"
    );
    let all = CLIENTS as u32;
    chat(clients, 100, |id| {
        (0..all)
            .filter(|&p| p != id && room(p) == room(id))
            .collect()
    });
}

#[test]
fn pace_holds_a_publisher_for_a_slow_reader_on_the_other_worker_and_loses_nothing() {
    const FRAMES: usize = 600;
    const SIZE: usize = 64 << 10;
    let args = [
        "--workers",
        "2",
        "--mode",
        "broadcast",
        "--greeting",
        "hi",
        "--max-output",
        "256KiB",
        "--slow-consumer-timeout",
        "120s",
        "--admin",
        "127.0.0.1:0",
    ];
    let daemon = Daemon::start(&args);
    let publisher = greeted(&daemon);
    let side = on_worker_0(&daemon, &publisher);
    // A reader on the other worker; the candidates that landed on the same one leave.
    let reader = (0..64)
        .map(|_| greeted(&daemon))
        .find(|c| on_worker_0(&daemon, c) != side)
        .expect("the kernel never put a connection on the other worker");
    let written = Arc::new(AtomicUsize::new(0));
    let progress = Arc::clone(&written);
    let mut writer = publisher.try_clone().unwrap();
    let flood = thread::spawn(move || {
        for seq in 0..FRAMES {
            let mut p = (seq as u32).to_be_bytes().to_vec();
            p.resize(SIZE, seq as u8);
            writer.write_all(&frame_u32be(&p)).unwrap();
            progress.fetch_add(1, Ordering::Relaxed);
        }
    });
    // The reader reads nothing: the publisher, on the other worker, is held.
    let deadline = Instant::now() + TIMEOUT;
    let mut last = usize::MAX;
    loop {
        let now = written.load(Ordering::Relaxed);
        if now == last {
            break;
        }
        assert!(Instant::now() < deadline, "the publisher was never held");
        last = now;
        thread::sleep(Duration::from_millis(300));
    }
    assert!(
        last < FRAMES,
        "the publisher sent all {FRAMES} frames unheld"
    );
    let mut reader = BufReader::new(reader);
    for seq in 0..FRAMES {
        let p = read_frame_u32be(&mut reader).expect("the reader was closed");
        assert_eq!(
            p.len(),
            SIZE,
            "{}",
            String::from_utf8_lossy(&p[..p.len().min(80)])
        );
        assert_eq!(
            &p[..4],
            &(seq as u32).to_be_bytes(),
            "frame {seq} lost or reordered"
        );
    }
    flood.join().unwrap();
    assert_eq!(stat(&daemon, "slow_consumer_closes"), 0);
    assert_eq!(stat(&daemon, "slow_consumer_frames_dropped"), 0);
}

#[test]
fn sigterm_drains_every_worker_then_exits_0() {
    let mut daemon = Daemon::start(&["--workers", "2", "--admin", "127.0.0.1:0"]);
    let mut clients: Vec<TcpStream> = (0..20).map(|_| daemon.connect()).collect();
    for client in &mut clients {
        echo_roundtrip(client, &frame_u32be(b"before"));
    }
    wait_stat(&daemon, "connections_open", 20);
    let rows = worker_rows(&daemon);
    assert!(rows.iter().all(|r| r.1 > 0), "both hold clients: {rows:?}");
    for client in &mut clients {
        client.write_all(&frame_u32be(b"in flight")).unwrap();
    }
    daemon.signal("TERM");
    for client in &mut clients {
        // Each is answered, then closed by its worker's drain.
        assert_eq!(read_to_end(client), frame_u32be(b"in flight"));
    }
    assert_eq!(daemon.wait_exit(TIMEOUT), Some(0));
    // The log is read by a thread of the test, so it is waited for, not read once.
    daemon.wait_for_log("worker 0: shutdown complete");
    daemon.wait_for_log("worker 1: shutdown complete");
    assert!(TcpStream::connect(daemon.addr).is_err(), "nobody listens");
}

mod panic {
    use super::*;
    use framecast::service::{ConnId, Ctx, Frame, Service};
    use framecast::workers::{WorkerEnd, Workers};
    use framecast::Config;

    /// Echo, but a frame `boom` panics its worker (a bug in a service).
    struct Fragile;

    impl Service for Fragile {
        fn on_frame(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, frame: Frame) {
            assert!(frame.payload() != b"boom", "boom");
            let _ = ctx.send_frame(conn, frame.payload());
        }
    }

    #[test]
    fn a_worker_that_panics_is_reported_and_the_other_goes_on_serving() {
        let config = Config {
            listen: vec!["127.0.0.1:0".parse().unwrap()],
            ..Config::default()
        };
        let workers = Workers::bind(config, 2, |_| Fragile).unwrap();
        let addr = workers.local_addrs()[0];
        let handles = workers.handles();
        let runner = thread::spawn(move || workers.run());
        // Connections until one has been answered and then lost by the panic.
        let mut victim = common::connect(addr);
        echo_roundtrip(&mut victim, &frame_u32be(b"ok"));
        victim.write_all(&frame_u32be(b"boom")).unwrap();
        assert!(read_to_end(&mut victim).is_empty(), "nothing after boom");
        // The survivor takes every new connection (the dead one's listener is closed).
        for i in 0..20 {
            let mut client = common::connect(addr);
            echo_roundtrip(&mut client, &frame_u32be(format!("after {i}").as_bytes()));
        }
        for handle in &handles {
            handle.shutdown("the test is done");
        }
        let ends = runner.join().unwrap();
        assert_eq!(
            ends.iter()
                .filter(|e| matches!(e, WorkerEnd::Panicked(why) if why.contains("boom")))
                .count(),
            1,
            "{ends:?}"
        );
        assert_eq!(ends.iter().filter(|e| e.is_clean()).count(), 1, "{ends:?}");
    }
}

#[test]
fn a_unix_client_on_worker_0_shares_a_room_with_tcp_clients_on_both_workers() {
    use std::os::unix::net::UnixStream;
    let dir = std::env::temp_dir().join(format!("framecast-workers-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("room.sock");
    let unix_listen = format!("unix:{}", path.display());
    let daemon = Daemon::start(&[
        "--workers",
        "2",
        "--mode",
        "broadcast",
        "--greeting",
        "hi",
        "--admin",
        "127.0.0.1:0",
        "--listen",
        "127.0.0.1:0",
        "--listen",
        &unix_listen,
    ]);
    assert_eq!(daemon.listeners.len(), 2, "{:?}", daemon.listeners);
    let mut unix = UnixStream::connect(&path).unwrap();
    unix.set_read_timeout(Some(TIMEOUT)).unwrap();
    assert_eq!(read_frame_u32be(&mut unix).as_deref(), Some(&b"hi"[..]));
    let mut tcp = spread_clients(&daemon, 2);
    // Every member is in the room on its worker once the worker has counted it.
    wait_stat(&daemon, "connections_open", tcp.len() as u64 + 1);
    unix.write_all(&frame_u32be(b"from unix")).unwrap();
    for client in &mut tcp {
        assert_eq!(read_frame_u32be(client).as_deref(), Some(&b"from unix"[..]));
    }
    tcp[0].write_all(&frame_u32be(b"from tcp")).unwrap();
    assert_eq!(
        read_frame_u32be(&mut unix).as_deref(),
        Some(&b"from tcp"[..])
    );
    drop(daemon);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn udp_echo_is_served_with_two_workers() {
    use std::net::UdpSocket;
    let daemon = Daemon::start(&["--workers", "2", "--listen", "udp://127.0.0.1:0"]);
    // Several senders: the kernel hashes each to a worker; every one is answered.
    for i in 0..16u8 {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_read_timeout(Some(TIMEOUT)).unwrap();
        let datagram = vec![i; 100 + usize::from(i)];
        socket.send_to(&datagram, daemon.addr).unwrap();
        let mut buf = [0u8; 512];
        let (n, from) = socket.recv_from(&mut buf).unwrap();
        assert_eq!(from, daemon.addr);
        assert_eq!(&buf[..n], &datagram[..], "sender {i}");
    }
}
