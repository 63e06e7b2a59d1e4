//! Watched folders: malformed CSV is quarantined with its reason and the
//! file set aside in `failed/` (issue 9 item 7); files pending at start are
//! taken in a documented, stable order (issue 9 item 9).

use std::time::Duration;

use relais::app::{Gateway, RunOptions};
use relais::model::{Quality, Value};

use crate::common::{eventually, files_in, gateway_config, samples, write_atomic};

const WATCH: &str = "[[source]]\nname = \"drop\"\ntype = \"watch\"\nfolder = \"inbox\"\nsettle = \"200ms\"\ntimestamp_column = \"ts\"\n";

/// Issue 9 item 7: a CSV quote that never closes swallows the rest of the
/// file into one field (the csv reader ends the field at the end of the
/// file). The record that holds it is quarantined with the reason and the
/// line where the quote opened, the file goes to `failed/`, and the records
/// before it are accepted. Three places: a data row in the middle, the last
/// row (whose value would otherwise read as good), the header.
#[tokio::test]
async fn a_csv_quote_that_never_closes_is_quarantined_and_the_file_fails() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = dir.path().join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    let gw = Gateway::start(gateway_config(dir.path(), WATCH), RunOptions::default()).await.unwrap();
    let failed = inbox.join("failed");
    // A data row in the middle: the rows after it are inside the field.
    write_atomic(&inbox, "middle.csv", "ts,flow\n2026-01-05T10:00:00Z,1.5\n2026-01-05T10:00:01Z,\"1.6\n2026-01-05T10:00:02Z,1.7\n");
    assert!(
        eventually(Duration::from_secs(10), || files_in(&failed).contains(&"middle.csv.errors".to_string())).await,
        "{:?}",
        files_in(&inbox)
    );
    let report = std::fs::read_to_string(failed.join("middle.csv.errors")).unwrap();
    let lines: Vec<&str> = report.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(lines.len(), 1, "{report}");
    assert!(report.starts_with("# middle.csv: 2 records, 1 samples accepted, 1 records quarantined"), "{report}");
    assert!(lines[0].starts_with("line 3: parse_error: unterminated quote"), "{report}");
    assert!(lines[0].contains("starting on line 3") && lines[0].contains("end of the file"), "{report}");
    let got = samples(&gw);
    assert_eq!(got.len(), 1, "the row before the quote is accepted: {got:?}");
    assert_eq!((got[0].quality, &got[0].value), (Quality::Good, &Value::F64(1.5)));

    // The last row: "9.5 with its quote open would read as a good 9.5.
    write_atomic(&inbox, "last.csv", "ts,flow\n2026-01-05T11:00:00Z,2.5\n2026-01-05T11:00:01Z,\"9.5\n");
    assert!(
        eventually(Duration::from_secs(10), || files_in(&failed).contains(&"last.csv.errors".to_string())).await,
        "{:?}",
        files_in(&inbox)
    );
    let report = std::fs::read_to_string(failed.join("last.csv.errors")).unwrap();
    assert!(report.contains("line 3: parse_error: unterminated quote"), "{report}");
    let got = samples(&gw);
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got.iter().all(|s| s.value != Value::F64(9.5)), "a value from a malformed record is never good: {got:?}");

    // The header: nothing can be read.
    write_atomic(&inbox, "header.csv", "ts,\"flow\n2026-01-05T12:00:00Z,3.5\n");
    assert!(
        eventually(Duration::from_secs(10), || files_in(&failed).contains(&"header.csv.errors".to_string())).await,
        "{:?}",
        files_in(&inbox)
    );
    let report = std::fs::read_to_string(failed.join("header.csv.errors")).unwrap();
    assert!(report.contains("unterminated quote") && report.contains("header"), "{report}");
    assert_eq!(samples(&gw).len(), 2);
    assert!(files_in(&inbox.join("done")).is_empty(), "{:?}", files_in(&inbox.join("done")));
    gw.shutdown().await.unwrap();
}

/// Issue 9 item 9: files waiting in the folder when relais starts (it was
/// stopped while a logger kept writing) are taken oldest modification time
/// first, equal times by name, so a source's `ts` never goes back between
/// files. Twelve files whose names, creation order and directory order all
/// differ from their modification order.
#[tokio::test]
async fn pending_files_are_taken_oldest_first_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = dir.path().join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    let base = std::time::SystemTime::now() - Duration::from_secs(3600);
    // (name, minute of its data and of its modification time)
    let names = ["q", "c", "x", "a", "m", "z", "b", "k", "e", "w", "d", "p"];
    for (k, name) in names.iter().enumerate() {
        let minute = (k * 7) % names.len(); // a permutation of 0..12
        let path = inbox.join(format!("{name}.csv"));
        std::fs::write(&path, format!("ts,v\n2026-01-05T10:{minute:02}:00Z,{minute}\n")).unwrap();
        let f = std::fs::File::options().write(true).open(&path).unwrap();
        f.set_modified(base + Duration::from_secs(60 * minute as u64)).unwrap();
    }
    // Two files with the same modification time: by name.
    for (name, sec) in [("tie-b", 31), ("tie-a", 30)] {
        let path = inbox.join(format!("{name}.csv"));
        std::fs::write(&path, format!("ts,v\n2026-01-05T11:00:{sec}Z,{sec}\n")).unwrap();
        std::fs::File::options().write(true).open(&path).unwrap().set_modified(base + Duration::from_secs(1800)).unwrap();
    }
    let gw = Gateway::start(gateway_config(dir.path(), WATCH), RunOptions::default()).await.unwrap();
    assert!(eventually(Duration::from_secs(15), || files_in(&inbox.join("done")).len() == 14).await, "{:?}", files_in(&inbox));
    let got: Vec<String> = samples(&gw).iter().map(|s| s.ts.to_string()).collect();
    let mut want: Vec<String> = (0..12).map(|m| format!("2026-01-05T10:{m:02}:00Z")).collect();
    want.extend(["2026-01-05T11:00:30Z".to_string(), "2026-01-05T11:00:31Z".to_string()]);
    assert_eq!(got, want, "files taken by modification time, then name");
    gw.shutdown().await.unwrap();
}
