//! What the lab sees of the chain: the gateway's MQTT output (samples and
//! events, `docs/payloads.md`) and the simulator's own detections, as plain
//! records with Unix-millisecond times for the attribution.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A sample received on MQTT.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleObs {
    /// Its `seq`.
    pub seq: u64,
    /// `device`.
    pub device: String,
    /// `tag`.
    pub tag: String,
    /// `quality == "good"`.
    pub good: bool,
    /// `reason` (none when good).
    pub reason: Option<String>,
    /// `recv_ts`, Unix ms (gateway clock).
    pub at_ms: i64,
}

/// An event: a gateway event from MQTT or a simulator detection.
#[derive(Debug, Clone, PartialEq)]
pub struct EventObs {
    /// Its `seq` (none for simulator detections).
    pub seq: Option<u64>,
    /// `kind` (`device.down`, …; `sim.detection` for the simulator's).
    pub kind: String,
    /// `source.kind`: `gateway`, `device`, `tag`, `sink`, `rule`; `station` for the simulator's.
    pub source_kind: String,
    /// `source.name` (`pump1`, `pump1/temperature`; empty for the gateway).
    pub source_name: String,
    /// `details`.
    pub details: Value,
    /// Detection time, Unix ms: the event's `ts`, or its arrival when `ts` is more than a minute
    /// off (a gateway whose clock the scenario moved).
    pub at_ms: i64,
}

/// Everything observed during a run, in arrival order.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// Samples.
    pub samples: Vec<SampleObs>,
    /// Events and simulator detections.
    pub events: Vec<EventObs>,
}

/// Unix milliseconds of a `SystemTime` (0 before 1970).
pub fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

fn rfc3339_ms(v: Option<&Value>) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(v?.as_str()?).ok().map(|d| d.timestamp_millis())
}

fn sample_of(v: &Value, device: Option<&str>) -> Option<SampleObs> {
    Some(SampleObs {
        seq: v.get("seq")?.as_u64()?,
        device: device.or_else(|| v.get("device")?.as_str())?.to_string(),
        tag: v.get("tag")?.as_str()?.to_string(),
        good: v.get("quality")?.as_str()? == "good",
        reason: v.get("reason").and_then(Value::as_str).map(str::to_string),
        at_ms: rfc3339_ms(v.get("recv_ts")).or_else(|| rfc3339_ms(v.get("ts")))?,
    })
}

/// Reads one MQTT payload of the gateway: a sample (`json`), a batch (`json-batch`) or an
/// event; anything else (status, command results) gives nothing.
pub fn parse_payload(payload: &[u8], arrived_ms: i64, into: &mut Observed) {
    let Ok(v) = serde_json::from_slice::<Value>(payload) else { return };
    if let (Some(kind), Some(source)) = (v.get("kind").and_then(Value::as_str), v.get("source")) {
        let ts = rfc3339_ms(v.get("ts")).unwrap_or(arrived_ms);
        let at_ms = if (ts - arrived_ms).abs() > 60_000 { arrived_ms } else { ts };
        into.events.push(EventObs {
            seq: v.get("seq").and_then(Value::as_u64),
            kind: kind.to_string(),
            source_kind: source.get("kind").and_then(Value::as_str).unwrap_or("gateway").to_string(),
            source_name: source.get("name").and_then(Value::as_str).unwrap_or("").to_string(),
            details: v.get("details").cloned().unwrap_or(Value::Null),
            at_ms,
        });
    } else if let Some(items) = v.get("samples").and_then(Value::as_array) {
        let device = v.get("device").and_then(Value::as_str);
        into.samples.extend(items.iter().filter_map(|s| sample_of(s, device)));
    } else if let Some(s) = sample_of(&v, None) {
        into.samples.push(s);
    }
}

/// The MQTT subscriber of a run: QoS 1 on `<prefix>/#`, connected before the gateway starts.
pub struct Collector {
    /// What was received so far.
    pub observed: Arc<Mutex<Observed>>,
    /// Becomes true at the first sample.
    pub first_sample: watch::Receiver<bool>,
    task: JoinHandle<()>,
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Collector {
    /// Connects to `host:port` and subscribes to `filter`; returns once the broker
    /// acknowledged the subscription (error after 10 s).
    pub async fn start(host: &str, port: u16, filter: &str) -> anyhow::Result<Collector> {
        let id = format!("relais-lab-{:016x}", fastrand::u64(..));
        let mut o = MqttOptions::new(id, host, port);
        o.set_keep_alive(Duration::from_secs(10));
        o.set_max_packet_size(16 << 20, 16 << 20);
        let (client, mut el) = AsyncClient::new(o, 1000);
        let observed = Arc::new(Mutex::new(Observed::default()));
        let (first_tx, first_rx) = watch::channel(false);
        let (ready_tx, mut ready_rx) = tokio::sync::mpsc::unbounded_channel::<Result<(), String>>();
        let (obs, filter) = (observed.clone(), filter.to_string());
        let task = tokio::spawn(async move {
            loop {
                match el.poll().await {
                    Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                        let _ = client.try_subscribe(filter.clone(), QoS::AtLeastOnce);
                    }
                    Ok(Event::Incoming(Incoming::SubAck(_))) => {
                        let _ = ready_tx.send(Ok(()));
                    }
                    Ok(Event::Incoming(Incoming::Publish(p))) => {
                        let mut o = obs.lock().unwrap_or_else(|e| e.into_inner());
                        let before = o.samples.len();
                        parse_payload(&p.payload, unix_ms(SystemTime::now()), &mut o);
                        if o.samples.len() > before && !*first_tx.borrow() {
                            let _ = first_tx.send(true);
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        });
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let mut last = String::from("no answer");
        loop {
            match tokio::time::timeout_at(deadline, ready_rx.recv()).await {
                Ok(Some(Ok(()))) => break,
                Ok(Some(Err(e))) => last = e,
                Ok(None) | Err(_) => {
                    task.abort();
                    anyhow::bail!("cannot subscribe to the broker at {host}:{port} ({last}); start Mosquitto or give --broker");
                }
            }
        }
        Ok(Collector { observed, first_sample: first_rx, task })
    }

    /// Adds a simulator detection (`detector`, `station`, `message`) seen at `at`.
    pub fn add_sim_detection(observed: &Mutex<Observed>, at: SystemTime, detector: &str, station: &str, message: &str) {
        let mut o = observed.lock().unwrap_or_else(|e| e.into_inner());
        o.events.push(EventObs {
            seq: None,
            kind: "sim.detection".into(),
            source_kind: "station".into(),
            source_name: station.into(),
            details: serde_json::json!({ "detector": detector, "message": message }),
            at_ms: unix_ms(at),
        });
    }

    /// A copy of what was received.
    pub fn snapshot(&self) -> Observed {
        self.observed.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}
