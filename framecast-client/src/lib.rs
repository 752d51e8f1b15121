//! framecast-client: a client for people. Talk to a framed port by hand, chat through a
//! broadcast daemon, script a few frames, or send a file and check its echo.
//!
//! # Layout
//! - [`args`]: the command line ([`Args`]), checked by clap (exit code 2).
//! - [`target`]: the address forms (`HOST:PORT`, a port, `tcp://`, `unix:`, `tls://`,
//!   `udp://`).
//! - [`datagram`]: the UDP run: lines as datagrams, datagrams as lines.
//! - [`session`]: the mio loop over the socket and the stdin thread's waker.
//! - [`input`]: the stdin thread, line by line, through a bounded channel.
//! - [`recv`]: received bytes cut into frames with the library's codecs, large frames
//!   streamed in pieces.
//! - [`wire`]: a file as one frame, streamed, and the check of its echo.
//! - [`show`]: a payload as one escaped line or a hex dump.
//! - [`failure`]: what went wrong, as one line and an exit code ([`failure::exit`]).

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod args;
pub mod datagram;
pub mod failure;
pub mod input;
pub mod recv;
pub mod session;
pub mod show;
pub mod target;
pub mod wire;

pub use args::Args;
pub use failure::Failure;
pub use session::run;
