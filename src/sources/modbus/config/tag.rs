//! One `[[device.tag]]` of a Modbus device: table and address (0-based PDU
//! address or Modicon reference), data type, bit, byte order, scaling.

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::super::planner::Limits;
use super::super::types::{ByteOrder, DataType, Table};
use super::ModbusTag;
use super::write::{RawTagWrite, read_tag_write};
use crate::diag::Reader;
use crate::names;

#[derive(Deserialize)]
#[serde(untagged, expecting = "an integer (a 0-based PDU address such as 0) or a Modicon reference string such as \"40001\"")]
pub(super) enum RawAddress {
    Number(i64),
    Text(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTag {
    pub(super) name: Spanned<String>,
    table: Option<Spanned<String>>,
    pub(super) address: Spanned<RawAddress>,
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

/// What a tag inherits from its device.
#[derive(Debug, Clone, Copy)]
pub(super) struct TagDefaults {
    pub(super) byte_order: ByteOrder,
    pub(super) poll_interval: Duration,
    pub(super) limits: Limits,
    /// The device's response timeout (the default read-back timeout).
    pub(super) timeout: Duration,
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

/// Validates one tag read as `rt` with its write keys `raw_write`; `r`
/// reads the tag's table (its key is `device "…" / tag "…"`). `None` when
/// any error was recorded.
pub(super) fn validate_tag(rt: RawTag, raw_write: RawTagWrite, r: &mut Reader<'_, '_>, dev: &TagDefaults) -> Option<ModbusTag> {
    let before = r.error_count();
    let name = rt.name.get_ref().clone();
    if let Err(e) = names::check(&name) {
        r.error(rt.name.span(), "name", e);
    }
    let (table, address) = read_address(r, &rt);
    let default_ty = if table.is_bit() || rt.bit.is_some() { DataType::Bool } else { DataType::U16 };
    let ty: DataType = if rt.ty.is_some() { r.parsed(&rt.ty, "type").unwrap_or(default_ty) } else { default_ty };
    let type_span = rt.ty.as_ref().map_or(rt.name.span(), |t| t.span());
    if table.is_bit() && ty != DataType::Bool {
        r.error(
            type_span.clone(),
            "type",
            format!("type {ty} cannot be read from the {table} table, which holds single bits; use type = \"bool\""),
        );
    }
    let bit = read_bit(r, &rt, table, ty);
    let byte_order = r.parsed(&rt.byte_order, "byte_order").unwrap_or(dev.byte_order);
    let (scale, offset) = read_scaling(r, &rt, ty);
    let poll_interval = r.duration_in(&rt.poll_interval, "poll_interval", dev.poll_interval, Duration::from_millis(1)..=Duration::MAX);
    let count = if table.is_bit() { 1 } else { ty.register_count() };
    if address as u32 + count as u32 > 65536 {
        r.error(rt.address.span(), "address", format!("{ty} at address {address} needs {count} registers and runs past 65535"));
    }
    let limit = if table.is_bit() { dev.limits.max_bits } else { dev.limits.max_registers };
    if count > limit {
        r.error(type_span, "type", format!("{ty} needs {count} registers, more than the device's limit of {limit} per request"));
    }
    let write = read_tag_write(r, raw_write, table, ty, dev.timeout);
    if r.error_count() > before {
        return None;
    }
    let unit = rt.unit.filter(|u| !u.is_empty());
    Some(ModbusTag { name, table, address, ty, byte_order, bit, scale, offset, unit, poll_interval, write })
}

/// The table and 0-based address: `table` + a number, or a Modicon reference
/// (whose table must agree with `table` when both are given).
fn read_address(r: &mut Reader<'_, '_>, rt: &RawTag) -> (Table, u16) {
    let table_cfg: Option<Table> = r.parsed(&rt.table, "table");
    let span = rt.address.span();
    match rt.address.get_ref() {
        RawAddress::Number(n) => {
            if !(0..=65535).contains(n) {
                r.error(span.clone(), "address", format!("address {n} is out of range; expected a 0-based PDU address in 0..=65535"));
            }
            if let Some(w) = table_cfg.and_then(|t| super::super::lint::modicon_lookalike(t, *n)) {
                r.warn(span.clone(), "address", w);
            }
            if rt.table.is_none() {
                r.error(span, "table", "missing key `table`; expected one of holding, input, coil, discrete_input");
            }
            (table_cfg.unwrap_or(Table::Holding), (*n).clamp(0, 65535) as u16)
        }
        RawAddress::Text(s) => match modicon(s) {
            Ok((t, a)) => {
                if let Some(tc) = table_cfg
                    && tc != t
                {
                    r.error(span, "address", format!("Modicon reference {s:?} is in the {t} table but table = \"{tc}\""));
                }
                (t, a)
            }
            Err(e) => {
                r.error(span, "address", e);
                (Table::Holding, 0)
            }
        },
    }
}

/// `bit`: one bit (0–15) of a register, for bool tags of a register table.
fn read_bit(r: &mut Reader<'_, '_>, rt: &RawTag, table: Table, ty: DataType) -> Option<u8> {
    let b = rt.bit.as_ref()?;
    let v = r.int_opt(&rt.bit, "bit", 0..=15);
    if table.is_bit() {
        r.error(b.span(), "bit", format!("`bit` selects a bit of a 16-bit register; the {table} table already holds single bits"));
    }
    if ty != DataType::Bool {
        r.error(b.span(), "bit", format!("`bit` needs type = \"bool\", not {ty}"));
    }
    v
}

/// `scale` (finite, non-zero) and `offset` (finite), for numeric types only.
fn read_scaling(r: &mut Reader<'_, '_>, rt: &RawTag, ty: DataType) -> (f64, f64) {
    let numeric = ty.is_integer() || ty.is_float();
    let scale = match &rt.scale {
        None => 1.0,
        Some(s) => {
            let v = *s.get_ref();
            if !numeric {
                r.error(s.span(), "scale", format!("scale applies to numeric types, not {ty}"));
            } else if !v.is_finite() || v == 0.0 {
                r.error(s.span(), "scale", format!("scale {v} must be finite and non-zero"));
            }
            v
        }
    };
    let offset = match &rt.offset {
        None => 0.0,
        Some(s) => {
            let v = *s.get_ref();
            if !numeric {
                r.error(s.span(), "offset", format!("offset applies to numeric types, not {ty}"));
            } else if !v.is_finite() {
                r.error(s.span(), "offset", format!("offset {v} must be finite"));
            }
            v
        }
    };
    (scale, offset)
}
