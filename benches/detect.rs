//! Anomaly detection (issue 15): rows per second through the live path
//! (row assembler + features + PCA T² + Q + confidence) for 8 tags, and the
//! fit on 400 rows.
//!
//! `cargo bench --bench detect`

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use relais::processors::anomaly::rows::RowAssembler;
use relais::processors::anomaly::{Detector, DetectorConfig, FitPolicy, Method, Step};

fn config(method: Method) -> DetectorConfig {
    DetectorConfig {
        name: "bench".into(),
        tags: (0..8).map(|i| format!("pump/t{i}")).collect(),
        delta: vec![false, false, false, false, true, true, false, false],
        method,
        fit: FitPolicy::Rows(400),
        smoothing: 10,
        threshold: 1.5,
        row_window: Duration::from_secs(1),
    }
}

/// 8 correlated signals with noise (deterministic).
fn rows(n: usize) -> Vec<Vec<f64>> {
    let mut rng = fastrand::Rng::with_seed(8);
    (0..n)
        .map(|i| {
            let common = (i as f64 / 50.0).sin();
            (0..8).map(|j| common * (j as f64 + 1.0) + rng.f64() + j as f64 * 10.0).collect()
        })
        .collect()
}

fn fitted(method: Method, data: &[Vec<f64>]) -> Detector {
    let mut d = Detector::build(config(method)).unwrap();
    for (i, r) in data.iter().take(401).enumerate() {
        d.push(i as i64 * 1_000_000_000, r);
    }
    d
}

fn detect(c: &mut Criterion) {
    let data = rows(10_401);
    let pca = Method::Pca { variance: 0.85, level: 0.999 };
    let mut g = c.benchmark_group("detect");
    g.throughput(Throughput::Elements(10_000));
    for (name, method) in [("pca_8_tags", pca.clone()), ("zscore_8_tags", Method::ZScore { window: 60, level: 0.999 })] {
        g.bench_function(name, |b| {
            let mut d = fitted(method.clone(), &data);
            let mut asm = RowAssembler::new(8, 1_000_000_000);
            let mut ts = 401 * 1_000_000_000i64;
            b.iter(|| {
                let mut flagged = 0u32;
                for r in &data[401..] {
                    ts += 1_000_000_000;
                    for (i, v) in r.iter().enumerate() {
                        for row in asm.offer(i, ts, Some(*v)) {
                            if let Step::Scored(o) = d.push(row.ts, &row.values) {
                                flagged += o.anomaly as u32;
                            }
                        }
                    }
                }
                black_box(flagged)
            })
        });
    }
    g.finish();
    let mut g = c.benchmark_group("detect_fit");
    g.bench_function("pca_400_rows_8_tags", |b| b.iter(|| black_box(fitted(pca.clone(), &data))));
    g.finish();
}

criterion_group!(benches, detect);
criterion_main!(benches);
