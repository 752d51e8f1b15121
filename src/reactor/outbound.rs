//! Connections the reactor opens itself ([`Ctx::connect`]): a non-blocking TCP
//! connect, registered for both directions until it is established, then served as
//! any accepted connection is (output caps, timers, two-phase close), with `raw`
//! framing so the service sees the bytes as they come and speaks its own protocol
//! over them (the NATS bridge, through [`crate::proto::nats`]). A connect that fails
//! ends as a close the service hears of in `on_close`.
//!
//! [`Ctx::connect`]: super::Ctx::connect

use std::io;
use std::net::SocketAddr;

use log::debug;
use mio::net::TcpStream;
use mio::{Interest, Token};

use super::connection::Connection;
use super::transport::{Peer, Stream};
use super::{ConnId, Core, Entry};
use crate::codec::{Codec, Framing};

impl Core {
    /// Starts a connection to `addr`.
    ///
    /// # Errors
    /// The socket cannot be made or registered, or the reactor is shutting down.
    pub(super) fn connect(&mut self, addr: SocketAddr) -> io::Result<ConnId> {
        if self.draining_until.is_some() {
            return Err(io::Error::other("shutting down: no new connections"));
        }
        let mut stream = TcpStream::connect(addr)?;
        if let Err(e) = stream.set_nodelay(true) {
            debug!("{addr}: cannot set TCP_NODELAY: {e}");
        }
        let entry = self.entries.vacant_entry();
        let key = entry.key();
        let interest = Interest::READABLE | Interest::WRITABLE;
        self.poll
            .registry()
            .register(&mut stream, Token(key), interest)?;
        let stream = Stream::Tcp(stream);
        self.next_serial += 1;
        let codec = Codec::new(Framing::Raw, self.config.max_frame);
        let mut conn = Connection::new(stream, Peer::Ip(addr), self.next_serial, codec, self.now);
        conn.registered = interest;
        conn.outbound = true;
        entry.insert(Entry::Stream(conn));
        self.open += 1;
        debug!("{addr}: connecting (token {key})");
        self.rearm(key);
        Ok(ConnId::new(key, self.next_serial))
    }
}
