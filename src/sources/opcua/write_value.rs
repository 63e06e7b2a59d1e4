//! A write's value as the Variant of the node's DataType (pure): the
//! built-in types of OPC UA Part 6 §5.1.2 (Boolean i=1 … String i=12, in
//! namespace 0). An integer must fit the type (−1 into a UInt16 is refused,
//! never wrapped), a Float must be within its range; any other DataType, or a
//! value of another kind, is refused with a `bad_value` reason.

use opcua::types::{Identifier, NodeId, UAString, Variant};

use crate::model::Value;

/// The Variant of type `data_type` (a DataType NodeId) holding `value`.
pub fn to_variant(value: &Value, data_type: &NodeId) -> Result<Variant, String> {
    let id = match (&data_type.identifier, data_type.namespace) {
        (Identifier::Numeric(n), 0) => *n,
        _ => return Err(format!("bad_value: the node's DataType {data_type} is not a built-in type relais writes")),
    };
    let bad = |what: &str| format!("bad_value: {value} does not fit {what}");
    let int = || -> Result<i128, String> {
        match *value {
            Value::I64(v) => Ok(v as i128),
            Value::U64(v) => Ok(v as i128),
            Value::F64(f) if f.is_finite() && f.fract() == 0.0 && f.abs() < 1.9e19 => Ok(f as i128),
            _ => Err(format!("bad_value: {value} is not an integer")),
        }
    };
    let num = || -> Result<f64, String> {
        match value {
            Value::Bool(_) | Value::Null | Value::Str(_) => Err(format!("bad_value: {value} is not a number")),
            v => v.as_f64().filter(|x| x.is_finite()).ok_or_else(|| format!("bad_value: {value} is not a finite number")),
        }
    };
    Ok(match id {
        1 => match value {
            Value::Bool(b) => Variant::Boolean(*b),
            _ => return Err(format!("bad_value: {value} is not a boolean (true or false) for a Boolean node")),
        },
        2 => Variant::SByte(i8::try_from(int()?).map_err(|_| bad("SByte"))?),
        3 => Variant::Byte(u8::try_from(int()?).map_err(|_| bad("Byte"))?),
        4 => Variant::Int16(i16::try_from(int()?).map_err(|_| bad("Int16"))?),
        5 => Variant::UInt16(u16::try_from(int()?).map_err(|_| bad("UInt16"))?),
        6 => Variant::Int32(i32::try_from(int()?).map_err(|_| bad("Int32"))?),
        7 => Variant::UInt32(u32::try_from(int()?).map_err(|_| bad("UInt32"))?),
        8 => Variant::Int64(i64::try_from(int()?).map_err(|_| bad("Int64"))?),
        9 => Variant::UInt64(u64::try_from(int()?).map_err(|_| bad("UInt64"))?),
        10 => {
            let x = num()?;
            if x.abs() > f32::MAX as f64 {
                return Err(bad("Float"));
            }
            Variant::Float(x as f32)
        }
        11 => Variant::Double(num()?),
        12 => match value {
            Value::Str(s) => Variant::String(UAString::from(s.as_str())),
            _ => return Err(format!("bad_value: {value} is not text for a String node")),
        },
        _ => return Err(format!("bad_value: the node's DataType {data_type} is not a built-in type relais writes")),
    })
}

/// The name of a built-in DataType (`Double` for `i=11`), else its NodeId as text.
pub fn type_name(data_type: &NodeId) -> String {
    const NAMES: [&str; 12] =
        ["Boolean", "SByte", "Byte", "Int16", "UInt16", "Int32", "UInt32", "Int64", "UInt64", "Float", "Double", "String"];
    match (&data_type.identifier, data_type.namespace) {
        (Identifier::Numeric(n @ 1..=12), 0) => NAMES[*n as usize - 1].to_string(),
        _ => data_type.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dt(n: u32) -> NodeId {
        NodeId::new(0, n)
    }

    #[test]
    fn values_take_the_node_type_or_are_refused() {
        assert_eq!(to_variant(&Value::F64(21.5), &dt(11)), Ok(Variant::Double(21.5)));
        assert_eq!(to_variant(&Value::I64(21), &dt(11)), Ok(Variant::Double(21.0)));
        assert_eq!(to_variant(&Value::I64(-10), &dt(4)), Ok(Variant::Int16(-10)));
        assert_eq!(to_variant(&Value::F64(7.0), &dt(5)), Ok(Variant::UInt16(7)));
        assert_eq!(to_variant(&Value::Bool(true), &dt(1)), Ok(Variant::Boolean(true)));
        assert_eq!(to_variant(&Value::U64(9007199254740993), &dt(9)), Ok(Variant::UInt64(9007199254740993)));
        for (v, t) in [
            (Value::I64(-1), 5),
            (Value::I64(70000), 4),
            (Value::F64(7.5), 6),
            (Value::F64(1e39), 10),
            (Value::Str("x".into()), 11),
            (Value::I64(1), 1),
            (Value::I64(1), 12),
        ] {
            let e = to_variant(&v, &dt(t)).unwrap_err();
            assert!(e.starts_with("bad_value:"), "{v} as {t}: {e}");
        }
        assert!(to_variant(&Value::I64(1), &NodeId::new(2, 5000u32)).unwrap_err().contains("not a built-in type"));
    }
}
