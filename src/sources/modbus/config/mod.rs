//! Configuration of `protocol = "modbus-tcp"` devices and their tags.
//!
//! See `sample.toml` beside this file and `docs/configuration.md` for every key.

mod tag;
mod transport;
mod write;

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::planner::Limits;
use super::types::{ByteOrder, DataType, Table};
use crate::diag::{Diag, FirstSeen, Item, Reader, de_item, entries, reject_unknown_keys, take_key};
use crate::names;
use crate::sources::writable::{RawTagWrite, with_write_keys};
use tag::{RawTag, TagDefaults, validate_tag};
pub use transport::{Parity, Transport, check_endpoint, serial_key};
pub use write::{DeviceWrites, SingleWrite, TagWrite};

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
    /// When polls happen within their interval (`poll_phase`, default spread).
    pub poll_phase: crate::sources::schedule::PollPhase,
    /// Default byte order of multi-register tags.
    pub byte_order: ByteOrder,
    /// Planner limits (request size, bridged holes).
    pub limits: Limits,
    /// Longest wait between reconnect attempts (default 30 s).
    pub reconnect_max: Duration,
    /// How writes are sent (function codes, FC22 support).
    pub writes: DeviceWrites,
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
    /// `Some` when `writable = true`: its limits and read-back.
    pub write: Option<TagWrite>,
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
    "poll_phase",
    "byte_order",
    "max_registers_per_request",
    "max_bits_per_request",
    "max_gap",
    "max_gap_bits",
    "single_register_write",
    "single_coil_write",
    "mask_write",
    "reconnect_max",
    "port",
    "baud_rate",
    "parity",
    "data_bits",
    "stop_bits",
];
/// The keys listed in an "unknown key" message for a device of `protocol`:
/// those that apply to it, and its `tag` list.
pub fn device_keys_for(protocol: Option<&str>) -> Vec<&'static str> {
    const SERIAL: &[&str] = &["port", "baud_rate", "parity", "data_bits", "stop_bits"];
    let rtu = protocol == Some("modbus-rtu");
    DEVICE_KEYS.iter().copied().filter(|k| if rtu { *k != "endpoint" } else { !SERIAL.contains(k) }).chain(["tag"]).collect()
}

/// Keys of a Modbus `[[device.tag]]` besides the write keys
/// (`sources::writable::WRITE_KEYS`).
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
    poll_phase: Option<Spanned<String>>,
    byte_order: Option<Spanned<String>>,
    max_registers_per_request: Option<Spanned<i64>>,
    max_bits_per_request: Option<Spanned<i64>>,
    max_gap: Option<Spanned<i64>>,
    max_gap_bits: Option<Spanned<i64>>,
    reconnect_max: Option<Spanned<String>>,
    single_register_write: Option<Spanned<String>>,
    single_coil_write: Option<Spanned<String>>,
    mask_write: Option<bool>,
}

/// Parses and validates one `[[device]]` item with `protocol = "modbus-tcp"`
/// (or `modbus-rtu`, `modbus-rtu-over-tcp`). Returns `None` when any error
/// was recorded.
pub fn parse_device(mut item: Item<'_>, diag: &mut Diag<'_>, key: &str) -> Option<ModbusDevice> {
    let tags_item = take_key(&mut item, "tag");
    let before = diag.error_count();
    let shown = device_keys_for(crate::diag::peek_str(&item, "protocol").as_ref().map(|(p, _)| p.as_str()));
    crate::diag::reject_unknown_keys_showing(&mut item, DEVICE_KEYS, &shown, diag, key);
    let Some(raw) = de_item::<RawDevice>(item, diag, key) else {
        // Still check the tags, so one pass shows every error.
        let dev = TagDefaults {
            byte_order: ByteOrder::ABCD,
            poll_interval: Duration::from_secs(1),
            limits: Limits::default(),
            timeout: Duration::from_secs(1),
        };
        for e in entries(tags_item, diag, key, "tag", "device.tag") {
            let mut t = e.item;
            reject_unknown_keys(&mut t, &with_write_keys(TAG_KEYS), diag, &e.key);
            let w = RawTagWrite::take(&mut t, diag, &e.key);
            if let Some(rt) = de_item::<RawTag>(t, diag, &e.key) {
                let tkey = format!("{key} / tag {:?}", rt.name.get_ref());
                validate_tag(rt, w, &mut Reader::new(diag, tkey), &dev);
            }
        }
        return None;
    };
    let name = raw.name.get_ref().clone();
    let key = format!("device {name:?}");
    let mut r = Reader::new(diag, &key);
    if let Err(e) = names::check(&name) {
        r.error(raw.name.span(), "name", e);
    } else if name == crate::telemetry::HEALTH_DEVICE {
        r.error(raw.name.span(), "name", format!("{name:?} is reserved for the gateway's own health samples"));
    }
    let (endpoint, transport) = transport::read_transport(&mut r, &raw);
    let unit_id = read_unit_id(&mut r, &raw, &transport);
    let timeout = r.duration_in(&raw.timeout, "timeout", Duration::from_secs(1), Duration::from_millis(10)..=Duration::MAX);
    if timeout > Duration::from_secs(600) {
        let span = raw.timeout.as_ref().map_or(raw.name.span(), |t| t.span());
        r.error(span, "timeout", "timeout is longer than 10 minutes: a silent device would never report");
    }
    let poll_interval =
        r.duration_in(&raw.poll_interval, "poll_interval", Duration::from_secs(1), Duration::from_millis(1)..=Duration::MAX);
    if poll_interval > Duration::from_secs(86_400) {
        let span = raw.poll_interval.as_ref().map_or(raw.name.span(), |t| t.span());
        r.error(span, "poll_interval", "poll_interval is longer than a day");
    }
    let poll_phase = r.choice(&raw.poll_phase, "poll_phase", crate::sources::schedule::POLL_PHASES, Default::default());
    let reconnect_max =
        r.duration_in(&raw.reconnect_max, "reconnect_max", Duration::from_secs(30), Duration::from_millis(100)..=Duration::MAX);
    let byte_order = r.parsed(&raw.byte_order, "byte_order").unwrap_or_default();
    let limits = Limits {
        max_registers: r.int(&raw.max_registers_per_request, "max_registers_per_request", 1..=125, 125),
        max_bits: r.int(&raw.max_bits_per_request, "max_bits_per_request", 1..=2000, 2000),
        max_gap_registers: r.int(&raw.max_gap, "max_gap", 0..=124, Limits::default().max_gap_registers),
        max_gap_bits: r.int(&raw.max_gap_bits, "max_gap_bits", 0..=1999, Limits::default().max_gap_bits),
    };
    let writes = write::read_device_writes(&mut r, &raw.single_register_write, &raw.single_coil_write, raw.mask_write);
    let dev = TagDefaults { byte_order, poll_interval, limits, timeout };
    let tags = read_tags(&mut r, tags_item, &raw, &dev);
    if diag.error_count() > before {
        None
    } else {
        Some(ModbusDevice {
            name,
            endpoint,
            transport,
            unit_id,
            timeout,
            poll_interval,
            poll_phase,
            byte_order,
            limits,
            reconnect_max,
            writes,
            tags,
        })
    }
}

/// `unit_id`: 0..=255 on TCP; 1..=247 on a serial framing, where 0 is the
/// broadcast address (no answer) and 248..=255 are reserved.
fn read_unit_id(r: &mut Reader<'_, '_>, raw: &RawDevice, transport: &Transport) -> u8 {
    let serial_framing = *transport != Transport::Tcp;
    if serial_framing && let Some(u) = raw.unit_id.as_ref().filter(|u| *u.get_ref() == 0) {
        r.error(u.span(), "unit_id", "unit id 0 is the RTU broadcast address: devices never answer it, so it cannot be read");
    }
    if serial_framing { r.int(&raw.unit_id, "unit_id", 1..=247, 1) } else { r.int(&raw.unit_id, "unit_id", 0..=255, 1) }
}

/// The device's `[[device.tag]]` list: each tag validated, names unique,
/// lint warnings for wide types at odd addresses.
fn read_tags(r: &mut Reader<'_, '_>, list: Option<Item<'_>>, raw: &RawDevice, dev: &TagDefaults) -> Vec<ModbusTag> {
    let key = r.table().to_string();
    let items = entries(list, r.diag(), &key, "tag", "device.tag");
    if items.is_empty() {
        r.warn(raw.name.span(), "", "device has no [[device.tag]]; nothing will be polled");
    }
    let mut tags = Vec::new();
    let mut seen = FirstSeen::new();
    let mut address_spans = Vec::new();
    for e in items {
        let mut t = e.item;
        reject_unknown_keys(&mut t, &with_write_keys(TAG_KEYS), r.diag(), &e.key);
        let w = RawTagWrite::take(&mut t, r.diag(), &e.key);
        let Some(rt) = de_item::<RawTag>(t, r.diag(), &e.key) else { continue };
        let tname = rt.name.get_ref().clone();
        let tkey = format!("{key} / tag {tname:?}");
        seen.insert(r.diag(), &tname, rt.name.span(), &tkey, "tag name");
        let span = rt.address.span();
        if let Some(tag) = validate_tag(rt, w, &mut Reader::new(r.diag(), tkey), dev) {
            tags.push(tag);
            address_spans.push(span);
        }
    }
    for (i, w) in super::lint::odd_wide_tags(&tags) {
        r.warn(address_spans[i].clone(), &format!("tag {:?} / address", tags[i].name), w);
    }
    tags
}
