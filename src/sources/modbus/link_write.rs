//! Write requests on a [`Link`]: the same connection, transaction ids and
//! answer checks as reads, with one more thing to know when no answer came:
//! whether the request went out. A request that went out and got no answer
//! may have been applied, so it is never re-sent here (see
//! `component::actuate`).

use std::time::Duration;

use tokio_modbus::{Request, Response};

use super::answer::ReadError;
use super::device::reason_of;
use super::exchange::Framing;
use super::link::Link;
use super::write_plan::echo_ok;
use crate::model::reason;

/// Why a write request did not end with a confirmation.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteError {
    /// The device answered with this exception code: not applied.
    Exception(u8),
    /// The request never went out (no connection, the port failed before
    /// it was written): not applied. The text is a reason.
    NotSent(String),
    /// The request went out and no valid answer came (timeout, connection
    /// lost, a wrong echo): it may have been applied. The text is a reason.
    Lost(String),
}

impl Link {
    /// Sends write `request` to `unit` and waits at most `timeout` for its
    /// answer, which must echo the request (address and value or quantity).
    pub async fn write(&mut self, unit: u8, request: Request<'static>, timeout: Duration) -> Result<(), WriteError> {
        self.timeout = timeout;
        self.book.tx_done = false;
        if self.conn.is_none() {
            self.connect().await.map_err(|e| WriteError::NotSent(reason_of(&e)))?;
        }
        if self.book.framing == Framing::Rtu {
            self.settle(unit).await;
        }
        match self.exchange(unit, request.clone(), timeout).await {
            Ok(Ok(resp)) => {
                self.answered();
                check_echo(&request, &resp)
            }
            Ok(Err(exc)) => {
                self.answered();
                Err(WriteError::Exception(u8::from(exc)))
            }
            Err(e) if self.book.tx_done => Err(WriteError::Lost(lost_reason(&e))),
            Err(e) => Err(WriteError::NotSent(reason_of(&e))),
        }
    }
}

fn lost_reason(e: &ReadError) -> String {
    format!("{}; the request went out, so it may have been applied", reason_of(e))
}

fn check_echo(req: &Request<'_>, resp: &Response) -> Result<(), WriteError> {
    if echo_ok(req, resp) {
        Ok(())
    } else {
        Err(WriteError::Lost(format!(
            "{}: the answer {resp:?} does not echo the request {req:?}; it may have been applied",
            reason::INVALID_FRAME
        )))
    }
}
