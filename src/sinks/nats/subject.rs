//! NATS subject and stream-name templates (pure): `relais.{gateway}.{device}.{tag}`.
//!
//! A subject is a list of tokens separated by `.`; `*` and `>` are
//! wildcards and may not appear in a published subject, and whitespace ends
//! the subject in the protocol (NATS docs, "Subject-Based Messaging"). Names
//! from the config or from data may hold `.` (`pump-1.temp_A` is a valid tag
//! name), so in a rendered name `.`, `*`, `>`, whitespace and control
//! characters become `_`: a name always stays one token.

use std::fmt;

use crate::sinks::template::{Part, Template};

/// A parsed subject template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectTemplate(Template);

/// One name as a single subject token: `.`, `*`, `>`, whitespace and
/// control characters become `_`, an empty name `_`, and it is cut at 128
/// bytes on a character boundary.
pub fn token(name: &str, out: &mut String) {
    let mut n = 0;
    for c in name.chars() {
        n += c.len_utf8();
        if n > crate::names::MAX_LEN {
            break;
        }
        out.push(if matches!(c, '.' | '*' | '>') || c.is_whitespace() || c.is_control() { '_' } else { c });
    }
    if name.is_empty() {
        out.push('_');
    }
}

impl SubjectTemplate {
    /// Parses a template with the placeholders in `allowed` (a subset of
    /// `gateway`, `device`, `tag`); the error names what is wrong.
    pub fn parse(src: &str, allowed: &[&str]) -> Result<SubjectTemplate, String> {
        let known = allowed.iter().map(|a| format!("{{{a}}}")).collect::<Vec<_>>().join(", ");
        if src.is_empty() {
            return Err("subject template is empty".into());
        }
        if let Some(c) = src.chars().find(|c| matches!(c, '*' | '>') || c.is_whitespace() || c.is_control()) {
            return Err(format!(
                "subject template {src:?} contains {c:?}; a published subject has no wildcard, space or control character"
            ));
        }
        if src.starts_with('.') || src.ends_with('.') || src.contains("..") {
            return Err(format!("subject template {src:?} has an empty token (leading, trailing or double '.')"));
        }
        if src.starts_with('$') {
            return Err(format!("subject template {src:?} starts with '$': such subjects belong to the server ($JS, $SYS)"));
        }
        Template::parse(src, "subject template", allowed, &format!("known here: {known}")).map(SubjectTemplate)
    }

    /// Renders the subject of one tag (each name one token, see [`token`]).
    pub fn render(&self, gateway: &str, device: &str, tag: &str) -> String {
        self.0.render(gateway, device, tag, token)
    }

    /// The subject filter that covers every subject this template renders
    /// for `gateway`: the tokens before the first `{device}` or `{tag}`,
    /// then `>` (`relais.gw.>`); the subject itself when it has neither.
    pub fn filter(&self, gateway: &str) -> String {
        let mut fixed = String::new();
        for p in self.0.parts() {
            match p {
                Part::Lit(l) => fixed.push_str(l),
                Part::Gateway => token(gateway, &mut fixed),
                Part::Device | Part::Tag => {
                    let upto = fixed.rfind('.').map_or(0, |i| i + 1);
                    fixed.truncate(upto);
                    if fixed.is_empty() {
                        return ">".into();
                    }
                    fixed.push('>');
                    return fixed;
                }
            }
        }
        fixed
    }

    /// The template text.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl fmt::Display for SubjectTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stream name from `template` (placeholder `{gateway}`): JetStream
/// names may not hold `.`, `*`, `>`, whitespace or path separators, so
/// those become `_` in the gateway id.
pub fn stream_name(template: &str, gateway: &str) -> String {
    let g: String = gateway
        .chars()
        .map(|c| if matches!(c, '.' | '*' | '>' | '/' | '\\') || c.is_whitespace() || c.is_control() { '_' } else { c })
        .collect();
    template.replace("{gateway}", &g)
}

/// Checks a stream name template (only `{gateway}`; the JetStream name rules).
pub fn check_stream(template: &str) -> Result<(), String> {
    let bare = template.replace("{gateway}", "");
    if template.is_empty() || template.len() > 200 {
        return Err("stream name must be 1 to 200 bytes".into());
    }
    if bare.contains(['{', '}']) {
        return Err(format!("stream name {template:?}: the only placeholder is {{gateway}}"));
    }
    if let Some(c) = bare.chars().find(|c| matches!(c, '.' | '*' | '>' | '/' | '\\') || c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "stream name {template:?} contains {c:?}; JetStream stream names may not hold '.', '*', '>', '/', '\\' or spaces"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: &[&str] = &["gateway", "device", "tag"];

    #[test]
    fn renders_names_as_single_tokens() {
        let t = SubjectTemplate::parse("relais.{gateway}.{device}.{tag}", ALL).unwrap();
        assert_eq!(t.render("gw", "pump1", "temperature"), "relais.gw.pump1.temperature");
        assert_eq!(t.render("gw", "pump-1.a", "x y>*"), "relais.gw.pump-1_a.x_y__", "a name never adds a token or a wildcard");
        assert_eq!(t.render("gw", "", "t"), "relais.gw._.t");
        assert_eq!(t.filter("line.5"), "relais.line_5.>");
        assert_eq!(SubjectTemplate::parse("{device}.{tag}", ALL).unwrap().filter("gw"), ">");
        assert_eq!(SubjectTemplate::parse("plant.{gateway}.batch", ALL).unwrap().filter("gw"), "plant.gw.batch");
        assert_eq!(SubjectTemplate::parse("a.b{device}", ALL).unwrap().filter("gw"), "a.>");
    }

    #[test]
    fn refuses_what_a_server_would_refuse() {
        assert!(SubjectTemplate::parse("relais.>", ALL).unwrap_err().contains("wildcard"));
        assert!(SubjectTemplate::parse("relais..x", ALL).unwrap_err().contains("empty token"));
        assert!(SubjectTemplate::parse("$JS.x", ALL).is_err());
        assert!(SubjectTemplate::parse("a.{device}", &["gateway"]).unwrap_err().contains("unknown placeholder {device}"));
        assert!(SubjectTemplate::parse("a.{tag", ALL).is_err());
        assert_eq!(stream_name("RELAIS_{gateway}", "line.5 a"), "RELAIS_line_5_a");
        assert!(check_stream("RELAIS_{gateway}").is_ok());
        assert!(check_stream("RELAIS.{gateway}").is_err());
        assert!(check_stream("R_{device}").is_err());
    }
}
