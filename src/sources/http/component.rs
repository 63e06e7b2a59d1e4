//! The HTTP folder's side of the component contract ([`crate::component`]):
//! `[[source]]` with `type = "http"` (`POST /ingest/{source}`).

use tokio::task::JoinHandle;

use super::config::HttpSource;
use crate::component::{Claim, Component, Ctx, DescribeCx, Kind, ParseCx, Resource};
use crate::diag::{Diag, Item};
use crate::sources::SourceCtx;
use crate::sources::common::describe;

/// The HTTP ingest kind.
pub struct Http;

impl Kind for Http {
    type Config = HttpSource;
    const TYPES: &'static [&'static str] = &["http"];

    fn parse(item: Item<'_>, d: &mut Diag<'_>, cx: &ParseCx<'_>) -> Option<HttpSource> {
        super::config::parse_http(item, d, cx.key, cx.base)
    }

    /// One server per listen address, shared by the sources that name it.
    async fn spawn(items: Vec<HttpSource>, ctx: &Ctx<'_>) -> anyhow::Result<Vec<JoinHandle<()>>> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        super::server::spawn(items, SourceCtx::new(ctx)?).await
    }
}

impl Component for HttpSource {
    fn kind(&self) -> &'static str {
        "http"
    }
    fn name(&self) -> &str {
        &self.common.name
    }
    fn describe(&self, _cx: &DescribeCx<'_>) -> String {
        describe(&self.common, &format!("http POST http://{}/ingest/{}", self.listen, self.common.name), None)
    }
    /// Sources on one listen address share its server.
    fn restart_group(&self) -> Option<String> {
        Some(format!("listen:{}", self.listen))
    }
    /// Its listen address (identical addresses share one server).
    fn claims(&self) -> Vec<Claim> {
        vec![Claim {
            resource: Resource::Listen(self.listen),
            owner: format!("source {:?}", self.common.name),
            key: format!("source {:?} / listen", self.common.name),
            span: Some(self.listen_span.clone()),
        }]
    }
}
