//! End-to-end loopback benchmark: the real `framecast` daemon loaded by the real
//! `framecast-bench`, one run per scenario: echo at depth 1 and depth 16 (50
//! connections, 512-byte u32be frames) and broadcast from one publisher to 100
//! subscribers (128-byte frames, the publisher at most 16 frames ahead of its slowest
//! subscriber). Prints rate, MB/s, latency and CPU per frame on both sides.
//!
//! `cargo build --release -p framecast-bench && cargo bench --bench loopback` (`harness = false`: a plain program, so `cargo test`
//! never runs it). When `taskset` is there and the machine has two cores or more, the
//! daemon runs on CPU 0 and the bench on CPU 1. `FRAMECAST_BENCH_SECS` sets the
//! measured seconds per scenario (default 3). Each child is killed when its guard
//! drops, and every wait is bounded.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// How long the daemon may take to print its address.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A scenario: its name, the daemon's extra flags, the bench's flags.
struct Scenario {
    name: &'static str,
    daemon: &'static [&'static str],
    bench: &'static [&'static str],
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "echo, 50 connections, depth 1",
        daemon: &[],
        bench: &["--connections", "50", "--depth", "1", "--size", "512"],
    },
    Scenario {
        name: "echo, 50 connections, depth 16",
        daemon: &[],
        bench: &["--connections", "50", "--depth", "16", "--size", "512"],
    },
    Scenario {
        name: "broadcast, 1 -> 100, depth 16",
        daemon: &["--mode", "broadcast"],
        bench: &[
            "--scenario",
            "broadcast",
            "--publishers",
            "1",
            "--subscribers",
            "100",
            "--depth",
            "16",
            "--size",
            "128",
        ],
    },
];

/// A child process killed and reaped on drop.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `taskset -c CPU` in front of a command, when pinning is possible.
fn command(program: &str, cpu: Option<&str>) -> Command {
    match cpu {
        Some(cpu) => {
            let mut c = Command::new("taskset");
            c.args(["-c", cpu, program]);
            c
        }
        None => Command::new(program),
    }
}

/// Whether to pin: `taskset` runs and there are at least two CPUs.
fn can_pin() -> bool {
    let cores = thread::available_parallelism().map_or(1, |n| n.get());
    cores >= 2
        && Command::new("taskset")
            .args(["-c", "0", "true"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}

/// Starts the daemon and returns it with its address, or why it did not start.
fn start_daemon(extra: &[&str], pin: bool) -> Result<(Guard, String), String> {
    let mut cmd = command(env!("CARGO_BIN_EXE_framecast"), pin.then_some("0"));
    cmd.args(["--listen", "127.0.0.1:0"])
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut guard = Guard(
        cmd.spawn()
            .map_err(|e| format!("cannot start framecast: {e}"))?,
    );
    let stdout = guard.0.stdout.take().ok_or("no stdout")?;
    let mut stderr = guard.0.stderr.take().ok_or("no stderr")?;
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut first = String::new();
        let _ = BufReader::new(stdout).read_line(&mut first);
        let _ = tx.send(first);
    });
    let line = rx.recv_timeout(START_TIMEOUT).unwrap_or_default();
    let addr = line
        .strip_prefix("framecast listening on ")
        .and_then(|rest| rest.split(' ').next())
        .map(|a| a.strip_prefix("tcp://").unwrap_or(a).to_owned());
    match addr {
        Some(addr) => Ok((guard, addr)),
        None => {
            drop(guard);
            let mut why = String::new();
            let _ = stderr.read_to_string(&mut why);
            Err(why.lines().next().unwrap_or("no listening line").to_owned())
        }
    }
}

/// Reads `"key":NUMBER` from the bench's JSON summary.
fn number(json: &str, key: &str) -> Option<f64> {
    let needle = format!("\"{key}\":");
    let rest = &json[json.find(&needle)? + needle.len()..];
    rest[..rest.find([',', '}'])?].parse().ok()
}

/// Runs one scenario; returns its table row, or why it could not run.
fn run(scenario: &Scenario, secs: &str, pin: bool) -> Result<String, String> {
    let (daemon, addr) = start_daemon(scenario.daemon, pin)?;
    let pid = daemon.0.id().to_string();
    let bench =
        std::path::Path::new(env!("CARGO_BIN_EXE_framecast")).with_file_name("framecast-bench");
    if !bench.exists() {
        return Err(format!(
            "{} is not built: run `cargo build --release -p framecast-bench` first",
            bench.display()
        ));
    }
    let mut cmd = command(
        bench.to_str().unwrap_or("framecast-bench"),
        pin.then_some("1"),
    );
    cmd.arg(&addr)
        .args(scenario.bench)
        .args([
            "--json",
            "--duration",
            secs,
            "--warmup",
            "1",
            "--server-pid",
            &pid,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut bench = Guard(
        cmd.spawn()
            .map_err(|e| format!("cannot start framecast-bench: {e}"))?,
    );
    let limit = Duration::from_secs_f64(secs.parse::<f64>().unwrap_or(3.0) + 30.0);
    let started = Instant::now();
    while bench.0.try_wait().map_err(|e| e.to_string())?.is_none() {
        if started.elapsed() > limit {
            return Err("framecast-bench did not finish in time".into());
        }
        thread::sleep(Duration::from_millis(20));
    }
    let mut json = String::new();
    if let Some(mut out) = bench.0.stdout.take() {
        let _ = out.read_to_string(&mut json);
    }
    drop(daemon);
    let get = |key| number(&json, key).ok_or_else(|| format!("no {key} in {json:?}"));
    let errors = get("total")?;
    Ok(format!(
        "{:<34} {:>12.0} {:>9.1} {:>9.1} {:>9.1} {:>10.3} {:>10.3} {:>7}",
        scenario.name,
        get("frames_per_s")?,
        get("mb_in_per_s")?,
        get("p50")?,
        get("p99")?,
        number(&json, "server_us_per_frame").unwrap_or(f64::NAN),
        number(&json, "bench_us_per_frame").unwrap_or(f64::NAN),
        errors
    ))
}

fn main() -> ExitCode {
    let secs = std::env::var("FRAMECAST_BENCH_SECS").unwrap_or_else(|_| "3".into());
    let pin = can_pin();
    println!(
        "loopback: {secs} s per scenario after 1 s warmup; {}",
        if pin {
            "daemon on CPU 0, bench on CPU 1"
        } else {
            "not pinned"
        }
    );
    println!(
        "{:<34} {:>12} {:>9} {:>9} {:>9} {:>10} {:>10} {:>7}",
        "scenario", "frames/s", "MB/s in", "p50 µs", "p99 µs", "daemon µs", "bench µs", "errors"
    );
    let mut failed = false;
    for scenario in SCENARIOS {
        match run(scenario, &secs, pin) {
            Ok(row) => println!("{row}"),
            Err(why) if scenario.daemon.contains(&"broadcast") && why.contains("mode") => {
                println!(
                    "{:<34} skipped: this framecast has no broadcast mode ({why})",
                    scenario.name
                );
            }
            Err(why) => {
                println!("{:<34} failed: {why}", scenario.name);
                failed = true;
            }
        }
    }
    println!("(frames/s: echoed frames, or broadcast deliveries; µs: CPU time per frame)");
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
