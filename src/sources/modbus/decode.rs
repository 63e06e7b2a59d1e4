//! Register value codec (pure): words ↔ typed values, byte orders, bits, scaling.
//!
//! Registers are 16-bit words, each big-endian on the wire (Modbus Application
//! Protocol v1.1b3 §4.2). Multi-register values are assembled according to a
//! [`ByteOrder`]; see its docs for the four names. Order of operations for a
//! read: raw words → bytes in order → typed integer or float (two's complement
//! for signed types) → `value * scale + offset` (field case B05). Scaling
//! happens after the integer is assembled, so 64-bit integers stay exact when no
//! scaling is configured (field case B03).

use super::types::{ByteOrder, DataType};
use crate::model::Value;

/// Why words could not be decoded or a value not encoded.
#[allow(missing_docs)] // each variant's doc names its fields
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CodecError {
    /// Fewer words than the type needs.
    #[error("{ty} needs {need} registers, got {got}")]
    ShortRead { ty: DataType, need: usize, got: usize },
    /// A bit index outside 0..=15.
    #[error("bit {0} is outside 0..=15")]
    BadBit(u8),
    /// The value does not fit the target type (writes, simulator).
    #[error("value {value} does not fit {ty}")]
    OutOfRange { value: String, ty: DataType },
    /// The value's kind cannot be stored in the type (e.g. text into f32).
    #[error("cannot encode {value} as {ty}")]
    Incompatible { value: String, ty: DataType },
}

/// Reorders the wire bytes of `words` into big-endian value bytes.
///
/// The permutations are their own inverses, so the same function turns value
/// bytes back into wire order.
fn reorder(bytes: &mut [u8], order: ByteOrder) {
    match order {
        ByteOrder::ABCD => {}
        ByteOrder::DCBA => bytes.reverse(),
        ByteOrder::BADC => bytes.chunks_exact_mut(2).for_each(|p| p.swap(0, 1)),
        ByteOrder::CDAB => {
            let n = bytes.len() / 2;
            for i in 0..n / 2 {
                let (a, b) = (2 * i, 2 * (n - 1 - i));
                bytes.swap(a, b);
                bytes.swap(a + 1, b + 1);
            }
        }
    }
}

fn value_bytes<const N: usize>(words: &[u16], order: ByteOrder) -> [u8; N] {
    let mut b = [0u8; N];
    for (i, w) in words.iter().take(N / 2).enumerate() {
        b[2 * i..2 * i + 2].copy_from_slice(&w.to_be_bytes());
    }
    reorder(&mut b, order);
    b
}

fn wire_words(mut bytes: Vec<u8>, order: ByteOrder) -> Vec<u16> {
    reorder(&mut bytes, order);
    bytes.chunks_exact(2).map(|p| u16::from_be_bytes([p[0], p[1]])).collect()
}

/// The 16-bit value of one register after the byte order (bytes swapped for
/// `BADC` and `DCBA`).
pub fn word16(word: u16, order: ByteOrder) -> u16 {
    match order {
        ByteOrder::ABCD | ByteOrder::CDAB => word,
        ByteOrder::BADC | ByteOrder::DCBA => word.swap_bytes(),
    }
}

/// Decodes `words` (starting at the tag's first register) as `ty`.
///
/// `bit` selects one bit of a 16-bit register for bool tags; bit 0 is the
/// least-significant bit of the assembled value (field case B06). A bool
/// without `bit` is true when the register is non-zero.
pub fn decode(words: &[u16], ty: DataType, order: ByteOrder, bit: Option<u8>) -> Result<Value, CodecError> {
    let need = ty.register_count() as usize;
    if words.len() < need {
        return Err(CodecError::ShortRead { ty, need, got: words.len() });
    }
    Ok(match ty {
        DataType::Bool => {
            let w = word16(words[0], order);
            match bit {
                Some(b) if b > 15 => return Err(CodecError::BadBit(b)),
                Some(b) => Value::Bool(w >> b & 1 == 1),
                None => Value::Bool(w != 0),
            }
        }
        DataType::U16 => Value::U64(word16(words[0], order) as u64),
        DataType::I16 => Value::I64(word16(words[0], order) as i16 as i64),
        DataType::U32 => Value::U64(u32::from_be_bytes(value_bytes::<4>(words, order)) as u64),
        DataType::I32 => Value::I64(i32::from_be_bytes(value_bytes::<4>(words, order)) as i64),
        DataType::F32 => Value::F64(f32::from_be_bytes(value_bytes::<4>(words, order)) as f64),
        DataType::U64 => Value::U64(u64::from_be_bytes(value_bytes::<8>(words, order))),
        DataType::I64 => Value::I64(i64::from_be_bytes(value_bytes::<8>(words, order))),
        DataType::F64 => Value::F64(f64::from_be_bytes(value_bytes::<8>(words, order))),
        DataType::String(n) => Value::Str(decode_ascii(&words[..n as usize], order)),
    })
}

/// Two characters per register, high byte first (`ABCD`, `CDAB`) or low byte
/// first (`BADC`, `DCBA`); stops at the first NUL, trims trailing spaces.
pub fn decode_ascii(words: &[u16], order: ByteOrder) -> String {
    let mut bytes = Vec::with_capacity(words.len() * 2);
    for w in words {
        let [hi, lo] = word16(*w, order).to_be_bytes();
        bytes.push(hi);
        bytes.push(lo);
    }
    if let Some(end) = bytes.iter().position(|&b| b == 0) {
        bytes.truncate(end);
    }
    String::from_utf8_lossy(&bytes).trim_end().to_string()
}

pub use crate::model::apply_scale;

/// Encodes `value` as the registers of `ty` in wire order.
///
/// Strict: integers must fit the type (−10 as i16 is `0xFFF6`; 40000 as i16 is
/// an error, field case B05), floats given for integer types must be integral,
/// strings are padded with NUL to `N` registers. Used by the simulator and by
/// writes.
pub fn encode(value: &Value, ty: DataType, order: ByteOrder) -> Result<Vec<u16>, CodecError> {
    let range = || CodecError::OutOfRange { value: value.to_string(), ty };
    let int = || -> Result<i128, CodecError> {
        match *value {
            Value::I64(v) => Ok(v as i128),
            Value::U64(v) => Ok(v as i128),
            Value::Bool(b) => Ok(b as i128),
            Value::F64(f) if f.fract() == 0.0 && f.is_finite() && f.abs() < 1.9e19 => Ok(f as i128),
            Value::F64(_) => Err(range()),
            _ => Err(CodecError::Incompatible { value: value.to_string(), ty }),
        }
    };
    let float = || -> Result<f64, CodecError> { value.as_f64().ok_or_else(|| CodecError::Incompatible { value: value.to_string(), ty }) };
    Ok(match ty {
        DataType::Bool => vec![word16(int()?.clamp(0, 1) as u16, order)],
        DataType::U16 => vec![word16(u16::try_from(int()?).map_err(|_| range())?, order)],
        DataType::I16 => vec![word16(i16::try_from(int()?).map_err(|_| range())? as u16, order)],
        DataType::U32 => wire_words(u32::try_from(int()?).map_err(|_| range())?.to_be_bytes().to_vec(), order),
        DataType::I32 => wire_words(i32::try_from(int()?).map_err(|_| range())?.to_be_bytes().to_vec(), order),
        DataType::U64 => wire_words(u64::try_from(int()?).map_err(|_| range())?.to_be_bytes().to_vec(), order),
        DataType::I64 => wire_words(i64::try_from(int()?).map_err(|_| range())?.to_be_bytes().to_vec(), order),
        DataType::F32 => wire_words((float()? as f32).to_be_bytes().to_vec(), order),
        DataType::F64 => wire_words(float()?.to_be_bytes().to_vec(), order),
        DataType::String(n) => {
            let Value::Str(s) = value else {
                return Err(CodecError::Incompatible { value: value.to_string(), ty });
            };
            let mut bytes = s.as_bytes().to_vec();
            if bytes.len() > n as usize * 2 {
                return Err(range());
            }
            bytes.resize(n as usize * 2, 0);
            bytes.chunks_exact(2).map(|p| word16(u16::from_be_bytes([p[0], p[1]]), order)).collect()
        }
    })
}

/// Sets or clears bit `bit` of `word`: the read-modify-write of field case B06
/// (`0x6481` with bit 3 set is `0x6489`; the other bits are kept).
pub fn with_bit(word: u16, bit: u8, on: bool) -> u16 {
    if on { word | (1 << bit) } else { word & !(1 << bit) }
}

/// True when a float looks like a byte-order mistake: a non-zero subnormal
/// (|x| < 1.18e-38) or a magnitude above 1e30 (field case B01 self-check).
pub fn implausible_float(x: f64) -> bool {
    x.is_finite() && x != 0.0 && (x.abs() < f32::MIN_POSITIVE as f64 || x.abs() > 1e30)
}
