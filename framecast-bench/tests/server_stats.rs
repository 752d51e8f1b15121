//! `framecast-bench --server-stats`: the daemon's own view of a run, read from its
//! admin endpoint before and after, printed beside the bench's; and a clear failure
//! when the address is no admin endpoint. No timing is asserted.

#[path = "../../tests/common/mod.rs"]
mod common;

use common::{json_number, run_bench, Daemon};

#[test]
fn the_daemons_view_sits_beside_the_benchs_own() {
    let daemon = Daemon::start(&["--admin", "0"]);
    let target = daemon.addr.to_string();
    let admin = daemon.admin.expect("an admin address").to_string();
    let args = ["-c", "4", "-d", "300ms", "--warmup", "100ms"];
    let run = run_bench(
        &[
            &[target.as_str()][..],
            &args,
            &["--server-stats", &admin, "--json"],
        ]
        .concat(),
    );
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    let server = run
        .stdout
        .split("\"server_stats\":")
        .nth(1)
        .unwrap_or_else(|| panic!("no server_stats in {}", run.stdout));
    let frames_in = json_number(server, "frames_in").unwrap();
    let frames_out = json_number(server, "frames_out").unwrap();
    // Echo: every frame the daemon took in went out, and at least the frames the
    // bench counted in its measured window did.
    assert_eq!(frames_in, frames_out, "{server}");
    assert!(
        frames_out >= run.number("frames_received"),
        "{}",
        run.stdout
    );
    assert_eq!(json_number(server, "connections_accepted"), Some(4.0));
    assert_eq!(
        json_number(server, "slow_consumer_frames_dropped"),
        Some(0.0)
    );

    let text = run_bench(&[&[target.as_str()][..], &args, &["--server-stats", &admin]].concat());
    assert_eq!(text.code, Some(0), "{}", text.stderr);
    assert!(
        text.stdout.contains("server (its /stats at "),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout.contains("bench (whole run): "),
        "{}",
        text.stdout
    );
}

#[test]
fn a_data_port_given_as_the_admin_address_fails_before_the_run() {
    let daemon = Daemon::start(&[]);
    let target = daemon.addr.to_string();
    let run = run_bench(&[&target, "-d", "200ms", "--server-stats", &target]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(run.stderr.contains("--server-stats"), "{}", run.stderr);
}
