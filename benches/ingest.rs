//! The ingest core alone: P producer threads → lock-free ring → one SQLite
//! writer committing in batches. Reports samples/s accepted (committed).
//!
//! `ingest_history`: the same with the local history on (`[history]`: a
//! writer thread following the committed-data tap into `history.db`), the
//! rate the producers see; then how many of the samples history had written
//! when the producers were done (it may lag, never slow them).
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

/// Pushes `n` samples from `producers` threads into `ingest` (1,000 tags).
fn push(ingest: &Arc<Ingest>, metas: &[Arc<TagMeta>], producers: usize, n: u64) {
    std::thread::scope(|s| {
        for p in 0..producers {
            let ingest = ingest.clone();
            s.spawn(move || {
                let ts = Timestamp::now();
                let per = n / producers as u64;
                for i in 0..per {
                    let m = &metas[((p as u64 * per + i) % 1000) as usize];
                    ingest.push_blocking(Sample::good(m.clone(), Value::F64(i as f64 * 0.5), ts));
                }
            });
        }
    });
}

fn ingest_history(c: &mut Criterion) {
    let mut g = c.benchmark_group("ingest_history");
    g.throughput(Throughput::Elements(N));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(20));
    for (producers, history) in [(1usize, false), (1, true), (4, false), (4, true)] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = BufferConfig { max_bytes: 4 << 30, ring_capacity: 65536, batch_max: 8192, ..Default::default() };
        let ingest = Arc::new(Ingest::new(cfg.ring_capacity));
        let buffer = Buffer::open(&cfg, dir.path(), ingest.clone(), &["sink"]).unwrap();
        let cursor = buffer.cursor("sink").unwrap();
        let metas: Vec<Arc<TagMeta>> = (0..1000).map(|i| TagMeta::new(format!("dev{}", i / 30), format!("tag{i}"), Some("Cel"))).collect();
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let stop = tokio_util::sync::CancellationToken::new();
        let tasks = if history {
            let _g = rt.enter();
            relais::processors::history::run::spawn_with(Default::default(), dir.path(), &buffer, stop.clone()).unwrap()
        } else {
            Vec::new()
        };
        let name = format!("{producers}_producers_history_{}", if history { "on" } else { "off" });
        g.bench_function(&name, |b| {
            b.iter(|| {
                push(&ingest, &metas, producers, N);
                let last = rt.block_on(ingest.barrier()).unwrap();
                cursor.advance(last);
            })
        });
        if history {
            let last = buffer.stats().last_seq.load(std::sync::atomic::Ordering::Relaxed);
            let db = rusqlite::Connection::open(dir.path().join("history.db")).unwrap();
            let written: i64 = db.query_row("SELECT value FROM meta WHERE key = 'last_seq'", [], |r| r.get(0)).unwrap_or(0);
            std::thread::sleep(Duration::from_secs(3));
            let later: i64 = db.query_row("SELECT value FROM meta WHERE key = 'last_seq'", [], |r| r.get(0)).unwrap_or(0);
            let raw: i64 = db.query_row("SELECT count(*) FROM raw", [], |r| r.get(0)).unwrap_or(0);
            eprintln!(
                "{name}: buffer last_seq {last}; history last_seq {written} when the producers stopped, {later} 3 s later; raw rows {raw}"
            );
        }
        stop.cancel();
        rt.block_on(async {
            for t in tasks {
                let _ = t.await;
            }
        });
        drop(buffer);
    }
    g.finish();
}

criterion_group!(benches, ingest, ingest_history);
criterion_main!(benches);
