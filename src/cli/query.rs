//! `relais query`: reads the local history (`[history]`, see
//! `processors::history`) read-only, so it runs beside `relais run`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::load;
use crate::model::Timestamp;
use crate::out;
use crate::processors::history::{output, query, spec, store};

/// `relais query` arguments.
#[derive(Args, Debug)]
pub struct QueryArgs {
    /// Configuration file (for its data_dir and [history] windows).
    #[arg(long, short)]
    pub config: PathBuf,
    /// Tag patterns on `device/tag`: 'pump1/*', '*/temperature', '*' (quote them).
    #[arg(required = true)]
    pub tags: Vec<String>,
    /// Start: `-1h`, `-30m`, `-2days` (back from now), `now`, or an RFC 3339 time.
    #[arg(long, default_value = "-1h", allow_hyphen_values = true)]
    pub from: String,
    /// End (exclusive; default now): same forms as --from.
    #[arg(long, allow_hyphen_values = true)]
    pub to: Option<String>,
    /// Bucket width: 10s, 1m, 15m, 1h, 1day (buckets align on UTC; multiples of 1m read the minute rollups, of 1h the hour rollups, others the raw samples).
    #[arg(long, default_value = "1m")]
    pub every: String,
    /// Dimensions kept besides time: device, tag (default), quality, or a comma list (tag,quality).
    #[arg(long)]
    pub by: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = spec::Format::Table)]
    pub format: spec::Format,
}

/// Runs the query: 0 with the rows, 1 when the history cannot be read, 2 on
/// a bad configuration or argument.
pub(super) fn run(a: &QueryArgs) -> ExitCode {
    let cfg = match load(&a.config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let Some(h) = cfg.history.filter(|h| h.enabled) else {
        eprintln!(
            "relais query: {} has no history: add a [history] section (see docs/history.md) and run relais with it",
            a.config.display()
        );
        return ExitCode::from(2);
    };
    let now = Timestamp::now().0;
    let s = match spec::Spec::parse(&a.tags, &a.from, a.to.as_deref(), &a.every, a.by.as_deref(), now) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("relais query: {e}");
            return ExitCode::from(2);
        }
    };
    let path = crate::processors::history::HistoryConfig::path(&cfg.gateway.data_dir);
    let answer = store::open_readonly(&path).and_then(|c| query::run(&c, &s, &h, now));
    let answer = match answer {
        Ok(x) => x,
        Err(e) => {
            eprintln!("relais query: {e:#}");
            return ExitCode::from(1);
        }
    };
    for n in &answer.notes {
        eprintln!("note: {n}");
    }
    match output::render(&answer.rows, a.format) {
        Ok(text) => {
            out!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("relais query: {e:#}");
            ExitCode::from(1)
        }
    }
}
