//! nats-server processes of the tests' own: one JetStream server or a
//! three-node JetStream cluster on free loopback ports, each with its store
//! in a temp folder, stopped and restarted at will. Without `nats-server`
//! the tests are skipped with a message, unless `RELAIS_REQUIRE_NATS=1`
//! (set by `.ci/run`), which turns the skip into a failure.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;

use crate::common::free_port;

fn nats_bin() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect()).unwrap_or_default();
    dirs.extend(["/usr/sbin", "/usr/local/bin", "/usr/bin"].map(PathBuf::from));
    dirs.into_iter().map(|d| d.join("nats-server")).find(|p| p.is_file())
}

struct Node {
    name: String,
    port: u16,
    cluster_port: u16,
    child: Option<Child>,
}

/// One JetStream server, or a cluster of three.
pub struct NatsCluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    nodes: Vec<Node>,
}

impl NatsCluster {
    /// `n` nodes (1 or 3); `None` (skipped, with a message) without nats-server.
    pub fn start(n: usize) -> Option<NatsCluster> {
        let Some(bin) = nats_bin() else {
            if std::env::var("RELAIS_REQUIRE_NATS").is_ok_and(|v| v == "1") {
                panic!("nats-server is not installed but RELAIS_REQUIRE_NATS=1");
            }
            eprintln!("SKIPPED: nats-server is not installed");
            return None;
        };
        let nodes = (0..n).map(|i| Node { name: format!("n{i}"), port: free_port(), cluster_port: free_port(), child: None }).collect();
        let mut c = NatsCluster { bin, dir: tempfile::tempdir().unwrap(), nodes };
        for i in 0..n {
            c.spawn(i);
        }
        Some(c)
    }

    fn spawn(&mut self, i: usize) {
        let routes: Vec<String> = self.nodes.iter().map(|n| format!("nats://127.0.0.1:{}", n.cluster_port)).collect();
        let node = &self.nodes[i];
        let store = self.dir.path().join(&node.name);
        let mut cmd = Command::new(&self.bin);
        cmd.args(["-js", "-a", "127.0.0.1", "-p", &node.port.to_string(), "--server_name", &node.name, "-sd"]).arg(&store);
        if self.nodes.len() > 1 {
            cmd.args(["--cluster_name", "relais-test", "--cluster", &format!("nats://127.0.0.1:{}", node.cluster_port)]);
            cmd.args(["--routes", &routes.join(",")]);
        }
        let child = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("start nats-server");
        let port = node.port;
        self.nodes[i].child = Some(child);
        let t0 = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(t0.elapsed() < Duration::from_secs(10), "nats-server did not start on port {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Every server, as the sink's `url`.
    pub fn url(&self) -> String {
        self.nodes.iter().map(|n| format!("nats://127.0.0.1:{}", n.port)).collect::<Vec<_>>().join(",")
    }

    /// Stops node `i` (SIGKILL: a crashed machine).
    pub fn stop(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts node `i` again on its ports and store.
    pub fn restart(&mut self, i: usize) {
        self.stop(i);
        self.spawn(i);
    }

    /// A client of the cluster and its JetStream context, once JetStream answers.
    pub async fn jetstream(&self) -> async_nats::jetstream::Context {
        let servers: Vec<async_nats::ServerAddr> = self.url().split(',').map(|u| u.parse().unwrap()).collect();
        let client = async_nats::connect(servers).await.expect("connect to the test NATS");
        async_nats::jetstream::new(client)
    }

    /// Waits until stream `name` answers with a leader (after restarts).
    pub async fn wait_stream(&self, name: &str, within: Duration) -> async_nats::jetstream::stream::Stream {
        let js = self.jetstream().await;
        let t0 = Instant::now();
        loop {
            if let Ok(mut s) = js.get_stream(name).await
                && s.info().await.is_ok()
            {
                return s;
            }
            assert!(t0.elapsed() < within, "stream {name} did not come back within {within:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The relais `seq` of every record stored in stream `name`, in stream
    /// order (one per `json` message; every record of a `json-batch` message).
    pub async fn stored_seqs(&self, name: &str) -> Vec<u64> {
        let mut s = self.wait_stream(name, Duration::from_secs(30)).await;
        let info = s.info().await.unwrap().clone();
        let mut out = Vec::new();
        let s = &s;
        let mut msgs = futures::stream::iter(info.state.first_sequence..=info.state.last_sequence)
            .map(|seq| async move { s.get_raw_message(seq).await })
            .buffered(32);
        while let Some(m) = msgs.next().await {
            let Ok(m) = m else { continue };
            let v: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
            if let Some(n) = v["seq"].as_u64() {
                out.push(n);
            } else {
                let mut items: Vec<u64> = v["samples"].as_array().unwrap().iter().map(|x| x["seq"].as_u64().unwrap()).collect();
                items.extend(v["events"].as_array().unwrap().iter().map(|x| x["seq"].as_u64().unwrap()));
                items.sort();
                out.extend(items);
            }
        }
        out
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.stop(i);
        }
    }
}

/// Asserts that `got` is exactly `from..=to`, each once, in order, naming
/// the first duplicate, gap or inversion.
pub fn assert_exactly_once_in_order(got: &[u64], from: u64, to: u64) {
    assert_exactly_once(got, from, to);
    let inversions: Vec<(u64, u64)> = got.windows(2).filter(|w| w[0] > w[1]).map(|w| (w[0], w[1])).take(10).collect();
    assert!(inversions.is_empty(), "out of order: {inversions:?}");
}

/// Places in `got` where a `seq` follows a higher one: live records
/// published while a backlog replayed.
pub fn inversions(got: &[u64]) -> usize {
    got.windows(2).filter(|w| w[0] > w[1]).count()
}

/// Asserts that the set of `got` is exactly `from..=to`, each once (in
/// any order: during a replay, live records are published beside the
/// backlog), naming the first duplicates and gaps.
pub fn assert_exactly_once(got: &[u64], from: u64, to: u64) {
    let mut dups = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for s in got {
        if !seen.insert(*s) {
            dups.push(*s);
        }
    }
    assert!(dups.is_empty(), "stored twice: {:?} ({} in all)", &dups[..dups.len().min(20)], dups.len());
    let missing: Vec<u64> = (from..=to).filter(|s| !seen.contains(s)).take(20).collect();
    assert!(missing.is_empty(), "missing from the stream: {missing:?} (of {from}..={to})");
    let extra: Vec<u64> = got.iter().copied().filter(|s| !(from..=to).contains(s)).take(20).collect();
    assert!(extra.is_empty(), "records outside {from}..={to}: {extra:?}");
}
