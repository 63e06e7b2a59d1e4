//! The commands task: one MQTT connection (persistent session, QoS 1
//! subscription, manual acknowledgements), the publishes handled one after
//! the other, the responses published at QoS 1.
//!
//! # Invariants
//!
//! - **A PUBACK only on the connection its publish came in on.** Each
//!   connection is a new `rumqttc` client and event loop; after any
//!   connection error both are dropped, with whatever acknowledgement they
//!   still held (rumqttc keeps unsent requests across its own reconnects
//!   and would send a stale PUBACK, with a packet id the broker may since
//!   have given to another message: rumqttc issue #849). The broker
//!   redelivers what was not acknowledged; the store answers it.
//! - **Acknowledged after the id is on disk**, never before: a crash before
//!   the PUBACK gets the command redelivered, and the store then knows it.
//! - A response is handed to the client of the connection current when it
//!   settles (or the next one, while there is none); one handed over and
//!   not yet acknowledged by the broker when that connection drops is
//!   lost: the sender gets it again by sending the same id again.
//! - `EventLoop::poll` is raced only against `stop`: dropped while it
//!   connects, it would start over with a second connection.

use std::time::Duration;

use rumqttc::{AsyncClient, Event, Incoming, QoS};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::config::CommandsConfig;
use super::handle::{Handler, Outgoing};
use crate::util::Backoff;

/// Prune settled ids this often.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Starts the commands tasks: the connection (the only caller of
/// `EventLoop::poll`, which is not cancel-safe while it connects: it is
/// never raced against anything but `stop`), the publisher of responses,
/// the pruner.
pub fn spawn(handler: Handler, rx: mpsc::UnboundedReceiver<Outgoing>, stop: CancellationToken) -> Vec<JoinHandle<()>> {
    let (current, client) = watch::channel(None);
    let store = handler.store.clone();
    let pruner = tokio::spawn({
        let stop = stop.clone();
        async move {
            let mut every = tokio::time::interval(PRUNE_EVERY);
            loop {
                tokio::select! { _ = stop.cancelled() => return, _ = every.tick() => {} }
                let store = store.clone();
                let now = crate::model::Timestamp::now().as_nanos() / 1_000_000;
                let _ = tokio::task::spawn_blocking(move || store.lock().unwrap_or_else(|e| e.into_inner()).prune(now)).await;
            }
        }
    });
    vec![tokio::spawn(run(handler, current, stop.clone())), tokio::spawn(respond(rx, client, stop)), pruner]
}

fn options(cfg: &CommandsConfig) -> anyhow::Result<rumqttc::MqttOptions> {
    let mut o = crate::mqtt::options(&cfg.conn)?;
    o.set_clean_session(false);
    o.set_manual_acks(true);
    Ok(o)
}

/// Publishes the responses with the client of the current connection; one
/// whose client died before taking it waits for the next connection.
async fn respond(mut rx: mpsc::UnboundedReceiver<Outgoing>, mut client: watch::Receiver<Option<AsyncClient>>, stop: CancellationToken) {
    loop {
        let (topic, body) = tokio::select! {
            _ = stop.cancelled() => return,
            r = rx.recv() => match r { Some(r) => r, None => return },
        };
        let body = body.to_string();
        loop {
            let c = tokio::select! {
                _ = stop.cancelled() => return,
                c = client.wait_for(Option::is_some) => match c { Ok(c) => c.clone(), Err(_) => return },
            };
            let Some(c) = c else { continue };
            if c.publish(topic.clone(), QoS::AtLeastOnce, false, body.clone()).await.is_ok() {
                break;
            }
            // That connection is gone: wait for the next one.
            tokio::select! { _ = stop.cancelled() => return, _ = client.changed() => {} }
        }
    }
}

async fn run(h: Handler, current: watch::Sender<Option<AsyncClient>>, stop: CancellationToken) {
    let cfg = h.cfg.clone();
    let mut backoff = Backoff::new(Duration::from_secs(1), cfg.conn.reconnect_max);
    let mut logged = false;
    loop {
        let opts = match options(&cfg) {
            Ok(o) => o,
            Err(e) => {
                tracing::error!(broker = %cfg.conn.broker, error = %e, "commands: cannot set up the MQTT connection");
                tokio::select! { _ = stop.cancelled() => return, _ = tokio::time::sleep(cfg.conn.reconnect_max) => continue }
            }
        };
        // A new client and event loop per connection (see the module docs).
        let (client, mut el) = AsyncClient::new(opts, 256);
        current.send_replace(Some(client.clone()));
        loop {
            let ev = tokio::select! {
                _ = stop.cancelled() => {
                    let _ = client.try_disconnect();
                    return;
                }
                ev = el.poll() => ev,
            };
            match ev {
                Ok(Event::Incoming(Incoming::ConnAck(ack))) => {
                    backoff.reset();
                    logged = false;
                    // Subscribed on every connection: a retained command is
                    // refused, a duplicate answered from the store.
                    for f in cfg.topics.filters() {
                        let _ = client.try_subscribe(f, QoS::AtLeastOnce);
                    }
                    tracing::info!(broker = %cfg.conn.broker, filters = ?cfg.topics.filters(), session_present = ack.session_present, "commands subscribed");
                }
                Ok(Event::Incoming(Incoming::Publish(p))) => {
                    h.on_publish(&p.topic, &p.payload, p.retain).await;
                    if p.qos != QoS::AtMostOnce {
                        // This connection's client: the ack goes out on it or not at all.
                        let _ = client.try_ack(&p);
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    if !logged {
                        tracing::warn!(broker = %cfg.conn.broker, error = %e, "commands: MQTT connection lost; reconnecting");
                        logged = true;
                    }
                    break;
                }
            }
        }
        current.send_replace(None);
        drop((client, el));
        let wait = backoff.next_wait();
        tokio::select! { _ = stop.cancelled() => return, _ = tokio::time::sleep(wait) => {} }
    }
}
