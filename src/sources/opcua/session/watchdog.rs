//! Two checks that a session which looks connected still works:
//!
//! - the heartbeat on the server's clock (`Server.ServerStatus.CurrentTime`,
//!   i=2258), read every `keep_alive` beside the library's keep-alive read of
//!   the server state: a server whose clock stops (a hung runtime that still
//!   answers) or that fails three reads in a row gets a new session. The
//!   offset to our clock is logged once when above 5 s (timestamps from that
//!   server are off by as much);
//! - the publish watchdog: with subscriptions, the server answers a Publish
//!   at least every keep_alive (a keep-alive message when nothing changed,
//!   Part 4 §5.13.1). Silence for 3 × that + 5 s: trigger a Publish; still
//!   silent one period later: the subscriptions are dead, new session.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use opcua::client::Session;
use opcua::types::{ReadValueId, TimestampsToReturn, VariableId, Variant};
use tokio::time::Instant;

use super::Device;
use super::connection::End;
use crate::model::{Timestamp, reason};
use crate::sources::opcua::config::OpcUaDevice;

/// The heartbeat's state (see the module doc).
pub(super) struct Heartbeat {
    every: Duration,
    next: Instant,
    last: Option<i64>,
    frozen: u32,
    failed: u32,
    skew_warned: bool,
}

impl Heartbeat {
    /// A heartbeat every `every` (the device's keep_alive), the first one
    /// `every` from now.
    pub(super) fn new(every: Duration) -> Heartbeat {
        Heartbeat { every, next: Instant::now() + every, last: None, frozen: 0, failed: 0, skew_warned: false }
    }

    /// When the next beat is due.
    pub(super) fn due(&self) -> Instant {
        self.next
    }

    /// Reads the server's clock once; `Some(why)` when the session is to be
    /// replaced.
    async fn beat(&mut self, session: &Arc<Session>, dev: &OpcUaDevice) -> Option<String> {
        let r = session
            .read(&[ReadValueId::new_value(VariableId::Server_ServerStatus_CurrentTime.into())], TimestampsToReturn::Neither, 0.0)
            .await;
        let t = match r.ok().and_then(|v| v.into_iter().next()).and_then(|dv| dv.value) {
            Some(Variant::DateTime(t)) => crate::sources::opcua::convert::timestamp(&t),
            _ => None,
        };
        let Some(t) = t else {
            self.failed += 1;
            return (self.failed >= 3).then(|| format!("the server's CurrentTime could not be read {} times in a row", self.failed));
        };
        self.failed = 0;
        let skew = (t.0 - Timestamp::now().0) / 1_000_000;
        if skew.abs() > 5_000 && !self.skew_warned {
            self.skew_warned = true;
            tracing::warn!(device = %dev.name, skew_ms = skew, "the server's clock differs from ours by more than 5 s; its SourceTimestamps are used as ts as they are");
        }
        if self.last == Some(t.0) {
            self.frozen += 1;
        } else {
            self.frozen = 0;
        }
        self.last = Some(t.0);
        (self.frozen >= 3).then(|| "the server's CurrentTime stopped advancing (server hung)".to_string())
    }
}

/// The publish watchdog's state (see the module doc).
pub(super) struct PublishWatchdog {
    silence: Duration,
    next: Instant,
    nudged: bool,
}

impl PublishWatchdog {
    /// The watchdog of a session with `keep_alive`.
    pub(super) fn new(keep_alive: Duration) -> PublishWatchdog {
        let silence = keep_alive * 3 + Duration::from_secs(5);
        PublishWatchdog { silence, next: Instant::now() + silence, nudged: false }
    }

    /// When the next check is due.
    pub(super) fn due(&self) -> Instant {
        self.next
    }

    /// A session became active: silence counts from now.
    pub(super) fn reset(&mut self) {
        self.next = Instant::now() + self.silence;
        self.nudged = false;
    }
}

impl Device {
    /// The heartbeat is due: beat, and end the session when it says so.
    pub(super) async fn beat(&mut self, session: &Arc<Session>, heartbeat: &mut Heartbeat) -> Option<End> {
        heartbeat.next = Instant::now() + heartbeat.every;
        let why = heartbeat.beat(session, &self.dev).await?;
        tracing::warn!(device = %self.dev.name, endpoint = %self.dev.endpoint, "{why}; closing the session and opening a new one");
        self.down(&format!("{}: {why}", reason::COMM_FAILURE)).await;
        Some(End::Lost)
    }

    /// The publish watchdog is due: nudge a silent server once, end the
    /// session when it stays silent.
    pub(super) async fn watch_publish(&mut self, session: &Arc<Session>, wd: &mut PublishWatchdog) -> Option<End> {
        wd.next = Instant::now() + wd.silence;
        let quiet = (self.epoch + Duration::from_millis(self.last_publish.load(Ordering::Relaxed))).elapsed();
        if quiet < wd.silence || self.subs.iter().all(|s| s.id.is_none()) {
            wd.nudged = false;
        } else if !wd.nudged {
            tracing::warn!(device = %self.dev.name, quiet = ?quiet, "no Publish response from the server; sending one now");
            session.trigger_publish_now();
            wd.nudged = true;
        } else {
            tracing::warn!(device = %self.dev.name, quiet = ?quiet, "the subscriptions stay silent; closing the session and opening a new one");
            self.down(&format!("{}: no Publish response for {:.0?}", reason::COMM_FAILURE, quiet)).await;
            return Some(End::Lost);
        }
        None
    }
}
