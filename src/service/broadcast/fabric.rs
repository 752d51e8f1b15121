//! Rooms across workers (`--workers N`): each worker's broadcast has a [`Fabric`],
//! its ends of one [`link`] to and from every other worker. A run of frames published
//! on worker i goes, as the same shared `Bytes`, down each of i's links, and each
//! worker offers it to its own members of the room under the slow-consumer policy,
//! as it offers a local publisher's frames. Per-publisher order holds: a link is a
//! FIFO, and each worker delivers in the order it takes.
//!
//! Under `pace` the hold is end to end: a recipient on worker j past the cap with a
//! publisher's frames sends [`Message::Hold`] back to the publisher's worker, which
//! reads the publisher no further until [`Message::Release`]; a link past its own
//! cap (the receiving worker is behind) holds the publisher as a slow recipient
//! would, until the receiver has taken it below half. Under `disconnect` and `drop`
//! a full link drops the run for that worker (counted as dropped frames), and each
//! worker applies the policy to its own recipients.

use bytes::Bytes;

use super::ConnId;
use crate::reactor::mailbox::{link, LinkReceiver, LinkSender, Notifier, Weigh};
use crate::reactor::CHUNK_COST;

/// What one worker's broadcast tells another's.
#[derive(Debug)]
pub enum Message {
    /// A run of `count` frames `publisher` published (on the sending worker) in the
    /// room named `room` (empty without rooms), for the receiver's members of it.
    Frames {
        /// The publisher, on the sending worker.
        publisher: ConnId,
        /// The room's name.
        room: Bytes,
        /// The frames, wire bytes, shared with every other recipient.
        frames: Bytes,
        /// How many.
        count: u64,
    },
    /// `recipient` (on the sending worker) is past the cap with `publisher`'s frames:
    /// the receiver, `publisher`'s worker, reads it no further until released.
    Hold {
        /// On the receiving worker.
        publisher: ConnId,
        /// On the sending worker.
        recipient: ConnId,
    },
    /// `recipient` drained or left: it holds `publisher` no more.
    Release {
        /// On the receiving worker.
        publisher: ConnId,
        /// On the sending worker.
        recipient: ConnId,
    },
    /// `publisher` (on the sending worker) left: `recipient` (on the receiver) holds
    /// it no more.
    Forget {
        /// On the sending worker.
        publisher: ConnId,
        /// On the receiving worker.
        recipient: ConnId,
    },
}

impl Weigh for Message {
    fn weight(&self) -> usize {
        match self {
            Message::Frames { frames, .. } => frames.len() + CHUNK_COST,
            _ => 0,
        }
    }
}

/// One worker's ends of the links to and from every other worker.
#[derive(Debug)]
pub struct Fabric {
    /// This worker's index.
    pub(super) me: usize,
    /// To each worker, by index: `None` for this one and for a worker gone.
    pub(super) out: Vec<Option<LinkSender<Message>>>,
    /// From each other worker, with its index.
    pub(super) inbox: Vec<(usize, LinkReceiver<Message>)>,
    /// By worker: the publishers held because the link to it passed its cap.
    pub(super) held: Vec<Vec<ConnId>>,
}

impl Fabric {
    /// Workers in the mesh, this one included.
    pub fn workers(&self) -> usize {
        self.out.len()
    }

    /// Queues a control message for worker `to`, if it is still there.
    pub(super) fn tell(&self, to: usize, message: Message) {
        if let Some(Some(out)) = self.out.get(to) {
            let _ = out.send(message);
        }
    }
}

/// A fabric for each of the workers `notifiers` wake (in their order), each linked
/// to every other with links of `cap` bytes (the output cap: a link is a recipient
/// that stands for a whole worker).
pub fn mesh(notifiers: &[Notifier], cap: usize) -> Vec<Fabric> {
    let n = notifiers.len();
    let mut fabrics: Vec<Fabric> = (0..n)
        .map(|me| Fabric {
            me,
            out: (0..n).map(|_| None).collect(),
            inbox: Vec::with_capacity(n.saturating_sub(1)),
            held: vec![Vec::new(); n],
        })
        .collect();
    for from in 0..n {
        for to in (0..n).filter(|&to| to != from) {
            let (tx, rx) = link(notifiers[from].clone(), notifiers[to].clone(), cap);
            fabrics[from].out[to] = Some(tx);
            fabrics[to].inbox.push((from, rx));
        }
    }
    fabrics
}
