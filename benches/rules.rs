//! Commit → rule decision latency (issue 12: p99 ≤ 10 ms): one producer
//! thread offers samples (default 10,000/s over 1,000 tags, every tag
//! alternating 0 and 1) to the ring → buffer writer → committed-data tap →
//! the rule engine, as the daemon runs it (`processors::rules::run`: samples
//! from the tap, decisions emitted as events into the ring). 100 rules
//! (`above = 0.5`, no delay) each test one tag, so each of their samples is
//! a transition: about 1,000 decisions/s. Prints p50/p99/max of the time from
//! the push of the triggering sample (its `ts`, which is the decision's time)
//! to the decision leaving the engine: an upper bound of commit → decision.
//!
//! `cargo bench --bench rules [-- --seconds 10 --rate 10000 --rules 100]`

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use relais::buffer::Buffer;
use relais::config::BufferConfig;
use relais::ingest::Ingest;
use relais::model::{Record, Sample, TagMeta, Timestamp, Value};
use relais::processors::rules::config::read_rules;
use relais::processors::rules::{Decision, Engine};

fn pct(v: &mut [i64], p: f64) -> f64 {
    v.sort_unstable();
    v[((v.len() as f64 - 1.0) * p).round() as usize] as f64 / 1e6
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let get = |k: &str| args.iter().position(|a| a == k).and_then(|i| args.get(i + 1)).and_then(|v| v.parse::<u64>().ok());
    let seconds = get("--seconds").unwrap_or(10);
    let rate = get("--rate").unwrap_or(10_000);
    let n_rules = get("--rules").unwrap_or(100).min(1000);
    let mut toml = String::new();
    for i in 0..n_rules {
        toml += &format!("[[rule]]\nname = \"r{i}\"\ntag = \"dev{}/tag{i}\"\nabove = 0.5\n", i / 30);
    }
    let rules = read_rules(&toml, "bench.toml", Path::new(".")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = BufferConfig { max_bytes: 4 << 30, ..Default::default() };
    let ingest = Arc::new(Ingest::new(cfg.ring_capacity));
    let buffer = Buffer::open(&cfg, dir.path(), ingest.clone(), &[]).unwrap();
    let events = ingest.events();
    let mut sub = buffer.tap().subscribe();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let engine_task = {
        let done = done.clone();
        rt.spawn(async move {
            let mut engine = Engine::new(rules);
            let (mut lat, mut missed) = (Vec::new(), 0u64);
            while !done.load(Ordering::Relaxed) {
                let Ok(Some(t)) = tokio::time::timeout(Duration::from_millis(200), sub.recv()).await else { continue };
                missed += t.missed_samples;
                for s in t.records().filter_map(Record::as_sample) {
                    engine.on_sample(s);
                }
                let decisions = engine.take();
                let now = Timestamp::now().0;
                for d in decisions {
                    if let Decision::Alarm(a) = &d {
                        lat.push(now - a.ts.0);
                    }
                    events.emit(d.to_event());
                }
            }
            (lat, missed)
        })
    };
    let metas: Vec<Arc<TagMeta>> = (0..1000).map(|i| TagMeta::new(format!("dev{}", i / 30), format!("tag{i}"), None)).collect();
    let per_ms = (rate / 1000).max(1);
    let t0 = Instant::now();
    let (mut i, mut tick) = (0u64, 0u64);
    while t0.elapsed() < Duration::from_secs(seconds) {
        let ts = Timestamp::now();
        for _ in 0..per_ms {
            let v = ((i / 1000) % 2) as f64;
            ingest.push_blocking(Sample::good(metas[(i % 1000) as usize].clone(), Value::F64(v), ts));
            i += 1;
        }
        tick += 1;
        if let Some(d) = (t0 + Duration::from_millis(tick)).checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
    }
    rt.block_on(ingest.barrier());
    std::thread::sleep(Duration::from_millis(300));
    done.store(true, Ordering::Relaxed);
    let (mut lat, missed) = rt.block_on(engine_task).unwrap();
    let secs = t0.elapsed().as_secs_f64();
    let n = lat.len();
    println!(
        "rules: {n_rules} rules, offered {:.0} samples/s, {n} decisions ({:.0}/s), {missed} samples missed | push→decision p50 {:.2} ms p99 {:.2} ms max {:.2} ms",
        i as f64 / secs,
        n as f64 / secs,
        pct(&mut lat, 0.5),
        pct(&mut lat, 0.99),
        pct(&mut lat, 1.0)
    );
    drop(buffer);
}
