//! Small runtime helpers every component uses, written once: reconnect
//! backoff with jitter ([`backoff`]), rate-limited log lines ([`ratelimit`]),
//! the panic-restart supervisor of long-running tasks ([`supervise`]) and
//! credentials out of URLs and error texts ([`redact`]), names from data
//! made safe for a log line ([`escape`]), TLS client files and settings
//! ([`tls`]).
//!
//! Layer: above `model`/`units`, below everything else; nothing here knows a
//! component.

pub mod backoff;
pub mod escape;
pub mod exit;
pub mod ratelimit;
pub mod redact;
pub mod supervise;
pub mod tls;

pub use backoff::{Backoff, DEFAULT_RECONNECT_MAX, exponential, jitter};
pub use ratelimit::RateLimited;
pub use supervise::supervise;
