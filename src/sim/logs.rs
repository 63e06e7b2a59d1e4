//! Library log events the simulator turns down.
//!
//! async-opcua's server logs an ERROR ("Connection failed while waiting for
//! channel to be established") for every TCP connection that closes before
//! it sent an OPC UA Hello: a health check, a port scan, `nc -z`. For a
//! simulator that is no error (issue 9 item 23): [`Downgrade`] drops that
//! event and logs it again at DEBUG under the target `relais::sim::opcua`.

use std::fmt::Write as _;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// Target of the async-opcua event turned down.
const TARGET: &str = "opcua_server::session::controller";
/// Start of its message.
const MESSAGE: &str = "Connection failed while waiting for channel to be established";

/// A tracing layer that turns the library's "connection failed before a
/// channel was established" ERROR into a DEBUG line of the simulator.
#[derive(Debug, Default, Clone, Copy)]
pub struct Downgrade;

struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        }
    }
}

impl<S: Subscriber> Layer<S> for Downgrade {
    fn event_enabled(&self, event: &Event<'_>, _cx: Context<'_, S>) -> bool {
        let meta = event.metadata();
        if *meta.level() != Level::ERROR || meta.target() != TARGET {
            return true;
        }
        let mut m = Message(String::new());
        event.record(&mut m);
        if !m.0.starts_with(MESSAGE) {
            return true;
        }
        let reason = m.0[MESSAGE.len()..].trim_start_matches(':').trim();
        tracing::debug!(target: "relais::sim::opcua", reason, "OPC UA connection closed before it opened a channel (a health check or port scan?)");
        false
    }
}
