//! Opening, dropping and reopening a link's connection (or serial port),
//! with backoff; and, for RTU, clearing the line before a request.

use std::net::SocketAddr;

use futures::FutureExt as _;
use tokio::io::AsyncReadExt as _;
use tokio::time::Instant;

use super::answer::{LinkState, ReadError};
use super::config::{Parity, Transport};
use super::exchange::{Conn, Io};
use super::link::Link;

impl Link {
    pub(super) fn schedule_retry(&mut self, why: &str) {
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

    /// `pace`: back off when this connection never gave a valid answer.
    /// Without `pace` (a silent endpoint: its timeouts paced us already) it
    /// is logged at debug only, so a dead unit on a shared line does not look
    /// like a failing line.
    pub(super) fn drop_with(&mut self, why: &str, pace: bool) {
        let Some(conn) = self.conn.take() else { return };
        drop(conn);
        if let Some(e) = self.book.outstanding.take() {
            self.book.remember(e);
        }
        self.silent_timeouts = 0;
        self.book.mismatch_run = 0;
        if !pace {
            tracing::debug!(endpoint = %self.endpoint, "modbus connection reset: {why}");
        } else if self.outage_since.is_none() {
            tracing::warn!(endpoint = %self.endpoint, "modbus connection dropped: {why}");
            self.outage_since = Some(Instant::now());
        } else {
            tracing::debug!(endpoint = %self.endpoint, "modbus connection dropped again: {why}");
        }
        if self.useful || !pace {
            // It worked before (or timeouts paced us already): reconnect at once.
            self.next_attempt = Instant::now();
            self.state = LinkState::Backoff;
        } else {
            // A connection that never gave a valid answer: back off, so a
            // device that closes or garbles every time is not hammered.
            self.schedule_retry(why);
        }
        self.useful = false;
    }

    pub(super) async fn connect(&mut self) -> Result<(), ReadError> {
        if Instant::now() < self.next_attempt {
            let left = self.next_attempt - Instant::now();
            let wait = format!("not connected; next attempt in {:.1}s", left.as_secs_f64());
            return Err(match &self.last_invalid {
                Some(why) => ReadError::InvalidFrame(format!("{why}; {wait}")),
                None => ReadError::Comm(wait),
            });
        }
        let port = match self.open().await {
            Ok(p) => p,
            Err(msg) => {
                self.last_invalid = None;
                self.schedule_retry(&msg);
                return Err(ReadError::Comm(msg));
            }
        };
        self.conn = Some(Conn::new(port, self.book.framing));
        tracing::debug!(endpoint = %self.endpoint, after_attempts = self.failures, "modbus endpoint connected");
        self.state = LinkState::Connected;
        Ok(())
    }

    /// Opens the serial port (input cleared) or the TCP connection.
    async fn open(&mut self) -> Result<Box<dyn Io>, String> {
        if let Transport::Rtu { port, baud_rate, parity, data_bits, stop_bits } = &self.transport {
            use tokio_serial::SerialPort as _;
            let builder = tokio_serial::new(port, *baud_rate)
                .parity(match parity {
                    Parity::None => tokio_serial::Parity::None,
                    Parity::Even => tokio_serial::Parity::Even,
                    Parity::Odd => tokio_serial::Parity::Odd,
                })
                .data_bits(if *data_bits == 7 { tokio_serial::DataBits::Seven } else { tokio_serial::DataBits::Eight })
                .stop_bits(if *stop_bits == 2 { tokio_serial::StopBits::Two } else { tokio_serial::StopBits::One });
            let stream = tokio_serial::SerialStream::open(&builder).map_err(|e| format!("cannot open serial port {port}: {e}"))?;
            // What the line held before we opened it answers nothing of ours.
            if let Err(e) = stream.clear(tokio_serial::ClearBuffer::Input) {
                tracing::debug!(port = %port, "cannot clear the serial input: {e}");
            }
            tracing::debug!(port = %port, "serial line opened");
            return Ok(Box::new(stream));
        }
        let endpoint = self.endpoint.clone();
        let addr = match tokio::time::timeout(self.timeout, tokio::net::lookup_host(endpoint.as_str())).await {
            Ok(Ok(mut it)) => it.next(),
            Ok(Err(e)) => return Err(format!("cannot resolve {}: {e}", self.endpoint)),
            Err(_) => None,
        };
        let Some(addr): Option<SocketAddr> = addr else {
            return Err(format!("cannot resolve {}", self.endpoint));
        };
        match tokio::time::timeout(self.timeout, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                Ok(Box::new(stream))
            }
            Ok(Err(e)) => Err(format!("connect to {addr} failed: {e}")),
            Err(_) => Err(format!("connect to {addr} timed out after {:?}", self.timeout)),
        }
    }

    /// RTU: drains the input and waits until the line was silent for 3.5
    /// characters (at most one timeout long, for a line that never stops
    /// talking); what was drained is sorted into late answers and mismatched
    /// bytes, charged to `unit`, the unit about to be asked.
    pub(super) async fn settle(&mut self, unit: u8) {
        let gap = self.transport.frame_gap();
        let give_up = Instant::now() + self.timeout;
        let Some(conn) = self.conn.as_mut() else { return };
        let mut buf = [0u8; 512];
        loop {
            while let Some(Ok(n)) = conn.port.read(&mut buf).now_or_never() {
                if n == 0 {
                    break;
                }
                conn.rx.extend_from_slice(&buf[..n]);
                self.book.last_activity = Some(Instant::now());
            }
            let quiet = self.book.last_activity.map_or(gap, |t| t.elapsed());
            if quiet >= gap || Instant::now() >= give_up {
                break;
            }
            tokio::time::sleep(gap - quiet).await;
        }
        self.book.junk.append(&mut conn.rx);
        self.book.sort_junk(unit);
    }
}
