//! The NATS sink folder's side of the component contract
//! ([`crate::component`]): `[[sink]]` with `type = "nats"`.

use std::fmt::Write as _;

use tokio::task::JoinHandle;

use super::config::{Auth, Format, NatsSinkConfig};
use super::sink::NatsSink;
use crate::component::{Component, Ctx, DescribeCx, Kind, ParseCx};
use crate::diag::{Diag, Item};

/// The NATS JetStream sink kind.
pub struct Nats;

impl Kind for Nats {
    type Config = NatsSinkConfig;
    const TYPES: &'static [&'static str] = &["nats"];

    fn parse(item: Item<'_>, d: &mut Diag<'_>, cx: &ParseCx<'_>) -> Option<NatsSinkConfig> {
        super::config::parse_sink(item, d, cx.key, cx.gateway, cx.base)
    }

    /// One driver task per sink, from its cursor.
    async fn spawn(items: Vec<NatsSinkConfig>, ctx: &Ctx<'_>) -> anyhow::Result<Vec<JoinHandle<()>>> {
        let mut tasks = Vec::new();
        for c in items {
            let cursor = ctx.buffer.cursor(&c.name).ok_or_else(|| anyhow::anyhow!("sink {:?} has no cursor in the buffer", c.name))?;
            let stats = ctx.telemetry.sink(&c.name);
            let sink = NatsSink::new(c, ctx.gateway, ctx.buffer.reader()?, cursor, ctx.buffer.committed(), stats);
            let sink = match &ctx.events {
                Some(e) => sink.with_events(e.clone()),
                None => sink,
            };
            tasks.push(tokio::spawn(sink.run(ctx.stop.clone(), ctx.grace)));
        }
        Ok(tasks)
    }
}

impl Component for NatsSinkConfig {
    fn kind(&self) -> &'static str {
        "nats"
    }

    fn name(&self) -> &str {
        &self.name
    }

    /// The sink line, then the subject of every configured device tag.
    fn describe(&self, cx: &DescribeCx<'_>) -> String {
        let auth = match &self.auth {
            Auth::None => "",
            Auth::UserPassword(..) => ", user/password",
            Auth::Token(_) => ", token",
            Auth::NKey(_) => ", nkey",
            Auth::Creds(_) => ", creds file",
        };
        let create = self.create.as_ref().map_or(String::new(), |s| {
            format!(", created if missing with subjects {} and {} replica(s)", s.subjects.join(" "), s.replicas)
        });
        let mut s = format!(
            "sink {} (nats {}, stream {}{create}, format {}, {} PubAcks in flight{auth})\n",
            self.name,
            self.target(),
            self.stream,
            self.format,
            self.max_inflight
        );
        for (device, tag) in cx.tags {
            let subject = match self.format {
                Format::Json => self.subject.render(cx.gateway, device, tag),
                Format::JsonBatch => self.batch_subject.render(cx.gateway, device, tag),
            };
            let _ = writeln!(s, "  {device}/{tag} -> {subject}");
        }
        s
    }
}
