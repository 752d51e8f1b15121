//! framecast-client against real processes over loopback: two clients chatting through a
//! broadcast daemon, the greeting shown first, a non-UTF-8 frame shown escaped, `--hex`,
//! every framing, a 3 MiB `--send-file` verified against the echo daemon, and one test
//! per exit code (refused, reset, timed out, echo mismatch, bad flag). Small servers
//! written here stand in where the daemon cannot misbehave on purpose (a reply due only
//! after our end of input, an echo with a byte flipped, a frame cut short).
//!
//! Every child is killed by PID when its guard drops; every wait is bounded.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::Once;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::{Daemon, TIMEOUT};

/// The exit codes `--help` documents.
const USAGE: i32 = 2;
const UNREACHABLE: i32 = 3;
const RESET: i32 = 4;
const TIMED_OUT: i32 = 5;
const MISMATCH: i32 = 6;

/// Starts the daemon, building it first when this crate's tests run on their own
/// (`cargo test -p framecast-client`): `cargo test` at the root builds it anyway.
fn daemon(args: &[&str]) -> Daemon {
    static BUILT: Once = Once::new();
    BUILT.call_once(|| {
        let exe = std::env::current_exe().expect("the test binary's path");
        let Some(dir) = exe.parent().and_then(|deps| deps.parent()) else {
            return;
        };
        if dir.join("framecast").exists() {
            return;
        }
        let mut build = Command::new(env!("CARGO"));
        build.args(["build", "--quiet", "-p", "framecast", "--bin", "framecast"]);
        if dir.file_name().is_some_and(|name| name == "release") {
            build.arg("--release");
        }
        let status = build.status().expect("run cargo build");
        assert!(status.success(), "cargo build of the daemon failed");
    });
    Daemon::start(args)
}

/// A running client, killed and reaped on drop; its stdout arrives line by line.
struct Client {
    child: Child,
    /// Its stdin, until [`Client::close_stdin`] (Ctrl-D).
    stdin: Option<ChildStdin>,
    /// Its stdout, one line at a time.
    lines: Receiver<String>,
    /// Its whole stderr, once it has closed it.
    stderr: Option<JoinHandle<String>>,
}

impl Client {
    /// Starts `framecast-client` with `args`, stdin piped.
    fn start(args: &[&str]) -> Client {
        let mut child = Command::new(env!("CARGO_BIN_EXE_framecast-client"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn framecast-client");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut err_pipe = child.stderr.take().expect("stderr");
        let stderr = thread::spawn(move || {
            let mut text = String::new();
            let _ = err_pipe.read_to_string(&mut text);
            text
        });
        Client {
            stdin: child.stdin.take(),
            child,
            lines,
            stderr: Some(stderr),
        }
    }

    /// Types `bytes` (lines ending in `\n`).
    fn type_in(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        stdin.write_all(bytes).expect("write to the client's stdin");
        stdin.flush().expect("flush the client's stdin");
    }

    /// Ends the input, as Ctrl-D does.
    fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// The next line printed.
    fn next_line(&self) -> String {
        self.lines
            .recv_timeout(TIMEOUT)
            .expect("the client printed a line in time")
    }

    /// Ends the input and waits for the exit (see [`Client::wait`]).
    fn finish(mut self) -> Outcome {
        self.close_stdin();
        self.wait()
    }

    /// Waits for the exit, stdin left as it is (killing the client after [`TIMEOUT`]):
    /// its code, every line it printed that was not read yet, and its stderr.
    fn wait(mut self) -> Outcome {
        let deadline = Instant::now() + TIMEOUT;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            assert!(Instant::now() < deadline, "framecast-client did not exit");
            thread::sleep(Duration::from_millis(5));
        };
        // The stdout reader ends with the pipe, after the last line.
        let stdout: Vec<String> = self.lines.iter().collect();
        let stderr = self
            .stderr
            .take()
            .map(|reader| reader.join().expect("stderr reader"))
            .unwrap_or_default();
        assert!(!stderr.contains("panicked"), "{stderr}");
        Outcome {
            code: status.code(),
            stdout,
            stderr,
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How a client run ended.
#[derive(Debug)]
struct Outcome {
    code: Option<i32>,
    stdout: Vec<String>,
    stderr: String,
}

/// Runs the client with `args` and `input` on stdin to its end.
fn run(args: &[&str], input: &[u8]) -> Outcome {
    let mut client = Client::start(args);
    client.type_in(input);
    client.finish()
}

/// A file of `len` pseudo-random bytes in this crate's test scratch directory.
fn scratch_file(name: &str, len: usize) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("framecast-client-{}-{name}", std::process::id()));
    std::fs::write(&path, common::Rng::new(len as u64).bytes(len)).expect("write scratch file");
    path
}

/// A one-connection server on loopback: `serve` gets the accepted stream (with read and
/// write timeouts) on a thread of its own.
fn one_shot_server(serve: impl FnOnce(TcpStream) + Send + 'static) -> (String, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("local addr").to_string();
    let server = thread::spawn(move || {
        let (stream, _) = listener.accept().expect("accept");
        stream.set_read_timeout(Some(TIMEOUT)).expect("timeout");
        stream.set_write_timeout(Some(TIMEOUT)).expect("timeout");
        serve(stream);
    });
    (addr, server)
}

#[test]
fn two_clients_chat_through_a_broadcast_daemon_after_its_greeting() {
    let d = daemon(&["--mode", "broadcast", "--greeting", "欢迎光临"]);
    let addr = d.addr.to_string();
    let mut alice = Client::start(&[&addr]);
    let mut bob = Client::start(&[&addr]);
    // The greeting comes first; once it is shown, the client is connected and joined.
    assert_eq!(alice.next_line(), "欢迎光临");
    assert_eq!(bob.next_line(), "欢迎光临");
    alice.type_in("你好, bob\n".as_bytes());
    assert_eq!(bob.next_line(), "你好, bob");
    bob.type_in(b"hi alice\nhow are you?\n");
    assert_eq!(alice.next_line(), "hi alice");
    assert_eq!(alice.next_line(), "how are you?");
    for outcome in [alice.finish(), bob.finish()] {
        assert_eq!(outcome.code, Some(0), "{outcome:?}");
        assert!(outcome.stdout.is_empty(), "{outcome:?}");
    }
}

#[test]
fn the_greeting_is_shown_before_the_echo() {
    let d = daemon(&["--greeting", "欢迎光临"]);
    let out = run(&[&d.addr.to_string(), "--send", "hello"], b"");
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.stdout, ["欢迎光临", "hello"]);
}

#[test]
fn a_frame_that_is_not_utf8_is_shown_escaped() {
    let d = daemon(&[]);
    let out = run(
        &[&d.addr.to_string()],
        b"caf\xc3\xa9 \xff\xfe\tend\x1b[2J\n",
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.stdout, [r"café \xff\xfe\tend\x1b[2J"]);
}

#[test]
fn hex_shows_every_byte() {
    let d = daemon(&[]);
    let out = run(&[&d.addr.to_string(), "--hex"], b"hi\xff\n\n");
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.stdout, ["68 69 ff", ""]);
}

#[test]
fn speaks_every_framing_the_daemon_does() {
    for framing in [
        "u8", "u16be", "u16le", "u32be", "u32le", "u64be", "u64le", "line", "fixed:5", "raw",
    ] {
        let d = daemon(&["--framing", framing]);
        let out = run(
            &[&d.addr.to_string(), "--framing", framing, "--send", "hello"],
            b"",
        );
        assert_eq!(out.code, Some(0), "{framing}: {out:?}");
        assert_eq!(out.stdout, ["hello"], "{framing}");
    }
}

#[test]
fn send_is_repeatable_and_count_ends_the_run() {
    let d = daemon(&[]);
    let addr = d.addr.to_string();
    let out = run(
        &[&addr, "--send", "one", "--send", "", "--send", "three"],
        b"",
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.stdout, ["one", "", "three"]);
    let out = run(&[&addr, "--send", "a", "--send", "b", "--count", "1"], b"");
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.stdout, ["a"]);
}

#[test]
fn send_file_of_3_mib_comes_back_verified() {
    let d = daemon(&[]);
    let file = scratch_file("3mib", 3 << 20);
    let out = run(
        &[
            &d.addr.to_string(),
            "--send-file",
            file.to_str().expect("utf-8 path"),
        ],
        b"",
    );
    let _ = std::fs::remove_file(&file);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    assert!(
        out.stderr.contains("echo verified: 3145732 bytes"),
        "{}",
        out.stderr
    );
}

#[test]
fn an_echo_with_one_byte_flipped_is_a_mismatch() {
    let file = scratch_file("flip", 100 << 10);
    let (addr, server) = one_shot_server(|mut stream| {
        let mut frame = common::read_frame_u32be(&mut stream).expect("the file's frame");
        frame[5000] ^= 0x20;
        let _ = stream.write_all(&common::frame_u32be(&frame));
        // Keep the connection open until the client has seen the echo and gone.
        let _ = stream.read(&mut [0; 1]);
    });
    let out = run(
        &[&addr, "--send-file", file.to_str().expect("utf-8 path")],
        b"",
    );
    let _ = std::fs::remove_file(&file);
    server.join().expect("server");
    assert_eq!(out.code, Some(MISMATCH), "{out:?}");
    assert!(
        out.stderr.contains("echo mismatch at wire byte 5004"),
        "{}",
        out.stderr
    );
}

#[test]
fn replies_due_after_the_end_of_input_are_printed_before_exit() {
    // This server answers only once it has read our end of input (our half-close),
    // so every reply is still due when the client's stdin ends.
    let (addr, server) = one_shot_server(|mut stream| {
        let mut got = Vec::new();
        while let Some(frame) = common::read_frame_u32be(&mut stream) {
            got.push(frame);
        }
        for frame in got {
            let mut reply = b"re: ".to_vec();
            reply.extend_from_slice(&frame);
            let _ = stream.write_all(&common::frame_u32be(&reply));
        }
    });
    let out = run(&[&addr], b"one\ntwo\nthree\n");
    server.join().expect("server");
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.stdout, ["re: one", "re: two", "re: three"]);
}

#[test]
fn every_line_piped_in_comes_back_before_exit() {
    let d = daemon(&[]);
    let input: String = (0..2000).map(|i| format!("line {i}\n")).collect();
    let out = run(&[&d.addr.to_string()], input.as_bytes());
    assert_eq!(out.code, Some(0), "{out:?}");
    let expected: Vec<String> = (0..2000).map(|i| format!("line {i}")).collect();
    assert_eq!(out.stdout, expected);
}

#[test]
fn a_refused_port_exits_unreachable_with_one_line() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("local addr").port()
    };
    let out = run(&[&port.to_string(), "--send", "x"], b"");
    assert_eq!(out.code, Some(UNREACHABLE), "{out:?}");
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(out.stderr.contains("connection refused"), "{}", out.stderr);
}

#[test]
fn a_frame_cut_short_by_the_server_exits_reset() {
    let (addr, server) = one_shot_server(|mut stream| {
        // A header declaring 10 bytes, three of them, then the close.
        let _ = stream.write_all(b"\x00\x00\x00\x0aabc");
    });
    // Input stays open: the server's close ends the run.
    let client = Client::start(&[&addr]);
    server.join().expect("server");
    let out = client.wait();
    assert_eq!(out.code, Some(RESET), "{out:?}");
    assert!(out.stderr.contains("middle of a frame"), "{}", out.stderr);
}

#[test]
fn timeout_bounds_the_whole_run() {
    let d = daemon(&["--mode", "broadcast"]);
    // Input stays open and nothing arrives: only --timeout ends the run.
    let out = Client::start(&[&d.addr.to_string(), "--timeout", "300ms"]).wait();
    assert_eq!(out.code, Some(TIMED_OUT), "{out:?}");
    assert!(out.stderr.contains("timed out"), "{}", out.stderr);
}

#[test]
fn bad_flags_an_empty_unix_path_and_tls_without_a_ca_are_usage_errors() {
    for args in [
        &["--framing", "u24"][..],
        &["--wait", "soon"],
        &["--count", "0"],
        &["--bogus"],
        &["tls://127.0.0.1:7070"], // refused before any connect: no --tls-ca
        &["unix:"],
        &["--framing", "line", "--send", "two\nlines"],
    ] {
        let out = run(args, b"");
        assert_eq!(out.code, Some(USAGE), "{args:?}: {out:?}");
    }
    let out = run(&["tls://127.0.0.1:7070"], b"");
    assert!(out.stderr.contains("--tls-ca"), "{}", out.stderr);
}

#[test]
fn talks_to_unix_tls_and_udp_listeners() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "framecast-client-transports-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let socket = dir.join("echo.sock");
    let _ = std::fs::remove_file(&socket);
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    let unix = format!("unix:{}", socket.display());
    let (cert, key) = (cert.display().to_string(), key.display().to_string());
    let d = daemon(&[
        "--listen",
        &unix,
        "--listen",
        "tls://127.0.0.1:0",
        "--listen",
        "udp://127.0.0.1:0",
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
    ]);
    let tls = format!("tls://localhost:{}", d.addrs[0].port());
    let udp = format!("udp://{}", d.addrs[1]);
    for args in [
        vec![unix.as_str()],
        vec![tls.as_str(), "--insecure"],
        // The certificate is its own CA: verified against itself.
        vec![tls.as_str(), "--tls-ca", cert.as_str()],
        vec![udp.as_str()],
    ] {
        let mut args = args.clone();
        args.extend(["--send", "one", "--send", "two"]);
        let out = run(&args, b"");
        assert_eq!(out.code, Some(0), "{args:?}: {out:?}");
        assert_eq!(out.stdout, ["one", "two"], "{args:?}");
    }
    let out = run(&[&udp, "--count", "2"], b"typed\nlines\n");
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.stdout, ["typed", "lines"]);
}

#[test]
fn help_documents_every_exit_code() {
    let out = run(&["--help"], b"");
    assert_eq!(out.code, Some(0), "{out:?}");
    let help = out.stdout.join("\n");
    for code in 0..=6 {
        assert!(
            help.lines()
                .any(|l| l.trim_start().starts_with(&format!("{code} "))),
            "--help lacks exit code {code}:\n{help}"
        );
    }
}

#[test]
fn the_readme_quick_start_names_only_flags_the_client_has() {
    let readme = include_str!("../../README.md");
    let start = readme
        .find("framecast-client")
        .expect("the README shows the client");
    let end = readme[start..]
        .find("\n#")
        .map_or(readme.len(), |at| start + at);
    // The client's command lines (after cargo's `--`) and the flags quoted in the prose.
    let mut named = Vec::new();
    for line in readme[start..end].lines() {
        if let Some((_, args)) = line.split_once("--bin framecast-client -- ") {
            named.extend(args.split_whitespace().filter(|w| w.starts_with("--")));
        } else if !line.contains("--bin ") {
            named.extend(
                line.split('`')
                    .skip(1)
                    .step_by(2)
                    .filter(|w| w.starts_with("--")),
            );
        }
    }
    assert!(named.len() >= 4, "{named:?}");
    let help = run(&["--help"], b"").stdout.join("\n");
    for flag in named {
        assert!(
            help.contains(&format!("{flag} ")),
            "the README's quick start names {flag}, which --help lacks"
        );
    }
}
