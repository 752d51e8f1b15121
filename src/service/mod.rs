//! Services: what a complete frame means. A [`Service`] is driven by the reactor
//! through callbacks and acts only through a [`Ctx`]: it sends, closes, pauses and sets
//! timers, and never touches a socket, a clock or a buffer. So every service is small
//! and can be tested against the real reactor on loopback, or its decisions alone.
//!
//! - [`echo`]: every frame back to its sender (RFC 862 for `raw`), zero-copy.
//! - [`broadcast`]: every frame to every other client, with a slow-consumer policy.
//! - [`greeting`]: any service, with a first frame sent to each new connection.
//! - [`report`]: what a service shows on the admin endpoint (broadcast: its rooms).

pub mod broadcast;
pub mod echo;
pub mod greeting;
pub mod report;

pub use crate::reactor::{Closed, ConnId, Ctx, Frame, Frames, Peer};
pub use broadcast::{Broadcast, SlowConsumer};
pub use echo::Echo;
pub use greeting::Greeting;
pub use report::Report;

/// Per-frame logic driven by the reactor. Every method has a default that does
/// nothing (or, for [`Service::on_frames`], hands each frame to
/// [`Service::on_frame`]), so a service implements only what it needs.
///
/// The reactor keeps every hard part: readiness, draining to `WouldBlock`, partial
/// writes, limits, timers, backpressure on a sender whose own output is full,
/// two-phase close, descriptor exhaustion.
pub trait Service {
    /// The reactor is about to run its first turn: a service that opens connections
    /// of its own ([`Ctx::connect`]) starts here.
    fn on_start(&mut self, ctx: &mut Ctx<'_>) {
        let _ = ctx;
    }

    /// A graceful shutdown began: nothing more is accepted and every connection is
    /// flushed and closed as it goes quiet. A service that opened connections of its
    /// own ([`Ctx::connect`]) closes them here, and opens no more.
    fn on_shutdown(&mut self, ctx: &mut Ctx<'_>) {
        let _ = ctx;
    }

    /// A connection was accepted from `peer` (on any stream listener: TCP, Unix or
    /// TLS, all served alike).
    fn on_open(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, peer: &Peer) {
        let _ = (ctx, conn, peer);
    }

    /// A run of complete frames arrived on `conn`, in order. The default splits it and
    /// calls [`Service::on_frame`] for each; a service that passes runs on whole
    /// (echo, broadcast) overrides this and takes them with [`Ctx::echo`] or
    /// [`Ctx::take`], which copy nothing.
    fn on_frames(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, frames: Frames) {
        for frame in ctx.split(frames) {
            self.on_frame(ctx, conn, frame);
        }
    }

    /// One complete frame arrived on `conn` (see [`Service::on_frames`]).
    fn on_frame(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, frame: Frame) {
        let _ = (ctx, conn, frame);
    }

    /// `conn`'s queued output fell to half of `max_output` or below, having been above
    /// it: there is room to send more.
    fn on_drain(&mut self, ctx: &mut Ctx<'_>, conn: ConnId) {
        let _ = (ctx, conn);
    }

    /// A body sent to `conn` with [`Ctx::send_body`] gave its last chunk and was
    /// dropped (its bytes may still be on their way). A service that paused a
    /// connection while it streams resumes it here. Called once per body that ends,
    /// in order; not for a body cut short by the connection closing.
    fn on_body_done(&mut self, ctx: &mut Ctx<'_>, conn: ConnId) {
        let _ = (ctx, conn);
    }

    /// `conn` is gone: nothing more can be sent to it. Called once per connection.
    fn on_close(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, why: &Closed) {
        let _ = (ctx, conn, why);
    }

    /// Another thread called a [`Notifier`] of this reactor
    /// ([`Reactor::notifier`]): a message for the service is waiting (from another
    /// worker, say). Called at most once per loop turn however many notified; the
    /// service takes what waits for it in queues of its own
    /// ([`crate::reactor::mailbox::link`]).
    ///
    /// [`Notifier`]: crate::reactor::Notifier
    /// [`Reactor::notifier`]: crate::Reactor::notifier
    fn on_wake(&mut self, ctx: &mut Ctx<'_>) {
        let _ = ctx;
    }

    /// A timer set with [`Ctx::set_timer`] came due.
    fn on_timer(&mut self, ctx: &mut Ctx<'_>, tag: u64) {
        let _ = (ctx, tag);
    }

    /// True when every frame goes back to its sender alone and unchanged, so an
    /// unframed stream may be echoed by the kernel without entering the daemon
    /// (`Config::splice`). Only [`Echo`] says so.
    fn echoes_verbatim(&self) -> bool {
        false
    }

    /// Fills in what the admin endpoint shows of the service beside the reactor's
    /// counters (`/stats`, `/metrics`): broadcast reports one row per room. Called
    /// only when an admin request asks, never on the data path.
    fn report(&self, report: &mut Report) {
        let _ = report;
    }

    /// A few words for the start-up line: the service and its settings.
    fn describe(&self) -> String {
        String::from("custom service")
    }
}
