//! HTTP ingest: `POST /ingest/{source}` with CSV, JSON or JSON Lines.

pub mod config;
pub mod server;
