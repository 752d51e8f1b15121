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

mod policy;

use std::collections::HashMap;
use std::mem;
use std::time::Duration;

use bytes::Bytes;
use log::{debug, info};
use slab::Slab;

pub use policy::{Offer, ParseNameError, SlowConsumer};

use super::report::{Column, Report};
use super::{Closed, ConnId, Ctx, Frames, Service};
use crate::reactor::{Kind, CHUNK_COST};

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
}

/// One room: its members in the order they joined, the recipients of its frames.
#[derive(Debug, Default)]
struct Room {
    name: Bytes,
    members: Vec<ConnId>,
    /// Frames published in it.
    frames: u64,
}

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
    /// Publishers it holds (policy `pace`): they wait until it drains.
    holding: Vec<ConnId>,
    /// As a publisher: the recipients it waits for.
    waits_on: Vec<ConnId>,
    /// Counts its holding stretches, so the timer of an ended one is ignored.
    stretch: u32,
}

/// A room as [`Broadcast::rooms`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomStats {
    /// Its name (empty for the one room without `--rooms`).
    pub name: Bytes,
    /// Connections in it now.
    pub members: usize,
    /// Frames published in it so far.
    pub frames: u64,
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
        }
    }

    /// Rooms instead of one room: each client's first frame (1 to
    /// [`MAX_ROOM_NAME`] bytes) names the room it joins, and goes to nobody.
    #[must_use]
    pub fn with_rooms(mut self) -> Self {
        self.named = true;
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

    /// The rooms now, with their members and frames.
    pub fn rooms(&self) -> Vec<RoomStats> {
        self.rooms
            .iter()
            .map(|(_, r)| RoomStats {
                name: r.name.clone(),
                members: r.members.len(),
                frames: r.frames,
            })
            .collect()
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
        self.fan_out(ctx, room, from, &frames, count);
        if self.echo_self {
            ctx.send_frames(from, frames, count as usize);
        }
    }

    /// Offers `frames` to every member of `room` but `from`.
    fn fan_out(
        &mut self,
        ctx: &mut Ctx<'_>,
        room: usize,
        from: ConnId,
        frames: &Bytes,
        count: u64,
    ) {
        let (cap, policy) = (ctx.config().max_output, self.policy);
        let cost = frames.len() + CHUNK_COST;
        let Some(r) = self.rooms.get_mut(room) else {
            return;
        };
        r.frames += count;
        // Recipients that now hold the publisher (policy `pace`; rare, so no allocation
        // unless there are some).
        let mut holds = Vec::new();
        for &to in &r.members {
            let Some(backlog) = ctx.backlog(to).filter(|_| to != from) else {
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

    /// Policy `pace`: `publisher` waits for `recipient`, which is past the cap.
    fn hold(&mut self, ctx: &mut Ctx<'_>, publisher: ConnId, recipient: ConnId) {
        let (now, timeout) = (ctx.now(), self.timeout);
        let Some(r) = self.member(recipient) else {
            return;
        };
        if r.holding.contains(&publisher) {
            return;
        }
        r.holding.push(publisher);
        if r.holding.len() == 1 {
            r.stretch = r.stretch.wrapping_add(1);
            ctx.set_timer(now + timeout, timer_tag(recipient, r.stretch));
        }
        if let Some(p) = self.member(publisher) {
            p.waits_on.push(recipient);
            if p.waits_on.len() == 1 {
                ctx.pause(publisher);
            }
        }
    }

    /// `recipient` drained or left: the publishers it held may go on, each once nobody
    /// else holds it.
    fn release(&mut self, ctx: &mut Ctx<'_>, recipient: ConnId) {
        let Some(r) = self.member(recipient) else {
            return;
        };
        for publisher in mem::take(&mut r.holding) {
            if let Some(p) = self.member(publisher) {
                p.waits_on.retain(|&x| x != recipient);
                if p.waits_on.is_empty() {
                    ctx.resume(publisher);
                }
            }
        }
    }

    /// `publisher` left: the recipients holding it hold it no more.
    fn forget(&mut self, publisher: ConnId) {
        let Some(p) = self.member(publisher) else {
            return;
        };
        for recipient in mem::take(&mut p.waits_on) {
            if let Some(r) = self.member(recipient) {
                r.holding.retain(|&x| x != publisher);
            }
        }
    }

    /// `conn` joins the room its first frame names; false (and `conn` is closed) if
    /// the name is empty or too long.
    fn join_named(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, name: &[u8]) -> bool {
        if name.is_empty() || name.len() > MAX_ROOM_NAME {
            info!(
                "{}: a room name of {} bytes (1 to {MAX_ROOM_NAME}); closing",
                peer(ctx, conn),
                name.len()
            );
            ctx.close_for(conn, "a room name is 1 to 255 bytes", Closed::Service);
            return false;
        }
        let room = match self.by_name.get(name) {
            Some(&room) => room,
            None => {
                let name = Bytes::copy_from_slice(name);
                let room = self.rooms.insert(Room {
                    name: name.clone(),
                    ..Room::default()
                });
                self.by_name.insert(name, room);
                room
            }
        };
        self.join(conn, room);
        if let Some(r) = self.rooms.get(room) {
            debug!(
                "{}: joined room {:?} ({} members)",
                peer(ctx, conn),
                String::from_utf8_lossy(name),
                r.members.len()
            );
        }
        true
    }

    fn join(&mut self, conn: ConnId, room: usize) {
        let Some(members) = self.rooms.get_mut(room).map(|r| &mut r.members) else {
            return;
        };
        let at = members.len();
        members.push(conn);
        if let Some(m) = self.member(conn) {
            m.room = Some((room, at));
        }
    }

    /// Takes `conn` out of its room, and the room away once it is empty (with rooms).
    fn leave(&mut self, conn: ConnId, room: usize, at: usize) {
        let Some(r) = self.rooms.get_mut(room) else {
            return;
        };
        if r.members.get(at) != Some(&conn) {
            return;
        }
        r.members.swap_remove(at);
        let moved = r.members.get(at).copied();
        let empty = r.members.is_empty();
        if let Some(m) = moved.and_then(|moved| self.member(moved)) {
            m.room = Some((room, at));
        }
        if empty && self.named {
            let r = self.rooms.remove(room);
            self.by_name.remove(&r.name);
            debug!(
                "room {:?} closed after {} frames",
                String::from_utf8_lossy(&r.name),
                r.frames
            );
        }
    }
}

impl Service for Broadcast {
    fn on_open(&mut self, _ctx: &mut Ctx<'_>, conn: ConnId, _peer: &crate::reactor::Peer) {
        if self.slots.len() <= conn.key() {
            self.slots.resize_with(conn.key() + 1, || None);
        }
        self.slots[conn.key()] = Some(Member {
            id: conn,
            room: None,
            dropping: false,
            dropped: 0,
            holding: Vec::new(),
            waits_on: Vec::new(),
            stretch: 0,
        });
        if !self.named {
            self.join(conn, 0);
        }
    }

    fn on_frames(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, frames: Frames) {
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

    fn on_close(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _why: &Closed) {
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

    fn on_timer(&mut self, ctx: &mut Ctx<'_>, tag: u64) {
        let (key, stretch) = (tag >> 32, tag as u32);
        let Some(m) = usize::try_from(key)
            .ok()
            .and_then(|k| self.slots.get(k))
            .and_then(Option::as_ref)
        else {
            return;
        };
        if m.stretch != stretch || m.holding.is_empty() {
            return;
        }
        let (id, held) = (m.id, m.holding.len());
        let (cap, backlog) = (ctx.config().max_output, ctx.backlog(m.id).unwrap_or(0));
        let secs = self.timeout.as_secs_f64();
        info!(
            "{}: slow consumer: kept {held} publisher(s) waiting for {secs} s with a backlog of {backlog} bytes (cap {cap}); disconnecting",
            peer(ctx, id)
        );
        ctx.stats_mut().slow_disconnects += 1;
        self.release(ctx, id);
        self.forget(id);
        let why = format!("slow consumer (backlog {backlog} B over the {cap} B cap for {secs} s)");
        ctx.close_for(id, &why, Closed::SlowConsumer);
    }

    fn report(&self, report: &mut Report) {
        const COLUMNS: &[Column] = &[
            Column {
                name: "members",
                kind: Kind::Gauge,
                help: "Connections in the room now.",
            },
            Column {
                name: "frames",
                kind: Kind::Counter,
                help: "Frames published in the room.",
            },
        ];
        // The most crowded rooms first: those are the ones a capped page must show.
        let mut rooms: Vec<&Room> = self.rooms.iter().map(|(_, r)| r).collect();
        rooms.sort_by_key(|r| std::cmp::Reverse(r.members.len()));
        let table = report.table("room", COLUMNS);
        for room in rooms {
            table.push(&room.name, &[room.members.len() as u64, room.frames]);
        }
    }

    fn describe(&self) -> String {
        let rooms = if self.named {
            "rooms named by the first frame"
        } else {
            "one room"
        };
        match self.policy {
            SlowConsumer::Pace => format!(
                "broadcast ({rooms}, echo-self {}, slow consumers: pace, {} s)",
                self.echo_self,
                self.timeout.as_secs_f64()
            ),
            policy => format!(
                "broadcast ({rooms}, echo-self {}, slow consumers: {policy})",
                self.echo_self
            ),
        }
    }
}

/// The tag of `recipient`'s timer for holding stretch `stretch`.
fn timer_tag(recipient: ConnId, stretch: u32) -> u64 {
    ((recipient.key() as u64) << 32) | u64::from(stretch)
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
