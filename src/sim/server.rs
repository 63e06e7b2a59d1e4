//! Modbus TCP server of the simulator (tokio-modbus `tcp-server`).
//!
//! One listener per `listen` address (or one RTU server per pseudo-terminal);
//! the unit id of each request picks the station. Over TCP an unknown unit id
//! gets exception 0x0B (gateway target device failed to respond), as a
//! TCP→RTU gateway answers; on a serial line it gets no answer at all. A
//! silent station sends nothing, so clients time out.
//!
//! Function codes served: FC1–FC6, FC15, FC16, FC22 and FC43 / MEI 0x0E
//! (Read Device Identification, basic objects: [`super::ident`]); every
//! other one is answered with exception 01 (illegal function), over TCP
//! here and over RTU by the line in front of this service (`rtu`).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio_modbus::server::Service;
use tokio_modbus::{ExceptionCode, Request, Response, SlaveRequest};

use super::station::{ReadData, Station};
use crate::sources::modbus::types::Table;

/// The stations served on one listener, by unit id.
#[derive(Clone)]
pub struct SimService {
    pub(crate) stations: Arc<HashMap<u8, Arc<Station>>>,
    /// On a serial line an absent unit is simply silent.
    pub(crate) serial: bool,
    /// The intrusion detection watching a TCP listener (`ids`).
    pub(crate) watch: Option<Arc<super::ids::Watch>>,
}

impl SimService {
    /// The exception a front answers to a request for `unit` it refuses
    /// with `code` (see `front`), or `None` for no answer: an unknown unit
    /// gets 0x0B over TCP and silence on a serial line, a silent station
    /// says nothing, and a station's `delay` applies first.
    pub(crate) async fn refusal(&self, unit: u8, code: u8) -> Option<u8> {
        let Some(st) = self.stations.get(&unit) else {
            return if self.serial { None } else { Some(u8::from(ExceptionCode::GatewayTargetDevice)) };
        };
        let plan = st.plan(None);
        if plan.silent {
            return None;
        }
        if !plan.delay.is_zero() {
            tokio::time::sleep(plan.delay).await;
        }
        Some(plan.exception.unwrap_or(code))
    }
}

/// The exception a station's faults answer `req` with: 01 (illegal
/// function) for a refused function code, 02 (illegal data address) for
/// FC16 with quantity 1 when `refuse_single_fc16` (devices seen in the field).
fn refused(faults: &super::config::Faults, req: &Request<'_>) -> Option<ExceptionCode> {
    let function = req.function_code().value();
    if faults.refuse_functions.contains(&function) {
        return Some(ExceptionCode::IllegalFunction);
    }
    match req {
        Request::WriteMultipleRegisters(_, ws) if faults.refuse_single_fc16 && ws.len() == 1 => Some(ExceptionCode::IllegalDataAddress),
        _ => None,
    }
}

/// The addresses request `req` touches (table, start, count), for the
/// faults injected on a tag; `None` for requests that name none.
fn range_of(req: &Request<'_>) -> Option<(Table, u16, u16)> {
    let n = |len: usize| u16::try_from(len).unwrap_or(u16::MAX);
    Some(match req {
        Request::ReadCoils(a, q) => (Table::Coil, *a, *q),
        Request::ReadDiscreteInputs(a, q) => (Table::DiscreteInput, *a, *q),
        Request::ReadHoldingRegisters(a, q) => (Table::Holding, *a, *q),
        Request::ReadInputRegisters(a, q) => (Table::Input, *a, *q),
        Request::WriteSingleRegister(a, _) | Request::MaskWriteRegister(a, _, _) => (Table::Holding, *a, 1),
        Request::WriteMultipleRegisters(a, ws) => (Table::Holding, *a, n(ws.len())),
        Request::WriteSingleCoil(a, _) => (Table::Coil, *a, 1),
        Request::WriteMultipleCoils(a, cs) => (Table::Coil, *a, n(cs.len())),
        _ => return None,
    })
}

impl Service for SimService {
    type Request = SlaveRequest<'static>;
    type Response = Option<Response>;
    type Exception = ExceptionCode;
    type Future = Pin<Box<dyn Future<Output = Result<Option<Response>, ExceptionCode>> + Send>>;

    fn call(&self, req: Self::Request) -> Self::Future {
        let station = self.stations.get(&req.slave).cloned();
        let serial = self.serial;
        Box::pin(async move {
            let Some(st) = station else {
                return if serial { Ok(None) } else { Err(ExceptionCode::GatewayTargetDevice) };
            };
            // Configured and injected faults (`Station::plan`).
            let plan = st.plan(range_of(&req.request));
            if plan.silent {
                return Ok(None);
            }
            if !plan.delay.is_zero() {
                tokio::time::sleep(plan.delay).await;
            }
            if let Some(code) = plan.exception {
                return Err(ExceptionCode::new(code));
            }
            let faults = st.faults();
            let read = |t: Table, a: u16, n: u16| {
                let r = st.read(t, a, n);
                if st.cfg.lockstep && r.is_ok() {
                    st.advance();
                }
                r
            };
            if let Some(code) = refused(&faults, &req.request) {
                return Err(code);
            }
            let resp = match req.request {
                Request::ReadHoldingRegisters(a, n) => match read(Table::Holding, a, n)? {
                    ReadData::Words(w) => Response::ReadHoldingRegisters(w),
                    ReadData::Bits(_) => return Err(ExceptionCode::ServerDeviceFailure),
                },
                Request::ReadInputRegisters(a, n) => match read(Table::Input, a, n)? {
                    ReadData::Words(w) => Response::ReadInputRegisters(w),
                    ReadData::Bits(_) => return Err(ExceptionCode::ServerDeviceFailure),
                },
                Request::ReadCoils(a, n) => match read(Table::Coil, a, n)? {
                    ReadData::Bits(b) => Response::ReadCoils(b),
                    ReadData::Words(_) => return Err(ExceptionCode::ServerDeviceFailure),
                },
                Request::ReadDiscreteInputs(a, n) => match read(Table::DiscreteInput, a, n)? {
                    ReadData::Bits(b) => Response::ReadDiscreteInputs(b),
                    ReadData::Words(_) => return Err(ExceptionCode::ServerDeviceFailure),
                },
                Request::WriteSingleRegister(a, w) => {
                    st.write_registers(a, &[w])?;
                    st.log_write(6, a, 1);
                    Response::WriteSingleRegister(a, w)
                }
                Request::WriteMultipleRegisters(a, ws) => {
                    st.write_registers(a, &ws)?;
                    st.log_write(16, a, ws.len() as u16);
                    Response::WriteMultipleRegisters(a, ws.len() as u16)
                }
                Request::WriteSingleCoil(a, c) => {
                    st.write_coils(a, &[c])?;
                    st.log_write(5, a, 1);
                    Response::WriteSingleCoil(a, c)
                }
                Request::WriteMultipleCoils(a, cs) => {
                    st.write_coils(a, &cs)?;
                    st.log_write(15, a, cs.len() as u16);
                    Response::WriteMultipleCoils(a, cs.len() as u16)
                }
                Request::MaskWriteRegister(a, and, or) => {
                    st.mask_write(a, and, or);
                    st.log_write(22, a, 1);
                    Response::MaskWriteRegister(a, and, or)
                }
                Request::ReadDeviceIdentification(code, id) => {
                    Response::ReadDeviceIdentification(super::ident::read_device_identification(code, id)?)
                }
                // FC7, FC8, FC11, FC12, FC17, FC20, FC21, FC23, FC24, other MEI types…
                _ => return Err(ExceptionCode::IllegalFunction),
            };
            Ok(Some(resp))
        })
    }
}
