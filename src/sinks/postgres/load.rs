//! Loading one batch in one transaction, one of two ways:
//! - **direct** (the usual case): binary COPY straight into the samples
//!   table, then COMMIT. The primary key `(gateway, seq)` refuses a row that
//!   is already there (SQLSTATE 23505), which aborts the whole transaction:
//!   nothing of the batch is stored, and the batch is loaded again the
//!   staged way. COPY into the table is about twice as fast on the server
//!   as the staged INSERT (multi-row heap inserts, no second pass).
//! - **staged**: binary COPY into the session's load tables, then `INSERT …
//!   SELECT … ON CONFLICT (gateway, seq) DO NOTHING` into the tables, then
//!   COMMIT. Used for events, after a 23505 (a resend after a lost
//!   connection or a restart), and for a batch with a row refused.
//!
//! After a 23505 a connection loads staged until a staged batch inserts
//! every one of its samples (none was there: the resent range is passed),
//! then goes back to direct. Either way the key decides what is stored, so
//! a record is stored once whichever way its batch went.
//!
//! A row the server refuses for good (SQLSTATE class 22, data exception, or
//! 23, integrity constraint violation: a NUL byte in a text, a value against
//! the operator's CHECK or foreign key) fails the whole statement, so the
//! batch is loaded again piece by piece inside one transaction, each piece
//! under a SAVEPOINT:
//! - a COPY error names its row (`COPY relais_load_samples, line N`): the
//!   piece is split before and after that row, and the row is tried alone;
//! - an INSERT error names none: the piece is split in halves;
//! - a row that fails alone is refused with the SQLSTATE and message.
//!
//! The good rows commit together; the refused ones are returned for the
//! quarantine. Any other error (connection lost, server shutting down, a
//! table dropped or changed) ends the connection: the batch is loaded again
//! after a reconnect, and the primary key makes that idempotent.

use std::collections::VecDeque;

use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::{Client, Statement, Transaction};

use super::encode::{Batch, EVENT_TYPES, EventRow, SAMPLE_TYPES, SampleRow};
use super::schema::{self, EVENT_COLUMNS, LOAD_EVENTS, LOAD_SAMPLES, SAMPLE_COLUMNS};
use crate::model::Record;
use crate::sinks::driver::RefusedRecord;

/// SQLSTATE of a unique violation: the row is already in the table.
const UNIQUE_VIOLATION: &str = "23505";

/// The statements prepared on a connection.
pub struct Statements {
    copy_direct: Statement,
    copy_samples: Statement,
    copy_events: Statement,
    insert_samples: Statement,
    insert_events: Statement,
}

impl Statements {
    /// Prepares the load statements for the two tables (quoted names) and their conflict targets.
    pub async fn prepare(c: &Client, samples: (&str, &str), events: (&str, &str)) -> Result<Statements, tokio_postgres::Error> {
        Ok(Statements {
            copy_direct: c.prepare(&schema::copy_into(samples.0, SAMPLE_COLUMNS)).await?,
            copy_samples: c.prepare(&schema::copy_into(LOAD_SAMPLES, SAMPLE_COLUMNS)).await?,
            copy_events: c.prepare(&schema::copy_into(LOAD_EVENTS, EVENT_COLUMNS)).await?,
            insert_samples: c.prepare(&schema::insert_from(samples.0, LOAD_SAMPLES, SAMPLE_COLUMNS, samples.1)).await?,
            insert_events: c.prepare(&schema::insert_from(events.0, LOAD_EVENTS, EVENT_COLUMNS, events.1)).await?,
        })
    }
}

/// Where a piece failed.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Stage {
    CopySamples,
    CopyEvents,
    Insert,
}

struct Failed {
    stage: Stage,
    err: tokio_postgres::Error,
}

/// True for an error about one row's data: SQLSTATE class 22 or 23.
pub fn is_row_error(e: &tokio_postgres::Error) -> bool {
    e.code().is_some_and(|c| matches!(c.code().get(..2), Some("22" | "23")))
}

/// `SQLSTATE 22021: invalid byte sequence … (detail)`, at most 300 characters.
pub fn reason(e: &tokio_postgres::Error) -> String {
    let text = match e.as_db_error() {
        Some(db) => {
            let detail = db.detail().map(|d| format!(" ({d})")).unwrap_or_default();
            format!("SQLSTATE {}: {}{detail}", db.code().code(), db.message())
        }
        None => {
            // "error performing TLS handshake: invalid peer certificate: UnknownIssuer"
            let mut t = e.to_string();
            let mut src = std::error::Error::source(e);
            while let Some(s) = src {
                t = format!("{t}: {s}");
                src = s.source();
            }
            t
        }
    };
    let one: String = text.chars().take(300).map(|c| if c.is_control() { ' ' } else { c }).collect();
    one
}

/// The 1-based row a COPY error names (`COPY relais_load_samples, line 3, column …`).
pub fn copy_line(where_: &str) -> Option<usize> {
    let rest = &where_[where_.find("COPY ")?..];
    let rest = &rest[rest.find(", line ")? + ", line ".len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok().filter(|n| *n > 0)
}

async fn copy_samples(tx: &Transaction<'_>, into: &Statement, gw: &str, rows: &[&Record]) -> Result<(), tokio_postgres::Error> {
    let sink = tx.copy_in(into).await?;
    let w = BinaryCopyInWriter::new(sink, &SAMPLE_TYPES);
    tokio::pin!(w);
    for s in rows.iter().filter_map(|r| r.as_sample()) {
        let row = SampleRow::new(gw, s);
        w.as_mut().write(&row.values()).await?;
    }
    w.finish().await.map(|_| ())
}

async fn copy_events(tx: &Transaction<'_>, st: &Statements, gw: &str, rows: &[&Record]) -> Result<(), tokio_postgres::Error> {
    let sink = tx.copy_in(&st.copy_events).await?;
    let w = BinaryCopyInWriter::new(sink, &EVENT_TYPES);
    tokio::pin!(w);
    for e in rows.iter().filter_map(|r| r.as_event()) {
        let row = EventRow::new(gw, e);
        w.as_mut().write(&row.values()).await?;
    }
    w.finish().await.map(|_| ())
}

fn at(stage: Stage) -> impl FnOnce(tokio_postgres::Error) -> Failed {
    move |err| Failed { stage, err }
}

/// Staged COPY and INSERT of `rows` inside `tx` (the load tables are empty
/// before); returns how many samples the INSERT stored.
async fn load_rows(tx: &Transaction<'_>, st: &Statements, gw: &str, rows: &[&Record]) -> Result<u64, Failed> {
    let samples = rows.iter().any(|r| r.as_sample().is_some());
    let events = rows.iter().any(|r| r.as_event().is_some());
    let mut stored = 0;
    if samples {
        copy_samples(tx, &st.copy_samples, gw, rows).await.map_err(at(Stage::CopySamples))?;
    }
    if events {
        copy_events(tx, st, gw, rows).await.map_err(at(Stage::CopyEvents))?;
    }
    if samples {
        stored = tx.execute(&st.insert_samples, &[]).await.map_err(at(Stage::Insert))?;
    }
    if events {
        tx.execute(&st.insert_events, &[]).await.map_err(at(Stage::Insert))?;
    }
    Ok(stored)
}

/// Direct COPY of the samples into the table (events staged) inside `tx`.
async fn load_direct(tx: &Transaction<'_>, st: &Statements, gw: &str, rows: &[&Record]) -> Result<(), Failed> {
    copy_samples(tx, &st.copy_direct, gw, rows).await.map_err(at(Stage::CopySamples))?;
    if rows.iter().any(|r| r.as_event().is_some()) {
        copy_events(tx, st, gw, rows).await.map_err(at(Stage::CopyEvents))?;
        tx.execute(&st.insert_events, &[]).await.map_err(at(Stage::Insert))?;
    }
    Ok(())
}

/// How a connection loads its batches (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// COPY straight into the samples table.
    #[default]
    Direct,
    /// Through the load tables with `ON CONFLICT DO NOTHING`, until a batch
    /// stores every sample it carries.
    Staged,
}

/// Tries the direct way: `Ok(true)` committed; `Ok(false)` nothing stored
/// (a row already there, or a row refused): load the batch staged.
async fn try_direct(c: &mut Client, st: &Statements, gw: &str, rows: &[&Record], mode: &mut Mode) -> Result<bool, tokio_postgres::Error> {
    let tx = c.transaction().await?;
    match load_direct(&tx, st, gw, rows).await {
        Ok(()) => tx.commit().await.map(|()| true),
        Err(f) if is_row_error(&f.err) => {
            if f.err.code().is_some_and(|c| c.code() == UNIQUE_VIOLATION) {
                tracing::debug!("rows already stored: loading through the staging table until a batch lands whole");
                *mode = Mode::Staged;
            }
            tx.rollback().await.map(|()| false)
        }
        Err(f) => Err(f.err),
    }
}

/// Loads `batch` in one transaction; returns the rows refused for good, or
/// the error that ended the connection's usefulness. `mode` is the
/// connection's: it changes as described in the module docs.
pub async fn load(
    c: &mut Client,
    st: &Statements,
    gw: &str,
    batch: &Batch,
    mode: &mut Mode,
) -> Result<Vec<RefusedRecord>, tokio_postgres::Error> {
    let rows: Vec<&Record> = batch.records.iter().collect();
    let mut refused = batch.refused.clone();
    let samples = rows.iter().filter(|r| r.as_sample().is_some()).count() as u64;
    let done = samples > 0 && *mode == Mode::Direct && try_direct(c, st, gw, &rows, mode).await?;
    if !rows.is_empty() && !done {
        let tx = c.transaction().await?;
        match load_rows(&tx, st, gw, &rows).await {
            Ok(stored) => {
                tx.commit().await?;
                if stored == samples {
                    *mode = Mode::Direct;
                }
            }
            Err(f) if is_row_error(&f.err) => {
                tx.rollback().await?;
                refused.extend(load_piecewise(c, st, gw, rows).await?);
            }
            Err(f) => return Err(f.err),
        }
    }
    refused.sort_by_key(|r| r.seq);
    Ok(refused)
}

/// Splits a failed piece: around the row a COPY error names, else in halves.
fn split<'a>(piece: &[&'a Record], f: &Failed) -> Vec<Vec<&'a Record>> {
    let kind_rows: Vec<&&Record> = match f.stage {
        Stage::CopySamples => piece.iter().filter(|r| r.as_sample().is_some()).collect(),
        Stage::CopyEvents => piece.iter().filter(|r| r.as_event().is_some()).collect(),
        Stage::Insert => Vec::new(),
    };
    let named = f.err.as_db_error().and_then(|db| db.where_()).and_then(copy_line).and_then(|n| kind_rows.get(n - 1)).map(|r| r.seq());
    let parts: Vec<Vec<&Record>> = match named.and_then(|seq| piece.iter().position(|r| r.seq() == seq)) {
        // The named row alone: it is refused only if it fails by itself.
        Some(i) => vec![piece[..i].to_vec(), vec![piece[i]], piece[i + 1..].to_vec()],
        None => {
            let mid = piece.len() / 2;
            vec![piece[..mid].to_vec(), piece[mid..].to_vec()]
        }
    };
    parts.into_iter().filter(|p| !p.is_empty()).collect()
}

/// Loads `rows` piece by piece, each under a savepoint, in one transaction.
async fn load_piecewise(
    c: &mut Client,
    st: &Statements,
    gw: &str,
    rows: Vec<&Record>,
) -> Result<Vec<RefusedRecord>, tokio_postgres::Error> {
    let mut tx = c.transaction().await?;
    let mut queue: VecDeque<Vec<&Record>> = VecDeque::from([rows]);
    let mut refused = Vec::new();
    while let Some(piece) = queue.pop_front() {
        let sp = tx.savepoint("relais_piece").await?;
        match load_rows(&sp, st, gw, &piece).await {
            Ok(_) => {
                sp.batch_execute(&format!("DELETE FROM {LOAD_SAMPLES}; DELETE FROM {LOAD_EVENTS}")).await?;
                sp.commit().await?;
            }
            Err(f) if is_row_error(&f.err) => {
                sp.rollback().await?;
                if piece.len() == 1 {
                    let r = piece[0];
                    refused.push(RefusedRecord {
                        seq: r.seq(),
                        reason: reason(&f.err),
                        raw: crate::sinks::record_json::record_text(gw, r),
                    });
                } else {
                    for p in split(&piece, &f).into_iter().rev() {
                        queue.push_front(p);
                    }
                }
            }
            Err(f) => return Err(f.err),
        }
    }
    tx.commit().await?;
    Ok(refused)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_errors_name_their_row() {
        assert_eq!(copy_line("COPY relais_load_samples, line 3, column value_text"), Some(3));
        assert_eq!(copy_line("COPY relais_load_events, line 12"), Some(12));
        assert_eq!(copy_line("COPY relais_load_samples, line 0"), None);
        assert_eq!(copy_line("SQL statement \"…\""), None);
    }
}
