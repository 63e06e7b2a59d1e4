//! File sources: `type = "file"` (read by `relais import`, see `app::import`), `watch` (a folder), `tail` (a
//! growing file). They read CSV or JSON through [`crate::parse`] and push
//! samples, quarantined records and their read progress into the ring as one
//! group, so a restart resumes exactly where the last commit ended.

pub mod component;
pub mod config;
pub mod ingest;
pub mod tail;
pub mod watch;
