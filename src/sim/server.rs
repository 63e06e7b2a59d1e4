//! Modbus TCP server of the simulator (tokio-modbus `tcp-server`).
//!
//! One listener per `listen` address (or one RTU server per pseudo-terminal);
//! the unit id of each request picks the station. Over TCP an unknown unit id
//! gets exception 0x0B (gateway target device failed to respond), as a
//! TCP→RTU gateway answers; on a serial line it gets no answer at all. A
//! silent station sends nothing, so clients time out.

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
            let faults = st.faults();
            if faults.silent {
                return Ok(None);
            }
            if !faults.delay.is_zero() {
                tokio::time::sleep(faults.delay).await;
            }
            let read = |t: Table, a: u16, n: u16| {
                let r = st.read(t, a, n);
                if st.cfg.lockstep && r.is_ok() {
                    st.advance();
                }
                r
            };
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
                    Response::WriteSingleRegister(a, w)
                }
                Request::WriteMultipleRegisters(a, ws) => {
                    st.write_registers(a, &ws)?;
                    Response::WriteMultipleRegisters(a, ws.len() as u16)
                }
                Request::WriteSingleCoil(a, c) => {
                    st.write_coils(a, &[c])?;
                    Response::WriteSingleCoil(a, c)
                }
                Request::WriteMultipleCoils(a, cs) => {
                    st.write_coils(a, &cs)?;
                    Response::WriteMultipleCoils(a, cs.len() as u16)
                }
                Request::MaskWriteRegister(a, and, or) => {
                    let cur = match st.read(Table::Holding, a, 1)? {
                        ReadData::Words(w) => w[0],
                        ReadData::Bits(_) => 0,
                    };
                    st.write_registers(a, &[(cur & and) | (or & !and)])?;
                    Response::MaskWriteRegister(a, and, or)
                }
                _ => return Err(ExceptionCode::IllegalFunction),
            };
            Ok(Some(resp))
        })
    }
}
