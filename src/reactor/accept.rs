//! Admission: listening sockets with the configured backlog, accepting in bounded
//! batches, refusing what the access rules or the connection limit exclude, socket
//! options, and surviving file-descriptor exhaustion without spinning.

use std::fs::File;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use log::{debug, info, warn};
use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Token};

use super::transport::{Peer, Stream};
use socket2::{Domain, Protocol, SockRef, Socket, TcpKeepalive, Type};

use super::connection::Connection;
use super::oplog::Notice;
use super::{interrupted, would_block, ConnId, Core, Entry, Role};
use crate::codec::Codec;
use crate::config::Config;

/// Connections accepted per listener per loop turn, so a connect storm cannot starve
/// established connections.
const ACCEPT_BATCH: usize = 64;
/// First pause after an accept error such as EMFILE; it doubles while errors persist.
pub(super) const MIN_BACKOFF: Duration = Duration::from_millis(10);
/// Longest pause between accept attempts while errors persist.
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// `EMFILE` and `ENFILE`: this process, or the system, is out of file descriptors.
/// (The same numbers on Linux, the BSDs and macOS.)
const EMFILE: i32 = 24;
const ENFILE: i32 = 23;

/// A listening socket on `addr` with `backlog`, non-blocking, `SO_REUSEADDR` set, and
/// `SO_REUSEPORT` with `reuse_port` (`--workers`: each worker binds the same address
/// and the kernel spreads connections over them).
pub(super) fn bind_listener(
    addr: SocketAddr,
    backlog: u32,
    reuse_port: bool,
) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    socket.set_nonblocking(true)?;
    Ok(TcpListener::from_std(socket.into()))
}

/// The reserve descriptor for EMFILE handling, if one can be opened.
pub(super) fn reserve_fd() -> Option<File> {
    File::open("/dev/null").ok()
}

/// Applies the configured options to an accepted socket.
///
/// # Errors
/// If the OS refuses an option.
pub(super) fn configure(stream: &TcpStream, config: &Config) -> io::Result<()> {
    stream.set_nodelay(config.nodelay)?;
    if let Some(idle) = config.keepalive {
        SockRef::from(stream).set_tcp_keepalive(&TcpKeepalive::new().with_time(idle))?;
    }
    Ok(())
}

impl Core {
    /// Accepts from every ready listener, up to a batch each, unless paused.
    pub(super) fn accept_ready(&mut self) {
        match self.accept_paused_until {
            Some(until) if self.now < until => return,
            Some(_) => self.accept_paused_until = None,
            None => {}
        }
        for i in 0..self.listeners.len() {
            let key = self.listeners[i];
            if matches!(self.entries.get(key), Some(Entry::Listener(l)) if l.ready) {
                self.accept(key);
            }
        }
    }

    /// The listener at `key`.
    fn listener(&mut self, key: usize) -> Option<&mut super::Listener> {
        match self.entries.get_mut(key) {
            Some(Entry::Listener(l)) => Some(l),
            _ => None,
        }
    }

    /// Accepts up to [`ACCEPT_BATCH`] connections from the listener at `key`; it stays
    /// ready if the batch ran out first.
    fn accept(&mut self, key: usize) {
        for _ in 0..ACCEPT_BATCH {
            let Some(listener) = self.listener(key) else {
                return;
            };
            let role = listener.role;
            match listener.socket.accept() {
                Ok((stream, peer)) => {
                    self.accept_backoff = MIN_BACKOFF;
                    match (role, stream, peer) {
                        (Role::Data, stream, peer) => self.admit(stream, peer),
                        (Role::Admin, Stream::Tcp(stream), Peer::Ip(peer)) => {
                            self.admit_admin(stream, peer)
                        }
                        (Role::Admin, ..) => {} // admin listeners are TCP
                    }
                }
                Err(e) if would_block(&e) => {
                    listener.ready = false;
                    return;
                }
                Err(e) if interrupted(&e) || e.kind() == io::ErrorKind::ConnectionAborted => {}
                Err(e) => {
                    self.on_accept_error(key, &e);
                    return;
                }
            }
        }
    }

    /// Handles an accept failure without spinning: out of descriptors, sheds one pending
    /// connection through the reserve descriptor (so its client learns at once rather
    /// than waiting in the backlog); then pauses accepting, longer each time. Out of
    /// descriptors with no connection pending is no failure: the table is just full.
    fn on_accept_error(&mut self, key: usize, e: &io::Error) {
        let Some(addr) = self.listener(key).map(|l| l.listen.clone()) else {
            return;
        };
        let mut shed = "";
        if matches!(e.raw_os_error(), Some(EMFILE | ENFILE)) {
            drop(self.spare_fd.take());
            let pending = match self.listener(key) {
                Some(listener) => listener.socket.accept().map(drop),
                None => return,
            };
            self.spare_fd = reserve_fd();
            match pending {
                Ok(()) => {
                    self.stats.shed += 1;
                    shed = "closed one pending connection; ";
                }
                // Linux looks for a free descriptor before a pending connection, so a
                // full table fails even an accept that would find none: nobody was
                // turned away. The next connection to arrive wakes the listener.
                Err(pending) if would_block(&pending) => {
                    if let Some(listener) = self.listener(key) {
                        listener.ready = false;
                    }
                    debug!("accept on {addr}: {e}, with no connection pending");
                    return;
                }
                Err(_) => {}
            }
        }
        warn!(
            "accept on {addr}: {e}; {shed}pausing accepts for {:?}",
            self.accept_backoff
        );
        self.accept_paused_until = Some(self.now + self.accept_backoff);
        self.accept_backoff = (self.accept_backoff * 2).min(MAX_BACKOFF);
    }

    /// Registers an accepted connection, or closes it at once if the access rules
    /// refuse the peer or the server is full. (Unix peers have no address: the access
    /// rules do not apply to them.)
    fn admit(&mut self, mut stream: Stream, peer: Peer) {
        if peer.ip().is_some_and(|ip| !self.config.access.permits(ip)) {
            self.stats.denied += 1;
            if self.notices.admit(Notice::Denied, self.now) {
                info!("{peer}: refused by the access rules (--allow/--deny)");
            } else {
                debug!("{peer}: refused by the access rules (--allow/--deny)");
            }
            return; // dropping the stream closes it
        }
        if self.open >= self.config.max_connections {
            if self.config.goodbye {
                // Best effort, on a fresh socket whose buffer is empty: one write.
                let codec = Codec::with_oversize(
                    self.config.framing,
                    self.config.max_frame,
                    self.config.oversize,
                );
                if let Some(frame) = super::serve::goodbye_frame(&codec, "connection limit") {
                    let _ = std::io::Write::write(&mut stream, &frame);
                }
            }
            self.refuse_over_limit();
            return;
        }
        if let Some(tcp) = stream.tcp() {
            if let Err(e) = configure(tcp, &self.config) {
                debug!("{peer}: cannot set socket options: {e}");
            }
        }
        let entry = self.entries.vacant_entry();
        let key = entry.key();
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut stream, Token(key), Interest::READABLE)
        {
            warn!("{peer}: cannot register connection: {e}");
            return;
        }
        let codec = Codec::with_oversize(
            self.config.framing,
            self.config.max_frame,
            self.config.oversize,
        );
        self.next_serial += 1;
        entry.insert(Entry::Stream(Connection::new(
            stream,
            peer.clone(),
            self.next_serial,
            codec,
            self.now,
        )));
        if let Some(Entry::Stream(conn)) = self.entries.get_mut(key) {
            if conn.stream.is_handshaking() {
                conn.clock.handshake_until = Some(self.now + self.config.tls_handshake_timeout);
            }
        }
        self.open += 1;
        self.stats.accepted += 1;
        debug!("{peer}: connected (token {key}, {} open)", self.open);
        self.opened.push((ConnId::new(key, self.next_serial), peer));
        self.rearm(key);
    }

    /// Counts a connection refused at `max_connections`; logs at most once a second
    /// (the rest are counted in the next line, `Core::log_notices`).
    fn refuse_over_limit(&mut self) {
        self.stats.refused += 1;
        if self.notices.admit(Notice::OverLimit, self.now) {
            warn!(
                "refused 1 connection(s): at the limit of {} connections",
                self.config.max_connections
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpStream as StdStream;

    #[test]
    fn configure_sets_nodelay_and_keepalive_on_a_real_socket() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let _client = StdStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        let stream = TcpStream::from_std(accepted);
        let config = Config {
            keepalive: Some(Duration::from_secs(42)),
            ..Config::default()
        };
        configure(&stream, &config).unwrap();
        let sock = SockRef::from(&stream);
        assert!(sock.tcp_nodelay().unwrap());
        assert!(sock.keepalive().unwrap());
        assert_eq!(sock.tcp_keepalive_time().unwrap(), Duration::from_secs(42));

        let config = Config {
            nodelay: false,
            ..Config::default()
        };
        configure(&stream, &config).unwrap();
        assert!(!SockRef::from(&stream).tcp_nodelay().unwrap());
    }

    #[test]
    fn bind_listener_uses_the_backlog_and_a_real_port() {
        let listener = bind_listener("127.0.0.1:0".parse().unwrap(), 7, false).unwrap();
        assert_ne!(listener.local_addr().unwrap().port(), 0);
    }
}
