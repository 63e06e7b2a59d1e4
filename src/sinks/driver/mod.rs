//! The shared sink driver: everything between the buffer and a sink's far end
//! that does not depend on the protocol. A sink implements [`Sink`] (connect,
//! hand over one message, report what the far end said, close); the
//! [`Driver`] does the rest.
//!
//! # Promises
//! - **Order and completeness.** Records (samples and events) are read in
//!   `seq` order after the sink's cursor, from the tap's memory while the sink
//!   keeps up ([`crate::buffer::Reader::recent_or_stored_blocking`]) and from
//!   SQLite otherwise. Nothing is skipped: the cursor moves only over the
//!   contiguous prefix the far end acknowledged ([`lanes`]).
//! - **Woken by the commit.** The driver waits on the buffer's committed
//!   watch, which the writer moves right after each commit; there is no
//!   polling interval between a commit and the read of it.
//! - **Live and backlog lanes.** Past `backlog_threshold` unread records the
//!   backlog is replayed in a lane of its own while fresh records go in the
//!   live lane, alternating ([`lanes`]); below it, strict `seq` order.
//! - **Bounded in flight.** At most `window` messages are handed over and not
//!   acknowledged; reads stop while that many wait. A slow or dead far end
//!   never blocks anything else; rows simply stay in the buffer.
//! - **Acknowledgement → cursor.** A message is acknowledged by
//!   [`Outcome::Acked`]. One the far end refuses for good
//!   ([`Outcome::Refused`]: a row PostgreSQL rejects, an HTTP 4xx) is put in
//!   the quarantine with the reason, an event `sink.refused` is emitted, and
//!   it counts as handled: it never blocks the records behind it.
//! - **Partly refused.** A batch the far end stored without some of its
//!   records ([`Outcome::AckedExcept`]: rows PostgreSQL refused for good)
//!   counts as acknowledged; each refused record goes to the quarantine with
//!   its `seq`, the far end's reason and the record itself, one
//!   `sink.refused` event is emitted per message, and
//!   [`SinkStats::refused`] counts them.
//! - **Far end ahead of the cursor.** A sink whose far end can say what it
//!   already holds ([`Sink::holds`], read in [`Sink::connect`]: the records
//!   of this gateway a JetStream stream holds) gets its lanes moved over
//!   them and never sends them ([`held`]), so records stored before a crash
//!   or an outage are not sent again, whatever the far end's duplicate window.
//! - **Acknowledgement timeout.** When the oldest message waits longer than
//!   `ack_timeout`, the connection is treated as lost.
//! - **Reconnect.** After a lost connection everything unacknowledged is read
//!   again (duplicates carry the same `seq`), after a backoff of 1, 2, 4 … s up
//!   to `reconnect_max` ([`DEFAULT_RECONNECT_MAX`], 5 s, unless the sink's
//!   config says otherwise, so a far end that is back is noticed within a few
//!   seconds) with ±20 % jitter, or after the far end's own
//!   `retry_after` (HTTP 429/503 `Retry-After`). Each [`Sink::connect`] is a
//!   fresh connection (Sparkplug's bdSeq, MQTT's birth message).
//! - **Shutdown grace.** On stop, what was committed is delivered for up to
//!   `grace`, then [`Sink::close`] says goodbye; the rest stays in the buffer.
//! - **Status.** [`SinkStats`] holds the connection state, messages, acked
//!   records, records in flight, the outage (since when, next attempt, the
//!   oldest record waiting) and the last error; [`status::render`] makes the
//!   sink's part of the status line from them (`connected, 12 waiting, 3 in
//!   flight` or `down since 10:14:03, retrying in 4 s, buffering 1,475
//!   samples (oldest 35 s)`); connects and losses are logged (a lost far
//!   end at first, then at most once a minute) and emitted as events
//!   `sink.connected` / `sink.disconnected` (see `docs/payloads.md`).
//! - **Backlog age.** `sink.backlog_old` when the oldest undelivered record
//!   is older than `backlog_alarm_age`, `sink.backlog_ok` when it drains
//!   ([`backlog_age`]), for every sink alike.
//!
//! # Fitting a sink
//! - MQTT: `send` = `try_publish`; PUBACK (QoS 1) or the write to the socket
//!   (QoS 0) = `Acked`; birth in `connect`, `offline` in `close`.
//! - NATS JetStream: `send` = publish with `Nats-Msg-Id` = gateway + `seq`;
//!   each PubAck future resolves to `Acked(token)`; the window bounds the
//!   outstanding PubAcks; `holds` = the records of this gateway the stream
//!   holds, read back on connect.
//! - PostgreSQL: one message = one batch = one transaction; `Acked` on
//!   COMMIT; rows refused for good (SQLSTATE class 22 or 23) =
//!   `AckedExcept` with those rows.
//! - HTTPS: one POST per message; 2xx = `Acked`, 429/503 = `Lost` with
//!   `retry_after`, other 4xx = `Refused`.
//!
//! [`SinkStats`]: crate::telemetry::SinkStats

mod acks;
pub mod backlog_age;
mod connection;
mod fill;
pub mod held;
pub mod lanes;
mod run;
pub mod status;

use std::future::Future;
use std::time::Duration;

use crate::model::Record;

pub use held::SeqSet;
pub use run::Driver;

/// The default longest wait between two connection attempts of a sink
/// (`reconnect_max`, 5 s): a broker that comes back is noticed within about
/// this long (the jitter of ±20 % never goes above it).
pub use crate::util::DEFAULT_RECONNECT_MAX;

/// Names a message handed to [`Sink::send`]; reported back in [`Outcome`].
pub type Token = u64;

/// One message prepared by an [`Encoder`], with the number of records it carries.
#[derive(Debug)]
pub struct Prepared<M> {
    /// The message (topic and payload, an SQL batch, an HTTP body …).
    pub msg: M,
    /// Records it carries (for the acknowledged counter).
    pub records: usize,
}

/// Turns records into messages; runs on the blocking pool.
pub trait Encoder: Send + 'static {
    /// The message type.
    type Msg: Send + 'static;
    /// Appends the messages for `records` (in `seq` order) to `out`. Every
    /// record must end up in exactly one message (or be replaced by one that
    /// says why it cannot be sent), so acknowledging all of them covers the read.
    fn encode(&mut self, records: &[&Record], out: &mut Vec<Prepared<Self::Msg>>);
}

/// A connection that ended, and when to try again.
#[derive(Debug, Clone)]
pub struct Lost {
    /// Why (logged, and shown in the status line).
    pub reason: String,
    /// The far end's own wait (HTTP `Retry-After`), instead of the backoff.
    pub retry_after: Option<Duration>,
}

impl Lost {
    /// A lost connection with the usual backoff.
    pub fn new(reason: impl Into<String>) -> Lost {
        Lost { reason: reason.into(), retry_after: None }
    }
}

/// What the far end said.
#[derive(Debug)]
pub enum Outcome {
    /// The message was acknowledged (stored by the far end).
    Acked(Token),
    /// The message is refused for good; it goes to the quarantine.
    Refused {
        /// Which message.
        token: Token,
        /// Why, from the far end.
        reason: String,
    },
    /// The message was stored without some of its records, which the far
    /// end refused for good (a row PostgreSQL rejects with SQLSTATE 22xxx or
    /// 23xxx); they go to the quarantine, the rest counts as acknowledged.
    AckedExcept {
        /// Which message.
        token: Token,
        /// The records left out, each with the far end's reason.
        refused: Vec<RefusedRecord>,
    },
    /// The connection is gone.
    Lost(Lost),
}

/// One record of a message that the far end refused for good.
#[derive(Debug, Clone, PartialEq)]
pub struct RefusedRecord {
    /// Its `seq`.
    pub seq: u64,
    /// Why, from the far end (PostgreSQL: `SQLSTATE 22021: invalid byte sequence …`).
    pub reason: String,
    /// The record as the sink would have written it (JSON), for the quarantine.
    pub raw: String,
}

/// The driver's settings, given by the sink's config.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Sink name (its cursor's name).
    pub name: String,
    /// Protocol, for log lines: `MQTT`.
    pub protocol: &'static str,
    /// The far end, for log lines (credentials removed).
    pub target: String,
    /// Most messages handed over and not acknowledged.
    pub window: usize,
    /// Records read per step.
    pub read_rows: usize,
    /// Each record is its own message: a read takes at most the free window.
    pub one_record_per_message: bool,
    /// Unread records above which the backlog gets a lane of its own (0 = never).
    pub backlog_threshold: u64,
    /// Longest wait for an acknowledgement before the connection is rebuilt.
    pub ack_timeout: Duration,
    /// Longest wait between two connection attempts.
    pub reconnect_max: Duration,
    /// Age of the oldest undelivered record above which `sink.backlog_old`
    /// is emitted (`backlog_alarm_age`, default
    /// [`backlog_age::DEFAULT_BACKLOG_ALARM_AGE`]; zero: never; [`backlog_age`]).
    pub backlog_alarm_age: Duration,
}

/// A sink's protocol side. The driver calls it from one task; none of its
/// futures may block the runtime.
pub trait Sink: Send + 'static {
    /// One live connection.
    type Conn: Send;
    /// The message type.
    type Msg: Send + 'static;
    /// The encoder.
    type Encoder: Encoder<Msg = Self::Msg>;

    /// The driver's settings.
    fn settings(&self) -> Settings;
    /// A new encoder (made once; kept across connections).
    fn encoder(&self) -> Self::Encoder;
    /// Opens a fresh connection and waits until it may carry messages (MQTT:
    /// CONNACK, birth queued). Dropped (cancelled) when the sink stops.
    fn connect(&mut self) -> impl Future<Output = Result<Self::Conn, Lost>> + Send;
    /// Hands one message over without waiting; gives it back when the
    /// connection cannot take it now (its own queue is full): the driver
    /// retries after the next [`Sink::next`] outcome.
    fn send(&mut self, conn: &mut Self::Conn, msg: Self::Msg, token: Token) -> Result<(), Self::Msg>;
    /// Waits for the next thing the far end says. Must be cancel-safe: the
    /// driver drops it whenever something else happens first.
    fn next(&mut self, conn: &mut Self::Conn) -> impl Future<Output = Outcome> + Send;
    /// Closes gracefully (MQTT: `offline`, then DISCONNECT).
    fn close(&mut self, conn: Self::Conn) -> impl Future<Output = ()> + Send;
    /// The records of this gateway the far end is known to hold (found by
    /// [`Sink::connect`]), when it can tell: the driver moves its lanes over
    /// them and never sends them ([`held`]). Empty (the default): start
    /// after the cursor.
    fn holds(&self, _conn: &Self::Conn) -> SeqSet {
        SeqSet::new()
    }
    /// Called when the cursor moved to `cursor` (every record up to it is
    /// acknowledged or handled). Default: nothing.
    fn cursor_moved(&mut self, _conn: &mut Self::Conn, _cursor: u64) {}
}
