//! `relais audit list|export` (issue 12, "Audit"): write attempts made with
//! `relais write` against the simulator, then read back from the buffer
//! while `relais run` holds it: the table, JSON Lines, CSV (parsed with the
//! csv crate), the filters, and a data folder without a buffer.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use crate::common::{free_port, spawn_relais};
use crate::modbus::sim;

fn relais(args: &[&str], cfg: &Path) -> Output {
    let (cmd, rest) = args.split_at(if args[0] == "write" { 1 } else { 2 });
    Command::new(env!("CARGO_BIN_EXE_relais")).args(cmd).arg("--config").arg(cfg).args(rest).output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn config(dir: &Path, port: u16) -> PathBuf {
    let cfg = dir.join("relais.toml");
    let body = format!(
        "[gateway]\nid = \"gw\"\ndata_dir = \"{}\"\n\
         [[device]]\nname = \"d\"\nprotocol = \"modbus-tcp\"\nendpoint = \"127.0.0.1:{port}\"\npoll_interval = \"200ms\"\ntimeout = \"300ms\"\n\
         [[device.tag]]\nname = \"sp\"\ntable = \"holding\"\naddress = 10\ntype = \"i16\"\nwritable = true\nmax = 100\n\
         [[device.tag]]\nname = \"ro\"\ntable = \"holding\"\naddress = 11\n",
        dir.join("data").display()
    );
    std::fs::write(&cfg, body).unwrap();
    cfg
}

/// The data rows of the `list` table (header and blank lines left out).
fn table_rows(out: &Output) -> Vec<Vec<String>> {
    let text = stdout(out);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default().to_string();
    assert!(header.starts_with("time") && header.contains("read-back") && header.ends_with("reason"), "{text}");
    lines.map(|l| l.split("  ").map(str::trim).filter(|c| !c.is_empty()).map(String::from).collect()).collect()
}

#[tokio::test]
async fn writes_are_listed_and_exported_while_the_gateway_runs() {
    let port = free_port();
    let _sim = sim(&format!("[[station]]\nname = \"s\"\nlisten = \"127.0.0.1:{port}\"\nunit_id = 1\n")).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), port);
    // No buffer yet: a clear message, exit 1.
    let out = relais(&["audit", "list"], &cfg);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no buffer at"), "{}", String::from_utf8_lossy(&out.stderr));
    let cfg2 = cfg.clone();
    let writes = tokio::task::spawn_blocking(move || {
        [relais(&["write", "d", "sp", "42"], &cfg2), relais(&["write", "d", "ro", "1"], &cfg2), relais(&["write", "d", "sp", "500"], &cfg2)]
    })
    .await
    .unwrap();
    assert_eq!(writes.iter().map(|o| o.status.code()).collect::<Vec<_>>(), [Some(0), Some(1), Some(1)], "{}", stdout(&writes[0]));

    let mut run = spawn_relais(&cfg);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(run.try_wait().unwrap().is_none(), "relais run stopped");
    let cfg2 = cfg.clone();
    let outs = tokio::task::spawn_blocking(move || {
        let q = |a: &[&str]| relais(a, &cfg2);
        vec![
            q(&["audit", "list"]),
            q(&["audit", "export"]),
            q(&["audit", "export", "--format", "csv"]),
            q(&["audit", "list", "--result", "refused"]),
            q(&["audit", "list", "--tag", "ro", "--since", "1h"]),
            q(&["audit", "list", "--device", "other"]),
            q(&["audit", "list", "--since", "2200-01-01T00:00:00Z"]),
            q(&["audit", "list", "--limit", "1"]),
            q(&["audit", "list", "--since", "yesterday"]),
        ]
    })
    .await
    .unwrap();
    assert!(run.try_wait().unwrap().is_none(), "relais run stopped while the audit was read");
    let _ = run.kill();
    let _ = run.wait();

    // list: newest last, the fields of each attempt.
    assert_eq!(outs[0].status.code(), Some(0), "{}", String::from_utf8_lossy(&outs[0].stderr));
    let rows = table_rows(&outs[0]);
    assert_eq!(rows.len(), 3, "{}", stdout(&outs[0]));
    assert!(chrono::DateTime::parse_from_rfc3339(&rows[0][0]).is_ok(), "{:?}", rows[0]);
    assert_eq!(rows[0][1..], ["cli", "d/sp", "0", "42", "ok", "42", "-"], "{}", stdout(&outs[0]));
    assert_eq!(rows[1][1..7], ["cli", "d/ro", "-", "1", "refused", "-"], "{}", stdout(&outs[0]));
    assert!(rows[1][7].starts_with("not_writable:"), "{:?}", rows[1]);
    assert_eq!(rows[2][1..7], ["cli", "d/sp", "-", "500", "refused", "-"], "{}", stdout(&outs[0]));
    assert!(rows[2][7].starts_with("out_of_range:"), "{:?}", rows[2]);

    // JSON Lines: the same records with typed values and all times.
    let json: Vec<serde_json::Value> = stdout(&outs[1]).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(json.len(), 3, "{}", stdout(&outs[1]));
    let j = &json[0];
    assert_eq!((j["origin"].as_str(), j["device"].as_str(), j["tag"].as_str()), (Some("cli"), Some("d"), Some("sp")), "{j}");
    assert_eq!(
        (&j["old"], &j["requested"], &j["readback"]),
        (&serde_json::json!(0), &serde_json::json!(42), &serde_json::json!(42)),
        "{j}"
    );
    assert_eq!((j["result"].as_str(), j["dry_run"].as_bool(), j["reason"].is_null()), (Some("ok"), Some(false), true), "{j}");
    assert!(j["sent_ts"].is_string() && j["requested_ts"].is_string() && j["settled_ts"].is_string(), "{j}");
    assert_eq!(json[1]["result"], "refused");
    assert!(json[1]["sent_ts"].is_null(), "a refusal never went out: {}", json[1]);
    assert!(json[0]["seq"].as_i64() < json[1]["seq"].as_i64(), "oldest first");

    // CSV: parses with the csv crate, one row per attempt.
    let mut rd = csv::Reader::from_reader(outs[2].stdout.as_slice());
    let head = rd.headers().unwrap().clone();
    let col = |name: &str| head.iter().position(|h| h == name).unwrap_or_else(|| panic!("no column {name}: {head:?}"));
    let recs: Vec<csv::StringRecord> = rd.records().map(Result::unwrap).collect();
    assert_eq!(recs.len(), 3);
    let get = |r: usize, c: &str| recs[r][col(c)].to_string();
    assert_eq!([get(0, "tag"), get(0, "old"), get(0, "requested"), get(0, "result"), get(0, "readback")], ["sp", "0", "42", "ok", "42"]);
    assert_eq!([get(1, "tag"), get(1, "result"), get(1, "old")], ["ro", "refused", ""]);
    assert!(get(1, "reason").starts_with("not_writable:"), "{:?}", recs[1]);
    assert_eq!(get(2, "requested"), "500");

    // Filters.
    let results = |o: &Output| table_rows(o).iter().map(|r| format!("{} {}", r[2], r[5])).collect::<Vec<_>>();
    assert_eq!(results(&outs[3]), ["d/ro refused", "d/sp refused"]);
    assert_eq!(results(&outs[4]), ["d/ro refused"]);
    for o in [&outs[5], &outs[6]] {
        assert_eq!(o.status.code(), Some(0));
        assert!(stdout(o).starts_with("no write attempts recorded"), "{}", stdout(o));
    }
    assert_eq!(results(&outs[7]), ["d/sp refused"], "--limit keeps the newest");
    assert_eq!(outs[8].status.code(), Some(2));
    assert!(String::from_utf8_lossy(&outs[8].stderr).contains("RFC 3339"), "{}", String::from_utf8_lossy(&outs[8].stderr));
}

/// `export --output FILE` writes the file and nothing on stdout.
#[tokio::test]
async fn export_writes_the_output_file() {
    let port = free_port();
    let _sim = sim(&format!("[[station]]\nname = \"s\"\nlisten = \"127.0.0.1:{port}\"\nunit_id = 1\n")).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), port);
    let file = dir.path().join("audit.csv");
    let (cfg2, file2) = (cfg.clone(), file.clone());
    let (w, out) = tokio::task::spawn_blocking(move || {
        let w = relais(&["write", "d", "sp", "7"], &cfg2);
        (w, relais(&["audit", "export", "--format", "csv", "--output", file2.to_str().unwrap()], &cfg2))
    })
    .await
    .unwrap();
    assert_eq!(w.status.code(), Some(0), "{}", stdout(&w));
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stdout.is_empty());
    let mut rd = csv::Reader::from_path(&file).unwrap();
    let recs: Vec<csv::StringRecord> = rd.records().map(Result::unwrap).collect();
    assert_eq!(recs.len(), 1);
    assert!(recs[0].iter().any(|c| c == "7") && recs[0].iter().any(|c| c == "ok"), "{:?}", recs[0]);
}
