//! A PostgreSQL server that stops answering without closing anything (a
//! cable pulled, a host frozen), seen through a TCP proxy of the test's own
//! that swallows every byte on command: the sink notices within 30 s with
//! its default settings, and every record lands once after the server
//! answers again.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use relais::config::BufferConfig;
use relais::model::TagMeta;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::cloud::Chain;
use crate::common::eventually;
use crate::postgres::{LOCAL_PG, assert_exactly_once, client, pg_sink, schema_name, spawn};

/// Forwards loopback TCP to `upstream` until told to swallow everything.
struct Blackhole {
    port: u16,
    dead: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Blackhole {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies `from` → `to` while the way is open; once `dead`, holds both
/// ends open and moves nothing, like a peer that vanished.
async fn pipe(mut from: tokio::net::tcp::OwnedReadHalf, mut to: tokio::net::tcp::OwnedWriteHalf, dead: Arc<AtomicBool>) {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        if dead.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        let n = match tokio::time::timeout(Duration::from_millis(50), from.read(&mut buf)).await {
            Err(_) => continue,
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Ok(Ok(n)) => n,
        };
        while dead.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

impl Blackhole {
    async fn start(upstream: u16) -> Blackhole {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let dead = Arc::new(AtomicBool::new(false));
        let d = dead.clone();
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((down, _)) = listener.accept().await else { return };
                let Ok(up) = TcpStream::connect(("127.0.0.1", upstream)).await else { continue };
                let ((dr, dw), (ur, uw)) = (down.into_split(), up.into_split());
                conns.spawn(pipe(dr, uw, d.clone()));
                conns.spawn(pipe(ur, dw, d.clone()));
            }
        });
        Blackhole { port, dead, task }
    }
}

#[tokio::test]
async fn a_server_that_stops_answering_is_noticed_within_30s() {
    let Some(c) = client(LOCAL_PG).await else { return };
    let proxy = Blackhole::start(5432).await;
    let schema = schema_name("dead");
    let dir = tempfile::tempdir().unwrap();
    let mut chain = Chain::new("pgdead", BufferConfig::default());
    let meta = TagMeta::new("mixer", "speed", Some("1/min"));
    let url = format!("postgres://postgres@127.0.0.1:{}/test", proxy.port);
    // Default timeout, keepalives and reconnect_max: only the schema is set.
    let cfg = pg_sink("pgdead", &url, &schema, "", dir.path());
    spawn(&mut chain, cfg);
    chain.push_n(&meta, 0, 1000, Duration::ZERO).await;
    let head = chain.head();
    assert!(eventually(Duration::from_secs(20), || chain.cursor() >= head).await);
    // The server vanishes while a batch is on its way.
    proxy.dead.store(true, Ordering::Relaxed);
    let t0 = Instant::now();
    chain.push_n(&meta, 1000, 1000, Duration::ZERO).await;
    let noticed = eventually(Duration::from_secs(35), || !chain.stats.connected.load(Ordering::Relaxed)).await;
    let after = t0.elapsed();
    assert!(noticed && after <= Duration::from_secs(30), "noticed: {noticed}, after {after:?}");
    assert!(chain.cursor() < chain.head(), "nothing acknowledged while the server was gone");
    // Back: everything lands, once.
    proxy.dead.store(false, Ordering::Relaxed);
    let head = chain.head();
    assert!(eventually(Duration::from_secs(60), || chain.cursor() >= head).await, "{:?}", chain.stats.error());
    chain.stop().await;
    assert_exactly_once(&c, &schema, chain.base + 1, head).await;
    c.batch_execute(&format!("DROP SCHEMA {schema} CASCADE")).await.unwrap();
}
