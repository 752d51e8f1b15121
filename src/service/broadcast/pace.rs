//! Policy `pace`: a recipient past the cap holds the publishers whose frames it got,
//! on this worker or another, and each publisher is read no further while anyone holds
//! it; a recipient that holds them for longer than the timeout in one stretch is closed.

use std::mem;

use log::{debug, info};

use super::{peer, Broadcast, Message, Who};
use crate::service::{Closed, ConnId, Ctx};

/// What a publisher waits for before it is read again (policy `pace`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Blocker {
    /// A recipient past the cap, on this worker or another.
    Conn(usize, ConnId),
    /// The link to a worker, past its cap.
    Link(usize),
}

impl Broadcast {
    /// Policy `pace`: local `publisher` waits for the link to worker `to`.
    pub(super) fn hold_on_link(&mut self, ctx: &mut Ctx<'_>, publisher: ConnId, to: usize) {
        let Some(held) = self.fabric.as_mut().and_then(|f| f.held.get_mut(to)) else {
            return;
        };
        if held.contains(&publisher) {
            return;
        }
        held.push(publisher);
        debug!(
            "{}: the link to worker {to} is past its cap: holding the publisher",
            peer(ctx, publisher)
        );
        if let Some(p) = self.member(publisher) {
            p.waits_on.push(Blocker::Link(to));
            if p.waits_on.len() == 1 {
                ctx.pause(publisher);
            }
        }
    }

    /// Policy `pace`: `publisher` (here or on another worker) waits for local
    /// `recipient`, which is past the cap.
    pub(super) fn hold(&mut self, ctx: &mut Ctx<'_>, publisher: Who, recipient: ConnId) {
        let (now, timeout, me) = (ctx.now(), self.timeout, self.me());
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
        match publisher {
            (worker, publisher) if worker == me => {
                self.wait(ctx, publisher, Blocker::Conn(me, recipient));
            }
            (worker, publisher) => {
                if let Some(fabric) = &self.fabric {
                    fabric.tell(
                        worker,
                        Message::Hold {
                            publisher,
                            recipient,
                        },
                    );
                }
            }
        }
    }

    /// Local `publisher` waits for `blocker` too: read no further.
    pub(super) fn wait(&mut self, ctx: &mut Ctx<'_>, publisher: ConnId, blocker: Blocker) {
        if let Some(p) = self.member(publisher) {
            if !p.waits_on.contains(&blocker) {
                p.waits_on.push(blocker);
            }
            if p.waits_on.len() == 1 {
                ctx.pause(publisher);
            }
        }
    }

    /// Local `publisher` waits for `blocker` no more: read again once it waits for
    /// nothing.
    pub(super) fn unwait(&mut self, ctx: &mut Ctx<'_>, publisher: ConnId, blocker: Blocker) {
        if let Some(p) = self.member(publisher) {
            let before = p.waits_on.len();
            p.waits_on.retain(|&x| x != blocker);
            if before > 0 && p.waits_on.is_empty() {
                ctx.resume(publisher);
            }
        }
    }

    /// `recipient` drained or left: the publishers it held, on any worker, may go on,
    /// each once nobody else holds it.
    pub(super) fn release(&mut self, ctx: &mut Ctx<'_>, recipient: ConnId) {
        let me = self.me();
        let Some(r) = self.member(recipient) else {
            return;
        };
        for (worker, publisher) in mem::take(&mut r.holding) {
            if worker == me {
                self.unwait(ctx, publisher, Blocker::Conn(me, recipient));
            } else if let Some(fabric) = &self.fabric {
                fabric.tell(
                    worker,
                    Message::Release {
                        publisher,
                        recipient,
                    },
                );
            }
        }
    }

    /// Local `publisher` left: the recipients (and links) holding it hold it no more.
    pub(super) fn forget(&mut self, publisher: ConnId) {
        let me = self.me();
        let Some(p) = self.member(publisher) else {
            return;
        };
        for blocker in mem::take(&mut p.waits_on) {
            match blocker {
                Blocker::Conn(worker, recipient) if worker == me => {
                    if let Some(r) = self.member(recipient) {
                        r.holding.retain(|&x| x != (me, publisher));
                    }
                }
                Blocker::Conn(worker, recipient) => {
                    if let Some(fabric) = &self.fabric {
                        fabric.tell(
                            worker,
                            Message::Forget {
                                publisher,
                                recipient,
                            },
                        );
                    }
                }
                Blocker::Link(worker) => {
                    if let Some(held) = self.fabric.as_mut().and_then(|f| f.held.get_mut(worker)) {
                        held.retain(|&x| x != publisher);
                    }
                }
            }
        }
    }

    /// Policy `pace`: the timer of a recipient's holding stretch. If that stretch is
    /// still going, the recipient has kept its publishers waiting too long: they go on
    /// and it is closed.
    pub(super) fn on_hold_timer(&mut self, ctx: &mut Ctx<'_>, tag: u64) {
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
}

/// The tag of `recipient`'s timer for holding stretch `stretch`.
pub(super) fn timer_tag(recipient: ConnId, stretch: u32) -> u64 {
    ((recipient.key() as u64) << 32) | u64::from(stretch)
}
