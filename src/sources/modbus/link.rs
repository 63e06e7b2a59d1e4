//! One Modbus connection to one endpoint or serial line, shared by the unit
//! ids behind it: Modbus TCP, RTU over TCP (serial device servers), or RTU on
//! a serial port (with the 3.5-character silent interval between frames).
//!
//! - Every request is bounded by the device timeout (tokio-modbus has none of
//!   its own). Only a frame that matches the outstanding request reaches
//!   tokio-modbus ([`exchange`](super::exchange)): a late answer is never
//!   taken for the answer to a later request, over TCP (transaction ids that
//!   go on counting across connections) and over RTU (unit id, function code,
//!   byte count and CRC checked; input cleared before each request).
//! - Dropped frames are counted per unit id ([`Link::take_discards`]): late
//!   answers and mismatched frames.
//! - A timeout keeps the connection (and the serial port): late answers are
//!   recognised and dropped. A Modbus TCP connection is reopened after
//!   [`SILENT_TIMEOUTS_CLOSE`] timeouts in a row with no byte at all from the
//!   endpoint (a half-open connection, a converter that lost its serial side),
//!   or after [`MISMATCHES_CLOSE`](super::exchange::MISMATCHES_CLOSE)
//!   mismatched frames in a row (the peer is out of step), or at once when a
//!   header is not Modbus TCP at all (`invalid_frame`: the stream cannot be
//!   resynchronised). An RTU port is never reopened for framing trouble, only
//!   when it fails.
//! - RTU: before each request the input is drained (and sorted into late and
//!   mismatched frames) until the line was silent for 3.5 characters. After a
//!   unit timed out, it is not asked again before a further `timeout` passed
//!   ([`Link::ready_at`]), so its late answer arrives while it is not being
//!   asked: a late answer can only be mistaken for an answer when it comes
//!   more than twice the timeout after its request, to the same unit, with the
//!   same function code and length (RTU frames carry no transaction id).
//! - Reconnects: the first attempt after losing a working connection is
//!   immediate; failed attempts back off 1, 2, 4 … s up to `reconnect_max`,
//!   with ±20 % jitter. While waiting, reads fail at once without I/O, so a dead
//!   device costs nothing to the others.
//! - Exception responses (Modbus Application Protocol v1.1b3 §7) keep the
//!   connection: the device is alive and said no.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;
use tokio_modbus::client::Client;
use tokio_modbus::prelude::{Slave, SlaveContext};
use tokio_modbus::{Request, Response};

pub use super::answer::{LinkState, ReadError, Words};
use super::answer::{check_answer, describe};
use super::config::Transport;
use super::exchange::{Book, Conn, Framing, PumpError, pump};
use super::frame::Discard;
use super::types::Table;
use crate::util::{Backoff, RateLimited};

/// Modbus TCP: timeouts in a row with no byte at all from the endpoint
/// before its connection is reopened.
pub const SILENT_TIMEOUTS_CLOSE: u32 = 2;

/// The connection to one endpoint (or serial line).
pub struct Link {
    pub(super) endpoint: String,
    pub(super) transport: Transport,
    pub(super) timeout: Duration,
    pub(super) conn: Option<Conn>,
    pub(super) book: Book,
    /// Modbus TCP: timeouts in a row with nothing received.
    pub(super) silent_timeouts: u32,
    /// RTU: a unit that timed out is not asked again before this instant.
    quiet_until: HashMap<u8, Instant>,
    pub(super) next_attempt: Instant,
    pub(super) backoff: Backoff,
    pub(super) failures: u64,
    pub(super) state: LinkState,
    pub(super) unreachable_log: RateLimited,
    /// Since when requests fail (None while the endpoint answers).
    pub(super) outage_since: Option<Instant>,
    /// The current connection has given at least one valid answer.
    pub(super) useful: bool,
    /// Why the last connection was closed, when it spoke no Modbus: reads
    /// in backoff report it as `invalid_frame`, not as a connection failure.
    pub(super) last_invalid: Option<String>,
}

impl Link {
    /// A link to `endpoint` (`host:port`, or the serial path for RTU) over
    /// `transport`; nothing is opened until the first read.
    pub fn new(endpoint: &str, transport: Transport, reconnect_max: Duration) -> Link {
        let framing = if transport == Transport::Tcp { Framing::Mbap } else { Framing::Rtu };
        Link {
            endpoint: endpoint.to_string(),
            transport,
            timeout: Duration::from_secs(1),
            conn: None,
            book: Book::new(framing),
            silent_timeouts: 0,
            quiet_until: HashMap::new(),
            next_attempt: Instant::now(),
            backoff: Backoff::new(Duration::from_secs(1), reconnect_max),
            failures: 0,
            state: LinkState::Idle,
            unreachable_log: RateLimited::new(Duration::from_secs(60)),
            outage_since: None,
            useful: false,
            last_invalid: None,
        }
    }

    /// The endpoint.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Current state.
    pub fn state(&self) -> LinkState {
        self.state
    }

    /// Consecutive failed connection attempts.
    pub fn failures(&self) -> u64 {
        self.failures
    }

    /// Frames dropped since the last call, with the unit id each is charged
    /// to: late answers to the unit that asked, mismatched frames to the
    /// unit whose request they arrived during (or before).
    pub fn take_discards(&mut self) -> Vec<(u8, Discard)> {
        std::mem::take(&mut self.book.discards)
    }

    /// The silent interval between two frames on this line (zero for TCP).
    pub fn frame_gap(&self) -> Duration {
        self.transport.frame_gap()
    }

    /// RTU: when `unit` may be asked again after a timeout (its late answer
    /// must not meet its next request); `None` when it may be asked now.
    pub fn ready_at(&self, unit: u8) -> Option<Instant> {
        self.quiet_until.get(&unit).copied().filter(|t| *t > Instant::now())
    }

    /// Reads `count` items of `table` from `start` on unit `unit`.
    ///
    /// The unit id is sent unchanged, 0 and 255 included (field case B12).
    /// `timeout` bounds the answer (and the connect, if one is needed). The
    /// answer must hold exactly the items asked for (bits: the bytes that
    /// carry them); anything else is a protocol error.
    pub async fn read(&mut self, unit: u8, table: Table, start: u16, count: u16, timeout: Duration) -> Result<Words, ReadError> {
        self.timeout = timeout;
        if self.conn.is_none() {
            self.connect().await?;
        }
        if self.book.framing == Framing::Rtu {
            self.settle(unit).await;
        }
        let request = match table {
            Table::Holding => Request::ReadHoldingRegisters(start, count),
            Table::Input => Request::ReadInputRegisters(start, count),
            Table::Coil => Request::ReadCoils(start, count),
            Table::DiscreteInput => Request::ReadDiscreteInputs(start, count),
        };
        let answer = self.exchange(unit, request, timeout).await?;
        let words = match answer {
            Err(exc) => {
                // An exception is an answer: the link is fine.
                self.answered();
                return Err(ReadError::Exception(u8::from(exc)));
            }
            Ok(resp) => check_answer(table, count, resp).inspect_err(|e| {
                if let Some(c) = self.conn.as_mut() {
                    c.reset_client(self.book.framing);
                }
                tracing::debug!(endpoint = %self.endpoint, unit, "modbus answer refused: {e}");
            })?,
        };
        self.answered();
        Ok(words)
    }

    /// Sends `request` to `unit` and waits for its answer (see
    /// [`exchange`](super::exchange)).
    pub(super) async fn exchange(
        &mut self,
        unit: u8,
        request: Request<'static>,
        timeout: Duration,
    ) -> Result<Result<Response, tokio_modbus::ExceptionCode>, ReadError> {
        let conn = self.conn.as_mut().expect("connected above");
        let book = &mut self.book;
        book.received = false;
        book.tx_done = false;
        book.mismatched_now.clear();
        let Conn { port, rx, ctx, pipe } = conn;
        ctx.set_slave(Slave(unit));
        enum Outcome {
            Call(tokio_modbus::Result<Response>),
            Pump(PumpError),
        }
        let outcome = tokio::time::timeout(timeout, async {
            tokio::select! {
                r = ctx.call(request) => Outcome::Call(r),
                e = pump(port.as_mut(), pipe, rx, book) => Outcome::Pump(e),
            }
        })
        .await;
        if self.book.framing == Framing::Rtu {
            self.book.sort_junk(unit);
        }
        let failed = |link: &mut Link| {
            if let Some(e) = link.book.outstanding.take() {
                link.book.remember(e);
            }
            if let Some(c) = link.conn.as_mut() {
                c.reset_client(link.book.framing);
            }
        };
        match outcome {
            Err(_) => {
                failed(self);
                Err(self.timed_out(unit, timeout))
            }
            Ok(Outcome::Pump(e)) => {
                failed(self);
                Err(self.pump_failed(e))
            }
            Ok(Outcome::Call(Err(e))) => {
                // A frame that passed our checks but not tokio-modbus's
                // decoder: malformed PDU. The stream itself is in step.
                failed(self);
                Err(ReadError::Comm(describe(&e)))
            }
            Ok(Outcome::Call(Ok(r))) => {
                self.silent_timeouts = 0;
                Ok(r)
            }
        }
    }

    /// After a timeout: RTU keeps the unit quiet for one more timeout; Modbus
    /// TCP reopens a connection that stayed silent twice in a row or whose
    /// request was cut short. `invalid_frame` when frames came that matched
    /// nothing.
    fn timed_out(&mut self, unit: u8, timeout: Duration) -> ReadError {
        let mismatched = std::mem::take(&mut self.book.mismatched_now);
        match self.book.framing {
            Framing::Rtu => {
                self.quiet_until.insert(unit, Instant::now() + timeout);
            }
            Framing::Mbap if !self.book.tx_done => self.drop_with("a request was cut short by its timeout", false),
            Framing::Mbap if !self.book.received => {
                self.silent_timeouts += 1;
                if self.silent_timeouts >= SILENT_TIMEOUTS_CLOSE {
                    let n = self.silent_timeouts;
                    self.drop_with(&format!("nothing received for {n} requests in a row"), false);
                }
            }
            Framing::Mbap => self.silent_timeouts = 0,
        }
        match mismatched.last() {
            Some(last) => ReadError::InvalidFrame(format!(
                "no valid response within {timeout:?}; {} frame(s) dropped that did not match the request, last: {last}",
                mismatched.len()
            )),
            None => ReadError::Timeout(timeout),
        }
    }

    fn pump_failed(&mut self, e: PumpError) -> ReadError {
        match e {
            PumpError::Io(io) => {
                let msg = describe(&tokio_modbus::Error::Transport(io));
                self.drop_connection(&msg);
                ReadError::Comm(msg)
            }
            PumpError::Closed => {
                let msg = "connection closed by the device".to_string();
                self.drop_connection(&msg);
                ReadError::Comm(msg)
            }
            PumpError::Desync(why) => {
                self.last_invalid = Some(why.clone());
                self.drop_connection(&why);
                ReadError::InvalidFrame(why)
            }
            PumpError::Wrong(why) => ReadError::InvalidFrame(why),
            PumpError::Pipe => {
                let msg = "internal error: the Modbus client stopped".to_string();
                self.drop_connection(&msg);
                ReadError::Comm(msg)
            }
        }
    }

    /// A valid answer arrived: the connection works.
    pub(super) fn answered(&mut self) {
        self.useful = true;
        self.last_invalid = None;
        if self.failures > 0 {
            self.failures = 0;
            self.backoff.reset();
        }
        if let Some(since) = self.outage_since.take() {
            tracing::info!(endpoint = %self.endpoint, outage = ?since.elapsed(), "modbus endpoint answers again");
        }
    }
}
