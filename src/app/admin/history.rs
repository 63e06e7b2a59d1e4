//! `GET /api/query`: the local history over the admin API, the same rows as
//! `relais query --format json` (see `processors::history`).
//!
//! Parameters: `tags` (patterns on `device/tag`, comma separated, required),
//! `from` (default `-1h`), `to` (default now), `every` (default `1m`), `by`
//! (default `tag`). A bad parameter gives `400` with `{"error": "…"}`;
//! without `[history]`, `404`. The query runs on the blocking pool with its
//! own read-only connection.

use std::collections::HashMap;
use std::path::PathBuf;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::model::Timestamp;
use crate::processors::history::{HistoryConfig, query, spec, store};

/// Where the handler finds the history.
#[derive(Debug, Clone)]
pub struct HistoryAccess {
    /// `history.db`.
    pub path: PathBuf,
    /// Its windows.
    pub cfg: HistoryConfig,
}

fn error(code: StatusCode, msg: impl Into<String>) -> Response {
    (code, axum::Json(serde_json::json!({"error": msg.into()}))).into_response()
}

/// Answers one query (after authorisation).
pub async fn answer(access: Option<HistoryAccess>, params: HashMap<String, String>) -> Response {
    let Some(h) = access.filter(|h| h.cfg.enabled) else {
        return error(StatusCode::NOT_FOUND, "no history on this gateway: add a [history] section to the configuration");
    };
    let p = |k: &str| params.get(k).map(String::as_str);
    let tags: Vec<String> = p("tags").unwrap_or("").split(',').map(str::trim).filter(|t| !t.is_empty()).map(String::from).collect();
    let now = Timestamp::now().0;
    let s = match spec::Spec::parse(&tags, p("from").unwrap_or("-1h"), p("to"), p("every").unwrap_or("1m"), p("by"), now) {
        Ok(s) => s,
        // The messages name the command-line flags; here they are parameters.
        Err(e) => return error(StatusCode::BAD_REQUEST, e.replace("--", "").replace("give one or more", "give tags=")),
    };
    let run = tokio::task::spawn_blocking(move || store::open_readonly(&h.path).and_then(|c| query::run(&c, &s, &h.cfg, now))).await;
    match run {
        Ok(Ok(a)) => axum::Json(a.rows).into_response(),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}
