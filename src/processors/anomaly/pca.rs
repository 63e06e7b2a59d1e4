//! PCA-based T² + Q (SPE) monitoring: fit and per-row statistics (pure).
//!
//! Fit (O(n d² + d³)): each input standardised with the fit rows' mean and
//! sample standard deviation; eigen-decomposition of their correlation
//! matrix; the first k components that explain `variance` of the total are
//! kept. Per row (O(d k) ≤ O(d²)): z = (x − μ) / σ, t = Pₖᵀ z,
//! T² = Σ tᵢ² / λᵢ, r = z − Pₖ t, Q = ‖r‖².
//!
//! Control limits at probability α with n fit rows:
//! - T²: k (n − 1)(n + 1) / (n (n − k)) · F⁻¹(α; k, n − k) (Tracy, Young
//!   & Mason 1992, limit for a new observation);
//! - Q: Jackson & Mudholkar (1979): with θᵢ = Σ_{j>k} λⱼⁱ, h₀ = 1 − 2θ₁θ₃ / (3θ₂²),
//!   Q_α = θ₁ [c_α √(2θ₂h₀²) / θ₁ + 1 + θ₂h₀(h₀ − 1) / θ₁²]^{1/h₀}.
//!
//! Invariants: every retained λ > 0 (components with λ ≤ 1e-12 of the total
//! are never retained); σ > 0 (a constant input gets σ = 1: its
//! deviations are scored in its own unit); when all variance is retained
//! (k = d) Q is identically 0 and only T² scores.

use nalgebra::{DMatrix, SymmetricEigen};
use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, FisherSnedecor, Normal};

/// A fitted PCA model with its control limits.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PcaModel {
    /// Mean of each input over the fit rows.
    pub mean: Vec<f64>,
    /// Sample standard deviation of each input (1 where the input was constant).
    pub std: Vec<f64>,
    /// Eigenvalues of the correlation matrix, largest first (length d).
    pub eigenvalues: Vec<f64>,
    /// Retained loadings, d × k, column-major (component j: `loadings[j*d..(j+1)*d]`).
    pub loadings: Vec<f64>,
    /// Retained components k.
    pub k: usize,
    /// Fit rows n.
    pub n: usize,
    /// Upper control limit of T².
    pub t2_limit: f64,
    /// Upper control limit of Q; `None` when k = d (no residual space).
    pub q_limit: Option<f64>,
}

/// Why a model could not be fitted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FitError {
    /// Too few rows for the number of inputs.
    #[error("{rows} fit rows for {inputs} inputs: need at least inputs + 2")]
    TooFewRows {
        /// Rows given.
        rows: usize,
        /// Inputs.
        inputs: usize,
    },
    /// A value is NaN or infinite.
    #[error("row {row}: input {input} is not a finite number")]
    NotFinite {
        /// Row index in the fit rows.
        row: usize,
        /// Input index.
        input: usize,
    },
    /// Every input is constant.
    #[error("every input is constant over the fit rows: nothing to model")]
    Degenerate,
}

/// Per-row statistics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PcaStats {
    /// Hotelling's T² in the retained components.
    pub t2: f64,
    /// Squared prediction error in the residual space.
    pub q: f64,
}

impl PcaModel {
    /// Fits on `rows` (each of length d) keeping `variance` (0..1) of the
    /// correlation matrix's total, with limits at probability `level`.
    pub fn fit(rows: &[Vec<f64>], variance: f64, level: f64) -> Result<PcaModel, FitError> {
        let n = rows.len();
        let d = rows.first().map_or(0, Vec::len);
        if n < d + 2 || d == 0 {
            return Err(FitError::TooFewRows { rows: n, inputs: d });
        }
        for (r, row) in rows.iter().enumerate() {
            if let Some(i) = row.iter().position(|v| !v.is_finite()) {
                return Err(FitError::NotFinite { row: r, input: i });
            }
        }
        let x = DMatrix::from_fn(n, d, |r, c| rows[r][c]);
        let mean: Vec<f64> = (0..d).map(|c| x.column(c).mean()).collect();
        let std: Vec<f64> = (0..d)
            .map(|c| {
                let m = mean[c];
                let s = (x.column(c).iter().map(|v| (v - m) * (v - m)).sum::<f64>() / (n - 1) as f64).sqrt();
                if s > 0.0 && s.is_finite() { s } else { 1.0 }
            })
            .collect();
        let z = DMatrix::from_fn(n, d, |r, c| (x[(r, c)] - mean[c]) / std[c]);
        let cov = (z.transpose() * &z) / (n - 1) as f64;
        let eig = SymmetricEigen::new(cov);
        let mut order: Vec<usize> = (0..d).collect();
        order.sort_by(|&a, &b| eig.eigenvalues[b].total_cmp(&eig.eigenvalues[a]));
        let lambda: Vec<f64> = order.iter().map(|&i| eig.eigenvalues[i].max(0.0)).collect();
        let total: f64 = lambda.iter().sum();
        if total <= 0.0 {
            return Err(FitError::Degenerate);
        }
        let mut k = 0;
        let mut acc = 0.0;
        while k < d && (acc / total) < variance && lambda[k] > 1e-12 * total {
            acc += lambda[k];
            k += 1;
        }
        let k = k.max(1);
        let mut loadings = Vec::with_capacity(d * k);
        for &i in order.iter().take(k) {
            loadings.extend(eig.eigenvectors.column(i).iter());
        }
        let t2_limit = t2_limit(n, k, level);
        let q_limit = q_limit(&lambda[k..], level);
        Ok(PcaModel { mean, std, eigenvalues: lambda, loadings, k, n, t2_limit, q_limit })
    }

    /// Number of inputs d.
    pub fn inputs(&self) -> usize {
        self.mean.len()
    }

    /// T² and Q of one row (length d), using `z` and `t` as scratch space of
    /// lengths d and k (no allocation per row).
    pub fn stats(&self, x: &[f64], z: &mut [f64], t: &mut [f64]) -> PcaStats {
        let d = self.inputs();
        for (i, zi) in z.iter_mut().enumerate().take(d) {
            *zi = (x[i] - self.mean[i]) / self.std[i];
        }
        let mut t2 = 0.0;
        for (j, tj) in t.iter_mut().enumerate().take(self.k) {
            let p = &self.loadings[j * d..(j + 1) * d];
            *tj = p.iter().zip(z.iter()).map(|(a, b)| a * b).sum();
            t2 += *tj * *tj / self.eigenvalues[j];
        }
        let mut q = 0.0;
        for (i, zi) in z.iter().enumerate().take(d) {
            let recon: f64 = t.iter().take(self.k).enumerate().map(|(j, tj)| self.loadings[j * d + i] * tj).sum();
            let r = zi - recon;
            q += r * r;
        }
        if self.q_limit.is_none() {
            q = 0.0;
        }
        PcaStats { t2, q }
    }

    /// The score: the larger of T² / T²-limit and Q / Q-limit (1 = on a limit).
    pub fn score(&self, s: PcaStats) -> f64 {
        let a = s.t2 / self.t2_limit;
        match self.q_limit {
            Some(ql) => a.max(s.q / ql),
            None => a,
        }
    }
}

/// T² upper control limit for a new observation, k components, n fit rows.
pub fn t2_limit(n: usize, k: usize, level: f64) -> f64 {
    let (nf, kf) = (n as f64, k as f64);
    let f = FisherSnedecor::new(kf, nf - kf).map(|f| f.inverse_cdf(level)).unwrap_or(f64::INFINITY);
    kf * (nf - 1.0) * (nf + 1.0) / (nf * (nf - kf)) * f
}

/// Q upper control limit (Jackson & Mudholkar) from the discarded
/// eigenvalues; `None` when there are none (or they are all zero).
pub fn q_limit(residual: &[f64], level: f64) -> Option<f64> {
    let th = |p: i32| residual.iter().map(|l| l.powi(p)).sum::<f64>();
    let (t1, t2, t3) = (th(1), th(2), th(3));
    if t1 <= 0.0 || t2 <= 0.0 {
        return None;
    }
    let h0 = 1.0 - 2.0 * t1 * t3 / (3.0 * t2 * t2);
    let c = Normal::standard().inverse_cdf(level);
    let base = c * (2.0 * t2 * h0 * h0).sqrt() / t1 + 1.0 + t2 * h0 * (h0 - 1.0) / (t1 * t1);
    let q = t1 * base.powf(1.0 / h0);
    // h0 can come out ≤ 0 for very uneven residual eigenvalues; then the
    // normal approximation of Q itself (Box 1954: g χ²_h) is used.
    if q.is_finite() && q > 0.0 && h0 > 0.0 {
        Some(q)
    } else {
        let g = t2 / t1;
        let h = t1 * t1 / t2;
        statrs::distribution::ChiSquared::new(h).ok().map(|c2| g * c2.inverse_cdf(level))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Standard normal draws (Box–Muller) from a seeded generator.
    fn normals(rng: &mut fastrand::Rng, n: usize) -> Vec<f64> {
        (0..n)
            .map(|_| {
                let (u1, u2) = (1.0 - rng.f64(), rng.f64());
                (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
            })
            .collect()
    }

    /// Three unit-variance inputs with pairwise correlation ρ = 0.8 (one
    /// factor: xᵢ = √ρ f + √(1 − ρ) eᵢ), shifted and scaled per input. The
    /// correlation matrix has eigenvalues 1 + 2ρ = 2.6 and 1 − ρ = 0.2 (twice).
    fn series(rng: &mut fastrand::Rng, n: usize) -> Vec<Vec<f64>> {
        let rho: f64 = 0.8;
        (0..n)
            .map(|_| {
                let g = normals(rng, 4);
                (0..3).map(|i| (rho.sqrt() * g[0] + (1.0 - rho).sqrt() * g[i + 1]) * (i as f64 + 1.0) + 10.0 * i as f64).collect()
            })
            .collect()
    }

    #[test]
    fn t2_limit_matches_the_f_and_chi_square_quantiles() {
        // scipy.stats: 2 (n−1)(n+1) / (n (n−2)) · f.ppf(0.999, 2, 1998) = 13.877259482739266.
        assert!((t2_limit(2000, 2, 0.999) - 13.877_259_482_739_266).abs() < 1e-6);
        // As n grows, k · F(k, n − k) tends to χ²ₖ; for k = 2, χ²₂ quantile = −2 ln(1 − p) exactly.
        let chi2 = -2.0 * (0.001f64).ln();
        assert!((t2_limit(10_000_000, 2, 0.999) - chi2).abs() < 2e-3, "{}", t2_limit(10_000_000, 2, 0.999));
    }

    #[test]
    fn q_limit_is_jackson_mudholkar_and_near_the_exact_quantile() {
        // Residual eigenvalues 0.2, 0.2: θ = 0.4, 0.08, 0.016; h₀ = 1/3; c = Φ⁻¹(0.999) = 3.090232306167813.
        let (t1, t2, h0, c) = (0.4f64, 0.08f64, 1.0f64 / 3.0, 3.090_232_306_167_813f64);
        let by_hand = t1 * (c * (2.0 * t2 * h0 * h0).sqrt() / t1 + 1.0 + t2 * h0 * (h0 - 1.0) / (t1 * t1)).powf(1.0 / h0);
        let q = q_limit(&[0.2, 0.2], 0.999).unwrap();
        assert!((q - by_hand).abs() < 1e-9, "{q} vs {by_hand}");
        assert!((q - 2.826_585_010_731_611).abs() < 1e-6);
        // Q / 0.2 is exactly χ²₂ here: its quantile 0.2 · (−2 ln 0.001) = 2.7631; the approximation is within 3 %.
        let exact = 0.2 * -2.0 * (0.001f64).ln();
        assert!((q / exact - 1.0).abs() < 0.03, "{q} vs {exact}");
        assert_eq!(q_limit(&[], 0.999), None);
    }

    #[test]
    fn fit_finds_the_known_structure_and_limits_hold_their_rate() {
        let mut rng = fastrand::Rng::with_seed(15);
        let fit = series(&mut rng, 5000);
        let m = PcaModel::fit(&fit, 0.85, 0.999).unwrap();
        assert_eq!(m.k, 1, "2.6 / 3 = 87 % of the variance in the first component");
        for (got, want) in m.eigenvalues.iter().zip([2.6, 0.2, 0.2]) {
            assert!((got - want).abs() < 0.05, "eigenvalues {:?}", m.eigenvalues);
        }
        assert!((m.t2_limit - t2_limit(5000, 1, 0.999)).abs() < 1e-12);
        let q_true = q_limit(&[0.2, 0.2], 0.999).unwrap();
        assert!((m.q_limit.unwrap() / q_true - 1.0).abs() < 0.1, "{:?} vs {q_true}", m.q_limit);
        // On fresh rows of the same process each statistic exceeds its limit about 0.1 % of the time.
        let test = series(&mut rng, 200_000);
        let (mut z, mut t) = (vec![0.0; 3], vec![0.0; 1]);
        let (mut over_t2, mut over_q) = (0, 0);
        for r in &test {
            let s = m.stats(r, &mut z, &mut t);
            over_t2 += (s.t2 > m.t2_limit) as u32;
            over_q += (s.q > m.q_limit.unwrap()) as u32;
        }
        for (what, n) in [("T²", over_t2), ("Q", over_q)] {
            let rate = f64::from(n) / test.len() as f64;
            assert!((0.0004..0.0025).contains(&rate), "{what} exceeded its 0.999 limit on {rate} of the rows");
        }
        // A row off the correlation structure (inputs 0 and 1 opposite) is caught by Q, not T².
        let mut odd = vec![m.mean[0] + 2.0 * m.std[0], m.mean[1] - 2.0 * m.std[1], m.mean[2]];
        let s = m.stats(&odd, &mut z, &mut t);
        assert!(s.q > m.q_limit.unwrap() && s.t2 < m.t2_limit, "{s:?}");
        odd[2] = f64::NAN;
        assert!(PcaModel::fit(&[odd.clone(), odd.clone(), odd.clone(), odd.clone(), odd], 0.85, 0.999).is_err());
    }

    #[test]
    fn constant_input_and_too_few_rows() {
        let rows: Vec<Vec<f64>> = (0..10).map(|i| vec![i as f64, 5.0, (i * i) as f64]).collect();
        let m = PcaModel::fit(&rows, 0.85, 0.999).unwrap();
        assert_eq!(m.std[1], 1.0, "a constant input keeps its own unit");
        assert_eq!(PcaModel::fit(&rows[..4], 0.85, 0.999), Err(FitError::TooFewRows { rows: 4, inputs: 3 }));
    }
}
