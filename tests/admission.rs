//! Who gets in, and what happens when too many try: connection limits, file-descriptor
//! exhaustion, access lists, socket options, and the notice for non-loopback listening.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use common::{connect, echo_roundtrip, finish, frame_u32be, read_to_end, Daemon, TIMEOUT};

#[test]
fn n_plus_50_clients_the_50_extra_are_closed_at_once() {
    let daemon = Daemon::start(&["--max-connections", "20"]);
    let mut admitted: Vec<TcpStream> = (0..20)
        .map(|i| {
            let mut c = daemon.connect();
            echo_roundtrip(&mut c, &frame_u32be(format!("client {i}").as_bytes()));
            c
        })
        .collect();
    let extra: Vec<TcpStream> = (0..50).map(|_| daemon.connect()).collect();
    for mut refused in extra {
        assert_eq!(
            read_to_end(&mut refused),
            b"",
            "a refused client gets a close, no data"
        );
    }
    // Logged at most once a second, and all of them within a second or so, the end of
    // the burst too, though no refusal follows it.
    let deadline = Instant::now() + TIMEOUT;
    while logged_refusals(&daemon.stderr()) < 50 {
        assert!(
            Instant::now() < deadline,
            "refusals never all logged:\n{}",
            daemon.stderr()
        );
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(logged_refusals(&daemon.stderr()), 50);
    for c in &mut admitted {
        echo_roundtrip(c, &frame_u32be(b"still served"));
    }
    finish(&mut admitted[0], b"");
    retry_echo(daemon.addr);
}

/// The refusals at the connection limit that a daemon's log has reported so far.
fn logged_refusals(log: &str) -> u64 {
    log.lines()
        .filter(|l| l.contains("at the limit of"))
        .filter_map(|l| {
            l.split("refused ")
                .nth(1)?
                .split(' ')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

/// Connects and echoes one frame, retrying until the daemon has room (bounded).
fn retry_echo(addr: SocketAddr) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let mut c = connect(addr);
        let frame = frame_u32be(b"room again");
        if std::io::Write::write_all(&mut c, &frame).is_ok() {
            let mut buf = vec![0; frame.len()];
            if std::io::Read::read_exact(&mut c, &mut buf).is_ok() && buf == frame {
                return;
            }
        }
        assert!(Instant::now() < deadline, "never served again");
        thread::sleep(Duration::from_millis(50));
    }
}

/// The daemon's open-file limits, soft and hard, from `/proc`.
fn nofile_limits(pid: u32) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let numbers: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    (numbers[0], numbers[1])
}

#[test]
fn a_low_soft_open_file_limit_is_raised_so_max_connections_fit() {
    // Soft limit 100, hard limit untouched: 300 connections need it raised.
    let daemon = Daemon::start_with_ulimit("-S -n 100", &["--max-connections", "300"]);
    let (soft, hard) = nofile_limits(daemon.pid());
    if hard < 332 {
        // A machine whose hard limit is below what is wanted: the daemon goes as far
        // as it may, and says so.
        assert_eq!(soft, hard);
        daemon.wait_for_log("the hard limit allows no more");
        return;
    }
    assert_eq!(soft, 332, "300 connections and 32 in reserve");
    daemon.wait_for_log("raised the open-file limit from 100 to 332");
    let mut clients: Vec<TcpStream> = (0..300).map(|_| daemon.connect()).collect();
    for (i, client) in clients.iter_mut().enumerate() {
        echo_roundtrip(client, &frame_u32be(format!("client {i}").as_bytes()));
    }
    assert!(!daemon.stderr().contains("Too many open files"));
}

#[test]
fn a_hard_open_file_limit_below_max_connections_is_reported() {
    let daemon = Daemon::start_with_nofile(64, &["--max-connections", "1000"]);
    daemon.wait_for_log("the open-file limit is 64 and the hard limit allows no more: about ");
    let log = daemon.stderr();
    let fit: usize = log
        .split("allows no more: about ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no estimate in the warning:\n{log}"));
    // The estimate is what can really be open at once: every one of that many clients
    // is served, with nothing turned away, and it is not far below the limit.
    assert!(fit >= 50, "a pessimistic estimate: {fit} of 64");
    let mut clients: Vec<TcpStream> = (0..fit).map(|_| daemon.connect()).collect();
    for (i, client) in clients.iter_mut().enumerate() {
        echo_roundtrip(client, &frame_u32be(format!("client {i}").as_bytes()));
    }
    assert!(
        !daemon.stderr().contains("pausing accepts"),
        "{fit} connections hit the limit:\n{}",
        daemon.stderr()
    );
    // Nor is it optimistic: one more is shed.
    let mut one_more = daemon.connect();
    assert_eq!(
        read_to_end(&mut one_more),
        b"",
        "shed with a close, no data"
    );
    daemon.wait_for_log("closed one pending connection");
    echo_roundtrip(&mut clients[0], &frame_u32be(b"still served"));
}

#[test]
fn out_of_file_descriptors_the_daemon_sheds_and_backs_off_without_spinning() {
    let daemon = Daemon::start_with_nofile(64, &[]);
    let mut established = daemon.connect();
    echo_roundtrip(&mut established, &frame_u32be(b"before the flood"));

    // 500 connection attempts; the daemon can hold about 55 of them.
    let flood: Vec<TcpStream> = (0..500)
        .filter_map(|_| TcpStream::connect(daemon.addr).ok())
        .collect();
    daemon.wait_for_log("Too many open files");
    let (ticks_before, at) = (daemon.cpu_ticks(), Instant::now());
    thread::sleep(Duration::from_secs(2));
    let ticks = daemon.cpu_ticks() - ticks_before;
    let elapsed_ticks = at.elapsed().as_secs_f64() * 100.0; // USER_HZ is 100 on Linux
    assert!(
        (ticks as f64) < 0.05 * elapsed_ticks,
        "{ticks} CPU ticks in {elapsed_ticks:.0}: spinning at the fd limit"
    );
    assert!(
        daemon.stderr().contains("closed one pending connection"),
        "no connection was shed"
    );
    // Established connections are still served at the limit.
    echo_roundtrip(&mut established, &frame_u32be(b"during the flood"));

    drop(flood);
    retry_echo(daemon.addr);
}

#[test]
fn access_lists_refuse_and_deny_wins() {
    let cases: [(&[&str], bool); 5] = [
        (&["--deny", "127.0.0.1"], false),
        (&["--allow", "10.0.0.0/8"], false),
        (&["--allow", "127.0.0.0/8"], true),
        (&["--allow", "127.0.0.0/8", "--deny", "127.0.0.1/32"], false),
        (&["--deny", "10.0.0.0/8", "--deny", "::1"], true),
    ];
    for (rules, served) in cases {
        let daemon = Daemon::start(rules);
        let mut client = daemon.connect();
        if served {
            echo_roundtrip(&mut client, &frame_u32be(b"welcome"));
        } else {
            assert_eq!(
                read_to_end(&mut client),
                b"",
                "{rules:?}: refused peers get a close"
            );
            let peer = client.local_addr().unwrap();
            daemon.wait_for_log(&format!("{peer}: refused by the access rules"));
        }
    }
}

#[test]
fn access_lists_match_ipv6_peers() {
    if !common::has_ipv6_loopback() {
        return;
    }
    for (rules, served) in [
        (&["--allow", "::1/128"][..], true),
        (&["--deny", "::/0"][..], false),
    ] {
        let mut args = vec!["--listen", "[::1]:0"];
        args.extend_from_slice(rules);
        let daemon = Daemon::start(&args);
        let mut client = daemon.connect();
        if served {
            echo_roundtrip(&mut client, &frame_u32be(b"v6"));
        } else {
            assert_eq!(read_to_end(&mut client), b"");
        }
    }
}

/// `ss` (iproute2) output for sockets matching `filter`, e.g. `sport = :7070`; `None`
/// where `ss` is not installed (`cargo test` needs nothing but the Rust toolchain).
fn ss(args: &[&str], filter: &str) -> Option<String> {
    match Command::new("ss").args(args).arg(filter).output() {
        Ok(out) => Some(String::from_utf8_lossy(&out.stdout).into_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => panic!("ss: {e}"),
    }
}

/// The kernel's timer codes (`tr` in `/proc/net/tcp`: 2 is keepalive) of the
/// established IPv4 sockets whose local port is `port`.
fn timers_of_established(port: u16) -> Vec<u8> {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("read /proc/net/tcp");
    let local = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .filter(|f| f.len() > 5 && f[1].ends_with(&local) && f[3] == "01")
        .filter_map(|f| u8::from_str_radix(f[5].split(':').next()?, 16).ok())
        .collect()
}

#[test]
fn backlog_and_keepalive_reach_the_sockets() {
    let daemon = Daemon::start(&["--backlog", "7", "--keepalive", "42s"]);
    let port = daemon.addr.port();
    // For a listening socket, ss shows the backlog as Send-Q; nothing else does.
    match ss(&["-ltnH"], &format!("sport = :{port}")) {
        Some(listening) => {
            let send_q = listening.split_whitespace().nth(2).unwrap_or_default();
            assert_eq!(send_q, "7", "ss -ltn: {listening}");
        }
        None => eprintln!("note: `ss` (iproute2) is not installed: the backlog is not checked"),
    }

    let mut client = daemon.connect();
    echo_roundtrip(&mut client, &frame_u32be(b"keepalive"));
    let timers = timers_of_established(port);
    assert_eq!(
        timers,
        [2],
        "the accepted socket's timer is not keepalive (2)"
    );
}

#[test]
fn nodelay_can_be_turned_off() {
    let daemon = Daemon::start(&["--nodelay", "false"]);
    echo_roundtrip(&mut daemon.connect(), &frame_u32be(b"with Nagle"));
}

#[test]
fn a_non_loopback_listen_address_is_announced() {
    let daemon = Daemon::start(&["--listen", "0.0.0.0:0"]);
    daemon.wait_for_log("which is not a loopback address: reachable from other hosts");
    let loopback = SocketAddr::from(([127, 0, 0, 1], daemon.addr.port()));
    echo_roundtrip(&mut connect(loopback), &frame_u32be(b"via loopback"));
    let quiet = Daemon::start(&[]);
    thread::sleep(Duration::from_millis(100));
    assert!(!quiet.stderr().contains("not a loopback address"));
}
