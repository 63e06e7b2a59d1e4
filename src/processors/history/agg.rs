//! The rollup math, pure: one [`Agg`] summarises the samples of one tag (or
//! of a group of tags) in one time bucket.
//!
//! Measures (decided in `docs/history.md`):
//! - `count`: every sample, whatever its quality and value;
//! - `good`, `bad`: samples of quality good / bad (uncertain = the rest);
//! - `num`, `sum`, `min`, `max`: over the **good numeric** values only
//!   (booleans count as 0/1; text and null values are counted, never summed);
//!   `mean = sum / num`, `None` when `num = 0`;
//! - `last`: the good numeric value with the greatest `(ts, seq)`.
//!
//! Invariants: [`Agg::merge`] is associative and commutative (a bucket
//! written in several ticks, or several tags grouped, give the same result in
//! any order); a bucket with no good numeric value has `min`, `max`, `mean`
//! and `last` all `None`, never 0.

use crate::model::Quality;

/// One minute and one hour, in nanoseconds (the rollup bucket widths).
pub const MINUTE_NS: i64 = 60_000_000_000;
/// One hour in nanoseconds.
pub const HOUR_NS: i64 = 3_600_000_000_000;

/// The summary of some samples.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Agg {
    /// Samples of any quality.
    pub count: u64,
    /// Samples of quality good.
    pub good: u64,
    /// Samples of quality bad.
    pub bad: u64,
    /// Good samples with a numeric value.
    pub num: u64,
    /// Sum of the good numeric values.
    pub sum: f64,
    /// Smallest good numeric value.
    pub min: Option<f64>,
    /// Largest good numeric value.
    pub max: Option<f64>,
    /// The good numeric value with the greatest `(ts, seq)`: `(ts, seq, value)`.
    pub last: Option<(i64, u64, f64)>,
}

impl Agg {
    /// Adds one sample: its quality, its numeric view (`None` for text or
    /// null), its timestamp (ns) and `seq`.
    pub fn add(&mut self, quality: Quality, value: Option<f64>, ts: i64, seq: u64) {
        self.count += 1;
        match quality {
            Quality::Good => self.good += 1,
            Quality::Bad => self.bad += 1,
            Quality::Uncertain => {}
        }
        if quality != Quality::Good {
            return;
        }
        let Some(v) = value.filter(|v| v.is_finite()) else { return };
        self.merge(&Agg { count: 0, good: 0, bad: 0, num: 1, sum: v, min: Some(v), max: Some(v), last: Some((ts, seq, v)) });
    }

    /// Adds another summary (of other samples) to this one.
    pub fn merge(&mut self, o: &Agg) {
        self.count += o.count;
        self.good += o.good;
        self.bad += o.bad;
        self.num += o.num;
        self.sum += o.sum;
        self.min = pick(self.min, o.min, f64::min);
        self.max = pick(self.max, o.max, f64::max);
        self.last = match (self.last, o.last) {
            (Some(a), Some(b)) => Some(if (b.0, b.1) > (a.0, a.1) { b } else { a }),
            (a, b) => a.or(b),
        };
    }

    /// Samples of quality uncertain.
    pub fn uncertain(&self) -> u64 {
        self.count - self.good - self.bad
    }

    /// `sum / num`, `None` without a good numeric value.
    pub fn mean(&self) -> Option<f64> {
        (self.num > 0).then(|| self.sum / self.num as f64)
    }

    /// The same samples split by quality (the `quality` dimension): the good
    /// part keeps the measures, the uncertain and bad parts only count (their
    /// values are never summarised). Parts without samples are left out.
    pub fn by_quality(&self) -> Vec<(Quality, Agg)> {
        let good = Agg { count: self.good, bad: 0, ..*self };
        let unc = Agg { count: self.uncertain(), ..Agg::default() };
        let bad = Agg { count: self.bad, bad: self.bad, ..Agg::default() };
        [(Quality::Good, good), (Quality::Uncertain, unc), (Quality::Bad, bad)].into_iter().filter(|(_, a)| a.count > 0).collect()
    }
}

fn pick(a: Option<f64>, b: Option<f64>, f: fn(f64, f64) -> f64) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(f(a, b)),
        (a, b) => a.or(b),
    }
}

/// Start of the bucket of width `width` (ns, > 0) holding `ts`: buckets are
/// aligned on the Unix epoch (UTC), also for negative `ts`.
pub fn bucket(ts: i64, width: i64) -> i64 {
    ts.div_euclid(width) * width
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_over_good_numeric_values_only() {
        let mut a = Agg::default();
        a.add(Quality::Good, Some(2.0), 10, 1);
        a.add(Quality::Good, Some(4.0), 30, 3);
        a.add(Quality::Good, None, 40, 4); // text
        a.add(Quality::Uncertain, Some(100.0), 50, 5);
        a.add(Quality::Bad, None, 60, 6);
        a.add(Quality::Good, Some(-1.0), 20, 2); // older ts: not last
        assert_eq!((a.count, a.good, a.bad, a.uncertain(), a.num), (6, 4, 1, 1, 3));
        assert_eq!((a.min, a.max), (Some(-1.0), Some(4.0)));
        assert_eq!(a.mean(), Some(5.0 / 3.0));
        assert_eq!(a.last, Some((30, 3, 4.0)));
    }

    #[test]
    fn no_good_number_gives_no_measure() {
        let mut a = Agg::default();
        a.add(Quality::Bad, None, 1, 1);
        a.add(Quality::Good, None, 2, 2);
        a.add(Quality::Good, Some(f64::NAN), 3, 3);
        assert_eq!((a.count, a.good, a.num), (3, 2, 0));
        assert_eq!((a.min, a.max, a.mean(), a.last), (None, None, None, None));
    }

    #[test]
    fn merge_is_order_independent() {
        let vals = [(Quality::Good, Some(3.0)), (Quality::Bad, None), (Quality::Good, Some(7.5)), (Quality::Good, Some(-2.0))];
        let mut whole = Agg::default();
        let (mut a, mut b) = (Agg::default(), Agg::default());
        for (i, (q, v)) in vals.iter().enumerate() {
            whole.add(*q, *v, i as i64, i as u64);
            if i % 2 == 0 { &mut a } else { &mut b }.add(*q, *v, i as i64, i as u64);
        }
        let mut ab = a;
        ab.merge(&b);
        let mut ba = b;
        ba.merge(&a);
        assert_eq!(ab, whole);
        assert_eq!(ba, whole);
    }

    #[test]
    fn split_by_quality_keeps_counts() {
        let mut a = Agg::default();
        a.add(Quality::Good, Some(1.0), 1, 1);
        a.add(Quality::Uncertain, Some(9.0), 2, 2);
        a.add(Quality::Bad, None, 3, 3);
        a.add(Quality::Bad, None, 4, 4);
        let parts = a.by_quality();
        let counts: Vec<(Quality, u64, Option<f64>)> = parts.iter().map(|(q, p)| (*q, p.count, p.max)).collect();
        assert_eq!(counts, vec![(Quality::Good, 1, Some(1.0)), (Quality::Uncertain, 1, None), (Quality::Bad, 2, None)]);
    }

    #[test]
    fn buckets_align_on_the_epoch() {
        assert_eq!(bucket(MINUTE_NS + 5, MINUTE_NS), MINUTE_NS);
        assert_eq!(bucket(-1, MINUTE_NS), -MINUTE_NS);
        assert_eq!(bucket(HOUR_NS * 3 + MINUTE_NS * 59, HOUR_NS), HOUR_NS * 3);
    }
}
