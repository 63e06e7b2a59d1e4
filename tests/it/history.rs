//! Local history and rollups (issue 14): the daemon fed known samples over
//! HTTP ingest, then `relais query` (raw, minute and hour tables; by tag,
//! device and quality) checked against the counts, min, max, mean and last
//! this test computes from what it sent; the admin API returns the same rows;
//! a restart keeps history and counts nothing twice; raw samples and rollups
//! are pruned by their own windows; bad arguments give clear errors.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::common::{free_port, http_client, kill, spawn_relais, wait_exit};

const TOKEN: &str = "history-test-token";
const MIN: i64 = 60;

/// The daemon, killed when the test ends whatever the outcome.
struct Daemon(Option<std::process::Child>);

impl Daemon {
    fn start(cfg: &Path) -> Daemon {
        Daemon(Some(spawn_relais(cfg)))
    }

    async fn stop(mut self) {
        let mut c = self.0.take().unwrap();
        kill(c.id(), 15);
        let code = tokio::task::spawn_blocking(move || wait_exit(&mut c, Duration::from_secs(10))).await.unwrap();
        assert_eq!(code, Some(0), "relais exits cleanly on SIGTERM");
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

fn write_config(dir: &Path, ingest: u16, admin: u16, history: &str) -> PathBuf {
    std::fs::write(dir.join("admin.token"), format!("{TOKEN}\n")).unwrap();
    let text = format!(
        r#"[gateway]
id = "gw"
data_dir = "{data}"
status_interval = "0s"
health_interval = "0s"

[admin]
listen = "127.0.0.1:{admin}"
token_file = "admin.token"

[history]
flush_interval = "100ms"
{history}

[[source]]
name = "lab"
type = "http"
listen = "127.0.0.1:{ingest}"
allow_anonymous = true
timestamp_column = "ts"
timestamp_format = "rfc3339"
policy = "lenient"

[[source]]
name = "press"
type = "http"
listen = "127.0.0.1:{ingest}"
allow_anonymous = true
timestamp_column = "ts"
timestamp_format = "rfc3339"
policy = "lenient"
"#,
        data = dir.join("data").display()
    );
    let p = dir.join("relais.toml");
    std::fs::write(&p, text).unwrap();
    p
}

/// One sent value: unix seconds, value (`None`: unreadable, a bad sample).
type Sent = (i64, Option<f64>);

/// Posts `rows` of tags `a`, `b` as CSV to source `source`, retrying until the listener is up.
async fn post(port: u16, source: &str, rows: &[(i64, Option<f64>, Option<f64>)]) {
    let mut csv = String::from("ts,a,b\n");
    let f = |v: Option<f64>| v.map_or("x".to_string(), |v| v.to_string());
    for (t, a, b) in rows {
        let ts = chrono::DateTime::from_timestamp(*t, 0).unwrap().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        csv += &format!("{ts},{},{}\n", f(*a), f(*b));
    }
    for _ in 0..200 {
        let r = http_client()
            .post(format!("http://127.0.0.1:{port}/ingest/{source}"))
            .header("content-type", "text/csv")
            .body(csv.clone())
            .send()
            .await;
        if let Ok(r) = r {
            assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the HTTP source never answered");
}

/// `relais query --config cfg args…`: exit code, stdout, stderr.
fn query(cfg: &Path, args: &[&str]) -> (i32, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_relais")).arg("query").arg("--config").arg(cfg).args(args).output().unwrap();
    (o.status.code().unwrap_or(-1), String::from_utf8_lossy(&o.stdout).into(), String::from_utf8_lossy(&o.stderr).into())
}

fn query_json(cfg: &Path, args: &[&str]) -> Vec<Value> {
    let mut a = args.to_vec();
    a.extend(["--format", "json"]);
    let (code, out, err) = query(cfg, &a);
    assert_eq!(code, 0, "relais query {args:?}: {err}");
    serde_json::from_str::<Vec<Value>>(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn rfc(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0).unwrap().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// What the rows must say, computed here from the values sent: one entry per
/// (group, bucket start in unix seconds).
fn expected(
    sent: &BTreeMap<(String, String), Vec<Sent>>,
    every: i64,
    group: impl Fn(&str, &str) -> (Value, Value),
) -> BTreeMap<String, Value> {
    let mut acc: BTreeMap<(String, i64), (Value, Value, Vec<Sent>)> = BTreeMap::new();
    for ((d, t), vals) in sent {
        let (gd, gt) = group(d, t);
        for &(ts, v) in vals {
            let b = ts.div_euclid(every) * every;
            acc.entry((format!("{gd}/{gt}"), b)).or_insert_with(|| (gd.clone(), gt.clone(), Vec::new())).2.push((ts, v));
        }
    }
    acc.into_iter()
        .map(|((_, b), (d, t, vals))| {
            let good: Vec<f64> = vals.iter().filter_map(|v| v.1).collect();
            let last = vals.iter().filter(|v| v.1.is_some()).max_by_key(|v| v.0).and_then(|v| v.1);
            let min = good.iter().copied().reduce(f64::min);
            let max = good.iter().copied().reduce(f64::max);
            let mean = (!good.is_empty()).then(|| good.iter().sum::<f64>() / good.len() as f64);
            let row = serde_json::json!({"device": d, "tag": t, "bucket": rfc(b), "count": vals.len(), "good_count": good.len(),
                "min": min, "max": max, "mean": mean, "last": last});
            (format!("{d}/{t}@{}", rfc(b)), row)
        })
        .collect()
}

fn assert_rows(what: &str, got: &[Value], want: &BTreeMap<String, Value>) {
    let key = |r: &Value| format!("{}/{}@{}", r["device"], r["tag"], r["bucket"].as_str().unwrap());
    let got: BTreeMap<String, &Value> = got.iter().map(|r| (key(r), r)).collect();
    let want: BTreeMap<String, &Value> = want.values().map(|r| (key(r), r)).collect();
    assert!(want.len() > 1, "{what}: the test expects several buckets");
    assert_eq!(got.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>(), "{what}: buckets");
    for (k, w) in want {
        let g = got[&k];
        for f in ["count", "good_count", "last", "min", "max"] {
            assert_eq!(g[f], w[f], "{what} {k} {f}");
        }
        match (g["mean"].as_f64(), w["mean"].as_f64()) {
            (Some(a), Some(b)) => assert!((a - b).abs() <= 1e-9 * b.abs().max(1.0), "{what} {k} mean {a} vs {b}"),
            (a, b) => assert_eq!(a, b, "{what} {k} mean"),
        }
    }
}

/// Values for `n` rows from `t0`, every `step` s: tag a a ramp with a bad value
/// every 7th row, tag b a sawtooth.
fn rows(t0: i64, n: i64, step: i64, salt: f64) -> Vec<(i64, Option<f64>, Option<f64>)> {
    (0..n).map(|i| (t0 + i * step, (i % 7 != 3).then_some(salt + i as f64 * 0.5), Some(((i * 13) % 17) as f64 - 4.25))).collect()
}

fn record(sent: &mut BTreeMap<(String, String), Vec<Sent>>, device: &str, rows: &[(i64, Option<f64>, Option<f64>)]) {
    for (t, a, b) in rows {
        sent.entry((device.into(), "a".into())).or_default().push((*t, *a));
        sent.entry((device.into(), "b".into())).or_default().push((*t, *b));
    }
}

/// Polls until the history holds `n` samples of `pattern` in the window.
async fn wait_count(cfg: &Path, pattern: &str, from: &str, to: &str, n: u64) {
    let mut total = 0;
    for _ in 0..100 {
        let rows = query_json(cfg, &[pattern, "--from", from, "--to", to, "--every", "1h", "--by", "device"]);
        total = rows.iter().map(|r| r["count"].as_u64().unwrap()).sum::<u64>();
        if total == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("history holds {total} samples of {pattern}, expected {n}");
}

async fn api(port: u16, q: &str, token: Option<&str>) -> (u16, Value) {
    let mut r = http_client().get(format!("http://127.0.0.1:{port}/api/query?{q}"));
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let r = r.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn query_matches_what_was_sent_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (ingest, admin) = (free_port(), free_port());
    let cfg = write_config(dir.path(), ingest, admin, "");
    let now = chrono::Utc::now().timestamp();
    // A window of whole hours ending two hours ago at most, inside the raw window.
    let t0 = (now - 3 * 3600).div_euclid(3600) * 3600;
    let d = Daemon::start(&cfg);
    let mut sent = BTreeMap::new();
    let lab = rows(t0 + 7, 150, 23, 10.0); // ~57 min, several samples per minute, bad ones
    let press = rows(t0 + 11, 40, 97, -3.0);
    post(ingest, "lab", &lab).await;
    post(ingest, "press", &press).await;
    record(&mut sent, "lab", &lab);
    record(&mut sent, "press", &press);
    let (from, to) = (rfc(t0), rfc(t0 + 2 * 3600));
    wait_count(&cfg, "*", &from, &to, (2 * (lab.len() + press.len())) as u64).await;

    let only_lab: BTreeMap<_, _> = sent.iter().filter(|((d, _), _)| d == "lab").map(|(k, v)| (k.clone(), v.clone())).collect();
    let by_tag = |d: &str, t: &str| (Value::from(d), Value::from(t));
    // Minute rollups, raw samples (30 s), hour rollups: the same numbers as computed here.
    for (every, secs) in [("1m", MIN), ("30s", 30), ("1h", 3600), ("5m", 5 * MIN)] {
        let got = query_json(&cfg, &["lab/*", "--from", &from, "--to", &to, "--every", every]);
        assert_rows(every, &got, &expected(&only_lab, secs, by_tag));
    }
    // Several patterns; by device (tags summed); '*' matches across '/'.
    let got = query_json(&cfg, &["lab/a", "press/*", "--from", &from, "--to", &to, "--every", "15m", "--by", "device"]);
    let mut some = sent.clone();
    some.remove(&("lab".to_string(), "b".to_string()));
    assert_rows("by device", &got, &expected(&some, 15 * MIN, |d, _| (Value::from(d), Value::Null)));
    // By quality: the bad samples of lab/a alone, without measures.
    let got = query_json(&cfg, &["lab/a", "--from", &from, "--to", &to, "--every", "1h", "--by", "quality"]);
    let bad: u64 = got.iter().filter(|r| r["quality"] == "bad").map(|r| r["count"].as_u64().unwrap()).sum();
    let good: u64 = got.iter().filter(|r| r["quality"] == "good").map(|r| r["count"].as_u64().unwrap()).sum();
    assert_eq!((good, bad), (lab.iter().filter(|r| r.1.is_some()).count() as u64, lab.iter().filter(|r| r.1.is_none()).count() as u64));
    assert!(
        got.iter().filter(|r| r["quality"] == "bad").all(|r| r["min"].is_null() && r["mean"].is_null() && r["device"].is_null()),
        "{got:?}"
    );

    // The admin API: same rows as the CLI, same token as the other /api routes.
    let cli = query_json(&cfg, &["lab/*", "--from", &from, "--to", &to, "--every", "1m"]);
    let q = format!("tags=lab/*&from={from}&to={to}&every=1m");
    let (code, body) = api(admin, &q, Some(TOKEN)).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body, Value::from(cli.clone()), "API and CLI agree");
    assert_eq!(api(admin, &q, None).await.0, 401);
    let (code, body) = api(admin, "tags=lab/*&from=yesterday", Some(TOKEN)).await;
    assert_eq!(code, 400);
    assert!(body["error"].as_str().unwrap().contains("from \"yesterday\""), "{body}");
    // CSV and table.
    let (code, out, _) = query(&cfg, &["lab/*", "--from", &from, "--to", &to, "--every", "1m", "--format", "csv"]);
    assert_eq!(code, 0);
    assert_eq!(out.lines().next(), Some("device,tag,bucket,count,good_count,min,max,mean,last"));
    assert_eq!(out.lines().count(), cli.len() + 1);
    let (_, out, _) = query(&cfg, &["lab/*", "--from", &from, "--to", &to, "--every", "1h"]);
    assert!(out.starts_with("device  tag  bucket"), "{out}");

    // Restart: the history stays, and what comes after adds without counting twice.
    d.stop().await;
    let d = Daemon::start(&cfg);
    let more = rows(t0 + 3600 + 5, 30, 61, 100.0);
    post(ingest, "lab", &more).await;
    record(&mut sent, "lab", &more);
    let total: usize = sent.values().map(Vec::len).sum();
    wait_count(&cfg, "*", &from, &to, total as u64).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let only_lab: BTreeMap<_, _> = sent.iter().filter(|((d, _), _)| d == "lab").map(|(k, v)| (k.clone(), v.clone())).collect();
    for (every, secs) in [("1m", MIN), ("10s", 10), ("1h", 3600)] {
        let got = query_json(&cfg, &["lab/*", "--from", &from, "--to", &to, "--every", every]);
        assert_rows(&format!("after restart {every}"), &got, &expected(&only_lab, secs, by_tag));
    }
    d.stop().await;
}

#[tokio::test]
async fn raw_samples_and_rollups_are_pruned_by_their_own_windows() {
    let dir = tempfile::tempdir().unwrap();
    let (ingest, admin) = (free_port(), free_port());
    let cfg = write_config(dir.path(), ingest, admin, "raw = \"1h\"\nminutes = \"3h\"\nhours = \"1day\"");
    let now = chrono::Utc::now().timestamp();
    let old = rows(now - 5 * 3600, 10, 60, 1.0); // older than raw and minutes: hours only
    let mid = rows(now - 2 * 3600, 10, 60, 2.0); // older than raw: minutes and hours
    let new = rows(now - 600, 10, 30, 3.0); // everywhere
    let d = Daemon::start(&cfg);
    for r in [&old, &mid, &new] {
        post(ingest, "lab", r).await;
    }
    wait_count(&cfg, "lab/*", "-6h", "now", 60).await;
    // Pruning runs at start (then every minute): restart.
    d.stop().await;
    let d = Daemon::start(&cfg);
    let count = |every: &str, from: &str, to: &str| -> u64 {
        query_json(&cfg, &["lab/*", "--from", from, "--to", to, "--every", every]).iter().map(|r| r["count"].as_u64().unwrap()).sum()
    };
    let mut pruned = false;
    for _ in 0..100 {
        if count("10s", "-6h", "now") == 20 {
            pruned = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(pruned, "raw samples older than 1h pruned: {} left", count("10s", "-6h", "now"));
    assert_eq!(count("1m", "-6h", "now"), 40, "minute rollups keep 3h");
    assert_eq!(count("1h", "-6h", "now"), 60, "hour rollups keep a day");
    let (_, _, err) = query(&cfg, &["lab/*", "--from", "-6h", "--every", "10s"]);
    assert!(err.contains("raw samples are kept 1h"), "{err}");
    // The forwarding buffer is untouched by history retention.
    let c = rusqlite::Connection::open(dir.path().join("data/buffer.db")).unwrap();
    let n: i64 = c.query_row("SELECT count(*) FROM samples", [], |r| r.get(0)).unwrap();
    assert_eq!(n, 60);
    d.stop().await;
}

#[test]
fn bad_arguments_give_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), free_port(), free_port(), "");
    let cases: [(&[&str], &str); 6] = [
        (&["p/*", "--from", "yesterday"], "--from \"yesterday\""),
        (&["p/*", "--every", "0s"], "--every \"0s\": must be at least 1ms"),
        (&["p/*", "--every", "often"], "--every \"often\""),
        (&["p/*", "--by", "site"], "--by \"site\": expected device, tag or quality"),
        (&["p/*", "--from", "-1h", "--to", "-2h"], "must be before --to"),
        (&["p/[", "--from", "-1h"], "tag pattern \"p/[\""),
    ];
    for (args, msg) in cases {
        let (code, _, err) = query(&cfg, args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(msg), "{args:?}: {err}");
    }
    // Before relais ever ran with history: says so.
    let (code, _, err) = query(&cfg, &["p/*"]);
    assert_eq!(code, 1);
    assert!(err.contains("no history at") && err.contains("history.db"), "{err}");
    // Without [history].
    let text = std::fs::read_to_string(&cfg).unwrap().replace("[history]\nflush_interval = \"100ms\"\n", "");
    std::fs::write(&cfg, text).unwrap();
    let (code, _, err) = query(&cfg, &["p/*"]);
    assert_eq!(code, 2);
    assert!(err.contains("has no history: add a [history] section"), "{err}");
    // A wrong [history] key or window is a located config error.
    let bad = "[gateway]\nid = \"g\"\n[history]\nraw = \"2days\"\nminutes = \"1day\"\nkeep = 1\n";
    let e = relais::config::Config::parse(bad, "t.toml", dir.path()).unwrap_err().to_string();
    assert!(e.contains("history / minutes") && e.contains("keep raw <= minutes <= hours"), "{e}");
    assert!(e.contains("keep"), "{e}");
}

#[test]
fn the_sample_loads_and_relais_check_describes_history() {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/processors/history/sample.toml");
    let cfg = relais::config::Config::load(&p).unwrap_or_else(|e| panic!("{e}"));
    let h = cfg.history.clone().expect("[history] parsed");
    assert_eq!((h.raw.as_secs(), h.minutes.as_secs(), h.hours.as_secs()), (86_400, 7 * 86_400, 90 * 86_400));
    let o = Command::new(env!("CARGO_BIN_EXE_relais")).args(["check", "--config"]).arg(&p).output().unwrap();
    let plan = String::from_utf8_lossy(&o.stdout);
    assert!(
        plan.contains("history: history.db in data_dir; raw samples 1d, minute rollups 7d, hour rollups 90d; written every 1s"),
        "{plan}"
    );
}

/// Samples committed while the daemon is down (`relais import`, which runs no
/// history) are read back from the buffer at its next start: counted once.
#[tokio::test]
async fn what_was_committed_while_the_daemon_was_down_is_caught_up_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let (ingest, admin) = (free_port(), free_port());
    let cfg = write_config(dir.path(), ingest, admin, "");
    let file = "\n[[source]]\nname = \"rig\"\ntype = \"file\"\ntimestamp_column = \"ts\"\ntimestamp_format = \"rfc3339\"\n";
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str(file);
    std::fs::write(&cfg, text).unwrap();
    let now = chrono::Utc::now().timestamp();
    let t0 = (now - 2 * 3600).div_euclid(3600) * 3600;
    // A first run: history starts (a new history.db starts at the buffer's end).
    let d = Daemon::start(&cfg);
    let first = rows(t0 + 1, 20, 30, 1.0);
    post(ingest, "lab", &first).await;
    wait_count(&cfg, "*", &rfc(t0), &rfc(t0 + 3600), 40).await;
    d.stop().await;
    // While it is down: an import commits 50 rows of two tags into the buffer.
    let imported = rows(t0 + 2, 50, 40, 5.0);
    let mut csv = String::from("ts,a,b\n");
    for (t, a, b) in &imported {
        csv += &format!("{},{},{}\n", rfc(*t), a.map_or("x".into(), |v| v.to_string()), b.map_or("x".into(), |v| v.to_string()));
    }
    // Strict policy for files: no bad values in what is imported.
    let csv = csv.replace(",x,", ",0,");
    std::fs::write(dir.path().join("rig.csv"), &csv).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_relais"))
        .args(["import", "--no-wait", "--source", "rig", "--config"])
        .arg(&cfg)
        .arg(dir.path().join("rig.csv"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(query_json(&cfg, &["rig/*", "--from", &rfc(t0), "--to", &rfc(t0 + 3600)]).is_empty(), "no history ran during the import");
    // The next start reads them back from the buffer, once.
    let d = Daemon::start(&cfg);
    wait_count(&cfg, "*", &rfc(t0), &rfc(t0 + 3600), 140).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rig: u64 = query_json(&cfg, &["rig/*", "--from", &rfc(t0), "--to", &rfc(t0 + 3600), "--every", "1h"])
        .iter()
        .map(|r| r["count"].as_u64().unwrap())
        .sum();
    assert_eq!(rig, 100, "the imported samples, each once");
    d.stop().await;
}
