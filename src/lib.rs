//! framecast: a single-threaded, readiness-based TCP daemon that cuts byte streams into
//! frames — however the kernel splits or merges them ("half" and "sticky" packets) — and
//! echoes them to their sender.
//!
//! # Layout
//! - [`config`]: [`Config`]: what to listen on, the mode and every limit.
//! - [`access`]: allow/deny lists of address blocks (pure).
//! - [`fd_limit`]: raising the open-file limit so `--max-connections` is reachable.
//! - [`codec`]: sans-IO framing (length-prefixed, line, fixed, raw) and [`Framing`], the
//!   framings by name; no sockets, no clocks.
//! - [`mode`]: where a complete frame goes; pure decisions, no I/O.
//! - [`server`]: the mio reactor: listeners, a slab of connections, read/frame/flush.
//! - [`units`]: sizes and durations in their textual forms (`8MiB`, `30s`).
//! - `src/bin/framecast.rs`: the daemon's command line (feature `cli`, on by default).
//! - `framecast-bench/`: the load generator, a crate of its own that uses the codecs.
//!
//! # Example
//! ```no_run
//! use framecast::{Config, Server};
//!
//! let mut config = Config::default();
//! config.listen = vec!["127.0.0.1:0".parse().unwrap()];
//! let mut server = Server::bind(config).unwrap();
//! println!("listening on {:?}", server.local_addrs());
//! server.run().unwrap();
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod access;
pub mod codec;
pub mod config;
pub mod fd_limit;
pub mod mode;
pub mod server;
pub mod units;

pub use codec::Framing;
pub use codec::{Codec, Decoder, Encoder, FrameError};
pub use config::Config;
pub use mode::Mode;
pub use server::{Server, StartError};
