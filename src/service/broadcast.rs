//! Broadcast: every frame goes to every other open connection (and back to its sender
//! with `echo_self`), as one refcounted `Bytes` shared by all recipients. A recipient
//! whose backlog would pass `max_output` is handled by the slow-consumer policy, so it
//! never slows the sender or the others; the sender's own echo is held back by the
//! reactor's backpressure like any output of its own.

use std::fmt;
use std::str::FromStr;

use bytes::Bytes;
use log::{debug, info};

use super::{Closed, ConnId, Ctx, Frames, Service};
use crate::reactor::CHUNK_COST;

/// The broadcast service (`--mode broadcast`).
#[derive(Debug, Default)]
pub struct Broadcast {
    /// Also send each frame back to its sender.
    echo_self: bool,
    /// What happens to a recipient past the output cap.
    policy: SlowConsumer,
    /// Open connections in the order they joined: the recipients of every frame.
    members: Vec<ConnId>,
    /// Per connection, by its key: where it stands in `members`, and its policy state.
    slots: Vec<Option<Member>>,
}

/// What the service keeps for one member.
#[derive(Debug, Clone, Copy)]
struct Member {
    /// Its index in `Broadcast::members`.
    at: usize,
    /// Frames are being skipped for it until it catches up (policy `drop`).
    dropping: bool,
    /// Frames skipped for it so far, for the log when it leaves.
    dropped: u64,
}

impl Broadcast {
    /// A room with no members yet.
    pub fn new(echo_self: bool, policy: SlowConsumer) -> Self {
        Broadcast {
            echo_self,
            policy,
            ..Broadcast::default()
        }
    }

    /// Connections in the room now.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// True when nobody is in the room.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Offers `frames` (`count` of them) to every member but `from`.
    fn fan_out(&mut self, ctx: &mut Ctx<'_>, from: ConnId, frames: &Bytes, count: u64) {
        let cap = ctx.config().max_output;
        let cost = frames.len() + CHUNK_COST;
        for i in 0..self.members.len() {
            let to = self.members[i];
            let Some(member) = self.slots.get_mut(to.key()).and_then(Option::as_mut) else {
                continue;
            };
            let Some(backlog) = ctx.backlog(to).filter(|_| to != from) else {
                continue;
            };
            if member.dropping && SlowConsumer::resumes(backlog, cap) {
                debug!(
                    "{}: caught up after {} skipped frames",
                    ctx.peer(to).map_or_else(String::new, |p| p.to_string()),
                    member.dropped
                );
                member.dropping = false;
            }
            match self.policy.offer(cost, backlog, cap, member.dropping) {
                Offer::Queue => {
                    ctx.send(to, frames.clone());
                }
                Offer::Skip => {
                    if !std::mem::replace(&mut member.dropping, true) {
                        debug!(
                            "{}: slow consumer: a backlog of {backlog} bytes, skipping frames",
                            ctx.peer(to).map_or_else(String::new, |p| p.to_string()),
                        );
                    }
                    member.dropped += count;
                    ctx.stats_mut().frames_dropped += count;
                }
                Offer::Disconnect => {
                    info!(
                        "{}: slow consumer: a backlog of {backlog} bytes would pass the cap of {cap} bytes; disconnecting",
                        ctx.peer(to).map_or_else(String::new, |p| p.to_string()),
                    );
                    ctx.stats_mut().slow_disconnects += 1;
                    ctx.close_now(to, Closed::SlowConsumer);
                }
            }
        }
    }
}

impl Service for Broadcast {
    fn on_open(&mut self, _ctx: &mut Ctx<'_>, conn: ConnId, _peer: std::net::SocketAddr) {
        if self.slots.len() <= conn.key() {
            self.slots.resize(conn.key() + 1, None);
        }
        self.slots[conn.key()] = Some(Member {
            at: self.members.len(),
            dropping: false,
            dropped: 0,
        });
        self.members.push(conn);
    }

    fn on_frames(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, frames: Frames) {
        let count = frames.count() as u64;
        let frames = ctx.take(frames);
        self.fan_out(ctx, conn, &frames, count);
        if self.echo_self {
            ctx.send(conn, frames);
        }
    }

    fn on_close(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _why: &Closed) {
        let Some(member) = self.slots.get_mut(conn.key()).and_then(Option::take) else {
            return;
        };
        if self.members.get(member.at) != Some(&conn) {
            return;
        }
        self.members.swap_remove(member.at);
        if let Some(moved) = self.members.get(member.at) {
            if let Some(slot) = self.slots.get_mut(moved.key()).and_then(Option::as_mut) {
                slot.at = member.at;
            }
        }
        if member.dropped > 0 {
            debug!(
                "{}: left; {} frames skipped for it",
                ctx.peer(conn).map_or_else(String::new, |p| p.to_string()),
                member.dropped
            );
        }
    }

    fn describe(&self) -> String {
        format!(
            "broadcast (echo-self {}, slow consumers: {})",
            self.echo_self, self.policy
        )
    }
}

/// What to do with a recipient whose pending output passes the cap. The sender of a
/// frame is never treated so: its own input is what it is waiting on, so it is simply
/// read no further until it drains (backpressure).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SlowConsumer {
    /// Close the recipient.
    #[default]
    Disconnect,
    /// Keep it, but skip whole frames for it until its output drains below half the cap.
    Drop,
}

/// The fate of a frame offered to a recipient other than its sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// Queue it.
    Queue,
    /// Skip it for this recipient (counted as dropped).
    Skip,
    /// Close the recipient instead.
    Disconnect,
}

impl SlowConsumer {
    /// Decides for a frame of `len` bytes offered to a recipient with `backlog` bytes
    /// waiting behind the chunk it is being written, `cap` allowed, and `dropping` set
    /// while it is skipping frames. A recipient with no backlog is keeping up, so it
    /// takes any frame, even one larger than the cap: it holds at most the chunk in
    /// progress plus the cap plus one read's frames.
    pub fn offer(self, len: usize, backlog: usize, cap: usize, dropping: bool) -> Offer {
        let over = backlog > 0 && backlog.saturating_add(len) > cap;
        match self {
            SlowConsumer::Disconnect if over => Offer::Disconnect,
            SlowConsumer::Drop if dropping || over => Offer::Skip,
            _ => Offer::Queue,
        }
    }

    /// Whether a recipient that is skipping frames may receive again: once its backlog
    /// has drained below half the cap, so it gets runs of frames, not a sprinkle.
    pub fn resumes(backlog: usize, cap: usize) -> bool {
        backlog <= cap / 2
    }
}

/// A policy name that is not known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseNameError {
    name: String,
    expected: &'static str,
}

impl fmt::Display for ParseNameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown value '{}' (expected {})",
            self.name, self.expected
        )
    }
}

impl std::error::Error for ParseNameError {}

impl FromStr for SlowConsumer {
    type Err = ParseNameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "disconnect" => Ok(SlowConsumer::Disconnect),
            "drop" => Ok(SlowConsumer::Drop),
            _ => Err(ParseNameError {
                name: s.to_owned(),
                expected: "disconnect or drop",
            }),
        }
    }
}

impl fmt::Display for SlowConsumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SlowConsumer::Disconnect => "disconnect",
            SlowConsumer::Drop => "drop",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disconnect_policy_closes_a_recipient_that_would_pass_the_cap() {
        let p = SlowConsumer::Disconnect;
        assert_eq!(p.offer(10, 90, 100, false), Offer::Queue);
        assert_eq!(p.offer(11, 90, 100, false), Offer::Disconnect);
        assert_eq!(
            p.offer(500, 0, 100, false),
            Offer::Queue,
            "an idle recipient takes a big frame"
        );
    }

    #[test]
    fn drop_policy_skips_whole_frames_until_drained_below_half() {
        let p = SlowConsumer::Drop;
        assert_eq!(p.offer(10, 90, 100, false), Offer::Queue);
        assert_eq!(p.offer(11, 90, 100, false), Offer::Skip);
        // Once skipping, even a frame that would fit is skipped until the recipient
        // has drained to half the cap.
        assert_eq!(p.offer(1, 60, 100, true), Offer::Skip);
        assert!(!SlowConsumer::resumes(51, 100));
        assert!(SlowConsumer::resumes(50, 100));
    }

    #[test]
    fn names_round_trip() {
        for name in ["disconnect", "drop"] {
            assert_eq!(name.parse::<SlowConsumer>().unwrap().to_string(), name);
        }
        assert!("kick".parse::<SlowConsumer>().is_err());
    }
}
