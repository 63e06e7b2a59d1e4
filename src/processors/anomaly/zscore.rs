//! Rolling z-score baseline (pure): each input against the mean and sample
//! standard deviation of its previous `window` rows (the current row is not
//! in its own window). O(d) per row with running sums over a ring of rows;
//! the sums are recomputed from the ring every `window` rows so rounding
//! never accumulates.
//!
//! Score = max |zᵢ| / z_lim, z_lim = Φ⁻¹(1 − (1 − level) / (2d)) (two-sided,
//! Bonferroni over the d inputs): 1 = on the limit, as for T² + Q. A window
//! with zero spread scores an input by its deviation in its own unit.

use statrs::distribution::{ContinuousCDF, Normal};

/// Rolling z-score state for d inputs.
#[derive(Debug, Clone)]
pub struct RollingZ {
    window: usize,
    ring: Vec<Vec<f64>>,
    next: usize,
    filled: usize,
    sum: Vec<f64>,
    sumsq: Vec<f64>,
    since_refresh: usize,
    z_limit: f64,
}

impl RollingZ {
    /// d inputs, `window` rows (≥ 3), limit probability `level`.
    pub fn new(d: usize, window: usize, level: f64) -> RollingZ {
        let p = 1.0 - (1.0 - level) / (2.0 * d.max(1) as f64);
        RollingZ {
            window,
            ring: vec![vec![0.0; d]; window],
            next: 0,
            filled: 0,
            sum: vec![0.0; d],
            sumsq: vec![0.0; d],
            since_refresh: 0,
            z_limit: Normal::standard().inverse_cdf(p),
        }
    }

    /// The |z| limit.
    pub fn z_limit(&self) -> f64 {
        self.z_limit
    }

    /// Whether the window is full (scores before that are `None`).
    pub fn ready(&self) -> bool {
        self.filled == self.window
    }

    /// Scores row `x` against the window (`None` until the window is full),
    /// then adds it to the window.
    pub fn push(&mut self, x: &[f64]) -> Option<f64> {
        let score = self.ready().then(|| {
            let n = self.window as f64;
            let mut worst: f64 = 0.0;
            for (i, v) in x.iter().enumerate() {
                let mean = self.sum[i] / n;
                let var = ((self.sumsq[i] - n * mean * mean) / (n - 1.0)).max(0.0);
                let sd = if var > 0.0 { var.sqrt() } else { 1.0 };
                worst = worst.max(((v - mean) / sd).abs());
            }
            worst / self.z_limit
        });
        let slot = &mut self.ring[self.next];
        for (i, v) in x.iter().enumerate() {
            if self.filled == self.window {
                self.sum[i] -= slot[i];
                self.sumsq[i] -= slot[i] * slot[i];
            }
            self.sum[i] += v;
            self.sumsq[i] += v * v;
            slot[i] = *v;
        }
        self.next = (self.next + 1) % self.window;
        self.filled = (self.filled + 1).min(self.window);
        self.since_refresh += 1;
        if self.since_refresh >= self.window {
            self.refresh();
        }
        score
    }

    fn refresh(&mut self) {
        self.since_refresh = 0;
        for i in 0..self.sum.len() {
            let rows = self.ring.iter().take(self.filled);
            self.sum[i] = rows.clone().map(|r| r[i]).sum();
            self.sumsq[i] = rows.map(|r| r[i] * r[i]).sum();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_against_the_previous_rows_only() {
        let mut z = RollingZ::new(1, 4, 0.999);
        for v in [1.0, 2.0, 3.0, 4.0] {
            assert_eq!(z.push(&[v]), None);
        }
        // Window 1..4: mean 2.5, sd √(5/3); z of 9 = 6.5 / 1.2910 = 5.0349.
        let lim = Normal::standard().inverse_cdf(1.0 - 0.0005);
        let s = z.push(&[9.0]).unwrap();
        assert!((s * lim - 6.5 / (5.0f64 / 3.0).sqrt()).abs() < 1e-12, "{s}");
        // Window 2,3,4,9: mean 4.5, sd √(86/3 − ...): computed directly.
        let w = [2.0, 3.0, 4.0, 9.0];
        let m = w.iter().sum::<f64>() / 4.0;
        let sd = (w.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / 3.0).sqrt();
        let s = z.push(&[0.0]).unwrap();
        assert!((s * lim - m / sd).abs() < 1e-12, "{s}");
    }
}
