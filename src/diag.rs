//! Located configuration errors: file, line, column and key.
//!
//! Every configuration error relais reports says where it is (`file:line:col`),
//! which key, what was found and what was expected. Loaders collect all errors
//! before giving up, so a user fixes a file in one pass.

use std::fmt;
use std::ops::Range;

/// One configuration error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// File name as given by the user.
    pub file: String,
    /// 1-based line (0 when unknown).
    pub line: usize,
    /// 1-based column (0 when unknown).
    pub col: usize,
    /// Key path, e.g. `device "pump1" / tag "temp" / type`.
    pub key: String,
    /// What is wrong and what was expected.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "{}:{}:{}: ", self.file, self.line, self.col)?;
        } else {
            write!(f, "{}: ", self.file)?;
        }
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

/// All the errors of one configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Collects errors against one source text.
#[derive(Debug)]
pub struct Diag<'a> {
    file: String,
    src: &'a str,
    errors: Vec<ConfigError>,
    warnings: Vec<ConfigError>,
}

impl<'a> Diag<'a> {
    /// A collector for `src`, read from `file`.
    pub fn new(file: impl Into<String>, src: &'a str) -> Self {
        Diag { file: file.into(), src, errors: Vec::new(), warnings: Vec::new() }
    }

    fn locate(&self, span: Option<Range<usize>>, key: &str, message: String) -> ConfigError {
        let (line, col) = match span {
            Some(r) => line_col(self.src, r.start),
            None => (0, 0),
        };
        // A message may quote a value: a URL in it never shows its credentials.
        let message = crate::util::redact::text(&message);
        ConfigError { file: self.file.clone(), line, col, key: key.to_string(), message }
    }

    /// Records an error at `span`.
    pub fn error(&mut self, span: Range<usize>, key: &str, message: impl Into<String>) {
        let e = self.locate(Some(span), key, message.into());
        self.errors.push(e);
    }

    /// Records an error without a location.
    pub fn error_unlocated(&mut self, key: &str, message: impl Into<String>) {
        let e = self.locate(None, key, message.into());
        self.errors.push(e);
    }

    /// Records a warning at `span` (reported, not fatal).
    pub fn warn(&mut self, span: Range<usize>, key: &str, message: impl Into<String>) {
        let e = self.locate(Some(span), key, message.into());
        self.warnings.push(e);
    }

    /// Records a TOML or serde error, prefixing its message with `key`.
    pub fn toml(&mut self, e: &toml::de::Error, key: &str, fallback: Range<usize>) {
        let msg = e.message().trim().to_string();
        let span = e.span().unwrap_or(fallback);
        self.error(span, key, msg);
    }

    /// True when no error was recorded.
    pub fn ok(&self) -> bool {
        self.errors.is_empty()
    }

    /// Warnings recorded so far.
    pub fn warnings(&self) -> &[ConfigError] {
        &self.warnings
    }

    /// Ends collection when errors were recorded: all of them, sorted by line.
    pub fn into_errors(self) -> ConfigErrors {
        let mut e = self.errors;
        e.sort_by_key(|e| (e.line, e.col));
        ConfigErrors(e)
    }

    /// Ends collection: the errors, if any.
    pub fn finish(self) -> Result<Vec<ConfigError>, ConfigErrors> {
        if self.errors.is_empty() {
            Ok(self.warnings)
        } else {
            let mut e = self.errors;
            e.sort_by_key(|e| (e.line, e.col));
            Err(ConfigErrors(e))
        }
    }
}

/// 1-based line and column of byte `offset` in `src`.
pub fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(src.len());
    let before = &src[..src.floor_char_boundary(offset)];
    let line = before.matches('\n').count() + 1;
    let col = before.rfind('\n').map_or(before.chars().count(), |p| before[p + 1..].chars().count()) + 1;
    (line, col)
}

/// Keys (or key endings) that hold durations, for a better type error.
const DURATION_KEYS: &[&str] = &["interval", "timeout", "max_age", "settle", "keep_alive", "reconnect_max", "tick", "delay"];

/// A TOML value with its span in the source.
pub type Item<'i> = toml::Spanned<toml::de::DeValue<'i>>;

/// Deserializes one TOML item into `T`, recording any error under `key`.
///
/// A value of the wrong type is reported with its key, then removed and the
/// table deserialized again, so that one mistake never hides the others; the
/// value returned then holds defaults for the removed keys (the recorded
/// errors still fail the configuration).
pub fn de_item<T: serde::de::DeserializeOwned>(mut item: Item<'_>, diag: &mut Diag<'_>, key: &str) -> Option<T> {
    let span = item.span();
    let mut removed: Vec<String> = Vec::new();
    for _ in 0..64 {
        // Which key holds which span, to name the key of a wrong-typed value.
        let spans: Vec<(String, Range<usize>)> = match item.get_ref() {
            toml::de::DeValue::Table(t) => t.iter().map(|(k, v)| (k.get_ref().to_string(), v.span())).collect(),
            _ => Vec::new(),
        };
        match T::deserialize(toml::de::ValueDeserializer::from(item.clone())) {
            Ok(v) => return Some(v),
            Err(e) => {
                let msg = e.message().trim().to_string();
                if removed.iter().any(|r| msg == format!("missing field `{r}`")) {
                    // A required key was reported already.
                    return None;
                }
                let found = e.span().and_then(|es| spans.iter().find(|(_, vs)| vs.start <= es.start && es.end <= vs.end)).cloned();
                let field = found.as_ref().map(|(k, _)| format!("{key} / {k}"));
                let hint = match found.as_ref().map(|(k, _)| k.as_str()) {
                    Some(k) if msg.contains("expected a string") && DURATION_KEYS.iter().any(|d| k.ends_with(d)) => {
                        " (durations are text with a unit, e.g. \"1s\", \"500ms\", \"7d\")"
                    }
                    // Where a Modicon reference is not taken (the simulator).
                    Some("address") if msg.contains("invalid type: string") => {
                        " (a 0-based PDU address as a number: 40001 is table = \"holding\", address = 0)"
                    }
                    _ => "",
                };
                diag.error(e.span().unwrap_or(span.clone()), field.as_deref().unwrap_or(key), format!("{msg}{hint}"));
                match found {
                    Some((k, _)) => {
                        take_key(&mut item, &k);
                        removed.push(k);
                    }
                    None => return None,
                }
            }
        }
    }
    None
}

/// Removes `name` from a table item and returns its value.
pub fn take_key<'i>(item: &mut Item<'i>, name: &str) -> Option<Item<'i>> {
    let toml::de::DeValue::Table(t) = item.get_mut() else {
        return None;
    };
    let k = t.keys().find(|k| k.get_ref().as_ref() == name)?.clone();
    t.remove(&k)
}

/// Reads string key `name` of a table item without removing it.
pub fn peek_str<'i>(item: &Item<'i>, name: &str) -> Option<(String, Range<usize>)> {
    let toml::de::DeValue::Table(t) = item.get_ref() else {
        return None;
    };
    t.iter().find(|(k, _)| k.get_ref().as_ref() == name).and_then(|(_, v)| match v.get_ref() {
        toml::de::DeValue::String(s) => Some((s.to_string(), v.span())),
        _ => None,
    })
}

/// The elements of an array-of-tables item, or an error saying it must be
/// written `[[header]]` (e.g. `[[device.tag]]`, not `[device.tag]`).
pub fn array_items<'i>(item: Item<'i>, diag: &mut Diag<'_>, key: &str) -> Vec<Item<'i>> {
    array_items_of(item, diag, key, key)
}

/// [`array_items`] with the TOML header name given apart from the key path.
pub fn array_items_of<'i>(item: Item<'i>, diag: &mut Diag<'_>, key: &str, header: &str) -> Vec<Item<'i>> {
    let span = item.span();
    match item.into_inner() {
        toml::de::DeValue::Array(a) => a.into_iter().collect(),
        _ => {
            diag.error(span, key, format!("expected a list of tables: write [[{header}]] (two brackets), once per entry"));
            Vec::new()
        }
    }
}

impl<'a> Diag<'a> {
    /// Number of errors recorded so far.
    pub fn error_count(&self) -> usize {
        self.errors.len()
    }

    /// The source text.
    pub fn source(&self) -> &'a str {
        self.src
    }
}

/// Reports every key of a table item that is not in `known` (each with its
/// own line, and a suggestion when a known key is close) and removes them, so
/// that the rest of the table is still checked.
pub fn reject_unknown_keys(item: &mut Item<'_>, known: &[&str], diag: &mut Diag<'_>, key: &str) {
    let toml::de::DeValue::Table(t) = item.get_mut() else {
        return;
    };
    let unknown: Vec<_> = t.keys().filter(|k| !known.contains(&k.get_ref().as_ref())).cloned().collect();
    for k in unknown {
        let name: &str = k.get_ref().as_ref();
        let hint = known
            .iter()
            .map(|c| (edit_distance(name, c), *c))
            .filter(|(d, _)| *d <= 2)
            .min()
            .map(|(_, c)| format!("did you mean `{c}`? "))
            .unwrap_or_default();
        diag.error(k.span(), key, format!("unknown key `{name}`; {hint}expected one of: {}", known.join(", ")));
        t.remove(&k);
    }
}

/// Levenshtein distance (for "did you mean").
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + (ca != *cb) as usize).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// A size key (`"16MiB"`, see [`crate::units::parse_size`]): `default`
/// when absent; an error (and `default`) when unreadable or below `min`.
pub fn size(d: &mut Diag<'_>, v: &Option<toml::Spanned<String>>, key: &str, default: u64, min: u64) -> u64 {
    let Some(s) = v else { return default };
    match crate::units::parse_size(s.get_ref()) {
        Ok(n) if n >= min => n,
        Ok(_) => {
            d.error(s.span(), key, format!("must be at least {min} bytes"));
            default
        }
        Err(e) => {
            d.error(s.span(), key, e);
            default
        }
    }
}

/// Reads an optional duration key (`"500ms"`, `"2s"`), recording a bad one
/// under `key` and using `default` instead.
pub fn duration(d: &mut Diag<'_>, v: &Option<toml::Spanned<String>>, key: &str, default: std::time::Duration) -> std::time::Duration {
    match v {
        None => default,
        Some(s) => crate::units::parse_duration(s.get_ref()).unwrap_or_else(|e| {
            d.error(s.span(), key, e);
            default
        }),
    }
}
