//! Turns on a shared line (issue 9 item 10): units that stop answering must
//! not take the turns of the units that answer. The healthy unit's rate is
//! counted where users see it, on MQTT, through the whole gateway.

use std::path::Path;
use std::time::Duration;

use relais::app::{Gateway, RunOptions};
use relais::config::Config;
use relais::sim::config::Faults;

use crate::common::{Mosquitto, Sub, free_port};
use crate::modbus::sim;

/// Poll interval of the healthy unit: 50 samples/s.
const HEALTHY_MS: u64 = 20;

fn station(name: &str, unit: u8, line: &str) -> String {
    format!(
        "[[station]]\nname = \"{name}\"\n{line}\nunit_id = {unit}\nlockstep = true\n[[station.tag]]\nname = \"v\"\ntable = \"holding\"\naddress = 0\nsignal = {{ kind = \"constant\", value = {unit} }}\n"
    )
}

fn device(name: &str, unit: u8, line: &str, interval_ms: u64) -> String {
    format!(
        "[[device]]\nname = \"{name}\"\n{line}\nunit_id = {unit}\npoll_interval = \"{interval_ms}ms\"\ntimeout = \"300ms\"\n[[device.tag]]\nname = \"v\"\ntable = \"holding\"\naddress = 0\n"
    )
}

/// A gateway polling `devs` into `dir`, publishing every sample (QoS 0) on
/// `t/{device}/{tag}` of `broker`.
fn gateway(dir: &Path, devs: &str, broker: &Mosquitto) -> Config {
    let text = format!(
        "[gateway]\nid = \"gw\"\ndata_dir = \"{}\"\nstatus_interval = \"0s\"\nhealth_interval = \"0s\"\n{devs}\
         [[sink]]\nname = \"b\"\ntype = \"mqtt\"\nurl = \"{}\"\ntopic = \"t/{{device}}/{{tag}}\"\nqos = 0\n",
        dir.join("data").display(),
        broker.url()
    );
    Config::parse(&text, "sched.toml", Path::new(".")).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// Samples per second of `good/v` on MQTT over `window`.
async fn rate(sub: &mut Sub, window: Duration) -> f64 {
    while sub.next(Duration::from_millis(1)).await.is_some() {}
    let t0 = tokio::time::Instant::now();
    let mut n = 0u64;
    while t0.elapsed() < window {
        if let Some(m) = sub.next(window.saturating_sub(t0.elapsed())).await
            && m.json()["quality"] == "good"
        {
            n += 1;
        }
    }
    n as f64 / window.as_secs_f64()
}

/// One healthy unit polled every 20 ms and three units behind the same line
/// that fall silent; returns the healthy unit's rate before and after, on
/// MQTT.
async fn healthy_rate_beside_three_dead_units(sim_line: &str, dev_line: &str) -> Option<(f64, f64)> {
    let broker = Mosquitto::start()?;
    let mut stations = String::new();
    let mut devs = String::new();
    for (name, unit) in [("good", 1u8), ("bad2", 2), ("bad3", 3), ("bad4", 4)] {
        stations += &station(name, unit, sim_line);
        devs += &device(name, unit, dev_line, if unit == 1 { HEALTHY_MS } else { 100 });
    }
    let s = sim(&stations).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = gateway(dir.path(), &devs, &broker);
    let mut sub = Sub::new(broker.port, "t/good/v").await;
    let mut events = Sub::new(broker.port, "t/relais/gw/event/device.degraded").await;
    let gw = Gateway::start(cfg, RunOptions::default()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = rate(&mut sub, Duration::from_secs(4)).await;
    for name in ["bad2", "bad3", "bad4"] {
        s.station(name).unwrap().set_faults(Faults { silent: true, ..Default::default() });
    }
    // Three silent cycles each degrade them (one timeout per cycle); the
    // steady state is measured once all three are degraded.
    let t0 = tokio::time::Instant::now();
    let got = events.collect(Duration::from_secs(15), |m| m.len() >= 3).await;
    assert_eq!(got.len(), 3, "the three dead units are degraded (device.degraded events on MQTT): {got:?}");
    eprintln!("three dead units degraded {:?} after they fell silent", t0.elapsed());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rate(&mut sub, Duration::from_secs(10)).await;
    let status = gw.status.render(0.0);
    assert!(status.contains("devices 1/4 up"), "{status}");
    drop(gw);
    Some((before, after))
}

/// The healthy unit keeps ≥ 95 % of its poll rate (of what this machine
/// gives it alone, when a loaded machine gives it less than its nominal rate).
fn check_rates(before: f64, after: f64) {
    let nominal = 1000.0 / HEALTHY_MS as f64;
    assert!(before >= 0.8 * nominal, "healthy unit alone: {before:.1}/s of {nominal}/s (machine too loaded?)");
    let want = 0.95 * nominal.min(before);
    assert!(after >= want, "healthy unit beside three dead units: {after:.1}/s, want ≥ {want:.1} (alone: {before:.1}/s)");
}

#[tokio::test]
async fn tcp_three_dead_units_leave_the_healthy_unit_its_poll_rate() {
    let port = free_port();
    let Some((before, after)) = healthy_rate_beside_three_dead_units(
        &format!("listen = \"127.0.0.1:{port}\""),
        &format!("protocol = \"modbus-tcp\"\nendpoint = \"127.0.0.1:{port}\""),
    )
    .await
    else {
        return;
    };
    eprintln!("modbus-tcp: healthy unit {before:.1} samples/s alone, {after:.1} samples/s beside three dead units");
    check_rates(before, after);
}

#[tokio::test]
async fn rtu_three_dead_units_leave_the_healthy_unit_its_poll_rate() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("rtu0");
    let Some((before, after)) = healthy_rate_beside_three_dead_units(
        &format!("serial = \"{}\"", link.display()),
        &format!("protocol = \"modbus-rtu\"\nport = \"{}\"\nbaud_rate = 115200", link.display()),
    )
    .await
    else {
        return;
    };
    eprintln!("modbus-rtu: healthy unit {before:.1} samples/s alone, {after:.1} samples/s beside three dead units");
    check_rates(before, after);
}

/// `poll_phase = "aligned"`: three devices polled every 500 ms take their
/// samples together, right after the round instants of the UTC clock
/// (…:00.000, …:00.500). With the default (`spread`) these three names get
/// start offsets 148, 302 and 420 ms apart in the interval (FNV-1a of the
/// name), so the same assertions fail.
#[tokio::test]
async fn aligned_devices_poll_at_round_instants_of_the_interval() {
    let Some(broker) = Mosquitto::start() else { return };
    let port = free_port();
    let (sim_line, dev_line) =
        (format!("listen = \"127.0.0.1:{port}\""), format!("protocol = \"modbus-tcp\"\nendpoint = \"127.0.0.1:{port}\""));
    let (mut stations, mut devs) = (String::new(), String::new());
    for (name, unit) in [("pump", 1u8), ("oven", 2), ("capper", 3)] {
        stations += &station(name, unit, &sim_line);
        devs += &device(name, unit, &dev_line, 500).replace("timeout =", "poll_phase = \"aligned\"\ntimeout =");
    }
    let s = sim(&stations).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = gateway(dir.path(), &devs, &broker);
    let mut sub = Sub::new(broker.port, "t/+/v").await;
    let gw = Gateway::start(cfg, RunOptions::default()).await.unwrap();
    let got = sub.collect(Duration::from_secs(15), |m| m.len() >= 18).await;
    drop(gw);
    drop(s);
    assert!(got.len() >= 18, "18 samples in 15 s: {}", got.len());
    // Acquisition times (ms since the epoch) of each 500 ms round, per device.
    let mut rounds: std::collections::BTreeMap<i64, Vec<(String, i64)>> = Default::default();
    for m in &got {
        let v = m.json();
        let ts = v["recv_ts"].as_str().unwrap_or_else(|| panic!("recv_ts in {v}"));
        let ms = chrono::DateTime::parse_from_rfc3339(ts).unwrap().timestamp_millis();
        rounds.entry(ms.div_euclid(500)).or_default().push((m.topic.clone(), ms));
    }
    let full: Vec<_> = rounds.iter().filter(|(_, r)| r.len() == 3).collect();
    assert!(full.len() >= 4, "rounds with all three devices: {rounds:?}");
    for (round, r) in full {
        let (lo, hi) = (r.iter().map(|x| x.1).min().unwrap(), r.iter().map(|x| x.1).max().unwrap());
        // The polls start on the boundary and answer within a few ms here
        // (more on a loaded machine), never a quarter of the interval apart.
        assert!(hi - lo < 100, "one round's polls {} ms apart: {r:?}", hi - lo);
        assert!(lo - round * 500 < 150, "round starts {} ms after its 500 ms boundary: {r:?}", lo - round * 500);
    }
}
