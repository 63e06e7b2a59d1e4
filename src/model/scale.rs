//! Linear scaling of numeric values (`scale`, `offset` of Modbus tags and of
//! `[[source.tag]]` rules).

use super::Value;

/// Applies `value * scale + offset` to a numeric value.
///
/// The identity (`scale = 1`, `offset = 0`) keeps integers exact; any other
/// scaling yields [`Value::F64`]. Booleans, strings and nulls are unchanged.
pub fn apply_scale(v: Value, scale: f64, offset: f64) -> Value {
    if scale == 1.0 && offset == 0.0 {
        return v;
    }
    match v {
        Value::I64(x) => Value::F64(scaled(x as f64, scale) + offset),
        Value::U64(x) => Value::F64(scaled(x as f64, scale) + offset),
        Value::F64(x) => Value::F64(scaled(x, scale) + offset),
        other => other,
    }
}

/// `x * scale`, computed as `x / n` when `scale` is `1/n` for an integer `n`
/// (0.1, 0.01, 0.001…): 2152 × 0.1 gives 215.20000000000002 but 2152 / 10
/// gives 215.2, the value the device meant.
fn scaled(x: f64, scale: f64) -> f64 {
    if scale != 0.0 && scale.abs() < 1.0 {
        let inv = 1.0 / scale;
        let n = inv.round();
        if (inv - n).abs() <= 1e-9 * n.abs() {
            return x / n;
        }
    }
    x * scale
}
