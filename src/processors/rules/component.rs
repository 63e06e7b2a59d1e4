//! The component contract (`crate::component`) for `[[rule]]`: one task for
//! all the rules of a gateway and one for their writes (see [`super::run`]).

use tokio::task::JoinHandle;

use super::config::{RuleConfig, parse_rule};
use crate::component::{Component, Ctx, DescribeCx, Kind, ParseCx};
use crate::diag::{Diag, Item};

/// The rules kind.
pub struct Rules;

impl Kind for Rules {
    type Config = RuleConfig;
    const TYPES: &'static [&'static str] = &["rule"];

    fn parse(item: Item<'_>, d: &mut Diag<'_>, cx: &ParseCx<'_>) -> Option<RuleConfig> {
        parse_rule(item, d, cx.key, None)
    }

    async fn spawn(items: Vec<RuleConfig>, ctx: &Ctx<'_>) -> anyhow::Result<Vec<JoinHandle<()>>> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let events = ctx.events.clone().unwrap_or_else(|| ctx.ingest.events());
        let links = super::run::Links { events, actuators: ctx.actuators.clone(), acks: ctx.alarm_acks.clone() };
        Ok(super::run::spawn(items, ctx.buffer.tap(), links, ctx.stop.clone()))
    }
}

impl Component for RuleConfig {
    fn kind(&self) -> &'static str {
        "rule"
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn describe(&self, _cx: &DescribeCx<'_>) -> String {
        format!("{}\n", RuleConfig::describe(self))
    }
}
