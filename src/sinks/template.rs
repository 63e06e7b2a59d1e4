//! Name templates of the sinks (pure): literal text around the placeholders
//! `{gateway}`, `{device}` and `{tag}`, as in the MQTT topic template
//! `icam/{gateway}/{device}/{tag}` and the NATS subject template
//! `relais.{gateway}.{device}.{tag}`. Each sink checks its own literal text
//! and says how a name becomes one level or token (`render`'s `name`).

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// Literal text.
    Lit(String),
    /// `{gateway}`.
    Gateway,
    /// `{device}`.
    Device,
    /// `{tag}`.
    Tag,
}

/// A template split into its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    src: String,
    parts: Vec<Part>,
}

impl Template {
    /// Splits `src` at its placeholders, those in `allowed` only (a subset
    /// of `gateway`, `device`, `tag`). Errors name the template as `what`
    /// (`topic template "a/{x"`); an unknown placeholder's error ends with
    /// `known` (`known: {gateway}, {device}, {tag}`).
    pub fn parse(src: &str, what: &str, allowed: &[&str], known: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = src;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Lit(rest[..open].to_string()));
            }
            let Some(close) = rest[open..].find('}') else {
                return Err(format!("{what} {src:?} has an unclosed '{{'"));
            };
            let name = &rest[open + 1..open + close];
            parts.push(match name {
                "gateway" if allowed.contains(&name) => Part::Gateway,
                "device" if allowed.contains(&name) => Part::Device,
                "tag" if allowed.contains(&name) => Part::Tag,
                _ => return Err(format!("unknown placeholder {{{name}}} in {what} {src:?}; {known}")),
            });
            rest = &rest[open + close + 1..];
        }
        if rest.contains('}') {
            return Err(format!("{what} {src:?} has a '}}' without '{{'"));
        }
        if !rest.is_empty() {
            parts.push(Part::Lit(rest.to_string()));
        }
        Ok(Template { src: src.to_string(), parts })
    }

    /// The text with each placeholder replaced by its name, written by
    /// `name` (which makes it one level or token of the sink's protocol).
    pub fn render(&self, gateway: &str, device: &str, tag: &str, name: fn(&str, &mut String)) -> String {
        let mut s = String::with_capacity(self.src.len() + gateway.len() + device.len() + tag.len());
        for p in &self.parts {
            match p {
                Part::Lit(l) => s.push_str(l),
                Part::Gateway => name(gateway, &mut s),
                Part::Device => name(device, &mut s),
                Part::Tag => name(tag, &mut s),
            }
        }
        s
    }

    /// The parts, in order.
    pub fn parts(&self) -> &[Part] {
        &self.parts
    }

    /// The template text.
    pub fn as_str(&self) -> &str {
        &self.src
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: &[&str] = &["gateway", "device", "tag"];

    #[test]
    fn splits_and_renders() {
        let t = Template::parse("a/{gateway}/{device}-{tag}!", "topic template", ALL, "known: all").unwrap();
        assert_eq!(t.parts().len(), 7);
        assert_eq!(t.render("g", "d", "t", |n, s| s.push_str(&n.to_uppercase())), "a/G/D-T!");
        let e = Template::parse("a.{tag}", "subject template", &["gateway"], "known here: {gateway}").unwrap_err();
        assert_eq!(e, "unknown placeholder {tag} in subject template \"a.{tag}\"; known here: {gateway}");
        assert!(Template::parse("a/{tag", "t", ALL, "").unwrap_err().contains("unclosed"));
        assert!(Template::parse("a/tag}", "t", ALL, "").unwrap_err().contains("without"));
    }
}
