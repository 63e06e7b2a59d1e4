//! Simulator configuration: `[sim]` and `[[station]]` with `[[station.tag]]`.
//! See `config/sim-demo.toml` and `src/sim/README.md`.
//!
//! - `raw.rs`: the file's serde shape, read section by section and item by
//!   item so every error is reported with its path.
//! - `station.rs`: `[[station]]` (line, unit id, tick, unmapped, faults).
//! - `tags.rs`: `[[station.tag]]` and its signal (CSV files loaded once).
//! - `opcua.rs`: `[opcua]`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::signal::Signal;
use crate::diag::{ConfigErrors, Diag, Reader};
use crate::sources::modbus::types::{ByteOrder, DataType, Table};

mod opcua;
mod raw;
mod replay;
mod station;
mod tags;

/// What a read of an address no tag maps answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unmapped {
    /// Zeros (most devices with a flat register map).
    Zero,
    /// Exception 02, illegal data address (picky devices).
    Exception,
}

/// Faults an instructor can inject into a station.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Delay before every answer.
    pub delay: Duration,
    /// Never answer (a dead device behind a live gateway).
    pub silent: bool,
    /// Address ranges answered with an exception code (field case B09).
    pub exceptions: Vec<ExceptionRange>,
    /// Function codes answered with exception 01 (illegal function): a
    /// device that accepts only FC16 refuses 6, one that accepts only FC06
    /// refuses 16.
    pub refuse_functions: Vec<u8>,
    /// FC16 with quantity 1 answered with exception 02 (devices that want
    /// FC06 for one register).
    pub refuse_single_fc16: bool,
}

/// A range answered with an exception.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExceptionRange {
    /// Table.
    pub table: Table,
    /// First address.
    pub start: u16,
    /// Number of addresses (1..=65536; the range ends at 65535 at most).
    pub count: u32,
    /// Exception code (2 = illegal data address, 3 = illegal data value, 4 = device failure…).
    pub code: u8,
}

/// One simulated tag.
#[derive(Debug, Clone)]
pub struct SimTag {
    /// Name (for logs).
    pub name: String,
    /// Table.
    pub table: Table,
    /// 0-based address.
    pub address: u16,
    /// Data type.
    pub ty: DataType,
    /// Byte order.
    pub byte_order: ByteOrder,
    /// Bit of a register, for bool tags.
    pub bit: Option<u8>,
    /// Raw = (value − offset) / scale for integer types.
    pub scale: f64,
    /// See `scale`.
    pub offset: f64,
    /// The signal model.
    pub signal: Signal,
    /// A fixed OPC UA StatusCode served instead of the value (fault injection).
    pub opcua_status: Option<u32>,
}

/// Where a station is served.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Line {
    /// Modbus TCP on this address.
    Tcp(SocketAddr),
    /// Modbus RTU on a pseudo-terminal; the path given becomes a symbolic link
    /// to its serial end, for clients to open like a serial port.
    Serial(PathBuf),
    /// Not served over Modbus (OPC UA only).
    None,
}

/// One simulated device (a unit id on a listen address or a serial line).
#[derive(Debug, Clone)]
pub struct StationConfig {
    /// Name.
    pub name: String,
    /// Where it is served.
    pub line: Line,
    /// Unit id answered on that address.
    pub unit_id: u8,
    /// Update period; one CSV row per tick.
    pub tick: Duration,
    /// Advance one tick per read request instead of by time (exact replays).
    pub lockstep: bool,
    /// Answer for unmapped addresses.
    pub unmapped: Unmapped,
    /// Injected faults.
    pub faults: Faults,
    /// Tags.
    pub tags: Vec<SimTag>,
}

/// A validated simulator configuration.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Stations.
    pub stations: Vec<StationConfig>,
    /// CSV files that were not found: their tags serve simulated values
    /// (a random walk, or 0 for bits) instead.
    pub missing_data: Vec<String>,
    /// The OPC UA server, when `[opcua]` is present.
    pub opcua: Option<super::opcua::OpcUaSimConfig>,
    /// `[sim] expected_clients`: the client addresses the intrusion
    /// detection expects (`None`: the first client is expected, any
    /// concurrent other one is not; see `sim::ids`).
    pub expected_clients: Option<Vec<std::net::IpAddr>>,
}

/// Where a replayed CSV file is looked for: relative to the configuration
/// file, then by file name in each folder of `RELAIS_DATA_PATH`
/// (`:`-separated) and its `skab/` subfolder, then in `./data/skab` and
/// `../shared/data/skab`. Returns the first that exists, else the path
/// relative to the configuration file.
pub fn find_data_file(base_dir: &Path, file: &str) -> PathBuf {
    let direct = base_dir.join(file);
    if direct.exists() {
        return direct;
    }
    let name = Path::new(file).file_name().map(|n| n.to_os_string()).unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::var_os("RELAIS_DATA_PATH")
        .map(|p| std::env::split_paths(&p).flat_map(|d| [d.clone(), d.join("skab")]).collect())
        .unwrap_or_default();
    dirs.push(PathBuf::from("data/skab"));
    dirs.push(PathBuf::from("../shared/data/skab"));
    dirs.into_iter().map(|d| d.join(&name)).find(|p| p.exists()).unwrap_or(direct)
}

impl SimConfig {
    /// Reads a simulator configuration file; CSV paths resolve against its folder.
    pub fn load(path: &Path) -> Result<SimConfig, ConfigErrors> {
        let (file, text) = crate::diag::read_file(path)?;
        SimConfig::parse(&text, &file, path.parent().unwrap_or(Path::new(".")))
    }

    /// Validates simulator configuration `text`: every error, each with its
    /// `file:line:col` and key.
    pub fn parse(text: &str, file: &str, base_dir: &Path) -> Result<SimConfig, ConfigErrors> {
        let mut d = Diag::new(file, text);
        let Some(raw) = raw::read_sections(text, &mut d) else {
            return Err(d.into_errors());
        };
        let mut all = station::Stations {
            default_tick: Reader::new(&mut d, "sim").duration_in(
                &raw.sim.tick,
                "tick",
                Duration::from_secs(1),
                station::MIN_TICK..=Duration::MAX,
            ),
            opcua: raw.opcua.is_some(),
            seen: HashMap::new(),
            tags: tags::TagCtx { base_dir, cache: HashMap::new(), missing: Vec::new() },
        };
        let expected_clients = raw.sim.expected_clients.as_ref().map(|list| {
            let mut ips = Vec::new();
            for a in list.get_ref() {
                match a.parse::<std::net::IpAddr>() {
                    Ok(ip) => ips.push(ip),
                    Err(_) => d.error(list.span(), "sim / expected_clients", format!("{a:?} is not an IP address (e.g. \"127.0.0.1\")")),
                }
            }
            ips
        });
        let stations: Vec<StationConfig> = raw.station.into_iter().filter_map(|rs| station::parse_station(rs, &mut all, &mut d)).collect();
        let mut missing_data = all.tags.missing;
        missing_data.sort();
        missing_data.dedup();
        let opcua = raw.opcua.map(|o| opcua::parse_opcua(o, &mut d));
        let warnings = d.finish()?;
        for w in warnings {
            tracing::warn!("{w}");
        }
        Ok(SimConfig { stations, missing_data, opcua, expected_clients })
    }
}

#[cfg(test)]
mod tests;
