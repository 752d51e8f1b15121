//! Broadcast: every frame goes to the other members of its sender's room (and back to
//! the sender with `echo_self`), as one refcounted `Bytes` shared by all recipients.
//! Without rooms everyone is in one room; with them ([`Broadcast::with_rooms`]) a
//! client's first frame names its room.
//!
//! A recipient whose backlog passes `max_output` meets the slow-consumer policy
//! ([`SlowConsumer`]). The default, `pace`, loses nothing: the frame is queued anyway
//! and its publisher is read no further (TCP pushes back on it) until every recipient
//! holding it is back under half the cap; a recipient that holds a publisher for
//! longer than the timeout in one stretch is closed. So the room moves at the pace of
//! its slowest live reader, and memory stays within the cap plus one read per
//! publisher. The sender's own echo is held back by the reactor's backpressure like
//! any output of its own.
//!
//! The parts: this file publishes and fans out; `rooms` keeps who is where, `pace` the
//! holds of that policy (`policy` names the policies and decides each offer), `span`
//! and `fabric` carry rooms across workers, `bridge` across daemons through NATS.

pub mod bridge;
pub mod fabric;
mod pace;
mod policy;
mod rooms;
mod span;

use std::collections::HashMap;
use std::mem;
use std::time::Duration;

use bytes::Bytes;
use log::{debug, info};
use slab::Slab;

pub use bridge::{BridgeConfig, BridgeCounts, MAX_BACKOFF, MIN_BACKOFF};
pub use fabric::{mesh, Fabric, Message};
pub use policy::{Offer, ParseNameError, SlowConsumer};
pub use rooms::RoomStats;

use pace::Blocker;
use rooms::Room;

use super::report::Report;
use super::{Closed, ConnId, Ctx, Frames, Service};
use crate::reactor::mailbox::Sent;
use crate::reactor::CHUNK_COST;

/// How long a recipient may keep a publisher waiting in one stretch (policy `pace`).
pub const DEFAULT_SLOW_CONSUMER_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest room name, in bytes.
pub const MAX_ROOM_NAME: usize = 255;

/// The broadcast service (`--mode broadcast`).
#[derive(Debug)]
pub struct Broadcast {
    /// Also send each frame back to its sender.
    echo_self: bool,
    /// What happens to a recipient past the output cap.
    policy: SlowConsumer,
    /// Policy `pace`: how long a recipient may hold a publisher in one stretch.
    timeout: Duration,
    /// Rooms are named by each client's first frame; else everyone is in room 0.
    named: bool,
    rooms: Slab<Room>,
    by_name: HashMap<Bytes, usize>,
    /// Per connection, by its key.
    slots: Vec<Option<Member>>,
    /// With `--workers`: the links to the other workers' broadcasts, so rooms span
    /// them.
    fabric: Option<Fabric>,
    /// With `--bridge`: the connection to NATS, so rooms span daemons.
    bridge: Option<bridge::Bridge>,
}

/// A publisher or a recipient on any worker: the worker's index (0 without workers)
/// and the connection there.
type Who = (usize, ConnId);

/// What the service keeps for one connection.
#[derive(Debug)]
struct Member {
    id: ConnId,
    /// Its room and its index in that room's `members`; `None` until it joins.
    room: Option<(usize, usize)>,
    /// Frames are being skipped for it until it catches up (policy `drop`).
    dropping: bool,
    /// Frames skipped for it so far, for the log when it leaves.
    dropped: u64,
    /// Publishers it holds (policy `pace`), on any worker: they wait until it drains.
    holding: Vec<Who>,
    /// As a publisher: the recipients (and links) it waits for.
    waits_on: Vec<Blocker>,
    /// Counts its holding stretches, so the timer of an ended one is ignored.
    stretch: u32,
}

impl Broadcast {
    /// One room for everyone, no members yet.
    pub fn new(echo_self: bool, policy: SlowConsumer) -> Self {
        let mut rooms = Slab::new();
        rooms.insert(Room::default());
        Broadcast {
            echo_self,
            policy,
            timeout: DEFAULT_SLOW_CONSUMER_TIMEOUT,
            named: false,
            rooms,
            by_name: HashMap::new(),
            slots: Vec::new(),
            fabric: None,
            bridge: None,
        }
    }

    /// Bridges every room through the NATS server `config` names: local frames are
    /// published there, and what other daemons publish comes to the local members
    /// ([`bridge`]'s module docs). The connection is opened when the reactor starts.
    #[must_use]
    pub fn with_bridge(mut self, config: BridgeConfig) -> Self {
        self.bridge = Some(bridge::Bridge::new(config, self.named));
        self
    }

    /// What the bridge has done so far, if there is one.
    pub fn bridge_counts(&self) -> Option<BridgeCounts> {
        self.bridge.as_ref().map(bridge::Bridge::counts)
    }

    /// Opens the bridge's connection, its member slot (so pace can hold it).
    fn bridge_connect(&mut self, ctx: &mut Ctx<'_>) {
        let Some(id) = self.bridge.as_mut().and_then(|b| b.attempt(ctx)) else {
            return;
        };
        self.add_member(id);
    }

    /// A slot for connection `id`, in no room yet.
    fn add_member(&mut self, id: ConnId) {
        if self.slots.len() <= id.key() {
            self.slots.resize_with(id.key() + 1, || None);
        }
        self.slots[id.key()] = Some(Member {
            id,
            room: None,
            dropping: false,
            dropped: 0,
            holding: Vec::new(),
            waits_on: Vec::new(),
            stretch: 0,
        });
    }

    /// True when `conn` is the bridge's connection.
    fn is_bridge(&self, conn: ConnId) -> bool {
        self.bridge.as_ref().is_some_and(|b| b.conn == Some(conn))
    }

    /// Bytes from NATS: each message goes to the local members of its room, held
    /// back by pace like any publisher's frames.
    fn deliver_bridged(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, frames: Frames) {
        let bytes = ctx.take(frames);
        let me = self.me();
        let Some(bridge) = self.bridge.as_mut() else {
            return;
        };
        for (room, wire) in bridge.on_bytes(ctx, &bytes) {
            let room = if self.named {
                self.by_name.get(&room).copied()
            } else {
                Some(0)
            };
            if let Some(room) = room {
                self.fan_out(ctx, room, (me, conn), &wire, 1);
            }
        }
    }

    /// Spans the rooms over workers: frames published here go to the other workers
    /// through `fabric` ([`mesh`] makes one per worker), and theirs come here.
    pub fn span(&mut self, fabric: Fabric) {
        self.fabric = Some(fabric);
    }

    /// This worker's index (0 without workers).
    fn me(&self) -> usize {
        self.fabric.as_ref().map_or(0, |f| f.me)
    }

    /// Rooms instead of one room: each client's first frame (1 to
    /// [`MAX_ROOM_NAME`] bytes) names the room it joins, and goes to nobody.
    #[must_use]
    pub fn with_rooms(mut self) -> Self {
        self.named = true;
        if let Some(bridge) = self.bridge.as_mut() {
            bridge.named = true;
        }
        self.rooms.clear();
        self
    }

    /// How long a recipient may keep a publisher waiting in one stretch under `pace`.
    #[must_use]
    pub fn slow_consumer_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Connections in a room now.
    pub fn len(&self) -> usize {
        self.rooms.iter().map(|(_, r)| r.members.len()).sum()
    }

    /// True when nobody is in any room.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn member(&mut self, id: ConnId) -> Option<&mut Member> {
        self.slots
            .get_mut(id.key())
            .and_then(Option::as_mut)
            .filter(|m| m.id == id)
    }

    /// Sends `frames` (`count` of them) from `from` to its room.
    fn publish(&mut self, ctx: &mut Ctx<'_>, from: ConnId, frames: Bytes, count: u64) {
        let Some((room, _)) = self.member(from).and_then(|m| m.room) else {
            return;
        };
        if let Some(r) = self.rooms.get_mut(room) {
            r.frames += count;
        }
        let me = self.me();
        self.fan_out(ctx, room, (me, from), &frames, count);
        self.spread(ctx, room, from, &frames, count);
        if let Some(bridge) = self.bridge.as_mut() {
            let name = self
                .rooms
                .get(room)
                .map(|r| r.name.clone())
                .unwrap_or_default();
            bridge.publish(ctx, &name, &frames, count);
        }
        if self.echo_self {
            ctx.send_frames(from, frames, count as usize);
        }
    }

    /// With workers: sends `frames` from local publisher `from` in `room` down the
    /// link to every other worker. A link past its cap holds the publisher under
    /// `pace`, as a slow recipient would, and drops the run for that worker under
    /// the other policies.
    fn spread(&mut self, ctx: &mut Ctx<'_>, room: usize, from: ConnId, frames: &Bytes, count: u64) {
        let Some(fabric) = self.fabric.as_ref() else {
            return;
        };
        let name = self
            .rooms
            .get(room)
            .map(|r| r.name.clone())
            .unwrap_or_default();
        let weight = frames.len() + CHUNK_COST;
        let mut over = Vec::new();
        for (to, out) in fabric.out.iter().enumerate() {
            let Some(out) = out else {
                continue;
            };
            if self.policy != SlowConsumer::Pace && out.would_pass(weight) {
                ctx.stats_mut().frames_dropped += count;
                continue;
            }
            let message = Message::Frames {
                publisher: from,
                room: name.clone(),
                frames: frames.clone(),
                count,
            };
            if out.send(message) == Sent::OverCap {
                over.push(to);
            }
        }
        for to in over {
            self.hold_on_link(ctx, from, to);
        }
    }

    /// Offers `frames` to every member of `room` but `from` (if `from` is here).
    fn fan_out(&mut self, ctx: &mut Ctx<'_>, room: usize, from: Who, frames: &Bytes, count: u64) {
        let (cap, policy, me) = (ctx.config().max_output, self.policy, self.me());
        let cost = frames.len() + CHUNK_COST;
        let Some(r) = self.rooms.get(room) else {
            return;
        };
        // Recipients that now hold the publisher (policy `pace`; rare, so no allocation
        // unless there are some).
        let mut holds = Vec::new();
        for &to in &r.members {
            let Some(backlog) = ctx.backlog(to).filter(|_| (me, to) != from) else {
                continue;
            };
            let Some(member) = self.slots.get_mut(to.key()).and_then(Option::as_mut) else {
                continue;
            };
            if member.dropping && SlowConsumer::resumes(backlog, cap) {
                debug!(
                    "{}: caught up after {} skipped frames",
                    peer(ctx, to),
                    member.dropped
                );
                member.dropping = false;
            }
            match policy.offer(cost, backlog, cap, member.dropping) {
                Offer::Queue => {
                    ctx.send_frames(to, frames.clone(), count as usize);
                }
                Offer::QueueAndHold => {
                    ctx.send_frames(to, frames.clone(), count as usize);
                    holds.push(to);
                }
                Offer::Skip => {
                    if !mem::replace(&mut member.dropping, true) {
                        debug!(
                            "{}: slow consumer: a backlog of {backlog} bytes, skipping frames",
                            peer(ctx, to)
                        );
                    }
                    member.dropped += count;
                    ctx.stats_mut().frames_dropped += count;
                }
                Offer::Disconnect => {
                    info!(
                        "{}: slow consumer: a backlog of {backlog} bytes would pass the cap of {cap} bytes; disconnecting",
                        peer(ctx, to)
                    );
                    ctx.stats_mut().slow_disconnects += 1;
                    let why =
                        format!("slow consumer (backlog {backlog} B would pass the {cap} B cap)");
                    ctx.close_for(to, &why, Closed::SlowConsumer);
                }
            }
        }
        for to in holds {
            self.hold(ctx, from, to);
        }
    }
}

impl Service for Broadcast {
    fn on_start(&mut self, ctx: &mut Ctx<'_>) {
        self.bridge_connect(ctx);
    }

    fn on_shutdown(&mut self, ctx: &mut Ctx<'_>) {
        if let Some(bridge) = self.bridge.as_mut() {
            bridge.shutdown(ctx);
        }
    }

    fn on_open(&mut self, _ctx: &mut Ctx<'_>, conn: ConnId, _peer: &crate::reactor::Peer) {
        self.add_member(conn);
        if !self.named {
            self.join(conn, 0);
        }
    }

    fn on_frames(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, frames: Frames) {
        if self.is_bridge(conn) {
            self.deliver_bridged(ctx, conn, frames);
            return;
        }
        match self.member(conn).map(|m| m.room.is_some()) {
            Some(true) => {
                let count = frames.count() as u64;
                let frames = ctx.take(frames);
                self.publish(ctx, conn, frames, count);
            }
            Some(false) => {
                let mut frames = ctx.split(frames);
                let joined = frames
                    .next()
                    .is_some_and(|first| self.join_named(ctx, conn, first.payload()));
                if joined {
                    for frame in frames {
                        self.publish(ctx, conn, frame.wire().clone(), 1);
                    }
                }
            }
            None => {}
        }
    }

    fn on_drain(&mut self, ctx: &mut Ctx<'_>, conn: ConnId) {
        self.release(ctx, conn);
    }

    fn on_close(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, why: &Closed) {
        if self.is_bridge(conn) {
            if let Some(bridge) = self.bridge.as_mut() {
                bridge.lost(ctx, &why.to_string());
            }
        }
        self.release(ctx, conn);
        self.forget(conn);
        let Some(member) = self.slots.get_mut(conn.key()).and_then(Option::take) else {
            return;
        };
        if member.id != conn {
            self.slots[conn.key()] = Some(member);
            return;
        }
        if let Some((room, at)) = member.room {
            self.leave(conn, room, at);
        }
        if member.dropped > 0 {
            debug!(
                "{}: left; {} frames skipped for it",
                peer(ctx, conn),
                member.dropped
            );
        }
    }

    fn on_wake(&mut self, ctx: &mut Ctx<'_>) {
        self.take_inbox(ctx);
    }

    fn on_timer(&mut self, ctx: &mut Ctx<'_>, tag: u64) {
        if tag == bridge::RECONNECT {
            self.bridge_connect(ctx);
            return;
        }
        if tag == bridge::KEEPALIVE {
            if let Some(bridge) = self.bridge.as_mut() {
                bridge.keepalive(ctx);
            }
            return;
        }
        self.on_hold_timer(ctx, tag);
    }

    fn report(&self, report: &mut Report) {
        self.report_rooms(report);
        if let Some(bridge) = &self.bridge {
            bridge.report(report);
        }
    }

    fn describe(&self) -> String {
        let rooms = if self.named {
            "rooms named by the first frame"
        } else {
            "one room"
        };
        let span = match &self.fabric {
            Some(f) => format!(", worker {} of {}", f.me, f.workers()),
            None => String::new(),
        };
        match self.policy {
            SlowConsumer::Pace => format!(
                "broadcast ({rooms}, echo-self {}, slow consumers: pace, {} s{span})",
                self.echo_self,
                self.timeout.as_secs_f64()
            ),
            policy => format!(
                "broadcast ({rooms}, echo-self {}, slow consumers: {policy}{span})",
                self.echo_self
            ),
        }
    }
}

fn peer(ctx: &Ctx<'_>, conn: ConnId) -> String {
    ctx.peer(conn)
        .map_or_else(|| conn.to_string(), |p| p.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::reactor::{FakeCtx, FakeState};
    use std::net::SocketAddr;

    const PEER: SocketAddr =
        SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 1);

    fn open(fake: &mut FakeCtx, service: &mut Broadcast) -> ConnId {
        let conn = fake.open();
        service.on_open(&mut fake.ctx(), conn, &PEER.into());
        conn
    }

    fn publish(fake: &mut FakeCtx, service: &mut Broadcast, from: ConnId, payloads: &[&[u8]]) {
        let frames = fake.frames(from, payloads);
        service.on_frames(&mut fake.ctx(), from, frames);
    }

    #[test]
    fn a_frame_goes_to_every_other_member_as_one_shared_buffer() {
        let mut fake = FakeCtx::new(Config::default());
        let mut service = Broadcast::new(false, SlowConsumer::Pace);
        let conns: Vec<ConnId> = (0..3).map(|_| open(&mut fake, &mut service)).collect();
        publish(&mut fake, &mut service, conns[0], &[b"a", b"b"]);
        assert!(fake.sent(conns[0]).is_empty(), "not back to its sender");
        for &to in &conns[1..] {
            assert_eq!(fake.sent_payloads(to), [b"a".to_vec(), b"b".to_vec()]);
            assert_eq!(fake.frames_out(to), 2);
        }
        // One run, one `Bytes`, the same memory for both recipients.
        let (one, two) = (&fake.sent(conns[1])[0], &fake.sent(conns[2])[0]);
        assert_eq!(one.as_ptr(), two.as_ptr());
    }

    #[test]
    fn pace_holds_a_publisher_until_the_slow_reader_drains_then_times_it_out() {
        let config = Config {
            max_output: 1000,
            ..Config::default()
        };
        let mut fake = FakeCtx::new(config);
        let mut service = Broadcast::new(false, SlowConsumer::Pace);
        let (publisher, reader) = (open(&mut fake, &mut service), open(&mut fake, &mut service));
        let big = [7u8; 600];
        publish(&mut fake, &mut service, publisher, &[&big]);
        assert!(!fake.is_paused(publisher), "under the cap: not held");
        publish(&mut fake, &mut service, publisher, &[&big]);
        assert!(
            fake.is_paused(publisher),
            "the reader's backlog passed the cap"
        );
        assert_eq!(
            fake.sent_payloads(reader).len(),
            2,
            "nothing lost: queued anyway"
        );
        assert_eq!(fake.timers.len(), 1, "the hold's timeout is armed");

        // The reader catches up: the publisher is read again, the old timer is stale.
        fake.read_all(reader);
        service.on_drain(&mut fake.ctx(), reader);
        assert!(!fake.is_paused(publisher));
        let (_, stale) = fake.timers[0];
        service.on_timer(&mut fake.ctx(), stale);
        assert_eq!(
            fake.state(reader),
            Some(FakeState::Open),
            "a stale timer closes nobody"
        );

        // Held again, and this time the reader never drains: the timeout closes it
        // and frees the publisher.
        publish(&mut fake, &mut service, publisher, &[&big]);
        publish(&mut fake, &mut service, publisher, &[&big]);
        assert!(fake.is_paused(publisher));
        let (when, tag) = fake.timers[1];
        fake.now = when;
        service.on_timer(&mut fake.ctx(), tag);
        assert!(
            matches!(fake.state(reader), Some(FakeState::Closed(why)) if why.starts_with("slow consumer")),
            "{:?}",
            fake.state(reader)
        );
        assert!(!fake.is_paused(publisher));
    }

    #[test]
    fn disconnect_closes_the_reader_past_the_cap_and_never_holds_the_publisher() {
        let config = Config {
            max_output: 1000,
            ..Config::default()
        };
        let mut fake = FakeCtx::new(config);
        let mut service = Broadcast::new(false, SlowConsumer::Disconnect);
        let (publisher, reader) = (open(&mut fake, &mut service), open(&mut fake, &mut service));
        publish(&mut fake, &mut service, publisher, &[&[1u8; 600]]);
        publish(&mut fake, &mut service, publisher, &[&[2u8; 600]]);
        assert!(!fake.is_paused(publisher));
        assert!(matches!(fake.state(reader), Some(FakeState::Closed(_))));
        assert_eq!(
            fake.sent_payloads(reader).len(),
            1,
            "the frame past the cap is not queued"
        );
    }

    /// Notifiers of two idle reactors, for the links between two workers' services.
    fn two_notifiers() -> (
        Vec<crate::Reactor<crate::service::Echo>>,
        Vec<crate::reactor::Notifier>,
    ) {
        let config = Config {
            listen: vec!["127.0.0.1:0".parse().unwrap()],
            ..Config::default()
        };
        let reactors: Vec<_> = (0..2)
            .map(|_| crate::Reactor::bind(config.clone(), crate::service::Echo).unwrap())
            .collect();
        let notifiers = reactors.iter().map(crate::Reactor::notifier).collect();
        (reactors, notifiers)
    }

    #[test]
    fn pace_holds_a_publisher_for_a_reader_on_another_worker_until_it_drains_or_goes() {
        let config = Config {
            max_output: 1000,
            ..Config::default()
        };
        let (_reactors, notifiers) = two_notifiers();
        let mut fabrics = mesh(&notifiers, 1000).into_iter();
        let (mut s0, mut s1) = (
            Broadcast::new(false, SlowConsumer::Pace),
            Broadcast::new(false, SlowConsumer::Pace),
        );
        s0.span(fabrics.next().unwrap());
        s1.span(fabrics.next().unwrap());
        let (mut f0, mut f1) = (FakeCtx::new(config.clone()), FakeCtx::new(config));
        let publisher = open(&mut f0, &mut s0);
        let reader = open(&mut f1, &mut s1);
        let big = [7u8; 600];
        publish(&mut f0, &mut s0, publisher, &[&big]);
        publish(&mut f0, &mut s0, publisher, &[&big]);
        assert!(
            f0.is_paused(publisher),
            "the link to worker 1 is past its cap"
        );
        s1.on_wake(&mut f1.ctx());
        assert_eq!(
            f1.sent_payloads(reader).len(),
            2,
            "both delivered on worker 1"
        );
        // The link has room again, but the reader on worker 1 now holds the publisher.
        s0.on_wake(&mut f0.ctx());
        assert!(
            f0.is_paused(publisher),
            "held by the reader on the other worker"
        );
        f1.read_all(reader);
        s1.on_drain(&mut f1.ctx(), reader);
        s0.on_wake(&mut f0.ctx());
        assert!(!f0.is_paused(publisher), "released by the reader's worker");

        // Held again; then worker 1 goes (its service, and its ends of the links, are
        // dropped, as when its thread panics): the publisher is not held for ever.
        publish(&mut f0, &mut s0, publisher, &[&big]);
        s1.on_wake(&mut f1.ctx());
        publish(&mut f0, &mut s0, publisher, &[&big]);
        s1.on_wake(&mut f1.ctx());
        s0.on_wake(&mut f0.ctx());
        assert!(f0.is_paused(publisher));
        drop(s1);
        s0.on_wake(&mut f0.ctx());
        assert!(!f0.is_paused(publisher), "a worker gone holds nobody");
        publish(&mut f0, &mut s0, publisher, &[&big]);
        assert!(!f0.is_paused(publisher), "and is sent nothing more");
    }

    #[test]
    fn rooms_keep_frames_to_their_members_and_go_when_empty() {
        let mut fake = FakeCtx::new(Config::default());
        let mut service = Broadcast::new(false, SlowConsumer::Pace).with_rooms();
        let conns: Vec<ConnId> = (0..3).map(|_| open(&mut fake, &mut service)).collect();
        for (&conn, room) in conns.iter().zip([&b"a"[..], b"a", b"b"]) {
            publish(&mut fake, &mut service, conn, &[room]);
        }
        assert!(
            conns.iter().all(|&c| fake.sent(c).is_empty()),
            "a join goes to nobody"
        );
        publish(&mut fake, &mut service, conns[0], &[b"hi a"]);
        assert_eq!(fake.sent_payloads(conns[1]), [b"hi a".to_vec()]);
        assert!(fake.sent(conns[2]).is_empty(), "room b hears nothing of a");
        let mut rooms = service.rooms();
        rooms.sort_by(|x, y| x.name.cmp(&y.name));
        assert_eq!(
            rooms
                .iter()
                .map(|r| (&r.name[..], r.members, r.frames))
                .collect::<Vec<_>>(),
            [(&b"a"[..], 2, 1), (&b"b"[..], 1, 0)]
        );
        fake.remove(conns[2]);
        service.on_close(&mut fake.ctx(), conns[2], &Closed::Done);
        assert_eq!(
            service.rooms().len(),
            1,
            "room b is gone with its last member"
        );
    }
}
