//! Sparkplug B messages decoded by the reference decoder (Eclipse Tahu's npm
//! `sparkplug-payload`, through `tests/sparkplug/decode.js`), and the session
//! rules of Sparkplug 3.0 checked over a whole capture.
//!
//! The decoder is found through `RELAIS_SPARKPLUG_PAYLOAD` (a `node_modules`
//! folder holding `sparkplug-payload`) or `target/sparkplug-payload/node_modules`
//! (where `.ci/run` installs it). Missing, the tests are skipped with a
//! message, unless `RELAIS_REQUIRE_SPARKPLUG=1` (set by `.ci/run`).

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::Value as J;

use crate::common::Msg;

/// The reference decoder's `node_modules`, or `None` (skipped, with a message).
pub fn reference_decoder() -> Option<PathBuf> {
    let dir = std::env::var_os("RELAIS_SPARKPLUG_PAYLOAD")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/sparkplug-payload/node_modules"));
    if dir.join("sparkplug-payload").is_dir() {
        return Some(dir);
    }
    if std::env::var("RELAIS_REQUIRE_SPARKPLUG").is_ok_and(|v| v == "1") {
        panic!("the Sparkplug reference decoder (npm sparkplug-payload) is missing in {} but RELAIS_REQUIRE_SPARKPLUG=1", dir.display());
    }
    eprintln!("SKIPPED: npm sparkplug-payload not found in {} (run .ci/run)", dir.display());
    None
}

/// One decoded message.
#[derive(Debug, Clone)]
pub struct Dec {
    pub topic: String,
    /// NBIRTH, DBIRTH, DDATA, NDATA, DDEATH, NDEATH, NCMD.
    pub kind: String,
    pub device: Option<String>,
    pub p: J,
}

impl Dec {
    pub fn seq(&self) -> Option<u64> {
        num(&self.p["seq"])
    }

    pub fn metrics(&self) -> &[J] {
        self.p["metrics"].as_array().map_or(&[], |v| v.as_slice())
    }

    pub fn metric(&self, name: &str) -> Option<&J> {
        self.metrics().iter().find(|m| m["name"] == name)
    }

    pub fn bd_seq(&self) -> Option<u64> {
        self.metric("bdSeq").and_then(|m| num(&m["value"]))
    }
}

/// A number the decoder wrote as a number or as a decimal string (Long).
pub fn num(v: &J) -> Option<u64> {
    v.as_u64().or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

/// A metric property's value.
pub fn prop<'a>(m: &'a J, key: &str) -> Option<&'a J> {
    m["properties"].get(key).map(|p| &p["value"])
}

/// Decodes every `spBv1.0/` message with the reference decoder.
/// A QoS 1 message the broker delivers again after its restart (same topic,
/// same bytes: same `seq` and publish time) is counted once.
pub fn decode(modules: &PathBuf, msgs: &[Msg]) -> Vec<Dec> {
    let mut seen = HashSet::new();
    let msgs: Vec<&Msg> =
        msgs.iter().filter(|m| m.topic.starts_with("spBv1.0/") && seen.insert((m.topic.clone(), m.payload.clone()))).collect();
    let mut input = String::new();
    for m in &msgs {
        let hex: String = m.payload.iter().map(|b| format!("{b:02x}")).collect();
        input += &format!("{}\t{hex}\n", m.topic);
    }
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sparkplug/decode.js");
    let mut child = Command::new("node").arg(script).arg(modules).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().expect("node");
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(out.status.success(), "the reference decoder failed");
    let text = String::from_utf8(out.stdout).unwrap();
    let decoded: Vec<J> = text.lines().filter(|l| !l.is_empty()).map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(decoded.len(), msgs.len(), "one decoded payload per message");
    decoded
        .into_iter()
        .map(|d| {
            let topic = d["topic"].as_str().unwrap().to_string();
            let parts: Vec<&str> = topic.split('/').collect();
            Dec { kind: parts[2].to_string(), device: parts.get(4).map(|s| s.to_string()), p: d["payload"].clone(), topic }
        })
        .collect()
}

/// One sample value as the host sees it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub device: String,
    pub tag: String,
    pub relais_seq: u64,
    pub value: J,
    pub historical: bool,
    pub quality: Option<i64>,
}

/// What a capture holds, once its rules are checked.
#[derive(Debug, Default)]
pub struct Report {
    /// bdSeq of each NBIRTH, in order.
    pub nbirths: Vec<u64>,
    /// bdSeq of each NDEATH, with the number of NBIRTHs before it.
    pub ndeaths: Vec<(u64, usize)>,
    /// Times `seq` went from 255 to 0 inside a session.
    pub wraps: usize,
    pub values: Vec<Seen>,
    /// `relais_seq` of every NDATA event.
    pub events: Vec<u64>,
    pub ddeaths: Vec<String>,
}

/// Checks the Sparkplug rules over `decs` in arrival order, panicking with
/// the message index on the first breach: `seq` +1 mod 256 from NBIRTH's 0
/// (§6.4.5), NDEATH without seq, births before data (§5.6), DATA metrics by
/// alias only, aliases declared in the device's DBIRTH (§6.4.6).
pub fn check(decs: &[Dec]) -> Report {
    let mut r = Report::default();
    let mut expect: Option<u64> = None;
    let mut born: HashSet<String> = HashSet::new();
    let mut names: HashMap<(String, u64), String> = HashMap::new();
    for (i, d) in decs.iter().enumerate() {
        if d.kind == "NCMD" {
            continue;
        }
        let at = format!("message {i} ({}, {})", d.topic, d.p);
        if std::env::var("SP_DUMP").is_ok() {
            eprintln!("{i} {} seq={:?}", d.topic, d.seq());
        }
        if d.kind == "NDEATH" {
            assert!(d.seq().is_none(), "NDEATH carries no seq: {at}");
            assert_eq!(d.metrics().len(), 1, "NDEATH holds bdSeq only: {at}");
            r.ndeaths.push((d.bd_seq().expect("NDEATH bdSeq"), r.nbirths.len()));
            continue;
        }
        let seq = d.seq().unwrap_or_else(|| panic!("seq missing: {at}"));
        assert!(seq <= 255, "{at}");
        if d.kind == "NBIRTH" {
            assert_eq!(seq, 0, "NBIRTH seq: {at}");
            let bd = d.metric("bdSeq").unwrap_or_else(|| panic!("NBIRTH without bdSeq: {at}"));
            assert_eq!(bd["type"], "Int64", "{at}");
            let rebirth = d.metric("Node Control/Rebirth").unwrap_or_else(|| panic!("NBIRTH without Rebirth: {at}"));
            assert_eq!((rebirth["type"].as_str(), rebirth["value"].as_bool()), (Some("Boolean"), Some(false)), "{at}");
            assert!(rebirth.get("alias").is_none_or(|a| a.is_null()), "Rebirth has no alias: {at}");
            r.nbirths.push(d.bd_seq().unwrap());
            born.clear();
            expect = Some(1);
            continue;
        }
        let want = expect.unwrap_or_else(|| panic!("a message before any NBIRTH: {at}"));
        assert_eq!(seq, want, "seq continues by one: {at}");
        if seq == 255 {
            r.wraps += 1;
        }
        expect = Some((seq + 1) % 256);
        let dev = d.device.clone().unwrap_or_default();
        match d.kind.as_str() {
            "DBIRTH" => {
                for m in d.metrics() {
                    let (name, alias) = (m["name"].as_str().expect("birth metric name"), num(&m["alias"]).expect("birth alias"));
                    assert!(m["type"].is_string(), "birth datatype: {at}");
                    names.insert((dev.clone(), alias), name.to_string());
                }
                born.insert(dev);
            }
            "DDEATH" => {
                born.remove(&dev);
                r.ddeaths.push(dev);
            }
            "DDATA" => {
                assert!(born.contains(&dev), "DDATA before its DBIRTH in this session: {at}");
                for m in d.metrics() {
                    assert!(m.get("name").is_none_or(|n| n.is_null()), "DATA metrics by alias only: {at}");
                    let alias = num(&m["alias"]).expect("alias");
                    let tag = names.get(&(dev.clone(), alias)).unwrap_or_else(|| panic!("alias {alias} not in the DBIRTH: {at}"));
                    r.values.push(Seen {
                        device: dev.clone(),
                        tag: tag.clone(),
                        relais_seq: prop(m, "relais_seq").and_then(num).expect("relais_seq"),
                        value: m["value"].clone(),
                        historical: m["isHistorical"].as_bool().unwrap_or(false),
                        quality: prop(m, "Quality").and_then(|q| q.as_i64()),
                    });
                }
            }
            "NDATA" => {
                for m in d.metrics() {
                    r.events.push(prop(m, "relais_seq").and_then(num).expect("event relais_seq"));
                }
            }
            other => panic!("unexpected message type {other}: {at}"),
        }
    }
    r
}
