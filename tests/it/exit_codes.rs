//! Exit codes of `relais run` at start-up (issue 9 item 15): errors that a
//! restart will not fix exit 4, listed in `RestartPreventExitStatus=` of
//! `deploy/relais.service`, so systemd stops restarting; the others exit 1.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `relais run` on `config` and returns its exit code and stderr.
fn run(dir: &Path, config: &str) -> (Option<i32>, String) {
    let cfg = dir.join("relais.toml");
    std::fs::write(&cfg, config).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_relais"))
        .args(["run", "--config"])
        .arg(&cfg)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    let code = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st.code();
        }
        if t0.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    (code, err)
}

fn gateway(data_dir: &Path) -> String {
    format!("[gateway]\nid = \"gw1\"\ndata_dir = \"{}\"\nstatus_interval = \"0s\"\nhealth_interval = \"0s\"\n", data_dir.display())
}

#[test]
fn the_unit_file_prevents_restarts_on_code_4() {
    let unit = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/relais.service")).unwrap();
    let line = unit.lines().find(|l| l.starts_with("RestartPreventExitStatus=")).expect("RestartPreventExitStatus= in the unit");
    let codes: Vec<&str> = line["RestartPreventExitStatus=".len()..].split_whitespace().collect();
    assert!(codes.contains(&"2") && codes.contains(&"4"), "{line}");
    assert_eq!(relais::util::exit::PERMANENT, 4);
}

#[test]
fn a_data_dir_that_is_a_file_exits_4() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("state");
    std::fs::write(&file, "not a folder").unwrap();
    let (code, err) = run(dir.path(), &gateway(&file));
    assert_eq!(code, Some(4), "stderr: {err}");
    assert!(err.contains("data_dir") && err.contains(&file.display().to_string()), "stderr: {err}");

    // Below a file: the folder can never be created either.
    let (code, err) = run(dir.path(), &gateway(&file.join("data")));
    assert_eq!(code, Some(4), "stderr: {err}");
}

#[test]
fn a_busy_listen_port_exits_4() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let cfg = format!(
        "{}\n[[source]]\nname = \"esp\"\ntype = \"http\"\nlisten = \"{addr}\"\nformat = \"json\"\nallow_anonymous = true\n",
        gateway(&dir.path().join("data"))
    );
    let (code, err) = run(dir.path(), &cfg);
    assert_eq!(code, Some(4), "stderr: {err}");
    assert!(err.contains(&format!("cannot listen on {addr}")), "stderr: {err}");
    drop(taken);
}

#[test]
fn a_busy_admin_port_exits_4() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let cfg = format!("{}\n[admin]\nlisten = \"{addr}\"\nauth = \"none\"\n", gateway(&dir.path().join("data")));
    let (code, err) = run(dir.path(), &cfg);
    assert_eq!(code, Some(4), "stderr: {err}");
    assert!(err.contains(&format!("[admin] cannot listen on {addr}")), "stderr: {err}");
    drop(taken);
}

#[test]
fn an_unreadable_certificate_exits_4() {
    let dir = tempfile::tempdir().unwrap();
    // PEM framing around bytes that are no certificate: `relais check`
    // accepts the file (it holds a PEM certificate block), TLS set-up cannot.
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").unwrap();
    let port = crate::common::free_port();
    let cfg = format!(
        "{}\n[[sink]]\nname = \"broker\"\ntype = \"mqtt\"\nurl = \"mqtts://127.0.0.1:{port}\"\nca_file = \"{}\"\n",
        gateway(&dir.path().join("data")),
        ca.display()
    );
    let (code, err) = run(dir.path(), &cfg);
    assert_eq!(code, Some(4), "stderr: {err}");
    assert!(err.contains("ca_file") && err.contains("broker"), "stderr: {err}");
    // The same file passes `relais check`: only the start can tell.
    let out = Command::new(env!("CARGO_BIN_EXE_relais")).args(["check", "--config"]).arg(dir.path().join("relais.toml")).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_transient_start_error_keeps_exit_1() {
    // Another process holds the buffer's write lock: it may go away, so
    // systemd restarts (exit 1).
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let db = rusqlite::Connection::open(data.join("buffer.db")).unwrap();
    db.execute_batch("PRAGMA locking_mode = EXCLUSIVE; CREATE TABLE hold(x); BEGIN EXCLUSIVE;").unwrap();
    let (code, err) = run(dir.path(), &gateway(&data));
    drop(db);
    assert_eq!(code, Some(1), "stderr: {err}");
}
