//! Configuration of `type = "postgres"` sinks. See `sample.toml` beside this file.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;
use tokio_postgres::config::{Host, SslMode};
use toml::Spanned;

use crate::diag::{Diag, Item, Reader, de_item, reject_unknown_keys};
use crate::names;
use crate::secret::{Secret, read_secret};
use crate::util::tls::{TlsFiles, is_loopback, read_files};

/// Whether the samples table becomes a TimescaleDB hypertable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timescale {
    /// A hypertable on `ts` when the `timescaledb` extension is installed in
    /// the database; a plain table otherwise (the default).
    Auto,
    /// A hypertable, or no loading at all (retried, the data waits).
    On,
    /// Always a plain table.
    Off,
}

/// A validated PostgreSQL sink.
#[derive(Debug, Clone)]
pub struct PgSinkConfig {
    /// Sink name; also the name of its cursor in the buffer.
    pub name: String,
    /// Connection settings (hosts, port, database, user; password set from
    /// `password*`; keepalives set by the sink).
    pub pg: tokio_postgres::Config,
    /// Password (never logged).
    pub password: Option<Secret>,
    /// TLS (verify-full with rustls): on unless every host is this machine.
    pub tls: bool,
    /// CA and client certificate files.
    pub tls_files: TlsFiles,
    /// Schema of both tables (the connection's `search_path` when absent).
    pub schema: Option<String>,
    /// Samples table (default `relais_samples`).
    pub table: String,
    /// Events table (default `relais_events`).
    pub events_table: String,
    /// Hypertable on `ts`.
    pub timescale: Timescale,
    /// Most records per transaction (default 10000); also the buffer read size.
    pub batch_max_records: usize,
    /// Connections loading batches side by side (default 2).
    pub connections: usize,
    /// Batches handed to the connections and not committed yet (default
    /// `connections` + 1: the next batch is ready while each connection commits).
    pub max_inflight: usize,
    /// Longest wait for one batch's COMMIT before the connection is rebuilt (default 20 s).
    pub timeout: Duration,
    /// Longest wait for a connection (default 10 s).
    pub connect_timeout: Duration,
    /// Backlog, in records, above which live records get a lane of their own (default 100000).
    pub backlog_threshold: u64,
    /// Age of the oldest undelivered record that raises `sink.backlog_old`
    /// (`backlog_alarm_age`, default 60 s; `"0s"`: off; `sinks::driver::backlog_age`).
    pub backlog_alarm_age: Duration,
    /// Longest wait between reconnect attempts (default 30 s).
    pub reconnect_max: Duration,
}

impl PgSinkConfig {
    /// The server as it may be logged: `postgres://host:port/db` (no user, no password).
    pub fn target(&self) -> String {
        let host = match self.pg.get_hosts().first() {
            Some(Host::Tcp(h)) => h.clone(),
            Some(Host::Unix(p)) => p.display().to_string(),
            None => "localhost".to_string(),
        };
        let port = self.pg.get_ports().first().copied().unwrap_or(5432);
        format!("postgres://{host}:{port}/{}", self.pg.get_dbname().unwrap_or(""))
    }

    /// `schema.table` (quoted) of the samples table.
    pub fn samples_table(&self) -> String {
        qualified(self.schema.as_deref(), &self.table)
    }

    /// `schema.table` (quoted) of the events table.
    pub fn events_table(&self) -> String {
        qualified(self.schema.as_deref(), &self.events_table)
    }
}

/// `"schema"."name"` (names are checked to `[a-z_][a-z0-9_]*` at parse time).
pub fn qualified(schema: Option<&str>, name: &str) -> String {
    match schema {
        Some(s) => format!("\"{s}\".\"{name}\""),
        None => format!("\"{name}\""),
    }
}

/// Keys of a PostgreSQL `[[sink]]`.
pub const KEYS: &[&str] = &[
    "name",
    "type",
    "url",
    "host",
    "port",
    "dbname",
    "user",
    "password",
    "password_file",
    "password_env",
    "tls",
    "ca_file",
    "client_cert",
    "client_key",
    "schema",
    "table",
    "events_table",
    "timescale",
    "batch_max_records",
    "connections",
    "max_inflight",
    "timeout",
    "connect_timeout",
    "backlog_threshold",
    "backlog_alarm_age",
    "reconnect_max",
];

#[derive(Deserialize)]
struct Raw {
    name: Spanned<String>,
    url: Option<Spanned<String>>,
    host: Option<Spanned<String>>,
    port: Option<Spanned<i64>>,
    dbname: Option<Spanned<String>>,
    user: Option<Spanned<String>>,
    password: Option<Spanned<String>>,
    password_file: Option<Spanned<String>>,
    password_env: Option<Spanned<String>>,
    tls: Option<Spanned<bool>>,
    schema: Option<Spanned<String>>,
    table: Option<Spanned<String>>,
    events_table: Option<Spanned<String>>,
    timescale: Option<Spanned<String>>,
    batch_max_records: Option<Spanned<i64>>,
    connections: Option<Spanned<i64>>,
    max_inflight: Option<Spanned<i64>>,
    timeout: Option<Spanned<String>>,
    connect_timeout: Option<Spanned<String>>,
    backlog_threshold: Option<Spanned<i64>>,
    backlog_alarm_age: Option<Spanned<String>>,
    reconnect_max: Option<Spanned<String>>,
}

/// A table or schema name relais writes into SQL: lowercase letters, digits
/// and `_`, not starting with a digit, at most `max` bytes.
pub fn check_ident(s: &str, max: usize) -> Result<(), String> {
    let ok_first = s.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    if !ok_first || !s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') {
        return Err(format!("{s:?} is not a plain SQL name: use lowercase letters, digits and '_', not starting with a digit"));
    }
    if s.len() > max {
        return Err(format!("{s:?} is longer than {max} characters"));
    }
    Ok(())
}

fn ident(d: &mut Diag<'_>, v: &Option<Spanned<String>>, key: &str, default: Option<&str>, max: usize) -> Option<String> {
    let Some(x) = v else { return default.map(str::to_string) };
    if let Err(e) = check_ident(x.get_ref(), max) {
        d.error(x.span(), key, e);
    }
    Some(x.get_ref().clone())
}

/// The connection settings from `url` or `host`/`port`/`dbname`/`user`.
fn pg_config(d: &mut Diag<'_>, raw: &Raw, k: &dyn Fn(&str) -> String) -> Option<tokio_postgres::Config> {
    let span = raw.url.as_ref().or(raw.host.as_ref()).map_or(raw.name.span(), |s| s.span());
    let mut pg = match (&raw.url, &raw.host) {
        (Some(_), Some(h)) => {
            d.error(h.span(), &k("host"), "set either url or host (with port, dbname, user), not both");
            return None;
        }
        (None, None) => {
            d.error(span, &k("url"), "missing url (postgres://user@host:5432/db) or host");
            return None;
        }
        (Some(u), None) => {
            let text = u.get_ref();
            if !text.starts_with("postgres://") && !text.starts_with("postgresql://") {
                d.error(u.span(), &k("url"), "expected postgres://user@host:port/dbname");
                return None;
            }
            match tokio_postgres::Config::from_str(text) {
                Ok(c) => c,
                Err(e) => {
                    d.error(u.span(), &k("url"), format!("{:?} is not a PostgreSQL URL: {e}", crate::util::redact::url(text)));
                    return None;
                }
            }
        }
        (None, Some(h)) => {
            let mut c = tokio_postgres::Config::new();
            c.host(h.get_ref());
            c
        }
    };
    if raw.url.is_some() {
        for (v, key) in [(&raw.dbname, "dbname"), (&raw.user, "user")] {
            if let Some(v) = v {
                d.error(v.span(), &k(key), format!("{key} goes in the url when url is set"));
            }
        }
        if let Some(p) = &raw.port {
            d.error(p.span(), &k("port"), "port goes in the url when url is set");
        }
    } else {
        pg.port(Reader::new(&mut *d, "").int(&raw.port, &k("port"), 1..=65535, 5432));
        if let Some(db) = &raw.dbname {
            pg.dbname(db.get_ref());
        }
        if let Some(u) = &raw.user {
            pg.user(u.get_ref());
        }
    }
    if pg.get_password().is_some() {
        d.error(span.clone(), &k("url"), "the url carries a password; use password_file (or password_env) so it stays out of logs");
    }
    if pg.get_user().is_none() {
        d.error(span.clone(), &k("user"), "no user: set it in the url (postgres://user@host/db) or with user");
    }
    if pg.get_dbname().is_none() {
        d.error(span.clone(), &k("dbname"), "no database: set it in the url (postgres://user@host/db) or with dbname");
    }
    if pg.get_ssl_mode() != SslMode::Prefer {
        d.error(span, &k("url"), "sslmode in the url is not used; set tls = true (certificate and host name checked) or tls = false");
    }
    Some(pg)
}

/// True when every host of `pg` is this machine (loopback or a Unix socket).
fn all_local(pg: &tokio_postgres::Config) -> bool {
    pg.get_hosts().iter().all(|h| match h {
        Host::Tcp(h) => is_loopback(h),
        Host::Unix(_) => true,
    })
}

/// Parses one `[[sink]]` item with `type = "postgres"` (`item_key` names it in
/// messages before its name is known); relative paths resolve against `base`.
pub fn parse_sink(mut item: Item<'_>, d: &mut Diag<'_>, item_key: &str, base: &Path) -> Option<PgSinkConfig> {
    reject_unknown_keys(&mut item, KEYS, d, item_key);
    let raw: Raw = de_item(item.clone(), d, item_key)?;
    let before = d.error_count();
    let name = raw.name.get_ref().clone();
    let key = format!("sink {name:?}");
    let k = |s: &str| format!("{key} / {s}");
    if let Err(e) = names::check(&name) {
        d.error(raw.name.span(), &k("name"), e);
    }
    let pg = pg_config(d, &raw, &k);
    let password = read_secret(d, &key, "password", &raw.password, &raw.password_file, &raw.password_env, base).secret();
    let tls_files = read_files(item, d, &key, base);
    let local = pg.as_ref().is_some_and(all_local);
    let tls = raw.tls.as_ref().map_or(!local, |t| *t.get_ref());
    if !tls && tls_files.any() {
        let span = raw.tls.as_ref().map_or(raw.name.span(), |t| t.span());
        d.error(span, &k("tls"), "TLS files are set but tls = false");
    }
    let schema = ident(d, &raw.schema, &k("schema"), None, 63);
    // 52: the rollup view is named {table}_per_minute (63 bytes at most).
    let table = ident(d, &raw.table, &k("table"), Some("relais_samples"), 52).unwrap_or_default();
    let events_table = ident(d, &raw.events_table, &k("events_table"), Some("relais_events"), 63).unwrap_or_default();
    if table == events_table {
        let span = raw.events_table.as_ref().map_or(raw.name.span(), |t| t.span());
        d.error(span, &k("events_table"), "events_table must differ from table");
    }
    let mut r = Reader::new(d, &key);
    let timescale = r.choice(
        &raw.timescale,
        "timescale",
        &[("auto", Timescale::Auto), ("on", Timescale::On), ("off", Timescale::Off)],
        Timescale::Auto,
    );
    let batch_max_records = r.int(&raw.batch_max_records, "batch_max_records", 1..=1_000_000, 10_000);
    let connections: usize = r.int(&raw.connections, "connections", 1..=8, 2);
    let max_inflight = r.int(&raw.max_inflight, "max_inflight", 1..=32, connections + 1);
    let at_least_100ms = Duration::from_millis(100)..=Duration::MAX;
    let timeout = r.duration_in(&raw.timeout, "timeout", Duration::from_secs(20), at_least_100ms.clone());
    let connect_timeout = r.duration_in(&raw.connect_timeout, "connect_timeout", Duration::from_secs(10), at_least_100ms);
    let backlog_threshold = r.int(&raw.backlog_threshold, "backlog_threshold", 0..=i64::MAX, 100_000);
    let backlog_alarm_age =
        r.duration(&raw.backlog_alarm_age, "backlog_alarm_age", crate::sinks::driver::backlog_age::DEFAULT_BACKLOG_ALARM_AGE);
    let reconnect_max = r.duration(&raw.reconnect_max, "reconnect_max", Duration::from_secs(30));
    if let Some(m) = &raw.max_inflight
        && max_inflight < connections
    {
        let msg = format!("max_inflight ({max_inflight}) is below connections ({connections}): a connection would never get a batch");
        d.error(m.span(), &k("max_inflight"), msg);
    }
    if d.error_count() > before {
        return None;
    }
    Some(PgSinkConfig {
        name,
        pg: pg?,
        password,
        tls,
        tls_files,
        schema,
        table,
        events_table,
        timescale,
        batch_max_records,
        connections,
        max_inflight,
        timeout,
        connect_timeout,
        backlog_threshold,
        backlog_alarm_age,
        reconnect_max,
    })
}

impl std::fmt::Display for Timescale {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Timescale::Auto => "auto",
            Timescale::On => "on",
            Timescale::Off => "off",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_plain_sql_names() {
        assert!(check_ident("relais_samples", 52).is_ok());
        assert!(check_ident("_x9", 63).is_ok());
        for bad in ["", "9x", "Samples", "a-b", "a\"b", "a b", "été"] {
            assert!(check_ident(bad, 63).is_err(), "{bad:?}");
        }
        assert!(check_ident(&"a".repeat(53), 52).is_err());
        assert_eq!(qualified(Some("plant"), "t"), "\"plant\".\"t\"");
        assert_eq!(qualified(None, "t"), "\"t\"");
    }
}
