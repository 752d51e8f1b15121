//! A [`Ctx`] without a reactor, for unit tests of a service's decisions: the test
//! opens connections by name, hands frames in as payloads, sets the clock, plays the
//! peers (a reader that stops, one that catches up), and reads back what the service
//! did: what it sent where, whom it paused, closed, and which timers it set. No socket,
//! no thread, no sleep.
//!
//! ```
//! use framecast::service::{Echo, Service};
//! use framecast::reactor::FakeCtx;
//! use framecast::Config;
//!
//! let mut fake = FakeCtx::new(Config::default());
//! let mut echo = Echo;
//! let conn = fake.open();
//! let frames = fake.frames(conn, &[b"hi", b"there"]);
//! echo.on_frames(&mut fake.ctx(), conn, frames);
//! assert_eq!(fake.sent_payloads(conn), [b"hi".to_vec(), b"there".to_vec()]);
//! ```

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use slab::Slab;

use super::ctx::{Body, ConnId, Ctx, Frames};
use super::output::CHUNK_COST;
use super::{Peer, Stats};
use crate::codec::{Codec, Decoded, Decoder, Encoder};
use crate::config::Config;

/// What became of a fake connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FakeState {
    /// Open: read and written.
    Open,
    /// Closed gracefully by the service ([`Ctx::close`], [`Ctx::close_after`]):
    /// what was queued is still to be written.
    Closing,
    /// Closed at once, or for a policy reason: why, as the service said it.
    Closed(String),
}

/// One fake connection: what the service sent it and what it did to it.
#[derive(Debug)]
struct FakeConn {
    id: ConnId,
    codec: Codec,
    /// The run handed to the service and not yet taken.
    input: Option<Bytes>,
    /// Everything sent, in order (bodies pulled whole).
    sent: Vec<Bytes>,
    /// Bytes sent and not yet "read by the peer" ([`FakeCtx::read_all`]).
    unread: usize,
    /// Chunks among them, for the backlog's per-chunk cost.
    unread_chunks: usize,
    frames_out: u64,
    paused: bool,
    state: FakeState,
}

/// The fake reactor a [`Ctx`] is made from by [`FakeCtx::ctx`].
#[derive(Debug)]
pub struct FakeCtx {
    /// The time callbacks see as [`Ctx::now`]; the test moves it.
    pub now: Instant,
    config: Config,
    stats: Stats,
    conns: Slab<FakeConn>,
    serial: u64,
    /// Timers the service set, `(when, tag)`, in the order it set them.
    pub timers: Vec<(Instant, u64)>,
}

impl FakeCtx {
    /// A fake reactor with `config`'s framing and limits, no connections, the clock
    /// at the time of the call.
    pub fn new(config: Config) -> FakeCtx {
        FakeCtx {
            now: Instant::now(),
            config,
            stats: Stats::default(),
            conns: Slab::new(),
            serial: 0,
            timers: Vec::new(),
        }
    }

    /// The `Ctx` a callback is given.
    pub fn ctx(&mut self) -> Ctx<'_> {
        Ctx::fake(self)
    }

    /// Opens a connection (its peer is `127.0.0.1:PORT`, the port its serial).
    pub fn open(&mut self) -> ConnId {
        self.serial += 1;
        let entry = self.conns.vacant_entry();
        let id = ConnId::new(entry.key(), self.serial);
        entry.insert(FakeConn {
            id,
            codec: Codec::new(self.config.framing, self.config.max_frame),
            input: None,
            sent: Vec::new(),
            unread: 0,
            unread_chunks: 0,
            frames_out: 0,
            paused: false,
            state: FakeState::Open,
        });
        id
    }

    /// Forgets `conn`, as the reactor does before [`Service::on_close`] (which the
    /// test then calls); its key may be reused by the next [`FakeCtx::open`].
    ///
    /// [`Service::on_close`]: crate::service::Service::on_close
    pub fn remove(&mut self, conn: ConnId) {
        if self.conn(conn).is_some() {
            self.conns.remove(conn.key());
        }
    }

    /// `payloads` framed in `conn`'s framing as one run, to hand to
    /// [`Service::on_frames`].
    ///
    /// # Panics
    /// If a payload cannot be framed (a test's mistake), or `conn` is gone.
    ///
    /// [`Service::on_frames`]: crate::service::Service::on_frames
    pub fn frames(&mut self, conn: ConnId, payloads: &[&[u8]]) -> Frames {
        let Some(c) = self.conn_mut(conn) else {
            panic!("{conn} is not a fake connection");
        };
        let mut wire = BytesMut::new();
        for p in payloads {
            if let Err(e) = c.codec.encode(p, &mut wire) {
                panic!("cannot frame a test payload: {e}");
            }
        }
        let len = wire.len();
        c.input = Some(wire.freeze());
        Frames {
            key: conn.key(),
            len,
            count: payloads.len(),
        }
    }

    /// Everything sent to `conn`, in wire bytes, in order.
    pub fn sent(&self, conn: ConnId) -> Vec<Bytes> {
        self.conn(conn).map(|c| c.sent.clone()).unwrap_or_default()
    }

    /// The payloads of everything sent to `conn`, decoded in its framing.
    pub fn sent_payloads(&self, conn: ConnId) -> Vec<Vec<u8>> {
        let Some(c) = self.conn(conn) else {
            return Vec::new();
        };
        let wire: Vec<u8> = c.sent.iter().flat_map(|b| b.iter().copied()).collect();
        let mut codec = c.codec.clone();
        let mut rest = &wire[..];
        let mut out = Vec::new();
        while let Ok(Decoded::Frame(len)) = codec.decode(rest) {
            out.push(rest[codec.payload_range(&rest[..len])].to_vec());
            rest = &rest[len..];
        }
        out
    }

    /// Frames counted out to `conn` (as `Stats::frames_out` counts them).
    pub fn frames_out(&self, conn: ConnId) -> u64 {
        self.conn(conn).map_or(0, |c| c.frames_out)
    }

    /// The peer of `conn` reads everything sent so far: its backlog falls to 0 (the
    /// test then calls [`Service::on_drain`] if it was above half the cap).
    ///
    /// [`Service::on_drain`]: crate::service::Service::on_drain
    pub fn read_all(&mut self, conn: ConnId) {
        if let Some(c) = self.conn_mut(conn) {
            c.unread = 0;
            c.unread_chunks = 0;
        }
    }

    /// Whether the service paused reading `conn`.
    pub fn is_paused(&self, conn: ConnId) -> bool {
        self.conn(conn).is_some_and(|c| c.paused)
    }

    /// What became of `conn` (`None` once removed).
    pub fn state(&self, conn: ConnId) -> Option<FakeState> {
        self.conn(conn).map(|c| c.state.clone())
    }

    /// The counters the service changed.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    fn conn(&self, id: ConnId) -> Option<&FakeConn> {
        self.conns.get(id.key()).filter(|c| c.id == id)
    }

    fn conn_mut(&mut self, id: ConnId) -> Option<&mut FakeConn> {
        self.conns.get_mut(id.key()).filter(|c| c.id == id)
    }

    fn open_conn(&mut self, id: ConnId) -> Option<&mut FakeConn> {
        self.conn_mut(id).filter(|c| c.state == FakeState::Open)
    }

    // What `Ctx` calls.

    pub(super) fn now_(&self) -> Instant {
        self.now
    }

    pub(super) fn config_(&self) -> &Config {
        &self.config
    }

    pub(super) fn stats_(&self) -> &Stats {
        &self.stats
    }

    pub(super) fn stats_mut_(&mut self) -> &mut Stats {
        &mut self.stats
    }

    pub(super) fn peer(&self, id: ConnId) -> Option<Peer> {
        let port = u16::try_from(id.serial).unwrap_or(u16::MAX);
        self.conn(id)
            .map(|_| Peer::Ip(SocketAddr::from((Ipv4Addr::LOCALHOST, port))))
    }

    pub(super) fn backlog(&self, id: ConnId) -> Option<usize> {
        self.conn(id)
            .filter(|c| c.state == FakeState::Open)
            .map(|c| c.unread + c.unread_chunks * CHUNK_COST)
    }

    pub(super) fn queued(&self, id: ConnId) -> Option<usize> {
        self.conn(id).map(|c| c.unread)
    }

    pub(super) fn codec(&self, key: usize) -> Option<Codec> {
        self.conns.get(key).map(|c| c.codec.clone())
    }

    pub(super) fn take(&mut self, frames: &Frames) -> Bytes {
        self.conns
            .get_mut(frames.key)
            .and_then(|c| c.input.take())
            .unwrap_or_default()
    }

    pub(super) fn echo(&mut self, frames: &Frames) {
        if let Some(id) = self.conns.get(frames.key).map(|c| c.id) {
            let bytes = self.take(frames);
            self.send(id, bytes, frames.count as u64);
        }
    }

    pub(super) fn send(&mut self, id: ConnId, bytes: Bytes, frames: u64) -> bool {
        let Some(c) = self.open_conn(id) else {
            return false;
        };
        c.unread += bytes.len();
        c.unread_chunks += 1;
        c.frames_out += frames;
        c.sent.push(bytes);
        true
    }

    pub(super) fn send_body(&mut self, id: ConnId, mut body: Box<dyn Body>) -> bool {
        let cap = self.config.max_output;
        if self.open_conn(id).is_none() {
            return false;
        }
        while let Ok(Some(chunk)) = body.next_chunk(cap) {
            self.send(id, chunk, 0);
        }
        true
    }

    pub(super) fn pause(&mut self, id: ConnId, paused: bool) {
        if let Some(c) = self.conn_mut(id) {
            c.paused = paused;
        }
    }

    pub(super) fn close(&mut self, id: ConnId, state: FakeState) {
        if let Some(c) = self.open_conn(id) {
            c.state = state;
        }
    }

    pub(super) fn set_timer(&mut self, when: Instant, tag: u64) {
        self.timers.push((when, tag));
    }

    pub(super) fn open_ids(&self) -> Vec<ConnId> {
        self.conns
            .iter()
            .filter(|(_, c)| c.state == FakeState::Open)
            .map(|(_, c)| c.id)
            .collect()
    }
}
