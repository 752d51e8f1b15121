//! Unix-domain stream sockets against the real daemon: echo and splice as on TCP, one
//! broadcast room spanning TCP and Unix clients, a stale socket file replaced, a live
//! socket, a regular file and a directory refused untouched, the file removed at exit.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::thread;

use common::{frame_u32be, read_frame_u32be, read_to_end, run_to_exit, Daemon, Rng, TIMEOUT};

/// A fresh path in a directory of this test process's own.
fn socket_path(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("framecast-unix-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    let _ = std::fs::remove_file(&path);
    path
}

/// A blocking client of the socket at `path`, with timeouts.
fn connect(path: &Path) -> UnixStream {
    let stream = UnixStream::connect(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(TIMEOUT)).unwrap();
    stream
}

/// The path the daemon printed for its `i`th listener.
fn printed_path(daemon: &Daemon, i: usize) -> PathBuf {
    let listener = &daemon.listeners[i];
    PathBuf::from(
        listener
            .strip_prefix("unix:")
            .unwrap_or_else(|| panic!("not a unix listener: {listener}")),
    )
}

#[test]
fn unix_clients_are_echoed_like_tcp_clients_and_the_file_goes_at_exit() {
    let path = socket_path("echo.sock");
    let listen = format!("unix:{}", path.display());
    let mut daemon = Daemon::start(&["--listen", &listen]);
    assert_eq!(
        daemon.listeners,
        std::slice::from_ref(&listen),
        "the start-up line names it"
    );
    let mut rng = Rng::new(13);
    let mut client = connect(&path);
    let mut frames = Vec::new();
    for _ in 0..200 {
        let len = rng.below(5000);
        frames.extend(frame_u32be(&rng.bytes(len)));
    }
    client.write_all(&frames).unwrap();
    let mut back = vec![0; frames.len()];
    client.read_exact(&mut back).unwrap();
    assert!(back == frames, "the echo differs");
    client.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
    daemon.wait_for_log(&format!("unix:{}", path.display()));

    daemon.signal("TERM");
    assert_eq!(daemon.wait_exit(TIMEOUT), Some(0));
    assert!(!path.exists(), "the socket file is removed at exit");
}

#[test]
fn one_broadcast_room_spans_tcp_and_unix_clients() {
    let path = socket_path("room.sock");
    let listen = format!("unix:{}", path.display());
    let daemon = Daemon::start(&[
        "--mode",
        "broadcast",
        "--listen",
        "127.0.0.1:0",
        "--listen",
        &listen,
    ]);
    assert!(daemon.listeners[0].starts_with("tcp://127.0.0.1:"));
    assert_eq!(printed_path(&daemon, 1), path);
    let mut tcp = daemon.connect();
    let mut unix = connect(&path);
    daemon.wait_for_log("2 open)");
    tcp.write_all(&frame_u32be(b"from tcp")).unwrap();
    assert_eq!(read_frame_u32be(&mut unix).unwrap(), b"from tcp");
    unix.write_all(&frame_u32be(b"from unix")).unwrap();
    assert_eq!(read_frame_u32be(&mut tcp).unwrap(), b"from unix");
    drop(unix);
    tcp.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(
        read_to_end(&mut tcp).is_empty(),
        "nothing but its own close"
    );
}

#[test]
fn a_stale_socket_file_is_replaced() {
    let path = socket_path("stale.sock");
    drop(UnixListener::bind(&path).unwrap()); // the file stays, nobody listens
    assert!(path.exists());
    let listen = format!("unix:{}", path.display());
    let daemon = Daemon::start(&["--listen", &listen]);
    let mut client = connect(&path);
    client.write_all(&frame_u32be(b"fresh")).unwrap();
    assert_eq!(read_frame_u32be(&mut client).unwrap(), b"fresh");
    daemon.wait_for_log("replacing a stale socket file");
}

#[test]
fn a_live_socket_a_regular_file_and_a_directory_are_refused_and_left_alone() {
    let live = socket_path("live.sock");
    let server = UnixListener::bind(&live).unwrap();
    let file = socket_path("regular");
    std::fs::write(&file, b"not a socket").unwrap();
    let dir = socket_path("dir");
    std::fs::create_dir_all(&dir).unwrap();
    for (path, why) in [
        (&live, "a server is listening"),
        (&file, "a regular file is there"),
        (&dir, "a directory is there"),
    ] {
        let listen = format!("unix:{}", path.display());
        let (code, stderr) = run_to_exit(&["--listen", &listen]);
        assert_eq!(code, Some(1), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "one clear line: {stderr}");
        assert!(
            stderr.contains(&format!("cannot listen on {listen}")),
            "{stderr}"
        );
        assert!(stderr.contains(why), "{stderr}");
    }
    assert_eq!(std::fs::read(&file).unwrap(), b"not a socket");
    assert!(dir.is_dir());
    let _still_served = UnixStream::connect(&live).unwrap();
    server.accept().expect("the live server still accepts");
}

#[test]
fn unix_streams_are_spliced_with_raw_echo() {
    let path = socket_path("splice.sock");
    let listen = format!("unix:{}", path.display());
    let daemon = Daemon::start_with_env(
        &["--listen", &listen, "--framing", "raw", "--splice"],
        &[("RUST_LOG", "debug,framecast::reactor::serve=trace")],
    );
    let data = Rng::new(7).bytes(4 << 20);
    let mut client = connect(&path);
    let mut reader = client.try_clone().unwrap();
    let expected = data.len();
    let reading = thread::spawn(move || {
        let mut back = vec![0; expected];
        reader.read_exact(&mut back).unwrap();
        back
    });
    client.write_all(&data).unwrap();
    let back = reading.join().unwrap();
    assert!(back == data, "the spliced echo differs");
    client.shutdown(std::net::Shutdown::Write).unwrap();
    daemon.wait_for_log("bytes, spliced;");
}
