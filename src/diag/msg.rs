//! The texts of the generic configuration errors, in one place: what was
//! found and what was expected. Component-specific rules (a keep-alive
//! shorter than the session timeout) keep their own texts beside the rule;
//! everything a [`super::Reader`] or the item helpers report is worded here.

use std::fmt::Display;
use std::time::Duration;

use crate::units::format_duration;

/// A number outside its range: `300 is out of range; expected 1..=255`
/// (`expected 0 or more` when there is no upper bound).
pub fn out_of_range(found: impl Display, lo: impl Display, hi: Option<impl Display>) -> String {
    match hi {
        Some(hi) => format!("{found} is out of range; expected {lo}..={hi}"),
        None => format!("{found} is out of range; expected {lo} or more"),
    }
}

/// A duration outside its range, as written: `"2d" is out of range; expected 1ms..=1d`.
pub fn duration_out_of_range(found: &str, lo: Duration, hi: Duration) -> String {
    format!("{found:?} is out of range; expected {}..={}", format_duration(lo), format_duration(hi))
}

/// A duration below its minimum, as written: `"5ms" is too short; the minimum is 10ms`.
pub fn too_short(found: &str, min: Duration) -> String {
    format!("{found:?} is too short; the minimum is {}", format_duration(min))
}

/// A zero duration where time must pass: `commit_timeout must be above 0`.
pub fn not_zero(name: &str) -> String {
    format!("{name} must be above 0")
}

/// A size below its minimum: `must be at least 1MiB`, `must be at least 1 bytes`.
pub fn size_too_small(min: u64) -> String {
    let t = size_text(min);
    if t.ends_with('B') { format!("must be at least {t}") } else { format!("must be at least {t} bytes") }
}

/// A size outside its range: `max_message_bytes must be in 1KiB..=16MiB`.
pub fn size_out_of_range(name: &str, lo: u64, hi: u64) -> String {
    format!("{name} must be in {}..={}", size_text(lo), size_text(hi))
}

/// A size value of the wrong TOML type.
pub fn not_a_size(found: impl Display) -> String {
    format!("expected a size such as \"128KiB\", found {found}")
}

/// A negative size.
pub fn negative_size(found: i64) -> String {
    format!("size {found} is negative")
}

/// Sizes as configs write them: `1KiB`, `16MiB`, `1000`.
fn size_text(b: u64) -> String {
    for (unit, len) in [("TiB", 1u64 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
        if b >= len && b.is_multiple_of(len) {
            return format!("{}{unit}", b / len);
        }
    }
    b.to_string()
}

/// Not a socket address: `"localhost" is not an address like "127.0.0.1:5020"`.
pub fn not_an_address(found: &str, example: &str) -> String {
    format!("{found:?} is not an address like {example:?}")
}

/// A value that is not one of the choices: `unknown durability "ful";
/// expected "normal" or "full"`.
pub fn unknown_choice(name: &str, found: &str, choices: &[&str]) -> String {
    format!("unknown {name} {found:?}; expected {}", alternatives(choices))
}

/// `"a"`, `"a" or "b"`, `"a", "b" or "c"`.
pub fn alternatives(choices: &[&str]) -> String {
    let quoted: Vec<String> = choices.iter().map(|c| format!("{c:?}")).collect();
    match quoted.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

/// A key that is not known in its table, with a suggestion when one is close.
pub fn unknown_key(name: &str, suggestion: Option<&str>, known: &[&str]) -> String {
    unknown_entry("key", name, suggestion, known)
}

/// An unknown `what` (`key`, or `table` for a sub-table or list of tables
/// such as `[[device.tags]]`), with a suggestion when one is close.
pub fn unknown_entry(what: &str, name: &str, suggestion: Option<&str>, known: &[&str]) -> String {
    let hint = suggestion.map(|c| format!("did you mean `{c}`? ")).unwrap_or_default();
    format!("unknown {what} `{name}`; {hint}expected one of: {}", known.join(", "))
}

/// A single table where a list of tables is expected.
pub fn not_a_list_of_tables(header: &str) -> String {
    format!("expected a list of tables: write [[{header}]] (two brackets), once per entry")
}

/// A name given twice in one list.
pub fn duplicate(what: &str, first_line: usize) -> String {
    format!("duplicate {what} (first defined on line {first_line})")
}

/// Keys (or key endings) that hold durations, for a better type error.
const DURATION_KEYS: &[&str] = &["interval", "timeout", "max_age", "settle", "keep_alive", "reconnect_max", "tick", "delay"];

/// A serde error about `key` (the key's own name, when known), with a hint
/// for the mistakes people make: a duration written as a number, a Modicon
/// reference where a PDU address is taken.
pub fn type_error(serde_message: &str, key: Option<&str>) -> String {
    let is_duration = key.is_some_and(|k| DURATION_KEYS.iter().any(|d| k.ends_with(d)));
    let hint = match key {
        Some(_) if serde_message.contains("expected a string") && is_duration => {
            " (durations are text with a unit, e.g. \"1s\", \"500ms\", \"7d\")"
        }
        // Where a Modicon reference is not taken (the simulator).
        Some("address") if serde_message.contains("invalid type: string") => {
            " (a 0-based PDU address as a number: 40001 is table = \"holding\", address = 0)"
        }
        _ => "",
    };
    format!("{}{hint}", plain_words(serde_message, is_duration))
}

/// A serde type error in plain words: `invalid type: string "1s", expected
/// i64` → `invalid type: expected an integer, found the text "1s"`;
/// `expected a string` for a duration key (`is_duration`) → `expected a
/// duration like "500ms"`. Other messages are returned unchanged.
pub fn plain_words(msg: &str, is_duration: bool) -> String {
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = msg.strip_prefix(prefix)
            && let Some((got, want)) = rest.rsplit_once(", expected ")
        {
            return format!("{prefix}expected {}, found {}", type_words(want, is_duration), found_words(got));
        }
    }
    msg.to_string()
}

/// serde's name of an expected type, for people.
fn type_words(t: &str, is_duration: bool) -> String {
    match t.trim() {
        "i8" | "i16" | "i32" | "i64" | "u8" | "u16" | "u32" | "u64" | "usize" | "isize" | "an integer" => "an integer".into(),
        "f32" | "f64" | "a float" => "a number".into(),
        "a string" | "a borrowed string" | "string" if is_duration => "a duration like \"500ms\"".into(),
        "a string" | "a borrowed string" | "string" => "text in quotes".into(),
        "a boolean" | "bool" => "true or false".into(),
        "a sequence" => "a list in brackets, like [1, 2]".into(),
        "a map" => "a table".into(),
        t if t.starts_with("struct ") => "a table".into(),
        t => t.to_string(),
    }
}

/// serde's description of a found value, for people: `string "1s"` → `the text "1s"`.
fn found_words(f: &str) -> String {
    let f = f.trim();
    let strip = |s: &str| s.trim().trim_matches('`').to_string();
    if let Some(v) = f.strip_prefix("string ") {
        format!("the text {}", v.trim())
    } else if let Some(v) = f.strip_prefix("integer ") {
        format!("the integer {}", strip(v))
    } else if let Some(v) = f.strip_prefix("floating point ") {
        format!("the number {}", strip(v))
    } else if let Some(v) = f.strip_prefix("boolean ") {
        strip(v)
    } else if f == "sequence" {
        "a list".into()
    } else if f == "map" {
        "a table".into()
    } else {
        f.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts() {
        assert_eq!(alternatives(&["a", "b", "c"]), "\"a\", \"b\" or \"c\"");
        assert_eq!(alternatives(&["a"]), "\"a\"");
        assert_eq!(out_of_range(300, 1, Some(255)), "300 is out of range; expected 1..=255");
        assert_eq!(out_of_range(-1, 0, None::<i64>), "-1 is out of range; expected 0 or more");
        assert_eq!(size_out_of_range("max_message_bytes", 1024, 16 << 20), "max_message_bytes must be in 1KiB..=16MiB");
        assert_eq!(
            duration_out_of_range("2d", Duration::from_millis(1), Duration::from_secs(86_400)),
            "\"2d\" is out of range; expected 1ms..=1d"
        );
        assert_eq!(too_short("5ms", Duration::from_millis(10)), "\"5ms\" is too short; the minimum is 10ms");
        assert_eq!(
            plain_words("invalid type: string \"one\", expected i64", false),
            "invalid type: expected an integer, found the text \"one\""
        );
        assert_eq!(
            plain_words("invalid type: integer `5`, expected a string", true),
            "invalid type: expected a duration like \"500ms\", found the integer 5"
        );
        assert_eq!(plain_words("missing field `name`", false), "missing field `name`");
    }
}
