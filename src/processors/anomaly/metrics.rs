//! Evaluation metrics (pure), as SKAB defines them for outlier detection
//! (Katser & Kozitsin, "Skoltech Anomaly Benchmark", 2020): over the scored
//! rows, TP/FP/FN/TN of the flag against the label, then
//! precision = TP / (TP + FP), recall = TP / (TP + FN), F1 their harmonic
//! mean, FAR = FP / (FP + TN) (false-alarm rate), MAR = FN / (FN + TP)
//! (missed-alarm rate). A ratio whose denominator is 0 is reported as 0.
//!
//! Changepoints: the predicted changepoints are the rows where the flag
//! changes (either way), as in SKAB's notebooks. Each labelled changepoint
//! is detected by the first predicted change at or after it and before the
//! next labelled changepoint; its delay is the time between the two. The
//! average detection delay is the mean over the detected ones; the others
//! are counted as missed.

/// A confusion matrix of scored rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Confusion {
    /// Flagged and labelled anomalous.
    pub tp: u64,
    /// Flagged, labelled normal.
    pub fp: u64,
    /// Not flagged, labelled anomalous.
    pub fn_: u64,
    /// Not flagged, labelled normal.
    pub tn: u64,
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

impl Confusion {
    /// Counts one row.
    pub fn add(&mut self, predicted: bool, label: bool) {
        match (predicted, label) {
            (true, true) => self.tp += 1,
            (true, false) => self.fp += 1,
            (false, true) => self.fn_ += 1,
            (false, false) => self.tn += 1,
        }
    }

    /// Sums two matrices.
    pub fn merge(&mut self, o: &Confusion) {
        self.tp += o.tp;
        self.fp += o.fp;
        self.fn_ += o.fn_;
        self.tn += o.tn;
    }

    /// TP / (TP + FP).
    pub fn precision(&self) -> f64 {
        ratio(self.tp, self.tp + self.fp)
    }

    /// TP / (TP + FN).
    pub fn recall(&self) -> f64 {
        ratio(self.tp, self.tp + self.fn_)
    }

    /// 2 P R / (P + R).
    pub fn f1(&self) -> f64 {
        let (p, r) = (self.precision(), self.recall());
        if p + r == 0.0 { 0.0 } else { 2.0 * p * r / (p + r) }
    }

    /// FP / (FP + TN).
    pub fn far(&self) -> f64 {
        ratio(self.fp, self.fp + self.tn)
    }

    /// FN / (FN + TP).
    pub fn mar(&self) -> f64 {
        ratio(self.fn_, self.fn_ + self.tp)
    }

    /// Rows counted.
    pub fn rows(&self) -> u64 {
        self.tp + self.fp + self.fn_ + self.tn
    }
}

/// Detection delays of labelled changepoints.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Delays {
    /// Delay of each detected changepoint, seconds.
    pub detected: Vec<f64>,
    /// Labelled changepoints without a predicted change before the next one.
    pub missed: u64,
}

impl Delays {
    /// Average detection delay in seconds (`None` when none was detected).
    pub fn average(&self) -> Option<f64> {
        (!self.detected.is_empty()).then(|| self.detected.iter().sum::<f64>() / self.detected.len() as f64)
    }

    /// Appends another file's delays.
    pub fn merge(&mut self, o: &Delays) {
        self.detected.extend_from_slice(&o.detected);
        self.missed += o.missed;
    }
}

/// Changepoint delays over scored rows: `ts` in ns, the flag, the
/// changepoint label. The first row's flag is compared with `prev_flag` (the
/// state before the scored part: false).
pub fn changepoint_delays(ts: &[i64], flag: &[bool], cp: &[bool]) -> Delays {
    let mut out = Delays::default();
    let changes: Vec<usize> = (0..flag.len()).filter(|&i| flag[i] != if i == 0 { false } else { flag[i - 1] }).collect();
    let cps: Vec<usize> = (0..cp.len()).filter(|&i| cp[i]).collect();
    for (j, &c) in cps.iter().enumerate() {
        let end = cps.get(j + 1).copied().unwrap_or(usize::MAX);
        match changes.iter().find(|&&p| p >= c && p < end) {
            Some(&p) => out.detected.push((ts[p] - ts[c]) as f64 / 1e9),
            None => out.missed += 1,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confusion_matrix_by_hand() {
        // label: 0 0 1 1 1 0 0 1 ; flag: 0 1 1 0 1 0 1 1
        // TP = rows 2, 4, 7 = 3; FP = rows 1, 6 = 2; FN = row 3 = 1; TN = rows 0, 5 = 2.
        let label = [0, 0, 1, 1, 1, 0, 0, 1];
        let flag = [0, 1, 1, 0, 1, 0, 1, 1];
        let mut c = Confusion::default();
        for (f, l) in flag.iter().zip(label) {
            c.add(*f == 1, l == 1);
        }
        assert_eq!(c, Confusion { tp: 3, fp: 2, fn_: 1, tn: 2 });
        assert_eq!(c.precision(), 0.6);
        assert_eq!(c.recall(), 0.75);
        assert!((c.f1() - 2.0 / 3.0).abs() < 1e-15);
        assert_eq!(c.far(), 0.5);
        assert_eq!(c.mar(), 0.25);
        assert_eq!(Confusion::default().f1(), 0.0, "no rows: 0, not NaN");
    }

    #[test]
    fn changepoint_delays_by_hand() {
        let s = 1_000_000_000;
        let ts: Vec<i64> = (0..10).map(|i| i * s).collect();
        // Labelled changepoints at rows 2 and 6; the flag rises at 4 and falls at 5 (both before row 6),
        // then never changes again: the first is detected 2 s late, the second is missed.
        let cp = [false, false, true, false, false, false, true, false, false, false];
        let flag = [false, false, false, false, true, false, false, false, false, false];
        let d = changepoint_delays(&ts, &flag, &cp);
        assert_eq!(d, Delays { detected: vec![2.0], missed: 1 });
        assert_eq!(d.average(), Some(2.0));
    }
}
