//! HTTPS sink (reqwest + rustls): JSON batches or InfluxDB line protocol
//! POSTed to an ingestion endpoint; 2xx moves the cursor; `Retry-After`
//! honoured; a batch refused for good goes to the quarantine record by
//! record; `Idempotency-Key` with the first and last `seq`.
//!
//! - [`config`]: `[[sink]]` entries with `type = "http"`.
//! - [`encode`]: bodies (pure).
//! - [`sink`]: HTTP's side of the shared [`crate::sinks::driver`].
//! - [`component`]: the component contract.

pub mod component;
pub mod config;
pub mod encode;
pub mod sink;
