//! End-to-end load bench: `relais sim` with many devices × tags → `relais run`
//! (release build) → Mosquitto (QoS 1, json-batch) → a subscriber in this
//! process. Measures sustained tags/s delivered, poll-to-receive latency
//! (p50/p99, from each sample's acquisition time `recv_ts`), CPU of relais
//! (% of one core) and its peak RSS.
//!
//! ```text
//! cargo bench --bench e2e_load                      # both scenarios below
//! cargo bench --bench e2e_load -- --scenario neuron # 500 devices x 30 tags every 1 s
//! cargo bench --bench e2e_load -- --scenario max    # 200 devices x 125 tags every 100 ms
//! cargo bench --bench e2e_load -- --devices 100 --tags 50 --interval 200ms --seconds 20
//! ```
//! `POLL_PHASE=aligned` polls every device at round instants (`poll_phase`)
//! instead of spreading them (the default).
//! `RELAIS_BIN=/path/to/relais` runs that binary instead of this build's
//! (to compare two commits back to back).
//! Needs `mosquitto` (Debian package) on PATH or in /usr/sbin.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};

mod common;
use common::{cpu_seconds, free_port, mosquitto, rss_mb, stop, wait_port};

struct Scenario {
    name: String,
    devices: usize,
    tags: usize,
    interval: String,
    seconds: u64,
}

fn configs(dir: &Path, s: &Scenario, broker: u16) -> (PathBuf, PathBuf) {
    let base = free_port().max(20000);
    let mut ports = Vec::new();
    let mut p = base;
    while ports.len() < s.devices {
        if std::net::TcpListener::bind(("127.0.0.1", p)).is_ok() {
            ports.push(p);
        }
        p = p.wrapping_add(1).max(20000);
    }
    let mut sim = String::from("[sim]\ntick = \"1s\"\n");
    let mut gw = format!(
        "[gateway]\nid = \"bench\"\ndata_dir = \"{}\"\nstatus_interval = \"0s\"\nhealth_interval = \"0s\"\n[buffer]\nmax_bytes = \"2GiB\"\n",
        dir.join("data").display()
    );
    for (d, port) in ports.iter().enumerate() {
        sim += &format!("[[station]]\nname = \"s{d}\"\nlisten = \"127.0.0.1:{port}\"\n");
        gw += &format!(
            "[[device]]\nname = \"dev{d}\"\nprotocol = \"modbus-tcp\"\nendpoint = \"127.0.0.1:{port}\"\npoll_interval = \"{}\"\ntimeout = \"2s\"\n",
            s.interval
        );
        if let Ok(p) = std::env::var("POLL_PHASE") {
            gw += &format!("poll_phase = \"{p}\"\n");
        }
        for t in 0..s.tags {
            if t % 2 == 0 {
                sim += &format!(
                    "[[station.tag]]\nname = \"t{t}\"\ntable = \"holding\"\naddress = {t}\nsignal = {{ kind = \"counter\", step = 1, wrap = 60000 }}\n"
                );
                gw += &format!("[[device.tag]]\nname = \"t{t}\"\ntable = \"holding\"\naddress = {t}\n");
            } else {
                sim += &format!(
                    "[[station.tag]]\nname = \"t{t}\"\ntable = \"input\"\naddress = {}\ntype = \"f32\"\nsignal = {{ kind = \"sine\", amplitude = 10, offset = 50, period = \"30s\" }}\n",
                    t * 2
                );
                gw += &format!("[[device.tag]]\nname = \"t{t}\"\ntable = \"input\"\naddress = {}\ntype = \"f32\"\n", t * 2);
            }
        }
    }
    common::write_configs(dir, &sim, gw, broker)
}

struct Counters {
    samples: AtomicU64,
    lat_us: std::sync::Mutex<Vec<u64>>,
}

fn count_seq(payload: &[u8]) -> u64 {
    payload.windows(6).filter(|w| w == b"\"seq\":").count() as u64
}

async fn subscribe(port: u16, c: Arc<Counters>) {
    let mut o = MqttOptions::new(format!("bench-{}", fastrand::u32(..)), "127.0.0.1", port);
    o.set_max_packet_size(64 << 20, 64 << 20);
    o.set_keep_alive(Duration::from_secs(30));
    let (client, mut el) = AsyncClient::new(o, 1000);
    let mut n = 0u64;
    loop {
        match el.poll().await {
            Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                let _ = client.try_subscribe("bench/#", QoS::AtLeastOnce);
            }
            Ok(Event::Incoming(Incoming::Publish(p))) => {
                let k = count_seq(&p.payload);
                c.samples.fetch_add(k, Ordering::Relaxed);
                n += 1;
                if n.is_multiple_of(20) {
                    // Latency of one sample of every 20th message.
                    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&p.payload)
                        && let Some(ts) = v["samples"][0]["recv_ts"].as_str()
                        && let Ok(t) = chrono::DateTime::parse_from_rfc3339(ts)
                    {
                        let now = chrono::Utc::now();
                        let us = (now - t.with_timezone(&chrono::Utc)).num_microseconds().unwrap_or(0).max(0) as u64;
                        c.lat_us.lock().unwrap().push(us);
                    }
                }
            }
            Ok(_) => {}
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

fn pct(v: &mut [u64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_unstable();
    v[((v.len() as f64 - 1.0) * p).round() as usize] as f64 / 1000.0
}

fn run(s: &Scenario, rt: &tokio::runtime::Runtime) {
    // RELAIS_BIN runs another build (back-to-back comparisons of two commits).
    let relais_bin = std::env::var("RELAIS_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_relais").to_string());
    let relais = relais_bin.as_str();
    let dir = tempfile::tempdir().unwrap();
    let bport = free_port();
    let conf = dir.path().join("mosquitto.conf");
    std::fs::write(&conf, format!("listener {bport} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 100000\n"))
        .unwrap();
    let broker = Command::new(mosquitto()).arg("-c").arg(&conf).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    wait_port(bport);
    let (simc, gwc) = configs(dir.path(), s, bport);
    let sim = Command::new(relais).args(["sim", "--config"]).arg(&simc).env("RUST_LOG", "error").stdout(Stdio::null()).spawn().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let counters = Arc::new(Counters { samples: AtomicU64::new(0), lat_us: Default::default() });
    let sub = rt.spawn(subscribe(bport, counters.clone()));
    std::thread::sleep(Duration::from_millis(500));
    let gw = Command::new(relais).args(["run", "--config"]).arg(&gwc).env("RUST_LOG", "warn").stdout(Stdio::null()).spawn().unwrap();
    let pid = gw.id();
    std::thread::sleep(Duration::from_secs(5)); // warm-up
    counters.lat_us.lock().unwrap().clear();
    let (n0, c0, sc0, bc0, t0) =
        (counters.samples.load(Ordering::Relaxed), cpu_seconds(pid), cpu_seconds(sim.id()), cpu_seconds(broker.id()), Instant::now());
    std::thread::sleep(Duration::from_secs(s.seconds));
    let secs = t0.elapsed().as_secs_f64();
    let n = counters.samples.load(Ordering::Relaxed) - n0;
    let cpu = (cpu_seconds(pid) - c0) / secs * 100.0;
    let sim_cpu = (cpu_seconds(sim.id()) - sc0) / secs * 100.0;
    let broker_cpu = (cpu_seconds(broker.id()) - bc0) / secs * 100.0;
    let (rss, peak) = (rss_mb(pid, "VmRSS:"), rss_mb(pid, "VmHWM:"));
    let mut lat = counters.lat_us.lock().unwrap().clone();
    let offered = s.devices as f64 * s.tags as f64 / relais::units::parse_duration(&s.interval).unwrap().as_secs_f64();
    println!(
        "{:<8} {:>4} dev x {:>3} tags / {:<6} offered {:>8.0} tags/s | delivered {:>8.0} tags/s | latency p50 {:>7.1} ms p99 {:>7.1} ms | relais CPU {:>5.1} % of a core, RSS {:>5.1} MB (peak {:>5.1} MB) | sim {:>5.1} %, mosquitto {:>5.1} %",
        s.name,
        s.devices,
        s.tags,
        s.interval,
        offered,
        n as f64 / secs,
        pct(&mut lat, 0.5),
        pct(&mut lat, 0.99),
        cpu,
        rss,
        peak,
        sim_cpu,
        broker_cpu
    );
    stop(gw);
    stop(sim);
    sub.abort();
    let mut broker = broker;
    let _ = broker.kill();
    let _ = broker.wait();
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let get = |k: &str| args.iter().position(|a| a == k).and_then(|i| args.get(i + 1)).cloned();
    let seconds: u64 = get("--seconds").and_then(|s| s.parse().ok()).unwrap_or(20);
    let mut list = Vec::new();
    if let Some(d) = get("--devices") {
        list.push(Scenario {
            name: "custom".into(),
            devices: d.parse().unwrap(),
            tags: get("--tags").and_then(|t| t.parse().ok()).unwrap_or(30),
            interval: get("--interval").unwrap_or_else(|| "1s".into()),
            seconds,
        });
    } else {
        let which = get("--scenario").unwrap_or_else(|| "all".into());
        if which == "all" || which == "neuron" {
            list.push(Scenario { name: "neuron".into(), devices: 500, tags: 30, interval: "1s".into(), seconds });
        }
        if which == "all" || which == "max" {
            list.push(Scenario { name: "max".into(), devices: 200, tags: 125, interval: "100ms".into(), seconds });
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    for s in &list {
        run(s, &rt);
    }
}
