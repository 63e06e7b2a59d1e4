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

/// A station replaying column `v` of `file` into a `ty` holding register.
fn replay(dir: &Path, file: &str, ty: &str, extra: &str) -> Result<SimConfig, crate::diag::ConfigErrors> {
    let text = format!(
        "[[station]]\nname = \"p\"\nlisten = \"127.0.0.1:15020\"\n\n  [[station.tag]]\n  name = \"v\"\n  table = \"holding\"\n  address = 0\n  type = \"{ty}\"\n  signal = {{ kind = \"csv\", file = \"{file}\", column = \"v\"{extra} }}\n"
    );
    SimConfig::parse(&text, "sim.toml", dir)
}

/// Bugs: a CSV replay read only `;` files (with `,` the error listed "x,v"
/// as one column); NaN, empty and text rows were skipped and 70000 or -3
/// clamped into a u16 silently. The delimiter is detected (and named in
/// errors), and such a file is refused at load with its line and value.
#[test]
fn csv_replay_detects_the_delimiter_and_refuses_rows_it_cannot_serve() {
    let dir = tempfile::tempdir().unwrap();
    let w = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
    w("comma.csv", "x,v\n1,10\n2,20\n");
    w("semi.csv", "x;v\n1;10\n");
    w("nan.csv", "x,v\n1,10\n2,NaN\n3,30\n");
    w("empty.csv", "x,v\n1,10\n2,\n");
    w("big.csv", "x,v\n1,10\n2,70000\n");
    w("neg.csv", "x,v\n1,-3\n");
    let msg = |r: Result<SimConfig, crate::diag::ConfigErrors>| r.err().map(|e| e.0[0].message.clone()).unwrap_or_default();
    assert!(replay(dir.path(), "comma.csv", "u16", "").is_ok(), "comma detected");
    assert!(replay(dir.path(), "semi.csv", "u16", "").is_ok(), "semicolon detected");
    let e = msg(replay(dir.path(), "comma.csv", "u16", ", delimiter = \";\""));
    assert!(e.contains("column \"v\" not found") && e.contains("delimiter ';', configured") && e.contains("\"x,v\""), "{e}");
    let e = msg(replay(dir.path(), "nan.csv", "u16", ""));
    assert!(e.contains("nan.csv line 3: column \"v\" holds \"NaN\", not a number"), "{e}");
    let e = msg(replay(dir.path(), "empty.csv", "u16", ""));
    assert!(e.contains("empty.csv line 3: column \"v\" holds \"\""), "{e}");
    let e = msg(replay(dir.path(), "big.csv", "u16", ""));
    assert!(e.contains("big.csv line 3: column \"v\" holds 70000, which does not fit the tag's type u16"), "{e}");
    let e = msg(replay(dir.path(), "neg.csv", "u16", ""));
    assert!(e.contains("neg.csv line 2: column \"v\" holds -3"), "{e}");
    assert!(replay(dir.path(), "big.csv", "u32", "").is_ok(), "70000 fits a u32");
    assert!(replay(dir.path(), "neg.csv", "i16", "").is_ok(), "-3 fits an i16");
}
