//! Running a query on the history database: picks the table (raw samples,
//! minute or hour rollups), reads the matching tags' rows in the window and
//! sums them into the asked buckets and dimensions with [`Agg::merge`].
//!
//! The table is the coarsest whose granularity divides `every` (hours for
//! 1h, 1day…; minutes for 1m, 15m, 90m…; raw samples otherwise): every bucket
//! is then made of whole rollup rows, and the coarsest table is also the one
//! kept longest (`raw <= minutes <= hours` is a configuration rule), so the
//! answer is the same as from the raw samples while they are kept.

use std::collections::BTreeMap;
use std::time::Duration;

use rusqlite::{Connection, params};
use serde::Serialize;

use super::agg::{Agg, HOUR_NS, MINUTE_NS, bucket};
use super::config::HistoryConfig;
use super::spec::Spec;
use crate::model::{Quality, Timestamp, format_rfc3339};

/// Where a query's rows come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    /// Raw samples.
    Raw,
    /// Per-minute rollups.
    Minutes,
    /// Per-hour rollups.
    Hours,
}

impl Table {
    /// The table for buckets of `every` ns.
    pub fn for_every(every: i64) -> Table {
        if every % HOUR_NS == 0 {
            Table::Hours
        } else if every % MINUTE_NS == 0 {
            Table::Minutes
        } else {
            Table::Raw
        }
    }

    /// Its name in messages.
    pub fn describe(self) -> &'static str {
        match self {
            Table::Raw => "raw samples",
            Table::Minutes => "minute rollups",
            Table::Hours => "hour rollups",
        }
    }

    fn keep(self, cfg: &HistoryConfig) -> Duration {
        match self {
            Table::Raw => cfg.raw,
            Table::Minutes => cfg.minutes,
            Table::Hours => cfg.hours,
        }
    }
}

/// One output row: a bucket of one group.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Row {
    /// The device (`None` when not grouped by device or tag).
    pub device: Option<String>,
    /// The tag within the device (`None` when not grouped by tag).
    pub tag: Option<String>,
    /// `good`, `uncertain` or `bad` when grouped by quality (field absent otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quality: Option<&'static str>,
    /// Start of the bucket, RFC 3339 UTC.
    pub bucket: String,
    /// Samples of any quality.
    pub count: u64,
    /// Samples of quality good.
    pub good_count: u64,
    /// Smallest good numeric value.
    pub min: Option<f64>,
    /// Largest good numeric value.
    pub max: Option<f64>,
    /// Mean of the good numeric values.
    pub mean: Option<f64>,
    /// The latest good numeric value (greatest `ts`).
    pub last: Option<f64>,
}

/// A query's answer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The table read.
    pub table: Table,
    /// The rows, by device, tag, quality, then bucket.
    pub rows: Vec<Row>,
    /// Remarks for people (part of the window older than the table keeps).
    pub notes: Vec<String>,
}

type Key = (Option<String>, Option<String>, Option<Quality>, i64);

/// Runs `spec` on the history `conn`; `now` (ns) for the retention note.
pub fn run(conn: &Connection, spec: &Spec, cfg: &HistoryConfig, now: i64) -> anyhow::Result<Answer> {
    let table = Table::for_every(spec.every);
    let mut groups: BTreeMap<Key, Agg> = BTreeMap::new();
    for (id, device, tag) in super::store::read_tags(conn)? {
        if !spec.matches(&device, &tag) {
            continue;
        }
        let d = (spec.by.device || spec.by.tag).then(|| device.clone());
        let t = spec.by.tag.then(|| tag.clone());
        let mut put = |b: i64, a: &Agg| {
            let b = bucket(b, spec.every);
            if spec.by.quality {
                for (q, part) in a.by_quality() {
                    groups.entry((d.clone(), t.clone(), Some(q), b)).or_default().merge(&part);
                }
            } else {
                groups.entry((d.clone(), t.clone(), None, b)).or_default().merge(a);
            }
        };
        read_rows(conn, table, id, spec.start, spec.end, &mut put)?;
    }
    let rows = groups.into_iter().map(|((device, tag, q, b), a)| row(device, tag, q, b, &a)).collect();
    let mut notes = Vec::new();
    let kept_from = now.saturating_sub(i64::try_from(table.keep(cfg).as_nanos()).unwrap_or(i64::MAX));
    if spec.start < kept_from {
        notes.push(format!(
            "{} are kept {}: buckets before {} have no data (a larger --every reads a table kept longer)",
            table.describe(),
            crate::units::format_duration(table.keep(cfg)),
            format_rfc3339(Timestamp(kept_from))
        ));
    }
    Ok(Answer { table, rows, notes })
}

fn row(device: Option<String>, tag: Option<String>, q: Option<Quality>, b: i64, a: &Agg) -> Row {
    Row {
        device,
        tag,
        quality: q.map(Quality::as_str),
        bucket: format_rfc3339(Timestamp(b)),
        count: a.count,
        good_count: a.good,
        min: a.min,
        max: a.max,
        mean: a.mean(),
        last: a.last.map(|l| l.2),
    }
}

/// Calls `put(ts or bucket, agg)` for every row of tag `id` in `[start, end)`.
fn read_rows(conn: &Connection, table: Table, id: i64, start: i64, end: i64, put: &mut dyn FnMut(i64, &Agg)) -> anyhow::Result<()> {
    if table == Table::Raw {
        let mut st = conn.prepare_cached("SELECT ts, seq, quality, value FROM raw WHERE tag_id = ?1 AND ts >= ?2 AND ts < ?3")?;
        let mut rows = st.query(params![id, start, end])?;
        while let Some(r) = rows.next()? {
            let (ts, seq, q, v): (i64, i64, u8, Option<f64>) = (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
            let mut a = Agg::default();
            a.add(Quality::from_code(q), v, ts, seq as u64);
            put(ts, &a);
        }
        return Ok(());
    }
    let name = if table == Table::Minutes { "minutes" } else { "hours" };
    let sql = format!(
        "SELECT bucket, count, good, bad, num, sum, min, max, last, last_ts, last_seq FROM {name} \
         WHERE tag_id = ?1 AND bucket >= ?2 AND bucket < ?3"
    );
    let mut st = conn.prepare_cached(&sql)?;
    let mut rows = st.query(params![id, start, end])?;
    while let Some(r) = rows.next()? {
        let last = match (r.get::<_, Option<f64>>(8)?, r.get::<_, Option<i64>>(9)?, r.get::<_, Option<i64>>(10)?) {
            (Some(v), Some(ts), Some(seq)) => Some((ts, seq as u64, v)),
            _ => None,
        };
        let a = Agg {
            count: r.get::<_, i64>(1)? as u64,
            good: r.get::<_, i64>(2)? as u64,
            bad: r.get::<_, i64>(3)? as u64,
            num: r.get::<_, i64>(4)? as u64,
            sum: r.get(5)?,
            min: r.get(6)?,
            max: r.get(7)?,
            last,
        };
        put(r.get(0)?, &a);
    }
    Ok(())
}
