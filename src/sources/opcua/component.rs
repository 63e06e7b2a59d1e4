//! The OPC UA folder's side of the component contract ([`crate::component`]):
//! `[[device]]` with `protocol = "opcua"`.

use std::fmt::Write as _;

use tokio::task::JoinHandle;

use super::config::{Acquisition, Deadband, OpcUaDevice};
use crate::component::{Component, Ctx, DescribeCx, Kind, ParseCx};
use crate::diag::{Diag, Item};
use crate::units::format_duration;
use crate::util::exit::permanent;

/// The OPC UA kind.
pub struct OpcUa;

impl Kind for OpcUa {
    type Config = OpcUaDevice;
    const TYPES: &'static [&'static str] = &["opcua"];

    fn parse(item: Item<'_>, d: &mut Diag<'_>, cx: &ParseCx<'_>) -> Option<OpcUaDevice> {
        super::config::parse_device(item, d, cx.key, cx.base)
    }

    /// One supervised session per device; devices with one PKI folder share
    /// it. Its start-up errors are all about the PKI files (cannot create,
    /// read or write a certificate): a restart does not cure them.
    async fn spawn(items: Vec<OpcUaDevice>, ctx: &Ctx<'_>) -> anyhow::Result<Vec<JoinHandle<()>>> {
        super::session::spawn_checked(
            items,
            ctx.ingest.clone(),
            ctx.telemetry,
            ctx.stop.clone(),
            (ctx.data_dir, ctx.gateway),
            &ctx.actuators,
            &ctx.checks,
        )
        .map_err(permanent)
    }
}

impl Component for OpcUaDevice {
    fn kind(&self) -> &'static str {
        "opcua"
    }

    fn name(&self) -> &str {
        &self.name
    }

    /// The device line, then each tag with its NodeId and how it is acquired.
    fn describe(&self, _cx: &DescribeCx<'_>) -> String {
        let o = self;
        let mut s = format!("device {} (opcua {}, security {:?}/{:?}, {} tags)\n", o.name, o.endpoint, o.policy, o.mode, o.tags.len());
        for t in &o.tags {
            let how = match t.acquisition {
                Acquisition::Subscription { publishing_interval, sampling_interval, queue_size, deadband } => format!(
                    "subscription: publishing {}, sampling {}, queue {queue_size}{}",
                    format_duration(publishing_interval),
                    format_duration(sampling_interval),
                    deadband.map_or(String::new(), |d| match d {
                        Deadband::Absolute(x) => format!(", deadband {x} (absolute)"),
                        Deadband::Percent(x) => format!(", deadband {x} %"),
                    })
                ),
                Acquisition::Poll { interval } => format!("poll every {}", format_duration(interval)),
            };
            let writable = t.write.as_ref().map_or(String::new(), |w| format!("; writable: {}", w.describe()));
            let _ = writeln!(s, "  {:<20} {}  ({how}{writable})", t.name, t.node);
        }
        s
    }

    fn tags(&self) -> Vec<(String, String)> {
        self.tags.iter().map(|t| (self.name.clone(), t.name.clone())).collect()
    }
}
