//! Modbus TCP framing for the Modbus-aware toxics: a byte stream cut into
//! ADUs by the MBAP header's length field (Modbus Messaging on TCP/IP
//! Implementation Guide v1.0b §3.1.3: transaction id 2 bytes, protocol id 2,
//! length 2 = unit id + PDU, unit id 1; Modbus Application Protocol v1.1b3
//! §4.1: a PDU is at most 253 bytes). Our own code: the framing is the
//! Modbus core, and the proxy may not import the poller's.

/// Largest `length` field: unit id + a 253-byte PDU.
const MAX_LENGTH_FIELD: usize = 254;

/// Bytes read so far that do not form a whole ADU yet.
#[derive(Debug, Default)]
pub struct Framer {
    pending: Vec<u8>,
}

impl Framer {
    /// Appends `bytes` and returns the whole ADUs now available, in order. A
    /// header that is not Modbus TCP (length field 0 or above 254) cannot be
    /// framed: everything pending is returned as one unit, unchanged, so the
    /// proxy never holds bytes it cannot frame.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Vec<u8>> {
        self.pending.extend_from_slice(bytes);
        let mut out = Vec::new();
        loop {
            if self.pending.len() < 6 {
                break;
            }
            let len = usize::from(u16::from_be_bytes([self.pending[4], self.pending[5]]));
            if len == 0 || len > MAX_LENGTH_FIELD {
                out.push(std::mem::take(&mut self.pending));
                break;
            }
            let total = 6 + len;
            if self.pending.len() < total {
                break;
            }
            let rest = self.pending.split_off(total);
            out.push(std::mem::replace(&mut self.pending, rest));
        }
        out
    }

    /// The bytes of an incomplete ADU, emptied (when the framing stops).
    pub fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.pending)
    }

    /// True when no partial ADU is pending.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

/// Changes the transaction id of an ADU: bit 15 flipped, so it is never the
/// request's id nor one of the ids a client used recently.
pub fn wrong_tid(adu: &mut [u8]) {
    if let Some(b) = adu.first_mut() {
        *b ^= 0x80;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_by_the_length_field_across_reads() {
        let a = [0x00, 0x01, 0, 0, 0, 5, 1, 3, 2, 0x12, 0x34];
        let b = [0x00, 0x02, 0, 0, 0, 6, 1, 3, 0, 0, 0, 1];
        let mut f = Framer::default();
        let mut stream = a.to_vec();
        stream.extend_from_slice(&b);
        assert!(f.push(&stream[..4]).is_empty());
        assert_eq!(f.push(&stream[4..13]), vec![a.to_vec()]);
        assert!(!f.is_empty());
        assert_eq!(f.push(&stream[13..]), vec![b.to_vec()]);
        assert!(f.is_empty());
        let mut two = a.to_vec();
        two.extend_from_slice(&a);
        assert_eq!(f.push(&two), vec![a.to_vec(), a.to_vec()]);
    }

    #[test]
    fn an_unframeable_header_is_passed_on_whole() {
        let mut f = Framer::default();
        assert_eq!(f.push(&[9, 9, 9, 9, 0xFF, 0xFF, 1, 2]), vec![vec![9, 9, 9, 9, 0xFF, 0xFF, 1, 2]]);
        assert!(f.is_empty());
        let mut adu = vec![0x12, 0x34, 0, 0, 0, 2, 1, 3];
        wrong_tid(&mut adu);
        assert_eq!(&adu[..2], &[0x92, 0x34]);
    }
}
