//! Poll schedule of the devices behind one Modbus line (TCP endpoint or
//! serial port).
//!
//! One task per line owns its [`Link`]; the unit ids behind it take turns,
//! one request at a time. Lines never wait on each other, so a dead or slow
//! device only costs its own line's time.
//!
//! Each device's tags are grouped by poll interval; each group keeps its plan of
//! read requests ([`planner`](super::planner)). A cycle runs the group's
//! requests and pushes one sample per tag: good with its value, or bad with the
//! reason (exception, timeout, invalid frame, connection). Values are never
//! repeated from an earlier read ([`cycle`](super::cycle)).
//!
//! Turns on a shared line ([`degrade`](super::degrade)): a unit that stops
//! answering costs at most one timeout per cycle (its other requests of that
//! cycle are skipped), is degraded after three silent cycles, and is then only
//! probed, in idle stretches of the line or from a small time budget, so the
//! answering units keep their poll rate. Over RTU a unit that timed out waits
//! one more timeout before it is asked again ([`Link::ready_at`]); the other
//! units take their turns meanwhile.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::config::ModbusDevice;
use super::degrade::{AnswerTimes, Outcome, ProbeBudget};
use super::device::{Device, Group, Planned};
use super::link::Link;
use super::planner::{self, ReadRequest, TagSpan};
use crate::component::Actuators;
use crate::component::actuate::WriteJob;
use crate::component::checks::{Checker, Checks};
use crate::ingest::{Events, Ingest};
use crate::model::TagMeta;
use crate::sources::writable::rogue_watched;
use crate::telemetry::{DeviceStats, Telemetry};
use crate::util::supervise;

/// The plan of one device: groups by interval, each with its requests.
pub fn plan_device(dev: &ModbusDevice) -> Result<Vec<(Duration, Vec<ReadRequest>)>, planner::PlanError> {
    let spans = spans_of(dev);
    let mut intervals: Vec<Duration> = dev.tags.iter().map(|t| t.poll_interval).collect();
    intervals.sort();
    intervals.dedup();
    intervals
        .into_iter()
        .map(|iv| {
            let group: Vec<TagSpan> = spans.iter().filter(|s| dev.tags[s.index].poll_interval == iv).copied().collect();
            planner::plan(&group, &dev.limits).map(|reqs| (iv, reqs))
        })
        .collect()
}

pub(super) fn spans_of(dev: &ModbusDevice) -> Vec<TagSpan> {
    dev.tags.iter().enumerate().map(|(i, t)| TagSpan { index: i, table: t.table, address: t.address, count: t.count() }).collect()
}

/// Starts one polling task per distinct line of `devices` (writes to them
/// are refused: no registry knows them; see [`spawn_all_with`]).
pub fn spawn_all(
    devices: Vec<ModbusDevice>,
    ingest: Arc<Ingest>,
    telemetry: &Telemetry,
    cancel: CancellationToken,
) -> anyhow::Result<Vec<JoinHandle<()>>> {
    spawn_all_with(devices, ingest, telemetry, cancel, &Actuators::new(None))
}

/// Starts one polling task per distinct line of `devices`, each registering
/// its devices in `actuators` and executing their writes between polls.
pub fn spawn_all_with(
    devices: Vec<ModbusDevice>,
    ingest: Arc<Ingest>,
    telemetry: &Telemetry,
    cancel: CancellationToken,
    actuators: &Actuators,
) -> anyhow::Result<Vec<JoinHandle<()>>> {
    spawn_checked(devices, ingest, telemetry, cancel, actuators, &Checks::default())
}

/// [`spawn_all_with`], each line's samples passing through its own
/// [`Checker`](crate::component::checks::Checker) of `checks` before the ring.
pub fn spawn_checked(
    devices: Vec<ModbusDevice>,
    ingest: Arc<Ingest>,
    telemetry: &Telemetry,
    cancel: CancellationToken,
    actuators: &Actuators,
    checks: &Checks,
) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let mut by_line: Vec<(String, Vec<ModbusDevice>)> = Vec::new();
    for d in devices {
        let key = d.transport.line_key(&d.endpoint);
        match by_line.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => v.push(d),
            None => by_line.push((key, vec![d])),
        }
    }
    let mut handles = Vec::new();
    for (_, devs) in by_line {
        let endpoint = devs[0].endpoint.clone();
        let stats: Vec<Arc<DeviceStats>> = devs.iter().map(|d| telemetry.device(&d.name)).collect();
        // Plan errors surface here, before anything runs.
        EndpointPoller::new(&endpoint, devs.clone(), ingest.clone(), stats.clone())?;
        let (ingest, cancel, actuators, checks) = (ingest.clone(), cancel.clone(), actuators.clone(), checks.clone());
        // A poller that panics (a bug, or a library assertion on a malformed
        // answer) is logged and restarted, never lost; it registers its
        // devices again (writes queued for the one that panicked settle as
        // `failed`, or `unknown` for the one in progress).
        let what = format!("modbus poller of {endpoint}");
        let names: Vec<(String, Vec<String>)> =
            devs.iter().map(|d| (d.name.clone(), d.tags.iter().map(|t| t.name.clone()).collect())).collect();
        // Registered now, so writes asked for right after start find the line.
        let mut first = Some(actuators.register(names.clone()));
        for d in &devs {
            let watched = rogue_watched(d.tags.iter().map(|t| (t.name.as_str(), t.write.as_ref())));
            actuators.rogue().watch(&d.name, &watched);
        }
        handles.push(supervise(what, cancel.clone(), move || {
            let mut poller = EndpointPoller::new(&endpoint, devs.clone(), ingest.clone(), stats.clone()).ok()?;
            poller.writes = Some(first.take().unwrap_or_else(|| actuators.register(names.clone())));
            poller.checker = checks.checker();
            Some(poller.run(cancel.clone()))
        }));
    }
    Ok(handles)
}

/// The next write job; never resolves without a queue.
async fn next_job(rx: &mut Option<mpsc::Receiver<WriteJob>>) -> Option<WriteJob> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// What the line does next.
enum Next {
    /// Run cycle `g` of device `d`.
    Cycle(usize, usize),
    /// Probe degraded device `d` with this timeout.
    Probe(usize, Duration),
    /// Nothing before this instant.
    Wait(Instant),
}

/// The devices behind one line and their shared link.
pub struct EndpointPoller {
    pub(super) link: Link,
    pub(super) devices: Vec<Device>,
    pub(super) ingest: Arc<Ingest>,
    pub(super) events: Events,
    budget: ProbeBudget,
    pub(super) answers: AnswerTimes,
    /// Write jobs for the devices of this line (`None`: not registered).
    pub(super) writes: Option<mpsc::Receiver<WriteJob>>,
    /// When each writable tag `(device, tag)` was last written (`max_rate`).
    pub(super) write_log: HashMap<(usize, usize), crate::sources::writable::RateLog>,
    /// The `[[check]]` checks of this line's tags (state owned by this task).
    pub(super) checker: Checker,
}

impl EndpointPoller {
    /// Plans every device; fails only on a plan error (which `relais check`
    /// reports before start).
    pub fn new(endpoint: &str, devs: Vec<ModbusDevice>, ingest: Arc<Ingest>, stats: Vec<Arc<DeviceStats>>) -> anyhow::Result<Self> {
        let reconnect_max = devs.iter().map(|d| d.reconnect_max).max().unwrap_or(Duration::from_secs(30));
        let longest_timeout = devs.iter().map(|d| d.timeout).max().unwrap_or(Duration::from_secs(1));
        let now = Instant::now();
        let mut devices = Vec::new();
        for (cfg, stats) in devs.into_iter().zip(stats) {
            let plan = plan_device(&cfg).map_err(|e| anyhow::anyhow!("device {}: {e}", cfg.name))?;
            let groups = plan
                .into_iter()
                .map(|(interval, reqs)| Group {
                    interval,
                    // Spread over the first interval (up to 1 s) by name, or
                    // at round instants when the device asks for it.
                    next_due: crate::sources::schedule::first_due(cfg.poll_phase, &cfg.name, interval, now),
                    requests: reqs.iter().cloned().map(|req| Planned { req, keep_whole: false }).collect(),
                    original: reqs,
                    split_since: None,
                })
                .collect();
            let device: Arc<str> = cfg.name.as_str().into();
            let metas = cfg.tags.iter().map(|t| TagMeta::new(device.clone(), t.name.as_str(), t.unit.as_deref())).collect();
            devices.push(Device {
                spans: spans_of(&cfg),
                stats,
                metas,
                groups,
                cfg,
                health: Default::default(),
                warned_floats: Default::default(),
                warned_drops: None,
                last_silence: None,
                answering: None,
            });
        }
        let transport = devices.first().map_or(super::config::Transport::Tcp, |d| d.cfg.transport.clone());
        Ok(EndpointPoller {
            link: Link::new(endpoint, transport, reconnect_max),
            devices,
            events: ingest.events(),
            ingest,
            budget: ProbeBudget::new(longest_timeout, now),
            answers: AnswerTimes::default(),
            writes: None,
            write_log: HashMap::new(),
            checker: Checks::default().checker(),
        })
    }

    /// Polls until `cancel` fires; a queued write runs before the next
    /// cycle or probe, one write per turn, so polls go on between writes.
    pub async fn run(mut self, cancel: CancellationToken) {
        loop {
            if let Some(job) = self.writes.as_mut().and_then(|rx| rx.try_recv().ok()) {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = self.write(job) => {}
                }
            }
            let next = self.next();
            match next {
                Next::Wait(until) => {
                    let woke = tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep_until(until) => None,
                        job = next_job(&mut self.writes) => Some(job),
                    };
                    match woke {
                        Some(Some(job)) => {
                            tokio::select! {
                                _ = cancel.cancelled() => return,
                                _ = self.write(job) => {}
                            }
                        }
                        // Queue closed (the devices were registered again): stop listening.
                        Some(None) => self.writes = None,
                        None => {}
                    }
                }
                Next::Cycle(d, g) => {
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = self.cycle(d, g) => {}
                    }
                    let group = &mut self.devices[d].groups[g];
                    let skipped = crate::sources::schedule::advance(&mut group.next_due, group.interval);
                    self.devices[d].stats.overruns.fetch_add(skipped, Ordering::Relaxed);
                }
                Next::Probe(d, timeout) => {
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = self.probe(d, timeout) => {}
                    }
                }
            }
        }
    }

    /// When a device's cycle may run: its due time, later over RTU while
    /// the unit must stay quiet after a timeout.
    fn due(&self, d: usize, g: usize) -> Instant {
        let dev = &self.devices[d];
        let due = dev.groups[g].next_due;
        match self.link.ready_at(dev.cfg.unit_id) {
            Some(t) if !dev.health.is_degraded() => due.max(t),
            _ => due,
        }
    }

    /// Picks the next thing to do: a due cycle first; else a due probe if it
    /// fits in the idle stretch before the next cycle of an answering unit,
    /// or the probe budget allows it; else wait.
    fn next(&mut self) -> Next {
        let now = Instant::now();
        let mut cycle: Option<(usize, usize, Instant)> = None;
        let mut busy_at: Option<Instant> = None;
        for (d, dev) in self.devices.iter().enumerate() {
            for g in 0..dev.groups.len() {
                let due = self.due(d, g);
                if cycle.is_none_or(|c| due < c.2) {
                    cycle = Some((d, g, due));
                }
                if !dev.health.is_degraded() && busy_at.is_none_or(|b| due < b) {
                    busy_at = Some(due);
                }
            }
        }
        if let Some((d, g, due)) = cycle
            && due <= now
        {
            return Next::Cycle(d, g);
        }
        let probe = self.devices.iter().enumerate().filter_map(|(d, dev)| dev.health.next_probe().map(|t| (d, t))).min_by_key(|p| p.1);
        let mut wake = cycle.map(|c| c.2);
        if let Some((d, at)) = probe {
            let dev = &self.devices[d];
            let timeout = dev.health.probe_timeout(dev.cfg.timeout, self.answers.slowest());
            let cost = timeout + self.link.frame_gap();
            let at = at.max(now);
            let idle = busy_at.is_none_or(|b| b.saturating_duration_since(at) >= cost);
            let when = if idle { at } else { at.max(self.budget.available_at(cost, now)) };
            if when <= now {
                if !idle {
                    self.budget.spend(cost, now);
                }
                return Next::Probe(d, timeout);
            }
            wake = Some(wake.map_or(when, |w| w.min(when)));
        }
        Next::Wait(wake.unwrap_or_else(|| now + Duration::from_secs(3600)))
    }

    /// Reads a degraded device's first request once; any answer ends its
    /// degraded mode and its cycles run again at once.
    async fn probe(&mut self, d: usize, timeout: Duration) {
        let Some(req) = self.devices[d].groups.iter().find_map(|g| g.requests.first()).map(|p| p.req.clone()) else { return };
        let unit = self.devices[d].cfg.unit_id;
        let t0 = Instant::now();
        let result = self.link.read(unit, req.table, req.start, req.count, timeout).await;
        self.charge_discards(d);
        let outcome = super::cycle::outcome_of(std::slice::from_ref(&result));
        if outcome == Outcome::Answered {
            self.answers.record(t0.elapsed());
        }
        let now = Instant::now();
        let dev = &mut self.devices[d];
        tracing::debug!(device = %dev.cfg.name, ?timeout, ok = outcome == Outcome::Answered, "probed degraded device");
        if let Some(t) = dev.health.after_probe(outcome, now) {
            for g in &mut dev.groups {
                g.next_due = now;
            }
            super::state::transition(&self.events, dev, t);
        }
    }

    /// Counts the frames the link dropped since the last read on the devices
    /// they are charged to (by unit id; `d` when it has that unit id).
    pub(super) fn charge_discards(&mut self, d: usize) {
        for (unit, discard) in self.link.take_discards() {
            let target =
                if self.devices[d].cfg.unit_id == unit { Some(d) } else { self.devices.iter().position(|x| x.cfg.unit_id == unit) };
            self.devices[target.unwrap_or(d)].count_discard(&discard);
        }
    }
}
