//! What the far end already holds (pure).
//!
//! A sink whose far end can say which records of this gateway it already
//! stores ([`super::Sink::holds`]: a JetStream stream read back on connect)
//! hands the driver a [`SeqSet`]. The driver then
//! - moves each lane over the held records that follow its acknowledged
//!   prefix ([`super::lanes::Lanes::skip_held`]), and
//! - leaves held records out of every read before encoding ([`runs`]), so a
//!   record stored before a crash, a lost acknowledgement or an outage is
//!   never sent again, wherever it lies (after a replay lane's cursor, or
//!   among the live records sent during a replay).

use crate::model::Record;

/// A set of `seq` values kept as sorted, disjoint, inclusive ranges
/// (touching ranges merge: `1..=5` and `6..=9` are `1..=9`).
pub type SeqSet = rangemap::RangeInclusiveSet<u64>;

/// `records` (in `seq` order) without those in `held`, cut into runs: a
/// run never spans a held record, so a message made of one run (a
/// `json-batch` message) covers records that were all missing.
pub fn runs<'a>(records: &[&'a Record], held: &SeqSet) -> Vec<Vec<&'a Record>> {
    let mut out: Vec<Vec<&Record>> = Vec::new();
    let (Some(first), Some(last)) = (records.first(), records.last()) else { return out };
    if !held.overlaps(&(first.seq()..=last.seq())) {
        out.push(records.to_vec());
        return out;
    }
    let mut run = Vec::new();
    for r in records {
        if held.contains(&r.seq()) {
            if !run.is_empty() {
                out.push(std::mem::take(&mut run));
            }
        } else {
            run.push(*r);
        }
    }
    if !run.is_empty() {
        out.push(run);
    }
    out
}

/// How many of `records` `held` leaves out.
pub fn skipped(records: &[&Record], held: &SeqSet) -> usize {
    match (records.first(), records.last()) {
        (Some(a), Some(b)) if held.overlaps(&(a.seq()..=b.seq())) => records.iter().filter(|r| held.contains(&r.seq())).count(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Sample, TagMeta, Timestamp, Value};

    fn recs(seqs: &[u64]) -> Vec<Record> {
        let meta = TagMeta::new("d", "t", None);
        seqs.iter()
            .map(|&s| {
                let mut x = Sample::good(meta.clone(), Value::F64(s as f64), Timestamp(1));
                x.seq = s;
                Record::Sample(x)
            })
            .collect()
    }

    fn seqs(runs: &[Vec<&Record>]) -> Vec<Vec<u64>> {
        runs.iter().map(|r| r.iter().map(|x| x.seq()).collect()).collect()
    }

    #[test]
    fn held_records_are_left_out_and_cut_the_runs() {
        let all = recs(&[10, 11, 12, 13, 14, 15, 16]);
        let refs: Vec<&Record> = all.iter().collect();
        let mut held = SeqSet::new();
        assert_eq!(seqs(&runs(&refs, &held)), vec![vec![10, 11, 12, 13, 14, 15, 16]]);
        held.insert(0..=10);
        held.insert(13..=14);
        held.insert(16..=100);
        assert_eq!(seqs(&runs(&refs, &held)), vec![vec![11, 12], vec![15]]);
        assert_eq!(skipped(&refs, &held), 4);
        held.insert(11..=15);
        assert!(runs(&refs, &held).is_empty(), "everything held: nothing to send");
        assert_eq!(held.iter().count(), 1, "touching ranges merge");
    }
}
