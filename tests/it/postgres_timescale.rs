//! The TimescaleDB path for real: a cluster of the test's own (initdb on a
//! free port, `shared_preload_libraries = timescaledb`), the extension
//! created, a sink with `timescale = "on"`. relais makes the samples table a
//! hypertable on `ts` with the key `(gateway, seq, ts)`; samples spread over
//! 40 days land in several chunks, exactly once; a second sink of the same
//! gateway sending every record again (a lost cursor, a restored buffer)
//! stores nothing twice; the rollup view and `time_bucket` answer.
//!
//! Runs when `timescaledb.so` sits beside the newest
//! `/usr/lib/postgresql/*/bin/initdb` (decided at build time, `build.rs`;
//! `RELAIS_REQUIRE_TIMESCALEDB=1` makes it run and fail without it). Debian
//! bookworm does not package TimescaleDB: see the sink's README for how it
//! was built here.

use std::sync::Arc;
use std::time::Duration;

use relais::config::{BufferConfig, SinkConfig};
use relais::model::{Sample, TagMeta, Timestamp, Value};
use relais::sinks::postgres::sink::PgSink;
use relais::telemetry::SinkStats;
use tokio_util::sync::CancellationToken;

use crate::common::{buffer_with, eventually};
use crate::postgres::{LOCAL_PG, assert_exactly_once, client, pg_sink, schema_name};
use crate::postgres_faults::PgCluster;

const DAY_NS: i64 = 86_400_000_000_000;

/// Starts `name`'s sink of `tb` on `cfg`; returns its stop token and task.
fn start(
    tb: &crate::common::TestBuffer,
    name: &str,
    cfg: SinkConfig,
    stats: Arc<SinkStats>,
) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let SinkConfig::Postgres(c) = cfg else { panic!("a PostgreSQL sink") };
    let sink = PgSink::new(c, "gw", tb.buffer.reader().unwrap(), tb.buffer.cursor(name).unwrap(), tb.buffer.committed(), stats);
    let stop = CancellationToken::new();
    (stop.clone(), tokio::spawn(sink.run(stop, Duration::from_millis(1500))))
}

#[cfg_attr(
    relais_no_timescaledb,
    ignore = "TimescaleDB absent: no timescaledb.so beside the newest /usr/lib/postgresql/*/bin/initdb; Debian bookworm does not package it (decided at build time, build.rs)"
)]
#[tokio::test]
async fn hypertable_on_ts_holds_every_record_once_across_chunks_and_resends() {
    let Some(pg) = PgCluster::start_opts(None, " -c shared_preload_libraries=timescaledb -c timescaledb.telemetry_level=off") else {
        return;
    };
    let c = client(&pg.url()).await.expect("the test's own cluster answers");
    c.batch_execute("CREATE EXTENSION timescaledb").await.expect("the timescaledb extension loads");
    let schema = schema_name("tsdb");
    let dir = tempfile::tempdir().unwrap();
    let tb = buffer_with(BufferConfig::default(), &["pg", "again"]);
    let base = tb.buffer.stats().last_seq.load(std::sync::atomic::Ordering::Relaxed);
    // 12,000 samples, their source times spread over 40 days (chunks are 7 days).
    let meta = TagMeta::new("kiln", "temp", Some("Cel"));
    let t0 = Timestamp::now().0 - 40 * DAY_NS;
    let n: i64 = 12_000;
    for i in 0..n {
        tb.ingest.push(Sample::good(meta.clone(), Value::F64(i as f64), Timestamp(t0 + i * (40 * DAY_NS / n)))).await;
    }
    tb.ingest.barrier().await;
    let head = tb.buffer.stats().last_seq.load(std::sync::atomic::Ordering::Relaxed);
    let extra = "timescale = \"on\"\nbatch_max_records = 1000";
    let (stop, task) = start(&tb, "pg", pg_sink("pg", &pg.url(), &schema, extra, dir.path()), Arc::default());
    let cursor = tb.buffer.cursor("pg").unwrap();
    assert!(eventually(Duration::from_secs(60), || cursor.get() >= head).await, "cursor {} never reached {head}", cursor.get());
    stop.cancel();
    let _ = task.await;
    // relais made the hypertable, with ts in its key.
    let q = "SELECT hypertable_name::text FROM timescaledb_information.hypertables WHERE hypertable_schema = $1";
    let names: Vec<String> = c.query(q, &[&schema]).await.unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(names, vec!["relais_samples".to_string()]);
    let key = c.query(relais::sinks::postgres::schema::PRIMARY_KEY, &[&format!("{schema}.relais_samples")]).await.unwrap();
    assert_eq!(key.iter().map(|r| r.get::<_, String>(0)).collect::<Vec<_>>(), ["gateway", "seq", "ts"]);
    let chunks: i64 =
        c.query_one("SELECT count(*) FROM timescaledb_information.chunks WHERE hypertable_schema = $1", &[&schema]).await.unwrap().get(0);
    assert!(chunks >= 5, "40 days in 7-day chunks: {chunks} chunks");
    assert_exactly_once(&c, &schema, base + 1, head).await;
    // Another sink of the same gateway sends every record again: the key
    // (gateway, seq, ts) turns each batch away (direct COPY refused with
    // 23505, then the staged INSERT … ON CONFLICT stores nothing).
    let again = Arc::new(SinkStats::default());
    let (stop, task) = start(&tb, "again", pg_sink("again", &pg.url(), &schema, extra, dir.path()), again.clone());
    let cursor = tb.buffer.cursor("again").unwrap();
    assert!(eventually(Duration::from_secs(60), || cursor.get() >= head).await, "cursor {} never reached {head}", cursor.get());
    stop.cancel();
    let _ = task.await;
    assert!(again.acked.load(std::sync::atomic::Ordering::Relaxed) >= n as u64, "the resend was acknowledged");
    assert_exactly_once(&c, &schema, base + 1, head).await;
    // Values exact, and the rollups answer: the view and time_bucket.
    let sum: f64 = c.query_one(&format!("SELECT sum(value) FROM {schema}.relais_samples"), &[]).await.unwrap().get(0);
    assert_eq!(sum, (n * (n - 1) / 2) as f64);
    let per_minute: i64 = c
        .query_one(&format!("SELECT sum(samples)::bigint FROM {schema}.relais_samples_per_minute WHERE tag = 'temp'"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(per_minute, n);
    let days: i64 = c
        .query_one(&format!("SELECT count(*) FROM (SELECT time_bucket('1 day', ts) FROM {schema}.relais_samples GROUP BY 1) d"), &[])
        .await
        .unwrap()
        .get(0);
    assert!((40..=41).contains(&days), "{days} day buckets");
}

#[tokio::test]
async fn timescale_on_without_the_extension_loads_nothing_and_says_why() {
    let Some(c) = client(LOCAL_PG).await else { return };
    let has: bool = c.query_one("SELECT count(*) > 0 FROM pg_extension WHERE extname = 'timescaledb'", &[]).await.unwrap().get(0);
    if has {
        eprintln!("SKIPPED: the database at {LOCAL_PG} has the timescaledb extension");
        return;
    }
    let schema = schema_name("tsoff");
    let dir = tempfile::tempdir().unwrap();
    let tb = buffer_with(BufferConfig::default(), &["pg"]);
    let meta = TagMeta::new("kiln", "temp", Some("Cel"));
    tb.ingest.push(Sample::good(meta, Value::F64(1.0), Timestamp::now())).await;
    tb.ingest.barrier().await;
    let stats = Arc::new(SinkStats::default());
    let cfg = pg_sink("pg", LOCAL_PG, &schema, "timescale = \"on\"", dir.path());
    let (stop, task) = start(&tb, "pg", cfg, stats.clone());
    let said =
        eventually(Duration::from_secs(10), || stats.error().is_some_and(|e| e.contains("timescaledb extension is not installed"))).await;
    stop.cancel();
    let _ = task.await;
    assert!(said, "{:?}", stats.error());
    assert_eq!(stats.acked.load(std::sync::atomic::Ordering::Relaxed), 0);
    let table: bool = c.query_one("SELECT to_regclass($1) IS NULL", &[&format!("{schema}.relais_samples")]).await.unwrap().get(0);
    assert!(table, "no plain table was made in its place");
    let _ = c.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).await;
}
