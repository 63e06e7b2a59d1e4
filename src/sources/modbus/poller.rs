//! Poll schedule of the devices behind one Modbus TCP endpoint.
//!
//! One task per endpoint owns its [`Link`]; the unit ids behind it take turns,
//! one request at a time. Endpoints never wait on each other, so a dead or slow
//! device only costs its own endpoint's time.
//!
//! Each device's tags are grouped by poll interval; each group keeps its plan of
//! read requests ([`planner`](super::planner)). A cycle runs the group's
//! requests and pushes one sample per tag: good with its value, or bad with the
//! reason (exception, timeout, connection). Values are never repeated from an
//! earlier read. A merged request answered with exception 02/03 is split and
//! the parts retried at once; the split is kept for later cycles (or, if every
//! part fails, the request is kept whole and its tags stay bad).
//!
//! A unit that timed out three cycles in a row is *degraded*: it is probed only
//! every `10 × interval` (at most 30 s) until it answers, and its other cycles
//! produce bad samples without touching the bus, so the units sharing its
//! endpoint keep their rate.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::config::{ModbusDevice, ModbusTag};
use super::decode::{apply_scale, decode, implausible_float};
use super::link::{Link, ReadError, Words};
use super::planner::{self, ReadRequest, TagSpan};
use super::types::ByteOrder;
use crate::ingest::Ingest;
use crate::model::{Sample, TagMeta, Timestamp, Value, reason};
use crate::telemetry::{DeviceStats, Telemetry};
use crate::util::supervise;

/// Consecutive all-timeout cycles before a unit is degraded.
const DEGRADE_AFTER: u32 = 3;

struct Planned {
    req: ReadRequest,
    /// Every part failed when this request was split: keep it whole.
    keep_whole: bool,
}

struct Group {
    interval: Duration,
    next_due: Instant,
    requests: Vec<Planned>,
    /// The merged plan, tried again [`REMERGE_AFTER`] after a split (the
    /// device may have been fixed, or the exception was transient).
    original: Vec<ReadRequest>,
    split_since: Option<Instant>,
}

/// How long a split plan is kept before the merged plan is tried again.
const REMERGE_AFTER: Duration = Duration::from_secs(600);
/// Most extra reads one request may cost in one cycle while it is split;
/// the split goes on in the next cycles.
const SPLIT_BUDGET: u32 = 16;

struct Device {
    cfg: ModbusDevice,
    metas: Vec<Arc<TagMeta>>,
    spans: Vec<TagSpan>,
    groups: Vec<Group>,
    stats: Arc<DeviceStats>,
    timeouts_in_a_row: u32,
    degraded_until: Option<Instant>,
    warned_floats: HashSet<usize>,
}

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

fn spans_of(dev: &ModbusDevice) -> Vec<TagSpan> {
    dev.tags.iter().enumerate().map(|(i, t)| TagSpan { index: i, table: t.table, address: t.address, count: t.count() }).collect()
}

/// Starts one polling task per distinct endpoint of `devices`.
pub fn spawn_all(
    devices: Vec<ModbusDevice>,
    ingest: Arc<Ingest>,
    telemetry: &Telemetry,
    cancel: CancellationToken,
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
        let (ingest, cancel) = (ingest.clone(), cancel.clone());
        // A poller that panics (a bug, or a library assertion on a malformed
        // answer) is logged and restarted, never lost.
        let what = format!("modbus poller of {endpoint}");
        handles.push(supervise(what, cancel.clone(), move || {
            let poller = EndpointPoller::new(&endpoint, devs.clone(), ingest.clone(), stats.clone()).ok()?;
            Some(poller.run(cancel.clone()))
        }));
    }
    Ok(handles)
}

/// The devices behind one endpoint and their shared link.
pub struct EndpointPoller {
    link: Link,
    devices: Vec<Device>,
    ingest: Arc<Ingest>,
}

impl EndpointPoller {
    /// Plans every device; fails only on a plan error (which `relais check`
    /// reports before start).
    pub fn new(endpoint: &str, devs: Vec<ModbusDevice>, ingest: Arc<Ingest>, stats: Vec<Arc<DeviceStats>>) -> anyhow::Result<Self> {
        let reconnect_max = devs.iter().map(|d| d.reconnect_max).max().unwrap_or(Duration::from_secs(30));
        let now = Instant::now();
        let mut devices = Vec::new();
        for (cfg, stats) in devs.into_iter().zip(stats) {
            let plan = plan_device(&cfg).map_err(|e| anyhow::anyhow!("device {}: {e}", cfg.name))?;
            let groups = plan
                .into_iter()
                .map(|(interval, reqs)| Group {
                    interval,
                    next_due: now,
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
                timeouts_in_a_row: 0,
                degraded_until: None,
                warned_floats: HashSet::new(),
            });
        }
        let transport = devices.first().map_or(super::config::Transport::Tcp, |d| d.cfg.transport.clone());
        Ok(EndpointPoller { link: Link::new(endpoint, transport, reconnect_max), devices, ingest })
    }

    /// Polls until `cancel` fires.
    pub async fn run(mut self, cancel: CancellationToken) {
        loop {
            let Some((d, g, due)) = self.next_due() else {
                cancel.cancelled().await;
                return;
            };
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep_until(due) => {}
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = self.cycle(d, g) => {}
            }
            let group = &mut self.devices[d].groups[g];
            let skipped = crate::sources::schedule::advance(&mut group.next_due, group.interval);
            self.devices[d].stats.overruns.fetch_add(skipped, Ordering::Relaxed);
        }
    }

    fn next_due(&self) -> Option<(usize, usize, Instant)> {
        let mut best: Option<(usize, usize, Instant)> = None;
        for (d, dev) in self.devices.iter().enumerate() {
            for (g, group) in dev.groups.iter().enumerate() {
                if best.is_none_or(|b| group.next_due < b.2) {
                    best = Some((d, g, group.next_due));
                }
            }
        }
        best
    }

    async fn cycle(&mut self, d: usize, g: usize) {
        let dev = &mut self.devices[d];
        dev.stats.cycles.fetch_add(1, Ordering::Relaxed);
        let mut samples: Vec<Sample> = Vec::new();
        // Degraded: bad samples without touching the bus until the next probe.
        if let Some(until) = dev.degraded_until
            && Instant::now() < until
        {
            let why: Arc<str> =
                format!("{}: device not answering; polled again in {:.0}s", reason::COMM_FAILURE, (until - Instant::now()).as_secs_f64())
                    .into();
            let ts = Timestamp::now();
            for p in &dev.groups[g].requests {
                for &i in &p.req.tags {
                    samples.push(Sample::bad(dev.metas[i].clone(), why.clone(), ts));
                }
            }
            dev.stats.bad.fetch_add(samples.len() as u64, Ordering::Relaxed);
            self.ingest.push_all(samples).await;
            return;
        }

        let mut all_timeouts = true;
        let mut any = false;
        let mut r = 0;
        {
            let dev = &mut self.devices[d];
            let group = &mut dev.groups[g];
            if group.split_since.is_some_and(|t| t.elapsed() >= REMERGE_AFTER) {
                tracing::debug!(device = %dev.cfg.name, "trying the merged read plan again");
                group.requests = group.original.iter().cloned().map(|req| Planned { req, keep_whole: false }).collect();
                group.split_since = None;
            }
        }
        while r < self.devices[d].groups[g].requests.len() {
            let (req, keep_whole) = {
                let p = &self.devices[d].groups[g].requests[r];
                (p.req.clone(), p.keep_whole)
            };
            let mut budget = SPLIT_BUDGET;
            let leaves = self.execute(d, req.clone(), !keep_whole, &mut budget).await;
            let dev = &mut self.devices[d];
            for leaf in &leaves {
                any = true;
                if !matches!(leaf.result, Err(ReadError::Timeout(_))) {
                    all_timeouts = false;
                }
                dev.samples_of(&leaf.req, &leaf.result, &mut samples);
            }
            let group = &mut dev.groups[g];
            if leaves.len() > 1 {
                let parts: Vec<String> = leaves.iter().map(|l| format!("{}+{}", l.req.start, l.req.count)).collect();
                tracing::info!(
                    device = %dev.cfg.name, table = %req.table, start = req.start, count = req.count, parts = %parts.join(" "),
                    "request drew exception 02/03; split it and keeping the split"
                );
                let n = leaves.len();
                let new: Vec<Planned> = leaves.into_iter().map(|l| Planned { req: l.req, keep_whole: l.keep_whole }).collect();
                group.requests.splice(r..=r, new);
                group.split_since.get_or_insert_with(Instant::now);
                r += n;
            } else {
                if leaves[0].keep_whole && !keep_whole {
                    tracing::warn!(
                        device = %dev.cfg.name, table = %req.table, start = req.start, count = req.count,
                        "every part of the request failed as well; keeping it whole (its tags stay bad until the device answers)"
                    );
                    group.requests[r].keep_whole = true;
                }
                r += 1;
            }
        }
        let dev = &mut self.devices[d];
        if any && all_timeouts {
            dev.timeouts_in_a_row += 1;
            if dev.timeouts_in_a_row >= DEGRADE_AFTER {
                let wait = (dev.groups[g].interval * 10).min(Duration::from_secs(30)).max(dev.groups[g].interval);
                if dev.degraded_until.is_none() {
                    tracing::warn!(device = %dev.cfg.name, unit_id = dev.cfg.unit_id, probe_every = ?wait,
                        "device timed out {} cycles in a row; degraded: probed less often until it answers", dev.timeouts_in_a_row);
                }
                dev.degraded_until = Some(Instant::now() + wait);
            }
        } else if any {
            if dev.degraded_until.take().is_some() {
                tracing::info!(device = %dev.cfg.name, "device answers again; back to its normal poll rate");
            }
            dev.timeouts_in_a_row = 0;
        }
        let good = samples.iter().filter(|s| s.quality == crate::model::Quality::Good).count() as u64;
        dev.stats.good.fetch_add(good, Ordering::Relaxed);
        dev.stats.bad.fetch_add(samples.len() as u64 - good, Ordering::Relaxed);
        dev.stats.up.store(good > 0, Ordering::Relaxed);
        self.ingest.push_all(samples).await;
    }

    /// Reads `req`; on exception 02/03 with several tags, splits it and reads
    /// the parts. Returns the leaf requests with their results; when every
    /// part failed too, returns `req` alone, marked to be kept whole.
    fn execute<'a>(
        &'a mut self,
        d: usize,
        req: ReadRequest,
        allow_split: bool,
        budget: &'a mut u32,
    ) -> Pin<Box<dyn Future<Output = Vec<Leaf>> + Send + 'a>> {
        Box::pin(async move {
            let (unit, timeout) = (self.devices[d].cfg.unit_id, self.devices[d].cfg.timeout);
            let result = self.link.read(unit, req.table, req.start, req.count, timeout).await;
            match result {
                Err(ReadError::Exception(2 | 3)) if allow_split && req.tags.len() > 1 => {
                    let parts = planner::split(&req, &self.devices[d].spans);
                    if parts.len() < 2 {
                        return vec![Leaf { req, result, keep_whole: true }];
                    }
                    let mut leaves = Vec::new();
                    for p in parts {
                        if *budget == 0 {
                            // Out of budget: this part fails like its parent
                            // this cycle and is split further next cycle.
                            leaves.push(Leaf { req: p, result: result.clone(), keep_whole: false });
                            continue;
                        }
                        *budget -= 1;
                        leaves.extend(self.execute(d, p, true, budget).await);
                    }
                    if leaves.iter().all(|l| matches!(l.result, Err(ReadError::Exception(_)))) {
                        return vec![Leaf { req, result, keep_whole: true }];
                    }
                    leaves
                }
                _ => vec![Leaf { req, result, keep_whole: false }],
            }
        })
    }
}

/// A request as finally executed in a cycle.
struct Leaf {
    req: ReadRequest,
    result: Result<Words, ReadError>,
    /// Split was tried and every part failed: do not split it again.
    keep_whole: bool,
}

impl Device {
    fn samples_of(&mut self, req: &ReadRequest, result: &Result<Words, ReadError>, out: &mut Vec<Sample>) {
        let ts = Timestamp::now();
        match result {
            Err(e) => {
                let why: Arc<str> = match e {
                    ReadError::Exception(c) => reason::device_exception(*c).into(),
                    ReadError::Timeout(t) => format!("{}: no response within {t:?}", reason::TIMEOUT).into(),
                    ReadError::Comm(m) => format!("{}: {m}", reason::COMM_FAILURE).into(),
                };
                for &i in &req.tags {
                    out.push(Sample::bad(self.metas[i].clone(), why.clone(), ts));
                }
            }
            Ok(words) => {
                for &i in &req.tags {
                    let tag = &self.cfg.tags[i];
                    let (ty, order, bit, scale, offset) = (tag.ty, tag.byte_order, tag.bit, tag.scale, tag.offset);
                    let off = (tag.address - req.start) as usize;
                    let n = ty.register_count() as usize;
                    let value = match words {
                        Words::Bits(bits) => bits.get(off).map(|b| Ok(Value::Bool(*b))),
                        Words::Registers(regs) => regs.get(off..off + n).map(|w| decode(w, ty, order, bit)),
                    };
                    out.push(match value {
                        Some(Ok(Value::F64(x))) if !x.is_finite() => {
                            Sample::bad(self.metas[i].clone(), format!("{}: {ty} decoded to {x}", reason::NON_FINITE).into(), ts)
                        }
                        Some(Ok(v)) => {
                            if let (Value::F64(x), Words::Registers(regs)) = (&v, words) {
                                self.check_float(i, *x, &regs[off..off + n]);
                            }
                            match apply_scale(v, scale, offset) {
                                Value::F64(x) if !x.is_finite() => Sample::bad(
                                    self.metas[i].clone(),
                                    format!("{}: scaled value overflows ({x})", reason::NON_FINITE).into(),
                                    ts,
                                ),
                                v => Sample::good(self.metas[i].clone(), v, ts),
                            }
                        }
                        Some(Err(e)) => Sample::bad(self.metas[i].clone(), format!("{}: {e}", reason::PARSE_ERROR).into(), ts),
                        None => Sample::bad(self.metas[i].clone(), format!("{}: response too short", reason::PARSE_ERROR).into(), ts),
                    });
                }
            }
        }
    }

    /// Field case B01 self-check: warn once per tag when a float looks like a
    /// byte-order mistake, and say which order would give a plausible value.
    fn check_float(&mut self, i: usize, x: f64, words: &[u16]) {
        if !implausible_float(x) || self.warned_floats.contains(&i) {
            return;
        }
        self.warned_floats.insert(i);
        let tag: &ModbusTag = &self.cfg.tags[i];
        let alternatives: Vec<String> = ByteOrder::ALL
            .iter()
            .filter(|o| **o != tag.byte_order)
            .filter_map(|o| match decode(words, tag.ty, *o, None) {
                Ok(Value::F64(v)) if v.is_finite() && !implausible_float(v) => Some(format!("{o} gives {v}")),
                _ => None,
            })
            .collect();
        tracing::warn!(
            device = %self.cfg.name, tag = %tag.name, value = x, byte_order = %tag.byte_order,
            "implausible {} value (subnormal or huge): check the byte order; {}",
            tag.ty,
            if alternatives.is_empty() { "no other order looks better".to_string() } else { alternatives.join(", ") }
        );
    }
}
