//! UDP echo (RFC 862) against the real daemon: datagrams of every size come back
//! byte-exact to their sender, source ports 7 and 19 get no reply, the access rules
//! apply to each datagram, the counters show on the admin endpoint, broadcast over UDP
//! is refused, and IPv6 loopback works for every transport.

mod common;

use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::process::Command;

use common::{echo_roundtrip, frame_u32be, json_number, Daemon, Rng, TIMEOUT};

/// The largest datagram over IPv4.
const MAX_DATAGRAM: usize = 65_507;

/// A client socket on `ip`, port `port` (0: any), with a read timeout.
fn client(ip: &str, port: u16) -> std::io::Result<UdpSocket> {
    let socket = UdpSocket::bind((ip, port))?;
    socket.set_read_timeout(Some(TIMEOUT))?;
    Ok(socket)
}

/// Sends `datagram` to `to` and waits for the one that comes back.
fn roundtrip(socket: &UdpSocket, to: SocketAddr, datagram: &[u8]) -> Vec<u8> {
    socket.send_to(datagram, to).unwrap();
    let mut buf = vec![0; 70_000];
    let (n, from) = socket
        .recv_from(&mut buf)
        .unwrap_or_else(|e| panic!("no reply to {} bytes: {e}", datagram.len()));
    assert_eq!(from, to, "the reply comes from the address we sent to");
    buf.truncate(n);
    buf
}

/// True when nothing is waiting on `socket`.
fn nothing_waiting(socket: &UdpSocket) -> bool {
    socket.set_nonblocking(true).unwrap();
    let mut buf = [0; 16];
    let empty = matches!(socket.recv_from(&mut buf), Err(e) if e.kind() == ErrorKind::WouldBlock);
    socket.set_nonblocking(false).unwrap();
    empty
}

/// A UDP echo daemon with the admin endpoint, and its UDP address.
fn udp_daemon(extra: &[&str]) -> (Daemon, SocketAddr) {
    let mut args = vec!["--listen", "udp://127.0.0.1:0", "--admin", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let daemon = Daemon::start(&args);
    assert!(
        daemon.listeners[0].starts_with("udp://127.0.0.1:"),
        "{:?}",
        daemon.listeners
    );
    let addr = daemon.addr;
    (daemon, addr)
}

/// A counter from the daemon's `/stats`.
fn stat(daemon: &Daemon, key: &str) -> f64 {
    let (status, body) = daemon.admin_get("/stats");
    assert_eq!(status, 200);
    json_number(&body, key).unwrap_or_else(|| panic!("no {key} in {body}"))
}

#[test]
fn a_thousand_datagrams_of_random_sizes_come_back_byte_exact() {
    let (daemon, addr) = udp_daemon(&[]);
    let socket = client("127.0.0.1", 0).unwrap();
    let mut rng = Rng::new(862);
    let mut sizes = vec![1, MAX_DATAGRAM];
    sizes.extend((0..998).map(|_| 1 + rng.below(MAX_DATAGRAM)));
    let mut bytes = 0;
    for (i, &len) in sizes.iter().enumerate() {
        let datagram = rng.bytes(len);
        let back = roundtrip(&socket, addr, &datagram);
        assert_eq!(back.len(), len, "datagram {i}: length");
        assert!(back == datagram, "datagram {i} of {len} bytes differs");
        bytes += len;
    }
    assert_eq!(stat(&daemon, "datagrams_in"), 1000.0);
    assert_eq!(stat(&daemon, "datagrams_out"), 1000.0);
    assert_eq!(stat(&daemon, "datagrams_dropped_queue_full"), 0.0);
    assert_eq!(stat(&daemon, "bytes_out"), bytes as f64);
    let (_, metrics) = daemon.admin_get("/metrics");
    assert!(
        metrics.contains("framecast_datagrams_in_total 1000\n"),
        "{metrics}"
    );
    assert!(metrics.contains("framecast_datagrams_dropped_total{reason=\"port\"} 0\n"));
}

#[test]
fn datagrams_from_the_echo_and_chargen_ports_get_no_reply() {
    let (daemon, addr) = udp_daemon(&[]);
    let echo_port = match client("127.0.0.1", 7) {
        Ok(socket) => socket,
        Err(e) => {
            // Binding a port under 1024 needs root (or CAP_NET_BIND_SERVICE); the rule
            // itself is unit-tested in the reactor (`is_refused_port`).
            eprintln!("cannot bind UDP port 7 ({e}): skipping the live case");
            return;
        }
    };
    let chargen = client("127.0.0.1", 19).ok();
    echo_port.send_to(b"bounce me", addr).unwrap();
    if let Some(chargen) = &chargen {
        chargen.send_to(b"and me", addr).unwrap();
    }
    // A datagram sent after them on the same socket is answered after them: once its
    // reply is here, any reply to ports 7 and 19 would have landed first.
    let other = client("127.0.0.1", 0).unwrap();
    assert_eq!(roundtrip(&other, addr, b"after"), b"after");
    assert!(nothing_waiting(&echo_port), "port 7 got a reply");
    let refused = if let Some(chargen) = &chargen {
        assert!(nothing_waiting(chargen), "port 19 got a reply");
        2.0
    } else {
        1.0
    };
    assert_eq!(stat(&daemon, "datagrams_dropped_port"), refused);
    assert_eq!(stat(&daemon, "datagrams_in"), refused + 1.0);
}

#[test]
fn the_access_rules_apply_to_each_datagram() {
    let (daemon, addr) = udp_daemon(&["--deny", "127.0.0.2"]);
    let Ok(denied) = client("127.0.0.2", 0) else {
        eprintln!("cannot bind 127.0.0.2 on this host: skipping");
        return;
    };
    denied.send_to(b"let me in", addr).unwrap();
    let allowed = client("127.0.0.1", 0).unwrap();
    assert_eq!(roundtrip(&allowed, addr, b"welcome"), b"welcome");
    assert!(nothing_waiting(&denied), "a denied peer got a reply");
    assert_eq!(stat(&daemon, "datagrams_dropped_access"), 1.0);
}

#[test]
fn broadcast_over_udp_is_refused_at_start() {
    let out = Command::new(env!("CARGO_BIN_EXE_framecast"))
        .args(["--mode", "broadcast", "--listen", "udp://127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("'--listen udp://127.0.0.1:0' with '--mode broadcast'"),
        "{stderr}"
    );
    assert!(stderr.contains("only echoes"), "{stderr}");
}

#[test]
fn tcp_and_udp_listeners_serve_side_by_side_on_ipv6_loopback() {
    if !common::has_ipv6_loopback() {
        return;
    }
    let daemon = Daemon::start(&["--listen", "[::1]:0", "--listen", "udp://[::1]:0"]);
    assert!(
        daemon.listeners[0].starts_with("tcp://[::1]:"),
        "{:?}",
        daemon.listeners
    );
    assert!(
        daemon.listeners[1].starts_with("udp://[::1]:"),
        "{:?}",
        daemon.listeners
    );
    echo_roundtrip(
        &mut common::connect(daemon.addrs[0]),
        &frame_u32be(b"tcp over ipv6"),
    );
    let socket = client("::1", 0).unwrap();
    assert_eq!(
        roundtrip(&socket, daemon.addrs[1], b"udp over ipv6"),
        b"udp over ipv6"
    );
}
