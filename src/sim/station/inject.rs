//! A station's injected faults ([`crate::sim::fault`]): the overlay of
//! served values (Modbus words and bits, OPC UA values and status codes)
//! recomputed at every tick, and the plan of each Modbus request.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::Station;
use super::tables::{Bank, Table16, TableBits, engineering, grow, write_tag};
use crate::model::Value;
use crate::sim::config::SimTag;
use crate::sim::fault::{Active, BAD_SENSOR_FAILURE, FaultId, Plan, SimFault, values};
use crate::sim::signal::SimValue;
use crate::sources::modbus::types::{DataType, Table};

/// What the injected faults serve instead of the tables and the live values.
#[derive(Default)]
pub(crate) struct Overlay {
    /// Overlaid words and bits (`mapped` marks them).
    pub(crate) bank: Bank,
    /// Served engineering values (all tags).
    eng: Option<Arc<Vec<Value>>>,
    /// OPC UA StatusCode per tag (bad_status).
    status: Vec<Option<u32>>,
    /// Any fault active.
    pub(crate) active: bool,
}

pub(crate) fn t16(b: &mut Bank, t: Table) -> &mut Table16 {
    if t == Table::Holding { &mut b.holding } else { &mut b.input }
}

pub(crate) fn r16(b: &Bank, t: Table) -> &Table16 {
    if t == Table::Holding { &b.holding } else { &b.input }
}

pub(crate) fn rbits(b: &Bank, t: Table) -> &TableBits {
    if t == Table::Coil { &b.coils } else { &b.discrete }
}

fn tbits(b: &mut Bank, t: Table) -> &mut TableBits {
    if t == Table::Coil { &mut b.coils } else { &mut b.discrete }
}

/// Addresses of `tag` in its table: start and count.
fn span(tag: &SimTag) -> (usize, usize) {
    (tag.address as usize, if tag.table.is_bit() { 1 } else { tag.ty.register_count() as usize })
}

/// True when request range `(table, start, count)` touches `tag`.
fn overlaps(tag: &SimTag, (table, start, count): (Table, u16, u16)) -> bool {
    let (a, n) = span(tag);
    table == tag.table && (start as usize) < a + n && a < start as usize + count as usize
}

/// Writes `v` for `tag` into the overlay, marking its addresses.
fn overlay_tag(ov: &mut Bank, live: &Bank, tag: &SimTag, v: SimValue) {
    let (a, n) = span(tag);
    if tag.table.is_bit() {
        let o = tbits(ov, tag.table);
        grow(&mut o.data, a + 1);
        grow(&mut o.mapped, a + 1);
    } else {
        let seed = r16(live, tag.table).data.get(a).copied().unwrap_or(0);
        let o = t16(ov, tag.table);
        grow(&mut o.data, a + n);
        grow(&mut o.mapped, a + n);
        if tag.bit.is_some() && !o.mapped[a] {
            o.data[a] = seed; // the other bits of the register stay live
        }
    }
    write_tag(ov, tag, v);
    if tag.table.is_bit() {
        tbits(ov, tag.table).mapped[a] = true;
    } else {
        t16(ov, tag.table).mapped[a..a + n].iter_mut().for_each(|m| *m = true);
    }
}

/// Reverses the word order of a 32- or 64-bit register tag in the overlay.
fn swap_words(ov: &mut Bank, live: &Bank, tag: &SimTag) {
    let (a, n) = span(tag);
    if tag.table.is_bit() || tag.bit.is_some() || n < 2 || matches!(tag.ty, DataType::String(_)) {
        return;
    }
    let l = r16(live, tag.table);
    let o = t16(ov, tag.table);
    grow(&mut o.data, a + n);
    grow(&mut o.mapped, a + n);
    let mut words: Vec<u16> = (a..a + n).map(|i| if o.mapped[i] { o.data[i] } else { l.data.get(i).copied().unwrap_or(0) }).collect();
    words.reverse();
    o.data[a..a + n].copy_from_slice(&words);
    o.mapped[a..a + n].iter_mut().for_each(|m| *m = true);
}

impl Station {
    /// Starts fault `fault` (on tag index `tag`, or the whole station);
    /// `seed` drives its noise and jitter.
    pub(crate) fn inject(&self, id: FaultId, tag: Option<usize>, fault: SimFault, seed: u64) {
        let captured = match fault {
            SimFault::Stuck => self.served_values().as_ref().clone(),
            SimFault::CounterReset => self.values().as_ref().clone(),
            _ => Vec::new(),
        };
        let a = Active {
            id,
            tag,
            fault,
            started: Instant::now(),
            start_tick: self.tick(),
            rng: fastrand::Rng::with_seed(seed),
            captured,
            noise: Vec::new(),
            noise_tick: None,
        };
        self.injected.lock().expect("faults lock").push(a);
        self.recompute();
        self.version.fetch_add(1, Ordering::Release);
    }

    /// Ends fault `id`; false when it is not on this station.
    pub(crate) fn clear_fault(&self, id: FaultId) -> bool {
        let found = {
            let mut g = self.injected.lock().expect("faults lock");
            let n = g.len();
            g.retain(|a| a.id != id);
            g.len() != n
        };
        if found {
            self.recompute();
            self.version.fetch_add(1, Ordering::Release);
        }
        found
    }

    /// The faults injected on this station: id, tag name (None: the whole
    /// station) and fault, in injection order.
    pub fn injected(&self) -> Vec<(FaultId, Option<String>, SimFault)> {
        let g = self.injected.lock().expect("faults lock");
        g.iter().map(|a| (a.id, a.tag.and_then(|t| self.cfg.tags.get(t)).map(|t| t.name.clone()), a.fault.clone())).collect()
    }

    /// Each tag's served engineering value: the live one ([`Station::values`])
    /// changed by the value faults (what OPC UA clients read).
    pub fn served_values(&self) -> Arc<Vec<Value>> {
        match &self.overlay.read().expect("overlay lock").eng {
            Some(e) => e.clone(),
            None => self.values(),
        }
    }

    /// The StatusCode an injected bad_status gives tag index `t`, if any.
    pub fn fault_status(&self, t: usize) -> Option<u32> {
        self.overlay.read().expect("overlay lock").status.get(t).copied().flatten()
    }

    /// Recomputes the overlay from the live values (every tick, and when a
    /// fault starts or ends).
    pub(crate) fn recompute(&self) {
        let mut inj = self.injected.lock().expect("faults lock");
        if inj.is_empty() {
            let mut ov = self.overlay.write().expect("overlay lock");
            if ov.active {
                *ov = Overlay::default();
            }
            return;
        }
        let (tick, now, n) = (self.tick(), Instant::now(), self.cfg.tags.len());
        inj.iter_mut().for_each(|a| a.draw_noise(tick, n));
        let mut eng: Vec<Value> = self.values().as_ref().clone();
        eng.resize(n, Value::Null);
        let live = self.bank.read().expect("bank lock");
        let mut ov = Overlay { active: true, status: vec![None; n], ..Overlay::default() };
        for (t, tag) in self.cfg.tags.iter().enumerate() {
            let (mut v, mut swap) = (None, false);
            for a in inj.iter().filter(|a| a.applies(t)) {
                match a.fault {
                    ref f if f.is_value() => v = Some(values::apply(a, t, v.unwrap_or_else(|| values::sim_value(&eng[t])), tick, now)),
                    SimFault::ByteOrder => swap = true,
                    SimFault::BadStatus => ov.status[t] = Some(BAD_SENSOR_FAILURE),
                    _ => {}
                }
            }
            if let Some(v) = v {
                if let Some(e) = engineering(tag, &v) {
                    eng[t] = e;
                }
                overlay_tag(&mut ov.bank, &live, tag, v);
            }
            if swap {
                swap_words(&mut ov.bank, &live, tag);
            }
        }
        drop(live);
        ov.eng = Some(Arc::new(eng));
        *self.overlay.write().expect("overlay lock") = ov;
    }

    /// What the faults make of a request touching `range` (table, start,
    /// count; `None` when it names no address): the station's configured
    /// `silent` and `delay`, then the injected dropout, slow and exception
    /// faults on the station or on a tag the range touches.
    pub fn plan(&self, range: Option<(Table, u16, u16)>) -> Plan {
        let base = self.faults();
        let mut p = Plan { silent: base.silent, delay: base.delay, exception: None };
        let mut inj = self.injected.lock().expect("faults lock");
        for a in inj.iter_mut() {
            let hit = match a.tag {
                None => true,
                Some(t) => range.is_some_and(|r| self.cfg.tags.get(t).is_some_and(|tag| overlaps(tag, r))),
            };
            if !hit {
                continue;
            }
            match a.fault {
                SimFault::Dropout => p.silent = true,
                SimFault::Slow { latency, jitter } => p.delay += latency + jitter.mul_f64(a.rng.f64()),
                SimFault::Exception { code } => p.exception = Some(code),
                _ => {}
            }
        }
        p
    }
}
