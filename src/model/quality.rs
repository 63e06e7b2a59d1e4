use std::fmt;

/// Quality of a sample, as OPC UA and every SCADA system know it.
///
/// OPC UA StatusCodes map by their two severity bits (`code >> 30`: 0 good,
/// 1 uncertain, 2 and 3 bad; OPC UA Part 4 §7.39, field case B15).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Quality {
    /// The value is valid.
    Good,
    /// The value may be used with care (substituted, last usable, out of calibration).
    Uncertain,
    /// There is no usable value; the sample carries a reason instead.
    Bad,
}

impl Quality {
    /// Lower-case name used in payloads and the buffer: `good`, `uncertain`, `bad`.
    pub fn as_str(self) -> &'static str {
        match self {
            Quality::Good => "good",
            Quality::Uncertain => "uncertain",
            Quality::Bad => "bad",
        }
    }

    /// Compact code stored in the buffer (0 good, 1 uncertain, 2 bad).
    pub fn code(self) -> u8 {
        self as u8
    }

    /// Inverse of [`Quality::code`]; unknown codes read as bad.
    pub fn from_code(c: u8) -> Quality {
        match c {
            0 => Quality::Good,
            1 => Quality::Uncertain,
            _ => Quality::Bad,
        }
    }

    /// Quality from an OPC UA StatusCode by its severity bits (Part 4 §7.39).
    pub fn from_opcua_status(code: u32) -> Quality {
        match code >> 30 {
            0 => Quality::Good,
            1 => Quality::Uncertain,
            _ => Quality::Bad,
        }
    }
}

impl fmt::Display for Quality {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Machine-readable reasons carried by bad and uncertain samples.
///
/// A reason is a short code, optionally followed by `": "` and a human detail,
/// e.g. `device_exception(2): illegal data address`. Consumers match on the part
/// before the colon.
pub mod reason {
    /// Reason code of a reason text (the part before `:`): `parse_error`
    /// for `"parse_error: line 3: …"`.
    pub fn code(r: &str) -> String {
        r.split(':').next().unwrap_or(r).trim().to_string()
    }

    /// The device could not be reached or the connection broke.
    pub const COMM_FAILURE: &str = "comm_failure";
    /// The device did not answer within the configured timeout.
    pub const TIMEOUT: &str = "timeout";
    /// Bytes came back but no valid answer: not Modbus framing, or frames
    /// that do not match the request (unit id, function code, length, CRC).
    pub const INVALID_FRAME: &str = "invalid_frame";
    /// A float register decoded to NaN or ±Infinity.
    pub const NON_FINITE: &str = "non_finite";
    /// The source sent an explicit null.
    pub const NULL: &str = "null";
    /// The value could not be decoded or parsed.
    pub const PARSE_ERROR: &str = "parse_error";
    /// The tag's configuration cannot be served by the device.
    pub const CONFIG_ERROR: &str = "config_error";
    /// A message or body above the configured size limit.
    pub const PAYLOAD_TOO_LARGE: &str = "payload_too_large";

    /// `device_exception(N): <name>` for a Modbus exception response
    /// (Modbus Application Protocol v1.1b3 §7).
    pub fn device_exception(code: u8) -> String {
        format!("device_exception({code}): modbus exception 0x{code:02X} {}", exception_name(code))
    }

    /// Name of a Modbus exception code (Modbus Application Protocol v1.1b3 §7).
    pub fn exception_name(code: u8) -> &'static str {
        match code {
            0x01 => "illegal function",
            0x02 => "illegal data address",
            0x03 => "illegal data value",
            0x04 => "server device failure",
            0x05 => "acknowledge",
            0x06 => "server device busy",
            0x08 => "memory parity error",
            0x0A => "gateway path unavailable",
            0x0B => "gateway target device failed to respond",
            _ => "unknown exception",
        }
    }
}
