//! Address plausibility warnings (issue 9 item 18): a config that is valid but
//! most likely reads the wrong registers is warned in `relais check` (and at
//! start, from the same list), with the line and the tag.

use std::path::Path;
use std::process::Command;

use relais::config::Config;

const DEVICE: &str = r#"[gateway]
id = "g"

[[device]]
name = "meter"
protocol = "modbus-tcp"
endpoint = "127.0.0.1:5020"

  [[device.tag]]
  name = "voltage"
  table = "holding"
  address = 0
  type = "f32"

  [[device.tag]]
  name = "current"
  table = "holding"
  address = 2
  type = "f32"

  [[device.tag]]
  name = "power"
  table = "holding"
  address = 5
  type = "f32"

  [[device.tag]]
  name = "energy"
  table = "holding"
  address = 8
  type = "u64"

  [[device.tag]]
  name = "setpoint"
  table = "holding"
  address = 40001

  [[device.tag]]
  name = "flow"
  table = "input"
  address = 30010
"#;

#[test]
fn modicon_lookalike_and_odd_wide_address_are_warned_with_line_and_neighbours() {
    let cfg = Config::parse(DEVICE, "lint.toml", Path::new(".")).unwrap_or_else(|e| panic!("{e}"));
    let w: Vec<String> = cfg.warnings.iter().map(|w| w.to_string()).collect();
    let modicon = w.iter().find(|w| w.contains("tag \"setpoint\"")).unwrap_or_else(|| panic!("no Modicon warning: {w:#?}"));
    assert!(modicon.starts_with("lint.toml:36:"), "{modicon}");
    assert!(modicon.contains("Modicon reference 40001") && modicon.contains("holding register 0"), "{modicon}");
    let input = w.iter().find(|w| w.contains("tag \"flow\"")).unwrap_or_else(|| panic!("no input-table warning: {w:#?}"));
    assert!(input.contains("input register 9"), "{input}");
    let odd = w.iter().find(|w| w.contains("tag \"power\"")).unwrap_or_else(|| panic!("no odd-address warning: {w:#?}"));
    assert!(odd.starts_with("lint.toml:24:"), "{odd}");
    assert!(odd.contains("odd address 5") && odd.contains("\"current\" (f32 at 2)") && odd.contains("\"energy\" (u64 at 8)"), "{odd}");
    assert_eq!(w.iter().filter(|w| w.contains("device \"meter\"")).count(), 3, "only these three: {w:#?}");
    // Aligned tags, a coil at 1 and a plain holding register below 40001 are fine.
    let fine = DEVICE
        .replace("address = 5", "address = 4")
        .replace("address = 40001", "address = 39999")
        .replace("address = 30010", "address = 10");
    let cfg = Config::parse(&fine, "lint.toml", Path::new(".")).unwrap();
    assert!(cfg.warnings.iter().all(|w| !w.to_string().contains("device \"meter\"")), "{:?}", cfg.warnings);
}

#[test]
fn check_prints_the_address_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("lint.toml");
    std::fs::write(&p, DEVICE).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_relais")).args(["check", "--config"]).arg(&p).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "warnings are not errors: {}", String::from_utf8_lossy(&out.stderr));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("warning: ") && text.contains("Modicon reference 40001"), "{text}");
    assert!(text.contains("odd address 5"), "{text}");
}

/// `relais probe modbus` against the simulator: a CDAB float (4.2146) at
/// holding 2..3. At the right (even) address the order is suggested; one
/// register off, at 3, ABCD also looks plausible (it shares the high word), so
/// the probe says the address may be off by one and suggests no byte order.
#[tokio::test]
async fn probe_suggests_no_byte_order_that_is_only_plausible_one_register_off() {
    let port = crate::common::free_port();
    let s = crate::modbus::sim(&crate::modbus::bare_station("meter", port, 1)).await;
    s.station("meter").unwrap().write_registers(0, &[0x0000, 0x0000, 0xDDE5, 0x4086, 0x1234, 0x0000]).unwrap();
    let probe = |address: u16| {
        let ep = format!("127.0.0.1:{port}");
        async move {
            let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_relais"))
                .args(["probe", "modbus", "--endpoint", &ep, "--address", &address.to_string(), "--count", "2"])
                .output()
                .await
                .unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8_lossy(&out.stdout).to_string()
        }
    };
    let right = probe(2).await;
    let line = right.lines().find(|l| l.starts_with("f32 at 2:")).unwrap_or_else(|| panic!("no hint:\n{right}"));
    assert!(line.contains("CDAB gives 4.2145867347717285") && !line.contains("off by one"), "{line}");
    let off = probe(3).await;
    let line = off.lines().find(|l| l.starts_with("f32 at 3:")).unwrap_or_else(|| panic!("no hint:\n{off}"));
    assert!(line.contains("may be off by one") && line.contains("no byte order is suggested"), "{line}");
    assert!(line.contains("at 2 (one register earlier) CDAB gives 4.2145867347717285"), "{line}");
    let off = probe(1).await;
    let line = off.lines().find(|l| l.starts_with("f32 at 1:")).unwrap_or_else(|| panic!("no hint:\n{off}"));
    assert!(line.contains("may be off by one") && line.contains("at 2 (one register later) CDAB"), "{line}");
}
