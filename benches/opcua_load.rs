//! OPC UA subscription load bench: `relais sim` serving N stations × M
//! variables over OPC UA, every value changing every 100 ms → `relais run`
//! (one session, one subscription, publishing and sampling 100 ms) →
//! Mosquitto (QoS 1, json-batch) → a subscriber in this process.
//!
//! Measures sustained samples/s delivered, relais CPU (% of one core) and RSS,
//! then restarts the simulator's server (down 5 s, namespace renumbered) and
//! measures the time from its return until every tag has delivered a good
//! value again.
//!
//! ```text
//! cargo bench --bench opcua_load                           # 10 stations x 1000 tags (10,000 items)
//! cargo bench --bench opcua_load -- --stations 2 --tags 500 --seconds 10
//! ```
//! Needs `mosquitto` (Debian package) on PATH or in /usr/sbin.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};

mod common;
use common::{cpu_seconds, free_port, mosquitto, rss_mb, stop, wait_port};

struct Params {
    stations: usize,
    tags: usize,
    seconds: u64,
    restart_after: u64,
}

fn configs(dir: &Path, p: &Params, broker: u16, ua: u16) -> (PathBuf, PathBuf) {
    let mut sim = format!(
        "[sim]\ntick = \"100ms\"\n[opcua]\nlisten = \"127.0.0.1:{ua}\"\npki_dir = \"{}\"\nscan = \"50ms\"\nrestart_after = \"{}s\"\ndown_for = \"5s\"\n",
        dir.join("sim-pki").display(),
        p.restart_after
    );
    let mut gw = format!(
        "[gateway]\nid = \"bench\"\ndata_dir = \"{}\"\nstatus_interval = \"0s\"\nhealth_interval = \"0s\"\n[buffer]\nmax_bytes = \"4GiB\"\n\
         [[device]]\nname = \"plc\"\nprotocol = \"opcua\"\nendpoint = \"opc.tcp://127.0.0.1:{ua}/\"\npublishing_interval = \"100ms\"\nsampling_interval = \"50ms\"\nqueue_size = 4\nkeep_alive = \"1s\"\nreconnect_max = \"2s\"\n",
        dir.join("data").display()
    );
    for s in 0..p.stations {
        sim += &format!("[[station]]\nname = \"s{s}\"\n");
        for t in 0..p.tags {
            sim += &format!(
                "[[station.tag]]\nname = \"t{t}\"\ntable = \"holding\"\naddress = {}\ntype = \"u32\"\nsignal = {{ kind = \"counter\", step = 1 }}\n",
                t * 2
            );
            gw += &format!("[[device.tag]]\nname = \"s{s}.t{t}\"\nnode_id = \"nsu=urn:relais:sim;s=s{s}.t{t}\"\n");
        }
    }
    common::write_configs(dir, &sim, gw, broker)
}

#[derive(Default)]
struct Seen {
    samples: AtomicU64,
    /// Tag → receive time (in this process) of its latest good sample.
    last_good: Mutex<HashMap<String, Instant>>,
}

async fn subscribe(port: u16, seen: Arc<Seen>) {
    let mut o = MqttOptions::new(format!("bench-{}", fastrand::u32(..)), "127.0.0.1", port);
    o.set_max_packet_size(64 << 20, 64 << 20);
    o.set_keep_alive(Duration::from_secs(30));
    let (client, mut el) = AsyncClient::new(o, 1000);
    loop {
        match el.poll().await {
            Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                let _ = client.try_subscribe("bench/#", QoS::AtLeastOnce);
            }
            Ok(Event::Incoming(Incoming::Publish(p))) => {
                let now = Instant::now();
                let Ok(v) = serde_json::from_slice::<serde_json::Value>(&p.payload) else { continue };
                let items = v["samples"].as_array().cloned().unwrap_or_default();
                seen.samples.fetch_add(items.len() as u64, Ordering::Relaxed);
                let mut g = seen.last_good.lock().unwrap();
                for s in items {
                    if s["quality"] == "good"
                        && let Some(t) = s["tag"].as_str()
                    {
                        g.insert(t.to_string(), now);
                    }
                }
            }
            Ok(_) => {}
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let get = |k: &str| args.iter().position(|a| a == k).and_then(|i| args.get(i + 1)).cloned();
    let p = Params {
        stations: get("--stations").and_then(|s| s.parse().ok()).unwrap_or(10),
        tags: get("--tags").and_then(|s| s.parse().ok()).unwrap_or(1000),
        seconds: get("--seconds").and_then(|s| s.parse().ok()).unwrap_or(20),
        restart_after: 0,
    };
    let warmup = 8u64;
    let p = Params { restart_after: warmup + p.seconds + 2, ..p };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let relais = env!("CARGO_BIN_EXE_relais");
    let dir = tempfile::tempdir().unwrap();
    let bport = free_port();
    let conf = dir.path().join("mosquitto.conf");
    std::fs::write(&conf, format!("listener {bport} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 100000\n"))
        .unwrap();
    let broker = Command::new(mosquitto()).arg("-c").arg(&conf).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    wait_port(bport);
    let ua = free_port();
    let (simc, gwc) = configs(dir.path(), &p, bport, ua);
    let sim_start = Instant::now();
    let sim = Command::new(relais).args(["sim", "--config"]).arg(&simc).env("RUST_LOG", "error").stdout(Stdio::null()).spawn().unwrap();
    wait_port(ua);
    let seen = Arc::new(Seen::default());
    let sub = rt.spawn(subscribe(bport, seen.clone()));
    std::thread::sleep(Duration::from_millis(500));
    let gw = Command::new(relais).args(["run", "--config"]).arg(&gwc).env("RUST_LOG", "warn").stdout(Stdio::null()).spawn().unwrap();
    let pid = gw.id();
    std::thread::sleep(Duration::from_secs(warmup));
    let (n0, c0, t0) = (seen.samples.load(Ordering::Relaxed), cpu_seconds(pid), Instant::now());
    let (sc0, bc0) = (cpu_seconds(sim.id()), cpu_seconds(broker.id()));
    std::thread::sleep(Duration::from_secs(p.seconds));
    let secs = t0.elapsed().as_secs_f64();
    let n = seen.samples.load(Ordering::Relaxed) - n0;
    let cpu = (cpu_seconds(pid) - c0) / secs * 100.0;
    let sim_cpu = (cpu_seconds(sim.id()) - sc0) / secs * 100.0;
    let broker_cpu = (cpu_seconds(broker.id()) - bc0) / secs * 100.0;
    let (rss, peak) = (rss_mb(pid, "VmRSS:"), rss_mb(pid, "VmHWM:"));
    let items = p.stations * p.tags;
    println!(
        "opcua {} items / 100 ms: offered {:.0} samples/s | delivered {:.0} samples/s | relais CPU {:.1} % of a core, RSS {:.1} MB (peak {:.1} MB) | sim {:.1} %, mosquitto {:.1} %",
        items,
        items as f64 * 10.0,
        n as f64 / secs,
        cpu,
        rss,
        peak,
        sim_cpu,
        broker_cpu
    );
    // Restart: the server goes down at sim_start + restart_after and is back 5 s later.
    let back = sim_start + Duration::from_secs(p.restart_after + 5);
    while Instant::now() < back {
        std::thread::sleep(Duration::from_millis(50));
    }
    let deadline = back + Duration::from_secs(60);
    let recovered = loop {
        let good = seen.last_good.lock().unwrap().values().filter(|t| **t > back).count();
        if good >= items {
            break Some(back.elapsed());
        }
        if Instant::now() > deadline {
            println!("after the restart only {good} of {items} tags were good again within 60 s");
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    if let Some(d) = recovered {
        println!(
            "server restart (down 5 s, namespace renumbered): all {items} tags good again {:.2} s after the server came back",
            d.as_secs_f64()
        );
    }
    stop(gw);
    stop(sim);
    sub.abort();
    let mut broker = broker;
    let _ = broker.kill();
    let _ = broker.wait();
}
