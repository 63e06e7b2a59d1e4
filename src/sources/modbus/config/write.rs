//! The write keys of a Modbus device and of its tags: the allow-list
//! (`writable`), the limits (`min`, `max`, `max_rate`), the read-back, and the
//! device's function-code choices (`single_register_write`,
//! `single_coil_write`, `mask_write`). Nothing is writable unless its tag
//! says `writable = true`.

use std::time::Duration;

use toml::Spanned;

pub use crate::sources::writable::{RawTagWrite, TagWrite};

use super::super::types::{DataType, Table};
use crate::diag::Reader;

/// How one register (or one coil) is written: the device decides, relais
/// never switches on its own (an exception is the write's result).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SingleWrite {
    /// FC06 (one register) or FC05 (one coil): the default.
    #[default]
    Single,
    /// FC16 with quantity 1 (one register) or FC15 with quantity 1 (one coil),
    /// for devices that accept only the "multiple" codes.
    Multiple,
}

/// A device's write settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeviceWrites {
    /// `single_register_write = "fc06" | "fc16"` (default `fc06`).
    pub register: SingleWrite,
    /// `single_coil_write = "fc05" | "fc15"` (default `fc05`).
    pub coil: SingleWrite,
    /// `mask_write = true`: the device supports FC22 (Mask Write Register,
    /// Modbus Application Protocol v1.1b3 §6.16), used for a bit of a
    /// register; else the bit is written by read-modify-write within one turn
    /// of the link (default false).
    pub mask_write: bool,
}

/// Reads the device keys `single_register_write`, `single_coil_write`, `mask_write`.
pub(super) fn read_device_writes(
    r: &mut Reader<'_, '_>,
    register: &Option<Spanned<String>>,
    coil: &Option<Spanned<String>>,
    mask_write: Option<bool>,
) -> DeviceWrites {
    DeviceWrites {
        register: r.choice_loose(
            register,
            "single_register_write",
            &[("fc06", SingleWrite::Single), ("fc16", SingleWrite::Multiple)],
            SingleWrite::Single,
        ),
        coil: r.choice_loose(
            coil,
            "single_coil_write",
            &[("fc05", SingleWrite::Single), ("fc15", SingleWrite::Multiple)],
            SingleWrite::Single,
        ),
        mask_write: mask_write.unwrap_or(false),
    }
}

/// Validates a tag's write keys (`sources::writable`): only coils and
/// holding registers can be written; `min`/`max` on numeric types only.
pub(super) fn read_tag_write(
    r: &mut Reader<'_, '_>,
    w: RawTagWrite,
    table: Table,
    ty: DataType,
    device_timeout: Duration,
) -> Option<TagWrite> {
    let read_only = (!matches!(table, Table::Coil | Table::Holding))
        .then(|| format!("the {table} table is read-only in Modbus; only coils and holding registers can be written"));
    let numeric = ty.is_integer() || ty.is_float();
    crate::sources::writable::read_tag_write(r, w, read_only, numeric, &ty.to_string(), device_timeout)
}
