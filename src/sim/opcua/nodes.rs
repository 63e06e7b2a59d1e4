//! The simulator's OPC UA nodes: one object per station, one variable per
//! tag typed after the tag's Modbus type, and the writable `setpoint`.
//!
//! | tag `type`            | DataType / Variant                       |
//! |-----------------------|------------------------------------------|
//! | `bool` (or a bit)     | Boolean                                  |
//! | `i16`, `u16`          | Int16, UInt16                            |
//! | `i32`, `u32`          | Int32, UInt32                            |
//! | `i64`, `u64`          | Int64, UInt64                            |
//! | `f32`, `f64`          | Double                                   |
//! | `string(N)`           | String                                   |
//! | any integer with `scale`/`offset` | Double (the engineering value) |
//!
//! Built-in types of OPC UA Part 3 §8 / Part 6 §5.1.2. Serving a 16-bit
//! register as Int64 made clients such as node-opcua hand it out as a
//! `[high, low]` pair (issue 9 item 22). `f32` tags stay Double, as they
//! were served before (every f32 is exact as a Double, and clients and
//! tests already read them so).

use opcua::server::address_space::{AddressSpace, ObjectBuilder, VariableBuilder};
use opcua::types::{DataTypeId, DataValue, DateTime, NodeId, ObjectId, StatusCode, Variant};

use crate::model::Value;
use crate::sim::Station;
use crate::sim::config::SimTag;
use crate::sources::modbus::types::DataType;

/// The writable Double variable every station object has.
pub(crate) const SETPOINT: &str = "setpoint";

/// `ns=<ns>;s=<station>.<tag>`.
pub(crate) fn node_of(ns: u16, station: &str, tag: &str) -> NodeId {
    NodeId::new(ns, format!("{station}.{tag}"))
}

/// True when the tag's engineering value is its register value (no
/// `scale`/`offset`), so an integer type keeps its own OPC UA type.
fn unscaled(tag: &SimTag) -> bool {
    tag.scale == 1.0 && tag.offset == 0.0
}

/// The OPC UA DataType of a tag's variable.
pub(crate) fn data_type_of(tag: &SimTag) -> DataTypeId {
    match tag.ty {
        DataType::Bool => DataTypeId::Boolean,
        DataType::String(_) => DataTypeId::String,
        DataType::F32 | DataType::F64 => DataTypeId::Double,
        _ if !unscaled(tag) => DataTypeId::Double,
        DataType::I16 => DataTypeId::Int16,
        DataType::U16 => DataTypeId::UInt16,
        DataType::I32 => DataTypeId::Int32,
        DataType::U32 => DataTypeId::UInt32,
        DataType::I64 => DataTypeId::Int64,
        DataType::U64 => DataTypeId::UInt64,
    }
}

/// A tag's value as a Variant of its DataType ([`data_type_of`]). Integers
/// outside the type's range saturate, as the Modbus registers do.
pub(crate) fn variant_of(tag: &SimTag, v: &Value) -> Variant {
    fn sat<T: TryFrom<i128> + Copy>(x: i128, lo: T, hi: T) -> T {
        T::try_from(x).unwrap_or(if x < 0 { lo } else { hi })
    }
    let int = match v {
        Value::Null => return Variant::Empty,
        Value::Bool(b) => return Variant::Boolean(*b),
        Value::Str(s) => return Variant::from(s.as_str()),
        Value::F64(f) => return Variant::Double(*f),
        Value::I64(i) => *i as i128,
        Value::U64(u) => *u as i128,
    };
    match data_type_of(tag) {
        DataTypeId::Int16 => Variant::Int16(sat(int, i16::MIN, i16::MAX)),
        DataTypeId::UInt16 => Variant::UInt16(sat(int, 0, u16::MAX)),
        DataTypeId::Int32 => Variant::Int32(sat(int, i32::MIN, i32::MAX)),
        DataTypeId::UInt32 => Variant::UInt32(sat(int, 0, u32::MAX)),
        DataTypeId::UInt64 => Variant::UInt64(sat(int, 0, u64::MAX)),
        DataTypeId::Double => Variant::Double(int as f64),
        DataTypeId::Boolean => Variant::Boolean(int != 0),
        _ => Variant::Int64(sat(int, i64::MIN, i64::MAX)),
    }
}

/// A tag's DataValue: the value with Good, or `status` (a bad code is
/// served without a value: an Empty one, since the library reads a missing
/// value as Good; good and uncertain codes keep it).
pub(crate) fn data_value(tag: &SimTag, v: &Value, status: Option<u32>, now: DateTime) -> DataValue {
    let (value, status) = match status {
        Some(code) if code >> 30 >= 2 => (Variant::Empty, StatusCode::from(code)),
        Some(code) => (variant_of(tag, v), StatusCode::from(code)),
        None => (variant_of(tag, v), StatusCode::Good),
    };
    DataValue { value: Some(value), status: Some(status), source_timestamp: Some(now), server_timestamp: Some(now), ..Default::default() }
}

/// Adds every station's object, tag variables and setpoint to `space`.
pub(crate) fn build(space: &mut AddressSpace, ns: u16, stations: &[std::sync::Arc<Station>]) {
    for st in stations {
        let obj = NodeId::new(ns, st.cfg.name.clone());
        ObjectBuilder::new(&obj, st.cfg.name.as_str(), st.cfg.name.as_str()).organized_by(ObjectId::ObjectsFolder).insert(space);
        let values = st.values();
        for (tag, v) in st.cfg.tags.iter().zip(values.iter()) {
            let id = node_of(ns, &st.cfg.name, &tag.name);
            VariableBuilder::new(&id, tag.name.as_str(), tag.name.as_str())
                .data_type(data_type_of(tag))
                .value(variant_of(tag, v))
                .component_of(obj.clone())
                .insert(space);
        }
        let sp = node_of(ns, &st.cfg.name, SETPOINT);
        VariableBuilder::new(&sp, SETPOINT, SETPOINT)
            .data_type(DataTypeId::Double)
            .value(0.0f64)
            .writable()
            .component_of(obj.clone())
            .insert(space);
    }
}
