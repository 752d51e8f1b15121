//! `--server-stats ADMIN_ADDR`: the daemon's own view of the run, beside the bench's.
//! Reads framecast's `/stats` (its admin endpoint, `framecast --admin`) before the
//! run and after it, and prints what changed: frames and bytes in and out, frames
//! dropped for and connections closed as slow consumers, protocol errors, resets. A
//! daemon that counts fewer frames out than the bench received, or drops some, says
//! so itself. The fetch is a plain blocking HTTP/1.1 GET; the parsing and the
//! figures are pure.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use super::report::Report;

/// How long reading `/stats` may take before the bench gives up on it.
const TIMEOUT: Duration = Duration::from_secs(5);
/// The largest `/stats` response read (it is about 1 KiB).
const MAX_RESPONSE: u64 = 64 << 10;

/// The counters compared, as `/stats` names them, and how the summary labels them.
const SHOWN: [(&str, &str); 10] = [
    ("frames_in", "frames in"),
    ("frames_out", "frames out"),
    ("bytes_in", "bytes in"),
    ("bytes_out", "bytes out"),
    ("slow_consumer_frames_dropped", "dropped for slow consumers"),
    ("slow_consumer_closes", "slow-consumer closes"),
    ("protocol_errors_oversize", "oversize protocol errors"),
    ("protocol_errors_truncated", "truncated"),
    ("connections_accepted", "connections accepted"),
    ("resets", "resets"),
];

/// The numbers of one `/stats` object, by key.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot(Vec<(String, f64)>);

impl Snapshot {
    /// The value of `key`, if the object has it.
    pub fn get(&self, key: &str) -> Option<f64> {
        self.0.iter().find(|(k, _)| k == key).map(|&(_, v)| v)
    }

    /// Reads a flat JSON object of numbers (strings are skipped).
    ///
    /// # Errors
    /// When `json` is not such an object.
    pub fn parse(json: &str) -> Result<Snapshot, String> {
        let body = json
            .trim()
            .strip_prefix('{')
            .and_then(|b| b.strip_suffix('}'))
            .ok_or_else(|| format!("not a JSON object: {json:.80}"))?;
        let mut values = Vec::new();
        for pair in body.split(',').filter(|p| !p.trim().is_empty()) {
            let (key, value) = pair
                .split_once(':')
                .ok_or_else(|| format!("not a key and a value: {pair:.80}"))?;
            let key = key.trim().trim_matches('"');
            if let Ok(number) = value.trim().parse::<f64>() {
                values.push((key.to_owned(), number));
            }
        }
        Ok(Snapshot(values))
    }
}

/// `GET /stats` from the admin endpoint at `addr`.
///
/// # Errors
/// A message saying what failed: connecting, the status, the body.
pub fn fetch(addr: SocketAddr) -> Result<Snapshot, String> {
    let fail = |e: std::io::Error| format!("cannot read http://{addr}/stats: {e}");
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(fail)?;
    stream.set_read_timeout(Some(TIMEOUT)).map_err(fail)?;
    stream.set_write_timeout(Some(TIMEOUT)).map_err(fail)?;
    write!(
        stream,
        "GET /stats HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(fail)?;
    let mut response = String::new();
    stream
        .take(MAX_RESPONSE)
        .read_to_string(&mut response)
        .map_err(fail)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("http://{addr}/stats: not an HTTP response"))?;
    if !head.starts_with("HTTP/1.1 200") {
        let status = head.lines().next().unwrap_or_default();
        return Err(format!(
            "http://{addr}/stats answered {status:?} (is it framecast's --admin address?)"
        ));
    }
    Snapshot::parse(body)
}

/// What changed between `before` and `after`, for each counter compared.
pub fn delta(before: &Snapshot, after: &Snapshot) -> Vec<(&'static str, &'static str, f64)> {
    SHOWN
        .iter()
        .filter_map(|&(key, label)| {
            let now = after.get(key)?;
            Some((key, label, now - before.get(key).unwrap_or(0.0)))
        })
        .collect()
}

/// The summary `text` (or JSON object) with the daemon's view added: a paragraph
/// beside the bench's own whole-run figures, or a `"server_stats"` member.
pub fn annotate(
    text: &str,
    json: bool,
    addr: SocketAddr,
    before: &Snapshot,
    after: Result<Snapshot, String>,
    report: &Report,
) -> String {
    let text = text.trim_end();
    let after = match after {
        Ok(after) => after,
        Err(why) if json => {
            let why = why.replace('\\', "\\\\").replace('"', "\\\"");
            let open = text.strip_suffix('}').unwrap_or(text);
            return format!("{open},\"server_stats\":{{\"error\":\"{why}\"}}}}");
        }
        Err(why) => return format!("{text}\nserver stats: {why}"),
    };
    let changes = delta(before, &after);
    if json {
        let fields: Vec<String> = changes
            .iter()
            .map(|(key, _, v)| format!("\"{key}\":{v}"))
            .collect();
        let open = text.strip_suffix('}').unwrap_or(text);
        return format!(
            "{open},\"server_stats\":{{\"admin\":\"{addr}\",{}}}}}",
            fields.join(",")
        );
    }
    let server: Vec<String> = changes
        .iter()
        .map(|(_, label, v)| format!("{v} {label}"))
        .collect();
    let s = &report.stats;
    format!(
        "{text}\nserver (its /stats at {addr}, whole run): {}\nbench (whole run): {} frames received, {} bytes received; {} integrity errors",
        server.join(", "),
        s.frames_total,
        s.bytes_total,
        s.errors()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_framecasts_flat_stats_object() {
        let snap = Snapshot::parse(
            "{\"connections_accepted\":4,\"frames_in\":30,\"loop_turn_longest_seconds\":0.000250,\"version\":\"0.1.0\"}\n",
        )
        .unwrap();
        assert_eq!(snap.get("frames_in"), Some(30.0));
        assert_eq!(snap.get("loop_turn_longest_seconds"), Some(0.00025));
        assert_eq!(snap.get("version"), None);
        assert!(Snapshot::parse("<html>").is_err());
    }

    #[test]
    fn the_delta_is_what_the_run_added() {
        let before = Snapshot::parse("{\"frames_in\":10,\"frames_out\":10}").unwrap();
        let after = Snapshot::parse("{\"frames_in\":110,\"frames_out\":105,\"resets\":1}").unwrap();
        let d = delta(&before, &after);
        assert_eq!(d[0], ("frames_in", "frames in", 100.0));
        assert_eq!(d[1], ("frames_out", "frames out", 95.0));
        assert_eq!(d.last().unwrap().2, 1.0);
    }
}
