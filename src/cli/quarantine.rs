//! `relais quarantine`: the records that could not be ingested.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use super::load;
use crate::outln;

/// `relais quarantine` subcommands.
#[derive(Subcommand, Debug)]
pub enum QuarantineCmd {
    /// Counts by source and reason, then the newest records.
    List {
        /// Configuration file (for its data_dir).
        #[arg(long, short)]
        config: PathBuf,
        /// Only this source.
        #[arg(long)]
        source: Option<String>,
        /// Most records shown.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// One record, with its raw text.
    Show {
        /// Configuration file (for its data_dir).
        #[arg(long, short)]
        config: PathBuf,
        /// Record id (from `list`).
        id: i64,
    },
    /// All records (or one source's) as JSON Lines.
    Export {
        /// Configuration file (for its data_dir).
        #[arg(long, short)]
        config: PathBuf,
        /// Only this source.
        #[arg(long)]
        source: Option<String>,
        /// Output file (default: stdout).
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
}

pub(super) fn run(what: QuarantineCmd) -> ExitCode {
    use crate::buffer::quarantine as q;
    let config = match &what {
        QuarantineCmd::List { config, .. } | QuarantineCmd::Show { config, .. } | QuarantineCmd::Export { config, .. } => config.clone(),
    };
    let cfg = match load(&config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let c = match q::open_readonly(&cfg.gateway.data_dir) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("relais quarantine: {e}");
            return ExitCode::from(1);
        }
    };
    let ts = |ns: i64| crate::model::format_rfc3339(crate::model::Timestamp(ns));
    let result: anyhow::Result<()> = (|| {
        match what {
            QuarantineCmd::List { source, limit, .. } => {
                let counts = q::counts(&c)?;
                if counts.is_empty() {
                    outln!("the quarantine is empty");
                    return Ok(());
                }
                outln!("{:<20} {:<16} {:>8}", "source", "reason", "records");
                for (s, r, n) in counts.iter().filter(|(s, _, _)| source.as_deref().is_none_or(|x| x == s)) {
                    outln!("{s:<20} {r:<16} {n:>8}");
                }
                outln!();
                for r in q::list(&c, source.as_deref(), limit)? {
                    outln!("#{} {} {} {} {}: {}", r.id, ts(r.recv_ts), r.source, r.origin, r.location, r.reason);
                }
            }
            QuarantineCmd::Show { id, .. } => match q::show(&c, id)? {
                None => anyhow::bail!("no quarantined record #{id}"),
                Some(r) => {
                    outln!(
                        "id:       {}\nwhen:     {}\nsource:   {}\norigin:   {}\nlocation: {}\nreason:   {}\nraw:\n{}",
                        r.id,
                        ts(r.recv_ts),
                        r.source,
                        r.origin,
                        r.location,
                        r.reason,
                        r.raw
                    );
                }
            },
            QuarantineCmd::Export { source, output, .. } => {
                use std::io::Write;
                let rows = q::list(&c, source.as_deref(), usize::MAX >> 1)?;
                let mut out: Box<dyn Write> = match output {
                    Some(p) => Box::new(std::fs::File::create(&p).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?),
                    None => Box::new(std::io::stdout().lock()),
                };
                for r in rows {
                    let mut v = serde_json::to_value(&r)?;
                    v["recv_ts"] = serde_json::Value::String(ts(r.recv_ts));
                    match writeln!(out, "{v}") {
                        Ok(()) => {}
                        // The reader went away (`| head`): stop quietly.
                        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
        Ok(())
    })();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("relais quarantine: {e}");
            ExitCode::from(1)
        }
    }
}
