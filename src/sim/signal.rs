//! Signal models of the simulator (pure): what a simulated tag reads over time.
//!
//! Time-based signals (sine, ramp, square) depend on the seconds since the
//! simulator started; step-based ones (random walk, counter, CSV replay, tick)
//! advance once per station tick.

use std::sync::Arc;

/// The value a signal gives at one tick.
#[derive(Debug, Clone, PartialEq)]
pub enum SimValue {
    /// A number (encoded into the tag's type).
    Num(f64),
    /// An exact integer (counters and integer constants: 2^53 + 1 stays exact).
    Int(i128),
    /// Text (string tags).
    Text(String),
    /// No value this tick (empty CSV cell): the register keeps its content.
    Missing,
}

/// One column of a CSV file, loaded once and shared.
#[derive(Debug, Clone)]
pub struct CsvColumn {
    /// Values by row; `None` for empty or non-numeric cells.
    pub values: Arc<Vec<Option<f64>>>,
}

/// A signal model.
#[derive(Debug, Clone)]
#[allow(missing_docs)] // each variant's doc names its fields
pub enum Signal {
    /// A fixed number, written once (clients may overwrite it: a setpoint).
    Constant(f64),
    /// A fixed integer, written once, exact.
    ConstantInt(i128),
    /// Fixed text, written once.
    Text(String),
    /// `offset + amplitude · sin(2π (t / period + phase))`.
    Sine { amplitude: f64, offset: f64, period_s: f64, phase: f64 },
    /// Rises by `slope` per second from `start`, wrapping from `max` to `min`.
    Ramp { start: f64, slope: f64, min: f64, max: f64 },
    /// Moves by a uniform step in `[-step, step]` per tick, kept in `[min, max]`.
    RandomWalk { value: f64, step: f64, min: f64, max: f64, rng: fastrand::Rng },
    /// `start`, then `+step` per tick; back to `start` past `wrap` if set.
    /// Exact integer arithmetic (64-bit counters cross 2^53 correctly).
    Counter { value: i128, start: i128, step: i128, wrap: Option<i128>, first: bool },
    /// `high` for `duty` of each `period`, else `low` (a toggle with duty 0.5).
    Square { low: f64, high: f64, period_s: f64, duty: f64 },
    /// Replays a CSV column, one row per tick, looping or stopping at the end.
    Csv { column: CsvColumn, looped: bool },
    /// The station's tick number (the CSV row being served).
    Tick,
    /// First-order response to another tag of the station (`input`, a coil
    /// or register that clients write: a pump's start coil, a setpoint):
    /// moves towards `gain · input + offset` with time constant `tau_s`
    /// (63 % of the way after `tau_s`), from `value` (its `start`).
    /// `input_index` is resolved when the station is built.
    Lag { input: String, input_index: Option<usize>, gain: f64, offset: f64, tau_s: f64, value: f64, last_t: Option<f64> },
}

impl Signal {
    /// True for signals written only at start (clients may change them).
    pub fn is_static(&self) -> bool {
        matches!(self, Signal::Constant(_) | Signal::ConstantInt(_) | Signal::Text(_))
    }

    /// The value at `t` seconds since start and tick number `tick`;
    /// `input`: the current value of a `Lag`'s input tag.
    pub fn sample_with(&mut self, t: f64, tick: u64, input: Option<f64>) -> SimValue {
        if let Signal::Lag { gain, offset, tau_s, value, last_t, .. } = self {
            let dt = last_t.map_or(0.0, |l| (t - l).max(0.0));
            *last_t = Some(t);
            if let Some(x) = input {
                let target = *gain * x + *offset;
                *value += (target - *value) * (1.0 - (-dt / *tau_s).exp());
            }
            return SimValue::Num(*value);
        }
        self.sample(t, tick)
    }

    /// The value at `t` seconds since start and tick number `tick`.
    pub fn sample(&mut self, t: f64, tick: u64) -> SimValue {
        match self {
            Signal::Lag { value, .. } => SimValue::Num(*value),
            Signal::Constant(v) => SimValue::Num(*v),
            Signal::ConstantInt(v) => SimValue::Int(*v),
            Signal::Text(s) => SimValue::Text(s.clone()),
            Signal::Sine { amplitude, offset, period_s, phase } => {
                SimValue::Num(*offset + *amplitude * (std::f64::consts::TAU * (t / *period_s + *phase)).sin())
            }
            Signal::Ramp { start, slope, min, max } => {
                let span = (*max - *min).max(f64::MIN_POSITIVE);
                SimValue::Num(*min + ((*start - *min) + *slope * t).rem_euclid(span))
            }
            Signal::RandomWalk { value, step, min, max, rng } => {
                if tick > 0 {
                    *value = (*value + (rng.f64() * 2.0 - 1.0) * *step).clamp(*min, *max);
                }
                SimValue::Num(*value)
            }
            Signal::Counter { value, start, step, wrap, first } => {
                if *first {
                    *first = false;
                } else {
                    *value += *step;
                    if wrap.is_some_and(|w| *value > w) {
                        *value = *start;
                    }
                }
                SimValue::Int(*value)
            }
            Signal::Square { low, high, period_s, duty } => {
                let phase = (t / *period_s).rem_euclid(1.0);
                SimValue::Num(if phase < *duty { *high } else { *low })
            }
            Signal::Csv { column, looped } => {
                let n = column.values.len() as u64;
                if n == 0 {
                    return SimValue::Missing;
                }
                let row = if *looped { tick % n } else { tick.min(n - 1) };
                match column.values[row as usize] {
                    Some(v) => SimValue::Num(v),
                    None => SimValue::Missing,
                }
            }
            Signal::Tick => SimValue::Int(tick as i128),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn models() {
        let mut s = Signal::Sine { amplitude: 2.0, offset: 10.0, period_s: 4.0, phase: 0.0 };
        assert_eq!(s.sample(0.0, 0), SimValue::Num(10.0));
        assert!(matches!(s.sample(1.0, 0), SimValue::Num(v) if (v - 12.0).abs() < 1e-9));
        let mut c = Signal::Counter { value: 5, start: 5, step: 1, wrap: Some(6), first: true };
        let seq: Vec<SimValue> = (0..4).map(|i| c.sample(0.0, i)).collect();
        assert_eq!(seq, vec![SimValue::Int(5), SimValue::Int(6), SimValue::Int(5), SimValue::Int(6)]);
        let mut big = Signal::Counter { value: 9007199254740992, start: 9007199254740992, step: 1, wrap: None, first: true };
        big.sample(0.0, 0);
        assert_eq!(big.sample(0.0, 1), SimValue::Int(9007199254740993));
        let mut r = Signal::Ramp { start: 0.0, slope: 1.0, min: 0.0, max: 10.0 };
        assert_eq!(r.sample(12.0, 0), SimValue::Num(2.0));
        let mut q = Signal::Square { low: 0.0, high: 1.0, period_s: 2.0, duty: 0.5 };
        assert_eq!((q.sample(0.5, 0), q.sample(1.5, 0)), (SimValue::Num(1.0), SimValue::Num(0.0)));
        let col = CsvColumn { values: Arc::new(vec![Some(1.0), None, Some(3.0)]) };
        let mut csv = Signal::Csv { column: col.clone(), looped: true };
        assert_eq!(csv.sample(0.0, 4), SimValue::Missing);
        assert_eq!(csv.sample(0.0, 5), SimValue::Num(3.0));
        let mut once = Signal::Csv { column: col, looped: false };
        assert_eq!(once.sample(0.0, 99), SimValue::Num(3.0));
        let mut w = Signal::RandomWalk { value: 5.0, step: 1.0, min: 4.5, max: 5.5, rng: fastrand::Rng::with_seed(1) };
        for i in 0..100 {
            let SimValue::Num(v) = w.sample(0.0, i) else { panic!() };
            assert!((4.5..=5.5).contains(&v));
        }
    }
}
