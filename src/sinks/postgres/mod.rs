//! PostgreSQL / TimescaleDB sink (tokio-postgres): each batch is one
//! transaction (binary COPY straight into the table, or, once the primary
//! key refused a row already there, into a session table and then `INSERT …
//! ON CONFLICT (gateway, seq) DO NOTHING`), so a resend never stores a
//! record twice; batches load on `connections` connections side by side and
//! the cursor moves over the committed ones only; a row refused for good goes to the
//! quarantine with its SQLSTATE while the rest of its batch commits.
//!
//! - [`config`]: `[[sink]]` entries with `type = "postgres"`.
//! - [`schema`]: the tables, the rollup view and the load statements (pure SQL text).
//! - [`encode`]: records as rows (pure).
//! - [`load`]: one batch in one transaction, refused rows set apart.
//! - [`connect`]: a connection with keepalives, the tables ready.
//! - [`sink`]: PostgreSQL's side of the shared [`crate::sinks::driver`].
//! - [`component`]: the component contract.

pub mod component;
pub mod config;
pub mod connect;
pub mod encode;
pub mod load;
pub mod schema;
pub mod sink;
