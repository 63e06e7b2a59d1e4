//! The PostgreSQL sink: the shared [`Driver`] over tokio-postgres.
//!
//! - `connections` connections (default 2), each owned by a loader task;
//!   one batch = one transaction ([`super::load`]); the tasks take batches
//!   from one queue, at most `max_inflight` handed over and not committed.
//!   COMMIT = acknowledged. Batches on different connections commit in any
//!   order: the driver moves the cursor only over the contiguous prefix of
//!   committed batches ([`crate::sinks::driver::lanes`]), so a crash resends
//!   from the first uncommitted one and the primary key drops what is there.
//! - Rows refused for good = [`Outcome::AckedExcept`] (quarantined with
//!   their SQLSTATE); anything else = [`Outcome::Lost`]: a new client is
//!   built after the driver's backoff (tokio-postgres never reconnects).
//! - A dead server is noticed by TCP keepalives (25 s idle),
//!   `TCP_USER_TIMEOUT` (25 s of unacknowledged data) and `timeout` per
//!   batch (20 s by default), whichever comes first.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::config::PgSinkConfig;
use super::connect::{Session, session};
use super::encode::Batch;
use super::load::{Mode, load};
use crate::buffer::{Reader, SinkCursor};
use crate::ingest::Events;
use crate::model::Record;
use crate::sinks::driver::{self, Driver, Encoder, Lost, Outcome, Prepared, Settings, Token};
use crate::telemetry::SinkStats;

/// The PostgreSQL sink: construct with [`PgSink::new`], run with [`PgSink::run`].
pub struct PgSink {
    driver: Driver<Pg>,
}

impl PgSink {
    /// A sink delivering rows after `cursor`, woken by `committed`.
    pub fn new(
        cfg: PgSinkConfig,
        gateway: &str,
        reader: Reader,
        cursor: SinkCursor,
        committed: watch::Receiver<u64>,
        stats: Arc<SinkStats>,
    ) -> PgSink {
        PgSink { driver: Driver::new(Pg { cfg, gateway: gateway.to_string() }, reader, cursor, committed, stats) }
    }

    /// Emits the sink's connection events and quarantines refused rows.
    pub fn with_events(self, events: Events) -> PgSink {
        PgSink { driver: self.driver.with_events(events) }
    }

    /// Runs until `stop` fires; then delivers what is committed for up to `grace`.
    pub async fn run(self, stop: CancellationToken, grace: Duration) {
        self.driver.run(stop, grace).await
    }
}

/// PostgreSQL's side of the driver.
pub struct Pg {
    cfg: PgSinkConfig,
    gateway: String,
}

/// The connections: their loader tasks and the two queues they share.
pub struct PgConn {
    batches: mpsc::Sender<(Token, Batch)>,
    outcomes: mpsc::Receiver<Outcome>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for PgConn {
    /// A connection set given up (one of its connections failed): the
    /// others stop at once, their batches unacknowledged (the driver resends
    /// them on the next set, and the key drops what did commit).
    fn drop(&mut self) {
        self.tasks.iter().for_each(|t| t.abort());
    }
}

/// The batches waiting for a loader; each loader takes the next when it is free.
type Queue = Arc<tokio::sync::Mutex<mpsc::Receiver<(Token, Batch)>>>;

/// The encoder: records → batches.
pub struct PgEncoder {
    gateway: String,
}

impl Encoder for PgEncoder {
    type Msg = Batch;

    fn encode(&mut self, records: &[&Record], out: &mut Vec<Prepared<Batch>>) {
        if !records.is_empty() {
            let b = Batch::new(&self.gateway, records);
            out.push(Prepared { records: b.len(), msg: b });
        }
    }
}

/// Why the connection failed: the connection task's error when it has one.
fn cause(s: &Session, e: &tokio_postgres::Error) -> String {
    let ended = s.ended.lock().ok().and_then(|g| g.clone());
    match ended {
        Some(c) if e.is_closed() => format!("{e}: {c}"),
        _ => super::load::reason(e),
    }
}

/// Loads batches one after the other on one connection until it fails.
async fn loader(mut s: Session, gateway: String, timeout: Duration, rx: Queue, tx: mpsc::Sender<Outcome>) {
    let mut mode = Mode::default();
    loop {
        let next = rx.lock().await.recv().await;
        let Some((token, batch)) = next else { return };
        let res = tokio::time::timeout(timeout, load(&mut s.client, &s.statements, &gateway, &batch, &mut mode)).await;
        let outcome = match res {
            Ok(Ok(refused)) if refused.is_empty() => Outcome::Acked(token),
            Ok(Ok(refused)) => Outcome::AckedExcept { token, refused },
            Ok(Err(e)) => Outcome::Lost(Lost::new(cause(&s, &e))),
            Err(_) => Outcome::Lost(Lost::new(format!("no COMMIT within {}", humantime::format_duration(timeout)))),
        };
        let end = matches!(outcome, Outcome::Lost(_));
        if tx.send(outcome).await.is_err() || end {
            return;
        }
    }
}

impl driver::Sink for Pg {
    type Conn = PgConn;
    type Msg = Batch;
    type Encoder = PgEncoder;

    fn settings(&self) -> Settings {
        Settings {
            name: self.cfg.name.clone(),
            protocol: "PostgreSQL",
            target: self.cfg.target(),
            window: self.cfg.max_inflight,
            read_rows: self.cfg.batch_max_records,
            one_record_per_message: false,
            backlog_threshold: self.cfg.backlog_threshold,
            backlog_alarm_age: self.cfg.backlog_alarm_age,
            ack_timeout: self.cfg.timeout * self.cfg.max_inflight as u32 + Duration::from_secs(5),
            reconnect_max: self.cfg.reconnect_max,
        }
    }

    fn encoder(&self) -> PgEncoder {
        PgEncoder { gateway: self.gateway.clone() }
    }

    async fn connect(&mut self) -> Result<PgConn, Lost> {
        let mut sessions = Vec::with_capacity(self.cfg.connections);
        for _ in 0..self.cfg.connections {
            sessions.push(open_session(&self.cfg, &self.gateway).await?);
        }
        let (btx, brx) = mpsc::channel(self.cfg.max_inflight);
        let (otx, orx) = mpsc::channel(self.cfg.max_inflight + self.cfg.connections);
        let queue: Queue = Arc::new(tokio::sync::Mutex::new(brx));
        let tasks = sessions
            .into_iter()
            .map(|s| tokio::spawn(loader(s, self.gateway.clone(), self.cfg.timeout, queue.clone(), otx.clone())))
            .collect();
        Ok(PgConn { batches: btx, outcomes: orx, tasks })
    }

    fn send(&mut self, conn: &mut PgConn, msg: Batch, token: Token) -> Result<(), Batch> {
        conn.batches.try_send((token, msg)).map_err(|e| match e {
            mpsc::error::TrySendError::Full((_, b)) | mpsc::error::TrySendError::Closed((_, b)) => b,
        })
    }

    async fn next(&mut self, conn: &mut PgConn) -> Outcome {
        match conn.outcomes.recv().await {
            Some(o) => o,
            None => Outcome::Lost(Lost::new("the PostgreSQL connection task ended")),
        }
    }

    async fn close(&mut self, mut conn: PgConn) {
        // Batches already handed over finish (or fail) on their own for up
        // to 2 s (the queue closes, so nothing new starts); the driver no
        // longer waits for them, and the primary key makes a later resend
        // harmless.
        let tasks = std::mem::take(&mut conn.tasks);
        drop(conn);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        for mut t in tasks {
            if tokio::time::timeout_at(deadline, &mut t).await.is_err() {
                t.abort();
            }
        }
    }
}

/// One ready connection (tables checked, statements prepared), or why not.
async fn open_session(cfg: &PgSinkConfig, gateway: &str) -> Result<Session, Lost> {
    let limit = cfg.connect_timeout * 3;
    match tokio::time::timeout(limit, session(cfg, gateway)).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(Lost::new(match e.downcast_ref::<tokio_postgres::Error>() {
            Some(pe) => super::load::reason(pe),
            None => format!("{e:#}"),
        })),
        Err(_) => Err(Lost::new(format!("not ready within {}", humantime::format_duration(limit)))),
    }
}
