//! The simulator with other masters and clients (issue 9 items 20–23): its
//! RTU line after garbage, function codes it does not implement (exception
//! 01 over TCP and RTU), FC43 device identification, OPC UA types, and its
//! config and log hygiene.
//!
//! The third-party master is Python's pymodbus (`tests/sim/pymodbus_master.py`)
//! and the third-party OPC UA client asyncua (`tests/sim/asyncua_types.py`),
//! from `RELAIS_PYTHON` (default `python3`); without them those tests are
//! skipped, unless `RELAIS_REQUIRE_PYMODBUS=1` / `RELAIS_REQUIRE_ASYNCUA=1`
//! (`.ci/run` installs both and sets these).

use std::path::{Path, PathBuf};
use std::time::Duration;

use relais::sim::SimConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_modbus::prelude::*;

use crate::common::free_port;
use crate::modbus::sim;

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// A station with holding registers 0 and 1 holding 0x1234 and 0x5678, on
/// `line` (`listen = …` or `serial = …`).
fn station(line: &str) -> String {
    format!(
        "[[station]]\nname = \"meter\"\n{line}\nunit_id = 1\nlockstep = true\n\
         [[station.tag]]\nname = \"a\"\ntable = \"holding\"\naddress = 0\nsignal = {{ kind = \"constant\", value = 4660 }}\n\
         [[station.tag]]\nname = \"b\"\ntable = \"holding\"\naddress = 1\nsignal = {{ kind = \"constant\", value = 22136 }}\n"
    )
}

fn crc(frame: &[u8]) -> Vec<u8> {
    let mut f = frame.to_vec();
    let c = crc::Crc::<u16>::new(&crc::CRC_16_MODBUS).checksum(frame);
    f.extend_from_slice(&c.to_le_bytes());
    f
}

fn open(link: &Path) -> tokio_serial::SerialStream {
    use tokio_serial::SerialPortBuilderExt;
    tokio_serial::new(link.to_string_lossy(), 19200).open_native_async().unwrap()
}

/// Reads what arrives on `port` until 100 ms of silence (or 3 s in all).
async fn answer(port: &mut tokio_serial::SerialStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        let wait = if got.is_empty() { deadline - tokio::time::Instant::now() } else { Duration::from_millis(100) };
        match tokio::time::timeout(wait, port.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
            _ => return got,
        }
    }
}

/// Item 20: ~21 unparseable bytes stopped the line for good ("Too many
/// retries", the pty gone). Now 300 bytes of garbage, then garbage glued to
/// a request, and a Modbus RTU master still reads the right values.
#[tokio::test]
async fn the_rtu_line_serves_on_after_garbage() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("rtu0");
    let s = sim(&station(&format!("serial = {:?}", link.display().to_string()))).await;
    let mut port = open(&link);
    let garbage: Vec<u8> = (0..300u32).map(|i| (i * 37 % 251) as u8 | 0x80).collect();
    port.write_all(&garbage).await.unwrap();
    assert!(answer(&mut port).await.is_empty(), "garbage gets no answer");
    // Garbage and a request in one write: the request is found at the end.
    let mut glued = vec![0x55, 0xAA, 0x13];
    glued.extend_from_slice(&crc(&[1, 3, 0, 0, 0, 2]));
    port.write_all(&glued).await.unwrap();
    assert_eq!(answer(&mut port).await, crc(&[1, 3, 4, 0x12, 0x34, 0x56, 0x78]));
    drop(port);
    // The master relais uses (tokio-modbus over the serial port).
    let mut ctx = rtu::attach_slave(open(&link), Slave(1));
    let regs = tokio::time::timeout(Duration::from_secs(3), ctx.read_holding_registers(0, 2)).await.expect("answer").unwrap().unwrap();
    assert_eq!(regs, vec![0x1234, 0x5678]);
    let (dropped, _, restarts) = s.rtu_stats(&link).unwrap().snapshot();
    assert_eq!(dropped, 303, "every garbage byte counted");
    assert_eq!(restarts, 0, "the line never stopped");
    assert!(std::fs::symlink_metadata(&link).is_ok(), "the pty link is still there");
}

/// PDUs the simulator does not implement: FC8 (diagnostics), FC20 (read
/// file record), FC43 with MEI 0x0D, FC7 (read exception status).
const UNIMPLEMENTED: [&[u8]; 4] = [&[0x08, 0, 0, 0x12, 0x34], &[0x14, 7, 6, 0, 4, 0, 1, 0, 2], &[0x2B, 0x0D, 0, 0], &[0x07]];

/// Item 21: unimplemented function codes get exception 01 over TCP and
/// RTU alike (over RTU they got no answer: masters took the unit for dead).
#[tokio::test]
async fn unimplemented_function_codes_get_exception_01_on_tcp_and_rtu() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("rtu0");
    let port = free_port();
    let s = sim(&(station(&format!("listen = \"127.0.0.1:{port}\""))
        + &station(&format!("serial = {:?}", link.display().to_string())).replace("\"meter\"", "\"meter2\"")))
    .await;
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut rtu = open(&link);
    for (i, pdu) in UNIMPLEMENTED.iter().enumerate() {
        let tid = i as u16 + 1;
        let mut adu = tid.to_be_bytes().to_vec();
        adu.extend_from_slice(&[0, 0]);
        adu.extend_from_slice(&(pdu.len() as u16 + 1).to_be_bytes());
        adu.push(1);
        adu.extend_from_slice(pdu);
        tcp.write_all(&adu).await.unwrap();
        let mut got = [0u8; 9];
        tokio::time::timeout(Duration::from_secs(3), tcp.read_exact(&mut got)).await.expect("an answer over TCP").unwrap();
        let [t0, t1] = tid.to_be_bytes();
        assert_eq!(got, [t0, t1, 0, 0, 0, 3, 1, pdu[0] | 0x80, 0x01], "TCP, FC{}", pdu[0]);
        let mut frame = vec![1];
        frame.extend_from_slice(pdu);
        rtu.write_all(&crc(&frame)).await.unwrap();
        assert_eq!(answer(&mut rtu).await, crc(&[1, pdu[0] | 0x80, 0x01]), "RTU, FC{}", pdu[0]);
    }
    // A lone FC43 and a malformed FC3 (one byte short) over TCP: 01 and 03
    // (both closed the connection), and the connection still serves.
    for (pdu, code) in [(&[0x2Bu8][..], 1u8), (&[0x03, 0, 0, 0][..], 3)] {
        let mut adu = vec![0, 9, 0, 0, 0, pdu.len() as u8 + 1, 1];
        adu.extend_from_slice(pdu);
        tcp.write_all(&adu).await.unwrap();
        let mut got = [0u8; 9];
        tokio::time::timeout(Duration::from_secs(3), tcp.read_exact(&mut got)).await.expect("an answer over TCP").unwrap();
        assert_eq!(got, [0, 9, 0, 0, 0, 3, 1, pdu[0] | 0x80, code], "TCP, {pdu:02X?}");
    }
    tcp.write_all(&[0, 10, 0, 0, 0, 6, 1, 3, 0, 0, 0, 2]).await.unwrap();
    let mut got = [0u8; 13];
    tokio::time::timeout(Duration::from_secs(3), tcp.read_exact(&mut got)).await.expect("an answer over TCP").unwrap();
    assert_eq!(got, [0, 10, 0, 0, 0, 7, 1, 3, 4, 0x12, 0x34, 0x56, 0x78]);
    // A lone FC43 over RTU, and a malformed FC3 (one byte short): 01 and 03.
    rtu.write_all(&crc(&[1, 0x2B])).await.unwrap();
    assert_eq!(answer(&mut rtu).await, crc(&[1, 0xAB, 0x01]));
    rtu.write_all(&crc(&[1, 0x03, 0, 0, 0])).await.unwrap();
    assert_eq!(answer(&mut rtu).await, crc(&[1, 0x83, 0x03]));
    // An unknown unit on the serial line stays silent, as on RS-485.
    rtu.write_all(&crc(&[9, 0x08, 0, 0, 0x12, 0x34])).await.unwrap();
    assert!(answer(&mut rtu).await.is_empty());
    assert_eq!(s.rtu_stats(&link).unwrap().snapshot(), (0, 6, 0));
}

/// Item 21: FC43 / MEI 0x0E basic device identification (Modbus App
/// Protocol v1.1b3 §6.21) over TCP and RTU, read with tokio-modbus.
#[tokio::test]
async fn fc43_reads_the_basic_device_identification_on_tcp_and_rtu() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("rtu0");
    let port = free_port();
    let _s = sim(&(station(&format!("listen = \"127.0.0.1:{port}\""))
        + &station(&format!("serial = {:?}", link.display().to_string())).replace("\"meter\"", "\"meter2\"")))
    .await;
    let mut over_tcp = tcp::connect_slave(format!("127.0.0.1:{port}").parse().unwrap(), Slave(1)).await.unwrap();
    let mut over_rtu = rtu::attach_slave(open(&link), Slave(1));
    for ctx in [&mut over_tcp, &mut over_rtu] {
        let id = tokio::time::timeout(Duration::from_secs(3), ctx.read_device_identification(ReadCode::Basic, 0))
            .await
            .expect("answer")
            .unwrap()
            .unwrap();
        let objects: Vec<(u8, &str)> = id.device_id_objects.iter().map(|o| (o.id, o.value_as_str().unwrap())).collect();
        assert_eq!(objects, vec![(0, "relais"), (1, "relais-sim"), (2, VERSION)]);
        assert_eq!(id.conformity_level, ConformityLevel::BasicIdentification);
        assert!(!id.more_follows);
        let one = ctx.read_device_identification(ReadCode::Specific, 1).await.unwrap().unwrap();
        assert_eq!(one.device_id_objects.iter().map(|o| o.value_as_str().unwrap()).collect::<Vec<_>>(), vec!["relais-sim"]);
        let none = ctx.read_device_identification(ReadCode::Specific, 0x42).await.unwrap();
        assert_eq!(none.unwrap_err(), ExceptionCode::IllegalDataAddress);
    }
}

/// The Python interpreter with `module`, or `None` (skip) unless
/// `RELAIS_REQUIRE_<require>=1`.
pub(crate) fn python_with(module: &str, require: &str) -> Option<String> {
    let python = std::env::var("RELAIS_PYTHON").unwrap_or_else(|_| "python3".into());
    let has = std::process::Command::new(&python).args(["-c", &format!("import {module}")]).output().is_ok_and(|o| o.status.success());
    if has {
        return Some(python);
    }
    if std::env::var(format!("RELAIS_REQUIRE_{require}")).as_deref() == Ok("1") {
        panic!("Python {module} is required (RELAIS_REQUIRE_{require}=1) but `{python} -c 'import {module}'` fails");
    }
    eprintln!("SKIPPED: Python {module} not installed (pip install {module}, or set RELAIS_PYTHON)");
    None
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sim").join(name)
}

async fn pymodbus(python: &str, args: &[String]) -> serde_json::Value {
    let out = tokio::process::Command::new(python).arg(script("pymodbus_master.py")).args(args).output().await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "pymodbus master failed: {text}\n{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// Items 20 and 21 with a third-party master (pymodbus) over TCP and RTU:
/// values, exception 01 for FC8 and FC20, FC43 identification; over RTU
/// after garbage on the line.
#[tokio::test]
async fn pymodbus_reads_values_identification_and_exceptions() {
    let Some(python) = python_with("pymodbus", "PYMODBUS") else { return };
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("rtu0");
    let port = free_port();
    let _s = sim(&(station(&format!("listen = \"127.0.0.1:{port}\""))
        + &station(&format!("serial = {:?}", link.display().to_string())).replace("\"meter\"", "\"meter2\"")))
    .await;
    let mut garbage = open(&link);
    garbage.write_all(&[0xFF; 64]).await.unwrap();
    drop(garbage);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let want = serde_json::json!({
        "holding": [0x1234, 0x5678],
        "fc8": { "exception": 1 },
        "fc20": { "exception": 1 },
        "fc43": { "conformity": 0x81, "objects": { "0": "relais", "1": "relais-sim", "2": VERSION } },
    });
    let tcp = pymodbus(&python, &["tcp".into(), "127.0.0.1".into(), port.to_string(), "1".into()]).await;
    assert_eq!(tcp, want, "over TCP");
    let rtu = pymodbus(&python, &["rtu".into(), link.display().to_string(), "1".into()]).await;
    assert_eq!(rtu, want, "over RTU");
}

/// One OPC UA-only station `s` with a constant tag per `(name, type, extra)`.
fn ua_station(tags: &[(&str, &str, &str)]) -> String {
    let mut s = String::from("[[station]]\nname = \"s\"\ntick = \"200ms\"\n");
    for (i, (name, ty, extra)) in tags.iter().enumerate() {
        s += &format!(
            "[[station.tag]]\nname = \"{name}\"\ntable = \"holding\"\naddress = {}\ntype = \"{ty}\"\nsignal = {{ kind = \"constant\", value = -7 }}\n{extra}\n",
            i * 4
        );
    }
    s
}

/// Item 22: 16- and 32-bit tags are served as Int16/UInt16/Int32/UInt32
/// (they were all Int64/UInt64, which node-opcua hands out as `[high,
/// low]` pairs); floats and scaled integers as Double. Checked with
/// relais's own OPC UA client (the DataType attribute, `relais browse`)
/// and with asyncua (DataType and the value's Variant type).
#[tokio::test]
async fn opcua_serves_each_tag_with_the_type_of_its_registers() {
    let types = [
        ("a", "i16", "", "Int16", -7i64),
        ("b", "u16", "", "UInt16", 0),
        ("c", "i32", "", "Int32", -7),
        ("d", "u32", "", "UInt32", 0),
        ("e", "i64", "", "Int64", -7),
        ("f", "u64", "", "UInt64", 0),
        ("g", "f32", "", "Double", -7),
        ("h", "f64", "", "Double", -7),
        ("k", "u16", "scale = 0.1", "Double", -7),
    ];
    let pki = tempfile::tempdir().unwrap();
    let tags: Vec<(&str, &str, &str)> = types.iter().map(|(n, t, x, _, _)| (*n, *t, *x)).collect();
    let toml = format!("[opcua]\nlisten = \"127.0.0.1:0\"\npki_dir = {:?}\n{}", pki.path().display().to_string(), ua_station(&tags));
    let s = sim(&toml).await;
    let ua = s.opcua().unwrap();
    // relais's own client: the DataType attribute, as `relais browse` shows it.
    let dev_toml =
        format!("[gateway]\nid = \"test\"\n[[device]]\nname = \"plc\"\nprotocol = \"opcua\"\nendpoint = \"{}\"\n", ua.endpoint());
    let cfg = relais::config::Config::parse(&dev_toml, "gw.toml", Path::new(".")).unwrap_or_else(|e| panic!("{e}"));
    let relais::config::DeviceConfig::OpcUa(dev) = cfg.devices.into_iter().next().unwrap() else { panic!("not an OPC UA device") };
    let cpki = tempfile::tempdir().unwrap();
    let p = relais::sources::opcua::client::Pki::open(cpki.path(), "test").unwrap();
    let found = relais::sources::opcua::browse::browse(&dev, &p, "test", "i=85", 3, false).await.unwrap();
    for (name, _, _, ty, _) in &types {
        let f = found.iter().find(|f| f.name == *name).unwrap_or_else(|| panic!("{name} not browsed"));
        assert_eq!(f.data_type.as_deref(), Some(*ty), "DataType of {name}");
    }
    // A third-party client: DataType and the Variant's own type.
    let Some(python) = python_with("asyncua", "ASYNCUA") else { return };
    let ns = ua.namespace_index().unwrap();
    let nodes: Vec<String> = types.iter().map(|(n, ..)| format!("ns={ns};s=s.{n}")).collect();
    let out = tokio::process::Command::new(&python).arg(script("asyncua_types.py")).arg(ua.endpoint()).args(&nodes).output().await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "asyncua failed: {text}\n{}", String::from_utf8_lossy(&out.stderr));
    let got: serde_json::Value = serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"));
    for ((name, _, _, ty, value), node) in types.iter().zip(&nodes) {
        assert_eq!(got[node]["data_type"], *ty, "{name}: {got}");
        assert_eq!(got[node]["variant"], *ty, "{name}: {got}");
        assert_eq!(got[node]["value"].as_f64(), Some(*value as f64), "{name}: {got}");
    }
}

/// Item 23: a tag named `setpoint` would replace the station's writable
/// setpoint node: the config check refuses it, located; without `[opcua]`
/// there is no such node and the name stays allowed.
#[test]
fn a_tag_named_setpoint_is_refused_where_opcua_serves_the_setpoint() {
    let tags = "[[station]]\nname = \"press\"\nlisten = \"127.0.0.1:0\"\n\
                [[station.tag]]\nname = \"setpoint\"\ntable = \"holding\"\naddress = 0\nsignal = { kind = \"constant\", value = 1 }\n";
    let err = SimConfig::parse(&format!("[opcua]\nlisten = \"127.0.0.1:0\"\n{tags}"), "sim.toml", Path::new(".")).unwrap_err();
    assert_eq!(err.0.len(), 1, "{err}");
    let e = &err.0[0];
    assert_eq!((e.line, e.col), (7, 8), "{err}");
    assert_eq!(e.key, "station \"press\" / tag \"setpoint\" / name");
    assert!(e.message.contains("press.setpoint") && e.message.contains("another name"), "{err}");
    SimConfig::parse(tags, "sim.toml", Path::new(".")).unwrap_or_else(|e| panic!("no OPC UA, no clash: {e}"));
}

/// Item 23: a bare TCP connection to the OPC UA port (a health check)
/// logged an ERROR each time; `relais sim` now logs nothing above DEBUG.
#[test]
fn a_bare_tcp_connection_to_the_opcua_port_logs_no_error() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let (mb, ua) = (free_port(), free_port());
    let cfg = dir.path().join("sim.toml");
    let pki = dir.path().join("pki");
    std::fs::write(
        &cfg,
        format!(
            "[opcua]\nlisten = \"127.0.0.1:{ua}\"\npki_dir = {:?}\n{}",
            pki.display().to_string(),
            station(&format!("listen = \"127.0.0.1:{mb}\""))
        ),
    )
    .unwrap();
    let log = dir.path().join("stderr.log");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_relais"))
        .args(["sim", "--config"])
        .arg(&cfg)
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let serving = || std::fs::read_to_string(&log).unwrap_or_default().contains("simulator serving OPC UA");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !serving() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(serving(), "the simulator did not start: {}", std::fs::read_to_string(&log).unwrap_or_default());
    for _ in 0..3 {
        drop(std::net::TcpStream::connect(("127.0.0.1", ua)).unwrap());
        std::thread::sleep(Duration::from_millis(200));
    }
    // The server still answers a real client afterwards: a Hello gets an
    // Acknowledge (OPC UA Part 6 §7.1.2.3), read whole before a clean close.
    let mut c = std::net::TcpStream::connect(("127.0.0.1", ua)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let url = format!("opc.tcp://127.0.0.1:{ua}/");
    let mut hello = b"HELF".to_vec();
    hello.extend_from_slice(&(32 + url.len() as u32).to_le_bytes());
    for v in [0u32, 65536, 65536, 0, 0] {
        hello.extend_from_slice(&v.to_le_bytes());
    }
    hello.extend_from_slice(&(url.len() as u32).to_le_bytes());
    hello.extend_from_slice(url.as_bytes());
    c.write_all(&hello).unwrap();
    let mut ack = [0u8; 28];
    c.read_exact(&mut ack).unwrap();
    assert_eq!(&ack[..4], b"ACKF");
    drop(c);
    std::thread::sleep(Duration::from_millis(300));
    crate::common::kill(child.id(), 15);
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("simulator running"), "stderr was captured: {text}");
    assert!(!text.contains("ERROR"), "no ERROR line for bare connections: {text}");
}
