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
//! `comm_failure` (per state change, not per interval); a polled tag whose
//! Read failed before the session noticed the outage (BadServerHalted, a
//! timeout) has its one bad sample from that Read, and no more until values
//! flow again.
//!
//! Files, by responsibility:
//!
//! | file | job |
//! |---|---|
//! | `mod.rs` | the device's state, start-up, and the per-session rebuild in order |
//! | [`connection`] | connection state: open, serve one session's events, outages, backoff |
//! | [`pump`] | the library's event loop in its own task, its events for the supervisor |
//! | [`namespaces`] | NamespaceArray, `nsu=` resolution, namespace-change detection |
//! | [`subscriptions`] | operation limits, Transfer/Create/DeleteSubscriptions |
//! | [`items`] | MonitoredItems: create in server-sized calls, refusals, retries |
//! | [`polling`] | poll groups and the Read service |
//! | [`watchdog`] | heartbeat on the server's clock and the publish watchdog |
//! | [`samples`] | the path of samples to the ring (one ordered channel per device) |
//! | [`events`] | `device.up` / `device.down` events on state changes |

mod connection;
mod events;
mod items;
mod namespaces;
mod polling;
mod pump;
mod samples;
mod subscriptions;
mod watchdog;
mod write;

pub use namespaces::namespace_map;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use opcua::client::Session;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::client::Pki;
use super::config::{Acquisition, OpcUaDevice};
use crate::ingest::Ingest;
use crate::model::TagMeta;
use crate::telemetry::DeviceStats;
use crate::util::supervise;
use polling::PollGroup;
use samples::SampleTx;
use subscriptions::SubGroup;

/// Most nodes per Read and items per CreateMonitoredItems when the server
/// states no limit (0) or cannot be asked.
const DEFAULT_CHUNK: usize = 1000;
/// How often tags whose node or namespace was missing are tried again.
const RETRY_MISSING: Duration = Duration::from_secs(30);
/// Shortest time between two namespace re-reads caused by BadNodeIdUnknown.
const NS_RECHECK: Duration = Duration::from_secs(10);

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
    resolved: Vec<Option<opcua::types::NodeId>>,
    /// The current session's NamespaceArray.
    namespaces: Vec<String>,
    max_read: usize,
    max_items: usize,
    /// The server's MaxMonitoredItemsPerSubscription (`usize::MAX`: none).
    max_per_sub: usize,
    up: bool,
    /// The outage reported on the tags (one bad sample each): its reason and
    /// when. Forgotten once values flowed again (`SampleTx::take_flowed`),
    /// so the next outage is reported whatever its cause.
    down: Option<(String, Instant)>,
    /// Per tag: a bad sample was sent for the current outage (by a failed
    /// Read or by [`Device::down`]), so neither sends another: a Read
    /// failing with BadServerHalted before the session notices the outage
    /// gives one bad sample per tag, not two. Cleared with `down` once values
    /// flowed again.
    outage_reported: Vec<bool>,
    /// The last connection problem logged, and when.
    last_problem: Option<(String, Instant)>,
    last_ns_check: Option<Instant>,
    /// The namespace table changed while items were created: rebuild again.
    ns_changed_pending: bool,
    samples_tx: SampleTx,
    /// Device state changes as events (`device.up`, `device.down`).
    events: crate::ingest::Events,
    /// What the events last said.
    announced: events::Announced,
    /// Milliseconds after `epoch` of the last Publish response (data or
    /// keep-alive), written by the event-loop pump: the publish watchdog.
    last_publish: Arc<std::sync::atomic::AtomicU64>,
    epoch: Instant,
    /// Write jobs for this device (`component::actuate`); `None`: not registered.
    writes: Option<tokio::sync::mpsc::Receiver<crate::component::actuate::WriteJob>>,
    /// When each writable tag was written (`max_rate`).
    write_log: HashMap<usize, crate::sources::writable::RateLog>,
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
    spawn_all_with(devices, ingest, telemetry, cancel, (data_dir, gateway_id), &crate::component::Actuators::new(None))
}

/// [`spawn_all`], each device registered in `actuators`: its session task
/// executes the writes asked for there between its own service calls.
pub fn spawn_all_with(
    devices: Vec<OpcUaDevice>,
    ingest: Arc<Ingest>,
    telemetry: &crate::telemetry::Telemetry,
    cancel: CancellationToken,
    dirs: (&std::path::Path, &str),
    actuators: &crate::component::Actuators,
) -> anyhow::Result<Vec<JoinHandle<()>>> {
    spawn_checked(devices, ingest, telemetry, cancel, dirs, actuators, &crate::component::checks::Checks::default())
}

/// [`spawn_all_with`], each device's samples passing through its own
/// checker of `checks` (`[[check]]`) before the ring.
pub fn spawn_checked(
    devices: Vec<OpcUaDevice>,
    ingest: Arc<Ingest>,
    telemetry: &crate::telemetry::Telemetry,
    cancel: CancellationToken,
    (data_dir, gateway_id): (&std::path::Path, &str),
    actuators: &crate::component::Actuators,
    checks: &crate::component::checks::Checks,
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
        let what = format!("OPC UA supervisor of device {}", dev.name);
        let names = vec![(dev.name.clone(), dev.tags.iter().map(|t| t.name.clone()).collect::<Vec<_>>())];
        // Registered now, so writes asked for right after start find the device.
        let mut first = Some(actuators.register(names.clone()));
        let watched = crate::sources::writable::rogue_watched(dev.tags.iter().map(|t| (t.name.as_str(), t.write.as_ref())));
        actuators.rogue().watch(&dev.name, &watched);
        let (actuators, checks) = (actuators.clone(), checks.clone());
        handles.push(supervise(what, cancel.clone(), move || {
            let mut device = Device::new(dev.clone(), ingest.clone(), stats.clone(), pki.clone(), gateway_id.clone(), checks.checker());
            device.writes = Some(first.take().unwrap_or_else(|| actuators.register(names.clone())));
            Some(device.run(cancel.clone()))
        }));
    }
    Ok(handles)
}

impl Device {
    /// The runtime of `dev`; nothing is contacted yet. Its samples pass
    /// `checker` (`[[check]]`) on their way to the ring.
    pub fn new(
        dev: OpcUaDevice,
        ingest: Arc<Ingest>,
        stats: Arc<DeviceStats>,
        pki: Pki,
        gateway_id: String,
        checker: crate::component::checks::Checker,
    ) -> Device {
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
                        None => subs.push(SubGroup::new(publishing_interval, vec![i])),
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
        let events = ingest.events();
        stats.opcua.store(true, std::sync::atomic::Ordering::Relaxed);
        stats.subscriptions_wanted.store(subs.len() as u64, std::sync::atomic::Ordering::Relaxed);
        let samples_tx = samples::spawn_forward(ingest, stats.clone(), checker);
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
            outage_reported: vec![false; n],
            last_problem: None,
            last_ns_check: None,
            ns_changed_pending: false,
            samples_tx,
            events,
            announced: events::Announced::Nothing,
            last_publish: Arc::default(),
            epoch: Instant::now(),
            writes: None,
            write_log: HashMap::new(),
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
        self.resolve_all().await;
        if new_session {
            self.read_limits(session).await;
        }
        // Subscriptions of the previous session.
        if new_session || ns_changed {
            self.drop_old_subscriptions(session, ns_changed).await;
        }
        self.create_missing(session).await?;
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
}

/// Why the session state is (re)built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rebuild {
    NewSession,
    Reactivated,
    RetryMissing,
}
