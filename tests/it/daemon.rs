//! The whole chain, black-box: the `relais` binary (or `app::run`) polling the
//! simulator and forwarding to a private Mosquitto. SIGTERM, `kill -9`, a dead
//! broker (B22), and the SKAB replay compared value by value.

use std::path::{Path, PathBuf};

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use relais::config::Config;

use crate::common::{
    Mosquitto, Sub, assert_complete_in_order, counter_station, data, free_port, kill, meta, seqs, spawn_relais, wait_exit,
};
use crate::modbus::sim;

fn write_config(dir: &Path, broker_port: u16, sim_port: u16, extra_gateway: &str, poll: &str) -> PathBuf {
    let mut tags = String::new();
    for i in 0..10 {
        tags += &format!("[[device.tag]]\nname = \"t{i}\"\ntable = \"holding\"\naddress = {i}\n");
    }
    let text = format!(
        r#"[gateway]
id = "gw1"
data_dir = "{data}"
status_interval = "0s"
health_interval = "0s"
{extra_gateway}

[[device]]
name = "line"
protocol = "modbus-tcp"
endpoint = "127.0.0.1:{sim_port}"
poll_interval = "{poll}"
{tags}

[[sink]]
name = "broker"
type = "mqtt"
url = "mqtt://127.0.0.1:{broker_port}"
topic = "plant/{{device}}/{{tag}}"
reconnect_max = "1s"
format = "json-batch"
"#,
        data = dir.join("data").display()
    );
    let p = dir.join("relais.toml");
    std::fs::write(&p, text).unwrap();
    p
}

fn last_seq(data_dir: &Path) -> u64 {
    meta(data_dir, "last_seq")
}

/// The first seq the buffer issued.
fn first_seq(data_dir: &Path) -> u64 {
    meta(data_dir, "seq_origin") + 1
}

#[tokio::test]
async fn sigterm_flushes_and_exits_zero_within_5s() {
    let Some(broker) = Mosquitto::start() else { return };
    let sim_port = free_port();
    let _sim = sim(&counter_station(sim_port, 10)).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), broker.port, sim_port, "", "50ms");
    let mut sub = Sub::with_id(broker.port, "plant/#", "term-sub", false).await;
    let mut child = spawn_relais(&cfg);
    let first = sub.next(Duration::from_secs(10)).await.expect("data flows");
    assert!(first.topic == "plant/line" || first.topic.contains("/relais/"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t0 = Instant::now();
    kill(child.id(), 15);
    let code = tokio::task::spawn_blocking(move || wait_exit(&mut child, Duration::from_secs(5))).await.unwrap();
    assert_eq!(code, Some(0), "exit 0 within 5 s");
    assert!(t0.elapsed() < Duration::from_secs(5));
    // Every accepted sample was delivered before the exit.
    let (first_seq, last) = (first_seq(&dir.path().join("data")), last_seq(&dir.path().join("data")));
    let msgs = sub.until_seqs(Duration::from_secs(5), first_seq..=last, |_| true).await;
    let mut all = vec![first];
    all.extend(msgs);
    assert_complete_in_order(&seqs(&all), first_seq, last);
    // The gateway said goodbye itself: retained offline.
    let mut s = Sub::with_id(broker.port, "plant/relais/gw1/status", "term-status", true).await;
    assert_eq!(s.next(Duration::from_secs(3)).await.unwrap().json()["state"], "offline");
}

#[tokio::test]
async fn kill_9_loses_no_accepted_sample_even_during_a_broker_outage() {
    let Some(mut broker) = Mosquitto::start() else { return };
    let sim_port = free_port();
    let _sim = sim(&counter_station(sim_port, 10)).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), broker.port, sim_port, "", "20ms");
    let mut sub = Sub::with_id(broker.port, "plant/#", "kill-sub", false).await;
    // Run, kill -9 mid-stream, restart.
    let mut child = spawn_relais(&cfg);
    let _ = sub.next(Duration::from_secs(10)).await.expect("data flows");
    tokio::time::sleep(Duration::from_millis(800)).await;
    kill(child.id(), 9);
    let _ = child.wait();
    let mut child = spawn_relais(&cfg);
    tokio::time::sleep(Duration::from_millis(800)).await;
    // Broker outage, and kill -9 again while it lasts (field case B20 variant 2).
    broker.stop();
    tokio::time::sleep(Duration::from_millis(800)).await;
    kill(child.id(), 9);
    let _ = child.wait();
    let buffered_at_kill = last_seq(&dir.path().join("data"));
    let mut child = spawn_relais(&cfg);
    tokio::time::sleep(Duration::from_millis(500)).await;
    broker.restart();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    kill(child.id(), 15);
    let code = tokio::task::spawn_blocking(move || wait_exit(&mut child, Duration::from_secs(5))).await.unwrap();
    assert_eq!(code, Some(0));
    let (first, last) = (first_seq(&dir.path().join("data")), last_seq(&dir.path().join("data")));
    assert!(last > buffered_at_kill, "acquisition resumed after the restart");
    let msgs = sub.until_seqs(Duration::from_secs(10), first..=last, |_| true).await;
    // Every accepted seq arrived; repeats (around the kills) carry the same seq.
    let got = seqs(&msgs);
    let distinct: std::collections::HashSet<u64> = got.iter().copied().collect();
    let missing: Vec<u64> = (first..=last).filter(|s| !distinct.contains(s)).take(20).collect();
    assert!(missing.is_empty(), "lost accepted samples: {missing:?} (of {first}..={last})");
    assert!(distinct.iter().all(|s| *s <= last));
}

#[tokio::test]
async fn b22_a_dead_broker_never_slows_polling() {
    let sim_port = free_port();
    let _sim = sim(&counter_station(sim_port, 10)).await;
    let dir = tempfile::tempdir().unwrap();
    let dead = free_port(); // nothing listens here
    let cfg_path = write_config(dir.path(), dead, sim_port, "", "100ms");
    let cfg = Config::load(&cfg_path).unwrap();
    let stop = CancellationToken::new();
    let run = tokio::spawn(relais::app::run(cfg, stop.clone(), Default::default()));
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.cancel();
    run.await.unwrap().unwrap();
    let c = rusqlite::Connection::open(dir.path().join("data/buffer.db")).unwrap();
    let rows: i64 = c.query_row("SELECT COUNT(*) FROM samples", [], |r| r.get(0)).unwrap();
    let cycles = rows / 10;
    assert!(cycles >= 26, "poll cycles kept their 100 ms schedule with the broker down: {cycles} in 3 s");
    let cursor: i64 = c.query_row("SELECT seq FROM cursors WHERE sink = 'broker'", [], |r| r.get(0)).unwrap();
    let origin: i64 = c.query_row("SELECT value FROM meta WHERE key = 'seq_origin'", [], |r| r.get(0)).unwrap();
    assert_eq!(cursor, origin, "nothing counted as delivered");
}

/// Real input: the simulator replays `valve1_0.csv` (lock-step, one row per
/// poll) and every value received on MQTT equals the CSV value as f32.
#[cfg_attr(relais_no_skab, ignore = "SKAB data absent: scripts/get-skab.sh, or ../shared/data/skab (decided at build time, build.rs)")]
#[tokio::test]
async fn skab_replay_arrives_on_mqtt_row_by_row() {
    let Some(skab) = crate::common::skab("valve1_0.csv") else { return };
    let Some(broker) = Mosquitto::start() else { return };
    // Expected values, straight from the file.
    let mut rdr = csv::ReaderBuilder::new().delimiter(b';').from_path(&skab).unwrap();
    let headers: Vec<String> = rdr.headers().unwrap().iter().map(str::to_string).collect();
    let rows: Vec<Vec<f64>> = rdr.records().map(|r| r.unwrap().iter().skip(1).map(|v| v.parse::<f64>().unwrap()).collect()).collect();
    let cols = &headers[1..];
    assert_eq!(cols.len(), 10);
    let sim_port = free_port();
    let mut st = format!(
        "[[station]]\nname = \"pump\"\nlisten = \"127.0.0.1:{sim_port}\"\nlockstep = true\n[[station.tag]]\nname = \"row\"\ntable = \"input\"\naddress = 0\ntype = \"u32\"\nsignal = {{ kind = \"tick\" }}\n"
    );
    let mut dev = format!(
        "[[device]]\nname = \"pump\"\nprotocol = \"modbus-tcp\"\nendpoint = \"127.0.0.1:{sim_port}\"\npoll_interval = \"5ms\"\n[[device.tag]]\nname = \"row\"\ntable = \"input\"\naddress = 0\ntype = \"u32\"\n"
    );
    for (i, c) in cols.iter().enumerate() {
        let a = 2 + 2 * i;
        st += &format!(
            "[[station.tag]]\nname = \"c{i}\"\ntable = \"input\"\naddress = {a}\ntype = \"f32\"\nsignal = {{ kind = \"csv\", file = \"{}\", column = \"{c}\", loop = false }}\n",
            skab.display()
        );
        dev += &format!("[[device.tag]]\nname = \"c{i}\"\ntable = \"input\"\naddress = {a}\ntype = \"f32\"\n");
    }
    let _sim = sim(&st).await;
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[gateway]\nid = \"skab\"\ndata_dir = \"{}\"\nstatus_interval = \"0s\"\nhealth_interval = \"0s\"\n{dev}\n[[sink]]\nname = \"b\"\ntype = \"mqtt\"\nurl = \"mqtt://127.0.0.1:{}\"\ntopic = \"skab/{{device}}/{{tag}}\"\nformat = \"json-batch\"\n",
        dir.path().join("data").display(),
        broker.port
    );
    let cfg = Config::parse(&text, "skab.toml", Path::new(".")).unwrap();
    let mut sub = Sub::new(broker.port, "skab/#").await;
    let stop = CancellationToken::new();
    let run = tokio::spawn(relais::app::run(cfg, stop.clone(), Default::default()));
    let n = rows.len();
    // Samples of one poll share their recv_ts; a poll may span two messages.
    let mut polls: std::collections::BTreeMap<String, Vec<serde_json::Value>> = Default::default();
    let mut last_row_seen = false;
    let deadline = Instant::now() + Duration::from_secs(90);
    while Instant::now() < deadline && !last_row_seen {
        let Some(m) = sub.next(Duration::from_secs(5)).await else { continue };
        for m in data(&[m]) {
            for s in m.json()["samples"].as_array().unwrap() {
                if s["tag"] == "row" && s["value"].as_u64() == Some(n as u64 - 1) {
                    last_row_seen = true;
                }
                polls.entry(s["recv_ts"].as_str().unwrap().to_string()).or_default().push(s.clone());
            }
        }
    }
    // Stop the gateway (it delivers what it accepted), then take the rest.
    stop.cancel();
    run.await.unwrap().unwrap();
    while let Some(m) = sub.next(Duration::from_millis(500)).await {
        for m in data(&[m]) {
            for s in m.json()["samples"].as_array().unwrap() {
                polls.entry(s["recv_ts"].as_str().unwrap().to_string()).or_default().push(s.clone());
            }
        }
    }
    let mut by_row: std::collections::BTreeMap<u64, Vec<(String, f64)>> = Default::default();
    for samples in polls.values() {
        let row = samples.iter().find(|s| s["tag"] == "row").and_then(|s| s["value"].as_u64()).expect("row tag in every poll");
        let vals = samples
            .iter()
            .filter(|s| s["tag"] != "row")
            .map(|s| (s["tag"].as_str().unwrap().to_string(), s["value"].as_f64().unwrap()))
            .collect();
        if row < n as u64 {
            // After the last row the replay stays on it while the tick goes on.
            by_row.entry(row).or_insert(vals);
        }
    }
    assert_eq!(by_row.len(), n, "every CSV row arrived ({} of {n})", by_row.len());
    for (row, vals) in &by_row {
        assert_eq!(vals.len(), 10, "row {row}: all 10 columns");
        for (tag, v) in vals {
            let c: usize = tag[1..].parse().unwrap();
            let want = rows[*row as usize][c] as f32 as f64;
            assert_eq!(*v, want, "row {row} column {} ", cols[c]);
        }
    }
}
