//! Messages into a reactor from other threads. A [`Notifier`] wakes a reactor's poll
//! and has it call [`Service::on_wake`]; wake-ups are coalesced (one `eventfd` write
//! however many notify before the reactor runs), so a busy sender costs the receiver
//! one wake-up per turn, not one per message. [`link`] is a one-way queue from one
//! reactor's service to another's, bounded in bytes: the sender learns when it has
//! passed the cap ([`Sent::OverCap`]) and is woken once the receiver has taken the
//! queue below half, as a connection's output works. It knows nothing of what the
//! messages mean.
//!
//! [`Service::on_wake`]: crate::service::Service::on_wake

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};

use log::warn;
use mio::Waker;

/// Wakes one reactor from any thread: [`Service::on_wake`] runs in its next turn.
/// Cheap to clone.
///
/// [`Service::on_wake`]: crate::service::Service::on_wake
#[derive(Debug, Clone)]
pub struct Notifier {
    waker: Arc<Waker>,
    /// Set by a notify, cleared by the reactor before it calls the service: a notify
    /// that finds it set has nothing to do (the wake-up is already on its way).
    pending: Arc<AtomicBool>,
}

impl Notifier {
    pub(super) fn new(waker: Arc<Waker>, pending: Arc<AtomicBool>) -> Self {
        Notifier { waker, pending }
    }

    /// Has the reactor call its service's `on_wake` soon (at most one wake-up for any
    /// number of calls before it runs).
    pub fn notify(&self) {
        if !self.pending.swap(true, Ordering::SeqCst) {
            if let Err(e) = self.waker.wake() {
                warn!("cannot wake an event loop: {e}");
            }
        }
    }
}

/// What a message weighs against a [`link`]'s cap: the bytes it keeps alive
/// (control messages weigh nothing: they are bounded by the connections they name).
pub trait Weigh {
    /// Bytes held by the message.
    fn weight(&self) -> usize;
}

/// What [`LinkSender::send`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// Queued; the link is under its cap.
    Queued,
    /// Queued, and the link is now past its cap: the sender should stop producing
    /// until [`LinkSender::has_room`] (its reactor is notified when that becomes
    /// true).
    OverCap,
    /// The receiving reactor is gone: nothing was queued, and nothing ever will be.
    Closed,
}

/// What both ends of a link share.
#[derive(Debug)]
struct LinkState {
    /// Bytes queued and not yet taken by the receiver.
    in_flight: AtomicUsize,
    /// The cap on `in_flight`, in bytes.
    cap: usize,
    /// The sender passed the cap and waits to hear that the queue is below half.
    sender_waiting: AtomicBool,
    /// The receiver is gone.
    closed: AtomicBool,
}

/// The sending end of a [`link`]: owned by one reactor's service.
#[derive(Debug)]
pub struct LinkSender<M> {
    tx: mpsc::Sender<M>,
    state: Arc<LinkState>,
    /// Wakes the receiving reactor.
    to: Notifier,
}

/// The receiving end of a [`link`]: owned by another reactor's service, which takes
/// its messages in `on_wake`.
#[derive(Debug)]
pub struct LinkReceiver<M> {
    rx: mpsc::Receiver<M>,
    state: Arc<LinkState>,
    /// Wakes the sending reactor (room again, or this end gone).
    back: Notifier,
}

/// A one-way queue from the reactor `from` notifies to the one `to` notifies, bounded
/// at `cap` bytes of messages in flight (a message is always queued when the link is
/// empty, whatever its size, as a connection's output takes any frame when idle).
pub fn link<M: Weigh>(
    from: Notifier,
    to: Notifier,
    cap: usize,
) -> (LinkSender<M>, LinkReceiver<M>) {
    let (tx, rx) = mpsc::channel();
    let state = Arc::new(LinkState {
        in_flight: AtomicUsize::new(0),
        cap,
        sender_waiting: AtomicBool::new(false),
        closed: AtomicBool::new(false),
    });
    (
        LinkSender {
            tx,
            state: Arc::clone(&state),
            to,
        },
        LinkReceiver {
            rx,
            state,
            back: from,
        },
    )
}

impl<M: Weigh> LinkSender<M> {
    /// True when a message of `weight` bytes would pass the cap (for a sender that
    /// would rather drop it than wait).
    pub fn would_pass(&self, weight: usize) -> bool {
        let now = self.state.in_flight.load(Ordering::SeqCst);
        now > 0 && now.saturating_add(weight) > self.state.cap
    }

    /// Queues `message` and wakes the receiver.
    pub fn send(&self, message: M) -> Sent {
        if self.is_closed() {
            return Sent::Closed;
        }
        let weight = message.weight();
        let before = self.state.in_flight.fetch_add(weight, Ordering::SeqCst);
        if self.tx.send(message).is_err() {
            self.state.in_flight.fetch_sub(weight, Ordering::SeqCst);
            return Sent::Closed;
        }
        self.to.notify();
        if weight == 0 || before == 0 || before.saturating_add(weight) <= self.state.cap {
            return Sent::Queued;
        }
        self.state.sender_waiting.store(true, Ordering::SeqCst);
        // The receiver may have taken the queue below half before the flag was up;
        // if it did not see the flag, nobody will wake us: we are not over after all.
        if self.has_room() && self.state.sender_waiting.swap(false, Ordering::SeqCst) {
            return Sent::Queued;
        }
        Sent::OverCap
    }

    /// True once the queue is at or under half its cap.
    pub fn has_room(&self) -> bool {
        self.state.in_flight.load(Ordering::SeqCst) <= self.state.cap / 2
    }

    /// True once the receiving end is gone.
    pub fn is_closed(&self) -> bool {
        self.state.closed.load(Ordering::SeqCst)
    }
}

impl<M: Weigh> LinkReceiver<M> {
    /// The next message, if one is queued; taking it below half the cap wakes a
    /// sender that waits for room.
    pub fn try_recv(&self) -> Option<M> {
        let message = self.rx.try_recv().ok()?;
        let weight = message.weight();
        let after = self
            .state
            .in_flight
            .fetch_sub(weight, Ordering::SeqCst)
            .saturating_sub(weight);
        if after <= self.state.cap / 2 && self.state.sender_waiting.swap(false, Ordering::SeqCst) {
            self.back.notify();
        }
        Some(message)
    }
}

impl<M> Drop for LinkReceiver<M> {
    /// The sender's reactor hears that this end is gone (its reactor stopped or
    /// panicked), so it stops waiting on it.
    fn drop(&mut self) {
        self.state.closed.store(true, Ordering::SeqCst);
        self.back.notify();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::{Poll, Token};

    struct Msg(usize);

    impl Weigh for Msg {
        fn weight(&self) -> usize {
            self.0
        }
    }

    fn notifier(poll: &Poll, token: usize) -> (Notifier, Arc<AtomicBool>) {
        let waker = Arc::new(Waker::new(poll.registry(), Token(token)).unwrap());
        let pending = Arc::new(AtomicBool::new(false));
        (Notifier::new(waker, Arc::clone(&pending)), pending)
    }

    #[test]
    fn a_link_says_over_cap_and_wakes_the_sender_below_half() {
        let (a, b) = (Poll::new().unwrap(), Poll::new().unwrap());
        let ((from, from_pending), (to, to_pending)) = (notifier(&a, 0), notifier(&b, 0));
        let (tx, rx) = link::<Msg>(from, to, 100);
        assert_eq!(tx.send(Msg(500)), Sent::Queued, "an empty link takes any");
        assert!(to_pending.load(Ordering::SeqCst), "the receiver is woken");
        assert_eq!(tx.send(Msg(10)), Sent::OverCap);
        assert!(!tx.has_room());
        assert!(!from_pending.load(Ordering::SeqCst));
        assert_eq!(rx.try_recv().map(|m| m.0), Some(500));
        assert!(
            from_pending.load(Ordering::SeqCst),
            "below half: the waiting sender is woken"
        );
        assert!(tx.has_room());
        assert_eq!(rx.try_recv().map(|m| m.0), Some(10));
        assert!(rx.try_recv().is_none());
        assert!(!tx.would_pass(1000), "empty again");
    }

    #[test]
    fn a_dropped_receiver_closes_the_link_and_wakes_the_sender() {
        let (a, b) = (Poll::new().unwrap(), Poll::new().unwrap());
        let ((from, from_pending), (to, _)) = (notifier(&a, 0), notifier(&b, 0));
        let (tx, rx) = link::<Msg>(from, to, 100);
        drop(rx);
        assert!(from_pending.load(Ordering::SeqCst));
        assert!(tx.is_closed());
        assert_eq!(tx.send(Msg(1)), Sent::Closed);
    }
}
