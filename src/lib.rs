//! framecast: a readiness-based reactor (and the daemon built on it) that cuts byte
//! streams (TCP, Unix-domain sockets, TLS) into frames — however the kernel splits or merges them ("half" and
//! "sticky" packets) — and hands each complete frame to a [`Service`].
//!
//! # Architecture
//! Two halves with one seam between them:
//! - **Moving bytes** is the [`Reactor`]'s: one thread, one `mio::Poll`, a slab of
//!   entries (listeners, connections, UDP sockets, a waker) whose keys are the tokens;
//!   every stream is a [`reactor::Stream`], TCP, Unix or TLS alike. It reads each
//!   connection until `WouldBlock`, cuts its input with the connection's [`Codec`],
//!   writes output with vectored writes, keeps memory within [`Config`]'s caps
//!   (backpressure, bodies pulled as the peer drains), runs the timers, survives
//!   descriptor exhaustion and closes in two phases. UDP datagrams it echoes itself
//!   (RFC 862): they have no stream to frame.
//! - **Deciding what a frame means** is a [`Service`]'s: it is called with runs of
//!   frames, opens, closes, drains and timers, and acts only through a [`Ctx`] (send,
//!   close, pause, resume, set a timer, read the limits and counters). It never touches
//!   a socket. [`service::Echo`] and [`service::Broadcast`] are the daemon's two modes.
//!
//! The codecs know nothing of sockets and the reactor knows no framing or service by
//! name, so each part is tested on its own: codecs by feeding bytes in any chunking,
//! services against the real reactor on loopback.
//!
//! # Layout
//! - [`codec`]: sans-IO framing (length-prefixed, line, fixed, raw) and [`Framing`], the
//!   framings by name; no sockets, no clocks.
//! - [`reactor`]: the mio event loop, [`Ctx`], [`Handle`] (shutdown from another thread),
//!   [`reactor::Stats`].
//! - [`service`]: the [`Service`] trait and the services: echo, broadcast, greeting.
//! - [`config`]: [`Config`]: what to listen on and every limit, validated in one place.
//! - [`listen`]: [`Listen`], the listener kinds and their address forms (`tcp://`,
//!   `unix:`, `udp://`, `tls://`).
//! - [`access`]: allow/deny lists of address blocks (pure).
//! - [`admin`]: the admin endpoint's HTTP (`/metrics`, `/stats`, `/healthz`, `/connz`),
//!   sans-IO; the reactor serves its connections, apart from the service's.
//! - [`proto`]: sans-IO protocols spoken outward (NATS, for the broadcast bridge).
//! - [`fd_limit`]: raising the open-file limit so `max_connections` is reachable.
//! - [`units`]: sizes and durations in their textual forms (`8MiB`, `30s`).
//! - [`workers`]: N reactors on N threads (`--workers`), each with its own
//!   `SO_REUSEPORT` listener; counters summed for the admin endpoint.
//! - `src/bin/framecast.rs`: the daemon's command line (feature `cli`, on by default;
//!   an embedding user turns default features off and compiles no CLI, logger or
//!   signal handling).
//! - `framecast-bench/`: the load generator, a crate of its own that uses the codecs.
//!
//! # A service of your own
//! Upper-cases every frame's payload and sends it back; `QUIT` closes politely. (The
//! same service runs as `cargo run --example uppercase`.)
//! ```
//! use framecast::service::{ConnId, Ctx, Frame, Service};
//! use framecast::{Config, Reactor};
//!
//! struct Uppercase;
//!
//! impl Service for Uppercase {
//!     fn on_frame(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, frame: Frame) {
//!         if frame.payload() == b"QUIT" {
//!             if let Ok(bye) = ctx.encode(conn, b"bye") {
//!                 ctx.close_after(conn, bye);
//!             }
//!             return;
//!         }
//!         let upper = frame.payload().to_ascii_uppercase();
//!         if let Err(e) = ctx.send_frame(conn, &upper) {
//!             log::debug!("{conn}: {e}");
//!         }
//!     }
//! }
//!
//! let config = Config {
//!     listen: vec!["127.0.0.1:0".parse()?],
//!     ..Config::default()
//! };
//! let mut reactor = Reactor::bind(config, Uppercase)?;
//! let addr = reactor.local_addrs()[0];
//! let handle = reactor.handle();
//! let server = std::thread::spawn(move || reactor.run());
//!
//! use std::io::{Read, Write};
//! let mut client = std::net::TcpStream::connect(addr)?;
//! client.write_all(b"\0\0\0\x05hello")?; // one u32be frame
//! let mut reply = [0; 9];
//! client.read_exact(&mut reply)?;
//! assert_eq!(&reply, b"\0\0\0\x05HELLO");
//!
//! drop(client);
//! handle.shutdown("the example is done");
//! assert!(server.join().is_ok());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod access;
pub mod admin;
pub mod codec;
pub mod config;
pub mod fd_limit;
pub mod listen;
pub mod proto;
pub mod reactor;
pub mod service;
pub mod units;
pub mod workers;

pub use codec::Framing;
pub use codec::{Codec, Decoder, Encoder, FrameError};
pub use config::Config;
pub use listen::Listen;
pub use reactor::{Ctx, Handle, Reactor, StartError, Stopped};
pub use service::Service;
