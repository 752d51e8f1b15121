//! framecast-bench over every transport against the real daemon: a Unix socket and TLS
//! (trusting a CA made in the test, or `--insecure`) as clean as TCP, UDP echo with
//! its datagrams counted (lost ones are not errors), and a UDP target with nobody
//! there. Runs are short and bounded; no timing is asserted.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::sync::Mutex;

use common::{run_bench, BenchRun, Daemon};

/// One test at a time: each loads both cores for a short window.
static MACHINE: Mutex<()> = Mutex::new(());

/// A short run against `target` with `extra` flags, as JSON.
fn short_run(target: &str, extra: &[&str]) -> BenchRun {
    let mut args = vec![
        target,
        "--json",
        "--duration",
        "0.5",
        "--warmup",
        "0.1",
        "-c",
        "4",
        "--depth",
        "4",
    ];
    args.extend_from_slice(extra);
    run_bench(&args)
}

fn assert_clean(run: &BenchRun) {
    assert_eq!(
        run.code,
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        run.stdout,
        run.stderr
    );
    assert!(run.number("frames_received") > 0.0, "{}", run.stdout);
    assert_eq!(run.number("total"), 0.0, "{}", run.stdout);
}

#[test]
fn unix_socket_runs_are_clean() {
    let _machine = MACHINE.lock().unwrap_or_else(|p| p.into_inner());
    let path = std::env::temp_dir().join(format!("framecast-bench-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let listen = format!("unix:{}", path.display());
    let _daemon = Daemon::start(&["--listen", &listen]);
    let run = short_run(&listen, &[]);
    assert_clean(&run);
    assert!(
        run.stdout.contains(&format!("\"target\":\"{listen}\"")),
        "{}",
        run.stdout
    );
}

#[test]
fn tls_runs_are_clean_verified_or_insecure() {
    let _machine = MACHINE.lock().unwrap_or_else(|p| p.into_inner());
    let dir = std::env::temp_dir().join(format!("framecast-bench-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().unwrap())
        .unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let (ca_pem, cert_pem, key_pem) = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    std::fs::write(&ca_pem, ca.pem()).unwrap();
    std::fs::write(&cert_pem, cert.pem()).unwrap();
    std::fs::write(&key_pem, key.serialize_pem()).unwrap();
    let (cert_pem, key_pem, ca_pem) = (
        cert_pem.display().to_string(),
        key_pem.display().to_string(),
        ca_pem.display().to_string(),
    );
    let daemon = Daemon::start(&[
        "--listen",
        "tls://127.0.0.1:0",
        "--tls-cert",
        &cert_pem,
        "--tls-key",
        &key_pem,
    ]);
    let port = daemon.addr.port();
    assert_clean(&short_run(
        &format!("tls://localhost:{port}"),
        &["--tls-ca", &ca_pem],
    ));
    assert_clean(&short_run(
        &format!("tls://127.0.0.1:{port}"),
        &["--insecure"],
    ));
    // Verification is real: the certificate does not name 127.0.0.1.
    let refused = short_run(&format!("tls://127.0.0.1:{port}"), &["--tls-ca", &ca_pem]);
    assert_eq!(refused.code, Some(1), "{}", refused.stderr);
    assert!(refused.stderr.contains("certificate"), "{}", refused.stderr);
    let missing = short_run(&format!("tls://127.0.0.1:{port}"), &[]);
    assert_eq!(missing.code, Some(2), "{}", missing.stderr);
    assert!(missing.stderr.contains("--insecure"), "{}", missing.stderr);
}

#[test]
fn udp_runs_count_datagrams_and_losses_apart_from_errors() {
    let _machine = MACHINE.lock().unwrap_or_else(|p| p.into_inner());
    let daemon = Daemon::start(&["--listen", "udp://127.0.0.1:0"]);
    let target = format!("udp://{}", daemon.addr);
    let pid = daemon.pid().to_string();
    let run = short_run(&target, &["--size", "32..60000", "--server-pid", &pid]);
    assert_eq!(
        run.code,
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        run.stdout,
        run.stderr
    );
    assert!(run.number("echoed") > 0.0, "{}", run.stdout);
    assert_eq!(run.number("corrupted"), 0.0, "{}", run.stdout);
    assert!(run.number("lost") <= run.number("sent"), "{}", run.stdout);
    assert!(
        run.stdout.contains("\"server_us_per_frame\":"),
        "{}",
        run.stdout
    );

    // Nobody there: every datagram is lost, and the run says so (exit 1).
    let nobody = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let target = format!("udp://{}", nobody.local_addr().unwrap());
    drop(nobody);
    let run = short_run(&target, &[]);
    assert_eq!(
        run.code,
        Some(1),
        "stdout:\n{}\nstderr:\n{}",
        run.stdout,
        run.stderr
    );
    assert!(
        run.stderr.contains("no datagram came back"),
        "{}",
        run.stderr
    );
}
