//! Small runtime helpers every component uses, written once: reconnect
//! backoff with jitter ([`backoff`]), rate-limited log lines ([`ratelimit`])
//! and the panic-restart supervisor of long-running tasks ([`supervise`]).
//!
//! Layer: above `model`/`units`, below everything else; nothing here knows a
//! component.

pub mod backoff;
pub mod exit;
pub mod ratelimit;
pub mod supervise;

pub use backoff::{Backoff, exponential, jitter};
pub use ratelimit::RateLimited;
pub use supervise::supervise;
