//! One MQTT connection: options (Last Will, credentials, TLS), the client, and
//! the event-loop task that forwards events to the sink.
//!
//! The rumqttc `EventLoop` must be polled all the time, so it runs in its own
//! task. A session is never reused after an error: the sink builds a fresh one
//! and resends from its acknowledged cursor instead of trusting what the old
//! client still held in memory.

use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, QoS, TlsConfiguration, Transport};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::config::MqttSinkConfig;
use super::encode::status_json;

/// What the event-loop task reports.
#[derive(Debug)]
pub enum SessionEvent {
    /// An MQTT event (ConnAck, PubAck, Outgoing::Publish …).
    Mqtt(Event),
    /// The connection ended with this error.
    Closed(String),
}

/// A live MQTT session.
pub struct Session {
    /// The client used to publish.
    pub client: AsyncClient,
    /// Events from the broker and the event loop, in order.
    pub events: mpsc::Receiver<SessionEvent>,
    task: JoinHandle<()>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Builds the rustls client configuration (ring provider only): the CA file
/// or the system roots, and the client certificate for mutual TLS.
pub fn tls_config(cfg: &MqttSinkConfig) -> anyhow::Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    match &cfg.ca_file {
        Some(ca) => {
            for cert in CertificateDer::pem_file_iter(ca).map_err(|e| anyhow::anyhow!("ca_file {}: {e}", ca.display()))? {
                let cert = cert.map_err(|e| anyhow::anyhow!("ca_file {}: {e}", ca.display()))?;
                roots.add(cert).map_err(|e| anyhow::anyhow!("ca_file {}: {e}", ca.display()))?;
            }
            if roots.is_empty() {
                anyhow::bail!("ca_file {} holds no PEM certificate", ca.display());
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for c in found.certs {
                let _ = roots.add(c);
            }
            if roots.is_empty() {
                anyhow::bail!("no system CA certificates found; set ca_file");
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    Ok(match (&cfg.client_cert, &cfg.client_key) {
        (Some(cert), Some(key)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| anyhow::anyhow!("client_cert {}: {e}", cert.display()))?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| anyhow::anyhow!("client_key {}: {e}", key.display()))?;
            builder.with_client_auth_cert(chain, key)?
        }
        _ => builder.with_no_client_auth(),
    })
}

/// MQTT options of a sink: clean session, keep-alive, Last Will (retained
/// `offline` on the status topic, QoS 1), credentials, TLS.
pub fn options(cfg: &MqttSinkConfig, gateway: &str) -> anyhow::Result<MqttOptions> {
    let mut o = MqttOptions::new(&cfg.client_id, &cfg.broker.host, cfg.broker.port);
    o.set_keep_alive(cfg.keep_alive);
    o.set_clean_session(true);
    // Above our own window (birth and goodbye included), so packet ids never
    // collide: rumqttc wraps ids at this value.
    o.set_inflight(cfg.max_inflight.saturating_add(2));
    o.set_request_channel_capacity(cfg.max_inflight as usize * 2 + 16);
    o.set_max_packet_size(16 * 1024 * 1024, 16 * 1024 * 1024);
    o.set_last_will(LastWill::new(&cfg.status_topic, status_json(gateway, false), QoS::AtLeastOnce, true));
    if let Some(u) = &cfg.username {
        o.set_credentials(u, cfg.password.as_ref().map(|p| p.expose()).unwrap_or(""));
    }
    if cfg.broker.tls {
        o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(Arc::new(tls_config(cfg)?))));
    }
    Ok(o)
}

/// Starts a session: the client and its event-loop task.
pub fn start(cfg: &MqttSinkConfig, gateway: &str) -> anyhow::Result<Session> {
    let opts = options(cfg, gateway)?;
    let cap = opts.request_channel_capacity();
    let (client, mut el) = AsyncClient::new(opts, cap);
    el.network_options.set_connection_timeout(5);
    el.network_options.set_tcp_nodelay(true);
    let (tx, events) = mpsc::channel(4096);
    let task = tokio::spawn(async move {
        loop {
            match el.poll().await {
                Ok(ev) => {
                    if tx.send(SessionEvent::Mqtt(ev)).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.send(SessionEvent::Closed(e.to_string())).await;
                    return;
                }
            }
        }
    });
    Ok(Session { client, events, task })
}

/// Waits for `d`, or less if `cancel` fires.
pub async fn pause(d: Duration, cancel: &tokio_util::sync::CancellationToken) {
    tokio::select! {
        _ = cancel.cancelled() => {}
        _ = tokio::time::sleep(d) => {}
    }
}
