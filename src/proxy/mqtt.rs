//! MQTT-aware toxic `refuse_connect`: the proxy plays a broker that refuses
//! the client. The CONNECT is read and the CONNACK written with rumqttc's
//! `mqttbytes` codec (MQTT 3.1.1 §3.1 CONNECT, §3.2 CONNACK; return code 5
//! "Connection Refused, not authorized", §3.2.2.3), then the connection is
//! closed, as a broker does after a refusing CONNACK (§3.2.2.3).

use std::time::Duration;

use bytes::BytesMut;
use rumqttc::mqttbytes::v4::{ConnAck, ConnectReturnCode, Packet};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long the proxy waits for the client's CONNECT.
const CONNECT_WAIT: Duration = Duration::from_secs(10);

/// Largest packet read while waiting for CONNECT.
const MAX_PACKET: usize = 64 * 1024;

/// Reads the client's first packet; when it is a CONNECT, answers CONNACK
/// "not authorized". The stream is closed when this returns. Returns the
/// client id refused, or why nothing was answered.
pub async fn refuse(mut client: TcpStream) -> Result<String, String> {
    let mut buf = BytesMut::with_capacity(1024);
    let read = async {
        loop {
            match Packet::read(&mut buf, MAX_PACKET) {
                Ok(p) => return Ok(p),
                Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => {}
                Err(e) => return Err(format!("not an MQTT packet: {e:?}")),
            }
            match client.read_buf(&mut buf).await {
                Ok(0) => return Err("closed before CONNECT".to_string()),
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    };
    let packet = tokio::time::timeout(CONNECT_WAIT, read).await.map_err(|_| "no CONNECT within 10 s".to_string())??;
    let Packet::Connect(connect) = packet else {
        return Err(format!("first packet is not CONNECT: {packet:?}"));
    };
    let mut out = BytesMut::new();
    ConnAck::new(ConnectReturnCode::NotAuthorized, false).write(&mut out).map_err(|e| format!("{e:?}"))?;
    client.write_all(&out).await.map_err(|e| e.to_string())?;
    let _ = client.shutdown().await;
    Ok(connect.client_id)
}
