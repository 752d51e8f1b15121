//! Delivery rate and latency of one publisher to one subscriber, either straight
//! through a NATS server or through two framecast daemons bridged by it, with the
//! same frames, so the bridge's cost is the difference (see docs/scaling.md).
//!
//! ```sh
//! cargo run --release --example bridge_bench -- nats 127.0.0.1:4222
//! cargo run --release --example bridge_bench -- framecast 127.0.0.1:7070 127.0.0.1:7071
//! # options after the addresses: FRAMES (100000) SIZE (128) WINDOW (64)
//! ```
//!
//! The publisher keeps at most WINDOW frames in flight (sent and not yet received),
//! so latency is that of a loaded pipe, not of an ever-growing queue. Each payload
//! carries its sequence number and the time it was sent; the subscriber checks the
//! order (nothing lost, repeated or reordered) and prints frames/s and the latency
//! percentiles. Before measuring, probes are sent until one arrives, so the
//! subscription (and the bridge) is in place.

use std::io::{self, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use framecast::proto::nats::{self, Event, Parser};

const SUBJECT: &str = "framecast";
/// The sequence number of a probe.
const PROBE: u64 = u64::MAX;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Where frames go and come from.
enum Path {
    Nats(SocketAddr),
    Framecast {
        publish: SocketAddr,
        subscribe: SocketAddr,
    },
}

/// Reads payloads one at a time.
trait Source: Send {
    fn next_payload(&mut self) -> Result<Vec<u8>>;
}

struct NatsSource {
    stream: BufReader<TcpStream>,
    writer: TcpStream,
    parser: Parser,
}

impl Source for NatsSource {
    fn next_payload(&mut self) -> Result<Vec<u8>> {
        let mut buf = [0u8; 64 << 10];
        loop {
            match self.parser.next_event()? {
                Some(Event::Msg { payload, .. }) => return Ok(payload.to_vec()),
                Some(Event::Ping) => self.writer.write_all(b"PONG\r\n")?,
                Some(_) => {}
                None => {
                    let n = self.stream.read(&mut buf)?;
                    if n == 0 {
                        return Err("NATS closed the connection".into());
                    }
                    self.parser.feed(&buf[..n]);
                }
            }
        }
    }
}

struct FrameSource(BufReader<TcpStream>);

impl Source for FrameSource {
    fn next_payload(&mut self) -> Result<Vec<u8>> {
        let mut head = [0u8; 4];
        self.0.read_exact(&mut head)?;
        let mut payload = vec![0; u32::from_be_bytes(head) as usize];
        self.0.read_exact(&mut payload)?;
        Ok(payload)
    }
}

/// A NATS connection past its handshake (the `PONG` after `CONNECT`, and `SUB` if
/// `subscribe`).
fn nats_connect(addr: SocketAddr, subscribe: bool) -> Result<NatsSource> {
    let stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    let mut out = BytesMut::new();
    nats::connect("bridge_bench", &mut out);
    if subscribe {
        nats::subscribe(SUBJECT, 1, &mut out);
    }
    nats::ping(&mut out);
    let mut writer = stream.try_clone()?;
    writer.write_all(&out)?;
    let mut source = NatsSource {
        stream: BufReader::new(stream),
        writer,
        parser: Parser::new(64 << 20),
    };
    let mut buf = [0u8; 4096];
    loop {
        match source.parser.next_event()? {
            Some(Event::Pong) => return Ok(source),
            Some(Event::Err(e)) => return Err(e.into()),
            Some(_) => {}
            None => {
                let n = source.stream.read(&mut buf)?;
                if n == 0 {
                    return Err("NATS closed the connection".into());
                }
                source.parser.feed(&buf[..n]);
            }
        }
    }
}

/// Writes one payload the way the path takes it.
fn encode(path: &Path, payload: &[u8], out: &mut Vec<u8>) {
    match path {
        Path::Nats(_) => {
            let mut head = BytesMut::new();
            nats::publish_head(SUBJECT.as_bytes(), payload.len(), &mut head);
            out.extend_from_slice(&head);
            out.extend_from_slice(payload);
            out.extend_from_slice(nats::PAYLOAD_END);
        }
        Path::Framecast { .. } => {
            out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
            out.extend_from_slice(payload);
        }
    }
}

fn payload(seq: u64, start: Instant, size: usize) -> Vec<u8> {
    let stamp = start.elapsed().as_nanos() as u64;
    let mut p = Vec::with_capacity(size.max(16));
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&stamp.to_be_bytes());
    p.resize(size.max(16), b'x');
    p
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage =
        "usage: bridge_bench nats ADDR | framecast PUB_ADDR SUB_ADDR  [FRAMES] [SIZE] [WINDOW]";
    let (path, rest) = match args.first().map(String::as_str) {
        Some("nats") => (Path::Nats(args.get(1).ok_or(usage)?.parse()?), &args[2..]),
        Some("framecast") => (
            Path::Framecast {
                publish: args.get(1).ok_or(usage)?.parse()?,
                subscribe: args.get(2).ok_or(usage)?.parse()?,
            },
            &args[3..],
        ),
        _ => return Err(usage.into()),
    };
    let number = |i: usize, default: u64| -> Result<u64> {
        Ok(rest
            .get(i)
            .map(|s| s.parse())
            .transpose()?
            .unwrap_or(default))
    };
    let (frames, size, window) = (
        number(0, 100_000)?,
        number(1, 128)? as usize,
        number(2, 64)?,
    );

    let (mut publisher, mut source): (TcpStream, Box<dyn Source>) = match &path {
        Path::Nats(addr) => {
            let sub = nats_connect(*addr, true)?;
            let publisher = nats_connect(*addr, false)?;
            // The publisher's own reader answers the server's pings in the background.
            let mut reader = publisher;
            let writer = reader.writer.try_clone()?;
            thread::spawn(move || while reader.next_payload().is_ok() {});
            (writer, Box::new(sub))
        }
        Path::Framecast { publish, subscribe } => {
            let sub = TcpStream::connect(subscribe)?;
            sub.set_nodelay(true)?;
            let publisher = TcpStream::connect(publish)?;
            publisher.set_nodelay(true)?;
            (publisher, Box::new(FrameSource(BufReader::new(sub))))
        }
    };
    let start = Instant::now();

    // Probes until one arrives: the subscription (and the bridge) is in place.
    let (tx, rx) = std::sync::mpsc::channel();
    let received = Arc::new(AtomicU64::new(0));
    let seen = Arc::clone(&received);
    let subscriber = thread::spawn(move || -> Result<(Vec<u64>, Duration)> {
        loop {
            let p = source.next_payload()?;
            if u64::from_be_bytes(p[..8].try_into()?) == PROBE {
                break;
            }
        }
        let _ = tx.send(());
        let mut latencies = Vec::with_capacity(frames as usize);
        let mut next = 0u64;
        let mut first = None;
        while next < frames {
            let p = source.next_payload()?;
            let seq = u64::from_be_bytes(p[..8].try_into()?);
            if seq == PROBE {
                continue;
            }
            if seq != next {
                return Err(format!("frame {next} expected, {seq} came").into());
            }
            let stamp = u64::from_be_bytes(p[8..16].try_into()?);
            let now = start.elapsed().as_nanos() as u64;
            first.get_or_insert(Instant::now());
            latencies.push(now.saturating_sub(stamp));
            next += 1;
            seen.store(next, Ordering::Release);
        }
        Ok((latencies, first.map_or(Duration::ZERO, |t| t.elapsed())))
    });
    let mut out = Vec::new();
    loop {
        out.clear();
        encode(&path, &payload(PROBE, start, size), &mut out);
        publisher.write_all(&out)?;
        if rx.recv_timeout(Duration::from_millis(50)).is_ok() {
            break;
        }
    }
    thread::sleep(Duration::from_millis(100)); // probes in flight land first
    let t0 = Instant::now();
    for seq in 0..frames {
        while seq.saturating_sub(received.load(Ordering::Acquire)) >= window {
            thread::yield_now();
        }
        out.clear();
        encode(&path, &payload(seq, start, size), &mut out);
        publisher.write_all(&out)?;
    }
    let (mut latencies, _) = subscriber.join().map_err(|_| "the subscriber panicked")??;
    let secs = t0.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let pct = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q) as usize] as f64 / 1e3;
    let name = match path {
        Path::Nats(_) => "nats direct",
        Path::Framecast { .. } => "framecast bridged",
    };
    println!(
        "{name}: {frames} frames of {size} B, window {window}: {:.0} frames/s; latency p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs",
        frames as f64 / secs,
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
    io::stdout().flush()?;
    Ok(())
}
