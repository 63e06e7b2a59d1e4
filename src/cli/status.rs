//! `relais status` (one snapshot of the running daemon, as tables) and
//! `relais tail 'pump1/*'` (its committed samples and events as they come),
//! both read from the admin listener (`/api/status`, `/api/live`).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use futures::StreamExt;
use serde_json::Value;

use super::admin_client::{self, Target};
use crate::outln;

/// Default `--url` without `--config`.
pub const DEFAULT_URL: &str = "http://127.0.0.1:9780";

/// Where the daemon is: its configuration, or a URL.
#[derive(clap::Args, Debug)]
pub struct Where {
    /// The daemon's configuration file (its [admin] listen and token).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// The admin listener, when no --config is given (token from RELAIS_ADMIN_TOKEN).
    #[arg(long, default_value = DEFAULT_URL, conflicts_with = "config")]
    pub url: String,
}

fn resolve(w: &Where) -> Result<Target, ExitCode> {
    let cfg = match &w.config {
        Some(p) => Some(super::load(p)?),
        None => None,
    };
    admin_client::target(cfg.as_ref(), w.config.as_deref(), &w.url).map_err(|e| {
        eprintln!("{e}");
        ExitCode::from(crate::util::exit::CONFIG)
    })
}

fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(x) => x.clone(),
        Value::Number(n) if n.is_f64() => format!("{:.1}", n.as_f64().unwrap_or(0.0)),
        other => other.to_string(),
    }
}

/// Columns padded to their widest cell, two spaces apart.
pub fn table(head: &[&str], rows: &[Vec<String>]) -> String {
    let mut w: Vec<usize> = head.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    let head: Vec<String> = head.iter().map(|h| h.to_string()).collect();
    for r in std::iter::once(&head).chain(rows) {
        let line: Vec<String> = r.iter().enumerate().map(|(i, c)| format!("{c:<0$}", w[i])).collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    out
}

/// The snapshot of `/api/status` as readable tables.
pub fn render_status(base: &str, j: &Value) -> String {
    let b = &j["buffer"];
    let mut out = format!(
        "relais at {base}: buffer {} rows (seq {}..{}), {} accepted, {} quarantined; ring {}/{}\n\n",
        s(&b["rows"]),
        s(&b["first_seq"]),
        s(&b["last_seq"]),
        s(&b["accepted"]),
        s(&b["quarantined"]),
        s(&j["ring"]["depth"]),
        s(&j["ring"]["capacity"])
    );
    let arr = |k: &str| j[k].as_array().cloned().unwrap_or_default();
    let devices: Vec<Vec<String>> = arr("devices")
        .iter()
        .map(|d| {
            let errors: u64 = d["errors"].as_object().map_or(0, |m| m.values().filter_map(Value::as_u64).sum());
            let age = d["data_age_s"].as_f64().map_or("-".into(), |a| format!("{a:.1} s"));
            let poll = d["poll_latency_ms"].as_f64().map_or("-".into(), |a| format!("{a:.1} ms"));
            vec![s(&d["name"]), s(&d["link"]), poll, age, s(&d["polls"]), errors.to_string()]
        })
        .collect();
    if !devices.is_empty() {
        out += &table(&["DEVICE", "LINK", "LAST POLL", "DATA AGE", "POLLS", "ERRORS"], &devices);
        out.push('\n');
    }
    let sinks: Vec<Vec<String>> = arr("sinks")
        .iter()
        .map(|x| {
            let link = if x["connected"] == true { "connected" } else { "down" };
            vec![s(&x["name"]), link.into(), s(&x["backlog"]), s(&x["cursor"]), s(&x["state"])]
        })
        .collect();
    if !sinks.is_empty() {
        out += &table(&["SINK", "LINK", "BACKLOG", "CURSOR", "STATE"], &sinks);
        out.push('\n');
    }
    let events: Vec<Vec<String>> =
        arr("events").iter().take(5).map(|e| vec![s(&e["ts"]), s(&e["kind"]), s(&e["name"]), s(&e["message"])]).collect();
    if !events.is_empty() {
        out += &table(&["LATEST EVENTS", "KIND", "FROM", "MESSAGE"], &events);
    }
    out
}

/// One sample of `/api/live` as a line: `ts device/tag = value unit quality (reason)`.
pub fn render_sample(x: &Value) -> String {
    let unit = x["unit"].as_str().map(|u| format!(" {u}")).unwrap_or_default();
    let reason = x["reason"].as_str().map(|r| format!(" ({r})")).unwrap_or_default();
    let value = match &x["value"] {
        Value::String(v) => format!("{v:?}"),
        v => v.to_string(),
    };
    format!("{}  {} = {value}{unit}  {}{reason}", s(&x["ts"]), s(&x["name"]), s(&x["quality"]))
}

/// `relais status`.
pub fn status(w: &Where) -> ExitCode {
    let t = match resolve(w) {
        Ok(t) => t,
        Err(c) => return c,
    };
    let r = super::runtime().block_on(async {
        let r = admin_client::get(&t, "/api/status", &[], Some(std::time::Duration::from_secs(10))).await?;
        let text = r.text().await.map_err(|e| format!("{}/api/status: {e}", t.base))?;
        serde_json::from_str::<Value>(&text).map_err(|e| format!("{}/api/status: not the status JSON: {e}", t.base))
    });
    match r {
        Ok(j) => {
            crate::out!("{}", render_status(&t.base, &j));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(crate::util::exit::FAILURE)
        }
    }
}

/// `relais tail [GLOB]`: until Ctrl-C or the daemon stops.
pub fn tail(w: &Where, pattern: Option<&str>) -> ExitCode {
    let t = match resolve(w) {
        Ok(t) => t,
        Err(c) => return c,
    };
    let query: Vec<(&str, &str)> = pattern.map(|p| ("match", p)).into_iter().collect();
    let r: Result<(), String> = super::runtime().block_on(async {
        use eventsource_stream::Eventsource;
        let r = admin_client::get(&t, "/api/live", &query, None).await?;
        let mut events = r.bytes_stream().eventsource();
        while let Some(e) = events.next().await {
            let e = e.map_err(|e| format!("the live stream broke: {e}"))?;
            let data: Value = serde_json::from_str(&e.data).unwrap_or(Value::Null);
            match e.event.as_str() {
                "samples" => data.as_array().into_iter().flatten().for_each(|x| outln!("{}", render_sample(x))),
                "event" => outln!("{}  event {} {}: {}", s(&data["ts"]), s(&data["kind"]), s(&data["name"]), s(&data["message"])),
                "missed" => outln!("(this terminal fell behind: {} samples skipped)", s(&data["samples"])),
                _ => {}
            }
        }
        Err("the daemon closed the live stream (stopped?)".into())
    });
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(crate::util::exit::FAILURE)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_line_and_a_table() {
        let x = serde_json::json!({"name": "pump1/flow", "value": 12.5, "unit": "m3/h", "quality": "good", "reason": null, "ts": "T"});
        assert_eq!(render_sample(&x), "T  pump1/flow = 12.5 m3/h  good");
        let x = serde_json::json!({"name": "p/x", "value": null, "quality": "bad", "reason": "timeout", "ts": "T"});
        assert_eq!(render_sample(&x), "T  p/x = null  bad (timeout)");
        assert_eq!(table(&["A", "BB"], &[vec!["xyz".into(), "1".into()]]), "A    BB\nxyz  1\n");
    }
}
