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
        for i in 0..d {
            z[i] = (x[i] - self.mean[i]) / self.std[i];
        }
        let mut t2 = 0.0;
        for j in 0..self.k {
            let p = &self.loadings[j * d..(j + 1) * d];
            let tj: f64 = p.iter().zip(z.iter()).map(|(a, b)| a * b).sum();
            t[j] = tj;
            t2 += tj * tj / self.eigenvalues[j];
        }
        let mut q = 0.0;
        for i in 0..d {
            let mut recon = 0.0;
            for j in 0..self.k {
                recon += self.loadings[j * d + i] * t[j];
            }
            let r = z[i] - recon;
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
