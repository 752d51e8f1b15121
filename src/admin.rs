//! The admin endpoint's HTTP/1.1, sans-IO: request bytes in, response bytes out. It
//! parses with `httparse`, routes `GET /metrics` (Prometheus text), `/stats` (JSON),
//! `/healthz` and `/connz` (one JSON row per connection, paginated), and reads the
//! reactor only through [`Introspect`]. It knows no sockets, no clock and no reactor
//! internals, so every answer is unit-tested from bytes; the reactor's
//! `reactor/admin.rs` moves the bytes and bounds the connections.

use std::fmt::Write as _;
use std::time::Duration;

use crate::reactor::{Gauges, Kind, Peer, Stats};
use crate::service::Report;

/// The largest request head accepted, in bytes; a longer one is answered 431 and the
/// connection closed. An admin request is one line and a few headers.
pub const MAX_REQUEST: usize = 8 << 10;
/// Headers parsed per request; more is a 431.
const MAX_HEADERS: usize = 32;
/// `/connz` rows per page when `limit` is not given.
pub const DEFAULT_CONNZ_LIMIT: usize = 100;
/// The most `/connz` rows one response carries, whatever `limit` asks: a response is
/// at most about 200 bytes a row, so one page costs at most about 200 KiB.
pub const MAX_CONNZ_LIMIT: usize = 1000;

/// One connection as `/connz` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnRow {
    /// The connection's serial number (as the log's `#N`).
    pub id: u64,
    /// Where it comes from: an address, or a Unix socket's path.
    pub peer: Peer,
    /// Time since it was accepted.
    pub age: Duration,
    /// Complete frames received from it.
    pub frames_in: u64,
    /// Frames sent to it.
    pub frames_out: u64,
    /// Bytes received from it.
    pub bytes_in: u64,
    /// Bytes written to it.
    pub bytes_out: u64,
    /// Bytes queued for it and not yet written.
    pub queued: u64,
    /// Where it is: `open`, `paused` (its output is over the cap), `held` (the
    /// service paused it), `draining`, `lingering` or `closed`.
    pub state: &'static str,
}

/// What the admin endpoint may read of the reactor.
pub trait Introspect {
    /// The counters and what is true now.
    fn metrics(&self) -> (Stats, Gauges);
    /// Appends the rows of up to `limit` connections after the first `offset` (in
    /// a stable order) to `rows`; returns how many connections there are in all.
    fn connections(&self, offset: usize, limit: usize, rows: &mut Vec<ConnRow>) -> usize;
    /// True once a graceful shutdown has begun (`/healthz` then says so, 503).
    fn is_draining(&self) -> bool;
    /// What the service reports of itself (broadcast: its rooms).
    fn report(&self) -> Report;
}

/// What the bytes received so far call for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// No complete request head yet: read more (unless [`MAX_REQUEST`] bytes are
    /// already held, which [`respond`] answers itself).
    Incomplete,
    /// A response to send.
    Respond {
        /// The whole response: status line, headers, body.
        bytes: Vec<u8>,
        /// Bytes of the request consumed (the head; requests carry no body).
        consumed: usize,
        /// Close the connection once the response is written.
        close: bool,
    },
}

/// The answer to the request at the front of `buf`.
pub fn respond(buf: &[u8], reactor: &dyn Introspect) -> Outcome {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let consumed = match request.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() < MAX_REQUEST => return Outcome::Incomplete,
        Ok(httparse::Status::Partial) | Err(httparse::Error::TooManyHeaders) => {
            return error(431, "request head too large\n", buf.len())
        }
        Err(e) => return error(400, &format!("bad request: {e}\n"), buf.len()),
    };
    let (Some(method), Some(target)) = (request.method, request.path) else {
        return error(400, "bad request\n", consumed);
    };
    let header = |name: &str| {
        request
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    };
    // A body would have to be read past; admin requests have none.
    let has_body = header("transfer-encoding").is_some()
        || header("content-length").is_some_and(|v| v.trim_ascii() != b"0");
    if has_body {
        return error(400, "admin requests carry no body\n", consumed);
    }
    let connection = header("connection").unwrap_or_default();
    let close = if request.version == Some(0) {
        !connection.eq_ignore_ascii_case(b"keep-alive")
    } else {
        connection.eq_ignore_ascii_case(b"close")
    };
    let head = match method {
        "GET" => false,
        "HEAD" => true,
        _ => {
            let mut bytes = response(405, "text/plain", b"only GET and HEAD\n", close, false);
            insert_header(&mut bytes, "Allow: GET, HEAD");
            return Outcome::Respond {
                bytes,
                consumed,
                close,
            };
        }
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let (status, kind, body) = match route(path, query, reactor) {
        Ok(answer) => answer,
        Err(why) => return error(400, &format!("bad request: {why}\n"), consumed),
    };
    Outcome::Respond {
        bytes: response(status, kind, body.as_bytes(), close, head),
        consumed,
        close,
    }
}

/// Status, content type and body for `path`, or why the query is bad.
fn route(
    path: &str,
    query: &str,
    reactor: &dyn Introspect,
) -> Result<(u16, &'static str, String), String> {
    const TEXT: &str = "text/plain; charset=utf-8";
    const JSON: &str = "application/json";
    Ok(match path {
        "/metrics" => {
            let (stats, gauges) = reactor.metrics();
            let mut text = stats.render_prometheus(&gauges);
            report_prometheus(&reactor.report(), &mut text);
            (200, "text/plain; version=0.0.4; charset=utf-8", text)
        }
        "/stats" => {
            let (stats, gauges) = reactor.metrics();
            let mut json = stats.render_json(&gauges);
            json.pop(); // the closing brace: the service's tables go inside
            report_json(&reactor.report(), &mut json);
            json.push_str("}\n");
            (200, JSON, json)
        }
        "/healthz" if reactor.is_draining() => (503, TEXT, "shutting down\n".into()),
        "/healthz" => (200, TEXT, "ok\n".into()),
        "/connz" => (200, JSON, connz(query, reactor)?),
        "/" => (
            200,
            TEXT,
            "framecast admin: /metrics (Prometheus), /stats (JSON), /healthz, /connz?offset=N&limit=N\n"
                .into(),
        ),
        _ => (404, TEXT, format!("no such page: {path}\n")),
    })
}

/// Appends the service's tables in the Prometheus text format: one family per column,
/// `framecast_room_members{room="a"} 3`, with `HELP` and `TYPE` lines.
fn report_prometheus(report: &Report, out: &mut String) {
    for table in &report.tables {
        for (i, column) in table.columns.iter().enumerate() {
            let (name, kind) = match column.kind {
                Kind::Counter => (
                    format!("framecast_{}_{}_total", table.row, column.name),
                    "counter",
                ),
                Kind::Gauge => (format!("framecast_{}_{}", table.row, column.name), "gauge"),
            };
            let _ = writeln!(out, "# HELP {name} {}", column.help);
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (row, values) in &table.rows {
                let _ = write!(out, "{name}{{{}=\"", table.row);
                label_value(row, out);
                let _ = writeln!(out, "\"}} {}", values.get(i).copied().unwrap_or(0));
            }
        }
        let _ = writeln!(
            out,
            "# HELP framecast_{0}s {0}s there are, shown or not.",
            table.row
        );
        let _ = writeln!(out, "# TYPE framecast_{}s gauge", table.row);
        let _ = writeln!(out, "framecast_{}s {}", table.row, table.total);
    }
}

/// Appends the service's tables as JSON members of the `/stats` object:
/// `,"rooms":{"total":2,"rows":[{"name":"a","members":3,"frames":10},...]}`.
fn report_json(report: &Report, out: &mut String) {
    for table in &report.tables {
        let _ = write!(
            out,
            ",\"{}s\":{{\"total\":{},\"rows\":[",
            table.row, table.total
        );
        for (r, (row, values)) in table.rows.iter().enumerate() {
            if r > 0 {
                out.push(',');
            }
            out.push_str("{\"name\":\"");
            json_string(row, out);
            out.push('"');
            for (column, value) in table.columns.iter().zip(values) {
                let _ = write!(out, ",\"{}\":{value}", column.name);
            }
            out.push('}');
        }
        out.push_str("]}");
    }
}

/// `text` as the inside of a Prometheus label value: `\`, `"` and newline escaped.
fn label_value(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// `text` as the inside of a JSON string: quotes, backslashes and control characters
/// escaped.
fn json_string(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
}

/// The `/connz` page the query asks for: `offset` (0) and `limit`
/// ([`DEFAULT_CONNZ_LIMIT`], at most [`MAX_CONNZ_LIMIT`]).
fn connz(query: &str, reactor: &dyn Introspect) -> Result<String, String> {
    let mut offset = 0;
    let mut limit = DEFAULT_CONNZ_LIMIT;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let number = || {
            value
                .parse::<usize>()
                .map_err(|_| format!("{key}={value} is not a number"))
        };
        match key {
            "offset" => offset = number()?,
            "limit" => limit = number()?.min(MAX_CONNZ_LIMIT),
            _ => return Err(format!("unknown parameter {key} (offset, limit)")),
        }
    }
    let mut rows = Vec::with_capacity(limit.min(64));
    let total = reactor.connections(offset, limit, &mut rows);
    let mut out = String::with_capacity(64 + rows.len() * 200);
    let _ = write!(
        out,
        "{{\"total\":{total},\"offset\":{offset},\"limit\":{limit},\"connections\":["
    );
    for (i, row) in rows.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{{\"id\":{},\"peer\":\"", row.id);
        json_string(&row.peer.to_string(), &mut out);
        let _ = write!(
            out,
            "\",\"age_seconds\":{:.3},\"frames_in\":{},\"frames_out\":{},\"bytes_in\":{},\"bytes_out\":{},\"queued_bytes\":{},\"state\":\"{}\"}}",
            row.age.as_secs_f64(),
            row.frames_in,
            row.frames_out,
            row.bytes_in,
            row.bytes_out,
            row.queued,
            row.state
        );
    }
    out.push_str("]}\n");
    Ok(out)
}

/// An error response that closes the connection: what follows a bad request cannot
/// be trusted to be the start of the next one.
fn error(status: u16, body: &str, consumed: usize) -> Outcome {
    Outcome::Respond {
        bytes: response(
            status,
            "text/plain; charset=utf-8",
            body.as_bytes(),
            true,
            false,
        ),
        consumed,
        close: true,
    }
}

/// A whole response; a `head` response has the headers of the body but not the body.
fn response(status: u16, kind: &str, body: &[u8], close: bool, head: bool) -> Vec<u8> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "",
    };
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nCache-Control: no-store\r\n",
        body.len()
    );
    if close {
        out.push_str("Connection: close\r\n");
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    if !head {
        bytes.extend_from_slice(body);
    }
    bytes
}

/// Adds `line` to a response's headers, before the blank line that ends them.
fn insert_header(response: &mut Vec<u8>, line: &str) {
    if let Some(end) = response.windows(4).position(|w| w == b"\r\n\r\n") {
        let at = end + 2;
        let text = format!("{line}\r\n");
        response.splice(at..at, text.into_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::report::Column;

    struct Fake {
        conns: Vec<ConnRow>,
        draining: bool,
    }

    impl Introspect for Fake {
        fn metrics(&self) -> (Stats, Gauges) {
            let stats = Stats {
                accepted: 4,
                frames_in: 30,
                ..Stats::default()
            };
            let gauges = Gauges {
                open: self.conns.len() as u64,
                ..Gauges::default()
            };
            (stats, gauges)
        }

        fn connections(&self, offset: usize, limit: usize, rows: &mut Vec<ConnRow>) -> usize {
            rows.extend(self.conns.iter().skip(offset).take(limit).cloned());
            self.conns.len()
        }

        fn is_draining(&self) -> bool {
            self.draining
        }

        fn report(&self) -> Report {
            let mut report = Report::default();
            let table = report.table("room", ROOM_COLUMNS);
            table.push(b"lobby", &[2, 40]);
            table.push(b"say \"hi\"\n", &[1, 0]);
            report
        }
    }

    const ROOM_COLUMNS: &[Column] = &[
        Column {
            name: "members",
            kind: Kind::Gauge,
            help: "Members.",
        },
        Column {
            name: "frames",
            kind: Kind::Counter,
            help: "Frames.",
        },
    ];

    fn fake(n: u64) -> Fake {
        let conns = (1..=n)
            .map(|id| ConnRow {
                id,
                peer: Peer::Ip(([127, 0, 0, 1], 40000 + id as u16).into()),
                age: Duration::from_millis(1500),
                frames_in: 10,
                frames_out: 10,
                bytes_in: 140,
                bytes_out: 140,
                queued: 0,
                state: "open",
            })
            .collect();
        Fake {
            conns,
            draining: false,
        }
    }

    /// The status, whether it closes, and the body of the response to `request`.
    fn answer(request: &[u8], reactor: &Fake) -> (u16, bool, String) {
        let Outcome::Respond {
            bytes,
            consumed,
            close,
        } = respond(request, reactor)
        else {
            panic!("incomplete: {request:?}");
        };
        assert!(consumed <= request.len());
        let text = String::from_utf8(bytes).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let status = head[9..12].parse().unwrap();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap()
            .parse()
            .unwrap();
        if !request.starts_with(b"HEAD") {
            assert_eq!(length, body.len(), "{text}");
        }
        assert_eq!(close, head.contains("Connection: close"), "{text}");
        (status, close, body.to_owned())
    }

    fn get(path: &str) -> Vec<u8> {
        format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").into_bytes()
    }

    #[test]
    fn serves_health_stats_and_metrics_and_keeps_the_connection() {
        let reactor = fake(3);
        assert_eq!(
            answer(&get("/healthz"), &reactor),
            (200, false, "ok\n".into())
        );
        let (status, _, json) = answer(&get("/stats"), &reactor);
        assert_eq!(status, 200);
        assert!(json.starts_with("{\"connections_accepted\":4,\"connections_open\":3,"));
        let (status, _, text) = answer(&get("/metrics"), &reactor);
        assert_eq!(status, 200);
        assert!(text.contains("\nframecast_frames_in_total 30\n"), "{text}");
    }

    #[test]
    fn garbage_is_400_and_closes_an_unknown_path_is_404() {
        let reactor = fake(0);
        let (status, close, _) = answer(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\r\n\r\n", &reactor);
        assert_eq!((status, close), (400, true));
        let (status, close, _) = answer(&get("/nope"), &reactor);
        assert_eq!((status, close), (404, false));
        let (status, close, _) = answer(b"POST /stats HTTP/1.1\r\n\r\n", &reactor);
        assert_eq!((status, close), (405, false));
        let (status, close, _) = answer(
            b"GET /stats HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
            &reactor,
        );
        assert_eq!((status, close), (400, true));
    }

    #[test]
    fn a_partial_head_waits_and_a_huge_one_is_431() {
        let reactor = fake(0);
        assert_eq!(
            respond(b"GET /stats HTTP/1.1\r\nHo", &reactor),
            Outcome::Incomplete
        );
        let mut huge = b"GET /stats HTTP/1.1\r\nX-Pad: ".to_vec();
        huge.resize(MAX_REQUEST, b'a');
        assert_eq!(answer(&huge, &reactor).0, 431);
    }

    #[test]
    fn http_1_0_and_connection_close_close_after_the_response() {
        let reactor = fake(0);
        assert!(answer(b"GET /healthz HTTP/1.0\r\n\r\n", &reactor).1);
        assert!(
            !answer(
                b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
                &reactor
            )
            .1
        );
        assert!(
            answer(
                b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n",
                &reactor
            )
            .1
        );
    }

    #[test]
    fn head_has_the_length_but_no_body() {
        let (status, _, body) = answer(b"HEAD /healthz HTTP/1.1\r\n\r\n", &fake(0));
        assert_eq!((status, body.as_str()), (200, ""));
    }

    #[test]
    fn pipelined_requests_are_answered_one_at_a_time() {
        let reactor = fake(0);
        let mut two = get("/healthz");
        let first = two.len();
        two.extend(get("/stats"));
        match respond(&two, &reactor) {
            Outcome::Respond { consumed, .. } => assert_eq!(consumed, first),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn healthz_says_503_while_draining() {
        let mut reactor = fake(0);
        reactor.draining = true;
        assert_eq!(answer(&get("/healthz"), &reactor).0, 503);
    }

    #[test]
    fn connz_pages_through_the_connections() {
        let reactor = fake(5);
        let (status, _, page) = answer(&get("/connz?offset=1&limit=2"), &reactor);
        assert_eq!(status, 200);
        assert!(
            page.starts_with("{\"total\":5,\"offset\":1,\"limit\":2,\"connections\":[{\"id\":2,"),
            "{page}"
        );
        assert_eq!(page.matches("\"peer\":").count(), 2, "{page}");
        assert!(page.contains("\"peer\":\"127.0.0.1:40003\""), "{page}");
        assert!(page.contains("\"age_seconds\":1.500,"), "{page}");
        let (_, _, all) = answer(&get("/connz"), &reactor);
        assert_eq!(all.matches("\"state\":\"open\"").count(), 5);
        let (_, _, capped) = answer(&get("/connz?limit=1000000"), &reactor);
        assert!(capped.contains(&format!("\"limit\":{MAX_CONNZ_LIMIT},")));
        assert_eq!(answer(&get("/connz?limit=many"), &reactor).0, 400);
        assert_eq!(answer(&get("/connz?sort=age"), &reactor).0, 400);
    }

    #[test]
    fn a_unix_peer_is_named_by_its_path_escaped_in_json() {
        let mut reactor = fake(1);
        reactor.conns[0].peer = Peer::Unix {
            path: std::sync::Arc::from(std::path::Path::new("/tmp/a \"quoted\" dir/s.sock")),
            pid: Some(42),
        };
        let (status, _, page) = answer(&get("/connz"), &reactor);
        assert_eq!(status, 200);
        assert!(
            page.contains(r#""peer":"unix:/tmp/a \"quoted\" dir/s.sock[pid 42]","#),
            "{page}"
        );
    }

    #[test]
    fn the_services_tables_are_on_stats_and_metrics() {
        let reactor = fake(0);
        let body = |path: &str| {
            let request = format!("GET {path} HTTP/1.1\r\n\r\n");
            match respond(request.as_bytes(), &reactor) {
                Outcome::Respond { bytes, .. } => String::from_utf8(bytes).unwrap(),
                Outcome::Incomplete => panic!("incomplete"),
            }
        };
        let stats = body("/stats");
        assert!(
            stats.contains(
                r#","rooms":{"total":2,"rows":[{"name":"lobby","members":2,"frames":40},{"name":"say \"hi\"\n","members":1,"frames":0}]}}"#
            ),
            "{stats}"
        );
        let metrics = body("/metrics");
        for line in [
            "# TYPE framecast_room_members gauge",
            "framecast_room_members{room=\"lobby\"} 2",
            "# TYPE framecast_room_frames_total counter",
            "framecast_room_frames_total{room=\"lobby\"} 40",
            "framecast_room_frames_total{room=\"say \\\"hi\\\"\\n\"} 0",
            "framecast_rooms 2",
        ] {
            assert!(metrics.lines().any(|l| l == line), "{line} in {metrics}");
        }
    }
}
