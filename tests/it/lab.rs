//! The fault bench end to end: each shipped scenario played with the real
//! binary (`relais lab run`) against a private Mosquitto; the report must grade
//! every fault as passed, with the expected detector within its bound, no seq
//! missing on the gateway's MQTT stream, and a self-contained HTML page.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::common::Mosquitto;

fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios").join(format!("{name}.toml"))
}

/// Runs `relais lab run` on a shipped scenario; (exit code, report.json, report dir, stdout).
fn lab_run(name: &str, broker: &Mosquitto, dir: &Path) -> (i32, Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_relais"))
        .args(["lab", "run", "--scenario"])
        .arg(scenario(name))
        .arg("--report")
        .arg(dir)
        .args(["--broker", &broker.url()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let text = std::fs::read_to_string(dir.join("report.json"))
        .unwrap_or_else(|e| panic!("no report.json ({e}); stdout:\n{stdout}\nstderr:\n{}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code().unwrap_or(-1), serde_json::from_str(&text).unwrap(), stdout)
}

/// The checks every shipped scenario must pass.
fn check_report(name: &str, code: i32, r: &Value, stdout: &str, dir: &Path) {
    let faults = r["faults"].as_array().unwrap();
    for f in faults {
        assert_eq!(f["pass"], true, "{name}: fault failed: {f:#}\n{stdout}");
        let x = &f["expected"];
        if let Some(d) = x["detector"].as_str() {
            assert_eq!(f["detector"].as_str(), Some(d), "{name}: {f:#}");
            let ttd = f["time_to_detect_ms"].as_i64().unwrap();
            assert!(ttd >= -500, "{name}: detected before the injection: {f:#}");
            if let Some(w) = x["detect_within_ms"].as_i64() {
                assert!(ttd <= w, "{name}: {f:#}");
            }
        }
        if x["detected"] == false {
            assert!(f["detector"].is_null(), "{name}: {f:#}");
        }
        assert!(f["samples_lost"].as_u64().unwrap() <= x["samples_lost"].as_u64().unwrap_or(0), "{name}: {f:#}");
    }
    assert_eq!(code, 0, "{name}: exit code\n{stdout}");
    assert_eq!(r["pass"], true);
    assert_eq!(r["stream"]["missing"], 0, "{name}: seq gaps on MQTT: {:#}", r["stream"]);
    assert!(r["stream"]["samples"].as_u64().unwrap() > 50, "{name}: {:#}", r["stream"]);
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(md.contains(&format!("# Lab report: {name}")) && md.contains("| pass |"), "{md}");
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(html.contains("<svg") && html.contains("class=\"bar pass\""), "no SVG timeline");
    assert!(!html.contains("http://") && !html.contains("https://") && !html.contains("<script"), "the page must be self-contained");
    // The audit: one line per injection and per clearing, in time order.
    let audit = std::fs::read_to_string(dir.join("injections.jsonl")).unwrap();
    let lines: Vec<Value> = audit.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let injected = lines.iter().filter(|l| l["action"] == "inject").count();
    assert_eq!(injected, faults.len(), "{audit}");
    assert!(lines.iter().all(|l| l["result"] == "ok"), "{audit}");
    let t: Vec<u64> = lines.iter().map(|l| l["t_ms"].as_u64().unwrap()).collect();
    assert!(t.windows(2).all(|w| w[0] <= w[1]), "{audit}");
}

fn shipped(name: &str) -> Option<Value> {
    let broker = Mosquitto::start()?;
    let dir = tempfile::tempdir().unwrap();
    let (code, r, stdout) = lab_run(name, &broker, dir.path());
    check_report(name, code, &r, &stdout, dir.path());
    Some(r)
}

#[test]
fn device_faults_scenario() {
    let Some(r) = shipped("device-faults") else { return };
    let by_kind = |k: &str| r["faults"].as_array().unwrap().iter().find(|f| f["kind"] == k).unwrap().clone();
    // Device down within one poll period and the timeout (500 ms + 500 ms).
    assert!(by_kind("dropout")["time_to_detect_ms"].as_i64().unwrap() <= 1500);
    // kill -9: nothing accepted is lost, the chain is back within seconds.
    let k = by_kind("kill");
    assert_eq!(k["samples_lost"], 0);
    assert!(k["time_to_recover_ms"].as_i64().unwrap() < 10_000, "{k:#}");
}

#[test]
fn a_bad_scenario_names_the_fault_and_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let text =
        std::fs::read_to_string(scenario("device-faults")).unwrap().replacen("latency = \"200ms\"", "latency = \"200ms\"\nlatnecy = 1", 1);
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_relais"))
        .args(["lab", "run", "--scenario"])
        .arg(&path)
        .arg("--report")
        .arg(dir.path().join("r"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("bad.toml: fault #2 (slow)") && err.contains("latnecy"), "{err}");
    assert!(!dir.path().join("r").exists(), "nothing is started for a bad scenario");
}
