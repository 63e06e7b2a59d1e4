//! Modbus read planner (pure): merges tags into the fewest read requests.
//!
//! Rules, per table and poll interval:
//! - Tags are sorted by address; a request grows over the next tag while the hole
//!   between them is at most `max_gap` items and the request stays within the
//!   per-request limit: 125 registers (FC3/FC4) or 2000 bits (FC1/FC2), Modbus
//!   Application Protocol v1.1b3 §6.1–6.4, or a lower per-device limit.
//! - A tag is never split across two requests (field case B07); a tag wider than
//!   the limit is a configuration error.
//! - Tags sharing a register (bit tags, field case B06) share one request.
//!
//! When a merged request draws exception 02 or 03 (often because it bridged
//! addresses the device does not map), [`split`] cuts it at its holes first and
//! then in halves, so that the poller can retry the parts and keep the split.

use super::types::Table;

/// The address footprint of one tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TagSpan {
    /// Index of the tag in its device's tag list.
    pub index: usize,
    /// The table the tag lives in.
    pub table: Table,
    /// First 0-based PDU address.
    pub address: u16,
    /// Registers (or bits, for coils and discrete inputs) the tag covers.
    pub count: u16,
}

impl TagSpan {
    /// One past the last address (may be 65536).
    pub fn end(&self) -> u32 {
        self.address as u32 + self.count as u32
    }
}

/// Per-device limits of the planner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most registers in one FC3/FC4 request (1..=125, default 125).
    pub max_registers: u16,
    /// Most bits in one FC1/FC2 request (1..=2000, default 2000).
    pub max_bits: u16,
    /// Largest hole, in registers, bridged inside one request (default 10).
    pub max_gap_registers: u16,
    /// Largest hole, in bits, bridged inside one request (default 64).
    pub max_gap_bits: u16,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_registers: 125, max_bits: 2000, max_gap_registers: 10, max_gap_bits: 64 }
    }
}

impl Limits {
    fn max_for(&self, t: Table) -> u16 {
        if t.is_bit() { self.max_bits } else { self.max_registers }
    }
    fn gap_for(&self, t: Table) -> u16 {
        if t.is_bit() { self.max_gap_bits } else { self.max_gap_registers }
    }
}

/// One planned read: a function code over `count` items from `start`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadRequest {
    /// Table, and so the function code (FC1–FC4).
    pub table: Table,
    /// First 0-based PDU address.
    pub start: u16,
    /// Quantity of registers or bits.
    pub count: u16,
    /// Indices of the tags served, sorted by address.
    pub tags: Vec<usize>,
}

/// A tag that no request can carry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tag #{index} needs {count} items from address {address}, more than {limit} per request on {table}")]
pub struct PlanError {
    /// Index of the tag.
    pub index: usize,
    /// Its table.
    pub table: Table,
    /// Its address.
    pub address: u16,
    /// Its size.
    pub count: u16,
    /// The limit it exceeds.
    pub limit: u16,
}

/// Plans the read requests for `tags` (any mix of tables), in table then
/// address order.
pub fn plan(tags: &[TagSpan], limits: &Limits) -> Result<Vec<ReadRequest>, PlanError> {
    let mut sorted: Vec<&TagSpan> = tags.iter().collect();
    sorted.sort_by_key(|t| (t.table, t.address, std::cmp::Reverse(t.count), t.index));
    let mut out: Vec<ReadRequest> = Vec::new();
    let mut cur: Option<(ReadRequest, u32)> = None; // request and its end
    for t in sorted {
        let max = limits.max_for(t.table);
        if t.count > max || t.count == 0 {
            return Err(PlanError { index: t.index, table: t.table, address: t.address, count: t.count, limit: max });
        }
        if let Some((req, end)) = cur.as_mut()
            && req.table == t.table
            && (t.address as u32) <= *end + limits.gap_for(t.table) as u32
            && t.end().max(*end) - req.start as u32 <= max as u32
        {
            *end = t.end().max(*end);
            req.count = (*end - req.start as u32) as u16;
            req.tags.push(t.index);
            continue;
        }
        if let Some((req, _)) = cur.take() {
            out.push(req);
        }
        cur = Some((ReadRequest { table: t.table, start: t.address, count: t.count, tags: vec![t.index] }, t.end()));
    }
    if let Some((req, _)) = cur {
        out.push(req);
    }
    Ok(out)
}

fn request_over(table: Table, spans: &[&TagSpan]) -> ReadRequest {
    let start = spans.iter().map(|t| t.address).min().unwrap_or(0);
    let end = spans.iter().map(|t| t.end()).max().unwrap_or(start as u32);
    ReadRequest { table, start, count: (end - start as u32) as u16, tags: spans.iter().map(|t| t.index).collect() }
}

/// Registers (or bits) of `req` that some of its tags decode: the union of
/// the tags' spans within the request (overlapping tags count once).
/// `tags` is the device's full span list, indexed by [`TagSpan::index`].
pub fn used(req: &ReadRequest, tags: &[TagSpan]) -> u64 {
    let mut spans: Vec<(u32, u32)> = req.tags.iter().filter_map(|&i| tags.get(i)).map(|t| (u32::from(t.address), t.end())).collect();
    spans.sort_unstable();
    let (mut total, mut reach) = (0u64, 0u32);
    for (a, e) in spans {
        let from = a.max(reach);
        if e > from {
            total += u64::from(e - from);
        }
        reach = reach.max(e);
    }
    total
}

/// Splits a request that drew exception 02/03 into smaller ones.
///
/// First at its holes (runs of tags that touch or overlap stay together); a
/// request without holes is cut in two halves, keeping tags that share an
/// address together. Returns the request unchanged (one element) when it
/// cannot be split further. `tags` is the device's full span list, indexed by
/// [`TagSpan::index`].
pub fn split(req: &ReadRequest, tags: &[TagSpan]) -> Vec<ReadRequest> {
    let mut spans: Vec<&TagSpan> = req.tags.iter().filter_map(|i| tags.iter().find(|t| t.index == *i)).collect();
    spans.sort_by_key(|t| (t.address, t.index));
    // Runs without holes.
    let mut runs: Vec<Vec<&TagSpan>> = Vec::new();
    let mut end = 0u32;
    for t in spans.iter().copied() {
        match runs.last_mut() {
            Some(run) if t.address as u32 <= end => run.push(t),
            _ => runs.push(vec![t]),
        }
        end = end.max(t.end());
    }
    if runs.len() > 1 {
        return runs.iter().map(|r| request_over(req.table, r)).collect();
    }
    // One run: cut in halves at an address boundary.
    let addrs: Vec<u16> = {
        let mut a: Vec<u16> = spans.iter().map(|t| t.address).collect();
        a.dedup();
        a
    };
    if addrs.len() < 2 {
        return vec![req.clone()];
    }
    let cut = addrs[addrs.len() / 2];
    let (lo, hi): (Vec<&TagSpan>, Vec<&TagSpan>) = spans.iter().partition(|t| t.address < cut);
    vec![request_over(req.table, &lo), request_over(req.table, &hi)]
}

#[cfg(test)]
mod used_tests {
    use super::*;

    #[test]
    fn used_counts_the_union_of_the_tags_spans() {
        let span = |index, address, count| TagSpan { index, table: Table::Holding, address, count };
        // 0..2 (f32), 1 (overlaps), 5; read 0..6: 4 of 6 used (2, 3 are a gap).
        let tags = [span(0, 0, 2), span(1, 1, 1), span(2, 5, 1)];
        let req = ReadRequest { table: Table::Holding, start: 0, count: 6, tags: vec![0, 1, 2] };
        assert_eq!(used(&req, &tags), 3);
        let req = ReadRequest { table: Table::Holding, start: 5, count: 1, tags: vec![2] };
        assert_eq!(used(&req, &tags), 1);
    }
}
