//! No stale PUBACK on a new connection (the field case behind rumqttc issue
//! #849): a proxy between relais's command connection and the broker reads
//! every MQTT packet of both directions (rumqttc's own packet reader). On
//! the first connection, once it handed relais a command, it lets nothing
//! of relais through any more (its PUBACK is lost) and cuts the connection
//! 500 ms later. Every PUBACK relais sends must answer a PUBLISH the broker
//! sent on the same connection; the command, redelivered on the next
//! connection, is answered from the store and written once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use rumqttc::Packet;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use relais::app::{Gateway, RunOptions};
use relais::config::Config;

use crate::common::{Mosquitto, Sub, free_port};

/// `(connection number, from the broker?, packet)` in the order seen.
type Log = Arc<Mutex<Vec<(usize, bool, Packet)>>>;

/// Forwards whole packets from `r` to `w`, logging each. Towards the broker
/// (`!down`), drops them instead while `mute` is set. With `cut_after` set,
/// after the first PUBLISH on that topic: sets `mute`, and ends the
/// connection 500 ms later.
async fn pump(
    mut r: OwnedReadHalf,
    mut w: OwnedWriteHalf,
    conn: usize,
    down: bool,
    log: Log,
    mute: Arc<AtomicBool>,
    cut_after: Option<String>,
) {
    let mut buf = BytesMut::new();
    let mut chunk = vec![0u8; 65536];
    loop {
        match r.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        while let Ok(h) = rumqttc::mqttbytes::check(buf.iter(), 1 << 20) {
            let raw = buf.split_to(h.frame_length());
            let Ok(p) = Packet::read(&mut raw.clone(), 1 << 20) else { return };
            let cut = matches!((&p, &cut_after), (Packet::Publish(p), Some(t)) if &p.topic == t);
            log.lock().unwrap().push((conn, down, p));
            if (down || !mute.load(Ordering::SeqCst)) && w.write_all(&raw).await.is_err() {
                return;
            }
            if cut {
                mute.store(true, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(500)).await;
                let _ = w.shutdown().await;
                return;
            }
        }
    }
}

/// A proxy to `upstream` whose first connection loses relais's answer to
/// the first PUBLISH on `topic`, then is cut.
async fn proxy(upstream: u16, topic: &str, log: Log) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let topic = topic.to_string();
    tokio::spawn(async move {
        for conn in 0.. {
            let Ok((client, _)) = listener.accept().await else { return };
            let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await else { continue };
            let ((cr, cw), (sr, sw)) = (client.into_split(), server.into_split());
            let mute = Arc::new(AtomicBool::new(false));
            let up = tokio::spawn(pump(cr, sw, conn, false, log.clone(), mute.clone(), None));
            let cut = (conn == 0).then(|| topic.clone());
            let log = log.clone();
            tokio::spawn(async move {
                pump(sr, cw, conn, true, log, mute, cut).await;
                up.abort();
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_puback_only_answers_a_publish_of_its_own_connection() {
    let Some(broker) = Mosquitto::start() else { return };
    crate::common::logs();
    let log: Log = Arc::default();
    let cmd = "t/relais/gw/cmd/pump/sp";
    let pport = proxy(broker.port, cmd, log.clone()).await;
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
    let conns = log.iter().map(|e| e.0).max().unwrap_or(0) + 1;
    assert!(conns >= 2, "the first connection was cut and relais reconnected: {log:?}");
    for c in 0..conns {
        let mut published = Vec::new();
        for (_, down, p) in log.iter().filter(|e| e.0 == c) {
            match (down, p) {
                (true, Packet::Publish(p)) => published.push(p.pkid),
                (false, Packet::PubAck(a)) => {
                    assert!(published.contains(&a.pkid), "connection {c}: PUBACK {} answers no PUBLISH of this connection: {log:?}", a.pkid)
                }
                _ => {}
            }
        }
    }
    let redelivered = log.iter().any(|(c, down, p)| *c > 0 && *down && matches!(p, Packet::Publish(p) if p.topic == cmd && p.dup));
    assert!(redelivered, "the broker redelivered the unacknowledged command on a later connection: {log:?}");
    assert!(answers.iter().any(|a| a["result"] == "ok" && a["duplicate"] == true), "{answers:?}");
    let writes = sim.station("s").unwrap().take_writes().iter().filter(|w| w.1 == 10).count();
    assert_eq!(writes, 1, "written once: {answers:?}");
}
