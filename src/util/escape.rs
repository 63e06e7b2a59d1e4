//! Names that come from data (a JSON key, a CSV column, a file name, an MQTT
//! topic level, an HTTP path) as they may appear in a log line.
//!
//! tracing's text format writes a `%` field with its `Display` as it is, and
//! a `?` field or a `{:?}` in the message with `Debug`. A name written with
//! `Display` that holds a newline starts a new line in the log, and whoever
//! controls the data can forge an `ERROR … relais stopped` line; ANSI escape
//! sequences can rewrite what a terminal shows. [`escape`] writes such a name
//! with control characters (and the Unicode line and paragraph separators)
//! escaped the way Rust's `Debug` escapes them (`\n`, `\r`, `\t`, `\u{1b}`),
//! without the quotes, and a backslash doubled so an escaped form cannot be
//! faked either. Everything else is written as it is.
//!
//! Use it for every name from data that reaches a log line:
//! `tracing::info!(field = %escape(name), "...")`, and in messages
//! `format!("... {} ...", escape(name))`.

use std::fmt;

/// A name from data, written safely in a log line (see the module docs).
#[derive(Debug, Clone, Copy)]
pub struct Escaped<'a>(pub &'a str);

/// Wraps `name` so that its `Display` is safe in a one-line log record.
pub fn escape(name: &str) -> Escaped<'_> {
    Escaped(name)
}

fn needs_escape(c: char) -> bool {
    c.is_control() || c == '\\' || matches!(c, '\u{2028}' | '\u{2029}')
}

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(i) = rest.find(needs_escape) {
            f.write_str(&rest[..i])?;
            let c = rest[i..].chars().next().unwrap_or_default();
            match c {
                '\\' => f.write_str("\\\\")?,
                c => write!(f, "{}", c.escape_debug())?,
            }
            rest = &rest[i + c.len_utf8()..];
        }
        f.write_str(rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_never_leave_the_line() {
        let forged = "temp\n2026-12-06T05:00:00Z ERROR relais stopped\r\x1b[2J\u{2028}\\n";
        let s = escape(forged).to_string();
        assert_eq!(s, "temp\\n2026-12-06T05:00:00Z ERROR relais stopped\\r\\u{1b}[2J\\u{2028}\\\\n");
        assert!(!s.chars().any(|c| c.is_control()));
        assert_eq!(escape("Température °C / débit").to_string(), "Température °C / débit");
        assert_eq!(escape("").to_string(), "");
    }
}
