//! The SQL relais runs (pure text): the two tables, the per-minute rollup
//! view, the session's load tables, and the load statements.
//!
//! # Tables
//!
//! Samples (`table`, default `relais_samples`), one row per sample, primary
//! key `(gateway, seq)` (`(gateway, seq, ts)` on a TimescaleDB hypertable,
//! which requires the partitioning column in every unique index; `ts` of a
//! record never changes, so the key identifies the same rows):
//!
//! | column | type | holds |
//! |---|---|---|
//! | `gateway` | text | the gateway id |
//! | `seq` | bigint | the record's `seq` (strictly increasing per gateway) |
//! | `device`, `tag` | text | names from the config |
//! | `value` | double precision | every number, booleans as 0/1, for rollups; NULL for text, bad samples and NaN/±Infinity |
//! | `value_int` | bigint | the exact integer (integer samples up to 2^63 − 1) |
//! | `value_bool` | boolean | the boolean |
//! | `value_text` | text | the text; an unsigned integer above 2^63 − 1 in decimal |
//! | `unit` | text | engineering unit, NULL when none |
//! | `quality` | text | `good`, `uncertain` or `bad` |
//! | `reason` | text | machine-readable reason, NULL when good |
//! | `ts`, `recv_ts` | timestamptz | source time and the gateway's time of acquisition (microseconds: PostgreSQL's precision) |
//! | `server_ts` | timestamptz | OPC UA server timestamp, NULL otherwise |
//! | `status_code` | bigint | OPC UA StatusCode, NULL otherwise |
//!
//! Events (`events_table`, default `relais_events`): `gateway`, `seq`,
//! `kind`, `severity`, `source_kind`, `source_name`, `ts`, `message`,
//! `details` (jsonb), primary key `(gateway, seq)`.

/// Columns of the samples table, in COPY order.
pub const SAMPLE_COLUMNS: &str =
    "gateway, seq, device, tag, value, value_int, value_bool, value_text, unit, quality, reason, ts, recv_ts, server_ts, status_code";

/// Columns of the events table, in COPY order.
pub const EVENT_COLUMNS: &str = "gateway, seq, kind, severity, source_kind, source_name, ts, message, details";

/// Column definitions of the samples table (without keys).
const SAMPLE_DEFS: &str = "gateway text NOT NULL, seq bigint NOT NULL, device text NOT NULL, tag text NOT NULL, \
     value double precision, value_int bigint, value_bool boolean, value_text text, unit text, \
     quality text NOT NULL, reason text, ts timestamptz NOT NULL, recv_ts timestamptz NOT NULL, \
     server_ts timestamptz, status_code bigint";

/// Column definitions of the events table (without keys).
const EVENT_DEFS: &str = "gateway text NOT NULL, seq bigint NOT NULL, kind text NOT NULL, severity text NOT NULL, \
     source_kind text NOT NULL, source_name text NOT NULL, ts timestamptz NOT NULL, message text NOT NULL, details jsonb";

/// Session table the samples are copied into before the INSERT.
pub const LOAD_SAMPLES: &str = "relais_load_samples";
/// Session table the events are copied into before the INSERT.
pub const LOAD_EVENTS: &str = "relais_load_events";

/// `CREATE TABLE IF NOT EXISTS` of the samples table; `hypertable` puts `ts`
/// into the primary key.
pub fn create_samples(table: &str, hypertable: bool) -> String {
    let key = if hypertable { "gateway, seq, ts" } else { "gateway, seq" };
    format!("CREATE TABLE IF NOT EXISTS {table} ({SAMPLE_DEFS}, PRIMARY KEY ({key}))")
}

/// `CREATE TABLE IF NOT EXISTS` of the events table.
pub fn create_events(table: &str) -> String {
    format!("CREATE TABLE IF NOT EXISTS {table} ({EVENT_DEFS}, PRIMARY KEY (gateway, seq))")
}

/// Makes `table` a TimescaleDB hypertable on `ts` (no-op when it is one).
pub fn create_hypertable(table: &str) -> String {
    let lit = table.replace('\'', "''");
    format!("SELECT create_hypertable('{lit}', 'ts', if_not_exists => TRUE, migrate_data => TRUE)")
}

/// The per-minute rollup view of `table` (named `{table}_per_minute`):
/// per gateway, device, tag and minute of `ts`, the number of samples, of
/// good ones, and min / avg / max of the good values.
pub fn create_rollup_view(view: &str, table: &str) -> String {
    format!(
        "CREATE VIEW {view} AS SELECT gateway, device, tag, date_trunc('minute', ts) AS minute, \
         count(*) AS samples, count(*) FILTER (WHERE quality = 'good') AS good, \
         min(value) FILTER (WHERE quality = 'good') AS min, avg(value) FILTER (WHERE quality = 'good') AS avg, \
         max(value) FILTER (WHERE quality = 'good') AS max \
         FROM {table} GROUP BY gateway, device, tag, date_trunc('minute', ts)"
    )
}

/// The session's load tables: no keys, no constraints, emptied at each COMMIT.
pub fn create_load_tables() -> [String; 2] {
    [
        format!("CREATE TEMP TABLE IF NOT EXISTS {LOAD_SAMPLES} ({SAMPLE_DEFS}) ON COMMIT DELETE ROWS"),
        format!("CREATE TEMP TABLE IF NOT EXISTS {LOAD_EVENTS} ({EVENT_DEFS}) ON COMMIT DELETE ROWS"),
    ]
}

/// `COPY … FROM STDIN (FORMAT binary)` into a load table.
pub fn copy_into(load: &str, columns: &str) -> String {
    format!("COPY {load} ({columns}) FROM STDIN (FORMAT binary)")
}

/// Moves the load table's rows into `table`; rows already there (same
/// `key`, the primary key) are left alone.
pub fn insert_from(table: &str, load: &str, columns: &str, key: &str) -> String {
    format!("INSERT INTO {table} ({columns}) SELECT {columns} FROM {load} ON CONFLICT ({key}) DO NOTHING")
}

/// The primary key columns of a table, in key order (`$1` = its regclass text).
pub const PRIMARY_KEY: &str = "SELECT a.attname::text FROM pg_index i \
     JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
     WHERE i.indrelid = to_regclass($1) AND i.indisprimary ORDER BY array_position(i.indkey::int2[], a.attnum)";

/// Checks a primary key found in the database: `(gateway, seq)`, or
/// `(gateway, seq, ts)` on a hypertable. Returns the conflict target.
pub fn conflict_target(table: &str, key: &[String]) -> Result<String, String> {
    let k: Vec<&str> = key.iter().map(String::as_str).collect();
    match k.as_slice() {
        ["gateway", "seq"] | ["gateway", "seq", "ts"] => Ok(k.join(", ")),
        [] => Err(format!("table {table} has no primary key; relais needs PRIMARY KEY (gateway, seq) for exactly-once loading")),
        other => Err(format!(
            "table {table} has PRIMARY KEY ({}); relais needs (gateway, seq), or (gateway, seq, ts) on a hypertable",
            other.join(", ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_name_the_tables_and_keys() {
        assert!(create_samples("\"t\"", false).ends_with(", status_code bigint, PRIMARY KEY (gateway, seq))"));
        assert!(create_samples("\"t\"", true).ends_with("PRIMARY KEY (gateway, seq, ts))"));
        assert_eq!(
            insert_from("\"s\".\"t\"", LOAD_SAMPLES, "a, b", "gateway, seq"),
            "INSERT INTO \"s\".\"t\" (a, b) SELECT a, b FROM relais_load_samples ON CONFLICT (gateway, seq) DO NOTHING"
        );
        assert_eq!(copy_into(LOAD_EVENTS, "x"), "COPY relais_load_events (x) FROM STDIN (FORMAT binary)");
        assert_eq!(create_hypertable("\"t\""), "SELECT create_hypertable('\"t\"', 'ts', if_not_exists => TRUE, migrate_data => TRUE)");
        // Same columns in the definitions and the COPY lists.
        let names = |defs: &str| defs.split(", ").map(|d| d.split(' ').next().unwrap().to_string()).collect::<Vec<_>>().join(", ");
        assert_eq!(names(SAMPLE_DEFS), SAMPLE_COLUMNS);
        assert_eq!(names(EVENT_DEFS), EVENT_COLUMNS);
    }

    #[test]
    fn only_gateway_and_seq_keys_are_accepted() {
        let k = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(conflict_target("t", &k(&["gateway", "seq"])).unwrap(), "gateway, seq");
        assert_eq!(conflict_target("t", &k(&["gateway", "seq", "ts"])).unwrap(), "gateway, seq, ts");
        assert!(conflict_target("t", &k(&["seq"])).unwrap_err().contains("PRIMARY KEY (seq)"));
        assert!(conflict_target("t", &[]).unwrap_err().contains("no primary key"));
    }
}
