//! Transports over real daemon processes: Unix stream sockets beside TCP.

mod common;

use common::{daemon_exe, Daemon};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

fn sock_path(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("framecast-{}-{name}.sock", std::process::id()))
}

/// A line-framed echo daemon on a TCP port and on the Unix socket at `path`.
fn line_daemon_on(path: &std::path::Path) -> Daemon {
    let unix = format!("unix:{}", path.display());
    Daemon::start(&[
        "--framing",
        "line",
        "--listen",
        "127.0.0.1:0",
        "--listen",
        &unix,
    ])
}

/// Sends `text` (whole lines) over the Unix socket at `path` and asserts it comes back.
fn assert_unix_echo(path: &std::path::Path, text: &[u8]) {
    let mut stream = UnixStream::connect(path).expect("connect to the unix listener");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream.write_all(text).expect("write");
    let mut got = vec![0; text.len()];
    stream.read_exact(&mut got).expect("read the echo");
    assert_eq!(got, text);
}

#[test]
fn unix_echo_and_the_socket_file_is_removed_at_exit() {
    let path = sock_path("echo");
    let mut daemon = line_daemon_on(&path);
    assert_unix_echo(&path, b"hello\nworld\n");
    daemon.signal("TERM");
    assert_eq!(daemon.wait_exit(Duration::from_secs(10)), Some(0));
    assert!(
        !path.exists(),
        "socket file left behind at {}",
        path.display()
    );
}

#[test]
fn a_regular_file_at_the_path_is_refused_and_left_as_it_was() {
    let path = sock_path("regular");
    std::fs::write(&path, b"keep me").expect("write the file");
    let out = std::process::Command::new(daemon_exe())
        .args(["--listen", &format!("unix:{}", path.display())])
        .output()
        .expect("run the daemon");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(
        stderr.contains(&path.display().to_string()),
        "stderr: {stderr}"
    );
    assert_eq!(std::fs::read(&path).expect("file still there"), b"keep me");
    let _ = std::fs::remove_file(&path);
}

#[test]
fn a_directory_at_the_path_is_refused_and_left_as_it_was() {
    let path = sock_path("dir");
    std::fs::create_dir_all(&path).expect("make the directory");
    let out = std::process::Command::new(daemon_exe())
        .args(["--listen", &format!("unix:{}", path.display())])
        .output()
        .expect("run the daemon");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.contains("directory"), "stderr: {stderr}");
    assert!(path.is_dir());
    let _ = std::fs::remove_dir(&path);
}

#[test]
fn a_stale_socket_file_is_replaced() {
    let path = sock_path("stale");
    // Bound and dropped: the file stays, nothing listens on it.
    drop(std::os::unix::net::UnixListener::bind(&path).expect("bind the stale socket"));
    assert!(path.exists());
    let mut daemon = line_daemon_on(&path);
    assert_unix_echo(&path, b"again\n");
    daemon.signal("TERM");
    assert_eq!(daemon.wait_exit(Duration::from_secs(10)), Some(0));
}

#[test]
fn a_live_socket_is_refused_and_its_owner_keeps_serving() {
    let path = sock_path("live");
    let unix = format!("unix:{}", path.display());
    let mut first = line_daemon_on(&path);
    let out = std::process::Command::new(daemon_exe())
        .args(["--listen", &unix])
        .output()
        .expect("run the second daemon");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(
        stderr.contains(&path.display().to_string()),
        "stderr: {stderr}"
    );
    // The first daemon still listens.
    assert_unix_echo(&path, b"still\n");
    first.signal("TERM");
    assert_eq!(first.wait_exit(Duration::from_secs(10)), Some(0));
}
