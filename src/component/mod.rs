//! The component contract: what every source, sink and (later) processor
//! folder exposes, so the root config, `relais check`, `relais run` and the
//! demo handle them all the same way.
//!
//! A *kind* is one `type`/`protocol` value of a config section (`modbus-tcp`
//! in `[[device]]`, `http` in `[[source]]`, `mqtt` in `[[sink]]`). Its folder
//! implements [`Kind`] on a marker type: the type names it answers to, how it
//! parses one item (with one [`ParseCx`]) and how it spawns all its
//! instances (with one [`Ctx`]; instances of one kind may share a resource:
//! Modbus devices on one serial line, HTTP sources on one listen address).
//! Each parsed instance implements [`Component`]: its name, its description
//! for `relais check`, and the shared resources it [claims](Claim). The root
//! config only checks the claims for clashes ([`clashes`]); it knows no
//! component's keys.
//!
//! The families register their kinds in one list each (`sources::DeviceConfig`,
//! `sources::SourceConfig`, `sinks::SinkConfig`); `docs/new-component.md`
//! walks through adding one.
//!
//! Processors (detectors and rules: `[[detector]]`, `[[rule]]` sections;
//! later history) plug in the same way, as a fourth family `processors::*`: their
//! [`Kind::spawn`] reads committed samples from the buffer's committed-data
//! tap (through [`Ctx::buffer`]) and writes what they produce (events,
//! derived samples) into the ring ([`Ctx::ingest`]), like any source.
//!
//! Actuator writes go through [`actuate`]: the task that owns a device's
//! link registers it in [`Ctx::actuators`] and executes the writes asked
//! for there (by rules, commands, the app), serialised with its polling.
//! Alarm acknowledgements go through [`alarm_ack`] the same way: the rules
//! task owns the alarms, commands ask it.

pub mod actuate;
pub mod alarm_ack;
pub mod checks;
mod claims;
pub mod cond;
mod known_tags;
pub mod live;
pub mod rogue;

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::buffer::Buffer;
use crate::diag::{Diag, Item};
use crate::ingest::{Events, Ingest};
use crate::telemetry::Telemetry;

pub use actuate::Actuators;
pub use alarm_ack::AlarmAcks;
pub use claims::{Claim, Resource, clashes};

/// What a kind's parser gets besides its item.
#[derive(Debug, Clone, Copy)]
pub struct ParseCx<'a> {
    /// The item's key for error messages: `device "press"`, `source #2`.
    pub key: &'a str,
    /// `[gateway] id`.
    pub gateway: &'a str,
    /// Folder of the configuration file: relative paths are resolved against it.
    pub base: &'a Path,
}

/// What a kind's spawn gets: the gateway, the ring, the buffer, the counters
/// and the token that stops its tasks (sources and sinks stop at different
/// moments of the ordered shutdown, see `app`).
pub struct Ctx<'a> {
    /// `[gateway] id`.
    pub gateway: &'a str,
    /// `[gateway] data_dir`.
    pub data_dir: &'a Path,
    /// The ring samples are pushed into.
    pub ingest: &'a Arc<Ingest>,
    /// The buffer: stored progress of inputs (sources), cursors and committed
    /// rows (sinks), the committed-data tap (processors).
    pub buffer: &'a Buffer,
    /// Counters.
    pub telemetry: &'a Arc<Telemetry>,
    /// Where components emit their events (state changes), when the
    /// gateway records them (not under `relais import`).
    pub events: Option<Events>,
    /// Fires when the tasks must stop.
    pub stop: CancellationToken,
    /// How long a sink may keep delivering after `stop` (shutdown grace).
    pub grace: Duration,
    /// The devices that accept writes ([`actuate`]): a source that owns a
    /// device's link registers it; rules, commands and the app write through it.
    pub actuators: Actuators,
    /// The last committed sample of every tag (interlocks, bad-quality
    /// refusals, the admin API); fed by the app from the tap.
    pub live: live::LiveTable,
    /// Alarm acknowledgements ([`alarm_ack`]): the rules register, commands
    /// acknowledge through it.
    pub alarm_acks: AlarmAcks,
    /// The per-tag checks of `[[check]]` ([`checks`]): every source makes a
    /// [`checks::Checker`] per producing task and passes its samples through
    /// it before they enter the ring.
    pub checks: checks::Checks,
}

/// One configured instance of a kind.
pub trait Component {
    /// The `type`/`protocol` value it was configured with (`modbus-rtu`, `http`).
    fn kind(&self) -> &'static str;
    /// Its name (unique among devices and sources; among sinks).
    fn name(&self) -> &str;
    /// What `relais check` prints for it: a first line, then indented
    /// details. `cx` tells sinks the tags the devices will publish.
    fn describe(&self, cx: &DescribeCx<'_>) -> String;
    /// The shared resources it needs alone or with compatible settings.
    fn claims(&self) -> Vec<Claim> {
        Vec::new()
    }
    /// `(device, tag)` names it will produce, when known from the config
    /// (Modbus and OPC UA devices); empty when the data names them.
    fn tags(&self) -> Vec<(String, String)> {
        Vec::new()
    }
    /// Points it at another MQTT broker (`relais demo --broker`); false when
    /// it talks to no MQTT broker.
    fn use_broker(&mut self, _broker: &crate::mqtt::BrokerUrl) -> bool {
        false
    }
    /// Where it delivers, in a few words, for the demo's overview line
    /// (`mqtt://127.0.0.1:1883 (topics relais/…)`); `None`: its kind and name.
    fn target(&self) -> Option<String> {
        None
    }
    /// A command that shows what it delivers, as it arrives (`relais demo`
    /// prints it), when there is one.
    fn watch(&self) -> Option<String> {
        None
    }
    /// The longest time between two polls of the same data, for a component
    /// that produces samples on a schedule (a polled device): `/readyz`
    /// expects a good sample within a few of these. `None` (the default):
    /// it produces when data comes (subscriptions, files, HTTP).
    fn poll_period(&self) -> Option<Duration> {
        None
    }
    /// Instances of one kind with the same group share what their kind's
    /// [`Kind::spawn`] builds for them (a Modbus line, an HTTP listener):
    /// they start together, and a configuration reload (`app::reload`)
    /// restarts them together when any of them changed. `None` (the
    /// default): the instance runs alone.
    fn restart_group(&self) -> Option<String> {
        None
    }
}

/// What a description may refer to.
#[derive(Debug, Clone, Copy)]
pub struct DescribeCx<'a> {
    /// `[gateway] id`.
    pub gateway: &'a str,
    /// `(device, tag)` of every configured device, in file order.
    pub tags: &'a [(String, String)],
}

/// One kind of component: its folder implements this on a marker type.
pub trait Kind {
    /// The parsed, validated configuration of one instance.
    type Config: Component + Clone + std::fmt::Debug + Send + 'static;
    /// The `type`/`protocol` values it answers to.
    const TYPES: &'static [&'static str];
    /// Reads one item; every problem is recorded in `d` with its span and
    /// key; `None` when any was found.
    fn parse(item: Item<'_>, d: &mut Diag<'_>, cx: &ParseCx<'_>) -> Option<Self::Config>;
    /// Starts every configured instance; errors are start-up errors (see
    /// `util::exit` for the ones that a restart will not fix).
    fn spawn(items: Vec<Self::Config>, ctx: &Ctx<'_>) -> impl Future<Output = anyhow::Result<Vec<JoinHandle<()>>>> + Send;
}

/// Declares a family's config enum over its kinds, one line per kind, with
/// the dispatch the root needs: [`Component`] access, parse by type name
/// and spawn grouped by kind.
///
/// ```ignore
/// family! {
///     /// One `[[sink]]`, by type.
///     pub enum SinkConfig {
///         /// `type = "mqtt"`.
///         Mqtt(mqtt::component::Mqtt),
///     }
/// }
/// ```
macro_rules! family {
    ($(#[$m:meta])* $vis:vis enum $Enum:ident { $( $(#[$vm:meta])* $Var:ident($Kind:ty) ),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone)]
        $vis enum $Enum {
            $( $(#[$vm])* $Var(<$Kind as $crate::component::Kind>::Config) ),*
        }

        impl $Enum {
            /// The type names of every kind of the family, in order.
            pub const TYPES: &'static [&'static [&'static str]] = &[$( <$Kind as $crate::component::Kind>::TYPES ),*];

            /// The type names, for messages: `"modbus-tcp, …, opcua"`.
            pub fn type_list() -> String {
                Self::TYPES.concat().join(", ")
            }

            /// The instance as a component.
            pub fn component(&self) -> &dyn $crate::component::Component {
                match self {
                    $( $Enum::$Var(c) => c ),*
                }
            }

            /// The instance as a component, to change it (`relais demo --broker`).
            pub fn component_mut(&mut self) -> &mut dyn $crate::component::Component {
                match self {
                    $( $Enum::$Var(c) => c ),*
                }
            }

            /// Parses an item whose type name is `ty`: `None` when no kind
            /// answers to `ty` (nothing is recorded), `Some(None)` when the
            /// kind found errors (recorded in `d`).
            pub fn parse(
                ty: &str,
                item: $crate::diag::Item<'_>,
                d: &mut $crate::diag::Diag<'_>,
                cx: &$crate::component::ParseCx<'_>,
            ) -> Option<Option<Self>> {
                $(
                    if <$Kind as $crate::component::Kind>::TYPES.contains(&ty) {
                        return Some(<$Kind as $crate::component::Kind>::parse(item, d, cx).map($Enum::$Var));
                    }
                )*
                None
            }

            /// Starts every instance, grouped by kind in the family's order
            /// (a kind without instances starts nothing).
            pub async fn spawn_all(
                items: &[Self],
                ctx: &$crate::component::Ctx<'_>,
            ) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
                let mut tasks = Vec::new();
                $(
                    #[allow(unreachable_patterns)]
                    let mine: Vec<_> = items.iter().filter_map(|i| match i { $Enum::$Var(c) => Some(c.clone()), _ => None }).collect();
                    if !mine.is_empty() {
                        tasks.extend(<$Kind as $crate::component::Kind>::spawn(mine, ctx).await?);
                    }
                )*
                Ok(tasks)
            }
        }
    };
}
pub(crate) use family;

/// Reads an item's type key (`protocol` for `[[device]]`, `type` for the
/// others) and hands the item to the kind that answers to it; an unknown or
/// missing type is recorded under `{key} / {type_key}` with the list of
/// known ones. `what` names the value in messages (`protocol`, `sink type`).
pub fn parse_by_type<T>(
    item: Item<'_>,
    d: &mut Diag<'_>,
    cx: &ParseCx<'_>,
    (type_key, what, known): (&str, &str, &str),
    parse: impl FnOnce(&str, Item<'_>, &mut Diag<'_>, &ParseCx<'_>) -> Option<Option<T>>,
) -> Option<T> {
    let span = item.span();
    let key = cx.key;
    match crate::diag::peek_str(&item, type_key) {
        Some((t, tspan)) => match parse(&t, item, d, cx) {
            Some(parsed) => parsed,
            None => {
                d.error(tspan, &format!("{key} / {type_key}"), format!("unknown {what} {t:?}; expected one of {known}"));
                None
            }
        },
        None => {
            d.error(span, &format!("{key} / {type_key}"), format!("missing key `{type_key}`; expected one of {known}"));
            None
        }
    }
}
