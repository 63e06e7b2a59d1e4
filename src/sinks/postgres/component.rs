//! The PostgreSQL sink folder's side of the component contract
//! ([`crate::component`]): `[[sink]]` with `type = "postgres"`.

use tokio::task::JoinHandle;

use super::config::PgSinkConfig;
use super::sink::PgSink;
use crate::component::{Component, Ctx, DescribeCx, Kind, ParseCx};
use crate::diag::{Diag, Item};

/// The PostgreSQL sink kind.
pub struct Postgres;

impl Kind for Postgres {
    type Config = PgSinkConfig;
    const TYPES: &'static [&'static str] = &["postgres"];

    fn parse(item: Item<'_>, d: &mut Diag<'_>, cx: &ParseCx<'_>) -> Option<PgSinkConfig> {
        super::config::parse_sink(item, d, cx.key, cx.base)
    }

    /// One driver task per sink, from its cursor.
    async fn spawn(items: Vec<PgSinkConfig>, ctx: &Ctx<'_>) -> anyhow::Result<Vec<JoinHandle<()>>> {
        let mut tasks = Vec::new();
        for c in items {
            let cursor = ctx.buffer.cursor(&c.name).ok_or_else(|| anyhow::anyhow!("sink {:?} has no cursor in the buffer", c.name))?;
            let stats = ctx.telemetry.sink(&c.name);
            let sink = PgSink::new(c, ctx.gateway, ctx.buffer.reader()?, cursor, ctx.buffer.committed(), stats);
            let sink = match &ctx.events {
                Some(e) => sink.with_events(e.clone()),
                None => sink,
            };
            tasks.push(tokio::spawn(sink.run(ctx.stop.clone(), ctx.grace)));
        }
        Ok(tasks)
    }
}

impl Component for PgSinkConfig {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn name(&self) -> &str {
        &self.name
    }

    /// One line: server, tables, TLS, batch size and connections.
    fn describe(&self, _cx: &DescribeCx<'_>) -> String {
        let tls = if self.tls { "TLS" } else { "no TLS" };
        format!(
            "sink {} (postgres {}, {tls}, tables {} and {}, timescale {}, up to {} records per transaction, {} connection(s))\n",
            self.name,
            self.target(),
            self.samples_table(),
            self.events_table(),
            self.timescale,
            self.batch_max_records,
            self.connections
        )
    }
}
