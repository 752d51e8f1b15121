//! The UDP run (`udp://HOST:PORT`): each line typed (or `--send`) goes out as one
//! datagram, each datagram received is shown on a line of its own. A datagram has its
//! own boundaries, so no framing applies; a lost datagram is simply not shown. The run
//! ends at `--count` datagrams received, `--wait` after the end of input, or
//! `--timeout`.

use std::io::{self, Write};
use std::net::{SocketAddr, UdpSocket as StdUdpSocket};
use std::sync::mpsc::TryRecvError;
use std::time::{Duration, Instant};

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};

use crate::args::Args;
use crate::failure::{describe, Failure};
use crate::input::{self, Input};
use crate::show;
use crate::target::Target;

/// The socket.
const SOCKET: Token = Token(0);
/// The stdin thread's bell.
const WAKER: Token = Token(1);
/// The largest datagram over IPv4.
const MAX_DATAGRAM: usize = 65_507;

/// Sends the lines as datagrams and shows the datagrams that come back.
///
/// # Errors
/// A [`Failure`]: a bad target or socket, a line too long for a datagram, stdin or
/// stdout failing, `--timeout`.
pub fn run(args: &Args, deadline: Option<(Instant, Duration)>) -> Result<(), Failure> {
    let Target::Udp { addr, .. } = &args.addr else {
        return Err(Failure::Usage("not a udp:// target".into()));
    };
    if args.send_file.is_some() {
        return Err(Failure::Usage(
            "--send-file needs a stream (tcp://, unix:, tls://): a file is not one datagram".into(),
        ));
    }
    let socket = open(*addr).map_err(|error| Failure::Unreachable {
        target: args.addr.to_string(),
        error,
    })?;
    let mut socket = UdpSocket::from_std(socket);
    let mut poll = Poll::new().map_err(|e| Failure::Local(format!("cannot poll: {e}")))?;
    poll.registry()
        .register(&mut socket, SOCKET, Interest::READABLE)
        .map_err(|e| Failure::Local(format!("poll: {e}")))?;
    let mut pending: Vec<Vec<u8>> = args.send.iter().map(|t| t.as_bytes().to_vec()).collect();
    let (input, _waker) = input::attach(args.is_scripted(), poll.registry(), WAKER)?.unzip();
    let mut input = input;
    let mut quiet_until = None;
    let mut received = 0u64;
    let mut buf = vec![0; MAX_DATAGRAM + 1];
    let mut line = String::new();
    let mut stdout = io::stdout();
    let mut events = Events::with_capacity(16);
    loop {
        if let Some(rx) = &input {
            loop {
                match rx.try_recv() {
                    Ok(Input::Line(bytes)) => pending.push(bytes),
                    Ok(Input::Eof) | Err(TryRecvError::Disconnected) => {
                        input = None;
                        break;
                    }
                    Ok(Input::Error(e)) => {
                        return Err(Failure::Local(format!("reading stdin: {}", describe(&e))))
                    }
                    Err(TryRecvError::Empty) => break,
                }
            }
        }
        for datagram in pending.drain(..) {
            if datagram.len() > MAX_DATAGRAM {
                return Err(Failure::Local(format!(
                    "a line of {} bytes does not fit in one datagram ({MAX_DATAGRAM} at most)",
                    datagram.len()
                )));
            }
            // A full send buffer drops the datagram, as a full network would.
            if let Err(e) = socket.send(&datagram) {
                if e.kind() != io::ErrorKind::WouldBlock {
                    return Err(Failure::io("sending", &e));
                }
            }
        }
        let now = Instant::now();
        if input.is_none() && quiet_until.is_none() && args.count.is_none() {
            quiet_until = Some(now + args.wait);
        }
        if let Some((at, limit)) = deadline {
            if now >= at {
                return Err(Failure::TimedOut(limit));
            }
        }
        if quiet_until.is_some_and(|at| now >= at) {
            return Ok(());
        }
        let until = [quiet_until, deadline.map(|(at, _)| at)]
            .into_iter()
            .flatten()
            .min();
        let timeout = until.map(|at| at.saturating_duration_since(now));
        match poll.poll(&mut events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Failure::Local(format!("poll: {e}"))),
        }
        loop {
            let n = match socket.recv(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // ICMP port unreachable for an earlier datagram: nobody listens.
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    return Err(Failure::Unreachable {
                        target: args.addr.to_string(),
                        error: e,
                    })
                }
                Err(e) => return Err(Failure::io("receiving", &e)),
            };
            line.clear();
            if args.hex {
                show::hex(&buf[..n], &mut line);
            } else {
                show::escape(&buf[..n], &mut line);
            }
            writeln!(stdout, "{line}")
                .map_err(|e| Failure::Local(format!("writing stdout: {}", describe(&e))))?;
            received += 1;
            if args.count.is_some_and(|count| received >= count) {
                return Ok(());
            }
        }
    }
}

/// A non-blocking UDP socket connected to `addr` (so only its replies are read, and
/// an unreachable port is reported).
fn open(addr: SocketAddr) -> io::Result<StdUdpSocket> {
    let local: SocketAddr = if addr.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = StdUdpSocket::bind(local)?;
    socket.connect(addr)?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}
