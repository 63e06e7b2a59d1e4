//! `relais probe`: read a device once. Modbus (TCP, or RTU on a serial
//! port): the raw words and every interpretation; OPC UA: one value with its
//! StatusCode and timestamps.

use std::process::ExitCode;

use clap::Subcommand;

use super::runtime;
use crate::out;
use crate::sources::modbus::config::{Parity, Transport};
use crate::sources::modbus::types::Table;

/// Probe targets.
#[derive(Subcommand, Debug)]
pub enum Probe {
    /// Modbus TCP (--endpoint) or Modbus RTU on a serial port (--serial).
    Modbus {
        /// `host:port` of a Modbus TCP device.
        #[arg(long, required_unless_present = "serial", conflicts_with = "serial")]
        endpoint: Option<String>,
        /// Serial device of a Modbus RTU line, e.g. /dev/ttyUSB0.
        #[arg(long)]
        serial: Option<String>,
        /// RTU: baud rate.
        #[arg(long, default_value_t = 19200, requires = "serial")]
        baud: u32,
        /// RTU: parity, none, even or odd.
        #[arg(long, default_value = "even", requires = "serial")]
        parity: String,
        /// RTU: data bits, 7 or 8.
        #[arg(long, default_value_t = 8, requires = "serial")]
        data_bits: u8,
        /// RTU: stop bits, 1 or 2.
        #[arg(long, default_value_t = 1, requires = "serial")]
        stop_bits: u8,
        /// Unit id (0–255, sent unchanged).
        #[arg(long, default_value_t = 1)]
        unit: u8,
        /// holding, input, coil or discrete_input.
        #[arg(long, default_value = "holding")]
        table: String,
        /// 0-based PDU address.
        #[arg(long)]
        address: u16,
        /// Registers or bits to read.
        #[arg(long, default_value_t = 2)]
        count: u16,
        /// Response timeout, e.g. 1s.
        #[arg(long, default_value = "1s")]
        timeout: String,
    },
    /// OPC UA: read one variable's value, with its StatusCode, SourceTimestamp and ServerTimestamp.
    Opcua {
        /// The variable, `nsu=URI;s=name`, `ns=2;i=7` or a namespace-0 id.
        #[arg(long)]
        node: String,
        /// The server, its security and the gateway's identity.
        #[command(flatten)]
        server: super::OpcUaTarget,
    },
}

/// Runs a probe; exit 2 on bad arguments, 1 when the device cannot be read
/// (or, for OPC UA, answers with a Bad StatusCode).
pub(super) fn run(what: Probe) -> ExitCode {
    match what {
        Probe::Modbus { endpoint, serial, baud, parity, data_bits, stop_bits, unit, table, address, count, timeout } => {
            let line = match serial {
                Some(port) => match serial_transport(&port, baud, &parity, data_bits, stop_bits) {
                    Ok(t) => (port, t),
                    Err(e) => {
                        eprintln!("{e}");
                        return ExitCode::from(2);
                    }
                },
                None => (endpoint.unwrap_or_default(), Transport::Tcp),
            };
            modbus(line, unit, &table, address, count, &timeout)
        }
        Probe::Opcua { server, node } => opcua(server, &node),
    }
}

/// The RTU line settings of the command line.
fn serial_transport(port: &str, baud: u32, parity: &str, data_bits: u8, stop_bits: u8) -> Result<Transport, String> {
    let parity = match parity.to_ascii_lowercase().as_str() {
        "none" | "n" => Parity::None,
        "even" | "e" => Parity::Even,
        "odd" | "o" => Parity::Odd,
        other => return Err(format!("--parity: {other:?} is not none, even or odd")),
    };
    if !matches!(data_bits, 7 | 8) {
        return Err(format!("--data-bits: {data_bits}; expected 7 or 8"));
    }
    if !matches!(stop_bits, 1 | 2) {
        return Err(format!("--stop-bits: {stop_bits}; expected 1 or 2"));
    }
    if baud == 0 {
        return Err("--baud: must be above 0 (e.g. 9600, 19200)".into());
    }
    Ok(Transport::Rtu { port: port.to_string(), baud_rate: baud, parity, data_bits, stop_bits })
}

fn modbus((endpoint, transport): (String, Transport), unit: u8, table: &str, address: u16, count: u16, timeout: &str) -> ExitCode {
    let table: Table = match table.parse() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("--table: {e}");
            return ExitCode::from(2);
        }
    };
    let timeout = match crate::units::parse_duration(timeout) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("--timeout: {e}");
            return ExitCode::from(2);
        }
    };
    let probe = crate::sources::modbus::probe::probe(&endpoint, transport, unit, table, address, count, timeout);
    match runtime().block_on(probe) {
        Ok(report) => {
            out!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("probe failed: {e}");
            ExitCode::from(1)
        }
    }
}

fn opcua(args: super::OpcUaTarget, node: &str) -> ExitCode {
    let (dev, pki_dir, gateway_id) = match super::browse::browse_target(args) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let run = async {
        let pki = crate::sources::opcua::client::Pki::open(&pki_dir, &gateway_id)?;
        pki.trust(&dev.trust)?;
        crate::sources::opcua::oneshot::read_value(&dev, &pki, &gateway_id, node).await
    };
    match runtime().block_on(run) {
        Ok(r) => {
            out!("{}", crate::sources::opcua::oneshot::render_value(&dev.endpoint, &r));
            // A Bad StatusCode (no such node, access denied …) is a failed read.
            if r.value.status.is_some_and(|s| s.is_bad()) { ExitCode::from(1) } else { ExitCode::SUCCESS }
        }
        Err(e) => {
            eprintln!("probe failed: {e:#}");
            ExitCode::from(1)
        }
    }
}
