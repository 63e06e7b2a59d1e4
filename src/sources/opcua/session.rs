//! The session supervisor of one OPC UA device: connect, build the per-session
//! state, deliver values, and come back after any loss.
//!
//! One task per device owns one library [`Session`]; a second task drives the
//! library's event loop (secure channel, keep-alive reads of
//! `Server.ServerStatus.State`, publish requests, reconnects) and forwards the
//! events that matter. On every new session the supervisor:
//!
//! 1. reads the server's NamespaceArray and resolves every `nsu=` tag again
//!    (servers renumber namespaces after updates and restarts);
//! 2. reads the operation limits (MaxNodesPerRead, MaxMonitoredItemsPerCall)
//!    and splits Read and CreateMonitoredItems calls to fit them;
//! 3. tries TransferSubscriptions for the subscriptions of the lost session
//!    when the namespace table is unchanged; otherwise, or when the server
//!    refuses (BadServiceUnsupported, BadSubscriptionIdInvalid), deletes them
//!    and creates new subscriptions with every monitored item (field case B18);
//! 4. retries a tag whose node is BadNodeIdUnknown once after reading the
//!    namespace table again (field case B16).
//!
//! The library reconnects one session: it re-activates the lost session on
//! a new secure channel, and creates a new one only when that fails (the old
//! one is gone on the server), so the server never holds two sessions of one
//! device. Attempts back off exponentially up to `reconnect_max`, with jitter,
//! forever. While disconnected, every tag gets one bad sample with reason
//! `comm_failure` (per state change, not per interval).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::StreamExt;
use opcua::client::{DataChangeCallback, MonitoredItem, Session, SessionConnectMode, SessionPollResult};
use opcua::types::{
    AttributeId, DataChangeFilter, DataChangeTrigger, DataValue, ExtensionObject, MonitoredItemCreateRequest, MonitoringMode,
    MonitoringParameters, NamespaceMap, NodeId, ReadValueId, StatusCode, TimestampsToReturn, VariableId, Variant,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::client::{OpenError, Pki, build_client, explain, identity_token, open_session};
use super::config::{Acquisition, Deadband, OpcUaDevice};
use super::convert::{status_reason, to_sample};
use crate::ingest::Ingest;
use crate::model::{Quality, Sample, TagMeta, Timestamp, reason};
use crate::telemetry::DeviceStats;

/// Most nodes per Read and items per CreateMonitoredItems when the server
/// states no limit (0) or cannot be asked.
const DEFAULT_CHUNK: usize = 1000;
/// How often tags whose node or namespace was missing are tried again.
const RETRY_MISSING: Duration = Duration::from_secs(30);
/// Shortest time between two namespace re-reads caused by BadNodeIdUnknown.
const NS_RECHECK: Duration = Duration::from_secs(10);

/// Events of the library's event loop that the supervisor acts on.
#[derive(Debug)]
enum Event {
    Connected(bool),
    Lost(StatusCode),
    ConnectFailed(StatusCode),
    SessionDead(StatusCode),
}

/// A subscription of the device: tags with the same publishing interval.
struct SubGroup {
    publishing_interval: Duration,
    tags: Vec<usize>,
    id: Option<u32>,
    /// Tags whose item could not be created (retried every [`RETRY_MISSING`]).
    missing: Vec<usize>,
    /// Why the server refused to create this subscription (its tags got a
    /// bad sample with it; retried every [`RETRY_MISSING`]).
    refused: Option<String>,
}

/// Tags polled at one interval.
struct PollGroup {
    interval: Duration,
    tags: Vec<usize>,
    next_due: Instant,
}

/// One device's runtime state.
pub struct Device {
    dev: OpcUaDevice,
    metas: Arc<Vec<Arc<TagMeta>>>,
    stats: Arc<DeviceStats>,
    pki: Pki,
    gateway_id: String,
    subs: Vec<SubGroup>,
    polls: Vec<PollGroup>,
    /// NodeId of each tag in the current session (None = unresolved).
    resolved: Vec<Option<NodeId>>,
    /// The current session's NamespaceArray.
    namespaces: Vec<String>,
    max_read: usize,
    max_items: usize,
    /// The server's MaxMonitoredItemsPerSubscription (`usize::MAX`: none).
    max_per_sub: usize,
    up: bool,
    /// The outage reported on the tags (one bad sample each): its reason and
    /// when. `None` once values flow again, so the next outage is reported.
    down: Option<(String, Instant)>,
    /// The last connection problem logged, and when.
    last_problem: Option<(String, Instant)>,
    last_ns_check: Option<Instant>,
    /// The namespace table changed while items were created: rebuild again.
    ns_changed_pending: bool,
    samples_tx: mpsc::UnboundedSender<Sample>,
    /// Milliseconds after `epoch` of the last Publish response (data or
    /// keep-alive), written by the event-loop pump: the publish watchdog.
    last_publish: Arc<std::sync::atomic::AtomicU64>,
    epoch: Instant,
}

/// Starts one supervisor task per device. PKI folders are opened (and the
/// gateway certificate made) before any task starts, so devices sharing a
/// folder never race to create it.
pub fn spawn_all(
    devices: Vec<OpcUaDevice>,
    ingest: Arc<Ingest>,
    telemetry: &crate::telemetry::Telemetry,
    cancel: CancellationToken,
    data_dir: &std::path::Path,
    gateway_id: &str,
) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let mut pkis: HashMap<std::path::PathBuf, Pki> = HashMap::new();
    let mut handles = Vec::new();
    for dev in devices {
        let dir = dev.pki_dir.clone().unwrap_or_else(|| data_dir.join("pki"));
        let pki = match pkis.get(&dir) {
            Some(p) => p.clone(),
            None => {
                let p = Pki::open(&dir, gateway_id)?;
                pkis.insert(dir.clone(), p.clone());
                p
            }
        };
        pki.trust(&dev.trust).map_err(|e| anyhow::anyhow!("device {}: trust_server_certificate: {e}", dev.name))?;
        let stats = telemetry.device(&dev.name);
        let (ingest, cancel, gateway_id) = (ingest.clone(), cancel.clone(), gateway_id.to_string());
        handles.push(tokio::spawn(async move {
            loop {
                let device = Device::new(dev.clone(), ingest.clone(), stats.clone(), pki.clone(), gateway_id.clone());
                match tokio::spawn(device.run(cancel.clone())).await {
                    Ok(()) => return,
                    Err(e) if e.is_panic() => {
                        tracing::error!(device = %dev.name, "OPC UA supervisor crashed; restarting it in 1 s");
                        tokio::select! {
                            _ = cancel.cancelled() => return,
                            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        }
                    }
                    Err(_) => return,
                }
            }
        }));
    }
    Ok(handles)
}

impl Device {
    /// The runtime of `dev`; nothing is contacted yet.
    pub fn new(dev: OpcUaDevice, ingest: Arc<Ingest>, stats: Arc<DeviceStats>, pki: Pki, gateway_id: String) -> Device {
        let name: Arc<str> = dev.name.as_str().into();
        let metas: Arc<Vec<Arc<TagMeta>>> =
            Arc::new(dev.tags.iter().map(|t| TagMeta::new(name.clone(), t.name.as_str(), t.unit.as_deref())).collect());
        let mut subs: Vec<SubGroup> = Vec::new();
        let mut polls: Vec<PollGroup> = Vec::new();
        for (i, t) in dev.tags.iter().enumerate() {
            match t.acquisition {
                Acquisition::Subscription { publishing_interval, .. } => {
                    match subs.iter_mut().find(|s| s.publishing_interval == publishing_interval) {
                        Some(s) => s.tags.push(i),
                        None => subs.push(SubGroup { publishing_interval, tags: vec![i], id: None, missing: Vec::new(), refused: None }),
                    }
                }
                Acquisition::Poll { interval } => match polls.iter_mut().find(|p| p.interval == interval) {
                    Some(p) => p.tags.push(i),
                    None => polls.push(PollGroup { interval, tags: vec![i], next_due: Instant::now() }),
                },
            }
        }
        // Samples from subscription callbacks (sync, inside the library's
        // event loop) go through this channel to the ring.
        let (samples_tx, samples_rx) = mpsc::unbounded_channel::<Sample>();
        tokio::spawn(forward(samples_rx, ingest, stats.clone()));
        let n = dev.tags.len();
        Device {
            dev,
            metas,
            stats,
            pki,
            gateway_id,
            subs,
            polls,
            resolved: vec![None; n],
            namespaces: Vec::new(),
            max_read: DEFAULT_CHUNK,
            max_items: DEFAULT_CHUNK,
            max_per_sub: usize::MAX,
            up: false,
            down: None,
            last_problem: None,
            last_ns_check: None,
            ns_changed_pending: false,
            samples_tx,
            last_publish: Arc::default(),
            epoch: Instant::now(),
        }
    }

    /// Runs until `cancel` fires; then closes the session (CloseSession with
    /// its subscriptions) so the server frees it at once.
    pub async fn run(mut self, cancel: CancellationToken) {
        let (client, discovery) =
            match (build_client(&self.dev, &self.pki, &self.gateway_id, true), build_client(&self.dev, &self.pki, &self.gateway_id, false))
            {
                (Ok(c), Ok(d)) => (c, d),
                (Err(e), _) | (_, Err(e)) => return self.fatal(&cancel, format!("{e:#}")).await,
            };
        let identity = match identity_token(&self.dev.identity) {
            Ok(i) => i,
            Err(e) => return self.fatal(&cancel, format!("{e:#}")).await,
        };
        let mut failures: u32 = 0;
        loop {
            // 1. GetEndpoints, to pick the configured policy and mode.
            let opened = tokio::select! {
                _ = cancel.cancelled() => return,
                r = open_session(&discovery, &client, &self.dev, identity.clone()) => r,
            };
            let (session, event_loop, ep) = match opened {
                Ok(x) => x,
                Err(OpenError::Unreachable(m)) => {
                    let m = match super::client::probe(&self.dev.endpoint).await {
                        Err(net) => net,
                        Ok(()) => m,
                    };
                    self.problem(&format!("OPC UA server unreachable: {m}; retrying with backoff"), failures + 1);
                    self.down(&format!("{}: {m}", reason::COMM_FAILURE)).await;
                    if !self.wait(&cancel, &mut failures).await {
                        return;
                    }
                    continue;
                }
                Err(OpenError::NoEndpoint(m)) => {
                    self.problem(&format!("{m}; fix security_policy/security_mode (retried with backoff)"), failures + 1);
                    self.down(&format!("{}: {m}", reason::CONFIG_ERROR)).await;
                    failures = failures.max(8);
                    if !self.wait(&cancel, &mut failures).await {
                        return;
                    }
                    continue;
                }
            };
            if self.dev.policy != super::config::Policy::None
                && let Some(cert) = self.pki.server_cert(&ep)
                && !cert.trusted
            {
                let thumbprint = cert.thumbprint;
                self.problem(
                    &format!(
                        "the server's certificate (thumbprint {thumbprint}) is not in the trust list {}: the connection will be refused until it is \
                         (set trust_server_certificate, or move it from {} once it appears there)",
                        self.pki.dir.join("trusted").display(),
                        self.pki.dir.join("rejected").display()
                    ),
                    failures + 1,
                );
            }
            // 2. The event loop runs in its own task: service calls made here
            // need it to be polled while this task awaits them.
            let (ev_tx, mut ev_rx) = mpsc::unbounded_channel::<Event>();
            let reconnect_max = self.dev.reconnect_max;
            let (last_publish, epoch) = (self.last_publish.clone(), self.epoch);
            let session_timeout = self.dev.session_timeout + Duration::from_secs(1);
            let pump = tokio::spawn(async move {
                let stream = event_loop.enter();
                futures::pin_mut!(stream);
                let mut fails = 0u32;
                // A connection lost soon after it was made (a value the client
                // cannot decode, a server that drops us at once) would be
                // re-made at once by the library, in a tight loop: losses within
                // 10 s of the connect back off like failed connects.
                let mut connected_at: Option<Instant> = None;
                let mut quick_losses = 0u32;
                while let Some(ev) = stream.next().await {
                    let e = match ev {
                        Ok(SessionPollResult::Reconnected(mode)) => {
                            fails = 0;
                            connected_at = Some(Instant::now());
                            Event::Connected(matches!(mode, SessionConnectMode::NewSession(_)))
                        }
                        Ok(SessionPollResult::ConnectionLost(c)) => {
                            quick_losses =
                                if connected_at.is_some_and(|t| t.elapsed() < Duration::from_secs(10)) { quick_losses + 1 } else { 0 };
                            if ev_tx.send(Event::Lost(c)).is_err() {
                                break;
                            }
                            if quick_losses > 0 {
                                tokio::time::sleep(jitter(backoff(Duration::from_millis(250), quick_losses, reconnect_max))).await;
                            }
                            continue;
                        }
                        Ok(SessionPollResult::ReconnectFailed(c)) => {
                            fails += 1;
                            // Jitter on top of the library's exponential backoff,
                            // so gateways restarted together do not knock in step.
                            let _ = ev_tx.send(Event::ConnectFailed(c));
                            let base = backoff(Duration::from_millis(250), fails.min(6), reconnect_max);
                            // A refused ActivateSession leaves the session the
                            // library created on the server until it times out
                            // (the library does not close it): retrying faster
                            // would pile them up to BadTooManySessions and lock
                            // operators out. Wait for it to expire first.
                            let wait = if activation_refused(c) { session_timeout.max(base) } else { base.mul_f64(fastrand::f64() * 0.25) };
                            tokio::time::sleep(wait).await;
                            continue;
                        }
                        Ok(SessionPollResult::Subscription(opcua::client::SubscriptionActivity::FatalFailure(c))) => Event::SessionDead(c),
                        Ok(SessionPollResult::Subscription(opcua::client::SubscriptionActivity::Publish)) => {
                            last_publish.store(epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
                            continue;
                        }
                        Ok(_) => continue,
                        Err(c) => Event::Lost(c),
                    };
                    if ev_tx.send(e).is_err() {
                        break;
                    }
                }
            });
            let session_end = self.serve(&session, &mut ev_rx, &cancel, &mut failures).await;
            // 3. Close the session, then stop the event loop.
            let _ = tokio::time::timeout(Duration::from_secs(2), session.disconnect()).await;
            pump.abort();
            for s in &mut self.subs {
                s.id = None;
            }
            if session_end == End::Cancelled {
                return;
            }
            self.down(&format!("{}: session to {} ended", reason::COMM_FAILURE, self.dev.endpoint)).await;
            if !self.wait(&cancel, &mut failures).await {
                return;
            }
        }
    }

    /// Handles one session's events and polls until it ends.
    async fn serve(
        &mut self,
        session: &Arc<Session>,
        ev_rx: &mut mpsc::UnboundedReceiver<Event>,
        cancel: &CancellationToken,
        failures: &mut u32,
    ) -> End {
        let mut retry_at = Instant::now() + RETRY_MISSING;
        let mut heartbeat = Heartbeat::default();
        let mut beat_at = Instant::now() + self.dev.keep_alive;
        // Publish watchdog: with subscriptions, the server answers a Publish at
        // least every keep_alive (a keep-alive message when nothing changed,
        // Part 4 §5.13.1). Silence for 3 × that + 5 s: trigger a Publish; still
        // silent one period later: the subscriptions are dead, new session.
        let silence = self.dev.keep_alive * 3 + Duration::from_secs(5);
        let mut watch_at = Instant::now() + silence;
        let mut nudged = false;
        loop {
            let next_poll = if self.up { self.polls.iter().map(|p| p.next_due).min() } else { None };
            tokio::select! {
                _ = cancel.cancelled() => return End::Cancelled,
                ev = ev_rx.recv() => match ev {
                    None => return End::Lost,
                    Some(Event::Connected(new_session)) => {
                        // `down` and `last_problem` stay: a flapping
                        // connection reports its outage once, not per flap; the
                        // first good value re-arms the report (`emit`).
                        *failures = 0;
                        tracing::info!(device = %self.dev.name, endpoint = %self.dev.endpoint, new_session,
                            "OPC UA session {}", if new_session { "created" } else { "re-activated" });
                        self.up = true;
                        self.stats.up.store(true, Ordering::Relaxed);
                        self.last_publish.store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
                        // The outage marked every tag comm_failure: a subscription
                        // refused again says so again on its tags.
                        for g in &mut self.subs {
                            g.refused = None;
                        }
                        watch_at = Instant::now() + silence;
                        nudged = false;
                        let why = if new_session { Rebuild::NewSession } else { Rebuild::Reactivated };
                        if let Err(e) = self.rebuild(session, why).await {
                            tracing::warn!(device = %self.dev.name, error = %e, "building the session state failed; waiting for the next reconnect");
                        }
                        retry_at = Instant::now() + RETRY_MISSING;
                    }
                    Some(Event::Lost(code)) => {
                        self.down(&format!("{}: connection to {} lost ({})", reason::COMM_FAILURE, self.dev.endpoint, code)).await;
                    }
                    Some(Event::SessionDead(code)) => {
                        tracing::warn!(device = %self.dev.name, status = %code, "the server says the session is gone; rebuilding it once");
                        self.down(&format!("{}: session lost ({})", reason::COMM_FAILURE, code)).await;
                    }
                    Some(Event::ConnectFailed(code)) => {
                        *failures += 1;
                        let why = explain(code, &self.dev, &self.pki, &session.endpoint_info().endpoint).await;
                        self.problem(&format!("OPC UA connect failed: {why}; retrying with backoff"), *failures);
                        self.down(&format!("{}: {why}", reason::COMM_FAILURE)).await;
                    }
                },
                _ = sleep_until_opt(next_poll) => {
                    self.poll_due(session).await;
                }
                _ = tokio::time::sleep_until(beat_at), if self.up => {
                    beat_at = Instant::now() + self.dev.keep_alive;
                    if let Some(why) = heartbeat.beat(session, &self.dev).await {
                        tracing::warn!(device = %self.dev.name, endpoint = %self.dev.endpoint, "{why}; closing the session and opening a new one");
                        self.down(&format!("{}: {why}", reason::COMM_FAILURE)).await;
                        return End::Lost;
                    }
                }
                _ = tokio::time::sleep_until(watch_at), if self.up => {
                    watch_at = Instant::now() + silence;
                    let quiet = (self.epoch + Duration::from_millis(self.last_publish.load(Ordering::Relaxed))).elapsed();
                    if quiet < silence || self.subs.iter().all(|s| s.id.is_none()) {
                        nudged = false;
                    } else if !nudged {
                        tracing::warn!(device = %self.dev.name, quiet = ?quiet, "no Publish response from the server; sending one now");
                        session.trigger_publish_now();
                        nudged = true;
                    } else {
                        tracing::warn!(device = %self.dev.name, quiet = ?quiet, "the subscriptions stay silent; closing the session and opening a new one");
                        self.down(&format!("{}: no Publish response for {:.0?}", reason::COMM_FAILURE, quiet)).await;
                        return End::Lost;
                    }
                }
                _ = tokio::time::sleep_until(retry_at), if self.up => {
                    retry_at = Instant::now() + RETRY_MISSING;
                    if (self.resolved.iter().any(|r| r.is_none()) || self.subs.iter().any(|s| !s.missing.is_empty() || s.id.is_none()))
                        && let Err(e) = self.rebuild(session, Rebuild::RetryMissing).await
                    {
                        tracing::debug!(device = %self.dev.name, error = %e, "retrying missing nodes failed");
                    }
                }
            }
        }
    }

    /// Builds the per-session state for `why`: after a new session the
    /// server-side state of the previous one is gone (or may be); after a
    /// re-activation it is intact, so only missing parts are retried and the
    /// current values read; a retry only creates what is missing.
    async fn rebuild(&mut self, session: &Arc<Session>, why: Rebuild) -> Result<(), String> {
        let new_session = why == Rebuild::NewSession;
        let before = self.namespaces.clone();
        self.read_namespaces(session).await?;
        let ns_changed = !before.is_empty() && before != self.namespaces;
        if ns_changed {
            tracing::warn!(device = %self.dev.name, before = ?before, now = ?self.namespaces,
                "the server's namespace table changed; resolving every tag again");
        }
        self.resolve_all();
        if new_session {
            self.read_limits(session).await;
        }
        // Subscriptions of the previous session.
        let old: Vec<u32> = self.subs.iter().filter_map(|s| s.id).collect();
        if !old.is_empty() && (new_session || ns_changed) {
            let mut kept: Vec<u32> = Vec::new();
            if !ns_changed {
                match session.transfer_subscriptions(&old, true).await {
                    Ok(res) => {
                        for (id, r) in old.iter().zip(res.iter()) {
                            if r.status_code.is_good() {
                                kept.push(*id);
                            }
                        }
                        if kept.len() < old.len() {
                            tracing::info!(device = %self.dev.name, transferred = kept.len(), total = old.len(),
                                "TransferSubscriptions refused ({}); creating the subscriptions again",
                                res.iter().find(|r| !r.status_code.is_good()).map_or(String::new(), |r| r.status_code.to_string()));
                        }
                    }
                    Err(e) => tracing::info!(device = %self.dev.name, status = %e.status(),
                        "TransferSubscriptions not supported; creating the subscriptions again"),
                }
            }
            let gone: Vec<u32> = old.iter().copied().filter(|id| !kept.contains(id)).collect();
            if !gone.is_empty() {
                forget_subscriptions(session, &gone).await;
            }
            for s in &mut self.subs {
                if s.id.is_some_and(|id| gone.contains(&id)) {
                    s.id = None;
                }
            }
        }
        // A full subscription moves its remaining tags to a new group at
        // the end (see `create_items`): the list may grow while walked.
        let mut g = 0;
        while g < self.subs.len() {
            if self.subs[g].id.is_none() {
                match self.create_subscription(session, g).await {
                    Ok(()) => self.subs[g].refused = None,
                    // The server refuses more subscriptions (BadTooManySubscriptions,
                    // a resource limit): its tags are bad with the reason, the
                    // other subscriptions go on, and it is retried later.
                    Err(e) if self.subs[g].id.is_none() => {
                        if self.subs[g].refused.as_deref() != Some(e.as_str()) {
                            tracing::warn!(device = %self.dev.name, tags = self.subs[g].tags.len(), error = %e,
                                "the server refused a subscription; its tags are bad until a retry succeeds (every {:?})", RETRY_MISSING);
                            let bad = self.bad(
                                self.subs[g].tags.clone(),
                                &format!("{}: the server refused the subscription: {e}", reason::CONFIG_ERROR),
                            );
                            self.emit(bad);
                            self.subs[g].refused = Some(e);
                        }
                    }
                    Err(e) => return Err(e),
                }
            } else if !self.subs[g].missing.is_empty() {
                let missing = std::mem::take(&mut self.subs[g].missing);
                self.create_items(session, g, missing).await?;
            }
            g += 1;
        }
        if self.subs.iter().any(|s| s.id.is_some()) {
            // The library starts a new publish loop on every (re)connect, idle
            // until something triggers it (only creating a subscription does):
            // subscriptions kept by a re-activation or a TransferSubscriptions
            // would never be published again. OPC UA Part 4 §5.13.5.
            session.trigger_publish_now();
        }
        if why == Rebuild::Reactivated {
            // A re-activated session keeps its subscriptions, which only
            // report changes: read the current values so tags marked
            // comm_failure during the outage come back now.
            // Only tags whose subscription exists: a refused one's tags
            // would look good once and then never change.
            let tags: Vec<usize> = self.subs.iter().filter(|s| s.id.is_some()).flat_map(|s| s.tags.iter().copied()).collect();
            self.read_tags(session, &tags).await;
        }
        let now = Instant::now();
        for p in &mut self.polls {
            p.next_due = now;
        }
        if std::mem::take(&mut self.ns_changed_pending) {
            return Box::pin(self.rebuild(session, Rebuild::NewSession)).await;
        }
        Ok(())
    }

    async fn read_namespaces(&mut self, session: &Arc<Session>) -> Result<(), String> {
        let r = session
            .read(&[ReadValueId::new_value(VariableId::Server_NamespaceArray.into())], TimestampsToReturn::Neither, 0.0)
            .await
            .map_err(|e| format!("reading the NamespaceArray: {}", e.status()))?;
        let uris: Vec<String> = match r.into_iter().next().and_then(|dv| dv.value) {
            Some(Variant::Array(a)) => {
                if let Ok(map) = NamespaceMap::new_from_variant_array(&a.values) {
                    session.set_namespaces(map);
                }
                a.values
                    .iter()
                    .map(|v| match v {
                        Variant::String(s) => s.value().clone().unwrap_or_default(),
                        _ => String::new(),
                    })
                    .collect()
            }
            other => return Err(format!("the server's NamespaceArray is not a string array: {other:?}")),
        };
        self.namespaces = uris;
        self.last_ns_check = Some(Instant::now());
        Ok(())
    }

    fn resolve_all(&mut self) {
        let map = namespace_map(&self.namespaces);
        let mut unresolved = Vec::new();
        for (i, t) in self.dev.tags.iter().enumerate() {
            match t.node.resolve(&map) {
                Ok(id) => self.resolved[i] = Some(id),
                Err(e) => {
                    self.resolved[i] = None;
                    unresolved.push(Sample::bad(
                        self.metas[i].clone(),
                        format!("{}: {} ({})", reason::CONFIG_ERROR, e, t.node).into(),
                        Timestamp::now(),
                    ));
                }
            }
        }
        if !unresolved.is_empty() {
            tracing::warn!(device = %self.dev.name, tags = unresolved.len(), first = %unresolved[0].reason.as_deref().unwrap_or(""),
                "tags in namespaces the server does not have; retried every {}s", RETRY_MISSING.as_secs());
            self.emit(unresolved);
        }
    }

    async fn read_limits(&mut self, session: &Arc<Session>) {
        let ids = [
            VariableId::Server_ServerCapabilities_OperationLimits_MaxNodesPerRead,
            VariableId::Server_ServerCapabilities_OperationLimits_MaxMonitoredItemsPerCall,
            VariableId::Server_ServerCapabilities_MaxMonitoredItemsPerSubscription,
        ];
        let req: Vec<ReadValueId> = ids.iter().map(|v| ReadValueId::new_value((*v).into())).collect();
        let limit = |dv: Option<&DataValue>| -> usize {
            match dv.and_then(|d| d.value.as_ref()) {
                Some(Variant::UInt32(n)) if *n > 0 => (*n as usize).min(DEFAULT_CHUNK * 10),
                _ => DEFAULT_CHUNK,
            }
        };
        if let Ok(r) = session.read(&req, TimestampsToReturn::Neither, 0.0).await {
            self.max_read = limit(r.first());
            self.max_items = limit(r.get(1));
            self.max_per_sub = match r.get(2).and_then(|d| d.value.as_ref()) {
                Some(Variant::UInt32(n)) if *n > 0 => *n as usize,
                _ => usize::MAX,
            };
        }
        self.partition_subs();
    }

    /// Splits the subscriptions that are to be created so that none holds
    /// more MonitoredItems than the server's MaxMonitoredItemsPerSubscription
    /// (PLCs often allow 1000 or fewer). Subscriptions that exist are kept.
    fn partition_subs(&mut self) {
        let limit = self.max_per_sub.max(1);
        if self.subs.iter().all(|s| s.id.is_some() || s.tags.len() <= limit) {
            return;
        }
        let mut out: Vec<SubGroup> = Vec::new();
        let mut pending: Vec<(Duration, Vec<usize>)> = Vec::new();
        for s in std::mem::take(&mut self.subs) {
            if s.id.is_some() {
                out.push(s);
                continue;
            }
            match pending.iter_mut().find(|(iv, _)| *iv == s.publishing_interval) {
                Some((_, t)) => t.extend(s.tags),
                None => pending.push((s.publishing_interval, s.tags)),
            }
        }
        for (iv, tags) in pending {
            for chunk in tags.chunks(limit) {
                out.push(SubGroup { publishing_interval: iv, tags: chunk.to_vec(), id: None, missing: Vec::new(), refused: None });
            }
        }
        tracing::info!(device = %self.dev.name, subscriptions = out.len(), max_items_per_subscription = limit,
            "subscriptions split to the server's MaxMonitoredItemsPerSubscription");
        self.subs = out;
    }

    async fn create_subscription(&mut self, session: &Arc<Session>, g: usize) -> Result<(), String> {
        let interval = self.subs[g].publishing_interval;
        // Keep-alive count: a publish response at least every keep_alive;
        // lifetime: 3 × that, as Part 4 §5.13.1 requires at least.
        let keep_alive = ((self.dev.keep_alive.as_secs_f64() / interval.as_secs_f64().max(0.001)).ceil() as u32).clamp(1, 1000);
        let lifetime = (keep_alive * 3).max((self.dev.session_timeout.as_secs_f64() / interval.as_secs_f64().max(0.001)).ceil() as u32);
        let metas = self.metas.clone();
        let tx = self.samples_tx.clone();
        let callback = DataChangeCallback::new(move |dv: DataValue, item: &MonitoredItem| {
            let i = item.client_handle() as usize;
            if i >= 1 && i <= metas.len() {
                let _ = tx.send(to_sample(metas[i - 1].clone(), &dv, Timestamp::now()));
            }
        });
        let id = session
            .create_subscription(interval, lifetime, keep_alive, 0, 0, true, callback)
            .await
            .map_err(|e| format!("CreateSubscription ({} ms): {}", interval.as_millis(), e.status()))?;
        self.subs[g].id = Some(id);
        let tags = self.subs[g].tags.clone();
        self.subs[g].missing.clear();
        self.create_items(session, g, tags).await
    }

    /// Creates the monitored items of `tags` in subscription group `g`, in
    /// calls of at most MaxMonitoredItemsPerCall. Failed items get a bad
    /// sample and are retried later; BadNodeIdUnknown first re-reads the
    /// namespace table once (field case B16).
    async fn create_items(&mut self, session: &Arc<Session>, g: usize, tags: Vec<usize>) -> Result<(), String> {
        let Some(sub) = self.subs[g].id else { return Ok(()) };
        let tags: Vec<usize> = tags.into_iter().filter(|&i| self.resolved[i].is_some()).collect();
        let mut failed: Vec<(usize, StatusCode)> = Vec::new();
        let (mut i, mut created) = (0usize, 0usize);
        while i < tags.len() {
            let chunk = &tags[i..(i + self.max_items.max(1)).min(tags.len())];
            let reqs: Vec<MonitoredItemCreateRequest> = chunk.iter().map(|&t| self.item_request(t)).collect();
            match session.create_monitored_items(sub, TimestampsToReturn::Both, reqs).await {
                Ok(res) => {
                    for (&t, r) in chunk.iter().zip(res.iter()) {
                        if !r.result.status_code.is_good() {
                            failed.push((t, r.result.status_code));
                        }
                    }
                    created += chunk.len();
                    i += chunk.len();
                }
                // The subscription is full (servers that do not state their
                // MaxMonitoredItemsPerSubscription): smaller calls first, then
                // the remaining tags go to a subscription of their own.
                Err(e) if e.status().sub_code() == StatusCode::BadTooManyMonitoredItems.sub_code() => {
                    if created == 0 && chunk.len() > 1 {
                        self.max_items = chunk.len() / 2;
                        continue;
                    }
                    if created == 0 {
                        return Err("CreateMonitoredItems: BadTooManyMonitoredItems for a single item".into());
                    }
                    self.max_per_sub = self.max_per_sub.min(created);
                    let rest: std::collections::HashSet<usize> = tags[i..].iter().copied().collect();
                    self.subs[g].tags.retain(|t| !rest.contains(t));
                    let interval = self.subs[g].publishing_interval;
                    tracing::info!(device = %self.dev.name, items = created, moved = rest.len(),
                        "the server's subscription is full (BadTooManyMonitoredItems); the remaining tags go to another subscription");
                    self.subs.push(SubGroup {
                        publishing_interval: interval,
                        tags: tags[i..].to_vec(),
                        id: None,
                        missing: Vec::new(),
                        refused: None,
                    });
                    break;
                }
                Err(e) => return Err(format!("CreateMonitoredItems: {}", e.status())),
            }
        }
        if failed.iter().any(|(_, c)| c.sub_code() == StatusCode::BadNodeIdUnknown.sub_code())
            && self.ns_recheck_allowed()
            && self.namespaces_changed(session).await
        {
            tracing::warn!(device = %self.dev.name, "BadNodeIdUnknown after connect: the namespace table changed; resolving and subscribing again");
            self.ns_changed_pending = true;
        }
        if !failed.is_empty() {
            let ts = Timestamp::now();
            let samples: Vec<Sample> = failed
                .iter()
                .map(|(i, c)| {
                    let mut s = Sample::bad(
                        self.metas[*i].clone(),
                        format!("{} (CreateMonitoredItems on {})", status_reason(c.bits()), self.dev.tags[*i].node).into(),
                        ts,
                    );
                    s.status = Some(c.bits());
                    s
                })
                .collect();
            tracing::warn!(device = %self.dev.name, items = failed.len(), first = %samples[0].reason.as_deref().unwrap_or(""),
                "monitored items refused by the server; retried every {}s", RETRY_MISSING.as_secs());
            self.emit(samples);
            self.subs[g].missing = failed.into_iter().map(|(i, _)| i).collect();
        }
        Ok(())
    }

    fn item_request(&self, i: usize) -> MonitoredItemCreateRequest {
        let (sampling, queue, deadband) = match self.dev.tags[i].acquisition {
            Acquisition::Subscription { sampling_interval, queue_size, deadband, .. } => (sampling_interval, queue_size, deadband),
            Acquisition::Poll { interval } => (interval, 1, None),
        };
        let filter = match deadband {
            None => ExtensionObject::null(),
            Some(d) => {
                let (kind, value) = match d {
                    Deadband::Absolute(v) => (1, v),
                    Deadband::Percent(v) => (2, v),
                };
                ExtensionObject::from_message(DataChangeFilter {
                    trigger: DataChangeTrigger::StatusValue,
                    deadband_type: kind,
                    deadband_value: value,
                })
            }
        };
        MonitoredItemCreateRequest {
            item_to_monitor: ReadValueId::new_value(self.resolved[i].clone().unwrap_or_default()),
            monitoring_mode: MonitoringMode::Reporting,
            requested_parameters: MonitoringParameters {
                client_handle: (i + 1) as u32,
                sampling_interval: sampling.as_secs_f64() * 1000.0,
                filter,
                queue_size: queue,
                discard_oldest: true,
            },
        }
    }

    fn ns_recheck_allowed(&self) -> bool {
        self.last_ns_check.is_none_or(|t| t.elapsed() >= NS_RECHECK)
    }

    /// Polls the groups that are due.
    async fn poll_due(&mut self, session: &Arc<Session>) {
        let now = Instant::now();
        let due: Vec<usize> = (0..self.polls.len()).filter(|&p| self.polls[p].next_due <= now).collect();
        for p in due {
            self.stats.cycles.fetch_add(1, Ordering::Relaxed);
            let tags = self.polls[p].tags.clone();
            let unknown = self.read_tags(session, &tags).await;
            let group = &mut self.polls[p];
            let skipped = crate::sources::schedule::advance(&mut group.next_due, group.interval);
            self.stats.overruns.fetch_add(skipped, Ordering::Relaxed);
            if unknown
                && self.ns_recheck_allowed()
                && self.dev.tags.iter().any(|t| t.node.uri().is_some())
                && self.namespaces_changed(session).await
            {
                tracing::warn!(device = %self.dev.name, "BadNodeIdUnknown: the server's namespace table changed; resolving and subscribing again");
                if let Err(e) = self.rebuild(session, Rebuild::NewSession).await {
                    tracing::warn!(device = %self.dev.name, error = %e, "rebuilding after a namespace change failed");
                }
            }
        }
    }

    /// Reads the namespace table again; true when it changed. The old table
    /// is kept in `self.namespaces` so that [`Device::rebuild`] sees the change
    /// and recreates every subscription.
    async fn namespaces_changed(&mut self, session: &Arc<Session>) -> bool {
        let before = self.namespaces.clone();
        if self.read_namespaces(session).await.is_err() {
            return false;
        }
        let changed = before != self.namespaces;
        if changed {
            self.namespaces = before;
        }
        changed
    }

    /// Reads `tags` (Read service, at most MaxNodesPerRead per call) and
    /// pushes one sample per tag. Returns whether any node was BadNodeIdUnknown.
    async fn read_tags(&mut self, session: &Arc<Session>, tags: &[usize]) -> bool {
        let tags: Vec<usize> = tags.iter().copied().filter(|&i| self.resolved[i].is_some()).collect();
        let mut unknown = false;
        let mut out = Vec::with_capacity(tags.len());
        for chunk in tags.chunks(self.max_read.max(1)) {
            let req: Vec<ReadValueId> =
                chunk.iter().map(|&i| ReadValueId::new(self.resolved[i].clone().unwrap_or_default(), AttributeId::Value)).collect();
            let recv = Timestamp::now();
            match session.read(&req, TimestampsToReturn::Both, 0.0).await {
                Ok(values) => {
                    for (k, &i) in chunk.iter().enumerate() {
                        match values.get(k) {
                            Some(dv) => {
                                if dv.status.is_some_and(|s| s.sub_code() == StatusCode::BadNodeIdUnknown.sub_code()) {
                                    unknown = true;
                                }
                                out.push(to_sample(self.metas[i].clone(), dv, recv));
                            }
                            None => out.push(Sample::bad(
                                self.metas[i].clone(),
                                format!("{}: the server returned fewer results than nodes read", reason::PARSE_ERROR).into(),
                                recv,
                            )),
                        }
                    }
                }
                Err(e) => {
                    let code = e.status();
                    let why: Arc<str> = if code.sub_code() == StatusCode::BadTimeout.sub_code() {
                        format!("{}: no Read response within {:?}", reason::TIMEOUT, self.dev.request_timeout).into()
                    } else {
                        format!("{}: Read failed: {code}", reason::COMM_FAILURE).into()
                    };
                    for &i in chunk {
                        let mut s = Sample::bad(self.metas[i].clone(), why.clone(), recv);
                        s.status = Some(code.bits());
                        out.push(s);
                    }
                }
            }
        }
        self.emit(out);
        unknown
    }

    /// Marks the device down: one bad sample per tag with `why`, once per
    /// state change.
    async fn down(&mut self, why: &str) {
        let was_up = self.up;
        self.up = false;
        self.stats.up.store(false, Ordering::Relaxed);
        if was_up {
            self.problem(&format!("OPC UA server unreachable: {why}; tags are bad (comm_failure) until it is back"), 1);
        }
        // Same outage: a new cause (the certificate now trusted, but the
        // password wrong) replaces the old one on the tags, at most once a
        // minute.
        if let Some((reported, at)) = &self.down
            && (reported == why || at.elapsed() < Duration::from_secs(60))
        {
            return;
        }
        self.down = Some((why.to_string(), Instant::now()));
        let samples = self.bad(0..self.metas.len(), why);
        self.emit(samples);
    }

    /// Logs a connection problem: a new one at once, the same one again at
    /// most once a minute (with the attempt count).
    fn problem(&mut self, msg: &str, attempts: u32) {
        let repeat = self.last_problem.as_ref().is_some_and(|(m, at)| m == msg && at.elapsed() < Duration::from_secs(60));
        if !repeat {
            tracing::warn!(device = %self.dev.name, endpoint = %self.dev.endpoint, attempts, "{msg}");
            self.last_problem = Some((msg.to_string(), Instant::now()));
        }
    }

    /// One bad sample with `why` for each of `tags` (indexes), now.
    fn bad(&self, tags: impl IntoIterator<Item = usize>, why: &str) -> Vec<Sample> {
        let (why, ts): (Arc<str>, _) = (why.into(), Timestamp::now());
        tags.into_iter().map(|t| Sample::bad(self.metas[t].clone(), why.clone(), ts)).collect()
    }

    fn emit(&mut self, samples: Vec<Sample>) {
        // Values flow again: the next outage is reported anew.
        if samples.iter().any(|s| s.quality != Quality::Bad) {
            self.down = None;
        }
        for s in samples {
            let _ = self.samples_tx.send(s);
        }
    }

    /// A configuration problem that no retry fixes: one bad sample per tag,
    /// then wait for shutdown.
    async fn fatal(mut self, cancel: &CancellationToken, why: String) {
        tracing::error!(device = %self.dev.name, "{why}");
        let samples = self.bad(0..self.metas.len(), &format!("{}: {why}", reason::CONFIG_ERROR));
        self.emit(samples);
        cancel.cancelled().await;
    }

    /// Waits the reconnect backoff (with jitter); false when cancelled.
    async fn wait(&mut self, cancel: &CancellationToken, failures: &mut u32) -> bool {
        *failures += 1;
        let d = jitter(backoff(Duration::from_millis(500), *failures, self.dev.reconnect_max));
        tokio::select! {
            _ = cancel.cancelled() => false,
            _ = tokio::time::sleep(d) => true,
        }
    }
}

/// The heartbeat on the server's clock (`Server.ServerStatus.CurrentTime`,
/// i=2258), read every `keep_alive` beside the library's keep-alive read of
/// the server state: a server whose clock stops (a hung runtime that still
/// answers) or that fails three reads in a row gets a new session. The
/// offset to our clock is logged once when above 5 s (timestamps from that
/// server are off by as much).
#[derive(Default)]
struct Heartbeat {
    last: Option<i64>,
    frozen: u32,
    failed: u32,
    skew_warned: bool,
}

impl Heartbeat {
    async fn beat(&mut self, session: &Arc<Session>, dev: &OpcUaDevice) -> Option<String> {
        let r = session
            .read(&[ReadValueId::new_value(VariableId::Server_ServerStatus_CurrentTime.into())], TimestampsToReturn::Neither, 0.0)
            .await;
        let t = match r.ok().and_then(|v| v.into_iter().next()).and_then(|dv| dv.value) {
            Some(Variant::DateTime(t)) => super::convert::timestamp(&t),
            _ => None,
        };
        let Some(t) = t else {
            self.failed += 1;
            return (self.failed >= 3).then(|| format!("the server's CurrentTime could not be read {} times in a row", self.failed));
        };
        self.failed = 0;
        let skew = (t.0 - Timestamp::now().0) / 1_000_000;
        if skew.abs() > 5_000 && !self.skew_warned {
            self.skew_warned = true;
            tracing::warn!(device = %dev.name, skew_ms = skew, "the server's clock differs from ours by more than 5 s; its SourceTimestamps are used as ts as they are");
        }
        if self.last == Some(t.0) {
            self.frozen += 1;
        } else {
            self.frozen = 0;
        }
        self.last = Some(t.0);
        (self.frozen >= 3).then(|| "the server's CurrentTime stopped advancing (server hung)".to_string())
    }
}

/// Why the session state is (re)built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rebuild {
    NewSession,
    Reactivated,
    RetryMissing,
}

#[derive(Debug, PartialEq, Eq)]
enum End {
    Cancelled,
    Lost,
}

/// `first` doubled `n` times (at most 8), at most `max`.
fn backoff(first: Duration, n: u32, max: Duration) -> Duration {
    (first * (1u32 << n.min(8))).min(max)
}

/// `d` ± 25 %, so gateways restarted together do not knock in step.
fn jitter(d: Duration) -> Duration {
    d.mul_f64(0.75 + fastrand::f64() * 0.5)
}

/// ActivateSession refusals (OPC UA Part 4 §5.6.3): the user identity or
/// the application signature was not accepted. The session was created.
fn activation_refused(c: StatusCode) -> bool {
    matches!(
        c,
        StatusCode::BadIdentityTokenRejected
            | StatusCode::BadIdentityTokenInvalid
            | StatusCode::BadUserAccessDenied
            | StatusCode::BadUserSignatureInvalid
            | StatusCode::BadApplicationSignatureInvalid
    )
}

async fn sleep_until_opt(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// Moves samples from the channel to the ring, in batches, counting them.
async fn forward(mut rx: mpsc::UnboundedReceiver<Sample>, ingest: Arc<Ingest>, stats: Arc<DeviceStats>) {
    let mut buf = Vec::with_capacity(1024);
    while rx.recv_many(&mut buf, 4096).await > 0 {
        let good = buf.iter().filter(|s| s.quality != Quality::Bad).count() as u64;
        stats.good.fetch_add(good, Ordering::Relaxed);
        stats.bad.fetch_add(buf.len() as u64 - good, Ordering::Relaxed);
        ingest.push_all(buf.drain(..)).await;
    }
}

/// Deletes subscriptions of a lost session, on the server if it still has
/// them and in the library's own state in any case (the library forgets a
/// subscription only when DeleteSubscriptions answers; a server with no
/// subscription at all answers BadNoSubscription instead, so a throwaway
/// subscription is created to get per-id answers). Without this, every
/// server restart would leave the old subscriptions and their items in
/// memory for good.
async fn forget_subscriptions(session: &Arc<Session>, ids: &[u32]) {
    // In small calls: a server limits the operations per call (a refused
    // call would leave the helper subscription below on the server, where it
    // takes a place the recreated subscriptions need).
    for part in ids.chunks(4) {
        match session.delete_subscriptions(part).await {
            Err(e) if e.status().sub_code() == StatusCode::BadNoSubscription.sub_code() => {
                // The server no longer has them (a new server), so the
                // library keeps them in its own state: a call that deletes
                // one real subscription with them makes it drop them.
                let noop = DataChangeCallback::new(|_: DataValue, _: &MonitoredItem| {});
                if let Ok(tmp) = session.create_subscription(Duration::from_secs(10), 3, 1, 0, 0, false, noop).await {
                    let mut all = part.to_vec();
                    all.push(tmp);
                    if session.delete_subscriptions(&all).await.is_err() {
                        let _ = session.delete_subscriptions(&[tmp]).await;
                    }
                }
            }
            _ => {}
        }
    }
    let left = session.subscription_state().lock().subscription_ids().map_or(0, |v| v.iter().filter(|id| ids.contains(id)).count());
    if left > 0 {
        tracing::debug!(left, "old subscriptions still in the client's state");
    }
}

/// A namespace table (index → URI) as the library's map.
pub fn namespace_map(uris: &[String]) -> NamespaceMap {
    let values: Vec<Variant> = uris.iter().map(|u| Variant::from(u.as_str())).collect();
    NamespaceMap::new_from_variant_array(&values).unwrap_or_default()
}
