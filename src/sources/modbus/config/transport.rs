//! How a Modbus device is reached: TCP, RTU over TCP, or RTU on a serial
//! line with its settings; the `endpoint`, `port` and serial keys.

use std::time::Duration;

use super::RawDevice;
use crate::diag::Reader;

/// Parity of a serial line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parity {
    /// No parity bit.
    None,
    /// Even parity (the Modbus default, 8E1).
    Even,
    /// Odd parity.
    Odd,
}

/// How a Modbus device is reached.
#[derive(Debug, Clone, PartialEq)]
pub enum Transport {
    /// Modbus TCP (MBAP header), `host:port`.
    Tcp,
    /// RTU frames (CRC) over a TCP socket, `host:port` (serial device servers).
    RtuOverTcp,
    /// RTU on a serial line (RS-485/RS-232).
    Rtu {
        /// Serial device path, e.g. `/dev/ttyUSB0`.
        port: String,
        /// Baud rate (default 19200).
        baud_rate: u32,
        /// Parity (default even).
        parity: Parity,
        /// Data bits, 7 or 8 (default 8).
        data_bits: u8,
        /// Stop bits, 1 or 2 (default 1).
        stop_bits: u8,
    },
}

impl Transport {
    /// What identifies the line: devices with the same key share one
    /// connection (or serial port), one request at a time.
    pub fn line_key(&self, endpoint: &str) -> String {
        match self {
            Transport::Tcp => format!("tcp:{endpoint}"),
            Transport::RtuOverTcp => format!("rtu-over-tcp:{endpoint}"),
            Transport::Rtu { port, .. } => format!("rtu:{}", serial_key(port)),
        }
    }

    /// The serial settings (baud rate, parity, data and stop bits) that differ
    /// between two RTU lines, as `"baud_rate 19200 vs 9600"`; empty when they
    /// agree or either is not RTU.
    pub fn serial_differences(&self, other: &Transport) -> Vec<String> {
        let (
            Transport::Rtu { baud_rate, parity, data_bits, stop_bits, .. },
            Transport::Rtu { baud_rate: b2, parity: p2, data_bits: d2, stop_bits: s2, .. },
        ) = (self, other)
        else {
            return Vec::new();
        };
        let mut diffs = Vec::new();
        if baud_rate != b2 {
            diffs.push(format!("baud_rate {baud_rate} vs {b2}"));
        }
        if parity != p2 {
            diffs.push(format!("parity {parity:?} vs {p2:?}"));
        }
        if data_bits != d2 {
            diffs.push(format!("data_bits {data_bits} vs {d2}"));
        }
        if stop_bits != s2 {
            diffs.push(format!("stop_bits {stop_bits} vs {s2}"));
        }
        diffs
    }

    /// Protocol name as configured.
    pub fn protocol(&self) -> &'static str {
        match self {
            Transport::Tcp => "modbus-tcp",
            Transport::RtuOverTcp => "modbus-rtu-over-tcp",
            Transport::Rtu { .. } => "modbus-rtu",
        }
    }

    /// The silent interval between two RTU frames: 3.5 character times at
    /// the baud rate, 1.75 ms above 19200 baud (Modbus over Serial Line
    /// v1.02 §2.5.1.1). Zero for TCP.
    pub fn frame_gap(&self) -> Duration {
        match self {
            Transport::Rtu { baud_rate, .. } if *baud_rate <= 19_200 => Duration::from_secs_f64(3.5 * 11.0 / *baud_rate as f64),
            Transport::Rtu { .. } => Duration::from_micros(1750),
            _ => Duration::ZERO,
        }
    }
}

/// What identifies a serial port: its real path when it exists (so
/// `/dev/serial/by-id/…` and `/dev/ttyUSB0` are one line), else its name.
pub fn serial_key(port: &str) -> String {
    std::fs::canonicalize(port).map_or_else(|_| port.to_string(), |p| p.display().to_string())
}

/// Checks `host:port` (IPv6 as `[addr]:port`).
pub fn check_endpoint(ep: &str) -> Result<(), String> {
    let Some((host, port)) = ep.rsplit_once(':') else {
        return Err(format!("endpoint {ep:?} needs a port: write \"host:port\", e.g. \"192.168.1.10:502\""));
    };
    if host.is_empty() {
        return Err(format!("endpoint {ep:?} has no host"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(format!("endpoint {ep:?} has an invalid port {port:?}; expected 1..=65535")),
    }
}

/// Reads the line of a device (`protocol` is already known): the endpoint
/// (`host:port`, or the serial path) and the transport with its serial
/// settings; keys that belong to the other kind of line are errors.
pub(super) fn read_transport(r: &mut Reader<'_, '_>, raw: &RawDevice) -> (String, Transport) {
    if raw.protocol == "modbus-rtu" {
        if let Some(v) = &raw.endpoint {
            r.error(
                v.span(),
                "endpoint",
                "a modbus-rtu device is on a serial `port`; use protocol = \"modbus-rtu-over-tcp\" for a serial device server",
            );
        }
        let port = read_port(r, raw);
        let baud_rate = r.int(&raw.baud_rate, "baud_rate", 300..=4_000_000, 19_200);
        let parities = [
            ("even", Parity::Even),
            ("odd", Parity::Odd),
            ("none", Parity::None),
            ("e", Parity::Even),
            ("o", Parity::Odd),
            ("n", Parity::None),
        ];
        let parity = r.choice_loose(&raw.parity, "parity", &parities, Parity::Even);
        let data_bits = r.int(&raw.data_bits, "data_bits", 7..=8, 8);
        let stop_bits = r.int(&raw.stop_bits, "stop_bits", 1..=2, 1);
        return (port.clone(), Transport::Rtu { port, baud_rate, parity, data_bits, stop_bits });
    }
    let serial = [
        ("port", raw.port.as_ref().map(|v| v.span())),
        ("parity", raw.parity.as_ref().map(|v| v.span())),
        ("baud_rate", raw.baud_rate.as_ref().map(|v| v.span())),
        ("data_bits", raw.data_bits.as_ref().map(|v| v.span())),
        ("stop_bits", raw.stop_bits.as_ref().map(|v| v.span())),
    ];
    for (k, span) in serial {
        if let Some(span) = span {
            r.error(span, k, format!("`{k}` belongs to protocol = \"modbus-rtu\" (a serial line)"));
        }
    }
    let endpoint = match &raw.endpoint {
        Some(e) => {
            let ep = e.get_ref().trim().to_string();
            if let Err(err) = check_endpoint(&ep) {
                r.error(e.span(), "endpoint", err);
            }
            ep
        }
        None => {
            r.error(raw.name.span(), "endpoint", "missing key `endpoint`: \"host:port\", e.g. \"192.168.1.10:502\"");
            String::new()
        }
    };
    let t = if raw.protocol == "modbus-rtu-over-tcp" { Transport::RtuOverTcp } else { Transport::Tcp };
    (endpoint, t)
}

/// The serial `port`: required; a warning when it does not exist yet (a USB
/// adapter may be plugged in later, relais retries), an error when it is a
/// file or a folder (never a serial port).
fn read_port(r: &mut Reader<'_, '_>, raw: &RawDevice) -> String {
    match &raw.port {
        Some(p) if !p.get_ref().trim().is_empty() => {
            let path = p.get_ref().trim().to_string();
            match std::fs::metadata(&path) {
                Err(_) => r.warn(p.span(), "port", format!("serial port {path} does not exist (yet); relais retries until it appears")),
                Ok(m) if m.is_dir() || m.is_file() => r.error(
                    p.span(),
                    "port",
                    format!("{path} is a {}, not a serial device", if m.is_dir() { "folder" } else { "regular file" }),
                ),
                Ok(_) => {}
            }
            path
        }
        Some(p) => {
            r.error(p.span(), "port", "port is empty; give the serial device, e.g. \"/dev/ttyUSB0\"");
            String::new()
        }
        None => {
            r.error(raw.name.span(), "port", "missing key `port`: the serial device, e.g. \"/dev/ttyUSB0\"");
            String::new()
        }
    }
}
