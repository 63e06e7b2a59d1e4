//! Input features of a detector, row by row (pure): each watched tag's level
//! or its change since the previous row (first difference), then an EWMA.
//!
//! A difference is x − x_prev (0 on the first row). It is per row, not per
//! second, so that a replay of the same rows (`relais detect evaluate`) and
//! the daemon polling them at another pace compute the same features. The
//! EWMA with span s has α = 2 / (s + 1) and starts at the first row's value
//! (no bias correction), exactly as a stream sees it. A missing input (NaN)
//! makes the row unscorable and leaves the state untouched.

/// Streaming feature state for d inputs.
#[derive(Debug, Clone)]
pub struct Features {
    delta: Vec<bool>,
    alpha: f64,
    prev_x: Vec<f64>,
    ewma: Vec<f64>,
    started: bool,
}

impl Features {
    /// d inputs (`delta[i]`: input i is watched by its change from row to
    /// row), EWMA span in rows.
    pub fn new(delta: &[bool], span: u32) -> Features {
        let d = delta.len();
        Features {
            delta: delta.to_vec(),
            alpha: 2.0 / (f64::from(span.max(1)) + 1.0),
            prev_x: vec![0.0; d],
            ewma: vec![0.0; d],
            started: false,
        }
    }

    /// Feeds one row; returns the smoothed features, or the index of the
    /// first missing (non-finite) input.
    pub fn push(&mut self, x: &[f64]) -> Result<&[f64], usize> {
        if let Some(i) = x.iter().position(|v| !v.is_finite()) {
            return Err(i);
        }
        for (i, &v) in x.iter().enumerate() {
            let f = if !self.delta[i] {
                v
            } else if self.started {
                v - self.prev_x[i]
            } else {
                0.0
            };
            self.ewma[i] = if self.started { self.ewma[i] + self.alpha * (f - self.ewma[i]) } else { f };
            self.prev_x[i] = v;
        }
        self.started = true;
        Ok(&self.ewma)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn difference_and_ewma() {
        let mut f = Features::new(&[false, true], 3); // α = 0.5
        assert_eq!(f.push(&[2.0, 10.0]).unwrap(), &[2.0, 0.0]);
        // Difference 14 − 10 = 4; EWMA 0 + 0.5 (4 − 0) = 2.
        assert_eq!(f.push(&[4.0, 14.0]).unwrap(), &[3.0, 2.0]);
        assert_eq!(f.push(&[4.0, f64::NAN]), Err(1));
        // State untouched by the missing row: the difference is from the last good row.
        assert_eq!(f.push(&[4.0, 15.0]).unwrap(), &[3.5, 1.5]);
    }
}
