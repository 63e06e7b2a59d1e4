use std::fmt;

/// A sample's value.
///
/// Integers keep their own variants so that 64-bit counters survive end to end
/// (2^53 + 1 must arrive as 9007199254740993, field case B03). A bad sample has
/// [`Value::Null`]: a gateway never repeats the last good value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// No value (quality is bad, or the source sent `null`).
    Null,
    /// Boolean (coils, discrete inputs, bits of a register).
    Bool(bool),
    /// Signed integer (i16, i32, i64 registers).
    I64(i64),
    /// Unsigned integer (u16, u32, u64 registers).
    U64(u64),
    /// Floating point: f32 registers widened exactly, f64 registers, scaled values.
    F64(f64),
    /// Text (ASCII register strings).
    Str(String),
}

impl Value {
    /// Numeric view as f64 (booleans as 0/1); `None` for null and strings.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::Bool(b) => Some(if b { 1.0 } else { 0.0 }),
            Value::I64(v) => Some(v as f64),
            Value::U64(v) => Some(v as f64),
            Value::F64(v) => Some(v),
            Value::Null | Value::Str(_) => None,
        }
    }

    /// True for [`Value::Null`].
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("null"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::I64(v) => write!(f, "{v}"),
            Value::U64(v) => write!(f, "{v}"),
            Value::F64(v) => write!(f, "{v}"),
            Value::Str(s) => write!(f, "{s:?}"),
        }
    }
}

impl serde::Serialize for Value {
    /// Non-finite floats serialize as `null`: the JSON we emit never contains bare
    /// NaN or Infinity (field case B29). Sources mark such samples bad anyway.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Null => s.serialize_none(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::I64(v) => s.serialize_i64(*v),
            Value::U64(v) => s.serialize_u64(*v),
            Value::F64(v) if v.is_finite() => s.serialize_f64(*v),
            Value::F64(_) => s.serialize_none(),
            Value::Str(v) => s.serialize_str(v),
        }
    }
}
