//! The MQTT ingest folder's side of the component contract
//! ([`crate::component`]): `[[source]]` with `type = "mqtt-in"`.

use tokio::task::JoinHandle;

use super::config::MqttInSource;
use crate::component::{Claim, Component, Ctx, DescribeCx, Kind, ParseCx, Resource};
use crate::diag::{Diag, Item};
use crate::sources::SourceCtx;
use crate::sources::common::describe;

/// The MQTT ingest kind.
pub struct MqttIn;

impl Kind for MqttIn {
    type Config = MqttInSource;
    const TYPES: &'static [&'static str] = &["mqtt-in"];

    fn parse(item: Item<'_>, d: &mut Diag<'_>, cx: &ParseCx<'_>) -> Option<MqttInSource> {
        super::config::parse_mqtt_in(item, d, cx.key, cx.gateway, cx.base)
    }

    async fn spawn(items: Vec<MqttInSource>, ctx: &Ctx<'_>) -> anyhow::Result<Vec<JoinHandle<()>>> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let sctx = SourceCtx::new(ctx)?;
        Ok(items.into_iter().map(|m| super::spawn(m, sctx.clone())).collect())
    }
}

impl Component for MqttInSource {
    fn kind(&self) -> &'static str {
        "mqtt-in"
    }
    fn name(&self) -> &str {
        &self.common.name
    }
    fn describe(&self, _cx: &DescribeCx<'_>) -> String {
        describe(&self.common, &format!("mqtt-in {} topics {}", self.conn.broker, self.topics.join(" ")), self.device_level)
    }
    /// Its client id on its broker.
    fn claims(&self) -> Vec<Claim> {
        let owner = format!("source {:?}", self.common.name);
        vec![Claim {
            resource: Resource::MqttClient {
                broker: (self.conn.broker.host.clone(), self.conn.broker.port),
                client_id: self.conn.client_id.clone(),
            },
            key: format!("{owner} / client_id"),
            owner,
            span: None,
        }]
    }
}
