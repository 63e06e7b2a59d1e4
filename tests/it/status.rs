//! The status line (issue 10): the first line a few seconds after start,
//! and a sink's outage in words (`down since …, retrying in N s, buffering N
//! samples (oldest N s)`), then `connected` within a few seconds of the
//! broker's return, with the default `reconnect_max`.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::common::{Mosquitto, free_port};

fn write_config(dir: &Path, broker_port: u16, status_interval: &str) -> std::path::PathBuf {
    let text = format!(
        "[gateway]\nid = \"gw\"\ndata_dir = \"{}\"\nhealth_interval = \"0s\"\n{status_interval}\n\
         [[source]]\nname = \"follow\"\ntype = \"tail\"\npath = \"app.jsonl\"\npoll_interval = \"50ms\"\nformat = \"jsonl\"\n\
         [[sink]]\nname = \"broker\"\ntype = \"mqtt\"\nurl = \"mqtt://127.0.0.1:{broker_port}\"\ntopic = \"t/{{gateway}}/{{device}}/{{tag}}\"\n",
        dir.join("data").display()
    );
    let p = dir.join("relais.toml");
    std::fs::write(&p, text).unwrap();
    let mut log = std::fs::File::create(dir.join("app.jsonl")).unwrap();
    for i in 0..5 {
        writeln!(log, "{{\"n\": {i}}}").unwrap();
    }
    p
}

/// The number after `word ` in `line`.
fn number_after(line: &str, word: &str) -> Option<u64> {
    let rest = &line[line.find(word)? + word.len()..];
    rest.split(|c: char| !c.is_ascii_digit() && c != ',').next()?.replace(',', "").parse().ok()
}

/// `relais run` with the default `status_interval` (60 s): its first status
/// line comes within a few seconds and says the broker is down, when it
/// will try again, and how much it keeps for it, and how old.
#[test]
fn the_first_status_line_comes_at_once_and_describes_the_outage() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), free_port(), "");
    let t0 = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_relais"))
        .args(["run", "--config"])
        .arg(&cfg)
        .current_dir(dir.path())
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("status:") {
                let _ = tx.send((t0.elapsed(), line));
            }
        }
    });
    let got = rx.recv_timeout(Duration::from_secs(15));
    let _ = child.kill();
    let _ = child.wait();
    let (after, line) = got.expect("no status line within 15 s");
    assert!(after < Duration::from_secs(10), "first status line after {after:?}: {line}");
    assert!(line.contains("broker: down since "), "{line}");
    let retry = number_after(&line, "retrying in ").unwrap_or_else(|| panic!("no retry countdown: {line}"));
    assert!(retry <= 5, "retry wait above the default reconnect_max of 5 s: {line}");
    let buffered = number_after(&line, "buffering ").unwrap_or_else(|| panic!("no backlog: {line}"));
    assert!(buffered >= 5, "5 samples read, {buffered} buffered: {line}");
    let oldest = number_after(&line, "(oldest ").unwrap_or_else(|| panic!("no age of the oldest sample: {line}"));
    assert!(oldest <= 10, "{line}");
    assert!(line.contains("; last error: "), "{line}");
    assert!(!line.contains("unacknowledged"), "{line}");
}

/// A broker that comes back is noticed within a few seconds (default
/// `reconnect_max` 5 s), and the line then says `connected` with what is
/// waiting and in flight.
#[tokio::test]
async fn a_returning_broker_is_noticed_within_a_few_seconds() {
    let Some(mut broker) = Mosquitto::start() else { return };
    broker.stop();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), broker.port, "status_interval = \"0s\"");
    let cfg = relais::config::Config::load(&cfg).unwrap();
    let gw = relais::app::Gateway::start(cfg, relais::app::RunOptions::default()).await.unwrap();
    // Let the backoff grow to its cap: 1 + 2 + 4 s.
    let t0 = Instant::now();
    let mut line = String::new();
    while t0.elapsed() < Duration::from_secs(20) {
        line = gw.status.render(0.0);
        if line.contains("down since") && t0.elapsed() > Duration::from_secs(8) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(line.contains("broker: down since"), "{line}");
    broker.restart();
    let back = Instant::now();
    while back.elapsed() < Duration::from_secs(15) {
        line = gw.status.render(0.0);
        if line.contains("broker: connected") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let noticed = back.elapsed();
    assert!(line.contains("broker: connected, "), "{line}");
    assert!(noticed < Duration::from_secs(7), "broker back for {noticed:?} before relais noticed");
    assert!(line.contains(" waiting, ") && line.contains(" in flight"), "{line}");
    gw.shutdown().await.unwrap();
}
