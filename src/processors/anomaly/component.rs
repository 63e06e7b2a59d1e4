//! The component contract (`crate::component`) for `[[detector]]`: the kind
//! answers to the methods `pca` and `zscore`; spawning subscribes each
//! detector to the committed-data tap (see [`super::run`]).

use tokio::task::JoinHandle;

use super::config::{DetectorConfig, Method, parse_detector};
use crate::component::{Component, Ctx, DescribeCx, Kind, ParseCx};
use crate::diag::{Diag, Item};
use crate::names::HEALTH_DEVICE;

/// The anomaly detector kind.
pub struct Anomaly;

impl Kind for Anomaly {
    type Config = DetectorConfig;
    const TYPES: &'static [&'static str] = &["pca", "zscore"];

    fn parse(item: Item<'_>, d: &mut Diag<'_>, cx: &ParseCx<'_>) -> Option<DetectorConfig> {
        parse_detector(item, d, cx.key, cx.base, None)
    }

    async fn spawn(items: Vec<DetectorConfig>, ctx: &Ctx<'_>) -> anyhow::Result<Vec<JoinHandle<()>>> {
        super::run::spawn_all(items, ctx.buffer.tap(), ctx.ingest.clone(), ctx.events.clone(), ctx.stop.clone())
    }
}

impl Component for DetectorConfig {
    fn kind(&self) -> &'static str {
        match self.method {
            Method::Pca { .. } => "pca",
            Method::ZScore { .. } => "zscore",
        }
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn describe(&self, _cx: &DescribeCx<'_>) -> String {
        format!("{}\n", DetectorConfig::describe(self))
    }

    /// Its output tags, device `_relais`.
    fn tags(&self) -> Vec<(String, String)> {
        ["score", "anomaly", "confidence"].iter().map(|t| (HEALTH_DEVICE.to_string(), format!("detector.{}.{t}", self.name))).collect()
    }
}
