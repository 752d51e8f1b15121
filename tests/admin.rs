//! The admin endpoint against the real daemon: counters that match a scripted session
//! exactly, `/metrics` that parses as Prometheus text, 400/404/`/healthz`, `/connz`
//! rows and pages, idle admin connections that cannot stop the data path, and the
//! protocol-error line that names the likely framing, rate-limited.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use common::{echo_roundtrip, frame_u32be, json_number, read_to_end, Daemon, TIMEOUT};

/// A number from `/stats`.
fn stat(daemon: &Daemon, key: &str) -> f64 {
    let (status, json) = daemon.admin_get("/stats");
    assert_eq!(status, 200, "{json}");
    json_number(&json, key).unwrap_or_else(|| panic!("no {key} in {json}"))
}

/// Waits (bounded) until `/stats` says `key` is `value`.
fn wait_for_stat(daemon: &Daemon, key: &str, value: f64) {
    let deadline = Instant::now() + TIMEOUT;
    while stat(daemon, key) != value {
        assert!(
            Instant::now() < deadline,
            "{key} never became {value}: {}",
            daemon.admin_get("/stats").1
        );
        thread::sleep(Duration::from_millis(10));
    }
}

/// Three clients echo ten frames each; a fourth declares a frame over the maximum.
/// Returns the three, still open, and the bytes each frame took on the wire.
fn scripted_session(daemon: &Daemon) -> (Vec<TcpStream>, u64) {
    let frame = frame_u32be(b"0123456789");
    let clients: Vec<TcpStream> = (0..3)
        .map(|_| {
            let mut c = daemon.connect();
            for _ in 0..10 {
                echo_roundtrip(&mut c, &frame);
            }
            c
        })
        .collect();
    let mut oversize = daemon.connect();
    oversize.write_all(&u32::MAX.to_be_bytes()).unwrap();
    assert_eq!(read_to_end(&mut oversize), b"", "closed, nothing echoed");
    drop(oversize);
    wait_for_stat(daemon, "connections_open", 3.0);
    (clients, frame.len() as u64)
}

#[test]
fn counters_match_a_scripted_session_exactly() {
    let daemon = Daemon::start(&["--admin", "127.0.0.1:0"]);
    let (_clients, frame) = scripted_session(&daemon);
    let expected = [
        ("connections_accepted", 4),
        ("connections_open", 3),
        ("frames_in", 30),
        ("frames_out", 30),
        ("bytes_in", 30 * frame + 4),
        ("bytes_out", 30 * frame),
        ("protocol_errors_oversize", 1),
        ("protocol_errors_truncated", 0),
        ("connections_refused_limit", 0),
        ("output_queued_bytes", 0),
    ];
    let (_, json) = daemon.admin_get("/stats");
    for (key, value) in expected {
        assert_eq!(json_number(&json, key), Some(value as f64), "{key}: {json}");
    }
    // Admin connections are no data connections: many requests later, the same.
    for _ in 0..5 {
        assert_eq!(daemon.admin_get("/healthz"), (200, "ok\n".into()));
    }
    assert_eq!(stat(&daemon, "connections_accepted"), 4.0);
}

/// One sample of a Prometheus text exposition.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: HashMap<String, String>,
    value: f64,
}

/// Parses the Prometheus text format (0.0.4) strictly enough to catch what a scraper
/// would reject: `# HELP` and `# TYPE` once per family and before its samples, legal
/// names, labels `name="value"`, numeric values, counters named `_total`.
fn parse_prometheus(text: &str) -> Vec<Sample> {
    let legal = |name: &str| {
        let mut chars = name.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    };
    let mut help: HashMap<String, String> = HashMap::new();
    let mut kind: HashMap<String, String> = HashMap::new();
    let mut samples = Vec::new();
    assert!(text.ends_with('\n'), "the exposition ends with a newline");
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, doc) = rest.split_once(' ').expect("HELP name text");
            assert!(legal(name), "{line}");
            assert!(!doc.is_empty(), "{line}");
            assert!(
                help.insert(name.into(), doc.into()).is_none(),
                "HELP twice: {line}"
            );
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, t) = rest.split_once(' ').expect("TYPE name type");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&t),
                "{line}"
            );
            assert!(help.contains_key(name), "TYPE before HELP: {line}");
            assert!(
                kind.insert(name.into(), t.into()).is_none(),
                "TYPE twice: {line}"
            );
        } else if line.starts_with('#') || line.is_empty() {
            continue;
        } else {
            let (series, value) = line.rsplit_once(' ').expect("name value");
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => {
                    let body = rest.strip_suffix('}').expect("labels end with }");
                    let labels = body
                        .split(',')
                        .map(|pair| {
                            let (k, v) = pair.split_once('=').expect("label=value");
                            assert!(legal(k), "{line}");
                            let v = v
                                .strip_prefix('"')
                                .and_then(|v| v.strip_suffix('"'))
                                .expect("quoted label value");
                            (k.to_owned(), v.to_owned())
                        })
                        .collect();
                    (name, labels)
                }
                None => (series, HashMap::new()),
            };
            assert!(legal(name), "{line}");
            let t = kind
                .get(name)
                .unwrap_or_else(|| panic!("a sample before its TYPE: {line}"));
            if t == "counter" {
                assert!(
                    name.ends_with("_total"),
                    "a counter not named _total: {line}"
                );
            }
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("{line}"));
            samples.push(Sample {
                name: name.to_owned(),
                labels,
                value,
            });
        }
    }
    samples
}

#[test]
fn metrics_parse_as_prometheus_text_and_agree_with_stats() {
    let daemon = Daemon::start(&["--admin", "0"]);
    let (_clients, _) = scripted_session(&daemon);
    let (status, text) = daemon.admin_get("/metrics");
    assert_eq!(status, 200);
    let samples = parse_prometheus(&text);
    let value = |name: &str, label: Option<(&str, &str)>| {
        samples
            .iter()
            .find(|s| {
                s.name == name
                    && label.is_none_or(|(k, v)| s.labels.get(k).map(String::as_str) == Some(v))
            })
            .unwrap_or_else(|| panic!("no {name} {label:?} in\n{text}"))
            .value
    };
    assert_eq!(value("framecast_connections_accepted_total", None), 4.0);
    assert_eq!(value("framecast_connections_open", None), 3.0);
    assert_eq!(value("framecast_frames_in_total", None), 30.0);
    assert_eq!(value("framecast_frames_out_total", None), 30.0);
    assert!(value("framecast_bytes_in_total", None) > 0.0);
    assert!(value("framecast_bytes_out_total", None) > 0.0);
    assert_eq!(
        value(
            "framecast_protocol_errors_total",
            Some(("kind", "oversize"))
        ),
        1.0
    );
    assert!(value("framecast_loop_turns_total", None) > 0.0);
    assert!(samples.iter().all(|s| s.name.starts_with("framecast_")));
}

#[test]
fn garbage_is_400_and_closed_an_unknown_path_404_and_healthz_ok() {
    let daemon = Daemon::start(&["--admin", "0"]);
    let admin = daemon.admin.unwrap();
    let mut garbage = common::connect(admin);
    garbage
        .write_all(b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n")
        .unwrap();
    let response = String::from_utf8_lossy(&read_to_end(&mut garbage)).into_owned();
    assert!(response.starts_with("HTTP/1.1 400 "), "{response}");
    assert!(response.contains("Connection: close"), "{response}");
    assert_eq!(daemon.admin_get("/no/such/page").0, 404);
    assert_eq!(daemon.admin_get("/healthz"), (200, "ok\n".into()));
    // Keep-alive: two requests on one connection.
    let mut keep = common::connect(admin);
    keep.write_all(
        b"GET /healthz HTTP/1.1\r\n\r\nGET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let both = String::from_utf8(read_to_end(&mut keep)).unwrap();
    assert_eq!(both.matches("HTTP/1.1 200 OK").count(), 2, "{both}");
    // The data port knows nothing of it.
    echo_roundtrip(&mut daemon.connect(), &frame_u32be(b"still echo"));
}

#[test]
fn two_hundred_idle_admin_connections_do_not_stop_the_data_path() {
    let daemon = Daemon::start(&["--admin", "0"]);
    let admin = daemon.admin.unwrap();
    let idle: Vec<TcpStream> = (0..200).map(|_| common::connect(admin)).collect();
    // Half a request on some of them, too.
    for mut c in idle.iter().step_by(7) {
        let _ = c.write_all(b"GET /sta");
    }
    let mut client = daemon.connect();
    for i in 0..50 {
        echo_roundtrip(&mut client, &frame_u32be(format!("frame {i}").as_bytes()));
    }
    // A new admin connection still gets its answer: it displaces an idle one.
    assert_eq!(daemon.admin_get("/healthz"), (200, "ok\n".into()));
    assert_eq!(stat(&daemon, "connections_open"), 1.0);
    drop(idle);
    echo_roundtrip(&mut client, &frame_u32be(b"after"));
}

#[test]
fn connz_shows_one_row_per_connection_in_pages() {
    let daemon = Daemon::start(&["--admin", "0"]);
    let clients: Vec<TcpStream> = (0..3)
        .map(|i| {
            let mut c = daemon.connect();
            for _ in 0..=i {
                echo_roundtrip(&mut c, &frame_u32be(b"abc"));
            }
            c
        })
        .collect();
    let (status, page) = daemon.admin_get("/connz");
    assert_eq!(status, 200);
    assert!(
        page.starts_with("{\"total\":3,\"offset\":0,\"limit\":100,"),
        "{page}"
    );
    assert_eq!(page.matches("\"peer\":").count(), 3, "{page}");
    for (i, c) in clients.iter().enumerate() {
        let peer = c.local_addr().unwrap().to_string();
        let row = page
            .split("{\"id\":")
            .find(|row| row.contains(&format!("\"peer\":\"{peer}\"")))
            .unwrap_or_else(|| panic!("no row for {peer}: {page}"));
        let frames = i + 1;
        assert!(
            row.contains(&format!("\"frames_in\":{frames},\"frames_out\":{frames},")),
            "{row}"
        );
        assert!(
            row.contains(&format!("\"bytes_in\":{}", frames * 7)),
            "{row}"
        );
        assert!(
            row.contains("\"queued_bytes\":0,\"state\":\"open\""),
            "{row}"
        );
    }
    let (_, second) = daemon.admin_get("/connz?offset=1&limit=1");
    assert!(
        second.starts_with("{\"total\":3,\"offset\":1,\"limit\":1,"),
        "{second}"
    );
    assert_eq!(second.matches("\"peer\":").count(), 1, "{second}");
    let (_, past) = daemon.admin_get("/connz?offset=3");
    assert!(past.contains("\"connections\":[]"), "{past}");
    assert_eq!(daemon.admin_get("/connz?limit=lots").0, 400);
}

/// The `info` lines of a daemon's log that say `needle`.
fn info_lines(log: &str, needle: &str) -> usize {
    log.lines()
        .filter(|l| l.contains(" INFO ") && l.contains(needle))
        .count()
}

#[test]
fn a_protocol_error_names_the_likely_framing() {
    // At debug every protocol error has its line (at info, one a second).
    let daemon = Daemon::start(&[]);
    let mut text = daemon.connect();
    text.write_all(b"hello\n").unwrap();
    assert_eq!(read_to_end(&mut text), b"");
    daemon.wait_for_log("declared frame length 1751477356 exceeds the maximum 8388608; the bytes look like text (\"hello\\n\"): if the client sends lines, run with --framing line");
    // struct.pack('i', 4) on x86.
    let mut le = daemon.connect();
    le.write_all(&4u32.to_le_bytes()).unwrap();
    assert_eq!(read_to_end(&mut le), b"");
    daemon.wait_for_log("declared frame length 67108864 exceeds the maximum 8388608; read as u32le the header declares 4 bytes: if the client sends u32le headers, run with --framing u32le");
}

#[test]
fn fifty_bad_clients_make_a_line_and_a_count_not_fifty_lines() {
    let daemon = Daemon::start_with_env(&[], &[("RUST_LOG", "info")]);
    for _ in 0..50 {
        let mut probe = daemon.connect();
        probe.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        let mut sink = Vec::new();
        let _ = probe.read_to_end(&mut sink);
    }
    // The first has a line of its own; the rest are counted within about a second.
    let deadline = Instant::now() + TIMEOUT;
    let (own, folded, log) = loop {
        let log = daemon.stderr();
        let own = info_lines(&log, ": protocol error: declared frame length");
        let folded: usize = log
            .lines()
            .filter_map(|l| {
                l.split("protocol error: ")
                    .nth(1)?
                    .split(" more")
                    .next()?
                    .parse::<usize>()
                    .ok()
            })
            .sum();
        if own + folded >= 50 || Instant::now() > deadline {
            break (own, folded, log);
        }
        thread::sleep(Duration::from_millis(20));
    };
    assert!((1..=3).contains(&own), "{own} lines of their own:\n{log}");
    assert_eq!(own + folded, 50, "{log}");
    assert!(log.contains("HTTP request"), "{log}");
}

#[test]
fn rooms_are_counted_on_stats_and_metrics() {
    let daemon = Daemon::start(&["--mode", "broadcast", "--rooms", "--admin", "127.0.0.1:0"]);
    let join = |room: &[u8]| {
        let mut c = daemon.connect();
        c.write_all(&frame_u32be(room)).unwrap();
        c
    };
    let mut publisher = join(b"a");
    let mut readers = [join(b"a"), join(b"a")];
    let lonely = join(b"b");
    wait_for_stat(&daemon, "connections_open", 4.0);
    // Joins are frames in: once all four are counted, every client is in its room.
    wait_for_stat(&daemon, "frames_in", 4.0);
    for i in 0..3u8 {
        publisher.write_all(&frame_u32be(&[i; 10])).unwrap();
    }
    for reader in &mut readers {
        for i in 0..3u8 {
            assert_eq!(common::read_frame_u32be(reader), Some(vec![i; 10]));
        }
    }
    let (_, json) = daemon.admin_get("/stats");
    assert!(
        json.contains(r#""rooms":{"total":2,"rows":[{"name":"a","members":3,"frames":3},{"name":"b","members":1,"frames":0}]}"#),
        "{json}"
    );
    let (_, metrics) = daemon.admin_get("/metrics");
    for line in [
        "framecast_room_members{room=\"a\"} 3",
        "framecast_room_frames_total{room=\"a\"} 3",
        "framecast_room_members{room=\"b\"} 1",
        "framecast_rooms 2",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in {metrics}");
    }
    // A room goes when its last member does.
    drop(lonely);
    wait_for_stat(&daemon, "connections_open", 3.0);
    let (_, json) = daemon.admin_get("/stats");
    assert!(json.contains(r#""rooms":{"total":1,"#), "{json}");
}

#[test]
fn healthz_says_503_while_the_daemon_drains() {
    let mut daemon = Daemon::start(&["--admin", "127.0.0.1:0", "--drain-timeout", "1m"]);
    assert_eq!(daemon.admin_get("/healthz"), (200, "ok\n".into()));
    // A client that keeps its connection open keeps the drain going.
    let mut client = daemon.connect();
    echo_roundtrip(&mut client, &frame_u32be(b"still here"));
    daemon.signal("TERM");
    daemon.wait_for_log("SIGTERM: shutting down");
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let (status, body) = daemon.admin_get("/healthz");
        if status == 503 {
            assert_eq!(body, "shutting down\n");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "/healthz stayed {status} {body:?}"
        );
        thread::sleep(Duration::from_millis(10));
    }
    // The client is still served, and once it leaves the daemon is done.
    echo_roundtrip(&mut client, &frame_u32be(b"served through the drain"));
    drop(client);
    assert_eq!(daemon.wait_exit(TIMEOUT), Some(0));
}
