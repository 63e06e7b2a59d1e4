//! Command line (clap): `run`, `check`, `sim`, `demo`, `probe modbus`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, DeviceConfig, SinkConfig};
use crate::sim::{Sim, SimConfig};
use crate::sources::modbus::types::Table;

/// relais: Modbus → SQLite store-and-forward → MQTT gateway.
#[derive(Parser, Debug)]
#[command(name = "relais", version, about, long_about = None)]
pub struct Cli {
    /// Log format on stderr: `text` (human) or `json` (one object per line).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

/// Log formats.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable.
    Text,
    /// JSON lines.
    Json,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the gateway (the daemon).
    Run {
        /// Configuration file (TOML).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a configuration and print the plan: Modbus requests and MQTT topics.
    Check {
        /// Configuration file (TOML).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Run the line simulator (Modbus TCP stations).
    Sim {
        /// Simulator configuration file (TOML).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Simulator and gateway together on the built-in demo configuration.
    Demo {
        /// Data directory (default ./relais-data).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// MQTT broker (default mqtt://127.0.0.1:1883).
        #[arg(long)]
        broker: Option<String>,
    },
    /// Read a device once and print every interpretation of the data.
    Probe {
        #[command(subcommand)]
        what: Probe,
    },
    /// Import CSV or JSON files once (paths or globs), then forward them.
    Import {
        /// Configuration file (TOML) with a `[[source]]` of `type = "file"`.
        #[arg(long, short)]
        config: PathBuf,
        /// The file source to use when the config has several.
        #[arg(long)]
        source: Option<String>,
        /// Do not wait for the sinks to deliver before exiting.
        #[arg(long)]
        no_wait: bool,
        /// Files or globs (quote globs: 'logs/*.csv').
        #[arg(required = true)]
        paths: Vec<String>,
    },
    /// Records that could not be ingested: list, show one, export.
    Quarantine {
        #[command(subcommand)]
        what: QuarantineCmd,
    },
}

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

/// Probe targets.
#[derive(Subcommand, Debug)]
pub enum Probe {
    /// Modbus TCP.
    Modbus {
        /// `host:port` of the device.
        #[arg(long)]
        endpoint: String,
        /// Unit id (0–255, sent unchanged).
        #[arg(long, default_value_t = 1)]
        unit: u8,
        /// holding, input, coil or discrete_input.
        #[arg(long, default_value = "holding")]
        table: String,
        /// 0-based PDU address.
        #[arg(long)]
        address: u16,
        /// Registers or bits to read.
        #[arg(long, default_value_t = 2)]
        count: u16,
        /// Response timeout, e.g. 1s.
        #[arg(long, default_value = "1s")]
        timeout: String,
    },
}

fn init_logging(format: LogFormat, default: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let under_journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none();
    // A closed log pipe must never take the gateway down: no internal error
    // printing (it would panic on EPIPE).
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(ansi)
        .log_internal_errors(false);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text if under_journald => builder.without_time().with_ansi(false).try_init(),
        LogFormat::Text => builder.try_init(),
    };
    // Panics are logged like any error (one JSON line with --log-format json).
    std::panic::set_hook(Box::new(|info| {
        let place = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
        let msg = info.payload().downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| info.payload().downcast_ref::<String>().cloned()).unwrap_or_default();
        tracing::error!(location = %place, "internal error (panic): {msg}");
    }));
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime")
}

fn load(path: &Path) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|e| {
        eprintln!("{e}");
        eprintln!("\n{} error(s) in {}", e.0.len(), path.display());
        ExitCode::from(2)
    })
}

/// Entry point of the `relais` binary.
pub fn main() -> ExitCode {
    crate::memory::limit_arenas();
    let cli = Cli::parse();
    match cli.command {
        Command::Check { .. } | Command::Probe { .. } | Command::Quarantine { .. } => {}
        // A one-shot command prints its own report: only problems are logged.
        Command::Import { .. } => init_logging(cli.log_format, "warn"),
        _ => init_logging(cli.log_format, "info,tokio_modbus=warn,rumqttc=warn"),
    }
    match cli.command {
        Command::Check { config } => check(&config),
        Command::Run { config } => {
            let cfg = match load(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let rt = runtime();
            rt.block_on(async {
                let stop = CancellationToken::new();
                crate::app::cancel_on_signal(stop.clone());
                crate::app::run(cfg, stop, Default::default()).await
            })
            .map_or_else(fatal, |_| ExitCode::SUCCESS)
        }
        Command::Sim { config } => {
            let cfg = match SimConfig::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(2);
                }
            };
            runtime()
                .block_on(async {
                    let sim = Sim::start(cfg).await?;
                    tracing::info!(stations = sim.stations().len(), "simulator running; Ctrl-C to stop");
                    let stop = CancellationToken::new();
                    crate::app::cancel_on_signal(stop.clone());
                    stop.cancelled().await;
                    drop(sim);
                    anyhow::Ok(())
                })
                .map_or_else(fatal, |_| ExitCode::SUCCESS)
        }
        Command::Import { config, source, no_wait, paths } => {
            let cfg = match load(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let opts = crate::sources::file::import::ImportOptions { source, no_wait };
            runtime()
                .block_on(crate::sources::file::import::run(cfg, &paths, opts))
                .map_or_else(fatal, ExitCode::from)
        }
        Command::Quarantine { what } => quarantine(what),
        Command::Demo { data_dir, broker } => runtime().block_on(crate::demo::run(data_dir, broker)).map_or_else(fatal, |_| ExitCode::SUCCESS),
        Command::Probe { what: Probe::Modbus { endpoint, unit, table, address, count, timeout } } => {
            let table: Table = match table.parse() {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("--table: {e}");
                    return ExitCode::from(2);
                }
            };
            let timeout = match crate::units::parse_duration(&timeout) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("--timeout: {e}");
                    return ExitCode::from(2);
                }
            };
            match runtime().block_on(crate::sources::modbus::probe::probe(&endpoint, unit, table, address, count, timeout)) {
                Ok(report) => {
                    print!("{report}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("probe failed: {e}");
                    ExitCode::from(1)
                }
            }
        }
    }
}

fn fatal(e: anyhow::Error) -> ExitCode {
    // Logging is set up for the commands that can fail this way.
    tracing::error!("{e:#}");
    ExitCode::from(1)
}

fn quarantine(what: QuarantineCmd) -> ExitCode {
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
                    println!("the quarantine is empty");
                    return Ok(());
                }
                println!("{:<20} {:<16} {:>8}", "source", "reason", "records");
                for (s, r, n) in counts.iter().filter(|(s, _, _)| source.as_deref().is_none_or(|x| x == s)) {
                    println!("{s:<20} {r:<16} {n:>8}");
                }
                println!();
                for r in q::list(&c, source.as_deref(), limit)? {
                    println!("#{} {} {} {} {}: {}", r.id, ts(r.recv_ts), r.source, r.origin, r.location, r.reason);
                }
            }
            QuarantineCmd::Show { id, .. } => match q::show(&c, id)? {
                None => anyhow::bail!("no quarantined record #{id}"),
                Some(r) => {
                    println!("id:       {}\nwhen:     {}\nsource:   {}\norigin:   {}\nlocation: {}\nreason:   {}\nraw:\n{}", r.id, ts(r.recv_ts), r.source, r.origin, r.location, r.reason, r.raw);
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
                    writeln!(out, "{v}")?;
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

/// `relais check`: errors (exit 2) or the plan (exit 0).
fn check(path: &Path) -> ExitCode {
    let cfg = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    print!("{}", render_plan(&cfg));
    ExitCode::SUCCESS
}

/// The plan printed by `relais check`.
pub fn render_plan(cfg: &Config) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    for w in &cfg.warnings {
        let _ = writeln!(s, "warning: {w}");
    }
    let b = &cfg.buffer;
    let _ = writeln!(
        s,
        "gateway {}: data_dir {}, buffer max {} / {}{}, durability {}",
        cfg.gateway.id,
        cfg.gateway.data_dir.display(),
        crate::units::format_size(b.max_bytes),
        crate::units::format_duration(b.max_age),
        if b.max_rows > 0 { format!(" / {} rows", b.max_rows) } else { String::new() },
        b.durability
    );
    for d in &cfg.devices {
        match d {
            DeviceConfig::Modbus(m) => {
                let _ = writeln!(
                    s,
                    "\ndevice {} ({} {} unit {}, timeout {}, {} tags)",
                    m.name,
                    m.transport.protocol(),
                    m.endpoint,
                    m.unit_id,
                    crate::units::format_duration(m.timeout),
                    m.tags.len()
                );
                match crate::sources::modbus::poller::plan_device(m) {
                    Err(e) => {
                        let _ = writeln!(s, "  PLAN ERROR: {e}");
                    }
                    Ok(groups) => {
                        for (iv, reqs) in groups {
                            let _ = writeln!(s, "  every {}: {} request(s)", crate::units::format_duration(iv), reqs.len());
                            for r in reqs {
                                let names: Vec<&str> = r.tags.iter().map(|i| m.tags[*i].name.as_str()).collect();
                                let _ = writeln!(
                                    s,
                                    "    FC{} {:<14} start {:>5} count {:>4}  tags: {}",
                                    r.table.read_function(),
                                    r.table.as_str(),
                                    r.start,
                                    r.count,
                                    names.join(", ")
                                );
                            }
                        }
                    }
                }
            }
        }
    }
    for src in &cfg.sources {
        use crate::sources::SourceConfig as S;
        let c = src.common();
        let what = match src {
            S::File(_) => "file (relais import)".to_string(),
            S::Watch(w) => format!("watch {} ({}), settle {}", w.folder.display(), w.pattern, crate::units::format_duration(w.settle)),
            S::Tail(t) => format!("tail {}", t.path.display()),
            S::Http(h) => format!("http POST http://{}/ingest/{}", h.listen, c.name),
            S::MqttIn(m) => format!("mqtt-in {} topics {}", m.conn.broker, m.topics.join(" ")),
        };
        let fmt = c.parse.format.map_or("by extension / Content-Type", |f| match f {
            crate::parse::spec::Format::Csv => "csv",
            crate::parse::spec::Format::Json => "json",
            crate::parse::spec::Format::JsonLines => "jsonl",
        });
        let policy = if c.parse.policy == crate::parse::Policy::Strict { "strict" } else { "lenient" };
        let _ = writeln!(s, "\nsource {} ({what}; format {fmt}, policy {policy}, device {})", c.name, c.device);
    }
    for sink in &cfg.sinks {
        match sink {
            SinkConfig::Mqtt(m) => {
                let _ = writeln!(
                    s,
                    "\nsink {} (mqtt {}, qos {}, format {}, status {})",
                    m.name, m.conn.broker, m.qos, m.format, m.status_topic
                );
                for d in &cfg.devices {
                    let DeviceConfig::Modbus(md) = d;
                    for t in &md.tags {
                        let topic = match m.format {
                            crate::sinks::mqtt::config::Format::Json => m.topic.render(&cfg.gateway.id, &md.name, &t.name),
                            crate::sinks::mqtt::config::Format::JsonBatch => m.batch_topic.render(&cfg.gateway.id, &md.name, ""),
                        };
                        let _ = writeln!(s, "  {}/{} -> {topic}", md.name, t.name);
                    }
                }
            }
        }
    }
    s
}
