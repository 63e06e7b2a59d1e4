//! Local history and rollups (issue 14, "the data cube"): every committed
//! sample is kept raw for a while (`[history] raw`, default 24 h) and summed
//! per tag and minute (`minutes`, default 7 days) and per tag and hour
//! (`hours`, default 90 days), in `history.db` beside the buffer; `relais
//! query` and `GET /api/query` read it. `docs/history.md` explains the cube
//! for students.
//!
//! ```text
//! buffer writer ─► committed-data tap ─► collect (raw rows, Agg per tag×minute, tag×hour)
//!                        │ missed range          │ every flush_interval, one transaction
//!                        └─► buffer Reader ──────┴─► store (history.db) ─► query ─► output
//! ```
//!
//! - [`agg`]: the rollup math (pure): count, good, bad, min, max, mean, last.
//! - [`config`]: the `[history]` section.
//! - [`collect`], [`store`], [`run`]: the writer in the daemon.
//! - [`spec`], [`query`], [`output`]: reading it back (CLI and admin API).
//!
//! Invariants (details in each module): history only holds committed
//! samples, each once (`last_seq` is written with the rows); it never slows
//! ingest (it reads the tap and, when it falls behind, the buffer read-only);
//! min/max/mean/last summarise good numeric values only, never a bad one;
//! its retention is its own and never touches the forwarding buffer's.

pub mod agg;
pub mod collect;
pub mod config;
pub mod output;
pub mod query;
pub mod run;
pub mod spec;
pub mod store;

pub use config::HistoryConfig;
