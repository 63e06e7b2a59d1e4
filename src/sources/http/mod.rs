//! HTTP ingest: `POST /ingest/{source}` with CSV, JSON or JSON Lines.

pub mod burst;
pub mod component;
pub mod config;
pub mod listen;
pub mod server;
