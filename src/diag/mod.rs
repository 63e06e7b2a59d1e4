//! The one configuration reader: located errors (file, line, column and
//! key), the TOML item helpers and the typed readers every configuration
//! uses (the root config, every component's, the simulator's).
//!
//! Every configuration error relais reports says where it is (`file:line:col`),
//! which key, what was found and what was expected. Loaders collect all errors
//! before giving up, so a user fixes a file in one pass.
//!
//! - [`Diag`] collects the errors and warnings of one file;
//! - [`item`]: a TOML item with its span ([`Item`]): serde into a raw struct
//!   without stopping at the first wrong key ([`de_item`]), unknown keys
//!   ([`reject_unknown_keys`]), tables of tables ([`entries`], [`FirstSeen`]);
//! - [`read`]: the parse context [`Reader`] (the diagnostics and the key of
//!   the table being read) with typed readers for durations, sizes, integer
//!   ranges, choices and `FromStr` values, each with a default;
//! - [`msg`]: the texts of the generic errors, in one place.
//!
//! A component reads its table in three steps: reject unknown keys,
//! deserialize into a raw struct of `Option<Spanned<…>>` fields, then read
//! each field through a [`Reader`] (which records a located error and
//! returns the default when a value is wrong), and finally check the rules
//! that tie keys together (`keep_alive` below `session_timeout`).

pub mod item;
pub mod msg;
pub mod read;

pub use item::{
    FirstSeen, Item, array_items, array_items_of, closest, de_item, entries, peek_str, reject_unknown_keys, reject_unknown_keys_showing,
    take_key,
};
pub use read::{Reader, duration, size};

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

/// Reads a configuration file: its name as given (for error locations) and
/// its text, or the one error `{file}: cannot read: {reason}`.
pub fn read_file(path: &std::path::Path) -> Result<(String, String), ConfigErrors> {
    let file = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => Ok((file, text)),
        Err(e) => Err(ConfigErrors(vec![ConfigError { file, line: 0, col: 0, key: String::new(), message: format!("cannot read: {e}") }])),
    }
}

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

#[cfg(test)]
mod tests {
    #[test]
    fn an_unreadable_file_is_one_error_naming_it() {
        let e = super::read_file(std::path::Path::new("/nonexistent/relais.toml")).unwrap_err();
        assert_eq!(e.0.len(), 1);
        assert!(e.to_string().starts_with("/nonexistent/relais.toml: cannot read: "), "{e}");
    }
}
