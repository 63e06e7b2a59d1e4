//! Configuration of `protocol = "modbus-tcp"` devices and their tags.
//!
//! See `sample.toml` beside this file and `docs/configuration.md` for every key.

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::planner::Limits;
use super::types::{ByteOrder, DataType, Table};
use crate::diag::{Diag, Item, de_item, reject_unknown_keys, take_key};
use crate::{names, units};

/// Parity of a serial line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parity {
    /// No parity bit.
    None,
    /// Even parity (the Modbus default, 8E1).
    Even,
    /// Odd parity.
    Odd,
}

/// How a Modbus device is reached.
#[derive(Debug, Clone, PartialEq)]
pub enum Transport {
    /// Modbus TCP (MBAP header), `host:port`.
    Tcp,
    /// RTU frames (CRC) over a TCP socket, `host:port` (serial device servers).
    RtuOverTcp,
    /// RTU on a serial line (RS-485/RS-232).
    Rtu {
        /// Serial device path, e.g. `/dev/ttyUSB0`.
        port: String,
        /// Baud rate (default 19200).
        baud_rate: u32,
        /// Parity (default even).
        parity: Parity,
        /// Data bits, 7 or 8 (default 8).
        data_bits: u8,
        /// Stop bits, 1 or 2 (default 1).
        stop_bits: u8,
    },
}

impl Transport {
    /// What identifies the line: devices with the same key share one
    /// connection (or serial port), one request at a time.
    pub fn line_key(&self, endpoint: &str) -> String {
        match self {
            Transport::Tcp => format!("tcp:{endpoint}"),
            Transport::RtuOverTcp => format!("rtu-over-tcp:{endpoint}"),
            Transport::Rtu { port, .. } => format!("rtu:{}", serial_key(port)),
        }
    }

    /// The serial settings (baud rate, parity, data and stop bits) that differ
    /// between two RTU lines, as `"baud_rate 19200 vs 9600"`; empty when they
    /// agree or either is not RTU.
    pub fn serial_differences(&self, other: &Transport) -> Vec<String> {
        let (
            Transport::Rtu { baud_rate, parity, data_bits, stop_bits, .. },
            Transport::Rtu { baud_rate: b2, parity: p2, data_bits: d2, stop_bits: s2, .. },
        ) = (self, other)
        else {
            return Vec::new();
        };
        let mut diffs = Vec::new();
        if baud_rate != b2 {
            diffs.push(format!("baud_rate {baud_rate} vs {b2}"));
        }
        if parity != p2 {
            diffs.push(format!("parity {parity:?} vs {p2:?}"));
        }
        if data_bits != d2 {
            diffs.push(format!("data_bits {data_bits} vs {d2}"));
        }
        if stop_bits != s2 {
            diffs.push(format!("stop_bits {stop_bits} vs {s2}"));
        }
        diffs
    }

    /// Protocol name as configured.
    pub fn protocol(&self) -> &'static str {
        match self {
            Transport::Tcp => "modbus-tcp",
            Transport::RtuOverTcp => "modbus-rtu-over-tcp",
            Transport::Rtu { .. } => "modbus-rtu",
        }
    }

    /// The silent interval between two RTU frames: 3.5 character times at
    /// the baud rate, 1.75 ms above 19200 baud (Modbus over Serial Line
    /// v1.02 §2.5.1.1). Zero for TCP.
    pub fn frame_gap(&self) -> Duration {
        match self {
            Transport::Rtu { baud_rate, .. } if *baud_rate <= 19_200 => Duration::from_secs_f64(3.5 * 11.0 / *baud_rate as f64),
            Transport::Rtu { .. } => Duration::from_micros(1750),
            _ => Duration::ZERO,
        }
    }
}

/// What identifies a serial port: its real path when it exists (so
/// `/dev/serial/by-id/…` and `/dev/ttyUSB0` are one line), else its name.
pub fn serial_key(port: &str) -> String {
    std::fs::canonicalize(port).map_or_else(|_| port.to_string(), |p| p.display().to_string())
}

/// A validated Modbus device (TCP, RTU, or RTU over TCP).
#[derive(Debug, Clone)]
pub struct ModbusDevice {
    /// Device name (an MQTT topic level).
    pub name: String,
    /// The line: `host:port` for TCP and RTU over TCP, the serial path for RTU.
    /// Devices on the same line share one connection, one request at a time.
    pub endpoint: String,
    /// How the line is reached.
    pub transport: Transport,
    /// Unit id sent in the MBAP header, 0–255, sent unchanged (field case B12).
    pub unit_id: u8,
    /// Response timeout per request; also the connect timeout.
    pub timeout: Duration,
    /// Default poll interval of the device's tags.
    pub poll_interval: Duration,
    /// Default byte order of multi-register tags.
    pub byte_order: ByteOrder,
    /// Planner limits (request size, bridged holes).
    pub limits: Limits,
    /// Longest wait between reconnect attempts (default 30 s).
    pub reconnect_max: Duration,
    /// Tags, in config order.
    pub tags: Vec<ModbusTag>,
}

/// A validated Modbus tag.
#[derive(Debug, Clone)]
pub struct ModbusTag {
    /// Tag name (an MQTT topic level).
    pub name: String,
    /// Table (and so read function code).
    pub table: Table,
    /// 0-based PDU address of the first register or bit.
    pub address: u16,
    /// Data type.
    pub ty: DataType,
    /// Byte order (the tag's, else the device's).
    pub byte_order: ByteOrder,
    /// One bit of a 16-bit register (0 = least significant), for bool tags.
    pub bit: Option<u8>,
    /// Multiplier applied after decoding.
    pub scale: f64,
    /// Added after scaling.
    pub offset: f64,
    /// Engineering unit.
    pub unit: Option<String>,
    /// Poll interval (the tag's, else the device's).
    pub poll_interval: Duration,
}

impl ModbusTag {
    /// Registers or bits the tag covers.
    pub fn count(&self) -> u16 {
        if self.table.is_bit() { 1 } else { self.ty.register_count() }
    }
}

/// Keys of a Modbus `[[device]]` (besides its `[[device.tag]]` list).
pub const DEVICE_KEYS: &[&str] = &[
    "name",
    "protocol",
    "endpoint",
    "unit_id",
    "timeout",
    "poll_interval",
    "byte_order",
    "max_registers_per_request",
    "max_bits_per_request",
    "max_gap",
    "max_gap_bits",
    "reconnect_max",
    "port",
    "baud_rate",
    "parity",
    "data_bits",
    "stop_bits",
];
/// Keys of a Modbus `[[device.tag]]`.
pub const TAG_KEYS: &[&str] =
    &["name", "table", "address", "type", "byte_order", "bit", "scale", "offset", "unit", "poll_interval", "description"];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDevice {
    name: Spanned<String>,
    protocol: String,
    endpoint: Option<Spanned<String>>,
    port: Option<Spanned<String>>,
    baud_rate: Option<Spanned<i64>>,
    parity: Option<Spanned<String>>,
    data_bits: Option<Spanned<i64>>,
    stop_bits: Option<Spanned<i64>>,
    unit_id: Option<Spanned<i64>>,
    timeout: Option<Spanned<String>>,
    poll_interval: Option<Spanned<String>>,
    byte_order: Option<Spanned<String>>,
    max_registers_per_request: Option<Spanned<i64>>,
    max_bits_per_request: Option<Spanned<i64>>,
    max_gap: Option<Spanned<i64>>,
    max_gap_bits: Option<Spanned<i64>>,
    reconnect_max: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(untagged, expecting = "an integer (a 0-based PDU address such as 0) or a Modicon reference string such as \"40001\"")]
enum RawAddress {
    Number(i64),
    Text(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTag {
    name: Spanned<String>,
    table: Option<Spanned<String>>,
    address: Spanned<RawAddress>,
    #[serde(rename = "type")]
    ty: Option<Spanned<String>>,
    byte_order: Option<Spanned<String>>,
    bit: Option<Spanned<i64>>,
    scale: Option<Spanned<f64>>,
    offset: Option<Spanned<f64>>,
    unit: Option<String>,
    poll_interval: Option<Spanned<String>>,
    #[allow(dead_code)]
    description: Option<String>,
}

fn duration(d: &mut Diag<'_>, v: &Option<Spanned<String>>, key: &str, default: Duration, min: Duration) -> Duration {
    match v {
        None => default,
        Some(s) => match units::parse_duration(s.get_ref()) {
            Ok(x) if x < min => {
                d.error(s.span(), key, format!("{:?} is too short; the minimum is {}", s.get_ref(), units::format_duration(min)));
                default
            }
            Ok(x) => x,
            Err(e) => {
                d.error(s.span(), key, e);
                default
            }
        },
    }
}

fn parsed<T: std::str::FromStr<Err = String>>(d: &mut Diag<'_>, v: &Spanned<String>, key: &str) -> Option<T> {
    match v.get_ref().parse::<T>() {
        Ok(x) => Some(x),
        Err(e) => {
            d.error(v.span(), key, e);
            None
        }
    }
}

fn int_in(d: &mut Diag<'_>, v: &Spanned<i64>, key: &str, lo: i64, hi: i64) -> Option<i64> {
    let x = *v.get_ref();
    if (lo..=hi).contains(&x) {
        Some(x)
    } else {
        d.error(v.span(), key, format!("{x} is out of range; expected {lo}..={hi}"));
        None
    }
}

/// Modicon notation: `40001` (or `400001`) = holding register 0, `30001` input
/// register 0, `00001` coil 0, `10001` discrete input 0. 1-based, table implied.
fn modicon(text: &str) -> Result<(Table, u16), String> {
    let t = text.trim();
    let bad = || {
        format!(
            "address {text:?} is neither a number nor Modicon notation; write a 0-based PDU address \
             (address = 0) or a 5/6-digit Modicon reference such as \"40001\" (= holding register 0)"
        )
    };
    if !(t.len() == 5 || t.len() == 6) || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let table = match &t[..1] {
        "0" => Table::Coil,
        "1" => Table::DiscreteInput,
        "3" => Table::Input,
        "4" => Table::Holding,
        _ => return Err(bad()),
    };
    let n: u32 = t[1..].parse().map_err(|_| bad())?;
    if n == 0 || n > 65536 {
        return Err(format!("Modicon reference {text:?} is out of range (1..=65536 after the table digit)"));
    }
    Ok((table, (n - 1) as u16))
}

/// Parses and validates one `[[device]]` item with `protocol = "modbus-tcp"`.
/// Returns `None` when any error was recorded.
pub fn parse_device(mut item: Item<'_>, diag: &mut Diag<'_>, key: &str) -> Option<ModbusDevice> {
    let tags_item = take_key(&mut item, "tag");
    let before = diag.error_count();
    reject_unknown_keys(&mut item, DEVICE_KEYS, diag, key);
    let Some(raw) = de_item::<RawDevice>(item, diag, key) else {
        // Still check the tags, so one pass shows every error.
        if let Some(t) = tags_item {
            for (i, t) in crate::diag::array_items_of(t, diag, &format!("{key} / tag"), "device.tag").into_iter().enumerate() {
                let tkey = crate::diag::peek_str(&t, "name")
                    .map_or_else(|| format!("{key} / tag #{}", i + 1), |(n, _)| format!("{key} / tag {n:?}"));
                let mut t = t;
                reject_unknown_keys(&mut t, TAG_KEYS, diag, &tkey);
                if let Some(rt) = de_item::<RawTag>(t, diag, &tkey) {
                    validate_tag(rt, diag, key, ByteOrder::ABCD, Duration::from_secs(1), &Limits::default());
                }
            }
        }
        return None;
    };
    let name = raw.name.get_ref().clone();
    let key = format!("device {name:?}");
    if let Err(e) = names::check(&name) {
        diag.error(raw.name.span(), &format!("{key} / name"), e);
    } else if name == crate::telemetry::HEALTH_DEVICE {
        diag.error(raw.name.span(), &format!("{key} / name"), format!("{name:?} is reserved for the gateway's own health samples"));
    }
    let rtu = raw.protocol == "modbus-rtu";
    let (endpoint, transport) = if rtu {
        for (v, k) in [(&raw.endpoint, "endpoint")] {
            if let Some(v) = v {
                diag.error(
                    v.span(),
                    &format!("{key} / {k}"),
                    "a modbus-rtu device is on a serial `port`; use protocol = \"modbus-rtu-over-tcp\" for a serial device server",
                );
            }
        }
        let port = match &raw.port {
            Some(p) if !p.get_ref().trim().is_empty() => {
                let path = p.get_ref().trim().to_string();
                // A USB adapter may be plugged in later: a warning, and relais
                // retries; a file or folder will never be a serial port.
                match std::fs::metadata(&path) {
                    Err(_) => diag.warn(
                        p.span(),
                        &format!("{key} / port"),
                        format!("serial port {path} does not exist (yet); relais retries until it appears"),
                    ),
                    Ok(m) if m.is_dir() || m.is_file() => diag.error(
                        p.span(),
                        &format!("{key} / port"),
                        format!("{path} is a {}, not a serial device", if m.is_dir() { "folder" } else { "regular file" }),
                    ),
                    Ok(_) => {}
                }
                path
            }
            Some(p) => {
                diag.error(p.span(), &format!("{key} / port"), "port is empty; give the serial device, e.g. \"/dev/ttyUSB0\"");
                String::new()
            }
            None => {
                diag.error(raw.name.span(), &format!("{key} / port"), "missing key `port`: the serial device, e.g. \"/dev/ttyUSB0\"");
                String::new()
            }
        };
        let baud_rate =
            raw.baud_rate.as_ref().and_then(|b| int_in(diag, b, &format!("{key} / baud_rate"), 300, 4_000_000)).unwrap_or(19_200) as u32;
        let parity = match raw.parity.as_ref().map(|p| (p.get_ref().to_ascii_lowercase(), p.span())) {
            None => Parity::Even,
            Some((p, _)) if p == "even" || p == "e" => Parity::Even,
            Some((p, _)) if p == "odd" || p == "o" => Parity::Odd,
            Some((p, _)) if p == "none" || p == "n" => Parity::None,
            Some((p, span)) => {
                diag.error(
                    span,
                    &format!("{key} / parity"),
                    format!("unknown parity {p:?}; expected \"even\" (Modbus default), \"odd\" or \"none\""),
                );
                Parity::Even
            }
        };
        let data_bits = raw.data_bits.as_ref().and_then(|b| int_in(diag, b, &format!("{key} / data_bits"), 7, 8)).unwrap_or(8) as u8;
        let stop_bits = raw.stop_bits.as_ref().and_then(|b| int_in(diag, b, &format!("{key} / stop_bits"), 1, 2)).unwrap_or(1) as u8;
        (port.clone(), Transport::Rtu { port, baud_rate, parity, data_bits, stop_bits })
    } else {
        for (v, k) in [(&raw.port, "port"), (&raw.parity, "parity")] {
            if let Some(v) = v {
                diag.error(v.span(), &format!("{key} / {k}"), format!("`{k}` belongs to protocol = \"modbus-rtu\" (a serial line)"));
            }
        }
        for (v, k) in [(&raw.baud_rate, "baud_rate"), (&raw.data_bits, "data_bits"), (&raw.stop_bits, "stop_bits")] {
            if let Some(v) = v {
                diag.error(v.span(), &format!("{key} / {k}"), format!("`{k}` belongs to protocol = \"modbus-rtu\" (a serial line)"));
            }
        }
        let endpoint = match &raw.endpoint {
            Some(e) => {
                let ep = e.get_ref().trim().to_string();
                if let Err(err) = check_endpoint(&ep) {
                    diag.error(e.span(), &format!("{key} / endpoint"), err);
                }
                ep
            }
            None => {
                diag.error(
                    raw.name.span(),
                    &format!("{key} / endpoint"),
                    "missing key `endpoint`: \"host:port\", e.g. \"192.168.1.10:502\"",
                );
                String::new()
            }
        };
        let t = if raw.protocol == "modbus-rtu-over-tcp" { Transport::RtuOverTcp } else { Transport::Tcp };
        (endpoint, t)
    };
    let serial_framing = transport != Transport::Tcp;
    let unit_id = match &raw.unit_id {
        None => 1,
        // On a serial line 0 is broadcast (no answer) and 248..=255 are reserved.
        Some(u) if serial_framing => int_in(diag, u, &format!("{key} / unit_id"), 1, 247).unwrap_or(1),
        Some(u) => int_in(diag, u, &format!("{key} / unit_id"), 0, 255).unwrap_or(1),
    } as u8;
    if serial_framing && raw.unit_id.as_ref().is_some_and(|u| *u.get_ref() == 0) {
        let u = raw.unit_id.as_ref().expect("checked");
        diag.error(
            u.span(),
            &format!("{key} / unit_id"),
            "unit id 0 is the RTU broadcast address: devices never answer it, so it cannot be read",
        );
    }
    let timeout = duration(diag, &raw.timeout, &format!("{key} / timeout"), Duration::from_secs(1), Duration::from_millis(10));
    if timeout > Duration::from_secs(600) {
        let span = raw.timeout.as_ref().map_or(raw.name.span(), |t| t.span());
        diag.error(span, &format!("{key} / timeout"), "timeout is longer than 10 minutes: a silent device would never report");
    }
    let poll_interval =
        duration(diag, &raw.poll_interval, &format!("{key} / poll_interval"), Duration::from_secs(1), Duration::from_millis(1));
    if poll_interval > Duration::from_secs(86_400) {
        let span = raw.poll_interval.as_ref().map_or(raw.name.span(), |t| t.span());
        diag.error(span, &format!("{key} / poll_interval"), "poll_interval is longer than a day");
    }
    let reconnect_max =
        duration(diag, &raw.reconnect_max, &format!("{key} / reconnect_max"), Duration::from_secs(30), Duration::from_millis(100));
    let byte_order = raw.byte_order.as_ref().and_then(|b| parsed(diag, b, &format!("{key} / byte_order"))).unwrap_or_default();
    let mut limits = Limits::default();
    if let Some(v) = &raw.max_registers_per_request {
        limits.max_registers = int_in(diag, v, &format!("{key} / max_registers_per_request"), 1, 125).unwrap_or(125) as u16;
    }
    if let Some(v) = &raw.max_bits_per_request {
        limits.max_bits = int_in(diag, v, &format!("{key} / max_bits_per_request"), 1, 2000).unwrap_or(2000) as u16;
    }
    if let Some(v) = &raw.max_gap {
        limits.max_gap_registers = int_in(diag, v, &format!("{key} / max_gap"), 0, 124).unwrap_or(10) as u16;
    }
    if let Some(v) = &raw.max_gap_bits {
        limits.max_gap_bits = int_in(diag, v, &format!("{key} / max_gap_bits"), 0, 1999).unwrap_or(64) as u16;
    }

    let mut tags = Vec::new();
    let mut seen: std::collections::HashMap<String, std::ops::Range<usize>> = Default::default();
    let mut address_spans = Vec::new();
    let items = match tags_item {
        Some(t) => crate::diag::array_items_of(t, diag, &format!("{key} / tag"), "device.tag"),
        None => Vec::new(),
    };
    if items.is_empty() {
        diag.warn(raw.name.span(), &key, "device has no [[device.tag]]; nothing will be polled");
    }
    for (i, mut t) in items.into_iter().enumerate() {
        let tkey =
            crate::diag::peek_str(&t, "name").map_or_else(|| format!("{key} / tag #{}", i + 1), |(n, _)| format!("{key} / tag {n:?}"));
        reject_unknown_keys(&mut t, TAG_KEYS, diag, &tkey);
        let Some(rt) = de_item::<RawTag>(t, diag, &tkey) else { continue };
        let tname = rt.name.get_ref().clone();
        if let Some(prev) = seen.get(&tname) {
            let (line, _) = crate::diag::line_col(diag.source(), prev.start);
            diag.error(rt.name.span(), &format!("{key} / tag {tname:?}"), format!("duplicate tag name (first defined on line {line})"));
        } else {
            seen.insert(tname.clone(), rt.name.span());
        }
        let span = rt.address.span();
        if let Some(tag) = validate_tag(rt, diag, &key, byte_order, poll_interval, &limits) {
            tags.push(tag);
            address_spans.push(span);
        }
    }
    for (i, w) in super::lint::odd_wide_tags(&tags) {
        diag.warn(address_spans[i].clone(), &format!("{key} / tag {:?} / address", tags[i].name), w);
    }
    if diag.error_count() > before {
        None
    } else {
        Some(ModbusDevice { name, endpoint, transport, unit_id, timeout, poll_interval, byte_order, limits, reconnect_max, tags })
    }
}

fn validate_tag(
    rt: RawTag,
    diag: &mut Diag<'_>,
    dkey: &str,
    dev_order: ByteOrder,
    dev_interval: Duration,
    limits: &Limits,
) -> Option<ModbusTag> {
    let before = diag.error_count();
    let name = rt.name.get_ref().clone();
    let key = format!("{dkey} / tag {name:?}");
    if let Err(e) = names::check(&name) {
        diag.error(rt.name.span(), &format!("{key} / name"), e);
    }
    let table_cfg: Option<Table> = rt.table.as_ref().and_then(|t| parsed(diag, t, &format!("{key} / table")));
    let (table, address) = match rt.address.get_ref() {
        RawAddress::Number(n) => {
            if !(0..=65535).contains(n) {
                diag.error(
                    rt.address.span(),
                    &format!("{key} / address"),
                    format!("address {n} is out of range; expected a 0-based PDU address in 0..=65535"),
                );
            }
            if let Some(w) = table_cfg.and_then(|t| super::lint::modicon_lookalike(t, *n)) {
                diag.warn(rt.address.span(), &format!("{key} / address"), w);
            }
            (table_cfg.unwrap_or(Table::Holding), (*n).clamp(0, 65535) as u16)
        }
        RawAddress::Text(s) => match modicon(s) {
            Ok((t, a)) => {
                if let Some(tc) = table_cfg
                    && tc != t
                {
                    diag.error(
                        rt.address.span(),
                        &format!("{key} / address"),
                        format!("Modicon reference {s:?} is in the {t} table but table = \"{tc}\""),
                    );
                }
                (t, a)
            }
            Err(e) => {
                diag.error(rt.address.span(), &format!("{key} / address"), e);
                (Table::Holding, 0)
            }
        },
    };
    if rt.table.is_none() && matches!(rt.address.get_ref(), RawAddress::Number(_)) {
        diag.error(
            rt.address.span(),
            &format!("{key} / table"),
            "missing key `table`; expected one of holding, input, coil, discrete_input",
        );
    }
    let default_ty = if table.is_bit() || rt.bit.is_some() { DataType::Bool } else { DataType::U16 };
    let ty: DataType = match &rt.ty {
        None => default_ty,
        Some(t) => parsed(diag, t, &format!("{key} / type")).unwrap_or(default_ty),
    };
    if table.is_bit() && ty != DataType::Bool {
        diag.error(
            rt.ty.as_ref().map_or(rt.name.span(), |t| t.span()),
            &format!("{key} / type"),
            format!("type {ty} cannot be read from the {table} table, which holds single bits; use type = \"bool\""),
        );
    }
    let bit = match &rt.bit {
        None => None,
        Some(b) => {
            let v = int_in(diag, b, &format!("{key} / bit"), 0, 15).map(|x| x as u8);
            if table.is_bit() {
                diag.error(
                    b.span(),
                    &format!("{key} / bit"),
                    format!("`bit` selects a bit of a 16-bit register; the {table} table already holds single bits"),
                );
            }
            if ty != DataType::Bool {
                diag.error(b.span(), &format!("{key} / bit"), format!("`bit` needs type = \"bool\", not {ty}"));
            }
            v
        }
    };
    let byte_order = rt.byte_order.as_ref().and_then(|b| parsed(diag, b, &format!("{key} / byte_order"))).unwrap_or(dev_order);
    let numeric = ty.is_integer() || ty.is_float();
    let scale = match &rt.scale {
        None => 1.0,
        Some(s) => {
            let v = *s.get_ref();
            if !numeric {
                diag.error(s.span(), &format!("{key} / scale"), format!("scale applies to numeric types, not {ty}"));
            } else if !v.is_finite() || v == 0.0 {
                diag.error(s.span(), &format!("{key} / scale"), format!("scale {v} must be finite and non-zero"));
            }
            v
        }
    };
    let offset = match &rt.offset {
        None => 0.0,
        Some(s) => {
            let v = *s.get_ref();
            if !numeric {
                diag.error(s.span(), &format!("{key} / offset"), format!("offset applies to numeric types, not {ty}"));
            } else if !v.is_finite() {
                diag.error(s.span(), &format!("{key} / offset"), format!("offset {v} must be finite"));
            }
            v
        }
    };
    let poll_interval = duration(diag, &rt.poll_interval, &format!("{key} / poll_interval"), dev_interval, Duration::from_millis(1));
    let count = if table.is_bit() { 1 } else { ty.register_count() };
    if address as u32 + count as u32 > 65536 {
        diag.error(
            rt.address.span(),
            &format!("{key} / address"),
            format!("{ty} at address {address} needs {count} registers and runs past 65535"),
        );
    }
    let limit = if table.is_bit() { limits.max_bits } else { limits.max_registers };
    if count > limit {
        diag.error(
            rt.ty.as_ref().map_or(rt.name.span(), |t| t.span()),
            &format!("{key} / type"),
            format!("{ty} needs {count} registers, more than the device's limit of {limit} per request"),
        );
    }
    if diag.error_count() > before {
        return None;
    }
    Some(ModbusTag { name, table, address, ty, byte_order, bit, scale, offset, unit: rt.unit.filter(|u| !u.is_empty()), poll_interval })
}

/// Checks `host:port` (IPv6 as `[addr]:port`).
pub fn check_endpoint(ep: &str) -> Result<(), String> {
    let Some((host, port)) = ep.rsplit_once(':') else {
        return Err(format!("endpoint {ep:?} needs a port: write \"host:port\", e.g. \"192.168.1.10:502\""));
    };
    if host.is_empty() {
        return Err(format!("endpoint {ep:?} has no host"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(format!("endpoint {ep:?} has an invalid port {port:?}; expected 1..=65535")),
    }
}
