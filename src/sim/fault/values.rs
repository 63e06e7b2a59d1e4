//! What a value fault makes of a tag's live value (pure).

use std::time::Instant;

use super::{Active, SimFault};
use crate::model::Value;
use crate::sim::signal::SimValue;

/// A tag's engineering value as a signal value (integers stay exact).
pub fn sim_value(v: &Value) -> SimValue {
    match v {
        Value::Null => SimValue::Missing,
        Value::Bool(b) => SimValue::Int(i128::from(*b)),
        Value::I64(i) => SimValue::Int(i128::from(*i)),
        Value::U64(u) => SimValue::Int(i128::from(*u)),
        Value::F64(f) => SimValue::Num(*f),
        Value::Str(s) => SimValue::Text(s.clone()),
    }
}

fn num(v: &SimValue) -> Option<f64> {
    match v {
        SimValue::Num(x) => Some(*x),
        SimValue::Int(i) => Some(*i as f64),
        SimValue::Text(_) | SimValue::Missing => None,
    }
}

/// The value fault `a` serves for tag `t` whose value (live, or already
/// changed by earlier faults) is `v`, at station tick `tick` and instant
/// `now`. Text and missing values pass through the numeric faults.
pub(crate) fn apply(a: &Active, t: usize, v: SimValue, tick: u64, now: Instant) -> SimValue {
    let captured = || a.captured.get(t).map(sim_value).unwrap_or(SimValue::Missing);
    let Some(x) = num(&v) else {
        return if a.fault == SimFault::Stuck { captured() } else { v };
    };
    match &a.fault {
        SimFault::Stuck => captured(),
        SimFault::Drift { per_second } => SimValue::Num(x + per_second * now.saturating_duration_since(a.started).as_secs_f64()),
        SimFault::Noise { .. } => SimValue::Num(x + a.noise.get(t).copied().unwrap_or(0.0)),
        SimFault::Spike { value } if tick == a.start_tick => SimValue::Num(*value),
        SimFault::OutOfRange { value } | SimFault::FalseValue { value } => SimValue::Num(*value),
        SimFault::CounterReset => match (v, captured()) {
            (SimValue::Int(i), SimValue::Int(base)) => SimValue::Int((i - base).max(0)),
            (_, base) => SimValue::Num((x - num(&base).unwrap_or(0.0)).max(0.0)),
        },
        _ => v,
    }
}
