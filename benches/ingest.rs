//! The ingest core alone: P producer threads → lock-free ring → one SQLite
//! writer committing in batches. Reports samples/s accepted (committed).
//!
//! `cargo bench --bench ingest`

use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use relais::buffer::Buffer;
use relais::config::BufferConfig;
use relais::ingest::Ingest;
use relais::model::{Sample, TagMeta, Timestamp, Value};

const N: u64 = 200_000;

fn ingest(c: &mut Criterion) {
    let mut g = c.benchmark_group("ingest");
    g.throughput(Throughput::Elements(N));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(20));
    for producers in [1usize, 4, 16] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = BufferConfig { max_bytes: 4 << 30, ring_capacity: 65536, batch_max: 8192, ..Default::default() };
        let ingest = Arc::new(Ingest::new(cfg.ring_capacity));
        // A sink that delivered everything, so retention keeps the table small.
        let buffer = Buffer::open(&cfg, dir.path(), ingest.clone(), &["sink"]).unwrap();
        let cursor = buffer.cursor("sink").unwrap();
        let metas: Vec<Arc<TagMeta>> = (0..1000).map(|i| TagMeta::new(format!("dev{}", i / 30), format!("tag{i}"), Some("Cel"))).collect();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        g.bench_function(format!("{producers}_producers"), |b| {
            b.iter(|| {
                std::thread::scope(|s| {
                    for p in 0..producers {
                        let ingest = ingest.clone();
                        let metas = &metas;
                        s.spawn(move || {
                            let ts = Timestamp::now();
                            let per = N / producers as u64;
                            for i in 0..per {
                                let m = &metas[((p as u64 * per + i) % 1000) as usize];
                                ingest.push_blocking(Sample::good(m.clone(), Value::F64(i as f64 * 0.5), ts));
                            }
                        });
                    }
                });
                let last = rt.block_on(ingest.barrier()).unwrap();
                cursor.advance(last);
            })
        });
        drop(buffer);
    }
    g.finish();
}

criterion_group!(benches, ingest);
criterion_main!(benches);
