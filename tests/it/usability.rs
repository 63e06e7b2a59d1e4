//! The first hour with relais (issue 10): configuration errors that help
//! ("did you mean", the keys of the device's own protocol, plain words for
//! types, one error for `[[devices]]`), the topic collision warning for
//! gateways sharing a broker, `relais check FILE`, and the probes' hints
//! and values against the simulator (Modbus TCP and RTU, OPC UA).

use std::path::Path;
use std::process::Command;

use relais::config::Config;

const BASE: &str = "[gateway]\nid = \"line5-edge01\"\n";

const TCP_DEVICE: &str = "[[device]]\nname = \"pump1\"\nprotocol = \"modbus-tcp\"\nendpoint = \"127.0.0.1:5020\"\n";

fn errors(text: &str) -> Vec<String> {
    match Config::parse(text, "t.toml", Path::new(".")) {
        Ok(_) => panic!("expected errors in:\n{text}"),
        Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
    }
}

fn warnings(text: &str) -> Vec<String> {
    let cfg = Config::parse(text, "t.toml", Path::new(".")).unwrap_or_else(|e| panic!("{e}"));
    cfg.warnings.iter().map(|w| w.to_string()).collect()
}

fn relais(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_relais")).args(args).output().unwrap()
}

#[test]
fn unknown_tables_and_keys_get_a_did_you_mean() {
    // [[device.tags]]: a table, with `tag` suggested and listed.
    let t = format!("{BASE}{TCP_DEVICE}[[device.tags]]\nname = \"t\"\naddress = 0\n");
    let errs = errors(&t);
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(errs[0].contains("t.toml:7:10:") && errs[0].contains("unknown table `tags`; did you mean `tag`?"), "{errs:#?}");
    // The list holds the keys of a Modbus TCP device and its tag list, not the serial line's.
    assert!(errs[0].contains("reconnect_max, tag"), "{errs:#?}");
    for serial in ["baud_rate", "parity", "stop_bits", "port"] {
        assert!(!errs[0].contains(serial), "{serial} listed for a TCP device: {errs:#?}");
    }
    // An RTU device lists its serial keys and not `endpoint`.
    let rtu = "[[device]]\nname = \"m\"\nprotocol = \"modbus-rtu\"\nport = \"/dev/ttyUSB0\"\nbaudrate = 9600\n";
    let errs = errors(&format!("{BASE}{rtu}"));
    let e = errs.iter().find(|e| e.contains("baudrate")).unwrap_or_else(|| panic!("{errs:#?}"));
    assert!(e.contains("did you mean `baud_rate`?") && e.contains("parity") && !e.contains("endpoint"), "{e}");
    // `units` in a tag.
    let t = format!("{BASE}{TCP_DEVICE}[[device.tag]]\nname = \"t\"\naddress = 0\nunits = \"Cel\"\n");
    let errs = errors(&t);
    assert!(errs.iter().any(|e| e.contains("unknown key `units`; did you mean `unit`?")), "{errs:#?}");
    // An OPC UA device lists `tag` too.
    let ua = "[[device]]\nname = \"p\"\nprotocol = \"opcua\"\nendpoint = \"opc.tcp://127.0.0.1:4840\"\n[[device.tags]]\nname = \"x\"\n";
    let errs = errors(&format!("{BASE}{ua}"));
    assert!(errs.iter().any(|e| e.contains("did you mean `tag`?")), "{errs:#?}");
    // Nothing close: no suggestion.
    let errs = errors(&format!("{BASE}{TCP_DEVICE}colour = \"red\"\n"));
    assert!(errs[0].contains("unknown key `colour`; expected one of"), "{errs:#?}");
}

#[test]
fn devices_with_an_s_is_one_error() {
    let t = format!("{BASE}[[devices]]\nname = \"pump1\"\nprotocol = \"modbus-tcp\"\nendpoint = \"127.0.0.1:5020\"\n");
    let errs = errors(&t);
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(errs[0].contains("unknown section or key `devices`; did you mean [[device]]?"), "{errs:#?}");
    assert!(!errs[0].contains("two brackets"), "{errs:#?}");
    let errs = errors(&format!("{BASE}[buffers]\nmax_age = \"1d\"\n"));
    assert!(errs[0].contains("did you mean [buffer]?"), "{errs:#?}");
}

#[test]
fn types_are_named_in_plain_words() {
    let t = format!("{BASE}{TCP_DEVICE}unit_id = \"one\"\ntimeout = 5\n");
    let errs = errors(&t);
    let unit = errs.iter().find(|e| e.contains("unit_id")).unwrap_or_else(|| panic!("{errs:#?}"));
    assert!(unit.contains("expected an integer, found the text \"one\""), "{unit}");
    let timeout = errs.iter().find(|e| e.contains("/ timeout")).unwrap_or_else(|| panic!("{errs:#?}"));
    assert!(timeout.contains("expected a duration like \"500ms\"") && timeout.contains("found the integer 5"), "{timeout}");
    for e in &errs {
        assert!(!e.contains("i64") && !e.contains("string \""), "jargon: {e}");
    }
}

#[test]
fn topics_without_the_gateway_collide_and_check_says_so() {
    let sink = |topic: &str| format!("[[sink]]\nname = \"b\"\ntype = \"mqtt\"\nurl = \"mqtt://127.0.0.1:1883\"\ntopic = \"{topic}\"\n");
    let w = warnings(&format!("{BASE}{TCP_DEVICE}{}", sink("icam/line5/{device}/{tag}")));
    let hit = w.iter().find(|w| w.contains("no {gateway} level")).unwrap_or_else(|| panic!("no collision warning: {w:#?}"));
    assert!(hit.contains("t.toml:") && hit.contains("\"icam/line5/{gateway}/{device}/{tag}\""), "{hit}");
    for ok in ["icam/line5/{gateway}/{device}/{tag}", "icam/line5-edge01/{device}/{tag}"] {
        let w = warnings(&format!("{BASE}{TCP_DEVICE}{}", sink(ok)));
        assert!(!w.iter().any(|w| w.contains("{gateway}")), "{ok}: {w:#?}");
    }
    // The batch topic is the one published with json-batch.
    let batch = format!("{}format = \"json-batch\"\nbatch_topic = \"icam/{{device}}\"\n", sink("icam/{gateway}/{device}/{tag}"));
    let w = warnings(&format!("{BASE}{TCP_DEVICE}{batch}"));
    assert!(w.iter().any(|w| w.contains("batch_topic \"icam/{device}\" has no {gateway} level")), "{w:#?}");
    // relais check prints it, and accepts the file without --config.
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("classroom.toml");
    std::fs::write(&f, format!("{BASE}{TCP_DEVICE}{}", sink("icam/line5/{device}/{tag}"))).unwrap();
    let out = relais(&["check", f.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("warning: ") && stdout.contains("no {gateway} level"), "{stdout}");
    let with_flag = relais(&["check", "--config", f.to_str().unwrap()]);
    assert_eq!(with_flag.stdout, out.stdout);
    let both = relais(&["check", "--config", f.to_str().unwrap(), f.to_str().unwrap()]);
    assert_eq!(both.status.code(), Some(2), "FILE and --config together are refused");
}

#[test]
fn the_shipped_configs_put_the_gateway_in_their_topics() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for f in ["config/demo.toml", "deploy/relais.toml"] {
        let cfg = Config::load(&root.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert!(!cfg.warnings.iter().any(|w| w.message.contains("{gateway}")), "{f}: {:#?}", cfg.warnings);
    }
}

/// `relais probe modbus` with a unit id the simulator does not serve: the
/// simulator answers 0x0B like a gateway, and the probe says what to check.
#[tokio::test]
async fn probe_explains_exception_0x0b() {
    let port = crate::common::free_port();
    let _s = crate::modbus::sim(&crate::modbus::bare_station("meter", port, 1)).await;
    let ep = format!("127.0.0.1:{port}");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_relais"))
        .args(["probe", "modbus", "--endpoint", &ep, "--unit", "7", "--address", "0"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("exception 0x0B"), "{err}");
    assert!(err.contains("hint: ") && err.contains("as unit 7") && err.contains("check --unit"), "{err}");
    // The right unit reads.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_relais"))
        .args(["probe", "modbus", "--endpoint", &ep, "--unit", "1", "--address", "0"])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn probe_hint_for_0x0a_names_the_gateway_path() {
    use relais::sources::modbus::answer::ReadError;
    use relais::sources::modbus::probe::error_hint;
    let h = error_hint(&ReadError::Exception(0x0A), "10.0.0.5:502", 3, false).unwrap();
    assert!(h.contains("no path to unit 3") && h.contains("routing"), "{h}");
    assert!(error_hint(&ReadError::Comm("refused".into()), "x", 1, false).is_none());
    let serial = error_hint(&ReadError::Timeout(std::time::Duration::from_secs(1)), "/dev/ttyUSB0", 2, true).unwrap();
    assert!(serial.contains("--baud") && serial.contains("--parity"), "{serial}");
}

/// `relais probe modbus --serial` reads a unit on the simulator's
/// pseudo-terminal (Modbus RTU).
#[tokio::test]
async fn probe_reads_an_rtu_unit_on_a_serial_port() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("rtu0");
    let station = format!("[[station]]\nname = \"meter\"\nserial = \"{}\"\nunit_id = 4\nlockstep = true\n", link.display());
    let s = crate::modbus::sim(&station).await;
    s.station("meter").unwrap().write_registers(0, &[0xDDE5, 0x4086]).unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_relais"))
        .args(["probe", "modbus", "--serial", link.to_str().unwrap(), "--baud", "115200", "--unit", "4", "--address", "0"])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("0xDDE5") && stdout.contains("CDAB gives 4.2145867347717285"), "{stdout}");
    // --endpoint and --serial together are refused.
    let out = relais(&["probe", "modbus", "--serial", "/dev/null", "--endpoint", "127.0.0.1:502", "--address", "0"]);
    assert_eq!(out.status.code(), Some(2));
}

/// `relais probe opcua` reads one value of the simulator's OPC UA server with
/// its StatusCode and both timestamps.
#[tokio::test]
async fn probe_opcua_reads_a_value_with_status_and_timestamps() {
    let pki = tempfile::tempdir().unwrap();
    let station = "[[station]]\nname = \"press\"\ntick = \"200ms\"\n[[station.tag]]\nname = \"force\"\ntable = \"holding\"\naddress = 0\ntype = \"f32\"\nsignal = { kind = \"constant\", value = 1.5 }\n";
    let sim = crate::opcua::ua_sim(station, "", pki.path()).await;
    let ep = sim.opcua().unwrap().endpoint();
    let cpki = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_relais"))
        .args(["probe", "opcua", &ep, "--node", "nsu=urn:relais:sim;s=press.force", "--pki-dir"])
        .arg(cpki.path())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("nsu=urn:relais:sim;s=press.force"), "{stdout}");
    assert!(stdout.contains("value:            1.5 (Double)"), "{stdout}");
    assert!(stdout.contains("status:           Good (0x00000000)"), "{stdout}");
    let year = |label: &str| stdout.lines().find(|l| l.contains(label)).is_some_and(|l| l.contains(": 20") && l.ends_with('Z'));
    assert!(year("source timestamp:") && year("server timestamp:"), "{stdout}");
    // A node that does not exist: exit 1 with the server's StatusCode.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_relais"))
        .args(["probe", "opcua", &ep, "--node", "nsu=urn:relais:sim;s=press.nosuch", "--pki-dir"])
        .arg(cpki.path())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("status:           BadNodeIdUnknown (0x80340000)"), "{stdout}");
    assert_eq!(out.status.code(), Some(1), "a Bad StatusCode is a failed read");
}
