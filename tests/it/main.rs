//! relais integration tests: one test binary (one link) with a module per area.
//!
//! Tests that need Mosquitto (or nats-server) start their own broker on a free port; when the
//! `mosquitto` binary is missing they are skipped with a message, unless
//! `RELAIS_REQUIRE_BROKER=1` (`RELAIS_REQUIRE_NATS=1` for nats-server; both set
//! by `.ci/run`), which turns the skip into a failure. Tests that need the SKAB data look for `../shared/data/skab`.

mod admin;
mod admin_api;
mod admin_metrics;
mod audit;
mod buffer;
mod buffer_faults;
mod checks;
mod clock;
mod cloud;
mod commands;
mod commands_puback;
mod common;
mod config;
mod daemon;
mod dashboard;
mod decode;
mod deploy;
mod detect;
mod exit_codes;
mod files;
mod fuzz;
mod history;
mod hostile;
mod http_sink;
mod ingest;
mod lab;
mod layering;
mod modbus;
mod modbus_faults;
mod modbus_lint;
mod modbus_sched;
mod modbus_write;
mod mqtt;
mod multi_sink;
mod nats_common;
mod nats_sink;
mod opcua;
mod opcua_interop;
mod opcua_write;
mod parse;
mod planner;
mod postgres;
mod postgres_dead;
mod postgres_faults;
mod postgres_timescale;
mod proxy;
mod puback_proxy;
mod records;
mod reload;
mod rules;
mod secrets;
mod security;
mod sim;
mod sim_faults;
mod sparkplug;
mod sparkplug_check;
mod status;
mod usability;
mod watch;
mod write_guards;
