//! Typed readers of configuration values, with one parse context.
//!
//! A [`Reader`] is the diagnostics of the file plus the key of the table
//! being read (`device "pump1"`). Each reader takes the raw value as serde
//! left it (`Option<Spanned<…>>`), the key's name and a default: an absent
//! key gives the default; a wrong value records a located error under
//! `{table} / {name}` (texts in [`super::msg`]) and also gives the default,
//! so reading goes on and every error of the file is reported at once.

use std::fmt::Display;
use std::ops::RangeInclusive;
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{Diag, msg};

/// A raw value of a text key.
pub type Text = Option<Spanned<String>>;

/// A size as written: text with a unit (`"512MiB"`, see
/// [`crate::units::parse_size`]) or a plain number of bytes.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged, expecting = "a size such as \"512MiB\" or a number of bytes")]
pub enum Size {
    /// A number of bytes.
    Bytes(i64),
    /// Text with a unit.
    Text(String),
}

impl Size {
    /// The number of bytes.
    pub fn bytes(&self) -> Result<u64, String> {
        match self {
            Size::Bytes(b) if *b >= 0 => Ok(*b as u64),
            Size::Bytes(b) => Err(msg::negative_size(*b)),
            Size::Text(t) => crate::units::parse_size(t),
        }
    }
}

/// Reads an optional duration key (`"500ms"`, `"2s"`), recording a bad one
/// under `key` and using `default` instead.
pub fn duration(d: &mut Diag<'_>, v: &Text, key: &str, default: Duration) -> Duration {
    match v {
        None => default,
        Some(s) => crate::units::parse_duration(s.get_ref()).unwrap_or_else(|e| {
            d.error(s.span(), key, e);
            default
        }),
    }
}

/// A size key (`"16MiB"`, or a number of bytes): `default` when absent; an
/// error (and `default`) when unreadable or outside `range`.
pub fn size(d: &mut Diag<'_>, v: &Option<Spanned<Size>>, key: &str, name: &str, default: u64, range: RangeInclusive<u64>) -> u64 {
    let Some(s) = v else { return default };
    match s.get_ref().bytes() {
        Ok(n) if range.contains(&n) => n,
        Ok(_) if *range.end() == u64::MAX => {
            d.error(s.span(), key, msg::size_too_small(*range.start()));
            default
        }
        Ok(_) => {
            d.error(s.span(), key, msg::size_out_of_range(name, *range.start(), *range.end()));
            default
        }
        Err(e) => {
            d.error(s.span(), key, e);
            default
        }
    }
}

/// The parse context of one table: the file's diagnostics and the table's
/// key, so each key is read with one call and reported as `{table} / {name}`.
pub struct Reader<'d, 'a> {
    d: &'d mut Diag<'a>,
    key: String,
}

impl<'d, 'a> Reader<'d, 'a> {
    /// Reads the table named `key` (`device "pump1"`, `buffer`).
    pub fn new(d: &'d mut Diag<'a>, key: impl Into<String>) -> Self {
        Reader { d, key: key.into() }
    }

    /// The table's key.
    pub fn table(&self) -> &str {
        &self.key
    }

    /// The key of `name` in the table: `device "pump1" / timeout` (the
    /// table's own key for an empty name).
    pub fn key(&self, name: &str) -> String {
        match (self.key.is_empty(), name.is_empty()) {
            (true, _) => name.to_string(),
            (false, true) => self.key.clone(),
            (false, false) => format!("{} / {name}", self.key),
        }
    }

    /// The file's diagnostics, for what the readers do not cover.
    pub fn diag(&mut self) -> &mut Diag<'a> {
        self.d
    }

    /// Records an error about key `name` at `span`.
    pub fn error(&mut self, span: std::ops::Range<usize>, name: &str, message: impl Into<String>) {
        let key = self.key(name);
        self.d.error(span, &key, message);
    }

    /// Records a warning about key `name` at `span`.
    pub fn warn(&mut self, span: std::ops::Range<usize>, name: &str, message: impl Into<String>) {
        let key = self.key(name);
        self.d.warn(span, &key, message);
    }

    /// Errors recorded so far in the whole file (compare before and after).
    pub fn error_count(&self) -> usize {
        self.d.error_count()
    }

    /// A duration (`"500ms"`, `"2s"`, `"7d"`).
    pub fn duration(&mut self, v: &Text, name: &str, default: Duration) -> Duration {
        let key = self.key(name);
        duration(self.d, v, &key, default)
    }

    /// A duration within `range`; `Duration::MAX` as the end means no upper
    /// bound (then the error says "too short").
    pub fn duration_in(&mut self, v: &Text, name: &str, default: Duration, range: RangeInclusive<Duration>) -> Duration {
        let x = self.duration(v, name, default);
        match v {
            Some(s) if !range.contains(&x) => {
                let m = if *range.end() == Duration::MAX {
                    msg::too_short(s.get_ref(), *range.start())
                } else {
                    msg::duration_out_of_range(s.get_ref(), *range.start(), *range.end())
                };
                self.error(s.span(), name, m);
                default
            }
            _ => x,
        }
    }

    /// A duration above zero.
    pub fn nonzero_duration(&mut self, v: &Text, name: &str, default: Duration) -> Duration {
        let x = self.duration(v, name, default);
        match v {
            Some(s) if x.is_zero() => {
                self.error(s.span(), name, msg::not_zero(name));
                default
            }
            _ => x,
        }
    }

    /// A size within `range` bytes (`u64::MAX` as the end: no upper bound).
    pub fn size(&mut self, v: &Option<Spanned<Size>>, name: &str, default: u64, range: RangeInclusive<u64>) -> u64 {
        let key = self.key(name);
        size(self.d, v, &key, name, default, range)
    }

    /// An integer within `range` (`i64::MAX` as the end: no upper bound),
    /// converted to `T` (the range must fit `T`).
    pub fn int<T: TryFrom<i64>>(&mut self, v: &Option<Spanned<i64>>, name: &str, range: RangeInclusive<i64>, default: T) -> T {
        self.int_opt(v, name, range).unwrap_or(default)
    }

    /// [`Reader::int`] without a default: `None` when absent or wrong.
    pub fn int_opt<T: TryFrom<i64>>(&mut self, v: &Option<Spanned<i64>>, name: &str, range: RangeInclusive<i64>) -> Option<T> {
        self.int_at(v.as_ref()?, name, range)
    }

    /// [`Reader::int_opt`] of a required key: `None` when wrong.
    pub fn int_at<T: TryFrom<i64>>(&mut self, s: &Spanned<i64>, name: &str, range: RangeInclusive<i64>) -> Option<T> {
        let x = *s.get_ref();
        if range.contains(&x)
            && let Ok(t) = T::try_from(x)
        {
            return Some(t);
        }
        let hi = (*range.end() != i64::MAX).then_some(*range.end());
        self.error(s.span(), name, msg::out_of_range(x, range.start(), hi));
        None
    }

    /// A socket address (`"127.0.0.1:5020"`); a wrong one is reported with
    /// `example` as the expected shape. `None` when absent or wrong.
    pub fn socket_addr(&mut self, v: &Text, name: &str, example: &str) -> Option<std::net::SocketAddr> {
        let s = v.as_ref()?;
        match s.get_ref().parse() {
            Ok(a) => Some(a),
            Err(_) => {
                self.error(s.span(), name, msg::not_an_address(s.get_ref(), example));
                None
            }
        }
    }

    /// One of `options` (`(text, value)`; a value listed again under
    /// another text is an alias, accepted but not offered in the message).
    pub fn choice<T: Copy + PartialEq>(&mut self, v: &Text, name: &str, options: &[(&str, T)], default: T) -> T {
        self.choice_by(v, name, options, default, |a, b| a == b)
    }

    /// [`Reader::choice`] ignoring case, `_` and `-` (`SignAndEncrypt`,
    /// `sign_and_encrypt`).
    pub fn choice_loose<T: Copy + PartialEq>(&mut self, v: &Text, name: &str, options: &[(&str, T)], default: T) -> T {
        let norm = |s: &str| s.to_ascii_lowercase().replace(['_', '-'], "");
        self.choice_by(v, name, options, default, |a, b| norm(a) == norm(b))
    }

    fn choice_by<T: Copy + PartialEq>(
        &mut self,
        v: &Text,
        name: &str,
        options: &[(&str, T)],
        default: T,
        same: impl Fn(&str, &str) -> bool,
    ) -> T {
        let Some(s) = v else { return default };
        if let Some((_, t)) = options.iter().find(|(n, _)| same(n, s.get_ref())) {
            return *t;
        }
        let mut offered: Vec<&str> = Vec::new();
        for (i, (n, t)) in options.iter().enumerate() {
            if !options[..i].iter().any(|(_, u)| u == t) {
                offered.push(n);
            }
        }
        self.error(s.span(), name, msg::unknown_choice(name, s.get_ref(), &offered));
        default
    }

    /// A value read with its `FromStr` (byte orders, tables, data types),
    /// whose error text is the message; `None` when absent or wrong.
    pub fn parsed<T: FromStr>(&mut self, v: &Text, name: &str) -> Option<T>
    where
        T::Err: Display,
    {
        self.parsed_at(v.as_ref()?, name)
    }

    /// [`Reader::parsed`] of a required key: `None` when wrong.
    pub fn parsed_at<T: FromStr>(&mut self, s: &Spanned<String>, name: &str) -> Option<T>
    where
        T::Err: Display,
    {
        match s.get_ref().parse::<T>() {
            Ok(x) => Some(x),
            Err(e) => {
                self.error(s.span(), name, e.to_string());
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads `text` as one table into `T`, then runs `read` on it; returns
    /// what `read` gave and every error as `line:col: key: message`.
    fn read<T: serde::de::DeserializeOwned, R>(text: &str, read: impl FnOnce(&mut Reader<'_, '_>, T) -> R) -> (R, Vec<String>) {
        let mut d = Diag::new("t.toml", text);
        let doc = toml::de::DeTable::parse(text).expect("valid TOML");
        let item = Spanned::new(doc.span(), toml::de::DeValue::Table(doc.into_inner()));
        let raw: T = super::super::de_item(item, &mut d, "t").expect("raw table");
        let out = read(&mut Reader::new(&mut d, "t"), raw);
        let errs = match d.finish() {
            Ok(_) => Vec::new(),
            Err(e) => e.0.iter().map(|e| format!("{}:{}: {}: {}", e.line, e.col, e.key, e.message)).collect(),
        };
        (out, errs)
    }

    #[derive(Deserialize)]
    struct Raw {
        a: Text,
        b: Option<Spanned<i64>>,
        c: Text,
        s: Option<Spanned<Size>>,
    }

    #[test]
    fn every_wrong_value_is_reported_with_its_place_and_the_defaults_are_kept() {
        let text = "a = \"5ms\"\nb = 300\nc = \"ful\"\ns = \"2KiB\"\n";
        let ((a, b, c, s), errs) = read(text, |r, raw: Raw| {
            (
                r.duration_in(&raw.a, "a", Duration::from_secs(1), Duration::from_millis(10)..=Duration::MAX),
                r.int::<u8>(&raw.b, "b", 1..=255, 7),
                r.choice(&raw.c, "c", &[("normal", 1), ("full", 2), ("f", 2)], 1),
                r.size(&raw.s, "s", 1 << 20, 4096..=1 << 30),
            )
        });
        assert_eq!((a, b, c, s), (Duration::from_secs(1), 7, 1, 1 << 20));
        assert_eq!(
            errs,
            [
                "1:5: t / a: \"5ms\" is too short; the minimum is 10ms",
                "2:5: t / b: 300 is out of range; expected 1..=255",
                "3:5: t / c: unknown c \"ful\"; expected \"normal\" or \"full\"",
                "4:5: t / s: s must be in 4KiB..=1GiB",
            ]
        );
    }

    #[test]
    fn good_values_aliases_and_absent_keys() {
        let text = "a = \"2s\"\nb = 0\nc = \"F\"\ns = 4096\n";
        let ((a, b, c, s, absent), errs) = read(text, |r, raw: Raw| {
            (
                r.duration_in(&raw.a, "a", Duration::from_secs(1), Duration::from_millis(10)..=Duration::from_secs(60)),
                r.int::<u64>(&raw.b, "b", 0..=i64::MAX, 7),
                r.choice_loose(&raw.c, "c", &[("normal", 1), ("full", 2), ("f", 2)], 1),
                r.size(&raw.s, "s", 1 << 20, 4096..=u64::MAX),
                r.duration(&None, "d", Duration::from_millis(500)),
            )
        });
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!((a, b, c, s, absent), (Duration::from_secs(2), 0, 2, 4096, Duration::from_millis(500)));
    }

    #[test]
    fn zero_durations_negative_sizes_and_parse_errors() {
        let text = "a = \"0\"\nb = -1\nc = \"x\"\ns = -5\n";
        let ((a, b, c, s), errs) = read(text, |r, raw: Raw| {
            (
                r.nonzero_duration(&raw.a, "a", Duration::from_secs(3)),
                r.int_opt::<u32>(&raw.b, "b", 0..=i64::MAX),
                r.parsed::<u8>(&raw.c, "c"),
                r.size(&raw.s, "s", 9, 1..=u64::MAX),
            )
        });
        assert_eq!((a, b, c, s), (Duration::from_secs(3), None, None, 9));
        assert_eq!(errs.len(), 4, "{errs:?}");
        assert!(errs[0].ends_with("t / a: a must be above 0"), "{errs:?}");
        assert!(errs[1].ends_with("t / b: -1 is out of range; expected 0 or more"), "{errs:?}");
        assert!(errs[2].starts_with("3:5: t / c: invalid digit"), "{errs:?}");
        assert!(errs[3].ends_with("t / s: size -5 is negative"), "{errs:?}");
    }
}
