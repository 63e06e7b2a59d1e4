//! A simulated station: its register tables, its signals and its faults.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use tokio_modbus::ExceptionCode;

use super::config::{Faults, SimTag, StationConfig, Unmapped};
use super::signal::{Signal, SimValue};
use crate::model::Value;
use crate::sources::modbus::decode::{encode, with_bit, word16};
use crate::sources::modbus::types::{DataType, Table};

#[derive(Default)]
struct Table16 {
    data: Vec<u16>,
    mapped: Vec<bool>,
}

#[derive(Default)]
struct TableBits {
    data: Vec<bool>,
    mapped: Vec<bool>,
}

#[derive(Default)]
struct Bank {
    holding: Table16,
    input: Table16,
    coils: TableBits,
    discrete: TableBits,
}

/// Read data of one request.
#[derive(Debug, Clone, PartialEq)]
pub enum ReadData {
    /// Registers.
    Words(Vec<u16>),
    /// Bits.
    Bits(Vec<bool>),
}

/// One simulated device.
pub struct Station {
    /// Its configuration (tags' signals are kept apart, in `signals`).
    pub cfg: StationConfig,
    bank: RwLock<Bank>,
    signals: Mutex<Vec<Signal>>,
    tick: AtomicU64,
    faults: RwLock<Faults>,
    start: Instant,
    reads: Mutex<Vec<(Table, u16, u16)>>,
    writes: Mutex<Vec<(u8, u16, u16)>>,
    /// Engineering value of each tag (before Modbus scaling), for OPC UA.
    values: RwLock<Arc<Vec<Value>>>,
    version: AtomicU64,
    connections: AtomicU64,
}

/// Most read requests remembered by [`Station::reads`].
const READ_LOG: usize = 10_000;

fn grow<T: Clone + Default>(v: &mut Vec<T>, len: usize) {
    if v.len() < len {
        v.resize(len, T::default());
    }
}

impl Station {
    /// Builds the tables and writes every signal's first value.
    pub fn new(cfg: StationConfig) -> Station {
        let mut bank = Bank::default();
        for t in &cfg.tags {
            let n = if t.table.is_bit() { 1 } else { t.ty.register_count() as usize };
            let end = t.address as usize + n;
            match t.table {
                Table::Holding | Table::Input => {
                    let tb = if t.table == Table::Holding { &mut bank.holding } else { &mut bank.input };
                    grow(&mut tb.data, end);
                    grow(&mut tb.mapped, end);
                    tb.mapped[t.address as usize..end].iter_mut().for_each(|m| *m = true);
                }
                Table::Coil | Table::DiscreteInput => {
                    let tb = if t.table == Table::Coil { &mut bank.coils } else { &mut bank.discrete };
                    grow(&mut tb.data, end);
                    grow(&mut tb.mapped, end);
                    tb.mapped[t.address as usize] = true;
                }
            }
        }
        let signals: Vec<Signal> = cfg.tags.iter().map(|t| t.signal.clone()).collect();
        let faults = cfg.faults.clone();
        let st = Station {
            cfg,
            bank: RwLock::new(bank),
            signals: Mutex::new(signals),
            tick: AtomicU64::new(0),
            faults: RwLock::new(faults),
            start: Instant::now(),
            reads: Mutex::new(Vec::new()),
            writes: Mutex::new(Vec::new()),
            values: RwLock::new(Arc::new(Vec::new())),
            version: AtomicU64::new(0),
            connections: AtomicU64::new(0),
        };
        st.refresh(0, true);
        st
    }

    /// Modbus TCP connections accepted on the station's listen address since
    /// start (every station on that address counts each one): tests see a
    /// client reconnect, such as a device restarted by a configuration reload.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }

    /// Counts one accepted connection (the TCP listener calls it).
    pub fn count_connection(&self) {
        self.connections.fetch_add(1, Ordering::Relaxed);
    }

    /// Current tick number (the CSV row served).
    pub fn tick(&self) -> u64 {
        self.tick.load(Ordering::Relaxed)
    }

    /// Moves to the next tick and updates every dynamic signal.
    pub fn advance(&self) {
        let t = self.tick.fetch_add(1, Ordering::Relaxed) + 1;
        self.refresh(t, false);
    }

    fn refresh(&self, tick: u64, first: bool) {
        let t = self.start.elapsed().as_secs_f64();
        let mut signals = self.signals.lock().expect("signals lock");
        // Inputs of `lag` signals: what the clients wrote, read from the tables.
        let inputs: Vec<Option<f64>> = {
            let bank = self.bank.read().expect("bank lock");
            signals
                .iter()
                .map(|s| match s {
                    Signal::Lag { input_index: Some(j), .. } => read_tag(&bank, &self.cfg.tags[*j]),
                    _ => None,
                })
                .collect()
        };
        let values: Vec<Option<SimValue>> = signals
            .iter_mut()
            .zip(inputs)
            .map(|(s, input)| if s.is_static() && !first { None } else { Some(s.sample_with(t, tick, input)) })
            .collect();
        drop(signals);
        let mut eng: Vec<Value> = self.values.read().expect("values lock").as_ref().clone();
        eng.resize(self.cfg.tags.len(), Value::Null);
        let mut bank = self.bank.write().expect("bank lock");
        for ((tag, v), e) in self.cfg.tags.iter().zip(values).zip(eng.iter_mut()) {
            if let Some(v) = v {
                if let Some(x) = engineering(tag, &v) {
                    *e = x;
                }
                write_tag(&mut bank, tag, v);
            }
        }
        drop(bank);
        *self.values.write().expect("values lock") = Arc::new(eng);
        self.version.fetch_add(1, Ordering::Release);
    }

    /// Each tag's current engineering value (what the OPC UA server serves).
    pub fn values(&self) -> Arc<Vec<Value>> {
        self.values.read().expect("values lock").clone()
    }

    /// Changes on every tick (for the OPC UA server's change detection).
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// Takes the log of read requests received so far (table, start, count):
    /// what a device would see on the wire.
    pub fn take_reads(&self) -> Vec<(Table, u16, u16)> {
        std::mem::take(&mut *self.reads.lock().expect("read log lock"))
    }

    /// Replaces the injected faults (instructors, tests).
    pub fn set_faults(&self, f: Faults) {
        *self.faults.write().expect("faults lock") = f;
    }

    /// The injected faults.
    pub fn faults(&self) -> Faults {
        self.faults.read().expect("faults lock").clone()
    }

    /// Serves a read (FC1–FC4) with Modbus semantics: quantity limits (exception
    /// 03), address range (exception 02), injected exceptions, unmapped policy.
    pub fn read(&self, table: Table, start: u16, count: u16) -> Result<ReadData, ExceptionCode> {
        {
            let mut log = self.reads.lock().expect("read log lock");
            if log.len() >= READ_LOG {
                log.drain(..READ_LOG / 2);
            }
            log.push((table, start, count));
        }
        if count == 0 || count > table.max_read_quantity() {
            return Err(ExceptionCode::IllegalDataValue);
        }
        let end = start as usize + count as usize;
        if end > 65536 {
            return Err(ExceptionCode::IllegalDataAddress);
        }
        for ex in &self.faults.read().expect("faults lock").exceptions {
            let (a, b) = (ex.start as usize, ex.start as usize + ex.count as usize);
            if ex.table == table && (start as usize) < b && a < end {
                return Err(ExceptionCode::new(ex.code));
            }
        }
        let bank = self.bank.read().expect("bank lock");
        let strict = self.cfg.unmapped == Unmapped::Exception;
        let check = |mapped: &[bool]| -> Result<(), ExceptionCode> {
            if strict && (start as usize..end).any(|i| !mapped.get(i).copied().unwrap_or(false)) {
                Err(ExceptionCode::IllegalDataAddress)
            } else {
                Ok(())
            }
        };
        Ok(match table {
            Table::Holding | Table::Input => {
                let tb = if table == Table::Holding { &bank.holding } else { &bank.input };
                check(&tb.mapped)?;
                ReadData::Words((start as usize..end).map(|i| tb.data.get(i).copied().unwrap_or(0)).collect())
            }
            Table::Coil | Table::DiscreteInput => {
                let tb = if table == Table::Coil { &bank.coils } else { &bank.discrete };
                check(&tb.mapped)?;
                ReadData::Bits((start as usize..end).map(|i| tb.data.get(i).copied().unwrap_or(false)).collect())
            }
        })
    }

    /// Writes holding registers (FC6/FC16/FC22 after masking).
    pub fn write_registers(&self, start: u16, words: &[u16]) -> Result<(), ExceptionCode> {
        let end = start as usize + words.len();
        if words.is_empty() || end > 65536 {
            return Err(ExceptionCode::IllegalDataAddress);
        }
        let mut bank = self.bank.write().expect("bank lock");
        grow(&mut bank.holding.data, end);
        bank.holding.data[start as usize..end].copy_from_slice(words);
        Ok(())
    }

    /// FC22: `(current AND and) OR (or AND NOT and)` under one lock, so no
    /// other write can slip between the read and the write (Modbus
    /// Application Protocol v1.1b3 §6.16).
    pub fn mask_write(&self, address: u16, and: u16, or: u16) {
        let mut bank = self.bank.write().expect("bank lock");
        grow(&mut bank.holding.data, address as usize + 1);
        let w = &mut bank.holding.data[address as usize];
        *w = (*w & and) | (or & !and);
    }

    /// Records a write request that was applied (function code, address,
    /// quantity); at most [`READ_LOG`] are kept.
    pub fn log_write(&self, function: u8, address: u16, quantity: u16) {
        let mut log = self.writes.lock().expect("write log lock");
        if log.len() >= READ_LOG {
            log.drain(..READ_LOG / 2);
        }
        log.push((function, address, quantity));
    }

    /// Takes the log of applied write requests (function code, address, quantity).
    pub fn take_writes(&self) -> Vec<(u8, u16, u16)> {
        std::mem::take(&mut *self.writes.lock().expect("write log lock"))
    }

    /// Writes coils (FC5/FC15).
    pub fn write_coils(&self, start: u16, bits: &[bool]) -> Result<(), ExceptionCode> {
        let end = start as usize + bits.len();
        if bits.is_empty() || end > 65536 {
            return Err(ExceptionCode::IllegalDataAddress);
        }
        let mut bank = self.bank.write().expect("bank lock");
        grow(&mut bank.coils.data, end);
        bank.coils.data[start as usize..end].copy_from_slice(bits);
        Ok(())
    }
}

/// A signal value in engineering units, typed as the tag's data type
/// suggests (integers stay exact).
fn engineering(tag: &SimTag, v: &SimValue) -> Option<Value> {
    Some(match v {
        SimValue::Missing => return None,
        SimValue::Text(s) => Value::Str(s.clone()),
        SimValue::Num(x) if tag.ty == DataType::Bool => Value::Bool(*x != 0.0),
        // An unscaled integer tag shows what its registers hold (rounded and
        // saturated), so OPC UA serves it as an integer, as Modbus does.
        SimValue::Num(x) if tag.ty.is_integer() && tag.scale == 1.0 && tag.offset == 0.0 => to_value(tag, *x),
        SimValue::Num(x) => Value::F64(*x),
        SimValue::Int(i) if tag.ty == DataType::Bool => Value::Bool(*i != 0),
        SimValue::Int(i) if tag.ty.is_float() || tag.scale != 1.0 || tag.offset != 0.0 => Value::F64(*i as f64),
        SimValue::Int(i) if matches!(tag.ty, DataType::I16 | DataType::I32 | DataType::I64) => {
            Value::I64((*i).clamp(i64::MIN as i128, i64::MAX as i128) as i64)
        }
        SimValue::Int(i) if matches!(tag.ty, DataType::U16 | DataType::U32 | DataType::U64) => {
            Value::U64((*i).clamp(0, u64::MAX as i128) as u64)
        }
        SimValue::Int(i) => Value::F64(*i as f64),
    })
}

fn to_value(tag: &SimTag, v: f64) -> Value {
    let raw = (v - tag.offset) / tag.scale;
    match tag.ty {
        DataType::Bool => Value::Bool(raw != 0.0),
        DataType::F32 | DataType::F64 => Value::F64(raw),
        DataType::U16 => Value::U64(raw.round().clamp(0.0, u16::MAX as f64) as u64),
        DataType::U32 => Value::U64(raw.round().clamp(0.0, u32::MAX as f64) as u64),
        DataType::U64 => Value::U64(raw.round().max(0.0) as u64),
        DataType::I16 => Value::I64(raw.round().clamp(i16::MIN as f64, i16::MAX as f64) as i64),
        DataType::I32 => Value::I64(raw.round().clamp(i32::MIN as f64, i32::MAX as f64) as i64),
        DataType::I64 => Value::I64(raw.round() as i64),
        DataType::String(_) => Value::Str(format!("{v}")),
    }
}

/// Exact integers go to integer types unchanged (saturated to the type's
/// range) when no scaling is configured; otherwise they take the float path.
fn int_value(tag: &SimTag, i: i128) -> Value {
    if tag.scale != 1.0 || tag.offset != 0.0 || tag.ty.is_float() || tag.ty == DataType::Bool {
        return to_value(tag, i as f64);
    }
    let (lo, hi): (i128, i128) = match tag.ty {
        DataType::U16 => (0, u16::MAX as i128),
        DataType::U32 => (0, u32::MAX as i128),
        DataType::U64 => (0, u64::MAX as i128),
        DataType::I16 => (i16::MIN as i128, i16::MAX as i128),
        DataType::I32 => (i32::MIN as i128, i32::MAX as i128),
        DataType::I64 => (i64::MIN as i128, i64::MAX as i128),
        _ => return to_value(tag, i as f64),
    };
    let v = i.clamp(lo, hi);
    if lo == 0 { Value::U64(v as u64) } else { Value::I64(v as i64) }
}

/// The engineering value of `tag` in the tables (what a client wrote):
/// bits as 0/1, registers decoded and scaled like a gateway reads them.
fn read_tag(bank: &Bank, tag: &SimTag) -> Option<f64> {
    let a = tag.address as usize;
    let v = match tag.table {
        Table::Coil => Value::Bool(bank.coils.data.get(a).copied().unwrap_or(false)),
        Table::DiscreteInput => Value::Bool(bank.discrete.data.get(a).copied().unwrap_or(false)),
        Table::Holding | Table::Input => {
            let tb = if tag.table == Table::Holding { &bank.holding } else { &bank.input };
            let n = tag.ty.register_count() as usize;
            let words: Vec<u16> = (a..a + n).map(|i| tb.data.get(i).copied().unwrap_or(0)).collect();
            let v = crate::sources::modbus::decode::decode(&words, tag.ty, tag.byte_order, tag.bit).ok()?;
            crate::model::apply_scale(v, tag.scale, tag.offset)
        }
    };
    v.as_f64()
}

fn write_tag(bank: &mut Bank, tag: &SimTag, v: SimValue) {
    let value = match v {
        SimValue::Missing => return,
        SimValue::Text(s) => Value::Str(s),
        SimValue::Num(x) => to_value(tag, x),
        SimValue::Int(i) => int_value(tag, i),
    };
    let a = tag.address as usize;
    match tag.table {
        Table::Coil | Table::DiscreteInput => {
            let tb = if tag.table == Table::Coil { &mut bank.coils } else { &mut bank.discrete };
            grow(&mut tb.data, a + 1);
            tb.data[a] = matches!(value, Value::Bool(true));
        }
        Table::Holding | Table::Input => {
            let tb = if tag.table == Table::Holding { &mut bank.holding } else { &mut bank.input };
            if let (Some(bit), Value::Bool(on)) = (tag.bit, &value) {
                grow(&mut tb.data, a + 1);
                let w = word16(tb.data[a], tag.byte_order);
                tb.data[a] = word16(with_bit(w, bit, *on), tag.byte_order);
                return;
            }
            if let Ok(words) = encode(&value, tag.ty, tag.byte_order) {
                grow(&mut tb.data, a + words.len());
                tb.data[a..a + words.len()].copy_from_slice(&words);
            }
        }
    }
}
