//! Command topics (pure): templates with whole-level placeholders, the
//! subscription filter they give, matching an incoming topic to its target,
//! rendering the result topic, and the `allow` patterns.
//!
//! A template is a topic whose levels are literal text or one placeholder
//! (`{device}`, `{tag}`, `{rule}`); `{gateway}` is replaced by the gateway id
//! when the template is read. Each placeholder a template needs appears
//! exactly once, as a whole level, so a topic maps to one target and back.

use std::fmt;

/// What a command acts on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// A write of one tag of one device.
    Tag {
        /// Device name.
        device: String,
        /// Tag name.
        tag: String,
    },
    /// The acknowledgement of a rule's alarm.
    Alarm {
        /// Rule name.
        rule: String,
    },
}

impl Target {
    /// The key stored with a command id: `tag:device/tag` or `alarm:rule`.
    pub fn key(&self) -> String {
        match self {
            Target::Tag { device, tag } => format!("tag:{device}/{tag}"),
            Target::Alarm { rule } => format!("alarm:{rule}"),
        }
    }

    /// The inverse of [`Target::key`].
    pub fn from_key(k: &str) -> Option<Target> {
        if let Some(r) = k.strip_prefix("alarm:") {
            return Some(Target::Alarm { rule: r.to_string() });
        }
        let (device, tag) = k.strip_prefix("tag:")?.split_once('/')?;
        Some(Target::Tag { device: device.into(), tag: tag.into() })
    }
}

impl fmt::Display for Target {
    /// `device/tag`, or `alarm/rule`: the form `allow` patterns match.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Tag { device, tag } => write!(f, "{device}/{tag}"),
            Target::Alarm { rule } => write!(f, "alarm/{rule}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Level {
    Lit(String),
    Var(&'static str),
}

/// A topic template (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    text: String,
    levels: Vec<Level>,
}

impl Template {
    /// Reads `text`, replacing `{gateway}`; every name of `vars` must appear
    /// once as a whole level; no other placeholder, no wildcard.
    pub fn parse(text: &str, gateway: &str, vars: &[&'static str]) -> Result<Template, String> {
        let resolved = text.replace("{gateway}", gateway);
        if resolved.is_empty() || resolved.contains(['+', '#', '\0']) {
            return Err(format!("{text:?} must be a topic without wildcards (+, #)"));
        }
        let mut levels = Vec::new();
        for l in resolved.split('/') {
            let var = vars.iter().find(|v| l.len() == v.len() + 2 && l.starts_with('{') && l.ends_with('}') && &l[1..l.len() - 1] == **v);
            if let Some(v) = var {
                if levels.contains(&Level::Var(v)) {
                    return Err(format!("{text:?} has {{{v}}} twice"));
                }
                levels.push(Level::Var(v));
            } else if l.contains(['{', '}']) {
                let known: Vec<String> = vars.iter().map(|v| format!("{{{v}}}")).collect();
                return Err(format!(
                    "{text:?}: level {l:?} is not a placeholder of this topic; placeholders are whole levels: {{gateway}} {}",
                    known.join(" ")
                ));
            } else {
                levels.push(Level::Lit(l.to_string()));
            }
        }
        for v in vars {
            if !levels.contains(&Level::Var(v)) {
                return Err(format!("{text:?} needs the level {{{v}}}"));
            }
        }
        Ok(Template { text: resolved, levels })
    }

    /// The template with `{gateway}` replaced.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The subscription filter: each placeholder a `+`.
    pub fn filter(&self) -> String {
        let l: Vec<&str> = self
            .levels
            .iter()
            .map(|l| match l {
                Level::Lit(s) => s.as_str(),
                Level::Var(_) => "+",
            })
            .collect();
        l.join("/")
    }

    /// The placeholder values of `topic` when it matches (an empty level
    /// never matches a placeholder).
    pub fn matches(&self, topic: &str) -> Option<Vec<(&'static str, String)>> {
        let parts: Vec<&str> = topic.split('/').collect();
        if parts.len() != self.levels.len() {
            return None;
        }
        let mut out = Vec::new();
        for (l, p) in self.levels.iter().zip(parts) {
            match l {
                Level::Lit(s) if s == p => {}
                Level::Var(v) if !p.is_empty() => out.push((*v, p.to_string())),
                _ => return None,
            }
        }
        Some(out)
    }

    /// The topic with each placeholder replaced by its value in `vals`.
    pub fn render(&self, vals: &[(&str, &str)]) -> String {
        let l: Vec<&str> = self
            .levels
            .iter()
            .map(|l| match l {
                Level::Lit(s) => s.as_str(),
                Level::Var(v) => vals.iter().find(|(k, _)| k == v).map_or("", |(_, x)| *x),
            })
            .collect();
        l.join("/")
    }
}

/// The four templates of `[commands]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    /// Writes: `{device}` and `{tag}`.
    pub command: Template,
    /// Alarm acknowledgements: `{rule}`.
    pub alarm: Template,
    /// Results of writes: `{device}` and `{tag}`.
    pub result: Template,
    /// Results of acknowledgements: `{rule}`.
    pub alarm_result: Template,
}

impl Topics {
    /// The target of an incoming topic: an alarm acknowledgement when the
    /// alarm template matches (it wins over a device named like its level),
    /// else a write.
    pub fn route(&self, topic: &str) -> Option<Target> {
        let get = |v: &[(&str, String)], k: &str| v.iter().find(|(n, _)| *n == k).map(|(_, x)| x.clone());
        if let Some(v) = self.alarm.matches(topic) {
            return Some(Target::Alarm { rule: get(&v, "rule")? });
        }
        let v = self.command.matches(topic)?;
        Some(Target::Tag { device: get(&v, "device")?, tag: get(&v, "tag")? })
    }

    /// The filters to subscribe to: the command filter, and the alarm
    /// filter unless the command filter already covers it (one delivery per
    /// message).
    pub fn filters(&self) -> Vec<String> {
        let (c, a) = (self.command.filter(), self.alarm.filter());
        if rumqttc::matches(&a.replace('+', "x"), &c) { vec![c] } else { vec![c, a] }
    }

    /// The default topic of a target's result.
    pub fn result_for(&self, t: &Target) -> String {
        match t {
            Target::Tag { device, tag } => self.result.render(&[("device", device), ("tag", tag)]),
            Target::Alarm { rule } => self.alarm_result.render(&[("rule", rule)]),
        }
    }
}

/// The default templates under `prefix` (empty: none):
/// `{prefix}/relais/{gateway}/cmd/{device}/{tag}`, `…/cmd/alarm/{rule}`,
/// `…/cmd-result/{device}/{tag}`, `…/cmd-result/alarm/{rule}`.
pub fn defaults(prefix: &str) -> [String; 4] {
    let p = if prefix.is_empty() { String::new() } else { format!("{}/", prefix.trim_end_matches('/')) };
    [
        format!("{p}relais/{{gateway}}/cmd/{{device}}/{{tag}}"),
        format!("{p}relais/{{gateway}}/cmd/alarm/{{rule}}"),
        format!("{p}relais/{{gateway}}/cmd-result/{{device}}/{{tag}}"),
        format!("{p}relais/{{gateway}}/cmd-result/alarm/{{rule}}"),
    ]
}

/// One `allow` pattern: `device/tag`, `device/*`, `alarm/rule`, `alarm/*`, `*`.
pub fn allowed(patterns: &[String], t: &Target) -> bool {
    let s = t.to_string();
    let (first, second) = s.split_once('/').unwrap_or((&s, ""));
    patterns.iter().any(|p| p == "*" || p == &s || p.strip_suffix("/*").is_some_and(|d| d == first && !second.is_empty()))
}

/// Checks one `allow` pattern's shape.
pub fn check_pattern(p: &str) -> Result<(), String> {
    if p == "*" {
        return Ok(());
    }
    match p.split_once('/') {
        Some((a, b)) if !a.is_empty() && !b.is_empty() && !a.contains('*') && (b == "*" || !b.contains(['*', '/'])) => Ok(()),
        _ => Err(format!("{p:?} is not an allow pattern: use \"device/tag\", \"device/*\", \"alarm/rule\", \"alarm/*\" or \"*\"")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topics(prefix: &str) -> Topics {
        let [c, a, r, ar] = defaults(prefix);
        Topics {
            command: Template::parse(&c, "gw", &["device", "tag"]).unwrap(),
            alarm: Template::parse(&a, "gw", &["rule"]).unwrap(),
            result: Template::parse(&r, "gw", &["device", "tag"]).unwrap(),
            alarm_result: Template::parse(&ar, "gw", &["rule"]).unwrap(),
        }
    }

    #[test]
    fn defaults_route_and_render() {
        let t = topics("plant");
        assert_eq!(t.command.filter(), "plant/relais/gw/cmd/+/+");
        assert_eq!(t.filters(), ["plant/relais/gw/cmd/+/+"], "the alarm filter is covered by the command filter");
        let tag = Target::Tag { device: "pump".into(), tag: "start".into() };
        assert_eq!(t.route("plant/relais/gw/cmd/pump/start"), Some(tag.clone()));
        assert_eq!(t.route("plant/relais/gw/cmd/alarm/hot"), Some(Target::Alarm { rule: "hot".into() }));
        assert_eq!(t.route("plant/relais/gw/cmd/pump"), None);
        assert_eq!(t.route("plant/relais/other/cmd/pump/start"), None);
        assert_eq!(t.route("plant/relais/gw/cmd//start"), None, "an empty level is no device");
        assert_eq!(t.result_for(&tag), "plant/relais/gw/cmd-result/pump/start");
        assert_eq!(t.result_for(&Target::Alarm { rule: "hot".into() }), "plant/relais/gw/cmd-result/alarm/hot");
        assert_eq!(topics("").command.as_str(), "relais/gw/cmd/{device}/{tag}");
        for k in [tag, Target::Alarm { rule: "hot".into() }] {
            assert_eq!(Target::from_key(&k.key()), Some(k));
        }
    }

    #[test]
    fn templates_need_their_levels_once_and_whole() {
        assert!(Template::parse("a/{device}", "gw", &["device", "tag"]).unwrap_err().contains("needs the level {tag}"));
        assert!(Template::parse("a/{device}/{device}/{tag}", "gw", &["device", "tag"]).unwrap_err().contains("twice"));
        assert!(Template::parse("a/x{device}/{tag}", "gw", &["device", "tag"]).unwrap_err().contains("whole levels"));
        assert!(Template::parse("a/+/{device}/{tag}", "gw", &["device", "tag"]).unwrap_err().contains("wildcards"));
        let t = Template::parse("c/{tag}/{gateway}/{device}", "gw", &["device", "tag"]).unwrap();
        assert_eq!(t.filter(), "c/+/gw/+");
        assert_eq!(t.render(&[("device", "d"), ("tag", "t")]), "c/t/gw/d");
    }

    #[test]
    fn allow_patterns() {
        let p: Vec<String> = ["pump/start", "valve/*", "alarm/*"].map(String::from).to_vec();
        let tag = |d: &str, t: &str| Target::Tag { device: d.into(), tag: t.into() };
        assert!(allowed(&p, &tag("pump", "start")));
        assert!(!allowed(&p, &tag("pump", "speed")));
        assert!(allowed(&p, &tag("valve", "open")));
        assert!(allowed(&p, &Target::Alarm { rule: "x".into() }));
        assert!(allowed(&["*".into()], &tag("a", "b")));
        assert!(check_pattern("pump/*").is_ok() && check_pattern("*/x").is_err() && check_pattern("pump").is_err());
    }
}
