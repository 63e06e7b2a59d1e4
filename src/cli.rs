//! Command line (clap): `run`, `check`, `sim`, `demo`, `probe modbus`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, DeviceConfig};
use crate::sim::{Sim, SimConfig};
use crate::sources::modbus::types::Table;
use crate::{out, outln};

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
    /// Run the gateway (the daemon).
    Run {
        /// Configuration file (TOML).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a configuration and print the plan: Modbus requests, OPC UA subscriptions and polls, sources, MQTT topics.
    Check {
        /// Configuration file (TOML).
        #[arg(long, short)]
        config: PathBuf,
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
        /// Server URL, `opc.tcp://host:port[/path]` (or use --config and --device).
        url: Option<String>,
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
        /// Take endpoint, security and identity from this configuration's device.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// The `protocol = "opcua"` device of --config.
        #[arg(long)]
        device: Option<String>,
        /// Security policy: None (default), Basic256Sha256, Aes128Sha256RsaOaep, Aes256Sha256RsaPss.
        #[arg(long)]
        security_policy: Option<String>,
        /// Security mode: None, Sign, SignAndEncrypt (default: SignAndEncrypt with a policy).
        #[arg(long)]
        security_mode: Option<String>,
        /// User name (the password is read from the environment variable of --password-env).
        #[arg(long)]
        username: Option<String>,
        /// Environment variable holding the password.
        #[arg(long, default_value = "RELAIS_OPCUA_PASSWORD")]
        password_env: String,
        /// PKI folder (the gateway's certificate and trust list).
        #[arg(long, default_value = "relais-data/pki")]
        pki_dir: PathBuf,
    },
    /// Read a device once and print every interpretation of the data.
    Probe {
        /// What to probe.
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
        /// Read the files even if they were imported before with the same
        /// content and settings (their samples get new seq numbers).
        #[arg(long)]
        force: bool,
        /// Files or globs (quote globs: 'logs/*.csv').
        #[arg(required = true)]
        paths: Vec<String>,
    },
    /// Records that could not be ingested: list, show one, export.
    Quarantine {
        /// What to do with the quarantine.
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
        Command::Check { .. } | Command::Probe { .. } | Command::Quarantine { .. } | Command::Detect { .. } => {}
        // A one-shot command prints its own report: only problems are logged.
        Command::Import { .. } | Command::Browse { .. } => {
            init_logging(cli.log_format, "warn,opcua_client=off,opcua_core=off,opcua_crypto=off")
        }
        // The OPC UA library logs every reconnect step; relais reports them itself.
        _ => init_logging(
            cli.log_format,
            "info,tokio_modbus=off,rumqttc=warn,opcua_client=off,opcua_core=off,opcua_crypto=off,opcua_server=warn",
        ),
    }
    match cli.command {
        Command::Check { config } => check(&config),
        Command::Detect { what } => crate::processors::anomaly::command::run(what),
        Command::Run { config } => {
            let cfg = match load(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            block_on(async {
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
        Command::Import { config, source, no_wait, force, paths } => {
            let cfg = match load(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let opts = crate::app::import::ImportOptions { source, no_wait, force, config_path: config };
            block_on(crate::app::import::run(cfg, &paths, opts)).map_or_else(fatal, ExitCode::from)
        }
        Command::Quarantine { what } => quarantine(what),
        Command::Demo { data_dir, broker } => block_on(crate::demo::run(data_dir, broker)).map_or_else(fatal, |_| ExitCode::SUCCESS),
        Command::Browse {
            url,
            node,
            depth,
            snippet,
            all,
            config,
            device,
            security_policy,
            security_mode,
            username,
            password_env,
            pki_dir,
        } => {
            let configured = device.is_some();
            let args = BrowseArgs { url, config, device, security_policy, security_mode, username, password_env, pki_dir };
            let (dev, pki_dir, gateway_id) = match browse_target(args) {
                Ok(x) => x,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(2);
                }
            };
            let run = async {
                let pki = crate::sources::opcua::client::Pki::open(&pki_dir, &gateway_id)?;
                pki.trust(&dev.trust)?;
                crate::sources::opcua::browse::browse(&dev, &pki, &gateway_id, &node, depth, all).await
            };
            match runtime().block_on(run) {
                Ok(found) if snippet => {
                    // Without a configured device, name it after a string --node (`s=robot` → robot).
                    let name = match (configured, node.rsplit_once(";s=").map(|(_, id)| id).or_else(|| node.strip_prefix("s="))) {
                        (false, Some(id)) if !id.is_empty() => {
                            id.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' }).collect()
                        }
                        _ => dev.name.clone(),
                    };
                    out!("{}", crate::sources::opcua::browse::render_snippet(&found, &name, &dev.endpoint));
                    ExitCode::SUCCESS
                }
                Ok(found) => {
                    out!("{}", crate::sources::opcua::browse::render_tree(&found));
                    if found.is_empty() {
                        eprintln!("no objects or variables below {node}");
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("browse failed: {e:#}");
                    ExitCode::from(1)
                }
            }
        }
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
                    out!("{report}");
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

struct BrowseArgs {
    url: Option<String>,
    config: Option<PathBuf>,
    device: Option<String>,
    security_policy: Option<String>,
    security_mode: Option<String>,
    username: Option<String>,
    password_env: String,
    pki_dir: PathBuf,
}

/// The device to browse (from --config/--device or the command line), its
/// PKI folder and the gateway id of its certificate.
fn browse_target(a: BrowseArgs) -> Result<(crate::sources::opcua::config::OpcUaDevice, PathBuf, String), String> {
    if let Some(path) = &a.config {
        if a.security_policy.is_some() || a.security_mode.is_some() || a.username.is_some() {
            return Err(
                "--security-policy, --security-mode and --username go without --config: with --config the device's own settings are used"
                    .into(),
            );
        }
        let cfg = Config::load(path).map_err(|e| e.to_string())?;
        let devs: Vec<_> = cfg
            .devices
            .iter()
            .filter_map(|d| match d {
                DeviceConfig::OpcUa(o) => Some(o),
                _ => None,
            })
            .collect();
        let dev = match (&a.device, devs.as_slice()) {
            (Some(n), _) => devs.iter().find(|d| d.name == *n).ok_or_else(|| {
                if cfg.devices.iter().any(|d| d.name() == n.as_str()) {
                    format!(
                        "device {n:?} in {} is not an OPC UA device (protocol = \"opcua\"); browse reads OPC UA servers only",
                        path.display()
                    )
                } else {
                    format!("{} has no device {n:?}", path.display())
                }
            })?,
            (None, [one]) => one,
            (None, []) => return Err(format!("{} has no device with protocol = \"opcua\"", path.display())),
            (None, _) => return Err(format!("{} has several opcua devices; choose one with --device", path.display())),
        };
        let mut dev = (*dev).clone();
        if let Some(u) = a.url {
            dev.endpoint = u;
        }
        let pki = dev.pki_dir.clone().unwrap_or_else(|| cfg.gateway.data_dir.join("pki"));
        return Ok((dev, pki, cfg.gateway.id.clone()));
    }
    let url = a.url.ok_or("give the server URL (opc.tcp://host:port) or --config with an opcua device")?;
    let mode = a.security_mode.as_deref().map_or(String::new(), |m| format!("security_mode = {m:?}\n"));
    let user = match &a.username {
        Some(u) => format!("username = {u:?}\npassword_env = {:?}\n", a.password_env),
        None => String::new(),
    };
    let toml = format!(
        "[gateway]\nid = \"relais\"\n[[device]]\nname = \"server\"\nprotocol = \"opcua\"\nendpoint = {url:?}\nsecurity_policy = {:?}\n{mode}{user}",
        a.security_policy.as_deref().unwrap_or("None")
    );
    // Errors of this made-up config name the argument, not a line of it.
    let cfg = Config::parse(&toml, "command line", Path::new(".")).map_err(|errs| {
        errs.0
            .iter()
            .map(|e| {
                let arg = match e.key.rsplit(" / ").next().unwrap_or("") {
                    "endpoint" => "the URL",
                    "security_policy" => "--security-policy",
                    "security_mode" => "--security-mode",
                    "username" | "password" | "password_env" => "--username/--password-env",
                    _ => "browse",
                };
                format!("{arg}: {}", e.message)
            })
            .collect::<Vec<_>>()
            .join("\n")
    })?;
    match cfg.devices.into_iter().next() {
        Some(DeviceConfig::OpcUa(d)) => Ok((d, a.pki_dir, "relais".to_string())),
        _ => Err("bad browse arguments".into()),
    }
}

fn fatal(e: anyhow::Error) -> ExitCode {
    // Logging is set up for the commands that can fail this way.
    tracing::error!("{e:#}");
    ExitCode::from(crate::util::exit::code_of(&e))
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

/// `relais check`: errors (exit 2) or the plan (exit 0).
fn check(path: &Path) -> ExitCode {
    let cfg = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    out!("{}", render_plan(&cfg));
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
    // Every component describes itself; sinks list the devices' and detectors' tags.
    let tags: Vec<(String, String)> = cfg
        .devices
        .iter()
        .flat_map(|d| d.component().tags())
        .chain(cfg.detectors.iter().flat_map(crate::component::Component::tags))
        .collect();
    let cx = crate::component::DescribeCx { gateway: &cfg.gateway.id, tags: &tags };
    let components = cfg
        .devices
        .iter()
        .map(|d| d.component())
        .chain(cfg.sources.iter().map(|c| c.component()))
        .chain(cfg.sinks.iter().map(|c| c.component()))
        .chain(cfg.detectors.iter().map(|c| c as &dyn crate::component::Component));
    for c in components {
        let _ = write!(s, "\n{}", c.describe(&cx));
    }
    s
}
