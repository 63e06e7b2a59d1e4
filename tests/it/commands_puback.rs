//! No stale PUBACK on a new connection (the field case behind rumqttc issue
//! #849): a proxy between relais's command connection and the broker reads
//! every MQTT packet of both directions (rumqttc's own packet reader). On
//! the first connection, once it handed relais a command, it lets nothing
//! of relais through any more (its PUBACK is lost) and cuts the connection
//! 500 ms later. Every PUBACK relais sends must answer a PUBLISH the broker
//! sent on the same connection; the command, redelivered on the next
//! connection, is answered from the store and written once.

use std::sync::Arc;
use std::time::Duration;

use rumqttc::Packet;

use relais::app::{Gateway, RunOptions};
use relais::config::Config;

use crate::common::{Mosquitto, Sub, free_port};
use crate::puback_proxy::{Log, assert_pubacks_on_their_own_connection, proxy};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_puback_only_answers_a_publish_of_its_own_connection() {
    let Some(broker) = Mosquitto::start() else { return };
    crate::common::logs();
    let log: Log = Arc::default();
    let cmd = "t/relais/gw/cmd/pump/sp";
    let pport = proxy(broker.port, cmd, log.clone(), Duration::from_millis(500)).await;
    let port = free_port();
    let sim = crate::modbus::sim(&format!("[[station]]\nname = \"s\"\nlisten = \"127.0.0.1:{port}\"\n")).await;
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[gateway]\nid = \"gw\"\ndata_dir = \"{}\"\nstatus_interval = \"0s\"\nhealth_interval = \"0s\"\n\
         [[device]]\nname = \"pump\"\nprotocol = \"modbus-tcp\"\nendpoint = \"127.0.0.1:{port}\"\npoll_interval = \"200ms\"\n\
         [[device.tag]]\nname = \"sp\"\ntable = \"holding\"\naddress = 10\ntype = \"i16\"\nwritable = true\n\
         [commands]\nurl = \"mqtt://127.0.0.1:{pport}\"\nprefix = \"t\"\nreconnect_max = \"1s\"\n",
        dir.path().join("data").display()
    );
    let cfg = Config::parse(&text, "gw.toml", std::path::Path::new(".")).unwrap_or_else(|e| panic!("{e}"));
    let mut sub = Sub::new(broker.port, "t/relais/gw/cmd-result/#").await;
    let gw = Gateway::start(cfg, RunOptions::default()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (client, mut el) = rumqttc::AsyncClient::new(rumqttc::MqttOptions::new("test-pub", "127.0.0.1", broker.port), 10);
    client.publish(cmd, rumqttc::QoS::AtLeastOnce, false, br#"{"id":"s1","value":5}"#.to_vec()).await.unwrap();
    let pubber = tokio::spawn(async move { while el.poll().await.is_ok() {} });
    let mut answers = Vec::new();
    while let Some(m) = sub.next(Duration::from_secs(8)).await {
        answers.push(m.json());
        if answers.iter().any(|a| a["duplicate"] == true) {
            break;
        }
    }
    pubber.abort();
    gw.shutdown().await.unwrap();
    let log = log.lock().unwrap().clone();
    let conns = assert_pubacks_on_their_own_connection(&log);
    assert!(conns >= 2, "the first connection was cut and relais reconnected: {log:?}");
    let redelivered = log.iter().any(|(c, down, p)| *c > 0 && *down && matches!(p, Packet::Publish(p) if p.topic == cmd && p.dup));
    assert!(redelivered, "the broker redelivered the unacknowledged command on a later connection: {log:?}");
    assert!(answers.iter().any(|a| a["result"] == "ok" && a["duplicate"] == true), "{answers:?}");
    let writes = sim.station("s").unwrap().take_writes().iter().filter(|w| w.1 == 10).count();
    assert_eq!(writes, 1, "written once: {answers:?}");
}
