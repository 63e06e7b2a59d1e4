//! The running units ([`super::plan::Unit`]): each with its own
//! cancellation token and its task handles.
//!
//! Invariants:
//! - a unit's token is a child of its family's token (sinks: the sinks'
//!   token; devices, sources and processors: the sources' token), so the
//!   ordered shutdown still stops every source before any sink by cancelling
//!   the two family tokens;
//! - a unit is stopped (cancelled and its tasks joined, or aborted after the
//!   family's grace) before a unit of the same key starts, so one device is
//!   never polled by two tasks;
//! - a sink unit's cursors exist in the buffer before it starts
//!   ([`crate::buffer::Buffer::add_sink`]): a restarted sink resumes from its
//!   cursor, an added one starts before the oldest row kept.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::plan::{Family, Item, Unit, UnitKey};
use crate::component::{Ctx, Kind};
use crate::config::{DeviceConfig, SinkConfig, SourceConfig};

/// One started unit.
struct Running {
    unit: Unit,
    token: CancellationToken,
    handles: Vec<JoinHandle<()>>,
}

/// The started units, by key.
pub struct Supervisor {
    running: BTreeMap<UnitKey, Running>,
    sources_stop: CancellationToken,
    sinks_stop: CancellationToken,
}

impl Supervisor {
    /// No unit yet; units take child tokens of these two.
    pub fn new(sources_stop: CancellationToken, sinks_stop: CancellationToken) -> Supervisor {
        Supervisor { running: BTreeMap::new(), sources_stop, sinks_stop }
    }

    /// A new token for a unit of `family`.
    pub fn token(&self, family: Family) -> CancellationToken {
        match family {
            Family::Sink => self.sinks_stop.child_token(),
            _ => self.sources_stop.child_token(),
        }
    }

    /// Starts `unit` with `ctx` (whose `stop` is a [`Supervisor::token`]).
    /// On an error nothing of it keeps running.
    pub async fn start(&mut self, key: UnitKey, unit: Unit, ctx: &Ctx<'_>) -> anyhow::Result<()> {
        match spawn_unit(&unit, ctx).await {
            Ok(handles) => {
                self.running.insert(key, Running { unit, token: ctx.stop.clone(), handles });
                Ok(())
            }
            Err(e) => {
                ctx.stop.cancel();
                Err(e)
            }
        }
    }

    /// Stops the unit `key` (its tasks get the family's grace, then are
    /// aborted) and returns it.
    pub async fn stop(&mut self, key: &UnitKey) -> Option<Unit> {
        let r = self.running.remove(key)?;
        r.token.cancel();
        let (within, what) = match key.0 {
            Family::Sink => (super::super::SINK_GRACE + Duration::from_millis(800), "sink"),
            _ => (Duration::from_secs(1), "source"),
        };
        super::super::join_all(r.handles, within, &format!("{what} {}", key.1)).await;
        Some(r.unit)
    }

    /// The started units (their configurations), by key.
    pub fn units(&self) -> BTreeMap<UnitKey, Unit> {
        self.running.iter().map(|(k, r)| (k.clone(), r.unit.clone())).collect()
    }

    /// The handles of every unit of the sink family (`sinks`) or of every
    /// other family, for the ordered shutdown (the units are forgotten).
    pub fn take_handles(&mut self, sinks: bool) -> Vec<JoinHandle<()>> {
        let keys: Vec<UnitKey> = self.running.keys().filter(|k| (k.0 == Family::Sink) == sinks).cloned().collect();
        keys.into_iter().filter_map(|k| self.running.remove(&k)).flat_map(|r| r.handles).collect()
    }
}

/// Starts a unit's components through their kinds.
async fn spawn_unit(unit: &Unit, ctx: &Ctx<'_>) -> anyhow::Result<Vec<JoinHandle<()>>> {
    use crate::processors::{anomaly::component::Anomaly, commands::component::Commands, rules::component::Rules};
    let (mut sinks, mut detectors, mut rules, mut devices, mut sources) = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut commands, mut history) = (Vec::new(), Vec::new());
    for it in &unit.items {
        match it {
            Item::Sink(c) => sinks.push(c.clone()),
            Item::Detector(c) => detectors.push(c.clone()),
            Item::Rule(c) => rules.push(c.clone()),
            Item::Commands(c) => commands.push(c.clone()),
            Item::History(c) => history.push(c.clone()),
            Item::Device(c) => devices.push(c.clone()),
            Item::Source(c) => sources.push(c.clone()),
        }
    }
    for s in &sinks {
        ctx.buffer.add_sink(s.name());
    }
    if !sinks.is_empty() {
        // Two barriers: the writer took the new cursors before the second is
        // answered, so retention keeps what the new sinks have not delivered.
        for _ in 0..2 {
            let _ = tokio::time::timeout(Duration::from_secs(1), ctx.ingest.barrier()).await;
        }
    }
    let mut tasks = SinkConfig::spawn_all(&sinks, ctx).await?;
    if !detectors.is_empty() {
        tasks.extend(Anomaly::spawn(detectors, ctx).await?);
    }
    tasks.extend(Rules::spawn(rules, ctx).await?);
    tasks.extend(Commands::spawn(commands, ctx).await?);
    for h in history {
        tasks.extend(crate::processors::history::run::spawn(h, ctx)?);
    }
    tasks.extend(DeviceConfig::spawn_all(&devices, ctx).await?);
    tasks.extend(SourceConfig::spawn_all(&sources, ctx).await?);
    Ok(tasks)
}
