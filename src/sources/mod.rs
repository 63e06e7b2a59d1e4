//! Southbound sources: they turn device data into [`crate::model::Sample`]s and
//! push them into the ingest ring. A source never touches SQLite or a sink.

pub mod modbus;
