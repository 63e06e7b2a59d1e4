//! The component contract (`crate::component`) for `[commands]`: one task
//! holding the MQTT connection (see [`super::run`]).

use tokio::task::JoinHandle;

use super::config::{CommandsConfig, parse_commands};
use super::handle::Handler;
use super::store::Store;
use crate::component::{Claim, Component, Ctx, DescribeCx, Kind, ParseCx, Resource};
use crate::diag::{Diag, Item};

/// The commands kind.
pub struct Commands;

impl Kind for Commands {
    type Config = CommandsConfig;
    const TYPES: &'static [&'static str] = &["commands"];

    fn parse(item: Item<'_>, d: &mut Diag<'_>, cx: &ParseCx<'_>) -> Option<CommandsConfig> {
        parse_commands(item, d, cx.gateway, cx.base)
    }

    /// Opens the command store in `data_dir` (a failure is a start-up
    /// error) and starts the task; at most one item.
    async fn spawn(items: Vec<CommandsConfig>, ctx: &Ctx<'_>) -> anyhow::Result<Vec<JoinHandle<()>>> {
        let Some(cfg) = items.into_iter().next() else { return Ok(Vec::new()) };
        let (dir, window) = (ctx.data_dir.to_path_buf(), cfg.dedup_window);
        let (store, recovered) = tokio::task::spawn_blocking(move || Store::open(&dir, window))
            .await?
            .map_err(|e| anyhow::anyhow!("commands: cannot open {}: {e}", ctx.data_dir.join(super::store::FILE).display()))?;
        if recovered > 0 {
            tracing::warn!(commands = recovered, "commands left executing at the last stop are settled `unknown` and never run again");
        }
        let events = ctx.events.clone().unwrap_or_else(|| ctx.ingest.events());
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let h = Handler::new(cfg.into(), store, ctx.actuators.clone(), ctx.alarm_acks.clone(), events, tx);
        Ok(super::run::spawn(h, rx, ctx.stop.clone()))
    }
}

impl Component for CommandsConfig {
    fn kind(&self) -> &'static str {
        "commands"
    }

    fn name(&self) -> &str {
        "commands"
    }

    fn describe(&self, _cx: &DescribeCx<'_>) -> String {
        let mut s = format!("commands {} on {} and {}\n", self.conn.broker, self.topics.command.as_str(), self.topics.alarm.as_str());
        s += &format!("  results on {} and {}\n", self.topics.result.as_str(), self.topics.alarm_result.as_str());
        let auth = match (self.token.is_some(), self.grants.len()) {
            (true, 0) => "token required".to_string(),
            (false, 0) => "no token".to_string(),
            (t, n) => format!("{n} grant(s) with their own token{}", if t { ", token required elsewhere" } else { "" }),
        };
        let allow = self.allow.as_ref().map_or("every target (the tags' `writable` decides)".to_string(), |a| a.join(", "));
        s += &format!(
            "  {auth}; allow {allow}; ttl {} by default; ids kept {}\n",
            humantime::format_duration(self.default_ttl),
            humantime::format_duration(self.dedup_window)
        );
        s
    }

    /// Its client id on its broker.
    fn claims(&self) -> Vec<Claim> {
        vec![Claim {
            resource: Resource::MqttClient {
                broker: (self.conn.broker.host.clone(), self.conn.broker.port),
                client_id: self.conn.client_id.clone(),
            },
            key: "commands / client_id".into(),
            owner: "commands".into(),
            span: None,
        }]
    }
}
