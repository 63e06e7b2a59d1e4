//! The PostgreSQL sink against the machine's PostgreSQL (127.0.0.1:5432,
//! trust, database `test`), one schema per test: rows land typed, events in
//! their table, poison rows go to the quarantine with their SQLSTATE while
//! their neighbours commit, and the rollup view answers.
//! `RELAIS_REQUIRE_POSTGRES=1` turns "no PostgreSQL, skipped" into a failure.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use relais::config::{BufferConfig, SinkConfig};
use relais::model::{Sample, TagMeta, Timestamp, Value};
use relais::sinks::postgres::sink::PgSink;
use tokio_postgres::Client;

use crate::cloud::{Chain, sink_config};
use crate::common::eventually;

/// The machine's PostgreSQL.
pub const LOCAL_PG: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A client of `url`; `None` (test skipped, with a message) when it does not
/// answer, unless `RELAIS_REQUIRE_POSTGRES=1`.
pub async fn client(url: &str) -> Option<Client> {
    match tokio_postgres::connect(url, tokio_postgres::NoTls).await {
        Ok((c, conn)) => {
            tokio::spawn(conn);
            Some(c)
        }
        Err(e) => {
            if std::env::var("RELAIS_REQUIRE_POSTGRES").is_ok_and(|v| v == "1") {
                panic!("PostgreSQL at {url} is unreachable ({e}) but RELAIS_REQUIRE_POSTGRES=1");
            }
            eprintln!("SKIPPED: PostgreSQL at {url} is unreachable: {e}");
            None
        }
    }
}

/// A fresh schema name for one test.
pub fn schema_name(test: &str) -> String {
    format!("relais_t_{test}_{}_{}", std::process::id(), fastrand::u32(..))
}

/// `(rows, distinct seq, min seq, max seq)` over the samples and events tables of `schema`.
pub async fn seq_stats(c: &Client, schema: &str) -> (i64, i64, i64, i64) {
    let q = format!(
        "SELECT count(*), count(DISTINCT seq), coalesce(min(seq), 0), coalesce(max(seq), 0) FROM \
         (SELECT seq FROM {schema}.relais_samples UNION ALL SELECT seq FROM {schema}.relais_events) x"
    );
    let r = c.query_one(&q, &[]).await.unwrap();
    (r.get(0), r.get(1), r.get(2), r.get(3))
}

/// Checks that both tables hold every record of `from..=last` exactly once,
/// with no gap, for a `last` of at least `at_least`; returns `last`.
pub async fn assert_exactly_once(c: &Client, schema: &str, from: u64, at_least: u64) -> u64 {
    let (n, distinct, min, max) = seq_stats(c, schema).await;
    assert!(max as u64 >= at_least, "last stored seq {max} < {at_least}");
    let want = max - from as i64 + 1;
    assert_eq!((n, distinct, min), (want, want, from as i64), "rows, distinct seqs, first seq for {from}..={max}");
    max as u64
}

/// The `[[sink]]` named `name` for `url` and `schema`, plus `extra` lines.
pub fn pg_sink(name: &str, url: &str, schema: &str, extra: &str, base: &Path) -> SinkConfig {
    sink_config(
        &format!("name = \"{name}\"\ntype = \"postgres\"\nurl = \"{url}\"\nschema = \"{schema}\"\nreconnect_max = \"1s\"\n{extra}"),
        base,
    )
}

/// Starts the sink of `chain` with `cfg`.
pub fn spawn(chain: &mut Chain, cfg: SinkConfig) {
    let SinkConfig::Postgres(c) = cfg else { panic!("a PostgreSQL sink") };
    let tb = &chain.tb;
    let sink = PgSink::new(
        c,
        "gw",
        tb.buffer.reader().unwrap(),
        tb.buffer.cursor(&chain.name).unwrap(),
        tb.buffer.committed(),
        chain.stats.clone(),
    )
    .with_events(tb.ingest.events());
    chain.task = Some(tokio::spawn(sink.run(chain.stop.clone(), Duration::from_millis(1500))));
}

fn with_value(meta: &std::sync::Arc<TagMeta>, v: Value) -> Sample {
    Sample::good(meta.clone(), v, Timestamp::now())
}

#[tokio::test]
async fn poison_rows_are_quarantined_with_their_sqlstate_and_their_neighbours_land() {
    let Some(c) = client(LOCAL_PG).await else { return };
    let schema = schema_name("poison");
    // The operator's own rule on the samples table: no -666 (a CHECK refused at INSERT).
    let table = format!("{schema}.relais_samples");
    c.batch_execute(&format!(
        "CREATE SCHEMA {schema}; {}; ALTER TABLE {table} ADD CONSTRAINT no_666 CHECK (value IS DISTINCT FROM -666)",
        relais::sinks::postgres::schema::create_samples(&table, false)
    ))
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut chain = Chain::new("pg", BufferConfig::default());
    let meta = TagMeta::new("pump", "mode", Some("m3/h"));
    let mut samples: Vec<Sample> = (0..5000).map(|i| with_value(&meta, Value::F64(i as f64))).collect();
    // Early in a large COPY: the server refuses while relais is still writing.
    samples[10] = with_value(&meta, Value::Str("bad\0text".into())); // NUL: refused by COPY (22021)
    samples[2500] = with_value(&meta, Value::F64(-666.0)); // refused by the CHECK at INSERT (23514)
    samples[30] = with_value(&meta, Value::U64((1 << 53) + 1));
    samples[31] = with_value(&meta, Value::Bool(true));
    samples[32] = with_value(&meta, Value::Str("auto".into()));
    for s in samples {
        chain.tb.ingest.push(s).await;
    }
    chain.tb.ingest.barrier().await;
    let (nul_seq, check_seq) = (chain.base + 11, chain.base + 2501);
    spawn(&mut chain, pg_sink("pg", LOCAL_PG, &schema, "batch_max_records = 10000", dir.path()));
    let head = chain.head();
    assert!(eventually(Duration::from_secs(20), || chain.cursor() >= head).await, "cursor {} never reached {head}", chain.cursor());
    assert!(eventually(Duration::from_secs(5), || chain.quarantine().len() == 2).await, "{:?}", chain.quarantine());
    let q = chain.quarantine();
    let reason =
        |seq: u64| q.iter().find(|r| r.location == format!("seq {seq}")).unwrap_or_else(|| panic!("seq {seq}: {q:?}")).reason.clone();
    assert!(reason(nul_seq).starts_with("refused_by_sink: SQLSTATE 22021: invalid byte sequence"), "{}", reason(nul_seq));
    assert!(reason(check_seq).starts_with("refused_by_sink: SQLSTATE 23514: "), "{}", reason(check_seq));
    assert!(reason(check_seq).contains("no_666"), "{}", reason(check_seq));
    let raw: serde_json::Value = serde_json::from_str(&q.iter().find(|r| r.location == format!("seq {check_seq}")).unwrap().raw).unwrap();
    assert_eq!((raw["seq"].as_u64(), raw["value"].as_f64()), (Some(check_seq), Some(-666.0)));
    assert_eq!(chain.stats.refused.load(Ordering::Relaxed), 2);
    // Every neighbour landed, once.
    let rows = c.query(&format!("SELECT seq FROM {table} ORDER BY seq"), &[]).await.unwrap();
    let got: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    let want: Vec<i64> = (chain.base + 1..=chain.base + 5000).filter(|s| *s != nul_seq && *s != check_seq).map(|s| s as i64).collect();
    assert_eq!(got, want);
    // Typed columns, exact.
    let r = c
        .query_one(
            &format!("SELECT value, value_int, value_bool, value_text, unit, quality, device, tag, gateway FROM {table} WHERE seq = $1"),
            &[&((chain.base + 31) as i64)],
        )
        .await
        .unwrap();
    assert_eq!(r.get::<_, Option<i64>>(1), Some((1 << 53) + 1));
    assert_eq!(r.get::<_, Option<f64>>(0), Some(((1u64 << 53) + 1) as f64));
    assert_eq!((r.get::<_, String>(5), r.get::<_, String>(6), r.get::<_, String>(7)), ("good".into(), "pump".into(), "mode".into()));
    assert_eq!((r.get::<_, Option<String>>(4), r.get::<_, String>(8)), (Some("m3/h".into()), "gw".into()));
    let b = c.query_one(&format!("SELECT value_bool, value FROM {table} WHERE seq = $1"), &[&((chain.base + 32) as i64)]).await.unwrap();
    assert_eq!((b.get::<_, Option<bool>>(0), b.get::<_, Option<f64>>(1)), (Some(true), Some(1.0)));
    let t = c.query_one(&format!("SELECT value_text, value FROM {table} WHERE seq = $1"), &[&((chain.base + 33) as i64)]).await.unwrap();
    assert_eq!((t.get::<_, Option<String>>(0), t.get::<_, Option<f64>>(1)), (Some("auto".into()), None));
    // The sink's own events are records too: sink.connected is in the events table.
    let ev = c.query_one(&format!("SELECT count(*) FROM {schema}.relais_events WHERE kind = 'sink.connected'"), &[]).await.unwrap();
    assert!(ev.get::<_, i64>(0) >= 1);
    // So is the sink.refused event (it names both rows), once delivered.
    let q_refused = format!("SELECT details->>'records' FROM {schema}.relais_events WHERE kind = 'sink.refused'");
    let mut refused_events = Vec::new();
    for _ in 0..100 {
        refused_events = c.query(&q_refused, &[]).await.unwrap().iter().map(|r| r.get::<_, Option<String>>(0)).collect();
        if !refused_events.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(refused_events, vec![Some("2".to_string())]);
    // The documented rollup view.
    let v = c
        .query_one(
            &format!("SELECT sum(samples)::bigint, sum(good)::bigint FROM {schema}.relais_samples_per_minute WHERE tag = 'mode'"),
            &[],
        )
        .await
        .unwrap();
    assert_eq!((v.get::<_, i64>(0), v.get::<_, i64>(1)), (4998, 4998));
    chain.stop().await;
    c.batch_execute(&format!("DROP SCHEMA {schema} CASCADE")).await.unwrap();
}

#[tokio::test]
async fn pg_terminate_backend_mid_batch_loses_and_doubles_nothing() {
    let Some(c) = client(LOCAL_PG).await else { return };
    let schema = schema_name("term");
    let dir = tempfile::tempdir().unwrap();
    let mut chain = Chain::new("pgterm", BufferConfig::default());
    let meta = TagMeta::new("press", "force", Some("kN"));
    spawn(&mut chain, pg_sink("pgterm", LOCAL_PG, &schema, "batch_max_records = 5000", dir.path()));
    // This test's own sink name: no other test's backend is ever terminated.
    let app = "relais gw pgterm";
    let mut killed: Vec<i32> = Vec::new();
    let mut since = std::time::SystemTime::UNIX_EPOCH;
    let mut connects_then = 0;
    let mut from = 0;
    let t0 = std::time::Instant::now();
    while t0.elapsed() < Duration::from_secs(60) {
        // Keep the sink busy, without piling up more than two rounds.
        if chain.head() - chain.cursor() < 40_000 {
            chain.push_n(&meta, from, 20_000, Duration::ZERO).await;
            from += 20_000;
        } else {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        // Terminate one of relais's backends while it runs a statement of a
        // batch: only once a new connection set is up since the last
        // termination (not while one prepares its statements), and only a
        // backend that started after it (either of the two connections
        // failing rebuilds both, and a backend of a set given up may still
        // be finishing a statement).
        let connects = chain.stats.connects.load(Ordering::Relaxed);
        if connects <= connects_then || !chain.stats.connected.load(Ordering::Relaxed) {
            continue;
        }
        let rows = c
            .query(
                "SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND state = 'active' \
                 AND (query LIKE 'COPY%' OR query LIKE 'INSERT%') AND backend_start > $2",
                &[&app, &since],
            )
            .await
            .unwrap();
        if let Some(pid) = rows.first().map(|r| r.get::<_, i32>(0))
            && c.query_one("SELECT pg_terminate_backend($1)", &[&pid]).await.unwrap().get::<_, bool>(0)
        {
            killed.push(pid);
            connects_then = connects;
            since = c.query_one("SELECT clock_timestamp()", &[]).await.unwrap().get(0);
        }
        if killed.len() >= 3 {
            break;
        }
    }
    assert!(killed.len() >= 3, "caught relais mid-batch only {} times", killed.len());
    let head = chain.head();
    assert!(eventually(Duration::from_secs(60), || chain.cursor() >= head).await, "cursor {} never reached {head}", chain.cursor());
    chain.stop().await;
    let connects = chain.stats.connects.load(Ordering::Relaxed);
    // Each termination but the last was followed by a new connection set
    // (the loop waits for it); the last may hit a backend right after its
    // COMMIT, noticed only at its next batch, which may never come.
    assert!(connects >= killed.len() as u64, "reconnected after each termination: {connects} connects");
    assert_exactly_once(&c, &schema, chain.base + 1, head).await;
    c.batch_execute(&format!("DROP SCHEMA {schema} CASCADE")).await.unwrap();
}

#[test]
fn config_keeps_passwords_out_of_urls_and_checks_names() {
    let dir = tempfile::tempdir().unwrap();
    let err = |sink: &str| {
        let text = format!("[gateway]\nid = \"gw\"\n[[sink]]\nname = \"pg\"\ntype = \"postgres\"\n{sink}\n");
        relais::config::Config::parse(&text, "pg.toml", dir.path()).map(|_| ()).unwrap_err().to_string()
    };
    let e = err("url = \"postgres://relais:hunter2@127.0.0.1/plant\"");
    assert!(e.contains("carries a password") && !e.contains("hunter2"), "{e}");
    assert!(err("url = \"postgres://relais@127.0.0.1/plant?sslmode=require\"").contains("set tls = true"));
    assert!(err("url = \"postgres://relais@127.0.0.1/plant\"\ntable = \"Samples\"").contains("not a plain SQL name"));
    assert!(err("url = \"postgres://relais@127.0.0.1/plant\"\ntimescale = \"maybe\"").contains("expected \"auto\", \"on\" or \"off\""));
    assert!(err("host = \"db\"\nuser = \"relais\"").contains("no database"));
    let few = err("url = \"postgres://relais@127.0.0.1/plant\"\nconnections = 4\nmax_inflight = 2");
    assert!(few.contains("max_inflight (2) is below connections (4)"), "{few}");
    assert!(err("url = \"postgres://relais@127.0.0.1/plant\"\nhost = \"db\"").contains("either url or host"));
    // TLS by default to another machine, not to this one; the password file is read.
    std::fs::write(dir.path().join("pw"), "s3cret\n").unwrap();
    let remote = sink_config(
        "name = \"pg\"\ntype = \"postgres\"\nhost = \"db.example.com\"\ndbname = \"plant\"\nuser = \"relais\"\npassword_file = \"pw\"",
        dir.path(),
    );
    let SinkConfig::Postgres(r) = remote else { panic!() };
    assert!(r.tls);
    assert_eq!(r.password.as_ref().map(|p| p.expose()), Some("s3cret"));
    assert!(!format!("{r:?}").contains("s3cret"), "the password never shows in Debug");
    assert_eq!(r.target(), "postgres://db.example.com:5432/plant");
    let local = sink_config("name = \"pg\"\ntype = \"postgres\"\nurl = \"postgres://relais@localhost/plant\"", dir.path());
    let SinkConfig::Postgres(l) = local else { panic!() };
    assert!(!l.tls);
    assert_eq!((l.connections, l.max_inflight), (2, 3), "two connections, one batch ready beside them");
    assert_eq!((l.samples_table(), l.events_table()), ("\"relais_samples\"".to_string(), "\"relais_events\"".to_string()));
}

/// Batches are COPied straight into the table; one that meets rows already
/// there (SQLSTATE 23505: a resend after a lost COMMIT answer, a restored
/// buffer) is loaded again through the staging table with `ON CONFLICT DO
/// NOTHING`: the rows already there stay as they are, the others land once.
#[tokio::test]
async fn rows_already_in_the_table_are_kept_and_the_rest_land_once() {
    let Some(c) = client(LOCAL_PG).await else { return };
    let schema = schema_name("present");
    let table = format!("{schema}.relais_samples");
    c.batch_execute(&format!("CREATE SCHEMA {schema}; {}", relais::sinks::postgres::schema::create_samples(&table, false))).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut chain = Chain::new("pg", BufferConfig::default());
    let meta = TagMeta::new("line", "speed", None);
    chain.push_n(&meta, 0, 3000, Duration::ZERO).await;
    // Rows 1001..=1500 of this buffer are already stored, with a value relais never sends.
    let (first, last) = ((chain.base + 1001) as i64, (chain.base + 1500) as i64);
    c.execute(
        &format!(
            "INSERT INTO {table} (gateway, seq, device, tag, value, quality, ts, recv_ts) \
             SELECT 'gw', s, 'line', 'speed', -1, 'good', now(), now() FROM generate_series($1::bigint, $2::bigint) s"
        ),
        &[&first, &last],
    )
    .await
    .unwrap();
    spawn(&mut chain, pg_sink("pg", LOCAL_PG, &schema, "batch_max_records = 500", dir.path()));
    let head = chain.head();
    assert!(eventually(Duration::from_secs(30), || chain.cursor() >= head).await, "cursor {} never reached {head}", chain.cursor());
    chain.stop().await;
    assert_exactly_once(&c, &schema, chain.base + 1, head).await;
    let kept: i64 = c.query_one(&format!("SELECT count(*) FROM {table} WHERE value = -1"), &[]).await.unwrap().get(0);
    assert_eq!(kept, 500, "the rows already there are left alone");
    let sent: i64 =
        c.query_one(&format!("SELECT count(*) FROM {table} WHERE value = seq - $1"), &[&(chain.base as i64 + 1)]).await.unwrap().get(0);
    assert_eq!(sent, 2500, "every other row carries its own value");
    assert_eq!(chain.stats.refused.load(Ordering::Relaxed), 0, "a row already there is not a refused row");
    c.batch_execute(&format!("DROP SCHEMA {schema} CASCADE")).await.unwrap();
}
