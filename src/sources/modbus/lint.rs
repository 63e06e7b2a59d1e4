//! Address plausibility checks of a device's tags (pure): mistakes that give a
//! valid config and plausible wrong values, so they are warnings in
//! `relais check` and at start, not errors.
//!
//! - A **numeric** address in the range of a Modicon reference of the same
//!   table (`address = 40001` with `table = "holding"`): read as PDU address
//!   40001, while the manual most likely meant holding register 0.
//! - A 32/64-bit tag at an **odd** address while the device's other 32/64-bit
//!   tags of the same table sit at even addresses: most likely a 1-based
//!   address copied from a manual (off by one), which decodes the wrong halves
//!   of two neighbouring values.

use super::config::ModbusTag;
use super::types::Table;

/// When a numeric `address` on `table` looks like a Modicon reference of that
/// same table (`40001..=49999` holding, `30001..=39999` input, `10001..=19999`
/// discrete input), the warning text; `None` otherwise. Coils (`00001…`) are
/// not checked: small numbers are ordinary PDU addresses.
pub fn modicon_lookalike(table: Table, address: i64) -> Option<String> {
    let lo = match table {
        Table::Holding => 40_001,
        Table::Input => 30_001,
        Table::DiscreteInput => 10_001,
        Table::Coil => return None,
    };
    if !(lo..lo + 9_999).contains(&address) {
        return None;
    }
    let pdu = address - lo;
    Some(format!(
        "address = {address} reads {table} register {address} (a number is a 0-based PDU address), but it looks like the \
         Modicon reference {address}, which is {table} register {pdu}: if the manual says {address}, write \
         address = \"{address}\" (or address = {pdu}); if register {address} is meant, ignore this warning"
    ))
}

/// Warnings for 32/64-bit tags at odd addresses among a majority at even
/// addresses, per table: `(tag index, message)`; the message names the
/// nearest even-addressed neighbours.
pub fn odd_wide_tags(tags: &[ModbusTag]) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for table in [Table::Holding, Table::Input] {
        let wide: Vec<(usize, &ModbusTag)> = tags.iter().enumerate().filter(|(_, t)| t.table == table && t.count() >= 2).collect();
        let even: Vec<&(usize, &ModbusTag)> = wide.iter().filter(|(_, t)| t.address % 2 == 0).collect();
        let odd: Vec<&(usize, &ModbusTag)> = wide.iter().filter(|(_, t)| t.address % 2 == 1).collect();
        if even.len() < 2 || odd.len() >= even.len() {
            continue;
        }
        for (i, t) in odd {
            let mut near: Vec<&&(usize, &ModbusTag)> = even.iter().collect();
            near.sort_by_key(|(_, n)| (n.address as i64 - t.address as i64).abs());
            let names: Vec<String> = near.iter().take(3).map(|(_, n)| format!("{:?} ({} at {})", n.name, n.ty, n.address)).collect();
            out.push((
                *i,
                format!(
                    "{} tag at odd address {} while the device's other 32/64-bit {table} tags are at even addresses ({}): \
                     check for an off-by-one address (a 1-based manual address); a shifted read decodes halves of two \
                     neighbouring values and still looks plausible",
                    t.ty,
                    t.address,
                    names.join(", ")
                ),
            ));
        }
    }
    out
}
