//! The state of one leaf test (pure, O(1) per leaf): hysteresis memory,
//! the previous value of an edge, the two anchors of a rate, the time of the
//! latest sample for staleness.
//!
//! Three-valued: a value test whose tag's latest sample is not good (bad,
//! uncertain, none yet) is [`Truth::Unknown`]; a rule never turns active or
//! clears on an unknown (see [`super::engine`]).

use super::cond::{Edge, Test};
use crate::model::Quality;

/// Kleene's three truth values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Truth {
    /// False.
    False,
    /// True.
    True,
    /// Not known: an input has no good value.
    Unknown,
}

impl Truth {
    /// From a boolean.
    pub fn of(b: bool) -> Truth {
        if b { Truth::True } else { Truth::False }
    }

    /// Kleene AND.
    pub fn and(self, o: Truth) -> Truth {
        match (self, o) {
            (Truth::False, _) | (_, Truth::False) => Truth::False,
            (Truth::True, Truth::True) => Truth::True,
            _ => Truth::Unknown,
        }
    }

    /// Kleene OR.
    pub fn or(self, o: Truth) -> Truth {
        match (self, o) {
            (Truth::True, _) | (_, Truth::True) => Truth::True,
            (Truth::False, Truth::False) => Truth::False,
            _ => Truth::Unknown,
        }
    }
}

impl std::ops::Not for Truth {
    type Output = Truth;

    /// Kleene NOT (unknown stays unknown).
    fn not(self) -> Truth {
        match self {
            Truth::True => Truth::False,
            Truth::False => Truth::True,
            Truth::Unknown => Truth::Unknown,
        }
    }
}

/// The state of one leaf.
#[derive(Debug, Clone)]
pub struct LeafState {
    /// The test.
    pub test: Test,
    /// Index of the tag in the engine's tag table.
    pub tag: usize,
    /// Current value of a value test (hysteresis, equals, edge, rate).
    truth: Truth,
    /// Hysteresis memory (`above`/`below`): on or off, kept across bad samples.
    on: bool,
    /// Edge: the previous good value (`None` after a bad sample: no edge across a gap).
    prev: Option<f64>,
    /// Rate: the older anchor (ns, value) and the newer one.
    anchors: [Option<(i64, f64)>; 2],
    /// Latest sample's quality (any quality), for `quality`.
    quality: Option<Quality>,
    /// Latest sample's time (ns), for `stale`.
    last_ts: Option<i64>,
}

impl LeafState {
    /// A leaf before any sample.
    pub fn new(test: Test, tag: usize) -> LeafState {
        LeafState { test, tag, truth: Truth::Unknown, on: false, prev: None, anchors: [None, None], quality: None, last_ts: None }
    }

    /// One sample of its tag at `ts` (ns): `value` is `Some` only for a good
    /// numeric sample.
    pub fn on_sample(&mut self, ts: i64, value: Option<f64>, quality: Quality) {
        self.quality = Some(quality);
        self.last_ts = Some(self.last_ts.map_or(ts, |l| l.max(ts)));
        let Some(v) = value else {
            self.truth = Truth::Unknown;
            self.prev = None;
            self.anchors = [None, None];
            return;
        };
        self.truth = match self.test {
            Test::Above { on, off } => {
                self.on = if v > on {
                    true
                } else if v < off {
                    false
                } else {
                    self.on
                };
                Truth::of(self.on)
            }
            Test::Below { on, off } => {
                self.on = if v < on {
                    true
                } else if v > off {
                    false
                } else {
                    self.on
                };
                Truth::of(self.on)
            }
            Test::Equals(x) => Truth::of(v == x),
            Test::Edge(e) => {
                let hit = self.prev.is_some_and(|p| match e {
                    Edge::Rising => p == 0.0 && v != 0.0,
                    Edge::Falling => p != 0.0 && v == 0.0,
                    Edge::Change => p != v,
                });
                self.prev = Some(v);
                Truth::of(hit)
            }
            Test::Rate { above, below, over } => self.rate(ts, v, above, below, over.as_nanos().min(i64::MAX as u128) as i64),
            Test::Quality(_) | Test::Stale(_) => Truth::Unknown,
        };
    }

    fn rate(&mut self, ts: i64, v: f64, above: Option<f64>, below: Option<f64>, over: i64) -> Truth {
        match self.anchors[1] {
            None => self.anchors[1] = Some((ts, v)),
            Some((t1, _)) if ts - t1 >= over => {
                self.anchors[0] = self.anchors[1];
                self.anchors[1] = Some((ts, v));
            }
            Some(_) => {}
        }
        match self.anchors[0] {
            Some((t0, v0)) if ts > t0 => {
                let r = (v - v0) / ((ts - t0) as f64 / 1e9);
                Truth::of(above.is_some_and(|a| r > a) || below.is_some_and(|b| r < b))
            }
            _ => Truth::Unknown,
        }
    }

    /// The leaf's truth at `now` (ns); `start` is when the rules started (for
    /// `stale` before the first sample).
    pub fn truth(&self, now: i64, start: i64) -> Truth {
        match self.test {
            Test::Quality(q) => Truth::of(self.quality == Some(q)),
            Test::Stale(d) => Truth::of(now.saturating_sub(self.last_ts.unwrap_or(start)) as i128 > d.as_nanos() as i128),
            _ => self.truth,
        }
    }

    /// For `stale`: the first instant (ns) it turns true if no sample comes.
    pub fn stale_deadline(&self, start: i64) -> Option<i64> {
        match self.test {
            Test::Stale(d) => {
                Some(self.last_ts.unwrap_or(start).saturating_add(d.as_nanos().min(i64::MAX as u128) as i64).saturating_add(1))
            }
            _ => None,
        }
    }

    /// An edge is true only at its sample: the tag's next sample resets it
    /// (done by [`LeafState::on_sample`]).
    pub fn is_edge(&self) -> bool {
        matches!(self.test, Test::Edge(_))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const S: i64 = 1_000_000_000;

    fn feed(l: &mut LeafState, vals: &[Option<f64>]) -> Vec<Truth> {
        vals.iter()
            .enumerate()
            .map(|(i, v)| {
                l.on_sample(i as i64 * S, *v, if v.is_some() { Quality::Good } else { Quality::Bad });
                l.truth(i as i64 * S, 0)
            })
            .collect()
    }

    use Truth::{False as F, True as T, Unknown as U};

    #[test]
    fn hysteresis_holds_in_the_band_and_across_a_bad_sample() {
        let mut l = LeafState::new(Test::Above { on: 80.0, off: 75.0 }, 0);
        let got = feed(&mut l, &[Some(70.0), Some(80.0), Some(80.5), Some(76.0), None, Some(76.0), Some(74.9), Some(79.0)]);
        assert_eq!(got, [F, F, T, T, U, T, F, F]);
        let mut l = LeafState::new(Test::Below { on: 10.0, off: 12.0 }, 0);
        assert_eq!(feed(&mut l, &[Some(11.0), Some(9.0), Some(11.9), Some(12.1)]), [F, T, T, F]);
    }

    #[test]
    fn edges_are_true_at_their_sample_only_and_not_across_a_gap() {
        let mut l = LeafState::new(Test::Edge(Edge::Rising), 0);
        assert_eq!(
            feed(&mut l, &[Some(0.0), Some(1.0), Some(1.0), Some(0.0), None, Some(1.0), Some(0.0), Some(1.0)]),
            [F, T, F, F, U, F, F, T]
        );
        let mut l = LeafState::new(Test::Edge(Edge::Falling), 0);
        assert_eq!(feed(&mut l, &[Some(1.0), Some(0.0), Some(0.0)]), [F, T, F]);
        let mut l = LeafState::new(Test::Edge(Edge::Change), 0);
        assert_eq!(feed(&mut l, &[Some(3.0), Some(3.0), Some(4.0)]), [F, F, T]);
    }

    #[test]
    fn rate_uses_an_anchor_between_over_and_twice_over_old() {
        // over = 2 s; samples every second rising 1/s, then 5/s.
        let mut l = LeafState::new(Test::Rate { above: Some(2.0), below: None, over: Duration::from_secs(2) }, 0);
        let got = feed(&mut l, &[Some(0.0), Some(1.0), Some(2.0), Some(3.0), Some(4.0), Some(9.0), Some(14.0)]);
        // t=2: anchors (0,0)->(2,2): rate (2-0)/2 = 1. t=3: 3/3 = 1. t=4: anchor (2,2): 1. t=5: (9-2)/3 = 2.33.
        assert_eq!(got, [U, U, F, F, F, T, T]);
        let mut l = LeafState::new(Test::Rate { above: None, below: Some(-1.0), over: Duration::from_secs(1) }, 0);
        assert_eq!(feed(&mut l, &[Some(10.0), Some(8.0), None, Some(5.0), Some(3.0)]), [U, T, U, U, T], "a bad sample resets the anchors");
    }

    #[test]
    fn quality_and_stale() {
        let mut q = LeafState::new(Test::Quality(Quality::Good), 0);
        assert_eq!(q.truth(0, 0), F, "before any sample");
        q.on_sample(0, None, Quality::Bad);
        assert_eq!(q.truth(0, 0), F);
        q.on_sample(S, Some(1.0), Quality::Good);
        assert_eq!(q.truth(S, 0), T);
        let mut s = LeafState::new(Test::Stale(Duration::from_secs(2)), 0);
        assert_eq!((s.truth(2 * S, 0), s.truth(2 * S + 1, 0), s.stale_deadline(0)), (F, T, Some(2 * S + 1)));
        s.on_sample(3 * S, None, Quality::Bad);
        assert_eq!((s.truth(5 * S, 0), s.truth(5 * S + 1, 0)), (F, T), "any sample, bad too, is news");
    }

    #[test]
    fn kleene_logic() {
        assert_eq!((F.and(U), T.and(U), T.and(T)), (F, U, T));
        assert_eq!((T.or(U), F.or(U), F.or(F)), (T, U, F));
        assert_eq!((!U, !T), (U, F));
    }
}
