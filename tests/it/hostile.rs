//! Hostile input against the running binary (issue 9 items 11 and 12): names
//! from data cannot forge log lines, ever-new names cannot flood the log, and
//! idle or slow connections to HTTP ingest cannot use up the process's file
//! descriptors.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{free_port, http_client, kill};

/// A `relais run` of the test's own, its log (text format, INFO) in a file.
struct Relais {
    child: Child,
    log: PathBuf,
}

impl Relais {
    /// Starts relais on `body` (after a `[gateway]` table) with at most
    /// `nofile` file descriptors, and waits for "HTTP ingest listening".
    fn start(dir: &Path, body: &str, nofile: u32) -> Relais {
        let cfg = dir.join("relais.toml");
        let text = format!(
            "[gateway]\nid = \"gw\"\ndata_dir = \"{}\"\nstatus_interval = \"0s\"\nhealth_interval = \"0s\"\n{body}",
            dir.join("data").display()
        );
        std::fs::write(&cfg, text).unwrap();
        let log = dir.join("relais.log");
        let child = Command::new("sh")
            .arg("-c")
            .arg(format!("ulimit -n {nofile}; exec {} run --config \"$1\" 2>\"$2\"", env!("CARGO_BIN_EXE_relais")))
            .arg("sh")
            .arg(&cfg)
            .arg(&log)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .env_remove("JOURNAL_STREAM")
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let r = Relais { child, log };
        let t = Instant::now();
        while !r.log().contains("HTTP ingest listening") {
            assert!(t.elapsed() < Duration::from_secs(30), "relais did not start:\n{}", r.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        r
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Open file descriptors of the process.
    fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id())).map(|d| d.count()).unwrap_or(0)
    }

    /// SIGTERM, then the whole log.
    fn stop(mut self) -> String {
        kill(self.child.id(), 15);
        let t = Instant::now();
        while self.child.try_wait().unwrap().is_none() {
            if t.elapsed() > Duration::from_secs(15) {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.log()
    }
}

impl Drop for Relais {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Log lines that do not start like a tracing text line (`2026-…Z  INFO …`).
fn foreign_lines(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| {
            let head: Vec<&str> = l.split_whitespace().take(2).collect();
            !(head.len() == 2
                && head[0].len() >= 20
                && head[0].as_bytes()[4] == b'-'
                && head[0].ends_with('Z')
                && ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"].contains(&head[1]))
        })
        .collect()
}

async fn post(port: u16, source: &str, token: Option<&str>, body: String) -> (u16, String) {
    let mut req = http_client()
        .post(format!("http://127.0.0.1:{port}/ingest/{source}"))
        .header("content-type", "application/x-ndjson")
        .timeout(Duration::from_secs(20))
        .body(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    match req.send().await {
        Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
        Err(e) => (0, e.to_string()),
    }
}

const FORGED: &str = "2026-12-06T05:00:00.000000Z ERROR relais stopped";

/// Issue 9 item 11: a JSON key holding a newline, through HTTP ingest and
/// through a watched file, was written raw in the INFO line about text
/// fields, so the log showed a forged `ERROR relais stopped` line; so was a
/// file name in the watch folder's lines and in the report of rejected
/// records. Every line of the captured log is a real log line, and the names
/// are there escaped.
#[tokio::test]
async fn a_key_with_a_newline_forges_no_log_line() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = dir.path().join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    let port = free_port();
    let r = Relais::start(
        dir.path(),
        &format!(
            "[[source]]\nname = \"web\"\ntype = \"http\"\nlisten = \"127.0.0.1:{port}\"\nallow_anonymous = true\nmissing_timestamp = \"receive_time\"\n\
             [[source]]\nname = \"drop\"\ntype = \"watch\"\nfolder = \"{}\"\npattern = \"*.jsonl\"\nsettle = \"200ms\"\nmissing_timestamp = \"receive_time\"\n",
            inbox.display()
        ),
        4096,
    );
    let key = serde_json::to_string(&format!("op\n{FORGED} by http\r\u{1b}[2K")).unwrap();
    let (code, text) = post(port, "web", None, format!("{{\"temp\": 21.5, {key}: \"Anna\"}}\n")).await;
    assert_eq!(code, 200, "{text}");
    let key = serde_json::to_string(&format!("op\n{FORGED} by a file")).unwrap();
    std::fs::write(inbox.join("a.jsonl"), format!("{{\"temp\": 21.5, {key}: \"Bob\"}}\n")).unwrap();
    // A file name from the folder, with a record that is rejected: named in
    // the move line and in the report of rejected records.
    std::fs::write(inbox.join(format!("b\n{FORGED} by a name.jsonl")), "not json\n").unwrap();
    let t = Instant::now();
    while !(r.log().contains("file ingested;") && r.log().contains("file ingested with rejected records")) {
        assert!(t.elapsed() < Duration::from_secs(20), "the files were not ingested:\n{}", r.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = r.stop();
    assert!(foreign_lines(&log).is_empty(), "forged lines: {:?}\n{log}", foreign_lines(&log));
    // The forged text appears only escaped, inside a real line.
    let n = log.matches(FORGED).count();
    assert_eq!(n, log.matches(&format!("\\n{FORGED}")).count(), "{log}");
    assert!(n >= 5, "{log}");
    assert!(log.lines().any(|l| l.contains("rejected to the quarantine") && l.contains(&format!("b\\n{FORGED} by a name.jsonl"))), "{log}");
    for who in ["by http\\r\\u{1b}[2K", "by a file"] {
        let line = log.lines().find(|l| l.contains("holds text") && l.contains(who)).unwrap_or_else(|| panic!("no line for {who}:\n{log}"));
        assert!(line.contains(&format!("op\\n{FORGED} {who}")), "{line}");
    }
}

/// Issue 9 item 11: each new text field logged one INFO line and stayed in
/// memory without bound (100,000 lines from five requests). Five bodies of
/// 3,000 distinct text keys each: at most the first 100 are logged one line
/// each, then the rate limit holds; every body is still accepted.
#[tokio::test]
async fn ever_new_keys_log_a_bounded_number_of_lines() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let r = Relais::start(
        dir.path(),
        &format!(
            "[[source]]\nname = \"web\"\ntype = \"http\"\nlisten = \"127.0.0.1:{port}\"\nallow_anonymous = true\nmissing_timestamp = \"receive_time\"\n"
        ),
        4096,
    );
    let rss = |pid: u32| -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        s.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next()?.parse().ok()).unwrap_or(0)
    };
    let rss0 = rss(r.child.id());
    for b in 0..5 {
        let fields: Vec<String> = (0..3000).map(|i| format!("\"k{b}_{i}\": \"text\"")).collect();
        let (code, text) = post(port, "web", None, format!("{{\"temp\": 1.5, {}}}\n", fields.join(", "))).await;
        assert_eq!(code, 200, "{text}");
    }
    let rss1 = rss(r.child.id());
    let log = r.stop();
    let lines = log.lines().filter(|l| l.contains("holds text")).count();
    assert!((100..=102).contains(&lines), "{lines} lines about text fields");
    eprintln!("15,000 distinct text keys in 5 requests: {lines} log lines, RSS {rss0} kB -> {rss1} kB");
}

/// Bugs: the field-name cap warning said "1 so far" while 40,000 names were
/// over it (written at the first one, then rate-limited). It is written once
/// the input is parsed, with the count of the whole body.
#[tokio::test]
async fn the_field_name_cap_warning_counts_every_name_over_it() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let r = Relais::start(
        dir.path(),
        &format!(
            "[[source]]\nname = \"web\"\ntype = \"http\"\nlisten = \"127.0.0.1:{port}\"\nallow_anonymous = true\nmissing_timestamp = \"receive_time\"\n"
        ),
        4096,
    );
    let fields: Vec<String> = (0..50_000).map(|i| format!("\"k{i}\": \"t\"")).collect();
    let (code, text) = post(port, "web", None, format!("{{\"temp\": 1.5, {}}}\n", fields.join(", "))).await;
    assert_eq!(code, 200, "{text}");
    let log = r.stop();
    let cap: Vec<&str> = log.lines().filter(|l| l.contains("distinct field names")).collect();
    assert_eq!(cap.len(), 1, "{cap:?}");
    // temp and 9,999 text keys are remembered; 40,001 are not.
    assert!(cap[0].contains("40001 new names were not remembered since the last line (40001 in total)"), "{}", cap[0]);
}

/// Issue 9 item 12: 2,000 idle TCP connections (no token needed) used up the
/// process's file descriptors (limit 1,024 here, as usual), and nothing more
/// was served. Now at most `max_connections` stay open, the rest are closed
/// at once, idle ones are closed after `header_timeout`, and a good request
/// with its token is served.
#[tokio::test]
async fn idle_connections_cannot_use_up_file_descriptors() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), "t0ken\n").unwrap();
    let port = free_port();
    let r = Relais::start(
        dir.path(),
        &format!(
            "[[source]]\nname = \"web\"\ntype = \"http\"\nlisten = \"127.0.0.1:{port}\"\ntoken_file = \"token\"\nmissing_timestamp = \"receive_time\"\n\
             max_connections = 100\nheader_timeout = \"2s\"\n"
        ),
        1024,
    );
    let base = r.fds();
    let mut idle = Vec::new();
    for _ in 0..2000 {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => idle.push(s),
            Err(e) => panic!("connect {}: {e}", idle.len()),
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    let held = r.fds();
    assert!(held <= base + 100 + 5, "relais holds {held} descriptors with 2,000 idle connections (before: {base})");
    // A good request is served while the idle connections are still open on
    // the client side (they are closed by relais within header_timeout).
    let t = Instant::now();
    let answer = loop {
        let (code, text) = post(port, "web", Some("t0ken"), "{\"temp\": 21.5}\n".into()).await;
        if code == 200 || t.elapsed() > Duration::from_secs(15) {
            break (code, text);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(answer.0, 200, "{answer:?}");
    // Every idle connection was closed by relais: reading gives end of file.
    std::thread::sleep(Duration::from_secs(2));
    let mut open = 0;
    for s in &mut idle {
        s.set_read_timeout(Some(Duration::from_millis(5))).unwrap();
        let mut b = [0u8; 1];
        if matches!(s.read(&mut b), Err(ref e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut) {
            open += 1;
        }
    }
    assert_eq!(open, 0, "idle connections still open after header_timeout");
    eprintln!("2,000 idle connections: relais held {held} descriptors (before {base}); good request served after {:?}", t.elapsed());
    let log = r.stop();
    assert!(log.contains("at max_connections"), "{log}");
}

/// Issue 9 item 12: the documented defaults of the connection limits.
#[test]
fn connection_limits_have_their_documented_defaults() {
    let text = "[gateway]\nid = \"g\"\n[[source]]\nname = \"h\"\ntype = \"http\"\nallow_anonymous = true\n";
    let cfg = relais::config::Config::parse(text, "h.toml", Path::new(".")).unwrap_or_else(|e| panic!("{e}"));
    let relais::sources::SourceConfig::Http(h) = cfg.sources.into_iter().next().unwrap() else { unreachable!() };
    assert_eq!((h.header_timeout, h.idle_timeout, h.max_connections), (Duration::from_secs(10), Duration::from_secs(60), 256));
}

/// Issue 9 item 12: a connection sending its request head one byte at a
/// time (slow loris) is closed once `header_timeout` has passed, whatever
/// it still sends.
#[tokio::test]
async fn a_head_sent_byte_by_byte_is_closed_after_header_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let r = Relais::start(
        dir.path(),
        &format!(
            "[[source]]\nname = \"web\"\ntype = \"http\"\nlisten = \"127.0.0.1:{port}\"\nallow_anonymous = true\nheader_timeout = \"1s\"\n"
        ),
        4096,
    );
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(1))).unwrap();
    let head = b"POST /ingest/web HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
    let t = Instant::now();
    let mut closed = None;
    for b in head.iter().cycle().take(400) {
        if s.write_all(&[*b]).is_err() {
            closed = Some(t.elapsed());
            break;
        }
        let mut buf = [0u8; 512];
        match s.read(&mut buf) {
            Ok(_) => {
                // End of file, or an answer (408) just before the close.
                closed = Some(t.elapsed());
                break;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => {
                closed = Some(t.elapsed());
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let closed = closed.expect("the connection was still open after 20 s of a trickled head");
    assert!(closed >= Duration::from_millis(900) && closed < Duration::from_secs(5), "closed after {closed:?}");
    drop(r);
}
