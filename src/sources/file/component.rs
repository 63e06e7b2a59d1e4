//! The file folder's side of the component contract ([`crate::component`]):
//! three `[[source]]` types, `file` (read by `relais import`), `watch` (a
//! folder) and `tail` (a growing file).

use tokio::task::JoinHandle;

use super::config::{FileSource, TailSource, WatchSource};
use crate::component::{Component, Ctx, DescribeCx, Kind, ParseCx};
use crate::diag::{Diag, Item};
use crate::sources::SourceCtx;
use crate::sources::common::describe;
use crate::units::format_duration;

/// `type = "file"`: settings for `relais import`; nothing runs by itself.
pub struct File;
/// `type = "watch"`.
pub struct Watch;
/// `type = "tail"`.
pub struct Tail;

impl Kind for File {
    type Config = FileSource;
    const TYPES: &'static [&'static str] = &["file"];

    fn parse(item: Item<'_>, d: &mut Diag<'_>, cx: &ParseCx<'_>) -> Option<FileSource> {
        super::config::parse_file(item, d, cx.key)
    }

    /// Nothing: `relais import` reads the files (see `app::import`).
    async fn spawn(_items: Vec<FileSource>, _ctx: &Ctx<'_>) -> anyhow::Result<Vec<JoinHandle<()>>> {
        Ok(Vec::new())
    }
}

impl Kind for Watch {
    type Config = WatchSource;
    const TYPES: &'static [&'static str] = &["watch"];

    fn parse(item: Item<'_>, d: &mut Diag<'_>, cx: &ParseCx<'_>) -> Option<WatchSource> {
        super::config::parse_watch(item, d, cx.key, cx.base)
    }

    async fn spawn(items: Vec<WatchSource>, ctx: &Ctx<'_>) -> anyhow::Result<Vec<JoinHandle<()>>> {
        let sctx = SourceCtx::new(ctx)?;
        items.into_iter().map(|w| super::watch::spawn(w, sctx.clone())).collect()
    }
}

impl Kind for Tail {
    type Config = TailSource;
    const TYPES: &'static [&'static str] = &["tail"];

    fn parse(item: Item<'_>, d: &mut Diag<'_>, cx: &ParseCx<'_>) -> Option<TailSource> {
        super::config::parse_tail(item, d, cx.key, cx.base)
    }

    async fn spawn(items: Vec<TailSource>, ctx: &Ctx<'_>) -> anyhow::Result<Vec<JoinHandle<()>>> {
        let sctx = SourceCtx::new(ctx)?;
        Ok(items.into_iter().map(|t| super::tail::spawn(t, sctx.clone())).collect())
    }
}

impl Component for FileSource {
    fn kind(&self) -> &'static str {
        "file"
    }
    fn name(&self) -> &str {
        &self.common.name
    }
    fn describe(&self, _cx: &DescribeCx<'_>) -> String {
        describe(&self.common, "file (relais import)", None)
    }
}

impl Component for WatchSource {
    fn kind(&self) -> &'static str {
        "watch"
    }
    fn name(&self) -> &str {
        &self.common.name
    }
    fn describe(&self, _cx: &DescribeCx<'_>) -> String {
        let what = format!("watch {} ({}), settle {}", self.folder.display(), self.pattern, format_duration(self.settle));
        describe(&self.common, &what, None)
    }
}

impl Component for TailSource {
    fn kind(&self) -> &'static str {
        "tail"
    }
    fn name(&self) -> &str {
        &self.common.name
    }
    fn describe(&self, _cx: &DescribeCx<'_>) -> String {
        describe(&self.common, &format!("tail {}", self.path.display()), None)
    }
}
