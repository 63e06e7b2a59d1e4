//! The admin JSON API and its live stream (issue 14): every route refuses a
//! request without the token (401) and answers with it; `/api/tags` shows
//! exactly the values sent over HTTP ingest; `/api/live` streams a committed
//! change (token as query parameter, for `EventSource`); the quarantine and
//! the events are listed; `/api/openapi.json` documents every route.

use std::time::Duration;

use futures::StreamExt;
use relais::app::{Gateway, RunOptions};
use serde_json::Value;

use crate::common::{counter_station, free_port, gateway_config, http_client};
use crate::modbus::sim;

pub const TOKEN: &str = "dash-token-0123456789";

/// A gateway with an HTTP ingest source `lab` (anonymous, JSON), a simulated
/// Modbus device `line` and the admin listener with a token: (gateway,
/// ingest port, admin port, simulator).
pub async fn start(dir: &std::path::Path) -> (Gateway, u16, u16, relais::sim::Sim) {
    let (ingest, admin, sim_port) = (free_port(), free_port(), free_port());
    let the_sim = sim(&counter_station(sim_port, 4)).await;
    std::fs::write(dir.join("admin.token"), format!("{TOKEN}\n")).unwrap();
    let body = format!(
        "[admin]\nlisten = \"127.0.0.1:{admin}\"\ntoken_file = \"admin.token\"\n\
         [[source]]\nname = \"lab\"\ntype = \"http\"\nlisten = \"127.0.0.1:{ingest}\"\nallow_anonymous = true\nformat = \"json\"\n\
         [[device]]\nname = \"line\"\nprotocol = \"modbus-tcp\"\nendpoint = \"127.0.0.1:{sim_port}\"\npoll_interval = \"200ms\"\ntimeout = \"500ms\"\n\
         [[device.tag]]\nname = \"t0\"\ntable = \"holding\"\naddress = 0\nunit = \"m3/h\"\n"
    );
    let gw = Gateway::start(gateway_config(dir, &body), RunOptions::default()).await.unwrap();
    (gw, ingest, admin, the_sim)
}

/// POSTs one JSON object to the `lab` source; the answer's status.
pub async fn post(port: u16, body: &str) -> u16 {
    let r = http_client().post(format!("http://127.0.0.1:{port}/ingest/lab")).body(body.to_string()).send().await.unwrap();
    r.status().as_u16()
}

/// GET `path` on the admin listener: status and body.
pub async fn get(port: u16, path: &str, token: Option<&str>) -> (u16, String) {
    let mut req = http_client().get(format!("http://127.0.0.1:{port}{path}"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap_or_else(|e| panic!("GET {path}: {e}"));
    (r.status().as_u16(), r.text().await.unwrap())
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// The `/api/tags` entry of `name`.
fn tag<'a>(tags: &'a Value, name: &str) -> Option<&'a Value> {
    tags.as_array().unwrap().iter().find(|t| t["name"] == name)
}

#[tokio::test]
async fn every_route_needs_the_token_and_tags_show_what_was_sent() {
    let dir = tempfile::tempdir().unwrap();
    let (gw, ingest, admin, _sim) = start(dir.path()).await;
    // Without the token: 401 on every API route; open: health, the page, the document.
    for path in
        ["/api/status", "/api/devices", "/api/tags", "/api/sinks", "/api/events", "/api/quarantine", "/api/live", "/metrics", "/readyz"]
    {
        assert_eq!(get(admin, path, None).await.0, 401, "{path} without the token");
        assert_eq!(get(admin, path, Some("wrong")).await.0, 401, "{path} with a wrong token");
    }
    assert_eq!(get(admin, "/api/live?token=wrong", None).await.0, 401);
    for path in ["/healthz", "/", "/dashboard/app.js", "/dashboard/style.css", "/api/openapi.json"] {
        assert_eq!(get(admin, path, None).await.0, 200, "{path} is open");
    }
    assert_eq!(get(admin, "/dashboard/nope.js", None).await.0, 404);

    assert_eq!(post(ingest, r#"{"temp": 21.5, "running": true, "count": 7}"#).await, 200);
    assert_eq!(post(ingest, r#"{"temp": 22.25}"#).await, 200);
    let (code, body) = get(admin, "/api/tags?match=lab/*", Some(TOKEN)).await;
    assert_eq!(code, 200, "{body}");
    let tags = json(&body);
    assert_eq!(tags.as_array().unwrap().len(), 3, "only lab's tags: {body}");
    let temp = tag(&tags, "lab/temp").expect("lab/temp");
    assert_eq!((temp["value"].as_f64(), temp["quality"].as_str()), (Some(22.25), Some("good")), "the last value: {body}");
    assert_eq!(tag(&tags, "lab/running").unwrap()["value"], true);
    assert_eq!(tag(&tags, "lab/count").unwrap()["value"], 7);
    assert!(temp["age_s"].as_f64().unwrap() >= 0.0 && temp["reason"].is_null());
    // The device's tag, with its unit; a glob that does not parse is a 400 naming it.
    crate::common::eventually(Duration::from_secs(5), || {
        gw.status.telemetry.devices().iter().any(|d| d.good.load(std::sync::atomic::Ordering::Relaxed) > 0)
    })
    .await;
    let all = json(&get(admin, "/api/tags", Some(TOKEN)).await.1);
    assert_eq!(tag(&all, "line/t0").map(|t| t["unit"].clone()), Some(Value::from("m3/h")), "{all}");
    let (code, body) = get(admin, "/api/tags?match=lab/%5B", Some(TOKEN)).await;
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("lab/["), "{body}");

    // Devices: link state and poll latency.
    let devices = json(&get(admin, "/api/devices", Some(TOKEN)).await.1);
    assert_eq!(devices[0]["name"], "line");
    assert_eq!(devices[0]["link"], "up", "{devices}");
    let latency = devices[0]["poll_latency_ms"].as_f64().expect("poll latency after a poll");
    assert!(latency > 0.0 && latency < 500.0, "{devices}");
    // Sinks: none configured, an empty list.
    assert_eq!(json(&get(admin, "/api/sinks", Some(TOKEN)).await.1), Value::Array(vec![]));

    // The quarantine: a record that is not JSON is counted and listed.
    assert_eq!(post(ingest, "not json at all").await / 100, 4);
    let q = json(&get(admin, "/api/quarantine?limit=5", Some(TOKEN)).await.1);
    assert_eq!(q["total"], 1, "{q}");
    assert_eq!(q["by_reason"][0]["source"], "lab", "{q}");
    assert_eq!(q["recent"][0]["raw"], "not json at all", "{q}");

    // Acknowledging: the token, then the rules engine's answer (no rules here: 404).
    let ack = |token: Option<&str>| {
        let mut r = http_client().post(format!("http://127.0.0.1:{admin}/api/alarms/nope/ack"));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    assert_eq!(ack(None).await.unwrap().status(), 401);
    let r = ack(Some(TOKEN)).await.unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.text().await.unwrap().contains("no_rules"));

    // Events: a list, newest first, `limit` honoured.
    let ev = json(&get(admin, "/api/events?limit=1", Some(TOKEN)).await.1);
    assert!(ev.as_array().unwrap().len() <= 1, "{ev}");
    gw.shutdown().await.unwrap();
}

/// The next SSE message named `name` within `t`.
async fn next_named<S>(events: &mut S, name: &str, t: Duration) -> Value
where
    S: futures::Stream<Item = Result<eventsource_stream::Event, eventsource_stream::EventStreamError<reqwest::Error>>> + Unpin,
{
    let deadline = tokio::time::Instant::now() + t;
    loop {
        let e = tokio::time::timeout_at(deadline, events.next()).await.unwrap_or_else(|_| panic!("no {name:?} message within {t:?}"));
        let e = e.expect("the stream ended").expect("a well-formed message");
        if e.event == name {
            return json(&e.data);
        }
    }
}

#[tokio::test]
async fn live_streams_a_committed_change_coalesced_per_tag() {
    use eventsource_stream::Eventsource;
    let dir = tempfile::tempdir().unwrap();
    let (gw, ingest, admin, _sim) = start(dir.path()).await;
    let url = format!("http://127.0.0.1:{admin}/api/live?match=lab/*&token={TOKEN}");
    let r = http_client().get(url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let mut events = r.bytes_stream().eventsource();
    let hello = next_named(&mut events, "hello", Duration::from_secs(5)).await;
    assert_eq!(hello["coalesce_ms"], 250);
    // Ten changes of one tag in a burst: coalesced, the newest arrives.
    for i in 0..10 {
        assert_eq!(post(ingest, &format!(r#"{{"temp": {i}.5}}"#)).await, 200);
    }
    let mut seen = Vec::new();
    let t0 = tokio::time::Instant::now();
    while seen.last() != Some(&9.5) {
        let batch = next_named(&mut events, "samples", Duration::from_secs(5)).await;
        let arr = batch.as_array().unwrap();
        assert!(arr.iter().all(|s| s["device"] == "lab"), "only lab/*: {batch}");
        let temps: Vec<&Value> = arr.iter().filter(|s| s["tag"] == "temp").collect();
        assert!(temps.len() <= 1, "one entry per tag per message: {batch}");
        seen.extend(temps.iter().map(|s| s["value"].as_f64().unwrap()));
        assert!(t0.elapsed() < Duration::from_secs(5));
    }
    assert!(seen.len() < 10, "coalesced: {seen:?}");
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "in order: {seen:?}");
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn openapi_documents_every_route() {
    let doc: Value = serde_json::from_str(relais::app::admin::openapi::DOCUMENT).expect("openapi.json parses");
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    let routes = relais::app::admin::paths();
    assert!(routes.len() >= 13, "{routes:?}");
    let missing: Vec<&&str> = routes.iter().filter(|r| !paths.contains_key(**r)).collect();
    assert!(missing.is_empty(), "routes missing from openapi.json: {missing:?}");
    let extra: Vec<&String> = paths.keys().filter(|p| !routes.contains(&p.as_str())).collect();
    assert!(extra.is_empty(), "openapi.json paths the router does not serve: {extra:?}");
    // Every $ref points to a component that exists.
    let text = relais::app::admin::openapi::DOCUMENT;
    for r in text.split("\"$ref\": \"#/").skip(1) {
        let path = &r[..r.find('"').unwrap()];
        let target = path.split('/').fold(&doc, |v, k| &v[k]);
        assert!(!target.is_null(), "dangling $ref #/{path}");
    }
}

/// `relais status` and `relais tail` against a running gateway: the table,
/// a sample as it is committed, and the errors when nothing runs or the
/// token is wrong.
#[tokio::test]
async fn relais_status_and_tail_read_the_admin_api() {
    use std::io::BufRead as _;
    let dir = tempfile::tempdir().unwrap();
    let (gw, ingest, admin, _sim) = start(dir.path()).await;
    let cfg = dir.path().join("relais.toml");
    // The same gateway configuration, in a file, for the client commands.
    let text = format!(
        "[gateway]\nid = \"gw\"\ndata_dir = \"{}\"\n[admin]\nlisten = \"127.0.0.1:{admin}\"\ntoken_file = \"admin.token\"\n",
        dir.path().join("data").display()
    );
    std::fs::write(&cfg, text).unwrap();
    let relais = |args: &[&str], env: Option<&str>| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_relais"));
        c.args(args).env_remove("RELAIS_ADMIN_TOKEN");
        if let Some(t) = env {
            c.env("RELAIS_ADMIN_TOKEN", t);
        }
        let out = c.output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).to_string(), String::from_utf8_lossy(&out.stderr).to_string())
    };
    crate::common::eventually(Duration::from_secs(5), || {
        gw.status.telemetry.devices().iter().any(|d| d.good.load(std::sync::atomic::Ordering::Relaxed) > 0)
    })
    .await;
    let cfg_s: &'static str = cfg.to_str().unwrap().to_string().leak();
    let (code, out, err) = tokio::task::spawn_blocking(move || relais(&["status", "--config", cfg_s], None)).await.unwrap();
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("DEVICE") && out.lines().any(|l| l.starts_with("line") && l.contains(" up ")), "{out}");
    // Wrong token, no daemon: exit 1 with what to do.
    let url = format!("http://127.0.0.1:{admin}");
    let (code, _, err) = tokio::task::spawn_blocking(move || relais(&["status", "--url", url.leak()], Some("wrong"))).await.unwrap();
    assert_eq!(code, Some(1));
    assert!(err.contains("refused the token"), "{err}");
    let dead = format!("http://127.0.0.1:{}", free_port());
    let (code, _, err) = tokio::task::spawn_blocking(move || relais(&["status", "--url", dead.leak()], None)).await.unwrap();
    assert_eq!(code, Some(1));
    assert!(err.contains("relais is not running"), "{err}");

    // tail: the committed value, decoded, only for the glob.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_relais"))
        .args(["tail", "lab/*", "--config", cfg_s])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let lines = std::thread::spawn(move || {
        let mut seen = Vec::new();
        for l in std::io::BufReader::new(stdout).lines() {
            let l = l.unwrap();
            let done = l.contains("lab/temp = 42.5  good");
            seen.push(l);
            if done {
                break;
            }
        }
        seen
    });
    tokio::time::sleep(Duration::from_millis(800)).await; // connected
    assert_eq!(post(ingest, r#"{"temp": 42.5}"#).await, 200);
    let t0 = std::time::Instant::now();
    while !lines.is_finished() && t0.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    let seen = lines.join().unwrap();
    assert!(seen.last().is_some_and(|l| l.contains("lab/temp = 42.5  good")), "{seen:?}");
    assert!(seen.iter().all(|l| !l.contains("line/")), "only lab/*: {seen:?}");
    gw.shutdown().await.unwrap();
}
