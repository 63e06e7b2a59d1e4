//! Northbound sinks: each reads committed samples after its own cursor,
//! delivers them, and moves the cursor only once the far end acknowledged them.

pub mod driver;
pub mod mqtt;
