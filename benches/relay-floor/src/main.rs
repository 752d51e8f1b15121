//! The floor for broadcast: the least a relay can do per delivery. It reads what any
//! client sends (64 KiB at a time) and writes those bytes to every other client, one
//! write each, keeping only what a write leaves over. No framing, no caps, no order
//! across senders, no logging: what a framed relay costs above this is its own. With
//! `--echo`, the same for echo: the bytes go back to their sender only, one read and
//! one write per batch, the least any copying echo server does. With `--udp`, the
//! floor for UDP echo: one blocking socket, `recv_from` then `send_to` the datagram
//! back, for ever (no poller, no access rules, no port rules, no queue, no counters).
//!
//! With `--pace CONNS RATE SECONDS`, the floor for an open-loop client instead:
//! CONNS connections to ADDR, RATE messages a second in total (message k due at
//! k / RATE on connection k % CONNS), each framecast-bench's default frame (a u32be
//! length, 512, and 512 bytes, which an echo server of any framing or none returns as
//! it came), woken at each due time by a `timerfd` in the poller as framecast-bench's
//! pacer is; replies read and dropped unchecked, no latency kept. What
//! framecast-bench costs per frame above it is its own.
//!
//!   relay-floor [--echo | --udp] [ADDR]        # default 127.0.0.1:7077
//!   relay-floor --pace CONNS RATE SECONDS ADDR
//!
//! A measuring tool for `benches/compare.sh`, not a server to deploy: a client that
//! stops reading makes it buffer without limit.
#![forbid(unsafe_code)]

use std::io::{self, ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::process::ExitCode;

use mio::net::{TcpListener, TcpStream};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use rustix::time::{
    clock_gettime, timerfd_create, timerfd_settime, ClockId, Itimerspec, TimerfdClockId,
    TimerfdFlags, TimerfdTimerFlags, Timespec,
};

const LISTENER: Token = Token(usize::MAX);

struct Client {
    stream: TcpStream,
    /// Bytes a write left over, sent before anything newer.
    pending: Vec<u8>,
}

impl Client {
    /// Writes `bytes` after whatever is pending; false once the client is gone.
    fn send(&mut self, bytes: &[u8]) -> bool {
        if !self.pending.is_empty() {
            self.pending.extend_from_slice(bytes);
            return true;
        }
        match self.stream.write(bytes) {
            Ok(n) => self.pending.extend_from_slice(&bytes[n..]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => self.pending.extend_from_slice(bytes),
            Err(_) => return false,
        }
        true
    }

    /// Writes what is pending until done or the socket is full; false once gone.
    fn flush(&mut self) -> bool {
        while !self.pending.is_empty() {
            match self.stream.write(&self.pending) {
                Ok(n) => drop(self.pending.drain(..n)),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
                Err(_) => return false,
            }
        }
        true
    }
}

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().is_some_and(|a| a == "--pace") {
        let parsed = match args.as_slice() {
            [_, conns, rate, secs, addr] => conns
                .parse::<usize>()
                .ok()
                .zip(rate.parse::<f64>().ok().filter(|r| *r > 0.0))
                .zip(secs.parse::<f64>().ok().filter(|s| *s > 0.0))
                .zip(addr.parse::<SocketAddr>().ok()),
            _ => None,
        };
        let Some((((conns, rate), secs), addr)) = parsed.filter(|p| p.0 .0 .0 > 0) else {
            eprintln!("usage: relay-floor --pace CONNS RATE SECONDS ADDR");
            return ExitCode::from(2);
        };
        return match run_pace(addr, conns, rate, secs) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("relay-floor: {e}");
                ExitCode::from(1)
            }
        };
    }
    let echo = args.first().is_some_and(|a| a == "--echo");
    let udp = args.first().is_some_and(|a| a == "--udp");
    if echo || udp {
        args.remove(0);
    }
    let addr = args
        .first()
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:7077".into());
    let addr: SocketAddr = match addr.parse() {
        Ok(addr) => addr,
        Err(e) => {
            eprintln!("relay-floor: {addr}: {e}");
            return ExitCode::from(2);
        }
    };
    let result = if udp { run_udp(addr) } else { run(addr, echo) };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("relay-floor: {e}");
            ExitCode::from(1)
        }
    }
}

/// CLOCK_MONOTONIC in ns.
fn monotonic_ns() -> u64 {
    let t = clock_gettime(ClockId::Monotonic);
    (t.tv_sec as u64).saturating_mul(1_000_000_000) + t.tv_nsec as u64
}

/// An open loop at its barest (`--pace`): sends each message at its time, reads and
/// drops the replies, and prints how many went out and how many bytes came back.
fn run_pace(addr: SocketAddr, conns: usize, rate: f64, secs: f64) -> io::Result<()> {
    const TIMER: Token = Token(usize::MAX);
    let mut poll = Poll::new()?;
    let mut streams = Vec::with_capacity(conns);
    for i in 0..conns {
        let stream = std::net::TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        stream.set_nonblocking(true)?;
        let mut stream = TcpStream::from_std(stream);
        poll.registry()
            .register(&mut stream, Token(i), Interest::READABLE)?;
        streams.push(stream);
    }
    let timer = timerfd_create(
        TimerfdClockId::Monotonic,
        TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
    )?;
    poll.registry()
        .register(&mut SourceFd(&timer.as_raw_fd()), TIMER, Interest::READABLE)?;
    let mut msg = [b'p'; 516];
    msg[..4].copy_from_slice(&512u32.to_be_bytes());
    let mut buf = vec![0u8; 64 << 10];
    let mut events = Events::with_capacity(1024);
    let total = (rate * secs) as u64;
    let (mut sent, mut unsent, mut received) = (0u64, 0u64, 0u64);
    // The deadline the timer holds: a wake-up for replies does not set it again.
    let mut armed = None;
    let start = monotonic_ns();
    let due = |k: u64| (k as f64 * 1e9 / rate) as u64;
    loop {
        let now = monotonic_ns() - start;
        while sent < total && due(sent) <= now {
            match streams[(sent % conns as u64) as usize].write(&msg) {
                Ok(516) => {}
                // A full socket: the message is not sent (the floor keeps no queue).
                _ => unsent += 1,
            }
            sent += 1;
        }
        let done = sent >= total && received >= (sent - unsent) * msg.len() as u64;
        if done || now > due(total) + 2_000_000_000 {
            break;
        }
        if sent < total && armed != Some(sent) {
            armed = Some(sent);
            let at = (start + due(sent)) as i64;
            let spec = Itimerspec {
                it_interval: Timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                },
                it_value: Timespec {
                    tv_sec: at / 1_000_000_000,
                    tv_nsec: at % 1_000_000_000,
                },
            };
            timerfd_settime(&timer, TimerfdTimerFlags::ABSTIME, &spec)?;
        }
        match poll.poll(&mut events, Some(std::time::Duration::from_millis(100))) {
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            result => result?,
        }
        for event in &events {
            let Some(stream) = streams.get_mut(event.token().0) else {
                continue; // the timer: what is due goes out at the top of the loop
            };
            loop {
                match stream.read(&mut buf) {
                    Ok(0) => return Err(io::Error::other("the server closed a connection")),
                    Ok(n) => {
                        received += n as u64;
                        if n < buf.len() {
                            break; // a short read: drained, and the edge will fire again
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
        }
    }
    println!("sent {sent} messages ({unsent} not taken), received {received} bytes");
    Ok(())
}

/// UDP echo at its barest: each datagram straight back to its sender.
fn run_udp(addr: SocketAddr) -> io::Result<()> {
    let socket = std::net::UdpSocket::bind(addr)?;
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match socket.recv_from(&mut buf) {
            Ok((n, from)) => {
                let _ = socket.send_to(&buf[..n], from);
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

fn run(addr: SocketAddr, echo: bool) -> io::Result<()> {
    let mut poll = Poll::new()?;
    let mut listener = TcpListener::bind(addr)?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut clients: Vec<Option<Client>> = Vec::new();
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match poll.poll(&mut events, None) {
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            result => result?,
        }
        for event in &events {
            if event.token() == LISTENER {
                while let Ok((mut stream, _)) = listener.accept() {
                    stream.set_nodelay(true)?;
                    let token = Token(clients.len());
                    poll.registry().register(
                        &mut stream,
                        token,
                        Interest::READABLE | Interest::WRITABLE,
                    )?;
                    clients.push(Some(Client {
                        stream,
                        pending: Vec::new(),
                    }));
                }
                continue;
            }
            let from = event.token().0;
            if event.is_writable() && !clients[from].as_mut().is_some_and(Client::flush) {
                clients[from] = None;
            }
            while event.is_readable() {
                let Some(sender) = clients[from].as_mut() else {
                    break;
                };
                let n = match sender.stream.read(&mut buf) {
                    Ok(0) => {
                        clients[from] = None;
                        break;
                    }
                    Ok(n) => n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(_) => {
                        clients[from] = None;
                        break;
                    }
                };
                if echo {
                    if !sender.send(&buf[..n]) {
                        clients[from] = None;
                    }
                } else {
                    for (to, slot) in clients.iter_mut().enumerate() {
                        if to != from && !slot.as_mut().is_some_and(|c| c.send(&buf[..n])) {
                            *slot = None;
                        }
                    }
                }
                if n < buf.len() {
                    break;
                }
            }
        }
    }
}
