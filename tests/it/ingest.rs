//! CSV and JSON sources end to end: `relais import` of the SKAB data to a real
//! Mosquitto, watched folders, tailed files, HTTP ingest, MQTT ingest, the
//! quarantine command.

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use relais::app::{Gateway, RunOptions};
use relais::model::{Quality, Sample, Value};

use crate::common::{Mosquitto, Sub, eventually, files_in, free_port, gateway_config, samples, write_atomic};

/// SKAB `valve1_0.csv` imported with `relais import`: every value of every row
/// arrives on MQTT unchanged, with its UTC timestamp (Europe/Moscow naive
/// times), `anomaly` and `changepoint` included.
#[cfg_attr(relais_no_skab, ignore = "SKAB data absent: scripts/get-skab.sh, or ../shared/data/skab (decided at build time, build.rs)")]
#[tokio::test]
async fn skab_import_every_value_arrives_on_mqtt() {
    let Some(skab) = crate::common::skab("valve1_0.csv") else { return };
    let Some(broker) = Mosquitto::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("import.toml");
    std::fs::write(
        &cfg,
        format!(
            "[gateway]\nid = \"lab\"\ndata_dir = \"{}\"\n[[source]]\nname = \"skab\"\ntype = \"file\"\nformat = \"csv\"\ndelimiter = \";\"\ntimestamp_column = \"datetime\"\ntimezone = \"Europe/Moscow\"\ndevice = \"pump\"\n\
             [[sink]]\nname = \"b\"\ntype = \"mqtt\"\nurl = \"mqtt://127.0.0.1:{}\"\ntopic = \"lab/{{device}}/{{tag}}\"\nformat = \"json-batch\"\n",
            dir.path().join("data").display(),
            broker.port
        ),
    )
    .unwrap();
    let mut sub = Sub::with_id(broker.port, "lab/#", "skab-sub", false).await;
    let out = Command::new(env!("CARGO_BIN_EXE_relais")).args(["import", "--config"]).arg(&cfg).arg(&skab).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("1147 records, 11470 samples accepted, 0 quarantined"), "{stdout}");
    assert!(stdout.contains("delivered to every sink"), "{stdout}");
    // Expected values straight from the file.
    let mut rdr = csv::ReaderBuilder::new().delimiter(b';').from_path(&skab).unwrap();
    let headers: Vec<String> = rdr.headers().unwrap().iter().map(str::to_string).collect();
    let mut expect: std::collections::HashMap<(String, String), f64> = Default::default();
    for r in rdr.records() {
        let r = r.unwrap();
        let naive = chrono::NaiveDateTime::parse_from_str(&r[0], "%Y-%m-%d %H:%M:%S").unwrap();
        let utc = (naive - chrono::Duration::hours(3)).and_utc();
        for (i, h) in headers.iter().enumerate().skip(1) {
            expect.insert((utc.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true), h.clone()), r[i].parse().unwrap());
        }
    }
    assert_eq!(expect.len(), 11470);
    let mut got = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while got < expect.len() && tokio::time::Instant::now() < deadline {
        let Some(m) = sub.next(Duration::from_secs(5)).await else { break };
        if m.topic.contains("/relais/") {
            continue;
        }
        assert_eq!(m.topic, "lab/pump");
        for s in m.json()["samples"].as_array().unwrap() {
            let key = (s["ts"].as_str().unwrap().to_string(), s["tag"].as_str().unwrap().to_string());
            let want = expect.get(&key).unwrap_or_else(|| panic!("unexpected sample {s}"));
            assert_eq!(s["value"].as_f64().unwrap(), *want, "{key:?}");
            assert_eq!(s["quality"], "good");
            got += 1;
        }
    }
    assert_eq!(got, 11470, "every value of every row");
    // The same file again: not duplicated.
    let out = Command::new(env!("CARGO_BIN_EXE_relais")).args(["import", "--config"]).arg(&cfg).arg(&skab).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("already imported"), "{}", String::from_utf8_lossy(&out.stdout));
}

#[tokio::test]
async fn watch_folder_ingests_once_waits_for_complete_files_and_sets_bad_files_aside() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = dir.path().join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    let cfg = gateway_config(
        dir.path(),
        "[[source]]\nname = \"drop\"\ntype = \"watch\"\nfolder = \"inbox\"\npattern = \"*.csv\"\nsettle = \"400ms\"\nformat = \"csv\"\ntimestamp_column = \"ts\"\n",
    );
    let gw = Gateway::start(cfg, RunOptions::default()).await.unwrap();
    // 1. A file dropped while relais runs is ingested once and moved to done/.
    write_atomic(&inbox, "a.csv", "ts,flow,level\n2026-01-05T10:00:00Z,1.5,10\n2026-01-05T10:00:01Z,1.6,11\n");
    assert!(eventually(Duration::from_secs(5), || files_in(&inbox.join("done")) == ["a.csv"]).await);
    assert_eq!(samples(&gw).len(), 4);
    // The same content again under another name: not ingested twice.
    write_atomic(&inbox, "a-copy.csv", "ts,flow,level\n2026-01-05T10:00:00Z,1.5,10\n2026-01-05T10:00:01Z,1.6,11\n");
    assert!(eventually(Duration::from_secs(5), || files_in(&inbox.join("done")).len() == 2).await);
    assert_eq!(samples(&gw).len(), 4, "same content imported once");
    // 2. A file written slowly is not read half-way.
    let slow = inbox.join("slow.csv");
    let mut f = std::fs::File::create(&slow).unwrap();
    writeln!(f, "ts,flow,level").unwrap();
    for i in 0..10 {
        write!(f, "2026-01-05T11:00:{i:02}Z,{i}.5,").unwrap();
        f.flush().unwrap();
        tokio::time::sleep(Duration::from_millis(60)).await;
        writeln!(f, "{i}").unwrap();
        f.flush().unwrap();
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    drop(f);
    assert!(eventually(Duration::from_secs(5), || files_in(&inbox.join("done")).contains(&"slow.csv".to_string())).await);
    let all = samples(&gw);
    assert_eq!(all.len(), 4 + 20, "every row of the slow file, once");
    assert!(all.iter().all(|s| s.quality == Quality::Good));
    // 3. Two bad lines: the file goes to failed/ with exactly those two lines
    //    reported; the good lines are accepted.
    write_atomic(
        &inbox,
        "b.csv",
        "ts,flow,level\n2026-01-05T12:00:00Z,1,2\n2026-01-05T12:00:01Z,oops,3\n2026-01-05T12:00:02Z,4,5\nnot a time,6,7\n2026-01-05T12:00:04Z,8,9\n",
    );
    assert!(
        eventually(Duration::from_secs(5), || files_in(&inbox.join("failed")).len() == 2).await,
        "{:?}",
        files_in(&inbox.join("failed"))
    );
    assert_eq!(files_in(&inbox.join("failed")), vec!["b.csv", "b.csv.errors"]);
    let report = std::fs::read_to_string(inbox.join("failed/b.csv.errors")).unwrap();
    let lines: Vec<&str> = report.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(lines.len(), 2, "{report}");
    assert!(lines[0].starts_with("line 3: parse_error: column \"flow\""), "{report}");
    assert!(lines[1].starts_with("line 5: parse_error: timestamp"), "{report}");
    assert_eq!(samples(&gw).len(), 24 + 6, "the three good rows are accepted");
    let dd = dir.path().join("data");
    gw.shutdown().await.unwrap();
    // The quarantine command shows them.
    let cfg_file = dir.path().join("q.toml");
    std::fs::write(&cfg_file, format!("[gateway]\nid = \"gw\"\ndata_dir = \"{}\"\n", dd.display())).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_relais")).args(["quarantine", "list", "--config"]).arg(&cfg_file).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("drop") && text.contains("parse_error") && text.contains("line 3") && text.contains("line 5"), "{text}");
    let out = Command::new(env!("CARGO_BIN_EXE_relais")).args(["quarantine", "export", "--config"]).arg(&cfg_file).output().unwrap();
    let rows: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["raw"], "2026-01-05T12:00:01Z,oops,3");
    let out = Command::new(env!("CARGO_BIN_EXE_relais"))
        .args(["quarantine", "show", "--config"])
        .arg(&cfg_file)
        .arg(rows[1]["id"].to_string())
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("not a time,6,7"));
}

fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

fn values(all: &[Sample]) -> Vec<i64> {
    let mut v: Vec<i64> = all.iter().filter_map(|s| if let Value::I64(x) = s.value { Some(x) } else { None }).collect();
    v.sort();
    v
}

#[tokio::test]
async fn tail_survives_rotation_and_restart_without_loss_or_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.jsonl");
    let body = "[[source]]\nname = \"follow\"\ntype = \"tail\"\npath = \"app.jsonl\"\npoll_interval = \"50ms\"\nformat = \"jsonl\"\n";
    let line = |i: i64| format!("{{\"n\": {i}}}\n");
    append(&log, &(0..5).map(line).collect::<String>());
    let gw = Gateway::start(gateway_config(dir.path(), body), RunOptions::default()).await.unwrap();
    assert!(eventually(Duration::from_secs(5), || samples(&gw).len() == 5).await);
    // A half-written line waits for its end.
    append(&log, "{\"n\": 5}\n{\"n\": ");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(samples(&gw).len(), 6);
    append(&log, "6}\n");
    assert!(eventually(Duration::from_secs(5), || samples(&gw).len() == 7).await);
    // Rotation: rename, new file.
    append(&log, &line(7));
    std::fs::rename(&log, dir.path().join("app.jsonl.1")).unwrap();
    append(&log, &(8..10).map(line).collect::<String>());
    assert!(eventually(Duration::from_secs(5), || samples(&gw).len() == 10).await, "{:?}", values(&samples(&gw)));
    gw.shutdown().await.unwrap();
    // While relais is down: more lines, and another rotation.
    append(&log, &(10..12).map(line).collect::<String>());
    std::fs::rename(&log, dir.path().join("app.jsonl.2")).unwrap();
    append(&log, &(12..14).map(line).collect::<String>());
    let gw = Gateway::start(gateway_config(dir.path(), body), RunOptions::default()).await.unwrap();
    assert!(eventually(Duration::from_secs(5), || samples(&gw).len() == 14).await, "{:?}", values(&samples(&gw)));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(values(&samples(&gw)), (0..14).collect::<Vec<_>>(), "every line exactly once");
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn http_ingest_answers_after_commit_and_lists_bad_records() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), "s3cret\n").unwrap();
    let port = free_port();
    let body = format!(
        "[[source]]\nname = \"lab\"\ntype = \"http\"\nlisten = \"127.0.0.1:{port}\"\ntoken_file = \"token\"\nmax_body = \"4KiB\"\ntimestamp_column = \"ts\"\ntimestamp_path = \"ts\"\n"
    );
    let gw = Gateway::start(gateway_config(dir.path(), &body), RunOptions::default()).await.unwrap();
    let url = format!("http://127.0.0.1:{port}/ingest/lab");
    let http = crate::common::http_client();
    let post = |ct: &'static str, b: String| http.post(&url).header("content-type", ct).bearer_auth("s3cret").body(b).send();
    // Good CSV: 200 once committed.
    let r = post("text/csv", "ts,a,b\n2026-01-05T10:00:00Z,1,2\n2026-01-05T10:00:01Z,3,4\n".into()).await.unwrap();
    assert_eq!(r.status(), 200);
    let j: serde_json::Value = r.json().await.unwrap();
    assert_eq!(j["accepted"], 4);
    let last = j["last_seq"].as_u64().unwrap();
    assert!(gw.buffer.stats().last_seq.load(std::sync::atomic::Ordering::Relaxed) >= last, "2xx only after commit");
    assert_eq!(samples(&gw).len(), 4);
    // JSON Lines.
    let r = post("application/x-ndjson", "{\"ts\":\"2026-01-05T10:00:02Z\",\"a\":5}\n{\"ts\":\"2026-01-05T10:00:03Z\",\"a\":6}\n".into())
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Bad records: 422 with each of them, nothing of the body accepted.
    let r = post("text/csv", "ts,a,b\n2026-01-05T10:00:00Z,1,2\n2026-01-05T10:00:01Z,x,4\nbad,5,6\n".into()).await.unwrap();
    assert_eq!(r.status(), 422);
    let j: serde_json::Value = r.json().await.unwrap();
    let errs = j["errors"].as_array().unwrap();
    assert_eq!(errs.len(), 2);
    assert_eq!(errs[0]["location"], "line 3");
    assert_eq!(errs[1]["location"], "line 4");
    assert_eq!(samples(&gw).len(), 6, "nothing of a rejected body");
    // Too large, no token, wrong type.
    let r = post("text/csv", format!("ts,a\n{}", "2026-01-05T10:00:00Z,1\n".repeat(300))).await.unwrap();
    assert_eq!(r.status(), 413);
    let r = http.post(&url).header("content-type", "text/csv").body("ts,a\n").send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = post("application/xml", "<a/>".into()).await.unwrap();
    assert_eq!(r.status(), 415);
    let r = http.post(format!("http://127.0.0.1:{port}/ingest/nope")).bearer_auth("s3cret").body("x").send().await.unwrap();
    assert_eq!(r.status(), 404);
    gw.shutdown().await.unwrap();
}

/// A client that sends its headers and then trickles (or stops sending) its
/// body held a request slot for ever (slowloris): after `body_timeout` it
/// gets 408 and nothing is accepted; chunked bodies above `max_body` get 413.
#[tokio::test]
async fn http_ingest_times_out_a_slow_body() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let body = format!(
        "[[source]]\nname = \"lab\"\ntype = \"http\"\nlisten = \"127.0.0.1:{port}\"\nallow_anonymous = true\nformat = \"jsonl\"\nbody_timeout = \"500ms\"\nmax_body = \"1KiB\"\nmax_concurrent = 1\n"
    );
    let gw = Gateway::start(gateway_config(dir.path(), &body), RunOptions::default()).await.unwrap();
    let mut slow = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    slow.write_all(b"POST /ingest/lab HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"a\":").await.unwrap();
    let t0 = std::time::Instant::now();
    let mut answer = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), slow.read(&mut answer)).await.expect("an answer within 5 s").unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]).to_string();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("body_timeout (500ms)"), "{answer}");
    assert!(t0.elapsed() < Duration::from_secs(3));
    // The slot is free again (max_concurrent = 1).
    let http = crate::common::http_client();
    let r = http.post(format!("http://127.0.0.1:{port}/ingest/lab")).body("{\"a\":1}").send().await.unwrap();
    assert_eq!(r.status(), 200);
    // A chunked body (no Content-Length) above max_body: 413.
    let mut c = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut req = b"POST /ingest/lab HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..20 {
        req.extend_from_slice(b"64\r\n");
        req.extend_from_slice(&[b' '; 100]);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    c.write_all(&req).await.unwrap();
    let mut answer = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), c.read(&mut answer)).await.expect("an answer").unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]).to_string();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert_eq!(samples(&gw).len(), 1);
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn http_ingest_rate_limit() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let body = format!(
        "[[source]]\nname = \"lab\"\ntype = \"http\"\nlisten = \"127.0.0.1:{port}\"\nallow_anonymous = true\nmax_requests_per_second = 2\nformat = \"jsonl\"\n"
    );
    let gw = Gateway::start(gateway_config(dir.path(), &body), RunOptions::default()).await.unwrap();
    let http = crate::common::http_client();
    let mut codes = Vec::new();
    for i in 0..6 {
        let r = http.post(format!("http://127.0.0.1:{port}/ingest/lab")).body(format!("{{\"a\":{i}}}")).send().await.unwrap();
        codes.push(r.status().as_u16());
    }
    assert!(codes.iter().filter(|c| **c == 200).count() <= 3, "{codes:?}");
    assert!(codes.contains(&429), "{codes:?}");
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn mqtt_in_takes_json_and_quarantines_bad_payloads() {
    let Some(broker) = Mosquitto::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let body = format!(
        "[[source]]\nname = \"esp\"\ntype = \"mqtt-in\"\nurl = \"mqtt://127.0.0.1:{}\"\ntopics = [\"sensors/+/data\"]\ndevice_level = 1\ntimestamp_path = \"ts\"\nepoch_unit = \"ms\"\n",
        broker.port
    );
    let gw = Gateway::start(gateway_config(dir.path(), &body), RunOptions::default()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut o = rumqttc::MqttOptions::new("pub", "127.0.0.1", broker.port);
    o.set_keep_alive(Duration::from_secs(5));
    let (client, mut el) = rumqttc::AsyncClient::new(o, 10);
    tokio::spawn(async move { while el.poll().await.is_ok() {} });
    client
        .publish("sensors/esp32-1/data", rumqttc::QoS::AtLeastOnce, false, r#"{"ts":1764410073120,"temp":21.5,"rh":"40"}"#)
        .await
        .unwrap();
    client.publish("sensors/esp32-2/data", rumqttc::QoS::AtLeastOnce, false, "{not json").await.unwrap();
    // A topic level that is not a valid device name is the message's error,
    // not a silent fallback to the source's device (nor the health device).
    client.publish("sensors/_relais/data", rumqttc::QoS::AtLeastOnce, false, r#"{"temp":1}"#).await.unwrap();
    assert!(eventually(Duration::from_secs(5), || samples(&gw).len() == 2).await);
    let all = samples(&gw);
    assert!(all.iter().all(|s| &*s.meta.device == "esp32-1"));
    assert_eq!(all.iter().find(|s| &*s.meta.tag == "rh").unwrap().value, Value::I64(40));
    assert_eq!(all[0].ts.as_millis(), 1764410073120);
    assert!(
        eventually(Duration::from_secs(5), || gw.buffer.stats().quarantined_total.load(std::sync::atomic::Ordering::Relaxed) == 2).await
    );
    let all = samples(&gw);
    assert!(all.len() == 2 && all.iter().all(|s| &*s.meta.device == "esp32-1"), "nothing from the _relais topic: {all:?}");
    gw.shutdown().await.unwrap();
    let q = quarantine_raw(dir.path());
    assert!(q.iter().any(|(loc, why, _)| loc == "topic" && why.contains("reserved")), "{q:?}");
}

/// No stale PUBACK on a new connection (rumqttc #849), for mqtt-in as for
/// commands: the proxy loses relais's PUBACK of the first message and cuts
/// that connection at once, while the commit (after which relais
/// acknowledges) may still be under way. Every PUBACK relais sends answers a
/// PUBLISH of its own connection; the broker redelivers the message on a
/// later connection and relais acknowledges it there; its sample is
/// committed (at least once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_in_never_sends_a_puback_on_a_later_connection() {
    use crate::puback_proxy::{Log, assert_pubacks_on_their_own_connection, proxy};
    use rumqttc::Packet;
    let Some(broker) = Mosquitto::start() else { return };
    let log: Log = std::sync::Arc::default();
    let pport = proxy(broker.port, "rig/a", log.clone(), Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    let body = format!(
        "[[source]]\nname = \"rig\"\ntype = \"mqtt-in\"\nurl = \"mqtt://127.0.0.1:{pport}\"\ntopics = [\"rig/#\"]\nreconnect_max = \"1s\"\n"
    );
    let gw = Gateway::start(gateway_config(dir.path(), &body), RunOptions::default()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    publish_all(broker.port, "rig/a", vec!["{\"n\": 7}".into()]).await;
    let acked_later = || log.lock().unwrap().iter().any(|(c, down, p)| *c > 0 && !*down && matches!(p, Packet::PubAck(_)));
    assert!(eventually(Duration::from_secs(10), acked_later).await, "the redelivered message is acknowledged: {:?}", log.lock().unwrap());
    assert!(eventually(Duration::from_secs(5), || !samples(&gw).is_empty()).await, "its sample is committed");
    assert!(values(&samples(&gw)).iter().all(|v| *v == 7));
    gw.shutdown().await.unwrap();
    let log = log.lock().unwrap().clone();
    let conns = assert_pubacks_on_their_own_connection(&log);
    assert!(conns >= 2, "the first connection was cut and relais reconnected: {log:?}");
}

/// A message above the client's packet limit (16 MiB) made the connection
/// drop, and the broker redelivered it forever: the source was stuck. Now
/// a message above `max_payload` is quarantined (`payload_too_large`, its
/// head kept) and acknowledged, and the next messages arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_in_quarantines_an_oversized_message_and_goes_on() {
    let Some(broker) = Mosquitto::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let body =
        format!("[[source]]\nname = \"big\"\ntype = \"mqtt-in\"\nurl = \"mqtt://127.0.0.1:{}\"\ntopics = [\"rig/#\"]\n", broker.port);
    let gw = Gateway::start(gateway_config(dir.path(), &body), RunOptions::default()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut huge = String::from("{\"n\": 1, \"pad\": \"");
    huge.push_str(&"x".repeat(17 << 20));
    huge.push_str("\"}");
    publish_all(broker.port, "rig/a", vec![huge, "{\"n\": 2}".into()]).await;
    assert!(eventually(Duration::from_secs(20), || samples(&gw).len() == 1).await, "the message after the huge one arrives");
    assert_eq!(values(&samples(&gw)), vec![2]);
    gw.shutdown().await.unwrap();
    let q = quarantine_raw(dir.path());
    assert_eq!(q.len(), 1, "{:?}", q.iter().map(|r| &r.1).collect::<Vec<_>>());
    assert!(q[0].1.starts_with("payload_too_large: the message is 17825811 bytes, above max_payload (16777216 bytes)"), "{}", q[0].1);
    assert_eq!(q[0].2.len(), 64 << 10);
    assert!(q[0].2.starts_with("{\"n\": 1, \"pad\": \"xxx"));
}

/// A retained reading was ingested again after every reconnect (the source
/// subscribed again, and the broker resends retained messages on each
/// subscription). After a broker restart that kept the session, the source
/// does not subscribe again: the retained reading arrives once, new ones
/// still arrive.
#[tokio::test]
async fn mqtt_in_does_not_reingest_retained_messages_after_a_reconnect() {
    let Some(mut broker) = Mosquitto::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    publish(broker.port, "plant/meter/data", vec!["{\"kwh\": 7}".into()], true).await;
    let body = format!(
        "[[source]]\nname = \"meters\"\ntype = \"mqtt-in\"\nurl = \"mqtt://127.0.0.1:{}\"\ntopics = [\"plant/+/data\"]\nreconnect_max = \"1s\"\n",
        broker.port
    );
    let gw = Gateway::start(gateway_config(dir.path(), &body), RunOptions::default()).await.unwrap();
    assert!(eventually(Duration::from_secs(5), || samples(&gw).len() == 1).await, "the retained reading, once");
    // Its PUBACK follows the commit: let it reach the broker (a message not
    // acknowledged before the broker stops is rightly delivered again).
    tokio::time::sleep(Duration::from_millis(500)).await;
    broker.restart();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    publish_all(broker.port, "plant/meter/data", vec!["{\"kwh\": 8}".into()]).await;
    assert!(eventually(Duration::from_secs(10), || samples(&gw).len() >= 2).await, "a new reading after the broker restart");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(values(&samples(&gw)), vec![7, 8], "the retained reading was not ingested again");
    gw.shutdown().await.unwrap();
}

/// Publishes `payloads` on `topic` with QoS 1 and waits for every PUBACK.
async fn publish_all(port: u16, topic: &str, payloads: Vec<String>) {
    publish(port, topic, payloads, false).await
}

/// [`publish_all`], retained or not; messages up to 64 MiB.
async fn publish(port: u16, topic: &str, payloads: Vec<String>, retain: bool) {
    let mut o = rumqttc::MqttOptions::new(format!("pub-{}", fastrand::u32(..)), "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(5));
    o.set_inflight(100);
    o.set_max_packet_size(64 << 20, 64 << 20);
    let (client, mut el) = rumqttc::AsyncClient::new(o, 1000);
    let n = payloads.len();
    let acked = tokio::spawn(async move {
        let mut acks = 0;
        while acks < n {
            match el.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Incoming::PubAck(_))) => acks += 1,
                Ok(_) => {}
                Err(e) => panic!("publisher: {e}"),
            }
        }
    });
    for p in payloads {
        client.publish(topic, rumqttc::QoS::AtLeastOnce, retain, p).await.unwrap();
    }
    tokio::time::timeout(Duration::from_secs(20), acked).await.expect("every PUBACK").unwrap();
}

/// Issue 5: a burst of queued QoS 1 messages (published while relais was
/// stopped, delivered at once on reconnect) is committed in arrival order:
/// `seq` order equals publish order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mqtt_in_commits_a_burst_in_arrival_order() {
    let Some(broker) = Mosquitto::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let body =
        format!("[[source]]\nname = \"burst\"\ntype = \"mqtt-in\"\nurl = \"mqtt://127.0.0.1:{}\"\ntopics = [\"line/seq\"]\n", broker.port);
    // First run: the persistent session subscribes.
    let gw = Gateway::start(gateway_config(dir.path(), &body), RunOptions::default()).await.unwrap();
    for _ in 0..50 {
        publish_all(broker.port, "line/seq", vec!["{\"n\": -1}".into()]).await;
        if eventually(Duration::from_millis(200), || !samples(&gw).is_empty()).await {
            break;
        }
    }
    let warmup = samples(&gw).len();
    assert!(warmup > 0, "the source subscribed");
    gw.shutdown().await.unwrap();
    // Queued while relais is down, delivered as one burst on reconnect.
    let n = 400;
    publish_all(broker.port, "line/seq", (0..n).map(|i| format!("{{\"n\": {i}}}")).collect()).await;
    let gw = Gateway::start(gateway_config(dir.path(), &body), RunOptions::default()).await.unwrap();
    // Only the burst is checked: a warm-up message (`n = -1`) may come again
    // after the restart (its PUBACK lost at shutdown: at-least-once) or late.
    let burst = |gw: &Gateway| -> Vec<i64> {
        samples(gw).iter().skip(warmup).map(|s| if let Value::I64(v) = s.value { v } else { panic!("{s:?}") }).filter(|v| *v >= 0).collect()
    };
    assert!(eventually(Duration::from_secs(20), || burst(&gw).len() >= n as usize).await, "{} samples of the burst", burst(&gw).len());
    let got = burst(&gw);
    let first_disorder = got.windows(2).position(|w| w[0] > w[1]);
    assert_eq!(
        first_disorder,
        None,
        "seq order is publish order: {:?}",
        &got[first_disorder.unwrap_or(0).saturating_sub(3)..(first_disorder.unwrap_or(0) + 5).min(got.len())]
    );
    assert_eq!(got, (0..n).collect::<Vec<i64>>());
    gw.shutdown().await.unwrap();
}

fn quarantine_locations(dir: &Path) -> Vec<String> {
    let c = rusqlite::Connection::open_with_flags(dir.join("data/buffer.db"), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let mut st = c.prepare("SELECT location FROM quarantine ORDER BY id").unwrap();
    st.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
}

/// Issue 7a: a file truncated and written again, longer than before, between
/// two polls is read again from its first line (its head changed), not from
/// the old offset.
#[tokio::test]
async fn tail_reads_a_file_rewritten_longer_between_two_polls_from_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.jsonl");
    let line = |i: i64| format!("{{\"n\": {i}}}\n");
    append(&log, &(0..5).map(line).collect::<String>());
    let body = "[[source]]\nname = \"follow\"\ntype = \"tail\"\npath = \"app.jsonl\"\npoll_interval = \"400ms\"\nformat = \"jsonl\"\n";
    let gw = Gateway::start(gateway_config(dir.path(), body), RunOptions::default()).await.unwrap();
    assert!(eventually(Duration::from_secs(5), || samples(&gw).len() == 5).await);
    // Same inode, truncated and rewritten with 100 other lines in one go.
    std::fs::write(&log, (100..200).map(line).collect::<String>()).unwrap();
    assert!(eventually(Duration::from_secs(5), || samples(&gw).len() >= 105).await, "{:?}", values(&samples(&gw)));
    tokio::time::sleep(Duration::from_millis(600)).await;
    let want: Vec<i64> = (0..5).chain(100..200).collect();
    assert_eq!(values(&samples(&gw)), want, "every line of the rewritten file, once");
    gw.shutdown().await.unwrap();
}

/// Issue 7b: after a truncation, quarantined lines are numbered from the new
/// start of the file.
#[tokio::test]
async fn tail_numbers_lines_from_one_after_a_truncation() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.jsonl");
    let line = |i: i64| format!("{{\"n\": {i}}}\n");
    append(&log, &(0..10).map(line).collect::<String>());
    let body = "[[source]]\nname = \"follow\"\ntype = \"tail\"\npath = \"app.jsonl\"\npoll_interval = \"50ms\"\nformat = \"jsonl\"\n";
    let gw = Gateway::start(gateway_config(dir.path(), body), RunOptions::default()).await.unwrap();
    assert!(eventually(Duration::from_secs(5), || samples(&gw).len() == 10).await);
    // copytruncate: emptied in place, then written again.
    std::fs::OpenOptions::new().write(true).open(&log).unwrap().set_len(0).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    append(&log, "{\"n\": 20}\n{broken\n{\"n\": 21}\n");
    assert!(eventually(Duration::from_secs(5), || samples(&gw).len() == 12).await, "{:?}", values(&samples(&gw)));
    gw.shutdown().await.unwrap();
    assert_eq!(quarantine_locations(dir.path()), vec!["line 2 (byte 11)"], "line 2 of the truncated file, not line 12");
}

/// CPU time of the calling thread (utime + stime of /proc/thread-self/stat).
fn thread_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
    // Fields after the command name, which ends with the last ')'.
    let rest: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    let ticks: f64 = rest[11].parse::<f64>().unwrap() + rest[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// Issue 10: a writer that pauses longer than `settle` in the middle of a
/// line does not get its file ingested half-way: a file whose last line has
/// no newline yet is waited for (up to 10 × settle), then read whole.
#[tokio::test]
async fn watch_waits_for_a_file_whose_last_line_is_incomplete() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = dir.path().join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    let body = "[[source]]\nname = \"drop\"\ntype = \"watch\"\nfolder = \"inbox\"\nsettle = \"200ms\"\ntimestamp_column = \"ts\"\n";
    let gw = Gateway::start(gateway_config(dir.path(), body), RunOptions::default()).await.unwrap();
    let path = inbox.join("paused.csv");
    let mut f = std::fs::File::create(&path).unwrap();
    write!(f, "ts,flow,level\n2026-01-05T10:00:00Z,1.5,10\n2026-01-05T10:00:01Z,1.").unwrap();
    f.flush().unwrap();
    // The writer pauses 4 × settle mid-line.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(files_in(&inbox.join("done")).is_empty() && files_in(&inbox.join("failed")).is_empty(), "not read half-way");
    write!(f, "6,11\n2026-01-05T10:00:02Z,1.7,12\n").unwrap();
    f.flush().unwrap();
    drop(f);
    assert!(
        eventually(Duration::from_secs(5), || files_in(&inbox.join("done")) == ["paused.csv"]).await,
        "{:?}",
        files_in(&inbox.join("failed"))
    );
    assert_eq!(samples(&gw).len(), 6, "every row, once");
    // A file that never gets its final newline is read after 10 × settle.
    write_atomic(&inbox, "no-newline.csv", "ts,flow\n2026-01-05T11:00:00Z,3");
    // While it waits, the folder scan (on this test's thread: a current-thread
    // runtime) must not spin on the access events of its own reads.
    let cpu_before = thread_cpu_seconds();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let cpu = thread_cpu_seconds() - cpu_before;
    assert!(cpu < 0.25, "the watch loop used {cpu:.2} s of CPU in 1 s while waiting");
    assert!(!files_in(&inbox.join("done")).contains(&"no-newline.csv".to_string()), "still waiting at 5 × settle");
    assert!(eventually(Duration::from_secs(5), || files_in(&inbox.join("done")).contains(&"no-newline.csv".to_string())).await);
    assert_eq!(samples(&gw).len(), 7);
    gw.shutdown().await.unwrap();
}

/// Issue 6 over HTTP: `"temp": "ERR"` in a field that carried numbers in an
/// earlier request is no longer dropped with a 200: the body is rejected
/// (strict) and the record quarantined; `""` gives a bad sample `null`;
/// `"1,5"` is 1.5 with `decimal = ","`.
#[tokio::test]
async fn http_json_strings_in_numeric_fields_are_values_or_errors() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let body = format!(
        "[[source]]\nname = \"lab\"\ntype = \"http\"\nlisten = \"127.0.0.1:{port}\"\nallow_anonymous = true\nformat = \"json\"\ndecimal = \",\"\n"
    );
    let gw = Gateway::start(gateway_config(dir.path(), &body), RunOptions::default()).await.unwrap();
    let http = crate::common::http_client();
    let post = |b: &'static str| http.post(format!("http://127.0.0.1:{port}/ingest/lab")).body(b).send();
    let r = post(r#"{"temp": 21, "status": "OK"}"#).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["accepted"], 1, "status is text, not a tag");
    let r = post(r#"{"temp": "ERR", "status": "OK"}"#).await.unwrap();
    assert_eq!(r.status(), 422, "not a silent 200");
    let j: serde_json::Value = r.json().await.unwrap();
    assert!(j["errors"][0]["reason"].as_str().unwrap().contains("\"ERR\" is not a number"), "{j}");
    let r = post(r#"{"temp": ""}"#).await.unwrap();
    assert_eq!(r.status(), 200);
    let r = post(r#"{"temp": "1,5"}"#).await.unwrap();
    assert_eq!(r.status(), 200);
    let all = samples(&gw);
    let temps: Vec<(Quality, Value)> = all.iter().map(|s| (s.quality, s.value.clone())).collect();
    assert_eq!(temps, vec![(Quality::Good, Value::I64(21)), (Quality::Bad, Value::Null), (Quality::Good, Value::F64(1.5))]);
    assert_eq!(all[1].reason.as_deref(), Some("null: empty string"));
    gw.shutdown().await.unwrap();
}

/// Bugs: an HTTP source with only `timestamp_path` (JSON) that receives a
/// CSV body stored its samples `good`, stamped with the receive time (a
/// plausible wrong value). The body is refused (422, with the key to set);
/// JSON bodies still take their timestamp; `relais check` warns.
#[tokio::test]
async fn http_csv_body_without_its_timestamp_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let body = format!(
        "[[source]]\nname = \"lab\"\ntype = \"http\"\nlisten = \"127.0.0.1:{port}\"\nallow_anonymous = true\ntimestamp_path = \"ts\"\n"
    );
    let cfg = gateway_config(dir.path(), &body);
    let w: Vec<&str> = cfg.warnings.iter().map(|w| w.message.as_str()).collect();
    assert!(w.iter().any(|m| m.contains("CSV input has no timestamp") && m.contains("set timestamp_column")), "{w:?}");
    let gw = Gateway::start(cfg, RunOptions::default()).await.unwrap();
    let http = crate::common::http_client();
    let url = format!("http://127.0.0.1:{port}/ingest/lab");
    let r = http.post(&url).header("content-type", "text/csv").body("ts,a\n2026-01-05T10:00:00Z,1\n").send().await.unwrap();
    assert_eq!(r.status(), 422, "not a 200 with receive-time samples");
    let j: serde_json::Value = r.json().await.unwrap();
    assert!(j["errors"][0]["reason"].as_str().unwrap().contains("set timestamp_column"), "{j}");
    let r =
        http.post(&url).header("content-type", "application/json").body(r#"{"ts": "2026-01-05T10:00:00Z", "a": 2}"#).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let all = samples(&gw);
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!((all[0].quality, all[0].value.clone()), (Quality::Good, Value::I64(2)));
    assert_eq!(relais::model::format_rfc3339(all[0].ts), "2026-01-05T10:00:00Z");
    gw.shutdown().await.unwrap();
}

fn quarantine_origins(dir: &Path) -> Vec<String> {
    let c = rusqlite::Connection::open_with_flags(dir.join("data/buffer.db"), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let mut st = c.prepare("SELECT origin FROM quarantine ORDER BY id").unwrap();
    st.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
}

/// Issues 1 and 8 in a watch folder: a file whose every record failed for a
/// missing time zone goes to failed/, and its quarantine records name it
/// there; once the config is corrected (and relais restarted), the same file
/// copied back is ingested instead of "already imported".
#[tokio::test]
async fn watch_reingests_a_failed_file_after_the_config_is_fixed() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = dir.path().join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    let body = "[[source]]\nname = \"drop\"\ntype = \"watch\"\nfolder = \"inbox\"\nsettle = \"200ms\"\ntimestamp_column = \"time\"\n";
    let content = "time,flow\n2026-01-05 10:00:00,1.5\n2026-01-05 10:00:01,1.6\n";
    let gw = Gateway::start(gateway_config(dir.path(), body), RunOptions::default()).await.unwrap();
    write_atomic(&inbox, "naive.csv", content);
    assert!(eventually(Duration::from_secs(5), || files_in(&inbox.join("failed")) == ["naive.csv", "naive.csv.errors"]).await);
    assert!(samples(&gw).is_empty());
    gw.shutdown().await.unwrap();
    let failed = inbox.join("failed/naive.csv").display().to_string();
    assert_eq!(quarantine_origins(dir.path()), vec![failed.clone(), failed.clone()], "the records name the file where it went");
    // Corrected config, restart, the file copied back.
    let fixed = format!("{body}timezone = \"Europe/Paris\"\n");
    let gw = Gateway::start(gateway_config(dir.path(), &fixed), RunOptions::default()).await.unwrap();
    write_atomic(&inbox, "naive.csv", &std::fs::read_to_string(&failed).unwrap());
    assert!(eventually(Duration::from_secs(5), || files_in(&inbox.join("done")) == ["naive.csv"]).await, "{:?}", files_in(&inbox));
    let all = samples(&gw);
    assert_eq!(all.len(), 2);
    assert_eq!(relais::model::format_rfc3339(all[0].ts), "2026-01-05T09:00:00Z");
    gw.shutdown().await.unwrap();
}

fn quarantine_raw(dir: &Path) -> Vec<(String, String, String)> {
    let c = rusqlite::Connection::open_with_flags(dir.join("data/buffer.db"), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let mut st = c.prepare("SELECT location, reason, raw FROM quarantine ORDER BY id").unwrap();
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap().map(Result::unwrap).collect()
}

/// A tailed line that is not UTF-8 (a logger writing one Latin-1 `°`) is one
/// quarantined record with its raw text; the lines around it arrive. It made
/// the whole pass fail as "not a UTF-8 text file" and lost its good lines.
#[tokio::test]
async fn tail_quarantines_one_non_utf8_line_and_keeps_its_neighbours() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("rig.csv");
    let jsonl = dir.path().join("rig.jsonl");
    std::fs::write(&csv, "ts,n\n").unwrap();
    std::fs::write(&jsonl, "").unwrap();
    let body = "[[source]]\nname = \"csv\"\ntype = \"tail\"\npath = \"rig.csv\"\npoll_interval = \"50ms\"\nformat = \"csv\"\ntimestamp_column = \"ts\"\n\
                [[source]]\nname = \"jsonl\"\ntype = \"tail\"\npath = \"rig.jsonl\"\npoll_interval = \"50ms\"\nformat = \"jsonl\"\n";
    let gw = Gateway::start(gateway_config(dir.path(), body), RunOptions::default()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut f = std::fs::OpenOptions::new().append(true).open(&csv).unwrap();
    f.write_all(b"2026-01-05T10:00:00Z,1\n2026-01-05T10:00:01Z,2 \xb0C\n2026-01-05T10:00:02Z,3\n").unwrap();
    let mut f = std::fs::OpenOptions::new().append(true).open(&jsonl).unwrap();
    f.write_all(b"{\"n\": 11}\n{\"n\": 12, \"u\": \"\xb0C\"}\n{\"n\": 13}\n").unwrap();
    assert!(eventually(Duration::from_secs(5), || samples(&gw).len() == 4).await, "{:?}", values(&samples(&gw)));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(values(&samples(&gw)), vec![1, 3, 11, 13]);
    gw.shutdown().await.unwrap();
    let mut q = quarantine_raw(dir.path());
    q.sort();
    assert_eq!(q.len(), 2, "{q:?}");
    assert_eq!((q[0].0.as_str(), q[1].0.as_str()), ("line 2", "line 3"), "jsonl line 2, csv line 3 (the header is line 1)");
    assert!(q.iter().all(|(_, why, _)| why.contains("invalid UTF-8")), "{q:?}");
    assert!(q.iter().any(|(_, _, raw)| raw == "2026-01-05T10:00:01Z,2 \u{fffd}C"), "{q:?}");
    assert!(q.iter().any(|(_, _, raw)| raw == "{\"n\": 12, \"u\": \"\u{fffd}C\"}"), "{q:?}");
}

/// An I/O error ended the tail for good ("tail stopped"): here the followed
/// path becomes a directory for a while (reads fail with EISDIR). The tail
/// reports it, retries, and reads the file that takes its place, every line
/// once.
#[tokio::test]
async fn tail_retries_after_an_io_error() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.jsonl");
    let line = |i: i64| format!("{{\"n\": {i}}}\n");
    append(&log, &(0..3).map(line).collect::<String>());
    let body = "[[source]]\nname = \"follow\"\ntype = \"tail\"\npath = \"app.jsonl\"\npoll_interval = \"50ms\"\nformat = \"jsonl\"\n";
    let gw = Gateway::start(gateway_config(dir.path(), body), RunOptions::default()).await.unwrap();
    assert!(eventually(Duration::from_secs(5), || samples(&gw).len() == 3).await);
    append(&log, &line(3));
    std::fs::rename(&log, dir.path().join("app.jsonl.1")).unwrap();
    std::fs::create_dir(&log).unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    std::fs::remove_dir(&log).unwrap();
    append(&log, &(4..6).map(line).collect::<String>());
    assert!(eventually(Duration::from_secs(10), || samples(&gw).len() == 6).await, "{:?}", values(&samples(&gw)));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(values(&samples(&gw)), (0..6).collect::<Vec<_>>());
    gw.shutdown().await.unwrap();
}
