//! Sans-IO protocols the daemon speaks outward, as a client: bytes in, events out,
//! encoders for what it sends; no sockets, no clocks. The reactor carries their bytes
//! over connections of its own ([`crate::Ctx::connect`]).
//!
//! - [`nats`]: the NATS client protocol, for the broadcast bridge (`--bridge`).

pub mod nats;
