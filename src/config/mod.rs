//! The root configuration: `[gateway]`, `[buffer]`, `[[device]]`, `[[source]]`,
//! `[[sink]]`, `[[detector]]`, `[[rule]]`, `[[check]]`, `[commands]`, `[admin]`, `[history]`, `[lab]`.
//!
//! Loading reads the TOML file once with spans, hands each `[[device]]` to its
//! protocol's parser and each `[[sink]]` to its type's parser, and collects
//! every error with its file, line, column and key before giving up. Every key
//! is documented in `docs/configuration.md`.

pub mod admin;
pub mod lab;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

pub use crate::buffer::config::{BufferConfig, Durability, StartupCheck};
use crate::component::{Claim, Component, ParseCx};
use crate::diag::item::Entry;
use crate::diag::{ConfigError, ConfigErrors, Diag, FirstSeen, Item, Reader, de_item, entries, reject_unknown_keys};
use crate::names;
pub use crate::sinks::SinkConfig;
use crate::sinks::parse_sink;
pub use crate::sources::{DeviceConfig, SourceConfig};
use crate::sources::{parse_device, parse_source};
pub use admin::{AdminAuth, AdminConfig};
pub use lab::LabConfig;

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `[gateway]`.
    pub gateway: GatewayConfig,
    /// `[buffer]`.
    pub buffer: BufferConfig,
    /// `[[device]]` entries, in file order.
    pub devices: Vec<DeviceConfig>,
    /// `[[sink]]` entries, in file order.
    pub sinks: Vec<SinkConfig>,
    /// `[[source]]` entries (files, folders, HTTP, MQTT ingest), in file order.
    pub sources: Vec<SourceConfig>,
    /// Non-fatal findings (printed by `relais check` and logged at start).
    pub warnings: Vec<ConfigError>,
    /// `[[detector]]` entries (anomaly detectors), in file order.
    pub detectors: Vec<crate::processors::anomaly::DetectorConfig>,
    /// `[[rule]]` entries (rules and alarms), in file order.
    pub rules: Vec<crate::processors::rules::RuleConfig>,
    /// `[commands]`: writes and alarm acknowledgements by MQTT command;
    /// `None` without the section (nothing listens for commands).
    pub commands: Option<crate::processors::commands::CommandsConfig>,
    /// `[admin]`: the admin listener; `None` without the section (no listener).
    pub admin: Option<AdminConfig>,
    /// `[history]`: the local history store; `None` without the section (no history).
    pub history: Option<crate::processors::history::HistoryConfig>,
    /// `[lab]`: the fault switches of the fault bench (off by default).
    pub lab: LabConfig,
    /// `[[check]]` entries (per-tag checks on ingest), in file order.
    pub checks: Vec<crate::component::checks::CheckConfig>,
}

/// `[gateway]`: who this gateway is and where it keeps its state.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Gateway id: the `gateway` field of every sample (required).
    pub id: String,
    /// Folder of the buffer database and other state (default `./relais-data`).
    pub data_dir: PathBuf,
    /// Period of the gateway's own health samples (device `_relais`); zero disables.
    pub health_interval: Duration,
    /// Period of the status log line; zero disables.
    pub status_interval: Duration,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGateway {
    id: Spanned<String>,
    data_dir: Option<String>,
    health_interval: Option<Spanned<String>>,
    status_interval: Option<Spanned<String>>,
}

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let (file, text) = crate::diag::read_file(path)?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Config::parse(&text, &file, &base)
    }

    /// Validates configuration `text`, named `file` in messages; relative paths
    /// in it resolve against `base_dir`.
    pub fn parse(text: &str, file: &str, base_dir: &Path) -> Result<Config, ConfigErrors> {
        let mut diag = Diag::new(file, text);
        let (doc, syntax) = toml::de::DeTable::parse_recoverable(text);
        if !syntax.is_empty() {
            for e in &syntax {
                diag.toml(e, "", 0..0);
            }
            return Err(diag.into_errors());
        }
        let doc_span = doc.span();
        let sections = sections(doc, &mut diag);
        let gateway = match sections.gateway {
            Some(g) => parse_gateway(g, &mut diag),
            None => {
                diag.error(doc_span.start..doc_span.start, "gateway", "missing [gateway] section with at least `id = \"...\"`");
                None
            }
        };
        let buffer = match sections.buffer {
            Some(b) => crate::buffer::config::parse(b, &mut diag),
            None => Some(BufferConfig::default()),
        };
        let gw_id = gateway.as_ref().map_or("gateway", |g| g.id.as_str()).to_string();
        let parts = Components::parse(sections.devices, sections.sinks, sections.sources, &mut diag, &gw_id, base_dir);
        let admin = sections.admin.map(|a| admin::parse_admin(a, &mut diag, base_dir));
        let admin_open = admin.as_ref().map(|a| a.as_ref().is_some_and(|a| a.auth == AdminAuth::None));
        let admin_remote = admin.as_ref().and_then(|a| a.as_ref()).is_some_and(|a| !a.listen.ip().is_loopback());
        let lab = sections.lab.map(|l| lab::parse_lab(l, &mut diag, admin_open, admin_remote));
        let history = sections.history.map(|h| crate::processors::history::config::parse_history(h, &mut diag));
        let commands = sections.commands.map(|c| {
            let cx = ParseCx { key: "commands", gateway: &gw_id, base: base_dir };
            <crate::processors::commands::component::Commands as crate::component::Kind>::parse(c, &mut diag, &cx)
        });
        let extra: Vec<Claim> =
            admin.iter().flatten().map(AdminConfig::claim).chain(commands.iter().flatten().flat_map(|c| c.claims())).collect();
        parts.check_claims(&mut diag, extra.into_iter());
        let Components { devices, sinks, sources, device_names, source_names, .. } = parts;
        // Detectors last: their tags are checked against the devices and sources.
        let detectors = match sections.detectors {
            Some(v) => {
                let known = crate::processors::anomaly::config::KnownTags {
                    devices: devices.iter().map(|d| (d.name().to_string(), d.tag_names())).collect(),
                    source_devices: sources.iter().map(|s| s.common().device.clone()).collect(),
                };
                crate::processors::anomaly::config::parse_detectors(v, &mut diag, base_dir, Some(&known))
            }
            None => Vec::new(),
        };
        let known = crate::sources::known_tags(&devices, &sources);
        crate::sources::check_interlocks(&devices, &known, &mut diag);
        let rules = match sections.rules {
            Some(v) => crate::processors::rules::config::parse_rules(v, &mut diag, Some(&known)),
            None => Vec::new(),
        };
        let checks = sections.checks.map(|v| crate::component::checks::parse_checks(v, &mut diag, Some(&known))).unwrap_or_default();
        if sinks.is_empty() && diag.ok() {
            diag.warn(
                doc_span.start..doc_span.start,
                "sink",
                "no [[sink]] configured: samples are only kept in the buffer (and dropped, oldest first, at max_bytes/max_age)",
            );
        }
        if device_names.is_empty() && source_names.is_empty() && diag.ok() {
            diag.warn(doc_span.start..doc_span.start, "device", "no [[device]] or [[source]] configured: nothing will be acquired");
        }
        let warnings = diag.finish()?;
        Ok(Config {
            gateway: gateway.expect("no errors means [gateway] parsed"),
            buffer: buffer.expect("no errors means [buffer] parsed"),
            devices,
            sinks,
            sources,
            warnings,
            detectors,
            rules,
            commands: commands.flatten(),
            admin: admin.flatten(),
            history: history.flatten(),
            lab: lab.flatten().unwrap_or_default(),
            checks,
        })
    }
}

/// The top-level sections of a gateway configuration, as items.
#[derive(Default)]
struct Sections<'i> {
    gateway: Option<Item<'i>>,
    buffer: Option<Item<'i>>,
    devices: Vec<Entry<'i>>,
    sinks: Vec<Entry<'i>>,
    sources: Vec<Entry<'i>>,
    detectors: Option<Item<'i>>,
    rules: Option<Item<'i>>,
    commands: Option<Item<'i>>,
    admin: Option<Item<'i>>,
    history: Option<Item<'i>>,
    lab: Option<Item<'i>>,
    checks: Option<Item<'i>>,
}

/// Sorts the document's sections; an unknown one (or one of a simulator
/// configuration) is an error.
fn sections<'i>(doc: Spanned<toml::de::DeTable<'i>>, diag: &mut Diag<'_>) -> Sections<'i> {
    let mut s = Sections::default();
    for (k, v) in doc.into_inner() {
        match k.get_ref().as_ref() {
            "gateway" => s.gateway = Some(v),
            "buffer" => s.buffer = Some(v),
            "device" => s.devices = entries(Some(v), diag, "", "device", "device"),
            "sink" => s.sinks = entries(Some(v), diag, "", "sink", "sink"),
            "source" => s.sources = entries(Some(v), diag, "", "source", "source"),
            "detector" => s.detectors = Some(v),
            "rule" => s.rules = Some(v),
            "commands" => s.commands = Some(v),
            "admin" => s.admin = Some(v),
            "history" => s.history = Some(v),
            "lab" => s.lab = Some(v),
            "check" => s.checks = Some(v),
            other @ ("station" | "sim" | "opcua") => diag.error(
                k.span(),
                other,
                format!("`{other}` belongs to a simulator configuration: run it with `relais sim --config FILE`; a gateway configuration has [gateway], [buffer], [[device]], [[source]] and [[sink]]"),
            ),
            other => {
                let hint = crate::diag::closest(other, SECTIONS)
                    .map(|c| match c {
                        "gateway" | "buffer" | "admin" | "commands" | "history" | "lab" => format!("did you mean [{c}]? "),
                        c => format!("did you mean [[{c}]]? "),
                    })
                    .unwrap_or_default();
                diag.error(
                    k.span(),
                    other,
                    format!("unknown section or key `{other}`; {hint}expected [gateway], [buffer], [[device]], [[source]], [[sink]], [[detector]], [[rule]], [[check]], [commands], [admin], [history] or [lab]"),
                )
            }
        }
    }
    s
}

/// The components of the three families, with where their names are.
struct Components {
    devices: Vec<DeviceConfig>,
    sinks: Vec<SinkConfig>,
    sources: Vec<SourceConfig>,
    device_names: FirstSeen,
    sink_names: FirstSeen,
    source_names: FirstSeen,
}

impl Components {
    /// Parses every `[[device]]`, `[[sink]]` and `[[source]]` through its
    /// family; names are unique among sinks, and among devices and sources.
    fn parse(
        devices: Vec<Entry<'_>>,
        sinks: Vec<Entry<'_>>,
        sources: Vec<Entry<'_>>,
        diag: &mut Diag<'_>,
        gateway: &str,
        base: &Path,
    ) -> Self {
        let mut c = Components {
            devices: Vec::new(),
            sinks: Vec::new(),
            sources: Vec::new(),
            device_names: FirstSeen::new(),
            sink_names: FirstSeen::new(),
            source_names: FirstSeen::new(),
        };
        for e in devices {
            c.devices.extend(parse_device(e.item, diag, &ParseCx { key: &e.key, gateway, base }));
            if let Some((n, nspan)) = e.name {
                c.device_names.insert(diag, &n, nspan, &format!("{} / name", e.key), "device name");
            }
        }
        for e in sinks {
            c.sinks.extend(parse_sink(e.item, diag, &ParseCx { key: &e.key, gateway, base }));
            if let Some((n, nspan)) = e.name {
                c.sink_names.insert(diag, &n, nspan, &format!("{} / name", e.key), "sink name");
            }
        }
        for e in sources {
            c.sources.extend(parse_source(e.item, diag, &ParseCx { key: &e.key, gateway, base }));
            if let Some((n, nspan)) = e.name {
                if let Some(first) = c.device_names.get(&n).or_else(|| c.source_names.get(&n)) {
                    let (line, _) = crate::diag::line_col(diag.source(), first);
                    diag.error(nspan, &format!("{} / name", e.key), format!("name already used by a device or source on line {line}"));
                } else {
                    c.source_names.mark(&n, nspan.start);
                }
            }
        }
        c
    }

    /// Shared resources (serial ports, listen addresses, MQTT client ids
    /// and status topics): the components claim them, the root only checks
    /// the claims for clashes. A claim without a span is reported at its
    /// owner's name.
    fn check_claims(&self, diag: &mut Diag<'_>, more: impl Iterator<Item = Claim>) {
        let at = |spans: &FirstSeen, name: &str| spans.get(name).map(|p| p..p).unwrap_or(0..0);
        let mut claims: Vec<Claim> = Vec::new();
        let owners = self
            .devices
            .iter()
            .map(|d| (d.component(), &self.device_names))
            .chain(self.sinks.iter().map(|s| (s.component(), &self.sink_names)))
            .chain(self.sources.iter().map(|s| (s.component(), &self.source_names)));
        for (c, spans) in owners {
            claims.extend(c.claims().into_iter().map(|mut cl| {
                cl.span = cl.span.or_else(|| Some(at(spans, c.name())));
                cl
            }));
        }
        claims.extend(more);
        for (span, key, message) in crate::component::clashes(&claims) {
            diag.error(span.unwrap_or(0..0), &key, message);
        }
    }
}

/// The top-level sections of a gateway configuration.
const SECTIONS: &[&str] =
    &["gateway", "buffer", "device", "source", "sink", "detector", "rule", "check", "commands", "admin", "history", "lab"];

const GATEWAY_KEYS: &[&str] = &["id", "data_dir", "health_interval", "status_interval"];

fn parse_gateway(mut item: Item<'_>, diag: &mut Diag<'_>) -> Option<GatewayConfig> {
    reject_unknown_keys(&mut item, GATEWAY_KEYS, diag, "gateway");
    let raw: RawGateway = de_item(item, diag, "gateway")?;
    let before = diag.error_count();
    if let Err(e) = names::check(raw.id.get_ref()) {
        diag.error(raw.id.span(), "gateway / id", e);
    }
    // Like a command-line path: relative to the working directory.
    let data_dir = PathBuf::from(raw.data_dir.as_deref().unwrap_or("./relais-data"));
    let mut r = Reader::new(diag, "gateway");
    let mut interval = |v: &Option<Spanned<String>>, name: &str| {
        let d = r.duration(v, name, Duration::from_secs(60));
        match v {
            Some(s) if !d.is_zero() && d < Duration::from_secs(1) => {
                r.error(s.span(), name, "must be 0 (off) or at least 1s");
                Duration::from_secs(60)
            }
            _ => d,
        }
    };
    let health_interval = interval(&raw.health_interval, "health_interval");
    let status_interval = interval(&raw.status_interval, "status_interval");
    if raw.data_dir.as_deref().is_some_and(|d| d.trim().is_empty()) {
        diag.error(raw.id.span(), "gateway / data_dir", "data_dir is empty; give a folder such as \"/var/lib/relais\"");
    }
    if diag.error_count() > before {
        return None;
    }
    Some(GatewayConfig { id: raw.id.into_inner(), data_dir, health_interval, status_interval })
}
