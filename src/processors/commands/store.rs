//! The command ids already seen, in their own SQLite file
//! (`{data_dir}/commands.sqlite`, WAL, `synchronous = FULL`: a row is on disk
//! when the call returns).
//!
//! # Invariants
//!
//! - An id is recorded `pending` (with its target) **before** its write is
//!   handed to the device, and its PUBACK is sent only after that: a crash
//!   at any point never makes a second write for the same id.
//! - A settled id keeps its response, answered again to every duplicate.
//! - At open, every `pending` row (the process stopped while executing it)
//!   becomes settled `unknown`: the write may or may not have reached the
//!   device, and it is never made again.
//! - Settled rows older than the window are pruned (at open and hourly);
//!   pending rows never are.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value as J;

use super::payload::response;
use super::topic::Target;

/// The file name in `data_dir`.
pub const FILE: &str = "commands.sqlite";

/// What the store knows of an id.
#[derive(Debug, Clone, PartialEq)]
pub enum Seen {
    /// Never seen (or pruned).
    New,
    /// Being executed by this process.
    Pending,
    /// Settled: its response.
    Done(J),
    /// Used by a command for another target (its key).
    OtherTarget(String),
}

/// The store.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    window: Duration,
}

/// Reason of the ids found pending at open.
pub const RECOVERED: &str = "restart: relais stopped while this command was being executed; \
    the write may or may not have reached the device and is never made again (read the tag to know)";

impl Store {
    /// Opens (or creates) the store in `dir`, settles the ids left pending
    /// as `unknown` and prunes; returns it with the number settled so.
    pub fn open(dir: &Path, window: Duration) -> rusqlite::Result<(Store, u64)> {
        let conn = Connection::open(dir.join(FILE))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS command (
                 id TEXT PRIMARY KEY,
                 target TEXT NOT NULL,
                 state TEXT NOT NULL CHECK (state IN ('pending', 'done')),
                 response TEXT,
                 received_ms INTEGER NOT NULL,
                 settled_ms INTEGER
             );
             CREATE INDEX IF NOT EXISTS command_received ON command (received_ms);",
        )?;
        let store = Store { conn, window };
        let n = store.recover()?;
        store.prune(now_ms())?;
        Ok((store, n))
    }

    fn recover(&self) -> rusqlite::Result<u64> {
        let mut st = self.conn.prepare("SELECT id, target FROM command WHERE state = 'pending'")?;
        let rows: Vec<(String, String)> = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?;
        for (id, target) in &rows {
            let t = Target::from_key(target).unwrap_or(Target::Alarm { rule: target.clone() });
            let r = response(Some(id), &t, "unknown", Some(RECOVERED), J::Null);
            self.finish(id, &r)?;
        }
        Ok(rows.len() as u64)
    }

    /// What is known of `id`, for a command on `target`.
    pub fn lookup(&self, id: &str, target: &Target) -> rusqlite::Result<Seen> {
        let row: Option<(String, String, Option<String>)> = self
            .conn
            .query_row("SELECT target, state, response FROM command WHERE id = ?1", [id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()?;
        Ok(match row {
            None => Seen::New,
            Some((t, _, _)) if t != target.key() => Seen::OtherTarget(t),
            Some((_, s, _)) if s == "pending" => Seen::Pending,
            Some((_, _, r)) => Seen::Done(r.and_then(|r| serde_json::from_str(&r).ok()).unwrap_or(J::Null)),
        })
    }

    /// Records `id` as pending for `target` (durably, before the write).
    pub fn begin(&self, id: &str, target: &Target) -> rusqlite::Result<()> {
        self.conn.execute(
            "INSERT INTO command (id, target, state, received_ms) VALUES (?1, ?2, 'pending', ?3)",
            params![id, target.key(), now_ms()],
        )?;
        Ok(())
    }

    /// Records `id` settled with `response` (inserting it when new: a
    /// command refused before execution, such as an expired one).
    pub fn finish(&self, id: &str, response: &J) -> rusqlite::Result<()> {
        let now = now_ms();
        let target = target_of(response);
        self.conn.execute(
            "INSERT INTO command (id, target, state, response, received_ms, settled_ms) VALUES (?1, ?2, 'done', ?3, ?4, ?4)
             ON CONFLICT (id) DO UPDATE SET state = 'done', response = excluded.response, settled_ms = excluded.settled_ms",
            params![id, target, response.to_string(), now],
        )?;
        Ok(())
    }

    /// Deletes settled ids received before `now_ms` minus the window.
    pub fn prune(&self, now_ms: i64) -> rusqlite::Result<u64> {
        let before = now_ms.saturating_sub(self.window.as_millis().min(i64::MAX as u128) as i64);
        Ok(self.conn.execute("DELETE FROM command WHERE state = 'done' AND received_ms < ?1", [before])? as u64)
    }
}

/// The target key of a response (`device`/`tag` or `rule`).
fn target_of(r: &J) -> String {
    match (r["device"].as_str(), r["tag"].as_str(), r["rule"].as_str()) {
        (Some(d), Some(t), _) => Target::Tag { device: d.into(), tag: t.into() }.key(),
        (_, _, Some(rule)) => Target::Alarm { rule: rule.into() }.key(),
        _ => String::new(),
    }
}

fn now_ms() -> i64 {
    crate::model::Timestamp::now().as_nanos() / 1_000_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_becomes_unknown_at_open_and_is_never_new_again() {
        let dir = tempfile::tempdir().unwrap();
        let t = Target::Tag { device: "pump".into(), tag: "start".into() };
        {
            let (s, n) = Store::open(dir.path(), Duration::from_secs(3600)).unwrap();
            assert_eq!(n, 0);
            assert_eq!(s.lookup("c1", &t).unwrap(), Seen::New);
            s.begin("c1", &t).unwrap();
            assert_eq!(s.lookup("c1", &t).unwrap(), Seen::Pending);
            s.begin("c2", &t).unwrap();
            s.finish("c2", &response(Some("c2"), &t, "ok", None, J::Null)).unwrap();
            assert!(s.begin("c2", &t).is_err(), "an id is recorded once");
            // Dropped here: a crash with c1 pending.
        }
        let (s, n) = Store::open(dir.path(), Duration::from_secs(3600)).unwrap();
        assert_eq!(n, 1);
        let Seen::Done(r) = s.lookup("c1", &t).unwrap() else { panic!("c1 settled") };
        assert_eq!((r["result"].as_str(), r["device"].as_str()), (Some("unknown"), Some("pump")));
        assert!(r["reason"].as_str().unwrap().starts_with("restart:"));
        let Seen::Done(r) = s.lookup("c2", &t).unwrap() else { panic!("c2 settled") };
        assert_eq!(r["result"], "ok");
        let other = Target::Alarm { rule: "hot".into() };
        assert_eq!(s.lookup("c2", &other).unwrap(), Seen::OtherTarget(t.key()));
        // An expired command refused before execution is inserted settled.
        s.finish("c3", &response(Some("c3"), &other, "refused", Some("expired: …"), J::Null)).unwrap();
        assert!(matches!(s.lookup("c3", &other).unwrap(), Seen::Done(_)));
        assert_eq!(s.prune(now_ms() + 3_600_001).unwrap(), 3, "settled rows beyond the window are pruned");
        assert_eq!(s.lookup("c2", &t).unwrap(), Seen::New);
    }
}
