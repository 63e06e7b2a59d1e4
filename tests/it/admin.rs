//! The admin listener (issue 14): `/metrics` in Prometheus text with
//! counters that move, the bearer token, `/readyz` following the broker and
//! the device, `[admin]` checks in `relais check`, and `docs/metrics.md`
//! naming every metric.

use std::path::{Path, PathBuf};
use std::time::Duration;

use relais::config::Config;

use crate::common::{Mosquitto, counter_station, free_port, http_client, kill, spawn_relais, wait_exit};
use crate::modbus::sim;

const TOKEN: &str = "t0k3n-for-the-admin-test";

fn write_config(dir: &Path, broker_port: u16, sim_port: u16, admin_port: u16) -> PathBuf {
    std::fs::write(dir.join("admin.token"), format!("{TOKEN}\n")).unwrap();
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

[admin]
listen = "127.0.0.1:{admin_port}"
token_file = "admin.token"

[[device]]
name = "line"
protocol = "modbus-tcp"
endpoint = "127.0.0.1:{sim_port}"
poll_interval = "100ms"
timeout = "200ms"
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

/// The daemon, killed and reaped when the test ends, whatever the outcome.
struct Daemon(Option<std::process::Child>);

impl Daemon {
    /// SIGTERM, then its exit code within 5 s.
    async fn stop(mut self) -> Option<i32> {
        let mut child = self.0.take().unwrap();
        kill(child.id(), 15);
        tokio::task::spawn_blocking(move || wait_exit(&mut child, Duration::from_secs(5))).await.unwrap()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// GET `path` on the admin listener, with the token when `token`: status,
/// body, and the `Content-Type` (or, on a 401, the `WWW-Authenticate`) header.
async fn get(port: u16, path: &str, token: Option<&str>) -> (u16, String, Option<String>) {
    let mut req = http_client().get(format!("http://127.0.0.1:{port}{path}"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let status = r.status().as_u16();
    let ctype = r.headers().get("content-type").map(|v| v.to_str().unwrap().to_string());
    let auth = r.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_string());
    let body = r.text().await.unwrap();
    (status, body, if status == 401 { auth } else { ctype })
}

/// Waits until `/healthz` answers (the daemon is up).
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

/// Parses a scrape strictly: every line is a `# HELP`, a `# TYPE`, a sample
/// with a number, or empty; then the crate's parser reads it.
fn parse(text: &str) -> prometheus_parse::Scrape {
    use prometheus_parse::LineInfo;
    for line in text.lines() {
        match LineInfo::parse(line) {
            LineInfo::Empty | LineInfo::Doc { .. } | LineInfo::Type { .. } => {}
            LineInfo::Sample { value, .. } => {
                assert!(value.parse::<f64>().is_ok() || value == "+Inf", "not a number in {line:?}");
            }
            LineInfo::Ignored => panic!("not Prometheus text: {line:?}"),
        }
    }
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap()
}

/// The value of `name` with label `label=value`.
fn value(s: &prometheus_parse::Scrape, name: &str, label: (&str, &str)) -> Option<f64> {
    s.samples.iter().find(|x| x.metric == name && x.labels.get(label.0) == Some(label.1)).and_then(|x| match x.value {
        prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Untyped(v) => Some(v),
        _ => None,
    })
}

/// Polls `/readyz` until its status is `want`; the last body.
async fn ready_becomes(port: u16, want: u16, within: Duration) -> String {
    let t0 = std::time::Instant::now();
    loop {
        let (code, body, _) = get(port, "/readyz", Some(TOKEN)).await;
        if code == want {
            return body;
        }
        assert!(t0.elapsed() < within, "/readyz stayed {code}, not {want}, for {within:?}: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn metrics_need_the_token_parse_as_prometheus_text_and_polls_count() {
    let Some(broker) = Mosquitto::start() else { return };
    let (sim_port, admin_port) = (free_port(), free_port());
    let _sim = sim(&counter_station(sim_port, 10)).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), broker.port, sim_port, admin_port);
    let daemon = Daemon(Some(spawn_relais(&cfg)));
    wait_up(admin_port).await;

    // The token: 401 without it or with a wrong one, with the challenge.
    let (code, _, challenge) = get(admin_port, "/metrics", None).await;
    assert_eq!(code, 401);
    assert_eq!(challenge.as_deref(), Some("Bearer"));
    assert_eq!(get(admin_port, "/metrics", Some("wrong")).await.0, 401);
    assert_eq!(get(admin_port, "/readyz", None).await.0, 401);
    let (code, body, _) = get(admin_port, "/healthz", None).await;
    assert_eq!((code, body.as_str()), (200, "ok\n"));

    ready_becomes(admin_port, 200, Duration::from_secs(10)).await;
    let (code, first, ctype) = get(admin_port, "/metrics", Some(TOKEN)).await;
    assert_eq!(code, 200);
    assert_eq!(ctype.as_deref(), Some("text/plain; version=0.0.4; charset=utf-8"));
    let a = parse(&first);
    let polls_a = value(&a, "relais_device_polls_total", ("device", "line")).expect("poll counter");
    let requests_a = value(&a, "relais_device_requests_total", ("device", "line")).expect("request counter");
    // One request per poll (10 registers in a row): the request counter
    // follows the poll counter (a cycle counts its poll first).
    assert!(requests_a <= polls_a && requests_a >= polls_a - 1.0, "polls {polls_a}, requests {requests_a}");
    assert_eq!(value(&a, "relais_device_up", ("device", "line")), Some(1.0));
    assert_eq!(value(&a, "relais_sink_connected", ("sink", "broker")), Some(1.0));
    let age = value(&a, "relais_device_data_age_seconds", ("device", "line")).expect("data age");
    assert!((0.0..2.0).contains(&age), "data age {age} s with a 100 ms poll");
    let errors: f64 = a
        .samples
        .iter()
        .filter(|x| x.metric == "relais_device_errors_total" && x.labels.get("device") == Some("line"))
        .map(|x| if let prometheus_parse::Value::Counter(v) = x.value { v } else { f64::NAN })
        .sum();
    assert_eq!(errors, 0.0, "{first}");
    assert!(a.docs.contains_key("relais_device_polls_total"), "HELP line");
    // The histograms: buckets and a count.
    let poll_hist = a.samples.iter().find(|s| s.metric == "relais_device_poll_duration_seconds" && s.labels.get("device") == Some("line"));
    match poll_hist.map(|s| &s.value) {
        Some(prometheus_parse::Value::Histogram(b)) => assert!(b.iter().any(|c| c.count > 0.0), "{b:?}"),
        other => panic!("no poll duration histogram: {other:?}\n{first}"),
    }
    assert!(first.contains("relais_sink_ack_latency_seconds_count{sink=\"broker\"}"), "{first}");

    tokio::time::sleep(Duration::from_millis(1000)).await;
    let b = parse(&get(admin_port, "/metrics", Some(TOKEN)).await.1);
    let polls_b = value(&b, "relais_device_polls_total", ("device", "line")).unwrap();
    // 1 s at 100 ms: about 10 more polls (at least 5 on a loaded machine).
    assert!(polls_b >= polls_a + 5.0, "polls {polls_a} then {polls_b}");
    let acked = |s: &prometheus_parse::Scrape| value(s, "relais_sink_acked_total", ("sink", "broker")).unwrap();
    assert!(acked(&b) > acked(&a), "the sink's acknowledged count moves");

    // /api/status: the token, then one snapshot.
    assert_eq!(get(admin_port, "/api/status", None).await.0, 401);
    let (code, body, _) = get(admin_port, "/api/status", Some(TOKEN)).await;
    assert_eq!(code, 200);
    let j: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(j["devices"][0]["name"], "line", "{body}");
    assert_eq!(j["devices"][0]["link"], "up", "{body}");
    assert!(j["devices"][0]["polls"].as_u64().unwrap() >= polls_b as u64, "{body}");
    assert_eq!(j["sinks"][0]["name"], "broker", "{body}");
    assert_eq!(j["sinks"][0]["connected"], true, "{body}");
    assert!(j["sinks"][0]["cursor"].as_u64().unwrap() > 0, "{body}");
    assert!(j["buffer"]["last_seq"].as_u64().unwrap() >= j["sinks"][0]["cursor"].as_u64().unwrap(), "{body}");
    let events = j["events"].as_array().unwrap();
    assert!(events.iter().any(|e| e["kind"] == "sink.connected" && e["name"] == "broker"), "{body}");
    let connected = value(&b, "relais_events_total", ("kind", "sink.connected"));
    assert_eq!(connected, Some(1.0), "one connection, one event");

    assert_eq!(daemon.stop().await, Some(0));
    // The token is a secret: not in the data folder's logs nor anywhere we print.
    assert!(!first.contains(TOKEN));
}

#[tokio::test]
async fn readyz_follows_the_broker_and_the_device() {
    let Some(mut broker) = Mosquitto::start() else { return };
    let (sim_port, admin_port) = (free_port(), free_port());
    let sim_cfg = counter_station(sim_port, 10);
    let the_sim = sim(&sim_cfg).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), broker.port, sim_port, admin_port);
    let daemon = Daemon(Some(spawn_relais(&cfg)));
    wait_up(admin_port).await;
    let body = ready_becomes(admin_port, 200, Duration::from_secs(10)).await;
    let j: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(j["ready"], true, "{body}");
    assert_eq!(j["checks"].as_array().unwrap().len(), 2, "one device, one sink: {body}");

    broker.stop();
    let body = ready_becomes(admin_port, 503, Duration::from_secs(10)).await;
    let j: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(j["ready"], false);
    let why = j["not_ready"].as_array().unwrap();
    assert_eq!(why.len(), 1, "only the sink: {body}");
    assert!(why[0].as_str().unwrap().starts_with("sink broker: not connected"), "{body}");
    broker.restart();
    ready_becomes(admin_port, 200, Duration::from_secs(15)).await;

    drop(the_sim); // the device is switched off
    let body = ready_becomes(admin_port, 503, Duration::from_secs(10)).await;
    let j: serde_json::Value = serde_json::from_str(&body).unwrap();
    let why = j["not_ready"].as_array().unwrap();
    assert_eq!(why.len(), 1, "only the device: {body}");
    assert!(why[0].as_str().unwrap().starts_with("device line: last good sample "), "{body}");
    let _back = restart_sim(&sim_cfg).await;
    ready_becomes(admin_port, 200, Duration::from_secs(15)).await;

    assert_eq!(daemon.stop().await, Some(0));
}

/// `auth = "none"` on loopback: no token needed; a device that never
/// answered keeps `/readyz` at 503 with the reason.
#[tokio::test]
async fn auth_none_on_loopback_and_a_dead_device_is_not_ready() {
    let dir = tempfile::tempdir().unwrap();
    let (dead, admin_port) = (free_port(), free_port());
    let cfg = crate::common::gateway_config(
        dir.path(),
        &format!(
            "[admin]\nlisten = \"127.0.0.1:{admin_port}\"\nauth = \"none\"\n\
             [[device]]\nname = \"ghost\"\nprotocol = \"modbus-tcp\"\nendpoint = \"127.0.0.1:{dead}\"\npoll_interval = \"100ms\"\ntimeout = \"100ms\"\n\
             [[device.tag]]\nname = \"x\"\ntable = \"holding\"\naddress = 0\n"
        ),
    );
    let gw = relais::app::Gateway::start(cfg, Default::default()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (code, text, _) = get(admin_port, "/metrics", None).await;
    assert_eq!(code, 200);
    let s = parse(&text);
    assert!(value(&s, "relais_device_polls_total", ("device", "ghost")).unwrap() >= 2.0, "{text}");
    let comm = s.samples.iter().find(|x| x.metric == "relais_device_errors_total" && x.labels.get("class") == Some("comm"));
    assert!(matches!(comm.map(|c| &c.value), Some(prometheus_parse::Value::Counter(v)) if *v >= 1.0), "{text}");
    assert_eq!(value(&s, "relais_device_up", ("device", "ghost")), Some(0.0));
    assert!(!text.contains("relais_device_data_age_seconds{"), "no data age before a good sample: {text}");
    let (code, body, _) = get(admin_port, "/readyz", None).await;
    assert_eq!(code, 503);
    let j: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(j["not_ready"][0], "device ghost: no good sample yet", "{body}");
    gw.shutdown().await.unwrap();
}

/// The simulator again on the same port (the old listener may take a moment to close).
async fn restart_sim(toml: &str) -> relais::sim::Sim {
    for _ in 0..50 {
        let cfg = relais::sim::SimConfig::parse(toml, "sim.toml", Path::new(".")).unwrap();
        if let Ok(s) = relais::sim::Sim::start(cfg).await {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the simulator could not listen again within 5 s");
}

fn check(admin: &str) -> Result<Config, String> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tok"), "abc\n").unwrap();
    let text = format!(
        "[gateway]\nid = \"gw\"\n[admin]\n{admin}\n\
         [[source]]\nname = \"in\"\ntype = \"http\"\nlisten = \"127.0.0.1:8080\"\nallow_anonymous = true\nformat = \"json\"\n"
    );
    Config::parse(&text, "relais.toml", dir.path()).map_err(|e| e.to_string())
}

#[test]
fn admin_config_is_checked() {
    // Defaults: loopback port 9780, a token required.
    let c = check("token_file = \"tok\"").unwrap().admin.unwrap();
    assert_eq!(c.listen.to_string(), "127.0.0.1:9780");
    assert_eq!(c.ready_periods, 3);
    assert!(matches!(&c.auth, relais::config::AdminAuth::Token(t) if t.expose() == "abc"));
    assert!(!format!("{c:?}").contains("abc"), "the token never shows in Debug");
    // No token: refused, with what to do.
    let e = check("").unwrap_err();
    assert!(e.contains("relais.toml:") && e.contains("admin / auth") && e.contains("token_file"), "{e}");
    // Open without a token beyond loopback: refused.
    let e = check("listen = \"0.0.0.0:9780\"\nauth = \"none\"").unwrap_err();
    assert!(e.contains("admin / listen") && e.contains("anyone on the network"), "{e}");
    // Open on loopback, said explicitly: fine.
    assert_eq!(check("auth = \"none\"").unwrap().admin.unwrap().auth, relais::config::AdminAuth::None);
    // Same port as the HTTP ingest: a clash.
    let e = check("listen = \"127.0.0.1:8080\"\nauth = \"none\"").unwrap_err();
    assert!(e.contains("admin / listen"), "{e}");
    // Unknown keys and bad values, all reported.
    let e = check("auth = \"basic\"\nready_periods = 0\nlisen = \"x\"").unwrap_err();
    assert!(e.contains("basic") && e.contains("ready_periods") && e.contains("lisen"), "{e}");
    // No [admin]: no listener.
    let dir = tempfile::tempdir().unwrap();
    assert!(Config::parse("[gateway]\nid = \"gw\"\n", "r.toml", dir.path()).unwrap().admin.is_none());
}

/// `relais check` names the listener and never prints the token; a listener
/// open beyond loopback without a token is an error (exit 2).
#[test]
fn relais_check_shows_the_listener() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tok"), "s3cret-admin-token\n").unwrap();
    let run = |admin: &str| {
        let p = dir.path().join("relais.toml");
        std::fs::write(&p, format!("[gateway]\nid = \"gw\"\n[admin]\n{admin}\n")).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_relais")).args(["check", "--config"]).arg(&p).output().unwrap();
        (out.status.code(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    };
    let (code, text) = run("token_file = \"tok\"");
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains(
            "admin listener http://127.0.0.1:9780/ (bearer token): dashboard /, /metrics, /healthz, /readyz, /api/… (docs/api.md)"
        ),
        "{text}"
    );
    assert!(!text.contains("s3cret"), "the token is never printed: {text}");
    let (code, text) = run("listen = \"0.0.0.0:9780\"\nauth = \"none\"");
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("admin / listen"), "{text}");
}

#[test]
fn every_metric_is_documented() {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/metrics.md")).unwrap();
    let missing: Vec<&str> = relais::app::admin::metric_names().filter(|n| !doc.contains(&format!("`{n}`"))).collect();
    assert!(missing.is_empty(), "not in docs/metrics.md: {missing:?}");
}
