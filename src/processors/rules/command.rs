//! `relais rules test --config FILE --replay data.csv`: runs the rules of a
//! configuration over a CSV file, through the CSV parser of the `[[source]]`
//! entries ([`crate::parse::parse_input`]) and the same [`Engine`] as the
//! daemon, and prints every alarm transition and every write the rules would
//! make, with its time. Nothing is written anywhere (a dry run).
//!
//! The file is read in the wide layout: one timestamp column, one column per
//! tag; the tags belong to `--device` (default: the device of the first tag
//! the rules test), so a rule tests `device/column`. Naive times are read in
//! `--timezone` (default UTC); the delimiter is detected; the decimal
//! separator is `--decimal` (default `.`). An unreadable value becomes a bad
//! sample (lenient policy): rules see it as *unknown*. A row that cannot be
//! read at all (no timestamp) is reported with its line and skipped.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;

use super::config::read_rules;
use super::engine::{Decision, Engine};
use crate::parse::spec::{CsvSpec, Format, JsonSpec, Layout, MissingTs};
use crate::parse::timestamp::TsSpec;
use crate::parse::{Mapper, ParseSpec, Policy, parse_input};

/// `relais rules` subcommands.
#[derive(Subcommand, Debug)]
pub enum RulesCommand {
    /// Replay a CSV file through the rules and print the alarms and writes they would make, with times (no device is touched).
    Test {
        /// Configuration file with [[rule]] (a gateway configuration or a rules-only file).
        #[arg(long, short)]
        config: PathBuf,
        /// The CSV file: a timestamp column and one column per tag.
        #[arg(long)]
        replay: PathBuf,
        /// Device of the file's tags (default: the device of the first tag the rules test).
        #[arg(long)]
        device: Option<String>,
        /// Timestamp column.
        #[arg(long, default_value = "datetime")]
        timestamp_column: String,
        /// IANA zone of naive timestamps.
        #[arg(long, default_value = "UTC")]
        timezone: String,
        /// Decimal separator: `.` or `,`.
        #[arg(long, default_value = ".")]
        decimal: char,
    },
}

/// What a replay found.
#[derive(Debug, Default)]
pub struct Replay {
    /// Samples read.
    pub samples: u64,
    /// Rows rejected (with their reason).
    pub rejected: Vec<String>,
    /// The decisions, in order.
    pub decisions: Vec<Decision>,
}

/// The parse settings of a replay.
pub fn replay_spec(timestamp_column: &str, timezone: chrono_tz::Tz, decimal: char) -> ParseSpec {
    ParseSpec {
        format: Some(Format::Csv),
        policy: Policy::Lenient,
        ts: TsSpec { timezone: Some(timezone), ..TsSpec::default() },
        missing_timestamp: MissingTs::Reject,
        listed_only: false,
        csv: CsvSpec {
            delimiter: None,
            decimal,
            header: true,
            columns: None,
            layout: Layout::Wide,
            timestamp_column: Some(timestamp_column.to_string()),
            device_column: None,
            tag_column: "tag".into(),
            value_column: "value".into(),
            unit_column: None,
            quality_column: None,
            skip_columns: Vec::new(),
        },
        json: JsonSpec { timestamp: None, device: None },
        tags: Vec::new(),
    }
}

/// Replays `file` through `engine` (samples of `device`), in file order.
pub fn replay(engine: &mut Engine, file: &Path, device: &str, spec: &ParseSpec) -> Result<Replay, String> {
    let name = file.display().to_string();
    let f = std::fs::File::open(file).map_err(|e| format!("{name}: cannot read: {e}"))?;
    let mut mapper = Mapper::new("replay", device, &[]);
    let mut out = Replay::default();
    let mut on_record = |r: crate::parse::Record| match r {
        Ok(samples) => {
            for s in &samples {
                engine.on_sample(s);
            }
            out.samples += samples.len() as u64;
            out.decisions.extend(engine.take());
        }
        Err(q) => out.rejected.push(format!("{} {}: {}", q.origin, q.location, q.reason)),
    };
    parse_input(std::io::BufReader::new(f), Format::Csv, spec, &mut mapper, &name, &mut on_record).map_err(|e| format!("{name}: {e}"))?;
    Ok(out)
}

/// Runs a `relais rules` command: exit 0 on success, 2 on a configuration error, 1 otherwise.
pub fn run(cmd: RulesCommand) -> ExitCode {
    let RulesCommand::Test { config, replay: file, device, timestamp_column, timezone, decimal } = cmd;
    let text = match std::fs::read_to_string(&config) {
        Ok(t) => t,
        Err(e) => return fail(&format!("{}: cannot read: {e}", config.display()), 2),
    };
    let rules = match read_rules(&text, &config.display().to_string(), config.parent().unwrap_or(Path::new("."))) {
        Ok(r) => r,
        Err(e) => return fail(&e.to_string(), 2),
    };
    let Ok(tz) = timezone.parse::<chrono_tz::Tz>() else {
        return fail(&format!("--timezone {timezone:?} is not an IANA zone name (e.g. UTC, Europe/Moscow)"), 2);
    };
    if decimal != '.' && decimal != ',' {
        return fail("--decimal is `.` or `,`", 2);
    }
    let device = device.unwrap_or_else(|| {
        rules.first().and_then(|r| r.cond.leaves().first().map(|l| l.tag.split('/').next().unwrap_or("").to_string())).unwrap_or_default()
    });
    let n = rules.len();
    let mut engine = Engine::new(rules);
    let spec = replay_spec(&timestamp_column, tz, decimal);
    match replay(&mut engine, &file, &device, &spec) {
        Ok(r) => {
            for q in &r.rejected {
                eprintln!("rejected: {q}");
            }
            // A closed stdout (`| head`) ends the listing quietly.
            let _ = print(&r, n, &device, &file);
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e, 1),
    }
}

fn print(r: &Replay, n: usize, device: &str, file: &Path) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    for d in &r.decisions {
        writeln!(out, "{}", d.line())?;
    }
    let alarms = r.decisions.iter().filter(|d| matches!(d, Decision::Alarm(_))).count();
    writeln!(
        out,
        "{n} rule(s) over {} samples of device {device:?} from {}: {alarms} alarm transition(s), {} write(s) (not made: dry run){}",
        r.samples,
        file.display(),
        r.decisions.len() - alarms,
        if r.rejected.is_empty() { String::new() } else { format!(", {} row(s) rejected", r.rejected.len()) }
    )
}

fn fail(e: &str, code: u8) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(code)
}
