//! The pure half of a reload: the *units* a configuration runs, what differs
//! between the running configuration and a new one, and the changes that
//! need a restart.
//!
//! A unit is what one spawn starts and one token stops: a single component,
//! or the components of one kind that share a resource
//! ([`Component::restart_group`]: Modbus devices on one line, HTTP sources
//! on one listen address), or all `[[rule]]`s (one engine). Two units are
//! the same when their parsed configurations print the same (`Debug`, with
//! secrets as salted digests and file positions left out).

use std::collections::BTreeMap;

use crate::component::Component;
use crate::config::{Config, DeviceConfig, SinkConfig, SourceConfig};
use crate::processors::anomaly::DetectorConfig;
use crate::processors::commands::CommandsConfig;
use crate::processors::history::HistoryConfig;
use crate::processors::rules::RuleConfig;

/// The families, in start order: sinks first (they read what is committed),
/// then processors (they subscribe before data flows), devices, sources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    /// `[[sink]]`.
    Sink,
    /// `[[detector]]` and `[[rule]]`.
    Processor,
    /// `[[device]]`.
    Device,
    /// `[[source]]`.
    Source,
}

/// One configured component.
#[derive(Debug, Clone)]
pub enum Item {
    /// A `[[sink]]`.
    Sink(SinkConfig),
    /// A `[[detector]]`.
    Detector(DetectorConfig),
    /// A `[[rule]]`.
    Rule(RuleConfig),
    /// The `[commands]` section.
    Commands(CommandsConfig),
    /// The `[history]` section (a change of it needs a restart: see [`needs_restart`]).
    History(HistoryConfig),
    /// A `[[device]]`.
    Device(DeviceConfig),
    /// A `[[source]]`.
    Source(SourceConfig),
}

impl Item {
    /// The item as a component (`None`: `[history]`).
    pub fn component(&self) -> Option<&dyn Component> {
        Some(match self {
            Item::Sink(c) => c.component(),
            Item::Detector(c) => c,
            Item::Rule(c) => c,
            Item::Commands(c) => c,
            Item::History(_) => return None,
            Item::Device(c) => c.component(),
            Item::Source(c) => c.component(),
        })
    }

    /// Its family.
    pub fn family(&self) -> Family {
        match self {
            Item::Sink(_) => Family::Sink,
            Item::Detector(_) | Item::Rule(_) | Item::Commands(_) | Item::History(_) => Family::Processor,
            Item::Device(_) => Family::Device,
            Item::Source(_) => Family::Source,
        }
    }

    /// `sink`, `detector`, `rule`, `commands`, `history`, `device` or `source`.
    pub fn word(&self) -> &'static str {
        match self {
            Item::Sink(_) => "sink",
            Item::Detector(_) => "detector",
            Item::Rule(_) => "rule",
            Item::Commands(_) => "commands",
            Item::History(_) => "history",
            Item::Device(_) => "device",
            Item::Source(_) => "source",
        }
    }

    /// `device "pump1"` (`[commands]`, `[history]`): how reports name it.
    pub fn label(&self) -> String {
        match self.component() {
            Some(c) if !matches!(self, Item::Commands(_)) => format!("{} {:?}", self.word(), c.name()),
            _ => format!("[{}]", self.word()),
        }
    }

    /// The key of its unit.
    fn unit_key(&self) -> String {
        match (self, self.component().and_then(|c| c.restart_group())) {
            (Item::Rule(_), _) => "rules".into(),
            (_, Some(g)) => format!("{} group {g}", self.word()),
            (_, None) => self.label(),
        }
    }

    /// What is compared: the parsed configuration as text, secrets as
    /// salted digests, file positions left out (moving an entry in the file
    /// changes nothing). Kept in memory only, never logged.
    fn fingerprint(&self) -> String {
        strip_spans(&crate::secret::comparing(|| format!("{self:?}")))
    }
}

/// Removes `…span: 12..30` (positions in the file) from a `Debug` text.
fn strip_spans(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("span: ") {
        let after = &rest[i + 6..];
        let len = after.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(after.len());
        out.push_str(&rest[..i + 6]);
        rest = &after[len..];
    }
    out.push_str(rest);
    out
}

/// Components started together and stopped by one token.
#[derive(Debug, Clone)]
pub struct Unit {
    /// Its family.
    pub family: Family,
    /// Its components, in file order.
    pub items: Vec<Item>,
}

impl Unit {
    /// `device "a", device "b"`.
    pub fn labels(&self) -> Vec<String> {
        self.items.iter().map(Item::label).collect()
    }

    fn fingerprint(&self) -> Vec<String> {
        self.items.iter().map(Item::fingerprint).collect()
    }
}

/// A unit's key: its family, then a name unique in the family.
pub type UnitKey = (Family, String);

/// The units of a configuration's components, by key.
pub fn units(
    sinks: &[SinkConfig],
    (detectors, rules, commands, history): (&[DetectorConfig], &[RuleConfig], Option<&CommandsConfig>, Option<&HistoryConfig>),
    devices: &[DeviceConfig],
    sources: &[SourceConfig],
) -> BTreeMap<UnitKey, Unit> {
    let items = sinks
        .iter()
        .cloned()
        .map(Item::Sink)
        .chain(detectors.iter().cloned().map(Item::Detector))
        .chain(rules.iter().cloned().map(Item::Rule))
        .chain(commands.cloned().map(Item::Commands))
        .chain(history.cloned().map(Item::History))
        .chain(devices.iter().cloned().map(Item::Device))
        .chain(sources.iter().cloned().map(Item::Source));
    let mut out: BTreeMap<UnitKey, Unit> = BTreeMap::new();
    for it in items {
        let family = it.family();
        out.entry((family, it.unit_key())).or_insert_with(|| Unit { family, items: Vec::new() }).items.push(it);
    }
    out
}

/// The units of a whole configuration.
pub fn units_of(cfg: &Config) -> BTreeMap<UnitKey, Unit> {
    units(&cfg.sinks, (&cfg.detectors, &cfg.rules, cfg.commands.as_ref(), cfg.history.as_ref()), &cfg.devices, &cfg.sources)
}

/// What a reload does, unit by unit and (for the report) component by component.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Plan {
    /// Running units to stop (removed or changed).
    pub stop: Vec<UnitKey>,
    /// New units to start (added or changed).
    pub start: Vec<UnitKey>,
    /// Components only in the new configuration.
    pub added: Vec<String>,
    /// Components only in the running one.
    pub removed: Vec<String>,
    /// Components in both whose configuration differs.
    pub changed: Vec<String>,
    /// Unchanged components restarted with a changed one of their unit.
    pub along: Vec<String>,
    /// Components that keep running untouched.
    pub unchanged: usize,
}

impl Plan {
    /// True when the new configuration changes no component.
    pub fn is_empty(&self) -> bool {
        self.stop.is_empty() && self.start.is_empty()
    }
}

/// Compares the running units with the new ones.
pub fn diff(old: &BTreeMap<UnitKey, Unit>, new: &BTreeMap<UnitKey, Unit>) -> Plan {
    let mut p = Plan::default();
    for (k, u) in old {
        if new.get(k).is_none_or(|n| n.fingerprint() != u.fingerprint()) {
            p.stop.push(k.clone());
        }
    }
    for (k, u) in new {
        if old.get(k).is_none_or(|o| o.fingerprint() != u.fingerprint()) {
            p.start.push(k.clone());
        }
    }
    let prints = |m: &BTreeMap<UnitKey, Unit>| -> BTreeMap<String, (String, UnitKey)> {
        m.iter().flat_map(|(k, u)| u.items.iter().map(move |i| (i.label(), (i.fingerprint(), k.clone())))).collect()
    };
    let (before, after) = (prints(old), prints(new));
    for (label, (print, key)) in &after {
        match before.get(label) {
            None => p.added.push(label.clone()),
            Some((old_print, _)) if old_print != print => p.changed.push(label.clone()),
            Some((_, old_key)) if p.stop.contains(old_key) || p.start.contains(key) => p.along.push(label.clone()),
            Some(_) => p.unchanged += 1,
        }
    }
    p.removed = before.keys().filter(|l| !after.contains_key(*l)).cloned().collect();
    p
}

/// The differences a running gateway cannot take (one message each, saying
/// a restart applies them); empty when the new configuration can be applied live.
pub fn needs_restart(old: &Config, new: &Config) -> Vec<String> {
    let mut v = Vec::new();
    let (a, b) = (&old.gateway, &new.gateway);
    let mut field = |name: &str, x: String, y: String| {
        if x != y {
            v.push(format!("{name} changed ({x} → {y}): it is applied at the next restart of relais only"));
        }
    };
    field("[gateway] id", format!("{:?}", a.id), format!("{:?}", b.id));
    field("[gateway] data_dir", a.data_dir.display().to_string(), b.data_dir.display().to_string());
    field("[gateway] health_interval", format!("{:?}", a.health_interval), format!("{:?}", b.health_interval));
    field("[gateway] status_interval", format!("{:?}", a.status_interval), format!("{:?}", b.status_interval));
    let listen = |c: &Config| c.admin.as_ref().map_or("none (no [admin] section)".to_string(), |a| a.listen.to_string());
    field("[admin] listen", listen(old), listen(new));
    if format!("{:?}", old.buffer) != format!("{:?}", new.buffer) {
        v.push("[buffer] settings changed: they are applied at the next restart of relais only".into());
    }
    if old.history != new.history {
        v.push("[history] changed: it is applied at the next restart of relais only".into());
    }
    if old.lab != new.lab {
        v.push(format!("[lab] faults changed ({} → {}): it is applied at the next restart of relais only", old.lab.faults, new.lab.faults));
    }
    if old.checks != new.checks {
        v.push("[[check]] changed: the per-tag checks are applied at the next restart of relais only".into());
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(extra: &str) -> Config {
        let text = format!(
            "[gateway]\nid = \"gw\"\n{extra}\n[[sink]]\nname = \"b\"\ntype = \"mqtt\"\nurl = \"mqtt://127.0.0.1:1883\"\n\
             [[device]]\nname = \"a\"\nprotocol = \"modbus-tcp\"\nendpoint = \"127.0.0.1:1502\"\npoll_interval = \"100ms\"\n\
             [[device.tag]]\nname = \"t\"\ntable = \"holding\"\naddress = 0\n"
        );
        Config::parse(&text, "t.toml", std::path::Path::new(".")).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn the_same_text_moved_in_the_file_is_no_change() {
        let (a, b) = (cfg(""), cfg("\n\n# a comment\n"));
        let p = diff(&units_of(&a), &units_of(&b));
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(p.unchanged, 2);
    }

    #[test]
    fn a_changed_device_restarts_alone_and_an_added_one_starts() {
        let old = cfg("");
        let mut text = String::from(
            "[gateway]\nid = \"gw\"\n[[sink]]\nname = \"b\"\ntype = \"mqtt\"\nurl = \"mqtt://127.0.0.1:1883\"\n\
             [[device]]\nname = \"a\"\nprotocol = \"modbus-tcp\"\nendpoint = \"127.0.0.1:1502\"\npoll_interval = \"200ms\"\n\
             [[device.tag]]\nname = \"t\"\ntable = \"holding\"\naddress = 0\n",
        );
        text += "[[device]]\nname = \"c\"\nprotocol = \"modbus-tcp\"\nendpoint = \"127.0.0.1:1503\"\n[[device.tag]]\nname = \"t\"\ntable = \"holding\"\naddress = 0\n";
        let new = Config::parse(&text, "t.toml", std::path::Path::new(".")).unwrap();
        let p = diff(&units_of(&old), &units_of(&new));
        assert_eq!(p.changed, vec![r#"device "a""#.to_string()]);
        assert_eq!(p.added, vec![r#"device "c""#.to_string()]);
        assert!(p.removed.is_empty() && p.along.is_empty());
        assert_eq!(p.stop.len(), 1);
        assert_eq!(p.start.len(), 2);
        assert_eq!(p.unchanged, 1);
    }

    #[test]
    fn the_gateway_id_and_the_buffer_need_a_restart() {
        let a = cfg("");
        let b = cfg("[buffer]\nmax_rows = 10\n");
        let mut c = cfg("");
        c.gateway.id = "other".into();
        assert!(needs_restart(&a, &a).is_empty());
        assert!(needs_restart(&a, &b)[0].starts_with("[buffer]"));
        assert!(needs_restart(&a, &c)[0].contains("[gateway] id changed (\"gw\" → \"other\")"));
    }

    #[test]
    fn a_check_change_needs_a_restart() {
        // The checks' state lives in the running sources: a reload does not swap it.
        let (a, b) = (cfg(""), cfg("[[check]]\nmatch = \"a/t\"\nmax = 1.0\n"));
        let c = cfg("[[check]]\nmatch = \"a/t\"\nmax = 2.0\n");
        assert_eq!(needs_restart(&a, &b), ["[[check]] changed: the per-tag checks are applied at the next restart of relais only"]);
        assert_eq!(needs_restart(&b, &c).len(), 1);
        assert!(needs_restart(&b, &cfg("\n[[check]]\nmatch = \"a/t\"\nmax = 1.0\n")).is_empty(), "moved text is no change");
    }

    #[test]
    fn spans_are_left_out() {
        assert_eq!(strip_spans("X { listen_span: 12..30, a: 1 }"), "X { listen_span: , a: 1 }");
    }
}
