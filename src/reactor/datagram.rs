//! UDP echo (RFC 862): every datagram goes back to its sender as one datagram, whatever
//! its content. A datagram already has its boundaries, so no framing applies, and no
//! service is asked: the reactor answers it here, in the same `Poll` as the streams.
//!
//! A socket is read until `WouldBlock`, at most [`DATAGRAM_BUDGET`] datagrams a turn
//! (then it stays ready and is read again before the next blocking poll, so a flood
//! cannot starve the streams). A reply the socket will not take now waits in a bounded
//! queue (`Config::udp_queue` datagrams); past it replies are dropped and counted, and
//! the loop never blocks. `WRITABLE` is asked for only while the queue holds replies.
//! No reply goes to source port 0, 7 (echo) or 19 (chargen), so two echo services
//! cannot bounce a datagram between them for ever; the access rules apply to each
//! datagram. `recvmmsg`/`sendmmsg` would batch the syscalls, but rustix offers no safe
//! `recvmmsg` and the crate forbids `unsafe`, so each datagram costs one `recvfrom` and
//! one `sendto`, as in the floor it is measured against.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;

use bytes::Bytes;
use log::{debug, trace, warn};
use mio::net::UdpSocket;
use mio::{Interest, Token};
use socket2::{Domain, Protocol, Socket, Type};

use super::{interrupted, would_block, Core, Entry};
use crate::access::AccessList;
use crate::listen::Listen;
use crate::reactor::Stats;

/// The largest UDP payload over IPv4 (65,535 - 8 - 20); IPv6 allows 20 more, which the
/// receive buffer also holds.
pub const MAX_DATAGRAM: usize = 65_507;
/// The receive buffer: any datagram the kernel can deliver (IPv6's 65,527 included)
/// fits, so none is cut short.
const RECV_BUFFER: usize = 64 << 10;
/// Datagrams read from one socket per loop turn before the streams get their turn.
pub(super) const DATAGRAM_BUDGET: usize = 256;

/// Source ports that get no reply: 0 (no valid sender), 7 (another echo service) and
/// 19 (chargen), which would answer a reply with another datagram for ever.
pub fn is_refused_port(port: u16) -> bool {
    matches!(port, 0 | 7 | 19)
}

/// A UDP socket serving echo.
pub(super) struct DatagramSocket {
    /// The socket, non-blocking, registered under its slab key.
    socket: UdpSocket,
    /// What it listens on, with the real port.
    pub(super) listen: Listen,
    /// Replies that met a full socket, oldest first, each with its destination.
    queue: VecDeque<(SocketAddr, Bytes)>,
    /// The most replies `queue` may hold (`Config::udp_queue`).
    capacity: usize,
    /// One datagram's room, reused for every read.
    buf: Box<[u8]>,
    /// The socket may hold datagrams not yet read: set by a readable event, cleared
    /// by `WouldBlock`; still set after a turn's budget ran out.
    pub(super) ready: bool,
    /// The interest registered with the poller.
    registered: Interest,
}

/// Binds a non-blocking UDP socket on `addr`, with its real address; `SO_REUSEPORT`
/// with `reuse_port` (`--workers`: the kernel spreads senders over the workers).
///
/// # Errors
/// As `bind(2)`.
pub(super) fn bind(
    addr: SocketAddr,
    capacity: usize,
    reuse_port: bool,
) -> io::Result<DatagramSocket> {
    let socket = if reuse_port {
        let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        socket.set_reuse_port(true)?;
        socket.bind(&addr.into())?;
        socket.set_nonblocking(true)?;
        UdpSocket::from_std(socket.into())
    } else {
        UdpSocket::bind(addr)?
    };
    let addr = socket.local_addr()?;
    Ok(DatagramSocket {
        socket,
        listen: Listen::Udp(addr),
        queue: VecDeque::new(),
        capacity,
        buf: vec![0; RECV_BUFFER].into_boxed_slice(),
        ready: false,
        registered: Interest::READABLE,
    })
}

impl DatagramSocket {
    /// The socket, to register it.
    pub(super) fn socket_mut(&mut self) -> &mut UdpSocket {
        &mut self.socket
    }

    /// Replies waiting for room in the socket.
    pub(super) fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Reads and answers up to [`DATAGRAM_BUDGET`] datagrams after sending what waits
    /// in the queue: the number read.
    fn serve(&mut self, access: &AccessList, stats: &mut Stats) -> usize {
        self.send_queued(stats);
        let mut read = 0;
        while read < DATAGRAM_BUDGET {
            let (len, from) = match self.socket.recv_from(&mut self.buf) {
                Ok(got) => got,
                Err(e) if would_block(&e) => {
                    self.ready = false;
                    break;
                }
                Err(e) if interrupted(&e) => continue,
                Err(e) => {
                    // Not the socket's end: an error queued by an earlier send. The
                    // next readable event brings the next datagram.
                    debug!("{}: receive: {e}", self.listen);
                    stats.datagram_errors += 1;
                    self.ready = false;
                    break;
                }
            };
            read += 1;
            stats.datagrams_in += 1;
            stats.bytes_in += len as u64;
            if !access.permits(from.ip()) {
                stats.datagrams_denied += 1;
                debug!("{from}: datagram refused by the access rules (--allow/--deny)");
                continue;
            }
            if is_refused_port(from.port()) {
                stats.datagrams_refused_port += 1;
                debug!("{from}: no reply to source port {}", from.port());
                continue;
            }
            // The socket's buffer holds it, and the slice ends where the datagram does.
            let datagram = self.buf.get(..len).unwrap_or_default();
            if self.queue.is_empty() {
                match send(&self.socket, datagram, from) {
                    Ok(()) => {
                        stats.datagrams_out += 1;
                        stats.bytes_out += len as u64;
                        continue;
                    }
                    Err(e) if would_block(&e) => {}
                    Err(e) => {
                        debug!("{from}: reply: {e}");
                        stats.datagram_errors += 1;
                        continue;
                    }
                }
            }
            queue_reply(&mut self.queue, self.capacity, from, datagram, stats);
        }
        if read > 0 {
            trace!(
                "{}: {read} datagram(s) read, {} repl(ies) queued",
                self.listen,
                self.queue.len()
            );
        }
        read
    }

    /// Sends queued replies, oldest first, until the queue is empty or the socket
    /// would block.
    fn send_queued(&mut self, stats: &mut Stats) {
        while let Some((to, datagram)) = self.queue.front() {
            match send(&self.socket, datagram, *to) {
                Ok(()) => {
                    stats.datagrams_out += 1;
                    stats.bytes_out += datagram.len() as u64;
                }
                Err(e) if would_block(&e) => return,
                Err(e) => {
                    debug!("{to}: queued reply: {e}");
                    stats.datagram_errors += 1;
                }
            }
            self.queue.pop_front();
        }
    }

    /// The interest the socket needs: `WRITABLE` only while replies wait.
    fn interest(&self) -> Interest {
        if self.queue.is_empty() {
            Interest::READABLE
        } else {
            Interest::READABLE | Interest::WRITABLE
        }
    }
}

/// Queues a reply that met a full socket, or drops and counts it when `capacity`
/// replies already wait.
fn queue_reply(
    queue: &mut VecDeque<(SocketAddr, Bytes)>,
    capacity: usize,
    to: SocketAddr,
    datagram: &[u8],
    stats: &mut Stats,
) {
    if queue.len() < capacity {
        queue.push_back((to, Bytes::copy_from_slice(datagram)));
    } else {
        stats.datagrams_dropped += 1;
    }
}

/// Sends one datagram, retrying while interrupted.
fn send(socket: &UdpSocket, datagram: &[u8], to: SocketAddr) -> io::Result<()> {
    loop {
        match socket.send_to(datagram, to) {
            Ok(_) => return Ok(()),
            Err(e) if interrupted(&e) => {}
            Err(e) => return Err(e),
        }
    }
}

impl Core {
    /// Serves every UDP socket that is ready to read or has replies waiting, then
    /// registers the interest each needs now.
    pub(super) fn serve_datagrams(&mut self) {
        for i in 0..self.listeners.len() {
            let key = self.listeners[i];
            let Some(Entry::Datagram(socket)) = self.entries.get_mut(key) else {
                continue;
            };
            if !socket.ready && socket.queue.is_empty() {
                continue;
            }
            if socket.ready {
                socket.serve(&self.config.access, &mut self.stats);
            } else {
                socket.send_queued(&mut self.stats);
            }
            let interest = socket.interest();
            if interest != socket.registered {
                match self
                    .poll
                    .registry()
                    .reregister(&mut socket.socket, Token(key), interest)
                {
                    Ok(()) => socket.registered = interest,
                    Err(e) => warn!("{}: cannot reregister: {e}", socket.listen),
                }
            }
        }
    }

    /// True while a UDP socket holds datagrams left unread by its budget.
    pub(super) fn any_datagram_ready(&self) -> bool {
        self.listeners
            .iter()
            .any(|&key| matches!(self.entries.get(key), Some(Entry::Datagram(d)) if d.ready))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_and_chargen_ports_and_port_zero_get_no_reply() {
        for port in [0, 7, 19] {
            assert!(is_refused_port(port), "{port}");
        }
        for port in [1, 6, 8, 18, 20, 53, 7070, 65535] {
            assert!(!is_refused_port(port), "{port}");
        }
    }

    fn socket(capacity: usize) -> DatagramSocket {
        bind("127.0.0.1:0".parse().unwrap(), capacity, false).unwrap()
    }

    #[test]
    fn each_datagram_goes_back_whole_to_its_sender() {
        let mut server = socket(4);
        let addr = server.listen.socket_addr().unwrap();
        let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        for len in [1, 100, MAX_DATAGRAM] {
            let datagram: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            client.send_to(&datagram, addr).unwrap();
        }
        let mut stats = Stats::default();
        // Blocking reads on the client make the loop wait for each datagram to land.
        let mut buf = vec![0; RECV_BUFFER];
        let mut got = Vec::new();
        while got.len() < 3 {
            server.ready = true;
            server.serve(&AccessList::default(), &mut stats);
            while got.len() < stats.datagrams_out as usize {
                let (n, from) = client.recv_from(&mut buf).unwrap();
                assert_eq!(from, addr);
                got.push(buf[..n].to_vec());
            }
        }
        assert_eq!(
            got.iter().map(Vec::len).collect::<Vec<_>>(),
            [1, 100, MAX_DATAGRAM]
        );
        assert!(got[2]
            .iter()
            .enumerate()
            .all(|(i, &b)| b == (i % 251) as u8));
        assert_eq!((stats.datagrams_in, stats.datagrams_dropped), (3, 0));
    }

    #[test]
    fn replies_past_the_queue_are_dropped_and_counted() {
        let mut server = socket(2);
        let mut stats = Stats::default();
        let to: SocketAddr = "127.0.0.1:9".parse().unwrap();
        // Three replies meet a full socket: two wait, the third is dropped.
        for datagram in [&b"a"[..], b"b", b"c"] {
            queue_reply(&mut server.queue, server.capacity, to, datagram, &mut stats);
        }
        assert_eq!((server.queued(), stats.datagrams_dropped), (2, 1));
        assert_eq!(server.interest(), Interest::READABLE | Interest::WRITABLE);
        server.send_queued(&mut stats);
        assert_eq!(server.queued(), 0, "loopback takes them");
        assert_eq!(stats.datagrams_out, 2);
        assert_eq!(server.interest(), Interest::READABLE);
    }
}
