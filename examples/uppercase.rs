//! A custom service in a few lines: every frame's payload comes back upper-cased, and
//! `QUIT` gets "bye" and a clean close. Speaks u32be frames on 127.0.0.1:7070 by
//! default; try it with `framecast-client` or any length-prefixed client.
//!
//! `cargo run --example uppercase -- [ADDR]`

use std::process::ExitCode;

use framecast::service::{ConnId, Ctx, Frame, Service};
use framecast::{Config, Reactor};

/// The service: all its state is none.
struct Uppercase;

impl Service for Uppercase {
    fn on_frame(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, frame: Frame) {
        if frame.payload() == b"QUIT" {
            if let Ok(bye) = ctx.encode(conn, b"bye") {
                ctx.close_after(conn, bye);
            }
            return;
        }
        let upper = frame.payload().to_ascii_uppercase();
        if let Err(e) = ctx.send_frame(conn, &upper) {
            log::debug!("{conn}: {e}");
        }
    }

    fn describe(&self) -> String {
        "uppercase".into()
    }
}

fn main() -> ExitCode {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| framecast::config::DEFAULT_LISTEN.into());
    let listen = match framecast::config::parse_listen(&addr) {
        Ok(listen) => listen,
        Err(e) => {
            eprintln!("uppercase: {e}");
            return ExitCode::from(2);
        }
    };
    let config = Config {
        listen,
        ..Config::default()
    };
    let mut reactor = match Reactor::bind(config, Uppercase) {
        Ok(reactor) => reactor,
        Err(e) => {
            eprintln!("uppercase: {e}");
            return ExitCode::from(1);
        }
    };
    for addr in reactor.local_addrs() {
        println!("uppercase listening on {addr}");
    }
    match reactor.run() {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("uppercase: {e}");
            ExitCode::from(1)
        }
    }
}
