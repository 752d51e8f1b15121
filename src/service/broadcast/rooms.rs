//! Rooms: who is in each, by name when a client's first frame names it (`--rooms`),
//! and what the admin endpoint shows of them.

use bytes::Bytes;
use log::{debug, info};

use super::{peer, Broadcast, MAX_ROOM_NAME};
use crate::reactor::Kind;
use crate::service::report::{Column, Report};
use crate::service::{Closed, ConnId, Ctx};

/// One room: its members in the order they joined, the recipients of its frames.
#[derive(Debug, Default)]
pub(super) struct Room {
    pub(super) name: Bytes,
    pub(super) members: Vec<ConnId>,
    /// Frames published in it.
    pub(super) frames: u64,
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

    /// `conn` joins the room its first frame names; false (and `conn` is closed) if
    /// the name is empty or too long.
    pub(super) fn join_named(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, name: &[u8]) -> bool {
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

    pub(super) fn join(&mut self, conn: ConnId, room: usize) {
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
    pub(super) fn leave(&mut self, conn: ConnId, room: usize, at: usize) {
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

    /// The rooms' table for `/stats` and `/metrics`.
    pub(super) fn report_rooms(&self, report: &mut Report) {
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
}
