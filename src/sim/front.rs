//! What the simulator answers in front of tokio-modbus (issue 9 item 21).
//!
//! tokio-modbus's servers hand a request to [`SimService`] only when they
//! can decode it; a PDU they cannot decode closes a TCP connection and, on
//! RTU, is never answered (and in numbers stops the line). So each
//! transport has a front that looks at every request first ([`triage_pdu`]):
//!
//! - a request tokio-modbus decodes goes on to it, and [`SimService`]
//!   answers it;
//! - a function code tokio-modbus knows only as a custom request (FC7, FC8,
//!   FC11, FC12, FC17, FC20, FC21, FC23, FC24…) and FC43 with another MEI
//!   type than 0x0E, or alone, get exception 01 (illegal function);
//! - a known function code whose request is malformed (wrong length, a
//!   coil value other than FF00/0000, an unknown read device id code) gets
//!   exception 03 (illegal data value, Modbus App Protocol v1.1b3 §7);
//! - a PDU with the exception bit set is no request: no answer.
//!
//! The front's answers go through [`SimService::refusal`], so unknown units,
//! silent stations and delays behave as for any other request. The TCP front
//! is [`tcp_front`]; the RTU one is `rtu`.

use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::net::TcpStream;
use tokio_modbus::Request;
use tokio_modbus::bytes::Bytes;

use super::server::SimService;
use crate::sources::modbus::frame::{MBAP_HEADER, MbapHead, mbap_head};

/// MEI type of Read Device Identification (FC43 / MEI 0x0E).
const MEI_READ_DEVICE_ID: u8 = 0x0E;

/// Who answers a request PDU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Triage {
    /// A request tokio-modbus decodes: its server answers it.
    Serve,
    /// The front answers this exception code itself.
    Exception(u8),
    /// No answer (a response, not a request).
    Ignore,
}

/// Decides who answers request `pdu` (function code and data).
pub fn triage_pdu(pdu: &[u8]) -> Triage {
    let Some(&fc) = pdu.first() else { return Triage::Ignore };
    if fc >= 0x80 {
        return Triage::Ignore;
    }
    match Request::try_from(Bytes::copy_from_slice(pdu)) {
        Ok(Request::Custom(..)) => Triage::Exception(0x01),
        Ok(_) => Triage::Serve,
        Err(_) if fc == 0x2B && pdu.get(1) != Some(&MEI_READ_DEVICE_ID) => Triage::Exception(0x01),
        Err(_) => Triage::Exception(0x03),
    }
}

/// Puts the front in front of a Modbus TCP connection: returns the stream
/// tokio-modbus's server reads, and spawns the task that copies MBAP frames
/// between it and `sock`, answering the others itself.
pub fn tcp_front(sock: TcpStream, service: SimService) -> DuplexStream {
    let (ours, theirs) = tokio::io::duplex(8192);
    tokio::spawn(async move {
        if let Err(e) = tcp_pump(sock, ours, service).await {
            tracing::debug!(error = %e, "simulator connection ended");
        }
    });
    theirs
}

async fn tcp_pump(mut sock: TcpStream, mut inner: DuplexStream, service: SimService) -> std::io::Result<()> {
    // The intrusion detection sees every request of this client (`ids`).
    let mut client = match (&service.watch, sock.peer_addr()) {
        (Some(w), Ok(peer)) => Some(w.connect(peer)),
        _ => None,
    };
    let mut pending: Vec<u8> = Vec::new();
    let (mut rx, mut back) = ([0u8; 2048], [0u8; 2048]);
    loop {
        tokio::select! {
            n = sock.read(&mut rx) => {
                let n = n?;
                if n == 0 {
                    return Ok(());
                }
                pending.extend_from_slice(&rx[..n]);
                loop {
                    let len = match mbap_head(&pending) {
                        MbapHead::Incomplete => break,
                        // Not Modbus TCP: tokio-modbus closes the connection, as before.
                        MbapHead::Invalid(_) => pending.len(),
                        MbapHead::Frame { len, .. } if pending.len() < len => break,
                        MbapHead::Frame { len, .. } => len,
                    };
                    let frame: Vec<u8> = pending.drain(..len).collect();
                    if let (Some(c), Some(&unit), Some(&fc)) = (client.as_mut(), frame.get(6), frame.get(7)) {
                        c.request(unit, fc);
                    }
                    let triage = if frame.len() > MBAP_HEADER { triage_pdu(&frame[MBAP_HEADER..]) } else { Triage::Serve };
                    match triage {
                        Triage::Serve => inner.write_all(&frame).await?,
                        Triage::Ignore => {}
                        Triage::Exception(code) => {
                            if let Some(code) = service.refusal(frame[6], code).await {
                                let mut adu = frame[..4].to_vec();
                                adu.extend_from_slice(&[0, 3, frame[6], frame[7] | 0x80, code]);
                                sock.write_all(&adu).await?;
                            }
                        }
                    }
                }
            }
            n = inner.read(&mut back) => {
                let n = n?;
                if n == 0 {
                    return Ok(());
                }
                sock.write_all(&back[..n]).await?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unimplemented_function_codes_get_exception_01_malformed_ones_03() {
        assert_eq!(triage_pdu(&[3, 0, 0, 0, 2]), Triage::Serve);
        // FC8 and FC20 decode (as custom requests): the front answers 01.
        assert_eq!(triage_pdu(&[0x08, 0, 0, 0x12, 0x34]), Triage::Exception(1));
        assert_eq!(triage_pdu(&[0x14, 7, 6, 0, 4, 0, 1, 0, 2]), Triage::Exception(1));
        assert_eq!(triage_pdu(&[0x2B]), Triage::Exception(1));
        assert_eq!(triage_pdu(&[0x2B, 0x0D, 0, 0]), Triage::Exception(1));
        assert_eq!(triage_pdu(&[0x2B, 0x0E, 1, 0]), Triage::Serve);
        assert_eq!(triage_pdu(&[0x2B, 0x0E, 9, 0]), Triage::Exception(3));
        assert_eq!(triage_pdu(&[5, 0, 0, 0x12, 0x34]), Triage::Exception(3));
        assert_eq!(triage_pdu(&[0x83, 2]), Triage::Ignore);
        assert_eq!(triage_pdu(&[]), Triage::Ignore);
    }
}
