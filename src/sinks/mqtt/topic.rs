//! MQTT topic templates (pure): `icam/line5/{device}/{tag}`.
//!
//! Placeholders: `{gateway}`, `{device}`, `{tag}`. Rendered topics are publish
//! topics, so the wildcards `+` and `#` are refused (MQTT v3.1.1 §4.7.1).

use std::fmt;

use crate::sinks::template::{Part, Template};

/// A parsed topic template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicTemplate(Template);

/// Placeholders a template may use.
pub const PLACEHOLDERS: &str = "{gateway}, {device}, {tag}";

impl TopicTemplate {
    /// Parses a template; the error names the offending placeholder or character.
    pub fn parse(src: &str) -> Result<TopicTemplate, String> {
        if src.is_empty() {
            return Err("topic template is empty".into());
        }
        if src.contains('\0') {
            return Err(format!("topic template {src:?} contains a NUL character"));
        }
        if let Some(c) = src.chars().find(|c| matches!(c, '+' | '#')) {
            return Err(format!("topic template {src:?} contains {c:?}; wildcards are not allowed in publish topics"));
        }
        if src.starts_with('$') {
            return Err(format!(
                "topic template {src:?} starts with '$': such topics are reserved by brokers ($SYS) and messages to them are dropped"
            ));
        }
        if src.len() > 1024 {
            return Err(format!("topic template is {} bytes long; keep it under 1024", src.len()));
        }
        let known = format!("known: {PLACEHOLDERS}");
        Template::parse(src, "topic template", &["gateway", "device", "tag"], &known).map(TopicTemplate)
    }

    /// Renders the topic of one tag. In the names, the MQTT wildcards `+`
    /// and `#` and NUL become `_`, so a rendered topic is always publishable.
    pub fn render(&self, gateway: &str, device: &str, tag: &str) -> String {
        self.0.render(gateway, device, tag, level)
    }

    /// True when the template uses `{tag}`.
    pub fn uses_tag(&self) -> bool {
        self.0.parts().contains(&Part::Tag)
    }

    /// True when the template uses `{device}`.
    pub fn uses_device(&self) -> bool {
        self.0.parts().contains(&Part::Device)
    }

    /// True when the topics are this gateway's own: the template uses
    /// `{gateway}`, or one of its fixed levels is `gateway` (the id written
    /// out, `plant/line5-edge01/{device}/{tag}`). Otherwise another gateway
    /// with the same device and tag names publishes on the same topics (a
    /// classroom of gateways on one broker).
    pub fn per_gateway(&self, gateway: &str) -> bool {
        self.0.parts().iter().any(|p| match p {
            Part::Gateway => true,
            Part::Lit(l) => l.split('/').any(|level| level == gateway),
            _ => false,
        })
    }

    /// The template text.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The leading topic levels that hold no placeholder: `icam/line5` for
    /// `icam/line5/{device}/{tag}`; empty when the first level has one.
    pub fn static_prefix(&self) -> String {
        let lit = match self.0.parts().first() {
            Some(Part::Lit(l)) => l.as_str(),
            _ => "",
        };
        let whole = self.0.parts().len() == 1;
        let levels: Vec<&str> = lit.split('/').collect();
        let keep = if whole { levels.len() } else { levels.len().saturating_sub(1) };
        levels[..keep].join("/").trim_end_matches('/').to_string()
    }

    /// The template without a trailing `/{tag}` level (the default json-batch
    /// topic), or `None` when `{tag}` is used elsewhere.
    pub fn without_tag_level(&self) -> Option<TopicTemplate> {
        if !self.uses_tag() {
            return Some(self.clone());
        }
        let stripped = self.as_str().strip_suffix("/{tag}")?;
        let t = TopicTemplate::parse(stripped).ok()?;
        if t.uses_tag() { None } else { Some(t) }
    }
}

impl fmt::Display for TopicTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One name as one topic level. Names from data (a CSV device column, a
/// JSON field) are not checked like configured ones: wildcards, NUL and '/'
/// (an extra topic level) become '_', an empty name '_', and a level is cut
/// at 128 bytes, so no sample can make a topic the broker refuses or that
/// escapes its level.
fn level(name: &str, s: &mut String) {
    let mut n = 0;
    for c in name.chars() {
        n += c.len_utf8();
        if n > crate::names::MAX_LEN {
            break;
        }
        s.push(if matches!(c, '+' | '#' | '\0' | '/') || c.is_control() { '_' } else { c });
    }
    if name.is_empty() {
        s.push('_');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_and_checks() {
        let t = TopicTemplate::parse("icam/line5/{device}/{tag}").unwrap();
        assert_eq!(t.render("gw", "pump1", "temperature"), "icam/line5/pump1/temperature");
        assert_eq!(t.static_prefix(), "icam/line5");
        assert_eq!(t.without_tag_level().unwrap().as_str(), "icam/line5/{device}");
        assert!(TopicTemplate::parse("a/{devices}/x").unwrap_err().contains("unknown placeholder {devices}"));
        assert!(TopicTemplate::parse("a/+/x").is_err());
        assert!(TopicTemplate::parse("a/{tag").is_err());
        assert_eq!(TopicTemplate::parse("{gateway}/{device}").unwrap().static_prefix(), "");
        assert_eq!(TopicTemplate::parse("plant/status").unwrap().static_prefix(), "plant/status");
        assert!(TopicTemplate::parse("{tag}/x/{device}").unwrap().without_tag_level().is_none());
        assert!(!t.per_gateway("gw"), "no {{gateway}}: every gateway publishes here");
        assert!(TopicTemplate::parse("icam/{gateway}/{device}/{tag}").unwrap().per_gateway("gw"));
        assert!(TopicTemplate::parse("icam/gw/{device}/{tag}").unwrap().per_gateway("gw"), "the id written out");
        assert!(!TopicTemplate::parse("icam/gw2/{device}/{tag}").unwrap().per_gateway("gw"), "a level, not a part of one");
        assert_eq!(t.render("gw", "a+b", "c#d"), "icam/line5/a_b/c_d", "names never inject wildcards");
        assert_eq!(t.render("gw", "press/2", ""), "icam/line5/press_2/_", "names from data never add a level");
        let long = "é".repeat(100);
        let r = t.render("gw", &long, "x");
        assert_eq!(r.len(), "icam/line5/".len() + 128 + "/x".len(), "a level is cut at 128 bytes on a char boundary");
    }
}
