//! The far ends of the `outage` bench: each one started (or, for PostgreSQL,
//! prepared) here, its sink's config, and the latencies of the live records.

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use futures::StreamExt;

use super::common::{cpu_seconds, free_port, mosquitto, wait_port};
use super::now_ms;

/// The machine's PostgreSQL (trust auth, database `test`).
const PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// (seq, latency ms) of live records as the far end received them.
type Seen = Arc<Mutex<Vec<(u64, f64)>>>;

/// One far end: a server started here (nats-server, Mosquitto, an axum HTTP
/// server) or a schema of its own in the machine's PostgreSQL.
pub enum Far {
    /// nats-server with JetStream; latency = stream store time − acquisition.
    Nats { port: u16, child: Child },
    /// Mosquitto and a QoS 0 subscriber to the live device's topics;
    /// latency = the subscriber's receive time − acquisition.
    Mqtt { port: u16, child: Child, seen: Seen },
    /// axum answering 200; latency = receive time − acquisition.
    Http { port: u16, seen: Seen },
    /// A schema dropped afterwards; its samples table gets a column
    /// `arrived` (DEFAULT clock_timestamp(), the time of the row's INSERT,
    /// a few ms before its COMMIT); latency = arrived − acquisition.
    Pg { schema: String, client: tokio_postgres::Client },
}

/// `(seq, value)` of each sample in a JSON message (one sample, or a
/// `samples` array) from the device `live`, whose value is its acquisition
/// time in Unix ms.
fn live_samples(payload: &[u8]) -> Vec<(u64, f64)> {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(payload) else { return Vec::new() };
    let items = match v["samples"].as_array() {
        Some(a) => a.clone(),
        None => vec![v],
    };
    items.iter().filter_map(|x| Some((x["seq"].as_u64()?, x["value"].as_f64()?))).collect()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

async fn subscriber(port: u16, seen: Seen) {
    let mut o = rumqttc::MqttOptions::new("outage-bench-sub", "127.0.0.1", port);
    o.set_max_packet_size(16 << 20, 16 << 20);
    let (client, mut el) = rumqttc::AsyncClient::new(o, 1000);
    client.subscribe("o/live/#", rumqttc::QoS::AtMostOnce).await.unwrap();
    client.subscribe("o/live", rumqttc::QoS::AtMostOnce).await.unwrap();
    tokio::spawn(async move {
        let _keep = client;
        while let Ok(ev) = el.poll().await {
            if let rumqttc::Event::Incoming(rumqttc::Packet::Publish(p)) = ev {
                let t = now_ms();
                seen.lock().unwrap().extend(live_samples(&p.payload).into_iter().map(|(s, v)| (s, t - v)));
            }
        }
    });
    // The subscriptions are in place long before the sink starts (SUBACKs
    // on loopback take a few ms).
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
}

async fn http_server(seen: Seen) -> u16 {
    use axum::routing::post;
    let app = axum::Router::new().route(
        "/ingest",
        post(move |b: axum::body::Bytes| async move {
            let t = now_ms();
            if contains(&b, br#""device":"live""#) {
                seen.lock().unwrap().extend(live_samples(&b).into_iter().filter(|(_, v)| *v > 0.0).map(|(s, v)| (s, t - v)));
            }
            ""
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    port
}

impl Far {
    /// Starts the far end of `sink` (`nats`, `mqtt`, `http`, `postgres`).
    pub async fn start(sink: &str, dir: &std::path::Path) -> Far {
        match sink {
            "nats" => {
                let port = free_port();
                let child = Command::new("nats-server")
                    .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
                    .arg(dir.join("js"))
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("nats-server not found");
                wait_port(port);
                Far::Nats { port, child }
            }
            "mqtt" => {
                let port = free_port();
                let conf = dir.join("mosquitto.conf");
                std::fs::write(&conf, format!("listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\n")).unwrap();
                let child = Command::new(mosquitto()).arg("-c").arg(&conf).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
                wait_port(port);
                let seen = Seen::default();
                subscriber(port, seen.clone()).await;
                Far::Mqtt { port, child, seen }
            }
            "http" => {
                let seen = Seen::default();
                Far::Http { port: http_server(seen.clone()).await, seen }
            }
            "postgres" => {
                let (client, conn) = tokio_postgres::connect(PG_URL, tokio_postgres::NoTls).await.unwrap();
                tokio::spawn(conn);
                let schema = format!("outage_bench_{}", std::process::id());
                let table = format!("{schema}.relais_samples");
                let create = relais::sinks::postgres::schema::create_samples(&table, false);
                client
                    .batch_execute(&format!(
                        "CREATE SCHEMA {schema}; {create}; \
                         ALTER TABLE {table} ADD COLUMN arrived timestamptz NOT NULL DEFAULT clock_timestamp()"
                    ))
                    .await
                    .unwrap();
                Far::Pg { schema, client }
            }
            other => panic!("SINK {other}: nats, mqtt, http or postgres"),
        }
    }

    /// The `[[sink]]` table of this far end (name `far`).
    pub fn sink_toml(&self, format: &str, extra: &str) -> String {
        let head = "[[sink]]\nname = \"far\"\n";
        match self {
            Far::Nats { port, .. } => {
                format!("{head}type = \"nats\"\nurl = \"nats://127.0.0.1:{port}\"\ncreate_stream = true\nformat = \"{format}\"\n{extra}")
            }
            Far::Mqtt { port, .. } => format!(
                "{head}type = \"mqtt\"\nurl = \"mqtt://127.0.0.1:{port}\"\nqos = 1\nformat = \"{format}\"\n\
                 topic = \"o/{{device}}/{{tag}}\"\nbatch_topic = \"o/{{device}}\"\n{extra}"
            ),
            Far::Http { port, .. } => format!("{head}type = \"http\"\nurl = \"http://127.0.0.1:{port}/ingest\"\n{extra}"),
            Far::Pg { schema, .. } => format!("{head}type = \"postgres\"\nurl = \"{PG_URL}\"\nschema = \"{schema}\"\n{extra}"),
        }
    }

    /// CPU seconds (user + system) of the far end's server processes: the
    /// server, or PostgreSQL's backends of this sink plus its WAL writer,
    /// checkpointer and background writer (empty for the in-process HTTP server).
    pub async fn cpu(&self) -> f64 {
        match self {
            Far::Nats { child, .. } | Far::Mqtt { child, .. } => cpu_seconds(child.id()),
            Far::Http { .. } => 0.0,
            Far::Pg { client, .. } => {
                let q = "SELECT pid FROM pg_stat_activity WHERE application_name LIKE 'relais % far' \
                         OR backend_type IN ('walwriter', 'checkpointer', 'background writer')";
                let rows = client.query(q, &[]).await.unwrap();
                rows.iter().map(|r| cpu_seconds(r.get::<_, i32>(0) as u32)).sum()
            }
        }
    }

    /// Latencies in ms of the records `after < seq <= upto`, sorted.
    pub async fn latencies(&self, after: u64, upto: u64) -> Vec<f64> {
        let mut out: Vec<f64> = match self {
            Far::Nats { port, .. } => nats_latencies(*port, "RELAIS_bench", after, upto).await,
            Far::Mqtt { seen, .. } | Far::Http { seen, .. } => {
                seen.lock().unwrap().iter().filter(|(s, _)| *s > after && *s <= upto).map(|x| x.1).collect()
            }
            Far::Pg { schema, client } => {
                let q = format!(
                    "SELECT (extract(epoch FROM arrived) * 1000 - value)::float8 FROM {schema}.relais_samples \
                     WHERE gateway = 'bench' AND seq > $1 AND seq <= $2"
                );
                let rows = client.query(&q, &[&(after as i64), &(upto as i64)]).await.unwrap();
                rows.iter().map(|r| r.get::<_, f64>(0)).collect()
            }
        };
        out.sort_by(|a, b| a.total_cmp(b));
        out
    }

    /// Stops the server, or drops the schema.
    pub async fn stop(self) {
        match self {
            Far::Nats { mut child, .. } | Far::Mqtt { mut child, .. } => {
                let _ = child.kill();
                let _ = child.wait();
            }
            Far::Http { .. } => {}
            Far::Pg { schema, client } => client.batch_execute(&format!("DROP SCHEMA {schema} CASCADE")).await.unwrap(),
        }
    }
}

/// Stored seq → (store time − acquisition time) in ms, for records above `after`.
async fn nats_latencies(port: u16, stream: &str, after: u64, upto: u64) -> Vec<f64> {
    let js = async_nats::jetstream::new(async_nats::connect(format!("127.0.0.1:{port}")).await.unwrap());
    let s = js.get_stream(stream).await.unwrap();
    let c = s.create_consumer(pull::OrderedConfig { deliver_policy: DeliverPolicy::All, ..Default::default() }).await.unwrap();
    let total = s.cached_info().state.messages;
    let mut msgs = c.messages().await.unwrap();
    let mut out = Vec::new();
    for _ in 0..total {
        let Some(Ok(m)) = msgs.next().await else { break };
        let stored = m.info().unwrap().published.unix_timestamp_nanos() as f64 / 1e6;
        for (seq, v) in live_samples(&m.payload) {
            if seq > after && seq <= upto {
                out.push(stored - v);
            }
        }
    }
    out
}
