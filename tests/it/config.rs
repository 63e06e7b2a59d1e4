//! Configuration errors: one test per kind of mistake, each checking that the
//! message names the line and the key. Also `relais check` exit codes.

use std::path::Path;
use std::process::Command;

use relais::config::{Config, DeviceConfig, SinkConfig};

const GOOD: &str = r#"
[gateway]
id = "line5-edge01"
data_dir = "./relais-data"

[buffer]
max_bytes = "1GiB"
max_age = "7d"
durability = "normal"

[[device]]
name = "pump1"
protocol = "modbus-tcp"
endpoint = "127.0.0.1:5020"
unit_id = 1
timeout = "1s"
poll_interval = "1s"
byte_order = "ABCD"

  [[device.tag]]
  name = "temperature"
  table = "holding"
  address = 2
  type = "f32"
  byte_order = "CDAB"
  scale = 1.0
  offset = 0.0
  unit = "Cel"
  poll_interval = "500ms"

  [[device.tag]]
  name = "alarm"
  table = "holding"
  address = 10
  bit = 3

[[sink]]
name = "plant-broker"
type = "mqtt"
url = "mqtt://127.0.0.1:1883"
client_id = "relais-line5"
topic = "icam/line5/{device}/{tag}"
qos = 1
format = "json"
"#;

fn errors(text: &str) -> Vec<String> {
    match Config::parse(text, "test.toml", Path::new(".")) {
        Ok(_) => panic!("config should be rejected:\n{text}"),
        Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
    }
}

/// Replaces the first occurrence of `from` in the good config.
fn with(from: &str, to: &str) -> String {
    assert!(GOOD.contains(from), "{from:?} not in the good config");
    GOOD.replacen(from, to, 1)
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).expect("needle present") + 1
}

fn assert_one(text: &str, needle_line: &str, key: &str, words: &str) {
    let errs = errors(text);
    let line = line_of(text, needle_line);
    assert!(
        errs.iter().any(|e| e.starts_with(&format!("test.toml:{line}:")) && e.contains(key) && e.contains(words)),
        "expected an error on line {line} naming {key:?} and saying {words:?}; got:\n{}",
        errs.join("\n")
    );
}

#[test]
fn the_issue_example_is_valid() {
    let cfg = Config::parse(GOOD, "test.toml", Path::new(".")).unwrap();
    let DeviceConfig::Modbus(d) = &cfg.devices[0] else { panic!("not modbus") };
    assert_eq!(d.tags.len(), 2);
    assert_eq!(d.tags[0].byte_order.as_str(), "CDAB", "tag order overrides the device's");
    assert_eq!(d.tags[1].byte_order.as_str(), "ABCD", "device order is the default");
    assert_eq!(d.tags[0].poll_interval.as_millis(), 500);
    assert_eq!(d.tags[1].poll_interval.as_millis(), 1000);
    let SinkConfig::Mqtt(m) = &cfg.sinks[0] else { panic!("an MQTT sink") };
    assert_eq!(m.status_topic, "icam/line5/relais/line5-edge01/status");
    assert_eq!(cfg.buffer.max_bytes, 1 << 30);
}

#[test]
fn f32_on_a_coil() {
    let t = with(
        "  name = \"alarm\"\n  table = \"holding\"\n  address = 10\n  bit = 3",
        "  name = \"alarm\"\n  table = \"coil\"\n  address = 10\n  type = \"f32\" # here",
    );
    assert_one(&t, "# here", "tag \"alarm\" / type", "cannot be read from the coil table");
}

#[test]
fn unknown_byte_order() {
    let t = with("byte_order = \"CDAB\"", "byte_order = \"CBAD\"");
    assert_one(&t, "CBAD", "tag \"temperature\" / byte_order", "unknown byte order \"CBAD\"");
}

#[test]
fn duplicated_tag() {
    let t = with("name = \"alarm\"", "name = \"temperature\"");
    let errs = errors(&t);
    let second = t.lines().enumerate().filter(|(_, l)| l.contains("name = \"temperature\"")).nth(1).unwrap().0 + 1;
    let first = line_of(&t, "name = \"temperature\"");
    assert!(
        errs.iter().any(|e| e.starts_with(&format!("test.toml:{second}:")) && e.contains(&format!("first defined on line {first}"))),
        "{errs:?}"
    );
}

#[test]
fn address_past_65535() {
    let t = with("address = 2", "address = 65536");
    assert_one(&t, "address = 65536", "tag \"temperature\" / address", "out of range");
    let t = with("address = 2", "address = 65535");
    assert_one(&t, "address = 65535", "tag \"temperature\" / address", "runs past 65535");
}

#[test]
fn unknown_topic_placeholder() {
    let t = with("{device}/{tag}", "{device}/{tagname}");
    assert_one(&t, "{tagname}", "sink \"plant-broker\" / topic", "unknown placeholder {tagname}");
}

#[test]
fn unknown_key_is_named_with_its_line() {
    let t = with("timeout = \"1s\"", "timout = \"1s\"");
    assert_one(&t, "timout", "device \"pump1\"", "unknown key `timout`; did you mean `timeout`?");
}

#[test]
fn an_unknown_device_key_does_not_hide_tag_errors() {
    let t = with("timeout = \"1s\"", "timout = \"1s\"").replacen("byte_order = \"CDAB\"", "byte_order = \"CBAD\"", 1);
    let errs = errors(&t);
    assert!(errs.iter().any(|e| e.contains("timout")), "{errs:?}");
    assert!(errs.iter().any(|e| e.contains("CBAD")), "tag errors are still reported: {errs:?}");
    // A wrong type in the device table does not hide them either.
    let t = with("unit_id = 1", "unit_id = \"one\"").replacen("byte_order = \"CDAB\"", "byte_order = \"CBAD\"", 1);
    let errs = errors(&t);
    assert!(errs.iter().any(|e| e.contains("unit_id")) && errs.iter().any(|e| e.contains("CBAD")), "{errs:?}");
}

#[test]
fn reserved_names_and_default_status_topic() {
    let t = with("name = \"pump1\"", "name = \"_relais\"");
    assert_one(&t, "_relais", "name", "reserved");
    let t = GOOD.replacen("topic = \"icam/line5/{device}/{tag}\"\n", "", 1);
    let cfg = Config::parse(&t, "test.toml", Path::new(".")).unwrap();
    let SinkConfig::Mqtt(m) = &cfg.sinks[0] else { panic!("an MQTT sink") };
    assert_eq!(m.status_topic, "relais/line5-edge01/status");
}

#[test]
fn bad_duration_and_size() {
    let t = with("poll_interval = \"500ms\"", "poll_interval = \"500 parsecs\"");
    assert_one(&t, "500 parsecs", "poll_interval", "invalid duration");
    let t = with("max_bytes = \"1GiB\"", "max_bytes = \"1GiBi\"");
    assert_one(&t, "1GiBi", "buffer / max_bytes", "unknown size unit");
}

#[test]
fn wrong_value_type() {
    let t = with("unit_id = 1", "unit_id = \"one\"");
    assert_one(&t, "unit_id = \"one\"", "device \"pump1\" / unit_id", "invalid type");
}

#[test]
fn unit_id_range_and_bit_rules() {
    let t = with("unit_id = 1", "unit_id = 256");
    assert_one(&t, "unit_id = 256", "unit_id", "0..=255");
    let t = with("bit = 3", "bit = 16");
    assert_one(&t, "bit = 16", "bit", "0..=15");
}

#[test]
fn qos_2_and_unknown_protocol_and_sink_type() {
    let t = with("qos = 1", "qos = 2");
    assert_one(&t, "qos = 2", "qos", "not supported");
    let t = with("protocol = \"modbus-tcp\"", "protocol = \"modbus-tpc\"");
    assert_one(&t, "modbus-tpc", "protocol", "unknown protocol");
    let t = with("type = \"mqtt\"", "type = \"mqttt\"");
    assert_one(&t, "mqttt", "type", "unknown sink type");
}

#[test]
fn credentials_in_url_are_refused() {
    let t = with("mqtt://127.0.0.1:1883", "mqtt://user:secret@127.0.0.1:1883");
    let errs = errors(&t);
    assert!(errs.iter().any(|e| e.contains("carries credentials")), "{errs:?}");
}

#[test]
fn every_error_is_listed_not_only_the_first() {
    let t = with("byte_order = \"CDAB\"", "byte_order = \"XYZW\"")
        .replacen("{device}/{tag}", "{device}/{tg}", 1)
        .replacen("max_age = \"7d\"", "max_age = \"7 weeks or so\"", 1)
        .replacen("bit = 3", "bit = 99", 1);
    let errs = errors(&t);
    assert!(errs.len() >= 4, "expected 4 errors, got {}:\n{}", errs.len(), errs.join("\n"));
    // Sorted by line.
    let lines: Vec<usize> = errs.iter().map(|e| e.split(':').nth(1).unwrap().parse().unwrap()).collect();
    assert!(lines.windows(2).all(|w| w[0] <= w[1]), "{lines:?}");
}

#[test]
fn syntax_error_has_a_line() {
    let t = GOOD.replacen("unit_id = 1", "unit_id = = 1", 1);
    let errs = errors(&t);
    let line = line_of(&t, "unit_id = = 1");
    assert!(errs.iter().any(|e| e.starts_with(&format!("test.toml:{line}:"))), "{errs:?}");
}

#[test]
fn missing_gateway_and_modicon_addresses() {
    let t = GOOD.replacen("[gateway]\nid = \"line5-edge01\"", "[gateway]", 1);
    let errs = errors(&t);
    assert!(errs.iter().any(|e| e.contains("missing field `id`")), "{errs:?}");
    // "40003" = holding register 2; a mismatching table is an error.
    let t = with("  table = \"holding\"\n  address = 2\n", "  address = \"40003\"\n");
    let cfg = Config::parse(&t, "test.toml", Path::new(".")).unwrap();
    let DeviceConfig::Modbus(d) = &cfg.devices[0] else { panic!("not modbus") };
    assert_eq!((d.tags[0].table.as_str(), d.tags[0].address), ("holding", 2));
    let t = with("  table = \"holding\"\n  address = 2\n", "  table = \"input\"\n  address = \"40003\"\n");
    assert_one(&t, "40003", "address", "is in the holding table");
}

#[test]
fn json_batch_needs_a_topic_without_tag_in_the_middle() {
    let t = with("topic = \"icam/line5/{device}/{tag}\"", "topic = \"icam/{tag}/{device}\"").replacen(
        "format = \"json\"",
        "format = \"json-batch\"",
        1,
    );
    let errs = errors(&t);
    assert!(errs.iter().any(|e| e.contains("batch_topic")), "{errs:?}");
}

#[test]
fn check_exit_codes_and_plan() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(&good, GOOD).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_relais")).args(["check", "--config"]).arg(&good).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let plan = String::from_utf8_lossy(&out.stdout);
    assert!(plan.contains("FC3 holding        start     2 count    2  tags: temperature"), "{plan}");
    assert!(plan.contains("FC3 holding        start    10 count    1  tags: alarm"), "{plan}");
    assert!(plan.contains("pump1/temperature -> icam/line5/pump1/temperature"), "{plan}");
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, with("byte_order = \"CDAB\"", "byte_order = \"CBAD\"")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_relais")).args(["check", "--config"]).arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml:") && err.contains("CBAD"), "{err}");
}

#[test]
fn shipped_simulator_config_is_valid() {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/sim-demo.toml");
    let cfg = relais::sim::SimConfig::load(&p).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.stations.len(), 3);
}

#[test]
fn shipped_configs_are_valid() {
    for f in [
        "config/demo.toml",
        "src/sources/modbus/sample.toml",
        "src/sinks/mqtt/sample.toml",
        "src/sinks/nats/sample.toml",
        "config/sink-nats.toml",
        "src/sources/file/sample.toml",
        "src/sources/mqtt_in/sample.toml",
        "src/processors/commands/sample.toml",
        "src/sinks/http/sample.toml",
        "src/sinks/postgres/sample.toml",
        "config/sink-postgres.toml",
        "src/component/checks/sample.toml",
    ] {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(f);
        if let Err(e) = Config::load(&p) {
            panic!("{f} is invalid:\n{e}");
        }
    }
    // The HTTP sample needs the token file its comment says to create.
    let dir = tempfile::tempdir().unwrap();
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/sources/http/sample.toml");
    std::fs::copy(&sample, dir.path().join("sample.toml")).unwrap();
    let e = Config::load(&dir.path().join("sample.toml")).unwrap_err().to_string();
    assert!(e.contains("token_file: cannot read") && e.contains(&dir.path().join("lab.token").display().to_string()), "{e}");
    assert!(!e.contains("set token_file (or token_env)"), "token_file is set: only the read error is reported\n{e}");
    std::fs::write(dir.path().join("lab.token"), "3f1c9a0e7b5d42c8a6e1f0b9d8c7a6e5\n").unwrap();
    if let Err(e) = Config::load(&dir.path().join("sample.toml")) {
        panic!("src/sources/http/sample.toml is invalid:\n{e}");
    }
}

#[test]
fn wrong_types_do_not_hide_other_errors_and_say_what_to_write() {
    let t = GOOD.replacen("max_age = \"7d\"", "max_age = 7", 1).replacen("durability = \"normal\"", "durability = \"ful\"", 1).replacen(
        "poll_interval = \"1s\"",
        "poll_interval = 1",
        1,
    );
    let errs = errors(&t);
    assert!(errs.iter().any(|e| e.contains("buffer / max_age") && e.contains("durations are text with a unit")), "{errs:?}");
    assert!(errs.iter().any(|e| e.contains("buffer / durability") && e.contains("\"ful\"")), "{errs:?}");
    assert!(errs.iter().any(|e| e.contains("device \"pump1\" / poll_interval") && e.contains("\"1s\"")), "{errs:?}");
    let t = with("address = 2", "address = 1.0");
    assert_one(&t, "address = 1.0", "tag \"temperature\" / address", "a Modicon reference string such as \"40001\"");
    let t = GOOD.replacen("  [[device.tag]]\n  name = \"alarm\"", "  [device.tag]\n  name = \"alarm\"", 1).replacen(
        "  [[device.tag]]\n  name = \"temperature\"",
        "  [device.tagx]\n  name = \"temperature\"",
        1,
    );
    let errs = errors(&t);
    assert!(errs.iter().any(|e| e.contains("write [[device.tag]]") || e.contains("unknown key `tagx`")), "{errs:?}");
}

#[test]
fn mqtt_limits_and_shared_identities() {
    let t = with("qos = 1", "qos = 1\nkeep_alive = \"65536s\"");
    assert_one(&t, "65536s", "keep_alive", "5s..=65535s");
    let t = with("topic = \"icam/line5/{device}/{tag}\"", "topic = \"$SYS/{device}/{tag}\"");
    assert_one(&t, "$SYS", "topic", "reserved");
    let second = "\n[[sink]]\nname = \"copy\"\ntype = \"mqtt\"\nurl = \"mqtt://127.0.0.1:1883\"\nclient_id = \"relais-line5\"\ntopic = \"b/{device}/{tag}\"\n";
    let errs = errors(&format!("{GOOD}{second}"));
    assert!(errs.iter().any(|e| e.contains("client_id \"relais-line5\" is also used by sink \"plant-broker\"")), "{errs:?}");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("empty.pem"), "not a certificate\n").unwrap();
    let t = format!("{}\nca_file = \"empty.pem\"", GOOD.replacen("mqtt://", "mqtts://", 1));
    let errs = match Config::parse(&t, "test.toml", dir.path()) {
        Ok(_) => panic!("accepted"),
        Err(e) => e.0.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
    };
    assert!(errs.iter().any(|e| e.contains("holds no PEM certificate")), "{errs:?}");
}

#[test]
fn a_config_without_sink_is_warned() {
    let t = GOOD[..GOOD.find("[[sink]]").unwrap()].to_string();
    let cfg = Config::parse(&t, "test.toml", Path::new(".")).unwrap();
    assert!(cfg.warnings.iter().any(|w| w.message.contains("no [[sink]] configured")), "{:?}", cfg.warnings);
}

#[test]
fn b12_rtu_unit_0_is_rejected_at_load_and_serial_settings_must_agree() {
    let rtu = |name: &str, unit: u32, baud: u32| {
        format!(
            "[[device]]\nname = \"{name}\"\nprotocol = \"modbus-rtu\"\nport = \"/dev/ttyUSB0\"\nbaud_rate = {baud}\nunit_id = {unit}\n[[device.tag]]\nname = \"t\"\ntable = \"holding\"\naddress = 0\n"
        )
    };
    let t = format!("[gateway]\nid = \"g\"\n{}", rtu("a", 0, 9600));
    let errs = errors(&t);
    assert!(errs.iter().any(|e| e.contains("unit_id") && e.contains("broadcast")), "{errs:?}");
    let t = format!("[gateway]\nid = \"g\"\n{}{}", rtu("a", 1, 9600), rtu("b", 2, 19200));
    let errs = errors(&t);
    assert!(
        errs.iter().any(|e| e.contains("serial port /dev/ttyUSB0 is also used by device \"a\"") && e.contains("baud_rate 19200 vs 9600")),
        "{errs:?}"
    );
    // One port under two names (a link, as /dev/serial/by-id/… is) is one line.
    let dir = tempfile::tempdir().unwrap();
    // A character device stands for the port (a regular file is refused).
    let real = dir.path().join("ttyREAL");
    std::os::unix::fs::symlink("/dev/null", &real).unwrap();
    let link = dir.path().join("by-id-adapter");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let two = |name: &str, port: &Path, parity: &str| {
        format!(
            "[[device]]\nname = \"{name}\"\nprotocol = \"modbus-rtu\"\nport = \"{}\"\nparity = \"{parity}\"\nunit_id = 1\n[[device.tag]]\nname = \"t\"\ntable = \"holding\"\naddress = 0\n",
            port.display()
        )
    };
    let t = format!("[gateway]\nid = \"g\"\n{}{}", two("a", &real, "even"), two("b", &link, "none"));
    let errs = errors(&t);
    assert!(errs.iter().any(|e| e.contains("the same port") && e.contains("parity None vs Even")), "{errs:?}");
    // Same settings under both names: valid, one line (was an error with an empty reason).
    let t = format!("[gateway]\nid = \"g\"\n{}{}", two("a", &real, "even"), two("b", &link, "even"));
    let cfg = Config::parse(&t, "t.toml", Path::new(".")).unwrap_or_else(|e| panic!("{e}"));
    let lines: Vec<String> = cfg
        .devices
        .iter()
        .map(|d| match d {
            DeviceConfig::Modbus(m) => m.transport.line_key(&m.endpoint),
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(lines[0], lines[1], "one serial line");
    let t = "[gateway]\nid = \"g\"\n[[device]]\nname = \"a\"\nprotocol = \"modbus-rtu\"\nendpoint = \"1.2.3.4:502\"\n";
    let errs = errors(t);
    assert!(errs.iter().any(|e| e.contains("missing key `port`")), "{errs:?}");
    // TCP keeps 0 and 255 (field case B12).
    let t = GOOD.replacen("unit_id = 1", "unit_id = 0", 1);
    assert!(Config::parse(&t, "test.toml", Path::new(".")).is_ok());
}

/// Issue 8: `relais check` says where an mqtt-in source takes its device
/// from (the topic level), not just the default.
#[test]
fn check_shows_the_device_level_of_mqtt_in() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("in.toml");
    std::fs::write(
        &cfg,
        "[gateway]\nid = \"gw\"\n[[source]]\nname = \"esp\"\ntype = \"mqtt-in\"\nurl = \"mqtt://127.0.0.1:1883\"\ntopics = [\"sensors/+/data\"]\ndevice_level = 1\n\
         [[source]]\nname = \"lines\"\ntype = \"file\"\nlayout = \"long\"\ndevice_column = \"machine\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_relais")).args(["check", "--config"]).arg(&cfg).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("device from topic level 1 (default esp)"), "{text}");
    assert!(!text.contains("device esp)"), "{text}");
    assert!(text.contains("device from column \"machine\" (default lines)"), "{text}");
}

/// Issue 9: two HTTP sources on one port with a wildcard and a specific
/// address clash (the second bind would fail at run time); the same address
/// is one shared server, and other ports or families are fine.
#[test]
fn http_sources_on_one_port_with_a_wildcard_clash() {
    let src = |name: &str, listen: &str| {
        format!("[[source]]\nname = \"{name}\"\ntype = \"http\"\nlisten = \"{listen}\"\nallow_anonymous = true\n")
    };
    let text = format!("[gateway]\nid = \"gw\"\n{}{}", src("a", "0.0.0.0:18081"), src("b", "127.0.0.1:18081"));
    let errs = errors(&text);
    let line = line_of(&text, "127.0.0.1:18081");
    assert!(
        errs.iter().any(|e| e.starts_with(&format!("test.toml:{line}:"))
            && e.contains("source \"b\" / listen")
            && e.contains("clashes with 0.0.0.0:18081 of source \"a\"")),
        "{errs:?}"
    );
    let text = format!("[gateway]\nid = \"gw\"\n{}{}", src("a", "127.0.0.1:18082"), src("b", "[::]:18082"));
    assert!(errors(&text).iter().any(|e| e.contains("clashes with 127.0.0.1:18082")), "[::] takes IPv4 too");
    for (x, y) in [
        ("0.0.0.0:18083", "0.0.0.0:18083"),
        ("127.0.0.1:18084", "127.0.0.2:18084"),
        ("0.0.0.0:18085", "[::1]:18085"),
        ("0.0.0.0:18086", "127.0.0.1:18087"),
    ] {
        let text = format!("[gateway]\nid = \"gw\"\n{}{}", src("a", x), src("b", y));
        assert!(Config::parse(&text, "test.toml", Path::new(".")).is_ok(), "{x} and {y} do not clash");
    }
}

/// Simulator config errors name the station, tag and key (they gave only a
/// position), and a Modicon string address says what to write instead; a
/// simulator config given to `relais check` says to run `relais sim`.
#[test]
fn simulator_config_errors_name_station_tag_and_key() {
    let text = "[[station]]\nname = \"pump\"\nlisten = \"127.0.0.1:15020\"\n\n  [[station.tag]]\n  name = \"flow\"\n  table = \"holding\"\n  address = \"40001\"\n  type = \"f32\"\n";
    let Err(e) = relais::sim::SimConfig::parse(text, "sim.toml", Path::new(".")) else { panic!("invalid") };
    let e = e.to_string();
    assert!(e.contains("sim.toml:8:") && e.contains("station \"pump\" / tag \"flow\" / address") && e.contains("address = 0"), "{e}");
    let e = Config::parse(text, "sim.toml", Path::new(".")).unwrap_err().to_string();
    assert!(e.contains("relais sim --config"), "{e}");
}

/// `relais check` passed a `trust_server_certificate` that is not a
/// certificate, and `relais run` then failed: it is a config error now.
#[test]
fn a_trusted_server_certificate_must_be_a_certificate() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bogus.der"), "not a certificate").unwrap();
    let t = "[gateway]\nid = \"g\"\n[[device]]\nname = \"plc\"\nprotocol = \"opcua\"\nendpoint = \"opc.tcp://127.0.0.1:4840/\"\nsecurity_policy = \"Basic256Sha256\"\nsecurity_mode = \"SignAndEncrypt\"\ntrust_server_certificate = \"bogus.der\"\n[[device.tag]]\nname = \"v\"\nnode_id = \"ns=2;s=v\"\n";
    let e = Config::parse(t, "gw.toml", dir.path()).unwrap_err().to_string();
    assert!(e.contains("gw.toml:9:") && e.contains("trust_server_certificate") && e.contains("is not an X.509 certificate"), "{e}");
}

/// Settings the break-it trial found accepted by `check` and failing (or
/// silently useless) at run time.
#[test]
fn settings_that_cannot_work_are_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let ua = |extra: &str| {
        format!(
            "[gateway]\nid = \"g\"\n[[device]]\nname = \"plc\"\nprotocol = \"opcua\"\nendpoint = \"opc.tcp://127.0.0.1:4840/\"\n{extra}\n[[device.tag]]\nname = \"v\"\nnode_id = \"ns=2;s=v\"\n"
        )
    };
    let e = Config::parse(&ua("keep_alive = \"24h\"\nsession_timeout = \"10s\""), "gw.toml", dir.path()).unwrap_err().to_string();
    assert!(e.contains("keep_alive (1d) must be shorter than session_timeout (10s)"), "{e}");
    let e = Config::parse(&ua("username = \"op\"\npassword_file = \"missing.txt\""), "gw.toml", dir.path()).unwrap_err().to_string();
    assert!(e.contains("cannot read") && !e.contains("a username needs"), "only the unreadable file is reported: {e}");
    std::fs::write(dir.path().join("notatty"), "").unwrap();
    let rtu = format!(
        "[gateway]\nid = \"g\"\n[[device]]\nname = \"m\"\nprotocol = \"modbus-rtu\"\nport = \"{}\"\nunit_id = 1\n[[device.tag]]\nname = \"t\"\ntable = \"holding\"\naddress = 0\n",
        dir.path().join("notatty").display()
    );
    let e = Config::parse(&rtu, "gw.toml", dir.path()).unwrap_err().to_string();
    assert!(e.contains("is a regular file, not a serial device"), "{e}");
    let http = |extra: &str| format!("[gateway]\nid = \"g\"\n[[source]]\nname = \"h\"\ntype = \"http\"\nallow_anonymous = true\n{extra}\n");
    for (extra, want) in [
        ("max_body = \"0\"", "must be at least 1 bytes"),
        ("commit_timeout = \"0\"", "commit_timeout must be above 0"),
        // Issue 9 item 12: the connection limits.
        ("max_connections = 0", "max_connections: 0 is out of range; expected 1..=100000"),
        ("header_timeout = \"0s\"", "header_timeout must be above 0"),
        ("idle_timeout = \"0s\"", "idle_timeout must be above 0"),
        ("idle_timeout = \"10s\"", "idle_timeout must be longer than commit_timeout"),
        ("idle_timeout = \"20s\"\ncommit_timeout = \"30s\"", "idle_timeout must be longer than commit_timeout"),
        ("[[source.tag]]\nname = \"x\"\n[[source.tag]]\nname = \"x\"\nscale = 2.0", "duplicated tag name"),
    ] {
        let e = Config::parse(&http(extra), "gw.toml", dir.path()).unwrap_err().to_string();
        assert!(e.contains(want), "{extra}: {e}");
    }
    let sim = |opcua: &str| format!("[opcua]\n{opcua}\n[[station]]\nname = \"s\"\n");
    for (opcua, want) in [
        ("security = []", "security is empty"),
        ("restart_after = \"0s\"", "restart_after must be at least 1s"),
        ("namespace_uri = \"\"", "cannot be used"),
        ("users = [{ username = \"a\", password = \"x\" }, { username = \"a\", password = \"y\" }]", "listed twice"),
    ] {
        let Err(e) = relais::sim::SimConfig::parse(&sim(opcua), "sim.toml", dir.path()) else { panic!("{opcua} accepted") };
        assert!(e.to_string().contains(want), "{opcua}: {e}");
    }
}

/// The configurations of the French quickstart (docs/tp/) load as they are
/// on a fresh clone: the chapters on files, the quarantine and Modbus RTU
/// run them.
#[test]
fn quickstart_tp_configs_load() {
    let tp = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/tp");
    let files = Config::load(&tp.join("fichiers.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(files.sources.len(), 2);
    let rtu = Config::load(&tp.join("rtu.toml")).unwrap_or_else(|e| panic!("{e}"));
    let DeviceConfig::Modbus(d) = &rtu.devices[0] else { panic!("not modbus") };
    assert_eq!((d.transport.protocol(), d.unit_id, d.tags.len()), ("modbus-rtu", 7, 2));
    assert!(tp.join("pompe.csv").is_file() && tp.join("pompe-suite.csv").is_file() && tp.join("depot").is_dir());
    relais::sim::config::SimConfig::load(&tp.join("rtu-sim.toml")).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn sparkplug_keys_are_checked() {
    // group_id is required, and located at the sink.
    let t = with("format = \"json\"", "format = \"sparkplug\"").replace("topic = \"icam/line5/{device}/{tag}\"\n", "");
    assert_one(&t, "name = \"plant-broker\"", "group_id", "needs group_id");
    // Topic keys, retain and bad IDs are refused with the format.
    let t2 = with("format = \"json\"", "format = \"sparkplug\"\ngroup_id = \"lyon\"");
    assert_one(&t2, "topic = \"icam", "topic", "spBv1.0");
    let t3 = t.replace("format = \"sparkplug\"", "format = \"sparkplug\"\ngroup_id = \"ly/on\"\nretain = true");
    assert_one(&t3, "group_id = \"ly/on\"", "group_id", "'/'");
    assert_one(&t3, "name = \"plant-broker\"", "retain", "never retained");
    // Sparkplug keys without the format.
    let t4 = with("format = \"json\"", "format = \"json\"\nedge_node_id = \"e1\"");
    assert_one(&t4, "edge_node_id", "edge_node_id", "format = \"sparkplug\"");
    // A good one: the NDEATH topic is the sink's status topic, edge_node_id defaults to the gateway id.
    let good = t.replace("format = \"sparkplug\"", "format = \"sparkplug\"\ngroup_id = \"lyon\"");
    let cfg = Config::parse(&good, "test.toml", Path::new(".")).unwrap_or_else(|e| panic!("{e}"));
    let Some(SinkConfig::Mqtt(m)) = cfg.sinks.into_iter().next() else { panic!("an MQTT sink") };
    let sp = m.sparkplug.expect("sparkplug keys");
    assert_eq!((sp.group_id.as_str(), sp.edge_node_id.as_str()), ("lyon", "line5-edge01"));
    assert_eq!(m.status_topic, format!("spBv1.0/lyon/NDEATH/{}", sp.edge_node_id));
}

/// Bugs: a timestamp key for one format only, where the source reads the
/// other format, leaves its records without a timestamp (refused at run
/// time); `relais check` warns: `format = "csv"` with `timestamp_path`,
/// `mqtt-in` (JSON) with `timestamp_column`, `http` without `format` with
/// either alone. Both keys, or the matching one, give no such warning.
#[test]
fn a_timestamp_key_for_the_other_format_is_warned_about() {
    let warns = |src: &str| -> Vec<String> {
        let text = format!("[gateway]\nid = \"g\"\n[[source]]\nname = \"s\"\n{src}\n");
        let cfg = Config::parse(&text, "t.toml", Path::new(".")).unwrap_or_else(|e| panic!("{e}"));
        cfg.warnings.iter().map(|w| w.message.clone()).filter(|m| m.contains("has no timestamp")).collect()
    };
    let w = warns("type = \"file\"\nformat = \"csv\"\ntimestamp_path = \"ts\"");
    assert!(w.len() == 1 && w[0].contains("CSV input has no timestamp") && w[0].contains("set timestamp_column"), "{w:?}");
    let w = warns("type = \"mqtt-in\"\nurl = \"mqtt://127.0.0.1:1883\"\ntopics = [\"a/#\"]\ntimestamp_column = \"ts\"");
    assert!(w.len() == 1 && w[0].contains("JSON input has no timestamp") && w[0].contains("set timestamp_path"), "{w:?}");
    let w = warns("type = \"http\"\nallow_anonymous = true\ntimestamp_column = \"ts\"\nmissing_timestamp = \"receive_time\"");
    assert!(w.len() == 1 && w[0].contains("marked uncertain (timestamp_missing)"), "{w:?}");
    assert!(warns("type = \"http\"\nallow_anonymous = true\ntimestamp_column = \"ts\"\ntimestamp_path = \"ts\"").is_empty());
    assert!(warns("type = \"file\"\nformat = \"csv\"\ntimestamp_column = \"ts\"").is_empty());
    assert!(warns("type = \"file\"\ntimestamp_column = \"ts\"").is_empty(), "no format: the file extension decides");
}
