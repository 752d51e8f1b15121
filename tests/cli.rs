//! The daemon's command line: listening lines, busy ports, bad flag values.

mod common;

use std::net::TcpListener;
use std::process::{Command, Output};

use common::{echo_roundtrip, frame_u32be, Daemon};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_framecast"))
        .args(args)
        .output()
        .expect("run framecast")
}

#[test]
fn prints_the_real_port_for_each_listener() {
    let daemon = Daemon::start(&["--listen", "127.0.0.1:0", "--listen", "127.0.0.1:0"]);
    assert_eq!(daemon.addrs.len(), 2);
    assert_ne!(daemon.addrs[0].port(), 0);
    assert_ne!(daemon.addrs[0], daemon.addrs[1]);
    for addr in &daemon.addrs {
        echo_roundtrip(
            &mut common::connect(*addr),
            &frame_u32be(addr.to_string().as_bytes()),
        );
    }
}

#[test]
fn listen_takes_host_names_and_bare_ports_on_loopback() {
    // `localhost` usually resolves to ::1 as well, which must then be there to bind.
    let names: &[&str] = if common::has_ipv6_loopback() {
        &["localhost:0", "0"]
    } else {
        &["0"]
    };
    for &listen in names {
        let daemon = Daemon::start(&["--listen", listen]);
        let addr = daemon.addr;
        assert!(
            addr.ip().is_loopback() && addr.port() != 0,
            "{listen}: {addr}"
        );
        echo_roundtrip(&mut common::connect(addr), &frame_u32be(listen.as_bytes()));
    }
}

#[test]
fn busy_port_exits_1_naming_the_address() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = run(&["--listen", &addr]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot listen on tcp://{addr}")),
        "{stderr}"
    );
    assert!(stderr.contains("in use"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one clear line: {stderr}");
    assert!(!stderr.contains("panicked"));
}

#[test]
fn bad_flag_values_are_usage_errors_naming_the_flag() {
    let cases: [(&[&str], &str); 18] = [
        (&["--max-frame", "lots"], "--max-frame"),
        (&["--max-output", "1.5MiB"], "--max-output"),
        (&["--framing", "u24be"], "--framing"),
        (&["--mode", "gossip"], "--mode"),
        (&["--listen", "localhost"], "--listen"),
        (&["--listen", "no-such-host.invalid:7070"], "--listen"),
        (&["--max-connections", "many"], "--max-connections"),
        (&["--max-frame", "0"], "--max-frame"),
        (
            &["--max-connections", "9223372036854775807"],
            "--max-connections",
        ),
        (&["--max-frame", "18446744073709551615"], "--max-frame"),
        (
            &["--framing", "fixed:2MiB", "--max-frame", "1MiB"],
            "--framing",
        ),
        (&["--splice"], "--splice"),
        (&["--workers", "5000"], "--workers"),
        (&["--workers", "3", "--max-connections", "2"], "--workers"),
        (&["--bridge", "nats://127.0.0.1:4222"], "--bridge"),
        (
            &["--mode", "broadcast", "--bridge", "http://x:1"],
            "--bridge",
        ),
        (
            &["--mode", "broadcast", "--bridge-subject", "a.*"],
            "--bridge-subject",
        ),
        (
            &["--splice", "--framing", "raw", "--mode", "broadcast"],
            "--splice",
        ),
    ];
    for (args, flag) in cases {
        let out = run(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(flag),
            "{args:?} should name {flag}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn help_and_readme_list_the_same_flags_and_defaults() {
    let out = run(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    common::assert_help_matches_readme(&help, "## Command line");
    // The synopsis above the table names every flag too.
    let readme = include_str!("../README.md");
    let synopsis = readme
        .split("```text\nframecast ")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("README has the daemon's synopsis");
    for (flag, _) in common::help_flags(&help) {
        assert!(
            synopsis.contains(&format!("[{flag}")),
            "the README's synopsis lacks {flag}"
        );
    }
}

/// Runs the daemon on a free port for at most a few seconds: its exit code, or `None`
/// if it was still running (and has been killed).
fn exit_code_within_seconds(args: &[&str]) -> Option<i32> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_framecast"))
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn framecast");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        if let Some(status) = child.try_wait().expect("wait") {
            return status.code();
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

#[test]
fn keepalive_the_kernel_would_refuse_is_a_usage_error() {
    // The kernel takes whole seconds up to 32767; anything else used to be accepted,
    // then failed on every accepted socket (logged at debug) and left keepalive off.
    for bad in ["10h", "500ms", "1500ms"] {
        assert_eq!(
            exit_code_within_seconds(&["--keepalive", bad]),
            Some(2),
            "--keepalive {bad}"
        );
    }
    let out = run(&["--listen", "127.0.0.1:0", "--keepalive", "10h"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("'--keepalive <DURATION>'") && stderr.contains("whole seconds"),
        "{stderr}"
    );
    // `off`, the default the README and --help show, may also be written out.
    let daemon = Daemon::start(&["--keepalive", "off"]);
    echo_roundtrip(&mut daemon.connect(), &frame_u32be(b"no keepalive"));
}

#[test]
fn stats_interval_logs_counters_at_info() {
    let daemon = Daemon::start_with_env(&["--stats-interval", "200ms"], &[("RUST_LOG", "info")]);
    let mut client = daemon.connect();
    for i in 0..10 {
        echo_roundtrip(&mut client, &frame_u32be(format!("frame {i}").as_bytes()));
    }
    daemon.wait_for_log("since start 1 accepted");
    // Some line saw the ten frames arrive: a non-zero rate, with the connection open.
    let deadline = std::time::Instant::now() + common::TIMEOUT;
    loop {
        let log = daemon.stderr();
        let busy = log
            .lines()
            .filter(|l| l.contains("stats: 1 connection(s); "))
            .any(|l| !l.contains("; 0 frames/s in"));
        if busy {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{log}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
