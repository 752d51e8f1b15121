//! The admin endpoint's connections, in the same poller as the data path but never
//! seen by the service: accepted from listeners whose role is [`Role::Admin`], read
//! into a small buffer, answered by [`crate::admin::respond`] (all the HTTP is there),
//! written back, closed gracefully. Bounded so they cannot starve the data path: at
//! most [`MAX_ADMIN_CONNECTIONS`] at once (a new one closes the one idle longest), at most
//! [`MAX_REQUEST`] bytes of request, a few requests per connection per loop turn, and
//! [`ADMIN_IDLE`] without a complete request closes one.
//!
//! [`Role::Admin`]: super::Role::Admin

use std::io::{self, Read as _, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::{Duration, Instant};

use log::debug;
use mio::net::TcpStream;
use mio::{Interest, Token};

use super::connection::Phase;
use super::{interrupted, would_block, Core, Entry, Gauges, Stats};
use crate::admin::{self, ConnRow, Introspect, Outcome, MAX_REQUEST};
use crate::service::Report;

/// Admin connections open at once; one more closes the one idle longest. Enough for
/// a scraper, a dashboard and an operator's `curl`s.
pub const MAX_ADMIN_CONNECTIONS: usize = 16;
/// An admin connection with no complete request for this long is closed: a
/// keep-alive scraper comes back well within it, a slowloris does not hold a slot.
pub const ADMIN_IDLE: Duration = Duration::from_secs(10);
/// Requests answered per admin connection per loop turn (pipelined ones wait for the
/// next turn), so a client looping on `/connz` cannot hold up the data path.
const REQUESTS_PER_TURN: usize = 4;
/// Bytes read per `read` call.
const READ_CHUNK: usize = 2048;
/// How long a closing admin connection is read (and discarded) after our side shut
/// down, so the close does not reset away a response the peer has not read.
const LINGER: Duration = Duration::from_secs(2);
/// How often admin connections are looked over for their deadlines.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// One admin connection.
pub(super) struct AdminConn {
    /// The socket, registered under this entry's key.
    stream: TcpStream,
    /// The peer, for logs.
    peer: SocketAddr,
    /// Request bytes received and not yet answered (at most [`MAX_REQUEST`]).
    input: Vec<u8>,
    /// The response being written, and how much of it is written.
    output: Vec<u8>,
    written: usize,
    /// Close once the output is written (a bad request, `Connection: close`, the
    /// peer's end of stream).
    closing: bool,
    /// The peer has finished sending (end of stream read).
    eof: bool,
    /// Our side is shut down; reading only to see the peer's end.
    lingering: bool,
    /// Closed at this instant unless a request completes first.
    deadline: Instant,
    /// Already on the list of admin connections to serve this turn.
    in_ready: bool,
    /// The interest registered with the poller.
    registered: Interest,
}

/// The admin connections' bookkeeping, kept apart from the data path's.
#[derive(Default)]
pub(super) struct AdminPort {
    /// Keys of the open admin connections (at most [`MAX_ADMIN_CONNECTIONS`]).
    conns: Vec<usize>,
    /// Admin connections with an event this turn.
    ready: Vec<usize>,
    /// When deadlines are next checked, while there are admin connections.
    next_sweep: Option<Instant>,
}

impl AdminPort {
    /// When the reactor must wake for the admin connections' deadlines.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.next_sweep.filter(|_| !self.conns.is_empty())
    }

    /// True when an admin connection is to be served again without a new event.
    pub(super) fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    /// Lists admin connection `key` as having an event this turn.
    pub(super) fn mark(&mut self, conn: &mut AdminConn, key: usize) {
        if !std::mem::replace(&mut conn.in_ready, true) {
            self.ready.push(key);
        }
    }
}

impl Core {
    /// Takes an accepted admin connection, closing the one idle longest when
    /// [`MAX_ADMIN_CONNECTIONS`] are open.
    pub(super) fn admit_admin(&mut self, mut stream: TcpStream, peer: SocketAddr) {
        if self.admin.conns.len() >= MAX_ADMIN_CONNECTIONS {
            // Make room by closing the one idle longest: idle connections (a scanner,
            // a flood) cannot lock an operator out until they time out.
            let idlest =
                self.admin
                    .conns
                    .iter()
                    .copied()
                    .min_by_key(|&key| match self.entries.get(key) {
                        Some(Entry::Admin(c)) => Some(c.deadline),
                        _ => None,
                    });
            if let Some(key) = idlest {
                debug!("admin {peer}: {MAX_ADMIN_CONNECTIONS} admin connections open; closing the idlest");
                self.close_admin(key);
            }
        }
        let entry = self.entries.vacant_entry();
        let key = entry.key();
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut stream, Token(key), Interest::READABLE)
        {
            debug!("admin {peer}: cannot register: {e}");
            return;
        }
        let _ = stream.set_nodelay(true);
        entry.insert(Entry::Admin(AdminConn {
            stream,
            peer,
            input: Vec::new(),
            output: Vec::new(),
            written: 0,
            closing: false,
            eof: false,
            lingering: false,
            deadline: self.now + ADMIN_IDLE,
            in_ready: false,
            registered: Interest::READABLE,
        }));
        self.admin.conns.push(key);
        self.admin.next_sweep.get_or_insert(self.now + SWEEP_EVERY);
        debug!("admin {peer}: connected (token {key})");
        // Edge-triggered: a request that came with the connection may be readable
        // already.
        if let Some(Entry::Admin(conn)) = self.entries.get_mut(key) {
            self.admin.mark(conn, key);
        }
    }

    /// Serves every admin connection that had an event this turn; `report` gives what
    /// the service says of itself, asked only by a request that shows it.
    pub(super) fn serve_admin(&mut self, report: &dyn Fn() -> Report) {
        for key in std::mem::take(&mut self.admin.ready) {
            if let Some(Entry::Admin(conn)) = self.entries.get_mut(key) {
                conn.in_ready = false;
                self.serve_admin_conn(key, report);
            }
        }
        if self.admin.next_sweep.is_some_and(|at| self.now >= at) {
            self.sweep_admin();
        }
    }

    /// Writes, reads and answers one admin connection as far as it goes this turn.
    fn serve_admin_conn(&mut self, key: usize, report: &dyn Fn() -> Report) {
        let now = self.now;
        let Some(Entry::Admin(conn)) = self.entries.get_mut(key) else {
            return;
        };
        let read = write_some(conn).and_then(|()| read_some(conn));
        let read = match read {
            Ok(read) => read,
            Err(e) => {
                debug!("admin {}: {e}", conn.peer);
                self.close_admin(key);
                return;
            }
        };
        conn.eof |= read == Read::End;
        if conn.lingering {
            if conn.eof {
                self.close_admin(key);
            }
            return;
        }
        let mut again = read == Read::Full;
        for answered in 0..=REQUESTS_PER_TURN {
            let Some(Entry::Admin(conn)) = self.entries.get_mut(key) else {
                return;
            };
            if conn.closing || conn.written < conn.output.len() || conn.input.is_empty() {
                break;
            }
            if answered == REQUESTS_PER_TURN {
                again = true;
                break;
            }
            let input = std::mem::take(&mut conn.input);
            let outcome = admin::respond(&input, &View { core: self, report });
            let Some(Entry::Admin(conn)) = self.entries.get_mut(key) else {
                return;
            };
            conn.input = input;
            let Outcome::Respond {
                bytes,
                consumed,
                close,
            } = outcome
            else {
                break;
            };
            conn.input.drain(..consumed.min(conn.input.len()));
            conn.output = bytes;
            conn.written = 0;
            conn.closing |= close;
            conn.deadline = now + ADMIN_IDLE;
            if let Err(e) = write_some(conn) {
                debug!("admin {}: {e}", conn.peer);
                self.close_admin(key);
                return;
            }
        }
        if let Some(Entry::Admin(conn)) = self.entries.get_mut(key) {
            // The peer has finished: what it asked in full is answered; a partial
            // request never will be.
            conn.closing |= conn.eof && !again;
        }
        self.settle_admin(key, again);
    }

    /// After a turn's reads and writes: closes a closing connection once its response
    /// is out (gracefully, lingering for the peer's end unless it came already), asks
    /// for `WRITABLE` only while output is pending, and comes back next turn when
    /// requests or unread bytes were left (`again`).
    fn settle_admin(&mut self, key: usize, again: bool) {
        let now = self.now;
        let Some(Entry::Admin(conn)) = self.entries.get_mut(key) else {
            return;
        };
        let flushed = conn.written >= conn.output.len();
        if flushed && !conn.output.is_empty() {
            conn.output = Vec::new();
            conn.written = 0;
        }
        if flushed && conn.closing {
            if conn.eof || conn.stream.shutdown(Shutdown::Write).is_err() {
                self.close_admin(key);
                return;
            }
            conn.lingering = true;
            conn.input = Vec::new();
            conn.deadline = now + LINGER;
        }
        let interest = if flushed {
            Interest::READABLE
        } else {
            Interest::READABLE | Interest::WRITABLE
        };
        if interest != conn.registered {
            if self
                .poll
                .registry()
                .reregister(&mut conn.stream, Token(key), interest)
                .is_err()
            {
                self.close_admin(key);
                return;
            }
            conn.registered = interest;
        }
        if again && flushed && !conn.lingering {
            self.admin.mark(conn, key);
        }
    }

    /// Closes admin connections past their deadline.
    fn sweep_admin(&mut self) {
        self.admin.next_sweep = Some(self.now + SWEEP_EVERY);
        let now = self.now;
        let expired: Vec<usize> = self
            .admin
            .conns
            .iter()
            .copied()
            .filter(
                |&key| matches!(self.entries.get(key), Some(Entry::Admin(c)) if now >= c.deadline),
            )
            .collect();
        for key in expired {
            self.close_admin(key);
        }
    }

    /// Deregisters and drops admin connection `key`. At once: no service holds its id,
    /// and this turn's events are already taken.
    fn close_admin(&mut self, key: usize) {
        if !matches!(self.entries.get(key), Some(Entry::Admin(_))) {
            self.admin.conns.retain(|&k| k != key);
            return;
        }
        if let Some(Entry::Admin(mut conn)) = self.entries.try_remove(key) {
            if let Err(e) = self.poll.registry().deregister(&mut conn.stream) {
                debug!("admin {}: deregister: {e}", conn.peer);
            }
            debug!("admin {}: closed", conn.peer);
        }
        self.admin.conns.retain(|&k| k != key);
    }

    /// The counters and the gauges as they are now.
    pub(super) fn gauges(&self) -> Gauges {
        let queued = self
            .entries
            .iter()
            .filter_map(|(_, e)| match e {
                Entry::Stream(c) => Some(c.output.len() as u64),
                _ => None,
            })
            .sum();
        Gauges {
            open: self.open as u64,
            queued,
            uptime: self.now.saturating_duration_since(self.started),
        }
    }
}

/// What an admin request sees: the reactor, and the service through its report.
struct View<'a> {
    core: &'a Core,
    report: &'a dyn Fn() -> Report,
}

impl Introspect for View<'_> {
    fn metrics(&self) -> (Stats, Gauges) {
        let (stats, gauges) = (self.core.stats, self.core.gauges());
        match &self.core.seat {
            Some(seat) => seat.total(&stats, &gauges),
            None => (stats, gauges),
        }
    }

    fn connections(&self, offset: usize, limit: usize, rows: &mut Vec<ConnRow>) -> usize {
        let core = self.core;
        let conns = core.entries.iter().filter_map(|(_, e)| match e {
            Entry::Stream(c) => Some(c),
            _ => None,
        });
        rows.extend(conns.skip(offset).take(limit).map(|c| ConnRow {
            id: c.serial,
            peer: c.peer.clone(),
            age: core.now.saturating_duration_since(c.traffic.opened),
            frames_in: c.traffic.frames_in,
            frames_out: c.traffic.frames_out,
            bytes_in: c.traffic.bytes_in,
            bytes_out: c.traffic.bytes_out,
            queued: c.output.len() as u64,
            state: match c.phase {
                Phase::Open if c.paused => "paused",
                Phase::Open if c.held => "held",
                Phase::Open => "open",
                Phase::Draining => "draining",
                Phase::Lingering => "lingering",
                Phase::Closed => "closed",
            },
        }));
        core.open
    }

    fn is_draining(&self) -> bool {
        self.core.draining_until.is_some()
    }

    fn report(&self) -> Report {
        let mut report = (self.report)();
        if let Some(seat) = &self.core.seat {
            seat.report(&self.core.stats, &self.core.gauges(), &mut report);
        }
        report
    }
}

/// How a read pass ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Read {
    /// `WouldBlock`: the socket is drained.
    Drained,
    /// The request bound is reached with bytes perhaps still unread.
    Full,
    /// End of stream.
    End,
}

/// Reads what the socket holds, up to the request bound (a lingering connection's
/// bytes are discarded).
fn read_some(conn: &mut AdminConn) -> io::Result<Read> {
    let mut chunk = [0u8; READ_CHUNK];
    loop {
        let room = if conn.lingering {
            READ_CHUNK
        } else {
            MAX_REQUEST.saturating_sub(conn.input.len()).min(READ_CHUNK)
        };
        if room == 0 {
            return Ok(Read::Full);
        }
        match conn.stream.read(&mut chunk[..room]) {
            Ok(0) => return Ok(Read::End),
            Ok(_) if conn.lingering => {}
            Ok(n) => conn.input.extend_from_slice(&chunk[..n]),
            Err(e) if would_block(&e) => return Ok(Read::Drained),
            Err(e) if interrupted(&e) => {}
            Err(e) => return Err(e),
        }
    }
}

/// Writes the pending response until done or `WouldBlock`.
fn write_some(conn: &mut AdminConn) -> io::Result<()> {
    while let Some(rest) = conn.output.get(conn.written..).filter(|r| !r.is_empty()) {
        match conn.stream.write(rest) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => conn.written += n,
            Err(e) if would_block(&e) => return Ok(()),
            Err(e) if interrupted(&e) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
