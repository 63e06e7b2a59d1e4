//! One CSV row into samples: its timestamp, device, and the values of the
//! layout's columns (strict: a bad number rejects the row; lenient: it
//! becomes a bad sample).

use super::super::number::{NumError, PRECISION_LOSS, inexact, parse_number};
use super::super::spec::{MissingTs, ParseSpec, Policy};
use super::super::{Mapper, Record};
use super::lines::raw_line;
use super::plan::{Columns, Plan};
use crate::model::{Quality, Sample, Timestamp, reason};

/// One data row and where it is.
pub(super) struct Row<'a> {
    pub(super) rec: &'a csv::StringRecord,
    /// The line it starts on.
    pub(super) line: u64,
    pub(super) header: &'a [String],
    pub(super) delim: u8,
    /// The input's name in quarantine records.
    pub(super) origin: &'a str,
}

/// When a row's value is read.
#[derive(Clone, Copy)]
struct At {
    ts: Timestamp,
    recv: Timestamp,
    uncertain: Option<&'static str>,
}

fn quality_of(s: &str) -> Option<Quality> {
    match s.trim().to_ascii_lowercase().as_str() {
        "good" | "g" | "ok" | "192" => Some(Quality::Good),
        "uncertain" | "u" | "64" => Some(Quality::Uncertain),
        "bad" | "b" | "0" => Some(Quality::Bad),
        _ => None,
    }
}

impl Row<'_> {
    fn reject(&self, mapper: &Mapper, why: String) -> Record {
        Err(mapper.reject(self.origin, format!("line {}", self.line), why, &raw_line(self.rec, self.delim)))
    }

    /// The row's samples, or its quarantine record.
    pub(super) fn convert(&self, plan: &Plan, spec: &ParseSpec, mapper: &mut Mapper) -> Record {
        let rec = self.rec;
        let recv = Timestamp::now();
        let (ts, uncertain) = match plan.ts_col {
            None if plan.ts_missing => (recv, Some("timestamp_missing")),
            None => (recv, None),
            Some(i) => match spec.ts.parse_text(&rec[i]) {
                Ok(p) => (p.ts, p.uncertain),
                Err(_) if spec.missing_timestamp == MissingTs::ReceiveTime => (recv, Some("timestamp_missing")),
                Err(e) => return self.reject(mapper, format!("{}: timestamp: {e}", reason::PARSE_ERROR)),
            },
        };
        let device = plan.dev_col.map(|i| &rec[i]);
        if let Some(Err(e)) = device.map(crate::names::check_device) {
            return self.reject(mapper, format!("{}: device column: {e}", reason::PARSE_ERROR));
        }
        let at = At { ts, recv, uncertain };
        let done = match &plan.columns {
            Columns::Wide { cols, .. } => self.wide(cols, device, at, spec, mapper),
            Columns::Long { tag, value, unit, quality } => self.long((*tag, *value, *unit, *quality), device, at, spec, mapper),
        };
        match done {
            Ok(samples) => Ok(samples),
            Err(why) => self.reject(mapper, why),
        }
    }

    /// Wide layout: one sample per tag column.
    fn wide(
        &self,
        cols: &[(usize, std::sync::Arc<crate::model::TagMeta>, bool)],
        device: Option<&str>,
        at: At,
        spec: &ParseSpec,
        mapper: &mut Mapper,
    ) -> Result<Vec<Sample>, String> {
        let At { ts, recv, uncertain } = at;
        let strict = spec.policy == Policy::Strict;
        let mut samples = Vec::with_capacity(cols.len());
        for (i, meta, _) in cols {
            let meta = match device {
                Some(d) => mapper.meta(Some(d), &meta.tag, None),
                None => meta.clone(),
            };
            match parse_number(&self.rec[*i], spec.csv.decimal) {
                Ok(v) => {
                    let u = if inexact(&self.rec[*i], spec.csv.decimal, &v) { Some(PRECISION_LOSS) } else { uncertain };
                    samples.push(mapper.sample(meta, v, ts, recv, u));
                }
                Err(NumError::Empty) => samples.push(mapper.bad(meta, format!("{}: empty cell", reason::NULL), ts, recv)),
                Err(e) if strict => return Err(format!("{}: column {:?}: {e}", reason::PARSE_ERROR, self.header[*i])),
                Err(e @ NumError::NonFinite(_)) => samples.push(mapper.bad(meta, format!("{}: {e}", reason::NON_FINITE), ts, recv)),
                Err(e) => samples.push(mapper.bad(meta, format!("{}: {e}", reason::PARSE_ERROR), ts, recv)),
            }
        }
        Ok(samples)
    }

    /// Long layout: one sample named by the tag column (none for a tag that
    /// is not listed under `select = "listed"`).
    fn long(
        &self,
        (tag, value, unit, quality): (usize, usize, Option<usize>, Option<usize>),
        device: Option<&str>,
        at: At,
        spec: &ParseSpec,
        mapper: &mut Mapper,
    ) -> Result<Vec<Sample>, String> {
        let rec = self.rec;
        let strict = spec.policy == Policy::Strict;
        let At { ts, recv, mut uncertain } = at;
        let name = &rec[tag];
        if let Err(e) = crate::names::check(name) {
            return Err(format!("{}: tag name: {e}", reason::PARSE_ERROR));
        }
        if spec.listed_only && mapper.rule(name).is_none() {
            return Ok(Vec::new()); // Not a listed tag: skipped by configuration.
        }
        let meta = mapper.meta(device, name, unit.map(|u| &rec[u]).filter(|u| !u.is_empty()));
        let q = match quality.map(|q| &rec[q]) {
            None | Some("") => Some(Quality::Good),
            Some(t) => quality_of(t),
        };
        let sample = match (q, parse_number(&rec[value], spec.csv.decimal)) {
            (None, _) => {
                return Err(format!(
                    "{}: unknown quality {:?}; expected good, uncertain or bad",
                    reason::PARSE_ERROR,
                    &rec[quality.unwrap_or(0)]
                ));
            }
            (Some(Quality::Bad), _) => mapper.bad(meta, "bad: reported by the source".into(), ts, recv),
            (Some(q), Ok(v)) => {
                if q == Quality::Uncertain && uncertain.is_none() {
                    uncertain = Some("uncertain: reported by the source");
                }
                if inexact(&rec[value], spec.csv.decimal, &v) {
                    uncertain = Some(PRECISION_LOSS);
                }
                mapper.sample(meta, v, ts, recv, uncertain)
            }
            (Some(_), Err(NumError::Empty)) => mapper.bad(meta, format!("{}: empty cell", reason::NULL), ts, recv),
            (Some(_), Err(e)) if strict => return Err(format!("{}: value: {e}", reason::PARSE_ERROR)),
            (Some(_), Err(e @ NumError::NonFinite(_))) => mapper.bad(meta, format!("{}: {e}", reason::NON_FINITE), ts, recv),
            (Some(_), Err(e)) => mapper.bad(meta, format!("{}: {e}", reason::PARSE_ERROR), ts, recv),
        };
        Ok(vec![sample])
    }
}
