//! PostgreSQL sink load rate: a buffer filled with `--rows` samples (1000
//! tags, committed before the clock starts) is loaded by `--sinks` postgres
//! sinks (each its own cursor and its own schema, dropped at the end) into
//! the machine's PostgreSQL (127.0.0.1:5432, database `test`). Prints, from
//! the sinks' start until every cursor reaches the last record: rows/s per
//! sink and in all, the CPU of this process (the relais side: buffer reads,
//! encoding, the client) and of PostgreSQL (the sinks' backends, the WAL
//! writer, checkpointer and background writer), this process's largest RSS
//! while loading, and the final row counts.
//!
//! `cargo bench --bench pg_load [-- --rows 2000000 --batch 10000 --sinks 1 --connections 2 --inflight 3]`
//! (`--connections` and `--inflight` default to the sink's own defaults).

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use relais::buffer::Buffer;
use relais::config::{BufferConfig, Config, SinkConfig};
use relais::ingest::Ingest;
use relais::model::{Sample, TagMeta, Timestamp, Value};
use relais::sinks::postgres::sink::PgSink;
use relais::telemetry::SinkStats;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

const URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// PostgreSQL's helpers shared by every session (their CPU counts for all sinks).
const SHARED_BACKENDS: &str = "backend_type IN ('walwriter', 'checkpointer', 'background writer')";

/// utime + stime, in seconds, of the server processes `filter` selects.
async fn pg_cpu(c: &Client, filter: &str) -> f64 {
    let rows = c.query(&format!("SELECT pid FROM pg_stat_activity WHERE {filter}"), &[]).await.unwrap();
    rows.iter().map(|r| common::cpu_seconds(r.get::<_, i32>(0) as u32)).sum()
}

fn sink_text(i: u64, schema: &str, batch: u64, extra: &str) -> String {
    format!("[[sink]]\nname = \"pg{i}\"\ntype = \"postgres\"\nurl = \"{URL}\"\nschema = \"{schema}\"\nbatch_max_records = {batch}\n{extra}")
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let get = |k: &str| args.iter().position(|a| a == k).and_then(|i| args.get(i + 1)).and_then(|v| v.parse::<u64>().ok());
    let rows = get("--rows").unwrap_or(2_000_000);
    let batch = get("--batch").unwrap_or(10_000);
    let sinks = get("--sinks").unwrap_or(1).max(1);
    let mut extra = String::new();
    for (flag, key) in [("--connections", "connections"), ("--inflight", "max_inflight")] {
        if let Some(v) = get(flag) {
            extra += &format!("{key} = {v}\n");
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = BufferConfig { max_bytes: 8 << 30, ..Default::default() };
    let ingest = Arc::new(Ingest::new(cfg.ring_capacity));
    let names: Vec<String> = (0..sinks).map(|i| format!("pg{i}")).collect();
    let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let buffer = Buffer::open(&cfg, dir.path(), ingest.clone(), &name_refs).unwrap();
    let metas: Vec<Arc<TagMeta>> = (0..1000).map(|i| TagMeta::new(format!("dev{}", i / 30), format!("tag{i}"), Some("bar"))).collect();
    let t_fill = Instant::now();
    for i in 0..rows {
        ingest.push_blocking(Sample::good(metas[(i % 1000) as usize].clone(), Value::F64(i as f64 * 0.5), Timestamp::now()));
    }
    rt.block_on(ingest.barrier());
    let head = buffer.stats().last_seq.load(Ordering::Relaxed);
    eprintln!("buffer filled with {rows} samples in {:.1} s", t_fill.elapsed().as_secs_f64());
    let schemas: Vec<String> = (0..sinks).map(|i| format!("relais_bench_{}_{i}", std::process::id())).collect();
    let mut text = "[gateway]\nid = \"bench\"\n".to_string();
    for (i, s) in schemas.iter().enumerate() {
        text += &sink_text(i as u64, s, batch, &extra);
    }
    let parsed = Config::parse(&text, "bench.toml", dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let monitor = rt.block_on(async {
        let (c, conn) = tokio_postgres::connect(URL, tokio_postgres::NoTls).await.unwrap();
        rt.spawn(conn);
        c
    });
    let me = std::process::id();
    let (cpu0, pg0) = (common::cpu_seconds(me), rt.block_on(pg_cpu(&monitor, SHARED_BACKENDS)));
    let stop = CancellationToken::new();
    let mut runs = Vec::new();
    let t0 = Instant::now();
    for sc in parsed.sinks {
        let SinkConfig::Postgres(pc) = sc else { panic!("a postgres sink") };
        let stats = Arc::new(SinkStats::default());
        let cursor = buffer.cursor(&pc.name).unwrap();
        let sink = PgSink::new(pc, "bench", buffer.reader().unwrap(), cursor.clone(), buffer.committed(), stats.clone());
        runs.push((cursor, stats, rt.spawn(sink.run(stop.clone(), Duration::from_secs(1))), None::<f64>));
    }
    let mut rss_max: f64 = 0.0;
    while runs.iter().any(|r| r.3.is_none()) {
        assert!(
            t0.elapsed() < Duration::from_secs(900),
            "no progress: cursors {:?} of {head}",
            runs.iter().map(|r| r.0.get()).collect::<Vec<_>>()
        );
        for r in runs.iter_mut().filter(|r| r.3.is_none() && r.0.get() >= head) {
            r.3 = Some(t0.elapsed().as_secs_f64());
        }
        rss_max = rss_max.max(common::rss_mb(me, "VmRSS:"));
        std::thread::sleep(Duration::from_millis(5));
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu = common::cpu_seconds(me) - cpu0;
    let pg = rt.block_on(async {
        let shared = pg_cpu(&monitor, SHARED_BACKENDS).await - pg0;
        shared + pg_cpu(&monitor, "application_name LIKE 'relais bench pg%'").await
    });
    stop.cancel();
    let mut counted = Vec::new();
    for (_, stats, task, _) in runs.iter_mut() {
        let _ = rt.block_on(task);
        counted.push(stats.messages.load(Ordering::Relaxed));
    }
    let mut table_rows = Vec::new();
    for s in &schemas {
        let n: i64 = rt.block_on(monitor.query_one(&format!("SELECT count(*) FROM {s}.relais_samples"), &[])).unwrap().get(0);
        rt.block_on(monitor.batch_execute(&format!("DROP SCHEMA {s} CASCADE"))).unwrap();
        table_rows.push(n);
    }
    let per_sink: Vec<String> = runs.iter().map(|r| format!("{:.0}", rows as f64 / r.3.unwrap_or(secs))).collect();
    println!(
        "pg_load: {rows} samples x {sinks} sink(s), batch {batch}{}: {secs:.2} s, {:.0} rows/s in all (per sink: {}); \
         relais {:.0} % of a core, RSS {rss_max:.0} MB; PostgreSQL {:.0} % of a core; rows in the tables {table_rows:?}; transactions {counted:?}",
        if extra.is_empty() { String::new() } else { format!(", {}", extra.trim().replace('\n', ", ")) },
        (rows * sinks) as f64 / secs,
        per_sink.join(", "),
        100.0 * cpu / secs,
        100.0 * pg / secs,
    );
}
