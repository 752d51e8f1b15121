//! `--bridge nats://...` against a real `nats-server` on loopback: two daemons
//! bridged through it, clients on both get every frame once, in each publisher's
//! order; the server killed and restarted on the same port: local delivery never
//! stops, frames cross again once it is back; a three-node NATS cluster with the
//! daemons on different nodes. Skipped, saying so, where `nats-server` cannot be run
//! (`.ci/run` installs it).

mod common;

use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::{frame_u32be, json_number, read_frame_u32be, Daemon, TIMEOUT};

/// A `nats-server` child, killed by its PID on drop.
struct Nats {
    child: Child,
    port: u16,
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// True when `nats-server` can be run here; says why the test skips otherwise.
fn have_nats() -> bool {
    let found = Command::new("nats-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        eprintln!("skipping: nats-server is not installed (Debian: apt-get install nats-server)");
    }
    found
}

/// A free loopback port: nats-server cannot be given port 0, so one is bound and let
/// go.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Starts `nats-server` on `port` with `extra` arguments and waits until it accepts.
fn nats(port: u16, extra: &[String]) -> Nats {
    let child = Command::new("nats-server")
        .args(["-a", "127.0.0.1", "-p", &port.to_string()])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn nats-server");
    let server = Nats { child, port };
    let deadline = Instant::now() + TIMEOUT;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nats-server never listened on {port}"
        );
        thread::sleep(Duration::from_millis(20));
    }
    server
}

/// A broadcast daemon with rooms, bridged to the server on `port`, once its bridge
/// is subscribed.
fn bridged(port: u16) -> Daemon {
    let url = format!("nats://127.0.0.1:{port}");
    let daemon = Daemon::start(&[
        "--mode",
        "broadcast",
        "--rooms",
        "--bridge",
        &url,
        "--admin",
        "127.0.0.1:0",
    ]);
    daemon.wait_for_log("bridge: connected to");
    daemon
}

/// A client of `daemon` in `room`, once the daemon has it there (its `/stats` room
/// row counts `members`).
fn join(daemon: &Daemon, room: &str, members: u64) -> TcpStream {
    let mut client = daemon.connect();
    client.write_all(&frame_u32be(room.as_bytes())).unwrap();
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let (_, body) = daemon.admin_get("/stats");
        let row = body
            .find(&format!("{{\"name\":\"{room}\""))
            .map(|at| &body[at..]);
        if row.and_then(|r| json_number(r, "members")) == Some(members as f64) {
            return client;
        }
        assert!(
            Instant::now() < deadline,
            "{room} never had {members} members: {body}"
        );
        thread::sleep(Duration::from_millis(10));
    }
}

/// One of the bridge row's numbers on `daemon`'s `/stats`.
fn bridge_stat(daemon: &Daemon, key: &str) -> u64 {
    let (_, body) = daemon.admin_get("/stats");
    let at = body.find("\"bridges\":").expect("a bridge table");
    json_number(&body[at..], key).unwrap_or_else(|| panic!("{key} in {body}")) as u64
}

/// Payload `seq` of publisher `id`.
fn payload(id: u8, seq: u32) -> Vec<u8> {
    let mut p = vec![id];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend((0..seq % 300).map(|i| (i as u8) ^ id));
    p
}

/// Reads `frames` frames from each of `publishers` off `client`, checking each
/// publisher's order and that nothing else comes.
fn expect_all(client: &mut BufReader<TcpStream>, publishers: &[u8], frames: u32, starting: u32) {
    let mut next: Vec<u32> = vec![starting; 256];
    for _ in 0..publishers.len() as u32 * frames {
        let p = read_frame_u32be(client).expect("closed");
        let (id, seq) = (p[0], u32::from_be_bytes(p[1..5].try_into().unwrap()));
        assert!(publishers.contains(&id), "a frame of {id}");
        assert_eq!(
            seq, next[id as usize],
            "{id}: a frame lost, repeated or reordered"
        );
        assert!(p == payload(id, seq), "{id}/{seq} corrupted");
        next[id as usize] += 1;
    }
}

fn publish(client: &mut TcpStream, id: u8, seqs: std::ops::Range<u32>) {
    let mut batch = Vec::new();
    for seq in seqs {
        batch.extend(frame_u32be(&payload(id, seq)));
    }
    client.write_all(&batch).unwrap();
}

#[test]
fn clients_on_two_bridged_daemons_get_every_frame_once_in_order() {
    if !have_nats() {
        return;
    }
    let server = nats(free_port(), &[]);
    let (a, b) = (bridged(server.port), bridged(server.port));
    let mut a1 = join(&a, "chat", 1);
    let a2 = join(&a, "chat", 2);
    let b1 = join(&b, "chat", 1);
    let b2 = join(&b, "chat", 2);
    let other = join(&b, "elsewhere", 1);
    // Both daemons' members are in place; the subscriptions were in place before.
    const FRAMES: u32 = 300;
    let (mut a1c, mut b1c) = (a1.try_clone().unwrap(), b1.try_clone().unwrap());
    let pa = thread::spawn(move || publish(&mut a1c, 1, 0..FRAMES));
    let pb = thread::spawn(move || publish(&mut b1c, 2, 0..FRAMES));
    let readers: Vec<_> = [(a2, vec![1, 2]), (b2, vec![1, 2])]
        .into_iter()
        .map(|(c, from)| {
            thread::spawn(move || expect_all(&mut BufReader::new(c), &from, FRAMES, 0))
        })
        .collect();
    expect_all(
        &mut BufReader::new(a1.try_clone().unwrap()),
        &[2],
        FRAMES,
        0,
    );
    expect_all(
        &mut BufReader::new(b1.try_clone().unwrap()),
        &[1],
        FRAMES,
        0,
    );
    for r in readers {
        r.join().unwrap();
    }
    pa.join().unwrap();
    pb.join().unwrap();
    // Nothing more for anyone: a marker from each daemon comes next, and the other
    // room heard nothing at all.
    a1.write_all(&frame_u32be(&payload(1, FRAMES))).unwrap();
    expect_all(&mut BufReader::new(b1), &[1], 1, FRAMES);
    let mut other = BufReader::new(other);
    b2_marker_then_silence(&b, &mut other);
    assert_eq!(bridge_stat(&a, "published"), FRAMES as u64 + 1);
    assert_eq!(bridge_stat(&b, "received"), FRAMES as u64 + 1);
}

/// The room `elsewhere` on `daemon` got nothing of `chat`: a frame of its own room,
/// sent through the other daemon... is the first thing it reads.
fn b2_marker_then_silence(daemon: &Daemon, other: &mut BufReader<TcpStream>) {
    let mut sender = join(daemon, "elsewhere", 2);
    sender.write_all(&frame_u32be(&payload(9, 0))).unwrap();
    expect_all(other, &[9], 1, 0);
}

#[test]
fn local_rooms_go_on_while_nats_is_away_and_bridge_again_once_it_is_back() {
    if !have_nats() {
        return;
    }
    let port = free_port();
    let server = nats(port, &[]);
    let (a, b) = (bridged(port), bridged(port));
    let mut a1 = join(&a, "r", 1);
    let mut a2 = BufReader::new(join(&a, "r", 2));
    let mut b1 = BufReader::new(join(&b, "r", 1));
    publish(&mut a1, 1, 0..10);
    expect_all(&mut a2, &[1], 10, 0);
    expect_all(&mut b1, &[1], 10, 0);

    drop(server); // killed
    a.wait_for_log("bridge: lost");
    b.wait_for_log("bridge: lost");
    publish(&mut a1, 1, 10..60);
    expect_all(&mut a2, &[1], 50, 10); // local delivery never stops
    assert_eq!(bridge_stat(&a, "dropped_down"), 50);
    assert!(bridge_stat(&a, "outages") >= 1);
    assert_eq!(bridge_stat(&a, "connected"), 0);

    let _server = nats(port, &[]);
    a.wait_for_log("again after");
    b.wait_for_log("again after");
    publish(&mut a1, 1, 60..100);
    expect_all(&mut a2, &[1], 40, 60);
    // No replay: after frame 9, the next b1 sees is 60.
    expect_all(&mut b1, &[1], 40, 60);
    assert_eq!(bridge_stat(&a, "connects"), 2);
}

#[test]
fn daemons_on_different_nodes_of_a_nats_cluster_share_rooms() {
    if !have_nats() {
        return;
    }
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let routes: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let nodes: Vec<Nats> = (0..3)
        .map(|i| {
            let others: Vec<String> = (0..3)
                .filter(|&j| j != i)
                .map(|j| format!("nats://127.0.0.1:{}", routes[j]))
                .collect();
            let args = [
                "--cluster_name".to_owned(),
                "framecast-test".to_owned(),
                "--cluster".to_owned(),
                format!("nats://127.0.0.1:{}", routes[i]),
                "--routes".to_owned(),
                others.join(","),
            ];
            nats(ports[i], &args)
        })
        .collect();
    let (a, b) = (bridged(nodes[0].port), bridged(nodes[2].port));
    // The routes form in the background: probe each way until a frame crosses, so
    // each daemon's subscription has reached the other's node.
    let mut probe_a = join(&a, "probe", 1);
    let mut probe_b = join(&b, "probe", 1);
    probe_until_crossed(&mut probe_a, &probe_b);
    probe_until_crossed(&mut probe_b, &probe_a);
    let a1 = join(&a, "r", 1);
    let b1 = join(&b, "r", 1);
    let (mut a1c, mut b1c) = (a1.try_clone().unwrap(), b1.try_clone().unwrap());
    let pa = thread::spawn(move || publish(&mut a1c, 1, 0..200));
    let pb = thread::spawn(move || publish(&mut b1c, 2, 0..200));
    expect_all(&mut BufReader::new(b1.try_clone().unwrap()), &[1], 200, 0);
    expect_all(&mut BufReader::new(a1.try_clone().unwrap()), &[2], 200, 0);
    pa.join().unwrap();
    pb.join().unwrap();
}

/// Sends probes from `from` until `to` reads one.
fn probe_until_crossed(from: &mut TcpStream, to: &TcpStream) {
    to.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut reader = to.try_clone().unwrap();
    let deadline = Instant::now() + TIMEOUT;
    loop {
        from.write_all(&frame_u32be(b"probe")).unwrap();
        let mut frame = [0u8; 9];
        if std::io::Read::read_exact(&mut reader, &mut frame).is_ok() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the cluster never routed a frame"
        );
    }
    to.set_read_timeout(Some(TIMEOUT)).unwrap();
}

#[test]
fn with_workers_each_worker_bridges_and_nats_links_them() {
    if !have_nats() {
        return;
    }
    let server = nats(free_port(), &[]);
    let url = format!("nats://127.0.0.1:{}", server.port);
    let args = [
        "--mode",
        "broadcast",
        "--workers",
        "2",
        "--greeting",
        "hi",
        "--bridge",
        &url,
        "--admin",
        "127.0.0.1:0",
    ];
    let daemon = Daemon::start(&args);
    let deadline = Instant::now() + TIMEOUT;
    while daemon.stderr().matches("bridge: connected to").count() < 2 {
        assert!(
            Instant::now() < deadline,
            "both workers' bridges never came up"
        );
        thread::sleep(Duration::from_millis(10));
    }
    // At least 8 clients, more until both workers have some (the kernel's hash
    // decides where each lands; worker 0's /connz says which it took).
    let mut clients: Vec<TcpStream> = Vec::new();
    loop {
        let mut c = daemon.connect();
        assert_eq!(read_frame_u32be(&mut c).as_deref(), Some(&b"hi"[..]));
        clients.push(c);
        let (_, connz) = daemon.admin_get("/connz?limit=1000");
        let on_0 = clients
            .iter()
            .filter(|c| connz.contains(&format!("\"peer\":\"{}\"", c.local_addr().unwrap())))
            .count();
        if clients.len() >= 8 && on_0 > 0 && on_0 < clients.len() {
            break;
        }
        assert!(
            clients.len() < 64,
            "the kernel put every connection on one worker"
        );
    }
    let clients_n = clients.len() as u8;
    const FRAMES: u32 = 100;
    let handles: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(id, client)| {
            let id = id as u8;
            thread::spawn(move || {
                let mut writer = client.try_clone().unwrap();
                let sender = thread::spawn(move || publish(&mut writer, id, 0..FRAMES));
                let others: Vec<u8> = (0..clients_n).filter(|&p| p != id).collect();
                expect_all(&mut BufReader::new(client), &others, FRAMES, 0);
                sender.join().unwrap();
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

#[test]
fn sigterm_closes_the_bridge_at_once_though_nats_keeps_sending() {
    if !have_nats() {
        return;
    }
    let server = nats(free_port(), &[]);
    let url = format!("nats://127.0.0.1:{}", server.port);
    let args = [
        "--mode",
        "broadcast",
        "--bridge",
        &url,
        "--drain-timeout",
        "120s",
    ];
    let mut a = Daemon::start(&args);
    a.wait_for_log("bridge: connected to");
    let b = Daemon::start(&args);
    b.wait_for_log("bridge: connected to");
    // A client of A proves the traffic crosses, then B's publisher keeps NATS sending
    // to A for the whole shutdown: A's bridge never goes quiet by itself.
    let mut reader = BufReader::new(a.connect());
    let mut writer = b.connect();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = std::sync::Arc::clone(&stop);
    let publisher = thread::spawn(move || {
        let mut seq = 0;
        while !flag.load(std::sync::atomic::Ordering::Relaxed) {
            if writer.write_all(&frame_u32be(&payload(1, seq))).is_err() {
                return;
            }
            seq += 1;
        }
    });
    expect_all(&mut reader, &[1], 10, 0);
    drop(reader);
    a.signal("TERM");
    // Without the bridge closing itself the drain would run to its 120 s timeout.
    assert_eq!(a.wait_exit(TIMEOUT), Some(0));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    publisher.join().unwrap();
    // The log is read by a thread of the test: wait for its last line.
    a.wait_for_log("totals:");
    let log = a.stderr();
    assert!(log.contains("bridge: closed"), "{log}");
    assert!(!log.contains("bridge: lost"), "{log}");
}

#[test]
fn a_frame_over_the_servers_max_payload_stays_local_and_is_counted() {
    if !have_nats() {
        return;
    }
    let config = std::env::temp_dir().join(format!("framecast-nats-{}.conf", std::process::id()));
    std::fs::write(&config, "max_payload: 1024\n").unwrap();
    let server = nats(
        free_port(),
        &["-c".to_owned(), config.display().to_string()],
    );
    let (a, b) = (bridged(server.port), bridged(server.port));
    let _ = std::fs::remove_file(&config);
    let mut a1 = join(&a, "r", 1);
    let mut a2 = BufReader::new(join(&a, "r", 2));
    let mut b1 = BufReader::new(join(&b, "r", 1));
    let big = vec![7u8; 2000];
    a1.write_all(&frame_u32be(&big)).unwrap();
    publish(&mut a1, 1, 0..1);
    assert_eq!(
        read_frame_u32be(&mut a2).as_deref(),
        Some(&big[..]),
        "local: delivered"
    );
    expect_all(&mut a2, &[1], 1, 0);
    // Across: only the small one (the big one would come first).
    expect_all(&mut b1, &[1], 1, 0);
    assert_eq!(bridge_stat(&a, "dropped_oversize"), 1);
    assert!(a.stderr().contains("max payload 1024 B"), "{}", a.stderr());
}

#[test]
fn an_idle_timeout_shorter_than_natss_pings_does_not_drop_a_quiet_bridge() {
    if !have_nats() {
        return;
    }
    let server = nats(free_port(), &[]);
    let url = format!("nats://127.0.0.1:{}", server.port);
    let start = |url: &str| {
        let daemon = Daemon::start(&[
            "--mode",
            "broadcast",
            "--rooms",
            "--bridge",
            url,
            "--idle-timeout",
            "400ms",
            "--admin",
            "127.0.0.1:0",
        ]);
        daemon.wait_for_log("bridge: connected to");
        daemon
    };
    let (a, b) = (start(&url), start(&url));
    // Quiet for several idle timeouts: the bridge's own PINGs keep it open.
    thread::sleep(Duration::from_millis(1500));
    assert_eq!(bridge_stat(&a, "outages"), 0, "{}", a.stderr());
    assert_eq!(bridge_stat(&b, "outages"), 0, "{}", b.stderr());
    assert_eq!(bridge_stat(&a, "connects"), 1);
    let mut a1 = join(&a, "chat", 1);
    let b1 = join(&b, "chat", 1);
    probe_until_crossed(&mut a1, &b1);
}
