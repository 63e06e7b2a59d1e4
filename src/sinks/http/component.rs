//! The HTTPS sink folder's side of the component contract
//! ([`crate::component`]): `[[sink]]` with `type = "http"`.

use tokio::task::JoinHandle;

use super::config::HttpSinkConfig;
use super::sink::HttpSink;
use crate::component::{Component, Ctx, DescribeCx, Kind, ParseCx};
use crate::diag::{Diag, Item};

/// The HTTPS sink kind.
pub struct Http;

impl Kind for Http {
    type Config = HttpSinkConfig;
    const TYPES: &'static [&'static str] = &["http"];

    fn parse(item: Item<'_>, d: &mut Diag<'_>, cx: &ParseCx<'_>) -> Option<HttpSinkConfig> {
        super::config::parse_sink(item, d, cx.key, cx.base)
    }

    /// One driver task per sink, from its cursor.
    async fn spawn(items: Vec<HttpSinkConfig>, ctx: &Ctx<'_>) -> anyhow::Result<Vec<JoinHandle<()>>> {
        let mut tasks = Vec::new();
        for c in items {
            let cursor = ctx.buffer.cursor(&c.name).ok_or_else(|| anyhow::anyhow!("sink {:?} has no cursor in the buffer", c.name))?;
            let stats = ctx.telemetry.sink(&c.name);
            let sink = HttpSink::new(c, ctx.gateway, ctx.buffer.reader()?, cursor, ctx.buffer.committed(), stats);
            let sink = match &ctx.events {
                Some(e) => sink.with_events(e.clone()),
                None => sink,
            };
            tasks.push(tokio::spawn(sink.run(ctx.stop.clone(), ctx.grace)));
        }
        Ok(tasks)
    }
}

impl Component for HttpSinkConfig {
    fn kind(&self) -> &'static str {
        "http"
    }

    fn name(&self) -> &str {
        &self.name
    }

    /// One line: endpoint, format, batch size and the requests in flight.
    fn describe(&self, _cx: &DescribeCx<'_>) -> String {
        let auth = if self.token.is_some() { ", bearer token" } else { "" };
        format!(
            "sink {} (http POST {}, format {}, up to {} records per POST, {} in flight{auth})\n",
            self.name,
            self.target(),
            self.format,
            self.batch_max_records,
            self.max_inflight
        )
    }
}
