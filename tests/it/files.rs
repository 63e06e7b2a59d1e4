//! File sources against the real binary: `relais import` identity, `--force`,
//! Ctrl-C; a watch folder stopped by SIGTERM mid-file; files copied back
//! from `failed/` after the settings were corrected.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::{files_in, free_port, kill, wait_exit};

/// Rows × columns of the big file: about 6 s of ingest in a debug build on
/// two cores, so a signal sent once the first samples are committed always
/// lands in the middle of it.
const BIG_ROWS: usize = 400_000;
const BIG_COLS: usize = 4;

/// A CSV file `ts,c0..c3` with `rows` rows, one second apart from 2026-01-05.
fn write_big(path: &Path, rows: usize) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    write!(f, "ts").unwrap();
    for c in 0..BIG_COLS {
        write!(f, ",c{c}").unwrap();
    }
    writeln!(f).unwrap();
    let t0 = chrono::DateTime::parse_from_rfc3339("2026-01-05T00:00:00Z").unwrap();
    for r in 0..rows {
        write!(f, "{}", (t0 + chrono::Duration::seconds(r as i64)).format("%Y-%m-%dT%H:%M:%SZ")).unwrap();
        for c in 0..BIG_COLS {
            write!(f, ",{}.{}", r, c).unwrap();
        }
        writeln!(f).unwrap();
    }
    f.flush().unwrap();
}

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

fn import(cfg: &Path, args: &[&str]) -> Output {
    relais().args(["import", "--config"]).arg(cfg).args(args).output().unwrap()
}

fn text(o: &Output) -> String {
    format!("{}\n--- stderr:\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn db(dir: &Path) -> rusqlite::Connection {
    let c = rusqlite::Connection::open_with_flags(dir.join("data/buffer.db"), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    c.busy_timeout(Duration::from_secs(5)).unwrap();
    c
}

/// (samples, distinct (tag, ts)) in the buffer; 0 when there is none yet.
fn counts(dir: &Path) -> (i64, i64) {
    if !dir.join("data/buffer.db").exists() {
        return (0, 0);
    }
    let c = db(dir);
    let q = |sql: &str| c.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap_or(0);
    (q("SELECT COUNT(*) FROM samples"), q("SELECT COUNT(*) FROM (SELECT DISTINCT tag_id, ts FROM samples)"))
}

/// (line, done) of the file progress rows.
fn file_progress(dir: &Path) -> Vec<(i64, bool)> {
    let c = db(dir);
    let mut st = c.prepare("SELECT line, done FROM progress WHERE key LIKE 'file:%' ORDER BY updated").unwrap();
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect()
}

/// Waits until the buffer holds at least `n` samples.
fn wait_samples(dir: &Path, n: i64, within: Duration) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < within {
        if counts(dir).0 >= n {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Issue 1: a file whose records were all quarantined (no time zone for
/// naive times), or which failed as a whole (wrong timestamp column), is
/// imported again once the config is corrected; the same settings again
/// skip it; `--force` reads it again with new seq numbers.
#[test]
fn import_identity_includes_the_settings_and_force_reimports() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("naive.csv");
    std::fs::write(&csv, "time;a;b\n2026-01-05 10:00:00;1;2\n2026-01-05 10:00:01;3;4\n").unwrap();
    let base = "[[source]]\nname = \"f\"\ntype = \"file\"\nformat = \"csv\"\ndelimiter = \";\"\n";
    // Every record quarantined: no time zone.
    let cfg = config(dir.path(), &format!("{base}timestamp_column = \"time\"\n"));
    let o = import(&cfg, &[csv.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("2 records, 0 samples accepted, 2 quarantined"), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(&format!("relais quarantine list --config {} --source f", cfg.display())),
        "the real config path: {}",
        text(&o)
    );
    // A file-level error: wrong column name; nothing read, not recorded as done.
    let cfg = config(dir.path(), &format!("{base}timestamp_column = \"Time\"\ntimezone = \"Europe/Paris\"\n"));
    let o = import(&cfg, &[csv.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("timestamp column \"Time\" is not in the header"), "{}", text(&o));
    // The same (wrong) settings again: read again, not "already imported".
    let o = import(&cfg, &[csv.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(!String::from_utf8_lossy(&o.stdout).contains("already imported"), "{}", text(&o));
    // Corrected: imported.
    let cfg = config(dir.path(), &format!("{base}timestamp_column = \"time\"\ntimezone = \"Europe/Paris\"\n"));
    let o = import(&cfg, &[csv.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("2 records, 4 samples accepted, 0 quarantined"), "{}", text(&o));
    assert_eq!(counts(dir.path()), (4, 4));
    // Same content, same settings: skipped.
    let o = import(&cfg, &[csv.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("already imported (same content, same settings); skipped"), "{}", text(&o));
    assert_eq!(counts(dir.path()).0, 4);
    // Another device is another import.
    let cfg2 = config(dir.path(), &format!("{base}device = \"rig2\"\ntimestamp_column = \"time\"\ntimezone = \"Europe/Paris\"\n"));
    let o = import(&cfg2, &[csv.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("4 samples accepted"), "{}", text(&o));
    assert_eq!(counts(dir.path()), (8, 8));
    // --force: read again; the good rows come again with new seq numbers.
    let o = import(&cfg, &["--force", csv.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("4 samples accepted"), "{}", text(&o));
    assert_eq!(counts(dir.path()), (12, 8), "same (tag, ts) again, under new seq numbers");
}

/// Files imported by an earlier version were recorded by content only: such
/// a record still counts as imported (no duplicates after an upgrade), unless
/// it recorded no record at all (most likely a file-level error).
#[test]
fn import_honours_records_of_earlier_versions() {
    use sha2::Digest;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "[[source]]\nname = \"f\"\ntype = \"file\"\ntimestamp_column = \"ts\"\n");
    let old = dir.path().join("old.csv");
    let failed = dir.path().join("failed.csv");
    std::fs::write(&old, "ts,a\n2026-01-05T10:00:00Z,1\n").unwrap();
    std::fs::write(&failed, "ts,a\n2026-01-05T10:00:01Z,2\n").unwrap();
    // A first import creates the buffer (and its progress table).
    let warm = dir.path().join("warm.csv");
    std::fs::write(&warm, "ts,a\n2026-01-05T09:00:00Z,0\n").unwrap();
    assert_eq!(import(&cfg, &[warm.to_str().unwrap()]).status.code(), Some(0));
    let legacy = |p: &Path| {
        let bytes = std::fs::read(p).unwrap();
        let hex: String = sha2::Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
        format!("file:{hex}:{}", bytes.len())
    };
    {
        let c = rusqlite::Connection::open(dir.path().join("data/buffer.db")).unwrap();
        let ins = "INSERT INTO progress(key, identity, offset, line, done, updated) VALUES (?1, 'x', 0, ?2, 1, 0)";
        c.execute(ins, rusqlite::params![legacy(&old), 1]).unwrap();
        c.execute(ins, rusqlite::params![legacy(&failed), 0]).unwrap();
    }
    let o = import(&cfg, &[old.to_str().unwrap(), failed.to_str().unwrap()]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("old.csv: already imported by an earlier relais version"), "{}", text(&o));
    assert!(out.contains("failed.csv: 1 records, 1 samples accepted"), "{}", text(&o));
    let o = import(&cfg, &["--force", old.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("old.csv: 1 records, 1 samples accepted"), "{}", text(&o));
}

/// Issue 3: SIGINT stops `relais import` at the next group of records: what
/// was read is committed, the exit code is 130, and the same command
/// resumes exactly there.
#[test]
fn ctrl_c_interrupts_import_and_the_same_command_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.csv");
    write_big(&big, BIG_ROWS);
    let cfg = config(dir.path(), "[[source]]\nname = \"f\"\ntype = \"file\"\ntimestamp_column = \"ts\"\n");
    let mut child =
        relais().args(["import", "--config"]).arg(&cfg).arg(&big).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    assert!(wait_samples(dir.path(), 1, Duration::from_secs(30)), "the import started");
    kill(child.id(), 2);
    let t0 = Instant::now();
    let code = wait_exit(&mut child, Duration::from_secs(5));
    let out = child.wait_with_output().unwrap();
    assert_eq!(code, Some(130), "exit 130 when interrupted: {}", text(&out));
    assert!(t0.elapsed() < Duration::from_secs(5));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let line = stdout.lines().find(|l| l.contains("interrupted after")).unwrap_or_else(|| panic!("{}", text(&out)));
    assert!(line.ends_with("records; run the same command again to resume"), "{line}");
    let n: i64 = line.split("interrupted after ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    assert!(n > 0 && (n as usize) < BIG_ROWS, "stopped part-way: {n}");
    assert_eq!(counts(dir.path()).0, n * BIG_COLS as i64, "exactly the reported records are committed");
    assert_eq!(file_progress(dir.path()), vec![(n, false)]);
    // The same command resumes after them.
    let o = import(&cfg, &[big.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains(&format!("resumed after {n} records")), "{}", text(&o));
    let all = (BIG_ROWS * BIG_COLS) as i64;
    assert_eq!(counts(dir.path()), (all, all), "every value once");
}

/// Issue 3: Ctrl-C while waiting for the sinks says how many samples are not
/// delivered yet and exits 130.
#[test]
fn ctrl_c_while_delivering_reports_what_is_left() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("small.csv");
    std::fs::write(&csv, "ts,a\n2026-01-05T10:00:00Z,1\n2026-01-05T10:00:01Z,2\n").unwrap();
    let dead = free_port(); // no broker: nothing is ever delivered
    let cfg = config(
        dir.path(),
        &format!(
            "[[source]]\nname = \"f\"\ntype = \"file\"\ntimestamp_column = \"ts\"\n[[sink]]\nname = \"b\"\ntype = \"mqtt\"\nurl = \"mqtt://127.0.0.1:{dead}\"\n"
        ),
    );
    let mut child = relais().args(["import", "--config"]).arg(&cfg).arg(&csv).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    for l in lines.by_ref() {
        let l = l.unwrap();
        seen.push(l.clone());
        if l.starts_with("delivering:") {
            break;
        }
    }
    assert!(seen.last().is_some_and(|l| l.starts_with("delivering: 2 samples left")), "{seen:?}");
    kill(child.id(), 2);
    let code = wait_exit(&mut child, Duration::from_secs(5));
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert_eq!(code, Some(130), "{seen:?} {rest:?}");
    assert!(rest.iter().any(|l| l.starts_with("interrupted: 2 samples not yet delivered")), "{rest:?}");
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

/// Issue 2: SIGTERM while a watch folder ingests a large file: exit 0 within
/// 5 s; the committed records are the recorded progress and the file stays
/// in the folder; the next start reads the rest, so every row is ingested
/// exactly once.
#[test]
fn sigterm_during_a_watch_ingest_exits_and_the_next_start_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = dir.path().join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    let tmp = dir.path().join("big.csv.tmp");
    write_big(&tmp, BIG_ROWS);
    std::fs::rename(&tmp, inbox.join("big.csv")).unwrap();
    let cfg = config(
        dir.path(),
        "[[source]]\nname = \"drop\"\ntype = \"watch\"\nfolder = \"inbox\"\nsettle = \"200ms\"\ntimestamp_column = \"ts\"\n",
    );
    let log = dir.path().join("run1.log");
    let mut child = spawn_run(&cfg, &log);
    assert!(wait_samples(dir.path(), 1, Duration::from_secs(30)), "the ingest started");
    let t0 = Instant::now();
    kill(child.id(), 15);
    let code = wait_exit(&mut child, Duration::from_secs(5));
    let logged = std::fs::read_to_string(&log).unwrap();
    assert_eq!(code, Some(0), "exit 0 within 5 s after SIGTERM:\n{logged}");
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert_eq!(files_in(&inbox), vec!["big.csv", "done", "failed"], "the file was not finished: it stays\n{logged}");
    let progress = file_progress(dir.path());
    assert_eq!(progress.len(), 1, "{progress:?}");
    let (line, done) = progress[0];
    assert!(!done && line > 0 && (line as usize) < BIG_ROWS, "{progress:?}");
    assert_eq!(counts(dir.path()).0, line * BIG_COLS as i64, "the progress is exactly what was committed");
    // The next start reads the rest.
    let log = dir.path().join("run2.log");
    let mut child = spawn_run(&cfg, &log);
    let t0 = Instant::now();
    while !files_in(&inbox.join("done")).contains(&"big.csv".to_string()) {
        assert!(t0.elapsed() < Duration::from_secs(120), "{}", std::fs::read_to_string(&log).unwrap());
        std::thread::sleep(Duration::from_millis(100));
    }
    kill(child.id(), 15);
    assert_eq!(wait_exit(&mut child, Duration::from_secs(5)), Some(0));
    let all = (BIG_ROWS * BIG_COLS) as i64;
    assert_eq!(counts(dir.path()), (all, all), "every value exactly once");
    assert_eq!(file_progress(dir.path()), vec![(BIG_ROWS as i64, true)]);
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
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("status_interval = \"0s\"\nhealth_interval = \"0s\"", "status_interval = \"1s\"\nhealth_interval = \"1s\"");
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
        logged
            .lines()
            .filter(|l| l.contains("WARN") && l.contains("rejected to the quarantine") && l.contains(&format!("source={source}")))
            .collect()
    };
    let lab = warns("lab");
    assert_eq!(lab.len(), 2, "the first at once, the second held back and logged at shutdown:\n{logged}");
    assert!(
        lab[0].contains("1 record(s) rejected") && lab[0].contains("e.g. http line 2 (byte 10): parse_error: invalid JSON"),
        "{}",
        lab[0]
    );
    assert!(lab[0].contains("reasons=parse_error 1"), "{}", lab[0]);
    let follow = warns("follow");
    assert_eq!(follow.len(), 1, "{logged}");
    assert!(follow[0].contains("app.jsonl line 2 (byte 10): parse_error"), "{}", follow[0]);
    let status: Vec<&str> = logged.lines().filter(|l| l.contains("status: ")).collect();
    let last = status.last().unwrap_or_else(|| panic!("no status line:\n{logged}"));
    assert!(last.contains("quarantined 3 (") && last.contains("lab 2") && last.contains("follow 1"), "{last}");
    assert!(!last.contains("devices"), "no devices configured: {last}");
}

/// Issue 9: `relais import … | head -1` does not panic when the reader of
/// its output goes away; the import finishes normally.
#[test]
fn import_output_into_a_closed_pipe_does_not_panic() {
    let dir = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    for i in 0..5 {
        let p = dir.path().join(format!("f{i}.csv"));
        std::fs::write(&p, format!("ts,a\n2026-01-05T10:00:0{i}Z,{i}\n")).unwrap();
        paths.push(p);
    }
    // A larger last file: the summary lines come after the pipe is closed.
    let big = dir.path().join("z.csv");
    write_big(&big, 30_000);
    paths.push(big);
    let cfg = config(dir.path(), "[[source]]\nname = \"f\"\ntype = \"file\"\ntimestamp_column = \"ts\"\n");
    let mut child =
        relais().args(["import", "--config"]).arg(&cfg).args(&paths).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap(); // and the pipe closes here
    assert!(first.contains("f0.csv: 1 records"), "{first}");
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panic") && !stderr.contains("Broken pipe"), "{stderr}");
    assert_eq!(counts(dir.path()).0, 5 + 30_000 * BIG_COLS as i64);
}

/// Issue 7c: two rotations while relais was stopped: the rest of the file
/// read before the stop and the current file are read, and the file rotated
/// in between (never read) is named in a warning.
#[test]
fn tail_warns_about_a_file_rotated_away_while_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.jsonl");
    let lines = |r: std::ops::Range<i64>| r.map(|i| format!("{{\"n\": {i}}}\n")).collect::<String>();
    let append =
        |p: &Path, s: &str| std::fs::OpenOptions::new().create(true).append(true).open(p).unwrap().write_all(s.as_bytes()).unwrap();
    append(&log, &lines(0..5));
    let cfg = config(dir.path(), "[[source]]\nname = \"follow\"\ntype = \"tail\"\npath = \"app.jsonl\"\npoll_interval = \"50ms\"\n");
    let mut child = spawn_run(&cfg, &dir.path().join("run1.log"));
    assert!(wait_samples(dir.path(), 5, Duration::from_secs(10)));
    kill(child.id(), 15);
    assert_eq!(wait_exit(&mut child, Duration::from_secs(5)), Some(0));
    // While stopped: more lines, and two rotations (logrotate numbering).
    append(&log, &lines(5..7));
    std::thread::sleep(Duration::from_millis(50));
    std::fs::rename(&log, dir.path().join("app.jsonl.1")).unwrap();
    append(&log, &lines(7..9));
    std::thread::sleep(Duration::from_millis(50));
    std::fs::rename(dir.path().join("app.jsonl.1"), dir.path().join("app.jsonl.2")).unwrap();
    std::fs::rename(&log, dir.path().join("app.jsonl.1")).unwrap();
    append(&log, &lines(9..11));
    let run2 = dir.path().join("run2.log");
    let mut child = spawn_run(&cfg, &run2);
    assert!(wait_samples(dir.path(), 9, Duration::from_secs(10)), "the rest of the first file and the current one");
    std::thread::sleep(Duration::from_millis(300));
    kill(child.id(), 15);
    assert_eq!(wait_exit(&mut child, Duration::from_secs(5)), Some(0));
    assert_eq!(counts(dir.path()).0, 9, "lines 7 and 8 (in the middle file) are not read");
    let logged = std::fs::read_to_string(&run2).unwrap();
    let warn = logged.lines().find(|l| l.contains("WARN") && l.contains("rotated more than once")).unwrap_or_else(|| panic!("{logged}"));
    assert!(warn.contains("app.jsonl.1 is not read, its lines are missing"), "{warn}");
}

/// A terminal of 80 columns that keeps what is drawn on it.
#[derive(Debug, Default, Clone)]
struct Term80(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl indicatif::TermLike for Term80 {
    fn width(&self) -> u16 {
        80
    }
    fn move_cursor_up(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn move_cursor_down(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn move_cursor_right(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn move_cursor_left(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn write_line(&self, s: &str) -> std::io::Result<()> {
        self.0.lock().unwrap().push(s.to_string());
        Ok(())
    }
    fn write_str(&self, s: &str) -> std::io::Result<()> {
        self.0.lock().unwrap().push(s.to_string());
        Ok(())
    }
    fn clear_line(&self) -> std::io::Result<()> {
        Ok(())
    }
    fn flush(&self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Issue 9: the import progress bar keeps the record count whole on an
/// 80-column terminal, even for a large file and a long path.
#[test]
fn import_progress_bar_fits_80_columns() {
    use relais::app::import::{bar_message, progress_bar};
    let term = Term80::default();
    let bar = progress_bar(1023 << 20, indicatif::ProgressDrawTarget::term_like(Box::new(term.clone())));
    bar.set_position(512 << 20);
    bar.set_message(bar_message(9_999_999, 123_456.0));
    bar.tick();
    let drawn = term.0.lock().unwrap().clone();
    let line = drawn.iter().rev().find(|l| l.contains("records")).unwrap_or_else(|| panic!("{drawn:?}"));
    assert!(line.contains("9999999 records, 123456/s"), "{line}");
    assert!(line.chars().count() <= 80, "{} columns: {line}", line.chars().count());
}

/// Bugs (bad-input tester): nothing of a file disappears without a line in
/// the import output. A JSON array field is not a tag and says so (WARN); a
/// repeated JSON key rejects its record (serde_json alone keeps the last
/// value silently); a CSV header naming a column twice refuses the file
/// (two samples of one tag at one instant otherwise); a CSV column whose
/// first value is text keeps its later numbers.
#[test]
fn import_reports_arrays_duplicate_keys_and_duplicate_columns() {
    let dir = tempfile::tempdir().unwrap();
    let jsonl = dir.path().join("d.jsonl");
    std::fs::write(
        &jsonl,
        "{\"ts\":\"2026-01-05T10:00:00Z\",\"a\":1,\"list\":[1,2]}\n{\"ts\":\"2026-01-05T10:00:01Z\",\"a\":2,\"a\":3}\n{\"ts\":\"2026-01-05T10:00:02Z\",\"a\":4}\n",
    )
    .unwrap();
    let cfg = config(dir.path(), "[[source]]\nname = \"f\"\ntype = \"file\"\ntimestamp_path = \"ts\"\ntimestamp_column = \"ts\"\n");
    let o = import(&cfg, &[jsonl.to_str().unwrap()]);
    let out = text(&o);
    assert!(out.contains("3 records, 2 samples accepted, 1 quarantined"), "{out}");
    assert!(out.contains("field \"list\" holds an array (2 items): not ingested"), "{out}");
    let c = db(dir.path());
    let (loc, reason): (String, String) =
        c.query_row("SELECT location, reason FROM quarantine", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    assert!(loc.starts_with("line 2 (byte "), "{loc}");
    assert!(reason.contains("duplicate key \"a\""), "{reason}");
    let values: Vec<i64> =
        c.prepare("SELECT value FROM samples ORDER BY seq").unwrap().query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect();
    assert_eq!(values, vec![1, 4], "neither 2 nor 3 of the conflicting record");
    drop(c);
    // A CSV header with one name twice: refused at the header, nothing read.
    let csv = dir.path().join("dup.csv");
    std::fs::write(&csv, "ts,a,b,a\n2026-01-05T10:00:00Z,1,2,3\n").unwrap();
    let o = import(&cfg, &[csv.to_str().unwrap()]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("dup.csv") && out.contains("names column \"a\" twice (columns 2 and 4)"), "{out}");
    // A column whose first value is "n/a": its later numbers are imported, and the change is said.
    let na = dir.path().join("na.csv");
    std::fs::write(&na, "ts,v\n2026-01-05T10:00:00Z,n/a\n2026-01-05T10:00:01Z,5\n2026-01-05T10:00:02Z,6\n").unwrap();
    let o = import(&cfg, &[na.to_str().unwrap()]);
    let out = text(&o);
    assert!(out.contains("3 records, 2 samples accepted, 0 quarantined"), "{out}");
    assert!(out.contains("column \"v\" held text in its first data row but holds a number (\"5\") in line 3"), "{out}");
    // A 0-byte file: "empty file" with its name, not an unterminated quote.
    let empty = dir.path().join("empty.csv");
    std::fs::write(&empty, "").unwrap();
    let o = import(&cfg, &[empty.to_str().unwrap()]);
    let out = text(&o);
    assert!(out.contains(&format!("{}: parse_error: empty file (0 bytes)", empty.display())), "{out}");
    assert!(!out.contains("unterminated quote"), "{out}");
}
