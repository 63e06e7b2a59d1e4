//! A packet-reading MQTT proxy for the "no stale PUBACK on a new connection"
//! tests (the field case behind rumqttc issue #849), shared by the commands
//! and mqtt-in tests: it forwards whole packets both ways (read with
//! rumqttc's own packet reader) and logs them per connection; on the first
//! connection, once it handed the client a PUBLISH on a given topic, it lets
//! nothing of the client through any more (its PUBACK is lost) and cuts the
//! connection after a delay.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use rumqttc::Packet;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// `(connection number, from the broker?, packet)` in the order seen.
pub type Log = Arc<Mutex<Vec<(usize, bool, Packet)>>>;

/// Forwards whole packets from `r` to `w`, logging each. Towards the broker
/// (`!down`), drops them instead while `mute` is set. With `cut_after` set,
/// `(topic, delay)`: after the first PUBLISH on that topic, sets `mute`
/// and ends the connection `delay` later.
async fn pump(
    mut r: OwnedReadHalf,
    mut w: OwnedWriteHalf,
    conn: usize,
    down: bool,
    log: Log,
    mute: Arc<AtomicBool>,
    cut_after: Option<(String, Duration)>,
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
            let cut = matches!((&p, &cut_after), (Packet::Publish(p), Some((t, _))) if &p.topic == t);
            log.lock().unwrap().push((conn, down, p));
            if (down || !mute.load(Ordering::SeqCst)) && w.write_all(&raw).await.is_err() {
                return;
            }
            if cut {
                mute.store(true, Ordering::SeqCst);
                tokio::time::sleep(cut_after.as_ref().map_or(Duration::ZERO, |c| c.1)).await;
                let _ = w.shutdown().await;
                return;
            }
        }
    }
}

/// A proxy to `upstream` whose first connection loses relais's answer to
/// the first PUBLISH on `topic`, then is cut `cut_delay` later.
pub async fn proxy(upstream: u16, topic: &str, log: Log, cut_delay: Duration) -> u16 {
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
            let cut = (conn == 0).then(|| (topic.clone(), cut_delay));
            let log = log.clone();
            tokio::spawn(async move {
                pump(sr, cw, conn, true, log, mute, cut).await;
                up.abort();
            });
        }
    });
    port
}

/// The number of connections in `log`; panics when a PUBACK the client
/// sent answers no PUBLISH the broker sent on the same connection.
pub fn assert_pubacks_on_their_own_connection(log: &[(usize, bool, Packet)]) -> usize {
    let conns = log.iter().map(|e| e.0).max().unwrap_or(0) + 1;
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
    conns
}
