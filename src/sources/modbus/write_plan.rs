//! What a write puts on the wire (pure): the engineering value checked
//! against the tag's limits, turned back into its raw value (the inverse of
//! `raw * scale + offset`, field case B05), encoded with the tag's type and
//! byte order, and the request that carries it (function code chosen by the
//! device's settings, never switched on its own).
//!
//! Function codes: FC05 Write Single Coil, FC06 Write Single Register, FC15
//! Write Multiple Coils, FC16 Write Multiple Registers, FC22 Mask Write
//! Register (Modbus Application Protocol v1.1b3 §6.5, §6.6, §6.11, §6.12,
//! §6.16). A bit of a holding register is written with FC22 when the device
//! says it supports it (`mask_write = true`, AND = all ones but the bit,
//! OR = the bit or zero, field case B06), else by read-modify-write of the
//! whole register.

use std::borrow::Cow;

use tokio_modbus::{Request, Response};

use super::config::{DeviceWrites, ModbusTag, SingleWrite, TagWrite};
use super::decode::{encode, with_bit, word16};
use super::types::{DataType, Table};
use crate::model::Value;

/// What must land in the device for one write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// One coil.
    Coil(bool),
    /// The tag's whole registers, in wire order.
    Words(Vec<u16>),
    /// One bit of a holding register (bit 0 = least significant of the
    /// value after the byte order), the other bits kept.
    RegisterBit {
        /// Bit index 0..=15.
        bit: u8,
        /// New state.
        on: bool,
    },
}

/// Checks `value` against the tag's type and limits and encodes it.
/// Errors are reasons: `bad_value: …` (wrong kind of value, does not fit the
/// type, not a multiple of the scale) or `out_of_range: …` (outside `min`/`max`).
pub fn payload(tag: &ModbusTag, w: &TagWrite, value: &Value) -> Result<Payload, String> {
    if tag.ty == DataType::Bool {
        let on = match *value {
            Value::Bool(b) => b,
            Value::I64(0) | Value::U64(0) => false,
            Value::I64(1) | Value::U64(1) => true,
            Value::F64(x) if x == 0.0 || x == 1.0 => x == 1.0,
            _ => return Err(format!("bad_value: {value} is not a boolean (true, false, 0 or 1) for bool tag {:?}", tag.name)),
        };
        return Ok(match (tag.table, tag.bit) {
            (Table::Coil, _) => Payload::Coil(on),
            (_, Some(bit)) => Payload::RegisterBit { bit, on },
            _ => Payload::Words(vec![word16(on as u16, tag.byte_order)]),
        });
    }
    if let DataType::String(_) = tag.ty {
        return encode(value, tag.ty, tag.byte_order).map(Payload::Words).map_err(|e| format!("bad_value: {e}"));
    }
    let Some(x) = value.as_f64().filter(|_| !matches!(value, Value::Bool(_))) else {
        return Err(format!("bad_value: {value} is not a number for {} tag {:?}", tag.ty, tag.name));
    };
    if !x.is_finite() {
        return Err(format!("bad_value: {x} is not a finite number"));
    }
    w.check_range(&tag.name, value, x)?;
    let raw = raw_value(tag, value, x)?;
    encode(&raw, tag.ty, tag.byte_order).map(Payload::Words).map_err(|e| format!("bad_value: {e} (raw value of {value})"))
}

/// The raw value before scaling: `(x - offset) / scale`, which must be
/// integral for integer types (within 1e-9 of an integer, so 21.5 with scale
/// 0.1 is raw 215); integers without scaling stay exact.
fn raw_value(tag: &ModbusTag, value: &Value, x: f64) -> Result<Value, String> {
    if tag.scale == 1.0 && tag.offset == 0.0 {
        return Ok(value.clone());
    }
    let raw = (x - tag.offset) / tag.scale;
    if tag.ty.is_float() {
        return Ok(Value::F64(raw));
    }
    let r = raw.round();
    if (raw - r).abs() > 1e-9 * r.abs().max(1.0) {
        return Err(format!(
            "bad_value: {value} is not representable: ({value} - offset {}) / scale {} = {raw}, not an integer for {}",
            tag.offset, tag.scale, tag.ty
        ));
    }
    Ok(if r < 0.0 { Value::I64(r as i64) } else { Value::U64(r as u64) })
}

/// The FC22 masks that set `bit` of a register to `on` in wire order (a
/// byte-swapped order moves the bit to the other byte): `(and, or)`.
pub fn mask(bit: u8, on: bool, order: super::types::ByteOrder) -> (u16, u16) {
    let m = word16(1 << bit, order);
    (!m, if on { m } else { 0 })
}

/// The register after setting `bit` to `on` in `current` (wire order).
pub fn modified(current: u16, bit: u8, on: bool, order: super::types::ByteOrder) -> u16 {
    word16(with_bit(word16(current, order), bit, on), order)
}

/// The request that writes `words` (or one coil) at `address`, with the
/// device's choice of code for a single item: `(function code, request)`.
pub fn words_request(address: u16, words: &[u16], dev: &DeviceWrites) -> (u8, Request<'static>) {
    match (words, dev.register) {
        ([w], SingleWrite::Single) => (6, Request::WriteSingleRegister(address, *w)),
        _ => (16, Request::WriteMultipleRegisters(address, Cow::Owned(words.to_vec()))),
    }
}

/// The request that writes one coil.
pub fn coil_request(address: u16, on: bool, dev: &DeviceWrites) -> (u8, Request<'static>) {
    match dev.coil {
        SingleWrite::Single => (5, Request::WriteSingleCoil(address, on)),
        SingleWrite::Multiple => (15, Request::WriteMultipleCoils(address, Cow::Owned(vec![on]))),
    }
}

/// What a write of `payload` to `tag` sends, for a person (the reason of a
/// dry run): `120 (0x0078) to holding 10 with FC06`, `ON to coil 3 with
/// FC05`, `bit 3 ON of holding 228 with FC22` or `… by read-modify-write
/// (read, then FC06)`; several registers are listed in wire order.
pub fn describe(payload: &Payload, tag: &ModbusTag, dev: &DeviceWrites) -> String {
    let at = format!("{} {}", tag.table, tag.address);
    let on_off = |on: bool| if on { "ON" } else { "OFF" };
    match payload {
        Payload::Coil(on) => format!("{} to {at} with FC{:02}", on_off(*on), coil_request(tag.address, *on, dev).0),
        Payload::Words(ws) => {
            let fc = words_request(tag.address, ws, dev).0;
            let dec: Vec<String> = ws.iter().map(|w| w.to_string()).collect();
            let hex: Vec<String> = ws.iter().map(|w| format!("0x{w:04X}")).collect();
            let what = if ws.len() == 1 { String::new() } else { "words ".to_string() };
            format!("{what}{} ({}) to {at} with FC{fc:02}", dec.join(", "), hex.join(", "))
        }
        Payload::RegisterBit { bit, on } if dev.mask_write => format!("bit {bit} {} of {at} with FC22", on_off(*on)),
        Payload::RegisterBit { bit, on } => {
            let fc = words_request(tag.address, &[0], dev).0;
            format!("bit {bit} {} of {at} by read-modify-write (read, then FC{fc:02})", on_off(*on))
        }
    }
}

/// True when `resp` is the echo a write `req` must get (§6.5, §6.6, §6.11,
/// §6.12, §6.16: address and value or quantity repeated).
pub fn echo_ok(req: &Request<'_>, resp: &Response) -> bool {
    match (req, resp) {
        (Request::WriteSingleCoil(a, v), Response::WriteSingleCoil(b, w)) => a == b && v == w,
        (Request::WriteSingleRegister(a, v), Response::WriteSingleRegister(b, w)) => a == b && v == w,
        (Request::WriteMultipleCoils(a, v), Response::WriteMultipleCoils(b, n)) => a == b && v.len() == *n as usize,
        (Request::WriteMultipleRegisters(a, v), Response::WriteMultipleRegisters(b, n)) => a == b && v.len() == *n as usize,
        (Request::MaskWriteRegister(a, x, y), Response::MaskWriteRegister(b, u, v)) => a == b && x == u && y == v,
        _ => false,
    }
}

#[cfg(test)]
mod tests;
