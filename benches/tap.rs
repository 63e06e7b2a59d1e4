//! Commit → tap latency: one producer thread offers 100,000 samples/s (100
//! every millisecond) to the ring → buffer writer (`durability = "normal"`)
//! → committed-data tap → one subscriber. Prints p50/p99/max of the time from
//! the push (the sample's `recv_ts`) to its arrival at the subscriber, which
//! bounds the commit → tap latency from above.
//!
//! `cargo bench --bench tap [-- --seconds 10 --rate 100000]`

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use relais::buffer::Buffer;
use relais::config::BufferConfig;
use relais::ingest::Ingest;
use relais::model::{Sample, TagMeta, Timestamp, Value};

fn pct(v: &mut [i64], p: f64) -> f64 {
    v.sort_unstable();
    v[((v.len() as f64 - 1.0) * p).round() as usize] as f64 / 1e6
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let get = |k: &str| args.iter().position(|a| a == k).and_then(|i| args.get(i + 1)).and_then(|v| v.parse::<u64>().ok());
    let seconds = get("--seconds").unwrap_or(10);
    let rate = get("--rate").unwrap_or(100_000);
    let dir = tempfile::tempdir().unwrap();
    let cfg = BufferConfig { max_bytes: 4 << 30, ..Default::default() };
    let ingest = Arc::new(Ingest::new(cfg.ring_capacity));
    let buffer = Buffer::open(&cfg, dir.path(), ingest.clone(), &["sink"]).unwrap();
    let cursor = buffer.cursor("sink").unwrap();
    let mut sub = buffer.tap().subscribe();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let collector = {
        let done = done.clone();
        rt.spawn(async move {
            let mut lat = Vec::new();
            let (mut n, mut missed) = (0u64, 0u64);
            while !done.load(Ordering::Relaxed) {
                let Ok(Some(t)) = tokio::time::timeout(Duration::from_millis(200), sub.recv()).await else { continue };
                let now = Timestamp::now().0;
                missed += t.missed_samples;
                for r in t.records() {
                    n += 1;
                    if n.is_multiple_of(50)
                        && let Some(s) = r.as_sample()
                    {
                        lat.push(now - s.recv_ts.0);
                    }
                    cursor.advance(r.seq());
                }
            }
            (lat, n, missed)
        })
    };
    let metas: Vec<Arc<TagMeta>> = (0..1000).map(|i| TagMeta::new(format!("dev{}", i / 30), format!("tag{i}"), None)).collect();
    let per_ms = (rate / 1000).max(1);
    let t0 = Instant::now();
    let mut i = 0u64;
    let mut tick = 0u64;
    while t0.elapsed() < Duration::from_secs(seconds) {
        let ts = Timestamp::now();
        for _ in 0..per_ms {
            ingest.push_blocking(Sample::good(metas[(i % 1000) as usize].clone(), Value::F64(i as f64), ts));
            i += 1;
        }
        tick += 1;
        let next = t0 + Duration::from_millis(tick);
        if let Some(d) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
    }
    rt.block_on(ingest.barrier());
    std::thread::sleep(Duration::from_millis(300));
    done.store(true, Ordering::Relaxed);
    let (mut lat, n, missed) = rt.block_on(collector).unwrap();
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "tap: offered {:.0} samples/s, received {n} of {i} ({missed} missed) | push→tap latency p50 {:.2} ms p99 {:.2} ms max {:.2} ms",
        i as f64 / secs,
        pct(&mut lat, 0.5),
        pct(&mut lat, 0.99),
        pct(&mut lat, 1.0)
    );
    drop(buffer);
}
