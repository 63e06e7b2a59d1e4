//! Actuator writes on Modbus (issue 12) against the simulator: function codes
//! as configured (never switched), refusals with reasons and security
//! events, bit writes that never change other bits (FC22 and
//! read-modify-write, field case B06), and a write whose answer is lost
//! (`unknown`, written once, settled by read-back).

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use relais::buffer::Buffer;
use relais::component::Actuators;
use relais::component::actuate::{Origin, WriteOutcome, WriteRequest, WriteResult};
use relais::config::BufferConfig;
use relais::ingest::Ingest;
use relais::model::{Event, Record, Value};
use relais::sim::Sim;
use relais::sources::modbus::types::Table;
use relais::telemetry::Telemetry;

use crate::common::free_port;
use crate::modbus::{devices, sim};

/// Pollers of `dev_toml` with their writes registered, into a buffer.
struct Rig {
    acts: Actuators,
    ingest: Arc<Ingest>,
    buffer: Buffer,
    stop: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Rig {
    fn start(dev_toml: &str) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let ingest = Arc::new(Ingest::new(65536));
        let buffer = Buffer::open(&BufferConfig::default(), dir.path(), ingest.clone(), &[]).unwrap();
        let acts = Actuators::new(Some(ingest.events()));
        let stop = CancellationToken::new();
        let telemetry = Telemetry::default();
        relais::sources::modbus::poller::spawn_all_with(devices(dev_toml), ingest.clone(), &telemetry, stop.clone(), &acts).unwrap();
        Rig { acts, ingest, buffer, stop, _dir: dir }
    }

    async fn write(&self, device: &str, tag: &str, v: Value) -> WriteOutcome {
        self.acts.write(WriteRequest::new(device, tag, v, Origin::Command { id: "t".into(), client: Some("test".into()) })).await
    }

    /// Committed events of `kind`.
    async fn events(&self, kind: &str) -> Vec<Event> {
        self.ingest.barrier().await;
        let recs = self.buffer.reader().unwrap().records_blocking(0, u64::MAX, 1_000_000).unwrap();
        recs.into_iter()
            .filter_map(|r| match r {
                Record::Event(e) if &*e.kind == kind => Some(e),
                _ => None,
            })
            .collect()
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn station(name: &str, port: u16, faults: &str) -> String {
    format!("[[station]]\nname = \"{name}\"\nlisten = \"127.0.0.1:{port}\"\nunit_id = 1\n[station.faults]\n{faults}\n")
}

fn device(name: &str, port: u16, extra: &str, tags: &str) -> String {
    format!(
        "[[device]]\nname = \"{name}\"\nprotocol = \"modbus-tcp\"\nendpoint = \"127.0.0.1:{port}\"\npoll_interval = \"50ms\"\ntimeout = \"300ms\"\n{extra}\n{tags}\n"
    )
}

const SETPOINT: &str = "[[device.tag]]\nname = \"sp\"\ntable = \"holding\"\naddress = 10\ntype = \"i16\"\nwritable = true\n";

fn holding(sim: &Sim, st: &str, a: u16) -> u16 {
    match sim.station(st).unwrap().read(Table::Holding, a, 1).unwrap() {
        relais::sim::station::ReadData::Words(w) => w[0],
        _ => unreachable!(),
    }
}

#[tokio::test]
async fn each_device_is_written_with_its_configured_code_and_refusals_keep_their_exception() {
    let (p06, p16, p1) = (free_port(), free_port(), free_port());
    let sim = sim(&format!(
        "{}{}{}",
        station("only06", p06, "refuse_functions = [16]"),
        station("only16", p16, "refuse_functions = [6]"),
        station("no16x1", p1, "refuse_single_fc16 = true"),
    ))
    .await;
    let rig = Rig::start(&format!(
        "{}{}{}{}",
        device("a", p06, "", SETPOINT),
        device("b", p16, "single_register_write = \"fc16\"", SETPOINT),
        device("wrong06", p16, "", SETPOINT),
        device("wrong16", p1, "single_register_write = \"fc16\"", SETPOINT),
    ));
    let o = rig.write("a", "sp", Value::I64(-10)).await;
    assert_eq!(o.result, WriteResult::Ok, "{o:?}");
    assert_eq!(o.readback, Some(Value::I64(-10)));
    assert_eq!(sim.station("only06").unwrap().take_writes(), [(6, 10, 1)]);
    assert_eq!(holding(&sim, "only06", 10), 0xFFF6, "B05: -10 is 0xFFF6");
    let o = rig.write("b", "sp", Value::I64(43)).await;
    assert_eq!(o.result, WriteResult::Ok, "{o:?}");
    assert_eq!(sim.station("only16").unwrap().take_writes(), [(16, 10, 1)]);
    assert_eq!(holding(&sim, "only16", 10), 43);
    // The FC16-only device configured with FC06: exception 01, no retry with FC16.
    let o = rig.write("wrong06", "sp", Value::I64(7)).await;
    assert_eq!(o.result, WriteResult::Failed, "{o:?}");
    assert_eq!(o.code(), "device_exception(1)", "{o:?}");
    assert!(o.reason.as_deref().unwrap().contains("FC06"), "{o:?}");
    assert!(sim.station("only16").unwrap().take_writes().is_empty(), "never switched to FC16");
    assert_eq!(holding(&sim, "only16", 10), 43);
    // FC16 with quantity 1 refused with 02.
    let o = rig.write("wrong16", "sp", Value::I64(7)).await;
    assert_eq!((o.result, o.code()), (WriteResult::Failed, "device_exception(2)"), "{o:?}");
    assert!(sim.station("no16x1").unwrap().take_writes().is_empty());
    let audits = rig.events("write.audit").await;
    assert_eq!(audits.len(), 4);
    assert_eq!(audits[2].details["result"], "failed");
    assert_eq!(audits[2].details["origin"]["client"], "test");
    assert!(rig.events("security.write_refused").await.is_empty(), "an exception is a failure, not a refusal");
}

#[tokio::test]
async fn refusals_each_have_their_reason_and_a_security_event() {
    let port = free_port();
    let sim = sim(&station("s", port, "")).await;
    let tags = "[[device.tag]]\nname = \"ro\"\ntable = \"holding\"\naddress = 1\n\
        [[device.tag]]\nname = \"sp\"\ntable = \"holding\"\naddress = 2\ntype = \"u16\"\nscale = 0.1\nwritable = true\nmin = 10\nmax = 80\nmax_rate = 2\n\
        [[device.tag]]\nname = \"level\"\ntable = \"input\"\naddress = 3\n";
    let rig = Rig::start(&device("d", port, "", tags));
    let o = rig.write("d", "ro", Value::I64(1)).await;
    assert_eq!((o.result, o.code()), (WriteResult::Refused, "not_writable"), "{o:?}");
    let o = rig.write("d", "sp", Value::F64(80.5)).await;
    assert_eq!((o.result, o.code()), (WriteResult::Refused, "out_of_range"), "{o:?}");
    let o = rig.write("d", "sp", Value::F64(21.55)).await;
    assert_eq!((o.result, o.code()), (WriteResult::Refused, "bad_value"), "not a multiple of the scale: {o:?}");
    let o = rig.write("d", "level", Value::I64(1)).await;
    assert_eq!((o.result, o.code()), (WriteResult::Refused, "not_writable"), "{o:?}");
    let o = rig.write("d", "nope", Value::I64(1)).await;
    assert_eq!((o.result, o.code()), (WriteResult::Refused, "unknown_tag"), "{o:?}");
    for v in [21.5, 22.5] {
        let o = rig.write("d", "sp", Value::F64(v)).await;
        assert_eq!(o.result, WriteResult::Ok, "{o:?}");
        assert_eq!(o.readback, Some(Value::F64(v)));
    }
    assert_eq!(holding(&sim, "s", 2), 225);
    let o = rig.write("d", "sp", Value::F64(30.0)).await;
    assert_eq!((o.result, o.code()), (WriteResult::Refused, "rate_exceeded"), "{o:?}");
    assert_eq!(holding(&sim, "s", 2), 225);
    assert_eq!(sim.station("s").unwrap().take_writes(), [(6, 2, 1), (6, 2, 1)], "only the two allowed writes reached the device");
    let sec = rig.events("security.write_refused").await;
    let codes: Vec<String> = sec.iter().map(|e| e.details["reason"].as_str().unwrap().split(':').next().unwrap().to_string()).collect();
    assert_eq!(codes, ["not_writable", "out_of_range", "bad_value", "not_writable", "unknown_tag", "rate_exceeded"]);
    let audits = rig.events("write.audit").await;
    assert_eq!(audits.len(), 8);
    // Each refusal is in the audit too, with its reason.
    let audited: Vec<&str> = audits
        .iter()
        .filter(|e| e.details["result"] == "refused")
        .map(|e| e.details["reason"].as_str().unwrap().split(':').next().unwrap())
        .collect();
    assert_eq!(audited, codes);
}

/// Field case B06 with FC22: 10,000 writes of bit 3 while the poll runs and
/// another client toggles bits 8..15 with FC22: no other bit ever changes.
#[tokio::test]
async fn bit_writes_with_fc22_never_change_other_bits() {
    let port = free_port();
    let sim = sim(&station("s", port, "")).await;
    sim.station("s").unwrap().write_registers(228, &[0x6481]).unwrap();
    let tags = "[[device.tag]]\nname = \"b3\"\ntable = \"holding\"\naddress = 228\nbit = 3\nwritable = true\nreadback = false\n\
        [[device.tag]]\nname = \"word\"\ntable = \"holding\"\naddress = 228\n";
    let rig = Rig::start(&device("d", port, "mask_write = true", tags));
    let other = tokio::spawn(async move {
        use tokio_modbus::prelude::*;
        let mut ctx = tcp::connect_slave(format!("127.0.0.1:{port}").parse().unwrap(), Slave(1)).await.unwrap();
        let mut mine: u16 = 0x6400; // bits 8..15 of 0x6481
        for i in 0..2000u32 {
            let bit = 8 + (i % 8) as u16;
            mine ^= 1 << bit;
            let on = mine & (1 << bit) != 0;
            ctx.masked_write_register(228, !(1 << bit), if on { 1 << bit } else { 0 }).await.unwrap().unwrap();
            let w = ctx.read_holding_registers(228, 1).await.unwrap().unwrap()[0];
            assert_eq!(w & 0xFF00, mine, "another writer changed bits 8..15 (round {i}: {w:#06x})");
        }
        mine
    });
    let mut last = false;
    let t0 = std::time::Instant::now();
    for i in 0..10_000u32 {
        last = i % 2 == 0;
        let o = rig.write("d", "b3", Value::Bool(last)).await;
        assert_eq!(o.result, WriteResult::Ok, "write {i}: {o:?}");
    }
    eprintln!("10,000 FC22 writes (no read-back) while polling every 50 ms: {:?}", t0.elapsed());
    let mine = other.await.unwrap();
    let w = holding(&sim, "s", 228);
    assert_eq!(w, mine | 0x0081 | if last { 0x0008 } else { 0 }, "{w:#06x}");
    let writes = sim.station("s").unwrap().take_writes();
    assert!(writes.iter().all(|w| w.0 == 22), "bits are written with FC22 only");
}

/// Field case B06 without FC22: two writers of bits 3 and 5 through relais,
/// polled meanwhile: each read-modify-write happens in one turn of the link,
/// so neither loses the other's bit, and the other bits stay.
#[tokio::test]
async fn read_modify_write_of_bits_keeps_every_other_bit() {
    let port = free_port();
    let sim = sim(&station("s", port, "")).await;
    sim.station("s").unwrap().write_registers(228, &[0x6481]).unwrap();
    let tags = "[[device.tag]]\nname = \"b3\"\ntable = \"holding\"\naddress = 228\nbit = 3\nwritable = true\n\
        [[device.tag]]\nname = \"b5\"\ntable = \"holding\"\naddress = 228\nbit = 5\nwritable = true\nreadback = false\n";
    let rig = Rig::start(&device("d", port, "", tags));
    let o = rig.write("d", "b3", Value::Bool(true)).await;
    assert_eq!(o.result, WriteResult::Ok, "{o:?}");
    assert_eq!((o.old.clone(), o.readback.clone()), (Some(Value::Bool(false)), Some(Value::Bool(true))));
    assert_eq!(holding(&sim, "s", 228), 0x6489, "B06: 0x6481 with bit 3 set, written with FC06");
    assert_eq!(sim.station("s").unwrap().take_writes(), [(6, 228, 1)]);
    let acts = rig.acts.clone();
    let b5 = tokio::spawn(async move {
        for i in 0..1000u32 {
            let r = WriteRequest::new("d", "b5", Value::Bool(i % 2 == 0), Origin::Rule { id: "r5".into() });
            assert_eq!(acts.write(r).await.result, WriteResult::Ok);
        }
    });
    let t0 = std::time::Instant::now();
    for i in 0..1000u32 {
        let o = rig.write("d", "b3", Value::Bool(i % 2 == 1)).await;
        assert_eq!(o.result, WriteResult::Ok, "write {i}: {o:?}");
    }
    b5.await.unwrap();
    eprintln!("2 x 1,000 read-modify-writes (one with read-back) while polling: {:?}", t0.elapsed());
    // Last values: b3 = true (i = 999), b5 = false (i = 999).
    assert_eq!(holding(&sim, "s", 228), 0x6489);
}

/// A proxy that forwards everything but drops the device's answers to
/// write requests (FC5, 6, 15, 16, 22): the write is applied, its answer lost.
async fn write_answer_dropper(upstream: u16) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let server = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await.unwrap();
            let (mut cr, mut cw) = client.into_split();
            let (mut sr, mut sw) = server.into_split();
            tokio::spawn(async move { tokio::io::copy(&mut cr, &mut sw).await });
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Ok(n) = sr.read(&mut chunk).await else { return };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    while buf.len() >= 8 {
                        let len = 6 + u16::from_be_bytes([buf[4], buf[5]]) as usize;
                        if buf.len() < len {
                            break;
                        }
                        let frame: Vec<u8> = buf.drain(..len).collect();
                        if [5, 6, 15, 16, 22].contains(&(frame[7] & 0x7F)) {
                            continue;
                        }
                        if cw.write_all(&frame).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    port
}

#[tokio::test]
async fn a_write_whose_answer_is_lost_is_unknown_sent_once_and_settled_by_readback() {
    let port = free_port();
    let sim = sim(&station("s", port, "")).await;
    let proxy = write_answer_dropper(port).await;
    let tags = "[[device.tag]]\nname = \"sp\"\ntable = \"holding\"\naddress = 4\ntype = \"u32\"\nwritable = true\n\
        [[device.tag]]\nname = \"blind\"\ntable = \"holding\"\naddress = 8\nwritable = true\nreadback = false\n";
    let rig = Rig::start(&device("d", proxy, "", tags));
    let o = rig.write("d", "blind", Value::I64(5)).await;
    assert_eq!(o.result, WriteResult::Unknown, "{o:?}");
    assert_eq!(o.code(), "timeout", "{o:?}");
    assert!(o.sent.is_some());
    assert_eq!(holding(&sim, "s", 8), 5, "the device applied it");
    assert_eq!(sim.station("s").unwrap().take_writes(), [(6, 8, 1)], "written once, never re-sent");
    let o = rig.write("d", "sp", Value::U64(617001)).await;
    assert_eq!(o.result, WriteResult::Ok, "{o:?}");
    assert_eq!(o.code(), "readback_settled", "{o:?}");
    assert_eq!(o.readback, Some(Value::U64(617001)));
    assert_eq!(o.old, Some(Value::U64(0)));
    // Let a few polls run: still written once.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sim.station("s").unwrap().take_writes(), [(16, 4, 2)], "written once, never re-sent");
    let audits = rig.events("write.audit").await;
    let results: Vec<&str> = audits.iter().map(|e| e.details["result"].as_str().unwrap()).collect();
    assert_eq!(results, ["unknown", "ok"]);
}

/// Write keys are checked like every key (file, line, key), and `relais
/// check` shows the writable tags with their limits and function code.
#[test]
fn write_keys_are_validated_and_described() {
    use relais::component::DescribeCx;
    use relais::config::{Config, DeviceConfig};
    let bad = "[gateway]\nid = \"gw\"\n[[device]]\nname = \"d\"\nprotocol = \"modbus-tcp\"\nendpoint = \"127.0.0.1:502\"\n\
        single_register_write = \"fc03\"\n\
        [[device.tag]]\nname = \"level\"\ntable = \"input\"\naddress = 3\nwritable = true\n\
        [[device.tag]]\nname = \"sp\"\ntable = \"holding\"\naddress = 4\nmax = 10\n\
        [[device.tag]]\nname = \"sp2\"\ntable = \"holding\"\naddress = 5\nwritable = true\nmin = 5\nmax = 1\n";
    let errs: Vec<String> = match Config::parse(bad, "w.toml", std::path::Path::new(".")) {
        Ok(_) => panic!("accepted"),
        Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
    };
    let all = errs.join("\n");
    assert!(all.contains("w.toml:7:") && all.contains("single_register_write"), "{all}");
    assert!(all.contains("w.toml:12:") && all.contains("input table is read-only"), "{all}");
    assert!(all.contains("w.toml:17:") && all.contains("applies to writable tags only"), "{all}");
    assert!(all.contains("w.toml:24:") && all.contains("max 1 is below min 5"), "{all}");
    let devs = devices(
        "[[device]]\nname = \"d\"\nprotocol = \"modbus-tcp\"\nendpoint = \"127.0.0.1:502\"\nmask_write = true\n\
         [[device.tag]]\nname = \"sp\"\ntable = \"holding\"\naddress = 4\ntype = \"i16\"\nwritable = true\nmin = -5\nmax = 50\nmax_rate = 6\n\
         [[device.tag]]\nname = \"start\"\ntable = \"holding\"\naddress = 5\nbit = 3\nwritable = true\nreadback = false\n\
         [[device.tag]]\nname = \"ro\"\ntable = \"holding\"\naddress = 6\n",
    );
    let d = DeviceConfig::Modbus(devs[0].clone());
    let text = d.component().describe(&DescribeCx { gateway: "gw", tags: &[] });
    assert!(text.contains("  writable: 2 tag(s)\n"), "{text}");
    assert!(text.contains("    sp (holding 4 i16) by FC06: min -5, max 50, max 6/min, read-back within 1s\n"), "{text}");
    assert!(text.contains("    start (holding 5 bool) by FC22: no read-back\n"), "{text}");
    assert!(!text.contains("    ro "), "{text}");
}

/// `relais write`: one write through the same path (allow-list, read-back),
/// a dry run that touches nothing, a refusal with exit code 1, and the
/// audit stored in the buffer with origin `cli`.
#[tokio::test]
async fn the_write_command_goes_through_the_same_path_and_is_audited() {
    let port = free_port();
    let sim = sim(&station("s", port, "")).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("relais.toml");
    let body = format!(
        "[gateway]\nid = \"gw\"\ndata_dir = \"{}\"\n{}",
        dir.path().join("data").display(),
        device("d", port, "", &format!("{SETPOINT}[[device.tag]]\nname = \"ro\"\ntable = \"holding\"\naddress = 11\n"))
    );
    std::fs::write(&cfg, body).unwrap();
    let run = |args: Vec<String>| {
        tokio::task::spawn_blocking(move || std::process::Command::new(env!("CARGO_BIN_EXE_relais")).args(args).output().unwrap())
    };
    let args = |extra: &[&str]| {
        let mut v = vec!["write".to_string(), "--config".into(), cfg.display().to_string()];
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let out = run(args(&["d", "sp", "42"])).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "stdout: {stdout}\nstderr: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout.trim(), "ok: d/sp = 42 (was 0, reads back 42)");
    assert_eq!(holding(&sim, "s", 10), 42);
    let out = run(args(&["--dry-run", "d", "sp", "-7"])).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.starts_with("ok: d/sp = -7\n  dry_run: would write"), "{stdout}");
    assert_eq!(stdout.lines().nth(1), Some("  dry_run: would write 65529 (0xFFF9) to holding 10 with FC06"), "{stdout}");
    assert_eq!(holding(&sim, "s", 10), 42, "a dry run writes nothing");
    let out = run(args(&["d", "ro", "1"])).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.starts_with("refused: d/ro = 1\n  not_writable:"), "{stdout}");
    assert_eq!(sim.station("s").unwrap().take_writes(), [(6, 10, 1)]);
    // The audit is in the buffer, for the sinks.
    let ingest = Arc::new(Ingest::new(1024));
    let buffer = Buffer::open(&BufferConfig::default(), &dir.path().join("data"), ingest, &[]).unwrap();
    let recs = buffer.reader().unwrap().records_blocking(0, u64::MAX, 1_000_000).unwrap();
    let audits: Vec<&Event> = recs.iter().filter_map(|r| r.as_event()).filter(|e| &*e.kind == "write.audit").collect();
    let results: Vec<(&str, &str, bool)> = audits
        .iter()
        .map(|e| {
            (e.details["result"].as_str().unwrap(), e.details["origin"]["kind"].as_str().unwrap(), e.details["dry_run"].as_bool().unwrap())
        })
        .collect();
    assert_eq!(results, [("ok", "cli", false), ("ok", "cli", true), ("refused", "cli", false)]);
    // The dry run's reason, readable: the raw value in decimal and hex, the table and the function code.
    assert_eq!(audits[1].details["reason"].as_str(), Some("dry_run: would write 65529 (0xFFF9) to holding 10 with FC06"));
    assert_eq!(recs.iter().filter_map(|r| r.as_event()).filter(|e| &*e.kind == "security.write_refused").count(), 1);
}

/// Modbus RTU (the simulator's line on a pseudo-terminal): write requests
/// and their answers are framed by their own lengths (FC05/06/15/16: 8-byte
/// answers, FC22: 10 bytes; FC15/16 requests carry a byte count).
#[tokio::test]
async fn rtu_writes_of_every_function_code_are_framed_and_confirmed() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("rtu0");
    let sim = sim(&format!("[[station]]\nname = \"s\"\nserial = {:?}\nunit_id = 7\n", link.display().to_string())).await;
    let tags = "[[device.tag]]\nname = \"sp\"\ntable = \"holding\"\naddress = 10\ntype = \"i16\"\nwritable = true\n\
        [[device.tag]]\nname = \"total\"\ntable = \"holding\"\naddress = 12\ntype = \"u32\"\nwritable = true\n\
        [[device.tag]]\nname = \"b3\"\ntable = \"holding\"\naddress = 20\nbit = 3\nwritable = true\n\
        [[device.tag]]\nname = \"run\"\ntable = \"coil\"\naddress = 5\nwritable = true\n";
    let rig = Rig::start(&format!(
        "[[device]]\nname = \"d\"\nprotocol = \"modbus-rtu\"\nport = {:?}\nbaud_rate = 115200\nunit_id = 7\npoll_interval = \"100ms\"\ntimeout = \"300ms\"\nmask_write = true\n{tags}",
        link.display().to_string()
    ));
    for (tag, v) in [("sp", Value::I64(-10)), ("total", Value::U64(617001)), ("b3", Value::Bool(true)), ("run", Value::Bool(true))] {
        let o = rig.write("d", tag, v.clone()).await;
        assert_eq!(o.result, WriteResult::Ok, "{tag}: {o:?}");
        assert_eq!(o.readback, Some(v), "{tag}");
    }
    assert_eq!(sim.station("s").unwrap().take_writes(), [(6, 10, 1), (16, 12, 2), (22, 20, 1), (5, 5, 1)]);
    assert_eq!(holding(&sim, "s", 13), 0x6A29, "617001 = 0x0009_6A29");
}

/// A third-party server (pymodbus): every function code relais writes with
/// is accepted and its answer taken as the echo of the request; B05 and
/// B06 on a server whose code is not ours (FC22 on `0x6481` gives `0x6489`).
#[tokio::test]
async fn a_pymodbus_server_accepts_every_write_and_reads_it_back() {
    let Some(python) = crate::sim::python_with("pymodbus", "PYMODBUS") else { return };
    let port = free_port();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sim/pymodbus_server.py");
    let mut server = tokio::process::Command::new(python).arg(script).arg(port.to_string()).kill_on_drop(true).spawn().unwrap();
    let up = crate::common::eventually(Duration::from_secs(20), || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()).await;
    assert!(up, "pymodbus server did not start");
    let tags = "[[device.tag]]\nname = \"sp\"\ntable = \"holding\"\naddress = 10\ntype = \"i16\"\nscale = 0.1\nwritable = true\n\
        [[device.tag]]\nname = \"f\"\ntable = \"holding\"\naddress = 12\ntype = \"f32\"\nbyte_order = \"CDAB\"\nwritable = true\n\
        [[device.tag]]\nname = \"word\"\ntable = \"holding\"\naddress = 228\nwritable = true\n\
        [[device.tag]]\nname = \"b3\"\ntable = \"holding\"\naddress = 228\nbit = 3\nwritable = true\n\
        [[device.tag]]\nname = \"run\"\ntable = \"coil\"\naddress = 5\nwritable = true\n";
    let fc16 = "single_register_write = \"fc16\"\nsingle_coil_write = \"fc15\"";
    let rig = Rig::start(&format!("{}{}", device("a", port, "mask_write = true", tags), device("b", port, fc16, tags)));
    let cases = [
        ("a", "sp", Value::F64(-1.0), Value::F64(-1.0)),
        ("a", "f", Value::F64(238.60870361328125), Value::F64(238.60870361328125)),
        ("a", "word", Value::I64(0x6481), Value::U64(0x6481)),
        ("a", "b3", Value::Bool(true), Value::Bool(true)),
        ("a", "run", Value::Bool(true), Value::Bool(true)),
        ("b", "sp", Value::F64(2.5), Value::F64(2.5)),
        ("b", "b3", Value::Bool(false), Value::Bool(false)),
        ("b", "run", Value::Bool(false), Value::Bool(false)),
    ];
    for (dev, tag, v, back) in cases {
        let o = rig.write(dev, tag, v).await;
        assert_eq!(o.result, WriteResult::Ok, "{dev}/{tag}: {o:?}");
        assert_eq!(o.readback, Some(back), "{dev}/{tag}");
        if (dev, tag) == ("a", "b3") {
            let w = rig.write("a", "word", Value::I64(0x6489)).await;
            assert_eq!(w.old, Some(Value::U64(0x6489)), "B06: FC22 set bit 3 of 0x6481 and kept the others");
        }
    }
    let o = rig.write("b", "word", Value::I64(0)).await;
    assert_eq!(o.old, Some(Value::U64(0x6481)), "read-modify-write over FC16 cleared bit 3 only");
    server.kill().await.ok();
}

/// The simulator's line model answers writes: a pump's flow (`lag` signal)
/// follows its start coil once relais writes it, as the poll sees.
#[tokio::test]
async fn a_written_start_coil_makes_the_simulated_flow_rise() {
    let port = free_port();
    let sim = sim(&format!(
        "[[station]]\nname = \"pump\"\nlisten = \"127.0.0.1:{port}\"\ntick = \"50ms\"\n\
         [[station.tag]]\nname = \"start\"\ntable = \"coil\"\naddress = 0\nsignal = {{ kind = \"constant\", value = 0 }}\n\
         [[station.tag]]\nname = \"flow\"\ntable = \"holding\"\naddress = 0\ntype = \"f32\"\nsignal = {{ kind = \"lag\", input = \"start\", gain = 12.5, tau = \"300ms\" }}\n"
    ))
    .await;
    let tags = "[[device.tag]]\nname = \"start\"\ntable = \"coil\"\naddress = 0\nwritable = true\n\
        [[device.tag]]\nname = \"flow\"\ntable = \"holding\"\naddress = 0\ntype = \"f32\"\n";
    let rig = Rig::start(&device("pump", port, "", tags));
    let flow = |recs: &[Record]| -> Vec<f64> {
        recs.iter().filter_map(|r| r.as_sample()).filter(|s| &*s.meta.tag == "flow").filter_map(|s| s.value.as_f64()).collect()
    };
    tokio::time::sleep(Duration::from_millis(400)).await;
    rig.ingest.barrier().await;
    let before = flow(&rig.buffer.reader().unwrap().records_blocking(0, u64::MAX, 1_000_000).unwrap());
    assert!(!before.is_empty() && before.iter().all(|x| *x == 0.0), "stopped pump, no flow: {before:?}");
    let o = rig.write("pump", "start", Value::Bool(true)).await;
    assert_eq!(o.result, WriteResult::Ok, "{o:?}");
    let risen = crate::common::eventually(Duration::from_secs(5), || {
        let recs = rig.buffer.reader().unwrap().records_blocking(0, u64::MAX, 1_000_000).unwrap();
        flow(&recs).last().is_some_and(|x| *x > 12.0)
    })
    .await;
    assert!(risen, "the flow rose towards 12.5 m3/h");
    assert!(sim.station("pump").is_some());
}

#[test]
fn a_lag_signal_must_name_another_tag_of_its_station() {
    let toml = "[[station]]\nname = \"pump\"\nlisten = \"127.0.0.1:1502\"\n\
        [[station.tag]]\nname = \"flow\"\ntable = \"holding\"\naddress = 0\nsignal = { kind = \"lag\", input = \"strat\", tau = \"2s\" }\n";
    let err = relais::sim::SimConfig::parse(toml, "sim.toml", std::path::Path::new(".")).unwrap_err().to_string();
    assert!(err.contains("tag \"flow\" / signal / input") && err.contains("lag input \"strat\" is not another tag"), "{err}");
}
