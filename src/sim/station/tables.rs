//! A station's register tables and the encoding of values into them
//! (pure helpers of `Station`, also used by the fault overlay).

use super::super::config::SimTag;
use super::super::signal::SimValue;
use crate::model::Value;
use crate::sources::modbus::decode::{encode, with_bit, word16};
use crate::sources::modbus::types::{DataType, Table};

#[derive(Default)]
pub(crate) struct Table16 {
    pub(crate) data: Vec<u16>,
    pub(crate) mapped: Vec<bool>,
}

#[derive(Default)]
pub(crate) struct TableBits {
    pub(crate) data: Vec<bool>,
    pub(crate) mapped: Vec<bool>,
}

#[derive(Default)]
pub(crate) struct Bank {
    pub(crate) holding: Table16,
    pub(crate) input: Table16,
    pub(crate) coils: TableBits,
    pub(crate) discrete: TableBits,
}

pub(crate) fn grow<T: Clone + Default>(v: &mut Vec<T>, len: usize) {
    if v.len() < len {
        v.resize(len, T::default());
    }
}

/// A signal value in engineering units, typed as the tag's data type
/// suggests (integers stay exact).
pub(crate) fn engineering(tag: &SimTag, v: &SimValue) -> Option<Value> {
    Some(match v {
        SimValue::Missing => return None,
        SimValue::Text(s) => Value::Str(s.clone()),
        SimValue::Num(x) if tag.ty == DataType::Bool => Value::Bool(*x != 0.0),
        // An unscaled integer tag shows what its registers hold (rounded and
        // saturated), so OPC UA serves it as an integer, as Modbus does.
        SimValue::Num(x) if tag.ty.is_integer() && tag.scale == 1.0 && tag.offset == 0.0 => to_value(tag, *x),
        SimValue::Num(x) => Value::F64(*x),
        SimValue::Int(i) if tag.ty == DataType::Bool => Value::Bool(*i != 0),
        SimValue::Int(i) if tag.ty.is_float() || tag.scale != 1.0 || tag.offset != 0.0 => Value::F64(*i as f64),
        SimValue::Int(i) if matches!(tag.ty, DataType::I16 | DataType::I32 | DataType::I64) => {
            Value::I64((*i).clamp(i64::MIN as i128, i64::MAX as i128) as i64)
        }
        SimValue::Int(i) if matches!(tag.ty, DataType::U16 | DataType::U32 | DataType::U64) => {
            Value::U64((*i).clamp(0, u64::MAX as i128) as u64)
        }
        SimValue::Int(i) => Value::F64(*i as f64),
    })
}

fn to_value(tag: &SimTag, v: f64) -> Value {
    let raw = (v - tag.offset) / tag.scale;
    match tag.ty {
        DataType::Bool => Value::Bool(raw != 0.0),
        DataType::F32 | DataType::F64 => Value::F64(raw),
        DataType::U16 => Value::U64(raw.round().clamp(0.0, u16::MAX as f64) as u64),
        DataType::U32 => Value::U64(raw.round().clamp(0.0, u32::MAX as f64) as u64),
        DataType::U64 => Value::U64(raw.round().max(0.0) as u64),
        DataType::I16 => Value::I64(raw.round().clamp(i16::MIN as f64, i16::MAX as f64) as i64),
        DataType::I32 => Value::I64(raw.round().clamp(i32::MIN as f64, i32::MAX as f64) as i64),
        DataType::I64 => Value::I64(raw.round() as i64),
        DataType::String(_) => Value::Str(format!("{v}")),
    }
}

/// Exact integers go to integer types unchanged (saturated to the type's
/// range) when no scaling is configured; otherwise they take the float path.
fn int_value(tag: &SimTag, i: i128) -> Value {
    if tag.scale != 1.0 || tag.offset != 0.0 || tag.ty.is_float() || tag.ty == DataType::Bool {
        return to_value(tag, i as f64);
    }
    let (lo, hi): (i128, i128) = match tag.ty {
        DataType::U16 => (0, u16::MAX as i128),
        DataType::U32 => (0, u32::MAX as i128),
        DataType::U64 => (0, u64::MAX as i128),
        DataType::I16 => (i16::MIN as i128, i16::MAX as i128),
        DataType::I32 => (i32::MIN as i128, i32::MAX as i128),
        DataType::I64 => (i64::MIN as i128, i64::MAX as i128),
        _ => return to_value(tag, i as f64),
    };
    let v = i.clamp(lo, hi);
    if lo == 0 { Value::U64(v as u64) } else { Value::I64(v as i64) }
}

/// The engineering value of `tag` in the tables (what a client wrote):
/// bits as 0/1, registers decoded and scaled like a gateway reads them.
pub(crate) fn read_tag(bank: &Bank, tag: &SimTag) -> Option<f64> {
    let a = tag.address as usize;
    let v = match tag.table {
        Table::Coil => Value::Bool(bank.coils.data.get(a).copied().unwrap_or(false)),
        Table::DiscreteInput => Value::Bool(bank.discrete.data.get(a).copied().unwrap_or(false)),
        Table::Holding | Table::Input => {
            let tb = if tag.table == Table::Holding { &bank.holding } else { &bank.input };
            let n = tag.ty.register_count() as usize;
            let words: Vec<u16> = (a..a + n).map(|i| tb.data.get(i).copied().unwrap_or(0)).collect();
            let v = crate::sources::modbus::decode::decode(&words, tag.ty, tag.byte_order, tag.bit).ok()?;
            crate::model::apply_scale(v, tag.scale, tag.offset)
        }
    };
    v.as_f64()
}

pub(crate) fn write_tag(bank: &mut Bank, tag: &SimTag, v: SimValue) {
    let value = match v {
        SimValue::Missing => return,
        SimValue::Text(s) => Value::Str(s),
        SimValue::Num(x) => to_value(tag, x),
        SimValue::Int(i) => int_value(tag, i),
    };
    let a = tag.address as usize;
    match tag.table {
        Table::Coil | Table::DiscreteInput => {
            let tb = if tag.table == Table::Coil { &mut bank.coils } else { &mut bank.discrete };
            grow(&mut tb.data, a + 1);
            tb.data[a] = matches!(value, Value::Bool(true));
        }
        Table::Holding | Table::Input => {
            let tb = if tag.table == Table::Holding { &mut bank.holding } else { &mut bank.input };
            if let (Some(bit), Value::Bool(on)) = (tag.bit, &value) {
                grow(&mut tb.data, a + 1);
                let w = word16(tb.data[a], tag.byte_order);
                tb.data[a] = word16(with_bit(w, bit, *on), tag.byte_order);
                return;
            }
            if let Ok(words) = encode(&value, tag.ty, tag.byte_order) {
                grow(&mut tb.data, a + words.len());
                tb.data[a..a + words.len()].copy_from_slice(&words);
            }
        }
    }
}
