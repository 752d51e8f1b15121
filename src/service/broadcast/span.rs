//! Rooms across workers (`--workers`): the messages other workers' broadcasts send
//! this one (frames, and `pace`'s holds and releases), and the links' state.

use log::info;

use super::pace::Blocker;
use super::{Broadcast, Message};
use crate::service::{ConnId, Ctx};

impl Broadcast {
    /// Takes every message the other workers have queued for this one.
    pub(super) fn take_inbox(&mut self, ctx: &mut Ctx<'_>) {
        let links = self.fabric.as_ref().map_or(0, |f| f.inbox.len());
        for i in 0..links {
            loop {
                let Some((from, message)) = self
                    .fabric
                    .as_ref()
                    .and_then(|f| f.inbox.get(i))
                    .and_then(|(from, rx)| rx.try_recv().map(|m| (*from, m)))
                else {
                    break;
                };
                self.receive(ctx, from, message);
            }
        }
        self.check_links(ctx);
    }

    /// Acts on a message from worker `from`.
    pub(super) fn receive(&mut self, ctx: &mut Ctx<'_>, from: usize, message: Message) {
        match message {
            Message::Frames {
                publisher,
                room,
                frames,
                count,
            } => {
                let room = if self.named {
                    self.by_name.get(&room).copied()
                } else {
                    Some(0)
                };
                if let Some(room) = room {
                    self.fan_out(ctx, room, (from, publisher), &frames, count);
                }
            }
            Message::Hold {
                publisher,
                recipient,
            } => self.wait(ctx, publisher, Blocker::Conn(from, recipient)),
            Message::Release {
                publisher,
                recipient,
            } => self.unwait(ctx, publisher, Blocker::Conn(from, recipient)),
            Message::Forget {
                publisher,
                recipient,
            } => {
                if let Some(r) = self.member(recipient) {
                    r.holding.retain(|&x| x != (from, publisher));
                }
            }
        }
    }

    /// After the inbox: publishers held on a link that has room again go on; a
    /// worker gone (stopped, or panicked) holds nobody and is sent nothing more.
    pub(super) fn check_links(&mut self, ctx: &mut Ctx<'_>) {
        let Some(fabric) = self.fabric.as_mut() else {
            return;
        };
        let mut freed: Vec<(usize, ConnId)> = Vec::new();
        let mut gone = Vec::new();
        for (worker, out) in fabric.out.iter_mut().enumerate() {
            let Some(link) = out else {
                continue;
            };
            let closed = link.is_closed();
            if closed || link.has_room() {
                if let Some(held) = fabric.held.get_mut(worker) {
                    freed.extend(held.drain(..).map(|p| (worker, p)));
                }
            }
            if closed {
                *out = None;
                gone.push(worker);
            }
        }
        for (worker, publisher) in freed {
            self.unwait(ctx, publisher, Blocker::Link(worker));
        }
        for worker in gone {
            info!("broadcast: worker {worker} is gone; its members are no longer reached");
            let ids: Vec<ConnId> = self.slots.iter().flatten().map(|m| m.id).collect();
            for id in ids {
                let held: Vec<Blocker> = self
                    .member(id)
                    .map(|m| {
                        m.holding.retain(|&(w, _)| w != worker);
                        m.waits_on
                            .iter()
                            .copied()
                            .filter(|b| matches!(b, Blocker::Conn(w, _) if *w == worker))
                            .collect()
                    })
                    .unwrap_or_default();
                for blocker in held {
                    self.unwait(ctx, id, blocker);
                }
            }
        }
    }
}
