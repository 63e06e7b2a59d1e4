//! PostgreSQL sink load rate: a buffer filled with `--rows` samples (1000
//! tags, committed before the clock starts) is loaded by the `postgres` sink
//! into the machine's PostgreSQL (127.0.0.1:5432, database `test`, a schema
//! of its own, dropped at the end). Prints rows/s from the sink's start
//! until its cursor reaches the last record, and the final row count.
//!
//! `cargo bench --bench pg_load [-- --rows 2000000 --batch 10000 --inflight 2]`

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use relais::buffer::Buffer;
use relais::config::{BufferConfig, Config, SinkConfig};
use relais::ingest::Ingest;
use relais::model::{Sample, TagMeta, Timestamp, Value};
use relais::sinks::postgres::sink::PgSink;
use relais::telemetry::SinkStats;
use tokio_util::sync::CancellationToken;

const URL: &str = "postgres://postgres@127.0.0.1:5432/test";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let get = |k: &str| args.iter().position(|a| a == k).and_then(|i| args.get(i + 1)).and_then(|v| v.parse::<u64>().ok());
    let rows = get("--rows").unwrap_or(2_000_000);
    let batch = get("--batch").unwrap_or(10_000);
    let inflight = get("--inflight").unwrap_or(2);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = BufferConfig { max_bytes: 8 << 30, ..Default::default() };
    let ingest = Arc::new(Ingest::new(cfg.ring_capacity));
    let buffer = Buffer::open(&cfg, dir.path(), ingest.clone(), &["pg"]).unwrap();
    let metas: Vec<Arc<TagMeta>> = (0..1000).map(|i| TagMeta::new(format!("dev{}", i / 30), format!("tag{i}"), Some("bar"))).collect();
    let t_fill = Instant::now();
    for i in 0..rows {
        ingest.push_blocking(Sample::good(metas[(i % 1000) as usize].clone(), Value::F64(i as f64 * 0.5), Timestamp::now()));
    }
    rt.block_on(ingest.barrier());
    let head = buffer.stats().last_seq.load(Ordering::Relaxed);
    eprintln!("buffer filled with {rows} samples in {:.1} s", t_fill.elapsed().as_secs_f64());
    let schema = format!("relais_bench_{}", std::process::id());
    let text = format!(
        "[gateway]\nid = \"bench\"\n[[sink]]\nname = \"pg\"\ntype = \"postgres\"\nurl = \"{URL}\"\nschema = \"{schema}\"\n\
         batch_max_records = {batch}\nmax_inflight = {inflight}\n"
    );
    let parsed = Config::parse(&text, "bench.toml", dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let Some(SinkConfig::Postgres(pc)) = parsed.sinks.into_iter().next() else { panic!("a postgres sink") };
    let stats = Arc::new(SinkStats::default());
    let cursor = buffer.cursor("pg").unwrap();
    let sink = PgSink::new(pc, "bench", buffer.reader().unwrap(), cursor.clone(), buffer.committed(), stats.clone());
    let stop = CancellationToken::new();
    let t0 = Instant::now();
    let task = rt.spawn(sink.run(stop.clone(), Duration::from_secs(1)));
    while cursor.get() < head {
        assert!(t0.elapsed() < Duration::from_secs(600), "no progress: cursor {} of {head}", cursor.get());
        std::thread::sleep(Duration::from_millis(5));
    }
    let secs = t0.elapsed().as_secs_f64();
    stop.cancel();
    let _ = rt.block_on(task);
    let counted: i64 = rt.block_on(async {
        let (c, conn) = tokio_postgres::connect(URL, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        let n = c.query_one(&format!("SELECT count(*) FROM {schema}.relais_samples"), &[]).await.unwrap().get(0);
        c.batch_execute(&format!("DROP SCHEMA {schema} CASCADE")).await.unwrap();
        n
    });
    println!(
        "pg_load: {rows} samples, batch {batch}, inflight {inflight}: {:.2} s, {:.0} rows/s; {counted} rows in the table; {} transactions",
        secs,
        rows as f64 / secs,
        stats.messages.load(Ordering::Relaxed)
    );
}
