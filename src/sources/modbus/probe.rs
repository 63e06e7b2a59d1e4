//! `relais probe modbus`: read once and show every interpretation side by side,
//! so the right type and byte order can be picked in seconds.

use std::fmt::Write as _;
use std::time::Duration;

use super::answer::ReadError;
use super::decode::decode;
use super::link::{Link, Words};
use super::types::{ByteOrder, DataType, Table};
use crate::model::Value;

/// Reads `count` items once and returns the rendered report. `endpoint` is
/// `host:port` for Modbus TCP, the serial device for RTU (`transport`
/// [`Transport::Rtu`](super::config::Transport::Rtu)). A failed read's
/// error ends with a hint when one helps ([`error_hint`]).
pub async fn probe(
    endpoint: &str,
    transport: super::config::Transport,
    unit: u8,
    table: Table,
    address: u16,
    count: u16,
    timeout: Duration,
) -> anyhow::Result<String> {
    if count == 0 || count > table.max_read_quantity() {
        anyhow::bail!("count must be in 1..={} for the {table} table", table.max_read_quantity());
    }
    if address as u32 + count as u32 > 65536 {
        anyhow::bail!("address {address} + count {count} runs past 65535");
    }
    let serial = matches!(transport, super::config::Transport::Rtu { .. });
    let mut link = Link::new(endpoint, transport, Duration::from_secs(1));
    let words = link.read(unit, table, address, count, timeout).await.map_err(|e| {
        let hint = error_hint(&e, endpoint, unit, serial).map(|h| format!("\nhint: {h}")).unwrap_or_default();
        anyhow::anyhow!("{endpoint} unit {unit}, FC{} {table} {address}+{count}: {e}{hint}", table.read_function())
    })?;
    // One register more on each side, to tell a byte-order question from an
    // address that is off by one (best effort: a device may refuse it).
    let context = match (&words, table.is_bit()) {
        (Words::Registers(_), false) if count >= 2 => {
            let lo = address.saturating_sub(1);
            let hi = (address as u32 + count as u32 + 1).min(65536);
            match link.read(unit, table, lo, (hi - lo as u32) as u16, timeout).await {
                Ok(Words::Registers(w)) => Some((lo, w)),
                _ => None,
            }
        }
        _ => None,
    };
    let mut out = String::new();
    let modicon_base = match table {
        Table::Coil => 1,
        Table::DiscreteInput => 10_001,
        Table::Input => 30_001,
        Table::Holding => 40_001,
    };
    if (modicon_base..modicon_base + 10_000).contains(&(address as u32)) && address as u32 >= 10_001 {
        out.push_str(&format!(
            "note: --address is a 0-based PDU address; if {address} is a Modicon reference, the PDU address is {}\n",
            address as u32 - modicon_base
        ));
    }
    out += &format!(
        "{endpoint} unit {unit}: FC{} {table} {address}..{} ({count} item{})\n\n",
        table.read_function(),
        address as u32 + count as u32 - 1,
        if count == 1 { "" } else { "s" }
    );
    out.push_str(&render(&words, address));
    if let Words::Registers(w) = &words
        && w.len() >= 2
    {
        let (start, regs) = context.unwrap_or((address, w.clone()));
        out.push('\n');
        out.push_str(&hint(&regs, start, address));
    }
    Ok(out)
}

/// What to check after a failed read (pure), for the exceptions and
/// failures a wrong `--unit`, address or line setting gives (Modbus
/// Application Protocol v1.1b3 §7: 0x0A gateway path unavailable, 0x0B
/// gateway target device failed to respond).
pub fn error_hint(e: &ReadError, endpoint: &str, unit: u8, serial: bool) -> Option<String> {
    Some(match e {
        ReadError::Exception(0x0B) => format!(
            "{endpoint} is a gateway (or a server with several units) and nothing answered behind it as unit {unit}: \
             check --unit (the device's Modbus address; many TCP devices answer on 1 or 255, and `relais sim` on each \
             station's unit_id), then that the device behind the gateway is powered and wired"
        ),
        ReadError::Exception(0x0A) => format!(
            "{endpoint} is a gateway with no path to unit {unit}: check --unit against the gateway's routing table \
             (which serial port or downstream link carries that unit) and that the link is configured"
        ),
        ReadError::Exception(0x02) => "the device has no such address in this table: check --table and --address \
             (0-based PDU address; a manual's 40001 is --table holding --address 0)"
            .to_string(),
        ReadError::Exception(0x01) => "the device does not support this function: try another --table (holding or input)".to_string(),
        ReadError::Timeout(_) if serial => format!(
            "no answer on {endpoint}: check --unit ({unit}), --baud, --parity and the wiring (A/B swapped, termination); \
             every unit on one line must share its settings"
        ),
        ReadError::Timeout(_) => format!("no answer from {endpoint}: check --unit ({unit}); some gateways stay silent for an unknown unit"),
        _ => return None,
    })
}

/// A float that a person would recognise as a reading: finite, and between
/// 1e-4 and 1e8 in magnitude (zero tells nothing: it is zero in every order).
fn plausible(x: f64) -> bool {
    x.is_finite() && (1e-4..1e8).contains(&x.abs())
}

/// The byte orders giving a plausible f32 from the two registers at `at`
/// (`regs` read from `start`), with their values.
fn plausible_orders(regs: &[u16], start: u16, at: u32) -> Vec<(ByteOrder, f64)> {
    let Some(i) = at.checked_sub(start as u32).map(|i| i as usize) else { return Vec::new() };
    let Some(pair) = regs.get(i..i + 2) else { return Vec::new() };
    ByteOrder::ALL
        .iter()
        .filter_map(|o| match decode(pair, DataType::F32, *o, None) {
            Ok(Value::F64(v)) if plausible(v) => Some((*o, v)),
            _ => None,
        })
        .collect()
}

/// The byte-order hint for an f32 at `address` (pure). `regs` were read from
/// `start` and may hold one register more on each side.
///
/// One read cannot tell a word order from an address that is one register
/// off: `CDAB` at 2 and `ABCD` at 3 share the high word, so both look right.
/// An order is suggested only when it is plausible at `address` and either
/// nothing is plausible one register off, or `address` is even (32-bit values
/// start at even addresses on almost every device). At an odd address with a
/// plausible value at an even neighbour, or with nothing plausible at
/// `address` itself, the hint says the address may be off by one and
/// suggests no byte order.
pub fn hint(regs: &[u16], start: u16, address: u16) -> String {
    let show = |v: &[(ByteOrder, f64)]| v.iter().map(|(o, x)| format!("{o} gives {}", num(Value::F64(*x)))).collect::<Vec<_>>().join(", ");
    let here = plausible_orders(regs, start, address as u32);
    let mut off = Vec::new();
    if address > 0 {
        let v = plausible_orders(regs, start, address as u32 - 1);
        if !v.is_empty() {
            off.push(format!("at {} (one register earlier) {}", address - 1, show(&v)));
        }
    }
    let v = plausible_orders(regs, start, address as u32 + 1);
    if !v.is_empty() {
        off.push(format!("at {} (one register later) {}", address as u32 + 1, show(&v)));
    }
    let off = off.join("; ");
    if here.is_empty() && off.is_empty() {
        return format!("f32 at {address}: no byte order gives a plausible value (not a float, or the value is 0)\n");
    }
    if here.is_empty() || (!off.is_empty() && address % 2 == 1) {
        let at = if here.is_empty() { String::new() } else { format!(" ({} at odd address {address})", show(&here)) };
        return format!(
            "f32 at {address}: the address may be off by one{at}: {off}. A read one register off looks plausible in the \
             other word order, so no byte order is suggested: check the address first (0-based PDU address; a manual's \
             40001 is address 0), and read again\n"
        );
    }
    if off.is_empty() {
        return format!("f32 at {address}: {} (plausible; the other orders are not)\n", show(&here));
    }
    format!(
        "f32 at {address}: {}, if {address} is the right 0-based address (32-bit values usually start at even \
         addresses); note: {off}, which is what a read one register off would show\n",
        show(&here)
    )
}

fn num(v: Value) -> String {
    match v {
        Value::F64(f) if f != 0.0 && f.is_finite() && !(1e-6..1e15).contains(&f.abs()) => format!("{f:e}"),
        Value::F64(f) => format!("{f}"),
        other => other.to_string(),
    }
}

/// Renders the interpretations of `words` read from `start` (pure).
pub fn render(words: &Words, start: u16) -> String {
    let mut s = String::new();
    match words {
        Words::Bits(bits) => {
            let _ = writeln!(s, "{:>6}  value", "addr");
            for (i, b) in bits.iter().enumerate() {
                let _ = writeln!(s, "{:>6}  {}", start as usize + i, *b as u8);
            }
        }
        Words::Registers(w) => {
            let _ = writeln!(s, "{:>6}  {:>6}  {:>6}  {:>6}  {:>6}  bits 15..0", "addr", "hex", "u16", "i16", "u16 BA");
            for (i, x) in w.iter().enumerate() {
                let _ = writeln!(s, "{:>6}  0x{x:04X}  {x:>6}  {:>6}  {:>6}  {x:016b}", start as usize + i, *x as i16, x.swap_bytes());
            }
            if w.len() >= 2 {
                let _ = writeln!(s, "\n32-bit values (two registers from addr):");
                let _ = writeln!(s, "{:>6}  {:<5} {:>12}  {:>12}  f32", "addr", "order", "u32", "i32");
                for i in 0..w.len() - 1 {
                    for o in ByteOrder::ALL {
                        let p = &w[i..i + 2];
                        let f = decode(p, DataType::F32, o, None).map(num).unwrap_or_default();
                        let u = decode(p, DataType::U32, o, None).map(num).unwrap_or_default();
                        let n = decode(p, DataType::I32, o, None).map(num).unwrap_or_default();
                        let _ = writeln!(s, "{:>6}  {:<5} {u:>12}  {n:>12}  {f}", start as usize + i, o.as_str());
                    }
                }
            }
            if w.len() >= 4 {
                let _ = writeln!(s, "\n64-bit values (four registers from addr):");
                let _ = writeln!(s, "{:>6}  {:<8} {:>20}  {:>20}  f64", "addr", "order", "u64", "i64");
                for i in 0..w.len() - 3 {
                    for o in ByteOrder::ALL {
                        let p = &w[i..i + 4];
                        let f = decode(p, DataType::F64, o, None).map(num).unwrap_or_default();
                        let u = decode(p, DataType::U64, o, None).map(num).unwrap_or_default();
                        let n = decode(p, DataType::I64, o, None).map(num).unwrap_or_default();
                        let _ = writeln!(s, "{:>6}  {:<8} {u:>20}  {n:>20}  {f}", start as usize + i, o.as_str8());
                    }
                }
            }
            let ascii = |o| {
                let mut b = Vec::new();
                for x in w {
                    let v = super::decode::word16(*x, o);
                    b.extend_from_slice(&v.to_be_bytes());
                }
                b.iter().map(|c| if c.is_ascii_graphic() || *c == b' ' { *c as char } else { '.' }).collect::<String>()
            };
            let _ = writeln!(s, "\nASCII, high byte first (ABCD): {:?}", ascii(ByteOrder::ABCD));
            let _ = writeln!(s, "ASCII, low byte first (BADC):  {:?}", ascii(ByteOrder::BADC));
        }
    }
    s
}
