//! `relais probe`: read registers once and show every interpretation.

use std::process::ExitCode;

use clap::Subcommand;

use super::runtime;
use crate::out;
use crate::sources::modbus::types::Table;

/// Probe targets.
#[derive(Subcommand, Debug)]
pub enum Probe {
    /// Modbus TCP.
    Modbus {
        /// `host:port` of the device.
        #[arg(long)]
        endpoint: String,
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
}

/// Runs a probe; exit 2 on bad arguments, 1 when the device cannot be read.
pub(super) fn run(what: Probe) -> ExitCode {
    let Probe::Modbus { endpoint, unit, table, address, count, timeout } = what;
    let table: Table = match table.parse() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("--table: {e}");
            return ExitCode::from(2);
        }
    };
    let timeout = match crate::units::parse_duration(&timeout) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("--timeout: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime().block_on(crate::sources::modbus::probe::probe(&endpoint, unit, table, address, count, timeout)) {
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
