//! The metrics added for issue 14 on `/metrics`: Modbus registers read vs
//! used (the planner reads the gap between two tags too), writes by result
//! (counted where the actuator seam settles them), the ring's wait time,
//! parsed with a Prometheus text parser.

use std::time::Duration;

use relais::app::{Gateway, RunOptions};
use relais::component::actuate::{Origin, WriteRequest, WriteResult};
use relais::model::Value;

use crate::common::{free_port, gateway_config, http_client};
use crate::modbus::sim;

fn value(s: &prometheus_parse::Scrape, name: &str, label: Option<(&str, &str)>) -> Option<f64> {
    s.samples.iter().find(|x| x.metric == name && label.is_none_or(|(k, v)| x.labels.get(k) == Some(v))).and_then(|x| match x.value {
        prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Untyped(v) => Some(v),
        _ => None,
    })
}

async fn scrape(port: u16) -> (prometheus_parse::Scrape, String) {
    let text = http_client().get(format!("http://127.0.0.1:{port}/metrics")).send().await.unwrap().text().await.unwrap();
    (prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap(), text)
}

#[tokio::test]
async fn registers_read_vs_used_and_writes_by_result() {
    let (sim_port, admin) = (free_port(), free_port());
    let _sim = sim(&format!("[[station]]\nname = \"s\"\nlisten = \"127.0.0.1:{sim_port}\"\nunit_id = 1\n")).await;
    let dir = tempfile::tempdir().unwrap();
    // Tags at 0, 2 and 3: one request of 4 registers (the gap at 1 is read), 3 used.
    let body = format!(
        "[admin]\nlisten = \"127.0.0.1:{admin}\"\nauth = \"none\"\n\
         [[device]]\nname = \"d\"\nprotocol = \"modbus-tcp\"\nendpoint = \"127.0.0.1:{sim_port}\"\npoll_interval = \"50ms\"\ntimeout = \"300ms\"\n\
         [[device.tag]]\nname = \"a\"\ntable = \"holding\"\naddress = 0\n\
         [[device.tag]]\nname = \"b\"\ntable = \"holding\"\naddress = 2\n\
         [[device.tag]]\nname = \"sp\"\ntable = \"holding\"\naddress = 3\ntype = \"u16\"\nwritable = true\nmax = 100\n"
    );
    let gw = Gateway::start(gateway_config(dir.path(), &body), RunOptions::default()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (s, text) = scrape(admin).await;
    let read = value(&s, "relais_device_registers_read_total", Some(("device", "d"))).expect("registers read");
    let used = value(&s, "relais_device_registers_used_total", Some(("device", "d"))).expect("registers used");
    assert!(read >= 8.0, "several polls of 4 registers: {read}\n{text}");
    assert_eq!(used * 4.0, read * 3.0, "3 of every 4 registers read are used: read {read}, used {used}");

    // Writes: one ok, two refused (out of range, unknown tag).
    let w = |tag: &str, v: i64| {
        gw.actuators.write(WriteRequest::new("d", tag, Value::I64(v), Origin::Command { id: format!("{tag}{v}"), client: None }))
    };
    assert_eq!(w("sp", 7).await.result, WriteResult::Ok);
    assert_eq!(w("sp", 700).await.result, WriteResult::Refused);
    assert_eq!(w("nope", 1).await.result, WriteResult::Refused);
    let (s, text) = scrape(admin).await;
    assert_eq!(value(&s, "relais_writes_total", Some(("result", "ok"))), Some(1.0), "{text}");
    assert_eq!(value(&s, "relais_writes_total", Some(("result", "refused"))), Some(2.0), "{text}");
    assert_eq!(value(&s, "relais_writes_total", Some(("result", "failed"))), Some(0.0), "{text}");
    assert_eq!(value(&s, "relais_ring_wait_seconds_total", None), Some(0.0), "nobody waited for the ring: {text}");
    assert!(!text.contains("relais_opcua_session_up{device=\"d\"}"), "a Modbus device has no OPC UA session: {text}");
    gw.shutdown().await.unwrap();
}
