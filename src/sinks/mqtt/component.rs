//! The MQTT sink folder's side of the component contract
//! ([`crate::component`]): `[[sink]]` with `type = "mqtt"`.

use std::fmt::Write as _;

use tokio::task::JoinHandle;

use super::config::{Format, MqttSinkConfig};
use super::sink::MqttSink;
use super::sparkplug::sink::SparkplugSink;
use crate::component::{Claim, Component, Ctx, DescribeCx, Kind, ParseCx, Resource};
use crate::diag::{Diag, Item};

/// The MQTT sink kind.
pub struct Mqtt;

impl Kind for Mqtt {
    type Config = MqttSinkConfig;
    const TYPES: &'static [&'static str] = &["mqtt"];

    fn parse(item: Item<'_>, d: &mut Diag<'_>, cx: &ParseCx<'_>) -> Option<MqttSinkConfig> {
        super::config::parse_sink(item, d, cx.key, cx.gateway, cx.base)
    }

    /// One driver task per sink, from its cursor (a Sparkplug edge node for
    /// `format = "sparkplug"`, its `bdSeq` in the data folder).
    async fn spawn(items: Vec<MqttSinkConfig>, ctx: &Ctx<'_>) -> anyhow::Result<Vec<JoinHandle<()>>> {
        let mut tasks = Vec::new();
        for m in items {
            let cursor = ctx.buffer.cursor(&m.name).ok_or_else(|| anyhow::anyhow!("sink {:?} has no cursor in the buffer", m.name))?;
            let stats = ctx.telemetry.sink(&m.name);
            if m.format == Format::Sparkplug {
                let sink = SparkplugSink::new(m, ctx.gateway, ctx.data_dir, ctx.buffer.reader()?, cursor, ctx.buffer.committed(), stats)?;
                let sink = match &ctx.events {
                    Some(e) => sink.with_events(e.clone()),
                    None => sink,
                };
                tasks.push(tokio::spawn(sink.run(ctx.stop.clone(), ctx.grace)));
                continue;
            }
            let sink = MqttSink::new(m, ctx.gateway, ctx.buffer.reader()?, cursor, ctx.buffer.committed(), stats);
            let sink = match &ctx.events {
                Some(e) => sink.with_events(e.clone()),
                None => sink,
            };
            tasks.push(tokio::spawn(sink.run(ctx.stop.clone(), ctx.grace)));
        }
        Ok(tasks)
    }
}

impl Component for MqttSinkConfig {
    fn kind(&self) -> &'static str {
        "mqtt"
    }

    fn name(&self) -> &str {
        &self.name
    }

    /// The sink line, then the topic of every configured device tag.
    fn describe(&self, cx: &DescribeCx<'_>) -> String {
        let m = self;
        let mut s = format!("sink {} (mqtt {}, qos {}, format {}, status {})\n", m.name, m.conn.broker, m.qos, m.format, m.status_topic);
        for (device, tag) in cx.tags {
            let topic = match m.format {
                Format::Json => m.topic.render(cx.gateway, device, tag),
                Format::JsonBatch => m.batch_topic.render(cx.gateway, device, ""),
                Format::Sparkplug => match &m.sparkplug {
                    Some(sp) => format!("spBv1.0/{}/DDATA/{}/{device} metric {tag}", sp.group_id, sp.edge_node_id),
                    None => String::new(),
                },
            };
            let _ = writeln!(s, "  {device}/{tag} -> {topic}");
        }
        s
    }

    fn use_broker(&mut self, broker: &crate::mqtt::BrokerUrl) -> bool {
        self.conn.broker = broker.clone();
        true
    }

    fn target(&self) -> Option<String> {
        Some(format!("{} (topics {})", self.conn.broker, self.topic))
    }

    /// `mosquitto_sub` on its broker, for the topics under its static prefix.
    fn watch(&self) -> Option<String> {
        let prefix = self.topic.static_prefix();
        let filter = if prefix.is_empty() { "#".to_string() } else { format!("{prefix}/#") };
        Some(format!("mosquitto_sub -h {} -p {} -t '{filter}' -v", self.conn.broker.host, self.conn.broker.port))
    }

    /// Its client id on its broker and its retained status topic.
    fn claims(&self) -> Vec<Claim> {
        let owner = format!("sink {:?}", self.name);
        vec![
            Claim {
                resource: Resource::MqttClient {
                    broker: (self.conn.broker.host.clone(), self.conn.broker.port),
                    client_id: self.conn.client_id.clone(),
                },
                key: format!("{owner} / client_id"),
                owner: owner.clone(),
                span: None,
            },
            Claim { resource: Resource::StatusTopic(self.status_topic.clone()), key: format!("{owner} / status_topic"), owner, span: None },
        ]
    }
}
