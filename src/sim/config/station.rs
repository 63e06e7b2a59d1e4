//! `[[station]]` of a simulator config: where it is served, its unit id,
//! tick, unmapped policy, faults, and its tags (read in `tags.rs`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use super::raw::{RawFaults, RawStation};
use super::tags::{TagCtx, parse_tag};
use super::{ExceptionRange, Faults, Line, StationConfig, Unmapped};
use crate::diag::Diag;
use crate::sim::opcua::SETPOINT;
use crate::sources::modbus::types::Table;
use crate::units;

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
    let line = line_of(&rs, &key, all, d)?;
    let unit_id = match &rs.unit_id {
        None => 1,
        Some(u) if (0..=255).contains(u.get_ref()) => *u.get_ref() as u8,
        Some(u) => {
            d.error(u.span(), &format!("{key} / unit_id"), "unit_id must be in 0..=255");
            1
        }
    };
    if line != Line::None
        && let Some(other) = all.seen.insert((line.clone(), unit_id), name.clone())
    {
        let on = match &line {
            Line::Tcp(a) => a.to_string(),
            Line::Serial(p) => p.display().to_string(),
            Line::None => String::new(),
        };
        d.error(rs.name.span(), &format!("{key} / unit_id"), format!("station {other:?} already serves unit {unit_id} on {on}"));
    }
    let tick = match &rs.tick {
        None => all.default_tick,
        Some(t) => match units::parse_duration(t.get_ref()) {
            Ok(x) if x >= Duration::from_millis(1) => x,
            Ok(_) => {
                d.error(t.span(), &format!("{key} / tick"), "tick must be at least 1ms");
                all.default_tick
            }
            Err(e) => {
                d.error(t.span(), &format!("{key} / tick"), e);
                all.default_tick
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
    let faults = rs.faults.map(|f| parse_faults(f, &key, d)).unwrap_or_default();
    let mut tags = Vec::new();
    for rt in rs.tag {
        if all.opcua && rt.name.get_ref() == SETPOINT {
            let msg = format!(
                "the tag name {SETPOINT:?} is taken: over OPC UA every station has a writable Double node `{name}.{SETPOINT}`; give this tag another name"
            );
            d.error(rt.name.span(), &format!("{key} / tag {SETPOINT:?} / name"), msg);
            continue;
        }
        tags.extend(parse_tag(rt, &key, &mut all.tags, d));
    }
    Some(StationConfig { name, line, unit_id, tick, lockstep: rs.lockstep, unmapped, faults, tags })
}

/// `listen` (Modbus TCP), `serial` (Modbus RTU on a pseudo-terminal), or
/// neither when the station is served over OPC UA only.
fn line_of(rs: &RawStation, key: &str, all: &Stations<'_>, d: &mut Diag<'_>) -> Option<Line> {
    match (&rs.listen, &rs.serial) {
        (Some(l), None) => match l.get_ref().parse::<SocketAddr>() {
            Ok(a) => Some(Line::Tcp(a)),
            Err(_) => {
                d.error(l.span(), &format!("{key} / listen"), format!("{:?} is not an address like \"127.0.0.1:5020\"", l.get_ref()));
                None
            }
        },
        (None, Some(p)) => Some(Line::Serial(all.tags.base_dir.join(p.get_ref()))),
        (None, None) if all.opcua => Some(Line::None),
        _ => {
            d.error(
                rs.name.span(),
                &format!("{key} / listen"),
                "give exactly one of `listen` (Modbus TCP, \"127.0.0.1:5020\") or `serial` (Modbus RTU on a pseudo-terminal, a path)",
            );
            None
        }
    }
}

/// `[station.faults]`.
fn parse_faults(f: RawFaults, key: &str, d: &mut Diag<'_>) -> Faults {
    let mut faults = Faults { silent: f.silent, ..Faults::default() };
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
    faults
}
