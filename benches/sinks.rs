//! Sink throughput on loopback: each far end a real server started here
//! (Mosquitto, nats-server with JetStream, a plain HTTP server answering 200).
//!
//! 1. Replay: 200,000 records committed while the sink was off, then the sink
//!    alone delivers them; rows/s until its cursor reaches the head.
//! 2. Four sinks at once (MQTT json-batch, NATS json, NATS json-batch, HTTP
//!    json) replaying the same 200,000 records: rows/s of each.
//! 3. Sustained: a producer at 20,000 rows/s for 10 s with the four sinks
//!    live: rows/s each delivered, and each sink's worst cursor lag.
//!
//! `cargo bench --bench sinks`

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use relais::buffer::{Buffer, BufferConfig};
use relais::config::{Config, SinkConfig};
use relais::ingest::Ingest;
use relais::model::{Sample, TagMeta, Timestamp, Value};
use relais::telemetry::SinkStats;
use tokio_util::sync::CancellationToken;

use common::{free_port, mosquitto, wait_port};

const BACKLOG: u64 = 200_000;

struct Servers {
    children: Vec<Child>,
    mqtt: u16,
    nats: u16,
    http: u16,
}

impl Drop for Servers {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

async fn http_server() -> u16 {
    use axum::routing::post;
    let app = axum::Router::new().route("/ingest", post(|_b: axum::body::Bytes| async { "" }));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    port
}

async fn servers(dir: &Path) -> Servers {
    let (mqtt, nats) = (free_port(), free_port());
    let conf = dir.join("mosquitto.conf");
    std::fs::write(&conf, format!("listener {mqtt} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\n")).unwrap();
    let m = Command::new(mosquitto()).arg("-c").arg(&conf).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let n = Command::new("nats-server")
        .args(["-js", "-a", "127.0.0.1", "-p", &nats.to_string(), "-sd"])
        .arg(dir.join("js"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nats-server not found");
    wait_port(mqtt);
    wait_port(nats);
    Servers { children: vec![m, n], mqtt, nats, http: http_server().await }
}

/// The four sinks, each with a stream or topic of its own.
fn sink_configs(s: &Servers, dir: &Path, run: &str) -> Vec<SinkConfig> {
    let text = format!(
        "[gateway]\nid = \"{run}\"\n\
         [[sink]]\nname = \"mqtt\"\ntype = \"mqtt\"\nurl = \"mqtt://127.0.0.1:{}\"\nformat = \"json-batch\"\nclient_id = \"{run}-m\"\n\
         [[sink]]\nname = \"nats\"\ntype = \"nats\"\nurl = \"nats://127.0.0.1:{}\"\ncreate_stream = true\nstream = \"B_{run}_1\"\n\
         subject = \"b.{run}.one.{{device}}.{{tag}}\"\nevent_subject = \"b.{run}.one._event\"\nmax_inflight = 1024\n\
         [[sink]]\nname = \"nats_batch\"\ntype = \"nats\"\nurl = \"nats://127.0.0.1:{}\"\ncreate_stream = true\nstream = \"B_{run}_2\"\n\
         format = \"json-batch\"\nbatch_subject = \"b.{run}.batch\"\nsubject = \"b.{run}.batch.{{device}}.{{tag}}\"\n\
         [[sink]]\nname = \"http\"\ntype = \"http\"\nurl = \"http://127.0.0.1:{}/ingest\"\nmax_inflight = 4\n",
        s.mqtt, s.nats, s.nats, s.http
    );
    Config::parse(&text, "bench.toml", dir).unwrap_or_else(|e| panic!("{e}")).sinks
}

fn spawn(c: SinkConfig, gw: &str, b: &Buffer, stop: &CancellationToken) -> tokio::task::JoinHandle<()> {
    let name = c.name().to_string();
    let (r, cur, com, st) = (b.reader().unwrap(), b.cursor(&name).unwrap(), b.committed(), Arc::new(SinkStats::default()));
    let (s, g) = (stop.clone(), Duration::from_secs(1));
    match c {
        SinkConfig::Mqtt(m) => tokio::spawn(relais::sinks::mqtt::sink::MqttSink::new(m, gw, r, cur, com, st).run(s, g)),
        SinkConfig::Nats(n) => tokio::spawn(relais::sinks::nats::sink::NatsSink::new(n, gw, r, cur, com, st).run(s, g)),
        SinkConfig::Http(h) => tokio::spawn(relais::sinks::http::sink::HttpSink::new(h, gw, r, cur, com, st).run(s, g)),
        #[allow(unreachable_patterns)]
        _ => panic!("unexpected sink"),
    }
}

async fn fill(ingest: &Ingest, n: u64) {
    let metas: Vec<Arc<TagMeta>> = (0..10).map(|i| TagMeta::new("line", format!("t{i}").as_str(), Some("bar"))).collect();
    for i in 0..n {
        ingest.push(Sample::good(metas[(i % 10) as usize].clone(), Value::F64(i as f64), Timestamp::now())).await;
    }
    ingest.barrier().await;
}

/// Runs `chosen` sinks over a buffer holding `BACKLOG` records; rows/s of each.
async fn replay(s: &Servers, chosen: &[&str], run: &str) -> Vec<(String, f64)> {
    let dir = tempfile::tempdir().unwrap();
    let ingest = Arc::new(Ingest::new(1 << 16));
    let buffer = Buffer::open(&BufferConfig::default(), dir.path(), ingest.clone(), chosen).unwrap();
    fill(&ingest, BACKLOG).await;
    let head = *buffer.committed().borrow();
    let stop = CancellationToken::new();
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for c in sink_configs(s, dir.path(), run).into_iter().filter(|c| chosen.contains(&c.name())) {
        tasks.push(spawn(c, run, &buffer, &stop));
    }
    let mut done: Vec<(String, f64)> = Vec::new();
    while done.len() < chosen.len() && t0.elapsed() < Duration::from_secs(300) {
        for n in chosen {
            if !done.iter().any(|(d, _)| d == n) && buffer.cursor(n).unwrap().get() >= head {
                done.push((n.to_string(), BACKLOG as f64 / t0.elapsed().as_secs_f64()));
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.cancel();
    for t in tasks {
        let _ = t.await;
    }
    done
}

/// Four sinks live while a producer writes `rate` rows/s for `secs` seconds.
async fn sustained(s: &Servers, rate: u64, secs: u64) {
    let dir = tempfile::tempdir().unwrap();
    let names = ["mqtt", "nats", "nats_batch", "http"];
    let ingest = Arc::new(Ingest::new(1 << 16));
    let buffer = Buffer::open(&BufferConfig::default(), dir.path(), ingest.clone(), &names).unwrap();
    let stop = CancellationToken::new();
    let tasks: Vec<_> = sink_configs(s, dir.path(), "live").into_iter().map(|c| spawn(c, "live", &buffer, &stop)).collect();
    let start: Vec<u64> = names.iter().map(|n| buffer.cursor(n).unwrap().get()).collect();
    let meta = TagMeta::new("line", "speed", Some("m/s"));
    let t0 = Instant::now();
    let mut worst = [0u64; 4];
    let per_tick = rate / 100;
    for tick in 0..secs * 100 {
        for i in 0..per_tick {
            ingest.push(Sample::good(meta.clone(), Value::F64((tick * per_tick + i) as f64), Timestamp::now())).await;
        }
        let head = *buffer.committed().borrow();
        for (k, n) in names.iter().enumerate() {
            worst[k] = worst[k].max(head.saturating_sub(buffer.cursor(n).unwrap().get()));
        }
        tokio::time::sleep_until((t0 + Duration::from_millis(10 * (tick + 1))).into()).await;
    }
    let secs = t0.elapsed().as_secs_f64();
    for (k, n) in names.iter().enumerate() {
        let d = buffer.cursor(n).unwrap().get() - start[k];
        let lag_ms = worst[k] as f64 * 1000.0 / rate as f64;
        println!("  {n:<11} {:>9.0} rows/s delivered, worst lag {} rows (~{lag_ms:.0} ms)", d as f64 / secs, worst[k]);
    }
    stop.cancel();
    for t in tasks {
        let _ = t.await;
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let s = servers(dir.path()).await;
        println!("replay of {BACKLOG} records, one sink at a time:");
        for (i, n) in ["mqtt", "nats", "nats_batch", "http"].iter().enumerate() {
            for (name, r) in replay(&s, &[n], &format!("r{i}")).await {
                println!("  {name:<11} {r:>9.0} rows/s");
            }
        }
        println!("replay of {BACKLOG} records, four sinks at once:");
        for (name, r) in replay(&s, &["mqtt", "nats", "nats_batch", "http"], "r4").await {
            println!("  {name:<11} {r:>9.0} rows/s");
        }
        println!("four sinks live, producer at 20000 rows/s for 10 s:");
        sustained(&s, 20_000, 10).await;
    });
}
