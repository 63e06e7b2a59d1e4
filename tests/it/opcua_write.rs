//! Actuator writes on OPC UA (issue 12) against the simulator's server: the
//! Write service with the node's DataType, limits and refusals, the
//! server's StatusCode as the result, read-back, and the audit events.

use std::sync::Arc;
use std::time::Duration;

use opcua::types::Variant;
use tokio_util::sync::CancellationToken;

use relais::buffer::Buffer;
use relais::component::Actuators;
use relais::component::actuate::{Origin, WriteOutcome, WriteRequest, WriteResult};
use relais::config::BufferConfig;
use relais::ingest::Ingest;
use relais::model::{Record, Value};
use relais::telemetry::Telemetry;

use crate::opcua::{ua_devices, ua_sim};

const NS: &str = "urn:relais:sim";

#[tokio::test]
async fn opcua_writes_use_the_node_type_limits_and_the_status_code() {
    let pki = tempfile::tempdir().unwrap();
    let station = "[[station]]\nname = \"s\"\ntick = \"200ms\"\n[[station.tag]]\nname = \"answer\"\ntable = \"holding\"\naddress = 0\ntype = \"i32\"\nsignal = { kind = \"constant\", value = 42 }\n";
    let sim = ua_sim(station, "", pki.path()).await;
    let ua = sim.opcua().unwrap();
    let devs = ua_devices(&format!(
        "[[device]]\nname = \"plc\"\nprotocol = \"opcua\"\nendpoint = \"{}\"\nmode = \"poll\"\npoll_interval = \"200ms\"\n\
         [[device.tag]]\nname = \"sp\"\nnode_id = \"nsu={NS};s=s.setpoint\"\nwritable = true\nmin = 0\nmax = 100\nmax_rate = 3\n\
         [[device.tag]]\nname = \"answer\"\nnode_id = \"nsu={NS};s=s.answer\"\n\
         [[device.tag]]\nname = \"answer_w\"\nnode_id = \"nsu={NS};s=s.answer\"\nwritable = true\n\
         [[device.tag]]\nname = \"ghost\"\nnode_id = \"nsu={NS};s=s.no_such_node\"\nwritable = true\n",
        ua.endpoint()
    ));
    let dir = tempfile::tempdir().unwrap();
    let ingest = Arc::new(Ingest::new(65536));
    let buffer = Buffer::open(&BufferConfig::default(), dir.path(), ingest.clone(), &[]).unwrap();
    let acts = Actuators::new(Some(ingest.events()));
    let stop = CancellationToken::new();
    let _guard = stop.clone().drop_guard();
    relais::sources::opcua::session::spawn_all_with(devs, ingest.clone(), &Telemetry::default(), stop.clone(), (dir.path(), "test"), &acts)
        .unwrap();
    let write = |tag: &str, v: Value| {
        let acts = acts.clone();
        let r = WriteRequest::new("plc", tag, v, Origin::Rule { id: "r1".into() });
        async move { acts.write(r).await }
    };
    // Wait for the session: the first write that is not "no session".
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let first: WriteOutcome = loop {
        let o = write("sp", Value::F64(42.5)).await;
        if o.code() != "comm_failure" || tokio::time::Instant::now() > deadline {
            break o;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(first.result, WriteResult::Ok, "{first:?}");
    assert_eq!(first.readback, Some(Value::F64(42.5)));
    assert!(first.old.is_some(), "{first:?}");
    assert_eq!(ua.read("s", "setpoint").and_then(|dv| dv.value), Some(Variant::Double(42.5)));
    // An integer is written as the node's Double.
    let o = write("sp", Value::I64(7)).await;
    assert_eq!((o.result, o.readback.clone()), (WriteResult::Ok, Some(Value::F64(7.0))), "{o:?}");
    // A dry run says what it would write in words, not Rust Debug.
    let mut dry = WriteRequest::new("plc", "sp", Value::F64(3.5), Origin::Cli);
    dry.dry_run = true;
    let o = acts.write(dry).await;
    let why = o.reason.clone().unwrap_or_default();
    assert!(
        o.result == WriteResult::Ok && why.starts_with("dry_run: would write 3.5 as Double to node ") && !why.contains("Double("),
        "{o:?}"
    );
    // Refusals never reach the server.
    let o = write("sp", Value::F64(100.5)).await;
    assert_eq!((o.result, o.code()), (WriteResult::Refused, "out_of_range"), "{o:?}");
    let o = write("sp", Value::Str("hot".into())).await;
    assert_eq!((o.result, o.code()), (WriteResult::Refused, "bad_value"), "{o:?}");
    let o = write("answer", Value::I64(1)).await;
    assert_eq!((o.result, o.code()), (WriteResult::Refused, "not_writable"), "{o:?}");
    assert_eq!(ua.read("s", "setpoint").and_then(|dv| dv.value), Some(Variant::Double(7.0)));
    // Writable in relais, read-only on the server: the StatusCode is the result.
    let o = write("answer_w", Value::I64(1)).await;
    assert_eq!(o.result, WriteResult::Failed, "{o:?}");
    assert!(o.code().starts_with("opcua_status(0x80"), "{o:?}");
    assert_eq!(ua.read("s", "answer").and_then(|dv| dv.value), Some(Variant::Int32(42)));
    // A node_id the server does not have: refused, with the server's status, never sent.
    let o = write("ghost", Value::F64(1.0)).await;
    assert_eq!((o.result, o.code()), (WriteResult::Refused, "unknown_node"), "{o:?}");
    assert!(o.reason.as_deref().unwrap().contains("the server has no node") && o.sent.is_none(), "{o:?}");
    // max_rate = 3 (the first loop may have made several attempts, all counted only when sent).
    let o = write("sp", Value::F64(8.0)).await;
    assert_eq!(o.result, WriteResult::Ok, "{o:?}");
    let o = write("sp", Value::F64(9.0)).await;
    assert_eq!((o.result, o.code()), (WriteResult::Refused, "rate_exceeded"), "{o:?}");
    ingest.barrier().await;
    let recs = buffer.reader().unwrap().records_blocking(0, u64::MAX, 1_000_000).unwrap();
    let kinds = |k: &str| recs.iter().filter(|r| matches!(r, Record::Event(e) if &*e.kind == k)).count();
    assert_eq!(kinds("security.write_refused"), 5);
    assert!(kinds("write.audit") >= 9);
}

/// `relais check` shows a writable OPC UA tag with its limits.
#[test]
fn writable_opcua_tags_are_described_with_their_limits() {
    use relais::component::{Component, DescribeCx};
    let devs = ua_devices(&format!(
        "[[device]]\nname = \"plc\"\nprotocol = \"opcua\"\nendpoint = \"opc.tcp://127.0.0.1:4840\"\n\
         [[device.tag]]\nname = \"sp\"\nnode_id = \"nsu={NS};s=s.setpoint\"\nwritable = true\nmin = 0\nmax = 100\nmax_rate = 3\n\
         [[device.tag]]\nname = \"ro\"\nnode_id = \"nsu={NS};s=s.answer\"\n"
    ));
    let text = devs[0].describe(&DescribeCx { gateway: "gw", tags: &[] });
    assert!(text.contains("; writable: min 0, max 100, max 3/min, read-back within 10s)\n"), "{text}");
    assert_eq!(text.matches("writable").count(), 1, "{text}");
}

/// A third-party server (asyncua, `tests/sim/asyncua_server.py`): writes
/// take each node's DataType (a Double, an Int16 that refuses 40000 before
/// anything is sent), a read-only node answers with its StatusCode, and a
/// node the server does not have is refused `unknown_node`.
#[tokio::test]
async fn an_asyncua_server_takes_writes_with_its_node_types() {
    use tokio::io::AsyncBufReadExt;
    let Some(python) = crate::sim::python_with("asyncua", "ASYNCUA") else { return };
    let port = crate::common::free_port();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sim/asyncua_server.py");
    let mut server = tokio::process::Command::new(python)
        .arg(script)
        .arg(port.to_string())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(server.stdout.take().unwrap()).lines();
    let ready = tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await.ok().and_then(Result::ok).flatten();
    let endpoint = ready.as_deref().and_then(|l| l.strip_prefix("ready ")).expect("asyncua server ready line").to_string();
    const UA: &str = "urn:relais:test:asyncua";
    let devs = ua_devices(&format!(
        "[[device]]\nname = \"py\"\nprotocol = \"opcua\"\nendpoint = \"{endpoint}\"\nmode = \"poll\"\npoll_interval = \"200ms\"\n\
         [[device.tag]]\nname = \"sp\"\nnode_id = \"nsu={UA};s=sp\"\nwritable = true\n\
         [[device.tag]]\nname = \"count\"\nnode_id = \"nsu={UA};s=count\"\nwritable = true\n\
         [[device.tag]]\nname = \"ro\"\nnode_id = \"nsu={UA};s=ro\"\nwritable = true\n\
         [[device.tag]]\nname = \"ghost\"\nnode_id = \"nsu={UA};s=ghost\"\nwritable = true\n"
    ));
    let dir = tempfile::tempdir().unwrap();
    let ingest = Arc::new(Ingest::new(65536));
    let _buffer = Buffer::open(&BufferConfig::default(), dir.path(), ingest.clone(), &[]).unwrap();
    let acts = Actuators::new(Some(ingest.events()));
    let stop = CancellationToken::new();
    let _guard = stop.clone().drop_guard();
    relais::sources::opcua::session::spawn_all_with(devs, ingest.clone(), &Telemetry::default(), stop.clone(), (dir.path(), "test"), &acts)
        .unwrap();
    let write = |tag: &str, v: Value| {
        let acts = acts.clone();
        let r = WriteRequest::new("py", tag, v, Origin::Cli);
        async move { acts.write(r).await }
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let first = loop {
        let o = write("sp", Value::F64(21.5)).await;
        if o.code() != "comm_failure" || tokio::time::Instant::now() > deadline {
            break o;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        (first.result, first.readback.clone(), first.old.clone()),
        (WriteResult::Ok, Some(Value::F64(21.5)), Some(Value::F64(0.0))),
        "{first:?}"
    );
    let o = write("count", Value::I64(-7)).await;
    assert_eq!((o.result, o.readback.clone()), (WriteResult::Ok, Some(Value::I64(-7))), "{o:?}");
    let o = write("count", Value::I64(40000)).await;
    assert_eq!((o.result, o.code()), (WriteResult::Refused, "bad_value"), "{o:?}");
    assert!(o.reason.as_deref().unwrap().contains("does not fit Int16") && o.sent.is_none(), "{o:?}");
    let o = write("ro", Value::I64(1)).await;
    assert_eq!(o.result, WriteResult::Failed, "{o:?}");
    assert!(o.code().starts_with("opcua_status(0x80"), "the server's StatusCode: {o:?}");
    let o = write("ghost", Value::I64(1)).await;
    assert_eq!((o.result, o.code()), (WriteResult::Refused, "unknown_node"), "{o:?}");
    let o = write("count", Value::I64(5)).await;
    assert_eq!(o.old, Some(Value::I64(-7)), "the server kept the earlier write: {o:?}");
    server.kill().await.ok();
}
