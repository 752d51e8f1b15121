//! `framecast-bench --scenario chaos`, short, against the real daemon: verified echo
//! and broadcast traffic beside every attack with no error and the daemon's peak memory
//! within the bound its flags promise; broadcast without rooms, where the hostile
//! clients' frames reach the verified receivers, counted as errors (exit 3); a bound
//! too low for the daemon (exit 4). Runs are short and bounded; no timing is asserted.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::sync::{Mutex, MutexGuard};

use common::{run_bench, BenchRun, Daemon};

/// One chaos run at a time: each loads both cores.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static MACHINE: Mutex<()> = Mutex::new(());
    MACHINE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Limits that make the memory bound tight and oversize declarations real.
const LIMITS: [&str; 6] = [
    "--max-frame",
    "1KiB",
    "--max-output",
    "256KiB",
    "--max-connections",
    "1000",
];

/// A chaos run of two measured seconds against `daemon`, as JSON, with `extra` flags.
fn chaos(daemon: &Daemon, extra: &[&str]) -> BenchRun {
    let addr = daemon.addr.to_string();
    let pid = daemon.pid().to_string();
    let mut args = vec![
        addr.as_str(),
        "--scenario",
        "chaos",
        "--json",
        "--duration",
        "2",
        "--warmup",
        "0",
        "--depth",
        "4",
        "--hostile",
        "7",
        "--server-pid",
        &pid,
    ];
    args.extend_from_slice(extra);
    run_bench(&args)
}

/// Runs of `attack` in a chaos summary.
fn runs(run: &BenchRun, attack: &str) -> f64 {
    let key = format!("\"{attack}\":{{\"runs\":");
    let at = run
        .stdout
        .find(&key)
        .unwrap_or_else(|| panic!("no {attack} in:\n{}", run.stdout));
    let rest = &run.stdout[at + key.len()..];
    rest[..rest.find(',').unwrap_or(rest.len())]
        .parse()
        .unwrap_or_else(|_| panic!("{attack}: no number in:\n{}", run.stdout))
}

/// Asserts a clean chaos run: exit 0, verified frames, no errors, every attack run,
/// the peak within the bound.
fn assert_clean(run: &BenchRun, attacks: &[&str]) {
    assert_eq!(
        run.code,
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        run.stdout,
        run.stderr
    );
    assert_eq!(run.number("verified_errors"), 0.0, "{}", run.stdout);
    assert_eq!(run.number("total"), 0.0, "{}", run.stdout);
    assert!(run.number("frames_received") > 0.0, "{}", run.stdout);
    for attack in attacks {
        assert!(
            runs(run, attack) > 0.0,
            "{attack} never ran:\n{}",
            run.stdout
        );
    }
    let (peak, bound) = (run.number("rss_peak_bytes"), run.number("rss_bound_bytes"));
    assert!(
        peak > 0.0 && peak <= bound,
        "{peak} > {bound}:\n{}",
        run.stdout
    );
    assert!(run.number("server_cpu_run_s") > 0.0, "{}", run.stdout);
}

#[test]
fn echo_beside_every_attack_loses_nothing_within_the_memory_bound() {
    let _machine = one_at_a_time();
    let daemon = Daemon::start_with_env(&LIMITS, &[("RUST_LOG", "warn")]);
    let run = chaos(&daemon, &["-c", "10"]);
    assert_clean(
        &run,
        &[
            "garbage",
            "oversize",
            "reset_mid_frame",
            "reset_mid_write",
            "slowloris",
            "never_read",
            "churn",
        ],
    );
}

#[test]
fn broadcast_in_rooms_beside_every_attack_loses_nothing() {
    let _machine = one_at_a_time();
    let mut args = vec!["--mode", "broadcast", "--rooms", "--framing", "line"];
    args.extend_from_slice(&LIMITS);
    let daemon = Daemon::start_with_env(&args, &[("RUST_LOG", "warn")]);
    let run = chaos(
        &daemon,
        &[
            "--traffic",
            "broadcast",
            "--framing",
            "line",
            "--publishers",
            "2",
            "--subscribers",
            "6",
        ],
    );
    // Seven threads, seven attacks: each thread starts with a different one.
    assert_clean(
        &run,
        &[
            "garbage",
            "oversize",
            "reset_mid_frame",
            "reset_mid_write",
            "slowloris",
            "never_read",
            "churn",
        ],
    );
}

#[test]
fn hostile_frames_reaching_verified_receivers_are_errors() {
    let _machine = one_at_a_time();
    // No rooms: every hostile client's frames go to the verified receivers too.
    let mut args = vec!["--mode", "broadcast"];
    args.extend_from_slice(&LIMITS);
    let daemon = Daemon::start_with_env(&args, &[("RUST_LOG", "warn")]);
    let run = chaos(
        &daemon,
        &[
            "--traffic",
            "broadcast",
            "--publishers",
            "1",
            "--subscribers",
            "4",
        ],
    );
    assert_eq!(run.code, Some(3), "{}\n{}", run.stdout, run.stderr);
    assert!(run.number("verified_errors") > 0.0, "{}", run.stdout);
}

#[test]
fn a_peak_over_the_bound_exits_4() {
    let _machine = one_at_a_time();
    let daemon = Daemon::start_with_env(&LIMITS, &[("RUST_LOG", "warn")]);
    let run = chaos(&daemon, &["-c", "4", "--rss-bound", "64KiB"]);
    assert_eq!(run.code, Some(4), "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.number("verified_errors"), 0.0);
    assert_eq!(run.number("rss_bound_bytes"), 65536.0);
    assert!(
        run.stdout.contains("\"rss_over_bound\":true"),
        "{}",
        run.stdout
    );
}

#[test]
fn chaos_flags_belong_to_the_chaos_scenario() {
    for (args, needle) in [
        (
            &["--hostile", "3"][..],
            "--hostile applies to --scenario chaos only",
        ),
        (
            &["--traffic", "broadcast"][..],
            "--traffic applies to --scenario chaos only",
        ),
        (
            &["--scenario", "chaos", "--publishers", "2"][..],
            "--publishers applies to --scenario broadcast",
        ),
        (
            &["--scenario", "chaos", "--traffic", "broadcast", "-c", "2"][..],
            "--connections applies to --scenario echo",
        ),
        (
            &["--scenario", "chaos", "--hostile", "0"][..],
            "'--hostile <N>'",
        ),
    ] {
        let run = run_bench(args);
        assert_eq!(run.code, Some(2), "{args:?}: {}", run.stderr);
        assert!(run.stderr.contains(needle), "{args:?}: {}", run.stderr);
    }
}
