//! The simulator's config read through the one config reader: every wrong
//! value is reported, each with its `file:line:col` and key.

use std::path::Path;

use super::SimConfig;

const TEXT: &str = r#"[sim]
tick = "0s"

[opcua]
listen = "localhost"
security = ["Basic256Sha256", "bogus"]

[[station]]
name = "press"
listen = "127.0.0.1:15020"
unit_id = 300
tick = "fast"
unmapped = "zeros"
faults = { delay = "soon", exceptions = [{ table = "holding", start = 70000, count = 0, code = 2 }] }

  [[station.tag]]
  name = "force"
  table = "holding"
  address = 70000
  signal = { kind = "tick" }

  [[station.tag]]
  name = "flag"
  table = "holding"
  address = 1
  bit = 16
  signal = { kind = "tick" }

  [[station.tag]]
  name = "wave"
  table = "input"
  address = 2
  signal = { kind = "sine", amplitude = 1.0, period = "0s" }
"#;

#[test]
fn every_wrong_value_is_reported_with_its_place_and_key() {
    let Err(e) = SimConfig::parse(TEXT, "sim.toml", Path::new(".")) else { panic!("accepted") };
    let got: Vec<String> = e.0.iter().map(|e| format!("{}:{}:{}: {}: {}", e.file, e.line, e.col, e.key, e.message)).collect();
    let want = [
        "sim.toml:2:8: sim / tick: \"0s\" is too short; the minimum is 1ms",
        "sim.toml:5:10: opcua / listen: \"localhost\" is not an address like \"127.0.0.1:4840\"",
        "sim.toml:6:12: opcua / security: unknown security \"bogus\"; expected \"None\", \"Basic256Sha256\", \"Aes128Sha256RsaOaep\" or \"Aes256Sha256RsaPss\"",
        "sim.toml:11:11: station \"press\" / unit_id: 300 is out of range; expected 0..=255",
        "sim.toml:12:8: station \"press\" / tick: invalid duration \"fast\"",
        "sim.toml:13:12: station \"press\" / unmapped: unknown unmapped \"zeros\"; expected \"zero\" or \"exception\"",
        "sim.toml:14:20: station \"press\" / faults / delay: invalid duration \"soon\"",
        "sim.toml:14:71: station \"press\" / faults / exceptions / start: 70000 is out of range; expected 0..=65535",
        "sim.toml:14:86: station \"press\" / faults / exceptions / count: 0 is out of range; expected 1..=65536",
        "sim.toml:19:13: station \"press\" / tag \"force\" / address: 70000 is out of range; expected 0..=65535",
        "sim.toml:26:9: station \"press\" / tag \"flag\" / bit: 16 is out of range; expected 0..=15",
        "sim.toml:33:12: station \"press\" / tag \"wave\" / signal / period: period must be above 0",
    ];
    assert_eq!(got.len(), want.len(), "{got:#?}");
    for (g, w) in got.iter().zip(want) {
        assert!(g.starts_with(w), "{g:?} does not start with {w:?}");
    }
}
