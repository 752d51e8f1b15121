//! Test helpers: start the real `framecast` binary on `127.0.0.1:0`, learn its port from
//! the line it prints, and kill it by PID when the guard drops. Every wait is bounded.

#![allow(dead_code)] // each test crate uses a different part of this module

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How long any single wait in a test may take before the test fails.
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// The daemon's binary: Cargo's own path in the root package's tests, the one built
/// beside the test binary in the other workspace members' (`cargo test` at the root
/// builds both).
pub fn daemon_exe() -> std::path::PathBuf {
    option_env!("CARGO_BIN_EXE_framecast").map_or_else(|| built_beside("framecast"), Into::into)
}

/// The load generator's binary, found as [`daemon_exe`] finds the daemon's.
pub fn bench_exe() -> std::path::PathBuf {
    option_env!("CARGO_BIN_EXE_framecast-bench")
        .map_or_else(|| built_beside("framecast-bench"), Into::into)
}

/// A workspace binary in the target directory this test binary runs from.
fn built_beside(name: &str) -> std::path::PathBuf {
    let test = std::env::current_exe().expect("the test binary's path");
    let dir = test
        .parent()
        .and_then(|deps| deps.parent())
        .expect("a target directory");
    let exe = dir.join(name);
    assert!(
        exe.exists(),
        "{} is not built: run `cargo test` from the workspace root, which builds every binary",
        exe.display()
    );
    exe
}

/// The README at the workspace root.
fn readme_path() -> std::path::PathBuf {
    let mut dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    while !dir.join("README.md").exists() || !dir.join("framecast-bench").exists() {
        assert!(
            dir.pop(),
            "no workspace root above {}",
            env!("CARGO_MANIFEST_DIR")
        );
    }
    dir.join("README.md")
}

/// A running daemon, killed and reaped on drop.
pub struct Daemon {
    child: Child,
    /// The first address it listens on.
    pub addr: SocketAddr,
    /// Every IP address it listens on (TCP, TLS, UDP), as printed.
    pub addrs: Vec<SocketAddr>,
    /// Every listener, as printed (`tcp://127.0.0.1:4242`, `unix:/tmp/s`).
    pub listeners: Vec<String>,
    /// The admin endpoint's address, as printed, when started with `--admin`.
    pub admin: Option<SocketAddr>,
    /// Everything it has written to stderr so far.
    stderr: Arc<Mutex<String>>,
}

impl Daemon {
    /// Starts `framecast` with `args`, listening on `127.0.0.1:0` unless `args` name
    /// addresses, and waits for its "listening on" lines.
    pub fn start(args: &[&str]) -> Daemon {
        Daemon::start_with_env(args, &[("RUST_LOG", "debug")])
    }

    /// Like [`Daemon::start`], with extra environment variables.
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Daemon {
        let mut cmd = Command::new(daemon_exe());
        cmd.envs(env.iter().copied());
        Daemon::spawn(cmd, args)
    }

    /// Like [`Daemon::start`], with the open-file limits (soft and hard) lowered to
    /// `nofile` first.
    pub fn start_with_nofile(nofile: u32, args: &[&str]) -> Daemon {
        Daemon::start_with_ulimit(&format!("-n {nofile}"), args)
    }

    /// Like [`Daemon::start`], after `ulimit FLAGS` (e.g. `-S -n 100`: only the soft
    /// open-file limit). The shell `exec`s the daemon, so the PID is the daemon's.
    pub fn start_with_ulimit(flags: &str, args: &[&str]) -> Daemon {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(format!("ulimit {flags} && exec \"$0\" \"$@\""))
            .arg(daemon_exe())
            .env("RUST_LOG", "debug");
        Daemon::spawn(cmd, args)
    }

    /// Runs `cmd` (the daemon, or something that execs it) with `args`.
    fn spawn(mut cmd: Command, args: &[&str]) -> Daemon {
        let listeners = args.iter().filter(|a| **a == "--listen").count();
        if listeners == 0 {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        cmd.args(args);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn framecast");
        let stdout = child.stdout.take().expect("stdout");
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&stderr);
        let err_pipe = child.stderr.take().expect("stderr");
        thread::spawn(move || {
            for line in BufReader::new(err_pipe).lines() {
                let Ok(line) = line else { break };
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut daemon = Daemon {
            child,
            addr: ([0, 0, 0, 0], 0).into(),
            addrs: Vec::new(),
            listeners: Vec::new(),
            admin: None,
            stderr,
        };
        for _ in 0..listeners.max(1) {
            let line = rx.recv_timeout(TIMEOUT).unwrap_or_else(|_| {
                panic!(
                    "framecast printed no listening line; stderr:\n{}",
                    daemon.stderr()
                )
            });
            let listener = line
                .strip_prefix("framecast listening on ")
                .and_then(|rest| rest.split(' ').next())
                .unwrap_or_else(|| panic!("unexpected first line: {line:?}"));
            if !listener.starts_with("unix:") {
                let addr = listener
                    .split_once("://")
                    .and_then(|(_, a)| a.parse().ok())
                    .unwrap_or_else(|| panic!("unexpected first line: {line:?}"));
                daemon.addrs.push(addr);
            }
            daemon.listeners.push(listener.to_owned());
        }
        if let Some(&first) = daemon.addrs.first() {
            daemon.addr = first;
        }
        if args.contains(&"--admin") {
            let line = rx.recv_timeout(TIMEOUT).unwrap_or_else(|_| {
                panic!(
                    "framecast printed no admin line; stderr:\n{}",
                    daemon.stderr()
                )
            });
            let addr = line
                .strip_prefix("framecast admin on ")
                .and_then(|a| a.parse().ok())
                .unwrap_or_else(|| panic!("unexpected admin line: {line:?}"));
            daemon.admin = Some(addr);
        }
        daemon
    }

    /// `GET path` from the admin endpoint: the status and the body.
    pub fn admin_get(&self, path: &str) -> (u16, String) {
        let addr = self.admin.expect("started with --admin");
        http_get(addr, path)
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Connects a blocking client with read and write timeouts.
    pub fn connect(&self) -> TcpStream {
        connect(self.addr)
    }

    /// The daemon's resident set size, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }

    /// Everything the daemon has logged so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until the daemon's log contains `needle`.
    pub fn wait_for_log(&self, needle: &str) {
        let deadline = Instant::now() + TIMEOUT;
        while !self.stderr().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "log never said {needle:?}:\n{}",
                self.stderr()
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Returns the exit status if the daemon has exited.
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }

    /// Checks that the daemon is still running.
    pub fn assert_alive(&mut self) {
        assert!(
            self.try_wait().is_none(),
            "framecast exited; stderr:\n{}",
            self.stderr()
        );
    }

    /// Sends a signal (`"TERM"`, `"INT"`) to the daemon.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits up to `limit` for the daemon to exit and returns its exit code.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.try_wait() {
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "framecast did not exit; stderr:\n{}",
                self.stderr()
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// CPU time the daemon has used (user + system), in clock ticks.
    pub fn cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).expect("stat");
        // Fields after the parenthesised command name; utime and stime are 14 and 15.
        let rest = &stat[stat.rfind(')').expect("comm") + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether this host has IPv6 loopback (`::1`); tests of IPv6 peers skip without it,
/// saying so.
pub fn has_ipv6_loopback() -> bool {
    let found = std::net::TcpListener::bind("[::1]:0").is_ok();
    if !found {
        eprintln!("no IPv6 loopback on this host: skipping its cases");
    }
    found
}

/// One `GET path` over a new connection to `addr` (`Connection: close`): the status
/// and the body.
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = connect(addr);
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let response = String::from_utf8(read_to_end(&mut stream)).expect("a UTF-8 response");
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end: {response:?}"));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status: {head:?}"));
    (status, body.to_owned())
}

/// Connects a blocking client to `addr` with read and write timeouts.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, TIMEOUT).expect("connect");
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(TIMEOUT)).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

/// A `u32be` frame: `struct.pack('!I', len(payload)) + payload`.
pub fn frame_u32be(payload: &[u8]) -> Vec<u8> {
    let mut frame = (payload.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(payload);
    frame
}

/// Reads exactly `n` bytes.
pub fn read_n(stream: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    stream
        .read_exact(&mut buf)
        .unwrap_or_else(|e| panic!("reading {n} bytes: {e}"));
    buf
}

/// Reads until the peer closes; a reset after the data counts as a close.
pub fn read_to_end(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 64 << 10];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return out,
            Err(e) => panic!("read_to_end after {} bytes: {e}", out.len()),
        }
    }
}

/// Sends `frames` in one write, reads them all back and checks they are identical.
pub fn echo_roundtrip(stream: &mut TcpStream, frames: &[u8]) {
    stream.write_all(frames).unwrap();
    assert_eq!(read_n(stream, frames.len()), frames, "echo differs");
}

/// Closes the write side and checks the daemon then sends `expected` and closes.
pub fn finish(stream: &mut TcpStream, expected: &[u8]) {
    stream.shutdown(Shutdown::Write).unwrap();
    let got = read_to_end(stream);
    assert_eq!(got.len(), expected.len(), "byte count after half-close");
    assert!(got == expected, "bytes after half-close differ");
}

/// A small deterministic generator (xorshift64*), so failures reproduce.
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// `n` random bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}

/// Reads one `u32be` frame's payload; `None` at a clean end of stream before a header.
pub fn read_frame_u32be(stream: &mut impl Read) -> Option<Vec<u8>> {
    let mut header = [0u8; 4];
    match stream.read_exact(&mut header) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return None,
        Err(e) => panic!("reading a frame header: {e}"),
    }
    let mut payload = vec![0; u32::from_be_bytes(header) as usize];
    stream
        .read_exact(&mut payload)
        .unwrap_or_else(|e| panic!("reading a frame payload: {e}"));
    Some(payload)
}

/// Writes `frame` over and over without reading, until a write blocks for 300 ms (the
/// daemon has stopped reading us) or `max` bytes have gone out. Returns the bytes sent;
/// the last frame may be partly written (`sent % frame.len()` bytes of it).
pub fn write_until_blocked(stream: &mut TcpStream, frame: &[u8], max: usize) -> usize {
    stream
        .set_write_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut sent = 0;
    let deadline = Instant::now() + TIMEOUT;
    while sent < max && Instant::now() < deadline {
        match stream.write(&frame[sent % frame.len()..]) {
            Ok(n) => sent += n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                break
            }
            Err(e) => panic!("write failed after {sent} bytes: {e}"),
        }
    }
    stream.set_write_timeout(Some(TIMEOUT)).unwrap();
    sent
}

/// What a finished `framecast-bench` run printed, and how it exited.
pub struct BenchRun {
    /// Exit code (`None` if killed by a signal).
    pub code: Option<i32>,
    /// Everything on stdout: the summary, text or JSON.
    pub stdout: String,
    /// Everything on stderr: progress lines and error messages.
    pub stderr: String,
}

impl BenchRun {
    /// A number from the JSON summary, by key (the first occurrence; keys are unique).
    pub fn number(&self, key: &str) -> f64 {
        json_number(&self.stdout, key)
            .unwrap_or_else(|| panic!("no number {key:?} in:\n{}\n{}", self.stdout, self.stderr))
    }
}

/// Reads `"key":NUMBER` from a one-line JSON object.
pub fn json_number(json: &str, key: &str) -> Option<f64> {
    let needle = format!("\"{key}\":");
    let start = json.find(&needle)? + needle.len();
    let rest = &json[start..];
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// A child process killed and reaped on drop, whatever happens to the test.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `framecast-bench` with `args` to completion, killing it after [`TIMEOUT`].
pub fn run_bench(args: &[&str]) -> BenchRun {
    run_bench_with(args, |_, _| {})
}

/// Like [`run_bench`], calling `on_stderr` with each stderr line as it comes and the
/// bench's pid (e.g. to kill the server once the run is under way).
pub fn run_bench_with(args: &[&str], on_stderr: impl FnMut(&str, u32)) -> BenchRun {
    run_bench_command(Command::new(bench_exe()), args, on_stderr)
}

/// Like [`run_bench`], after `ulimit FLAGS` (e.g. `-v 2097152`: at most 2 GiB of address
/// space). The shell `exec`s the bench, so the PID is the bench's.
pub fn run_bench_under_ulimit(flags: &str, args: &[&str]) -> BenchRun {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!("ulimit {flags} && exec \"$0\" \"$@\""))
        .arg(bench_exe());
    run_bench_command(cmd, args, |_, _| {})
}

/// Runs `cmd` (the bench, or something that execs it) with `args`; see
/// [`run_bench_with`].
fn run_bench_command(
    mut cmd: Command,
    args: &[&str],
    mut on_stderr: impl FnMut(&str, u32),
) -> BenchRun {
    let mut child = Reaped(
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn framecast-bench"),
    );
    let mut stdout_pipe = child.0.stdout.take().expect("stdout");
    let stdout = thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout_pipe.read_to_string(&mut text);
        text
    });
    let (tx, rx) = mpsc::channel();
    let err_pipe = child.0.stderr.take().expect("stderr");
    thread::spawn(move || {
        for line in BufReader::new(err_pipe).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + TIMEOUT;
    let mut stderr = String::new();
    loop {
        match rx.recv_timeout(Duration::from_millis(20)) {
            Ok(line) => {
                on_stderr(&line, child.0.id());
                stderr.push_str(&line);
                stderr.push('\n');
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {}
            Err(mpsc::RecvTimeoutError::Timeout) => {
                assert!(
                    Instant::now() < deadline,
                    "framecast-bench still running after {TIMEOUT:?}; stderr:\n{stderr}"
                );
                continue;
            }
        }
        // stderr closed: the process is exiting.
        let status = loop {
            if let Some(status) = child.0.try_wait().expect("try_wait") {
                break status;
            }
            assert!(Instant::now() < deadline, "framecast-bench did not exit");
            thread::sleep(Duration::from_millis(5));
        };
        return BenchRun {
            code: status.code(),
            stdout: stdout.join().expect("stdout reader"),
            stderr,
        };
    }
}

/// The long flags in a binary's `--help` output, each with its `[default: ...]` if it
/// states one (`--help` and `--version` left out: every clap program has them).
pub fn help_flags(help: &str) -> Vec<(String, Option<String>)> {
    let mut flags: Vec<(String, Option<String>)> = Vec::new();
    for line in help.lines() {
        let trimmed = line.trim_start();
        // A flag's own line starts with it (`--listen <ADDR>` or `-c, --connections <N>`);
        // its description, on the same line or the next ones, may name other flags.
        let is_flag = trimmed.starts_with("--")
            || (trimmed.starts_with('-') && trimmed.get(2..6) == Some(", --"));
        if is_flag {
            let start = trimmed.find("--").unwrap_or(0);
            let name: String = trimmed[start..]
                .chars()
                .take_while(|c| !c.is_whitespace())
                .collect();
            flags.push((name, None));
        }
        if let (Some(last), Some(at)) = (flags.last_mut(), line.find("[default: ")) {
            let rest = &line[at + "[default: ".len()..];
            last.1 = rest.find(']').map(|end| rest[..end].to_owned());
        }
    }
    flags.retain(|(name, _)| name != "--help" && name != "--version");
    flags
}

/// The flags in the README's table under the heading that starts with `heading`, each
/// with its default column (the value inside backticks, or the plain text).
pub fn readme_flags(heading: &str) -> Vec<(String, String)> {
    let readme = std::fs::read_to_string(readme_path()).expect("read README.md");
    let start = readme
        .find(&format!("\n{heading}"))
        .unwrap_or_else(|| panic!("README has no heading {heading:?}"));
    let section = &readme[start + 1..];
    let end = section[1..].find("\n## ").map_or(section.len(), |e| e + 1);
    let mut flags = Vec::new();
    for row in section[..end].lines().filter(|l| l.starts_with("| `-")) {
        let row = row.replace("\\|", "/");
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let ticked = |cell: &str| -> Vec<String> {
            cell.split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_owned)
                .collect()
        };
        let names: Vec<String> = ticked(cells[1])
            .iter()
            .flat_map(|part| {
                part.split([' ', ','])
                    .filter(|w| w.starts_with("--"))
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .collect();
        let defaults = ticked(cells[2]);
        for (i, name) in names.iter().enumerate() {
            let default = match defaults.len() {
                0 => cells[2].to_owned(),
                n if n == names.len() => defaults[i].clone(),
                _ => defaults[0].clone(),
            };
            flags.push((name.clone(), default));
        }
    }
    flags
}

/// Asserts that `help` and the README table under `heading` list the same flags, and
/// that the README's default is the one `--help` states, wherever it states one.
pub fn assert_help_matches_readme(help: &str, heading: &str) {
    let help = help_flags(help);
    let readme = readme_flags(heading);
    assert!(!help.is_empty() && !readme.is_empty(), "nothing parsed");
    for (name, default) in &help {
        let row = readme.iter().find(|(n, _)| n == name);
        let Some((_, documented)) = row else {
            panic!("{name} is in --help but not in the README table under {heading:?}")
        };
        if let Some(default) = default {
            assert_eq!(
                documented, default,
                "{name}: the README says the default is {documented:?}, --help says {default:?}"
            );
        }
    }
    for (name, _) in &readme {
        assert!(
            help.iter().any(|(n, _)| n == name),
            "{name} is in the README table under {heading:?} but not in --help"
        );
    }
}

/// Runs the daemon with `args`, expecting it to exit by itself: its exit code and
/// stderr. Killed after [`TIMEOUT`] if it does not.
pub fn run_to_exit(args: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(daemon_exe())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn framecast");
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("framecast {args:?} did not exit");
        }
        thread::sleep(Duration::from_millis(10));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    (status.code(), stderr)
}
