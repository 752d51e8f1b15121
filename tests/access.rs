//! Access rules against the real daemon: IPv4-mapped blocks acting on IPv4 peers, on an
//! IPv4 listener and on a dual-stack one (where IPv4 peers arrive as `::ffff:a.b.c.d`),
//! and malformed blocks refused at start with exit code 2 and one line naming them.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::{connect, echo_roundtrip, frame_u32be, read_to_end, Daemon, TIMEOUT};

/// Starts the daemon with `args`, connects from 127.0.0.1 and says whether the
/// connection was served (a frame echoed) or refused (closed with no data).
fn served(listen: &str, rules: &[&str]) -> bool {
    let mut args = vec!["--listen", listen];
    args.extend_from_slice(rules);
    let daemon = Daemon::start(&args);
    let addr = SocketAddr::from(([127, 0, 0, 1], daemon.addr.port()));
    let mut client: TcpStream = connect(addr);
    let frame = frame_u32be(b"mapped");
    // A refused peer may be closed before the write, or reset after it.
    if client.write_all(&frame).is_err() {
        return false;
    }
    let got = read_or_close(&mut client, frame.len());
    if got.is_empty() {
        return false;
    }
    assert_eq!(got, frame, "{rules:?}: echo differs");
    true
}

/// Reads `n` bytes, or until a close; a refused connection reads nothing.
fn read_or_close(client: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = vec![0; n];
    while got.len() < n {
        match client.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(k) => got.extend_from_slice(&buf[..k]),
        }
    }
    got
}

#[test]
fn mapped_blocks_act_on_ipv4_peers_of_an_ipv4_listener() {
    let cases: [(&[&str], bool); 5] = [
        (&["--allow", "::ffff:127.0.0.0/104"], true),
        (&["--allow", "::ffff:0:0/96"], true),
        (&["--allow", "::ffff:10.0.0.0/104"], false),
        (&["--deny", "::ffff:127.0.0.1"], false),
        (
            &["--allow", "::ffff:0:0/96", "--deny", "::ffff:127.0.0.0/120"],
            false,
        ),
    ];
    for (rules, expected) in cases {
        assert_eq!(served("127.0.0.1:0", rules), expected, "{rules:?}");
    }
}

/// True when an IPv6 socket on this host also takes IPv4 connections (Linux's
/// `net.ipv6.bindv6only` is 0, the default).
fn has_dual_stack() -> bool {
    let v6only = std::fs::read_to_string("/proc/sys/net/ipv6/bindv6only");
    let found = common::has_ipv6_loopback() && v6only.is_ok_and(|v| v.trim() == "0");
    if !found {
        eprintln!("no dual-stack sockets on this host: skipping");
    }
    found
}

#[test]
fn rules_mean_the_same_for_ipv4_peers_of_a_dual_stack_listener() {
    if !has_dual_stack() {
        return;
    }
    // An IPv6 socket bound to IPv4 loopback in mapped form: it accepts only IPv4
    // connections to 127.0.0.1, and reports their peers as ::ffff:127.0.0.1.
    let listen = "[::ffff:127.0.0.1]:0";
    let cases: [(&[&str], bool); 6] = [
        (&["--deny", "127.0.0.0/8"], false),
        (&["--allow", "127.0.0.1"], true),
        (&["--allow", "::ffff:127.0.0.0/104"], true),
        (&["--deny", "::ffff:0:0/96"], false),
        // IPv6 blocks never match an IPv4 peer, on this socket as on an IPv4 one.
        (&["--deny", "::/0"], true),
        (&["--allow", "::/0"], false),
    ];
    for (rules, expected) in cases {
        assert_eq!(served(listen, rules), expected, "{rules:?}");
    }
    // And the notice about non-loopback listeners knows mapped loopback.
    let daemon = Daemon::start(&["--listen", listen]);
    echo_roundtrip(
        &mut connect(([127, 0, 0, 1], daemon.addr.port()).into()),
        &frame_u32be(b"mapped loopback"),
    );
    assert!(!daemon.stderr().contains("not a loopback address"));
}

/// A child process killed and reaped on drop.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs the daemon with `args`, which must make it exit at once; returns its exit code,
/// stdout and stderr. Bounded: a daemon that starts instead is killed.
fn run_refused(args: &[&str]) -> (Option<i32>, String, String) {
    let mut child = Reaped(
        Command::new(env!("CARGO_BIN_EXE_framecast"))
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn framecast"),
    );
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("try_wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "framecast {args:?} did not exit");
        thread::sleep(Duration::from_millis(10));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    // The daemon has exited: both pipes are at their end.
    if let Some(pipe) = child.0.stdout.as_mut() {
        let _ = pipe.read_to_string(&mut stdout);
    }
    if let Some(pipe) = child.0.stderr.as_mut() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    (status.code(), stdout, stderr)
}

#[test]
fn malformed_blocks_are_refused_at_start_with_one_line() {
    let cases = [
        ("--allow", "10.0.0.0/+8", "without sign or leading zeros"),
        ("--allow", "10.0.0.0/0008", "without sign or leading zeros"),
        ("--deny", "10.0.0.0/", "without sign or leading zeros"),
        ("--deny", "10.0.0.0/33", "an IPv4 prefix length is 0 to 32"),
        ("--allow", "::/129", "an IPv6 prefix length is 0 to 128"),
        ("--deny", "", "empty address block"),
        ("--allow", "::ffff:10.0.0.0/8", "write ::ffff:10.0.0.0/104"),
        ("--deny", "::127.0.0.1", "deprecated IPv4-compatible"),
        ("--allow", "10.0.0/8", "not an IPv4 or IPv6 address"),
    ];
    for (flag, value, why) in cases {
        let (code, stdout, stderr) = run_refused(&[flag, value]);
        assert_eq!(code, Some(2), "{flag} {value:?}: {stderr}");
        assert_eq!(stdout, "", "{flag} {value:?}: it must not start listening");
        let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(errors.len(), 1, "{flag} {value:?}: {stderr}");
        let expected = format!("error: invalid value '{value}' for '{flag} <CIDR>': ");
        assert!(
            errors[0].starts_with(&expected) && errors[0].contains(why),
            "{flag} {value:?}: {stderr}"
        );
    }
    // The same block written correctly starts, and refuses the IPv4 peer it names.
    let daemon = Daemon::start(&["--deny", "::ffff:127.0.0.1/128"]);
    assert_eq!(read_to_end(&mut daemon.connect()), b"");
}
