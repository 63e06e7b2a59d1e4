//! Configuration reload (issue 14) against the real daemon, the built-in
//! simulator (three Modbus TCP stations, one per device) and Mosquitto:
//! `POST /api/reload` restarts only the changed device (its station sees
//! one more connection, the others none) and starts an added sink, with no
//! `seq` gap in what either sink delivers; an invalid file is refused with
//! every error and a change of `[gateway] id` with "restart", the old
//! configuration still running; SIGHUP does the same as the API; `relais
//! reload` applies a change and fails clearly without a daemon.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use serde_json::Value;

use crate::common::{Mosquitto, Sub, assert_complete_in_order, free_port, http_client, kill, seqs, spawn_relais};
use crate::modbus::sim;

const TOKEN: &str = "r3load-t0ken";

/// Ports of the broker, the three stations and the admin listener.
#[derive(Clone, Copy)]
struct Ports {
    broker: u16,
    stations: [u16; 3],
    admin: u16,
}

/// Three stations `s0`..`s2`, each with two counting registers.
fn stations(p: &Ports) -> String {
    let mut s = String::new();
    for (i, port) in p.stations.iter().enumerate() {
        s += &format!("[[station]]\nname = \"s{i}\"\nlisten = \"127.0.0.1:{port}\"\ntick = \"10ms\"\n");
        for t in 0..2 {
            s += &format!(
                "[[station.tag]]\nname = \"t{t}\"\ntable = \"holding\"\naddress = {t}\nsignal = {{ kind = \"counter\", start = 0, step = 1, wrap = 60000 }}\n"
            );
        }
    }
    s
}

/// A sink `name` publishing under `name/…` (its events under `name/relais/gw1/event/…`).
fn sink(name: &str, broker: u16) -> String {
    format!(
        "[[sink]]\nname = \"{name}\"\ntype = \"mqtt\"\nurl = \"mqtt://127.0.0.1:{broker}\"\ntopic = \"{name}/{{device}}/{{tag}}\"\n\
         status_topic = \"{name}/relais/gw1/status\"\nformat = \"json\"\nreconnect_max = \"1s\"\n"
    )
}

/// The gateway configuration: devices `d0`..`d2` (d1 polled every `d1_poll`),
/// the sinks named, and `extra` appended.
fn config(dir: &Path, p: &Ports, id: &str, d1_poll: &str, sinks: &[&str], extra: &str) -> PathBuf {
    config_n(dir, p, (id, 3), d1_poll, sinks, extra)
}

/// [`config`] with the first `n` devices only.
fn config_n(dir: &Path, p: &Ports, (id, n): (&str, usize), d1_poll: &str, sinks: &[&str], extra: &str) -> PathBuf {
    std::fs::write(dir.join("admin.token"), format!("{TOKEN}\n")).unwrap();
    let mut text = format!(
        "[gateway]\nid = \"{id}\"\ndata_dir = \"{}\"\nstatus_interval = \"0s\"\nhealth_interval = \"0s\"\n\n\
         [admin]\nlisten = \"127.0.0.1:{}\"\ntoken_file = \"admin.token\"\n\n",
        dir.join("data").display(),
        p.admin
    );
    for (i, port) in p.stations.iter().enumerate().take(n) {
        let poll = if i == 1 { d1_poll } else { "100ms" };
        text += &format!(
            "[[device]]\nname = \"d{i}\"\nprotocol = \"modbus-tcp\"\nendpoint = \"127.0.0.1:{port}\"\npoll_interval = \"{poll}\"\ntimeout = \"500ms\"\n"
        );
        for t in 0..2 {
            text += &format!("[[device.tag]]\nname = \"t{t}\"\ntable = \"holding\"\naddress = {t}\n");
        }
    }
    for s in sinks {
        text += &sink(s, p.broker);
    }
    text += extra;
    let path = dir.join("relais.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The daemon, killed and reaped when the test ends.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn wait_up(port: u16) {
    for _ in 0..200 {
        if let Ok(r) = http_client().get(format!("http://127.0.0.1:{port}/healthz")).send().await
            && r.status() == 200
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the admin listener did not answer within 10 s");
}

/// `POST /api/reload` with the token: status and JSON body.
async fn post_reload(port: u16) -> (u16, Value) {
    let r = http_client().post(format!("http://127.0.0.1:{port}/api/reload")).bearer_auth(TOKEN).send().await.unwrap();
    let code = r.status().as_u16();
    (code, r.json().await.unwrap())
}

/// `GET /api/status`.
async fn status(port: u16) -> Value {
    http_client().get(format!("http://127.0.0.1:{port}/api/status")).bearer_auth(TOKEN).send().await.unwrap().json().await.unwrap()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().unwrap_or_else(|| panic!("not a list: {v}")).iter().map(|s| s.as_str().unwrap().to_string()).collect()
}

/// The simulator's accepted connections per station.
fn connections(s: &relais::sim::Sim) -> Vec<u64> {
    (0..3).map(|i| s.station(&format!("s{i}")).unwrap().connections()).collect()
}

/// Data samples of `d`: `{seq}` of messages on `prefix/d/…`.
fn samples_of(msgs: &[crate::common::Msg], prefix: &str, device: &str) -> usize {
    msgs.iter().filter(|m| m.topic.starts_with(&format!("{prefix}/{device}/"))).count()
}

/// Waits until every seq from the first `sub` received up to the buffer's
/// last one reached it; asserts there is no gap (data and events share the
/// numbering, which starts at a clock-derived value, not 1).
async fn assert_no_gap(sub: &mut Sub, got: &mut Vec<crate::common::Msg>, admin: u16, what: &str) -> u64 {
    let last = status(admin).await["buffer"]["last_seq"].as_u64().unwrap();
    if got.is_empty() {
        got.extend(sub.collect(Duration::from_secs(10), |m| !seqs(m).is_empty()).await);
    }
    let first = *seqs(got).iter().min().unwrap_or_else(|| panic!("{what}: nothing received"));
    assert!(first <= last && last - first < 1_000_000, "{what}: seq {first}..={last}");
    let have: std::collections::HashSet<u64> = seqs(got).into_iter().collect();
    let want: Vec<u64> = (first..=last).filter(|s| !have.contains(s)).collect();
    got.extend(sub.until_seqs(Duration::from_secs(15), want, |_| true).await);
    let mut s = seqs(got);
    s.retain(|x| *x <= last);
    eprintln!("{what}: {} records, seq {first}..={last}", s.len());
    assert_complete_in_order(&s, first, last);
    last
}

#[tokio::test]
async fn a_changed_device_restarts_alone_an_added_sink_gets_everything_and_bad_files_change_nothing() {
    let Some(broker) = Mosquitto::start() else { return };
    let p = Ports { broker: broker.port, stations: [free_port(), free_port(), free_port()], admin: free_port() };
    let simulator = sim(&stations(&p)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut sub_a = Sub::new(p.broker, "a/#").await;
    let mut sub_b = Sub::new(p.broker, "b/#").await;
    let cfg = config(dir.path(), &p, "gw1", "100ms", &["a"], "");
    let _daemon = Daemon(spawn_relais(&cfg));
    wait_up(p.admin).await;
    let mut got_a = sub_a.collect(Duration::from_secs(10), |m| (0..3).all(|d| samples_of(m, "a", &format!("d{d}")) >= 10)).await;
    assert!((0..3).all(|d| samples_of(&got_a, "a", &format!("d{d}")) >= 10), "samples of every device before the reload");
    let before = connections(&simulator);
    assert_eq!(before, vec![1, 1, 1], "one connection per device");

    // d1 polled every 200 ms instead of 100 ms, sink b added, while samples flow.
    config(dir.path(), &p, "gw1", "200ms", &["a", "b"], "");
    let (code, body) = post_reload(p.admin).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(strings(&body["changed"]), vec![r#"device "d1""#]);
    assert_eq!(strings(&body["added"]), vec![r#"sink "b""#]);
    assert!(strings(&body["removed"]).is_empty() && strings(&body["restarted_along"]).is_empty(), "{body}");
    assert_eq!(body["unchanged"], 3, "d0, d2 and sink a: {body}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(connections(&simulator), vec![before[0], before[1] + 1, before[2]], "only d1 reconnected");

    // Sink a kept its connection; both sinks deliver every record, in order.
    let st = status(p.admin).await;
    let a = st["sinks"].as_array().unwrap().iter().find(|s| s["name"] == "a").unwrap().clone();
    assert_eq!(a["connects"], 1, "sink a was not restarted: {a}");
    assert!(st["events"].as_array().unwrap().iter().any(|e| e["kind"] == "config.reloaded"), "event config.reloaded");
    let mut got_b = Vec::new();
    let last = assert_no_gap(&mut sub_a, &mut got_a, p.admin, "sink a").await;
    assert_no_gap(&mut sub_b, &mut got_b, p.admin, "sink b (added: everything retained)").await;
    assert!((0..3).all(|d| samples_of(&got_b, "b", &format!("d{d}")) > 0), "the new sink gets every device's data");

    // An invalid file: 422 with every error; the old configuration runs on.
    let bad = config(dir.path(), &p, "gw1", "fast", &["a", "b"], "[[sink]]\nname = \"c\"\ntype = \"mqtt\"\n");
    let (code, body) = post_reload(p.admin).await;
    assert_eq!(code, 422, "{body}");
    let errors = body["errors"].as_array().unwrap();
    assert!(errors.len() >= 2, "every error: {body}");
    let text: Vec<&str> = errors.iter().map(|e| e["text"].as_str().unwrap()).collect();
    assert!(text.iter().any(|t| t.contains("poll_interval") && t.contains(r#"device "d1""#)), "{text:?}");
    assert!(text.iter().any(|t| t.contains(r#"sink "c""#) || t.contains("sink #3")), "{text:?}");
    assert!(errors.iter().all(|e| e["line"].as_u64().unwrap() > 0 && e["file"] == bad.display().to_string()), "{body}");

    // A new gateway id: 409, nothing applied.
    config(dir.path(), &p, "gw2", "100ms", &["a"], "");
    let (code, body) = post_reload(p.admin).await;
    assert_eq!(code, 409, "{body}");
    assert!(strings(&body["errors"]).iter().any(|e| e.contains("[gateway] id") && e.contains("restart")), "{body}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(connections(&simulator), vec![before[0], before[1] + 1, before[2]], "refused reloads restart nothing");
    let st = status(p.admin).await;
    assert!(st["sinks"].as_array().unwrap().iter().any(|s| s["name"] == "b"), "sink b still runs: {st}");
    assert!(st["events"].as_array().unwrap().iter().any(|e| e["kind"] == "config.reload_refused"), "event config.reload_refused");
    let after = st["buffer"]["last_seq"].as_u64().unwrap();
    assert!(after > last + 20, "samples still flow: last_seq {last} → {after}");

    // Device d2 and sink b removed: they stop and leave the status; the rest runs on untouched.
    config_n(dir.path(), &p, ("gw1", 2), "200ms", &["a"], "");
    let (code, body) = post_reload(p.admin).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(strings(&body["removed"]), vec![r#"device "d2""#, r#"sink "b""#]);
    assert!(strings(&body["changed"]).is_empty() && strings(&body["added"]).is_empty(), "{body}");
    let st = status(p.admin).await;
    let names = |k: &str| -> Vec<String> {
        let mut v: Vec<String> = st[k].as_array().unwrap().iter().map(|x| x["name"].as_str().unwrap().to_string()).collect();
        v.sort();
        v
    };
    assert_eq!(names("devices"), vec!["d0", "d1"]);
    assert_eq!(names("sinks"), vec!["a"]);
    let n = samples_of(&got_a, "a", "d0");
    got_a.extend(sub_a.collect(Duration::from_secs(5), |m| samples_of(m, "a", "d0") >= 10).await);
    assert!(samples_of(&got_a, "a", "d0") >= n + 10, "d0 still delivered by sink a");
    let now = connections(&simulator);
    assert_eq!(&now[..2], &[before[0], before[1] + 1], "d0 and d1 kept their connections");
}

#[tokio::test]
async fn sighup_reloads_like_the_api() {
    let Some(broker) = Mosquitto::start() else { return };
    let p = Ports { broker: broker.port, stations: [free_port(), free_port(), free_port()], admin: free_port() };
    let simulator = sim(&stations(&p)).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &p, "gw1", "100ms", &["a"], "");
    let daemon = Daemon(spawn_relais(&cfg));
    wait_up(p.admin).await;
    assert!(crate::common::eventually(Duration::from_secs(5), || connections(&simulator) == vec![1, 1, 1]).await);
    config(dir.path(), &p, "gw1", "300ms", &["a"], "");
    kill(daemon.0.id(), 1);
    assert!(
        crate::common::eventually(Duration::from_secs(10), || connections(&simulator) == vec![1, 2, 1]).await,
        "SIGHUP restarted d1 alone: {:?}",
        connections(&simulator)
    );
    let st = status(p.admin).await;
    let ev = st["events"].as_array().unwrap().iter().find(|e| e["kind"] == "config.reloaded").cloned();
    let ev = ev.unwrap_or_else(|| panic!("no config.reloaded event: {st}"));
    assert!(ev["message"].as_str().unwrap().contains("(SIGHUP)"), "{ev}");
    // An invalid file on SIGHUP: logged and refused, the daemon runs on.
    std::fs::write(&cfg, "[gateway]\nid = 3\n").unwrap();
    kill(daemon.0.id(), 1);
    let refused = crate::common::eventually(Duration::from_secs(10), || {
        let st = futures_blocking_status(p.admin);
        st["events"].as_array().is_some_and(|v| v.iter().any(|e| e["kind"] == "config.reload_refused"))
    })
    .await;
    assert!(refused, "config.reload_refused after a bad file on SIGHUP");
    assert_eq!(http_client().get(format!("http://127.0.0.1:{}/healthz", p.admin)).send().await.unwrap().status(), 200);
}

/// `GET /api/status` from a synchronous closure (a blocking client on its own thread).
fn futures_blocking_status(port: u16) -> Value {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(status(port))
    })
    .join()
    .unwrap()
}

/// `relais reload --config cfg`: exit code, stdout, stderr.
async fn cli_reload(cfg: &Path) -> (Option<i32>, String, String) {
    let cfg = cfg.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let out = Command::new(env!("CARGO_BIN_EXE_relais")).args(["reload", "--config"]).arg(&cfg).output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).to_string(), String::from_utf8_lossy(&out.stderr).to_string())
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn relais_reload_applies_a_change_and_fails_clearly_without_a_daemon_or_with_errors() {
    let Some(broker) = Mosquitto::start() else { return };
    let p = Ports { broker: broker.port, stations: [free_port(), free_port(), free_port()], admin: free_port() };
    let simulator = sim(&stations(&p)).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &p, "gw1", "100ms", &["a"], "");

    let (code, _, err) = cli_reload(&cfg).await;
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains(&format!("no relais daemon answers on http://127.0.0.1:{}/", p.admin)), "{err}");

    let _daemon = Daemon(spawn_relais(&cfg));
    wait_up(p.admin).await;
    assert!(crate::common::eventually(Duration::from_secs(5), || connections(&simulator) == vec![1, 1, 1]).await);
    config(dir.path(), &p, "gw1", "250ms", &["a"], "");
    let (code, out, err) = cli_reload(&cfg).await;
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("reloaded") && out.contains(r#"changed (restarted): device "d1""#), "{out}");
    assert!(crate::common::eventually(Duration::from_secs(5), || connections(&simulator) == vec![1, 2, 1]).await);

    // Errors elsewhere in the file: the daemon's errors, printed, exit 2.
    config(dir.path(), &p, "gw1", "soon", &["a"], "");
    let (code, _, err) = cli_reload(&cfg).await;
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("poll_interval") && err.contains("the daemon keeps its running configuration"), "{err}");

    // A token the daemon does not have.
    config(dir.path(), &p, "gw1", "250ms", &["a"], "");
    std::fs::write(dir.path().join("admin.token"), "another-token\n").unwrap();
    let (code, _, err) = cli_reload(&cfg).await;
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("refused the token (401)"), "{err}");
}
