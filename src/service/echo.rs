//! Echo: every frame goes back to its sender, in order, byte for byte. The run of
//! frames a read completed is written straight from the read buffer when nothing is
//! queued ahead of it (no copy, no refcount); what the socket will not take waits in
//! the sender's output, and the reactor stops reading a sender whose output is full.

use super::{ConnId, Ctx, Frames, Service};

/// The echo service (`--mode echo`).
#[derive(Debug, Default, Clone, Copy)]
pub struct Echo;

impl Service for Echo {
    fn on_frames(&mut self, ctx: &mut Ctx<'_>, _conn: ConnId, frames: Frames) {
        ctx.echo(frames);
    }

    fn echoes_verbatim(&self) -> bool {
        true
    }

    fn describe(&self) -> String {
        String::from("echo")
    }
}
