//! The NATS JetStream sink against real nats-server processes started by
//! the tests: a three-node JetStream cluster with a 3-replica stream (one
//! node stopped mid-stream; all of them stopped for longer than the
//! stream's duplicate window, then a node killed during the replay with
//! live records published beside it), `kill -9` of the relais binary during
//! replays, and the `json-batch` layout. Every test ends by reading the
//! stream back: each accepted `seq` exactly once (as a set, each `seq`
//! once: during a replay live records interleave with the backlog; in
//! `seq` order below `backlog_threshold`).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use relais::config::{BufferConfig, SinkConfig};
use relais::model::TagMeta;
use relais::sinks::nats::sink::NatsSink;

use crate::cloud::{Chain, sink_config};
use crate::common::{counter_station, eventually, free_port, kill, sample, spawn_relais};
use crate::nats_common::{NatsCluster, assert_exactly_once, assert_exactly_once_in_order, inversions};

fn spawn(chain: &mut Chain, cfg: SinkConfig) {
    let SinkConfig::Nats(c) = cfg else { panic!("a NATS sink") };
    let tb = &chain.tb;
    let sink = NatsSink::new(
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

/// Pushes `n` samples `every` apart on a task of its own.
fn pusher(chain: &Chain, meta: &Arc<TagMeta>, from: u64, n: u64, every: Duration) -> tokio::task::JoinHandle<()> {
    let (ingest, meta) = (chain.tb.ingest.clone(), meta.clone());
    tokio::spawn(async move {
        for i in from..from + n {
            ingest.push(sample(&meta, i as f64)).await;
            tokio::time::sleep(every).await;
        }
        ingest.barrier().await;
    })
}

async fn caught_up(chain: &Chain, within: Duration, what: &str) {
    let head = chain.head();
    assert!(
        eventually(within, || chain.cursor() >= head).await,
        "{what}: cursor {} never reached {head}; last error {:?}",
        chain.cursor(),
        chain.stats.error()
    );
}

/// Waits until stream `name` holds `n` more messages than `from`.
async fn stream_grew(cluster: &NatsCluster, name: &str, from: u64, n: u64, within: Duration) -> bool {
    let js = cluster.jetstream().await;
    let t0 = std::time::Instant::now();
    while t0.elapsed() < within {
        if let Ok(mut s) = js.get_stream(name).await
            && let Ok(i) = s.info().await
            && i.state.messages >= from + n
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

async fn messages(cluster: &NatsCluster, name: &str) -> u64 {
    cluster.wait_stream(name, Duration::from_secs(30)).await.info().await.unwrap().state.messages
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_node_stop_and_an_outage_longer_than_the_duplicate_window_then_a_node_killed_during_the_replay_with_live_records_store_each_seq_once()
 {
    let Some(mut cluster) = NatsCluster::start(3) else { return };
    let dir = tempfile::tempdir().unwrap();
    let cfg = sink_config(
        &format!(
            "name = \"js\"\ntype = \"nats\"\nurl = \"{}\"\ncreate_stream = true\nreplicas = 3\nduplicate_window = \"2s\"\n\
             ack_timeout = \"3s\"\nreconnect_max = \"1s\"\nmax_inflight = 64\nbacklog_threshold = 500",
            cluster.url()
        ),
        dir.path(),
    );
    let mut chain = Chain::new("js", BufferConfig::default());
    let meta = TagMeta::new("pump", "flow", Some("m3/h"));
    spawn(&mut chain, cfg);
    // The stream is created by the sink once the cluster has a leader.
    let _ = cluster.wait_stream("RELAIS_gw", Duration::from_secs(30)).await;
    // One node stopped (kill -9) in the middle of a stream of records, then back.
    let p = pusher(&chain, &meta, 0, 1500, Duration::from_millis(2));
    tokio::time::sleep(Duration::from_millis(1000)).await;
    cluster.stop(0);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    cluster.restart(0);
    p.await.unwrap();
    caught_up(&chain, Duration::from_secs(60), "after one node stopped").await;
    // The whole cluster down for twice the duplicate window while a
    // backlog of 8,000 records builds up.
    for i in 0..3 {
        cluster.stop(i);
    }
    chain.push_n(&meta, 1500, 8000, Duration::ZERO).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(chain.cursor() < chain.head(), "records wait in the buffer while the cluster is down");
    // Back, with live records coming during the replay; one node killed
    // mid-replay (pipelined publishes in flight) and started again.
    for i in 0..3 {
        cluster.restart(i);
    }
    let before = messages(&cluster, "RELAIS_gw").await;
    let live = pusher(&chain, &meta, 9500, 1500, Duration::from_millis(2));
    assert!(stream_grew(&cluster, "RELAIS_gw", before, 1000, Duration::from_secs(60)).await, "the replay started");
    cluster.stop(1);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    cluster.restart(1);
    live.await.unwrap();
    caught_up(&chain, Duration::from_secs(90), "after the whole cluster was down").await;
    let head = chain.head();
    chain.stop().await;
    let stored = cluster.stored_seqs("RELAIS_gw").await;
    assert_exactly_once(&stored, chain.base + 1, head);
    assert!(inversions(&stored) > 0, "live records were published during the replay, beside the backlog");
    assert!(chain.stats.connects.load(std::sync::atomic::Ordering::Relaxed) >= 2, "the sink reconnected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_batch_messages_carry_contiguous_runs_and_a_restarted_sink_goes_on_after_them() {
    let Some(cluster) = NatsCluster::start(1) else { return };
    let dir = tempfile::tempdir().unwrap();
    let cfg = sink_config(
        &format!(
            "name = \"jsb\"\ntype = \"nats\"\nurl = \"{}\"\ncreate_stream = true\nformat = \"json-batch\"\nbatch_max_records = 100\n\
             reconnect_max = \"1s\"",
            cluster.url()
        ),
        dir.path(),
    );
    let mut chain = Chain::new("jsb", BufferConfig::default());
    let meta = TagMeta::new("press", "force", Some("kN"));
    chain.push_n(&meta, 0, 1000, Duration::ZERO).await;
    spawn(&mut chain, cfg.clone());
    caught_up(&chain, Duration::from_secs(30), "json-batch").await;
    chain.stop().await;
    let mut s = cluster.wait_stream("RELAIS_gw", Duration::from_secs(10)).await;
    let last = s.info().await.unwrap().state.last_sequence;
    let m = s.get_raw_message(last).await.unwrap();
    let v: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
    let id = m.headers.get("Nats-Msg-Id").unwrap().as_str().to_string();
    assert_eq!(id, format!("gw:{}-{}", v["first_seq"], v["last_seq"]));
    assert_eq!(m.subject.as_str(), "relais.gw._batch");
    // More records, the sink started again: it goes on after the stream's last record.
    chain.push_n(&meta, 1000, 250, Duration::ZERO).await;
    spawn(&mut chain, cfg);
    caught_up(&chain, Duration::from_secs(30), "json-batch after a restart").await;
    chain.stop().await;
    let stored = cluster.stored_seqs("RELAIS_gw").await;
    assert_exactly_once_in_order(&stored, chain.base + 1, *stored.last().unwrap());
    assert!(*stored.last().unwrap() >= chain.base + 1250);
}

/// Tags polled every 10 ms: 1,000 records/s.
const TAGS: usize = 10;

fn write_config(dir: &Path, nats_url: &str, sim_port: u16) -> std::path::PathBuf {
    let mut tags = String::new();
    for i in 0..TAGS {
        tags += &format!("[[device.tag]]\nname = \"t{i}\"\ntable = \"holding\"\naddress = {i}\n");
    }
    let text = format!(
        "[gateway]\nid = \"gw1\"\ndata_dir = \"{data}\"\nstatus_interval = \"0s\"\nhealth_interval = \"0s\"\n\n\
         [[device]]\nname = \"line\"\nprotocol = \"modbus-tcp\"\nendpoint = \"127.0.0.1:{sim_port}\"\npoll_interval = \"10ms\"\n{tags}\n\
         [[sink]]\nname = \"js\"\ntype = \"nats\"\nurl = \"{nats_url}\"\ncreate_stream = true\nreplicas = 3\nduplicate_window = \"1s\"\n\
         reconnect_max = \"1s\"\nack_timeout = \"3s\"\nbacklog_threshold = 200\n",
        data = dir.join("data").display()
    );
    let p = dir.join("relais.toml");
    std::fs::write(&p, text).unwrap();
    p
}

fn db_value(data: &Path, sql: &str) -> u64 {
    let c = rusqlite::Connection::open(data.join("buffer.db")).unwrap();
    c.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap() as u64
}

/// Stops every node of `cluster` for `secs` while relais keeps polling,
/// then starts them again and waits until the replay is under way
/// (`n` more messages in the stream).
async fn outage_then_replay(cluster: &mut NatsCluster, stream: &str, secs: u64, n: u64) {
    for i in 0..3 {
        cluster.stop(i);
    }
    tokio::time::sleep(Duration::from_secs(secs)).await;
    for i in 0..3 {
        cluster.restart(i);
    }
    let before = messages(cluster, stream).await;
    assert!(stream_grew(cluster, stream, before, n, Duration::from_secs(60)).await, "the replay started");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_relais_during_replays_with_live_records_leaves_each_accepted_seq_once_in_the_stream() {
    let Some(mut cluster) = NatsCluster::start(3) else { return };
    let sim_port = free_port();
    let _sim = crate::modbus::sim(&counter_station(sim_port, 5)).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &cluster.url(), sim_port);
    let mut child = spawn_relais(&cfg);
    let _ = cluster.wait_stream("RELAIS_gw1", Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Twice: an outage longer than the duplicate window (a backlog of
    // thousands of records), then kill -9 while that backlog replays with
    // live records beside it (PubAcks in flight, the cursor not yet saved).
    for _ in 0..2 {
        outage_then_replay(&mut cluster, "RELAIS_gw1", 3, 300).await;
        kill(child.id(), 9);
        let _ = child.wait();
        child = spawn_relais(&cfg);
        tokio::time::sleep(Duration::from_millis(2500)).await;
    }
    // And once between two replays, as before.
    kill(child.id(), 9);
    let _ = child.wait();
    child = spawn_relais(&cfg);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    kill(child.id(), 15);
    let _ = tokio::task::spawn_blocking(move || child.wait()).await;
    let data = dir.path().join("data");
    let first = db_value(&data, "SELECT value FROM meta WHERE key = 'seq_origin'") + 1;
    let last = db_value(&data, "SELECT value FROM meta WHERE key = 'last_seq'");
    let cursor = db_value(&data, "SELECT seq FROM cursors WHERE sink = 'js'");
    let stored = cluster.stored_seqs("RELAIS_gw1").await;
    assert!(stored.len() > 3000, "data flowed: {} records", stored.len());
    assert!(last - cursor < 20, "a graceful stop delivers what was accepted: cursor {cursor}, last {last}");
    let end = *stored.iter().max().unwrap();
    assert!(end >= cursor && end <= last, "stream reaches {end}; cursor {cursor}, accepted up to {last}");
    assert_exactly_once(&stored, first, end);
    assert!(inversions(&stored) > 0, "live records were published during the replays, beside the backlog");
}
