//! What a read gives: the data, or why there is none; the checks of an
//! answer's size, and readable texts for transport errors.

use std::time::Duration;

use tokio_modbus::{ProtocolError, Response};

use super::types::Table;

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
    /// Bytes came back, but no valid answer to this request: not Modbus
    /// framing, a wrong unit id or function code, or (RTU) frames that do not
    /// match until the timeout.
    #[error("{0}")]
    InvalidFrame(String),
    /// Connection refused, reset, closed, or waiting to reconnect.
    #[error("{0}")]
    Comm(String),
}

impl ReadError {
    /// True for failures that cost the line a whole timeout (a unit that
    /// does not answer, or answers nothing usable): they degrade the unit.
    pub fn is_silence(&self) -> bool {
        matches!(self, ReadError::Timeout(_) | ReadError::InvalidFrame(_))
    }
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

/// The data of an answer, when it holds exactly the items asked for.
pub(super) fn check_answer(table: Table, count: u16, resp: Response) -> Result<Words, ReadError> {
    match (table, resp) {
        (Table::Holding, Response::ReadHoldingRegisters(w)) | (Table::Input, Response::ReadInputRegisters(w)) => {
            if w.len() != count as usize {
                return Err(ReadError::Comm(format!("protocol error: {} registers in the response, {count} asked for", w.len())));
            }
            Ok(Words::Registers(w))
        }
        (Table::Coil, Response::ReadCoils(mut b)) | (Table::DiscreteInput, Response::ReadDiscreteInputs(mut b)) => {
            // Bits come in whole bytes: 8 per byte, padded with zeros.
            if b.len() < count as usize || b.len() >= count as usize + 8 {
                return Err(ReadError::Comm(format!("protocol error: {} bits in the response, {count} asked for", b.len())));
            }
            b.truncate(count as usize);
            Ok(Words::Bits(b))
        }
        (_, other) => Err(ReadError::Comm(format!("protocol error: response {:?} to a read of the {table} table", other.function_code()))),
    }
}

/// A stable, readable reason for a transport or protocol error (no register
/// values, no internal type names).
pub(super) fn describe(e: &tokio_modbus::Error) -> String {
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
