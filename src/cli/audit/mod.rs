//! `relais audit list|export --config FILE`: the write attempts recorded in
//! the buffer as `write.audit` events (every settled actuator write, from a
//! rule, an MQTT command or `relais write`; `src/component/actuate.rs`).
//!
//! Reads `<data_dir>/buffer.db` through a read-only SQLite connection, so it
//! works while `relais run` holds the buffer. The buffer keeps the recent
//! audit only: audit events are rows like samples, deleted by retention once
//! every sink delivered them; the sinks (MQTT `…/event/write.audit`, …)
//! hold the full history.

mod record;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};

use super::load;
use crate::buffer::audit::audit_events;
use crate::model::Timestamp;
use crate::outln;
use record::{AuditRecord, CSV_HEADER, Filter, parse_since};

/// What every `relais audit` subcommand takes: the config and the filters.
#[derive(Args, Debug)]
pub struct AuditArgs {
    /// Configuration file (for its data_dir).
    #[arg(long, short)]
    config: PathBuf,
    /// Only writes settled since then: a duration back from now ("30m", "1h", "7d") or an RFC 3339 time.
    #[arg(long)]
    since: Option<String>,
    /// Only this device.
    #[arg(long)]
    device: Option<String>,
    /// Only this tag (name within its device).
    #[arg(long)]
    tag: Option<String>,
    /// Only this result.
    #[arg(long, value_enum)]
    result: Option<ResultArg>,
}

/// The results a write can have (`--result`).
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum ResultArg {
    /// The device confirmed the write.
    Ok,
    /// Not attempted (allow-list, limits, rate, unknown tag…).
    Refused,
    /// Attempted and not applied.
    Failed,
    /// Sent, answer lost: may or may not have been applied.
    Unknown,
}

/// Export formats.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per line.
    Jsonl,
    /// CSV with a header line.
    Csv,
}

/// `relais audit` subcommands.
#[derive(Subcommand, Debug)]
pub enum AuditCmd {
    /// A table of write attempts, newest last: time, who, device/tag, old, requested, result, read-back, reason.
    #[command(after_help = RETENTION_NOTE)]
    List {
        /// Config and filters.
        #[command(flatten)]
        args: AuditArgs,
        /// Most records shown (the newest ones).
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// The same records as JSON Lines (default) or CSV, oldest first.
    #[command(after_help = RETENTION_NOTE)]
    Export {
        /// Config and filters.
        #[command(flatten)]
        args: AuditArgs,
        /// Only the newest N records.
        #[arg(long)]
        limit: Option<usize>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Jsonl)]
        format: Format,
        /// Output file (default: stdout).
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
}

/// The help's note on retention (shown after the subcommands).
pub const RETENTION_NOTE: &str = "The buffer keeps the recent audit only: write.audit events are deleted by buffer retention once every \
sink delivered them (and by max_rows, max_bytes, max_age). The sinks forward them (MQTT topic <prefix>/relais/<gateway id>/event/write.audit): keep the history there.";

pub(super) fn run(what: AuditCmd) -> ExitCode {
    let (args, limit) = match &what {
        AuditCmd::List { args, limit } => (args, Some(*limit)),
        AuditCmd::Export { args, limit, .. } => (args, *limit),
    };
    let since = match args.since.as_deref().map(|s| parse_since(s, Timestamp::now())).transpose() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("relais audit: {e}");
            return ExitCode::from(2);
        }
    };
    let cfg = match load(&args.config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let filter = Filter {
        device: args.device.clone(),
        tag: args.tag.clone(),
        result: args.result.map(|r| r.to_possible_value().map(|v| v.get_name().to_string()).unwrap_or_default()),
    };
    let data_dir = cfg.gateway.data_dir.clone();
    let records = (|| {
        let c = crate::buffer::quarantine::open_readonly(&data_dir)?;
        let mut rows: Vec<AuditRecord> =
            audit_events(&c, since)?.iter().map(AuditRecord::from_stored).filter(|r| filter.accepts(r)).collect();
        if let Some(n) = limit {
            rows.drain(..rows.len().saturating_sub(n));
        }
        anyhow::Ok(rows)
    })();
    let result = records.and_then(|rows| match what {
        AuditCmd::List { .. } => {
            list(&rows, &data_dir);
            Ok(())
        }
        AuditCmd::Export { format, output, .. } => export(&rows, format, output),
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("relais audit: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// The table, columns as wide as their widest cell; the reason last, whole.
fn list(rows: &[AuditRecord], data_dir: &std::path::Path) {
    if rows.is_empty() {
        outln!("no write attempts recorded (that match) in {}", data_dir.join("buffer.db").display());
        outln!("note: the audit keeps write attempts for [buffer] audit_retention (default 90 days, at most audit_max_rows)");
        return;
    }
    let header = ["time", "who", "device/tag", "old", "requested", "result", "read-back", "reason"].map(String::from);
    let cells: Vec<[String; 8]> = rows.iter().map(AuditRecord::cells).collect();
    let mut width = [0usize; 8];
    for r in std::iter::once(&header).chain(&cells) {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    for r in std::iter::once(&header).chain(&cells) {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            if i == 7 {
                line += c;
            } else {
                line += &format!("{c:<w$}  ", w = width[i]);
            }
        }
        outln!("{}", line.trim_end());
    }
}

fn export(rows: &[AuditRecord], format: Format, output: Option<PathBuf>) -> anyhow::Result<()> {
    let out: Box<dyn Write> = match &output {
        Some(p) => Box::new(std::fs::File::create(p).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?),
        None => Box::new(std::io::stdout().lock()),
    };
    let written = match format {
        Format::Jsonl => jsonl(rows, out),
        Format::Csv => csv_out(rows, out),
    };
    match written {
        Ok(()) => Ok(()),
        // The reader went away (`| head`): stop quietly.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(anyhow::anyhow!("{}: {e}", output.map_or("stdout".into(), |p| p.display().to_string()))),
    }
}

fn jsonl(rows: &[AuditRecord], mut out: Box<dyn Write>) -> std::io::Result<()> {
    for r in rows {
        serde_json::to_writer(&mut out, r)?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

fn csv_out(rows: &[AuditRecord], out: Box<dyn Write>) -> std::io::Result<()> {
    let mut w = csv::Writer::from_writer(out);
    w.write_record(CSV_HEADER)?;
    for r in rows {
        w.write_record(r.csv_row())?;
    }
    w.flush()
}
