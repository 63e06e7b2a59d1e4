//! `type = "file"` (for `relais import`), `type = "watch"` (a folder) and
//! `type = "tail"` (a growing file). See `sample.toml` beside this file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::diag::{Diag, Item, Reader, de_item};
use crate::sources::common::{SourceCommon, parse_common};

/// `type = "file"`: settings for `relais import --config FILE PATH...`.
#[derive(Debug, Clone)]
pub struct FileSource {
    /// Name, device, parsing.
    pub common: SourceCommon,
}

/// `type = "watch"`: a folder whose new files are ingested once.
#[derive(Debug, Clone)]
pub struct WatchSource {
    /// Name, device, parsing.
    pub common: SourceCommon,
    /// The watched folder.
    pub folder: PathBuf,
    /// File name pattern (`*` and `?` wildcards), default `*`.
    pub pattern: String,
    /// A file is read once its size and modification time have not changed
    /// for this long (default 2 s), or up to 10 times as long while its last
    /// line has no newline; names starting with `.` or ending in
    /// `.tmp`/`.part` are never read (write then rename into place).
    pub settle: Duration,
    /// Where ingested files go (default `<folder>/done`).
    pub done_dir: PathBuf,
    /// Where files with rejected records go, with a `.errors` report beside
    /// them (default `<folder>/failed`).
    pub failed_dir: PathBuf,
}

/// Where `tail` starts on a file it has never seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// From the first line (default).
    Beginning,
    /// From the current end.
    End,
}

/// `type = "tail"`: a growing CSV or JSON Lines file, followed like `tail -F`.
#[derive(Debug, Clone)]
pub struct TailSource {
    /// Name, device, parsing.
    pub common: SourceCommon,
    /// The followed file.
    pub path: PathBuf,
    /// Start of a file never seen before.
    pub start_at: StartAt,
    /// How often the file is checked for new lines and rotation (default 500 ms).
    pub poll_interval: Duration,
}

/// Type-specific keys.
pub const WATCH_KEYS: &[&str] = &["folder", "pattern", "settle", "done_dir", "failed_dir"];
/// Type-specific keys.
pub const TAIL_KEYS: &[&str] = &["path", "start_at", "poll_interval"];

#[derive(Deserialize)]
struct RawWatch {
    folder: Spanned<String>,
    pattern: Option<String>,
    settle: Option<Spanned<String>>,
    done_dir: Option<String>,
    failed_dir: Option<String>,
}

#[derive(Deserialize)]
struct RawTail {
    path: Spanned<String>,
    start_at: Option<Spanned<String>>,
    poll_interval: Option<Spanned<String>>,
}

/// Parses a `type = "file"` source.
pub fn parse_file(item: Item<'_>, d: &mut Diag<'_>, key: &str) -> Option<FileSource> {
    let (common, _) = parse_common(item, d, key, &[])?;
    Some(FileSource { common })
}

/// Parses a `type = "watch"` source; relative folders resolve against `base`.
pub fn parse_watch(item: Item<'_>, d: &mut Diag<'_>, key: &str, base: &Path) -> Option<WatchSource> {
    let (common, item) = parse_common(item, d, key, WATCH_KEYS)?;
    let key = format!("source {:?}", common.name);
    let raw: RawWatch = de_item(item, d, &key)?;
    let folder = base.join(raw.folder.get_ref());
    let settle = Reader::new(d, &key).duration(&raw.settle, "settle", Duration::from_secs(2));
    Some(WatchSource {
        done_dir: raw.done_dir.map_or_else(|| folder.join("done"), |p| base.join(p)),
        failed_dir: raw.failed_dir.map_or_else(|| folder.join("failed"), |p| base.join(p)),
        pattern: raw.pattern.unwrap_or_else(|| "*".into()),
        folder,
        settle,
        common,
    })
}

/// Parses a `type = "tail"` source; a relative path resolves against `base`.
pub fn parse_tail(item: Item<'_>, d: &mut Diag<'_>, key: &str, base: &Path) -> Option<TailSource> {
    let (common, item) = parse_common(item, d, key, TAIL_KEYS)?;
    let key = format!("source {:?}", common.name);
    let raw: RawTail = de_item(item, d, &key)?;
    let mut r = Reader::new(d, &key);
    let start_at = r.choice(
        &raw.start_at,
        "start_at",
        &[("beginning", StartAt::Beginning), ("start", StartAt::Beginning), ("end", StartAt::End)],
        StartAt::Beginning,
    );
    let poll_interval = r.duration(&raw.poll_interval, "poll_interval", Duration::from_millis(500));
    if common.parse.format == Some(crate::parse::spec::Format::Json) {
        d.error(raw.path.span(), &format!("{key} / format"), "tail reads line by line: use format = \"csv\" or \"jsonl\"");
    }
    Some(TailSource { path: base.join(raw.path.get_ref()), start_at, poll_interval, common })
}
