//! A greeting before anything else: wraps any service and sends one frame to each new
//! connection before the service sees it (`--greeting`, the tutorials' "欢迎光临").

use log::debug;

use super::{Closed, ConnId, Ctx, Frame, Frames, Peer, Service};

/// `inner`, with `text` sent as the first frame on every connection.
#[derive(Debug)]
pub struct Greeting<S> {
    text: Vec<u8>,
    inner: S,
}

impl<S> Greeting<S> {
    /// Greets with `text` (a payload, framed in each connection's framing), then
    /// serves as `inner` does.
    pub fn new(text: impl Into<Vec<u8>>, inner: S) -> Self {
        Greeting {
            text: text.into(),
            inner,
        }
    }

    /// The service it wraps, to wire it up before the reactor runs.
    pub fn inner_mut(&mut self) -> &mut S {
        &mut self.inner
    }
}

impl<S: Service> Service for Greeting<S> {
    fn on_open(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, peer: &Peer) {
        if let Err(e) = ctx.send_frame(conn, &self.text) {
            debug!("{peer}: no greeting: {e}");
        }
        self.inner.on_open(ctx, conn, peer);
    }

    fn on_frames(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, frames: Frames) {
        self.inner.on_frames(ctx, conn, frames);
    }

    fn on_frame(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, frame: Frame) {
        self.inner.on_frame(ctx, conn, frame);
    }

    fn on_drain(&mut self, ctx: &mut Ctx<'_>, conn: ConnId) {
        self.inner.on_drain(ctx, conn);
    }

    fn on_body_done(&mut self, ctx: &mut Ctx<'_>, conn: ConnId) {
        self.inner.on_body_done(ctx, conn);
    }

    fn on_close(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, why: &Closed) {
        self.inner.on_close(ctx, conn, why);
    }

    fn on_timer(&mut self, ctx: &mut Ctx<'_>, tag: u64) {
        self.inner.on_timer(ctx, tag);
    }

    fn on_wake(&mut self, ctx: &mut Ctx<'_>) {
        self.inner.on_wake(ctx);
    }

    fn on_start(&mut self, ctx: &mut Ctx<'_>) {
        self.inner.on_start(ctx);
    }

    fn on_shutdown(&mut self, ctx: &mut Ctx<'_>) {
        self.inner.on_shutdown(ctx);
    }

    fn echoes_verbatim(&self) -> bool {
        // The greeting is not an echo: the kernel must not splice past it.
        false
    }

    fn report(&self, report: &mut super::Report) {
        self.inner.report(report);
    }

    fn describe(&self) -> String {
        format!("{}, greeting each connection", self.inner.describe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reactor::FakeCtx;
    use crate::service::Echo;
    use crate::Config;

    #[test]
    fn the_greeting_comes_before_anything_the_inner_service_sends() {
        let mut fake = FakeCtx::new(Config::default());
        let mut service = Greeting::new("欢迎光临", Echo);
        let conn = fake.open();
        service.on_open(
            &mut fake.ctx(),
            conn,
            &Peer::Ip("127.0.0.1:1".parse().unwrap()),
        );
        let frames = fake.frames(conn, &[b"hi"]);
        service.on_frames(&mut fake.ctx(), conn, frames);
        assert_eq!(
            fake.sent_payloads(conn),
            ["欢迎光临".as_bytes().to_vec(), b"hi".to_vec()]
        );
    }
}
