//! One connection: TLS or not, keepalives, the tables created if absent
//! (TimescaleDB hypertable, rollup view), the session's load tables, and the
//! prepared statements.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_postgres::Client;
use tokio_postgres::config::SslMode;

use super::config::{PgSinkConfig, Timescale};
use super::load::Statements;
use super::schema;

/// TCP keepalive: first probe after this much silence.
pub const KEEPALIVE_IDLE: Duration = Duration::from_secs(10);
/// TCP keepalive: between probes.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
/// TCP keepalive: unanswered probes before the connection is dead (10 + 3 × 5 = 25 s).
pub const KEEPALIVE_RETRIES: u32 = 3;
/// Sent data unacknowledged this long = the connection is dead (Linux `TCP_USER_TIMEOUT`).
pub const TCP_USER_TIMEOUT: Duration = Duration::from_secs(25);

/// A ready connection.
pub struct Session {
    /// The client.
    pub client: Client,
    /// Its prepared statements.
    pub statements: Statements,
    /// Why the connection ended, once it did (the connection task's error).
    pub ended: Arc<Mutex<Option<String>>>,
    /// The connection task.
    pub task: tokio::task::JoinHandle<()>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The driver-side settings of `cfg` for `gateway`'s sink.
pub fn pg_config(cfg: &PgSinkConfig, gateway: &str) -> tokio_postgres::Config {
    let mut pg = cfg.pg.clone();
    if let Some(p) = &cfg.password {
        pg.password(p.expose());
    }
    pg.application_name(format!("relais {gateway} {}", cfg.name))
        .ssl_mode(if cfg.tls { SslMode::Require } else { SslMode::Disable })
        .connect_timeout(cfg.connect_timeout)
        .keepalives(true)
        .keepalives_idle(KEEPALIVE_IDLE)
        .keepalives_interval(KEEPALIVE_INTERVAL)
        .keepalives_retries(KEEPALIVE_RETRIES)
        .tcp_user_timeout(TCP_USER_TIMEOUT);
    pg
}

/// Connects (TLS when configured) and runs the connection in a task of its own.
async fn open(cfg: &PgSinkConfig, gateway: &str) -> anyhow::Result<(Client, Arc<Mutex<Option<String>>>, tokio::task::JoinHandle<()>)> {
    let pg = pg_config(cfg, gateway);
    let ended = Arc::new(Mutex::new(None));
    let note = ended.clone();
    let record = move |r: Result<(), tokio_postgres::Error>| {
        if let (Err(e), Ok(mut n)) = (r, note.lock()) {
            *n = Some(e.to_string());
        }
    };
    if cfg.tls {
        let tls = tokio_postgres_rustls::MakeRustlsConnect::new(cfg.tls_files.client_config()?);
        let (client, conn) = pg.connect(tls).await?;
        Ok((client, ended, tokio::spawn(async move { record(conn.await) })))
    } else {
        let (client, conn) = pg.connect(tokio_postgres::NoTls).await?;
        Ok((client, ended, tokio::spawn(async move { record(conn.await) })))
    }
}

/// Creates what is missing, under an advisory lock (two gateways starting
/// together would race on `CREATE TABLE IF NOT EXISTS`); returns the
/// conflict targets of the samples and events tables.
async fn ensure_tables(c: &mut Client, cfg: &PgSinkConfig) -> anyhow::Result<(String, String)> {
    let (samples, events) = (cfg.samples_table(), cfg.events_table());
    let tx = c.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock(hashtext('relais schema'))", &[]).await?;
    if let Some(s) = &cfg.schema {
        tx.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS \"{s}\"")).await?;
    }
    let timescale = tx.query_opt("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'", &[]).await?.is_some();
    if cfg.timescale == Timescale::On && !timescale {
        anyhow::bail!("timescale = \"on\" but the timescaledb extension is not installed in this database (CREATE EXTENSION timescaledb)");
    }
    let hyper = timescale && cfg.timescale != Timescale::Off;
    let existed = tx.query_one("SELECT to_regclass($1) IS NOT NULL", &[&samples]).await?.get::<_, bool>(0);
    tx.batch_execute(&schema::create_samples(&samples, hyper)).await?;
    tx.batch_execute(&schema::create_events(&events)).await?;
    if hyper && !existed {
        tx.execute(&schema::create_hypertable(&samples), &[]).await?;
    }
    let view = super::config::qualified(cfg.schema.as_deref(), &format!("{}_per_minute", cfg.table));
    if !tx.query_one("SELECT to_regclass($1) IS NOT NULL", &[&view]).await?.get::<_, bool>(0) {
        tx.batch_execute(&schema::create_rollup_view(&view, &samples)).await?;
    }
    let ks = schema::conflict_target(&samples, &tx_key(&tx, &samples).await?).map_err(anyhow::Error::msg)?;
    let ke = schema::conflict_target(&events, &tx_key(&tx, &events).await?).map_err(anyhow::Error::msg)?;
    tx.commit().await?;
    Ok((ks, ke))
}

async fn tx_key(tx: &tokio_postgres::Transaction<'_>, table: &str) -> anyhow::Result<Vec<String>> {
    Ok(tx.query(schema::PRIMARY_KEY, &[&table]).await?.iter().map(|r| r.get::<_, String>(0)).collect())
}

/// A fresh connection with the tables, the load tables and the statements ready.
pub async fn session(cfg: &PgSinkConfig, gateway: &str) -> anyhow::Result<Session> {
    let (mut client, ended, task) = open(cfg, gateway).await?;
    let (ks, ke) = ensure_tables(&mut client, cfg).await?;
    for sql in schema::create_load_tables() {
        client.batch_execute(&sql).await?;
    }
    let statements = Statements::prepare(&client, (&cfg.samples_table(), &ks), (&cfg.events_table(), &ke)).await?;
    Ok(Session { client, statements, ended, task })
}
