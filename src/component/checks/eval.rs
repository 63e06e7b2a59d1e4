//! The pure evaluation of one tag's checks on one value: no I/O, no clock,
//! no allocation. State is O(1) per tag ([`TagState`]); times are the
//! samples' own timestamps (so a replayed file is judged on its own time
//! line).
//!
//! Detectors (QARTOD manual for real-time quality control, "gross range",
//! "flat line", "spike", "rate of change" tests, adapted to ingest):
//! - **response_injection**: the value lies outside the physical envelope
//!   → bad (and a security event, see [`super::Checker`]).
//! - **gross_range**: outside `[min, max]` → bad (QARTOD fail); outside
//!   `[suspect_min, suspect_max]` → uncertain (QARTOD suspect). Same sample.
//! - **counter_reset**: a counter that decreases → uncertain.
//! - **rate_of_change**: `|x − x_prev| / (t − t_prev)` above the limit → uncertain.
//! - **spike**: QARTOD compares a value with the mean of its two
//!   neighbours; on ingest only the past is known, so: a value further than
//!   `spike` from the *reference* (the last accepted value) is flagged at
//!   once (no delay); if the next value comes back within `spike` of the
//!   reference the episode was a spike; if it stays within `spike` of the
//!   flagged value the jump was a step: the new level is accepted (that one
//!   sample stayed flagged) and nothing more is flagged.
//! - **flat_line**: the value stayed within `flat_tolerance` of the value
//!   that started the run for at least `flat_line` → uncertain, from the
//!   first sample past the window (bound: window + one sample period).
//!
//! A value flagged bad (envelope, gross range fail) does not become the
//! reference of the next samples (previous value, spike reference, flat
//! line run).

use crate::model::Quality;

use super::config::Limits;

/// A detector: the reason code of the samples it flags and the
/// `details.detector` of its events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Detector {
    /// Outside the physical envelope.
    ResponseInjection = 0,
    /// Outside the fail or suspect span.
    GrossRange = 1,
    /// Sudden one-sample excursion.
    Spike = 2,
    /// Changes faster than allowed.
    RateOfChange = 3,
    /// Unchanged for too long.
    FlatLine = 4,
    /// A counter decreased.
    CounterReset = 5,
    /// The quality turned bad for a reason that is not a communication failure.
    BadQuality = 6,
    /// No new sample for too long.
    Stale = 7,
}

impl Detector {
    /// The value detectors, in the order their reasons win on a sample.
    pub const VALUE: [Detector; 6] = [
        Detector::ResponseInjection,
        Detector::GrossRange,
        Detector::Spike,
        Detector::RateOfChange,
        Detector::FlatLine,
        Detector::CounterReset,
    ];

    /// `gross_range`, `flat_line`, … (the reason code and `details.detector`).
    pub fn name(self) -> &'static str {
        match self {
            Detector::ResponseInjection => "response_injection",
            Detector::GrossRange => "gross_range",
            Detector::Spike => "spike",
            Detector::RateOfChange => "rate_of_change",
            Detector::FlatLine => "flat_line",
            Detector::CounterReset => "counter_reset",
            Detector::BadQuality => "bad_quality",
            Detector::Stale => "stale",
        }
    }

    /// Its bit in [`TagState::active`].
    pub fn bit(self) -> u16 {
        1 << (self as u8)
    }
}

/// What a detector found, enough to write the reason's detail.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum What {
    /// Above a limit (`name` is the key: `max`, `suspect_max`).
    Above(f64, &'static str),
    /// Below a limit.
    Below(f64, &'static str),
    /// Outside the envelope `[lo, hi]`.
    Outside(f64, f64),
    /// Jumped from the reference value by more than the threshold.
    Jump {
        /// The reference (last accepted value).
        from: f64,
        /// The `spike` threshold.
        threshold: f64,
    },
    /// Changed at this rate above the limit.
    Rate {
        /// Units per second.
        per_s: f64,
        /// The `rate_of_change` limit.
        max: f64,
    },
    /// Unchanged within the tolerance.
    Flat {
        /// For this many nanoseconds.
        for_ns: i64,
        /// The `flat_tolerance`.
        tolerance: f64,
    },
    /// Decreased from this value.
    Decrease(f64),
}

/// One detector's finding on one value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Flag {
    /// Which detector.
    pub detector: Detector,
    /// Bad (QARTOD fail) or uncertain (QARTOD suspect).
    pub quality: Quality,
    /// The detail.
    pub what: What,
}

impl Flag {
    /// The sample's reason: `gross_range: 181.0 above max 150.0`.
    pub fn reason(&self, x: f64) -> String {
        let v = num(x);
        let detail = match self.what {
            What::Above(l, k) => format!("{v} above {k} {}", num(l)),
            What::Below(l, k) => format!("{v} below {k} {}", num(l)),
            What::Outside(lo, hi) => format!("{v} outside the physical envelope [{}, {}]", num(lo), num(hi)),
            What::Jump { from, threshold } => format!("{v} jumps {} from {} (spike {})", num((x - from).abs()), num(from), num(threshold)),
            What::Rate { per_s, max } => format!("{v} changes at {}/s (max {}/s)", num(per_s), num(max)),
            What::Flat { for_ns, tolerance } => {
                format!("{v} unchanged (±{}) for {:.1}s", num(tolerance), for_ns as f64 / 1e9)
            }
            What::Decrease(from) => format!("{v} after {}", num(from)),
        };
        format!("{}: {detail}", self.detector.name())
    }
}

/// A number as a reason shows it: `181.0`, `0.25`, `1e-9`.
pub fn num(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 { format!("{x:.1}") } else { format!("{}", (x * 1e6).round() / 1e6) }
}

/// The findings of every value detector on one value, by detector.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Findings {
    flags: [Option<Flag>; 6],
}

impl Findings {
    /// The finding of `d`, if it fired.
    pub fn get(&self, d: Detector) -> Option<&Flag> {
        self.flags.get(d as usize).and_then(Option::as_ref)
    }

    fn set(&mut self, f: Flag) {
        if let Some(slot) = self.flags.get_mut(f.detector as usize) {
            *slot = Some(f);
        }
    }

    /// Every finding, in [`Detector::VALUE`] order.
    pub fn iter(&self) -> impl Iterator<Item = &Flag> {
        self.flags.iter().flatten()
    }

    /// The finding that names the sample: the first bad one, else the first.
    pub fn worst(&self) -> Option<&Flag> {
        self.iter().find(|f| f.quality == Quality::Bad).or_else(|| self.iter().next())
    }

    /// Bits of the detectors that fired.
    pub fn bits(&self) -> u16 {
        self.iter().fold(0, |b, f| b | f.detector.bit())
    }
}

/// O(1) state of one tag (a few numbers).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TagState {
    /// Detectors currently flagging the tag (bits of [`Detector::bit`]):
    /// a change of a bit is an event.
    pub active: u16,
    /// The gross range flag is at the fail level (a suspect → fail change is an event too).
    pub gross_fail: bool,
    /// Last accepted value and its time (ns).
    prev: Option<(f64, i64)>,
    /// Value and time (ns) that started the current flat run.
    flat: Option<(f64, i64)>,
    /// Spike reference (last accepted value) and the value flagged as a spike, if the last one was.
    spike_ref: Option<f64>,
    spiked: Option<f64>,
}

impl TagState {
    /// The source sent a sample without a value (bad): the flat run and the
    /// spike reference restart with the next value (the previous value is
    /// kept for counters).
    pub fn broken(&mut self) {
        self.flat = None;
        self.spike_ref = None;
        self.spiked = None;
    }
}

/// Evaluates the value detectors of `l` on value `x` at `ts_ns` (the
/// sample's time), updating `st` (except [`TagState::active`], which the
/// caller owns).
pub fn evaluate(l: &Limits, st: &mut TagState, x: f64, ts_ns: i64) -> Findings {
    let mut f = Findings::default();
    let mut flag = |detector, quality, what| f.set(Flag { detector, quality, what });
    let bad = Quality::Bad;
    let unc = Quality::Uncertain;
    if let Some((lo, hi)) = l.envelope
        && !(lo..=hi).contains(&x)
    {
        flag(Detector::ResponseInjection, bad, What::Outside(lo, hi));
    }
    if let Some(m) = l.max.filter(|m| x > *m) {
        flag(Detector::GrossRange, bad, What::Above(m, "max"));
    } else if let Some(m) = l.min.filter(|m| x < *m) {
        flag(Detector::GrossRange, bad, What::Below(m, "min"));
    } else if let Some(m) = l.suspect_max.filter(|m| x > *m) {
        flag(Detector::GrossRange, unc, What::Above(m, "suspect_max"));
    } else if let Some(m) = l.suspect_min.filter(|m| x < *m) {
        flag(Detector::GrossRange, unc, What::Below(m, "suspect_min"));
    }
    let failed = f.iter().any(|g| g.quality == Quality::Bad);
    if failed {
        // Not a reading to compare the next ones with.
        return f;
    }
    let mut flag = |detector, quality, what| f.set(Flag { detector, quality, what });
    if let Some((px, pt)) = st.prev {
        if l.counter == Some(true) && x < px {
            flag(Detector::CounterReset, unc, What::Decrease(px));
        }
        let dt = (ts_ns - pt) as f64 / 1e9;
        if let Some(max) = l.rate_of_change
            && dt > 0.0
        {
            let per_s = (x - px).abs() / dt;
            if per_s > max {
                flag(Detector::RateOfChange, unc, What::Rate { per_s, max });
            }
        }
    }
    st.prev = Some((x, ts_ns));
    if let Some(threshold) = l.spike {
        match st.spike_ref {
            Some(r) if (x - r).abs() > threshold => match st.spiked {
                // Stays at the new level: a step, not a spike.
                Some(s) if (x - s).abs() <= threshold => {
                    st.spike_ref = Some(x);
                    st.spiked = None;
                }
                _ => {
                    flag(Detector::Spike, unc, What::Jump { from: r, threshold });
                    st.spiked = Some(x);
                }
            },
            _ => {
                st.spike_ref = Some(x);
                st.spiked = None;
            }
        }
    }
    if let Some(window) = l.flat_line {
        let tol = l.flat_tolerance.unwrap_or(0.0);
        match st.flat {
            Some((v, t0)) if (x - v).abs() <= tol => {
                let for_ns = ts_ns - t0;
                if for_ns >= window.as_nanos() as i64 {
                    flag(Detector::FlatLine, unc, What::Flat { for_ns, tolerance: tol });
                }
            }
            _ => st.flat = Some((x, ts_ns)),
        }
    }
    f
}

#[cfg(test)]
#[path = "eval_tests.rs"]
mod tests;
