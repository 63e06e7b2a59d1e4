//! Modbus data model terms: tables, data types, byte orders (pure).
//!
//! Source: Modbus Application Protocol v1.1b3 §4.3 (data model) and §6 (function
//! codes). Addresses are 0-based PDU addresses throughout.

use std::fmt;
use std::str::FromStr;

/// The four Modbus tables (Modbus Application Protocol v1.1b3 §4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    /// Coils: read/write bits, read with FC1.
    Coil,
    /// Discrete inputs: read-only bits, read with FC2.
    DiscreteInput,
    /// Holding registers: read/write 16-bit words, read with FC3.
    Holding,
    /// Input registers: read-only 16-bit words, read with FC4.
    Input,
}

impl Table {
    /// Config name: `coil`, `discrete_input`, `holding`, `input`.
    pub fn as_str(self) -> &'static str {
        match self {
            Table::Coil => "coil",
            Table::DiscreteInput => "discrete_input",
            Table::Holding => "holding",
            Table::Input => "input",
        }
    }

    /// Read function code: FC1, FC2, FC3 or FC4.
    pub fn read_function(self) -> u8 {
        match self {
            Table::Coil => 1,
            Table::DiscreteInput => 2,
            Table::Holding => 3,
            Table::Input => 4,
        }
    }

    /// True for coils and discrete inputs (1-bit items).
    pub fn is_bit(self) -> bool {
        matches!(self, Table::Coil | Table::DiscreteInput)
    }

    /// Protocol limit of items in one read: 2000 bits (FC1/FC2) or 125 registers
    /// (FC3/FC4), Modbus Application Protocol v1.1b3 §6.1–6.4.
    pub fn max_read_quantity(self) -> u16 {
        if self.is_bit() { 2000 } else { 125 }
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Table {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "holding" | "holding_register" => Table::Holding,
            "input" | "input_register" => Table::Input,
            "coil" => Table::Coil,
            "discrete_input" => Table::DiscreteInput,
            _ => {
                return Err(format!("unknown table {s:?}; expected one of holding, input, coil, discrete_input"));
            }
        })
    }
}

/// How a tag's registers are interpreted.
///
/// `u32` and `f32` are different types: a "scaled int32" is `u32`/`i32` with a
/// `scale`, never `f32` (field case B01).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataType {
    /// One bit: a coil, a discrete input, a register bit, or a register ≠ 0.
    Bool,
    /// Unsigned 16-bit, one register.
    U16,
    /// Signed 16-bit two's complement, one register.
    I16,
    /// Unsigned 32-bit, two registers.
    U32,
    /// Signed 32-bit, two registers.
    I32,
    /// IEEE 754 binary32, two registers.
    F32,
    /// Unsigned 64-bit, four registers.
    U64,
    /// Signed 64-bit, four registers.
    I64,
    /// IEEE 754 binary64, four registers.
    F64,
    /// ASCII text, two characters per register, `N` registers.
    String(u16),
}

impl DataType {
    /// Registers (or bits, for bit tables) the type occupies.
    pub fn register_count(self) -> u16 {
        match self {
            DataType::Bool | DataType::U16 | DataType::I16 => 1,
            DataType::U32 | DataType::I32 | DataType::F32 => 2,
            DataType::U64 | DataType::I64 | DataType::F64 => 4,
            DataType::String(n) => n,
        }
    }

    /// True for f32 and f64.
    pub fn is_float(self) -> bool {
        matches!(self, DataType::F32 | DataType::F64)
    }

    /// True for the integer types.
    pub fn is_integer(self) -> bool {
        matches!(self, DataType::U16 | DataType::I16 | DataType::U32 | DataType::I32 | DataType::U64 | DataType::I64)
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataType::Bool => f.write_str("bool"),
            DataType::U16 => f.write_str("u16"),
            DataType::I16 => f.write_str("i16"),
            DataType::U32 => f.write_str("u32"),
            DataType::I32 => f.write_str("i32"),
            DataType::F32 => f.write_str("f32"),
            DataType::U64 => f.write_str("u64"),
            DataType::I64 => f.write_str("i64"),
            DataType::F64 => f.write_str("f64"),
            DataType::String(n) => write!(f, "string({n})"),
        }
    }
}

/// Accepted type names, for error messages.
pub const TYPE_NAMES: &str = "bool, u16, i16, u32, i32, f32, u64, i64, f64, string(N)";

impl FromStr for DataType {
    type Err = String;
    /// Parses `u16` … `f64`, `bool`, and `string(N)` (N registers, 1..=125).
    /// Common aliases are accepted: `uint16`, `int32`, `float32`, `float`, `double`…
    fn from_str(s: &str) -> Result<Self, String> {
        let l = s.trim().to_ascii_lowercase();
        Ok(match l.as_str() {
            "bool" | "boolean" | "bit" => DataType::Bool,
            "u16" | "uint16" => DataType::U16,
            "i16" | "int16" => DataType::I16,
            "u32" | "uint32" => DataType::U32,
            "i32" | "int32" => DataType::I32,
            "f32" | "float32" | "float" | "real" => DataType::F32,
            "u64" | "uint64" => DataType::U64,
            "i64" | "int64" => DataType::I64,
            "f64" | "float64" | "double" | "lreal" => DataType::F64,
            _ => {
                if let Some(n) = l.strip_prefix("string(").and_then(|r| r.strip_suffix(')')) {
                    match n.trim().parse::<u16>() {
                        Ok(n) if (1..=125).contains(&n) => return Ok(DataType::String(n)),
                        _ => {
                            return Err(format!("bad string length in {s:?}: expected string(N) with N registers in 1..=125"));
                        }
                    }
                }
                return Err(format!("unknown type {s:?}; expected one of {TYPE_NAMES}"));
            }
        })
    }
}

/// Byte order of multi-register values, named as Telegraf and most gateways do.
///
/// Registers arrive big-endian on the wire (`w0 = [A B]`, `w1 = [C D]`):
/// - `ABCD`: big-endian, first register most significant.
/// - `CDAB`: word order reversed, each word big-endian ("word swap").
/// - `BADC`: big-endian words with the bytes inside each word swapped.
/// - `DCBA`: little-endian, all bytes reversed.
///
/// For 64-bit types the same names apply to eight bytes: `ABCD` = `ABCDEFGH`,
/// `CDAB` = `GHEFCDAB`, `BADC` = `BADCFEHG`, `DCBA` = `HGFEDCBA`. For 16-bit
/// types, `BADC` and `DCBA` swap the two bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ByteOrder {
    /// Big-endian.
    #[default]
    ABCD,
    /// Word-swapped.
    CDAB,
    /// Byte-swapped within words.
    BADC,
    /// Little-endian.
    DCBA,
}

impl ByteOrder {
    /// All four orders.
    pub const ALL: [ByteOrder; 4] = [ByteOrder::ABCD, ByteOrder::CDAB, ByteOrder::BADC, ByteOrder::DCBA];

    /// Four-letter name.
    pub fn as_str(self) -> &'static str {
        match self {
            ByteOrder::ABCD => "ABCD",
            ByteOrder::CDAB => "CDAB",
            ByteOrder::BADC => "BADC",
            ByteOrder::DCBA => "DCBA",
        }
    }

    /// The eight-letter name of the same order for 64-bit values.
    pub fn as_str8(self) -> &'static str {
        match self {
            ByteOrder::ABCD => "ABCDEFGH",
            ByteOrder::CDAB => "GHEFCDAB",
            ByteOrder::BADC => "BADCFEHG",
            ByteOrder::DCBA => "HGFEDCBA",
        }
    }
}

impl fmt::Display for ByteOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ByteOrder {
    type Err = String;
    /// Accepts `ABCD`, `CDAB`, `BADC`, `DCBA`, their 8-byte forms
    /// (`ABCDEFGH`, `GHEFCDAB`, `BADCFEHG`, `HGFEDCBA`), `AB`/`BA` for 16-bit,
    /// and `big`/`little` (case-insensitive).
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s.trim().to_ascii_uppercase().as_str() {
            "ABCD" | "ABCDEFGH" | "AB" | "BIG" | "BIG_ENDIAN" => ByteOrder::ABCD,
            "CDAB" | "GHEFCDAB" => ByteOrder::CDAB,
            "BADC" | "BADCFEHG" | "BA" => ByteOrder::BADC,
            "DCBA" | "HGFEDCBA" | "LITTLE" | "LITTLE_ENDIAN" => ByteOrder::DCBA,
            _ => {
                return Err(format!(
                    "unknown byte order {s:?}; expected ABCD, CDAB, BADC or DCBA \
                     (or the 8-byte forms ABCDEFGH, GHEFCDAB, BADCFEHG, HGFEDCBA)"
                ));
            }
        })
    }
}
