//! `relais demo`: the simulator and the gateway in one process, on the
//! built-in configuration (`config/demo.toml`, `config/sim-demo.toml`; the
//! copies compiled into the binary are used when the files are not found).
//! Like `app` and `check`, it knows no component kind: `--broker`, the
//! overview line and the "watch it" hint come from the sinks' [`Component`]
//! methods (`use_broker`, `target`, `watch`).
//!
//! [`Component`]: crate::component::Component

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::app::{RunOptions, cancel_on_signal, run as run_gateway};
use crate::config::Config;
use crate::mqtt::BrokerUrl;
use crate::sim::{Sim, SimConfig};

/// The demo gateway configuration compiled in.
pub const DEMO_TOML: &str = include_str!("../config/demo.toml");
/// The demo simulator configuration compiled in.
pub const SIM_DEMO_TOML: &str = include_str!("../config/sim-demo.toml");

/// The text of `path` if it exists in the current directory, else the
/// built-in copy: (text, name for error messages, base folder, what to print).
fn read_or(path: &str, builtin: &'static str) -> (String, String, PathBuf, String) {
    match std::fs::read_to_string(path) {
        Ok(t) => (t, path.to_string(), Path::new(path).parent().unwrap_or(Path::new(".")).to_path_buf(), format!("./{path}")),
        Err(_) => {
            (builtin.to_string(), format!("(built-in) {path}"), PathBuf::from("config"), format!("built-in {path} (no ./{path} here)"))
        }
    }
}

/// Runs the demo until Ctrl-C.
pub async fn run(data_dir: Option<PathBuf>, broker: Option<String>) -> anyhow::Result<()> {
    let (sim_text, sim_name, sim_base, sim_label) = read_or("config/sim-demo.toml", SIM_DEMO_TOML);
    let mut sim_cfg = SimConfig::parse(&sim_text, &sim_name, &sim_base).map_err(|e| anyhow::anyhow!("{e}"))?;
    let (gw_text, gw_name, gw_base, gw_label) = read_or("config/demo.toml", DEMO_TOML);
    let mut cfg = Config::parse(&gw_text, &gw_name, &gw_base).map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Some(d) = data_dir {
        cfg.gateway.data_dir = d;
    }
    if let Some(b) = broker {
        let url = BrokerUrl::parse(&b).map_err(|e| anyhow::anyhow!("--broker: {e}"))?;
        for s in &mut cfg.sinks {
            s.component_mut().use_broker(&url);
        }
    }
    // The simulator's OPC UA certificate lives with the demo's data.
    if let Some(o) = &mut sim_cfg.opcua
        && o.pki_dir.is_relative()
    {
        o.pki_dir = cfg.gateway.data_dir.join("sim-pki");
    }
    let missing = sim_cfg.missing_data.clone();
    let sim = Sim::start(sim_cfg).await?;
    let brokers: Vec<String> = cfg
        .sinks
        .iter()
        .map(|s| s.component())
        .map(|c| c.target().unwrap_or_else(|| format!("sink {} ({})", c.name(), c.kind())))
        .collect();
    crate::outln!(
        "relais demo: {} simulated stations, gateway {} with {} devices, data in {}, forwarding to {}",
        sim.stations().len(),
        cfg.gateway.id,
        cfg.devices.len(),
        cfg.gateway.data_dir.display(),
        brokers.join(", ")
    );
    crate::outln!("configuration: {sim_label} and {gw_label}");
    if !missing.is_empty() {
        let names: Vec<String> =
            missing.iter().map(|m| Path::new(m).file_name().map_or(m.clone(), |n| n.to_string_lossy().to_string())).collect();
        crate::outln!(
            "NOTE: the pump's real sensor data (SKAB: {}) was not found: it serves simulated values instead.\n      \
             Put the SKAB CSV files in ./data/skab (scripts/get-skab.sh downloads them), or set RELAIS_DATA_PATH\n      \
             to the folder that holds them (or to its parent, holding skab/).",
            names.join(", ")
        );
    }
    let watch =
        cfg.sinks.iter().find_map(|s| s.component().watch()).unwrap_or_else(|| "mosquitto_sub -h 127.0.0.1 -p 1883 -t '#' -v".into());
    if let Some(ua) = sim.opcua() {
        crate::outln!("The simulator also serves OPC UA at {} (try: relais browse {})", ua.endpoint(), ua.endpoint());
    }
    crate::outln!("Watch it: {watch}     Stop: Ctrl-C\n");
    let stop = CancellationToken::new();
    cancel_on_signal(stop.clone());
    let r = run_gateway(cfg, stop, RunOptions { status_stdout: true, status_interval: Some(Duration::from_secs(5)), ..Default::default() })
        .await;
    drop(sim);
    r
}
