//! Wiring of the daemon: ring → buffer writer → sinks, sources, monitoring,
//! systemd notification, and the ordered shutdown.
//!
//! Shutdown order (SIGTERM / SIGINT, done within 5 s):
//! 1. stop polling (sources end their current request at most);
//! 2. wait until everything in the ring is committed (a barrier);
//! 3. sinks deliver what is committed for up to 1.5 s, publish `offline`
//!    and disconnect cleanly;
//! 4. the writer persists the cursors and closes the database.

pub mod admin;
mod health;
pub mod import;
mod status;
mod systemd;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use sd_notify::NotifyState;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::buffer::Buffer;
use crate::component::Ctx;
use crate::config::{Config, DeviceConfig, GatewayConfig, SinkConfig, SourceConfig};
use crate::ingest::Ingest;
use crate::processors::history::HistoryConfig;
use crate::telemetry::Telemetry;
use crate::util::exit::permanent;
use anyhow::Context as _;
pub use health::spawn_health;
pub use status::{StatusLine, spawn_status};
use systemd::spawn_systemd;

/// How `run` reports.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Print the status line on stdout instead of logging it.
    pub status_stdout: bool,
    /// Override `[gateway] status_interval`.
    pub status_interval: Option<Duration>,
    /// Start only the buffer and the sinks (no devices, no sources): `relais import`.
    pub sinks_only: bool,
}

/// Time sinks get at shutdown to deliver what is committed.
const SINK_GRACE: Duration = Duration::from_millis(1500);

/// Cancels `token` on SIGTERM or SIGINT. SIGHUP, SIGUSR1 and SIGUSR2 are
/// logged and ignored (their default action would kill the daemon without
/// its orderly shutdown).
pub fn cancel_on_signal(token: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    for (kind, name) in
        [(SignalKind::hangup(), "SIGHUP"), (SignalKind::user_defined1(), "SIGUSR1"), (SignalKind::user_defined2(), "SIGUSR2")]
    {
        if let Ok(mut s) = signal(kind) {
            tokio::spawn(async move {
                while s.recv().await.is_some() {
                    tracing::warn!("{name} ignored: relais does not reload its configuration; restart it to apply changes");
                }
            });
        }
    }
    // Both handlers are installed before this returns (not when the task
    // first runs): a signal arriving right after start is never missed, nor
    // does it kill the process with the default action.
    let mut int = signal(SignalKind::interrupt()).ok();
    let mut term = signal(SignalKind::terminate()).ok();
    tokio::spawn(async move {
        tokio::select! {
            _ = wait_signal(int.as_mut()) => tracing::info!("SIGINT received; shutting down"),
            _ = wait_signal(term.as_mut()) => tracing::info!("SIGTERM received; shutting down"),
        }
        token.cancel();
    });
}

/// Waits for the next delivery of `s` (forever without a handler).
async fn wait_signal(s: Option<&mut tokio::signal::unix::Signal>) {
    match s {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending::<()>().await,
    }
}

async fn join_all(handles: Vec<JoinHandle<()>>, within: Duration, what: &str) {
    let n = handles.len();
    let aborts: Vec<_> = handles.iter().map(|h| h.abort_handle()).collect();
    if tokio::time::timeout(within, async {
        for h in handles {
            let _ = h.await;
        }
    })
    .await
    .is_err()
    {
        tracing::warn!("{what}: {n} task(s) did not stop within {within:?}; aborting them");
        for a in aborts {
            a.abort();
        }
    }
}

/// Creates `data_dir` (and its parents). A file in its place, or a folder
/// that cannot be created, fails with the I/O error in the chain, so
/// [`crate::util::exit::is_permanent`] tells it apart.
fn prepare_data_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() && !dir.is_dir() {
        return Err(permanent(anyhow::anyhow!("cannot create data_dir {}: a file of that name exists", dir.display())));
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create data_dir {}", dir.display()))
}

/// Reads the TLS files (CA, client certificate and key) of every MQTT sink
/// and MQTT ingest source once, so an unreadable one stops the start
/// (permanent) instead of failing every reconnection.
fn check_tls_files(sinks: &[SinkConfig], sources: &[SourceConfig]) -> anyhow::Result<()> {
    for s in sinks {
        // The cloud sinks' TLS files (CA, client certificate and key).
        let files = match s {
            SinkConfig::Http(h) => Some(&h.tls),
            _ => None,
        };
        if let Some(f) = files {
            f.client_config().map_err(|e| permanent(e.context(format!("sink {:?}: TLS", s.name()))))?;
        }
    }
    let sink_conns = sinks.iter().filter_map(|s| match s {
        SinkConfig::Mqtt(m) => Some((format!("sink {:?}", m.name), &m.conn)),
        _ => None,
    });
    let source_conns = sources.iter().filter_map(|s| match s {
        SourceConfig::MqttIn(m) => Some((format!("source {:?}", m.common.name), &m.conn)),
        _ => None,
    });
    for (who, conn) in sink_conns.chain(source_conns) {
        if conn.broker.tls {
            crate::mqtt::options(conn).map_err(|e| permanent(e.context(format!("{who}: TLS"))))?;
        }
    }
    Ok(())
}

/// A started gateway: ring, buffer writer, sinks, sources, monitoring.
pub struct Gateway {
    /// Gateway id.
    pub id: String,
    /// The ingest ring.
    pub ingest: Arc<Ingest>,
    /// The buffer.
    pub buffer: Buffer,
    /// Component counters.
    pub telemetry: Arc<Telemetry>,
    /// What the status line reads.
    pub status: StatusLine,
    /// The devices that accept writes (see `component::actuate`): write
    /// through it with `actuators.write(request).await`.
    pub actuators: crate::component::Actuators,
    /// `type = "file"` sources (used by `relais import`).
    pub file_sources: Vec<crate::sources::file::config::FileSource>,
    sources_stop: CancellationToken,
    sinks_stop: CancellationToken,
    aux_stop: CancellationToken,
    source_tasks: Vec<JoinHandle<()>>,
    sink_tasks: Vec<JoinHandle<()>>,
    aux: Vec<JoinHandle<()>>,
    /// Cancels every task when a `Gateway` is dropped without `shutdown`
    /// (a panicking test, an early return): blocking sources (tail, watch
    /// ingest) would otherwise keep the runtime from ever shutting down.
    _stop_on_drop: [tokio_util::sync::DropGuard; 3],
}

/// Opens the buffer (on the blocking pool: it may check and recover the
/// database) with a cursor for each sink.
async fn open_buffer(cfg: crate::config::BufferConfig, dir: &Path, ingest: &Arc<Ingest>, sinks: &[String]) -> anyhow::Result<Buffer> {
    let (dir, ingest, names) = (dir.to_path_buf(), ingest.clone(), sinks.to_vec());
    tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        Buffer::open(&cfg, &dir, ingest, &refs)
    })
    .await?
}

/// The processors of a configuration: detectors, rules, commands, history.
struct Processors {
    detectors: Vec<crate::processors::anomaly::DetectorConfig>,
    rules: Vec<crate::processors::rules::RuleConfig>,
    commands: Option<crate::processors::commands::CommandsConfig>,
    history: Option<HistoryConfig>,
}

/// What runs: everything, or with `sinks_only` (`relais import`: the sinks
/// deliver files) only the file sources, no devices, no detectors, no rules,
/// no commands, no history (the daemon's history reads what the import commits).
fn to_run(
    devices: Vec<DeviceConfig>,
    sources: Vec<SourceConfig>,
    procs: Processors,
    opts: &RunOptions,
) -> (Vec<DeviceConfig>, Vec<SourceConfig>, Processors) {
    if opts.sinks_only {
        let none = Processors { detectors: Vec::new(), rules: Vec::new(), commands: None, history: None };
        (Vec::new(), sources.into_iter().filter(|s| matches!(s, SourceConfig::File(_))).collect(), none)
    } else {
        (devices, sources, procs)
    }
}

/// Detectors, rules and history first (they subscribe to committed samples before any
/// source pushes), then devices and sources.
async fn spawn_sources(
    procs: Processors,
    devices: &[DeviceConfig],
    sources: &[SourceConfig],
    ctx: &Ctx<'_>,
) -> anyhow::Result<Vec<JoinHandle<()>>> {
    use crate::component::Kind;
    let mut tasks = crate::processors::anomaly::component::Anomaly::spawn(procs.detectors, ctx).await?;
    tasks.extend(crate::processors::rules::component::Rules::spawn(procs.rules, ctx).await?);
    tasks.extend(crate::processors::commands::component::Commands::spawn(procs.commands.into_iter().collect(), ctx).await?);
    if let Some(h) = procs.history {
        tasks.extend(crate::processors::history::run::spawn(h, ctx)?);
    }
    tasks.extend(DeviceConfig::spawn_all(devices, ctx).await?);
    tasks.extend(SourceConfig::spawn_all(sources, ctx).await?);
    Ok(tasks)
}

/// The status line, the health samples, the systemd watchdog and the log of
/// rejected records, stopped by `stop`.
fn spawn_monitoring(status: &StatusLine, gateway: &GatewayConfig, opts: &RunOptions, stop: &CancellationToken) -> Vec<JoinHandle<()>> {
    let every = opts.status_interval.unwrap_or(gateway.status_interval);
    vec![
        spawn_status(status.clone(), every, opts.status_stdout, stop.clone()),
        spawn_health(status.clone(), gateway.health_interval, stop.clone()),
        spawn_systemd(status.clone(), stop.clone()),
        crate::telemetry::spawn_reject_log(status.telemetry.clone(), stop.clone()),
    ]
}

/// The gateway's event emitter, the buffer's own events turned on. Events
/// (sink and buffer state changes) are the running gateway's; `relais import`
/// (`sinks_only`) counts and reports samples only: `None`.
fn gateway_events(buffer: &Buffer, sinks_only: bool) -> Option<crate::ingest::Events> {
    let events = (!sinks_only).then(|| buffer.events());
    if events.is_some() {
        buffer.emit_events();
    }
    events
}

/// The `type = "file"` sources among `sources` (`relais import` reports on them).
fn file_sources(sources: Vec<SourceConfig>) -> Vec<crate::sources::file::config::FileSource> {
    sources
        .into_iter()
        .filter_map(|s| match s {
            SourceConfig::File(f) => Some(f),
            _ => None,
        })
        .collect()
}

/// Starts the `[admin]` listener over the gateway's status, buffer and metrics.
async fn start_admin(
    cfg: &crate::config::AdminConfig,
    status: &StatusLine,
    buffer: &Buffer,
    recorder: Arc<metrics_exporter_prometheus::PrometheusRecorder>,
    devices: Vec<(String, Option<Duration>)>,
    (live, acks, data_dir, history): (
        crate::processors::live::LiveTable,
        crate::component::AlarmAcks,
        &Path,
        Option<admin::history::HistoryAccess>,
    ),
    stop: &CancellationToken,
) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let expect = admin::Expect { devices, periods: cfg.ready_periods, ack_within: cfg.ready_ack_within };
    let (reader, auth, data_dir) = (buffer.reader()?, cfg.auth.clone(), data_dir.to_path_buf());
    let a = admin::Admin { status: status.clone(), reader, recorder, auth, expect, live, data_dir, acks, history };
    admin::spawn_admin(cfg, a, stop.clone()).await
}

impl Gateway {
    /// Opens the buffer and starts sinks, sources and monitoring.
    pub async fn start(cfg: Config, opts: RunOptions) -> anyhow::Result<Gateway> {
        let Config { gateway, buffer: buffer_cfg, devices, sinks, sources, warnings, detectors, rules, commands, admin, history } = cfg;
        // `relais import` runs beside the daemon: no second admin listener.
        let admin = admin.filter(|_| !opts.sinks_only);
        warnings.iter().for_each(|w| tracing::warn!("config: {w}"));
        let history_access = history.clone().map(|cfg| admin::history::HistoryAccess { path: HistoryConfig::path(&gateway.data_dir), cfg });
        let (devices, sources, procs) = to_run(devices, sources, Processors { detectors, rules, commands, history }, &opts);
        let (n_devices, n_sinks, n_sources) = (devices.len(), sinks.len(), sources.len());
        // Problems a restart cannot cure fail here, marked (exit code 4).
        prepare_data_dir(&gateway.data_dir)?;
        check_tls_files(&sinks, &sources)?;
        let ingest = Arc::new(Ingest::new(buffer_cfg.ring_capacity));
        let sink_names: Vec<String> = sinks.iter().map(|s| s.name().to_string()).collect();
        let buffer = open_buffer(buffer_cfg, &gateway.data_dir, &ingest, &sink_names).await?;
        let events = gateway_events(&buffer, opts.sinks_only);
        let recorder = admin.as_ref().map(|_| Arc::new(crate::telemetry::metrics::recorder()));
        let telemetry = Arc::new(recorder.clone().map(Telemetry::with_recorder).unwrap_or_default());
        let expect_devices: Vec<(String, Option<Duration>)> =
            devices.iter().map(|d| (d.name().to_string(), d.component().poll_period())).collect();
        let live = crate::component::live::LiveTable::new();
        let actuators = crate::component::Actuators::new(events.clone()).with_live(live.clone());
        let alarm_acks = crate::component::AlarmAcks::default();
        // Subscribed before any source starts; `relais import` needs none.

        // Sinks, then detectors and rules, then sources: each family starts its kinds
        // with one context (sources and sinks stop at different moments).
        let sinks_stop = CancellationToken::new();
        let ctx = |stop: &CancellationToken| Ctx {
            gateway: &gateway.id,
            data_dir: &gateway.data_dir,
            ingest: &ingest,
            buffer: &buffer,
            telemetry: &telemetry,
            events: events.clone(),
            stop: stop.clone(),
            grace: SINK_GRACE,
            actuators: actuators.clone(),
            live: live.clone(),
            alarm_acks: alarm_acks.clone(),
        };
        let mut sink_tasks = SinkConfig::spawn_all(&sinks, &ctx(&sinks_stop)).await?;
        // Subscribed before any source starts; `relais import` needs none.
        sink_tasks.extend((!opts.sinks_only).then(|| live.spawn(buffer.tap(), sinks_stop.clone())));

        let sources_stop = CancellationToken::new();
        let source_tasks = spawn_sources(procs, &devices, &sources, &ctx(&sources_stop)).await?;
        let file_sources = file_sources(sources);

        // Monitoring.
        let aux_stop = CancellationToken::new();
        let status = StatusLine {
            ingest: ingest.clone(),
            buffer: buffer.stats().clone(),
            cursors: sink_names.iter().filter_map(|n| buffer.cursor(n)).collect(),
            telemetry: telemetry.clone(),
        };
        let mut aux = spawn_monitoring(&status, &gateway, &opts, &aux_stop);
        if let (Some(cfg), Some(recorder)) = (&admin, recorder) {
            aux.extend(
                start_admin(
                    cfg,
                    &status,
                    &buffer,
                    recorder,
                    expect_devices,
                    (live, alarm_acks, &gateway.data_dir, history_access),
                    &aux_stop,
                )
                .await?,
            );
        }
        // Configuration parsing and planning are done: give their memory back.
        crate::memory::trim();
        tracing::info!(
            gateway = %gateway.id, devices = n_devices, sources = n_sources, sinks = n_sinks,
            data_dir = %gateway.data_dir.display(), "relais running"
        );
        let _stop_on_drop = [sources_stop.clone().drop_guard(), sinks_stop.clone().drop_guard(), aux_stop.clone().drop_guard()];
        Ok(Gateway {
            _stop_on_drop,
            id: gateway.id,
            ingest,
            buffer,
            telemetry,
            status,
            actuators,
            file_sources,
            sources_stop,
            sinks_stop,
            aux_stop,
            source_tasks,
            sink_tasks,
            aux,
        })
    }

    /// Committed samples not yet acknowledged by every sink (0 without sinks).
    pub fn undelivered(&self) -> u64 {
        self.status.backlogs().iter().map(|(_, b)| *b).max().unwrap_or(0)
    }

    /// The ordered shutdown (see the module docs).
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let t0 = std::time::Instant::now();
        self.sources_stop.cancel();
        join_all(self.source_tasks, Duration::from_secs(1), "sources").await;
        self.aux_stop.cancel();
        join_all(self.aux, Duration::from_millis(200), "monitoring").await;
        if tokio::time::timeout(Duration::from_secs(1), self.ingest.barrier()).await.is_err() {
            tracing::warn!(pending = self.ingest.len(), "the buffer did not commit the last samples within 1s");
        }
        self.sinks_stop.cancel();
        join_all(self.sink_tasks, SINK_GRACE + Duration::from_millis(800), "sinks").await;
        let buffer = self.buffer;
        let last = buffer.stats().last_seq.load(Ordering::Relaxed);
        tokio::task::spawn_blocking(move || buffer.close()).await?;
        tracing::info!(last_seq = last, took = ?t0.elapsed(), "relais stopped");
        Ok(())
    }
}

/// Runs the gateway until `shutdown` is cancelled.
pub async fn run(cfg: Config, shutdown: CancellationToken, opts: RunOptions) -> anyhow::Result<()> {
    let gw = Gateway::start(cfg, opts).await?;
    let _ = sd_notify::notify(&[NotifyState::Ready]);
    shutdown.cancelled().await;
    let _ = sd_notify::notify(&[NotifyState::Stopping]);
    gw.shutdown().await
}
