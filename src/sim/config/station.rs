//! `[[station]]` of a simulator config: where it is served, its unit id,
//! tick, unmapped policy, faults, and its tags (read in `tags.rs`).

use std::collections::HashMap;
use std::time::Duration;

use super::raw::{RawFaults, RawStation};
use super::tags::{TagCtx, parse_tag};
use super::{ExceptionRange, Faults, Line, StationConfig, Unmapped};
use crate::diag::{Diag, Reader};
use crate::sim::opcua::SETPOINT;
use crate::sources::modbus::types::Table;

/// What the stations of one file are checked against together.
pub(super) struct Stations<'p> {
    /// `[sim] tick`.
    pub default_tick: Duration,
    /// `[opcua]` is present (stations may then have no Modbus line, and
    /// `setpoint` is the name of every station's writable node).
    pub opcua: bool,
    /// Which station serves each (line, unit id).
    pub seen: HashMap<(Line, u8), String>,
    /// Tags' context (CSV files).
    pub tags: TagCtx<'p>,
}

/// Checks one station; `None` (with the errors recorded) when it has no
/// usable line.
pub(super) fn parse_station(rs: RawStation, all: &mut Stations<'_>, d: &mut Diag<'_>) -> Option<StationConfig> {
    let name = rs.name.get_ref().clone();
    let key = format!("station {name:?}");
    let mut r = Reader::new(d, key.clone());
    let line = line_of(&rs, all, &mut r)?;
    let unit_id: u8 = r.int(&rs.unit_id, "unit_id", 0..=255, 1);
    if line != Line::None
        && let Some(other) = all.seen.insert((line.clone(), unit_id), name.clone())
    {
        let on = match &line {
            Line::Tcp(a) => a.to_string(),
            Line::Serial(p) => p.display().to_string(),
            Line::None => String::new(),
        };
        r.error(rs.name.span(), "unit_id", format!("station {other:?} already serves unit {unit_id} on {on}"));
    }
    let tick = r.duration_in(&rs.tick, "tick", all.default_tick, MIN_TICK..=Duration::MAX);
    let unmapped = r.choice(&rs.unmapped, "unmapped", &[("zero", Unmapped::Zero), ("exception", Unmapped::Exception)], Unmapped::Zero);
    let faults = rs.faults.map(|f| parse_faults(f, &mut r)).unwrap_or_default();
    let mut tags = Vec::new();
    for rt in rs.tag {
        if all.opcua && rt.name.get_ref() == SETPOINT {
            let msg = format!(
                "the tag name {SETPOINT:?} is taken: over OPC UA every station has a writable Double node `{name}.{SETPOINT}`; give this tag another name"
            );
            r.error(rt.name.span(), &format!("tag {SETPOINT:?} / name"), msg);
            continue;
        }
        tags.extend(parse_tag(rt, &key, &mut all.tags, r.diag()));
    }
    resolve_lag_inputs(&mut tags, &mut r, rs.name.span());
    Some(StationConfig { name, line, unit_id, tick, lockstep: rs.lockstep, unmapped, faults, tags })
}

/// The shortest tick of a station (and of `[sim] tick`).
pub(super) const MIN_TICK: Duration = Duration::from_millis(1);

/// `listen` (Modbus TCP), `serial` (Modbus RTU on a pseudo-terminal), or
/// neither when the station is served over OPC UA only.
fn line_of(rs: &RawStation, all: &Stations<'_>, r: &mut Reader<'_, '_>) -> Option<Line> {
    match (&rs.listen, &rs.serial) {
        (Some(_), None) => r.socket_addr(&rs.listen, "listen", "127.0.0.1:5020").map(Line::Tcp),
        (None, Some(p)) => Some(Line::Serial(all.tags.base_dir.join(p.get_ref()))),
        (None, None) if all.opcua => Some(Line::None),
        _ => {
            r.error(
                rs.name.span(),
                "listen",
                "give exactly one of `listen` (Modbus TCP, \"127.0.0.1:5020\") or `serial` (Modbus RTU on a pseudo-terminal, a path)",
            );
            None
        }
    }
}

/// `[station.faults]`: every wrong value of an exception range is reported
/// with its own key; the range is left out.
fn parse_faults(f: RawFaults, r: &mut Reader<'_, '_>) -> Faults {
    let mut faults =
        Faults { silent: f.silent, refuse_functions: f.refuse_functions, refuse_single_fc16: f.refuse_single_fc16, ..Faults::default() };
    faults.delay = r.duration(&f.delay, "faults / delay", Duration::ZERO);
    for ex in f.exceptions {
        let table = r.parsed_at::<Table>(&ex.table, "faults / exceptions / table");
        let start = r.int_at::<u16>(&ex.start, "faults / exceptions / start", 0..=65535);
        let count = r.int_at::<u32>(&ex.count, "faults / exceptions / count", 1..=65536);
        let code = r.int_at::<u8>(&ex.code, "faults / exceptions / code", 1..=255);
        if let (Some(table), Some(start), Some(count), Some(code)) = (table, start, count, code) {
            faults.exceptions.push(ExceptionRange { table, start, count: count.min(65536 - start as u32), code });
        }
    }
    faults
}

/// Points each `lag` signal at its input tag (by name, in the same station,
/// not itself); an unknown name is an error at the station.
fn resolve_lag_inputs(tags: &mut [super::SimTag], r: &mut Reader<'_, '_>, span: std::ops::Range<usize>) {
    let names: Vec<String> = tags.iter().map(|t| t.name.clone()).collect();
    for (i, t) in tags.iter_mut().enumerate() {
        if let crate::sim::signal::Signal::Lag { input, input_index, .. } = &mut t.signal {
            match names.iter().position(|n| n == input) {
                Some(j) if j != i => *input_index = Some(j),
                _ => r.error(
                    span.clone(),
                    &format!("tag {:?} / signal / input", t.name),
                    format!("lag input {input:?} is not another tag of this station (tags: {})", names.join(", ")),
                ),
            }
        }
    }
}
