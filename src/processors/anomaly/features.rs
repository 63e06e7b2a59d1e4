//! Input features of a detector, row by row (pure): each watched tag's level
//! or rate of change, then an EWMA.
//!
//! A rate is (x − x_prev) / Δt in units per second, Δt from the row
//! timestamps (0 on the first row and when Δt ≤ 0). The EWMA with span s has
//! α = 2 / (s + 1) and starts at the first row's value (no bias correction),
//! exactly as a stream sees it. A missing input (NaN) makes the row
//! unscorable and leaves the state untouched.

/// Streaming feature state for d inputs.
#[derive(Debug, Clone)]
pub struct Features {
    rate: Vec<bool>,
    alpha: f64,
    prev_x: Vec<f64>,
    prev_ts: Option<i64>,
    ewma: Vec<f64>,
    started: bool,
}

impl Features {
    /// d inputs (`rate[i]`: input i is watched by its rate), EWMA span in rows.
    pub fn new(rate: &[bool], span: u32) -> Features {
        let d = rate.len();
        Features {
            rate: rate.to_vec(),
            alpha: 2.0 / (f64::from(span.max(1)) + 1.0),
            prev_x: vec![0.0; d],
            prev_ts: None,
            ewma: vec![0.0; d],
            started: false,
        }
    }

    /// Feeds one row (timestamp in ns, values); returns the smoothed features,
    /// or the index of the first missing (non-finite) input.
    pub fn push(&mut self, ts: i64, x: &[f64]) -> Result<&[f64], usize> {
        if let Some(i) = x.iter().position(|v| !v.is_finite()) {
            return Err(i);
        }
        let dt = self.prev_ts.map(|p| (ts - p) as f64 / 1e9);
        for i in 0..x.len() {
            let f = if self.rate[i] {
                match dt {
                    Some(dt) if dt > 0.0 => (x[i] - self.prev_x[i]) / dt,
                    _ => 0.0,
                }
            } else {
                x[i]
            };
            self.ewma[i] = if self.started { self.ewma[i] + self.alpha * (f - self.ewma[i]) } else { f };
            self.prev_x[i] = x[i];
        }
        self.prev_ts = Some(ts);
        self.started = true;
        Ok(&self.ewma)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_and_ewma() {
        let mut f = Features::new(&[false, true], 3); // α = 0.5
        assert_eq!(f.push(0, &[2.0, 10.0]).unwrap(), &[2.0, 0.0]);
        // Δt = 2 s: rate (14 − 10) / 2 = 2; EWMA 0 + 0.5 (2 − 0) = 1.
        assert_eq!(f.push(2_000_000_000, &[4.0, 14.0]).unwrap(), &[3.0, 1.0]);
        assert_eq!(f.push(3_000_000_000, &[4.0, f64::NAN]), Err(1));
        // State untouched by the missing row: Δt = 2 s from the last good row.
        assert_eq!(f.push(4_000_000_000, &[4.0, 14.0]).unwrap(), &[3.5, 0.5]);
    }
}
