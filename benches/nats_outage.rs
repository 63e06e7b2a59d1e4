//! The NATS JetStream sink after a long outage: replay rate, and the
//! latency of live records while the backlog replays.
//!
//! A nats-server with JetStream is started here (one node, file store). A
//! producer writes `RATE` rows/s; the outage is the `OUTAGE_S` seconds'
//! worth of rows (`RATE × OUTAGE_S`, 10 minutes by default) committed while
//! the sink is off (written at full speed: only the backlog's size matters
//! to the replay). Then the sink starts while the producer goes on at
//! `RATE` rows/s. Reported:
//! - replay rows/s: the backlog over the time until the sink's cursor passed it;
//! - live latency p50/p99/max during the replay: the stream's store time of
//!   each live record minus its acquisition time (its value holds the
//!   acquisition time in Unix ms), read back from the stream afterwards;
//! - CPU (user + system, one core = 100 %) and RSS of this process (the
//!   relais sink, its buffer and the producer) during the replay, and the
//!   CPU of nats-server.
//!
//! `cargo bench --bench nats_outage` (env: `RATE`, default 2000 rows/s;
//! `OUTAGE_S`, default 600; `FORMAT`, `json` (default) or `json-batch`;
//! `MAX_INFLIGHT`, default the sink's).

mod common;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use futures::StreamExt;
use relais::buffer::{Buffer, BufferConfig};
use relais::config::{Config, SinkConfig};
use relais::ingest::Ingest;
use relais::model::{Sample, TagMeta, Timestamp, Value};
use relais::telemetry::SinkStats;
use tokio_util::sync::CancellationToken;

use common::{cpu_seconds, free_port, rss_mb, wait_port};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn now_ms() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as f64
}

fn pct(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// Stored seq → (store time − acquisition time) in ms, for records above `after`.
async fn live_latencies(port: u16, stream: &str, after: u64, upto: u64) -> Vec<f64> {
    let js = async_nats::jetstream::new(async_nats::connect(format!("127.0.0.1:{port}")).await.unwrap());
    let s = js.get_stream(stream).await.unwrap();
    let c = s.create_consumer(pull::OrderedConfig { deliver_policy: DeliverPolicy::All, ..Default::default() }).await.unwrap();
    let total = s.cached_info().state.messages;
    let mut msgs = c.messages().await.unwrap();
    let mut out = Vec::new();
    for _ in 0..total {
        let Some(Ok(m)) = msgs.next().await else { break };
        let stored = m.info().unwrap().published.unix_timestamp_nanos() as f64 / 1e6;
        let v: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
        let items = match v["samples"].as_array() {
            Some(a) => a.clone(),
            None => vec![v],
        };
        for x in items {
            let seq = x["seq"].as_u64().unwrap_or(0);
            if seq > after && seq <= upto {
                out.push(stored - x["value"].as_f64().unwrap_or(stored));
            }
        }
    }
    out.sort_by(|a, b| a.total_cmp(b));
    out
}

fn main() {
    let rate = env("RATE", 2000);
    let outage = env("OUTAGE_S", 600);
    let format = std::env::var("FORMAT").unwrap_or_else(|_| "json".into());
    let inflight = std::env::var("MAX_INFLIGHT").map(|v| format!("max_inflight = {v}\n")).unwrap_or_default();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut server = Command::new("nats-server")
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(dir.path().join("js"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nats-server not found");
    wait_port(port);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let text = format!(
            "[gateway]\nid = \"bench\"\n[[sink]]\nname = \"js\"\ntype = \"nats\"\nurl = \"nats://127.0.0.1:{port}\"\n\
             create_stream = true\nformat = \"{format}\"\n{inflight}"
        );
        let SinkConfig::Nats(cfg) = Config::parse(&text, "bench.toml", dir.path()).unwrap_or_else(|e| panic!("{e}")).sinks.remove(0) else {
            panic!("a NATS sink")
        };
        let ingest = Arc::new(Ingest::new(1 << 16));
        let buffer = Buffer::open(&BufferConfig::default(), dir.path(), ingest.clone(), &["js"]).unwrap();
        let metas: Vec<Arc<TagMeta>> = (0..20).map(|i| TagMeta::new("line", format!("t{i}").as_str(), Some("bar"))).collect();
        let backlog = rate * outage;
        let t = Instant::now();
        for i in 0..backlog {
            ingest.push(Sample::good(metas[(i % 20) as usize].clone(), Value::F64(0.0), Timestamp::now())).await;
        }
        ingest.barrier().await;
        let head0 = *buffer.committed().borrow();
        println!(
            "NATS {format}, live {rate} rows/s, outage {outage} s: backlog {backlog} rows (written in {:.1} s)",
            t.elapsed().as_secs_f64()
        );
        let stop = CancellationToken::new();
        let stats = Arc::new(SinkStats::default());
        let cursor = buffer.cursor("js").unwrap();
        let sink = relais::sinks::nats::sink::NatsSink::new(
            cfg,
            "bench",
            buffer.reader().unwrap(),
            cursor.clone(),
            buffer.committed(),
            stats.clone(),
        );
        let t_sink = Instant::now();
        let task = tokio::spawn(sink.run(stop.clone(), Duration::from_secs(2)));
        // Live records start once the sink is connected and replaying (those
        // committed before are part of the backlog).
        while stats.messages.load(std::sync::atomic::Ordering::Relaxed) == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let (me, cpu0, srv0) = (std::process::id(), cpu_seconds(std::process::id()), cpu_seconds(server.id()));
        let t0 = Instant::now();
        let per_tick = (rate / 100).max(1);
        let mut tick = 0u64;
        let mut replay_s = None;
        let mut rss_peak: f64 = 0.0;
        let mut live_end = head0;
        while replay_s.is_none() && t0.elapsed() < Duration::from_secs(3600) {
            let ms = now_ms();
            for k in 0..per_tick {
                ingest.push(Sample::good(metas[(k % 20) as usize].clone(), Value::F64(ms), Timestamp::now())).await;
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
        let (cpu, srv) = (cpu_seconds(me) - cpu0, cpu_seconds(server.id()) - srv0);
        let replay = replay_s.unwrap_or(secs);
        // Let the live records sent during the replay land, then stop.
        tokio::time::sleep(Duration::from_secs(2)).await;
        stop.cancel();
        let _ = task.await;
        let lat = live_latencies(port, "RELAIS_bench", head0, live_end).await;
        println!("  replay: {:.0} rows/s ({backlog} rows in {replay:.1} s) = {:.1}x the live rate", backlog as f64 / replay, backlog as f64 / replay / rate as f64);
        println!(
            "  live records during the replay: {} stored, latency p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
            lat.len(),
            pct(&lat, 0.5),
            pct(&lat, 0.99),
            lat.last().copied().unwrap_or(f64::NAN)
        );
        println!(
            "  this process (sink + buffer + producer): CPU {:.0} % of one core, RSS peak {:.0} MB (VmHWM {:.0} MB); nats-server CPU {:.0} %",
            cpu / secs * 100.0,
            rss_peak,
            rss_mb(me, "VmHWM:"),
            srv / secs * 100.0
        );
    });
    let _ = server.kill();
    let _ = server.wait();
}
