//! NATS JetStream sink (`type = "nats"`): publishes committed records to a
//! JetStream stream, each with `Nats-Msg-Id = {gateway}:{seq}`, and moves
//! the cursor only on the PubAck. Exactly once in the stream across
//! crashes and outages of any length: see `README.md` beside this file.

pub mod component;
pub mod config;
pub mod encode;
pub mod headers;
pub mod publish;
pub mod sink;
pub mod stream;
pub mod subject;
