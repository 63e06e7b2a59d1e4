//! `[[station.tag]]` of a simulator config: table, address, type, byte
//! order, bit, scaling, OPC UA status and the signal model (with the CSV
//! files that replays read, loaded once).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use toml::Spanned;

use super::SimTag;
use super::raw::{Num, RawSignal, RawTag};
use super::replay::{CsvTable, csv_signal};
use crate::diag::{Diag, Reader};
use crate::sim::signal::Signal;
use crate::sources::modbus::types::{ByteOrder, DataType, Table};

/// What reading the tags needs beyond the tag itself: the config's folder,
/// the CSV files loaded so far, and the CSV files found missing.
pub(super) struct TagCtx<'p> {
    /// Folder CSV paths resolve against.
    pub base_dir: &'p Path,
    /// Loaded CSV files, shared by the tags that replay their columns.
    pub cache: HashMap<(PathBuf, Option<u8>), Arc<CsvTable>>,
    /// CSV files not found (their tags serve simulated values instead).
    pub missing: Vec<String>,
}

/// Checks one tag of station `key`; `None` (with the errors recorded) when
/// it cannot be served.
pub(super) fn parse_tag(rt: RawTag, key: &str, ctx: &mut TagCtx<'_>, d: &mut Diag<'_>) -> Option<SimTag> {
    let tkey = format!("{key} / tag {:?}", rt.name.get_ref());
    let mut r = Reader::new(d, tkey.clone());
    let table: Table = r.parsed_at(&rt.table, "table")?;
    let address: u16 = r.int_at(&rt.address, "address", 0..=65535)?;
    let default_ty = if table.is_bit() || rt.bit.is_some() { DataType::Bool } else { DataType::U16 };
    let ty = if rt.ty.is_some() { r.parsed(&rt.ty, "type")? } else { default_ty };
    if table.is_bit() && ty != DataType::Bool {
        r.error(rt.table.span(), "type", format!("the {table} table holds bits; use type = \"bool\""));
        return None;
    }
    if address as u32 + if table.is_bit() { 1 } else { ty.register_count() as u32 } > 65536 {
        r.error(rt.address.span(), "address", "the tag runs past address 65535");
        return None;
    }
    let byte_order = if rt.byte_order.is_some() { r.parsed(&rt.byte_order, "byte_order")? } else { ByteOrder::ABCD };
    let bit = match &rt.bit {
        Some(b) if table.is_bit() => {
            r.error(b.span(), "bit", "bit applies to a register table (holding or input), not to a bit table");
            return None;
        }
        Some(_) => Some(r.int_opt::<u8>(&rt.bit, "bit", 0..=15)?),
        None => None,
    };
    let scale = rt.scale.filter(|s| *s != 0.0 && s.is_finite()).unwrap_or(1.0);
    let offset = rt.offset.unwrap_or(0.0);
    let signal = parse_signal(rt.signal, &tkey, (table, ty, scale, offset), ctx, r.diag())?;
    let opcua_status = match &rt.opcua_status {
        None => None,
        Some(c) => match u32::try_from(*c.get_ref()) {
            Ok(v) => Some(v),
            Err(_) => {
                let msg = "opcua_status is a 32-bit StatusCode, e.g. 0x801F0000 (BadUserAccessDenied)";
                r.error(c.span(), "opcua_status", msg);
                return None;
            }
        },
    };
    Some(SimTag { opcua_status, name: rt.name.into_inner(), table, address, ty, byte_order, bit, scale, offset, signal })
}

/// Checks a tag's `signal` table and builds its model; `target` is the
/// tag's table, data type, scale and offset.
fn parse_signal(
    raw: Spanned<RawSignal>,
    tkey: &str,
    target: (Table, DataType, f64, f64),
    ctx: &mut TagCtx<'_>,
    d: &mut Diag<'_>,
) -> Option<Signal> {
    let span = raw.span();
    let skey = format!("{tkey} / signal");
    // A period (a plain text in the signal's table, located at the table).
    let dur = |d: &mut Diag<'_>, s: &str| {
        let mut r = Reader::new(d, skey.clone());
        let before = r.error_count();
        let x = r.nonzero_duration(&Some(Spanned::new(span.clone(), s.to_string())), "period", Duration::ZERO);
        (r.error_count() == before).then_some(x.as_secs_f64())
    };
    Some(match raw.into_inner() {
        RawSignal::Constant { value: Some(Num::Int(v)), text: None } => Signal::ConstantInt(v as i128),
        RawSignal::Constant { value: Some(v), text: None } => Signal::Constant(v.f()),
        RawSignal::Constant { value: None, text: Some(t) } => Signal::Text(t),
        RawSignal::Constant { .. } => {
            d.error(span, &skey, "constant needs exactly one of `value` or `text`");
            return None;
        }
        RawSignal::Sine { amplitude, offset, period, phase } => Signal::Sine { amplitude, offset, period_s: dur(d, &period)?, phase },
        RawSignal::Ramp { start, slope, min, max } => {
            if max <= min {
                d.error(span, &skey, "ramp needs max > min");
                return None;
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
        RawSignal::Counter { start, step, wrap } => {
            Signal::Counter { value: start as i128, start: start as i128, step: step as i128, wrap: wrap.map(|w| w as i128), first: true }
        }
        RawSignal::Square { low, high, period, duty } => {
            Signal::Square { low, high, period_s: dur(d, &period)?, duty: duty.clamp(0.0, 1.0) }
        }
        RawSignal::Csv { file, column, delimiter, r#loop } => {
            return csv_signal(&file, &column, delimiter.as_deref(), r#loop, (span, &skey), target, ctx, d);
        }
        RawSignal::Tick {} => Signal::Tick,
        RawSignal::Lag { input, gain, offset, tau, start } => {
            Signal::Lag { input, input_index: None, gain, offset, tau_s: dur(d, &tau)?, value: start, last_t: None }
        }
    })
}
