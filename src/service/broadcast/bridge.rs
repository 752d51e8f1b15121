//! The NATS bridge (`--bridge nats://HOST:PORT`): rooms that span daemons. The
//! broadcast opens one connection to a NATS server through the reactor
//! ([`Ctx::connect`]) and speaks [`crate::proto::nats`] over it: every frame a local
//! client publishes goes out as one NATS message on its room's subject (`PREFIX`
//! without rooms, `PREFIX.<room name in hex>` with them), and every message on those
//! subjects comes in as a frame for the local members of that room. `echo: false` on
//! `CONNECT` keeps the server from sending a daemon its own messages back, so each
//! frame reaches each client once.
//!
//! Never unbounded: while the server is unreachable (or the handshake not done),
//! frames bound for it are dropped and counted, not buffered; when the connection's
//! output is past `max_output` (the server reads slowly) they are dropped and counted
//! too; a payload over the server's `max_payload` is counted and not bridged.
//! Reconnects back off exponentially from [`MIN_BACKOFF`] to [`MAX_BACKOFF`]; the
//! outage is logged once when it starts and once when it ends, and counted.
//!
//! [`Ctx::connect`]: crate::Ctx::connect

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use log::{debug, info, warn};

use super::{Closed, ConnId, Ctx};
use crate::codec::{Codec, Encoder};
use crate::proto::nats::{self, Event, Parser};
use crate::reactor::Kind;
use crate::service::report::{Column, Report};

/// The first pause before reconnecting.
pub const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// The longest pause between attempts while the server stays away.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// The service timer tag of a reconnect (broadcast's own timers never set the top
/// bit: theirs are a connection key and a stretch count).
pub(super) const RECONNECT: u64 = 1 << 63;
/// The timer tag of a keepalive `PING`, sent while `--idle-timeout` is shorter than
/// the server's own ping interval (2 minutes), so the idle timer never closes the
/// bridge for being quiet.
pub(super) const KEEPALIVE: u64 = RECONNECT | 1;
/// The subscription id of the bridge's one subscription.
const SID: u64 = 1;

/// Where the bridge connects and what it names its subjects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeConfig {
    /// The server's address (resolved once, at start).
    pub addr: SocketAddr,
    /// The URL as given, for the log.
    pub url: String,
    /// The subject prefix (`--bridge-subject`): a valid NATS subject.
    pub prefix: String,
}

/// Where the bridge's connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// No connection; a reconnect timer is set.
    Down,
    /// Connecting; waiting for the server's `INFO`.
    Connecting,
    /// `CONNECT`, `SUB` and `PING` sent; the `PONG` says the subscription is in place.
    Subscribing { max_payload: usize },
    /// Bridging.
    Ready { max_payload: usize },
}

/// What the bridge has done, for `/stats` and `/metrics` (table `bridge`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BridgeCounts {
    /// Local frames published to NATS.
    pub published: u64,
    /// Messages from NATS delivered to the local members of their room.
    pub received: u64,
    /// Local frames dropped while NATS was unreachable.
    pub dropped_down: u64,
    /// Local frames dropped because the connection to NATS was past the output cap.
    pub dropped_full: u64,
    /// Local frames over the server's `max_payload`, not bridged.
    pub dropped_oversize: u64,
    /// Outages: the connection lost (or never made) and then retried.
    pub outages: u64,
    /// Handshakes completed (the first connection and every reconnection).
    pub connects: u64,
}

/// The bridge's state inside one broadcast service.
#[derive(Debug)]
pub(super) struct Bridge {
    config: BridgeConfig,
    /// The connection to the server, while there is one.
    pub(super) conn: Option<ConnId>,
    parser: Parser,
    state: State,
    /// The pause before the next attempt.
    backoff: Duration,
    /// Since when the server has been unreachable, during an outage.
    down_since: Option<Instant>,
    counts: BridgeCounts,
    /// Rooms are named (`--rooms`): one subject per room, `PREFIX.*` subscribed.
    pub(super) named: bool,
    /// The daemon is shutting down: the connection is closed and not made again.
    closing: bool,
    /// A keepalive timer is set (one at a time, across reconnects).
    keepalive_set: bool,
}

impl Bridge {
    pub(super) fn new(config: BridgeConfig, named: bool) -> Bridge {
        Bridge {
            closing: false,
            keepalive_set: false,
            named,
            config,
            conn: None,
            parser: Parser::new(0),
            state: State::Down,
            backoff: MIN_BACKOFF,
            down_since: None,
            counts: BridgeCounts::default(),
        }
    }

    /// What the bridge has done so far.
    pub(super) fn counts(&self) -> BridgeCounts {
        self.counts
    }

    /// Starts a connection; the new connection's id, or `None` (a retry is set).
    pub(super) fn attempt(&mut self, ctx: &mut Ctx<'_>) -> Option<ConnId> {
        if self.closing {
            return None;
        }
        match ctx.connect(self.config.addr) {
            Ok(id) => {
                debug!("bridge: connecting to {}", self.config.url);
                self.conn = Some(id);
                self.state = State::Connecting;
                self.parser = Parser::new(ctx.config().max_frame);
                Some(id)
            }
            Err(e) => {
                debug!("bridge: cannot connect to {}: {e}", self.config.url);
                self.lost(ctx, &e.to_string());
                None
            }
        }
    }

    /// The daemon is shutting down: what is queued for NATS is flushed, then the
    /// connection closes, and no reconnect follows.
    pub(super) fn shutdown(&mut self, ctx: &mut Ctx<'_>) {
        self.closing = true;
        if let Some(conn) = self.conn {
            ctx.close(conn);
        }
    }

    /// The connection ended (or could not be made): the outage starts (logged once),
    /// and a reconnect is set after the backoff.
    pub(super) fn lost(&mut self, ctx: &mut Ctx<'_>, why: &str) {
        self.conn = None;
        if self.closing {
            self.state = State::Down;
            info!("bridge: closed {} for the shutdown", self.config.url);
            return;
        }
        let was = std::mem::replace(&mut self.state, State::Down);
        if self.down_since.is_none() {
            self.down_since = Some(ctx.now());
            self.counts.outages += 1;
            let what = if matches!(was, State::Ready { .. }) {
                "lost"
            } else {
                "cannot reach"
            };
            warn!(
                "bridge: {what} {} ({why}); local rooms go on, frames bound for NATS are dropped and counted until it is back; retrying with backoff",
                self.config.url
            );
        } else {
            debug!("bridge: {} still unreachable ({why})", self.config.url);
        }
        ctx.set_timer(ctx.now() + self.backoff, RECONNECT);
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }

    /// Reads what the server sent: answers its pings, completes the handshake, and
    /// returns the messages for local rooms as (room name, frame in the local
    /// framing). An unreadable stream closes the connection (a reconnect follows).
    pub(super) fn on_bytes(&mut self, ctx: &mut Ctx<'_>, bytes: &[u8]) -> Vec<(Bytes, Bytes)> {
        let mut deliveries = Vec::new();
        let Some(conn) = self.conn else {
            return deliveries;
        };
        self.parser.feed(bytes);
        loop {
            let event = match self.parser.next_event() {
                Ok(Some(event)) => event,
                Ok(None) => break,
                Err(e) => {
                    warn!("bridge: {}: {e}; reconnecting", self.config.url);
                    ctx.close_now(conn, Closed::Service);
                    break;
                }
            };
            match event {
                Event::Info(info) => self.on_info(ctx, conn, info.max_payload, &info.server_id),
                Event::Pong => {
                    if let State::Subscribing { max_payload } = self.state {
                        self.ready(ctx, max_payload);
                    }
                }
                Event::Ping => {
                    let mut out = BytesMut::new();
                    nats::pong(&mut out);
                    ctx.send(conn, out.freeze());
                }
                Event::Msg {
                    subject, payload, ..
                } => {
                    if let Some(room) = self.room_of(&subject) {
                        match frame(ctx, &payload) {
                            Some(wire) => {
                                self.counts.received += 1;
                                deliveries.push((room, wire));
                            }
                            None => debug!(
                                "bridge: a message of {} bytes does not fit the framing",
                                payload.len()
                            ),
                        }
                    }
                }
                Event::Ok => {}
                Event::Err(text) => warn!("bridge: {} says: {text}", self.config.url),
            }
        }
        deliveries
    }

    /// The server's `INFO`: the first completes the handshake (`CONNECT`, `SUB`, a
    /// `PING` whose `PONG` says the subscription is in place); a later one may
    /// change `max_payload`.
    fn on_info(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, max_payload: usize, server: &str) {
        match &mut self.state {
            State::Connecting => {
                let mut out = BytesMut::new();
                nats::connect("framecast", &mut out);
                let subject = if self.named {
                    format!("{}.*", self.config.prefix)
                } else {
                    self.config.prefix.clone()
                };
                nats::subscribe(&subject, SID, &mut out);
                nats::ping(&mut out);
                ctx.send(conn, out.freeze());
                debug!(
                    "bridge: {} is server {server}; subscribing to {subject}",
                    self.config.url
                );
                self.state = State::Subscribing { max_payload };
            }
            State::Subscribing { max_payload: m } | State::Ready { max_payload: m } => {
                *m = max_payload;
            }
            State::Down => {}
        }
    }

    /// The subscription is in place: frames cross from now on.
    fn ready(&mut self, ctx: &mut Ctx<'_>, max_payload: usize) {
        self.state = State::Ready { max_payload };
        self.backoff = MIN_BACKOFF;
        self.arm_keepalive(ctx);
        self.counts.connects += 1;
        match self.down_since.take() {
            Some(since) if self.counts.connects > 1 || self.counts.dropped_down > 0 => info!(
                "bridge: connected to {} again after {:.1} s; {} frame(s) dropped while it was away (max payload {max_payload} B)",
                self.config.url,
                ctx.now().saturating_duration_since(since).as_secs_f64(),
                self.counts.dropped_down
            ),
            _ => info!(
                "bridge: connected to {}, subscribed (max payload {max_payload} B)",
                self.config.url
            ),
        }
    }

    /// With an idle timeout, a `PING` every half of it: the server's `PONG` is traffic,
    /// so a quiet bridge is never taken for an idle client.
    fn arm_keepalive(&mut self, ctx: &mut Ctx<'_>) {
        if let (Some(idle), false) = (ctx.config().idle_timeout, self.keepalive_set) {
            ctx.set_timer(ctx.now() + idle / 2, KEEPALIVE);
            self.keepalive_set = true;
        }
    }

    /// The keepalive timer fired: a `PING` while the bridge is up, and the next one set.
    pub(super) fn keepalive(&mut self, ctx: &mut Ctx<'_>) {
        self.keepalive_set = false;
        if let (Some(conn), State::Ready { .. }, false) = (self.conn, self.state, self.closing) {
            let mut out = BytesMut::new();
            nats::ping(&mut out);
            ctx.send(conn, out.freeze());
            self.arm_keepalive(ctx);
        }
    }

    /// Sends `count` local frames (`wire`, in the local framing) published in the room
    /// named `room` to NATS, one message each; drops and counts what cannot go.
    pub(super) fn publish(&mut self, ctx: &mut Ctx<'_>, room: &[u8], wire: &Bytes, count: u64) {
        let (Some(conn), State::Ready { max_payload }, false) =
            (self.conn, self.state, self.closing)
        else {
            self.counts.dropped_down += count;
            return;
        };
        let subject = self.subject(room);
        let codec = Codec::new(ctx.config().framing, ctx.config().max_frame);
        let cap = ctx.config().max_output;
        let mut rest = wire.clone();
        while !rest.is_empty() {
            let len = codec.frame_len(&rest).min(rest.len());
            let one = rest.split_to(len);
            let payload = one.slice(codec.payload_range(&one));
            if payload.len() > max_payload {
                self.counts.dropped_oversize += 1;
                continue;
            }
            if ctx.backlog(conn).unwrap_or(usize::MAX) > cap {
                self.counts.dropped_full += 1;
                continue;
            }
            let mut head = BytesMut::with_capacity(subject.len() + 16);
            nats::publish_head(subject.as_bytes(), payload.len(), &mut head);
            ctx.send(conn, head.freeze());
            if !payload.is_empty() {
                ctx.send(conn, payload);
            }
            ctx.send(conn, Bytes::from_static(nats::PAYLOAD_END));
            self.counts.published += 1;
        }
    }

    /// The subject of the room named `room`.
    fn subject(&self, room: &[u8]) -> String {
        if room.is_empty() {
            return self.config.prefix.clone();
        }
        let mut subject = String::with_capacity(self.config.prefix.len() + 1 + 2 * room.len());
        subject.push_str(&self.config.prefix);
        subject.push('.');
        for b in room {
            subject.push_str(&format!("{b:02x}"));
        }
        subject
    }

    /// The room a subject names: empty for the prefix itself, the decoded name for
    /// `PREFIX.<hex>`; `None` for anything else.
    fn room_of(&self, subject: &[u8]) -> Option<Bytes> {
        let prefix = self.config.prefix.as_bytes();
        let rest = subject.strip_prefix(prefix)?;
        if rest.is_empty() {
            return Some(Bytes::new());
        }
        let hex = rest.strip_prefix(b".")?;
        if hex.is_empty() || hex.len() % 2 != 0 {
            return None;
        }
        let digit = |b: u8| (b as char).to_digit(16);
        hex.chunks(2)
            .map(|pair| Some((digit(pair[0])? * 16 + digit(pair[1])?) as u8))
            .collect::<Option<Vec<u8>>>()
            .map(Bytes::from)
    }

    /// One row on `/stats` and `/metrics`.
    pub(super) fn report(&self, report: &mut Report) {
        const COLUMNS: &[Column] = &[
            Column {
                name: "connected",
                kind: Kind::Gauge,
                help: "1 while the bridge to NATS is up.",
            },
            Column {
                name: "published",
                kind: Kind::Counter,
                help: "Local frames published to NATS.",
            },
            Column {
                name: "received",
                kind: Kind::Counter,
                help: "Messages from NATS delivered to local rooms.",
            },
            Column {
                name: "dropped_down",
                kind: Kind::Counter,
                help: "Local frames dropped while NATS was unreachable.",
            },
            Column {
                name: "dropped_full",
                kind: Kind::Counter,
                help:
                    "Local frames dropped because the connection to NATS was past the output cap.",
            },
            Column {
                name: "dropped_oversize",
                kind: Kind::Counter,
                help: "Local frames over the server's max_payload, not bridged.",
            },
            Column {
                name: "outages",
                kind: Kind::Counter,
                help: "Times NATS was lost or could not be reached.",
            },
            Column {
                name: "connects",
                kind: Kind::Counter,
                help: "Handshakes with NATS completed.",
            },
        ];
        let c = self.counts;
        let up = u64::from(matches!(self.state, State::Ready { .. }));
        report.table("bridge", COLUMNS).push(
            self.config.url.as_bytes(),
            &[
                up,
                c.published,
                c.received,
                c.dropped_down,
                c.dropped_full,
                c.dropped_oversize,
                c.outages,
                c.connects,
            ],
        );
    }
}

/// `payload` framed in the local framing, or `None` if it cannot be.
fn frame(ctx: &Ctx<'_>, payload: &[u8]) -> Option<Bytes> {
    let codec = Codec::new(ctx.config().framing, ctx.config().max_frame);
    let mut out = BytesMut::with_capacity(payload.len() + 8);
    codec.encode(payload, &mut out).ok()?;
    Some(out.freeze())
}
