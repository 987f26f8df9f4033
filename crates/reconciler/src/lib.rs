//! Webhooks in, exact stats out (ARCHITECTURE §8).
//!
//! The [`receiver`] answers Meta's verification handshake and stores signed deliveries in the
//! store's stream, answering 200 only once a delivery is durable. The reconciler ([`apply`],
//! run by [`consumer::run`]) reads the stream and applies every status, inbound message,
//! preference and event to the store: statuses move jobs forward on the delivery lattice (and
//! settle in-doubt jobs by their callback id), inbound messages open 24 h windows and count
//! replies, opt-outs suppress, template stops pause campaigns. Whatever arrives twice, out of
//! order, or damaged changes nothing it should not; damage is counted and kept as dead letters.

pub mod apply;
pub mod consumer;
pub mod receiver;

pub use apply::{OptInReply, Reconciler, ReconcilerConfig, SendText, SendTextFuture};
pub use consumer::{ConsumerConfig, run};
pub use receiver::{BODY_LIMIT, ReceiverConfig, WEBHOOK_PATH, routes};
