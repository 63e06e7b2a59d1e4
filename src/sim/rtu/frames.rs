//! Requests on the simulator's RTU line, cut from the bytes received (pure).
//!
//! Modbus over Serial Line v1.02 §2.5.1.1 delimits an RTU frame by silence
//! (3.5 character times) and checks it with its CRC. The line reads what the
//! masters write and:
//!
//! - takes the bytes received so far as one request as soon as they form a
//!   CRC-valid frame (a master writes a request in one go: no waiting);
//! - otherwise waits for the silence, then looks for one CRC-valid request
//!   for a unit of the line at the end of the bytes (garbage, then a
//!   request) or at their start (a request, then garbage), and drops the
//!   rest (counted).
//!
//! What a request then gets is [`triage`]'s decision (`crate::sim::front`).

use crate::sim::front::{Triage, triage_pdu};
use crate::sources::modbus::frame::{crc_ok, push_crc};

/// Longest RTU frame (Modbus over Serial Line v1.02 §2.5.1): address, PDU
/// of up to 253 bytes, CRC.
pub const MAX_FRAME: usize = 256;

/// A frame found in the received bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The frame (unit id, PDU, CRC).
    pub frame: Vec<u8>,
    /// Bytes around it that were dropped.
    pub dropped: usize,
}

/// Looks, once the line fell silent, for one request addressed to one of
/// `units` in `buf`: the whole of it, else its longest CRC-valid tail, else
/// its longest CRC-valid head. `None` when the bytes hold none (all dropped).
pub fn salvage(buf: &[u8], units: &[u8]) -> Option<Found> {
    let ours = |f: &[u8]| crc_ok(f) && units.contains(&f[0]);
    let n = buf.len();
    if ours(buf) {
        return Some(Found { frame: buf.to_vec(), dropped: 0 });
    }
    let tail = (1..n.saturating_sub(3)).find(|&i| n - i <= MAX_FRAME && ours(&buf[i..]));
    if let Some(i) = tail {
        return Some(Found { frame: buf[i..].to_vec(), dropped: i });
    }
    let head = (4..n.min(MAX_FRAME + 1)).rev().find(|&j| ours(&buf[..j]));
    head.map(|j| Found { frame: buf[..j].to_vec(), dropped: n - j })
}

/// Decides who answers `frame` (unit id, PDU, CRC; CRC already checked).
pub fn triage(frame: &[u8]) -> Triage {
    triage_pdu(&frame[1..frame.len() - 2])
}

/// The exception answer (unit id, `fc | 0x80`, code, CRC).
pub fn exception_frame(unit: u8, fc: u8, code: u8) -> Vec<u8> {
    let mut f = vec![unit, fc | 0x80, code];
    push_crc(&mut f);
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(bytes: &[u8]) -> Vec<u8> {
        let mut f = bytes.to_vec();
        push_crc(&mut f);
        f
    }

    #[test]
    fn a_request_after_or_before_garbage_is_found() {
        let req = framed(&[1, 3, 0, 0, 0, 2]);
        assert_eq!(salvage(&req, &[1]), Some(Found { frame: req.clone(), dropped: 0 }));
        let mut after = vec![0xFF, 0x00, 0x13, 0x37, 0x2A];
        after.extend_from_slice(&req);
        assert_eq!(salvage(&after, &[1]), Some(Found { frame: req.clone(), dropped: 5 }));
        let mut before = req.clone();
        before.extend_from_slice(&[0x42, 0x42, 0x42]);
        assert_eq!(salvage(&before, &[1]), Some(Found { frame: req.clone(), dropped: 3 }));
        // Not for a unit of this line: nothing to serve.
        assert_eq!(salvage(&req, &[2, 3]), None);
        assert_eq!(salvage(&[0u8; 40], &[1]), None);
    }

    #[test]
    fn unimplemented_function_codes_get_exception_01_malformed_ones_03() {
        assert_eq!(triage(&framed(&[1, 3, 0, 0, 0, 2])), Triage::Serve);
        // FC8 diagnostics (return query data), FC20 read file record.
        assert_eq!(triage(&framed(&[1, 0x08, 0, 0, 0x12, 0x34])), Triage::Exception(1));
        assert_eq!(triage(&framed(&[1, 0x14, 7, 6, 0, 4, 0, 1, 0, 2])), Triage::Exception(1));
        // FC43 alone, and with MEI 0x0D (CANopen): not implemented.
        assert_eq!(triage(&framed(&[1, 0x2B])), Triage::Exception(1));
        assert_eq!(triage(&framed(&[1, 0x2B, 0x0D, 0, 0])), Triage::Exception(1));
        // FC43 / MEI 0x0E is served; with read code 9 it is malformed.
        assert_eq!(triage(&framed(&[1, 0x2B, 0x0E, 1, 0])), Triage::Serve);
        assert_eq!(triage(&framed(&[1, 0x2B, 0x0E, 9, 0])), Triage::Exception(3));
        // FC3 one byte short; FC5 with a coil value other than FF00/0000.
        assert_eq!(triage(&framed(&[1, 3, 0, 0, 0])), Triage::Exception(3));
        assert_eq!(triage(&framed(&[1, 5, 0, 0, 0x12, 0x34])), Triage::Exception(3));
        // A response (exception form) is not a request.
        assert_eq!(triage(&framed(&[1, 0x83, 2])), Triage::Ignore);
    }

    #[test]
    fn the_exception_frame_carries_its_crc() {
        let f = exception_frame(7, 0x08, 1);
        assert_eq!(&f[..3], &[7, 0x88, 1]);
        assert!(crc_ok(&f));
    }
}
