//! `[[rule]]`: a condition on tags (see [`super::cond`]), its on- and
//! off-delay, the alarm it raises and the writes it asks for. Every key is
//! listed in `README.md` beside this file.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::cond::{COND_KEYS, Cond, Devices, KnownTags, Lit, RawCond, check_known, valid_path, validate};
use crate::diag::{Diag, FirstSeen, Item, Reader, de_item, reject_unknown_keys, take_key};
use crate::model::{Severity, Value};

/// A validated `[[rule]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleConfig {
    /// Rule name: the source of its events and the last level of its alarm topic.
    pub name: String,
    /// The condition.
    pub cond: Cond,
    /// On-delay: the condition must hold this long before the rule turns active (`for`).
    pub on_delay: Duration,
    /// Off-delay: the condition must be false this long before the rule clears (`clear_for`).
    pub off_delay: Duration,
    /// Raise and clear an alarm (default true).
    pub alarm: bool,
    /// Severity of the `raised` alarm record.
    pub severity: Severity,
    /// Text of the alarm (default: the condition).
    pub message: Option<String>,
    /// Writes asked for on activation and on clearing.
    pub writes: Vec<WriteAction>,
    /// Ask for dry-run writes only: checked by the device's task (allow-list,
    /// limits, encoding), logged and audited, never written (`dry_run = true`).
    pub dry_run: bool,
}

/// A write a rule asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteAction {
    /// `device/tag` to write.
    pub tag: String,
    /// The value in engineering units: `Bool`, `I64` (a TOML integer) or `F64`;
    /// the device's task encodes it with the tag's type, scale and offset.
    pub value: Value,
    /// On activation (`on = "active"`, default) or on clearing (`on = "clear"`).
    pub on_clear: bool,
}

/// Keys of a `[[rule]]` besides the condition keys.
pub const RULE_KEYS: &[&str] = &["name", "for", "clear_for", "alarm", "severity", "message", "write", "dry_run"];

#[derive(Debug, Deserialize)]
struct RawRule {
    name: Spanned<String>,
    #[serde(rename = "for")]
    on_delay: Option<Spanned<String>>,
    clear_for: Option<Spanned<String>>,
    alarm: Option<bool>,
    severity: Option<Spanned<String>>,
    message: Option<String>,
    #[serde(default)]
    write: Vec<Spanned<RawWrite>>,
    dry_run: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWrite {
    tag: Spanned<String>,
    value: Spanned<Lit>,
    on: Option<Spanned<String>>,
}

/// Longest on- or off-delay.
const MAX_DELAY: Duration = Duration::from_secs(7 * 86_400);

/// Reads one `[[rule]]`; errors go to `diag` under `key`. With `devices`
/// (`[[device]]` names and their tags), a tag of a configured device that
/// does not exist is an error.
pub fn parse_rule(mut item: Item<'_>, diag: &mut Diag<'_>, key: &str, devices: Devices<'_>) -> Option<RuleConfig> {
    let known: Vec<&str> = RULE_KEYS.iter().chain(COND_KEYS).copied().collect();
    reject_unknown_keys(&mut item, &known, diag, key);
    let span = item.span();
    let raw: RawRule = de_item(item.clone(), diag, key)?;
    let before = diag.error_count();
    let name = raw.name.get_ref().clone();
    if let Err(e) = crate::names::check(&name) {
        diag.error(raw.name.span(), &format!("{key} / name"), e);
    }
    let key = format!("rule {name:?}");
    for k in RULE_KEYS {
        take_key(&mut item, k);
    }
    // A condition with a wrong-typed or unknown key was reported: no second message about what is left.
    let n = diag.error_count();
    let cond = de_item::<RawCond>(item, diag, &key)
        .filter(|_| diag.error_count() == n)
        .and_then(|c| validate(&c, span.clone(), diag, &key, devices));
    let mut r = Reader::new(diag, &key);
    let on_delay = r.duration_in(&raw.on_delay, "for", Duration::ZERO, Duration::ZERO..=MAX_DELAY);
    let off_delay = r.duration_in(&raw.clear_for, "clear_for", Duration::ZERO, Duration::ZERO..=MAX_DELAY);
    let sev = [("info", Severity::Info), ("warning", Severity::Warning), ("error", Severity::Error), ("critical", Severity::Critical)];
    let severity = r.choice(&raw.severity, "severity", &sev, Severity::Warning);
    let dry_run = raw.dry_run.unwrap_or(false);
    let writes = raw.write.iter().filter_map(|w| parse_write(w, diag, &key, devices)).collect::<Vec<_>>();
    let alarm = raw.alarm.unwrap_or(true);
    if !alarm && raw.write.is_empty() {
        diag.error(span.start..span.start, &format!("{key} / alarm"), "alarm = false and no [[rule.write]]: the rule would do nothing");
    }
    let ok = diag.error_count() == before;
    Some(RuleConfig { name, cond: cond?, on_delay, off_delay, alarm, severity, message: raw.message, writes, dry_run }).filter(|_| ok)
}

fn parse_write(w: &Spanned<RawWrite>, diag: &mut Diag<'_>, key: &str, devices: Devices<'_>) -> Option<WriteAction> {
    let key = format!("{key} / write");
    let w_ = w.get_ref();
    if !valid_path(w_.tag.get_ref()) {
        diag.error(w_.tag.span(), &format!("{key} / tag"), format!("{:?} is not a tag path \"device/tag\"", w_.tag.get_ref()));
        return None;
    }
    if let Some(known) = devices {
        check_write_target(diag, known, w_.tag.get_ref(), w_.tag.span(), &key);
    }
    let value = match w_.value.get_ref() {
        Lit::Bool(b) => Value::Bool(*b),
        Lit::Int(i) => Value::I64(*i),
        Lit::Num(n) if n.is_finite() => Value::F64(*n),
        Lit::Num(_) => {
            diag.error(w_.value.span(), &format!("{key} / value"), "a finite number or a boolean");
            return None;
        }
    };
    let on_clear = Reader::new(diag, &key).choice(&w_.on, "on", &[("active", false), ("clear", true)], false);
    Some(WriteAction { tag: w_.tag.get_ref().clone(), value, on_clear })
}

/// An error unless `path` is a tag with `writable = true` of a configured
/// `[[device]]`: writes go to devices only, and a write to any other tag
/// would be refused every time.
fn check_write_target(diag: &mut Diag<'_>, known: &KnownTags, path: &str, span: std::ops::Range<usize>, key: &str) {
    let Some((dev, tag)) = path.split_once('/') else { return };
    let Some(tags) = known.tags_of(dev) else {
        let msg = format!(
            "no [[device]] {dev:?} (devices: {}): a rule writes to a tag of a configured Modbus or OPC UA device",
            known.device_names()
        );
        diag.error(span, &format!("{key} / tag"), msg);
        return;
    };
    if !tags.iter().any(|t| t == tag) {
        check_known(diag, known, path, span, &format!("{key} / tag"));
    } else if !known.writable.iter().any(|w| w == path) {
        diag.error(
            span,
            &format!("{key} / tag"),
            format!("tag {tag:?} of device {dev:?} is not writable: the write would be refused every time; add writable = true (and its limits) to that [[device.tag]]"),
        );
    }
}

/// Reads the `[[rule]]` array of a configuration (names must be unique).
pub fn parse_rules(v: Item<'_>, diag: &mut Diag<'_>, devices: Devices<'_>) -> Vec<RuleConfig> {
    let mut out = Vec::new();
    let mut names = FirstSeen::new();
    for (i, item) in crate::diag::array_items(v, diag, "rule").into_iter().enumerate() {
        let key = format!("rule #{}", i + 1);
        if let Some((n, span)) = crate::diag::peek_str(&item, "name") {
            names.insert(diag, &n, span, &format!("rule {n:?} / name"), "rule name");
        }
        out.extend(parse_rule(item, diag, &key, devices));
    }
    out
}

/// Reads every `[[rule]]` of a file, ignoring its other sections (a gateway
/// configuration or a rules-only file both work). Errors carry the file,
/// line, column and key.
pub fn read_rules(text: &str, file: &str, _base_dir: &Path) -> Result<Vec<RuleConfig>, crate::diag::ConfigErrors> {
    let mut diag = Diag::new(file, text);
    let (doc, syntax) = toml::de::DeTable::parse_recoverable(text);
    for e in &syntax {
        diag.toml(e, "", 0..0);
    }
    let mut out = Vec::new();
    if syntax.is_empty() {
        let span = doc.span();
        for (k, v) in doc.into_inner() {
            if k.get_ref().as_ref() == "rule" {
                out.extend(parse_rules(v, &mut diag, None));
            }
        }
        if out.is_empty() && diag.ok() {
            diag.error(span.start..span.start, "rule", "no [[rule]] in this file");
        }
    }
    diag.finish()?;
    Ok(out)
}

impl RuleConfig {
    /// What `relais check` prints: the condition, delays, alarm and writes.
    pub fn describe(&self) -> String {
        let mut s = format!("rule {}: when {}", self.name, self.cond.describe());
        if !self.on_delay.is_zero() {
            s += &format!(" for {}", humantime::format_duration(self.on_delay));
        }
        if !self.off_delay.is_zero() {
            s += &format!(", clears after {} false", humantime::format_duration(self.off_delay));
        }
        if self.alarm {
            s += &format!("\n  -> alarm ({}), events kind alarm", self.severity.as_str());
        }
        for w in &self.writes {
            let on = if w.on_clear { "on clear" } else { "on active" };
            let dry = if self.dry_run { " (dry run: checked and audited, not written)" } else { "" };
            s += &format!("\n  -> write {} = {} {on}{dry}", w.tag, w.value);
        }
        s
    }
}
