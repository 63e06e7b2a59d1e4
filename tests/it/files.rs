//! File sources against the real binary: `relais import` identity, `--force`,
//! Ctrl-C; a watch folder stopped by SIGTERM mid-file; rejected records of
//! running sources in the log, the status line and the health samples.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{free_port, kill};

fn config(dir: &Path, body: &str) -> PathBuf {
    let p = dir.join("relais.toml");
    std::fs::write(
        &p,
        format!(
            "[gateway]\nid = \"gw\"\ndata_dir = \"{}\"\nstatus_interval = \"0s\"\nhealth_interval = \"0s\"\n{body}",
            dir.join("data").display()
        ),
    )
    .unwrap();
    p
}

fn relais() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_relais"));
    c.env("RUST_LOG", "warn");
    c
}

fn db(dir: &Path) -> rusqlite::Connection {
    let c = rusqlite::Connection::open_with_flags(dir.join("data/buffer.db"), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    c.busy_timeout(Duration::from_secs(5)).unwrap();
    c
}

fn wait_exit(child: &mut Child, within: Duration) -> Option<i32> {
    let t0 = Instant::now();
    while t0.elapsed() < within {
        if let Some(st) = child.try_wait().unwrap() {
            return st.code();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

fn spawn_run(cfg: &Path, log: &Path) -> Child {
    relais()
        .args(["run", "--config"])
        .arg(cfg)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

/// The latest value of the health sample `_relais/<tag>`.
fn health(dir: &Path, tag: &str) -> Option<i64> {
    let c = db(dir);
    c.query_row(
        "SELECT s.value FROM samples s JOIN tags t ON t.id = s.tag_id WHERE t.device = '_relais' AND t.tag = ?1 ORDER BY s.seq DESC LIMIT 1",
        [tag],
        |r| r.get(0),
    )
    .ok()
}

/// Issue 4 (and B29): records rejected by running sources are counted in the
/// status line and the health samples, and logged as one warning per source
/// at most once a minute, with the count by reason and one example; what
/// was held back is logged at shutdown.
#[test]
fn rejected_records_of_running_sources_are_logged_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    std::fs::write(dir.path().join("app.jsonl"), "{\"a\": 1}\n{broken\n").unwrap();
    let cfg = config(
        dir.path(),
        &format!(
            "[[source]]\nname = \"lab\"\ntype = \"http\"\nlisten = \"127.0.0.1:{port}\"\nallow_anonymous = true\nformat = \"jsonl\"\n\
             [[source]]\nname = \"follow\"\ntype = \"tail\"\npath = \"app.jsonl\"\npoll_interval = \"50ms\"\n"
        ),
    );
    let text = std::fs::read_to_string(&cfg).unwrap().replace("status_interval = \"0s\"\nhealth_interval = \"0s\"", "status_interval = \"1s\"\nhealth_interval = \"1s\"");
    std::fs::write(&cfg, text).unwrap();
    let log = dir.path().join("run.log");
    let mut child = spawn_run(&cfg, &log);
    let t0 = Instant::now();
    let post = |body: &str| -> u16 {
        loop {
            match std::net::TcpStream::connect(("127.0.0.1", port)) {
                Ok(mut s) => {
                    write!(s, "POST /ingest/lab HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).unwrap();
                    let mut answer = String::new();
                    std::io::Read::read_to_string(&mut s, &mut answer).unwrap();
                    return answer[9..12].parse().unwrap();
                }
                Err(_) if t0.elapsed() < Duration::from_secs(10) => std::thread::sleep(Duration::from_millis(50)),
                Err(e) => panic!("{e}"),
            }
        }
    };
    assert_eq!(post("{\"a\": 2}\n{bad\n"), 422);
    assert_eq!(post("{\"a\": 3}\n{\"a\": \n"), 422);
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(health(dir.path(), "lab.quarantined_total"), Some(2));
    assert_eq!(health(dir.path(), "follow.quarantined_total"), Some(1));
    assert_eq!(health(dir.path(), "quarantined_total"), Some(3));
    kill(child.id(), 15);
    assert_eq!(wait_exit(&mut child, Duration::from_secs(5)), Some(0));
    let logged = std::fs::read_to_string(&log).unwrap();
    let warns = |source: &str| -> Vec<&str> {
        logged.lines().filter(|l| l.contains("WARN") && l.contains("rejected to the quarantine") && l.contains(&format!("source={source}"))).collect()
    };
    let lab = warns("lab");
    assert_eq!(lab.len(), 2, "the first at once, the second held back and logged at shutdown:\n{logged}");
    assert!(lab[0].contains("1 record(s) rejected") && lab[0].contains("e.g. http line 2 (byte 10): parse_error: invalid JSON"), "{}", lab[0]);
    assert!(lab[0].contains("reasons=parse_error 1"), "{}", lab[0]);
    let follow = warns("follow");
    assert_eq!(follow.len(), 1, "{logged}");
    assert!(follow[0].contains("app.jsonl line 2 (byte 10): parse_error"), "{}", follow[0]);
    let status: Vec<&str> = logged.lines().filter(|l| l.contains("status: ")).collect();
    let last = status.last().unwrap_or_else(|| panic!("no status line:\n{logged}"));
    assert!(last.contains("quarantined 3 (") && last.contains("lab 2") && last.contains("follow 1"), "{last}");
    assert!(!last.contains("devices"), "no devices configured: {last}");
}
