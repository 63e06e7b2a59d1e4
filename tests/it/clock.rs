//! Issue 13, host faults: the clock guard under a clock jumping back two
//! years and ahead one year (the lab's clock offset), a restart below the
//! persisted floor, the disk-full switch, the lab routes' access, and
//! `gateway.started` after `kill -9` and SIGTERM. The real binary polls the
//! simulator and forwards to a private Mosquitto.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::common::{Mosquitto, Msg, Sub, assert_complete_in_order, counter_station, free_port, kill, meta, seqs, spawn_relais, wait_exit};
use crate::modbus::sim;

/// Kills the gateway if the test panics before stopping it (no orphan holds the test's stderr).
struct Reaper(u32);

impl Drop for Reaper {
    fn drop(&mut self) {
        if std::thread::panicking() {
            kill(self.0, 9);
        }
    }
}

const TOKEN: &str = "lab-token-0123456789";
const YEAR: i64 = 365 * 86_400;

/// A gateway polling 4 counters every 100 ms, `[admin]` with a token, `extra` appended.
fn write_config(dir: &Path, broker: u16, sim_port: u16, admin: u16, extra: &str) -> PathBuf {
    std::fs::write(dir.join("admin.token"), format!("{TOKEN}\n")).unwrap();
    let mut tags = String::new();
    for i in 0..4 {
        tags += &format!("[[device.tag]]\nname = \"t{i}\"\ntable = \"holding\"\naddress = {i}\n");
    }
    let text = format!(
        "[gateway]\nid = \"gw1\"\ndata_dir = \"{data}\"\nstatus_interval = \"0s\"\nhealth_interval = \"0s\"\n\
         [admin]\nlisten = \"127.0.0.1:{admin}\"\ntoken_file = \"admin.token\"\n{extra}\n\
         [[device]]\nname = \"line\"\nprotocol = \"modbus-tcp\"\nendpoint = \"127.0.0.1:{sim_port}\"\npoll_interval = \"100ms\"\n{tags}\n\
         [[sink]]\nname = \"broker\"\ntype = \"mqtt\"\nurl = \"mqtt://127.0.0.1:{broker}\"\ntopic = \"plant/{{device}}/{{tag}}\"\n\
         reconnect_max = \"1s\"\nformat = \"json-batch\"\n",
        data = dir.join("data").display()
    );
    let p = dir.join("relais.toml");
    std::fs::write(&p, text).unwrap();
    p
}

async fn put(admin: u16, path: &str, body: Value, token: Option<&str>) -> (u16, Value) {
    let mut r = crate::common::http_client().put(format!("http://127.0.0.1:{admin}{path}")).json(&body);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let resp = r.send().await.unwrap();
    let code = resp.status().as_u16();
    (code, resp.json().await.unwrap_or(Value::Null))
}

/// Waits until the admin listener answers.
async fn admin_up(admin: u16) {
    for _ in 0..100 {
        if crate::common::http_client().get(format!("http://127.0.0.1:{admin}/healthz")).send().await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("admin listener did not come up");
}

fn ns(rfc3339: &Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339.as_str().unwrap()).unwrap().timestamp_nanos_opt().unwrap()
}

/// Every data sample (JSON objects with `tag`, `seq`, …), first copy of each seq, in seq order.
fn samples(msgs: &[Msg]) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for m in msgs.iter().filter(|m| !m.topic.contains("/relais/")) {
        for s in m.json()["samples"].as_array().unwrap() {
            if seen.insert(s["seq"].as_u64().unwrap()) {
                out.push(s.clone());
            }
        }
    }
    out.sort_by_key(|s| s["seq"].as_u64().unwrap());
    out
}

/// The events of `kind`, first copy of each seq.
fn events(msgs: &[Msg], kind: &str) -> Vec<Value> {
    let mut seen = std::collections::HashSet::new();
    msgs.iter()
        .filter(|m| m.topic.ends_with(&format!("/event/{kind}")))
        .map(|m| m.json())
        .filter(|e| seen.insert(e["seq"].as_u64().unwrap()))
        .collect()
}

/// Stops the gateway with SIGTERM and returns every message up to its last seq.
async fn stop_and_collect(mut child: std::process::Child, sub: &mut Sub, data: &Path, mut got: Vec<Msg>) -> Vec<Msg> {
    kill(child.id(), 15);
    let code = tokio::task::spawn_blocking(move || wait_exit(&mut child, Duration::from_secs(8))).await.unwrap();
    assert_eq!(code, Some(0));
    let (first, last) = (meta(data, "seq_origin") + 1, meta(data, "last_seq"));
    got.extend(sub.until_seqs(Duration::from_secs(10), first..=last, |_| true).await);
    assert_complete_in_order(&seqs(&got), first, last);
    got
}

/// The clock test, shortened: the wall clock jumps back two years for
/// ~6 s and comes back, then ahead one year for ~6 s and comes back.
#[tokio::test]
async fn clock_jumps_back_and_ahead_never_date_a_sample_before_the_floor() {
    let Some(broker) = Mosquitto::start() else { return };
    let (sim_port, admin) = (free_port(), free_port());
    let _sim = sim(&counter_station(sim_port, 4)).await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = write_config(dir.path(), broker.port, sim_port, admin, "[lab]\nfaults = true\n");
    let mut sub = Sub::with_id(broker.port, "plant/#", "clock-sub", false).await;
    let child = spawn_relais(&cfg);
    let _reaper = Reaper(child.id());
    admin_up(admin).await;
    let mut got = sub.collect(Duration::from_secs(2), |_| false).await;
    let mut marks = Vec::new();
    for offset in [-2 * YEAR, YEAR] {
        let (code, st) = put(admin, "/api/lab/clock", serde_json::json!({"offset_s": offset}), Some(TOKEN)).await;
        assert_eq!(code, 200, "{st}");
        assert_eq!(st["offset_s"], offset);
        let t_on = chrono::Utc::now().timestamp_nanos_opt().unwrap();
        got.extend(sub.collect(Duration::from_secs(6), |_| false).await);
        let (code, st) = put(admin, "/api/lab/clock", serde_json::json!({"offset_s": 0}), Some(TOKEN)).await;
        assert_eq!(code, 200);
        assert_eq!(st["offset_s"], 0);
        let t_off = chrono::Utc::now().timestamp_nanos_opt().unwrap();
        got.extend(sub.collect(Duration::from_secs(3), |_| false).await);
        marks.push((t_on, t_off));
    }
    let got = stop_and_collect(child, &mut sub, &data, got).await;
    let all = samples(&got);
    assert!(all.len() > 500, "{} samples", all.len());
    // Nothing before the floor: per tag, ts and recv_ts never go back in seq
    // order, and nothing is two years back or a year ahead of the test's clock.
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap();
    let mut last: std::collections::HashMap<String, (i64, i64)> = Default::default();
    for s in &all {
        let (ts, recv) = (ns(&s["ts"]), ns(&s["recv_ts"]));
        assert!(ts > now - 600_000_000_000 && ts <= now, "sample dated outside the test: {s}");
        let prev = last.insert(s["tag"].as_str().unwrap().to_string(), (ts, recv));
        if let Some((pts, precv)) = prev {
            assert!(ts >= pts && recv >= precv, "a stamp went back: {s} after ts {pts}");
        }
    }
    // Samples stamped during each jump are flagged and keep their value.
    let suspect: Vec<&Value> = all.iter().filter(|s| s["reason"].as_str().is_some_and(|r| r.starts_with("clock_suspect"))).collect();
    for (on, off) in &marks {
        let inside = suspect.iter().filter(|s| (*on..*off + 1_000_000_000).contains(&ns(&s["recv_ts"]))).count();
        assert!(inside >= 40, "{inside} flagged samples during the jump {on}..{off}");
    }
    assert!(suspect.iter().all(|s| s["quality"] == "uncertain" && s["value"].is_number()), "flagged uncertain, value kept");
    let good_inside = all
        .iter()
        .filter(|s| s["quality"] == "good")
        .filter(|s| marks.iter().any(|(on, off)| (*on + 500_000_000..*off - 200_000_000).contains(&ns(&s["recv_ts"]))))
        .count();
    assert_eq!(good_inside, 0, "a sample stamped well inside a jump is good");
    // One clock.suspect and one clock.trusted per jump, alternating.
    let sus = events(&got, "clock.suspect");
    let tru = events(&got, "clock.trusted");
    assert_eq!(sus.len(), 2, "{sus:?}");
    assert_eq!(tru.len(), 2, "{tru:?}");
    for (i, e) in sus.iter().enumerate() {
        assert_eq!(e["severity"], "warning");
        assert_eq!(e["details"]["detector"], "clock");
        assert_eq!(e["details"]["offset_s"], [-2 * YEAR, YEAR][i]);
        assert!(e["seq"].as_u64() < tru[i]["seq"].as_u64());
        assert_eq!(tru[i]["details"]["accepted"], "agrees");
        assert_eq!(tru[i]["details"]["detector"], "clock");
    }
}

/// A restart with the wall clock below the persisted floor stamps at or after
/// the floor, flags the samples and says so.
#[tokio::test]
async fn a_restart_below_the_persisted_floor_stamps_after_it() {
    let Some(broker) = Mosquitto::start() else { return };
    let (sim_port, admin) = (free_port(), free_port());
    let _sim = sim(&counter_station(sim_port, 4)).await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = write_config(dir.path(), broker.port, sim_port, admin, "");
    let mut sub = Sub::with_id(broker.port, "plant/#", "floor-sub", false).await;
    let mut child = spawn_relais(&cfg);
    let _reaper = Reaper(child.id());
    admin_up(admin).await;
    let before = sub.collect(Duration::from_millis(1500), |_| false).await;
    kill(child.id(), 15);
    assert_eq!(tokio::task::spawn_blocking(move || wait_exit(&mut child, Duration::from_secs(8))).await.unwrap(), Some(0));
    assert!(meta(&data, "clock_floor") > 0, "the floor is persisted");
    // The previous run "stamped" an hour ahead of the wall clock now.
    let floor = chrono::Utc::now().timestamp_nanos_opt().unwrap() + 3_600_000_000_000;
    let c = rusqlite::Connection::open(data.join("buffer.db")).unwrap();
    c.execute("UPDATE meta SET value = ?1 WHERE key = 'clock_floor'", [floor]).unwrap();
    drop(c);
    let child = spawn_relais(&cfg);
    let _reaper = Reaper(child.id());
    let mut got = before;
    got.extend(sub.collect(Duration::from_secs(3), |_| false).await);
    let got = stop_and_collect(child, &mut sub, &data, got).await;
    let after = samples(&got);
    let after: Vec<&Value> = after.iter().filter(|s| s["seq"].as_u64().unwrap() > meta(&data, "seq_origin")).collect();
    assert!(after.len() > 20);
    for s in after.iter().filter(|s| ns(&s["recv_ts"]) >= floor - 3_600_000_000_000) {
        assert!(ns(&s["ts"]) >= floor, "stamped before the floor: {s}");
        assert_eq!(s["quality"], "uncertain", "{s}");
    }
    let sus = events(&got, "clock.suspect");
    assert_eq!(sus.len(), 1, "{sus:?}");
    assert!(ns(&sus[0]["details"]["trusted"]) >= floor);
}

/// The disk-full switch on for 3 s then off: buffer.disk_full then
/// buffer.writable, every seq on MQTT, and polling went on (no gap in any tag's
/// samples longer than a few poll periods).
#[tokio::test]
async fn the_disk_full_switch_holds_samples_and_loses_none() {
    let Some(broker) = Mosquitto::start() else { return };
    let (sim_port, admin) = (free_port(), free_port());
    let _sim = sim(&counter_station(sim_port, 4)).await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = write_config(dir.path(), broker.port, sim_port, admin, "[lab]\nfaults = true\n");
    let mut sub = Sub::with_id(broker.port, "plant/#", "full-sub", false).await;
    let child = spawn_relais(&cfg);
    let _reaper = Reaper(child.id());
    admin_up(admin).await;
    let mut got = sub.collect(Duration::from_secs(2), |_| false).await;
    let (code, st) = put(admin, "/api/lab/disk_full", serde_json::json!({"on": true}), Some(TOKEN)).await;
    assert_eq!((code, &st["disk_full"]), (200, &Value::Bool(true)));
    let during = sub.collect(Duration::from_secs(3), |_| false).await;
    assert!(samples(&during).len() < 10, "samples still committed with the switch on: {}", samples(&during).len());
    got.extend(during);
    let (code, st) = put(admin, "/api/lab/disk_full", serde_json::json!({"on": false}), Some(TOKEN)).await;
    assert_eq!((code, &st["disk_full"]), (200, &Value::Bool(false)));
    got.extend(sub.collect(Duration::from_secs(2), |_| false).await);
    let got = stop_and_collect(child, &mut sub, &data, got).await;
    let full = events(&got, "buffer.disk_full");
    let writable = events(&got, "buffer.writable");
    assert_eq!(full.len(), 1, "{full:?}");
    assert_eq!(writable.len(), 1, "{writable:?}");
    assert_eq!(full[0]["severity"], "error");
    assert_eq!(full[0]["details"]["detector"], "disk_full");
    assert!(full[0]["seq"].as_u64() < writable[0]["seq"].as_u64());
    // Polling never stopped: per tag, consecutive samples at most 600 ms apart.
    let all = samples(&got);
    for t in 0..4 {
        let ts: Vec<i64> = all.iter().filter(|s| s["tag"] == format!("t{t}")).map(|s| ns(&s["ts"])).collect();
        assert!(ts.len() > 50);
        let gap = ts.windows(2).map(|w| w[1] - w[0]).max().unwrap();
        assert!(gap < 600_000_000, "tag t{t}: a gap of {} ms in its samples", gap / 1_000_000);
    }
}

/// `gateway.started` says whether the previous run stopped cleanly.
#[tokio::test]
async fn gateway_started_tells_a_kill_9_from_a_sigterm() {
    let Some(broker) = Mosquitto::start() else { return };
    let (sim_port, admin) = (free_port(), free_port());
    let _sim = sim(&counter_station(sim_port, 4)).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), broker.port, sim_port, admin, "");
    let mut sub = Sub::with_id(broker.port, "plant/relais/gw1/event/gateway.started", "started-sub", false).await;
    let mut verdicts: Vec<Value> = Vec::new();
    for sig in [9, 15, 15] {
        let mut child = spawn_relais(&cfg);
        let _reaper = Reaper(child.id());
        // The previous run's event may come again (at-least-once after kill -9): the next new seq.
        let newest = verdicts.last().map_or(0, |e| e["seq"].as_u64().unwrap());
        loop {
            let e = sub.next(Duration::from_secs(10)).await.expect("gateway.started").json();
            if e["seq"].as_u64().unwrap() > newest {
                verdicts.push(e);
                break;
            }
        }
        kill(child.id(), sig);
        let _ = tokio::task::spawn_blocking(move || wait_exit(&mut child, Duration::from_secs(8))).await.unwrap();
    }
    let unclean: Vec<bool> = verdicts.iter().map(|e| e["details"]["unclean_shutdown"].as_bool().unwrap()).collect();
    assert_eq!(unclean, [false, true, false], "{verdicts:?}");
    assert_eq!(verdicts[1]["severity"], "warning");
    assert_eq!(verdicts[1]["details"]["detector"], "unclean_shutdown");
    assert_eq!(verdicts[2]["severity"], "info");
}

/// The lab routes: 404 without `[lab] faults = true` (token or not), 401
/// without the token when on.
#[tokio::test]
async fn lab_routes_are_off_by_default_and_need_the_token() {
    let Some(broker) = Mosquitto::start() else { return };
    let sim_port = free_port();
    let _sim = sim(&counter_station(sim_port, 4)).await;
    for (lab, codes) in [("", [404, 404, 404, 404]), ("[lab]\nfaults = true\n", [401, 401, 200, 200])] {
        let admin = free_port();
        let dir = tempfile::tempdir().unwrap();
        let cfg = write_config(dir.path(), broker.port, sim_port, admin, lab);
        let mut child = spawn_relais(&cfg);
        let _reaper = Reaper(child.id());
        admin_up(admin).await;
        let got = [
            put(admin, "/api/lab/clock", serde_json::json!({"offset_s": 0}), None).await.0,
            put(admin, "/api/lab/disk_full", serde_json::json!({"on": false}), Some("wrong")).await.0,
            put(admin, "/api/lab/clock", serde_json::json!({"offset_s": 0}), Some(TOKEN)).await.0,
            put(admin, "/api/lab/disk_full", serde_json::json!({"on": false}), Some(TOKEN)).await.0,
        ];
        assert_eq!(got, codes, "with {lab:?}");
        if !lab.is_empty() {
            assert_eq!(put(admin, "/api/lab/clock", serde_json::json!({"offset": 1}), Some(TOKEN)).await.0, 400);
            // i64::MIN: its absolute value overflows; refused, never a panic (bad-input pass).
            assert_eq!(put(admin, "/api/lab/clock", serde_json::json!({"offset_s": i64::MIN}), Some(TOKEN)).await.0, 400);
            assert_eq!(put(admin, "/api/lab/clock", serde_json::json!({"offset_s": 0}), Some(TOKEN)).await.0, 200, "still serving");
        }
        kill(child.id(), 15);
        let _ = tokio::task::spawn_blocking(move || wait_exit(&mut child, Duration::from_secs(8))).await.unwrap();
    }
}

/// `host.disk_low` when the buffer's disk has less free space than
/// `disk_low_percent` (99 % here: any test machine's disk is fuller), once,
/// with the numbers; nothing with the check off.
#[tokio::test]
async fn disk_low_is_one_event_with_the_numbers() {
    use relais::config::BufferConfig;
    use std::sync::atomic::Ordering;
    let tb = crate::common::buffer_with(BufferConfig { disk_low_percent: 99, ..Default::default() }, &["down"]);
    tb.buffer.emit_events();
    let log = &tb.ingest.stats.event_log;
    let low = || log.recent().into_iter().filter(|e| &*e.kind == "host.disk_low").collect::<Vec<_>>();
    assert!(crate::common::eventually(Duration::from_secs(8), || !low().is_empty()).await, "no host.disk_low");
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let ev = low();
    assert_eq!(ev.len(), 1, "one event per crossing: {ev:?}");
    assert_eq!(ev[0].details["detector"], "disk_low");
    assert_eq!(ev[0].details["threshold_percent"], 99);
    let (free, total) = (ev[0].details["free_bytes"].as_u64().unwrap(), ev[0].details["total_bytes"].as_u64().unwrap());
    assert!(free < total / 100 * 99 && total > 0);
    assert!(tb.ingest.stats.events.load(Ordering::Relaxed) >= 1);
    // Off: no event.
    let off = crate::common::buffer_with(BufferConfig { disk_low_percent: 0, ..Default::default() }, &["down"]);
    off.buffer.emit_events();
    tokio::time::sleep(Duration::from_millis(4000)).await;
    assert!(off.ingest.stats.event_log.recent().iter().all(|e| !e.kind.starts_with("host.")));
}
