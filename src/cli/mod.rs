//! The command line: one file per command (`check`, `quarantine`, `audit`,
//! `browse`, `probe`, `query`); `run`, `sim`, `import` and `demo` call into `app`, `sim` and
//! `demo`.

mod admin_client;
mod audit;
mod browse;
mod check;
mod lab;
mod probe;
mod proxy;
mod quarantine;
mod query;
mod reload;
mod status;
pub mod write;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;

pub use audit::AuditCmd;
pub use browse::OpcUaTarget;
pub use probe::Probe;
pub use proxy::ProxyArgs;
pub use quarantine::QuarantineCmd;
pub use query::QueryArgs;

use crate::config::Config;
use crate::sim::{Sim, SimConfig};

/// relais: Modbus TCP/RTU, OPC UA, CSV and JSON → SQLite store-and-forward → MQTT gateway.
#[derive(Parser, Debug)]
#[command(name = "relais", version, about, long_about = None)]
pub struct Cli {
    /// Log format on stderr: `text` (human) or `json` (one object per line).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// The command to run.
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
    /// Anomaly detectors: evaluate on labelled CSV files, fit and save a model.
    Detect {
        /// What to do.
        #[command(subcommand)]
        what: crate::processors::anomaly::command::DetectCommand,
    },
    /// Rules and alarms: replay a CSV file through the rules (dry run).
    Rules {
        /// What to do.
        #[command(subcommand)]
        what: crate::processors::rules::command::RulesCommand,
    },
    /// The fault bench: play a scenario of faults against the simulator, proxies and a gateway, and grade what was detected.
    Lab {
        /// What to do.
        #[command(subcommand)]
        what: lab::LabCmd,
    },
    /// Run the gateway (the daemon).
    Run {
        /// Configuration file (TOML).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Make the running daemon read its configuration file again (POST /api/reload on its [admin] listener; SIGHUP does the same).
    Reload {
        /// The daemon's configuration file: its [admin] section gives the address and the token.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a configuration and print the plan: Modbus requests, OPC UA subscriptions and polls, sources, MQTT topics.
    Check {
        /// Configuration file (TOML).
        #[arg(long, short, required_unless_present = "file", conflicts_with = "file")]
        config: Option<PathBuf>,
        /// Configuration file (TOML), also accepted without --config: `relais check relais.toml`.
        #[arg(value_name = "FILE")]
        file: Option<PathBuf>,
    },
    /// Run the line simulator (stations over Modbus TCP, Modbus RTU on a pseudo-terminal, and OPC UA).
    Sim {
        /// Simulator configuration file (TOML).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Simulator and gateway together: ./config/sim-demo.toml and ./config/demo.toml when present here, else the built-in copies.
    Demo {
        /// Data directory (default ./relais-data).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// MQTT broker (default mqtt://127.0.0.1:1883).
        #[arg(long)]
        broker: Option<String>,
    },
    /// Print an OPC UA server's address space as a tree (and a config snippet).
    Browse {
        /// Start node (default: the Objects folder, i=85); `nsu=` or `ns=` form.
        #[arg(long, default_value = "i=85")]
        node: String,
        /// Levels below the start node.
        #[arg(long, default_value_t = 3)]
        depth: usize,
        /// Print a `[[device]]` block with one tag per readable variable instead of the tree.
        #[arg(long)]
        snippet: bool,
        /// Also expand the standard objects (Server, Aliases…) below the Objects folder.
        #[arg(long)]
        all: bool,
        /// The server, its security and the gateway's identity.
        #[command(flatten)]
        server: OpcUaTarget,
    },
    /// Read a device once and print every interpretation of the data.
    Probe {
        /// What to probe.
        #[command(subcommand)]
        what: Probe,
    },
    /// A TCP fault proxy in front of a device or a broker: latency, bandwidth cap, black hole, reset, … (src/proxy/README.md), until Ctrl-C.
    Proxy(ProxyArgs),
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
        /// Read the files even if they were imported before with the same
        /// content and settings (their samples get new seq numbers).
        #[arg(long)]
        force: bool,
        /// Files or globs (quote globs: 'logs/*.csv').
        #[arg(required = true)]
        paths: Vec<String>,
    },
    /// Write one value to a device's tag, through the allow-list, limits and audit of the config (exit 0 ok, 1 refused/failed/unknown).
    Write {
        /// Configuration file (TOML); the tag must say `writable = true`.
        #[arg(long, short)]
        config: PathBuf,
        /// Check everything (allow-list, limits, encoding) but write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Device name.
        device: String,
        /// Tag name.
        tag: String,
        /// Value in engineering units: `true`, `false`, a number (negative ones too) or text.
        #[arg(allow_hyphen_values = true)]
        value: String,
    },
    /// Records that could not be ingested: list, show one, export.
    Quarantine {
        /// What to do with the quarantine.
        #[command(subcommand)]
        what: QuarantineCmd,
    },
    /// Local history: counts, min, max, mean and last of tags per time bucket (from [history], read-only beside relais run).
    Query(QueryArgs),
    /// Write attempts (rules, commands, `relais write`) recorded in the buffer: list, export as JSON Lines or CSV.
    #[command(after_help = audit::RETENTION_NOTE)]
    Audit {
        /// What to do with the audit.
        #[command(subcommand)]
        what: AuditCmd,
    },
    /// A snapshot of the running daemon from its admin API: devices, sinks, buffer, latest events.
    Status {
        /// Where the daemon is.
        #[command(flatten)]
        at: status::Where,
    },
    /// Committed samples and events of the running daemon as they come (its admin API's live stream), until Ctrl-C.
    Tail {
        /// Only tags matching this glob on device/tag, e.g. 'pump1/*' (quote it in the shell).
        #[arg(value_name = "GLOB")]
        pattern: Option<String>,
        /// Where the daemon is.
        #[command(flatten)]
        at: status::Where,
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
    // The simulator's OPC UA server logs a bare TCP connection as an ERROR:
    // `sim::logs::Downgrade` makes it a DEBUG line (`relais sim`, `demo`).
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let quiet = crate::sim::logs::Downgrade;
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).finish().with(quiet).try_init(),
        LogFormat::Text if under_journald => builder.without_time().with_ansi(false).finish().with(quiet).try_init(),
        LogFormat::Text => builder.finish().with(quiet).try_init(),
    };
    // Panics are logged like any error (one JSON line with --log-format json).
    std::panic::set_hook(Box::new(|info| {
        let place = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        tracing::error!(location = %place, "internal error (panic): {msg}");
    }));
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime")
}

/// Runs `f` on a new runtime, then shuts the runtime down without waiting
/// more than a second for blocking threads (a file read that has not
/// noticed the shutdown yet must not keep the process alive).
fn block_on<F: Future>(f: F) -> F::Output {
    let rt = runtime();
    let out = rt.block_on(f);
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    out
}

/// True when `path` is a gateway configuration (a top-level key other than
/// `rule`): `relais rules test` then checks it whole, like `relais check`
/// (a rule naming a tag its device lacks is an error, exit 2), before the
/// replay. A rules-only file (or an unreadable one) is left to the replay's
/// own reader, which reports it.
fn is_gateway_config(path: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(path) else { return false };
    text.parse::<toml::Table>().is_ok_and(|t| t.keys().any(|k| k != "rule"))
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
        Command::Check { .. }
        | Command::Reload { .. }
        | Command::Probe { .. }
        | Command::Quarantine { .. }
        | Command::Audit { .. }
        | Command::Query(_)
        | Command::Status { .. }
        | Command::Tail { .. }
        | Command::Detect { .. }
        | Command::Rules { .. } => {}
        // A one-shot command prints its own report: only problems are logged.
        Command::Import { .. } | Command::Browse { .. } | Command::Write { .. } => {
            init_logging(cli.log_format, "warn,opcua_client=off,opcua_core=off,opcua_crypto=off")
        }
        // The OPC UA library logs every reconnect step; relais reports them itself.
        _ => init_logging(
            cli.log_format,
            "info,tokio_modbus=off,rumqttc=warn,opcua_client=off,opcua_core=off,opcua_crypto=off,opcua_server=warn",
        ),
    }
    match cli.command {
        Command::Check { config, file } => check::run(&config.or(file).unwrap_or_default()),
        Command::Reload { config } => reload::run(&config),
        Command::Detect { what } => crate::processors::anomaly::command::run(what),
        Command::Rules { what } => {
            let crate::processors::rules::command::RulesCommand::Test { config, .. } = &what;
            if is_gateway_config(config)
                && let Err(code) = load(config)
            {
                return code;
            }
            crate::processors::rules::command::run(what)
        }
        Command::Run { config } => {
            let cfg = match load(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            block_on(async {
                let stop = CancellationToken::new();
                crate::app::cancel_on_signal(stop.clone());
                let opts = crate::app::RunOptions { config_path: Some(config), ..Default::default() };
                crate::app::run(cfg, stop, opts).await
            })
            .map_or_else(fatal, |_| ExitCode::SUCCESS)
        }
        Command::Sim { config } => sim(&config),
        Command::Lab { what } => lab::run(what),
        Command::Import { config, source, no_wait, force, paths } => {
            let cfg = match load(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let opts = crate::app::import::ImportOptions { source, no_wait, force, config_path: config };
            block_on(crate::app::import::run(cfg, &paths, opts)).map_or_else(fatal, ExitCode::from)
        }
        Command::Quarantine { what } => quarantine::run(what),
        Command::Audit { what } => audit::run(what),
        Command::Query(a) => query::run(&a),
        Command::Status { at } => status::status(&at),
        Command::Tail { pattern, at } => status::tail(&at, pattern.as_deref()),
        Command::Demo { data_dir, broker } => block_on(crate::demo::run(data_dir, broker)).map_or_else(fatal, |_| ExitCode::SUCCESS),
        Command::Browse { server, node, depth, snippet, all } => browse::run(server, &node, depth, snippet, all),
        Command::Probe { what } => probe::run(what),
        Command::Proxy(a) => proxy::run(a),
        Command::Write { config, dry_run, device, tag, value } => write::run(&config, &device, &tag, &value, dry_run),
    }
}

/// `relais sim`: the line simulator until Ctrl-C.
fn sim(config: &Path) -> ExitCode {
    let cfg = match SimConfig::load(config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if !cfg.missing_data.is_empty() {
        tracing::warn!(
            files = %cfg.missing_data.join(", "),
            "CSV files not found: their tags serve a random walk instead (put the SKAB files in ./data/skab, see scripts/get-skab.sh, or set RELAIS_DATA_PATH)"
        );
    }
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

fn fatal(e: anyhow::Error) -> ExitCode {
    // Logging is set up for the commands that can fail this way.
    tracing::error!("{e:#}");
    ExitCode::from(crate::util::exit::code_of(&e))
}
