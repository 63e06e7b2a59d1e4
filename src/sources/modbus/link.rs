//! One Modbus connection to one endpoint or serial line, shared by the unit
//! ids behind it: Modbus TCP, RTU over TCP (serial device servers), or RTU on
//! a serial port (with the 3.5-character silent interval between frames).
//!
//! - Every request is bounded by the device timeout (tokio-modbus has none of
//!   its own). After a timeout the connection is dropped: a late answer can then
//!   never be taken for the answer to a later request (the transaction id check
//!   of tokio-modbus would only turn it into an error for the next request).
//! - After a transport or protocol error the connection is dropped as well.
//! - Reconnects: the first attempt after losing a working connection is
//!   immediate; failed attempts back off 1, 2, 4 … s up to `reconnect_max`,
//!   with ±20 % jitter. While waiting, reads fail at once without I/O, so a dead
//!   device costs nothing to the others.
//! - Exception responses (Modbus Application Protocol v1.1b3 §7) keep the
//!   connection: the device is alive and said no.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::Instant;
use tokio_modbus::client::{Client, Context};
use tokio_modbus::prelude::{Slave, SlaveContext};
use tokio_modbus::{ProtocolError, Request, Response};

use super::config::{Parity, Transport};
use super::types::Table;
use crate::util::{Backoff, RateLimited};

/// Data of one successful read.
#[derive(Debug, Clone, PartialEq)]
pub enum Words {
    /// FC3/FC4 registers.
    Registers(Vec<u16>),
    /// FC1/FC2 bits.
    Bits(Vec<bool>),
}

/// Why a read produced no data.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReadError {
    /// The device answered with an exception code.
    #[error("modbus exception 0x{code:02X} {name}", code = .0, name = crate::model::reason::exception_name(*.0))]
    Exception(u8),
    /// No answer within the timeout.
    #[error("no response within {0:?}")]
    Timeout(Duration),
    /// Connection refused, reset, closed, or waiting to reconnect.
    #[error("{0}")]
    Comm(String),
}

/// Connection state, for logs and status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// Never connected yet.
    Idle,
    /// A connection is open.
    Connected,
    /// Waiting before the next connection attempt.
    Backoff,
}

/// The connection to one endpoint (or serial line).
pub struct Link {
    endpoint: String,
    transport: Transport,
    /// End of the last exchange, for the RTU silent interval.
    last_frame: Option<Instant>,
    timeout: Duration,
    ctx: Option<Context>,
    next_attempt: Instant,
    backoff: Backoff,
    failures: u64,
    state: LinkState,
    unreachable_log: RateLimited,
    /// Since when requests fail (None while the endpoint answers).
    outage_since: Option<Instant>,
    /// The current connection has given at least one valid answer.
    useful: bool,
}

impl Link {
    /// A link to `endpoint` (`host:port`, or the serial path for RTU) over
    /// `transport`; nothing is opened until the first read.
    pub fn new(endpoint: &str, transport: Transport, reconnect_max: Duration) -> Link {
        Link {
            endpoint: endpoint.to_string(),
            transport,
            last_frame: None,
            timeout: Duration::from_secs(1),
            ctx: None,
            next_attempt: Instant::now(),
            backoff: Backoff::new(Duration::from_secs(1), reconnect_max),
            failures: 0,
            state: LinkState::Idle,
            unreachable_log: RateLimited::new(Duration::from_secs(60)),
            outage_since: None,
            useful: false,
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

    fn schedule_retry(&mut self, why: &str) {
        let wait = self.backoff.next_wait();
        self.next_attempt = Instant::now() + wait;
        self.failures += 1;
        self.state = LinkState::Backoff;
        self.outage_since.get_or_insert_with(Instant::now);
        if self.unreachable_log.allow_if(self.failures == 1).is_some() {
            tracing::warn!(endpoint = %self.endpoint, attempts = self.failures, retry_in = ?wait, "modbus endpoint unreachable: {why}");
        }
    }

    /// Drops the connection after a transport or protocol error. Logged once
    /// per outage, not per attempt.
    pub fn drop_connection(&mut self, why: &str) {
        self.drop_with(why, true);
    }

    /// Drops the connection after a timeout: the timeout itself paces the
    /// attempts, so the next read reconnects at once.
    fn drop_after_timeout(&mut self, why: &str) {
        self.drop_with(why, false);
    }

    /// `pace`: back off when this connection never gave a valid answer.
    /// A timeout is one unit not answering (the poller reports and degrades
    /// that unit), not an outage of the line: it is logged at debug only, so
    /// a dead unit on a shared serial line does not look like a failing line.
    fn drop_with(&mut self, why: &str, pace: bool) {
        if self.ctx.take().is_some() {
            if !pace {
                tracing::debug!(endpoint = %self.endpoint, "modbus connection reset after a timeout: {why}");
            } else if self.outage_since.is_none() {
                tracing::warn!(endpoint = %self.endpoint, "modbus connection dropped: {why}");
                self.outage_since = Some(Instant::now());
            } else {
                tracing::debug!(endpoint = %self.endpoint, "modbus connection dropped again: {why}");
            }
            if self.useful || !pace {
                // It worked before (or a timeout already paced us): reconnect at once.
                self.next_attempt = Instant::now();
                self.state = LinkState::Backoff;
            } else {
                // A connection that never gave a valid answer: back off, so a
                // device that closes or garbles every time is not hammered.
                self.schedule_retry(why);
            }
            self.useful = false;
        }
    }

    async fn connect(&mut self) -> Result<(), ReadError> {
        if Instant::now() < self.next_attempt {
            let left = self.next_attempt - Instant::now();
            return Err(ReadError::Comm(format!("not connected; next attempt in {:.1}s", left.as_secs_f64())));
        }
        if let Transport::Rtu { port, baud_rate, parity, data_bits, stop_bits } = &self.transport {
            let builder = tokio_serial::new(port, *baud_rate)
                .parity(match parity {
                    Parity::None => tokio_serial::Parity::None,
                    Parity::Even => tokio_serial::Parity::Even,
                    Parity::Odd => tokio_serial::Parity::Odd,
                })
                .data_bits(if *data_bits == 7 { tokio_serial::DataBits::Seven } else { tokio_serial::DataBits::Eight })
                .stop_bits(if *stop_bits == 2 { tokio_serial::StopBits::Two } else { tokio_serial::StopBits::One });
            return match tokio_serial::SerialStream::open(&builder) {
                Ok(stream) => {
                    self.ctx = Some(tokio_modbus::client::rtu::attach(stream));
                    tracing::debug!(port = %port, "serial line opened");
                    self.state = LinkState::Connected;
                    Ok(())
                }
                Err(e) => {
                    let msg = format!("cannot open serial port {port}: {e}");
                    self.schedule_retry(&msg);
                    Err(ReadError::Comm(msg))
                }
            };
        }
        let endpoint = self.endpoint.clone();
        let addr = match tokio::time::timeout(self.timeout, tokio::net::lookup_host(endpoint.as_str())).await {
            Ok(Ok(mut it)) => it.next(),
            Ok(Err(e)) => {
                let msg = format!("cannot resolve {}: {e}", self.endpoint);
                self.schedule_retry(&msg);
                return Err(ReadError::Comm(msg));
            }
            Err(_) => None,
        };
        let Some(addr): Option<SocketAddr> = addr else {
            let msg = format!("cannot resolve {}", self.endpoint);
            self.schedule_retry(&msg);
            return Err(ReadError::Comm(msg));
        };
        match tokio::time::timeout(self.timeout, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                // Discard anything a device sends before being asked.
                let mut junk = [0u8; 512];
                while let Ok(n) = stream.try_read(&mut junk) {
                    if n == 0 {
                        break;
                    }
                    tracing::debug!(endpoint = %self.endpoint, bytes = n, "discarded unsolicited bytes after connect");
                }
                self.ctx = Some(if self.transport == Transport::RtuOverTcp {
                    tokio_modbus::client::rtu::attach(stream)
                } else {
                    tokio_modbus::client::tcp::attach(stream)
                });
                tracing::debug!(endpoint = %self.endpoint, after_attempts = self.failures, "modbus endpoint connected");
                self.state = LinkState::Connected;
                Ok(())
            }
            Ok(Err(e)) => {
                let msg = format!("connect to {addr} failed: {e}");
                self.schedule_retry(&msg);
                Err(ReadError::Comm(msg))
            }
            Err(_) => {
                let msg = format!("connect to {addr} timed out after {:?}", self.timeout);
                self.schedule_retry(&msg);
                Err(ReadError::Comm(msg))
            }
        }
    }

    /// Reads `count` items of `table` from `start` on unit `unit`.
    ///
    /// The unit id is sent unchanged, 0 and 255 included (field case B12).
    /// `timeout` bounds the answer (and the connect, if one is needed). The
    /// answer must hold exactly the items asked for (bits: the bytes that
    /// carry them); anything else is a protocol error that drops the
    /// connection.
    pub async fn read(&mut self, unit: u8, table: Table, start: u16, count: u16, timeout: Duration) -> Result<Words, ReadError> {
        if self.ctx.is_none() {
            self.timeout = timeout;
            self.connect().await?;
        }
        // RTU: keep the silent interval between frames.
        let gap = self.transport.frame_gap();
        if let Some(t) = self.last_frame
            && !gap.is_zero()
            && t.elapsed() < gap
        {
            tokio::time::sleep(gap - t.elapsed()).await;
        }
        let ctx = self.ctx.as_mut().expect("connected above");
        ctx.set_slave(Slave(unit));
        let request = match table {
            Table::Holding => Request::ReadHoldingRegisters(start, count),
            Table::Input => Request::ReadInputRegisters(start, count),
            Table::Coil => Request::ReadCoils(start, count),
            Table::DiscreteInput => Request::ReadDiscreteInputs(start, count),
        };
        let answer = tokio::time::timeout(timeout, ctx.call(request)).await;
        self.last_frame = Some(Instant::now());
        let words = match answer {
            Err(_) => {
                self.drop_after_timeout(&format!("no response within {timeout:?}"));
                return Err(ReadError::Timeout(timeout));
            }
            Ok(Err(e)) => {
                let msg = describe(&e);
                self.drop_connection(&msg);
                return Err(ReadError::Comm(msg));
            }
            Ok(Ok(Err(exc))) => {
                // An exception is an answer: the link is fine.
                self.answered();
                return Err(ReadError::Exception(u8::from(exc)));
            }
            Ok(Ok(Ok(resp))) => match (table, resp) {
                (Table::Holding, Response::ReadHoldingRegisters(w)) | (Table::Input, Response::ReadInputRegisters(w)) => {
                    if w.len() != count as usize {
                        let msg = format!("protocol error: {} registers in the response, {count} asked for", w.len());
                        self.drop_connection(&msg);
                        return Err(ReadError::Comm(msg));
                    }
                    Words::Registers(w)
                }
                (Table::Coil, Response::ReadCoils(mut b)) | (Table::DiscreteInput, Response::ReadDiscreteInputs(mut b)) => {
                    // Bits come in whole bytes: 8 per byte, padded with zeros.
                    if b.len() < count as usize || b.len() >= count as usize + 8 {
                        let msg = format!("protocol error: {} bits in the response, {count} asked for", b.len());
                        self.drop_connection(&msg);
                        return Err(ReadError::Comm(msg));
                    }
                    b.truncate(count as usize);
                    Words::Bits(b)
                }
                (_, other) => {
                    let msg = format!("protocol error: response {:?} to a read of the {table} table", other.function_code());
                    self.drop_connection(&msg);
                    return Err(ReadError::Comm(msg));
                }
            },
        };
        self.answered();
        Ok(words)
    }

    /// A valid answer arrived: the connection works.
    fn answered(&mut self) {
        self.useful = true;
        if self.failures > 0 {
            self.failures = 0;
            self.backoff.reset();
        }
        if let Some(since) = self.outage_since.take() {
            tracing::info!(endpoint = %self.endpoint, outage = ?since.elapsed(), "modbus endpoint answers again");
        }
    }
}

/// A stable, readable reason for a transport or protocol error (no register
/// values, no internal type names).
fn describe(e: &tokio_modbus::Error) -> String {
    match e {
        tokio_modbus::Error::Protocol(ProtocolError::HeaderMismatch { .. }) => {
            "protocol error: the response header (transaction or unit id) does not match the request".into()
        }
        tokio_modbus::Error::Protocol(ProtocolError::FunctionCodeMismatch { .. }) => {
            "protocol error: the response function code does not match the request".into()
        }
        tokio_modbus::Error::Transport(io) => match io.kind() {
            std::io::ErrorKind::UnexpectedEof
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::BrokenPipe => {
                format!("connection closed by the device ({io})")
            }
            // tokio-modbus reports an end of stream with the last OS error,
            // whatever it was; and a framing error as "invalid data".
            std::io::ErrorKind::InvalidData => format!("protocol error: malformed response ({io})"),
            _ if io.raw_os_error() == Some(115) || io.kind() == std::io::ErrorKind::WouldBlock => "connection closed by the device".into(),
            _ => format!("connection lost: {io}"),
        },
    }
}
