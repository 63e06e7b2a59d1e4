//! Frame checks between the wire and tokio-modbus (pure).
//!
//! tokio-modbus encodes requests and decodes responses (the PDUs); this module
//! decides which bytes from the wire may reach its decoder as the answer to
//! the one outstanding request, so that a late or foreign answer is never
//! taken for it:
//!
//! - **Modbus TCP** (MBAP header, Modbus Messaging on TCP/IP v1.0b §3.1.3):
//!   frames are cut by the header's length field. A frame answers the
//!   outstanding request only when its transaction id, unit id and function
//!   code (or the exception form, `fc | 0x80`) all match. A frame carrying the
//!   transaction id of an earlier request that went unanswered is *late*;
//!   any other mismatch is *mismatched*. A header with a protocol id other
//!   than 0 or an impossible length cannot be resynchronised: the stream is
//!   *invalid*.
//! - **RTU** (Modbus over Serial Line v1.02 §2.5.1): no transaction id, so an
//!   answer must match the unit id, the function code, the byte count of the
//!   request (FC1–FC4) and the CRC; the exception form is 5 bytes. Bytes that
//!   do not start such a frame are dropped one at a time until one does (the
//!   resynchronisation of the serial-line guide); what was dropped is then
//!   told apart into late answers (a whole CRC-valid answer to an earlier,
//!   unanswered request) and mismatched bytes.

use std::fmt;

const CRC: crc::Crc<u16> = crc::Crc::<u16>::new(&crc::CRC_16_MODBUS);

/// MBAP header length: transaction id, protocol id, length, unit id.
pub const MBAP_HEADER: usize = 7;
/// Longest PDU (Modbus Application Protocol v1.1b3 §4.1).
pub const MAX_PDU: usize = 253;

/// What a request expects back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expect {
    /// Unit id of the request.
    pub unit: u8,
    /// Function code of the request.
    pub function: u8,
    /// Data bytes of a normal answer (the byte count of FC1–FC4), when the
    /// request fixes it.
    pub byte_count: Option<u8>,
    /// MBAP transaction id sent on the wire (0 for RTU).
    pub tid: u16,
}

impl Expect {
    /// What a request PDU (function code, then its data) from `unit`
    /// expects: for FC1/FC2 `ceil(quantity / 8)` data bytes, for FC3/FC4
    /// `2 × quantity`.
    pub fn of_pdu(unit: u8, pdu: &[u8], tid: u16) -> Option<Expect> {
        let function = *pdu.first()?;
        let quantity = pdu.get(3..5).map(|q| u16::from_be_bytes([q[0], q[1]]) as usize);
        let byte_count = match (function, quantity) {
            (1 | 2, Some(q)) => u8::try_from(q.div_ceil(8)).ok(),
            (3 | 4, Some(q)) => u8::try_from(q * 2).ok(),
            _ => None,
        };
        Some(Expect { unit, function, byte_count, tid })
    }
}

/// Why a frame was not taken as the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Discard {
    /// A whole answer to an earlier request that had timed out.
    Late(Expect),
    /// Anything else: foreign transaction or unit id, other function code or
    /// byte count, bad CRC, bytes that form no frame.
    Mismatched(String),
}

impl fmt::Display for Discard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Discard::Late(e) => write!(f, "late answer of unit {} FC{}", e.unit, e.function),
            Discard::Mismatched(why) => f.write_str(why),
        }
    }
}

/// The start of an MBAP stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MbapHead {
    /// Fewer than 8 bytes (header and function code).
    Incomplete,
    /// A frame of `len` bytes in all (it may not have fully arrived yet).
    Frame {
        /// Header plus PDU.
        len: usize,
        /// Transaction id.
        tid: u16,
        /// Unit id.
        unit: u8,
        /// Function code (with the exception bit).
        function: u8,
    },
    /// Not a Modbus TCP header: the stream cannot be resynchronised.
    Invalid(String),
}

/// Reads the MBAP header at the start of `buf`.
pub fn mbap_head(buf: &[u8]) -> MbapHead {
    if buf.len() < 6 {
        return MbapHead::Incomplete;
    }
    let protocol = u16::from_be_bytes([buf[2], buf[3]]);
    let length = u16::from_be_bytes([buf[4], buf[5]]) as usize;
    if protocol != 0 || !(2..=MAX_PDU + 1).contains(&length) {
        return MbapHead::Invalid(format!(
            "not a Modbus TCP answer: header {:02X?} (protocol id {protocol}, length {length}; expected protocol id 0, length 2..=254)",
            &buf[..6]
        ));
    }
    if buf.len() < MBAP_HEADER + 1 {
        return MbapHead::Incomplete;
    }
    MbapHead::Frame { len: 6 + length, tid: u16::from_be_bytes([buf[0], buf[1]]), unit: buf[6], function: buf[7] }
}

/// How an MBAP frame relates to the outstanding request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// It answers the outstanding request.
    Answer,
    /// It carries the outstanding transaction id but the wrong unit id or
    /// function code: the device's answer, and a wrong one.
    Wrong(String),
    /// Not for the outstanding request.
    Discard(Discard),
}

/// Judges an MBAP frame (`tid`, `unit`, `function`) against the outstanding
/// request and the earlier requests that went unanswered (`recent`).
pub fn judge_mbap(tid: u16, unit: u8, function: u8, outstanding: Option<&Expect>, recent: &[Expect]) -> Verdict {
    let answers = |e: &Expect| e.unit == unit && (function & 0x7F) == e.function;
    if let Some(o) = outstanding
        && o.tid == tid
    {
        if answers(o) {
            return Verdict::Answer;
        }
        return Verdict::Wrong(if o.unit != unit {
            format!("the answer to transaction {tid} carries unit id {unit}, not {}", o.unit)
        } else {
            format!("the answer to transaction {tid} carries function code {}, not {}", function & 0x7F, o.function)
        });
    }
    if let Some(e) = recent.iter().find(|e| e.tid == tid && answers(e)) {
        return Verdict::Discard(Discard::Late(*e));
    }
    Verdict::Discard(Discard::Mismatched(match outstanding {
        Some(o) => format!("transaction id {tid} (unit {unit}, FC{}) while {} (unit {}) was outstanding", function & 0x7F, o.tid, o.unit),
        None => format!("transaction id {tid} (unit {unit}, FC{}) with no request outstanding", function & 0x7F),
    }))
}

/// True when the last two bytes of `frame` are the CRC of the rest
/// (little-endian, CRC-16/MODBUS).
pub fn crc_ok(frame: &[u8]) -> bool {
    frame.len() >= 4 && {
        let (body, crc) = frame.split_at(frame.len() - 2);
        CRC.checksum(body) == u16::from_le_bytes([crc[0], crc[1]])
    }
}

/// Appends the CRC of `frame` (little-endian).
pub fn push_crc(frame: &mut Vec<u8>) {
    let c = CRC.checksum(frame);
    frame.extend_from_slice(&c.to_le_bytes());
}

/// Whether `buf` starts with the RTU answer `e` expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtuStart {
    /// A matching answer of this many bytes, CRC checked.
    Complete(usize),
    /// So far it matches; more bytes needed.
    Incomplete,
    /// It cannot be the answer.
    NoMatch,
}

/// Checks the start of `buf` against the answer `e` expects: unit id,
/// function code (normal or exception), byte count, CRC.
pub fn rtu_start(e: &Expect, buf: &[u8]) -> RtuStart {
    let Some(&unit) = buf.first() else { return RtuStart::Incomplete };
    if unit != e.unit {
        return RtuStart::NoMatch;
    }
    let Some(&function) = buf.get(1) else { return RtuStart::Incomplete };
    let len = if function == e.function | 0x80 {
        5
    } else if function == e.function && matches!(function, 5 | 6 | 15 | 16) {
        // Write answers echo address and value or quantity (§6.5, §6.6, §6.11, §6.12).
        8
    } else if function == e.function && function == 22 {
        10
    } else if function == e.function {
        let Some(&count) = buf.get(2) else { return RtuStart::Incomplete };
        if e.byte_count.is_some_and(|b| b != count) {
            return RtuStart::NoMatch;
        }
        count as usize + 5
    } else {
        return RtuStart::NoMatch;
    };
    if buf.len() < len {
        RtuStart::Incomplete
    } else if crc_ok(&buf[..len]) {
        RtuStart::Complete(len)
    } else {
        RtuStart::NoMatch
    }
}

/// Tells apart bytes dropped from an RTU line: whole CRC-valid answers to
/// the requests in `recent` are late answers; each run of other bytes is one
/// mismatched discard.
pub fn sort_rtu_junk(junk: &[u8], recent: &[Expect]) -> Vec<Discard> {
    let mut out = Vec::new();
    let mut run = 0usize;
    let mut i = 0;
    let flush = |run: &mut usize, out: &mut Vec<Discard>, at: usize| {
        if *run > 0 {
            let shown = &junk[at - *run..at.min(at - *run + 12)];
            out.push(Discard::Mismatched(format!(
                "{} byte(s) that form no matching frame ({shown:02X?}{})",
                *run,
                if *run > 12 { "…" } else { "" }
            )));
            *run = 0;
        }
    };
    while i < junk.len() {
        let late = recent.iter().rev().find_map(|e| match rtu_start(e, &junk[i..]) {
            RtuStart::Complete(n) => Some((*e, n)),
            _ => None,
        });
        match late {
            Some((e, n)) => {
                flush(&mut run, &mut out, i);
                out.push(Discard::Late(e));
                i += n;
            }
            None => {
                run += 1;
                i += 1;
            }
        }
    }
    flush(&mut run, &mut out, i);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rtu(bytes: &[u8]) -> Vec<u8> {
        let mut v = bytes.to_vec();
        push_crc(&mut v);
        v
    }

    #[test]
    fn expectations_from_request_pdus() {
        assert_eq!(Expect::of_pdu(1, &[3, 0, 0, 0, 10], 7).unwrap().byte_count, Some(20));
        assert_eq!(Expect::of_pdu(1, &[1, 0, 0, 0, 9], 7).unwrap().byte_count, Some(2));
        assert_eq!(Expect::of_pdu(1, &[6, 0, 0, 0, 9], 7).unwrap().byte_count, None);
    }

    #[test]
    fn mbap_headers() {
        assert_eq!(mbap_head(&[0, 1, 0, 0, 0]), MbapHead::Incomplete);
        assert_eq!(mbap_head(&[0, 1, 0, 0, 0, 5, 1, 3, 2]), MbapHead::Frame { len: 11, tid: 1, unit: 1, function: 3 });
        assert!(matches!(mbap_head(b"HTTP/1.1 400"), MbapHead::Invalid(_)));
        assert!(matches!(mbap_head(&[0, 1, 0, 0, 1, 0, 1, 3]), MbapHead::Invalid(_)), "length 256");
        assert!(matches!(mbap_head(&[0, 1, 0, 0, 0, 1, 1, 3]), MbapHead::Invalid(_)), "length 1");
    }

    #[test]
    fn mbap_verdicts() {
        let o = Expect { unit: 1, function: 3, byte_count: Some(2), tid: 9 };
        let old = Expect { tid: 8, ..o };
        assert_eq!(judge_mbap(9, 1, 3, Some(&o), &[]), Verdict::Answer);
        assert_eq!(judge_mbap(9, 1, 0x83, Some(&o), &[]), Verdict::Answer, "exception answer");
        assert!(matches!(judge_mbap(9, 2, 3, Some(&o), &[]), Verdict::Wrong(_)));
        assert!(matches!(judge_mbap(9, 1, 4, Some(&o), &[]), Verdict::Wrong(_)));
        assert_eq!(judge_mbap(8, 1, 3, Some(&o), &[old]), Verdict::Discard(Discard::Late(old)));
        assert!(matches!(judge_mbap(8, 2, 3, Some(&o), &[old]), Verdict::Discard(Discard::Mismatched(_))));
        assert!(matches!(judge_mbap(0, 1, 3, Some(&o), &[old]), Verdict::Discard(Discard::Mismatched(_))));
    }

    #[test]
    fn rtu_answers_are_checked_field_by_field() {
        let e = Expect { unit: 1, function: 3, byte_count: Some(2), tid: 0 };
        let good = rtu(&[1, 3, 2, 0x12, 0x34]);
        assert_eq!(rtu_start(&e, &good), RtuStart::Complete(7));
        assert_eq!(rtu_start(&e, &good[..4]), RtuStart::Incomplete);
        assert_eq!(rtu_start(&e, &rtu(&[2, 3, 2, 0x12, 0x34])), RtuStart::NoMatch, "unit");
        assert_eq!(rtu_start(&e, &rtu(&[1, 4, 2, 0x12, 0x34])), RtuStart::NoMatch, "function");
        assert_eq!(rtu_start(&e, &rtu(&[1, 3, 4, 0, 0, 0x12, 0x34])), RtuStart::NoMatch, "byte count");
        let mut bad = good.clone();
        bad[3] ^= 1;
        assert_eq!(rtu_start(&e, &bad), RtuStart::NoMatch, "crc");
        assert_eq!(rtu_start(&e, &rtu(&[1, 0x83, 2])), RtuStart::Complete(5), "exception");
    }

    #[test]
    fn rtu_write_answers_have_their_fixed_lengths() {
        for f in [5u8, 6, 15, 16] {
            let e = Expect { unit: 1, function: f, byte_count: None, tid: 0 };
            assert_eq!(rtu_start(&e, &rtu(&[1, f, 0, 7, 0, 1])), RtuStart::Complete(8), "FC{f}");
            assert_eq!(rtu_start(&e, &rtu(&[1, f, 0, 7, 0, 1])[..6]), RtuStart::Incomplete, "FC{f}");
        }
        let e = Expect { unit: 1, function: 22, byte_count: None, tid: 0 };
        assert_eq!(rtu_start(&e, &rtu(&[1, 22, 0, 7, 0xFF, 0xF7, 0, 8])), RtuStart::Complete(10));
        assert_eq!(rtu_start(&e, &rtu(&[1, 0x96, 1])), RtuStart::Complete(5), "exception");
    }

    #[test]
    fn rtu_junk_is_sorted_into_late_answers_and_mismatched_runs() {
        let old = Expect { unit: 2, function: 3, byte_count: Some(2), tid: 0 };
        let mut junk = vec![0xFF, 0x00];
        junk.extend(rtu(&[2, 3, 2, 0, 7]));
        junk.extend([0x55; 20]);
        let d = sort_rtu_junk(&junk, &[old]);
        assert_eq!(d.len(), 3, "{d:?}");
        assert!(matches!(d[0], Discard::Mismatched(ref s) if s.starts_with("2 byte(s)")));
        assert_eq!(d[1], Discard::Late(old));
        assert!(matches!(d[2], Discard::Mismatched(ref s) if s.starts_with("20 byte(s)") && s.ends_with("…)")));
        assert!(sort_rtu_junk(&[], &[old]).is_empty());
    }
}
