//! Cost of the per-tag checks on ingest (`[[check]]`, src/component/checks)
//! per sample: a Modbus-like batch of 100 samples of 100 tags goes through
//! one `Checker`, with no `[[check]]` (off), with gross range, suspect span,
//! flat line, spike, rate of change and envelope on values that pass them
//! all (on), and with every value above `max` (every sample flagged bad: a
//! reason allocated per sample; one event per tag, at the first batch).
//!
//! `cargo bench --bench checks` (`-- --quick` for a short run). Criterion
//! reports the time per batch of 100: divide by 100 for ns per sample.

use std::path::Path;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use relais::component::checks::Checks;
use relais::config::Config;
use relais::ingest::Ingest;
use relais::model::{Sample, TagMeta, Timestamp, Value};

const TAGS: usize = 100;

fn checks(body: &str, ingest: &Arc<Ingest>) -> Checks {
    let cfg = Config::parse(&format!("[gateway]\nid = \"bench\"\n{body}"), "bench.toml", Path::new(".")).unwrap_or_else(|e| panic!("{e}"));
    Checks::new(cfg.checks, Some(ingest.events()))
}

fn bench(c: &mut Criterion) {
    let ingest = Arc::new(Ingest::new(1 << 16));
    let metas: Vec<Arc<TagMeta>> = (0..TAGS).map(|i| TagMeta::new("press", format!("t{i}"), None)).collect();
    let all = "[[check]]\nmatch = \"press/*\"\nmin = -1000.0\nmax = 1000.0\nsuspect_min = -900.0\nsuspect_max = 900.0\n\
               flat_line = \"60s\"\nspike = 100.0\nrate_of_change = 1000.0\nenvelope = { min = -5000.0, max = 5000.0 }\n";
    let cases = [
        ("off", String::new(), 0.0),
        ("on, nothing flagged", all.to_string(), 0.0),
        ("on, every sample flagged bad", all.to_string(), 2000.0),
    ];
    let mut g = c.benchmark_group("checks");
    g.throughput(Throughput::Elements(TAGS as u64));
    for (name, body, offset) in cases {
        let mut checker = checks(&body, &ingest).checker();
        let mut t: i64 = 1_796_000_000_000_000_000;
        let mut batch: Vec<Sample> = Vec::with_capacity(TAGS);
        g.bench_function(name, |b| {
            b.iter(|| {
                t += 1_000_000_000;
                batch.clear();
                let phase = (t / 1_000_000_000 % 60) as f64;
                batch.extend(
                    metas.iter().enumerate().map(|(i, m)| Sample::good(m.clone(), Value::F64(offset + i as f64 + phase), Timestamp(t))),
                );
                checker.apply_all(&mut batch, Some(std::time::Duration::from_secs(1)));
                std::hint::black_box(&batch);
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
