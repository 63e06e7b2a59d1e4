//! A sink after a long outage: replay rate, and the latency of live records
//! while the backlog replays — for each sink type (`SINK`).
//!
//! The far end is started here ([`far::Far`]): a nats-server with JetStream
//! (one node, file store), Mosquitto with a QoS 0 subscriber to the live
//! records' topics, an axum HTTP server answering 200, or a schema of its own
//! in the machine's PostgreSQL (127.0.0.1:5432, database `test`; dropped
//! afterwards). A producer writes `RATE` rows/s; the outage is the
//! `OUTAGE_S` seconds' worth of rows (`RATE × OUTAGE_S`, 10 minutes by
//! default) committed while the sink is off (written at full speed: only the
//! backlog's size matters to the replay). Then the sink starts while the
//! producer goes on at `RATE` rows/s (device `live`, each value its
//! acquisition time in Unix ms). Reported:
//! - replay rows/s: the backlog over the time until the sink's cursor passed it;
//! - live latency p50/p99/max during the replay: the far end's time of each
//!   live record minus its acquisition time — NATS: the stream's store time
//!   (read back afterwards); MQTT: the subscriber's receive time; HTTP: the
//!   server's receive time; PostgreSQL: the row's INSERT time (an `arrived`
//!   column, DEFAULT clock_timestamp(), added to the sink's table);
//! - CPU (user + system, one core = 100 %) and RSS of this process (the
//!   relais sink, its buffer and the producer, plus the HTTP server or the
//!   MQTT subscriber) during the replay, and the CPU of the far end's server.
//!
//! `cargo bench --bench outage` (env: `SINK`, `nats` (default), `mqtt`,
//! `http` or `postgres`; `RATE`, default 2000 rows/s; `OUTAGE_S`, default
//! 600; `FORMAT` for NATS and MQTT, `json` (default) or `json-batch`;
//! `MAX_INFLIGHT`, default the sink's).

mod common;
#[path = "outage/far.rs"]
mod far;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use relais::buffer::{Buffer, BufferConfig};
use relais::config::{Config, SinkConfig};
use relais::ingest::Ingest;
use relais::model::{Sample, TagMeta, Timestamp, Value};
use relais::telemetry::SinkStats;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use common::{cpu_seconds, rss_mb};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Now in Unix ms.
fn now_ms() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as f64
}

fn pct(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// Starts the sink `c` over `buffer`'s cursor `far`.
fn spawn(c: SinkConfig, b: &Buffer, stats: &Arc<SinkStats>, stop: &CancellationToken) -> JoinHandle<()> {
    let (r, cur, com, st) = (b.reader().unwrap(), b.cursor("far").unwrap(), b.committed(), stats.clone());
    let (s, g, gw) = (stop.clone(), Duration::from_secs(2), "bench");
    match c {
        SinkConfig::Mqtt(m) => tokio::spawn(relais::sinks::mqtt::sink::MqttSink::new(m, gw, r, cur, com, st).run(s, g)),
        SinkConfig::Nats(n) => tokio::spawn(relais::sinks::nats::sink::NatsSink::new(n, gw, r, cur, com, st).run(s, g)),
        SinkConfig::Http(h) => tokio::spawn(relais::sinks::http::sink::HttpSink::new(h, gw, r, cur, com, st).run(s, g)),
        SinkConfig::Postgres(p) => tokio::spawn(relais::sinks::postgres::sink::PgSink::new(p, gw, r, cur, com, st).run(s, g)),
        #[allow(unreachable_patterns)]
        _ => panic!("unexpected sink"),
    }
}

fn main() {
    let sink = std::env::var("SINK").unwrap_or_else(|_| "nats".into());
    let rate = env("RATE", 2000);
    let outage = env("OUTAGE_S", 600);
    let format = std::env::var("FORMAT").unwrap_or_else(|_| "json".into());
    let inflight = std::env::var("MAX_INFLIGHT").map(|v| format!("max_inflight = {v}\n")).unwrap_or_default();
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let far = far::Far::start(&sink, dir.path()).await;
        let text = format!("[gateway]\nid = \"bench\"\n{}", far.sink_toml(&format, &inflight));
        let cfg = Config::parse(&text, "bench.toml", dir.path()).unwrap_or_else(|e| panic!("{e}")).sinks.remove(0);
        let ingest = Arc::new(Ingest::new(1 << 16));
        let buffer = Buffer::open(&BufferConfig::default(), dir.path(), ingest.clone(), &["far"]).unwrap();
        let metas: Vec<Arc<TagMeta>> = (0..20).map(|i| TagMeta::new("line", format!("t{i}").as_str(), Some("bar"))).collect();
        let live: Vec<Arc<TagMeta>> = (0..20).map(|i| TagMeta::new("live", format!("t{i}").as_str(), Some("bar"))).collect();
        let backlog = rate * outage;
        let t = Instant::now();
        for i in 0..backlog {
            ingest.push(Sample::good(metas[(i % 20) as usize].clone(), Value::F64(0.0), Timestamp::now())).await;
        }
        ingest.barrier().await;
        let head0 = *buffer.committed().borrow();
        let shown = if matches!(sink.as_str(), "nats" | "mqtt") { format!("{sink} {format}") } else { sink.clone() };
        println!(
            "{shown}, live {rate} rows/s, outage {outage} s: backlog {backlog} rows (written in {:.1} s)",
            t.elapsed().as_secs_f64()
        );
        let stop = CancellationToken::new();
        let stats = Arc::new(SinkStats::default());
        let cursor = buffer.cursor("far").unwrap();
        let t_sink = Instant::now();
        let task = spawn(cfg, &buffer, &stats, &stop);
        // Live records start once the sink is connected and replaying (those
        // committed before are part of the backlog).
        while stats.messages.load(Ordering::Relaxed) == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let (me, cpu0, srv0) = (std::process::id(), cpu_seconds(std::process::id()), far.cpu().await);
        let t0 = Instant::now();
        let per_tick = (rate / 100).max(1);
        let mut tick = 0u64;
        let mut replay_s = None;
        let mut rss_peak: f64 = 0.0;
        let mut live_end = head0;
        while replay_s.is_none() && t0.elapsed() < Duration::from_secs(3600) {
            let ms = now_ms();
            for k in 0..per_tick {
                ingest.push(Sample::good(live[(k % 20) as usize].clone(), Value::F64(ms), Timestamp::now())).await;
            }
            tick += 1;
            if cursor.get() >= head0 {
                replay_s = Some(t_sink.elapsed().as_secs_f64());
                live_end = *buffer.committed().borrow();
            }
            if tick.is_multiple_of(100) {
                rss_peak = rss_peak.max(rss_mb(me, "VmRSS:"));
            }
            tokio::time::sleep_until((t0 + Duration::from_millis(10 * tick)).into()).await;
        }
        let secs = t0.elapsed().as_secs_f64();
        let (cpu, srv) = (cpu_seconds(me) - cpu0, far.cpu().await - srv0);
        let replay = replay_s.unwrap_or(secs);
        // Let the live records sent during the replay land, then stop.
        tokio::time::sleep(Duration::from_secs(2)).await;
        stop.cancel();
        let _ = task.await;
        let lat = far.latencies(head0, live_end).await;
        println!("  replay: {:.0} rows/s ({backlog} rows in {replay:.1} s) = {:.1}x the live rate", backlog as f64 / replay, backlog as f64 / replay / rate as f64);
        println!(
            "  live records during the replay: {} of {} received, latency p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
            lat.len(),
            live_end - head0,
            pct(&lat, 0.5),
            pct(&lat, 0.99),
            lat.last().copied().unwrap_or(f64::NAN)
        );
        println!(
            "  this process (sink + buffer + producer): CPU {:.0} % of one core, RSS peak {:.0} MB (VmHWM {:.0} MB); {sink} server CPU {:.0} %",
            cpu / secs * 100.0,
            rss_peak,
            rss_mb(me, "VmHWM:"),
            srv / secs * 100.0
        );
        far.stop().await;
    });
}
