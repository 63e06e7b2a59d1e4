//! A simulated station: its register tables, its signals and its faults.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use tokio_modbus::ExceptionCode;

use super::config::{Faults, StationConfig, Unmapped};
use super::fault::Active;
use super::signal::{Signal, SimValue};
use crate::model::Value;
use crate::sources::modbus::types::Table;
use tables::{Bank, engineering, grow, read_tag, write_tag};

mod inject;
pub(crate) mod tables;

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
    /// Faults injected at run time (`Sim::inject`).
    injected: Mutex<Vec<Active>>,
    /// What they serve instead of the tables and the live values.
    overlay: RwLock<inject::Overlay>,
}

/// Most read requests remembered by [`Station::reads`].
const READ_LOG: usize = 10_000;

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
            injected: Mutex::new(Vec::new()),
            overlay: RwLock::new(inject::Overlay::default()),
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
        self.recompute();
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
        let mut data = match table {
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
        };
        drop(bank);
        // Injected value faults serve their overlay instead.
        let ov = self.overlay.read().expect("overlay lock");
        if ov.active {
            let base = start as usize;
            match &mut data {
                ReadData::Words(w) => {
                    let o = inject::r16(&ov.bank, table);
                    for (k, x) in w.iter_mut().enumerate() {
                        if o.mapped.get(base + k) == Some(&true) {
                            *x = o.data[base + k];
                        }
                    }
                }
                ReadData::Bits(b) => {
                    let o = inject::rbits(&ov.bank, table);
                    for (k, x) in b.iter_mut().enumerate() {
                        if o.mapped.get(base + k) == Some(&true) {
                            *x = o.data[base + k];
                        }
                    }
                }
            }
        }
        Ok(data)
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
