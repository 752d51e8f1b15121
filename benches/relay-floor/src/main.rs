//! The floor for broadcast: the least a relay can do per delivery. It reads what any
//! client sends (64 KiB at a time) and writes those bytes to every other client, one
//! write each, keeping only what a write leaves over. No framing, no caps, no order
//! across senders, no logging: what a framed relay costs above this is its own. With
//! `--echo`, the same for echo: the bytes go back to their sender only, one read and
//! one write per batch, the least any copying echo server does. With `--udp`, the
//! floor for UDP echo: one blocking socket, `recv_from` then `send_to` the datagram
//! back, for ever (no poller, no access rules, no port rules, no queue, no counters).
//!
//!   relay-floor [--echo | --udp] [ADDR]        # default 127.0.0.1:7077
//!
//! A measuring tool for `benches/compare.sh`, not a server to deploy: a client that
//! stops reading makes it buffer without limit.
#![forbid(unsafe_code)]

use std::io::{self, ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::process::ExitCode;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

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
