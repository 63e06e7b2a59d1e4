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
mod host;
pub mod import;
mod prepare;
pub mod reload;
mod signals;
mod status;
mod systemd;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use sd_notify::NotifyState;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::buffer::Buffer;
use crate::component::Ctx;
use crate::config::{Config, DeviceConfig, GatewayConfig, SourceConfig};
use crate::ingest::Ingest;
use crate::telemetry::Telemetry;
pub use health::spawn_health;
use prepare::{check_tls_files, prepare_data_dir};
pub use signals::cancel_on_signal;
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
    /// The configuration file, which `POST /api/reload`, SIGHUP and
    /// `relais reload` read again (`relais run`); `None`: no reload.
    pub config_path: Option<PathBuf>,
}

/// Time sinks get at shutdown to deliver what is committed.
const SINK_GRACE: Duration = Duration::from_millis(1500);

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
    data_dir: PathBuf,
    events: Option<crate::ingest::Events>,
    live: crate::component::live::LiveTable,
    alarm_acks: crate::component::AlarmAcks,
    /// `[[check]]`: the per-tag checks every source applies.
    checks: crate::component::checks::Checks,
    sources_stop: CancellationToken,
    sinks_stop: CancellationToken,
    aux_stop: CancellationToken,
    /// Sinks, processors, devices and sources, unit by unit (see `reload`).
    supervisor: reload::Supervisor,
    /// Tasks stopped with the sinks that are no unit (the live table).
    sink_tasks: Vec<JoinHandle<()>>,
    aux: Vec<JoinHandle<()>>,
    /// The file and the running configuration, when it can be reloaded.
    config: Option<reload::Source>,
    reloader: Option<reload::Reloader>,
    reloads: Option<tokio::sync::mpsc::Receiver<reload::Request>>,
    /// The `[admin]` settings a reload changes in the running listener.
    admin_settings: Option<admin::Settings>,
    /// The running marker is in `data_dir` (removed at a clean shutdown; `host.rs`).
    marked: bool,
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
    history: Option<crate::processors::history::HistoryConfig>,
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
    gw: &Gateway,
    recorder: Arc<metrics_exporter_prometheus::PrometheusRecorder>,
    devices: Vec<(String, Option<Duration>)>,
    history: Option<admin::history::HistoryAccess>,
    lab: &crate::config::LabConfig,
) -> anyhow::Result<(Vec<JoinHandle<()>>, admin::Settings)> {
    let expect = admin::Expect { devices, periods: cfg.ready_periods, ack_within: cfg.ready_ack_within };
    let settings = admin::Settings::new(cfg.auth.clone(), expect);
    let a = admin::Admin {
        status: gw.status.clone(),
        reader: gw.buffer.reader()?,
        recorder,
        settings: settings.clone(),
        live: gw.live.clone(),
        data_dir: gw.data_dir.clone(),
        reload: gw.reloader.clone(),
        acks: gw.alarm_acks.clone(),
        history,
        writes: gw.actuators.counts(),
        lab: lab.faults.then(|| admin::lab::Lab { disk_full: gw.buffer.disk_full_switch() }),
    };
    if lab.faults {
        tracing::warn!("[lab] faults = true: PUT /api/lab/clock and /api/lab/disk_full can move the clock and stop the buffer");
    }
    Ok((admin::spawn_admin(cfg, a, gw.aux_stop.clone()).await?, settings))
}

impl Gateway {
    /// Opens the buffer and starts sinks, sources and monitoring.
    pub async fn start(cfg: Config, opts: RunOptions) -> anyhow::Result<Gateway> {
        let running = cfg.clone();
        let Config {
            gateway,
            buffer: buffer_cfg,
            devices,
            sinks,
            sources,
            warnings,
            detectors,
            rules,
            commands,
            admin,
            history,
            lab,
            checks,
        } = cfg;
        // `relais import` runs beside the daemon: no second admin listener.
        let admin = admin.filter(|_| !opts.sinks_only);
        warnings.iter().for_each(|w| tracing::warn!("config: {w}"));
        let history_access = history.clone().map(|cfg| {
            let path = crate::processors::history::HistoryConfig::path(&gateway.data_dir);
            admin::history::HistoryAccess { path, cfg }
        });
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
        let status =
            StatusLine { ingest: ingest.clone(), buffer: buffer.stats().clone(), cursors: buffer.cursors(), telemetry: telemetry.clone() };
        let (sources_stop, sinks_stop, aux_stop) = (CancellationToken::new(), CancellationToken::new(), CancellationToken::new());
        let config = opts.config_path.clone().filter(|_| !opts.sinks_only).map(|path| reload::Source { path, running });
        let (reloader, reloads) = config.as_ref().map(|_| reload::Reloader::channel()).unzip();
        let live = crate::component::live::LiveTable::new();
        let mut gw = Gateway {
            _stop_on_drop: [sources_stop.clone().drop_guard(), sinks_stop.clone().drop_guard(), aux_stop.clone().drop_guard()],
            id: gateway.id.clone(),
            data_dir: gateway.data_dir.clone(),
            actuators: crate::component::Actuators::new(events.clone()).with_live(live.clone()),
            alarm_acks: crate::component::AlarmAcks::default(),
            checks: crate::component::checks::Checks::new(checks, events.clone()),
            live,
            events,
            ingest,
            buffer,
            telemetry,
            status,
            file_sources: Vec::new(),
            supervisor: reload::Supervisor::new(sources_stop.clone(), sinks_stop.clone()),
            sources_stop,
            sinks_stop,
            aux_stop,
            sink_tasks: Vec::new(),
            aux: Vec::new(),
            config,
            reloader,
            reloads,
            admin_settings: None,
            marked: false,
        };
        if let Some(ev) = gw.events.clone() {
            let unclean = host::mark_running(&gw.data_dir);
            gw.marked = true;
            host::emit_started(&ev, &gw.id, unclean);
        }
        // Sinks, then detectors, rules and commands (they subscribe to
        // committed samples before any source pushes), then devices and
        // sources: the units' order (see `reload::plan::Family`).
        let procs_refs = (&procs.detectors[..], &procs.rules[..], procs.commands.as_ref(), procs.history.as_ref());
        let units = reload::plan::units(&sinks, procs_refs, &devices, &sources);
        // The live table subscribes before any source starts; `relais import` needs none.
        if !opts.sinks_only {
            gw.sink_tasks.push(gw.live.spawn(gw.buffer.tap(), gw.sinks_stop.clone()));
            // The rogue-write detector likewise (component::rogue).
            gw.sink_tasks.push(gw.actuators.rogue().spawn(gw.buffer.tap(), gw.events.clone(), gw.sinks_stop.clone()));
        }
        for (key, unit) in units {
            gw.start_unit(key, unit).await?;
        }
        gw.file_sources = file_sources(sources);
        gw.aux = spawn_monitoring(&gw.status, &gateway, &opts, &gw.aux_stop);
        if let Some(ev) = gw.events.clone() {
            gw.aux.push(host::spawn_clock_events(ev, gw.aux_stop.clone()));
        }
        if !gw.checks.is_empty() {
            // Stale samples enter the ring: the watcher stops with the sources.
            let board = gw.checks.board();
            gw.aux.push(crate::component::checks::stale::watch(board, gw.ingest.clone(), gw.events.clone(), gw.sources_stop.clone()));
        }
        if let (Some(cfg), Some(recorder)) = (&admin, recorder) {
            let (tasks, settings) = start_admin(cfg, &gw, recorder, expect_devices, history_access, &lab).await?;
            gw.aux.extend(tasks);
            gw.admin_settings = Some(settings);
        }
        // Configuration parsing and planning are done: give their memory back.
        crate::memory::trim();
        tracing::info!(
            gateway = %gateway.id, devices = n_devices, sources = n_sources, sinks = n_sinks,
            data_dir = %gateway.data_dir.display(), "relais running"
        );
        Ok(gw)
    }

    /// Starts one unit of components with its own stop token.
    async fn start_unit(&mut self, key: reload::plan::UnitKey, unit: reload::plan::Unit) -> anyhow::Result<()> {
        let stop = self.supervisor.token(key.0);
        let ctx = Ctx {
            gateway: &self.id,
            data_dir: &self.data_dir,
            ingest: &self.ingest,
            buffer: &self.buffer,
            telemetry: &self.telemetry,
            events: self.events.clone(),
            stop,
            grace: SINK_GRACE,
            actuators: self.actuators.clone(),
            live: self.live.clone(),
            alarm_acks: self.alarm_acks.clone(),
            checks: self.checks.clone(),
        };
        self.supervisor.start(key, unit, &ctx).await
    }

    /// The next reload asked for (never, when this gateway cannot reload).
    async fn next_reload(&mut self) -> Option<reload::Request> {
        match &mut self.reloads {
            Some(rx) => rx.recv().await,
            None => std::future::pending().await,
        }
    }

    /// Committed samples not yet acknowledged by every sink (0 without sinks).
    pub fn undelivered(&self) -> u64 {
        self.status.backlogs().iter().map(|(_, b)| *b).max().unwrap_or(0)
    }

    /// The ordered shutdown (see the module docs).
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        let t0 = std::time::Instant::now();
        self.sources_stop.cancel();
        join_all(self.supervisor.take_handles(false), Duration::from_secs(1), "sources").await;
        self.aux_stop.cancel();
        join_all(self.aux, Duration::from_millis(200), "monitoring").await;
        if tokio::time::timeout(Duration::from_secs(1), self.ingest.barrier()).await.is_err() {
            tracing::warn!(pending = self.ingest.len(), "the buffer did not commit the last samples within 1s");
        }
        self.sinks_stop.cancel();
        let mut sinks = self.supervisor.take_handles(true);
        sinks.append(&mut self.sink_tasks);
        join_all(sinks, SINK_GRACE + Duration::from_millis(800), "sinks").await;
        let buffer = self.buffer;
        let last = buffer.stats().last_seq.load(Ordering::Relaxed);
        tokio::task::spawn_blocking(move || buffer.close()).await?;
        if self.marked {
            host::mark_stopped(&self.data_dir);
        }
        tracing::info!(last_seq = last, took = ?t0.elapsed(), "relais stopped");
        Ok(())
    }
}

/// Runs the gateway until `shutdown` is cancelled.
pub async fn run(cfg: Config, shutdown: CancellationToken, opts: RunOptions) -> anyhow::Result<()> {
    let mut gw = Gateway::start(cfg, opts).await?;
    // SIGHUP reloads this gateway's file while it runs.
    let _hangup = gw.reloader.clone().map(reload::on_hangup);
    let _ = sd_notify::notify(&[NotifyState::Ready]);
    loop {
        let req = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = gw.next_reload() => r,
        };
        let Some(req) = req else { break };
        let _ = sd_notify::notify(&[NotifyState::Reloading]);
        let out = gw.reload(req.origin).await;
        let _ = sd_notify::notify(&[NotifyState::Ready]);
        if let Some(reply) = req.reply {
            let _ = reply.send(out);
        }
    }
    let _ = sd_notify::notify(&[NotifyState::Stopping]);
    gw.shutdown().await
}
