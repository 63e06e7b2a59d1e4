//! Simulator configuration: `[sim]` and `[[station]]` with `[[station.tag]]`.
//! See `config/sim-demo.toml` and `src/sim/README.md`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::signal::{CsvColumn, Signal};
use crate::diag::{ConfigError, ConfigErrors, Diag, array_items, array_items_of, de_item, peek_str, take_key};
use crate::sources::modbus::types::{ByteOrder, DataType, Table};
use crate::units;

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
}

/// A range answered with an exception.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExceptionRange {
    /// Table.
    pub table: Table,
    /// First address.
    pub start: u16,
    /// Number of addresses.
    pub count: u16,
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

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSimSection {
    tick: Option<Spanned<String>>,
}

/// The sections of a simulator config, each read on its own (errors name
/// their section, station and tag).
struct RawSim {
    sim: RawSimSection,
    station: Vec<RawStation>,
    opcua: Option<RawOpcUa>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOpcUa {
    listen: Option<Spanned<String>>,
    namespace_uri: Option<Spanned<String>>,
    security: Option<Spanned<Vec<String>>>,
    pki_dir: Option<String>,
    trust_client_certs: Option<bool>,
    anonymous: Option<bool>,
    #[serde(default)]
    users: Vec<RawUser>,
    restart_after: Option<Spanned<String>>,
    down_for: Option<Spanned<String>>,
    scan: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    username: String,
    password: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStation {
    name: Spanned<String>,
    listen: Option<Spanned<String>>,
    serial: Option<Spanned<String>>,
    unit_id: Option<Spanned<i64>>,
    tick: Option<Spanned<String>>,
    #[serde(default)]
    lockstep: bool,
    unmapped: Option<Spanned<String>>,
    faults: Option<RawFaults>,
    #[serde(default)]
    tag: Vec<RawTag>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFaults {
    delay: Option<Spanned<String>>,
    #[serde(default)]
    silent: bool,
    #[serde(default)]
    exceptions: Vec<Spanned<RawException>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawException {
    table: String,
    start: i64,
    count: i64,
    code: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTag {
    name: Spanned<String>,
    table: Spanned<String>,
    address: Spanned<i64>,
    #[serde(rename = "type")]
    ty: Option<Spanned<String>>,
    byte_order: Option<Spanned<String>>,
    bit: Option<Spanned<i64>>,
    scale: Option<f64>,
    offset: Option<f64>,
    signal: Spanned<RawSignal>,
    opcua_status: Option<Spanned<i64>>,
}

/// A TOML number kept exact when it is an integer.
#[derive(Deserialize, Clone, Copy)]
#[serde(untagged)]
enum Num {
    Int(i64),
    Float(f64),
}

impl Num {
    fn f(self) -> f64 {
        match self {
            Num::Int(i) => i as f64,
            Num::Float(f) => f,
        }
    }
}

#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum RawSignal {
    Constant {
        value: Option<Num>,
        text: Option<String>,
    },
    Sine {
        amplitude: f64,
        #[serde(default)]
        offset: f64,
        period: String,
        #[serde(default)]
        phase: f64,
    },
    Ramp {
        #[serde(default)]
        start: f64,
        slope: f64,
        min: f64,
        max: f64,
    },
    RandomWalk {
        start: f64,
        step: f64,
        min: f64,
        max: f64,
        seed: Option<u64>,
    },
    Counter {
        #[serde(default)]
        start: i64,
        #[serde(default = "one_int")]
        step: i64,
        wrap: Option<i64>,
    },
    Square {
        #[serde(default)]
        low: f64,
        #[serde(default = "one")]
        high: f64,
        period: String,
        #[serde(default = "half")]
        duty: f64,
    },
    Csv {
        file: String,
        column: String,
        #[serde(default = "semicolon")]
        delimiter: String,
        #[serde(default = "yes")]
        r#loop: bool,
    },
    Tick {},
}

fn one() -> f64 {
    1.0
}
fn one_int() -> i64 {
    1
}
fn half() -> f64 {
    0.5
}
fn semicolon() -> String {
    ";".into()
}
fn yes() -> bool {
    true
}

/// A loaded CSV file: its header and its columns (numbers, `None` for empty
/// or non-numeric cells).
type CsvTable = (Vec<String>, Vec<Vec<Option<f64>>>);
/// Loaded CSV files, shared by the tags that replay their columns.
type CsvCache = HashMap<(PathBuf, u8), Arc<CsvTable>>;

fn load_csv(path: &Path, delimiter: u8, cache: &mut CsvCache) -> Result<Arc<CsvTable>, String> {
    if let Some(t) = cache.get(&(path.to_path_buf(), delimiter)) {
        return Ok(t.clone());
    }
    let mut rdr = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .trim(csv::Trim::All)
        .from_path(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let headers: Vec<String> = rdr
        .headers()
        .map_err(|e| format!("{}: bad header: {e}", path.display()))?
        .iter()
        .map(|h| h.trim_start_matches('\u{feff}').to_string())
        .collect();
    let mut cols: Vec<Vec<Option<f64>>> = vec![Vec::new(); headers.len()];
    for (i, rec) in rdr.records().enumerate() {
        let rec = rec.map_err(|e| format!("{}: line {}: {e}", path.display(), i + 2))?;
        for (c, col) in cols.iter_mut().enumerate() {
            col.push(rec.get(c).and_then(|v| v.parse::<f64>().ok()).filter(|v| v.is_finite()));
        }
    }
    let t = Arc::new((headers, cols));
    cache.insert((path.to_path_buf(), delimiter), t.clone());
    Ok(t)
}

/// The sections of `text`, with the gateway config's item-by-item reading
/// (`crate::diag`): every wrong key is reported with its path; `None` on a
/// TOML syntax error.
fn read_sections(text: &str, d: &mut Diag<'_>) -> Option<RawSim> {
    let (doc, syntax) = toml::de::DeTable::parse_recoverable(text);
    if !syntax.is_empty() {
        for e in &syntax {
            d.toml(e, "", 0..0);
        }
        return None;
    }
    let mut raw = RawSim { sim: RawSimSection::default(), station: Vec::new(), opcua: None };
    for (k, v) in doc.into_inner() {
        match k.get_ref().as_ref() {
            "sim" => raw.sim = de_item(v, d, "sim").unwrap_or_default(),
            "opcua" => raw.opcua = de_item(v, d, "opcua"),
            "station" => {
                for (i, mut item) in array_items(v, d, "station").into_iter().enumerate() {
                    let key = peek_str(&item, "name").map_or_else(|| format!("station #{}", i + 1), |(n, _)| format!("station {n:?}"));
                    let tags = take_key(&mut item, "tag");
                    let Some(mut station) = de_item::<RawStation>(item, d, &key) else { continue };
                    for (j, t) in tags
                        .map(|t| array_items_of(t, d, &format!("{key} / tag"), "station.tag"))
                        .unwrap_or_default()
                        .into_iter()
                        .enumerate()
                    {
                        let tkey =
                            peek_str(&t, "name").map_or_else(|| format!("{key} / tag #{}", j + 1), |(n, _)| format!("{key} / tag {n:?}"));
                        station.tag.extend(de_item::<RawTag>(t, d, &tkey));
                    }
                    raw.station.push(station);
                }
            }
            other => {
                d.error(k.span(), other, format!("unknown section `{other}`; a simulator configuration has [sim], [opcua] and [[station]]"))
            }
        }
    }
    Some(raw)
}

impl SimConfig {
    /// Reads a simulator configuration file; CSV paths resolve against its folder.
    pub fn load(path: &Path) -> Result<SimConfig, ConfigErrors> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                file: file.clone(),
                line: 0,
                col: 0,
                key: String::new(),
                message: format!("cannot read: {e}"),
            }])
        })?;
        SimConfig::parse(&text, &file, path.parent().unwrap_or(Path::new(".")))
    }

    /// Validates simulator configuration `text`.
    pub fn parse(text: &str, file: &str, base_dir: &Path) -> Result<SimConfig, ConfigErrors> {
        let mut d = Diag::new(file, text);
        let raw = match read_sections(text, &mut d) {
            Some(r) => r,
            None => return Err(d.into_errors()),
        };
        let default_tick = match &raw.sim.tick {
            None => Duration::from_secs(1),
            Some(t) => units::parse_duration(t.get_ref()).unwrap_or_else(|e| {
                d.error(t.span(), "sim / tick", e);
                Duration::from_secs(1)
            }),
        };
        let mut cache = CsvCache::new();
        let mut missing_data: Vec<String> = Vec::new();
        let mut stations = Vec::new();
        let mut seen: HashMap<(Line, u8), String> = HashMap::new();
        for rs in raw.station {
            let name = rs.name.get_ref().clone();
            let key = format!("station {name:?}");
            let line = match (&rs.listen, &rs.serial) {
                (Some(l), None) => match l.get_ref().parse::<SocketAddr>() {
                    Ok(a) => Line::Tcp(a),
                    Err(_) => {
                        d.error(
                            l.span(),
                            &format!("{key} / listen"),
                            format!("{:?} is not an address like \"127.0.0.1:5020\"", l.get_ref()),
                        );
                        continue;
                    }
                },
                (None, Some(p)) => Line::Serial(base_dir.join(p.get_ref())),
                (None, None) if raw.opcua.is_some() => Line::None,
                _ => {
                    d.error(rs.name.span(), &format!("{key} / listen"), "give exactly one of `listen` (Modbus TCP, \"127.0.0.1:5020\") or `serial` (Modbus RTU on a pseudo-terminal, a path)");
                    continue;
                }
            };
            let unit_id = match &rs.unit_id {
                None => 1,
                Some(u) if (0..=255).contains(u.get_ref()) => *u.get_ref() as u8,
                Some(u) => {
                    d.error(u.span(), &format!("{key} / unit_id"), "unit_id must be in 0..=255");
                    1
                }
            };
            if line != Line::None
                && let Some(other) = seen.insert((line.clone(), unit_id), name.clone())
            {
                let on = match &line {
                    Line::Tcp(a) => a.to_string(),
                    Line::Serial(p) => p.display().to_string(),
                    Line::None => String::new(),
                };
                d.error(rs.name.span(), &format!("{key} / unit_id"), format!("station {other:?} already serves unit {unit_id} on {on}"));
            }
            let tick = match &rs.tick {
                None => default_tick,
                Some(t) => match units::parse_duration(t.get_ref()) {
                    Ok(x) if x >= Duration::from_millis(1) => x,
                    Ok(_) => {
                        d.error(t.span(), &format!("{key} / tick"), "tick must be at least 1ms");
                        default_tick
                    }
                    Err(e) => {
                        d.error(t.span(), &format!("{key} / tick"), e);
                        default_tick
                    }
                },
            };
            let unmapped = match rs.unmapped.as_ref().map(|u| (u.get_ref().as_str(), u.span())) {
                None | Some(("zero", _)) => Unmapped::Zero,
                Some(("exception", _)) => Unmapped::Exception,
                Some((other, span)) => {
                    d.error(span, &format!("{key} / unmapped"), format!("unknown value {other:?}; expected \"zero\" or \"exception\""));
                    Unmapped::Zero
                }
            };
            let mut faults = Faults::default();
            if let Some(f) = rs.faults {
                faults.silent = f.silent;
                if let Some(delay) = &f.delay {
                    faults.delay = units::parse_duration(delay.get_ref()).unwrap_or_else(|e| {
                        d.error(delay.span(), &format!("{key} / faults / delay"), e);
                        Duration::ZERO
                    });
                }
                for ex in f.exceptions {
                    let span = ex.span();
                    let ex = ex.into_inner();
                    let table = match ex.table.parse::<Table>() {
                        Ok(t) => t,
                        Err(e) => {
                            d.error(span.clone(), &format!("{key} / faults / exceptions"), e);
                            continue;
                        }
                    };
                    if !(0..=65535).contains(&ex.start) || !(1..=65536).contains(&ex.count) || !(1..=255).contains(&ex.code) {
                        d.error(span, &format!("{key} / faults / exceptions"), "start in 0..=65535, count in 1..=65536, code in 1..=255");
                        continue;
                    }
                    faults.exceptions.push(ExceptionRange {
                        table,
                        start: ex.start as u16,
                        count: ex.count.min(65536 - ex.start) as u16,
                        code: ex.code as u8,
                    });
                }
            }
            let mut tags = Vec::new();
            for rt in rs.tag {
                let tkey = format!("{key} / tag {:?}", rt.name.get_ref());
                let table = match rt.table.get_ref().parse::<Table>() {
                    Ok(t) => t,
                    Err(e) => {
                        d.error(rt.table.span(), &format!("{tkey} / table"), e);
                        continue;
                    }
                };
                let address = *rt.address.get_ref();
                if !(0..=65535).contains(&address) {
                    d.error(rt.address.span(), &format!("{tkey} / address"), "address must be in 0..=65535");
                    continue;
                }
                let default_ty = if table.is_bit() || rt.bit.is_some() { DataType::Bool } else { DataType::U16 };
                let ty = match &rt.ty {
                    None => default_ty,
                    Some(t) => match t.get_ref().parse::<DataType>() {
                        Ok(x) => x,
                        Err(e) => {
                            d.error(t.span(), &format!("{tkey} / type"), e);
                            continue;
                        }
                    },
                };
                if table.is_bit() && ty != DataType::Bool {
                    d.error(rt.table.span(), &format!("{tkey} / type"), format!("the {table} table holds bits; use type = \"bool\""));
                    continue;
                }
                if address as u32 + if table.is_bit() { 1 } else { ty.register_count() as u32 } > 65536 {
                    d.error(rt.address.span(), &format!("{tkey} / address"), "the tag runs past address 65535");
                    continue;
                }
                let byte_order = match &rt.byte_order {
                    None => ByteOrder::ABCD,
                    Some(b) => match b.get_ref().parse::<ByteOrder>() {
                        Ok(x) => x,
                        Err(e) => {
                            d.error(b.span(), &format!("{tkey} / byte_order"), e);
                            continue;
                        }
                    },
                };
                let bit = match &rt.bit {
                    None => None,
                    Some(b) if (0..=15).contains(b.get_ref()) && !table.is_bit() => Some(*b.get_ref() as u8),
                    Some(b) => {
                        d.error(b.span(), &format!("{tkey} / bit"), "bit must be in 0..=15, on a register table");
                        continue;
                    }
                };
                let span = rt.signal.span();
                let skey = format!("{tkey} / signal");
                let dur = |d: &mut Diag<'_>, s: &str| match units::parse_duration(s) {
                    Ok(x) if !x.is_zero() => Some(x.as_secs_f64()),
                    Ok(_) => {
                        d.error(span.clone(), &skey, "period must be above zero");
                        None
                    }
                    Err(e) => {
                        d.error(span.clone(), &skey, e);
                        None
                    }
                };
                let signal = match rt.signal.into_inner() {
                    RawSignal::Constant { value: Some(Num::Int(v)), text: None } => Signal::ConstantInt(v as i128),
                    RawSignal::Constant { value: Some(v), text: None } => Signal::Constant(v.f()),
                    RawSignal::Constant { value: None, text: Some(t) } => Signal::Text(t),
                    RawSignal::Constant { .. } => {
                        d.error(span, &skey, "constant needs exactly one of `value` or `text`");
                        continue;
                    }
                    RawSignal::Sine { amplitude, offset, period, phase } => match dur(&mut d, &period) {
                        Some(p) => Signal::Sine { amplitude, offset, period_s: p, phase },
                        None => continue,
                    },
                    RawSignal::Ramp { start, slope, min, max } => {
                        if max <= min {
                            d.error(span, &skey, "ramp needs max > min");
                            continue;
                        }
                        Signal::Ramp { start, slope, min, max }
                    }
                    RawSignal::RandomWalk { start, step, min, max, seed } => Signal::RandomWalk {
                        value: start.clamp(min, max),
                        step,
                        min,
                        max,
                        rng: seed.map_or_else(fastrand::Rng::new, fastrand::Rng::with_seed),
                    },
                    RawSignal::Counter { start, step, wrap } => Signal::Counter {
                        value: start as i128,
                        start: start as i128,
                        step: step as i128,
                        wrap: wrap.map(|w| w as i128),
                        first: true,
                    },
                    RawSignal::Square { low, high, period, duty } => match dur(&mut d, &period) {
                        Some(p) => Signal::Square { low, high, period_s: p, duty: duty.clamp(0.0, 1.0) },
                        None => continue,
                    },
                    RawSignal::Csv { file, column, delimiter, r#loop } => {
                        let delim = match delimiter.as_bytes() {
                            [b] => *b,
                            _ if delimiter == "\\t" || delimiter == "tab" => b'\t',
                            _ => {
                                d.error(span, &skey, "delimiter must be one character");
                                continue;
                            }
                        };
                        let path = find_data_file(base_dir, &file);
                        match load_csv(&path, delim, &mut cache) {
                            Ok(t) => {
                                let idx =
                                    t.0.iter()
                                        .position(|h| *h == column)
                                        .or_else(|| column.parse::<usize>().ok().filter(|i| *i < t.0.len()));
                                match idx {
                                    Some(i) => Signal::Csv { column: CsvColumn { values: Arc::new(t.1[i].clone()) }, looped: r#loop },
                                    None => {
                                        d.error(
                                            span,
                                            &skey,
                                            format!("column {column:?} not found in {}; columns: {}", path.display(), t.0.join(", ")),
                                        );
                                        continue;
                                    }
                                }
                            }
                            Err(_) if !path.exists() => {
                                missing_data.push(file.clone());
                                if table.is_bit() {
                                    Signal::Constant(0.0)
                                } else {
                                    Signal::RandomWalk { value: 0.0, step: 0.1, min: -1.0, max: 1.0, rng: fastrand::Rng::new() }
                                }
                            }
                            Err(e) => {
                                d.error(span, &skey, e);
                                continue;
                            }
                        }
                    }
                    RawSignal::Tick {} => Signal::Tick,
                };
                let opcua_status = match &rt.opcua_status {
                    None => None,
                    Some(c) => match u32::try_from(*c.get_ref()) {
                        Ok(v) => Some(v),
                        Err(_) => {
                            d.error(
                                c.span(),
                                &format!("{tkey} / opcua_status"),
                                "opcua_status is a 32-bit StatusCode, e.g. 0x801F0000 (BadUserAccessDenied)",
                            );
                            continue;
                        }
                    },
                };
                tags.push(SimTag {
                    opcua_status,
                    name: rt.name.into_inner(),
                    table,
                    address: address as u16,
                    ty,
                    byte_order,
                    bit,
                    scale: rt.scale.filter(|s| *s != 0.0 && s.is_finite()).unwrap_or(1.0),
                    offset: rt.offset.unwrap_or(0.0),
                    signal,
                });
            }
            stations.push(StationConfig { name, line, unit_id, tick, lockstep: rs.lockstep, unmapped, faults, tags });
        }
        missing_data.sort();
        missing_data.dedup();
        let opcua = raw.opcua.map(|o| parse_opcua(o, &mut d));
        let warnings = d.finish()?;
        for w in warnings {
            tracing::warn!("{w}");
        }
        Ok(SimConfig { stations, missing_data, opcua })
    }
}

fn parse_opcua(o: RawOpcUa, d: &mut Diag<'_>) -> super::opcua::OpcUaSimConfig {
    use opcua::crypto::SecurityPolicy;
    let listen = match &o.listen {
        None => SocketAddr::from(([127, 0, 0, 1], 4840)),
        Some(l) => l.get_ref().parse().unwrap_or_else(|_| {
            d.error(l.span(), "opcua / listen", format!("{:?} is not an address like \"127.0.0.1:4840\"", l.get_ref()));
            SocketAddr::from(([127, 0, 0, 1], 4840))
        }),
    };
    let mut security = Vec::new();
    let mut allow_none = true;
    if let Some(list) = &o.security {
        allow_none = false;
        for p in list.get_ref() {
            match p.to_ascii_lowercase().replace(['_', '-'], "").as_str() {
                "none" => allow_none = true,
                "basic256sha256" => security.push(SecurityPolicy::Basic256Sha256),
                "aes128sha256rsaoaep" => security.push(SecurityPolicy::Aes128Sha256RsaOaep),
                "aes256sha256rsapss" => security.push(SecurityPolicy::Aes256Sha256RsaPss),
                other => d.error(
                    list.span(),
                    "opcua / security",
                    format!("unknown security policy {other:?}; expected None, Basic256Sha256, Aes128Sha256RsaOaep, Aes256Sha256RsaPss"),
                ),
            }
        }
    } else {
        security.push(SecurityPolicy::Basic256Sha256);
    }
    if let Some(list) = &o.security
        && list.get_ref().is_empty()
    {
        d.error(
            list.span(),
            "opcua / security",
            "security is empty: list at least one of None, Basic256Sha256, Aes128Sha256RsaOaep, Aes256Sha256RsaPss",
        );
    }
    let dur = |d: &mut Diag<'_>, v: &Option<Spanned<String>>, key: &str, default: Duration| {
        crate::diag::duration(d, v, &format!("opcua / {key}"), default)
    };
    let restart_after = o.restart_after.as_ref().map(|_| dur(d, &o.restart_after, "restart_after", Duration::from_secs(60)));
    if let (Some(t), Some(r)) = (restart_after, &o.restart_after)
        && t < Duration::from_secs(1)
    {
        d.error(r.span(), "opcua / restart_after", "restart_after must be at least 1s (the server would restart without ever serving)");
    }
    let ns_span = o.namespace_uri.as_ref().map_or(0..0, |n| n.span());
    let namespace_uri = o.namespace_uri.map_or_else(|| "urn:relais:sim".into(), |n| n.into_inner());
    if namespace_uri.trim().is_empty() || namespace_uri == "http://opcfoundation.org/UA/" {
        d.error(
            ns_span,
            "opcua / namespace_uri",
            format!("namespace_uri {namespace_uri:?} cannot be used: give a URI of your own such as \"urn:lab:line5\""),
        );
    }
    let mut names = std::collections::HashSet::new();
    for u in &o.users {
        if u.username.trim().is_empty() {
            d.error(0..0, "opcua / users", "a user has an empty username");
        } else if !names.insert(u.username.as_str()) {
            d.error(0..0, "opcua / users", format!("user {:?} is listed twice", u.username));
        }
    }
    if o.anonymous == Some(false) && o.users.is_empty() && o.trust_client_certs != Some(true) {
        d.warn(0..0, "opcua / anonymous", "anonymous = false and no users: only clients with an X.509 user certificate can open a session");
    }
    let scan = dur(d, &o.scan, "scan", Duration::from_millis(100)).max(Duration::from_millis(10));
    super::opcua::OpcUaSimConfig {
        listen,
        namespace_uri,
        security,
        allow_none,
        pki_dir: PathBuf::from(o.pki_dir.unwrap_or_else(|| "relais-sim-pki".into())),
        trust_client_certs: o.trust_client_certs.unwrap_or(true),
        users: o.users.into_iter().map(|u| (u.username, u.password)).collect(),
        anonymous: o.anonymous.unwrap_or(true),
        restart_after,
        down_for: dur(d, &o.down_for, "down_for", Duration::from_secs(5)),
        scan,
    }
}
