//! The write keys of a Modbus device and of its tags: the allow-list
//! (`writable`), the limits (`min`, `max`, `max_rate`), the read-back, and the
//! device's function-code choices (`single_register_write`,
//! `single_coil_write`, `mask_write`). Nothing is writable unless its tag
//! says `writable = true`.

use std::time::Duration;

use toml::Spanned;

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

/// A writable tag's limits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TagWrite {
    /// Lowest value accepted, in engineering units (after scale and offset).
    pub min: Option<f64>,
    /// Highest value accepted, in engineering units.
    pub max: Option<f64>,
    /// Most writes per minute (sliding 60 s window); `None`: no limit.
    pub max_rate: Option<u32>,
    /// Read the tag before (old value) and after (confirmation) each write (default true).
    pub readback: bool,
    /// Timeout of the read-back read (default: the device timeout).
    pub readback_timeout: Duration,
}

/// The write keys of one `[[device.tag]]` as read from TOML.
#[derive(Debug, Default)]
pub(super) struct RawTagWrite {
    pub(super) writable: Option<Spanned<bool>>,
    pub(super) min: Option<Spanned<f64>>,
    pub(super) max: Option<Spanned<f64>>,
    pub(super) max_rate: Option<Spanned<i64>>,
    pub(super) readback: Option<Spanned<bool>>,
    pub(super) readback_timeout: Option<Spanned<String>>,
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

/// Validates a tag's write keys: `writable` only on coils and holding
/// registers; the limits only with `writable = true`; `min`/`max` only on
/// numeric types, `min <= max`. `None` when the tag is not writable.
pub(super) fn read_tag_write(
    r: &mut Reader<'_, '_>,
    w: RawTagWrite,
    table: Table,
    ty: DataType,
    device_timeout: Duration,
) -> Option<TagWrite> {
    let writable = w.writable.as_ref().is_some_and(|s| *s.get_ref());
    if !writable {
        let given = [
            ("min", w.min.as_ref().map(|s| s.span())),
            ("max", w.max.as_ref().map(|s| s.span())),
            ("max_rate", w.max_rate.as_ref().map(|s| s.span())),
            ("readback", w.readback.as_ref().map(|s| s.span())),
            ("readback_timeout", w.readback_timeout.as_ref().map(|s| s.span())),
        ];
        for (key, span) in given {
            if let Some(span) = span {
                r.error(span, key, format!("`{key}` applies to writable tags only; add writable = true to allow writes"));
            }
        }
        return None;
    }
    if !matches!(table, Table::Coil | Table::Holding) {
        let span = w.writable.as_ref().map(|s| s.span()).unwrap_or_default();
        r.error(span, "writable", format!("the {table} table is read-only in Modbus; only coils and holding registers can be written"));
    }
    let numeric = ty.is_integer() || ty.is_float();
    let mut bound = |v: &Option<Spanned<f64>>, key: &str| -> Option<f64> {
        let s = v.as_ref()?;
        let x = *s.get_ref();
        if !numeric {
            r.error(s.span(), key, format!("`{key}` applies to numeric types, not {ty}"));
        } else if !x.is_finite() {
            r.error(s.span(), key, format!("{key} {x} must be finite"));
        }
        Some(x)
    };
    let min = bound(&w.min, "min");
    let max = bound(&w.max, "max");
    if let (Some(lo), Some(hi), Some(s)) = (min, max, w.max.as_ref())
        && lo > hi
    {
        r.error(s.span(), "max", format!("max {hi} is below min {lo}"));
    }
    let max_rate = r.int_opt::<u32>(&w.max_rate, "max_rate", 1..=60_000);
    let readback = w.readback.as_ref().is_none_or(|s| *s.get_ref());
    let readback_timeout =
        r.duration_in(&w.readback_timeout, "readback_timeout", device_timeout, Duration::from_millis(10)..=Duration::from_secs(600));
    Some(TagWrite { min, max, max_rate, readback, readback_timeout })
}
